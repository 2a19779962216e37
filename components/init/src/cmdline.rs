//! The kernel command line (`/proc/cmdline`) → init's configuration. Pure: tested on the host.
//!
//! We read /proc/cmdline rather than our argv/environment because the kernel keeps every
//! parameter with a dot in its name (`musqratt.data=…`) for modules and never hands it to init.

use std::net::Ipv4Addr;

/// How the guest reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// Guest kernel sockets: init configures `lo` and `eth0`.
    Kernel,
    /// DPDK owns the NIC from user space: init leaves `eth0` alone (only `lo` comes up).
    Dpdk,
}

impl NetMode {
    pub fn name(self) -> &'static str {
        match self {
            NetMode::Kernel => "kernel",
            NetMode::Dpdk => "dpdk",
        }
    }
}

/// The kernel driver that hands the NIC to DPDK (`musqratt.nic_driver=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicDriver {
    /// `uio_pci_generic`: no IOMMU needed (physical addresses for DMA); QEMU's default.
    Uio,
    /// `vfio-pci`: DMA confined by the IOMMU (the host needs `intel_iommu=on`/`amd_iommu=on`).
    Vfio,
}

impl NicDriver {
    /// The driver's name in sysfs (`driver_override`, `/sys/bus/pci/drivers/…`).
    pub fn sysfs_name(self) -> &'static str {
        match self {
            NicDriver::Uio => "uio_pci_generic",
            NicDriver::Vfio => "vfio-pci",
        }
    }
}

/// What init does, from the `musqratt.*` kernel parameters (defaults: QEMU user networking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `musqratt.data=/dev/vda`: the data disk; `None` runs the broker `--in-memory`.
    pub data: Option<String>,
    /// `musqratt.fstype=ext4`: the filesystem the data disk is mounted (and created) as.
    pub fstype: String,
    /// `musqratt.mkfs=/sbin/mkfs.ext4`: run as `<mkfs> -q -F <device>` on a blank disk.
    pub mkfs: String,
    /// `musqratt.net=kernel|dpdk`.
    pub net: NetMode,
    /// `musqratt.nic=0000:01:00.0,0000:01:00.1`: the PCI functions DPDK drives (NET=dpdk);
    /// empty = every virtio-net function (a VM).
    pub nics: Vec<String>,
    /// `musqratt.nic_driver=uio_pci_generic|vfio-pci` (NET=dpdk).
    pub nic_driver: NicDriver,
    /// `musqratt.ip=10.0.2.15/24`: eth0's address and prefix length (NET=kernel).
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// `musqratt.gw=10.0.2.2`: the default gateway (NET=kernel).
    pub gateway: Ipv4Addr,
    /// `musqratt.iface=eth0`.
    pub iface: String,
    /// `musqratt.args="--log-level debug"`: appended to the broker's arguments (split on
    /// spaces; repeating the parameter appends more).
    pub args: Vec<String>,
    /// `musqratt.eal="--log-level=8"`: appended to DPDK's EAL arguments (NET=dpdk; split on
    /// spaces, repeatable).
    pub eal: Vec<String>,
    /// `musqratt.idle_sleep_us=1000`: the longest sleep of the user-level stack's poll loop
    /// when idle (NET=dpdk; the broker's `network.idle_sleep_max_us`). `None`: its default.
    pub idle_sleep_us: Option<u32>,
    /// `musqratt.stop_timeout=10`: seconds between SIGTERM and SIGKILL at shutdown.
    pub stop_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: None,
            fstype: "ext4".into(),
            mkfs: "/sbin/mkfs.ext4".into(),
            net: NetMode::Kernel,
            nics: Vec::new(),
            nic_driver: NicDriver::Uio,
            ip: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            iface: "eth0".into(),
            args: Vec::new(),
            eal: Vec::new(),
            idle_sleep_us: None,
            stop_timeout_secs: 10,
        }
    }
}

