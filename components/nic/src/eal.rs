//! The DPDK Environment Abstraction Layer: started once per process from arguments, cleaned
//! up (with its runtime directory) when the last user is gone.
//!
//! Thread-safety: `Eal::init` may be called from any thread; DPDK's EAL is process-global and
//! `init` is guarded so that only the first call in a process ever reaches `rte_eal_init`.
//! The `Eal` value and every `Port` share the EAL through an `Arc`: `rte_eal_cleanup` runs when
//! the `Eal` and all ports opened from it are dropped, never while a port still works.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use musqratt_dpdk_sys as sys;

use crate::error::NicError;

/// Set by the first `Eal::init` in the process, successful or not: DPDK refuses a second
/// `rte_eal_init` after success (also after cleanup), and after some failures its global
/// state is half set up, so we never call it twice.
static INIT_ATTEMPTED: AtomicBool = AtomicBool::new(false);

/// The program name put in front of the caller's arguments (argv[0] for `rte_eal_init`).
const PROGRAM: &str = "musqratt";

/// EAL options of DPDK 22.11 that take a value (`--opt value` or `--opt=value`). Used only to
/// *name* the culprit of a failed init, never to reject arguments ourselves.
const LONG_WITH_VALUE: &[&str] = &[
    "allow",
    "base-virtaddr",
    "block",
    "file-prefix",
    "force-max-simd-bitwidth",
    "huge-dir",
    "iova-mode",
    "lcores",
    "log-level",
    "main-lcore",
    "mbuf-pool-ops-name",
    "proc-type",
    "socket-limit",
    "socket-mem",
    "syslog",
    "trace",
    "trace-bufsz",
    "trace-dir",
    "trace-mode",
    "vdev",
    "vfio-intr",
    "vfio-vf-token",
];
/// EAL flags of DPDK 22.11 without a value (`huge-worker-stack` takes an optional `=value`).
const LONG_FLAGS: &[&str] = &[
    "create-uio-dev",
    "help",
    "huge-unlink",
    "huge-worker-stack",
    "in-memory",
    "legacy-mem",
    "match-allocations",
    "no-hpet",
    "no-huge",
    "no-pci",
    "no-shconf",
    "no-telemetry",
    "single-file-segments",
    "telemetry",
    "vmware-tsc-map",
];
/// Short options: `a:b:c:s:d:hl:S:m:n:r:v` (from librte_eal's getopt string).
const SHORT_WITH_VALUE: &str = "abcsdlSmnr";
const SHORT_FLAGS: &str = "hv";

/// A running EAL. Create with [`Eal::init`]; ports are opened with `Port::open(&eal, ..)`.
pub struct Eal {
    pub(crate) inner: Arc<EalInner>,
}

/// Shared by the `Eal` handle and every port: its drop is the EAL's shutdown.
pub(crate) struct EalInner {
    file_prefix: String,
    runtime_dir: Option<PathBuf>,
    /// The arguments and what EAL logged during init: a device that failed to probe does not
    /// fail `rte_eal_init` (EAL only logs "Bus (vdev) probe failed"), so `Port::open` looks
    /// here to say why its port does not exist.
    args: Vec<String>,
    init_log: String,
}

/// At most this much of EAL's init log is kept for diagnosis.
const MAX_KEPT_LOG: usize = 64 * 1024;

