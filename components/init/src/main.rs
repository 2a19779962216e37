//! PID 1 of the MusQraTT appliance (see README.md): mounts, kernel modules, the data disk,
//! the guest network, then the broker, supervised until it exits or a stop is requested, and
//! a clean power-off. Every failure prints one `init: …` line and powers off; PID 1 never
//! exits (the kernel would panic) and a panic powers off too.
//!
//! The decisions live in the library's pure modules, tested on the host; `sys` is the thin
//! layer that performs them; `supervise` is the loop that ends in power-off.

#![forbid(unsafe_code)]

use std::time::Duration;

use musqratt_init::sys::{self, fatal, log};
use musqratt_init::{cmdline, supervise};

/// The broker binary in the image.
const BROKER: &str = "/bin/musqratt";

fn main() {
    // Not PID 1 means someone ran it on a live system: it would remount and power that off.
    if !sys::is_pid1() {
        eprintln!("musqratt-init: not PID 1; this is the appliance's init and runs only as /init");
        std::process::exit(2);
    }
    // A panic must not unwind out of PID 1: say it on one line and power off.
    std::panic::set_hook(Box::new(|info| {
        fatal(&format!("internal error: {info}").replace('\n', " "));
    }));
    let signals = sys::block_signals().unwrap_or_else(|e| fatal(&e));
    if let Err(e) = sys::disable_ctrl_alt_del() {
        // Not fatal: Ctrl-Alt-Del would reboot at once instead of stopping cleanly.
        log(&e);
    }

    let cmdline = sys::mount_proc().unwrap_or_else(|e| fatal(&e));
    let parsed = cmdline::parse(&cmdline).unwrap_or_else(|e| fatal(&e));
    for w in &parsed.warnings {
        log(w);
    }
    let cfg = parsed.config;

    if let Err(e) = sys::mount_early(cfg.net) {
        fatal(&e);
    }
    // Before the modules: virtio_pci would otherwise take the NIC DPDK needs.
    let nics = sys::claim_nics(&cfg).unwrap_or_else(|e| fatal(&e));
    match sys::load_modules(&cfg) {
        Ok(n) => log(&format!(
            "loaded {n} kernel modules (net={})",
            musqratt_init::cmdline::module_list_name(&cfg)
        )),
        Err(e) => fatal(&e),
    }
    if let Err(e) = sys::bind_nics(&nics, &cfg) {
        fatal(&e);
    }
    let data = sys::mount_data(&cfg).unwrap_or_else(|e| fatal(&e));
    match data {
        Some(dir) => log(&format!(
            "data disk {} mounted on {dir}",
            cfg.data.as_deref().unwrap_or("")
        )),
        None => log("no musqratt.data= on the kernel command line: the broker runs --in-memory"),
    }
    if let Err(e) = musqratt_init::net::configure_network(&cfg) {
        fatal(&e);
    }
    let inputs = sys::open_input_devices();

    let dpdk_config = if nics.is_empty() {
        None
    } else {
        let text = musqratt_init::dpdk::broker_config(&cfg, &nics);
        Some(sys::write_dpdk_config(&text).unwrap_or_else(|e| fatal(&e)))
    };
    let args = cmdline::broker_args(&cfg, data, dpdk_config);
    log(&format!("starting {BROKER} {}", args.join(" ")));
    let broker = sys::spawn_broker(BROKER, &args).unwrap_or_else(|e| fatal(&e));
    supervise(
        &signals,
        &inputs,
        broker,
        Duration::from_secs(cfg.stop_timeout_secs),
    )
}
