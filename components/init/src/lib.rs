//! PID 1 of the MusQraTT appliance (see README.md). The binary (`main.rs`) is the boot
//! sequence; this library holds the pieces so that tests can drive them: pure modules tested
//! on the host (cmdline, modules, disk, netlink, input, shutdown), `sys`, the thin layer that
//! performs them, and `supervise`, the PID 1 loop.

#![forbid(unsafe_code)]

pub mod cmdline;
pub mod disk;
pub mod dpdk;
pub mod input;
pub mod modules;
pub mod net;
pub mod netlink;
pub mod shutdown;
pub mod sys;

use std::time::{Duration, Instant};

use nix::poll::{PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use shutdown::{Action, Event, Supervisor};
use sys::log;

/// The PID 1 loop: wait for a signal, a child exit, the power button or the shutdown
/// deadline; feed the state machine; perform its actions. Ends in power_off.
pub fn supervise(
    signals: &sys::Signals,
    inputs: &[std::fs::File],
    broker: Pid,
    stop_timeout: Duration,
) -> ! {
    let start = Instant::now();
    let mut sup = Supervisor::new(stop_timeout);
    let mut alive = vec![true; inputs.len()];
    loop {
        let timeout = match sup.next_deadline() {
            None => PollTimeout::NONE,
            Some(at) => {
                // Round up so we wake at or after the deadline, not one busy loop before.
                let ms = at.saturating_sub(start.elapsed()).as_millis() + 1;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let watched: Vec<&std::fs::File> = inputs
            .iter()
            .zip(&alive)
            .filter_map(|(f, a)| a.then_some(f))
            .collect();
        let mut fds = sys::poll_fds(signals, &watched);
        // EINTR and friends: just look at everything again.
        let _ = nix::poll::poll(&mut fds, timeout);
        let revents: Vec<PollFlags> = fds
            .iter()
            .skip(1)
            .map(|p| p.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let mut pressed = false;
        for (dev, r) in watched.iter().zip(&revents) {
            pressed |= r.contains(PollFlags::POLLIN) && sys::read_power_key(dev);
        }
        // A device that errors (unplugged, closed) would make every poll return at once:
        // stop watching it.
        let dead = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
        let mut results = revents.iter();
        for a in alive.iter_mut().filter(|a| **a) {
            if results.next().is_some_and(|r| r.intersects(dead)) {
                *a = false;
            }
        }

        let stops = signals.drain();
        // Reap after draining (a SIGCHLD read is never lost: the reap sees its child) and
        // handle the exit before any stop request, so that a reaped pid, which the kernel
        // may reuse, is never signalled.
        let mut events: Vec<Event> = sys::reap(broker)
            .map(Event::BrokerExited)
            .into_iter()
            .collect();
        events.extend(stops.into_iter().map(Event::StopRequested));
        if pressed {
            log("power button pressed");
            events.push(Event::StopRequested(Signal::SIGPWR as i32));
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
