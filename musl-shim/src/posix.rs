//! The dispatcher behind every interposed symbol: is this fd (or this address) ours? Then the
//! call goes to `ops` over the tcpip component; otherwise it is the kernel's, unchanged.
//!
//! The functions keep the C signatures (raw pointers and all) because they ARE the C functions
//! once `exports` names them; each turns its pointers into slices in one place. This module is
//! private: nothing in Rust can call these with arbitrary pointers, only C callers through the
//! symbols, under the C functions' own contracts (which the SAFETY comments cite).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use libc::{c_int, c_ulong, c_void, sockaddr, socklen_t};

use crate::table::{Entry, Kind, Registration};
use crate::{addr, ops, state, sys, State};

fn user(fd: c_int) -> Option<(&'static State, Arc<Entry>)> {
    let st = state()?;
    Some((st, st.table.get(fd)?))
}

/// A caller's buffer as a slice. Null with length 0 is a valid empty buffer in C.
fn buf_mut<'a>(ptr: *mut c_void, n: usize) -> Option<&'a mut [u8]> {
    if n == 0 {
        return Some(&mut []);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: recv/read's contract: the caller owns `n` writable bytes at `ptr` for the call.
    Some(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), n) })
}

fn buf<'a>(ptr: *const c_void, n: usize) -> Option<&'a [u8]> {
    if n == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: send/write's contract: `n` readable bytes at `ptr` for the call.
    Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), n) })
}

fn iovecs<'a>(iov: *const libc::iovec, n: c_int) -> Option<&'a [libc::iovec]> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= libc::UIO_MAXIOV as usize)?;
    if n == 0 {
        return Some(&[]);
    }
    if iov.is_null() {
        return None;
    }
    // SAFETY: readv/writev's contract: `n` iovec structs at `iov`.
    Some(unsafe { std::slice::from_raw_parts(iov, n) })
}

pub fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    let fd = sys::socket(domain, ty, proto);
    if fd >= 0 && domain == libc::AF_INET && ty & 0xf == libc::SOCK_STREAM {
        if let Some(st) = state() {
            st.table.set_candidate(fd, true);
        }
    }
    fd
}

pub fn bind(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    if user(fd).is_some() {
        return sys::fail(libc::EINVAL); // already bound
    }
    if let Some(st) = state() {
        if st.table.is_candidate(fd) {
            if let Some(v4) = addr::read_v4(a, len) {
                if st.stack.owns(*v4.ip()) {
                    return ops::bind_user(st, fd, v4);
                }
            }
            // Bound to a kernel address: it stays a kernel socket for good.
            st.table.set_candidate(fd, false);
        }
    }
    sys::bind(fd, a, len)
}

pub fn listen(fd: c_int, backlog: c_int) -> c_int {
    match user(fd) {
        Some((st, e)) => ops::listen(st, &e, backlog),
        None => sys::listen(fd, backlog),
    }
}

pub fn accept4(fd: c_int, a: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    match user(fd) {
        Some((st, e)) => match ops::accept(st, &e, flags) {
            Ok((nfd, peer)) => {
                addr::write_v4(peer, a, len);
                nfd
            }
            Err(errno) => sys::fail(errno),
        },
        None => sys::accept4(fd, a, len, flags),
    }
}

pub fn connect(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    if let Some((st, e)) = user(fd) {
        return match addr::read_v4(a, len) {
            Some(remote) => ops::connect_existing(st, &e, remote),
            None => sys::fail(libc::EAFNOSUPPORT),
        };
    }
    if let Some(st) = state() {
        if st.table.is_candidate(fd) {
            if let Some(remote) = addr::read_v4(a, len) {
                if st.routes(*remote.ip()) {
                    return ops::connect_new(st, fd, None, remote);
                }
            }
            st.table.set_candidate(fd, false);
        }
    }
    sys::connect(fd, a, len)
}

