//! The hold index: order per topic, the per-topic and broker-wide bounds,
//! bounded takes, No Local, expiry.

use super::*;
use bytes::Bytes;
use musqratt_codec::{Properties, QoS};
use std::time::Duration;

const ROOMY: HoldLimits = HoldLimits {
    per_topic: 1000,
    total_bytes: usize::MAX,
};

fn msg(
    topic: &str,
    payload: &str,
    publisher: u64,
    expiry: Option<u32>,
    now: Instant,
) -> Arc<Message> {
    let props = Properties {
        message_expiry_interval: expiry,
        ..Properties::default()
    };
    let head = (
        topic.to_owned(),
        Bytes::from(payload.to_owned()),
        QoS::AtLeastOnce,
        false,
    );
    Arc::new(Message::new(head, props, publisher, 0, now))
}

fn payloads(v: &[Arc<Message>]) -> Vec<String> {
    v.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[test]
fn publish_order_per_topic_and_delivered_once() {
    let now = Instant::now();
    let mut h = HoldQueues::default();
    for p in ["1", "2", "3"] {
        assert_eq!(h.hold(msg("a/b", p, 1, None, now), ROOMY, now), 0);
    }
    h.hold(msg("a/c", "c", 1, None, now), ROOMY, now);
    h.hold(msg("x", "x", 1, None, now), ROOMY, now);
    assert_eq!((h.topic_count(), h.message_count()), (3, 5));
    assert_eq!(
        payloads(&h.take_matching("a/+", now, 100, None, &mut crate::level_trie::unlimited())),
        ["1", "2", "3", "c"]
    );
    assert!(
        h.take_matching("a/#", now, 100, None, &mut crate::level_trie::unlimited())
            .is_empty(),
        "delivered once"
    );
    assert_eq!((h.topic_count(), h.message_count()), (1, 1));
    assert_eq!(
        payloads(&h.take_matching("#", now, 100, None, &mut crate::level_trie::unlimited())),
        ["x"]
    );
    assert_eq!((h.topic_count(), h.held_bytes()), (0, 0));
    assert!(h.trie.is_empty());
}

#[test]
fn takes_only_what_fits_and_keeps_the_rest_in_order() {
    let now = Instant::now();
    let mut h = HoldQueues::default();
    for i in 0..10 {
        h.hold(msg("t", &i.to_string(), 1, None, now), ROOMY, now);
    }
    assert_eq!(
        payloads(&h.take_matching("t", now, 3, None, &mut crate::level_trie::unlimited())),
        ["0", "1", "2"]
    );
    assert!(h
        .take_matching("t", now, 0, None, &mut crate::level_trie::unlimited())
        .is_empty());
    assert_eq!(h.message_count(), 7);
    assert_eq!(
        payloads(&h.take_matching("#", now, 100, None, &mut crate::level_trie::unlimited())),
        ["3", "4", "5", "6", "7", "8", "9"]
    );
}

#[test]
fn no_local_leaves_own_messages_held() {
    let now = Instant::now();
    let mut h = HoldQueues::default();
    h.hold(msg("t", "mine", 7, None, now), ROOMY, now);
    h.hold(msg("t", "theirs", 8, None, now), ROOMY, now);
    assert_eq!(
        payloads(&h.take_matching("t", now, 10, Some(7), &mut crate::level_trie::unlimited())),
        ["theirs"]
    );
    assert_eq!(h.message_count(), 1);
    assert_eq!(
        payloads(&h.take_matching("+", now, 10, None, &mut crate::level_trie::unlimited())),
        ["mine"]
    );
}

#[test]
fn per_topic_bound_drops_the_topics_oldest() {
    let now = Instant::now();
    let mut h = HoldQueues::default();
    let limits = HoldLimits {
        per_topic: 2,
        total_bytes: usize::MAX,
    };
    assert_eq!(h.hold(msg("t", "1", 1, None, now), limits, now), 0);
    assert_eq!(h.hold(msg("t", "2", 1, None, now), limits, now), 0);
    assert_eq!(h.hold(msg("t", "3", 1, None, now), limits, now), 1);
    assert_eq!(
        payloads(&h.take_matching("t", now, 10, None, &mut crate::level_trie::unlimited())),
        ["2", "3"]
    );
    assert_eq!(h.held_bytes(), 0);
}

#[test]
fn total_bound_drops_the_oldest_of_any_topic() {
    let now = Instant::now();
    let mut h = HoldQueues::default();
    let one = held_size(&msg("t/0", "xxxxxxxxxx", 1, None, now));
    let limits = HoldLimits {
        per_topic: 1000,
        total_bytes: 3 * one,
    };
    for i in 0..3 {
        assert_eq!(
            h.hold(
                msg(&format!("t/{i}"), "xxxxxxxxxx", 1, None, now),
                limits,
                now
            ),
            0
        );
    }
    assert_eq!(h.held_bytes(), 3 * one);
    assert_eq!(
        h.hold(msg("t/3", "xxxxxxxxxx", 1, None, now), limits, now),
        1
    );
    assert_eq!((h.topic_count(), h.message_count()), (3, 3));
    assert!(
        h.take_matching("t/0", now, 10, None, &mut crate::level_trie::unlimited())
            .is_empty(),
        "t/0 was the oldest"
    );
    // A message larger than the whole budget is not held at all.
    let big = "y".repeat(4 * one);
    assert_eq!(h.hold(msg("t/9", &big, 1, None, now), limits, now), 1);
    assert!(h.held_bytes() <= limits.total_bytes);
    assert_eq!(
        h.take_matching("#", now, 10, None, &mut crate::level_trie::unlimited())
            .len(),
        3
    );
    assert_eq!(
        (h.held_bytes(), h.message_count(), h.order.len()),
        (0, 0, 0)
    );
}

#[test]
fn expired_messages_are_purged_by_deadline_and_never_taken() {
    let now = Instant::now();
    let mut h = HoldQueues::default();
    h.hold(msg("a", "short", 1, Some(1), now), ROOMY, now);
    h.hold(msg("a", "long", 1, Some(100), now), ROOMY, now);
    h.hold(msg("b", "short", 1, Some(1), now), ROOMY, now);
    let later = now + Duration::from_secs(2);
    assert_eq!(h.purge_expired(later), 2);
    assert_eq!((h.topic_count(), h.message_count()), (1, 1));
    h.hold(msg("c", "short", 1, Some(1), later), ROOMY, later);
    let much_later = later + Duration::from_secs(5);
    assert_eq!(
        payloads(&h.take_matching(
            "#",
            much_later,
            10,
            None,
            &mut crate::level_trie::unlimited()
        )),
        ["long"]
    );
    assert_eq!(
        (h.message_count(), h.expiries.len(), h.order.len()),
        (0, 0, 0)
    );
}

#[test]
fn many_wildcard_takes_walk_only_matching_branches() {
    // 20,000 held topics, 2,000 wildcard filters each matching one topic:
    // with a scan per filter this is 40 million matches; indexed, it is not.
    let now = Instant::now();
    let mut h = HoldQueues::default();
    for i in 0..20_000 {
        h.hold(msg(&format!("d/{i}/v"), "x", 1, None, now), ROOMY, now);
    }
    for i in 0..2_000 {
        assert_eq!(
            h.take_matching(
                &format!("d/{i}/+"),
                now,
                10,
                None,
                &mut crate::level_trie::unlimited()
            )
            .len(),
            1
        );
    }
    assert_eq!(h.topic_count(), 18_000);
}
