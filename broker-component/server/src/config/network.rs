//! `[network]`: which TCP/IP stack serves the listeners (docs/design.md "The user-level network
//! path"). Parsed whether or not this binary carries the lwIP/DPDK path, so a config file means
//! the same everywhere; `serve` refuses `lwip-dpdk` in a binary built without it.

use std::net::Ipv4Addr;

use toml_edit::{Item, Key};

use super::{entries, shown, ConfigError, Cx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkStack {
    /// Kernel sockets (the default).
    Kernel,
    /// lwIP over a DPDK port, reached through the POSIX shim.
    LwipDpdk(LwipDpdk),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LwipDpdk {
    /// The lwIP interface's address and prefix length (`ip = "10.99.0.2/24"`).
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// DPDK EAL arguments, e.g. `["--no-huge", "--vdev=net_af_packet0,iface=veth0"]`.
    pub eal_args: Vec<String>,
    /// The DPDK port to drive: a device name (`net_af_packet0`) or, by default, the first port.
    pub port: Option<String>,
    /// `idle_sleep_max_us`: the longest sleep of the tcpip poll loop when idle. Frames arriving
    /// while it sleeps wait up to this long (latency); a shorter cap costs idle CPU. Default 1000.
    pub idle_sleep_max_us: u32,
}

/// Bounds of `idle_sleep_max_us`: 0 = never sleep (busy-poll a core), at most one second.
const IDLE_SLEEP_MAX_US: std::ops::RangeInclusive<i64> = 0..=1_000_000;
pub const DEFAULT_IDLE_SLEEP_MAX_US: u32 = 1_000;

const KEYS: &[&str] = &[
    "stack",
    "ip",
    "gateway",
    "eal_args",
    "port",
    "idle_sleep_max_us",
];

impl Cx<'_> {
    pub(super) fn network(&self, key: &Key, item: &Item) -> Result<NetworkStack, ConfigError> {
        let mut stack = None;
        let mut ip = None;
        let mut gateway = None;
        let mut eal_args = None;
        let mut port = None;
        let mut idle = None;
        for (k, v) in entries(self.table(key, item, "network")?) {
            match k.get() {
                "stack" => match self.string(k, v, "network.stack")? {
                    s @ ("kernel" | "lwip-dpdk") => stack = Some((s == "lwip-dpdk", k)),
                    _ => {
                        return Err(self.at(
                            k,
                            v,
                            "network.stack",
                            format_args!(
                                "expected \"kernel\" or \"lwip-dpdk\", found {}",
                                shown(v)
                            ),
                        ))
                    }
                },
                "ip" => {
                    let s = self.string(k, v, "network.ip")?;
                    ip = Some(parse_cidr(s).ok_or_else(|| {
                        self.at(
                            k,
                            v,
                            "network.ip",
                            format_args!("expected an IPv4 address with prefix, like \"10.99.0.2/24\", found {}", shown(v)),
                        )
                    })?);
                }
                "gateway" => {
                    let s = self.string(k, v, "network.gateway")?;
                    gateway = Some(s.parse::<Ipv4Addr>().map_err(|_| {
                        self.at(
                            k,
                            v,
                            "network.gateway",
                            format_args!("expected an IPv4 address, found {}", shown(v)),
                        )
                    })?);
                }
                "eal_args" => {
                    let expected = || {
                        self.at(
                            k,
                            v,
                            "network.eal_args",
                            format_args!("expected an array of strings, found {}", shown(v)),
                        )
                    };
                    let arr = v.as_array().ok_or_else(expected)?;
                    let mut args = Vec::new();
                    for a in arr.iter() {
                        args.push(a.as_str().ok_or_else(expected)?.to_string());
                    }
                    eal_args = Some(args);
                }
                "port" => port = Some(self.string(k, v, "network.port")?.to_string()),
                "idle_sleep_max_us" => {
                    let n = v.as_integer().filter(|n| IDLE_SLEEP_MAX_US.contains(n));
                    idle = Some(n.ok_or_else(|| {
                        self.at(
                            k,
                            v,
                            "network.idle_sleep_max_us",
                            format_args!("expected an integer 0..=1000000, found {}", shown(v)),
                        )
                    })? as u32);
                }
                other => return Err(self.unknown(k, &format!("network.{other}"), KEYS)),
            }
        }
        match stack {
            Some((true, k)) => {
                let Some((ip, prefix_len)) = ip else {
                    return Err(self.err(
                        k.span(),
                        "network.ip",
                        "required with stack = \"lwip-dpdk\" (like ip = \"10.99.0.2/24\")",
                    ));
                };
                let Some(eal_args) = eal_args else {
                    return Err(self.err(
                        k.span(),
                        "network.eal_args",
                        "required with stack = \"lwip-dpdk\" (the DPDK EAL arguments, see docs/deploy-dpdk.md)",
                    ));
                };
                Ok(NetworkStack::LwipDpdk(LwipDpdk {
                    ip,
                    prefix_len,
                    gateway,
                    eal_args,
                    port,
                    idle_sleep_max_us: idle.unwrap_or(DEFAULT_IDLE_SLEEP_MAX_US),
                }))
            }
            _ => {
                if ip.is_some()
                    || gateway.is_some()
                    || eal_args.is_some()
                    || port.is_some()
                    || idle.is_some()
                {
                    return Err(self.at(
                        key,
                        item,
                        "network.stack",
                        "ip, gateway, eal_args and port need stack = \"lwip-dpdk\"",
                    ));
                }
                Ok(NetworkStack::Kernel)
            }
        }
    }
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|&l| (1..=32).contains(&l))?;
    Some((ip.parse().ok()?, len))
}

