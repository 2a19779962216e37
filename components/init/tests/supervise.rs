//! init's supervision loop for real, without root or a VM: this test re-executes itself as
//! PID 1 of private user and PID namespaces (`unshare -Urpf`), starts a stand-in broker
//! (`/bin/sh -c …`) and runs `supervise`, which ends in `reboot(RB_POWER_OFF)`; in a child PID
//! namespace the kernel turns that into ending the namespace's init, so the host is never
//! affected. The parent checks the console lines of each case.
//!
//! `harness = false`: libtest runs tests on extra threads, and a signal sent to PID 1 must find
//! it blocked on the process's main thread (an unblocked SIG_DFL signal to an init is dropped).

use std::process::{Command, Stdio};
use std::time::Duration;

use musqratt_init::{supervise, sys};

const CASE: &str = "MUSQRATT_INIT_SUPERVISE_CASE";

/// (case, stand-in broker script, expected lines after the start).
const CASES: [(&str, &str, &[&str]); 5] = [
    (
        // A child must not inherit init's blocked signals (std's Command would pass them on).
        "broker_starts_with_no_signal_blocked",
        "exec grep -qE '^SigBlk:[[:space:]]+0+$' /proc/self/status",
        &["init: broker exited on its own: exit status 0"],
    ),
    (
        "exits_on_its_own",
        "exit 3",
        &["init: broker exited on its own: exit status 3"],
    ),
    (
        "sigterm_stops_it",
        "kill -TERM 1; exec sleep 30",
        &[
            "init: SIGTERM: stopping the broker (SIGTERM, SIGKILL after 1 s)",
            "init: broker exited after SIGTERM: killed by signal 15 (SIGTERM)",
        ],
    ),
    (
        "sigkill_when_sigterm_is_ignored",
        "trap '' TERM; kill -INT 1; exec sleep 30",
        &[
            "init: SIGINT: stopping the broker (SIGTERM, SIGKILL after 1 s)",
            "init: broker still running 1 s after SIGTERM: sending SIGKILL",
            "init: broker exited after SIGKILL: killed by signal 9 (SIGKILL)",
        ],
    ),
    (
        // The ACPI power button as evdev reports it (here a file holding one KEY_POWER press).
        "power_button_stops_it",
        "exec sleep 30",
        &[
            "init: power button pressed",
            "init: SIGPWR: stopping the broker (SIGTERM, SIGKILL after 1 s)",
            "init: broker exited after SIGTERM: killed by signal 15 (SIGTERM)",
        ],
    ),
];

/// Where the parent leaves the fake input device for the power-button case.
const POWER_EVENTS: &str = "MUSQRATT_INIT_POWER_EVENTS";

/// One `struct input_event`: EV_KEY, KEY_POWER, pressed.
fn power_press() -> Vec<u8> {
    let mut e = vec![0u8; 16];
    e.extend_from_slice(&1u16.to_ne_bytes());
    e.extend_from_slice(&116u16.to_ne_bytes());
    e.extend_from_slice(&1i32.to_ne_bytes());
    e
}

fn child(case: &str) -> ! {
    // The guard that makes this safe: only ever power off as PID 1 of our own namespace.
    if !sys::is_pid1() {
        eprintln!("supervise test child is not PID 1; refusing");
        std::process::exit(1);
    }
    let script = CASES
        .iter()
        .find(|c| c.0 == case)
        .map(|c| c.1)
        .unwrap_or("exit 99");
    let signals = sys::block_signals().unwrap_or_else(|e| sys::fatal(&e));
    let broker = sys::spawn_broker("/bin/sh", &["-c".to_string(), script.to_string()])
        .unwrap_or_else(|e| sys::fatal(&e));
    let inputs: Vec<std::fs::File> = std::env::var(POWER_EVENTS)
        .ok()
        .filter(|_| case == "power_button_stops_it")
        .and_then(|p| std::fs::File::open(p).ok())
        .into_iter()
        .collect();
    supervise(&signals, &inputs, broker, Duration::from_secs(1))
}

fn main() {
    if let Ok(case) = std::env::var(CASE) {
        child(&case);
    }
    // The subset of libtest's command line that cargo test and nextest use: `--list` (nextest
    // builds its test list from "NAME: test" lines; no case is `#[ignore]`d), `--exact NAME`
    // and a name filter; other flags (`--nocapture`, `--format terse`, …) change nothing here.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            for (case, _, _) in CASES {
                println!("{case}: test");
            }
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let selected = |case: &str| {
        filters.is_empty()
            || filters.iter().any(|f| {
                if exact {
                    case == f.as_str()
                } else {
                    case.contains(f.as_str())
                }
            })
    };
    let usable = Command::new("unshare")
        .args(["-Urpf", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("supervise: skipped (unprivileged user namespaces are not available)");
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let events = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("power-button-events");
    std::fs::write(&events, power_press()).expect("write the fake input device");
    let mut failed = 0;
    let mut passed = 0;
    for (case, _, expected) in CASES {
        if !selected(case) {
            continue;
        }
        let out = Command::new("timeout")
            .args(["30", "unshare", "-Urpf", "--"])
            .arg(&exe)
            .env(CASE, case)
            .env(POWER_EVENTS, &events)
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        let mut want: Vec<&str> = expected.to_vec();
        want.push("init: powering off");
        if lines == want {
            println!("test {case} ... ok");
            passed += 1;
        } else {
            println!("test {case} ... FAILED\nexpected: {want:#?}\ngot:\n{err}");
            failed += 1;
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
    println!("test result: ok. {passed} passed");
}
