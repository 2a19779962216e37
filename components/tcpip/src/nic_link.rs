//! A DPDK port of `musqratt-nic` as a `Link` of the stack (feature `nic`).
//!
//! The impl lives here, not in `nic`, because of the orphan rule: `Link` is ours and `nic`
//! does not depend on `tcpip`. Each method maps onto one `Port` call; no buffering is added.
//!
//! rx copies nothing in `nic`: `Port::rx_burst` lends each frame's bytes inside its mbuf to
//! the closure, which (in `lwip::recv_burst`) copies them into a pbuf; the mbufs of the burst
//! go back to the pool when the burst ends. tx: lwIP's frame is copied once into an mbuf by
//! `Port::send`, which hands a full batch (32) to the NIC itself; `flush` pushes the rest once
//! per loop iteration. Frames the NIC still refuses are counted in the port's `tx_dropped`.
use musqratt_nic::Port;

use crate::Link;

impl Link for Port {
    fn mac(&self) -> [u8; 6] {
        Port::mac(self)
    }

    fn mtu(&self) -> u16 {
        Port::mtu(self)
    }

    fn recv_burst(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        self.rx_burst(f)
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        Port::send(self, frame)
    }

    fn flush(&mut self) {
        Port::flush(self);
    }
}
