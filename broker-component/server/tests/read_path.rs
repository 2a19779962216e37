//! How a worker reads a socket (docs/architecture.md, "Read"): on a fresh READABLE edge it stops
//! after a read that returns less than its buffer instead of reading again to hear EAGAIN. These
//! cases check that nothing is missed that way: the rest of a split packet and a FIN that come
//! after such a short read, and a FIN that comes with the last bytes, over raw TCP.

mod common;

use std::net::Shutdown;
use std::thread::sleep;
use std::time::Duration;

use common::raw::{self, Raw, Version, Version::*};
use common::*;

/// Long enough that the broker has read the first part before the rest is written.
const GAP: Duration = Duration::from_millis(100);

/// A subscriber of `topic` and a publisher, both connected.
fn sub_and_pub(b: &Broker, v: Version, topic: &str) -> (Raw, Raw) {
    let sub = Raw::subscriber(b.port(), v, "sub", topic);
    (sub, Raw::connect(b.port(), v, "pub"))
}

#[test]
fn the_rest_of_a_split_packet_arrives_after_a_short_read() {
    let b = broker();
    let (mut sub, mut publisher) = sub_and_pub(&b, V311, "split/#");
    let first = raw::publish_qos0(V311, b"split/a", b"one");
    let second = raw::publish_qos0(V311, b"split/b", b"two");
    // The first packet whole plus half of the second, then (after the broker's short read) the
    // other half: only a new edge can bring it in.
    let mut bytes = first.clone();
    bytes.extend_from_slice(&second[..second.len() / 2]);
    publisher.send(&bytes);
    assert_eq!(
        sub.expect_publish(WAIT),
        (b"split/a".to_vec(), b"one".to_vec())
    );
    sleep(GAP);
    publisher.send(&second[second.len() / 2..]);
    assert_eq!(
        sub.expect_publish(WAIT),
        (b"split/b".to_vec(), b"two".to_vec())
    );
}

#[test]
fn a_fin_after_a_short_read_closes_the_connection() {
    let b = broker();
    let (mut sub, mut publisher) = sub_and_pub(&b, V311, "late/fin");
    publisher.send(&raw::publish_qos0(V311, b"late/fin", b"last words"));
    assert_eq!(
        sub.expect_publish(WAIT),
        (b"late/fin".to_vec(), b"last words".to_vec())
    );
    sleep(GAP);
    // The FIN alone, on an edge of its own: the broker must see it and close its side.
    publisher.stream.shutdown(Shutdown::Write).unwrap();
    publisher.expect_closed(WAIT);
}

#[test]
fn a_fin_right_behind_a_publish_delivers_it_and_closes() {
    let b = broker();
    let (mut sub, mut publisher) = sub_and_pub(&b, V5, "fin/with/data");
    // Data and FIN back to back: one edge may report both (the peer's close), or the FIN may
    // come on an edge of its own after the broker's short read of the data. Either way the
    // publish is delivered and the connection closed.
    publisher.send(&raw::publish_qos0(V5, b"fin/with/data", b"and goodbye"));
    publisher.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        sub.expect_publish(WAIT),
        (b"fin/with/data".to_vec(), b"and goodbye".to_vec())
    );
    publisher.expect_closed(WAIT);
}
