//! The candidate engines behind one small trait: a durable commit of a batch of puts and deletes
//! in two key spaces ("msgs" and "queue"), a full ordered scan of "queue", a prefix scan of one
//! session's queue, and point lookups (for the crash check).

use std::path::Path;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Which key space an operation targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Msgs,
    Queue,
}

/// One write of a batch: `value == None` is a delete.
pub struct Op {
    pub space: Space,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// How durable a commit must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The engine's ordinary durable commit: durable when `commit` returns.
    Durable,
    /// The strongest setting the engine offers (used by the crash check).
    Strongest,
}

pub trait Engine {
    /// Commits `ops` as one atomic batch, durable when this returns.
    fn commit(&mut self, ops: &[Op]) -> Res<()>;
    /// Iterates every queue entry of every session in key order; returns (count, sorted?).
    fn scan_queue(&self) -> Res<(u64, bool)>;
    /// Iterates one session's queue entries (a prefix/range scan); returns the count.
    fn scan_session(&self, session: u64) -> Res<u64>;
    fn get(&self, space: Space, key: &[u8]) -> Res<Option<Vec<u8>>>;
}

pub const ENGINES: &[&str] = &["redb", "redb-qr", "fjall", "fjall-small", "canopydb"];

pub fn describe(name: &str) -> &'static str {
    match name {
        "redb" => "redb 5.0.0, Durability::Immediate (default), 1-phase commit",
        "redb-qr" => "redb 5.0.0, Durability::Immediate + set_quick_repair(true) (2-phase commit, allocator state saved per commit)",
        "redb-c32" => "redb 5.0.0 as `redb`, with Builder::set_cache_size(32 MiB) (default 1 GiB)",
        "fjall" => "fjall 3.1.13, WriteBatch with durability(Some(PersistMode::SyncAll)), default sizes (64 MiB memtable per keyspace, 512 MiB journal cap)",
        "fjall-small" => "fjall 3.1.13 as above with max_memtable_size(8 MiB) per keyspace and max_journaling_size(64 MiB, the minimum)",
        "canopydb" => "canopydb 0.2.5, WAL on, commit_with(sync = true), page cache 64 MiB",
        _ => "?",
    }
}

