//! POSIX socket semantics over the tcpip component, for the fds the table says are ours.
//! Every function here returns what the C call returns (a count or -1 with errno set).

use std::io;
use std::net::{Shutdown, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use libc::c_int;
use musqratt_tcpip::{Readiness, TcpStream};

use crate::epoll::{epoll_bits, readiness};
use crate::sys;
use crate::table::{Entry, Kind, Registration};
use crate::State;

/// Blocking calls on user-level sockets (rare: the broker's sockets are non-blocking) wait here;
/// the notify callback bumps it when anyone waits.
static WAIT: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());
static WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The errno for an io::Error from tcpip.
pub fn errno_of(e: &io::Error) -> c_int {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    use io::ErrorKind::*;
    match e.kind() {
        WouldBlock => libc::EAGAIN,
        ConnectionRefused => libc::ECONNREFUSED,
        ConnectionReset => libc::ECONNRESET,
        ConnectionAborted => libc::ECONNABORTED,
        NotConnected => libc::ENOTCONN,
        AddrInUse => libc::EADDRINUSE,
        AddrNotAvailable => libc::EADDRNOTAVAIL,
        BrokenPipe => libc::EPIPE,
        AlreadyExists => libc::EEXIST,
        InvalidInput => libc::EINVAL,
        TimedOut => libc::ETIMEDOUT,
        OutOfMemory => libc::ENOMEM,
        Interrupted => libc::EINTR,
        _ => libc::EIO,
    }
}

fn fail_io(e: &io::Error) -> c_int {
    sys::fail(errno_of(e))
}

/// The notify callback every user-level socket carries: routes readiness gains to the socket's
/// epoll (looked up by fd, so no reference cycle) and to blocked callers.
pub fn notifier(state: &'static State, fd: c_int) -> musqratt_tcpip::Notify {
    Arc::new(move |r: Readiness| {
        if let Some(entry) = state.table.get(fd) {
            let reg = entry.reg.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(Registration { epoll, .. }) = reg {
                if let Some(ep) = epoll.upgrade() {
                    ep.push(fd, epoll_bits(r));
                }
            }
        }
        if WAITERS.load(Ordering::SeqCst) > 0 {
            let mut generation = WAIT.0.lock().unwrap_or_else(|e| e.into_inner());
            *generation += 1;
            WAIT.1.notify_all();
        }
    })
}

/// Blocks the calling thread until `entry` shows one of `want` (or an error/HUP).
fn wait_for(entry: &Entry, want: Readiness) {
    WAITERS.fetch_add(1, Ordering::SeqCst);
    let mut generation = WAIT.0.lock().unwrap_or_else(|e| e.into_inner());
    let seen = *generation;
    let r = readiness(entry);
    if !r.intersects(want | Readiness::HUP | Readiness::ERROR) {
        // The timeout only bounds a lost wake-up race; correctness does not depend on it.
        while *generation == seen {
            let (g, t) = WAIT
                .1
                .wait_timeout(generation, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner());
            generation = g;
            if t.timed_out() {
                break;
            }
        }
    }
    drop(generation);
    WAITERS.fetch_sub(1, Ordering::SeqCst);
}

/// Puts a fresh placeholder kernel fd at `fd`'s number (replacing the kernel socket there, if
/// any), or allocates a new number when `fd` is None. Returns the fd.
pub fn placeholder(at: Option<c_int>, cloexec: bool) -> Result<c_int, c_int> {
    let flags = if cloexec { libc::EFD_CLOEXEC } else { 0 };
    let p = sys::eventfd(0, flags);
    if p < 0 {
        return Err(sys::errno());
    }
    let Some(fd) = at else { return Ok(p) };
    let dflags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // dup3 closes the kernel socket at `fd` atomically: the number is never free in between.
    let r = sys::dup3(p, fd, dflags);
    let e = sys::errno();
    sys::close(p);
    if r < 0 {
        Err(e)
    } else {
        Ok(fd)
    }
}

