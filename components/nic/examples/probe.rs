//! Opens one port with the given EAL arguments and reports it: MAC, MTU, link, then the
//! frames received during a few seconds and the port's counters.
//!
//! `cargo run -p musqratt-nic --example probe -- PORT SECONDS EAL-ARGS...`
//! e.g. `probe net_tap0 2 --no-huge --no-pci --no-shconf -m 256 -l 0 --vdev=net_tap0,iface=mqtap0`
//! Exits 1 with the one-line error when the EAL or the port fails.

use std::time::{Duration, Instant};

use musqratt_nic::{Eal, Port, PortConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(secs)) = (args.next(), args.next()) else {
        eprintln!("usage: probe PORT SECONDS EAL-ARGS...");
        std::process::exit(2);
    };
    let secs: u64 = secs.parse().unwrap_or(1);
    let eal_args: Vec<String> = args.collect();
    let run = || -> Result<(), musqratt_nic::NicError> {
        let eal = Eal::init(&eal_args)?;
        let mut p = Port::open(&eal, port.as_str(), PortConfig::default())?;
        let m = p.mac();
        println!(
            "port {} id {} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} mtu {} link {:?}",
            p.name(),
            p.id(),
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            p.mtu(),
            p.link()
        );
        let (mut frames, mut bytes) = (0u64, 0u64);
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if p.rx_burst(|f| {
                frames += 1;
                bytes += f.len() as u64;
            }) == 0
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        println!(
            "received {frames} frames, {bytes} bytes; stats {:?}",
            p.stats()
        );
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
