//! Flow control end to end: publishers far faster than their subscriber, a
//! session queue much smaller than the burst. The broker must slow the
//! publishers down rather than drop a message it has acknowledged
//! (docs/core.md, "Flow control").

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use musqratt_codec::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use musqratt_test_support::{scratch_dir, Broker};

const V: ProtocolVersion = ProtocolVersion::V311;
const PUBLISHERS: usize = 4;
const PER_PUBLISHER: usize = 2000;
const DEADLINE: Duration = Duration::from_secs(30);

/// A blocking MQTT connection on the project's codec.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    fn connect(port: u16, id: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut c = Client {
            stream,
            buf: BytesMut::new(),
        };
        c.send(&Packet::Connect(Connect {
            protocol: V,
            clean_start: true,
            keep_alive: 0,
            properties: Properties::default(),
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
        }));
        assert!(matches!(c.next(), Packet::ConnAck(a) if !a.reason_code.is_error()));
        c
    }

    fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, V, &mut out).unwrap();
        self.stream.write_all(&out).expect("write");
    }

    fn next(&mut self) -> Packet {
        loop {
            if let Some((p, n)) = decode(&self.buf, V, u32::MAX).expect("valid packet") {
                let _ = self.buf.split_to(n);
                return p;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).expect("read (timed out?)");
            assert!(n > 0, "broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn qos1_fan_in_overload_loses_no_acknowledged_message() {
    let dir = scratch_dir("flow");
    let conf = dir.join("musqratt.toml");
    // A queue of 40: the burst below is 200 times larger.
    std::fs::write(
        &conf,
        "[storage]\nin_memory = true\n\n[limits]\nmax_queued_messages = 40\n",
    )
    .unwrap();
    let broker = Broker::start_with_args(&["-c", conf.to_str().unwrap()]);
    let port = broker.port();

    let mut sub = Client::connect(port, "slow-subscriber");
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![("flow/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
    }));
    assert!(matches!(sub.next(), Packet::SubAck(_)));

    let acked = Arc::new(Mutex::new(0usize));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let acked = Arc::clone(&acked);
            thread::spawn(move || {
                let mut c = Client::connect(port, &format!("fast-{p}"));
                // Everything in one burst: the broker must push back through TCP.
                let mut burst = BytesMut::new();
                for i in 0..PER_PUBLISHER {
                    let publish = Publish {
                        dup: false,
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        topic: format!("flow/{p}"),
                        packet_id: Some((i % 60000) as u16 + 1),
                        properties: Properties::default(),
                        payload: Bytes::from(format!("{p}:{i}")),
                    };
                    encode(&Packet::Publish(publish), V, &mut burst).unwrap();
                }
                let writer = c.stream.try_clone().unwrap();
                let w = thread::spawn(move || {
                    let mut writer = writer;
                    writer.write_all(&burst).expect("write burst");
                });
                for _ in 0..PER_PUBLISHER {
                    assert!(matches!(c.next(), Packet::PubAck(_)));
                    *acked.lock().unwrap() += 1;
                }
                w.join().unwrap();
            })
        })
        .collect();

    // The subscriber is slow on purpose, and acknowledges every message.
    let mut got = HashSet::new();
    let start = Instant::now();
    while got.len() < PUBLISHERS * PER_PUBLISHER && start.elapsed() < DEADLINE {
        match sub.next() {
            Packet::Publish(p) => {
                assert!(got.insert(p.payload.clone()), "duplicate {:?}", p.payload);
                sub.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
                if got.len() % 100 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for p in publishers {
        p.join().unwrap();
    }
    assert_eq!(*acked.lock().unwrap(), PUBLISHERS * PER_PUBLISHER);
    assert_eq!(
        got.len(),
        PUBLISHERS * PER_PUBLISHER,
        "acknowledged messages were lost"
    );
    assert!(broker.logs().iter().all(|l| !l.contains("panicked")));
}