fn cloexec(fd: c_int) -> bool {
    let f = sys::fcntl(fd, libc::F_GETFD, 0);
    f >= 0 && f & libc::FD_CLOEXEC != 0
}

fn nonblocking_flag(fd: c_int) -> bool {
    let f = sys::fcntl(fd, libc::F_GETFL, 0);
    f >= 0 && f & libc::O_NONBLOCK != 0
}

/// Moves a candidate kernel socket to the user-level stack as `kind`.
pub fn adopt(state: &'static State, fd: c_int, kind: Kind) -> c_int {
    if fd < 0 || fd as usize >= crate::table::MAX_FDS {
        return sys::fail(libc::EMFILE);
    }
    let nonblocking = nonblocking_flag(fd);
    if let Err(e) = placeholder(Some(fd), cloexec(fd)) {
        return sys::fail(e);
    }
    install_entry(state, Entry::new(fd, kind, nonblocking));
    0
}

fn install_entry(state: &'static State, entry: Entry) -> Arc<Entry> {
    let fd = entry.fd;
    let entry = Arc::new(entry);
    match &entry.kind {
        Kind::Listener(l) => l.set_notify(Some(notifier(state, fd))),
        Kind::Stream(s) => s.set_notify(Some(notifier(state, fd))),
        Kind::Bound(_) => {}
    }
    state.table.insert(entry.clone());
    entry
}

/// Replaces the socket at `fd` with a new kind, keeping its epoll registration and flags.
fn transition(state: &'static State, old: &Entry, kind: Kind) -> Arc<Entry> {
    let e = Entry::new(old.fd, kind, old.nonblocking.load(Ordering::Relaxed));
    *e.reg.lock().unwrap_or_else(|e| e.into_inner()) =
        old.reg.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let new = install_entry(state, e);
    let reg = new.reg.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(r) = reg {
        if let Some(ep) = r.epoll.upgrade() {
            ep.arm(&new, r.events);
        }
    }
    new
}

pub fn bind_user(state: &'static State, fd: c_int, addr: SocketAddrV4) -> c_int {
    adopt(state, fd, Kind::Bound(addr))
}

pub fn listen(state: &'static State, entry: &Entry, backlog: c_int) -> c_int {
    let Kind::Bound(addr) = entry.kind else {
        return match entry.kind {
            Kind::Listener(_) => 0, // listen twice: the backlog stays; Linux accepts it too
            _ => sys::fail(libc::EINVAL),
        };
    };
    match state.stack.listen(addr, backlog.clamp(1, 65_535) as u32) {
        Ok(l) => {
            transition(state, entry, Kind::Listener(l));
            0
        }
        Err(e) => fail_io(&e),
    }
}

/// accept4 on a user-level listener: the new socket gets a placeholder fd of its own.
pub fn accept(
    state: &'static State,
    entry: &Entry,
    flags: c_int,
) -> Result<(c_int, SocketAddrV4), c_int> {
    let Kind::Listener(l) = &entry.kind else {
        return Err(libc::EINVAL);
    };
    let (stream, peer) = loop {
        match l.accept() {
            Ok(x) => break x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if entry.nonblocking.load(Ordering::Relaxed) {
                    return Err(libc::EAGAIN);
                }
                wait_for(entry, Readiness::READABLE);
            }
            Err(e) => return Err(errno_of(&e)),
        }
    };
    let fd = placeholder(None, flags & libc::SOCK_CLOEXEC != 0)?;
    if fd as usize >= crate::table::MAX_FDS {
        // Beyond the table: refuse; dropping `stream` closes the connection.
        sys::close(fd);
        return Err(libc::EMFILE);
    }
    install_entry(
        state,
        Entry::new(fd, Kind::Stream(stream), flags & libc::SOCK_NONBLOCK != 0),
    );
    Ok((fd, peer))
}