pub fn recvfrom(
    fd: c_int,
    b: *mut c_void,
    n: usize,
    flags: c_int,
    a: *mut sockaddr,
    len: *mut socklen_t,
) -> isize {
    let Some((_, e)) = user(fd) else {
        return sys::recvfrom(fd, b, n, flags, a, len);
    };
    let Some(slice) = buf_mut(b, n) else {
        return sys::fail_ssize(libc::EFAULT);
    };
    let r = ops::recv(&e, slice, flags);
    if r >= 0 {
        if let Ok(peer) = ops::peer_addr(&e) {
            addr::write_v4(peer, a, len);
        }
    }
    r
}

pub fn sendto(
    fd: c_int,
    b: *const c_void,
    n: usize,
    flags: c_int,
    a: *const sockaddr,
    len: socklen_t,
) -> isize {
    let Some((_, e)) = user(fd) else {
        return sys::sendto(fd, b, n, flags, a, len);
    };
    let Some(slice) = buf(b, n) else {
        return sys::fail_ssize(libc::EFAULT);
    };
    ops::send(&e, slice, flags)
}

pub fn read(fd: c_int, b: *mut c_void, n: usize) -> isize {
    let Some((_, e)) = user(fd) else {
        return sys::read(fd, b, n);
    };
    let Some(slice) = buf_mut(b, n) else {
        return sys::fail_ssize(libc::EFAULT);
    };
    ops::recv(&e, slice, 0)
}

pub fn write(fd: c_int, b: *const c_void, n: usize) -> isize {
    let Some((_, e)) = user(fd) else {
        return sys::write(fd, b, n);
    };
    let Some(slice) = buf(b, n) else {
        return sys::fail_ssize(libc::EFAULT);
    };
    ops::send(&e, slice, 0)
}

pub fn readv(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize {
    let Some((_, e)) = user(fd) else {
        return sys::readv(fd, iov, cnt);
    };
    let Some(iov) = iovecs(iov, cnt) else {
        return sys::fail_ssize(libc::EINVAL);
    };
    let mut total = 0isize;
    for v in iov {
        let Some(slice) = buf_mut(v.iov_base, v.iov_len) else {
            return sys::fail_ssize(libc::EFAULT);
        };
        if slice.is_empty() {
            continue;
        }
        // After the first chunk, never block: readv returns what is there.
        let flags = if total > 0 { libc::MSG_DONTWAIT } else { 0 };
        let r = ops::recv(&e, slice, flags);
        if r < 0 {
            return if total > 0 { total } else { r };
        }
        total += r;
        if (r as usize) < v.iov_len {
            break;
        }
    }
    total
}

pub fn writev(fd: c_int, iov: *const libc::iovec, cnt: c_int) -> isize {
    let Some((_, e)) = user(fd) else {
        return sys::writev(fd, iov, cnt);
    };
    let Some(iov) = iovecs(iov, cnt) else {
        return sys::fail_ssize(libc::EINVAL);
    };
    let mut total = 0isize;
    for v in iov {
        let Some(slice) = buf(v.iov_base, v.iov_len) else {
            return sys::fail_ssize(libc::EFAULT);
        };
        if slice.is_empty() {
            continue;
        }
        let flags = if total > 0 { libc::MSG_DONTWAIT } else { 0 };
        let r = ops::send(&e, slice, flags);
        if r < 0 {
            return if total > 0 { total } else { r };
        }
        total += r;
        if (r as usize) < v.iov_len {
            break;
        }
    }
    total
}

pub fn shutdown(fd: c_int, how: c_int) -> c_int {
    match user(fd) {
        Some((_, e)) => ops::shutdown(&e, how),
        None => sys::shutdown(fd, how),
    }
}

pub fn getsockname(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    match user(fd) {
        Some((_, e)) => {
            addr::write_v4(ops::local_addr(&e), a, len);
            0
        }
        None => sys::getsockname(fd, a, len),
    }
}

pub fn getpeername(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    match user(fd) {
        Some((_, e)) => match ops::peer_addr(&e) {
            Ok(p) => {
                addr::write_v4(p, a, len);
                0
            }
            Err(errno) => sys::fail(errno),
        },
        None => sys::getpeername(fd, a, len),
    }
}

pub fn setsockopt(fd: c_int, level: c_int, name: c_int, v: *const c_void, len: socklen_t) -> c_int {
    let Some((_, e)) = user(fd) else {
        return sys::setsockopt(fd, level, name, v, len);
    };
    let val = if !v.is_null() && len as usize >= std::mem::size_of::<c_int>() {
        // SAFETY: setsockopt's contract: `len` readable bytes at `v`; we read one int of them.
        Some(unsafe { std::ptr::read_unaligned(v.cast::<c_int>()) })
    } else {
        None
    };
    ops::setsockopt(&e, level, name, val)
}

pub fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    v: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    let Some((_, e)) = user(fd) else {
        return sys::getsockopt(fd, level, name, v, len);
    };
    match ops::getsockopt(&e, level, name) {
        Ok(x) => {
            if v.is_null() || len.is_null() {
                return sys::fail(libc::EFAULT);
            }
            // SAFETY: getsockopt's contract: `*len` writable bytes at `v` and a valid `len`;
            // we write one int only when it fits.
            unsafe {
                if (len.read_unaligned() as usize) < std::mem::size_of::<c_int>() {
                    return sys::fail(libc::EINVAL);
                }
                v.cast::<c_int>().write_unaligned(x);
                len.write_unaligned(std::mem::size_of::<c_int>() as socklen_t);
            }
            0
        }
        Err(errno) => sys::fail(errno),
    }
}

