//! The public handles. Nothing here calls lwIP: reads and writes touch only the socket's
//! shared buffers; everything else is a message to the poll loop.
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, OnceLock};

use crate::shared::{lock, Inner, ListenerShared, ListenerState, Msg, StreamShared};
use crate::{engine, lwip, Notify, Readiness, StackConfig, StackStats};

/// One lwIP per process: its state is global.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Handle to the running stack; cheap to clone. The last handle dropped shuts it down.
#[derive(Clone)]
pub struct Stack {
    inner: Arc<Inner>,
    _guard: Arc<Guard>,
}

struct Guard(Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        shutdown_inner(&self.0);
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "tcpip stack stopped")
}

fn shutdown_inner(inner: &Inner) {
    inner.stopped.store(true, Ordering::Release);
    inner.wake();
    let on_loop = inner.thread.get().map(|t| t.id()) == Some(std::thread::current().id());
    if on_loop {
        return; // called from a notify callback: the loop ends by itself
    }
    if let Some(h) = lock(&inner.join).take() {
        let _ = h.join();
    }
}

impl Stack {
    /// Spawns the poll-loop thread "tcpip". Fails if a stack already runs in this process.
    pub fn start(cfg: StackConfig) -> io::Result<Stack> {
        if cfg.interfaces.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no interface"));
        }
        for i in &cfg.interfaces {
            if i.prefix_len > 32 || i.ip.is_unspecified() || i.link.mtu() < 576 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad interface {}/{}", i.ip, i.prefix_len),
                ));
            }
        }
        if RUNNING.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a tcpip stack already runs in this process (lwIP state is global)",
            ));
        }
        let inner = Arc::new(Inner {
            msgs: Mutex::new(Vec::new()),
            thread: OnceLock::new(),
            join: Mutex::new(None),
            stopped: AtomicBool::new(false),
            stats: Default::default(),
            owned: cfg.interfaces.iter().map(|i| i.ip).collect(),
            rx_buffer: cfg.rx_buffer.max(1),
            tx_buffer: cfg.tx_buffer.max(1),
        });
        let loop_inner = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("tcpip".into())
            .spawn(move || {
                engine::run(loop_inner, cfg);
                RUNNING.store(false, Ordering::Release);
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => {
                RUNNING.store(false, Ordering::Release);
                return Err(e);
            }
        };
        let _ = inner.thread.set(handle.thread().clone());
        *lock(&inner.join) = Some(handle);
        let guard = Arc::new(Guard(inner.clone()));
        Ok(Stack {
            inner,
            _guard: guard,
        })
    }

    /// Listens on `addr` (an interface address, or 0.0.0.0 for all; port 0 picks one).
    pub fn listen(&self, addr: SocketAddrV4, backlog: u32) -> io::Result<TcpListener> {
        let shared = Arc::new(ListenerShared {
            id: lwip::next_id(),
            inner: self.inner.clone(),
            st: Mutex::new(ListenerState {
                queue: Default::default(),
                backlog: backlog.max(1) as usize,
                closed: false,
                last: Readiness::NONE,
            }),
            notify: Mutex::new(None),
            local: OnceLock::new(),
        });
        let (tx, rx) = sync_channel(1);
        if !self.inner.send(Msg::Listen {
            shared: shared.clone(),
            addr,
            backlog,
            reply: tx,
        }) {
            return Err(stopped());
        }
        let local = rx.recv().map_err(|_| stopped())??;
        let _ = shared.local.set(local);
        Ok(TcpListener { shared })
    }

    /// Starts a connection and returns at once; the stream becomes WRITABLE when
    /// established, or gets an error (ConnectionRefused, TimedOut, ...).
    pub fn connect(
        &self,
        local: Option<SocketAddrV4>,
        remote: SocketAddrV4,
    ) -> io::Result<TcpStream> {
        let unspec = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let shared = StreamShared::new(
            lwip::next_id(),
            self.inner.clone(),
            local.unwrap_or(unspec),
            remote,
            false,
        );
        let (tx, rx) = sync_channel(1);
        if !self.inner.send(Msg::Connect {
            shared: shared.clone(),
            local,
            remote,
            reply: tx,
        }) {
            return Err(stopped());
        }
        let bound = rx.recv().map_err(|_| stopped())??;
        lock(&shared.st).local = bound;
        Ok(TcpStream { shared })
    }

    /// Is `ip` one of our interface addresses?
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.inner.owned.contains(&ip)
    }

    pub fn stats(&self) -> StackStats {
        let s = &self.inner.stats;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        StackStats {
            iterations: g(&s.iterations),
            sleeps: g(&s.sleeps),
            frames_in: g(&s.frames_in),
            frames_out: g(&s.frames_out),
            frames_dropped: g(&s.frames_dropped),
            sockets_open: g(&s.sockets_open),
            listeners_open: g(&s.listeners_open),
            accepted: g(&s.accepted),
        }
    }

    /// Stops the loop (aborting connections) and joins its thread.
    pub fn shutdown(&self) {
        shutdown_inner(&self.inner);
    }
}

