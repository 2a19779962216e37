//! Access control lists in Mosquitto's `acl_file` format (issue 15; docs/security.md
//! "Access control (ACL)").
//!
//! Pure code, as auth.rs: the server reads the file and hands its text to [`AclTable::parse`];
//! the parsed table is immutable and [`Acl`] swaps it whole on a reload (SIGHUP), so a check
//! sees either the old table or the new one, never half of each.
//!
//! The file, as Mosquitto 2.0 reads it:
//!
//! ```text
//! # rules before the first `user` line apply to anonymous clients (no user name)
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret/#
//! pattern write devices/%c/status     # every client; %c client id, %u user name
//! ```
//!
//! With a table, what is not granted is denied, and a matching `deny` rule overrides any grant.
//! Filters are pre-split into levels when the file is parsed, and `%c`/`%u` are matched in place
//! against the client's identity, so a check allocates nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

/// The longest line (a 65,535-byte filter or user name and its keyword).
pub const MAX_LINE_BYTES: usize = 65_535 + 64;
/// The most rules (`topic` and `pattern` lines) one file may hold.
pub const MAX_RULES: usize = 1_000_000;
/// The most levels one rule's filter may have.
pub const MAX_RULE_LEVELS: usize = 1024;

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    /// Denies read and write, whatever other rules grant.
    Deny,
}

impl Access {
    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::ReadWrite, _)
                | (Access::Read, Want::Read | Want::Subscribe)
                | (Access::Write, Want::Write)
        )
    }
}

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Receive a message on this topic name (any delivery: routed, retained, held, will, `$SYS`).
    Read,
    /// Publish to this topic name (a PUBLISH, a will).
    Write,
    /// Subscribe to this filter (without a `$share/group/` prefix): granted when a read rule
    /// matches at least one topic the filter matches, refused when a `deny` rule matches every
    /// topic it matches (nothing could ever be delivered). Every delivery is checked again
    /// ([`Want::Read`]), so `#` may be granted and deliver only what the client may read.
    /// (Mosquitto 2.0's acl_file grants every SUBSCRIBE and checks only deliveries.)
    Subscribe,
}

/// One part of a `pattern` level: literal text or a substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<str>),
    ClientId,
    UserName,
}

/// One level of a rule's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Text(Box<str>),
    Plus,
    Hash,
    /// A `pattern` level holding `%c` or `%u`.
    Subst(Box<[Part]>),
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    levels: Box<[Level]>,
    uses_client_id: bool,
    uses_user_name: bool,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub client_id: &'a str,
    /// None: an anonymous client.
    pub username: Option<&'a str>,
}

/// Why an ACL file was refused: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for AclFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for AclFileError {}

/// A parsed ACL file.
#[derive(Debug, Default)]
pub struct AclTable {
    /// `topic` lines before the first `user` line.
    anonymous: Vec<Rule>,
    /// `topic` lines after `user NAME`, by NAME (a user named twice has the rules of both).
    users: HashMap<Box<str>, Vec<Rule>>,
    /// `pattern` lines, wherever they are: they apply to every client.
    patterns: Vec<Rule>,
    rules: usize,
}