impl Eal {
    /// Starts DPDK's EAL with `args` (EAL arguments only, no program name: one is prepended).
    ///
    /// Only the first call in a process reaches DPDK; any later call returns
    /// [`NicError::AlreadyInitialized`]. On failure the error is one line with DPDK's reason,
    /// the argument it rejected when that can be told, and all arguments.
    pub fn init(args: &[String]) -> Result<Eal, NicError> {
        let c_args = args
            .iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| NicError::NulInArgument(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if INIT_ATTEMPTED.swap(true, Ordering::SeqCst) {
            return Err(NicError::AlreadyInitialized);
        }
        // EAL keeps pointers into argv (getopt permutes it; some options are kept by
        // reference), so argv and its strings live for the rest of the process: leaked once,
        // which the once-per-process guard above bounds to one small allocation.
        let mut argv: Vec<*mut c_char> = std::iter::once(CString::new(PROGRAM).expect("no NUL"))
            .chain(c_args)
            .map(CString::into_raw)
            .collect();
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
        let argc = (argv.len() - 1) as c_int;

        let mut log: *mut c_char = std::ptr::null_mut();
        let mut log_len: usize = 0;
        let mut err: c_int = 0;
        // SAFETY: argv is a NULL-terminated array of argc valid, NUL-terminated, leaked (so
        // 'static) strings; the out-pointers are valid locals. INIT_ATTEMPTED guarantees this
        // is the only rte_eal_init call in the process.
        let ret = unsafe {
            sys::musqratt_eal_init_logged(argc, argv.as_mut_ptr(), &mut log, &mut log_len, &mut err)
        };
        let log_text = take_c_buffer(log, log_len);
        // EAL's own messages were captured to diagnose a failure; pass them on unchanged.
        if !log_text.is_empty() {
            eprint!("{log_text}");
        }
        if ret < 0 {
            // A failed init may already have created its runtime directory: do not leave it.
            remove_runtime_dir(runtime_dir().as_deref(), &file_prefix(args));
            return Err(NicError::EalInit {
                reason: rte_strerror(err),
                culprit: find_culprit(args, &log_text),
                args: args.to_vec(),
            });
        }

        let mut init_log = log_text;
        if init_log.len() > MAX_KEPT_LOG {
            let mut cut = MAX_KEPT_LOG;
            while !init_log.is_char_boundary(cut) {
                cut -= 1;
            }
            init_log.truncate(cut);
        }
        let inner = EalInner {
            file_prefix: file_prefix(args),
            runtime_dir: runtime_dir(),
            args: args.to_vec(),
            init_log,
        };
        // rte_eal_init returns how many arguments it parsed after argv[0]; getopt moved what
        // it did not consume to argv[ret + 1..argc]. An argument the EAL did not take as its
        // own must not be silently ignored.
        let parsed = ret as usize + 1;
        if parsed < argc as usize {
            let leftover: Vec<String> = argv[parsed..argc as usize]
                .iter()
                // SAFETY: every entry below argc is one of our leaked, NUL-terminated strings
                // (getopt only permutes the array).
                .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
                .collect();
            drop(inner); // cleans the EAL up again
            return Err(NicError::EalInit {
                reason: "argument(s) not used by the EAL".to_owned(),
                culprit: Some(leftover.join(" ")),
                args: args.to_vec(),
            });
        }
        Ok(Eal {
            inner: Arc::new(inner),
        })
    }

    /// The `--file-prefix` in force ("rte" when none was given).
    pub fn file_prefix(&self) -> &str {
        &self.inner.file_prefix
    }

    /// The EAL's runtime directory (e.g. /var/run/dpdk/PREFIX), removed when the EAL ends.
    pub fn runtime_dir(&self) -> Option<&Path> {
        self.inner.runtime_dir.as_deref()
    }

    /// The calling thread's DPDK lcore id, or `None` for a thread the EAL did not create (a
    /// normal std thread: DPDK then uses no per-lcore mempool cache, which is correct, only a
    /// little slower).
    pub fn lcore_id(&self) -> Option<u32> {
        // SAFETY: rte_lcore_id reads a thread-local; valid after EAL init, which `self` proves.
        let id = unsafe { sys::musqratt_rte_lcore_id() };
        (id != u32::MAX).then_some(id)
    }
}

impl EalInner {
    /// Why port `name` is missing, when an EAL argument asked for that device: it failed to
    /// probe at init, and the init log's first line naming it says why.
    pub(crate) fn device_failure(&self, name: &str) -> Option<NicError> {
        let argument = device_argument(&self.args, name)?;
        let reason = self
            .init_log
            .lines()
            .find(|l| l.contains(name))
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| "device not created (see the EAL log)".to_owned());
        Some(NicError::DeviceFailed {
            port: name.to_owned(),
            argument,
            reason,
        })
    }
}

