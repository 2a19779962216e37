//! `serve`: binds the listeners, starts the workers, and runs the acceptor on
//! the main thread (listeners + signals in one mio poll). Accepted sockets go
//! round robin to the workers' inboxes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use musqratt_core::restore::Restored;
use musqratt_core::Broker;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Settings;
use crate::inbox::{notify_durable, Inbox, Msg, Shared};
use crate::tls_config::TlsListener;
use crate::transport::Transport;
use crate::worker::{Worker, WAKER};

const SIGNALS: Token = Token(usize::MAX);
/// The default backlog drops SYNs under a connect burst (notes/memory.md).
const BACKLOG: i32 = 4096;

pub fn run(settings: &Settings, workers: usize) -> Result<(), String> {
    // The password and ACL files first: a bad one stops the start before anything is opened or bound.
    let passwords = match &settings.password_file {
        Some(path) => Some(crate::password_file::load_at_start(path)?),
        None => None,
    };
    // TLS files too: a missing or bad certificate stops the start, naming the key and file.
    let mut tls: Vec<Option<TlsListener>> = Vec::new();
    for l in &settings.listeners {
        tls.push(l.tls.as_ref().map(crate::tls_config::load).transpose()?);
    }
    let acl = match &settings.acl_file {
        Some(path) => Some(crate::acl_file::load_at_start(path)?),
        None => None,
    };
    // The store first: a second broker on the same directory stops here, before it binds.
    let shared_cell: Arc<OnceLock<Arc<Shared>>> = Arc::new(OnceLock::new());
    let store = open_store(settings, &shared_cell)?;
    // Before any socket exists: the shim routes listeners bound to the lwIP address.
    let net = crate::netstack::start(settings)?;
    let mut poll = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
    let mut listeners = Vec::new();
    for (i, addr) in settings.listeners.iter().map(|l| l.bind).enumerate() {
        let mut l = bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        poll.registry()
            .register(&mut l, Token(i), Interest::READABLE)
            .map_err(|e| format!("cannot register listener {addr}: {e}"))?;
        listeners.push(l);
    }
    // SIGHUP reloads the password, ACL and TLS files; SIGINT and SIGTERM stop the broker.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(|e| format!("cannot register signals: {e}"))?;

    let mut config = settings.broker.clone();
    // Measured after the store's recovery read what it keeps: that is start-up footprint.
    config.max_memory_bytes =
        crate::memory::message_budget(settings.max_memory_mb, crate::memory::rss_bytes())?;
    if settings.max_memory_mb != 0 {
        tracing::info!(
            max_memory_mb = settings.max_memory_mb,
            message_budget_mib = config.max_memory_bytes >> 20,
            "memory cap: messages may pin the budget, the rest is kept for the process"
        );
    }
    let mut broker = Broker::new(config, Instant::now());
    if let Some(table) = passwords {
        broker.auth.set_passwords(Some(table));
    }
    broker.acl = acl;
    let journal = match store {
        Some((store, restored)) => {
            let now = Instant::now();
            broker.restore(restored, now);
            broker.attach_journal(store.journal.clone());
            // Before any connection is served (docs/storage.md "Wills"): the wills whose time
            // passed while the broker was down. Nothing is connected: the output has no one
            // to go to, and what the publication stored is in the journal.
            broker.publish_restored_wills(now, &mut musqratt_core::Output::new());
            Some(store)
        }
        None => None,
    };
    let broker = Arc::new(broker);
    let mut polls = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..workers {
        let p = Poll::new().map_err(|e| format!("cannot create poll: {e}"))?;
        let waker = mio::Waker::new(p.registry(), WAKER)
            .map_err(|e| format!("cannot create waker: {e}"))?;
        inboxes.push(Inbox::new(waker));
        polls.push(p);
    }
    let shared = Arc::new(Shared {
        broker,
        scheduling: settings.scheduling,
        inboxes,
        live: Default::default(),
    });
    let _ = shared_cell.set(Arc::clone(&shared));
    let mut threads = Vec::new();
    for (id, p) in polls.into_iter().enumerate() {
        let registry = p
            .registry()
            .try_clone()
            .map_err(|e| format!("cannot clone poll registry: {e}"))?;
        let worker = Worker::new(id as u32, registry, shared.clone());
        let t = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || worker.run(p))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        threads.push(t);
    }
    for ((l, tls), listener) in listeners.iter().zip(&tls).zip(&settings.listeners) {
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        let scheme = match (tls.is_some(), listener.websocket) {
            (false, false) => "mqtt",
            (true, false) => "mqtts",
            (false, true) => "ws",
            (true, true) => "wss",
        };
        tracing::info!("listening on {scheme}://{addr}");
    }

    let mut acceptor = Acceptor {
        shared: &shared,
        max_connections: settings.max_connections,
        next: 0,
        batches: (0..workers).map(|_| Vec::new()).collect(),
        tls,
        websocket: settings.listeners.iter().map(|l| l.websocket).collect(),
    };
    let mut events = Events::with_capacity(64);
    'outer: loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll failed: {e}"));
        }
        for ev in events.iter() {
            if ev.token() == SIGNALS {
                for sig in signals.pending() {
                    if sig == SIGHUP {
                        match &settings.password_file {
                            Some(path) => crate::password_file::reload(&shared.broker, path),
                            None => tracing::info!("SIGHUP: no password file to reload"),
                        }
                        if let Some(path) = &settings.acl_file {
                            crate::acl_file::reload(&shared.broker, path);
                        }
                        acceptor.reload_tls(settings);
                        continue;
                    }
                    tracing::info!(signal = sig, "shutting down");
                    break 'outer;
                }
            } else if let Some(l) = listeners.get(ev.token().0) {
                acceptor.accept_all(l, ev.token().0);
            }
        }
    }
    drop(listeners); // refuse new connections while the workers close theirs
    for inbox in &shared.inboxes {
        inbox.deliver(&mut vec![Msg::Shutdown]);
    }
    for t in threads {
        let _ = t.join();
    }
    if let Some(store) = &journal {
        // After the workers: everything they recorded is committed and flushed.
        store.journal.close();
        tracing::info!("store flushed");
    }
    drop(net); // after the workers: their sockets are closed
    tracing::info!("stopped");
    Ok(())
}

