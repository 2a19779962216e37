//! The broker's life under PID 1 as a state machine: running → (signal) SIGTERM sent →
//! (timeout) SIGKILL sent → exited → power off. Pure: time is an argument, the caller performs
//! the actions, so every path is tested on the host.

use std::time::Duration;

/// How long to wait after SIGKILL before powering off anyway: a process stuck in the kernel
/// (uninterruptible I/O) may never die, and the appliance must still stop.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// How a child ended (from waitpid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    /// The signal number; `true` if it dumped core.
    Signal(i32, bool),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(s, core) => {
                let name = nix::sys::signal::Signal::try_from(s)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by signal {s} ({name})")?;
                if core {
                    write!(f, ", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

/// Something that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM, SIGINT (Ctrl-Alt-Del with CAD disabled) or another stop request; the number
    /// is for the log line.
    StopRequested(i32),
    /// The broker was reaped.
    BrokerExited(ExitStatus),
    /// Time passed (the caller polls with `next_deadline`).
    Tick,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print this line (without the "init: " prefix).
    Log(String),
    SendTerm,
    SendKill,
    /// Sync, unmount, power off. Always the last action.
    PowerOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// SIGTERM sent at this time.
    Terminating(Duration),
    /// SIGKILL sent at this time.
    Killing(Duration),
    /// PowerOff has been returned; nothing more happens.
    Done,
}

/// The state machine. `now` is any monotonic clock (time since init started).
#[derive(Debug)]
pub struct Supervisor {
    state: State,
    stop_timeout: Duration,
}

impl Supervisor {
    pub fn new(stop_timeout: Duration) -> Self {
        Supervisor {
            state: State::Running,
            stop_timeout,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// When the caller must call `handle(Tick, …)` at the latest; `None` = only on events.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.state {
            State::Terminating(at) => Some(at + self.stop_timeout),
            State::Killing(at) => Some(at + KILL_GRACE),
            State::Running | State::Done => None,
        }
    }

    pub fn handle(&mut self, event: Event, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, event) {
            (State::Done, _) => {}
            (_, Event::BrokerExited(status)) => {
                let how = match self.state {
                    State::Running => "on its own",
                    State::Terminating(_) => "after SIGTERM",
                    _ => "after SIGKILL",
                };
                out.push(Action::Log(format!("broker exited {how}: {status}")));
                out.push(Action::PowerOff);
                self.state = State::Done;
            }
            (State::Running, Event::StopRequested(sig)) => {
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str())
                    .unwrap_or("signal");
                out.push(Action::Log(format!(
                    "{name}: stopping the broker (SIGTERM, SIGKILL after {} s)",
                    self.stop_timeout.as_secs()
                )));
                out.push(Action::SendTerm);
                self.state = State::Terminating(now);
            }
            // A second request while stopping changes nothing: the timeout already bounds it.
            (_, Event::StopRequested(_)) => {}
            (State::Terminating(at), Event::Tick) if now >= at + self.stop_timeout => {
                out.push(Action::Log(format!(
                    "broker still running {} s after SIGTERM: sending SIGKILL",
                    self.stop_timeout.as_secs()
                )));
                out.push(Action::SendKill);
                self.state = State::Killing(now);
            }
            (State::Killing(at), Event::Tick) if now >= at + KILL_GRACE => {
                out.push(Action::Log(
                    "broker did not exit after SIGKILL: powering off anyway".into(),
                ));
                out.push(Action::PowerOff);
                self.state = State::Done;
            }
            (_, Event::Tick) => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn broker_exiting_on_its_own_powers_off() {
        let mut m = Supervisor::new(T);
        assert_eq!(m.next_deadline(), None);
        assert!(m.handle(Event::Tick, s(100)).is_empty());
        let a = m.handle(Event::BrokerExited(ExitStatus::Code(1)), s(101));
        assert_eq!(
            a,
            vec![
                Action::Log("broker exited on its own: exit status 1".into()),
                Action::PowerOff
            ]
        );
        assert!(m.is_done());
        assert!(m.handle(Event::StopRequested(15), s(102)).is_empty());
    }

    #[test]
    fn sigterm_then_clean_exit() {
        let mut m = Supervisor::new(T);
        let a = m.handle(Event::StopRequested(15), s(5));
        assert_eq!(a[1], Action::SendTerm);
        assert!(matches!(&a[0], Action::Log(l) if l.starts_with("SIGTERM: stopping")));
        assert_eq!(m.next_deadline(), Some(s(15)));
        assert!(m.handle(Event::Tick, s(14)).is_empty());
        // A second Ctrl-Alt-Del while stopping does not send anything again.
        assert!(m.handle(Event::StopRequested(2), s(6)).is_empty());
        let a = m.handle(Event::BrokerExited(ExitStatus::Code(0)), s(7));
        assert_eq!(
            a,
            vec![
                Action::Log("broker exited after SIGTERM: exit status 0".into()),
                Action::PowerOff
            ]
        );
    }

    #[test]
    fn timeout_escalates_to_sigkill_then_gives_up() {
        let mut m = Supervisor::new(T);
        m.handle(Event::StopRequested(2), s(0));
        let a = m.handle(Event::Tick, s(10));
        assert_eq!(a.last(), Some(&Action::SendKill));
        assert_eq!(m.next_deadline(), Some(s(10) + KILL_GRACE));
        assert!(m.handle(Event::Tick, s(11)).is_empty());
        let a = m.handle(Event::Tick, s(12));
        assert_eq!(a.last(), Some(&Action::PowerOff));
        assert!(m.is_done());
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn exit_after_sigkill_is_logged_as_such() {
        let mut m = Supervisor::new(T);
        m.handle(Event::StopRequested(15), s(0));
        m.handle(Event::Tick, s(10));
        let a = m.handle(Event::BrokerExited(ExitStatus::Signal(9, false)), s(10));
        assert_eq!(
            a[0],
            Action::Log("broker exited after SIGKILL: killed by signal 9 (SIGKILL)".into())
        );
        assert_eq!(a[1], Action::PowerOff);
    }

    #[test]
    fn status_lines() {
        assert_eq!(ExitStatus::Code(0).to_string(), "exit status 0");
        assert_eq!(
            ExitStatus::Signal(11, true).to_string(),
            "killed by signal 11 (SIGSEGV), core dumped"
        );
        assert_eq!(
            ExitStatus::Signal(99, false).to_string(),
            "killed by signal 99 (unknown signal)"
        );
    }
}
