//! The thin wrapper over `musqratt-lwip-sys`: every `unsafe` of this crate lives here.
//!
//! All functions must be called on the poll-loop thread only (lwIP keeps its state in
//! globals and is not thread-safe); `Pcb`/`Netif`/`Pbuf` are plain pointers that never leave
//! that thread. lwIP's callbacks do not touch the engine: they push `Event`s on a
//! thread-local queue that the engine drains after each entry into lwIP, so no callback runs
//! while the engine holds a borrow, and a pcb that lwIP freed inside the same burst is never
//! touched (its `Err` event is seen before any lwIP call on it).
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::net::Ipv4Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use musqratt_lwip_sys as sys;

use crate::Link;

pub(crate) type Pcb = *mut sys::tcp_pcb;
pub(crate) type Netif = *mut sys::netif;
pub(crate) type Pbuf = *mut sys::pbuf;

pub(crate) const ERR_OK: i8 = sys::err_enum_t_ERR_OK as i8;
pub(crate) const ERR_MEM: i8 = sys::err_enum_t_ERR_MEM as i8;
pub(crate) const ERR_RST: i8 = sys::err_enum_t_ERR_RST as i8;
pub(crate) const ERR_ABRT: i8 = sys::err_enum_t_ERR_ABRT as i8;
pub(crate) const ERR_CLSD: i8 = sys::err_enum_t_ERR_CLSD as i8;
pub(crate) const ERR_USE: i8 = sys::err_enum_t_ERR_USE as i8;
pub(crate) const ERR_RTE: i8 = sys::err_enum_t_ERR_RTE as i8;
pub(crate) const ERR_VAL: i8 = sys::err_enum_t_ERR_VAL as i8;
pub(crate) const ERR_TIMEOUT: i8 = sys::err_enum_t_ERR_TIMEOUT as i8;
pub(crate) const ERR_CONN: i8 = sys::err_enum_t_ERR_CONN as i8;
pub(crate) const ERR_ISCONN: i8 = sys::err_enum_t_ERR_ISCONN as i8;

/// Socket ids: never reused, so a late event for a removed socket cannot hit a new one.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// What lwIP told us through a callback.
pub(crate) enum Event {
    /// Data (a pbuf chain we now own) or, with a null pbuf, the peer's FIN.
    Recv {
        id: u64,
        p: Pbuf,
    },
    /// The peer acknowledged data: lwIP's send buffer has room again.
    Sent {
        id: u64,
    },
    /// The pcb is gone (already freed by lwIP).
    Err {
        id: u64,
        err: i8,
    },
    Connected {
        id: u64,
    },
    /// A listener accepted a connection; callbacks are already set with `arg = id`.
    Accepted {
        listener: u64,
        id: u64,
        pcb: Pcb,
    },
}

thread_local! {
    static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
    static LINKS: RefCell<Vec<Box<dyn Link>>> = RefCell::new(Vec::new());
    static TX_FRAMES: Cell<u64> = const { Cell::new(0) };
    static TX_DROPPED: Cell<u64> = const { Cell::new(0) };
}

fn push_event(ev: Event) {
    // try_borrow_mut cannot fail by construction (the queue is only borrowed to push or to
    // take it); losing an event would still be better than unwinding into C.
    EVENTS.with(|e| {
        if let Ok(mut v) = e.try_borrow_mut() {
            v.push(ev)
        }
    });
}

pub(crate) fn take_events() -> Vec<Event> {
    EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

fn arg_id(arg: *mut c_void) -> u64 {
    arg as usize as u64
}

fn id_arg(id: u64) -> *mut c_void {
    id as usize as *mut c_void
}

unsafe extern "C" fn on_recv(arg: *mut c_void, _pcb: Pcb, p: Pbuf, _err: sys::err_t) -> sys::err_t {
    let r = catch_unwind(AssertUnwindSafe(|| {
        push_event(Event::Recv { id: arg_id(arg), p })
    }));
    // On a (theoretical) panic refuse the data: lwIP keeps it and offers it again later.
    if r.is_ok() {
        ERR_OK
    } else {
        ERR_MEM
    }
}

unsafe extern "C" fn on_sent(arg: *mut c_void, _pcb: Pcb, _len: u16) -> sys::err_t {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        push_event(Event::Sent { id: arg_id(arg) })
    }));
    ERR_OK
}

