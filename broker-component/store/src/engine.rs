//! What the journal needs of a storage engine: atomic batches over a few tables, made durable
//! on request, and a scan for recovery. docs/storage.md says which engine and why.

use std::fmt;

/// The store's tables (docs/storage.md "Records" for keys and values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// client id → session record.
    Sessions,
    /// message id (u64 BE) → message record.
    Messages,
    /// client id (length-prefixed) + entry id (u64 BE) → queue entry.
    Queue,
    /// client id (length-prefixed) + packet id (as u64 BE) → empty.
    IncomingQos2,
    /// topic → message reference.
    Retained,
    /// topic (length-prefixed) + entry id (u64 BE) → message reference.
    Held,
    /// client id → will record (one per client).
    Wills,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Sessions,
        Table::Messages,
        Table::Queue,
        Table::IncomingQos2,
        Table::Retained,
        Table::Held,
        Table::Wills,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Messages => "messages",
            Table::Queue => "queue",
            Table::IncomingQos2 => "incoming_qos2",
            Table::Retained => "retained",
            Table::Held => "held",
            Table::Wills => "wills",
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
    /// Every key starting with the prefix.
    DeletePrefix(Table, Vec<u8>),
}

/// An engine failure, with what the engine said.
#[derive(Debug)]
pub struct EngineError(pub String);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

pub trait Engine: Send + 'static {
    /// Applies `batch` atomically (all of it or none survives a crash). With `sync`, returns
    /// only once the batch is on stable storage.
    fn commit(&mut self, batch: &[Change], sync: bool) -> Result<(), EngineError>;

    /// Flushes every committed batch to stable storage (`fsync = "batch"`).
    fn sync(&mut self) -> Result<(), EngineError>;

    /// Bytes the store's file takes on disk: cheap, and an upper bound on `used_bytes`.
    fn file_bytes(&self) -> u64;

    /// Bytes the store's live records take (pages in use): exact, and may cost a walk of
    /// the engine's trees, so the journal asks only near the disk budget.
    fn used_bytes(&mut self) -> Result<u64, EngineError>;

    /// Every record of `table` in key order. A record the engine itself finds damaged is
    /// reported through `damaged` and skipped, never returned.
    fn scan(
        &mut self,
        table: Table,
        each: &mut dyn FnMut(&[u8], &[u8]),
        damaged: &mut dyn FnMut(String),
    ) -> Result<(), EngineError>;
}