/// connect on a candidate kernel socket whose destination the user-level stack routes.
pub fn connect_new(
    state: &'static State,
    fd: c_int,
    local: Option<SocketAddrV4>,
    remote: SocketAddrV4,
) -> c_int {
    match state.stack.connect(local, remote) {
        Ok(stream) => {
            if adopt(state, fd, Kind::Stream(stream)) < 0 {
                return -1;
            }
            finish_connect(state, fd)
        }
        Err(e) => fail_io(&e),
    }
}

fn finish_connect(state: &'static State, fd: c_int) -> c_int {
    let Some(entry) = state.table.get(fd) else {
        return sys::fail(libc::EBADF);
    };
    if entry.nonblocking.load(Ordering::Relaxed) {
        return sys::fail(libc::EINPROGRESS);
    }
    let Kind::Stream(s) = &entry.kind else {
        return sys::fail(libc::EINVAL);
    };
    loop {
        let r = s.readiness();
        if r.contains(Readiness::WRITABLE) {
            return 0;
        }
        if r.intersects(Readiness::ERROR | Readiness::HUP) {
            return match s.take_error() {
                Some(e) => fail_io(&e),
                None => sys::fail(libc::ECONNREFUSED),
            };
        }
        wait_for(&entry, Readiness::WRITABLE);
    }
}

/// connect on an already user-level socket (bound first, or a repeated non-blocking connect).
pub fn connect_existing(state: &'static State, entry: &Entry, remote: SocketAddrV4) -> c_int {
    match &entry.kind {
        Kind::Bound(local) => match state.stack.connect(Some(*local), remote) {
            Ok(stream) => {
                transition(state, entry, Kind::Stream(stream));
                finish_connect(state, entry.fd)
            }
            Err(e) => fail_io(&e),
        },
        Kind::Stream(s) => {
            if s.readiness().contains(Readiness::WRITABLE) {
                sys::fail(libc::EISCONN)
            } else if let Some(e) = s.take_error() {
                fail_io(&e)
            } else {
                sys::fail(libc::EALREADY)
            }
        }
        Kind::Listener(_) => sys::fail(libc::EINVAL),
    }
}

fn stream(entry: &Entry) -> Result<&TcpStream, c_int> {
    match &entry.kind {
        Kind::Stream(s) => Ok(s),
        _ => Err(libc::ENOTCONN),
    }
}

pub fn recv(entry: &Entry, buf: &mut [u8], flags: c_int) -> isize {
    let s = match stream(entry) {
        Ok(s) => s,
        Err(e) => return sys::fail_ssize(e),
    };
    if flags & libc::MSG_PEEK != 0 {
        return sys::fail_ssize(libc::EOPNOTSUPP);
    }
    let nonblocking = flags & libc::MSG_DONTWAIT != 0 || entry.nonblocking.load(Ordering::Relaxed);
    loop {
        match s.read(buf) {
            Ok(n) => return n as isize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !nonblocking => {
                wait_for(entry, Readiness::READABLE)
            }
            Err(e) => return sys::fail_ssize(errno_of(&e)),
        }
    }
}

