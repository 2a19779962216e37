//! The guest network through rtnetlink (the messages are built in `netlink.rs`): the
//! syscall side, split from `sys.rs` to keep each file small.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};

use crate::cmdline::{Config, NetMode};
use crate::netlink::{self, Reply};
use crate::sys::{log, wait_for};

/// A NETLINK_ROUTE socket: one request at a time, each acknowledged.
struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Rtnl, String> {
        let fd = nix::sys::socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| format!("open a netlink socket: {e}"))?;
        Ok(Rtnl { fd, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement. `exists_ok`: EEXIST is success.
    fn request(
        &mut self,
        build: impl FnOnce(u32) -> Vec<u8>,
        what: &str,
        exists_ok: bool,
    ) -> Result<(), String> {
        self.seq += 1;
        let msg = build(self.seq);
        let fd = self.fd.as_raw_fd();
        nix::sys::socket::send(fd, &msg, MsgFlags::empty())
            .map_err(|e| format!("{what}: send: {e}"))?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = nix::sys::socket::recv(fd, &mut buf, MsgFlags::empty())
                .map_err(|e| format!("{what}: recv: {e}"))?;
            match netlink::parse_reply(&buf[..n], self.seq).map_err(|e| format!("{what}: {e}"))? {
                Reply::Ack => return Ok(()),
                Reply::Error(nix::libc::EEXIST) if exists_ok => return Ok(()),
                Reply::Error(errno) => return Err(format!("{what}: {}", Errno::from_raw(errno))),
                Reply::Other => continue,
            }
        }
    }
}

fn if_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// `lo` up always; in kernel mode also the interface up with its address and default route.
/// In DPDK mode the NIC belongs to the broker's own stack and init leaves it alone.
pub fn configure_network(cfg: &Config) -> Result<(), String> {
    let mut rtnl = Rtnl::open()?;
    let lo = if_index("lo").ok_or("network: no lo interface")?;
    rtnl.request(|s| netlink::link_up(lo, s), "bring up lo", false)?;
    if cfg.net == NetMode::Dpdk {
        return Ok(());
    }
    let name = cfg.iface.as_str();
    let mut index = None;
    if !wait_for(Duration::from_secs(5), || {
        index = if_index(name);
        index.is_some()
    }) {
        return Err(format!(
            "network: no {name} after 5 s (is virtio_net in /etc/modules-load.kernel?)"
        ));
    }
    let index = index.unwrap_or_default();
    let (ip, prefix, gw) = (cfg.ip, cfg.prefix, cfg.gateway);
    rtnl.request(
        |s| netlink::link_up(index, s),
        &format!("bring up {name}"),
        false,
    )?;
    rtnl.request(
        |s| netlink::add_address(index, ip, prefix, s),
        &format!("assign {ip}/{prefix} to {name}"),
        false,
    )?;
    rtnl.request(
        |s| netlink::add_default_route(index, gw, s),
        &format!("add the default route via {gw} on {name}"),
        true,
    )?;
    // Which driver carries the traffic (virtio_net under QEMU): the device's driver link.
    let driver = std::fs::read_link(format!("/sys/class/net/{name}/device/driver"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "no driver link".into());
    log(&format!(
        "network: {name} ({driver}) {ip}/{prefix}, gateway {gw}"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Set in the re-executed test process that runs inside the namespaces.
    const CHILD: &str = "MUSQRATT_INIT_NETNS_CHILD";

    fn output(cmd: &str) -> String {
        let mut parts = cmd.split_whitespace();
        let out = Command::new(parts.next().unwrap_or_default())
            .args(parts)
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The real kernel checks our rtnetlink messages: in a private user + network namespace
    /// (no root needed) eth0 is a veth, and configure_network must leave it the way
    /// `ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2` would, twice in
    /// a row (the second run must be harmless). Skipped without user namespaces or `ip`.
    #[test]
    fn network_configuration_in_a_private_netns() {
        if std::env::var_os(CHILD).is_some() {
            let made = Command::new("ip")
                .args([
                    "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
                ])
                .status()
                .expect("run ip");
            assert!(made.success(), "ip link add eth0 type veth");
            let cfg = Config::default();
            configure_network(&cfg).expect("first run");
            configure_network(&cfg).expect("second run");
            assert!(output("ip -o link show lo").contains(",UP"));
            assert!(output("ip -o link show eth0").contains(",UP"));
            let addr = output("ip -o -4 addr show dev eth0");
            assert!(addr.contains("inet 10.0.2.15/24 brd 10.0.2.255"), "{addr}");
            let route = output("ip -4 route show default");
            assert!(route.contains("default via 10.0.2.2 dev eth0"), "{route}");
            return;
        }
        let usable = Command::new("unshare")
            .args(["-Urn", "ip", "-V"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !usable {
            eprintln!("skipped: needs unprivileged user namespaces and iproute2");
            return;
        }
        let exe = std::env::current_exe().expect("current_exe");
        let out = Command::new("unshare")
            .arg("-Urn")
            .arg(exe)
            .args([
                "--exact",
                "net::tests::network_configuration_in_a_private_netns",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the test in namespaces");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The filter must have matched: the child ran exactly this test.
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    }
}
