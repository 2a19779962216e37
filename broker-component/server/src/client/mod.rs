//! The client side of the `musqratt` binary: `musqratt shell`, `musqratt pub` and `musqratt sub`
//! (docs/design.md §4, docs/cli.md), on our own MQTT client over `musqratt-codec`.
//!
//! - [`session`]: one MQTT connection (CONNECT, requests and their acks, a reader thread);
//! - `reader`: the reader thread of a connection;
//! - [`command`]: the shell's command language and help;
//! - [`shell`]: the shell's connections and what each command does;
//! - [`repl`]: the shell's input loops (terminal with rustyline, or a pipe);
//! - [`pubsub`]: `pub` and `sub`, mosquitto_pub/mosquitto_sub style.

pub mod command;
pub mod pubsub;
mod reader;
pub mod repl;
pub mod session;
pub mod shell;
pub mod tls;

use musqratt_codec::topic::TopicError;
use musqratt_codec::Publish;

/// `TOPIC PAYLOAD` (or only the payload), the payload as text (invalid UTF-8 replaced).
pub fn format_message(m: &Publish, with_topic: bool) -> String {
    let payload = String::from_utf8_lossy(&m.payload);
    if with_topic {
        format!("{} {payload}", m.topic)
    } else {
        payload.into_owned()
    }
}

/// Why a topic was rejected, for an error line.
pub fn topic_error(e: TopicError) -> &'static str {
    match e {
        TopicError::Empty => "empty topic",
        TopicError::WildcardInName => "a topic name cannot contain + or #",
        TopicError::MisplacedWildcard => "+ and # must fill a whole level, and # must be last",
        TopicError::NullCharacter => "a topic cannot contain U+0000",
        TopicError::InvalidSharedSubscription => "invalid $share/GROUP/FILTER",
    }
}
