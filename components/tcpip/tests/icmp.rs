//! ARP and ICMP echo are answered by lwIP: a raw-frame probe on a third interface asks.
mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{probe_wire, serial, start_with};
use musqratt_tcpip::Interface;

const C_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
const P_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];
const C_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const P_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);

fn csum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for ch in data.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            u16::from_be_bytes([ch[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp(oper: u16, dst_mac: [u8; 6], tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&P_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&oper.to_be_bytes());
    f.extend_from_slice(&P_MAC);
    f.extend_from_slice(&P_IP.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

fn echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&P_IP.octets());
    ip.extend_from_slice(&C_IP.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&C_MAC);
    f.extend_from_slice(&P_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn arp_and_icmp_echo_are_answered() {
    let _g = serial();
    let (end, probe) = probe_wire(C_MAC);
    let stack = start_with(vec![Interface {
        link: Box::new(end),
        ip: C_IP,
        prefix_len: 24,
        gateway: None,
    }]);
    probe.send(arp(1, [0xff; 6], [0; 6], C_IP));
    let payload = b"musqratt ping payload";
    let mut arp_reply = false;
    let mut echo_reply = false;
    let t = Instant::now();
    while !(arp_reply && echo_reply) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no reply (arp {arp_reply}, echo {echo_reply})"
        );
        let Some(f) = probe.recv() else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        match (f[12], f[13]) {
            (0x08, 0x06) if f[21] == 2 => {
                // ARP reply from C: its MAC and IP, to us.
                assert_eq!(&f[22..28], &C_MAC);
                assert_eq!(&f[28..32], &C_IP.octets());
                assert_eq!(&f[38..42], &P_IP.octets());
                arp_reply = true;
                probe.send(echo_request(0x4242, 1, payload));
            }
            (0x08, 0x06) if f[21] == 1 && f[38..42] == P_IP.octets() => {
                probe.send(arp(2, C_MAC, C_MAC, C_IP)); // lwIP asks for us: answer
            }
            (0x08, 0x00) if f[23] == 1 => {
                let ihl = (f[14] & 0x0f) as usize * 4;
                let icmp = &f[14 + ihl..];
                assert_eq!(&f[26..30], &C_IP.octets());
                assert_eq!(&f[30..34], &P_IP.octets());
                assert_eq!(icmp[0], 0, "echo reply type");
                assert_eq!(&icmp[4..8], &[0x42, 0x42, 0, 1]);
                assert_eq!(&icmp[8..], payload);
                assert_eq!(csum(icmp), 0, "ICMP checksum");
                echo_reply = true;
            }
            _ => {}
        }
    }
    stack.shutdown();
}
