//! Authentication of a CONNECT's User Name and Password (§3.1.3.5, §3.1.3.6) against a password
//! file in Mosquitto's format (issue 15; docs/security.md "Authentication").
//!
//! Pure code: the server reads the file and hands its text to [`PasswordFile::parse`]; the parsed
//! table is immutable and [`Auth`] swaps it whole on a reload (SIGHUP), so a CONNECT checks
//! against either the old table or the new one, never half of each.
//!
//! The file has one `user:hash` line per user, as Mosquitto 2.0's `mosquitto_passwd` writes it:
//!
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 of the password, 64-byte hash (Mosquitto's
//!   default since 2.0, 101 iterations, 12-byte salt);
//! - `$6$SALT$HASH`: SHA-512 of the password followed by the salt (Mosquitto 1.x; not glibc's
//!   sha512-crypt).
//!
//! SALT and HASH are standard base64. Empty lines and lines starting with `#` are skipped;
//! plain-text passwords are refused.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use parking_lot::RwLock;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Iterations `musqratt passwd` writes: Mosquitto's default, so either broker reads the file.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// The largest iteration count a `$7$` line may ask for. Verification runs on the worker that
/// reads the CONNECT, so the count bounds the time one CONNECT can take (docs/security.md).
pub const MAX_ITERATIONS: u32 = 1_000_000;
/// Salt bytes `musqratt passwd` draws (Mosquitto reads exactly 12).
pub const SALT_LEN: usize = 12;
/// The longest line: a 65,535-byte user name (an MQTT string) and a hash.
pub const MAX_LINE_BYTES: usize = 65_535 + 512;
/// The most users one file may hold.
pub const MAX_USERS: usize = 1_000_000;
/// The longest salt accepted in a file.
const MAX_SALT_LEN: usize = 64;
const HASH_LEN: usize = 64;

/// Standard base64; padding optional (Mosquitto writes it).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 { iterations: u32 },
}

/// One user's hashed password.
#[derive(Clone)]
pub struct Entry {
    scheme: Scheme,
    salt: Box<[u8]>,
    hash: [u8; HASH_LEN],
}

impl Entry {
    /// Whether `password` hashes to this entry (constant-time comparison of the hashes).
    pub fn verify(&self, password: &[u8]) -> bool {
        let computed = hash(self.scheme, &self.salt, password);
        computed.ct_eq(&self.hash).into()
    }
}

/// Never prints the salt or the hash.
impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Sha512 => f.write_str("Entry($6$)"),
            Scheme::Pbkdf2 { iterations } => write!(f, "Entry($7$, {iterations} iterations)"),
        }
    }
}

fn hash(scheme: Scheme, salt: &[u8], password: &[u8]) -> [u8; HASH_LEN] {
    match scheme {
        Scheme::Sha512 => {
            let mut h = Sha512::new();
            h.update(password);
            h.update(salt);
            h.finalize().into()
        }
        Scheme::Pbkdf2 { iterations } => {
            pbkdf2::pbkdf2_hmac_array::<Sha512, HASH_LEN>(password, salt, iterations)
        }
    }
}

/// A password file line as `musqratt passwd` writes it: `user:$7$101$SALT$HASH`.
pub fn entry_line(user: &str, password: &[u8], salt: &[u8; SALT_LEN]) -> String {
    let scheme = Scheme::Pbkdf2 {
        iterations: DEFAULT_ITERATIONS,
    };
    let h = hash(scheme, salt, password);
    format!(
        "{user}:$7${DEFAULT_ITERATIONS}${}${}",
        B64.encode(salt),
        B64.encode(h)
    )
}

/// Why a password file was refused: the 1-based line and what is wrong with it. The message
/// never quotes a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PasswordFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for PasswordFileError {}

/// What a line of a password file holds.
pub enum Line<'a> {
    /// Empty, or a `#` comment.
    Blank,
    User(&'a str, Entry),
}