unsafe extern "C" fn on_err(arg: *mut c_void, err: sys::err_t) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        push_event(Event::Err {
            id: arg_id(arg),
            err,
        })
    }));
}

unsafe extern "C" fn on_connected(arg: *mut c_void, _pcb: Pcb, _err: sys::err_t) -> sys::err_t {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        push_event(Event::Connected { id: arg_id(arg) })
    }));
    ERR_OK
}

unsafe extern "C" fn on_accept(arg: *mut c_void, newpcb: Pcb, err: sys::err_t) -> sys::err_t {
    if newpcb.is_null() || err != ERR_OK || arg.is_null() {
        return ERR_VAL;
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        let id = next_id();
        attach(newpcb, id);
        push_event(Event::Accepted {
            listener: arg_id(arg),
            id,
            pcb: newpcb,
        });
    }));
    if r.is_ok() {
        ERR_OK
    } else {
        ERR_VAL
    }
}

/// Frames lwIP transmits go straight to the interface's link.
unsafe extern "C" fn on_tx(ctx: usize, frame: *const u8, len: usize) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the shim passes lwIP's (linearised) frame, valid for `len` bytes during
        // this call.
        let frame = unsafe { std::slice::from_raw_parts(frame, len) };
        let sent = LINKS.with(|l| match l.try_borrow_mut() {
            Ok(mut links) => links
                .get_mut(ctx)
                .map(|link| link.send(frame))
                .unwrap_or(false),
            Err(_) => false,
        });
        let c = if sent { &TX_FRAMES } else { &TX_DROPPED };
        c.with(|c| c.set(c.get() + 1));
    }));
}

/// Takes (and resets) the transmitted and dropped frame counters.
pub(crate) fn take_tx_counts() -> (u64, u64) {
    (
        TX_FRAMES.with(|c| c.replace(0)),
        TX_DROPPED.with(|c| c.replace(0)),
    )
}

pub(crate) fn ip_u32(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn u32_ip(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v.to_ne_bytes())
}

static INIT: std::sync::Once = std::sync::Once::new();

/// Initialises lwIP (once per process: its timers and pools are globals) and installs the
/// links of this run.
pub(crate) fn init(links: Vec<Box<dyn Link>>) {
    INIT.call_once(|| {
        // SAFETY: lwip_init runs once per process, before any other lwIP call, on the
        // thread that then drives lwIP (the tcpip thread is never started).
        unsafe { sys::lwip_init() };
    });
    // SAFETY: installs a plain function pointer; lwIP calls it only from this thread.
    unsafe { sys::musq_set_tx(Some(on_tx)) };
    LINKS.with(|l| *l.borrow_mut() = links);
}

pub(crate) fn links_len() -> usize {
    LINKS.with(|l| l.borrow().len())
}

pub(crate) fn link_info(i: usize) -> ([u8; 6], u16) {
    LINKS.with(|l| {
        let l = l.borrow();
        (l[i].mac(), l[i].mtu())
    })
}

/// Receives a burst from link `i` into freshly allocated pbufs (frame → pbuf copy).
pub(crate) fn recv_burst(i: usize, out: &mut Vec<Pbuf>) -> usize {
    LINKS.with(|l| {
        let mut links = l.borrow_mut();
        let mut f = |frame: &[u8]| {
            // SAFETY: copies `frame` into a new pbuf; a null result (no memory, bad size)
            // drops the frame.
            let p = unsafe { sys::musq_pbuf_from(frame.as_ptr(), frame.len()) };
            if !p.is_null() {
                out.push(p);
            }
        };
        links[i].recv_burst(&mut f)
    })
}

pub(crate) fn flush_links() {
    LINKS.with(|l| l.borrow_mut().iter_mut().for_each(|link| link.flush()));
}

pub(crate) fn drop_links() {
    LINKS.with(|l| l.borrow_mut().clear());
}

/// Adds an interface; `ctx` is the link index frames are sent to.
pub(crate) fn netif_add(
    ctx: usize,
    mac: [u8; 6],
    mtu: u16,
    ip: Ipv4Addr,
    mask: Ipv4Addr,
    gw: Ipv4Addr,
) -> Netif {
    // SAFETY: the shim copies the MAC and addresses; lwIP keeps the calloc'ed netif.
    unsafe { sys::musq_netif_add(ctx, mac.as_ptr(), mtu, ip_u32(ip), ip_u32(mask), ip_u32(gw)) }
}