impl AclTable {
    /// Parses a whole file; the first bad line is the error.
    pub fn parse(src: &str) -> Result<AclTable, AclFileError> {
        let mut table = AclTable::default();
        // None: before the first `user` line.
        let mut user: Option<Box<str>> = None;
        for (i, text) in src.split('\n').enumerate() {
            let line = i + 1;
            let err = |message: String| AclFileError { line, message };
            if text.len() > MAX_LINE_BYTES {
                return Err(err(format!("line longer than {MAX_LINE_BYTES} bytes")));
            }
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let (keyword, rest) = match text.split_once(char::is_whitespace) {
                Some((k, r)) => (k, r.trim()),
                None => (text, ""),
            };
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` without a user name".into()));
                    }
                    user = Some(rest.into());
                }
                "topic" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let rule =
                        parse_rule(rest, pattern).map_err(|m| err(format!("{keyword}: {m}")))?;
                    if table.rules == MAX_RULES {
                        return Err(err(format!("more than {MAX_RULES} rules")));
                    }
                    table.rules += 1;
                    if pattern {
                        table.patterns.push(rule);
                    } else {
                        match &user {
                            None => table.anonymous.push(rule),
                            Some(u) => table.users.entry(u.clone()).or_default().push(rule),
                        }
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {:?}: expected `user`, `topic` or `pattern`",
                        Abbrev(other)
                    )))
                }
            }
        }
        Ok(table)
    }

    /// `topic` and `pattern` lines in the file.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Whether `subject` may do `want` on `topic` (a topic name, or for [`Want::Subscribe`] a
    /// filter without its `$share/group/` prefix). Denied unless a rule grants it; a matching
    /// `deny` rule denies whatever else grants.
    pub fn check(&self, subject: Subject<'_>, topic: &str, want: Want) -> bool {
        let own = match subject.username {
            None => Some(self.anonymous.as_slice()),
            Some(u) => self.users.get(u).map(Vec::as_slice),
        };
        let mut granted = false;
        for rule in own.into_iter().flatten().chain(&self.patterns) {
            if rule.access != Access::Deny && (granted || !rule.access.grants(want)) {
                // Cannot change the answer: only a deny can now.
                continue;
            }
            match rule.matches(subject, topic, want) {
                Some(true) if rule.access == Access::Deny => return false,
                Some(true) => granted = true,
                Some(false) => {}
                // A substitution this client's identity cannot take part in safely: a deny
                // pattern it might have matched denies.
                None if rule.access == Access::Deny => return false,
                None => {}
            }
        }
        granted
    }
}

/// `[read|write|readwrite|deny] FILTER`; no access word means readwrite.
fn parse_rule(rest: &str, pattern: bool) -> Result<Rule, String> {
    let (access, filter) = match rest.split_once(char::is_whitespace) {
        Some((word, f)) => match access_word(word) {
            Some(a) => (a, f.trim()),
            None => (Access::ReadWrite, rest),
        },
        None => match access_word(rest) {
            Some(_) => return Err(format!("{rest} without a topic filter")),
            None => (Access::ReadWrite, rest),
        },
    };
    if filter.is_empty() {
        return Err("no topic filter".into());
    }
    if musqratt_codec::topic::validate_topic_filter(filter).is_err() {
        return Err(format!(
            "{:?} is not a valid topic filter (`#` only as the last level, `+` and `#` alone in \
             their level)",
            Abbrev(filter)
        ));
    }
    let mut levels = Vec::new();
    let (mut uses_client_id, mut uses_user_name) = (false, false);
    for level in filter.split('/') {
        if levels.len() == MAX_RULE_LEVELS {
            return Err(format!("more than {MAX_RULE_LEVELS} levels"));
        }
        levels.push(match level {
            "+" => Level::Plus,
            "#" => Level::Hash,
            l if pattern && (l.contains("%c") || l.contains("%u")) => {
                let parts = split_substitutions(l);
                uses_client_id |= parts.contains(&Part::ClientId);
                uses_user_name |= parts.contains(&Part::UserName);
                Level::Subst(parts.into())
            }
            l => Level::Text(l.into()),
        });
    }
    Ok(Rule {
        access,
        levels: levels.into(),
        uses_client_id,
        uses_user_name,
    })
}

fn access_word(word: &str) -> Option<Access> {
    Some(match word {
        "read" => Access::Read,
        "write" => Access::Write,
        "readwrite" => Access::ReadWrite,
        "deny" => Access::Deny,
        _ => return None,
    })
}

/// `a%cb%u` → [Text(a), ClientId, Text(b), UserName].
fn split_substitutions(level: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = level;
    while let Some(at) = rest.find('%') {
        let (before, from) = rest.split_at(at);
        text.push_str(before);
        let part = if from.starts_with("%c") {
            Some(Part::ClientId)
        } else if from.starts_with("%u") {
            Some(Part::UserName)
        } else {
            None
        };
        match part {
            Some(p) => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text).into()));
                }
                parts.push(p);
                rest = from.get(2..).unwrap_or_default();
            }
            None => {
                text.push('%');
                rest = from.get(1..).unwrap_or_default();
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text.into()));
    }
    parts
}

/// Whether an identity may be substituted into a level: a `/` would span levels and a `+` or
/// `#` would turn into a wildcard in Mosquitto's textual substitution. Mosquitto refuses `+`
/// and `#`; we refuse `/` too rather than let one user name reach across levels.
fn substitutable(value: &str) -> bool {
    !value.is_empty() && !value.contains(['/', '+', '#'])
}

