//! The broker on the user-level network path, end to end: two network namespaces and a veth pair
//! made by the test, the broker on lwIP over DPDK's net_af_packet in one, real clients
//! (mosquitto_pub/sub, paho-mqtt v5) in the other. The same scenarios run with the broker on
//! kernel sockets in the same topology: that variant proves the harness and is the comparison.
//!
//! Needs root. Skips (printing `SKIPPED: ...`) only when not root, or for the lwIP variant when
//! the broker binary was built without the `lwip-dpdk` feature; with `MUSQRATT_LWIP_REQUIRED` set
//! (as `make test` does) the latter is a failure. Namespaces, the veth and /var/run/dpdk/<prefix>
//! are removed by Drop guards, also when a scenario fails (lwip_netns/topo.rs); to see that,
//! `MUSQRATT_NETNS_FAIL_AT="held message"` fails on purpose before the step of that name.

mod lwip_netns {
    pub mod peer;
    pub mod topo;
}

use std::collections::HashSet;
use std::io::Write;
use std::thread;
use std::time::Duration;

use lwip_netns::peer::{publish, run_python, LinePub, PeerSub};
use lwip_netns::topo::{Skip, Stack, Topo};
use musqratt_test_support::{Msg, WAIT};

/// The fan-in checks that the network path loses nothing, so the broker's per-subscriber queue
/// limit (which drops a slow subscriber's excess by design, docs/security.md) is lifted: on a
/// loaded 2-core machine mosquitto_sub may lag the four publishers for a moment.
const EXTRA_CONFIG: &str = "[limits]\nmax_queued_messages = 0\n";

#[test]
fn kernel_sockets_in_netns() {
    run(Stack::Kernel);
}

#[test]
fn lwip_af_packet_in_netns() {
    run(Stack::LwipAfPacket);
}

/// A scenario: its name and its body, run against the broker of one topology.
type Step = (&'static str, fn(&Topo));

fn run(stack: Stack) {
    let mut t = match Topo::start(stack, EXTRA_CONFIG) {
        Ok(t) => t,
        Err(Skip(why)) => {
            // Straight to the stderr handle: the test harness captures `eprintln!` of a passing
            // test, and a skip must be seen.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
            return;
        }
    };
    let steps: [Step; 7] = [
        ("QoS 0/1/2 round trips, MQTT 3.1.1 and 5", qos_round_trips),
        ("retained message", retained),
        ("held message", held),
        ("paho-mqtt v5", paho_v5),
        ("200 concurrent connections", concurrent_200),
        ("20,000 QoS 1 messages fan-in, none lost", fan_in_20000),
        ("client killed mid-stream", killed_mid_stream),
    ];
    for (name, step) in steps {
        if std::env::var_os("MUSQRATT_NETNS_FAIL_AT").is_some_and(|s| s == name) {
            panic!("failing on purpose at: {name}");
        }
        eprintln!("[{stack:?}] {name}");
        step(&t);
        assert!(t.broker.is_running(), "broker died during: {name}");
    }
    // A clean stop on SIGTERM (on lwIP: the poll loop and the EAL shut down too).
    let status = t.broker.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "broker did not exit cleanly on SIGTERM: {status:?}\n{}",
        t.broker.logs().join("\n")
    );
}

fn qos_round_trips(t: &Topo) {
    for v in ["mqttv311", "mqttv5"] {
        for q in 0..=2u8 {
            let topic = format!("netns/qos/{v}/{q}");
            let payload = format!("q{q} over {v}");
            let qs = q.to_string();
            let sub = PeerSub::start(t, &["-V", v, "-q", &qs, "-t", &topic]);
            publish(t, &["-V", v, "-q", &qs, "-t", &topic, "-m", &payload]);
            let got = sub.wait_messages(1, WAIT);
            assert_eq!(
                got,
                vec![Msg {
                    topic: topic.clone(),
                    payload,
                    qos: q,
                    retain: false
                }],
                "{v} QoS {q}; subscriber output:\n{}",
                sub.output()
            );
        }
    }
}

