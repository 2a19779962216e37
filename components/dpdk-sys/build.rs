//! Finds Debian's DPDK with pkg-config, compiles the C shim for DPDK's static-inline
//! functions, and generates bindings for the allowlisted items only.

use std::path::PathBuf;
use std::process::Command;

const MISSING: &str = "libdpdk-dev not found (apt-get install libdpdk-dev dpdk pkg-config)";

/// `pkg-config ARGS libdpdk`, split on whitespace; None when pkg-config or libdpdk is missing.
fn pkg_config(args: &[&str]) -> Option<Vec<String>> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.split_whitespace().map(str::to_owned).collect())
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");

    let (Some(cflags), Some(libs)) = (pkg_config(&["--cflags"]), pkg_config(&["--libs"])) else {
        // One line, no panic backtrace: this is a missing package, not a bug.
        eprintln!("error: {MISSING}");
        std::process::exit(1);
    };

    // The C shim: DPDK's flags as they are, `-include rte_config.h` and `-march` included
    // (the headers assume both).
    let mut build = cc::Build::new();
    build.file("src/shim.c").warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("musqratt_dpdk_shim");

    // Shared DPDK libraries. Poll-mode drivers are not linked: EAL dlopens them at run time
    // from Debian's pmds directory. The exception is net_ring, whose rte_eth_from_rings
    // we call directly (its .so in /usr/lib is a symlink into the pmds directory, so EAL's
    // dlopen of the plugin finds the same, already loaded object).
    for lib in &libs {
        if let Some(dir) = lib.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(name) = lib.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={name}");
        }
    }
    // Likewise the vdev bus, for rte_vdev_uninit (removing a ring pair's devices).
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");

    let mut bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(cflags.iter().filter(|f| !f.starts_with("-march")))
        .opaque_type("rte_mbuf")
        .opaque_type("rte_mempool")
        .opaque_type("rte_ring")
        .allowlist_type("musqratt_consts")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_ether_addr")
        .derive_default(true)
        .generate_comments(false)
        .layout_tests(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in [
        "musqratt_.*",
        "rte_eal_init",
        "rte_eal_cleanup",
        "rte_eal_get_runtime_dir",
        "rte_strerror",
        "rte_socket_id",
        "rte_eth_dev_get_port_by_name",
        "rte_eth_dev_get_name_by_port",
        "rte_eth_dev_is_valid_port",
        "rte_eth_dev_socket_id",
        "rte_eth_dev_configure",
        "rte_eth_dev_adjust_nb_rx_tx_desc",
        "rte_eth_rx_queue_setup",
        "rte_eth_tx_queue_setup",
        "rte_eth_dev_start",
        "rte_eth_dev_stop",
        "rte_eth_dev_close",
        "rte_eth_promiscuous_enable",
        "rte_eth_macaddr_get",
        "rte_eth_dev_get_mtu",
        "rte_eth_stats_get",
        "rte_eth_from_rings",
        "rte_pktmbuf_pool_create",
        "rte_mempool_free",
        "rte_mempool_avail_count",
        "rte_ring_create",
        "rte_ring_free",
        "rte_vdev_uninit",
    ] {
        bindings = bindings.allowlist_function(f);
    }
    let bindings = bindings
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over DPDK headers: {e}"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}
