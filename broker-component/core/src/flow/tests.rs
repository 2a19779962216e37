//! The flow-control rule on one session, with a clock moved by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use musqratt_codec::QoS;

use crate::config::BrokerConfig;
use crate::connection::ConnRef;
use crate::message::Message;
use crate::session::{Outgoing, Session};

const MS: Duration = Duration::from_millis(1);

/// Queue of 40 (pause at 20, resume at 10), a 50 ms pause budget.
fn config() -> BrokerConfig {
    BrokerConfig {
        max_queued_messages: 40,
        max_publisher_pause: 50 * MS,
        ..Default::default()
    }
}

fn online() -> Session {
    let mut s = Session::new(1, Arc::from("sub"), 0);
    s.conn = Some(conn(1));
    s
}

fn conn(slot: u32) -> ConnRef {
    ConnRef {
        worker: 0,
        slot,
        serial: u64::from(slot),
    }
}

fn outgoing(qos: QoS) -> Outgoing {
    Outgoing {
        msg: Arc::new(Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: None,
            expires_at: None,
            publisher: 0,
            durable_id: Default::default(),
            release: Default::default(),
        }),
        qos,
        retain: false,
        sub_ids: Vec::new(),
        entry: 0,
    }
}

/// Queues `n` QoS 1 messages as `route` does.
fn queue(s: &mut Session, n: usize, now: Instant) {
    for _ in 0..n {
        let empty = s.queue.is_empty();
        s.flow.before_enqueue(empty, now);
        s.note_queued(QoS::AtLeastOnce);
        s.enqueue(outgoing(QoS::AtLeastOnce), usize::MAX).unwrap();
    }
}

/// Moves `n` messages off the queue as `drain` does.
fn drain(s: &mut Session, n: usize, c: &BrokerConfig, now: Instant) -> Vec<ConnRef> {
    for _ in 0..n {
        s.pop_queued();
    }
    let mut resumes = Vec::new();
    s.drained(n, c, now, &mut resumes);
    resumes
}

#[test]
fn a_young_backlog_gets_the_benefit_of_the_doubt() {
    let (c, t0) = (config(), Instant::now());
    let mut s = online();
    queue(&mut s, 20, t0);
    assert!(s.congested(&c, t0 + 10 * MS), "unmeasured: pause");
    s.conn = None;
    assert!(!s.congested(&c, t0 + 10 * MS), "offline never pauses");
}

#[test]
fn a_fast_subscriber_keeps_pausing_its_publishers() {
    let (c, t0) = (config(), Instant::now());
    let mut s = online();
    queue(&mut s, 130, t0);
    // 100 messages per 10 ms (10k/s) in and out, the backlog never empty:
    // its 120 over the low watermark take 12 ms.
    let mut now = t0;
    for _ in 0..20 {
        now += 10 * MS;
        queue(&mut s, 100, now);
        drain(&mut s, 100, &c, now);
    }
    assert_eq!(s.queue.len(), 130);
    assert!(s.congested(&c, now), "10k msg/s keeps up");
    // The same backlog at 1k/s would take 120 ms: not worth a pause.
    for _ in 0..20 {
        now += 10 * MS;
        queue(&mut s, 10, now);
        drain(&mut s, 10, &c, now);
    }
    assert!(!s.congested(&c, now), "1k msg/s does not keep up");
}

#[test]
fn a_slow_subscriber_never_pauses_once_measured() {
    let (c, t0) = (config(), Instant::now());
    let mut s = online();
    queue(&mut s, 30, t0);
    // One message every 500 ms: 25 messages over the low watermark take 12 s.
    let mut now = t0;
    for _ in 0..3 {
        now += 500 * MS;
        drain(&mut s, 1, &c, now);
        queue(&mut s, 1, now);
    }
    assert!(!s.congested(&c, now));
    // Not a question of the budget's size relative to one gap: 10 s of it.
    now += 10 * MS;
    assert!(!s.congested(&c, now));
}

#[test]
fn a_stalled_subscriber_stops_pausing_after_the_budget() {
    let (c, t0) = (config(), Instant::now());
    let mut s = online();
    queue(&mut s, 25, t0);
    assert!(s.congested(&c, t0));
    assert!(!s.congested(&c, t0 + 50 * MS), "nothing moved in 50 ms");
}