fn retained(t: &Topo) {
    publish(t, &["-q", "1", "-r", "-t", "netns/retained", "-m", "kept"]);
    let mut sub = PeerSub::start(t, &["-q", "1", "-t", "netns/retained", "-C", "1"]);
    sub.wait_exit(WAIT);
    let got = sub.messages();
    assert_eq!(
        got,
        vec![Msg {
            topic: "netns/retained".into(),
            payload: "kept".into(),
            qos: 1,
            retain: true
        }],
        "subscriber output:\n{}",
        sub.output()
    );
    publish(t, &["-r", "-n", "-t", "netns/retained"]); // clear it
}

/// Published to a topic nobody subscribes to: held, and delivered to the first subscriber.
fn held(t: &Topo) {
    let v5 = ["-V", "mqttv5", "-q", "1"];
    publish(
        t,
        &[&v5[..], &["-t", "netns/held/a", "-m", "held for you"]].concat(),
    );
    let mut sub = PeerSub::start(t, &[&v5[..], &["-t", "netns/held/#", "-C", "1"]].concat());
    sub.wait_exit(WAIT);
    let got = sub.messages();
    assert_eq!(
        got,
        vec![Msg {
            topic: "netns/held/a".into(),
            payload: "held for you".into(),
            qos: 1,
            retain: false
        }],
        "subscriber output:\n{}",
        sub.output()
    );
}

/// paho-mqtt 2.x, MQTT 5: QoS 2 with properties both ways; exits 0 and prints PAHO OK on success.
const PAHO_V5: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

host, port = sys.argv[1], int(sys.argv[2])
ev = {k: threading.Event() for k in ("sub_conn", "pub_conn", "suback", "msg")}
got = []

def client(name, key):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    def on_connect(c, u, flags, rc, props):
        if rc == 0:
            ev[key].set()
        else:
            print("CONNACK", rc)
    c.on_connect = on_connect
    return c

sub = client("netns-paho-sub", "sub_conn")
def on_subscribe(c, u, mid, rcs, props):
    if [r.value for r in rcs] == [2]:
        ev["suback"].set()
    else:
        print("SUBACK", rcs)
def on_message(c, u, m):
    got.append(m)
    ev["msg"].set()
sub.on_subscribe = on_subscribe
sub.on_message = on_message
sub.connect(host, port)
sub.loop_start()
assert ev["sub_conn"].wait(10), "no CONNACK (subscriber)"
sub.subscribe("netns/paho/#", qos=2)
assert ev["suback"].wait(10), "no SUBACK granting QoS 2"

pub = client("netns-paho-pub", "pub_conn")
pub.connect(host, port)
pub.loop_start()
assert ev["pub_conn"].wait(10), "no CONNACK (publisher)"
props = Properties(PacketTypes.PUBLISH)
props.UserProperty = [("from", "peer-namespace")]
props.ContentType = "text/plain"
info = pub.publish("netns/paho/v5", b"paho over the veth", qos=2, properties=props)
info.wait_for_publish(10)
assert info.is_published(), "QoS 2 publish not completed (PUBREC/PUBCOMP)"
assert ev["msg"].wait(10), "no message"
m = got[0]
assert m.topic == "netns/paho/v5", m.topic
assert m.payload == b"paho over the veth", m.payload
assert m.qos == 2, m.qos
assert ("from", "peer-namespace") in m.properties.UserProperty, m.properties
assert m.properties.ContentType == "text/plain", m.properties
for c in (pub, sub):
    c.disconnect()
    c.loop_stop()
print("PAHO OK")
"#;