pub fn open(name: &str, dir: &Path, mode: Mode) -> Res<Box<dyn Engine>> {
    std::fs::create_dir_all(dir)?;
    Ok(match name {
        "redb" => Box::new(Redb::open(dir, mode, false)?),
        "redb-qr" => Box::new(Redb::open(dir, mode, true)?),
        "redb-c32" => Box::new(Redb::open_with_cache(dir, mode, false, Some(32 << 20))?),
        "fjall" => Box::new(Fjall::open(dir, false)?),
        "fjall-small" => Box::new(Fjall::open(dir, true)?),
        "canopydb" => Box::new(Canopy::open(dir, mode)?),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

/// Queue keys are session id (u64 BE) + sequence (u64 BE): a session's prefix is its 8 bytes.
fn session_bounds(session: u64) -> ([u8; 16], [u8; 16]) {
    let mut lo = [0u8; 16];
    lo[..8].copy_from_slice(&session.to_be_bytes());
    let mut hi = [0xffu8; 16];
    hi[..8].copy_from_slice(&session.to_be_bytes());
    (lo, hi)
}

// ---------------------------------------------------------------------------------------------
// redb

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const R_MSGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("msgs");
const R_QUEUE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queue");

pub struct Redb {
    db: redb::Database,
    mode: Mode,
    quick_repair: bool,
}

impl Redb {
    fn open(dir: &Path, mode: Mode, quick_repair: bool) -> Res<Self> {
        Self::open_with_cache(dir, mode, quick_repair, None)
    }

    fn open_with_cache(
        dir: &Path,
        mode: Mode,
        quick_repair: bool,
        cache: Option<usize>,
    ) -> Res<Self> {
        let mut b = redb::Builder::new();
        if let Some(bytes) = cache {
            b.set_cache_size(bytes);
        }
        let db = b.create(dir.join("store.redb"))?;
        // Create both tables up front so that read transactions always find them.
        let txn = db.begin_write()?;
        txn.open_table(R_MSGS)?;
        txn.open_table(R_QUEUE)?;
        txn.commit()?;
        Ok(Self {
            db,
            mode,
            quick_repair,
        })
    }
}

impl Engine for Redb {
    fn commit(&mut self, ops: &[Op]) -> Res<()> {
        let mut txn = self.db.begin_write()?;
        // Durability::Immediate is the default: commit() returns after fsync.
        if self.mode == Mode::Strongest {
            txn.set_two_phase_commit(true);
        }
        if self.quick_repair {
            txn.set_quick_repair(true);
        }
        {
            let mut msgs = txn.open_table(R_MSGS)?;
            let mut queue = txn.open_table(R_QUEUE)?;
            for op in ops {
                let t = match op.space {
                    Space::Msgs => &mut msgs,
                    Space::Queue => &mut queue,
                };
                match &op.value {
                    Some(v) => {
                        t.insert(op.key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        t.remove(op.key.as_slice())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn scan_queue(&self) -> Res<(u64, bool)> {
        let r = self.db.begin_read()?;
        let t = r.open_table(R_QUEUE)?;
        let (mut n, mut sorted, mut prev) = (0u64, true, Vec::new());
        for e in t.iter()? {
            let (k, v) = e?;
            let k = k.value();
            std::hint::black_box(v.value());
            if !prev.is_empty() && k <= prev.as_slice() {
                sorted = false;
            }
            prev.clear();
            prev.extend_from_slice(k);
            n += 1;
        }
        Ok((n, sorted))
    }

    fn scan_session(&self, session: u64) -> Res<u64> {
        let r = self.db.begin_read()?;
        let t = r.open_table(R_QUEUE)?;
        let (lo, hi) = session_bounds(session);
        let mut n = 0;
        for e in t.range(lo.as_slice()..=hi.as_slice())? {
            let (_k, v) = e?;
            std::hint::black_box(v.value());
            n += 1;
        }
        Ok(n)
    }

    fn get(&self, space: Space, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(match space {
            Space::Msgs => R_MSGS,
            Space::Queue => R_QUEUE,
        })?;
        let v = t.get(key)?.map(|g| g.value().to_vec());
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// fjall

pub struct Fjall {
    db: fjall::Database,
    msgs: fjall::Keyspace,
    queue: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path, small: bool) -> Res<Self> {
        let mut b = fjall::Database::builder(dir);
        if small {
            b = b.max_journaling_size(64 * 1024 * 1024);
        }
        let db = b.open()?;
        let opts = move || {
            let o = fjall::KeyspaceCreateOptions::default();
            if small {
                o.max_memtable_size(8 * 1024 * 1024)
            } else {
                o
            }
        };
        let msgs = db.keyspace("msgs", opts)?;
        let queue = db.keyspace("queue", opts)?;
        Ok(Self { db, msgs, queue })
    }
}

impl Engine for Fjall {
    fn commit(&mut self, ops: &[Op]) -> Res<()> {
        // SyncAll is fjall's strongest mode; it is used for both `Mode`s.
        let mut b = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        for op in ops {
            let ks = match op.space {
                Space::Msgs => &self.msgs,
                Space::Queue => &self.queue,
            };
            match &op.value {
                Some(v) => b.insert(ks, op.key.as_slice(), v.as_slice()),
                None => b.remove(ks, op.key.as_slice()),
            }
        }
        b.commit()?;
        Ok(())
    }

    fn scan_queue(&self) -> Res<(u64, bool)> {
        let (mut n, mut sorted, mut prev) = (0u64, true, Vec::new());
        for g in self.queue.iter() {
            let (k, v) = g.into_inner()?;
            std::hint::black_box(&v);
            if !prev.is_empty() && &*k <= prev.as_slice() {
                sorted = false;
            }
            prev.clear();
            prev.extend_from_slice(&k);
            n += 1;
        }
        Ok((n, sorted))
    }

    fn scan_session(&self, session: u64) -> Res<u64> {
        let mut n = 0;
        for g in self.queue.prefix(session.to_be_bytes()) {
            let (_k, v) = g.into_inner()?;
            std::hint::black_box(&v);
            n += 1;
        }
        Ok(n)
    }

    fn get(&self, space: Space, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let ks = match space {
            Space::Msgs => &self.msgs,
            Space::Queue => &self.queue,
        };
        Ok(ks.get(key)?.map(|v| v.to_vec()))
    }
}

// ---------------------------------------------------------------------------------------------
// canopydb

pub struct Canopy {
    db: canopydb::Database,
}

impl Canopy {
    fn open(dir: &Path, mode: Mode) -> Res<Self> {
        let mut env = canopydb::EnvOptions::new(dir);
        // The default page cache is 1 GiB; the broker would not give it that much.
        env.page_cache_size = 64 * 1024 * 1024;
        if mode == Mode::Strongest {
            env.use_checksums = true;
        }
        let mut dbo = canopydb::DbOptions::new();
        dbo.use_wal = true;
        dbo.default_commit_sync = true;
        let db = canopydb::Database::with_options(env, dbo)?;
        let tx = db.begin_write()?;
        tx.get_or_create_tree(b"msgs")?;
        tx.get_or_create_tree(b"queue")?;
        tx.commit_with(true)?;
        Ok(Self { db })
    }
}

impl Engine for Canopy {
    fn commit(&mut self, ops: &[Op]) -> Res<()> {
        let tx = self.db.begin_write()?;
        {
            let mut msgs = tx.get_or_create_tree(b"msgs")?;
            let mut queue = tx.get_or_create_tree(b"queue")?;
            for op in ops {
                let t = match op.space {
                    Space::Msgs => &mut msgs,
                    Space::Queue => &mut queue,
                };
                match &op.value {
                    Some(v) => t.insert(&op.key, v)?,
                    None => {
                        t.delete(&op.key)?;
                    }
                }
            }
        }
        tx.commit_with(true)?; // waits for the WAL fsync
        Ok(())
    }

    fn scan_queue(&self) -> Res<(u64, bool)> {
        let rx = self.db.begin_read()?;
        let t = rx.get_tree(b"queue")?.ok_or("no queue tree")?;
        let (mut n, mut sorted, mut prev) = (0u64, true, Vec::new());
        for e in t.iter()? {
            let (k, v) = e?;
            std::hint::black_box(&v);
            if !prev.is_empty() && k.as_ref() <= prev.as_slice() {
                sorted = false;
            }
            prev.clear();
            prev.extend_from_slice(k.as_ref());
            n += 1;
        }
        Ok((n, sorted))
    }

    fn scan_session(&self, session: u64) -> Res<u64> {
        let rx = self.db.begin_read()?;
        let t = rx.get_tree(b"queue")?.ok_or("no queue tree")?;
        let mut n = 0;
        for e in t.prefix(&session.to_be_bytes())? {
            let (_k, v) = e?;
            std::hint::black_box(&v);
            n += 1;
        }
        Ok(n)
    }

    fn get(&self, space: Space, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let rx = self.db.begin_read()?;
        let name: &[u8] = match space {
            Space::Msgs => b"msgs",
            Space::Queue => b"queue",
        };
        let t = rx.get_tree(name)?.ok_or("no tree")?;
        Ok(t.get(key)?.map(|b| b.as_ref().to_vec()))
    }
}
