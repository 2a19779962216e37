//! The kernel-module list (`/etc/modules-load`, then `/etc/modules-load.<net mode>`): which
//! `.ko` files to load, in order. Pure: tested on the host.
//!
//! There is no modprobe in the image and no modules.dep: the image builder writes the
//! dependency order into the list (virtio_ring before virtio, …), and init loads exactly that.

/// One module to load: the file and its parameters (empty for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    pub path: String,
    pub params: String,
    /// 1-based line number, for error lines.
    pub line: usize,
}

/// Parses a list: one module per line, `path [param=value ...]`; blank lines and lines
/// starting with `#` are skipped.
pub fn parse_list(text: &str) -> Vec<ModuleEntry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let (path, params) = match line.split_once(char::is_whitespace) {
                Some((p, rest)) => (p, rest.split_whitespace().collect::<Vec<_>>().join(" ")),
                None => (line, String::new()),
            };
            Some(ModuleEntry {
                path: path.to_string(),
                params,
                line: i + 1,
            })
        })
        .collect()
}

/// The lists init reads, in order: the common one, then the one for the network mode
/// (`virtio_net` for kernel sockets, `uio_pci_generic` for DPDK, the vfio modules for DPDK
/// over vfio-pci: crate::cmdline::module_list_name). A missing list is empty.
pub fn list_paths(list_name: &str) -> [String; 2] {
    [
        "/etc/modules-load".to_string(),
        format!("/etc/modules-load.{list_name}"),
    ]
}

/// What a failed `finit_module` means: the module already being there (built in, or loaded
/// twice through both lists) is success.
pub fn load_result_ok(errno: Option<i32>) -> bool {
    matches!(errno, None | Some(nix::libc::EEXIST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_skips_comments_and_blanks_and_keeps_order() {
        let list = parse_list(
            "# virtio, in dependency order\n\n/lib/modules/virtio_ring.ko\n  /lib/modules/virtio.ko  \n\
             /lib/modules/hugeish.ko  a=1   b=2\n#/lib/modules/skip.ko\n",
        );
        assert_eq!(
            list,
            vec![
                ModuleEntry {
                    path: "/lib/modules/virtio_ring.ko".into(),
                    params: "".into(),
                    line: 3
                },
                ModuleEntry {
                    path: "/lib/modules/virtio.ko".into(),
                    params: "".into(),
                    line: 4
                },
                ModuleEntry {
                    path: "/lib/modules/hugeish.ko".into(),
                    params: "a=1 b=2".into(),
                    line: 5
                },
            ]
        );
        assert!(parse_list("").is_empty());
    }

    #[test]
    fn already_loaded_is_fine_other_errors_are_not() {
        assert!(load_result_ok(None));
        assert!(load_result_ok(Some(nix::libc::EEXIST)));
        assert!(!load_result_ok(Some(nix::libc::ENOEXEC)));
        assert!(!load_result_ok(Some(nix::libc::ENOENT)));
    }

    #[test]
    fn list_paths_common_then_per_mode() {
        assert_eq!(
            list_paths("dpdk"),
            ["/etc/modules-load", "/etc/modules-load.dpdk"]
        );
    }
}
