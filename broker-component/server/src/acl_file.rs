//! Reading `[auth] acl_file` into the core's table (core/src/acl.rs), at start and on SIGHUP,
//! as password_file.rs does for the password file: the parsing is the core's; the IO, the size
//! bound and the file's name in errors are here. A reload that fails keeps the table in force
//! and logs why, with the line.

use std::path::Path;
use std::sync::Arc;

use musqratt_core::acl::{Acl, AclTable, MAX_LINE_BYTES, MAX_RULES};
use musqratt_core::Broker;

/// The largest file read: far beyond any real ACL file, still a bound on what is read.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads and parses `path`. The error names the file and, for a bad line, the line:
/// `acl:3: topic: "a/#/b" is not a valid topic filter ...`.
pub fn load(path: &Path) -> Result<AclTable, String> {
    let hint = format!("at most {MAX_RULES} rules, lines of at most {MAX_LINE_BYTES} bytes");
    let src = crate::password_file::read_text(path, MAX_FILE_BYTES, &hint)?;
    AclTable::parse(&src).map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.message))
}

/// At start: the access control to install, or the error that stops the start.
pub fn load_at_start(path: &Path) -> Result<Acl, String> {
    let table = load(path)?;
    tracing::info!(file = %path.display(), rules = table.rule_count(), "ACL file loaded");
    Ok(Acl::new(Arc::new(table)))
}

/// On SIGHUP: the new table replaces the old one only if the whole file is good. Connected
/// clients stay connected; what they may do changes from their next packet and delivery on.
pub fn reload(broker: &Broker, path: &Path) {
    let Some(acl) = &broker.acl else {
        return;
    };
    match load(path) {
        Ok(table) => {
            let rules = table.rule_count();
            // Installed before the line says so: whoever reads the line sees the new table.
            acl.set_table(Arc::new(table));
            tracing::info!(file = %path.display(), rules, "ACL file reloaded");
        }
        Err(e) => {
            let rules = acl.table().rule_count();
            tracing::error!(
                rules,
                "ACL file not reloaded, the previous one stays in force: {e}"
            );
        }
    }
}