impl Rule {
    /// Whether the rule matches. `None`: the rule substitutes an identity that cannot be
    /// substituted safely ([`substitutable`]).
    fn matches(&self, subject: Subject<'_>, topic: &str, want: Want) -> Option<bool> {
        if self.uses_client_id && !substitutable(subject.client_id) {
            return None;
        }
        if self.uses_user_name {
            match subject.username {
                // An anonymous client has no user name for `%u`: the rule is not for it.
                None => return Some(false),
                Some(u) if !substitutable(u) => return None,
                Some(_) => {}
            }
        }
        let mode = match want {
            Want::Read | Want::Write => Mode::Topic,
            Want::Subscribe if self.access == Access::Deny => Mode::Covers,
            Want::Subscribe => Mode::Meets,
        };
        // §4.7.2: a filter starting with a wildcard does not match a `$` topic, on either side.
        let rule_wild = matches!(self.levels.first(), Some(Level::Plus | Level::Hash));
        if rule_wild && topic.starts_with('$') {
            return Some(false);
        }
        let filter_wild = mode == Mode::Meets && (topic.starts_with('+') || topic.starts_with('#'));
        if filter_wild && self.first_level_is_dollar(subject) {
            return Some(false);
        }
        let mut names = topic.split('/');
        for level in self.levels.iter() {
            let Some(name) = names.next() else {
                // `a/#` matches `a` too (§4.7.1.2).
                return Some(matches!(level, Level::Hash));
            };
            let ok = match mode {
                Mode::Topic => match level {
                    Level::Hash => return Some(true),
                    Level::Plus => true,
                    Level::Text(t) => **t == *name,
                    Level::Subst(parts) => parts_match(parts, subject, name),
                },
                // Every topic the filter matches is matched by the rule: a rule's `+` takes
                // a filter's `+`, not its `#` (which spans levels); its text takes neither.
                Mode::Covers => match level {
                    Level::Hash => return Some(true),
                    Level::Plus => name != "#",
                    Level::Text(t) => **t == *name,
                    Level::Subst(parts) => parts_match(parts, subject, name),
                },
                // Some topic matches both.
                Mode::Meets => match level {
                    _ if name == "#" => return Some(true),
                    Level::Hash => return Some(true),
                    Level::Plus => true,
                    Level::Text(t) => name == "+" || **t == *name,
                    Level::Subst(parts) => name == "+" || parts_match(parts, subject, name),
                },
            };
            if !ok {
                return Some(false);
            }
        }
        Some(match names.next() {
            None => true,
            // The filter's `a/#` meets the rule's `a` (its parent level).
            Some("#") => mode == Mode::Meets && names.next().is_none(),
            Some(_) => false,
        })
    }
}

impl Rule {
    /// Whether the rule's first level (substituted) starts with `$`.
    fn first_level_is_dollar(&self, subject: Subject<'_>) -> bool {
        match self.levels.first() {
            Some(Level::Text(t)) => t.starts_with('$'),
            Some(Level::Subst(parts)) => match parts.first() {
                Some(Part::Text(t)) => t.starts_with('$'),
                Some(Part::ClientId) => subject.client_id.starts_with('$'),
                Some(Part::UserName) => subject.username.is_some_and(|u| u.starts_with('$')),
                None => false,
            },
            _ => false,
        }
    }
}

/// How a rule is matched against what is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A topic name (read, write).
    Topic,
    /// A filter: the rule matches every topic the filter does (a `deny` against SUBSCRIBE).
    Covers,
    /// A filter: the rule matches at least one topic the filter does (a grant to SUBSCRIBE).
    Meets,
}

/// Whether `name` is the level `parts` spell for `subject` (no allocation: each part must be a
/// prefix of what is left).
fn parts_match(parts: &[Part], subject: Subject<'_>, name: &str) -> bool {
    let mut rest = name;
    for part in parts {
        let want = match part {
            Part::Text(t) => &**t,
            Part::ClientId => subject.client_id,
            Part::UserName => match subject.username {
                Some(u) => u,
                None => return false,
            },
        };
        match rest.strip_prefix(want) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// A client's text in an error message: at most 64 bytes of it.
struct Abbrev<'a>(&'a str);

impl fmt::Debug for Abbrev<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len().min(64);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        match self.0.get(..end) {
            Some(s) if end < self.0.len() => write!(f, "{s:?}…"),
            _ => write!(f, "{:?}", self.0),
        }
    }
}

/// The broker's access control: present only when `auth.acl_file` is set (the delivery path
/// checks an `Option`, nothing more, without one). The table is replaced whole on reload.
#[derive(Debug)]
pub struct Acl {
    table: RwLock<Arc<AclTable>>,
}

impl Acl {
    pub fn new(table: Arc<AclTable>) -> Acl {
        Acl {
            table: RwLock::new(table),
        }
    }

    /// Installs a new table; checks from now on use it.
    pub fn set_table(&self, table: Arc<AclTable>) {
        *self.table.write() = table;
    }

    /// The current table: take it once per PUBLISH or SUBSCRIBE, then check each target
    /// against it.
    pub fn table(&self) -> Arc<AclTable> {
        Arc::clone(&self.table.read())
    }
}

#[cfg(test)]
mod tests;
