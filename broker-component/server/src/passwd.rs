//! `musqratt passwd`: adds, updates or deletes a user in a password file, like Debian's
//! `mosquitto_passwd` and in its format, so either broker reads the file (docs/cli.md).
//!
//! Entries are written as `user:$7$101$SALT$HASH` (PBKDF2-HMAC-SHA512, Mosquitto's default), the
//! salt from the OS's CSPRNG. Other lines are kept as they are. The file is replaced atomically
//! (a temporary file in the same directory, renamed over it) with mode 0600.

use std::fs::OpenOptions;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use musqratt_core::auth::{entry_line, SALT_LEN};

use crate::cli::PasswdArgs;

pub fn run(a: &PasswdArgs) -> ExitCode {
    match passwd(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(a: &PasswdArgs) -> Result<(), String> {
    check_user(&a.user)?;
    let file = &a.file;
    if a.delete {
        let text = read(file)?;
        let (out, found) = edit(&text, &a.user, None);
        if !found {
            return Err(format!("user {:?} is not in {}", a.user, file.display()));
        }
        return write(file, &out);
    }
    let password = match (a.batch, &a.password) {
        (true, Some(p)) => p.clone(),
        (true, None) => return Err("-b needs the password as the third argument".into()),
        (false, Some(_)) => return Err("a password on the command line needs -b".into()),
        (false, None) => ask_password()?,
    };
    if password.is_empty() {
        return Err("empty password".into());
    }
    if password.len() > usize::from(u16::MAX) {
        return Err("password longer than 65535 bytes (MQTT's limit)".into());
    }
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness from the OS: {e}"))?;
    let line = entry_line(&a.user, password.as_bytes(), &salt);
    let text = if a.create { String::new() } else { read(file)? };
    let (out, _) = edit(&text, &a.user, Some(&line));
    write(file, &out)
}

/// A user name the file format can hold: not empty, no `:` or line break, not a comment.
fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".into());
    }
    if user.contains([':', '\n', '\r']) {
        return Err("a user name cannot contain ':' or a line break".into());
    }
    if user.starts_with('#') {
        return Err("a user name cannot start with '#' (a comment in the file)".into());
    }
    if user.len() > usize::from(u16::MAX) {
        return Err("user name longer than 65535 bytes (MQTT's limit)".into());
    }
    Ok(())
}

/// The file with `user`'s line replaced by `line` (appended if absent), or removed when `line`
/// is `None`; other lines unchanged. Also whether `user` was there.
fn edit(text: &str, user: &str, line: Option<&str>) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + line.map_or(0, str::len) + 1);
    let mut found = false;
    for l in text.lines() {
        let is_user = !l.starts_with('#') && l.split_once(':').is_some_and(|(u, _)| u == user);
        if !is_user {
            out.push_str(l);
            out.push('\n');
        } else if !found {
            found = true;
            if let Some(new) = line {
                out.push_str(new);
                out.push('\n');
            }
        } // a later duplicate of the user is dropped
    }
    if let (false, Some(new)) = (found, line) {
        out.push_str(new);
        out.push('\n');
    }
    (out, found)
}

fn read(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (-c creates it)"
        } else {
            ""
        };
        format!("{}: cannot read: {e}{hint}", file.display())
    })
}

/// Replaces `file` atomically, mode 0600.
fn write(file: &Path, text: &str) -> Result<(), String> {
    let name = file
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", file.display()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = file.with_file_name(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write: {e}", file.display())
    })
}

/// Reads the password twice, without echo when stdin is a terminal (two lines of a pipe
/// otherwise, as mosquitto_passwd).
fn ask_password() -> Result<String, String> {
    let first = prompt("Password: ")?;
    let second = prompt("Reenter password: ")?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

fn prompt(text: &str) -> Result<String, String> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{text}");
    let _ = err.flush();
    let stdin = std::io::stdin();
    // Echo off, but the Enter still echoed (ECHONL): the next prompt starts on its own line.
    let _echo_off = if stdin.is_terminal() {
        Some(EchoOff::new(&stdin)?)
    } else {
        None
    };
    let mut line = String::new();
    let n = stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    if n == 0 {
        return Err("no password given (end of input)".into());
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
}

/// The terminal's echo off until dropped.
struct EchoOff<'a> {
    stdin: &'a std::io::Stdin,
    saved: nix::sys::termios::Termios,
}

impl<'a> EchoOff<'a> {
    fn new(stdin: &'a std::io::Stdin) -> Result<EchoOff<'a>, String> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let saved = tcgetattr(stdin).map_err(|e| format!("cannot read terminal settings: {e}"))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(stdin, SetArg::TCSAFLUSH, &quiet)
            .map_err(|e| format!("cannot turn terminal echo off: {e}"))?;
        Ok(EchoOff { stdin, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(self.stdin, SetArg::TCSAFLUSH, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_replaces_appends_and_deletes_keeping_other_lines() {
        let text = "# users\nalice:$7$1$a$b\nbob:$6$c$d\n\nalice:$7$2$e$f\n";
        let (out, found) = edit(text, "alice", Some("alice:NEW"));
        assert!(found);
        assert_eq!(out, "# users\nalice:NEW\nbob:$6$c$d\n\n");
        let (out, found) = edit(text, "carol", Some("carol:NEW"));
        assert!(!found);
        assert_eq!(out, format!("{text}carol:NEW\n"));
        let (out, found) = edit(text, "bob", None);
        assert!(found);
        assert_eq!(out, "# users\nalice:$7$1$a$b\n\nalice:$7$2$e$f\n");
        // No final newline in the input: the new line still starts on its own line.
        let (out, _) = edit("bob:x", "carol", Some("carol:y"));
        assert_eq!(out, "bob:x\ncarol:y\n");
        // A comment that looks like a user line is not the user.
        let (out, found) = edit("#alice:x\n", "#alice", None);
        assert!(!found);
        assert_eq!(out, "#alice:x\n");
    }

    #[test]
    fn user_names_the_format_cannot_hold_are_refused() {
        for bad in ["", "a:b", "a\nb", "#x", &"u".repeat(65_536)] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        assert!(check_user("ünïcode user").is_ok());
    }
}
