//! The kernel side of the shim: every call the shim does not serve goes here, as a raw system
//! call. Raw, not through libc's wrapper, because in the final binary the libc symbol *is* the
//! shim (calling `libc::close` from here would recurse into ourselves).

use libc::{c_int, c_long, c_void, socklen_t};

/// Sets `errno` and returns -1, the C convention every interposed call follows.
pub fn fail(errno: c_int) -> c_int {
    set_errno(errno);
    -1
}

pub fn fail_ssize(errno: c_int) -> isize {
    set_errno(errno);
    -1
}

pub fn set_errno(errno: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, valid for the thread's
    // lifetime, in both glibc and musl.
    unsafe { *libc::__errno_location() = errno };
}

pub fn errno() -> c_int {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

fn ret(r: c_long) -> c_int {
    // `syscall()` already set errno and returned -1 on failure; results of these calls fit c_int.
    r as c_int
}

macro_rules! sys {
    ($nr:expr $(, $arg:expr)*) => {
        // SAFETY: a raw system call with the caller's own arguments, exactly as libc's wrapper
        // would make it; the kernel validates every pointer and fd.
        unsafe { libc::syscall($nr $(, $arg)*) }
    };
}

pub fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    ret(sys!(libc::SYS_socket, domain, ty, proto))
}
pub fn bind(fd: c_int, addr: *const libc::sockaddr, len: socklen_t) -> c_int {
    ret(sys!(libc::SYS_bind, fd, addr, len))
}
pub fn listen(fd: c_int, backlog: c_int) -> c_int {
    ret(sys!(libc::SYS_listen, fd, backlog))
}
pub fn accept4(fd: c_int, addr: *mut libc::sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    ret(sys!(libc::SYS_accept4, fd, addr, len, flags))
}
pub fn connect(fd: c_int, addr: *const libc::sockaddr, len: socklen_t) -> c_int {
    ret(sys!(libc::SYS_connect, fd, addr, len))
}
pub fn shutdown(fd: c_int, how: c_int) -> c_int {
    ret(sys!(libc::SYS_shutdown, fd, how))
}
pub fn close(fd: c_int) -> c_int {
    ret(sys!(libc::SYS_close, fd))
}
pub fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    ret(sys!(libc::SYS_dup3, old, new, flags))
}
pub fn eventfd(init: u32, flags: c_int) -> c_int {
    ret(sys!(libc::SYS_eventfd2, init, flags))
}
pub fn read(fd: c_int, buf: *mut c_void, n: usize) -> isize {
    sys!(libc::SYS_read, fd, buf, n) as isize
}
pub fn write(fd: c_int, buf: *const c_void, n: usize) -> isize {
    sys!(libc::SYS_write, fd, buf, n) as isize
}
pub fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    sys!(libc::SYS_readv, fd, iov, n) as isize
}
pub fn writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    sys!(libc::SYS_writev, fd, iov, n) as isize
}
pub fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    len: *mut socklen_t,
) -> isize {
    sys!(libc::SYS_recvfrom, fd, buf, n, flags, addr, len) as isize
}
pub fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    len: socklen_t,
) -> isize {
    sys!(libc::SYS_sendto, fd, buf, n, flags, addr, len) as isize
}
pub fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    ret(sys!(libc::SYS_setsockopt, fd, level, name, val, len))
}
pub fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    ret(sys!(libc::SYS_getsockopt, fd, level, name, val, len))
}
pub fn getsockname(fd: c_int, addr: *mut libc::sockaddr, len: *mut socklen_t) -> c_int {
    ret(sys!(libc::SYS_getsockname, fd, addr, len))
}
pub fn getpeername(fd: c_int, addr: *mut libc::sockaddr, len: *mut socklen_t) -> c_int {
    ret(sys!(libc::SYS_getpeername, fd, addr, len))
}
pub fn ioctl(fd: c_int, req: libc::c_ulong, arg: libc::c_ulong) -> c_int {
    ret(sys!(libc::SYS_ioctl, fd, req, arg))
}
pub fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    ret(sys!(libc::SYS_fcntl, fd, cmd, arg))
}
pub fn epoll_create1(flags: c_int) -> c_int {
    ret(sys!(libc::SYS_epoll_create1, flags))
}
pub fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, ev: *mut libc::epoll_event) -> c_int {
    ret(sys!(libc::SYS_epoll_ctl, epfd, op, fd, ev))
}
pub fn epoll_pwait(
    epfd: c_int,
    evs: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    // The kernel wants the sigset's size: 8 bytes (64 signals), not libc's sigset_t size.
    let sigsetsize: usize = if sigmask.is_null() { 0 } else { 8 };
    ret(sys!(
        libc::SYS_epoll_pwait,
        epfd,
        evs,
        max,
        timeout,
        sigmask,
        sigsetsize
    ))
}
pub fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    // x86_64 has poll(2); ppoll would need a timespec.
    ret(sys!(libc::SYS_poll, fds, n, timeout))
}