pub(crate) fn netif_set_default(n: Netif) {
    // SAFETY: `n` is a live netif returned by netif_add.
    unsafe { sys::netif_set_default(n) }
}

pub(crate) fn netif_remove(n: Netif) {
    // SAFETY: `n` is live and removed once; the shim frees it after netif_remove.
    unsafe { sys::musq_netif_remove(n) }
}

pub(crate) fn netif_input(n: Netif, p: Pbuf) {
    // SAFETY: `n` is live; the pbuf's ownership passes to lwIP (freed by the shim on error).
    unsafe { sys::musq_netif_input(n, p) }
}

pub(crate) fn netif_poll(n: Netif) {
    // SAFETY: `n` is live; netif_poll drains its loopback queue on this, lwIP's, thread.
    unsafe { sys::netif_poll(n) }
}

/// Runs callbacks lwIP queued for its (absent) tcpip thread, e.g. loopback delivery.
pub(crate) fn run_deferred() -> usize {
    // SAFETY: runs lwIP's queued callbacks on lwIP's thread.
    unsafe { sys::musq_run_deferred() as usize }
}

pub(crate) fn clear_deferred() {
    // SAFETY: drops queued callbacks (their netifs are being removed).
    unsafe { sys::musq_clear_deferred() }
}

pub(crate) fn check_timeouts() {
    // SAFETY: lwIP's timer processing, on lwIP's thread.
    unsafe { sys::sys_check_timeouts() }
}

pub(crate) fn pbuf_free(p: Pbuf) {
    // SAFETY: `p` is a pbuf chain we own (from a recv callback); freed exactly once.
    unsafe {
        sys::pbuf_free(p);
    }
}

pub(crate) fn pbuf_len(p: Pbuf) -> usize {
    // SAFETY: `p` is a live pbuf we own.
    unsafe { sys::musq_pbuf_tot_len(p) as usize }
}

/// Copies bytes `off..off+dst.len()` of the chain into `dst` (pbuf → rx buffer copy).
pub(crate) fn pbuf_copy(p: Pbuf, dst: &mut [u8], off: usize) -> usize {
    let len = dst.len().min(u16::MAX as usize) as u16;
    // SAFETY: `p` is live; lwIP writes at most `len` bytes into `dst`.
    unsafe { sys::pbuf_copy_partial(p, dst.as_mut_ptr().cast(), len, off as u16) as usize }
}

/// Sets our callbacks on a pcb, with `arg = id`.
pub(crate) fn attach(pcb: Pcb, id: u64) {
    // SAFETY: `pcb` is a live pcb owned by us; the callbacks are infallible extern fns.
    unsafe {
        sys::tcp_arg(pcb, id_arg(id));
        sys::tcp_recv(pcb, Some(on_recv));
        sys::tcp_sent(pcb, Some(on_sent));
        sys::tcp_err(pcb, Some(on_err));
    }
}

pub(crate) fn detach(pcb: Pcb) {
    // SAFETY: `pcb` is live; after this lwIP calls none of our callbacks for it.
    unsafe { sys::musq_tcp_detach(pcb) }
}

/// Sends RST and frees the pcb; the callbacks are detached first so nothing calls back.
pub(crate) fn abort(pcb: Pcb) {
    detach(pcb);
    // SAFETY: `pcb` is live and never used again by the caller.
    unsafe { sys::tcp_abort(pcb) }
}

/// Graceful close (FIN after queued data). On `Err` the pcb is still ours, callbacks restored.
pub(crate) fn close(pcb: Pcb, id: u64) -> Result<(), i8> {
    detach(pcb);
    // SAFETY: `pcb` is live; on ERR_OK lwIP owns (and may free) it and we forget it.
    let e = unsafe { sys::tcp_close(pcb) };
    if e == ERR_OK {
        Ok(())
    } else {
        attach(pcb, id);
        Err(e)
    }
}

/// Closes a pcb that never connected (bind/connect/listen failed).
pub(crate) fn discard(pcb: Pcb) {
    detach(pcb);
    // SAFETY: `pcb` is live; a pcb in CLOSED state is freed by tcp_close, which can only
    // fail for lack of memory in states that send a FIN, and then RST-and-free is right.
    if unsafe { sys::tcp_close(pcb) } != ERR_OK {
        // SAFETY: still ours after the failed close.
        unsafe { sys::tcp_abort(pcb) }
    }
}

