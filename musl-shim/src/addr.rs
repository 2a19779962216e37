//! sockaddr_in conversions at the C boundary.

use std::net::{Ipv4Addr, SocketAddrV4};

use libc::{sockaddr, sockaddr_in, socklen_t};

/// The IPv4 address in a caller's sockaddr, or None (IPv6, AF_UNIX, too short, null): those stay
/// with the kernel.
pub fn read_v4(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddrV4> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<sockaddr_in>() {
        return None;
    }
    // SAFETY: the caller passed `len` readable bytes at `addr` (the contract of bind/connect), and
    // we checked they cover a sockaddr_in; read_unaligned because C gives no alignment promise.
    let sin: sockaddr_in = unsafe { std::ptr::read_unaligned(addr.cast()) };
    if sin.sin_family != libc::AF_INET as libc::sa_family_t {
        return None;
    }
    Some(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    ))
}

/// Writes `a` to a caller's (addr, len) pair the way the kernel does: truncated to the buffer,
/// with `*len` set to the full size.
pub fn write_v4(a: SocketAddrV4, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: zeroed is a valid sockaddr_in (plain integers).
    let mut sin: sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = a.port().to_be();
    sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    let full = std::mem::size_of::<sockaddr_in>();
    // SAFETY: `len` is the caller's valid in/out length (checked non-null above).
    let room = unsafe { len.read_unaligned() } as usize;
    let n = room.min(full);
    // SAFETY: the caller provides `room` writable bytes at `addr`; we copy at most that many from
    // our local value, and write back the full length as the kernel does.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&sin as *const sockaddr_in).cast::<u8>(),
            addr.cast::<u8>(),
            n,
        );
        len.write_unaligned(full as socklen_t);
    }
}
