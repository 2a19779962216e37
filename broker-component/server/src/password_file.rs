//! Reading `[auth] password_file` into the core's table (core/src/auth.rs), at start and on
//! SIGHUP. The parsing is the core's; the IO, the size bound and the file's name in errors are
//! here. A reload that fails keeps the table in force and logs why, with the line.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use musqratt_core::auth::{PasswordFile, MAX_LINE_BYTES, MAX_USERS};
use musqratt_core::Broker;

/// The largest file read: every user at the longest line is far beyond any real file, so
/// a bound on the bytes read that is still generous (a million ordinary entries are ~150 MiB).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads and parses `path`. The error names the file and, for a bad line, the line:
/// `passwd:3: user "bob": the hash is not base64 of 64 bytes`.
pub fn load(path: &Path) -> Result<PasswordFile, String> {
    let hint = format!("at most {MAX_USERS} users, lines of at most {MAX_LINE_BYTES} bytes");
    let src = read_text(path, MAX_FILE_BYTES, &hint)?;
    PasswordFile::parse(&src).map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.message))
}

/// Reads a text file of at most `max` bytes (the ACL file's loader uses it too). The error
/// names the file, and the line of the first byte that is not UTF-8; `hint` says what a file
/// larger than `max` would have to hold.
pub fn read_text(path: &Path, max: u64, hint: &str) -> Result<String, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("{shown}: larger than {} MiB ({hint})", max >> 20));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("{shown}:{line}: not UTF-8")
    })
}

/// At start: the file's table, or the error that stops the start.
pub fn load_at_start(path: &Path) -> Result<Arc<PasswordFile>, String> {
    let table = load(path)?;
    tracing::info!(file = %path.display(), users = table.len(), "password file loaded");
    Ok(Arc::new(table))
}

/// On SIGHUP: the new table replaces the old one only if the whole file is good.
pub fn reload(broker: &Broker, path: &Path) {
    match load(path) {
        Ok(table) => {
            let users = table.len();
            // Installed before the line says so: whoever reads the line sees the new table.
            broker.auth.set_passwords(Some(Arc::new(table)));
            tracing::info!(file = %path.display(), users, "password file reloaded");
        }
        Err(e) => {
            let users = broker.auth.passwords().map_or(0, |t| t.len());
            tracing::error!(
                users,
                "password file not reloaded, the previous one stays in force: {e}"
            );
        }
    }
}