pub(crate) fn shutdown_tx(pcb: Pcb) -> i8 {
    // SAFETY: `pcb` is live and connected; only the send side is shut.
    unsafe { sys::tcp_shutdown(pcb, 0, 1) }
}

pub(crate) fn tcp_new() -> Pcb {
    // SAFETY: allocates a new pcb (null when out of memory).
    unsafe { sys::musq_tcp_new4() }
}

pub(crate) fn bind(pcb: Pcb, ip: Ipv4Addr, port: u16, netif: Netif) -> i8 {
    // SAFETY: `pcb` is a live unconnected pcb; `netif` is live.
    unsafe {
        let e = sys::musq_tcp_bind4(pcb, ip_u32(ip), port);
        if e == ERR_OK {
            sys::tcp_bind_netif(pcb, netif);
        }
        e
    }
}

pub(crate) fn connect(pcb: Pcb, ip: Ipv4Addr, port: u16) -> i8 {
    // SAFETY: `pcb` is live and bound; on_connected is infallible.
    unsafe { sys::musq_tcp_connect4(pcb, ip_u32(ip), port, Some(on_connected)) }
}

/// Turns a bound pcb into a listener with `arg = id`. Err: the original pcb is still ours.
pub(crate) fn listen(pcb: Pcb, backlog: u8, id: u64) -> Result<Pcb, i8> {
    let mut err: sys::err_t = ERR_OK;
    // SAFETY: `pcb` is live and bound; on success lwIP freed it and returned the listener.
    let l = unsafe { sys::musq_tcp_listen(pcb, backlog, &mut err) };
    if l.is_null() {
        return Err(err);
    }
    // SAFETY: `l` is the live listening pcb.
    unsafe {
        sys::tcp_arg(l, id_arg(id));
        sys::tcp_accept(l, Some(on_accept));
    }
    Ok(l)
}

/// Closes a listening pcb (frees it at once).
pub(crate) fn close_listener(l: Pcb) {
    // SAFETY: `l` is a live listener; tcp_close frees listeners without failing.
    unsafe {
        sys::tcp_arg(l, ptr::null_mut());
        sys::tcp_accept(l, None);
        sys::tcp_close(l);
    }
}

/// (local ip, local port, remote ip, remote port)
pub(crate) fn addrs(pcb: Pcb) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let (mut lip, mut lport, mut rip, mut rport) = (0u32, 0u16, 0u32, 0u16);
    // SAFETY: `pcb` is live; the shim writes four plain values.
    unsafe { sys::musq_tcp_addrs(pcb, &mut lip, &mut lport, &mut rip, &mut rport) };
    (u32_ip(lip), lport, u32_ip(rip), rport)
}

pub(crate) fn set_nodelay(pcb: Pcb, on: bool) {
    // SAFETY: `pcb` is live; sets/clears TF_NODELAY.
    unsafe { sys::musq_tcp_set_nodelay(pcb, on as i32) }
}

/// How many bytes tcp_write may take now (send buffer and segment-queue room).
pub(crate) fn send_room(pcb: Pcb) -> usize {
    // SAFETY: `pcb` is live; reads two fields.
    unsafe {
        if sys::musq_tcp_sndqueue_room(pcb) < 2 {
            return 0;
        }
        sys::musq_tcp_sndbuf(pcb) as usize
    }
}

/// tcp_write with COPY (tx buffer → lwIP copy).
pub(crate) fn write(pcb: Pcb, data: &[u8], more: bool) -> i8 {
    let len = data.len().min(u16::MAX as usize) as u16;
    let flags = sys::TCP_WRITE_FLAG_COPY | if more { sys::TCP_WRITE_FLAG_MORE } else { 0 };
    // SAFETY: `pcb` is live; lwIP copies `len` bytes out of `data` before returning.
    unsafe { sys::tcp_write(pcb, data.as_ptr().cast(), len, flags as u8) }
}

pub(crate) fn output(pcb: Pcb) {
    // SAFETY: `pcb` is live.
    unsafe {
        sys::tcp_output(pcb);
    }
}

pub(crate) fn recved(pcb: Pcb, mut n: usize) {
    while n > 0 {
        let k = n.min(u16::MAX as usize);
        // SAFETY: `pcb` is live; we acknowledge bytes the application consumed.
        unsafe { sys::tcp_recved(pcb, k as u16) };
        n -= k;
    }
}
