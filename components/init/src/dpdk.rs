//! `musqratt.net=dpdk`: which PCI devices DPDK gets and the broker configuration that hands
//! them to the user-level stack (docs/appliance.md). Pure: tested on the host; `sys` reads
//! sysfs and writes the file.
//!
//! The NICs: those named by `musqratt.nic=` (a physical machine), else every virtio-net PCI
//! function (a VM). Each is handed to `musqratt.nic_driver` (uio_pci_generic by default).
//!
//! Why `driver_override` and not uio_pci_generic's `new_id`: the data disk needs the kernel's
//! `virtio_pci`, which claims *every* virtio PCI device as soon as it loads, the NIC included.
//! Setting the NIC's `driver_override` to `uio_pci_generic` before any module is loaded keeps
//! virtio_pci off it, and uio_pci_generic (which has no id table of its own) binds it when
//! it registers.

use std::net::Ipv4Addr;

use crate::cmdline::{Config, NicDriver};

/// PCI vendor of virtio devices.
const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-net: the transitional id (QEMU's default `virtio-net-pci`) and the modern one
/// (`disable-legacy=on`).
const VIRTIO_NET_DEVICES: [u16; 2] = [0x1000, 0x1041];

/// Where init writes the broker's configuration with `net=dpdk`.
pub const CONFIG_PATH: &str = "/run/musqratt/appliance.toml";

/// Parses a sysfs id file (`0x1af4\n`).
pub fn parse_id(text: &str) -> Option<u16> {
    u16::from_str_radix(text.trim().strip_prefix("0x")?, 16).ok()
}

/// Whether a PCI function with these ids is a virtio-net device.
pub fn is_virtio_net(vendor: u16, device: u16) -> bool {
    vendor == VIRTIO_VENDOR && VIRTIO_NET_DEVICES.contains(&device)
}

/// The broker's configuration for the user-level path: lwIP takes init's address and gateway,
/// DPDK's EAL gets the NICs (`-a`, in the given order), the DMA addressing their driver allows
/// (uio_pci_generic has no IOMMU: physical addresses; vfio-pci: virtual ones through the IOMMU)
/// and the hugepages init mounted. One lcore: the poll loop is one thread and
/// backs off when idle. `extra` (`musqratt.eal=`) is appended.
pub fn broker_config(cfg: &Config, nics: &[String]) -> String {
    let iova = match cfg.nic_driver {
        NicDriver::Uio => "--iova-mode=pa",
        NicDriver::Vfio => "--iova-mode=va",
    };
    let mut eal: Vec<String> = ["-l", "0", iova, "--file-prefix", "musqratt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    eal.extend(["--huge-dir".into(), "/dev/hugepages".into()]);
    for nic in nics {
        eal.push("-a".into());
        eal.push(nic.clone());
    }
    eal.extend(cfg.eal.iter().cloned());
    let quoted: Vec<String> = eal.iter().map(|a| toml_string(a)).collect();
    let idle = cfg
        .idle_sleep_us
        .map(|us| format!("idle_sleep_max_us = {us}\n"))
        .unwrap_or_default();
    format!(
        "# Written by the appliance's init (musqratt.net=dpdk) at boot.\n\
         [network]\n\
         stack = \"lwip-dpdk\"\n\
         ip = \"{}/{}\"\n\
         gateway = \"{}\"\n\
         eal_args = [{}]\n\
         {}\
         \n\
         [[listener]]\n\
         bind = \"{}\"\n",
        cfg.ip,
        cfg.prefix,
        cfg.gateway,
        quoted.join(", "),
        idle,
        listen_addr(cfg.ip)
    )
}

/// The broker's MQTT listener: lwIP serves the listener bound to its own address.
pub fn listen_addr(ip: Ipv4Addr) -> String {
    format!("{ip}:1883")
}

/// A TOML basic string: quotes and backslashes escaped, control characters refused upstream
/// (kernel parameters cannot carry them).
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_sysfs() {
        assert_eq!(parse_id("0x1af4\n"), Some(0x1af4));
        assert_eq!(parse_id("1af4"), None);
        assert_eq!(parse_id("0xzz"), None);
        assert!(is_virtio_net(0x1af4, 0x1000));
        assert!(is_virtio_net(0x1af4, 0x1041));
        assert!(
            !is_virtio_net(0x1af4, 0x1001),
            "virtio-blk stays with the kernel"
        );
        assert!(!is_virtio_net(0x8086, 0x1000));
    }

    #[test]
    fn config_gives_lwip_the_address_and_dpdk_the_nics() {
        let cfg = Config {
            eal: vec!["--log-level=8".into(), "a\"b".into()],
            idle_sleep_us: Some(5000),
            ..Config::default()
        };
        let text = broker_config(&cfg, &["0000:00:02.0".into()]);
        assert_eq!(
            text,
            "# Written by the appliance's init (musqratt.net=dpdk) at boot.\n\
             [network]\n\
             stack = \"lwip-dpdk\"\n\
             ip = \"10.0.2.15/24\"\n\
             gateway = \"10.0.2.2\"\n\
             eal_args = [\"-l\", \"0\", \"--iova-mode=pa\", \"--file-prefix\", \"musqratt\", \
             \"--huge-dir\", \"/dev/hugepages\", \"-a\", \"0000:00:02.0\", \"--log-level=8\", \
             \"a\\\"b\"]\n\
             idle_sleep_max_us = 5000\n\
             \n\
             [[listener]]\n\
             bind = \"10.0.2.15:1883\"\n"
        );
        let vfio = Config {
            nic_driver: NicDriver::Vfio,
            ..Config::default()
        };
        assert!(broker_config(&vfio, &["0000:01:00.0".into()]).contains("\"--iova-mode=va\""));
    }
}
