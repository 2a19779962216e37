//! Finds lwIP with pkg-config, compiles the C shim and generates the bindings.
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Option<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("lwip")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=build.rs");
    let (Some(cflags), Some(libs)) = (pkg_config(&["--cflags"]), pkg_config(&["--libs"])) else {
        panic!("liblwip-dev not found (apt-get install liblwip-dev libclang-dev pkg-config)");
    };
    let cflags: Vec<&str> = cflags.split_whitespace().collect();
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        // The static musl build: Debian ships lwIP only as a shared library, so lwIP is
        // compiled here from Debian's own source (scripts/fetch-lwip-src.sh unpacks it and
        // checks that its lwipopts.h is liblwip-dev's, so the headers below describe it).
        compile_lwip_from_source();
    } else {
        for flag in libs.split_whitespace() {
            if let Some(dir) = flag.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(lib) = flag.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={lib}");
            }
        }
    }

    let mut build = cc::Build::new();
    build.file("csrc/shim.c").warnings(true);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("musqratt_lwip_shim");

    let bindings = bindgen::Builder::default()
        .header("csrc/shim.h")
        .clang_args(cflags.iter().copied())
        // Our musl target's triple means nothing to clang; the layouts are the same.
        .clang_args(
            (std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl"))
                .then_some("--target=x86_64-unknown-linux-gnu"),
        )
        .allowlist_function("lwip_init")
        .allowlist_function("sys_check_timeouts")
        .allowlist_function("sys_timeouts_sleeptime")
        .allowlist_function("netif_set_default")
        .allowlist_function("netif_poll")
        .allowlist_function("pbuf_free")
        .allowlist_function("pbuf_copy_partial")
        .allowlist_function("tcp_(new|arg|recv|sent|err|accept|write|output|recved|close|shutdown|abort|bind_netif)")
        .allowlist_function("musq_.*")
        .allowlist_type("err_enum_t")
        .allowlist_type("tcp_state")
        .allowlist_var("TCP_WRITE_FLAG_.*")
        .allowlist_var("MUSQ_.*")
        .opaque_type("tcp_pcb")
        .opaque_type("netif")
        .opaque_type("pbuf")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .generate()
        .expect("bindgen failed on the lwIP headers");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("bindings.rs");
    bindings.write_to_file(out).expect("writing bindings.rs");
}

/// lwIP's core, IPv4/IPv6, the parts of its API layer that `lwip_init` reaches, Ethernet and
/// Debian's Unix port (sys_arch.c), compiled with the target's C compiler (musl-gcc) into a
/// static archive. The BSD socket layer (api/sockets.c) is left out: we never call it (the
/// socket API is our own, in musqratt-tcpip) and it needs glibc-only macros.
fn compile_lwip_from_source() {
    println!("cargo:rerun-if-env-changed=MUSQRATT_LWIP_SRC");
    let Some(src) = std::env::var_os("MUSQRATT_LWIP_SRC").map(PathBuf::from) else {
        eprintln!(
            "error: the musl build of lwip-sys compiles lwIP from Debian's source: set \
             MUSQRATT_LWIP_SRC to the tree scripts/fetch-lwip-src.sh unpacks (scripts/build-musl.sh does)"
        );
        std::process::exit(1);
    };
    let mut files = Vec::new();
    for dir in ["src/core", "src/core/ipv4", "src/core/ipv6"] {
        let entries = std::fs::read_dir(src.join(dir))
            .unwrap_or_else(|e| panic!("reading {}: {e}", src.join(dir).display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "c") {
                files.push(path);
            }
        }
    }
    for file in [
        "src/api/api_lib.c",
        "src/api/api_msg.c",
        "src/api/err.c",
        "src/api/if_api.c",
        "src/api/netbuf.c",
        "src/api/netifapi.c",
        "src/netif/ethernet.c",
        "port/sys_arch.c",
    ] {
        files.push(src.join(file));
    }
    files.sort();
    let base = || {
        let mut build = cc::Build::new();
        build
            .include(src.join("src/include"))
            .include(src.join("port/include"))
            .define("_GNU_SOURCE", None)
            .warnings(false);
        build
    };
    let mut objects = base().files(&files).compile_intermediates();
    // tcpip.c defines tcpip_try_callback, which csrc/shim.c replaces (we run no tcpip thread:
    // see the comment there). With the shared library the executable's definition interposes;
    // in one static link the upstream definition is renamed instead, so every caller inside
    // lwIP reaches ours. The rest of tcpip.c (the core lock) is still needed.
    objects.extend(
        base()
            .file(src.join("src/api/tcpip.c"))
            .define(
                "tcpip_try_callback",
                Some("musq_upstream_tcpip_try_callback"),
            )
            .compile_intermediates(),
    );
    cc::Build::new().objects(&objects).compile("lwip");
}
