//! Interoperability with the Mosquitto command line clients (`mosquitto_pub`, `mosquitto_sub`),
//! in MQTT 3.1.1 (`-V mqttv311`) and MQTT 5 (`-V mqttv5`).
//!
//! Each scenario is a function of (port, protocol) and runs against our broker; the plain-MQTT
//! ones also run against Debian's Mosquitto (`reference_*`), which checks the scenarios themselves.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

const V311: &str = "mqttv311";
const V5: &str = "mqttv5";

/// One test per protocol version for a scenario, against our broker.
macro_rules! both_versions {
    ($($scenario:ident),* $(,)?) => {
        mod musqratt {
            use super::*;
            $(
                pub mod $scenario {
                    use super::*;
                    #[test]
                    fn v311() {
                        let b = broker();
                        super::super::$scenario(b.port(), V311);
                    }
                    #[test]
                    fn v5() {
                        let b = broker();
                        super::super::$scenario(b.port(), V5);
                    }
                }
            )*
        }
    };
}

both_versions!(
    qos_round_trip,
    retained,
    will_on_abrupt_close,
    persistent_session,
    shared_subscription,
);

/// The same scenarios against Mosquitto: a failure here is a bug in the test, not in MusQraTT.
mod reference {
    use super::*;

    #[test]
    fn mosquitto_v311() {
        let m = Mosquitto::start();
        qos_round_trip(m.port(), V311);
        retained(m.port(), V311);
        will_on_abrupt_close(m.port(), V311);
        persistent_session(m.port(), V311);
        shared_subscription(m.port(), V311);
    }

    #[test]
    fn mosquitto_v5() {
        let m = Mosquitto::start();
        qos_round_trip(m.port(), V5);
        retained(m.port(), V5);
        will_on_abrupt_close(m.port(), V5);
        persistent_session(m.port(), V5);
        shared_subscription(m.port(), V5);
    }
}

/// A subscriber at QoS q receives a QoS q publish at QoS q, for q = 0, 1, 2.
fn qos_round_trip(port: u16, v: &str) {
    for q in ["0", "1", "2"] {
        let topic = format!("rt/{v}/q{q}");
        let sub = Sub::start(port, &["-V", v, "-q", q, "-t", &topic]);
        let payload = format!("hello at qos {q}");
        mosquitto_pub(port, &["-V", v, "-q", q, "-t", &topic, "-m", &payload]);
        let got = sub.wait_messages(1, WAIT);
        assert_eq!(got.len(), 1, "qos {q}: {}", sub.output());
        assert_eq!(got[0].topic, topic);
        assert_eq!(got[0].payload, payload);
        assert_eq!(got[0].qos.to_string(), q, "delivered QoS");
        assert!(!got[0].retain);
    }
}

/// A retained message reaches later subscribers, with the retain flag, every time.
fn retained(port: u16, v: &str) {
    let topic = format!("ret/{v}");
    mosquitto_pub(
        port,
        &["-V", v, "-q", "1", "-r", "-t", &topic, "-m", "kept"],
    );
    for _ in 0..2 {
        let got = mosquitto_sub(
            port,
            &["-V", v, "-t", &topic, "-C", "1", "-W", "5"],
            WAIT * 2,
        );
        assert_eq!(got.len(), 1, "retained message not delivered");
        assert_eq!(got[0].payload, "kept");
        assert!(got[0].retain, "retain flag on a retained message");
    }
    // An empty retained publish clears it; a later subscriber gets nothing.
    mosquitto_pub(port, &["-V", v, "-q", "1", "-r", "-t", &topic, "-n"]);
    let got = mosquitto_sub(port, &["-V", v, "-t", &topic, "-W", "2"], WAIT * 2);
    assert!(
        got.is_empty(),
        "cleared retained message still delivered: {got:?}"
    );
}

/// A client killed without DISCONNECT gets its will published.
fn will_on_abrupt_close(port: u16, v: &str) {
    let will_topic = format!("will/{v}");
    let watcher = Sub::start(port, &["-V", v, "-q", "1", "-t", &will_topic]);
    let mut doomed = Sub::start(
        port,
        &[
            "-V",
            v,
            "-t",
            "will/unused",
            "--will-topic",
            &will_topic,
            "--will-payload",
            "gone",
            "--will-qos",
            "1",
        ],
    );
    doomed.kill(); // SIGKILL: the TCP connection closes without DISCONNECT
    let got = watcher.wait_messages(1, WAIT);
    assert_eq!(got.len(), 1, "no will: {}", watcher.output());
    assert_eq!(got[0].payload, "gone");
}

/// A QoS 1 message published while a persistent subscriber is away is delivered when it returns.
fn persistent_session(port: u16, v: &str) {
    let id = format!("persist-{v}");
    let topic = format!("ps/{v}");
    let mut first = Sub::start(port, &["-V", v, "-c", "-i", &id, "-q", "1", "-t", &topic]);
    first.kill();
    mosquitto_pub(
        port,
        &["-V", v, "-q", "1", "-t", &topic, "-m", "while away"],
    );
    let got = mosquitto_sub(
        port,
        &[
            "-V", v, "-c", "-i", &id, "-q", "1", "-t", &topic, "-C", "1", "-W", "5",
        ],
        WAIT * 2,
    );
    assert_eq!(got.len(), 1, "queued message not delivered on reconnect");
    assert_eq!(got[0].payload, "while away");
}

/// Two members of `$share/g/...`: every message goes to exactly one of them.
fn shared_subscription(port: u16, v: &str) {
    let topic = format!("sh/{v}");
    let filter = format!("$share/g/{topic}");
    let a = Sub::start(port, &["-V", v, "-q", "1", "-t", &filter]);
    let b = Sub::start(port, &["-V", v, "-q", "1", "-t", &filter]);
    const N: usize = 10;
    for i in 0..N {
        mosquitto_pub(
            port,
            &["-V", v, "-q", "1", "-t", &topic, "-m", &format!("m{i}")],
        );
    }
    let deadline = std::time::Instant::now() + WAIT * 2;
    while a.messages().len() + b.messages().len() < N && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500)); // room for (wrong) duplicates to show up
    let (ma, mb) = (a.messages(), b.messages());
    let all: Vec<String> = ma.iter().chain(&mb).map(|m| m.payload.clone()).collect();
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), N, "a got {ma:?}, b got {mb:?}");
    assert_eq!(
        distinct.len(),
        N,
        "a message went to both: a {ma:?}, b {mb:?}"
    );
}
