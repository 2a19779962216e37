//! rtnetlink requests for the guest network (link up, IPv4 address, default route) and the
//! reply check. Pure byte encoding: tested on the host; `sys.rs` sends them.
//!
//! Why netlink and not the classic ioctls (SIOCSIFFLAGS, SIOCSIFADDR, SIOCADDRT): every safe
//! crate exposes those only through raw ioctl calls outside safe Rust, which this crate forbids. A netlink
//! socket is plain `send`/`recv` of bytes, and the three messages are small and fixed. Layouts:
//! linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h (native endian).

use std::net::Ipv4Addr;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;

/// Rounds up to netlink's 4-byte alignment.
fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A message under construction: the header is filled in by `finish`.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Msg {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: 0, the kernel fills ours in
        Msg(b)
    }

    fn bytes(mut self, data: &[u8]) -> Msg {
        self.0.extend_from_slice(data);
        self
    }

    /// One route attribute (struct rtattr + payload, padded).
    fn attr(mut self, kind: u16, payload: &[u8]) -> Msg {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(align(self.0.len()), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// RTM_NEWLINK: set IFF_UP on the interface with this index (struct ifinfomsg).
pub fn link_up(index: u32, seq: u32) -> Vec<u8> {
    let mut ifi = Vec::with_capacity(16);
    ifi.push(AF_UNSPEC);
    ifi.push(0); // pad
    ifi.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    ifi.extend_from_slice(&(index as i32).to_ne_bytes());
    ifi.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    ifi.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change: only IFF_UP is touched
    Msg::new(RTM_NEWLINK, 0, seq).bytes(&ifi).finish()
}

/// The broadcast address of `ip/prefix` (for IFA_BROADCAST, as `ip addr add … brd +` does).
pub fn broadcast(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let host_mask = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
    Ipv4Addr::from(u32::from(ip) | host_mask)
}

/// RTM_NEWADDR: `ip/prefix` on the interface (struct ifaddrmsg). REPLACE makes a re-run
/// harmless.
pub fn add_address(index: u32, ip: Ipv4Addr, prefix: u8, seq: u32) -> Vec<u8> {
    let scope = if ip.is_loopback() {
        RT_SCOPE_HOST
    } else {
        RT_SCOPE_UNIVERSE
    };
    let mut ifa = vec![AF_INET, prefix, 0, scope];
    ifa.extend_from_slice(&index.to_ne_bytes());
    Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq)
        .bytes(&ifa)
        .attr(IFA_LOCAL, &ip.octets())
        .attr(IFA_ADDRESS, &ip.octets())
        .attr(IFA_BROADCAST, &broadcast(ip, prefix).octets())
        .finish()
}

/// RTM_NEWROUTE: the default route via `gateway` out of the interface (struct rtmsg).
pub fn add_default_route(index: u32, gateway: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut rtm = vec![
        AF_INET,
        0, // dst_len: 0.0.0.0/0
        0, // src_len
        0, // tos
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ];
    rtm.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq)
        .bytes(&rtm)
        .attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &index.to_ne_bytes())
        .finish()
}

/// The kernel's answer to a request with NLM_F_ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// NLMSG_ERROR with error 0.
    Ack,
    /// NLMSG_ERROR with this (positive) errno.
    Error(i32),
    /// Something else (another message, or one for another sequence number): keep reading.
    Other,
}

/// Reads the first message of a datagram the kernel sent back for request `seq`.
pub fn parse_reply(buf: &[u8], seq: u32) -> Result<Reply, String> {
    if buf.len() < NLMSG_HDRLEN {
        return Err(format!("short netlink reply ({} bytes)", buf.len()));
    }
    let u16_at = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
    let u32_at = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let len = u32_at(0) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(format!("bad netlink reply length {len}"));
    }
    if u16_at(4) != NLMSG_ERROR || u32_at(8) != seq {
        return Ok(Reply::Other);
    }
    if len < NLMSG_HDRLEN + 4 {
        return Err("truncated netlink error message".into());
    }
    let err = u32_at(NLMSG_HDRLEN) as i32;
    Ok(if err == 0 {
        Reply::Ack
    } else {
        Reply::Error(-err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_ne_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    #[test]
    fn link_up_layout() {
        let m = link_up(2, 7);
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 0), 32);
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(&m, 8), 7);
        assert_eq!(u32_at(&m, 16 + 4), 2); // ifi_index
        assert_eq!(u32_at(&m, 16 + 8), IFF_UP); // flags
        assert_eq!(u32_at(&m, 16 + 12), IFF_UP); // change mask
    }

    #[test]
    fn address_layout() {
        let ip = Ipv4Addr::new(10, 0, 2, 15);
        let m = add_address(3, ip, 24, 1);
        // header 16 + ifaddrmsg 8 + three 8-byte attributes
        assert_eq!(m.len(), 16 + 8 + 3 * 8);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWADDR);
        assert_eq!(
            u16_at(&m, 6),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
        assert_eq!(u32_at(&m, 20), 3);
        assert_eq!((u16_at(&m, 24), u16_at(&m, 26)), (8, IFA_LOCAL));
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        assert_eq!((u16_at(&m, 32), u16_at(&m, 34)), (8, IFA_ADDRESS));
        assert_eq!((u16_at(&m, 40), u16_at(&m, 42)), (8, IFA_BROADCAST));
        assert_eq!(&m[44..48], &[10, 0, 2, 255]);
    }

    #[test]
    fn route_layout() {
        let m = add_default_route(2, Ipv4Addr::new(10, 0, 2, 2), 9);
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWROUTE);
        assert_eq!(
            &m[16..24],
            &[
                AF_INET,
                0,
                0,
                0,
                RT_TABLE_MAIN,
                RTPROT_BOOT,
                RT_SCOPE_UNIVERSE,
                RTN_UNICAST
            ]
        );
        assert_eq!((u16_at(&m, 28), u16_at(&m, 30)), (8, RTA_GATEWAY));
        assert_eq!(&m[32..36], &[10, 0, 2, 2]);
        assert_eq!((u16_at(&m, 36), u16_at(&m, 38)), (8, RTA_OIF));
        assert_eq!(u32_at(&m, 40), 2);
    }

    #[test]
    fn broadcast_addresses() {
        let ip = Ipv4Addr::new(10, 0, 2, 15);
        assert_eq!(broadcast(ip, 24), Ipv4Addr::new(10, 0, 2, 255));
        assert_eq!(broadcast(ip, 8), Ipv4Addr::new(10, 255, 255, 255));
        assert_eq!(broadcast(ip, 32), ip);
        assert_eq!(broadcast(ip, 0), Ipv4Addr::BROADCAST);
    }

    fn error_reply(seq: u32, errno: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&1234u32.to_ne_bytes());
        b.extend_from_slice(&(-errno).to_ne_bytes());
        b.extend_from_slice(&[0; 16]); // the echoed request header
        b
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply(&error_reply(5, 0), 5), Ok(Reply::Ack));
        assert_eq!(
            parse_reply(&error_reply(5, nix::libc::EEXIST), 5),
            Ok(Reply::Error(nix::libc::EEXIST))
        );
        assert_eq!(parse_reply(&error_reply(4, 0), 5), Ok(Reply::Other));
        assert!(parse_reply(&[0; 8], 5).is_err());
        let mut bad = error_reply(5, 0);
        bad[0] = 200;
        assert!(parse_reply(&bad, 5).is_err());
    }
}
