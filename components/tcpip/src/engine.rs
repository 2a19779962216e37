//! The poll loop: the only thread that calls lwIP.
//!
//! Each iteration: rx burst from every link → lwIP input; lwIP's deferred callbacks
//! (loopback); events from lwIP callbacks (phase 1: state only); messages from the
//! application (listen, connect, dirty sockets, listener close); service of dirty sockets
//! (phase 2: the lwIP calls: tcp_recved, tcp_write, tcp_output, close, shutdown, abort);
//! lwIP timers; flush of every link. An iteration that did nothing backs off: a few spins,
//! then sleeps growing up to `idle_sleep_max`, woken early by any message (thread park).
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::lwip::{self, Event, Netif, Pbuf, Pcb};
use crate::shared::{lock, Inner, ListenerShared, Msg, StreamShared};
use crate::sock::{service_one, Sock};
use crate::{StackConfig, TcpStream};

struct NetifRec {
    ptr: Netif,
    ip: Ipv4Addr,
    mask: u32,
    has_gw: bool,
}

struct Lsn {
    shared: Arc<ListenerShared>,
    pcbs: Vec<Pcb>,
}

struct Engine {
    inner: Arc<Inner>,
    netifs: Vec<NetifRec>,
    socks: HashMap<u64, Sock>,
    lsns: HashMap<u64, Lsn>,
    work: Vec<u64>,
    max_sockets: usize,
}

fn err_kind(e: i8, connected: bool) -> io::ErrorKind {
    match e {
        lwip::ERR_RST if !connected => io::ErrorKind::ConnectionRefused,
        lwip::ERR_RST => io::ErrorKind::ConnectionReset,
        lwip::ERR_ABRT if !connected => io::ErrorKind::TimedOut,
        lwip::ERR_ABRT => io::ErrorKind::ConnectionAborted,
        lwip::ERR_TIMEOUT => io::ErrorKind::TimedOut,
        lwip::ERR_CLSD | lwip::ERR_CONN => io::ErrorKind::NotConnected,
        lwip::ERR_USE => io::ErrorKind::AddrInUse,
        lwip::ERR_MEM => io::ErrorKind::OutOfMemory,
        lwip::ERR_ISCONN => io::ErrorKind::AlreadyExists,
        lwip::ERR_VAL => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    }
}

fn lwip_error(e: i8) -> io::Error {
    if e == lwip::ERR_RTE {
        return io::Error::from_raw_os_error(101); // ENETUNREACH: no ErrorKind on our MSRV
    }
    io::Error::new(err_kind(e, true), format!("lwIP error {e}"))
}

