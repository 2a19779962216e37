//! The embedded engine: redb, one file, copy-on-write B-trees with checksums and atomic
//! commits (docs/storage.md "Choosing the engine").

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::engine::{Change, Engine, EngineError, Table};

/// redb's page cache, unless `limits.max_memory_mb` asks for less (server/src/memory.rs).
pub const CACHE_BYTES: usize = 32 << 20;

type BytesTable<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

fn err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError(format!("{what}: {e}"))
}

/// The smallest key greater than every key starting with `prefix` (None: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub struct RedbEngine {
    db: Database,
    path: std::path::PathBuf,
}

impl RedbEngine {
    /// Opens (or creates) the store file and its tables.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<RedbEngine, EngineError> {
        // redb's cache defaults to 1 GiB, and the check after an unclean stop fills it with the
        // whole file: bounded here (docs/storage.md "How the store uses redb").
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| err(&path.display().to_string(), e))?;
        let engine = RedbEngine {
            db,
            path: path.to_owned(),
        };
        let mut txn = engine.db.begin_write().map_err(|e| err("begin", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| err("durability", e))?;
        for t in Table::ALL {
            txn.open_table(def(t)).map_err(|e| err(t.name(), e))?;
        }
        txn.commit().map_err(|e| err("commit", e))?;
        Ok(engine)
    }
}

impl Engine for RedbEngine {
    fn commit(&mut self, batch: &[Change], sync: bool) -> Result<(), EngineError> {
        let mut txn = self.db.begin_write().map_err(|e| err("begin", e))?;
        let durability = if sync {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability)
            .map_err(|e| err("durability", e))?;
        {
            // Tables are opened as the batch needs them; a batch touches a few.
            let mut open: Vec<(Table, BytesTable<'_>)> = Vec::new();
            for change in batch {
                let t = match change {
                    Change::Put(t, ..) | Change::Delete(t, _) | Change::DeletePrefix(t, _) => *t,
                };
                let i = match open.iter().position(|(ot, _)| *ot == t) {
                    Some(i) => i,
                    None => {
                        let table = txn.open_table(def(t)).map_err(|e| err(t.name(), e))?;
                        open.push((t, table));
                        open.len() - 1
                    }
                };
                let table = &mut open[i].1;
                match change {
                    Change::Put(_, k, v) => {
                        table
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(|e| err("insert", e))?;
                    }
                    Change::Delete(_, k) => {
                        table.remove(k.as_slice()).map_err(|e| err("remove", e))?;
                    }
                    Change::DeletePrefix(_, p) => {
                        let lo = p.as_slice();
                        let r = match prefix_end(p) {
                            Some(hi) => table.retain_in(lo..hi.as_slice(), |_, _| false),
                            None => table.retain_in(lo.., |_, _| false),
                        };
                        r.map_err(|e| err("remove range", e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| err("commit", e))
    }

    fn sync(&mut self) -> Result<(), EngineError> {
        // An empty durable commit makes every earlier non-durable one durable.
        self.commit(&[], true)
    }

    fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    fn used_bytes(&mut self) -> Result<u64, EngineError> {
        // redb grows its file by doubling and keeps freed pages for reuse, so the file's
        // length says little once it is large: its allocated pages are what is in use.
        let txn = self.db.begin_write().map_err(|e| err("begin", e))?;
        let stats = txn.stats().map_err(|e| err("stats", e))?;
        let used = stats.allocated_pages() * stats.page_size() as u64;
        txn.abort().map_err(|e| err("abort", e))?;
        Ok(used)
    }

    fn scan(
        &mut self,
        table: Table,
        each: &mut dyn FnMut(&[u8], &[u8]),
        damaged: &mut dyn FnMut(String),
    ) -> Result<(), EngineError> {
        let txn = self.db.begin_read().map_err(|e| err("begin read", e))?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(e) => {
                damaged(format!("table {} unreadable: {e}", table.name()));
                return Ok(());
            }
        };
        let iter = match t.iter() {
            Ok(i) => i,
            Err(e) => {
                damaged(format!("table {} unreadable: {e}", table.name()));
                return Ok(());
            }
        };
        for item in iter {
            match item {
                Ok((k, v)) => each(k.value(), v.value()),
                Err(e) => {
                    // A damaged page: the rest of the table behind it is not reachable.
                    damaged(format!(
                        "table {}: {e}; the rest of it is lost",
                        table.name()
                    ));
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