/// Parses one line (without its `\n`; a trailing `\r` is ignored).
pub fn parse_line(line: &str) -> Result<Line<'_>, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("line longer than {MAX_LINE_BYTES} bytes"));
    }
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(Line::Blank);
    }
    let Some((user, rest)) = line.split_once(':') else {
        return Err("expected USER:HASH".into());
    };
    if user.is_empty() {
        return Err("empty user name".into());
    }
    if user.len() > usize::from(u16::MAX) {
        return Err("user name longer than 65535 bytes".into());
    }
    let (scheme, salt, hash) = if let Some(f) = rest.strip_prefix("$7$") {
        let mut parts = f.split('$');
        let (Some(it), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("user {user:?}: expected $7$ITERATIONS$SALT$HASH"));
        };
        let iterations = it
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_ITERATIONS).contains(n))
            .ok_or_else(|| {
                format!("user {user:?}: iteration count {it:?} is not in 1..={MAX_ITERATIONS}")
            })?;
        (Scheme::Pbkdf2 { iterations }, salt, hash)
    } else if let Some(f) = rest.strip_prefix("$6$") {
        let Some((salt, hash)) = f.split_once('$').filter(|(_, h)| !h.contains('$')) else {
            return Err(format!("user {user:?}: expected $6$SALT$HASH"));
        };
        (Scheme::Sha512, salt, hash)
    } else {
        return Err(format!(
            "user {user:?}: not a $6$ or $7$ password hash (plain-text passwords are refused: \
             write the entry with `musqratt passwd`)"
        ));
    };
    let salt = B64
        .decode(salt)
        .ok()
        .filter(|s| (1..=MAX_SALT_LEN).contains(&s.len()))
        .ok_or_else(|| {
            format!("user {user:?}: the salt is not base64 of 1 to {MAX_SALT_LEN} bytes")
        })?;
    let hash: [u8; HASH_LEN] = B64
        .decode(hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| format!("user {user:?}: the hash is not base64 of {HASH_LEN} bytes"))?;
    Ok(Line::User(
        user,
        Entry {
            scheme,
            salt: salt.into_boxed_slice(),
            hash,
        },
    ))
}

/// A parsed password file: user name → hashed password.
#[derive(Debug, Default)]
pub struct PasswordFile {
    users: HashMap<Box<str>, Entry>,
}

impl PasswordFile {
    /// Parses a whole file; the first bad line is the error. A user defined twice is an error.
    pub fn parse(src: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut users: HashMap<Box<str>, (usize, Entry)> = HashMap::new();
        for (i, text) in src.split('\n').enumerate() {
            let line = i + 1;
            let err = |message| PasswordFileError { line, message };
            match parse_line(text).map_err(err)? {
                Line::Blank => {}
                Line::User(user, entry) => {
                    if let Some((first, _)) = users.get(user) {
                        return Err(err(format!(
                            "user {user:?} is already defined on line {first}"
                        )));
                    }
                    if users.len() == MAX_USERS {
                        return Err(err(format!("more than {MAX_USERS} users")));
                    }
                    users.insert(user.into(), (line, entry));
                }
            }
        }
        Ok(PasswordFile {
            users: users.into_iter().map(|(u, (_, e))| (u, e)).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` is in the file with this password. An unknown user costs a PBKDF2 of
    /// Mosquitto's default strength too, so the answer's timing does not tell whether the user
    /// exists (with default-strength entries).
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(entry) => entry.verify(password),
            None => {
                let dummy = Scheme::Pbkdf2 {
                    iterations: DEFAULT_ITERATIONS,
                };
                let _ = std::hint::black_box(hash(dummy, &[0; SALT_LEN], password));
                false
            }
        }
    }
}

/// The answer to a CONNECT's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No user name and anonymous clients are not allowed: v5 0x87, 3.1.1 return code 5.
    NotAuthorized,
    /// Unknown user, wrong or missing password: v5 0x86, 3.1.1 return code 4.
    BadUserNameOrPassword,
}

/// The broker's authentication state: the current password table, replaced whole on reload.
#[derive(Debug, Default)]
pub struct Auth {
    passwords: RwLock<Option<Arc<PasswordFile>>>,
}

impl Auth {
    /// Installs a new table (or none); CONNECTs from now on check against it.
    pub fn set_passwords(&self, table: Option<Arc<PasswordFile>>) {
        *self.passwords.write() = table;
    }

    /// The current table.
    pub fn passwords(&self) -> Option<Arc<PasswordFile>> {
        self.passwords.read().clone()
    }

    /// Checks a CONNECT's credentials. Without a user name the client is anonymous. With a
    /// password table a user name must be in it with the right password; without one, user names
    /// are not checked and only `allow_anonymous` decides.
    pub fn check(
        &self,
        allow_anonymous: bool,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Verdict {
        let table = self.passwords();
        match (username, table) {
            (None, _) | (Some(_), None) if allow_anonymous => Verdict::Allowed,
            (None, _) | (Some(_), None) => Verdict::NotAuthorized,
            (Some(user), Some(table)) => {
                // A user name without a password (v5 allows it) never matches an entry.
                let ok = table.check(user, password.unwrap_or_default());
                if ok && password.is_some() {
                    Verdict::Allowed
                } else {
                    Verdict::BadUserNameOrPassword
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