pub fn send(entry: &Entry, buf: &[u8], flags: c_int) -> isize {
    let s = match stream(entry) {
        Ok(s) => s,
        Err(e) => return sys::fail_ssize(e),
    };
    let nonblocking = flags & libc::MSG_DONTWAIT != 0 || entry.nonblocking.load(Ordering::Relaxed);
    let mut done = 0;
    loop {
        match s.write(&buf[done..]) {
            Ok(n) => {
                done += n;
                // A blocking send returns when everything is buffered, like the kernel's.
                if nonblocking || done == buf.len() {
                    return done as isize;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if nonblocking {
                    return if done > 0 {
                        done as isize
                    } else {
                        sys::fail_ssize(libc::EAGAIN)
                    };
                }
                wait_for(entry, Readiness::WRITABLE);
            }
            // No SIGPIPE: the user-level stack never raises signals; EPIPE is what callers
            // using MSG_NOSIGNAL (std, mio) expect anyway.
            Err(e) => {
                return if done > 0 {
                    done as isize
                } else {
                    sys::fail_ssize(errno_of(&e))
                };
            }
        }
    }
}

pub fn shutdown(entry: &Entry, how: c_int) -> c_int {
    let how = match how {
        libc::SHUT_RD => Shutdown::Read,
        libc::SHUT_WR => Shutdown::Write,
        libc::SHUT_RDWR => Shutdown::Both,
        _ => return sys::fail(libc::EINVAL),
    };
    match stream(entry).map(|s| s.shutdown(how)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => fail_io(&e),
        Err(e) => sys::fail(e),
    }
}

pub fn local_addr(entry: &Entry) -> SocketAddrV4 {
    match &entry.kind {
        Kind::Bound(a) => *a,
        Kind::Listener(l) => l.local_addr(),
        Kind::Stream(s) => s.local_addr(),
    }
}

pub fn peer_addr(entry: &Entry) -> Result<SocketAddrV4, c_int> {
    stream(entry).map(|s| s.peer_addr())
}

/// setsockopt: TCP_NODELAY is applied; the options below are accepted without effect because
/// lwIP here has no equivalent the broker needs (documented in musl-shim/README.md); anything
/// else is ENOPROTOOPT, so nobody believes an option took effect when it did not.
pub fn setsockopt(entry: &Entry, level: c_int, name: c_int, val: Option<c_int>) -> c_int {
    match (level, name) {
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
            let Some(v) = val else {
                return sys::fail(libc::EINVAL);
            };
            // On a listener there is nothing to set: accepted sockets get it per call.
            if let Ok(s) = stream(entry) {
                s.set_nodelay(v != 0);
            }
            0
        }
        (libc::SOL_SOCKET, libc::SO_REUSEADDR | libc::SO_REUSEPORT | libc::SO_KEEPALIVE)
        | (libc::SOL_SOCKET, libc::SO_RCVBUF | libc::SO_SNDBUF)
        | (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) => 0,
        _ => sys::fail(libc::ENOPROTOOPT),
    }
}

pub fn getsockopt(entry: &Entry, level: c_int, name: c_int) -> Result<c_int, c_int> {
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_ERROR) => Ok(match &entry.kind {
            Kind::Stream(s) => s.take_error().map_or(0, |e| errno_of(&e)),
            _ => 0,
        }),
        (libc::SOL_SOCKET, libc::SO_TYPE) => Ok(libc::SOCK_STREAM),
        (libc::SOL_SOCKET, libc::SO_DOMAIN) => Ok(libc::AF_INET),
        (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
            Ok(matches!(entry.kind, Kind::Listener(_)) as c_int)
        }
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
            Ok(stream(entry).map(|s| s.nodelay() as c_int).unwrap_or(0))
        }
        _ => Err(libc::ENOPROTOOPT),
    }
}

/// Readiness as poll(2) bits.
pub fn poll_bits(entry: &Entry) -> i16 {
    let r = readiness(entry);
    let mut bits = 0;
    if r.contains(Readiness::READABLE) {
        bits |= libc::POLLIN;
    }
    if r.contains(Readiness::WRITABLE) {
        bits |= libc::POLLOUT;
    }
    if r.contains(Readiness::HUP) {
        bits |= libc::POLLHUP | libc::POLLIN;
    }
    if r.contains(Readiness::ERROR) {
        bits |= libc::POLLERR;
    }
    bits
}

/// Waits (for poll) until any user-level readiness changes or `max` passes.
pub fn wait_any(max: Duration) {
    WAITERS.fetch_add(1, Ordering::SeqCst);
    let generation = WAIT.0.lock().unwrap_or_else(|e| e.into_inner());
    let seen = *generation;
    let (g, _) = WAIT
        .1
        .wait_timeout_while(generation, max, |g| *g == seen)
        .unwrap_or_else(|e| e.into_inner());
    drop(g);
    WAITERS.fetch_sub(1, Ordering::SeqCst);
}
