//! Which fds are ours: a lock-free bitmap answers "is this fd served by the user-level stack?"
//! on every interposed call (one atomic load, so kernel fds pay almost nothing), and a sharded
//! map holds the sockets themselves.
//!
//! A user-level socket still owns a real kernel fd, a placeholder eventfd put at the socket's fd
//! number with dup3: fd numbers then stay unique across both worlds (the kernel never hands that
//! number to a file while we use it), and calls we do not interpose (fstat, say) reach a harmless
//! object instead of somebody else's file.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use libc::c_int;
use musqratt_tcpip::{TcpListener, TcpStream};

use crate::epoll::UserEpoll;

/// Fds at or above this number are never user-level sockets (the placeholder gets EMFILE).
pub const MAX_FDS: usize = 1 << 20;
const SHARDS: usize = 64;

type EpollSlot = Arc<Mutex<Option<Arc<UserEpoll>>>>;

pub enum Kind {
    /// `bind` to a user-level address happened; `listen` or `connect` comes next.
    Bound(SocketAddrV4),
    Listener(TcpListener),
    Stream(TcpStream),
}

/// One user-level socket, at fd `fd`.
pub struct Entry {
    pub fd: c_int,
    pub kind: Kind,
    pub nonblocking: AtomicBool,
    /// Its epoll registration (one epoll per socket, as mio does).
    pub reg: Mutex<Option<Registration>>,
}

#[derive(Clone)]
pub struct Registration {
    pub epoll: Weak<UserEpoll>,
    pub events: u32,
    pub data: u64,
}

impl Entry {
    pub fn new(fd: c_int, kind: Kind, nonblocking: bool) -> Entry {
        Entry {
            fd,
            kind,
            nonblocking: AtomicBool::new(nonblocking),
            reg: Mutex::new(None),
        }
    }
}

/// One bit per fd (128 KiB for `MAX_FDS`).
struct Bitmap(Box<[AtomicU64]>);

impl Bitmap {
    fn new(bits: usize) -> Bitmap {
        Bitmap((0..bits / 64).map(|_| AtomicU64::new(0)).collect())
    }
    #[inline]
    fn get(&self, i: usize) -> bool {
        self.0
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }
    /// Sets bit `i` to `on`; returns its previous value.
    fn set(&self, i: usize, on: bool) -> bool {
        let Some(w) = self.0.get(i / 64) else {
            return false;
        };
        let bit = 1 << (i % 64);
        let old = if on {
            w.fetch_or(bit, Ordering::AcqRel)
        } else {
            w.fetch_and(!bit, Ordering::AcqRel)
        };
        old & bit != 0
    }
}

pub struct Table {
    user: Bitmap,
    /// AF_INET stream sockets created while the stack is installed: `bind` or `connect` decides
    /// whether they move to the user-level stack.
    candidate: Bitmap,
    shards: Vec<RwLock<HashMap<c_int, Arc<Entry>>>>,
    /// Epoll fds (duplicates share a slot); the slot holds the user-level side once a
    /// user-level socket is registered.
    epolls: RwLock<HashMap<c_int, EpollSlot>>,
    pub epoll_count: AtomicU32,
}

fn slot(fd: c_int) -> Option<usize> {
    usize::try_from(fd).ok().filter(|&i| i < MAX_FDS)
}

impl Table {
    pub fn new() -> Table {
        Table {
            user: Bitmap::new(MAX_FDS),
            candidate: Bitmap::new(MAX_FDS),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            epolls: RwLock::new(HashMap::new()),
            epoll_count: AtomicU32::new(0),
        }
    }

    #[inline]
    pub fn is_user(&self, fd: c_int) -> bool {
        slot(fd).is_some_and(|i| self.user.get(i))
    }

    pub fn get(&self, fd: c_int) -> Option<Arc<Entry>> {
        if !self.is_user(fd) {
            return None;
        }
        let shard = &self.shards[fd as usize % SHARDS];
        shard
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fd)
            .cloned()
    }

    /// Puts (or replaces) the socket at `entry.fd`. Returns false when the fd is out of range.
    pub fn insert(&self, entry: Arc<Entry>) -> bool {
        let Some(i) = slot(entry.fd) else {
            return false;
        };
        let shard = &self.shards[i % SHARDS];
        shard
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.fd, entry);
        self.user.set(i, true);
        self.candidate.set(i, false);
        true
    }

    pub fn remove(&self, fd: c_int) -> Option<Arc<Entry>> {
        let i = slot(fd)?;
        if !self.user.set(i, false) {
            return None;
        }
        let shard = &self.shards[i % SHARDS];
        shard.write().unwrap_or_else(|e| e.into_inner()).remove(&fd)
    }

    pub fn set_candidate(&self, fd: c_int, on: bool) {
        if let Some(i) = slot(fd) {
            self.candidate.set(i, on);
        }
    }

    pub fn is_candidate(&self, fd: c_int) -> bool {
        slot(fd).is_some_and(|i| self.candidate.get(i))
    }

    /// The user-level side of epoll `epfd`, if a user-level socket was ever registered in it
    /// (through this fd or a duplicate of it).
    pub fn epoll(&self, epfd: c_int) -> Option<Arc<UserEpoll>> {
        if self.epoll_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let slot = self
            .epolls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&epfd)
            .cloned()?;
        let ep = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ep
    }

    /// Tracks a new epoll fd (epoll_create1 after install), so duplicates of it can be aliased.
    pub fn track_epoll(&self, epfd: c_int) {
        let mut map = self.epolls.write().unwrap_or_else(|e| e.into_inner());
        if map.insert(epfd, Arc::new(Mutex::new(None))).is_none() {
            self.epoll_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// `dup` of a tracked epoll fd: both numbers name the same kernel epoll, so they share one
    /// user-level side (mio's `Registry::try_clone` registers through the duplicate while the
    /// worker waits on the original).
    pub fn alias_epoll(&self, epfd: c_int, dup: c_int) {
        let mut map = self.epolls.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = map.get(&epfd).cloned() {
            if map.insert(dup, slot).is_none() {
                self.epoll_count.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    pub fn is_tracked_epoll(&self, epfd: c_int) -> bool {
        self.epoll_count.load(Ordering::Acquire) != 0
            && self
                .epolls
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&epfd)
    }

    pub fn epoll_or_create(&self, epfd: c_int) -> std::io::Result<Arc<UserEpoll>> {
        let slot = {
            let mut map = self.epolls.write().unwrap_or_else(|e| e.into_inner());
            match map.get(&epfd) {
                Some(slot) => slot.clone(),
                None => {
                    // An epoll created before install: track it from now on.
                    let slot: EpollSlot = Arc::new(Mutex::new(None));
                    map.insert(epfd, slot.clone());
                    self.epoll_count.fetch_add(1, Ordering::AcqRel);
                    slot
                }
            }
        };
        let mut ep = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ep) = ep.as_ref() {
            return Ok(ep.clone());
        }
        let new = Arc::new(UserEpoll::new(epfd)?);
        *ep = Some(new.clone());
        Ok(new)
    }

    /// `close` of an epoll fd: forget this number; the user-level side lives while another
    /// duplicate still names it.
    pub fn remove_epoll(&self, epfd: c_int) {
        if self.epoll_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let removed = self
            .epolls
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&epfd);
        if removed.is_some() {
            self.epoll_count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