#[test]
fn waiters_resume_at_the_low_watermark_or_after_the_budget() {
    let (c, t0) = (config(), Instant::now());
    let mut s = online();
    queue(&mut s, 25, t0);
    s.add_waiter(conn(7), t0);
    s.add_waiter(conn(7), t0 + MS);
    assert_eq!(s.waiters.len(), 1, "one entry per publisher");
    // Moving fast but still above the low watermark: keep waiting.
    assert!(drain(&mut s, 5, &c, t0 + MS).is_empty());
    assert_eq!(drain(&mut s, 10, &c, t0 + 2 * MS), vec![conn(7)], "at 10");

    // Above the low watermark, moving, but the pause reached the budget.
    queue(&mut s, 20, t0 + 3 * MS);
    s.add_waiter(conn(8), t0 + 3 * MS);
    assert!(drain(&mut s, 1, &c, t0 + 4 * MS).is_empty());
    assert_eq!(drain(&mut s, 1, &c, t0 + 53 * MS), vec![conn(8)]);
}

#[test]
fn a_publish_releases_the_waiters_of_a_subscriber_that_does_not_keep_up() {
    let (c, t0) = (config(), Instant::now());
    let mut s = online();
    queue(&mut s, 25, t0);
    s.add_waiter(conn(7), t0);
    let mut resumes = Vec::new();
    s.release_waiters_if_due(&c, t0 + 10 * MS, &mut resumes);
    assert!(resumes.is_empty(), "still within the benefit of the doubt");
    s.release_waiters_if_due(&c, t0 + 60 * MS, &mut resumes);
    assert_eq!(resumes, vec![conn(7)]);
}

#[test]
fn a_full_queue_evicts_qos0_for_qos1_only() {
    let mut s = online();
    s.note_queued(QoS::AtLeastOnce);
    s.enqueue(outgoing(QoS::AtLeastOnce), 3).unwrap();
    s.note_queued(QoS::AtMostOnce);
    s.enqueue(outgoing(QoS::AtMostOnce), 3).unwrap();
    s.note_queued(QoS::AtLeastOnce);
    s.enqueue(outgoing(QoS::AtLeastOnce), 3).unwrap();
    assert!(
        !s.evict_qos0(QoS::AtMostOnce),
        "a QoS 0 arrival is itself dropped"
    );
    assert!(s.evict_qos0(QoS::ExactlyOnce));
    assert!(s.queue.iter().all(|o| o.qos == QoS::AtLeastOnce));
    assert_eq!(s.queue.len(), 2);
    assert!(!s.evict_qos0(QoS::AtLeastOnce), "none left");
    assert!(
        !s.flow.qos0_queued,
        "no rescan until a QoS 0 is queued again"
    );
}

#[test]
fn zero_budget_turns_pausing_off() {
    let c = BrokerConfig {
        max_publisher_pause: Duration::ZERO,
        ..config()
    };
    let t0 = Instant::now();
    let mut s = online();
    queue(&mut s, 30, t0);
    assert!(!s.congested(&c, t0));
}

#[test]
fn the_high_watermark_is_capped() {
    let c = BrokerConfig {
        max_queued_messages: 1_000_000,
        ..Default::default()
    };
    assert_eq!(c.queue_high_watermark(), 1000);
    assert_eq!(c.queue_low_watermark(), 500);
    assert_eq!(config().queue_high_watermark(), 20);
    let unlimited = BrokerConfig {
        max_queued_messages: usize::MAX,
        ..Default::default()
    };
    assert_eq!(unlimited.queue_high_watermark(), 1000);
}

#[test]
fn an_emptied_queue_ends_the_backlog() {
    let (c, t0) = (config(), Instant::now());
    let mut s = online();
    queue(&mut s, 25, t0);
    drain(&mut s, 25, &c, t0 + 10 * MS);
    // Refilled a second later by a path that starts no measurement (retained
    // messages at SUBSCRIBE), then by publishes: measured from the publishes,
    // not from the old backlog (whose idle second would make it look slow).
    for _ in 0..5 {
        s.enqueue(outgoing(QoS::AtLeastOnce), usize::MAX).unwrap();
    }
    let t1 = t0 + Duration::from_secs(1);
    queue(&mut s, 20, t1);
    assert!(s.congested(&c, t1 + MS));
}
