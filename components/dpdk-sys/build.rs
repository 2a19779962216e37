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

    let musl = std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    // The C shim: DPDK's flags as they are, `-include rte_config.h` and `-march` included
    // (the headers assume both).
    let mut build = cc::Build::new();
    build.file("src/shim.c").warnings(false);
    if musl {
        build.include(musl_include_overlay(&out));
    }
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("musqratt_dpdk_shim");

    if musl {
        link_static_for_musl(&out);
    } else {
        link_shared(&libs);
    }

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
    if musl {
        // Our musl target's triple means nothing to clang; the allowlisted DPDK types have
        // the same layout under glibc's and musl's headers on x86_64 Linux.
        bindings = bindings.clang_arg("--target=x86_64-unknown-linux-gnu");
    }
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
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// Shared DPDK libraries (the glibc build). Poll-mode drivers are not linked: EAL dlopens them
/// at run time from Debian's pmds directory. The exception is net_ring, whose
/// rte_eth_from_rings we call directly (its .so in /usr/lib is a symlink into the pmds
/// directory, so EAL's dlopen of the plugin finds the same, already loaded object).
fn link_shared(libs: &[String]) {
    for lib in libs {
        if let Some(dir) = lib.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(name) = lib.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={name}");
        }
    }
    // Likewise the vdev bus, for rte_vdev_uninit (removing a ring pair's devices).
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
}

/// Where Debian's static DPDK archives are (libdpdk-dev ships them beside the .so files).
const DPDK_LIBDIR: &str = "/usr/lib/x86_64-linux-gnu";

/// Poll-mode drivers and buses of the static build. A static binary cannot dlopen plugins, so
/// the drivers a deployment may name in `eal_args` or bind to a NIC are linked in whole (each
/// registers itself from a constructor): PCI and virtual buses, the ring mempool, af_packet and
/// tap (veth and TAP testbeds), ring (unit tests), virtio (the QEMU appliance), and the physical
/// and cloud NICs of an edge deployment: Intel e1000/igb/e1000e, ixgbe (82599, X5xx), i40e
/// (X710, XL710), ice (E810) and iavf (their VFs), VMware's vmxnet3 and AWS's ENA.
/// docs/runtime.md.
const STATIC_DRIVERS: &[&str] = &[
    "bus_pci",
    "bus_vdev",
    "mempool_ring",
    "net_af_packet",
    "net_ring",
    "net_tap",
    "net_virtio",
    "net_e1000",
    "net_ixgbe",
    "net_i40e",
    "net_ice",
    "net_iavf",
    "net_vmxnet3",
    "net_ena",
];

/// DPDK libraries the drivers and we use, in link order (a library before what it needs).
/// common_iavf: the virtchnl code of iavf and ice (DCF); security and cryptodev: ixgbe's inline
/// IPsec; timer: ENA's keep-alive watchdog; hash: ixgbe, i40e, ice flow tables (and gso).
const STATIC_LIBS: &[&str] = &[
    "common_iavf",
    "security",
    "cryptodev",
    "timer",
    "gso",
    "ethdev",
    "hash",
    "rcu",
    "cmdline",
    "net",
    "meter",
    "mbuf",
    "mempool",
    "ring",
    "pci",
    "eal",
    "kvargs",
    "telemetry",
];

/// Headers musl lacks and DPDK's include: BSD's `sys/queue.h` (glibc's copy, macros only)
/// and libbsd's `bsd/string.h`, whose strlcpy/strlcat musl's own string.h declares.
fn musl_include_overlay(out: &std::path::Path) -> PathBuf {
    let dir = out.join("musl-include");
    std::fs::create_dir_all(dir.join("sys")).expect("create include overlay");
    std::fs::create_dir_all(dir.join("bsd")).expect("create include overlay");
    std::fs::copy(
        "/usr/include/x86_64-linux-gnu/sys/queue.h",
        dir.join("sys/queue.h"),
    )
    .expect("copy sys/queue.h from glibc's headers (libc6-dev)");
    std::fs::write(
        dir.join("bsd/string.h"),
        "/* musl declares strlcpy/strlcat in string.h. */\n#include <string.h>\n",
    )
    .expect("write bsd/string.h");
    dir
}

/// The static musl build links Debian's static DPDK archives. They were compiled against
/// glibc; the few glibc-only symbols they reference (fortified `__*_chk` variants, fcntl64,
/// backtrace) are forwarded to musl by src/musl_compat.c. The archives are reached through
/// symlinks in one private directory, so the linker never searches /usr/lib/x86_64-linux-gnu
/// (where glibc's own libc.a would be found before musl's).
fn link_static_for_musl(out: &std::path::Path) {
    let dir = out.join("dpdk-static");
    std::fs::create_dir_all(&dir).expect("create dpdk-static");
    let link = |name: &str, whole: bool| {
        let file = format!("lib{name}.a");
        let target = PathBuf::from(DPDK_LIBDIR).join(&file);
        if !target.exists() {
            eprintln!(
                "error: {} not found (libdpdk-dev, libnuma-dev)",
                target.display()
            );
            std::process::exit(1);
        }
        let linkpath = dir.join(&file);
        let _ = std::fs::remove_file(&linkpath);
        std::os::unix::fs::symlink(&target, &linkpath).expect("symlink a DPDK archive");
        // -bundle: the archives go to the final link, in this order, after this crate's
        // objects (bundled into the rlib, a library would precede the drivers needing it).
        let kind = if whole {
            "static:-bundle,+whole-archive"
        } else {
            "static:-bundle"
        };
        println!("cargo:rustc-link-lib={kind}={name}");
    };
    for d in STATIC_DRIVERS {
        link(&format!("rte_{d}"), true);
    }
    for l in STATIC_LIBS {
        link(&format!("rte_{l}"), false);
    }
    link("numa", false);
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rerun-if-changed=src/musl_compat.c");
    // Linked after the archives that call it (-bundle again, hence no cargo metadata from cc).
    cc::Build::new()
        .file("src/musl_compat.c")
        .define("_GNU_SOURCE", None)
        .cargo_metadata(false)
        .compile("musqratt_dpdk_musl_compat");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static:-bundle=musqratt_dpdk_musl_compat");
}
