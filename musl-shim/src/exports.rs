//! The interposed symbols. Linked into a binary, these definitions replace libc's: rustc's
//! symbols.o references them, so the linker takes ours and never pulls musl's objects for them
//! (static musl), and the executable's definitions win over libc.so's (glibc). Each forwards to
//! `posix`, which passes every fd that is not ours to the kernel unchanged.
//!
//! musl defines some symbols together in one object; each such group is defined here whole, or
//! the static link fails with duplicates: epoll_create/epoll_create1/epoll_ctl/epoll_wait/
//! epoll_pwait. recvmsg/sendmsg (grouped with __convert_scm_timestamps in musl), eventfd and
//! dup3 are NOT interposed: std and mio do not use them on TCP sockets, and the kernel's answer
//! for the placeholder fd (ENOTSOCK) is the honest one.
//!
//! fcntl and ioctl are variadic in C. They are defined here with one fixed `c_ulong` argument:
//! on x86_64 (the only target this crate builds for) the System V ABI passes the first variadic
//! integer or pointer argument in the same register as a fixed one, so the callee sees it.

use libc::{c_int, c_ulong, c_void, sockaddr, socklen_t};

use crate::posix;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("musl-shim's variadic fcntl/ioctl definitions assume the x86_64 System V ABI");

#[no_mangle]
pub extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    posix::socket(domain, ty, proto)
}

#[no_mangle]
pub extern "C" fn bind(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    posix::bind(fd, a, len)
}

#[no_mangle]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    posix::listen(fd, backlog)
}

#[no_mangle]
pub extern "C" fn accept(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    posix::accept4(fd, a, len, 0)
}

#[no_mangle]
pub extern "C" fn accept4(fd: c_int, a: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    posix::accept4(fd, a, len, flags)
}

#[no_mangle]
pub extern "C" fn connect(fd: c_int, a: *const sockaddr, len: socklen_t) -> c_int {
    posix::connect(fd, a, len)
}

#[no_mangle]
pub extern "C" fn recv(fd: c_int, b: *mut c_void, n: usize, flags: c_int) -> isize {
    posix::recvfrom(fd, b, n, flags, std::ptr::null_mut(), std::ptr::null_mut())
}

#[no_mangle]
pub extern "C" fn recvfrom(
    fd: c_int,
    b: *mut c_void,
    n: usize,
    flags: c_int,
    a: *mut sockaddr,
    len: *mut socklen_t,
) -> isize {
    posix::recvfrom(fd, b, n, flags, a, len)
}

#[no_mangle]
pub extern "C" fn send(fd: c_int, b: *const c_void, n: usize, flags: c_int) -> isize {
    posix::sendto(fd, b, n, flags, std::ptr::null(), 0)
}

#[no_mangle]
pub extern "C" fn sendto(
    fd: c_int,
    b: *const c_void,
    n: usize,
    flags: c_int,
    a: *const sockaddr,
    len: socklen_t,
) -> isize {
    posix::sendto(fd, b, n, flags, a, len)
}

#[no_mangle]
pub extern "C" fn read(fd: c_int, b: *mut c_void, n: usize) -> isize {
    posix::read(fd, b, n)
}

#[no_mangle]
pub extern "C" fn write(fd: c_int, b: *const c_void, n: usize) -> isize {
    posix::write(fd, b, n)
}

#[no_mangle]
pub extern "C" fn readv(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    posix::readv(fd, iov, n)
}

#[no_mangle]
pub extern "C" fn writev(fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    posix::writev(fd, iov, n)
}

#[no_mangle]
pub extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    posix::shutdown(fd, how)
}

#[no_mangle]
pub extern "C" fn close(fd: c_int) -> c_int {
    posix::close(fd)
}

#[no_mangle]
pub extern "C" fn getsockname(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    posix::getsockname(fd, a, len)
}

#[no_mangle]
pub extern "C" fn getpeername(fd: c_int, a: *mut sockaddr, len: *mut socklen_t) -> c_int {
    posix::getpeername(fd, a, len)
}

#[no_mangle]
pub extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    v: *const c_void,
    len: socklen_t,
) -> c_int {
    posix::setsockopt(fd, level, name, v, len)
}

#[no_mangle]
pub extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    v: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    posix::getsockopt(fd, level, name, v, len)
}

#[no_mangle]
pub extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: c_ulong) -> c_int {
    posix::ioctl(fd, req, arg)
}

#[no_mangle]
pub extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    posix::fcntl(fd, cmd, arg)
}

/// glibc ≥ 2.28 headers turn `fcntl` into `fcntl64` for 64-bit file offsets.
#[no_mangle]
pub extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    posix::fcntl(fd, cmd, arg)
}

#[no_mangle]
pub extern "C" fn epoll_create(size: c_int) -> c_int {
    if size <= 0 {
        return crate::sys::fail(libc::EINVAL);
    }
    posix::epoll_create1(0)
}

#[no_mangle]
pub extern "C" fn epoll_create1(flags: c_int) -> c_int {
    posix::epoll_create1(flags)
}

#[no_mangle]
pub extern "C" fn epoll_ctl(
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut libc::epoll_event,
) -> c_int {
    posix::epoll_ctl(epfd, op, fd, ev)
}

#[no_mangle]
pub extern "C" fn epoll_wait(
    epfd: c_int,
    evs: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    posix::epoll_pwait(epfd, evs, max, timeout, std::ptr::null())
}

#[no_mangle]
pub extern "C" fn epoll_pwait(
    epfd: c_int,
    evs: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    posix::epoll_pwait(epfd, evs, max, timeout, sigmask)
}

#[no_mangle]
pub extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    posix::poll(fds, n, timeout)
}