/// A parsed command line plus what init should warn about (unknown `musqratt.*` keys). A
/// malformed value is an error: booting with a setting other than the one asked for would be
/// worse than stopping.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Splits the command line the way the kernel does: on whitespace, except inside double
/// quotes, which are removed (`musqratt.args="-v -v"` is one parameter).
pub fn split(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Parses /proc/cmdline's text. Parameters outside the `musqratt.` namespace are ignored.
pub fn parse(cmdline: &str) -> Result<Parsed, String> {
    let mut config = Config::default();
    let mut warnings = Vec::new();
    for param in split(cmdline) {
        let Some(rest) = param.strip_prefix("musqratt.") else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        let bad = |what: &str| format!("kernel parameter musqratt.{key}={value}: {what}");
        match key {
            "data" => config.data = (!value.is_empty()).then(|| value.to_string()),
            "fstype" if !value.is_empty() => config.fstype = value.into(),
            "mkfs" if !value.is_empty() => config.mkfs = value.into(),
            "iface" if !value.is_empty() => config.iface = value.into(),
            "net" => {
                config.net = match value {
                    "kernel" => NetMode::Kernel,
                    "dpdk" => NetMode::Dpdk,
                    _ => return Err(bad("expected kernel or dpdk")),
                }
            }
            "nic" => {
                config.nics = value.split(',').map(str::to_string).collect();
                if !config.nics.iter().all(|a| is_pci_address(a)) {
                    return Err(bad("expected PCI addresses DDDD:BB:DD.F, comma-separated"));
                }
            }
            "nic_driver" => {
                config.nic_driver = match value {
                    "uio_pci_generic" => NicDriver::Uio,
                    "vfio-pci" => NicDriver::Vfio,
                    _ => return Err(bad("expected uio_pci_generic or vfio-pci")),
                }
            }
            "ip" => {
                let (ip, prefix) = parse_cidr(value).ok_or_else(|| bad("expected A.B.C.D/N"))?;
                config.ip = ip;
                config.prefix = prefix;
            }
            "gw" => config.gateway = value.parse().map_err(|_| bad("expected A.B.C.D"))?,
            "args" => config
                .args
                .extend(value.split_whitespace().map(str::to_string)),
            "eal" => config
                .eal
                .extend(value.split_whitespace().map(str::to_string)),
            "idle_sleep_us" => {
                config.idle_sleep_us = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|us| *us <= 1_000_000)
                        .ok_or_else(|| bad("expected microseconds, at most 1000000"))?,
                )
            }
            "stop_timeout" => {
                config.stop_timeout_secs = value
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("expected seconds > 0"))?
            }
            _ => warnings.push(format!("ignoring unknown kernel parameter {param}")),
        }
    }
    Ok(Parsed { config, warnings })
}

/// `0000:01:00.0`: domain, bus, device, function in hex (what sysfs names PCI functions).
fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && hex(11..12)
}

/// The second module list init loads (`/etc/modules-load.<name>`): the NIC's driver.
pub fn module_list_name(config: &Config) -> &'static str {
    match (config.net, config.nic_driver) {
        (NetMode::Kernel, _) => "kernel",
        (NetMode::Dpdk, NicDriver::Uio) => "dpdk",
        (NetMode::Dpdk, NicDriver::Vfio) => "dpdk-vfio",
    }
}

/// `10.0.2.15/24` → (address, prefix length).
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    Some((ip.parse().ok()?, prefix))
}