pub fn ioctl(fd: c_int, req: c_ulong, arg: c_ulong) -> c_int {
    // glibc declares the request `unsigned long`, musl `int`: from a musl caller only the low
    // 32 bits of the register are defined, and they are all the kernel reads (`unsigned int`).
    let req = req as u32;
    const FIONBIO: u32 = libc::FIONBIO as u32;
    const FIONREAD: u32 = libc::FIONREAD as u32;
    let Some((_, e)) = user(fd) else {
        return sys::ioctl(fd, c_ulong::from(req), arg);
    };
    let p = arg as *mut c_int;
    match req {
        FIONBIO => {
            if p.is_null() {
                return sys::fail(libc::EFAULT);
            }
            // SAFETY: FIONBIO's argument is a pointer to an int.
            let on = unsafe { p.read_unaligned() } != 0;
            e.nonblocking.store(on, Ordering::Relaxed);
            0
        }
        FIONREAD => {
            if p.is_null() {
                return sys::fail(libc::EFAULT);
            }
            let n = match &e.kind {
                Kind::Stream(s) => s.bytes_readable().min(c_int::MAX as usize) as c_int,
                _ => 0,
            };
            // SAFETY: FIONREAD's argument is a pointer to an int.
            unsafe { p.write_unaligned(n) };
            0
        }
        _ => sys::fail(libc::ENOTTY),
    }
}

pub fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let Some((_, e)) = user(fd) else {
        return fcntl_kernel(fd, cmd, arg);
    };
    match cmd {
        // The placeholder keeps the file status flags, so F_GETFL reads back what was set.
        libc::F_SETFL => {
            e.nonblocking
                .store(arg as c_int & libc::O_NONBLOCK != 0, Ordering::Relaxed);
            sys::fcntl(fd, cmd, arg)
        }
        // A duplicate would be a second fd for one user-level socket: not supported.
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => sys::fail(libc::EINVAL),
        _ => sys::fcntl(fd, cmd, arg),
    }
}

/// fcntl on a kernel fd; a duplicated epoll fd is aliased to its original.
fn fcntl_kernel(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let r = sys::fcntl(fd, cmd, arg);
    if r >= 0 && matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) {
        if let Some(st) = state() {
            if st.table.is_tracked_epoll(fd) {
                st.table.alias_epoll(fd, r);
            }
        }
    }
    r
}

pub fn epoll_create1(flags: c_int) -> c_int {
    let fd = sys::epoll_create1(flags);
    if fd >= 0 {
        if let Some(st) = state() {
            st.table.track_epoll(fd);
        }
    }
    fd
}

pub fn close(fd: c_int) -> c_int {
    if let Some(st) = state() {
        st.table.set_candidate(fd, false);
        // Dropping the entry closes the user-level socket (FIN, or RST with unread input).
        drop(st.table.remove(fd));
        st.table.remove_epoll(fd);
    }
    sys::close(fd)
}

