//! The seed corpus, built from real packets encoded by the codec, so the fuzzers start from
//! inputs that reach past the fixed header and the CONNECT. `examples/write_seeds.rs` writes
//! them to `fuzz/corpus/<target>/`; `tests/replay_seeds.rs` replays both these and the files.

use bytes::{Bytes, BytesMut};
use musqratt_codec::{
    encode, Auth, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS,
    ReasonCode, RetainHandling, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};

use crate::core_script::USERS;

const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The codec selector byte for `version` (codec::settings), with the largest packet size.
fn codec_selector(version: ProtocolVersion) -> u8 {
    match version {
        ProtocolVersion::V31 => 0,
        ProtocolVersion::V311 => 1,
        ProtocolVersion::V5 => 2,
    }
}

fn bytes(p: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode(p, version, &mut b).unwrap_or_else(|e| panic!("seed {p:?}: {e:?}"));
    b.to_vec()
}

pub fn connect(version: ProtocolVersion, client_id: &str, will: bool, user: bool) -> Packet {
    let v5 = version.is_v5();
    let mut properties = Properties::default();
    if v5 {
        properties.session_expiry_interval = Some(300);
        properties.receive_maximum = Some(4);
        properties.maximum_packet_size = Some(4096);
        properties.topic_alias_maximum = Some(4);
        properties.user_properties = vec![("k".into(), "v".into())];
    }
    let will = will.then(|| Will {
        topic: "will/topic".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: if v5 {
            Properties {
                will_delay_interval: Some(5),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                ..Properties::default()
            }
        } else {
            Properties::default()
        },
    });
    let (username, password) = if user {
        (
            Some(USERS[0].0.to_string()),
            Some(Bytes::from_static(USERS[0].1.as_bytes())),
        )
    } else {
        (None, None)
    };
    Packet::Connect(Connect {
        protocol: version,
        clean_start: will.is_none(),
        keep_alive: 30,
        properties,
        client_id: client_id.into(),
        will,
        username,
        password,
    })
}

fn subscribe(version: ProtocolVersion) -> Packet {
    let mut o1 = SubscriptionOptions::new(QoS::ExactlyOnce);
    let mut properties = Properties::default();
    if version.is_v5() {
        o1.no_local = true;
        o1.retain_as_published = true;
        o1.retain_handling = RetainHandling::SendIfNew;
        properties.subscription_identifiers = vec![7];
    }
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties,
        filters: vec![
            ("a/+/c".into(), o1),
            ("a/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce)),
            (
                "will/topic".into(),
                SubscriptionOptions::new(QoS::AtMostOnce),
            ),
            ("$SYS/#".into(), SubscriptionOptions::new(QoS::AtMostOnce)),
        ],
    })
}

fn publish(version: ProtocolVersion, qos: QoS, id: u16, retain: bool) -> Packet {
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.message_expiry_interval = Some(10);
        properties.topic_alias = Some(1);
        properties.payload_format_indicator = Some(1);
        properties.response_topic = Some("reply/to".into());
        properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    }
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: "a/b/c".into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(id),
        properties,
        payload: Bytes::from_static(b"hello"),
    })
}

/// One client session's packets, in order, for `version`.
fn session(version: ProtocolVersion, client_id: &str, will: bool, user: bool) -> Vec<Packet> {
    let v5 = version.is_v5();
    let mut ps = vec![
        connect(version, client_id, will, user),
        subscribe(version),
        publish(version, QoS::AtMostOnce, 0, false),
        publish(version, QoS::AtLeastOnce, 2, true),
        publish(version, QoS::ExactlyOnce, 3, false),
        Packet::PubRel(PubAck::new(3)),
        Packet::PubAck(PubAck::new(1)),
        Packet::PubRec(PubAck::new(2)),
        Packet::PubComp(PubAck::new(2)),
        Packet::PingReq,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 4,
            properties: Properties::default(),
            filters: vec!["a/#".into()],
        }),
    ];
    if v5 {
        ps.push(Packet::Auth(Auth {
            reason_code: ReasonCode(0x18),
            properties: Properties::default(),
        }));
    }
    ps.push(Packet::Disconnect(Disconnect::new(if will {
        ReasonCode(0x04)
    } else {
        ReasonCode::SUCCESS
    })));
    ps
}

/// `codec_decode` seeds: (file name, input).
pub fn codec() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (version, tag) in [(V31, "v3"), (V311, "v4"), (V5, "v5")] {
        for (i, p) in session(version, "seed-client", true, true)
            .iter()
            .enumerate()
        {
            let mut input = vec![codec_selector(version)];
            input.extend(bytes(p, version));
            out.push((format!("{tag}-{i:02}-{}", p.name().to_lowercase()), input));
        }
        // A whole session in one input: packets decoded back to back.
        let mut all = vec![codec_selector(version)];
        for p in session(version, "c", false, false) {
            all.extend(bytes(&p, version));
        }
        out.push((format!("{tag}-session"), all));
    }
    out
}

/// A script op sending `data` to `slot`, in chunks of at most 255 bytes.
fn send(script: &mut Vec<u8>, slot: u8, data: &[u8]) {
    for chunk in data.chunks(255) {
        script.push(slot << 3);
        script.push(chunk.len() as u8);
        script.extend_from_slice(chunk);
    }
}

fn step(script: &mut Vec<u8>, i: u8) {
    script.extend([4, i]);
}

/// `core_sequence` seeds: (file name, script).
pub fn core() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (version, tag) in [(V31, "v3"), (V311, "v4"), (V5, "v5")] {
        for selector in [0u8, 1, 3, 4, 5] {
            let user = selector & 1 != 0;
            let mut s = vec![selector];
            // A subscriber with a will, a publisher, a takeover, time passing, an abrupt close.
            for p in session(version, "sub", true, user).iter().take(2) {
                send(&mut s, 0, &bytes(p, version));
            }
            for p in session(version, "pub", false, user).iter() {
                send(&mut s, 1, &bytes(p, version));
            }
            step(&mut s, 2);
            send(
                &mut s,
                2,
                &bytes(&connect(version, "sub", false, user), version),
            );
            step(&mut s, 5);
            send(
                &mut s,
                3,
                &bytes(&connect(version, "late", true, user), version),
            );
            s.extend([5 | (3 << 3)]);
            step(&mut s, 8);
            out.push((format!("{tag}-cfg{selector}"), s));
        }
    }
    // The second CONNECT with an unknown protocol level (fuzz_regressions.rs).
    let mut s = vec![0u8];
    send(&mut s, 0, &bytes(&connect(V5, "c", false, false), V5));
    let mut bad = bytes(&connect(V5, "c", false, false), V5);
    bad[8] = 0x07; // fixed header 2 bytes, "MQTT" 6 bytes: the protocol level
    send(&mut s, 0, &bad);
    out.push(("second-connect-level7".into(), s));
    out
}
