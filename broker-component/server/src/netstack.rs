//! Start-up of the user-level network path (`[network] stack = "lwip-dpdk"`, docs/design.md
//! "The user-level network path"): the DPDK EAL and port (musqratt-nic), one lwIP stack over it
//! (musqratt-tcpip), and the POSIX shim (musqratt-musl-shim) that routes sockets bound to the
//! stack's address to it. The rest of `serve` is the same code on both paths: a listener whose
//! `bind` is the lwIP address simply ends up on lwIP.
//!
//! Failure is one error line and a non-zero exit, never a silent fall-back to kernel sockets.

use crate::config::{NetworkStack, Settings};

/// Keeps the user-level stack alive while `serve` runs; dropping it stops the poll loop, closes
/// the port and cleans up the EAL (its runtime directory included).
pub struct NetGuard {
    #[cfg(feature = "lwip-dpdk")]
    stack: musqratt_tcpip::Stack,
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        #[cfg(feature = "lwip-dpdk")]
        {
            // The stack owns the port, the port holds the EAL: stopping the stack releases both.
            self.stack.shutdown();
            tracing::info!("user-level network stack stopped");
        }
    }
}

pub fn start(settings: &Settings) -> Result<Option<NetGuard>, String> {
    match &settings.network {
        NetworkStack::Kernel => Ok(None),
        NetworkStack::LwipDpdk(cfg) => start_lwip(cfg).map(Some),
    }
}

#[cfg(not(feature = "lwip-dpdk"))]
fn start_lwip(_: &crate::config::LwipDpdk) -> Result<NetGuard, String> {
    Err(
        "network.stack = \"lwip-dpdk\": this musqratt was built without the lwip-dpdk feature \
         (`make release` builds it; or cargo build --release -p musqratt --features lwip-dpdk)"
            .into(),
    )
}

#[cfg(feature = "lwip-dpdk")]
fn start_lwip(cfg: &crate::config::LwipDpdk) -> Result<NetGuard, String> {
    use musqratt_nic::{Eal, Port, PortConfig, PortRef};
    use musqratt_tcpip::{Interface, Stack, StackConfig};

    let eal = Eal::init(&cfg.eal_args).map_err(|e| format!("network.eal_args: {e}"))?;
    let port_ref = match &cfg.port {
        Some(name) => PortRef::Name(name),
        None => PortRef::Id(0),
    };
    let port =
        Port::open(&eal, port_ref, PortConfig::default()).map_err(|e| format!("network: {e}"))?;
    let (name, mac, link) = (port.name().to_string(), port.mac(), port.link());
    // The port keeps the EAL alive; our handle can go.
    drop(eal);
    let iface = Interface {
        link: Box::new(port),
        ip: cfg.ip,
        prefix_len: cfg.prefix_len,
        gateway: cfg.gateway,
    };
    let mut stack_cfg = StackConfig::new(vec![iface]);
    stack_cfg.idle_sleep_max = std::time::Duration::from_micros(cfg.idle_sleep_max_us.into());
    let stack = Stack::start(stack_cfg)
        .map_err(|e| format!("network: cannot start the lwIP stack: {e}"))?;
    musqratt_musl_shim::install(stack.clone(), &[(cfg.ip, cfg.prefix_len)])
        .map_err(|e| format!("network: {e}"))?;
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    tracing::info!(
        port = %name, %mac, link_up = link.up, ip = %format_args!("{}/{}", cfg.ip, cfg.prefix_len),
        gateway = ?cfg.gateway,
        "user-level network: lwIP over DPDK; listeners bound to {} are served by it", cfg.ip
    );
    Ok(NetGuard { stack })
}