pub fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut libc::epoll_event) -> c_int {
    let Some((st, e)) = user(fd) else {
        return sys::epoll_ctl(epfd, op, fd, ev);
    };
    let ep = match st.table.epoll_or_create(epfd) {
        Ok(ep) => ep,
        Err(err) => return sys::fail(ops::errno_of(&err)),
    };
    let mut reg = e.reg.lock().unwrap_or_else(|p| p.into_inner());
    let here = reg
        .as_ref()
        .is_some_and(|r| std::ptr::eq(r.epoll.as_ptr(), Arc::as_ptr(&ep)));
    match op {
        libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD => {
            if op == libc::EPOLL_CTL_ADD && here {
                return sys::fail(libc::EEXIST);
            }
            if op == libc::EPOLL_CTL_MOD && !here {
                return sys::fail(libc::ENOENT);
            }
            if ev.is_null() {
                return sys::fail(libc::EFAULT);
            }
            // SAFETY: epoll_ctl's contract: a valid epoll_event for ADD and MOD.
            let ev = unsafe { ev.read_unaligned() };
            *reg = Some(Registration {
                epoll: Arc::downgrade(&ep),
                events: ev.events,
                data: ev.u64,
            });
            drop(reg);
            ep.arm(&e, ev.events);
            0
        }
        libc::EPOLL_CTL_DEL => {
            if !here {
                return sys::fail(libc::ENOENT);
            }
            *reg = None;
            0
        }
        _ => sys::fail(libc::EINVAL),
    }
}

pub fn epoll_pwait(
    epfd: c_int,
    evs: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let Some((st, ep)) = state().and_then(|st| Some((st, st.table.epoll(epfd)?))) else {
        return sys::epoll_pwait(epfd, evs, max, timeout, sigmask);
    };
    let Some(n) = usize::try_from(max)
        .ok()
        .filter(|&n| n > 0 && !evs.is_null())
    else {
        return sys::fail(libc::EINVAL);
    };
    // SAFETY: epoll_wait's contract: `max` writable epoll_event slots at `evs`.
    let out = unsafe { std::slice::from_raw_parts_mut(evs, n) };
    ep.wait(&st.table, epfd, out, timeout, sigmask)
}

pub fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let Some(st) = state() else {
        return sys::poll(fds, n, timeout);
    };
    if n == 0 || fds.is_null() {
        return sys::poll(fds, n, timeout);
    }
    // SAFETY: poll's contract: `n` pollfd structs at `fds`.
    let set = unsafe { std::slice::from_raw_parts_mut(fds, n as usize) };
    if !set.iter().any(|p| st.table.is_user(p.fd)) {
        return sys::poll(fds, n, timeout);
    }
    // Mixed or user-only set: check the user-level sockets ourselves, the kernel's with a zero
    // timeout, and wait for a user-level readiness change in between (bounded, so kernel fds
    // are seen within a millisecond).
    let deadline = (timeout >= 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64));
    loop {
        let mut ready = 0;
        let mut kernel: Vec<usize> = Vec::new();
        for (i, p) in set.iter_mut().enumerate() {
            match st.table.get(p.fd) {
                Some(e) => {
                    let wanted = p.events | libc::POLLHUP | libc::POLLERR;
                    p.revents = ops::poll_bits(&e) & wanted;
                    if p.revents != 0 {
                        ready += 1;
                    }
                }
                None => kernel.push(i),
            }
        }
        if !kernel.is_empty() {
            let mut ks: Vec<libc::pollfd> = kernel.iter().map(|&i| set[i]).collect();
            let k = sys::poll(ks.as_mut_ptr(), ks.len() as libc::nfds_t, 0);
            if k < 0 {
                return -1;
            }
            for (j, &i) in kernel.iter().enumerate() {
                set[i].revents = ks[j].revents;
                if ks[j].revents != 0 {
                    ready += 1;
                }
            }
        }
        if ready > 0 {
            return ready;
        }
        let left = match deadline {
            None => std::time::Duration::from_millis(1),
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return 0;
                }
                left.min(std::time::Duration::from_millis(1))
            }
        };
        ops::wait_any(left);
    }
}