pub struct TcpListener {
    shared: Arc<ListenerShared>,
}

impl TcpListener {
    /// The next established connection, or WouldBlock.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddrV4)> {
        let mut st = lock(&self.shared.st);
        match st.queue.pop_front() {
            Some(s) => {
                st.last = st.readiness();
                let peer = s.peer_addr();
                Ok((s, peer))
            }
            None if st.closed => Err(stopped()),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.shared
            .local
            .get()
            .copied()
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
    }

    pub fn readiness(&self) -> Readiness {
        lock(&self.shared.st).readiness()
    }

    pub fn set_notify(&self, n: Option<Notify>) {
        *lock(&self.shared.notify) = n;
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        // Queued, never-accepted connections are dropped (closed) with the queue.
        let q = std::mem::take(&mut lock(&self.shared.st).queue);
        drop(q);
        self.shared.inner.send(Msg::CloseListener(self.shared.id));
    }
}

pub struct TcpStream {
    shared: Arc<StreamShared>,
}

fn closed_error(kind: io::ErrorKind) -> io::Error {
    io::Error::from(kind)
}

impl TcpStream {
    pub(crate) fn from_shared(shared: Arc<StreamShared>) -> Self {
        TcpStream { shared }
    }

    /// Ok(0) = EOF; WouldBlock when no data yet.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = {
            let mut st = lock(&self.shared.st);
            let n = st.rx.pop(buf);
            if n == 0 {
                return match st.error {
                    Some(k) => Err(closed_error(k)),
                    None if st.peer_fin || st.closed || st.shut_rd => Ok(0),
                    None => Err(io::ErrorKind::WouldBlock.into()),
                };
            }
            st.consumed += n;
            st.last = st.readiness();
            n
        };
        // The loop acknowledges the bytes (reopening the window) and refills from lwIP.
        self.shared.mark_dirty();
        Ok(n)
    }

    /// WouldBlock when the send buffer is full (or not yet connected); BrokenPipe after close.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = {
            let mut st = lock(&self.shared.st);
            if let Some(k) = st.error {
                return Err(closed_error(k));
            }
            if st.shut_wr || st.closed || st.close_requested {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if !st.connected {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = st.tx.push(buf);
            st.last = st.readiness();
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            n
        };
        self.shared.mark_dirty();
        Ok(n)
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        {
            let mut st = lock(&self.shared.st);
            if st.closed && st.error.is_none() && !st.connected {
                return Err(io::ErrorKind::NotConnected.into());
            }
            if matches!(how, Shutdown::Read | Shutdown::Both) {
                st.shut_rd = true;
                let n = st.rx.len();
                st.rx.clear();
                st.consumed += n;
            }
            if matches!(how, Shutdown::Write | Shutdown::Both) {
                st.shut_wr = true;
            }
            st.last = st.readiness();
        }
        self.shared.mark_dirty();
        Ok(())
    }

    /// Resets the connection (RST); buffered data is discarded.
    pub fn abort(&self) {
        lock(&self.shared.st).abort_requested = true;
        self.shared.mark_dirty();
    }

    pub fn set_nodelay(&self, on: bool) {
        lock(&self.shared.st).nodelay = on;
        self.shared.mark_dirty();
    }

    pub fn nodelay(&self) -> bool {
        lock(&self.shared.st).nodelay
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        lock(&self.shared.st).local
    }

    pub fn peer_addr(&self) -> SocketAddrV4 {
        lock(&self.shared.st).peer
    }

    /// The pending error, once (like SO_ERROR). Reads and writes keep failing with it.
    pub fn take_error(&self) -> Option<io::Error> {
        let mut st = lock(&self.shared.st);
        if st.error_reported {
            return None;
        }
        let e = st.error.map(io::Error::from);
        if e.is_some() {
            st.error_reported = true;
            st.last = st.readiness();
        }
        e
    }

    pub fn readiness(&self) -> Readiness {
        lock(&self.shared.st).readiness()
    }

    pub fn set_notify(&self, n: Option<Notify>) {
        *lock(&self.shared.notify) = n;
    }

    /// Bytes waiting to be read (FIONREAD).
    pub fn bytes_readable(&self) -> usize {
        lock(&self.shared.st).rx.len()
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        lock(&self.shared.st).close_requested = true;
        self.shared.mark_dirty();
    }
}