fn paho_v5(t: &Topo) {
    let out = run_python(t, PAHO_V5);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PAHO OK"),
        "paho v5 script failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 200 subscribers connected at once (each its own process and connection), all subscribed
/// before one message is published, which each of them receives.
fn concurrent_200(t: &Topo) {
    let subs: Vec<PeerSub> = (0..200)
        .map(|i| {
            let id = format!("netns-many-{i}");
            PeerSub::spawn(t, &["-i", &id, "-q", "1", "-t", "netns/many", "-C", "1"])
        })
        .collect();
    for s in &subs {
        s.wait_suback();
    }
    publish(t, &["-q", "1", "-t", "netns/many", "-m", "to all 200"]);
    for (i, mut s) in subs.into_iter().enumerate() {
        s.wait_exit(WAIT);
        let got = s.messages();
        assert!(
            got.len() == 1 && got[0].payload == "to all 200",
            "subscriber {i} got {got:?}; output:\n{}",
            s.output()
        );
    }
}

/// Four publishers, 5,000 QoS 1 messages each, one connection each, into one subscriber: every
/// one of the 20,000 arrives (distinct payloads, counted per publisher).
fn fan_in_20000(t: &Topo) {
    const PUBS: usize = 4;
    const EACH: usize = 5_000;
    let total = (PUBS * EACH).to_string();
    let mut sub = PeerSub::start(t, &["-q", "1", "-t", "netns/fanin/+", "-C", &total]);
    let pubs: Vec<_> = (0..PUBS)
        .map(|p| {
            let mut lp = LinePub::start(t, &["-q", "1", "-t", &format!("netns/fanin/p{p}")]);
            let mut stdin = lp.take_stdin();
            let feeder = thread::spawn(move || {
                let mut buf = String::new();
                for n in 0..EACH {
                    buf.push_str(&format!("p{p}-{n}\n"));
                }
                stdin.write_all(buf.as_bytes())
                // stdin dropped here: EOF, the publisher finishes and disconnects
            });
            (lp, feeder)
        })
        .collect();
    for (p, (lp, feeder)) in pubs.into_iter().enumerate() {
        feeder
            .join()
            .expect("feeder thread")
            .unwrap_or_else(|e| panic!("publisher {p}: writing its input: {e}"));
        let (status, err) = lp.finish(Duration::from_secs(120));
        assert!(
            status.is_some_and(|s| s.success()),
            "publisher {p} exited {status:?}: {err}"
        );
    }
    sub.wait_exit(Duration::from_secs(120));
    let got: HashSet<String> = sub.messages().into_iter().map(|m| m.payload).collect();
    let missing: Vec<String> = (0..PUBS)
        .flat_map(|p| (0..EACH).map(move |n| format!("p{p}-{n}")))
        .filter(|m| !got.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {total} lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// A publisher streaming is SIGKILLed (no DISCONNECT: the connection is cut) while a parallel
/// pair keeps round-tripping; the pair loses nothing and the stream's subscriber stays served.
fn killed_mid_stream(t: &Topo) {
    let pair_sub = PeerSub::start(t, &["-q", "1", "-t", "netns/pair"]);
    let mut pair_pub = LinePub::start(t, &["-q", "1", "-t", "netns/pair"]);
    let mut sent = 0usize;
    let mut round_trip = |n: usize| {
        for _ in 0..n {
            let m = format!("rt-{sent}");
            pair_pub.send(&m).expect("pair publisher alive");
            assert!(
                pair_sub.wait_payloads(WAIT, |p| p.contains(&m.as_str())),
                "round trip {m} did not come back; pair subscriber:\n{}",
                pair_sub.output()
            );
            sent += 1;
        }
    };
    let stream_sub = PeerSub::start(t, &["-q", "1", "-t", "netns/stream"]);
    let mut streamer = LinePub::start(t, &["-q", "1", "-t", "netns/stream"]);
    let mut stdin = streamer.take_stdin();
    // Paced so the stream is steady rather than a burst that ends before the kill.
    let feeder = thread::spawn(move || {
        let mut n = 0u64;
        while stdin.write_all(format!("s-{n}\n").as_bytes()).is_ok() {
            n += 1;
            thread::sleep(Duration::from_millis(1));
        }
    });
    assert!(
        stream_sub.wait_payloads(WAIT, |p| p.len() >= 50),
        "the stream did not flow; its subscriber:\n{}",
        stream_sub.output()
    );
    round_trip(3);
    streamer.kill();
    feeder.join().expect("feeder thread"); // ends on EPIPE once the publisher is gone
    round_trip(20);
    // Every round trip once and in order (one QoS 1 connection each way).
    let want: Vec<String> = (0..sent).map(|i| format!("rt-{i}")).collect();
    let got: Vec<String> = pair_sub.messages().into_iter().map(|m| m.payload).collect();
    assert_eq!(got, want, "the pair's messages");
    // The stream's subscriber is still connected and served.
    publish(
        t,
        &["-q", "1", "-t", "netns/stream", "-m", "after the kill"],
    );
    assert!(
        stream_sub.wait_payloads(WAIT, |p| p.contains(&"after the kill")),
        "the stream's subscriber lost its service; output tail:\n{}",
        stream_sub
            .output()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
