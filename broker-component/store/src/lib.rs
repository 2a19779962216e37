//! `musqratt-store`: the broker's durable state (docs/storage.md).
//!
//! The core does no IO: it records [`musqratt_core::persist::Op`]s into a journal and the
//! transport holds back acknowledgements until the journal says they are durable. This crate
//! is that journal: a commit thread that batches ops into atomic, fsynced commits of an
//! embedded engine (group commit), plus start-up recovery.
//!
//! - [`record`]: the byte layout of keys and values;
//! - [`engine`]: what the journal needs of an engine; [`redb_engine`]: the one we use;
//! - [`journal`]: the group-commit thread (implements the core's `Journal`); `translate.rs`
//!   turns its ops into a batch of engine changes;
//! - [`recover`]: reading the store back into the core's `Restored` state.
//!
//! `--in-memory` uses no store at all (the broker runs with no journal).
#![forbid(unsafe_code)]

pub mod engine;
pub mod journal;
pub mod record;
pub mod recover;
pub mod redb_engine;
mod translate;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use journal::{Fsync, Journal, Notify, Outcome};
pub use recover::Report;

use engine::Engine;
use musqratt_core::restore::Restored;

/// The store file inside the data directory.
pub const STORE_FILE: &str = "musqratt.redb";
/// The lock file: held (flock) for as long as a broker uses the directory.
pub const LOCK_FILE: &str = "LOCK";

/// Why the store could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process (a second broker) holds the directory's lock.
    Locked(PathBuf),
    Io(PathBuf, std::io::Error),
    Engine(PathBuf, engine::EngineError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Locked(dir) => write!(
                f,
                "data directory {} is in use by another broker (its {LOCK_FILE} is locked)",
                dir.display()
            ),
            OpenError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            OpenError::Engine(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for OpenError {}

/// An open store: the journal the broker records into, and the directory lock.
pub struct Store {
    pub journal: Arc<Journal>,
    _lock: File,
}

/// What `open` found in the directory.
pub struct Opened {
    pub store: Store,
    pub restored: Restored,
    pub report: Report,
    /// How long recovery took.
    pub took: std::time::Duration,
}

/// Locks `dir` (creating it), opens the store, recovers it (damaged records skipped, each
/// with a log line), and starts the commit thread. `notify` is called after every commit.
/// How the store is opened (`[storage]` in the config file).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub fsync: Fsync,
    /// `storage.max_disk_mb` in bytes (`u64::MAX` = none).
    pub max_disk_bytes: u64,
    /// The engine's page cache.
    pub cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            fsync: Fsync::Always,
            max_disk_bytes: u64::MAX,
            cache_bytes: redb_engine::CACHE_BYTES,
        }
    }
}

pub fn open(dir: &Path, options: Options, notify: Notify) -> Result<Opened, OpenError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| OpenError::Io(dir.to_owned(), e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| OpenError::Io(lock_path.clone(), e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(OpenError::Locked(dir.to_owned())),
        Err(TryLockError::Error(e)) => return Err(OpenError::Io(lock_path, e)),
    }
    let path = dir.join(STORE_FILE);
    let mut engine = match redb_engine::RedbEngine::open(&path, options.cache_bytes) {
        Ok(e) => e,
        Err(e) => {
            // The file cannot be opened at all (its header is damaged, or it was cut short
            // before its first commit): keep it aside for inspection, and start empty rather
            // than not start.
            let aside = dir.join(format!(
                "{STORE_FILE}.damaged-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ));
            tracing::error!(
                file = %path.display(),
                moved_to = %aside.display(),
                "store: the store file cannot be opened ({e}); everything in it is lost: starting with an empty store"
            );
            std::fs::rename(&path, &aside).map_err(|e| OpenError::Io(path.clone(), e))?;
            redb_engine::RedbEngine::open(&path, options.cache_bytes)
                .map_err(|e| OpenError::Engine(path.clone(), e))?
        }
    };
    let now = Instant::now();
    let recovered =
        recover::recover(&mut engine, now).map_err(|e| OpenError::Engine(path.clone(), e))?;
    if !recovered.cleanup.is_empty() {
        engine
            .commit(&recovered.cleanup, true)
            .map_err(|e| OpenError::Engine(path.clone(), e))?;
    }
    let journal = Journal::start(
        Box::new(engine),
        options.fsync,
        options.max_disk_bytes,
        recovered.refs,
        notify,
    )
    .map_err(|e| OpenError::Io(path.clone(), e))?;
    Ok(Opened {
        store: Store {
            journal: Arc::new(journal),
            _lock: lock,
        },
        restored: recovered.restored,
        report: recovered.report,
        took: started.elapsed(),
    })
}
