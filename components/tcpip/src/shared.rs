//! State shared between application threads and the poll loop: the stack's message queue,
//! and each socket's buffers and flags behind one mutex per socket.
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, Thread};

use crate::bytequeue::ByteQueue;
use crate::{Notify, Readiness};

pub(crate) enum Msg {
    Listen {
        shared: Arc<ListenerShared>,
        addr: SocketAddrV4,
        backlog: u32,
        reply: SyncSender<io::Result<SocketAddrV4>>,
    },
    Connect {
        shared: Arc<StreamShared>,
        local: Option<SocketAddrV4>,
        remote: SocketAddrV4,
        reply: SyncSender<io::Result<SocketAddrV4>>,
    },
    /// The socket's shared state changed (data, close, shutdown, abort, option).
    Dirty(Arc<StreamShared>),
    CloseListener(u64),
}

#[derive(Default)]
pub(crate) struct Counters {
    pub iterations: AtomicU64,
    pub sleeps: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub sockets_open: AtomicU64,
    pub listeners_open: AtomicU64,
    pub accepted: AtomicU64,
}

pub(crate) struct Inner {
    pub msgs: Mutex<Vec<Msg>>,
    pub thread: OnceLock<Thread>,
    pub join: Mutex<Option<JoinHandle<()>>>,
    pub stopped: AtomicBool,
    pub stats: Counters,
    pub owned: Vec<std::net::Ipv4Addr>,
    pub rx_buffer: usize,
    pub tx_buffer: usize,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a socket lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Queues a message for the loop and wakes it; false once the stack stopped.
    pub(crate) fn send(&self, m: Msg) -> bool {
        {
            // Checked under the queue lock: the loop drains the queue (dropping reply
            // channels) only after `stopped` is set, so no message can be stranded.
            let mut q = lock(&self.msgs);
            if self.stopped.load(Ordering::Acquire) {
                return false;
            }
            q.push(m);
        }
        self.wake();
        true
    }

    pub(crate) fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

pub(crate) struct StreamState {
    pub rx: ByteQueue,
    pub tx: ByteQueue,
    /// Bytes the application read that lwIP has not been told about (tcp_recved).
    pub consumed: usize,
    pub connected: bool,
    /// The peer's FIN has been reached in the byte stream.
    pub peer_fin: bool,
    pub error: Option<io::ErrorKind>,
    pub error_reported: bool,
    /// No connection any more (closed, aborted, reset, stack stopped).
    pub closed: bool,
    pub shut_rd: bool,
    pub shut_wr: bool,
    pub close_requested: bool,
    pub abort_requested: bool,
    pub nodelay: bool,
    pub local: SocketAddrV4,
    pub peer: SocketAddrV4,
    /// Readiness last observed, for edge detection.
    pub last: Readiness,
}

impl StreamState {
    pub(crate) fn readiness(&self) -> Readiness {
        let mut r = Readiness::NONE;
        if !self.rx.is_empty()
            || self.peer_fin
            || self.error.is_some()
            || self.closed
            || self.shut_rd
        {
            r |= Readiness::READABLE;
        }
        if self.connected
            && !self.closed
            && !self.shut_wr
            && self.error.is_none()
            && self.tx.room() > 0
        {
            r |= Readiness::WRITABLE;
        }
        if self.peer_fin || self.closed || self.error.is_some() {
            r |= Readiness::HUP;
        }
        if self.error.is_some() && !self.error_reported {
            r |= Readiness::ERROR;
        }
        r
    }
}

pub(crate) struct StreamShared {
    pub id: u64,
    pub inner: Arc<Inner>,
    pub st: Mutex<StreamState>,
    pub notify: Mutex<Option<Notify>>,
    /// Queued on the loop's message queue and not yet serviced.
    pub dirty: AtomicBool,
}

impl StreamShared {
    pub(crate) fn new(
        id: u64,
        inner: Arc<Inner>,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        connected: bool,
    ) -> Arc<Self> {
        let st = StreamState {
            rx: ByteQueue::new(inner.rx_buffer),
            tx: ByteQueue::new(inner.tx_buffer),
            consumed: 0,
            connected,
            peer_fin: false,
            error: None,
            error_reported: false,
            closed: false,
            shut_rd: false,
            shut_wr: false,
            close_requested: false,
            abort_requested: false,
            nodelay: false,
            local,
            peer,
            last: Readiness::NONE,
        };
        Arc::new(StreamShared {
            id,
            inner,
            st: Mutex::new(st),
            notify: Mutex::new(None),
            dirty: AtomicBool::new(false),
        })
    }

    /// App side: tell the loop this socket needs service (once until serviced).
    pub(crate) fn mark_dirty(self: &Arc<Self>) {
        if !self.dirty.swap(true, Ordering::AcqRel) && !self.inner.send(Msg::Dirty(self.clone())) {
            self.dirty.store(false, Ordering::Release);
        }
    }

    /// Loop side: applies `f` to the state and calls the notify callback (outside the lock)
    /// if readiness gained a bit.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut StreamState) -> R) -> R {
        let (r, gained, now) = {
            let mut st = lock(&self.st);
            let r = f(&mut st);
            let now = st.readiness();
            let gained = now & !st.last;
            st.last = now;
            (r, gained, now)
        };
        if !gained.is_empty() {
            let n = lock(&self.notify).clone();
            if let Some(n) = n {
                n(now);
            }
        }
        r
    }
}

pub(crate) struct ListenerState {
    pub queue: VecDeque<crate::TcpStream>,
    pub backlog: usize,
    pub closed: bool,
    pub last: Readiness,
}

impl ListenerState {
    pub(crate) fn readiness(&self) -> Readiness {
        let mut r = Readiness::NONE;
        if !self.queue.is_empty() || self.closed {
            r |= Readiness::READABLE;
        }
        if self.closed {
            r |= Readiness::HUP;
        }
        r
    }
}

pub(crate) struct ListenerShared {
    pub id: u64,
    pub inner: Arc<Inner>,
    pub st: Mutex<ListenerState>,
    pub notify: Mutex<Option<Notify>>,
    pub local: OnceLock<SocketAddrV4>,
}

impl ListenerShared {
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ListenerState) -> R) -> R {
        let (r, gained, now) = {
            let mut st = lock(&self.st);
            let r = f(&mut st);
            let now = st.readiness();
            let gained = now & !st.last;
            st.last = now;
            (r, gained, now)
        };
        if !gained.is_empty() {
            let n = lock(&self.notify).clone();
            if let Some(n) = n {
                n(now);
            }
        }
        r
    }
}