#[cfg(test)]
mod tests {
    use crate::config::{NetworkStack, Settings};

    #[test]
    fn lwip_dpdk_section_parses() {
        let s = Settings::parse(
            "t.toml",
            "[network]\nstack = \"lwip-dpdk\"\nip = \"10.99.0.2/24\"\ngateway = \"10.99.0.1\"\neal_args = [\"--no-huge\", \"-l\", \"0\"]\n",
        )
        .unwrap();
        let NetworkStack::LwipDpdk(n) = s.network else {
            panic!("not lwip: {:?}", s.network)
        };
        assert_eq!(n.ip, std::net::Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(n.prefix_len, 24);
        assert_eq!(n.gateway, Some(std::net::Ipv4Addr::new(10, 99, 0, 1)));
        assert_eq!(n.eal_args, ["--no-huge", "-l", "0"]);
        assert_eq!(n.idle_sleep_max_us, 1000);
        let s = Settings::parse(
            "t.toml",
            "[network]\nstack = \"lwip-dpdk\"\nip = \"10.99.0.2/24\"\neal_args = []\nidle_sleep_max_us = 50\n",
        )
        .unwrap();
        let NetworkStack::LwipDpdk(n) = s.network else {
            panic!("not lwip: {:?}", s.network)
        };
        assert_eq!(n.idle_sleep_max_us, 50);
    }

    #[test]
    fn lwip_dpdk_errors_name_line_and_key() {
        let e = Settings::parse(
            "t.toml",
            "[network]\nstack = \"lwip-dpdk\"\nip = \"10.99.0.2\"\n",
        )
        .unwrap_err();
        assert!(e.0.starts_with("t.toml:3: key 'network.ip'"), "{e}");
        let e = Settings::parse(
            "t.toml",
            "[network]\nstack = \"lwip-dpdk\"\nip = \"10.99.0.2/24\"\n",
        )
        .unwrap_err();
        assert!(
            e.0.contains("'network.eal_args'") && e.0.contains("required"),
            "{e}"
        );
        let e = Settings::parse("t.toml", "[network]\n\neal_args = [1]\n").unwrap_err();
        assert!(e.0.starts_with("t.toml:3: key 'network.eal_args'"), "{e}");
        let e = Settings::parse("t.toml", "[network]\nip = \"10.0.0.1/8\"\n").unwrap_err();
        assert!(e.0.contains("need stack = \"lwip-dpdk\""), "{e}");
        let e = Settings::parse("t.toml", "[network]\nstack = \"dpdk\"\n").unwrap_err();
        assert!(e.0.starts_with("t.toml:2: key 'network.stack'"), "{e}");
        let e = Settings::parse(
            "t.toml",
            "[network]\nstack = \"lwip-dpdk\"\nip = \"10.0.0.1/8\"\neal_args = []\nidle_sleep_max_us = -1\n",
        )
        .unwrap_err();
        assert!(
            e.0.starts_with("t.toml:5: key 'network.idle_sleep_max_us'"),
            "{e}"
        );
    }
}
