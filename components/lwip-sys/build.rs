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
    for flag in libs.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
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