fn mask_of(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

pub(crate) fn run(inner: Arc<Inner>, cfg: StackConfig) {
    let mut ifaces = cfg.interfaces;
    let mut infos = Vec::new();
    let mut boxes = Vec::new();
    for i in ifaces.drain(..) {
        infos.push((i.ip, i.prefix_len, i.gateway));
        boxes.push(i.link);
    }
    lwip::init(boxes);
    let mut netifs = Vec::new();
    for (idx, (ip, prefix, gw)) in infos.into_iter().enumerate() {
        let (mac, mtu) = lwip::link_info(idx);
        let mask = mask_of(prefix);
        let ptr = lwip::netif_add(
            idx,
            mac,
            mtu,
            ip,
            Ipv4Addr::from(mask),
            gw.unwrap_or(Ipv4Addr::UNSPECIFIED),
        );
        if ptr.is_null() {
            continue;
        }
        netifs.push(NetifRec {
            ptr,
            ip,
            mask,
            has_gw: gw.is_some(),
        });
    }
    let default = netifs
        .iter()
        .find(|n| n.has_gw)
        .or(netifs.first())
        .map(|n| n.ptr);
    if let Some(d) = default {
        lwip::netif_set_default(d);
    }
    let mut eng = Engine {
        inner,
        netifs,
        socks: HashMap::new(),
        lsns: HashMap::new(),
        work: Vec::new(),
        max_sockets: cfg.max_sockets,
    };
    eng.main_loop(cfg.idle_sleep_max);
    eng.teardown();
}

impl Engine {
    fn main_loop(&mut self, sleep_max: Duration) {
        let mut pbufs: Vec<Pbuf> = Vec::with_capacity(64);
        let mut idle: u32 = 0;
        let stats = self.inner.clone();
        let stats = &stats.stats;
        while !self.inner.stopped.load(Ordering::Acquire) {
            stats.iterations.fetch_add(1, Ordering::Relaxed);
            let mut busy = 0usize;
            for i in 0..self.netifs.len().min(lwip::links_len()) {
                pbufs.clear();
                let n = lwip::recv_burst(i, &mut pbufs);
                stats.frames_in.fetch_add(n as u64, Ordering::Relaxed);
                busy += n;
                for &p in &pbufs {
                    lwip::netif_input(self.netifs[i].ptr, p);
                }
            }
            for n in &self.netifs {
                lwip::netif_poll(n.ptr);
            }
            busy += lwip::run_deferred();
            busy += self.events();
            busy += self.messages();
            busy += self.service();
            lwip::check_timeouts();
            busy += self.events();
            busy += self.service();
            lwip::flush_links();
            let (out, dropped) = lwip::take_tx_counts();
            stats.frames_out.fetch_add(out, Ordering::Relaxed);
            stats.frames_dropped.fetch_add(dropped, Ordering::Relaxed);
            busy += out as usize;
            if busy > 0 {
                idle = 0;
                continue;
            }
            idle = idle.saturating_add(1);
            if idle < 64 {
                std::hint::spin_loop();
                continue;
            }
            if !lock(&self.inner.msgs).is_empty() {
                continue;
            }
            // 16 µs doubling per idle sleep, capped.
            let exp = (idle - 64).min(16);
            let d = Duration::from_micros(16u64 << exp).min(sleep_max);
            stats.sleeps.fetch_add(1, Ordering::Relaxed);
            std::thread::park_timeout(d);
        }
    }

    fn enqueue(&mut self, id: u64) {
        if let Some(s) = self.socks.get_mut(&id) {
            if !s.queued {
                s.queued = true;
                self.work.push(id);
            }
        }
    }

    /// Phase 1: applies lwIP's callbacks to the socket states. No lwIP call here except
    /// freeing pbufs we own, so a pcb freed later in the same burst is never touched.
    fn events(&mut self) -> usize {
        let evs = lwip::take_events();
        let n = evs.len();
        for ev in evs {
            match ev {
                Event::Recv { id, p } => {
                    let Some(s) = self.socks.get_mut(&id) else {
                        if !p.is_null() {
                            lwip::pbuf_free(p);
                        }
                        continue;
                    };
                    if p.is_null() {
                        s.fin_pending = true;
                    } else if lock(&s.shared.st).shut_rd {
                        // Discarded, but acknowledged so the window stays open.
                        lock(&s.shared.st).consumed += lwip::pbuf_len(p);
                        lwip::pbuf_free(p);
                    } else {
                        s.pending.push_back(p);
                    }
                    self.enqueue(id);
                }
                Event::Sent { id } => self.enqueue(id),
                Event::Connected { id } => {
                    if let Some(s) = self.socks.get(&id) {
                        s.shared.update(|st| st.connected = true);
                    }
                    self.enqueue(id);
                }
                Event::Err { id, err } => {
                    let Some(s) = self.socks.get_mut(&id) else {
                        continue;
                    };
                    s.pcb = std::ptr::null_mut();
                    if err == lwip::ERR_CLSD {
                        // Not an error: lwIP freed the pcb after a clean close both ways
                        // (our FIN acknowledged after the peer's, i.e. LAST_ACK done). Data
                        // received before the peer's FIN is still delivered (`service_one`).
                        s.fin_pending = true;
                    } else {
                        for p in s.pending.drain(..) {
                            lwip::pbuf_free(p);
                        }
                        s.shared.update(|st| {
                            st.error = Some(err_kind(err, st.connected));
                            st.closed = true;
                        });
                    }
                    self.enqueue(id);
                }
                Event::Accepted { listener, id, pcb } => self.accepted(listener, id, pcb),
            }
        }
        n
    }

    fn accepted(&mut self, listener: u64, id: u64, pcb: Pcb) {
        let (lip, lport, rip, rport) = lwip::addrs(pcb);
        let shared = StreamShared::new(
            id,
            self.inner.clone(),
            SocketAddrV4::new(lip, lport),
            SocketAddrV4::new(rip, rport),
            true,
        );
        self.socks.insert(
            id,
            Sock {
                shared: shared.clone(),
                pcb,
                pending: VecDeque::new(),
                pending_off: 0,
                fin_pending: false,
                wr_done: false,
                nodelay: false,
                queued: false,
            },
        );
        let full = self.socks.len() + self.lsns.len() > self.max_sockets;
        let admitted = match self.lsns.get(&listener) {
            Some(l) if !full => l.shared.update(|st| {
                if st.closed || st.queue.len() >= st.backlog {
                    return false;
                }
                st.queue.push_back(TcpStream::from_shared(shared.clone()));
                true
            }),
            _ => false,
        };
        if admitted {
            self.inner.stats.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            // Reset in phase 2 (the pcb may still die within this burst).
            let mut st = lock(&shared.st);
            st.abort_requested = true;
            st.close_requested = true;
        }
        self.enqueue(id);
    }

    fn messages(&mut self) -> usize {
        let msgs = std::mem::take(&mut *lock(&self.inner.msgs));
        let n = msgs.len();
        for m in msgs {
            match m {
                Msg::Dirty(s) => {
                    s.dirty.store(false, Ordering::Release);
                    self.enqueue(s.id);
                }
                Msg::Listen {
                    shared,
                    addr,
                    backlog,
                    reply,
                } => {
                    let r = self.listen(shared, addr, backlog);
                    let _ = reply.send(r);
                }
                Msg::Connect {
                    shared,
                    local,
                    remote,
                    reply,
                } => {
                    let r = self.connect(shared, local, remote);
                    let _ = reply.send(r);
                }
                Msg::CloseListener(id) => {
                    if let Some(l) = self.lsns.remove(&id) {
                        for p in l.pcbs {
                            lwip::close_listener(p);
                        }
                        l.shared.update(|st| st.closed = true);
                    }
                }
            }
        }
        n
    }

    fn listen(
        &mut self,
        shared: Arc<ListenerShared>,
        addr: SocketAddrV4,
        backlog: u32,
    ) -> io::Result<SocketAddrV4> {
        if self.socks.len() + self.lsns.len() >= self.max_sockets {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "max_sockets reached",
            ));
        }
        let targets: Vec<usize> = if addr.ip().is_unspecified() {
            (0..self.netifs.len()).collect()
        } else {
            match self.netifs.iter().position(|n| n.ip == *addr.ip()) {
                Some(i) => vec![i],
                None => return Err(io::ErrorKind::AddrNotAvailable.into()),
            }
        };
        // One listening pcb per interface, each bound to its netif: accepted pcbs inherit
        // the netif, so replies leave by the interface the connection came in on.
        let mut port = addr.port();
        let mut pcbs = Vec::new();
        let fail = |pcbs: Vec<Pcb>, e: io::Error| {
            for p in pcbs {
                lwip::close_listener(p);
            }
            Err(e)
        };
        for i in targets {
            let pcb = lwip::tcp_new();
            if pcb.is_null() {
                return fail(pcbs, io::ErrorKind::OutOfMemory.into());
            }
            let e = lwip::bind(pcb, self.netifs[i].ip, port, self.netifs[i].ptr);
            if e != lwip::ERR_OK {
                lwip::discard(pcb);
                return fail(pcbs, lwip_error(e));
            }
            port = lwip::addrs(pcb).1;
            match lwip::listen(pcb, backlog.min(255) as u8, shared.id) {
                Ok(l) => pcbs.push(l),
                Err(e) => {
                    lwip::discard(pcb);
                    return fail(pcbs, lwip_error(e));
                }
            }
        }
        self.lsns.insert(shared.id, Lsn { shared, pcbs });
        self.inner
            .stats
            .listeners_open
            .store(self.lsns.len() as u64, Ordering::Relaxed);
        Ok(SocketAddrV4::new(*addr.ip(), port))
    }

    /// The interface a connection to `remote` leaves by: the one whose subnet holds it,
    /// else the one with a gateway, else the first.
    fn route(&self, remote: Ipv4Addr) -> Option<usize> {
        let r = u32::from(remote);
        self.netifs
            .iter()
            .position(|n| (u32::from(n.ip) & n.mask) == (r & n.mask))
            .or_else(|| self.netifs.iter().position(|n| n.has_gw))
            .or(if self.netifs.is_empty() {
                None
            } else {
                Some(0)
            })
    }

    fn connect(
        &mut self,
        shared: Arc<StreamShared>,
        local: Option<SocketAddrV4>,
        remote: SocketAddrV4,
    ) -> io::Result<SocketAddrV4> {
        if self.socks.len() + self.lsns.len() >= self.max_sockets {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "max_sockets reached",
            ));
        }
        let lip = local.map(|l| *l.ip()).filter(|ip| !ip.is_unspecified());
        let idx = match lip {
            Some(ip) => self
                .netifs
                .iter()
                .position(|n| n.ip == ip)
                .ok_or(io::Error::from(io::ErrorKind::AddrNotAvailable))?,
            None => self
                .route(*remote.ip())
                .ok_or(io::Error::from_raw_os_error(101))?,
        };
        let pcb = lwip::tcp_new();
        if pcb.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let e = lwip::bind(
            pcb,
            self.netifs[idx].ip,
            local.map(|l| l.port()).unwrap_or(0),
            self.netifs[idx].ptr,
        );
        if e != lwip::ERR_OK {
            lwip::discard(pcb);
            return Err(lwip_error(e));
        }
        lwip::attach(pcb, shared.id);
        let e = lwip::connect(pcb, *remote.ip(), remote.port());
        if e != lwip::ERR_OK {
            lwip::discard(pcb);
            return Err(lwip_error(e));
        }
        let (lip, lport, _, _) = lwip::addrs(pcb);
        let id = shared.id;
        self.socks.insert(
            id,
            Sock {
                shared,
                pcb,
                pending: VecDeque::new(),
                pending_off: 0,
                fin_pending: false,
                wr_done: false,
                nodelay: false,
                queued: false,
            },
        );
        self.enqueue(id);
        Ok(SocketAddrV4::new(lip, lport))
    }

    /// Phase 2: the lwIP side of every socket that needs it.
    fn service(&mut self) -> usize {
        let work = std::mem::take(&mut self.work);
        let n = work.len();
        for id in work {
            let remove = match self.socks.get_mut(&id) {
                Some(s) => {
                    s.queued = false;
                    service_one(s)
                }
                None => false,
            };
            if remove {
                if let Some(mut s) = self.socks.remove(&id) {
                    for p in s.pending.drain(..) {
                        lwip::pbuf_free(p);
                    }
                }
            }
        }
        self.inner
            .stats
            .sockets_open
            .store(self.socks.len() as u64, Ordering::Relaxed);
        n
    }

    fn teardown(&mut self) {
        for (_, mut s) in self.socks.drain() {
            if !s.pcb.is_null() {
                lwip::abort(s.pcb);
            }
            for p in s.pending.drain(..) {
                lwip::pbuf_free(p);
            }
            s.shared.update(|st| {
                st.closed = true;
                if st.error.is_none() {
                    st.error = Some(io::ErrorKind::ConnectionAborted);
                }
            });
        }
        for (_, l) in self.lsns.drain() {
            for p in l.pcbs {
                lwip::close_listener(p);
            }
            l.shared.update(|st| st.closed = true);
        }
        let _ = lwip::take_events();
        // Messages that raced with the stop: their reply channels drop (callers see "stopped").
        drop(std::mem::take(&mut *lock(&self.inner.msgs)));
        for n in self.netifs.drain(..) {
            lwip::netif_remove(n.ptr);
        }
        lwip::clear_deferred();
        let _ = lwip::take_events();
        lwip::drop_links();
        self.inner.stats.sockets_open.store(0, Ordering::Relaxed);
        self.inner.stats.listeners_open.store(0, Ordering::Relaxed);
    }
}
