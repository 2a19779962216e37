//! The shell's command language: splitting a line into words (with "quoted strings"), parsing
//! the commands and their options, and the help text.

use std::path::PathBuf;

use musqratt_codec::QoS;

/// The command names, for completion and `help`.
pub const COMMANDS: [&str; 7] = [
    "connect",
    "disconnect",
    "sub",
    "pub",
    "unsub",
    "help",
    "quit",
];

pub const HELP: &str = "\
commands (options come before the arguments):
  connect [-x SECS] [-u USER] [-P PASS] [CLIENT_ID]
        open a connection as CLIENT_ID (generated when omitted) and make it the current one;
        -x SECS keeps the session SECS seconds after the connection ends (and resumes an
        existing one); without -x the session ends with the connection.
        `connect ID` of a connection this shell already holds makes it the current one.
  disconnect [CLIENT_ID]
        close the connection (default: the current one) and delete its session on the broker;
        with the id of a client this shell does not hold, deletes that client's session.
  sub [-q 0|1|2] TOPIC...
        subscribe the current connection; messages print as `TOPIC PAYLOAD`.
  pub [-q 0|1|2] [-r] [-e SECS] TOPIC PAYLOAD
        publish from the current connection; PAYLOAD is a word, a \"quoted string\" or @FILE
        (the file's bytes); -r retains it, -e SECS sets its message expiry.
  unsub TOPIC...
        unsubscribe the current connection.
  help  this text.
  quit  close every connection (sessions kept with -x survive) and leave; so does end of input.";

/// A `pub` payload as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Empty,
    Connect {
        client_id: Option<String>,
        session_expiry: Option<u32>,
        username: Option<String>,
        password: Option<String>,
    },
    Disconnect {
        client_id: Option<String>,
    },
    Sub {
        qos: QoS,
        topics: Vec<String>,
    },
    Pub {
        qos: QoS,
        retain: bool,
        expiry: Option<u32>,
        topic: String,
        payload: Payload,
    },
    Unsub {
        topics: Vec<String>,
    },
    Help,
    Quit,
}

/// One word of a line; `quoted` when any part of it was in quotes (then `-x` and `@f` are text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub quoted: bool,
}

/// Split a line into words: blanks separate, "double quotes" allow `\"`, `\\`, `\n` and `\t`,
/// 'single quotes' are literal.
pub fn split(line: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut w = Word {
            text: String::new(),
            quoted: false,
        };
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '"' => {
                    w.quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err("unterminated \"quoted string\"".into()),
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some('n') => w.text.push('\n'),
                                Some('t') => w.text.push('\t'),
                                Some(e @ ('"' | '\\')) => w.text.push(e),
                                Some(e) => {
                                    w.text.push('\\');
                                    w.text.push(e);
                                }
                                None => return Err("unterminated \"quoted string\"".into()),
                            },
                            Some(c) => w.text.push(c),
                        }
                    }
                }
                '\'' => {
                    w.quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err("unterminated 'quoted string'".into()),
                            Some('\'') => break,
                            Some(c) => w.text.push(c),
                        }
                    }
                }
                c => w.text.push(c),
            }
        }
        words.push(w);
    }
}

fn usage(cmd: &str) -> &'static str {
    match cmd {
        "connect" => "connect [-x SECS] [-u USER] [-P PASS] [CLIENT_ID]",
        "disconnect" => "disconnect [CLIENT_ID]",
        "sub" => "sub [-q 0|1|2] TOPIC...",
        "pub" => "pub [-q 0|1|2] [-r] [-e SECS] TOPIC PAYLOAD",
        "unsub" => "unsub TOPIC...",
        "help" => "help",
        _ => "quit",
    }
}

/// Options then arguments of one command.
struct Args<'a> {
    cmd: &'a str,
    words: std::iter::Peekable<std::slice::Iter<'a, Word>>,
}

impl<'a> Args<'a> {
    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("{}: {what} (usage: {})", self.cmd, usage(self.cmd))
    }

    /// The next option letter, if the next word is an option. `--` ends the options.
    fn option(&mut self) -> Option<String> {
        let w = self.words.peek()?;
        if w.quoted || !w.text.starts_with('-') || w.text.len() < 2 {
            return None;
        }
        let w = self.words.next()?;
        if w.text == "--" {
            return None;
        }
        Some(w.text.clone())
    }

    fn value(&mut self, opt: &str) -> Result<String, String> {
        match self.words.next() {
            Some(w) => Ok(w.text.clone()),
            None => Err(self.err(format!("{opt} needs a value"))),
        }
    }

    fn qos(&mut self, opt: &str) -> Result<QoS, String> {
        let v = self.value(opt)?;
        v.parse::<u8>()
            .ok()
            .and_then(QoS::from_u8)
            .ok_or_else(|| self.err(format!("{opt} needs 0, 1 or 2, not '{v}'")))
    }

    fn secs(&mut self, opt: &str) -> Result<u32, String> {
        let v = self.value(opt)?;
        v.parse::<u32>()
            .map_err(|_| self.err(format!("{opt} needs a number of seconds, not '{v}'")))
    }

    fn unknown(&self, opt: &str) -> String {
        self.err(format!("unknown option {opt}"))
    }

    fn rest(&mut self) -> Vec<&'a Word> {
        self.words.by_ref().collect()
    }
}

