//! `musqratt-core`: the MQTT broker as a sans-IO state machine.
//!
//! Nothing here touches a socket, a clock or a thread. The transport (kernel
//! sockets today, lwIP/DPDK later) drives it:
//!
//! - one [`Broker`] is shared (behind an `Arc`) by every worker thread: the
//!   session registry, the subscription tree, retained messages, hold queues
//!   and the counters;
//! - each accepted socket gets a [`Connection`], owned by exactly one worker.
//!   The worker feeds it bytes ([`Connection::handle_bytes`]), the current time
//!   and events (wake, kick, close, timeout); the connection answers through an
//!   [`Output`]: bytes to transmit on its own socket, other connections to wake
//!   (they have new messages queued), connections to kick (session taken over),
//!   and whether to close.
//!
//! Time is always an argument (`now: Instant`), so tests drive expiry,
//! keep-alive and will delays deterministically without sleeping.
//!
//! Module map (one file per concept, packet handlers named after Mosquitto's):
//! - [`config`]: the broker settings the protocol core needs;
//! - [`acl`]: access control lists (Mosquitto's `acl_file`), checked on publish, subscribe and delivery;
//! - [`auth`]: the password file (Mosquitto's format) and the check of a CONNECT's credentials;
//! - [`broker`]: shared state and the broker-wide timer;
//! - [`connection`]: one client's protocol state machine and packet dispatch;
//! - `handle_connect`, `handle_publish`, `handle_subscribe`, `handle_ack`,
//!   `handle_disconnect`: one file per packet family;
//! - `route`: matching a PUBLISH against subscriptions, holding it otherwise;
//! - `deliver`: moving a session's queue onto the wire (packet ids, inflight
//!   window, topic aliases, maximum packet size);
//! - [`flow`]: when a subscriber's backlog may pause publishers, and its overflow;
//! - [`session`], [`message`], `topic_tree`, `retained`, `hold`, [`metrics`], `sys`;
//! - [`persist`]: the durable changes recorded into a [`persist::Journal`] (the transport holds
//!   the output that acknowledges them until they are durable); [`restore`]: start-up from
//!   what the store kept (docs/storage.md).
#![forbid(unsafe_code)]

pub mod acl;
pub mod auth;
pub mod broker;
pub mod budget;
pub mod config;
pub mod connection;
pub mod flow;
pub mod message;
pub mod metrics;
pub mod persist;
pub mod restore;
pub mod session;

mod deliver;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod handle_ack;
mod handle_connect;
mod handle_disconnect;
mod handle_publish;
mod handle_subscribe;
mod hold;
mod level_trie;
mod log_limit;
mod retained;
mod route;
mod sys;
mod topic_tree;
mod will;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use connection::{ConnRef, Connection, Identity, Output};