/// The broker's command line for this configuration (without the program path). With
/// `net=dpdk`, `dpdk_config` is the file init wrote (crate::dpdk): the broker listens on
/// lwIP's address instead of every kernel address.
pub fn broker_args(
    config: &Config,
    data_mounted_on: Option<&str>,
    dpdk_config: Option<&str>,
) -> Vec<String> {
    let mut args = vec!["serve".to_string()];
    match data_mounted_on {
        Some(dir) => {
            args.push("--data-dir".into());
            args.push(format!("{dir}/musqratt-data"));
        }
        None => args.push("--in-memory".into()),
    }
    args.push("--listen".into());
    match dpdk_config {
        Some(path) => {
            args.push(crate::dpdk::listen_addr(config.ip));
            args.push("--config".into());
            args.push(path.into());
        }
        None => args.push("0.0.0.0:1883".into()),
    }
    args.extend(config.args.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_honours_quotes_like_the_kernel() {
        assert_eq!(
            split("console=ttyS0  quiet musqratt.args=\"--a b\"\n"),
            vec!["console=ttyS0", "quiet", "musqratt.args=--a b"]
        );
        assert_eq!(split("a=\"\" b"), vec!["a=", "b"]);
        assert!(split(" \n").is_empty());
    }

    #[test]
    fn defaults_are_qemu_user_networking_in_memory() {
        let p = parse("console=ttyS0 quiet panic=-1\n").unwrap();
        assert_eq!(p.config, Config::default());
        assert!(p.warnings.is_empty());
        assert_eq!(p.config.net, NetMode::Kernel);
        assert_eq!(p.config.data, None);
    }

    #[test]
    fn every_parameter_is_read() {
        let p = parse(
            "console=ttyS0 musqratt.data=/dev/vdb musqratt.net=dpdk musqratt.ip=192.168.1.9/16 \
             musqratt.gw=192.168.0.1 musqratt.fstype=ext2 musqratt.mkfs=/bin/mke2fs \
             musqratt.iface=ens3 musqratt.args=\"--log-level debug\" musqratt.args=-v \
             musqratt.stop_timeout=3",
        )
        .unwrap();
        let c = p.config;
        assert_eq!(c.data.as_deref(), Some("/dev/vdb"));
        assert_eq!(c.net, NetMode::Dpdk);
        assert_eq!((c.ip, c.prefix), (Ipv4Addr::new(192, 168, 1, 9), 16));
        assert_eq!(c.gateway, Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(c.fstype, "ext2");
        assert_eq!(c.mkfs, "/bin/mke2fs");
        assert_eq!(c.iface, "ens3");
        assert_eq!(c.args, vec!["--log-level", "debug", "-v"]);
        assert_eq!(c.stop_timeout_secs, 3);
    }

    #[test]
    fn bad_values_are_errors_naming_the_parameter() {
        for bad in [
            "musqratt.net=tap",
            "musqratt.ip=10.0.2.15",
            "musqratt.ip=10.0.2.15/33",
            "musqratt.gw=gateway",
            "musqratt.stop_timeout=0",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("kernel parameter {bad}:")), "{e}");
        }
    }

    #[test]
    fn unknown_musqratt_keys_warn_and_others_are_ignored() {
        let p = parse("musqratt.dat=/dev/vda root=/dev/sda musqratt_x=1").unwrap();
        assert_eq!(
            p.warnings,
            vec!["ignoring unknown kernel parameter musqratt.dat=/dev/vda"]
        );
        assert_eq!(p.config.data, None);
    }

    #[test]
    fn empty_data_means_in_memory() {
        assert_eq!(parse("musqratt.data=").unwrap().config.data, None);
    }

    #[test]
    fn physical_nics_and_their_driver() {
        let p = parse(
            "musqratt.net=dpdk musqratt.nic=0000:01:00.0,0000:01:00.1 musqratt.nic_driver=vfio-pci",
        )
        .unwrap();
        assert_eq!(p.config.nics, vec!["0000:01:00.0", "0000:01:00.1"]);
        assert_eq!(p.config.nic_driver, NicDriver::Vfio);
        assert_eq!(module_list_name(&p.config), "dpdk-vfio");
        assert_eq!(module_list_name(&Config::default()), "kernel");
        for bad in [
            "musqratt.nic=01:00.0",
            "musqratt.nic=0000:01:00.0,",
            "musqratt.nic=0000:0g:00.0",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("expected PCI addresses"), "{bad}: {e}");
        }
        assert!(parse("musqratt.nic_driver=igb_uio")
            .unwrap_err()
            .contains("expected uio_pci_generic or vfio-pci"));
    }

    #[test]
    fn broker_args_with_and_without_a_disk() {
        let mut c = Config::default();
        assert_eq!(
            broker_args(&c, None, None),
            vec!["serve", "--in-memory", "--listen", "0.0.0.0:1883"]
        );
        c.args = vec!["-v".into()];
        assert_eq!(
            broker_args(&c, Some("/data"), None),
            vec![
                "serve",
                "--data-dir",
                "/data/musqratt-data",
                "--listen",
                "0.0.0.0:1883",
                "-v"
            ]
        );
        assert_eq!(
            broker_args(&c, None, Some("/run/a.toml")),
            vec![
                "serve",
                "--in-memory",
                "--listen",
                "10.0.2.15:1883",
                "--config",
                "/run/a.toml",
                "-v"
            ]
        );
    }
}