/// The `--vdev` / `-a` / `--allow` argument (as "--vdev VALUE") whose device is `name`.
pub(crate) fn device_argument(args: &[String], name: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (opt, value) = match a.split_once('=') {
            Some((o, v)) if o == "--vdev" || o == "--allow" => (o.to_owned(), Some(v.to_owned())),
            _ if a == "--vdev" || a == "--allow" || a == "-a" => (a.clone(), it.next().cloned()),
            _ if a.starts_with("-a") && a.len() > 2 => ("-a".to_owned(), Some(a[2..].to_owned())),
            _ => continue,
        };
        if let Some(v) = value {
            if v.split(',').next() == Some(name) {
                return Some(format!("{opt} {v}"));
            }
        }
    }
    None
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: the EAL was initialised (an EalInner exists only after a successful
        // rte_eal_init) and this is the last reference: no port or pool is alive any more.
        unsafe { sys::rte_eal_cleanup() };
        remove_runtime_dir(self.runtime_dir.as_deref(), &self.file_prefix);
    }
}

/// Removes the EAL runtime directory, but only one named after our prefix: never anything else.
fn remove_runtime_dir(dir: Option<&Path>, prefix: &str) {
    if let Some(dir) = dir {
        if dir.file_name().and_then(|n| n.to_str()) == Some(prefix) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Copies and frees a buffer allocated by the C shim's open_memstream.
fn take_c_buffer(buf: *mut c_char, len: usize) -> String {
    if buf.is_null() {
        return String::new();
    }
    // SAFETY: open_memstream gave a malloc'd buffer of len bytes (plus NUL) that nobody else
    // references after fclose; we copy it, then free it exactly once.
    unsafe {
        let bytes = std::slice::from_raw_parts(buf as *const u8, len);
        let text = String::from_utf8_lossy(bytes).into_owned();
        sys::musqratt_free(buf.cast());
        text
    }
}

/// DPDK's text for an errno value (its own codes and the libc ones).
pub(crate) fn rte_strerror(err: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string,
    // valid at least until the next call on this thread; we copy it at once.
    unsafe { CStr::from_ptr(sys::rte_strerror(err)) }
        .to_string_lossy()
        .into_owned()
}

/// The last DPDK error on this thread, as text.
pub(crate) fn last_rte_error() -> String {
    // SAFETY: rte_errno is a thread-local int; reading it has no precondition.
    rte_strerror(unsafe { sys::musqratt_rte_errno() })
}

fn runtime_dir() -> Option<PathBuf> {
    // SAFETY: after a successful init rte_eal_get_runtime_dir returns EAL's static,
    // NUL-terminated path buffer; we copy it.
    let p = unsafe { sys::rte_eal_get_runtime_dir() };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated (see above).
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// The `--file-prefix` value in `args` (last one wins, as in getopt), "rte" by default.
pub(crate) fn file_prefix(args: &[String]) -> String {
    let mut prefix = "rte".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--file-prefix=") {
            prefix = v.to_owned();
        } else if a == "--file-prefix" {
            if let Some(v) = it.next() {
                prefix = v.clone();
            }
        }
    }
    prefix
}

/// Names the argument that made `rte_eal_init` fail: first an option unknown to DPDK 22.11's
/// EAL, else an option whose value EAL's log mentions (e.g. "--vdev=net_bogus0" when EAL logs
/// that it found no driver for net_bogus0).
pub(crate) fn find_culprit(args: &[String], log: &str) -> Option<String> {
    let mut with_values: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline_value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            if LONG_WITH_VALUE.contains(&name) {
                let value = match inline_value {
                    Some(v) => Some(v.to_owned()),
                    None => {
                        i += 1;
                        args.get(i).cloned()
                    }
                };
                match value {
                    Some(v) => with_values.push((format!("--{name} {v}"), v)),
                    None => return Some(a.clone()), // missing value
                }
            } else if !LONG_FLAGS.contains(&name) {
                return Some(a.clone());
            }
        } else if let Some(short) = a.strip_prefix('-') {
            let mut chars = short.chars();
            let Some(c) = chars.next() else {
                return Some(a.clone());
            };
            let rest: String = chars.collect();
            if SHORT_WITH_VALUE.contains(c) {
                let value = if rest.is_empty() {
                    i += 1;
                    args.get(i).cloned()
                } else {
                    Some(rest)
                };
                match value {
                    Some(v) => with_values.push((format!("-{c} {v}"), v)),
                    None => return Some(a.clone()),
                }
            } else if !SHORT_FLAGS.contains(c) || !rest.is_empty() {
                return Some(a.clone());
            }
        } else {
            return Some(a.clone()); // a positional argument the EAL does not take
        }
        i += 1;
    }
    // A value the log names. For a device the log names the device (the part before the
    // first ','), e.g. "net_bogus0" of "--vdev net_bogus0,iface=x".
    with_values.into_iter().find_map(|(shown, value)| {
        let key = value.split(',').next().unwrap_or(&value);
        (key.len() >= 3 && log.contains(key)).then_some(shown)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn culprit_unknown_long_option() {
        let args = s(&["--no-huge", "--no-such-flag", "-l", "0"]);
        assert_eq!(find_culprit(&args, ""), Some("--no-such-flag".into()));
    }

    #[test]
    fn culprit_unknown_short_option_and_missing_value() {
        assert_eq!(find_culprit(&s(&["-l", "0", "-x"]), ""), Some("-x".into()));
        assert_eq!(
            find_culprit(&s(&["--no-huge", "-l"]), ""),
            Some("-l".into())
        );
        assert_eq!(find_culprit(&s(&["--vdev"]), ""), Some("--vdev".into()));
    }

    #[test]
    fn culprit_from_log_names_the_device() {
        let args = s(&[
            "--no-huge",
            "-l",
            "0",
            "--vdev=net_bogus0,iface=x",
            "-m",
            "256",
        ]);
        let log = "EAL: failed to find driver for net_bogus0\n";
        assert_eq!(
            find_culprit(&args, log),
            Some("--vdev net_bogus0,iface=x".into())
        );
        assert_eq!(find_culprit(&args, "EAL: something else\n"), None);
    }

    #[test]
    fn valid_args_have_no_culprit() {
        let args = s(&[
            "--no-huge",
            "--no-pci",
            "--no-shconf",
            "-m",
            "256",
            "-l0",
            "--file-prefix",
            "x1",
            "--vdev",
            "net_ring0",
        ]);
        assert_eq!(find_culprit(&args, ""), None);
    }

    #[test]
    fn device_argument_forms() {
        let args = s(&[
            "-l",
            "0",
            "--vdev=net_af_packet0,iface=v0",
            "--vdev",
            "net_tap0",
            "-a",
            "0000:01:00.0",
            "-a0000:02:00.0",
        ]);
        assert_eq!(
            device_argument(&args, "net_af_packet0"),
            Some("--vdev net_af_packet0,iface=v0".into())
        );
        assert_eq!(
            device_argument(&args, "net_tap0"),
            Some("--vdev net_tap0".into())
        );
        assert_eq!(
            device_argument(&args, "0000:01:00.0"),
            Some("-a 0000:01:00.0".into())
        );
        assert_eq!(
            device_argument(&args, "0000:02:00.0"),
            Some("-a 0000:02:00.0".into())
        );
        assert_eq!(device_argument(&args, "net_ring0"), None);
    }

    #[test]
    fn prefix_parsing() {
        assert_eq!(file_prefix(&s(&["--no-huge"])), "rte");
        assert_eq!(file_prefix(&s(&["--file-prefix", "a"])), "a");
        assert_eq!(file_prefix(&s(&["--file-prefix=b", "-l", "0"])), "b");
    }
}