/// Opens the durable store (unless `--in-memory`) and logs what recovery restored. The
/// notifier wakes the workers once `shared` exists (nothing waits on the store before).
fn open_store(
    settings: &Settings,
    shared: &Arc<OnceLock<Arc<Shared>>>,
) -> Result<Option<(musqratt_store::Store, Restored)>, String> {
    if settings.in_memory {
        return Ok(None);
    }
    let cell = Arc::clone(shared);
    let notify: musqratt_store::Notify = Box::new(move |_| {
        if let Some(s) = cell.get() {
            notify_durable(&s.inboxes);
        }
    });
    let dir = &settings.storage_dir;
    let options = musqratt_store::Options {
        fsync: settings.fsync,
        max_disk_bytes: match settings.max_disk_mb {
            0 => u64::MAX,
            mb => mb << 20,
        },
        cache_bytes: crate::memory::store_cache_bytes(settings.max_memory_mb),
    };
    let opened = musqratt_store::open(dir, options, notify)
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let r = &opened.report;
    tracing::info!(
        dir = %dir.display(),
        fsync = ?settings.fsync,
        sessions = r.sessions,
        queued = r.queued,
        retained = r.retained,
        held = r.held,
        incoming_qos2 = r.incoming_qos2,
        wills = r.wills,
        expired = r.expired,
        expired_sessions = r.expired_sessions,
        damaged = r.damaged,
        took_ms = opened.took.as_millis() as u64,
        "store opened: state restored"
    );
    Ok(Some((opened.store, opened.restored)))
}

/// A listening socket with SO_REUSEADDR and a deep backlog.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

struct Acceptor<'a> {
    shared: &'a Shared,
    max_connections: usize,
    next: usize,
    /// Per worker: sockets accepted in this round, handed over with one wakeup.
    batches: Vec<Vec<Msg>>,
    /// Per listener: its TLS configuration (`None`: plain TCP). Only this thread reads it
    /// (each accepted socket's session starts from it) and SIGHUP replaces it on this thread:
    /// no lock, and connections already accepted keep the configuration they started with.
    tls: Vec<Option<TlsListener>>,
    /// Per listener: its connections speak MQTT over WebSocket (over TLS too when it has TLS).
    websocket: Vec<bool>,
}

impl Acceptor<'_> {
    /// SIGHUP: every TLS listener rereads its files; one that fails keeps what it had.
    fn reload_tls(&mut self, settings: &Settings) {
        for (l, current) in settings.listeners.iter().zip(&mut self.tls) {
            if let (Some(files), Some(current)) = (&l.tls, current) {
                crate::tls_config::reload(files, current, l.bind);
            }
        }
    }

    /// Accepts until the backlog is empty (the listener is edge-triggered).
    fn accept_all(&mut self, listener: &TcpListener, index: usize) {
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let live = self.shared.live.load(Ordering::Relaxed);
                    if self.max_connections != 0 && live >= self.max_connections {
                        tracing::warn!(%peer, max = self.max_connections, "connection refused: limits.max_connections reached");
                        continue; // dropping the stream closes it
                    }
                    self.shared.live.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("cannot set TCP_NODELAY: {e}");
                    }
                    let transport = match self.tls.get(index) {
                        Some(Some(tls)) => match Transport::tls(stream, tls) {
                            Ok(t) => t,
                            Err(e) => {
                                tracing::warn!(%peer, "connection refused: cannot start TLS: {e}");
                                self.shared.live.fetch_sub(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                        _ => Transport::plain(stream),
                    };
                    let transport = if self.websocket.get(index) == Some(&true) {
                        // A frame bigger than the largest packet is refused before its payload.
                        let max = u64::from(self.shared.broker.config.max_packet_size);
                        transport.with_websocket(max)
                    } else {
                        transport
                    };
                    self.batches[self.next].push(Msg::Accept(Box::new(transport)));
                    self.next = (self.next + 1) % self.batches.len();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: the next connection retries.
                    tracing::warn!("accept failed: {e}");
                    break;
                }
            }
        }
        for (inbox, batch) in self.shared.inboxes.iter().zip(&mut self.batches) {
            inbox.deliver(batch);
        }
    }
}
