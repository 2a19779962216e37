//! One error type for the NIC component. Every variant displays as ONE line that names what
//! failed, so the broker can print it and exit (issue 12: never a silent fall-back).

use std::fmt;

/// What went wrong in EAL start-up or port set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicError {
    /// `Eal::init` was already called in this process. DPDK's EAL can be initialised once per
    /// process only, even after `rte_eal_cleanup` (a failed attempt counts too).
    AlreadyInitialized,
    /// `rte_eal_init` failed.
    EalInit {
        /// DPDK's `rte_errno` text.
        reason: String,
        /// The argument DPDK rejected, when it can be told from its log or the option table.
        culprit: Option<String>,
        /// All arguments as given (without the program name).
        args: Vec<String>,
    },
    /// An argument string contained a NUL byte and cannot be passed to C.
    NulInArgument(String),
    /// No ethdev port of that name or id exists (is the `--vdev` / PCI device in the EAL args?).
    PortNotFound(String),
    /// The EAL arguments asked for this device, but it failed to probe at EAL init (which
    /// DPDK only logs): the argument and the EAL's log line about it.
    DeviceFailed {
        /// Device / port name.
        port: String,
        /// The EAL argument that asked for it, e.g. "--vdev net_af_packet0,iface=veth1".
        argument: String,
        /// The first EAL init log line naming the device.
        reason: String,
    },
    /// The port is already open through another `Port` value.
    PortBusy(String),
    /// A DPDK call on a port failed.
    Port {
        /// Device name.
        port: String,
        /// The DPDK function that failed.
        op: &'static str,
        /// DPDK's error text (from the negative return or `rte_errno`).
        reason: String,
    },
    /// A `PortConfig` / ring-pair parameter is out of range.
    Config(String),
}

impl fmt::Display for NicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicError::AlreadyInitialized => {
                write!(
                    f,
                    "DPDK EAL already initialised in this process (once per process)"
                )
            }
            NicError::EalInit {
                reason,
                culprit,
                args,
            } => {
                write!(f, "DPDK EAL init failed: {reason}")?;
                if let Some(c) = culprit {
                    write!(f, "; bad argument: {c}")?;
                }
                write!(f, " (EAL arguments: {})", args.join(" "))
            }
            NicError::NulInArgument(a) => write!(f, "EAL argument contains a NUL byte: {a:?}"),
            NicError::PortNotFound(p) => write!(
                f,
                "DPDK port {p} not found (no such device among the EAL's ports; check --vdev / -a)"
            ),
            NicError::DeviceFailed {
                port,
                argument,
                reason,
            } => write!(
                f,
                "DPDK port {port} not created: EAL argument {argument} failed: {reason}"
            ),
            NicError::PortBusy(p) => write!(f, "DPDK port {p} is already open in this process"),
            NicError::Port { port, op, reason } => {
                write!(f, "DPDK port {port}: {op} failed: {reason}")
            }
            NicError::Config(m) => write!(f, "NIC configuration: {m}"),
        }
    }
}

impl std::error::Error for NicError {}
