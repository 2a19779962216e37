//! PID 1 of the MusQraTT appliance (see README.md): mounts, kernel modules, the data disk,
//! the guest network, then the broker, supervised until it exits or a stop is requested, and
//! a clean power-off. Every failure prints one `init: …` line and powers off; PID 1 never
//! exits (the kernel would panic) and a panic powers off too.
//!
//! The decisions live in pure modules tested on the host (cmdline, modules, disk, netlink,
//! input, shutdown); `sys` is the thin layer that performs them.

#![forbid(unsafe_code)]

mod cmdline;
mod disk;
mod input;
mod modules;
mod netlink;
mod shutdown;
mod sys;

use std::time::{Duration, Instant};

use nix::poll::{PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use shutdown::{Action, Event, Supervisor};
use sys::{fatal, log};

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
    match sys::load_modules(cfg.net) {
        Ok(n) => log(&format!(
            "loaded {n} kernel modules (net={})",
            cfg.net.name()
        )),
        Err(e) => fatal(&e),
    }
    if let Err(e) = sys::bind_uio(cfg.net) {
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
    if let Err(e) = sys::configure_network(&cfg) {
        fatal(&e);
    }
    let inputs = sys::open_input_devices();

    let args = cmdline::broker_args(&cfg, data);
    log(&format!("starting {BROKER} {}", args.join(" ")));
    let broker = sys::spawn_broker(BROKER, &args).unwrap_or_else(|e| fatal(&e));
    supervise(
        &signals,
        &inputs,
        broker,
        Duration::from_secs(cfg.stop_timeout_secs),
    )
}

/// The PID 1 loop: wait for a signal, a child exit, the power button or the shutdown
/// deadline; feed the state machine; perform its actions. Ends in power_off.
fn supervise(
    signals: &sys::Signals,
    inputs: &[std::fs::File],
    broker: Pid,
    stop_timeout: Duration,
) -> ! {
    let start = Instant::now();
    let mut sup = Supervisor::new(stop_timeout);
    loop {
        let timeout = match sup.next_deadline() {
            None => PollTimeout::NONE,
            Some(at) => {
                // Round up so we wake at or after the deadline, not one busy loop before.
                let ms = at.saturating_sub(start.elapsed()).as_millis() + 1;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = sys::poll_fds(signals, inputs);
        // EINTR and friends: just look at everything again.
        let _ = nix::poll::poll(&mut fds, timeout);
        let input_ready: Vec<bool> = fds
            .iter()
            .skip(1)
            .map(|p| p.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        drop(fds);

        let stops = signals.drain();
        // Reap after draining (a SIGCHLD read is never lost: the reap sees its child) and
        // handle the exit before any stop request, so that a reaped pid, which the kernel
        // may reuse, is never signalled.
        let mut events: Vec<Event> = sys::reap(broker)
            .map(Event::BrokerExited)
            .into_iter()
            .collect();
        events.extend(stops.into_iter().map(Event::StopRequested));
        for (dev, ready) in inputs.iter().zip(input_ready) {
            if ready && sys::read_power_key(dev) {
                log("power button pressed");
                events.push(Event::StopRequested(Signal::SIGPWR as i32));
            }
        }
        events.push(Event::Tick);

        for event in events {
            for action in sup.handle(event, start.elapsed()) {
                match action {
                    Action::Log(line) => log(&line),
                    Action::SendTerm => sys::send_signal(broker, Signal::SIGTERM),
                    Action::SendKill => sys::send_signal(broker, Signal::SIGKILL),
                    Action::PowerOff => sys::power_off(),
                }
            }
        }
    }
}