/// Parse one line. `Err` is the text of the `error:` line. A line starting with `#` is a comment.
pub fn parse(line: &str) -> Result<Command, String> {
    if line.trim_start().starts_with('#') {
        return Ok(Command::Empty);
    }
    let words = split(line)?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(Command::Empty);
    };
    let cmd = first.text.as_str();
    if !COMMANDS.contains(&cmd) {
        return Err(format!("unknown command '{cmd}' (try help)"));
    }
    let mut a = Args {
        cmd,
        words: rest.iter().peekable(),
    };
    let c = match cmd {
        "connect" => {
            let (mut session_expiry, mut username, mut password) = (None, None, None);
            while let Some(o) = a.option() {
                match o.as_str() {
                    "-x" => session_expiry = Some(a.secs("-x")?),
                    "-u" => username = Some(a.value("-u")?),
                    "-P" => password = Some(a.value("-P")?),
                    _ => return Err(a.unknown(&o)),
                }
            }
            let args = a.rest();
            if args.len() > 1 {
                return Err(a.err("too many arguments"));
            }
            Command::Connect {
                client_id: args.first().map(|w| w.text.clone()),
                session_expiry,
                username,
                password,
            }
        }
        "disconnect" => {
            if let Some(o) = a.option() {
                return Err(a.unknown(&o));
            }
            let args = a.rest();
            if args.len() > 1 {
                return Err(a.err("too many arguments"));
            }
            Command::Disconnect {
                client_id: args.first().map(|w| w.text.clone()),
            }
        }
        "sub" => {
            let mut qos = QoS::AtMostOnce;
            while let Some(o) = a.option() {
                match o.as_str() {
                    "-q" => qos = a.qos("-q")?,
                    _ => return Err(a.unknown(&o)),
                }
            }
            let topics: Vec<_> = a.rest().iter().map(|w| w.text.clone()).collect();
            if topics.is_empty() {
                return Err(a.err("missing topic"));
            }
            Command::Sub { qos, topics }
        }
        "pub" => {
            let (mut qos, mut retain, mut expiry) = (QoS::AtMostOnce, false, None);
            while let Some(o) = a.option() {
                match o.as_str() {
                    "-q" => qos = a.qos("-q")?,
                    "-r" => retain = true,
                    "-e" => expiry = Some(a.secs("-e")?),
                    _ => return Err(a.unknown(&o)),
                }
            }
            let args = a.rest();
            let (topic, payload) = match args.as_slice() {
                [] => return Err(a.err("missing topic and payload")),
                [_] => return Err(a.err("missing payload")),
                [t, p] => (t.text.clone(), *p),
                _ => return Err(a.err("too many arguments (quote a payload with blanks)")),
            };
            let payload = match payload.text.strip_prefix('@') {
                Some(path) if !payload.quoted => {
                    if path.is_empty() {
                        return Err(a.err("@ needs a file name"));
                    }
                    Payload::File(PathBuf::from(path))
                }
                _ => Payload::Text(payload.text.clone()),
            };
            Command::Pub {
                qos,
                retain,
                expiry,
                topic,
                payload,
            }
        }
        "unsub" => {
            if let Some(o) = a.option() {
                return Err(a.unknown(&o));
            }
            let topics: Vec<_> = a.rest().iter().map(|w| w.text.clone()).collect();
            if topics.is_empty() {
                return Err(a.err("missing topic"));
            }
            Command::Unsub { topics }
        }
        "help" | "quit" => {
            if !a.rest().is_empty() {
                return Err(a.err("takes no arguments"));
            }
            if cmd == "help" {
                Command::Help
            } else {
                Command::Quit
            }
        }
        _ => unreachable!("checked against COMMANDS"),
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        let w = split(r#"pub a/b "hello \"world\"" 'x y' @f"#).unwrap();
        let t: Vec<_> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(t, ["pub", "a/b", "hello \"world\"", "x y", "@f"]);
        assert!(w[2].quoted && !w[4].quoted);
        assert!(split("pub t \"open").is_err());
        assert_eq!(split("  ").unwrap(), vec![]);
    }

    #[test]
    fn pub_options_and_payloads() {
        assert_eq!(
            parse("pub -q 1 -r -e 10 t/1 \"two words\"").unwrap(),
            Command::Pub {
                qos: QoS::AtLeastOnce,
                retain: true,
                expiry: Some(10),
                topic: "t/1".into(),
                payload: Payload::Text("two words".into()),
            }
        );
        assert!(matches!(
            parse("pub t @/tmp/x").unwrap(),
            Command::Pub {
                payload: Payload::File(_),
                ..
            }
        ));
        assert!(matches!(
            parse("pub t \"@x\"").unwrap(),
            Command::Pub { payload: Payload::Text(t), .. } if t == "@x"
        ));
        // A payload that looks like an option is a payload after the topic.
        assert!(matches!(
            parse("pub t -5").unwrap(),
            Command::Pub { payload: Payload::Text(t), .. } if t == "-5"
        ));
        assert!(parse("pub -q 3 t x")
            .unwrap_err()
            .contains("-q needs 0, 1 or 2"));
        assert!(parse("pub t").unwrap_err().contains("missing payload"));
        assert!(parse("pub t a b").unwrap_err().contains("too many"));
        assert!(parse("pub -z t x")
            .unwrap_err()
            .contains("unknown option -z"));
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            parse("connect -x 300 me").unwrap(),
            Command::Connect {
                client_id: Some("me".into()),
                session_expiry: Some(300),
                username: None,
                password: None,
            }
        );
        assert!(parse("connect -x soon").unwrap_err().contains("seconds"));
        assert_eq!(parse("").unwrap(), Command::Empty);
        assert_eq!(parse("  # a comment").unwrap(), Command::Empty);
        assert_eq!(parse("quit").unwrap(), Command::Quit);
        assert!(parse("frobnicate").unwrap_err().contains("unknown command"));
        assert!(parse("sub").unwrap_err().contains("missing topic"));
        assert_eq!(
            parse("unsub a b").unwrap(),
            Command::Unsub {
                topics: vec!["a".into(), "b".into()]
            }
        );
    }
}
