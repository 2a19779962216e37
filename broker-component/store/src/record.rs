//! The byte layout of keys and values in the store (docs/storage.md "Records").
//!
//! Every value starts with a format byte, so a later version can read an older store. A
//! message is kept as the MQTT 5.0 PUBLISH that carries it (topic, payload, QoS, retain and
//! the forwarded properties), encoded and decoded by musqratt-codec, after a small header:
//! the codec's validation is then also what checks a message read back from disk. Anything
//! that does not decode is reported as [`Corrupt`] and skipped by recovery, never trusted.

use bytes::{Buf, BufMut, BytesMut};
use musqratt_codec::{
    decode, encode, Packet, Properties, ProtocolVersion, Publish, QoS, RetainHandling,
    SubscriptionOptions, Will,
};
use musqratt_core::session::{InflightState, SubscriptionRecord};

const FORMAT: u8 = 1;

/// A record that does not decode: a torn write, flipped bytes, or a format we do not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A message as stored: what the core's `Message` holds, with its deadline in wall-clock
/// milliseconds since the Unix epoch (an `Instant` means nothing after a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub publish: Publish,
    pub publisher: u64,
    /// 0 = never expires.
    pub expires_at_ms: u64,
}

pub fn encode_message(m: &StoredMessage) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(32 + m.publish.topic.len() + m.publish.payload.len());
    b.put_u8(FORMAT);
    b.put_u64(m.publisher);
    b.put_u64(m.expires_at_ms);
    let mut publish = m.publish.clone();
    // The codec requires a packet id exactly for QoS > 0; the stored one means nothing.
    publish.packet_id = (publish.qos != QoS::AtMostOnce).then_some(1);
    // A message the broker accepted always re-encodes (it was decoded by the same codec).
    if encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut b).is_err() {
        b.truncate(17);
    }
    b.to_vec()
}

pub fn decode_message(v: &[u8]) -> Result<StoredMessage, Corrupt> {
    let mut r = v;
    if r.len() < 17 || r.get_u8() != FORMAT {
        return Err(Corrupt("message: short or unknown format"));
    }
    let publisher = r.get_u64();
    let expires_at_ms = r.get_u64();
    match decode(r, ProtocolVersion::V5, u32::MAX) {
        Ok(Some((Packet::Publish(publish), n))) if n == r.len() => Ok(StoredMessage {
            publish,
            publisher,
            expires_at_ms,
        }),
        _ => Err(Corrupt("message: not a valid PUBLISH")),
    }
}

/// A persistent session: its expiry and subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub expiry_interval: u32,
    /// An offline session's deadline, wall-clock ms since the epoch (0 = none).
    pub expires_at_ms: u64,
    pub subscriptions: Vec<(String, SubscriptionRecord)>,
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn options_from(b: u8) -> Option<SubscriptionOptions> {
    let mut o = SubscriptionOptions::new(QoS::from_u8(b & 3)?);
    o.no_local = b & 4 != 0;
    o.retain_as_published = b & 8 != 0;
    o.retain_handling = match (b >> 4) & 3 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return None,
    };
    Some(o)
}

pub fn encode_session(s: &StoredSession) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(FORMAT);
    b.put_u32(s.expiry_interval);
    b.put_u64(s.expires_at_ms);
    b.put_u32(s.subscriptions.len() as u32);
    for (filter, rec) in &s.subscriptions {
        put_str(&mut b, filter);
        b.put_u8(options_byte(&rec.options));
        b.put_u32(rec.sub_id.unwrap_or(0));
    }
    b.to_vec()
}

pub fn decode_session(v: &[u8]) -> Result<StoredSession, Corrupt> {
    const BAD: Corrupt = Corrupt("session: truncated or invalid");
    let mut r = v;
    if r.len() < 17 || r.get_u8() != FORMAT {
        return Err(BAD);
    }
    let expiry_interval = r.get_u32();
    let expires_at_ms = r.get_u64();
    let n = r.get_u32();
    let mut subscriptions = Vec::new();
    for _ in 0..n {
        let filter = get_str(&mut r).ok_or(BAD)?;
        if r.remaining() < 5 {
            return Err(BAD);
        }
        let options = options_from(r.get_u8()).ok_or(BAD)?;
        let sub_id = Some(r.get_u32()).filter(|&id| id != 0);
        subscriptions.push((filter, SubscriptionRecord { options, sub_id }));
    }
    if r.has_remaining() {
        return Err(BAD);
    }
    Ok(StoredSession {
        expiry_interval,
        expires_at_ms,
        subscriptions,
    })
}

/// One queued (or in-flight) message of a persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub msg: u64,
    pub qos: QoS,
    pub retain: bool,
    /// Set once a QoS 2 delivery has its packet id.
    pub sent: Option<(u16, InflightState)>,
    pub sub_ids: Vec<u32>,
}

fn state_byte(s: InflightState) -> u8 {
    match s {
        InflightState::AwaitPubAck => 1,
        InflightState::AwaitPubRec => 2,
        InflightState::AwaitPubComp => 3,
    }
}

pub fn encode_entry(e: &StoredEntry) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(20 + 4 * e.sub_ids.len());
    b.put_u8(FORMAT);
    b.put_u64(e.msg);
    b.put_u8(e.qos as u8 | u8::from(e.retain) << 2);
    let (pid, state) = e.sent.map_or((0, 0), |(p, s)| (p, state_byte(s)));
    b.put_u16(pid);
    b.put_u8(state);
    b.put_u16(e.sub_ids.len() as u16);
    for id in &e.sub_ids {
        b.put_u32(*id);
    }
    b.to_vec()
}

pub fn decode_entry(v: &[u8]) -> Result<StoredEntry, Corrupt> {
    const BAD: Corrupt = Corrupt("queue entry: truncated or invalid");
    let mut r = v;
    if r.len() < 15 || r.get_u8() != FORMAT {
        return Err(BAD);
    }
    let msg = r.get_u64();
    let flags = r.get_u8();
    let qos = QoS::from_u8(flags & 3).ok_or(BAD)?;
    let retain = flags & 4 != 0;
    let pid = r.get_u16();
    let sent = match r.get_u8() {
        0 => None,
        1 => Some((pid, InflightState::AwaitPubAck)),
        2 => Some((pid, InflightState::AwaitPubRec)),
        3 => Some((pid, InflightState::AwaitPubComp)),
        _ => return Err(BAD),
    };
    let n = usize::from(r.get_u16());
    if r.remaining() != 4 * n {
        return Err(BAD);
    }
    let sub_ids = (0..n).map(|_| r.get_u32()).collect();
    Ok(StoredEntry {
        msg,
        qos,
        retain,
        sent,
        sub_ids,
    })
}

/// A client's will (docs/storage.md "Wills"): when it is due, then the will as the MQTT 5.0
/// PUBLISH that will carry it, so the codec checks it when it is read back. The Will Delay
/// Interval is not in it (a PUBLISH cannot carry one): the timing fields are what counts.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWill {
    pub will: Will,
    /// The will of an open connection: its delay counted from a restart, in seconds.
    pub delay: u32,
    /// A pending will's deadline, wall-clock ms since the epoch (0 = its connection was open).
    pub fires_at_ms: u64,
}

/// The format byte, `fires_at_ms` and `delay`.
const WILL_HEADER: usize = 13;

pub fn encode_will(w: &StoredWill) -> Vec<u8> {
    let will = &w.will;
    let mut b = BytesMut::with_capacity(WILL_HEADER + 16 + will.topic.len() + will.payload.len());
    b.put_u8(FORMAT);
    b.put_u64(w.fires_at_ms);
    b.put_u32(w.delay);
    let publish = Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        // The codec requires a packet id exactly for QoS > 0; it means nothing here.
        packet_id: (will.qos != QoS::AtMostOnce).then_some(1),
        properties: Properties {
            will_delay_interval: None,
            ..will.properties.clone()
        },
        payload: will.payload.clone(),
    };
    // A will the codec accepted in a CONNECT encodes as a PUBLISH; should one not, the record
    // is short and recovery reports it (never a record that decodes as something else).
    if encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut b).is_err() {
        b.truncate(WILL_HEADER);
    }
    b.to_vec()
}

pub fn decode_will(v: &[u8]) -> Result<StoredWill, Corrupt> {
    let mut r = v;
    if r.len() <= WILL_HEADER || r.get_u8() != FORMAT {
        return Err(Corrupt("will: short or unknown format"));
    }
    let fires_at_ms = r.get_u64();
    let delay = r.get_u32();
    match decode(r, ProtocolVersion::V5, u32::MAX) {
        Ok(Some((Packet::Publish(p), n))) if n == r.len() => Ok(StoredWill {
            will: Will {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties: p.properties,
            },
            delay,
            fires_at_ms,
        }),
        _ => Err(Corrupt("will: not a valid PUBLISH")),
    }
}

/// A reference to a message (retained and held records): its id.
pub fn encode_ref(msg: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(9);
    b.push(FORMAT);
    b.extend_from_slice(&msg.to_be_bytes());
    b
}

pub fn decode_ref(v: &[u8]) -> Result<u64, Corrupt> {
    match v {
        [FORMAT, rest @ ..] if rest.len() == 8 => {
            let mut id = [0u8; 8];
            id.copy_from_slice(rest);
            Ok(u64::from_be_bytes(id))
        }
        _ => Err(Corrupt("message reference: invalid")),
    }
}

// ---- keys: big-endian numbers so a range scan returns entries in order ----------------

/// `name` (length-prefixed) followed by `n`: one session's queue entry, one topic's held
/// message. All of a name's keys share the prefix [`name_prefix`].
pub fn name_key(name: &str, n: u64) -> Vec<u8> {
    let mut k = name_prefix(name);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

pub fn name_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len() + 8);
    k.extend_from_slice(&(name.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Splits a [`name_key`] back into its name and number.
pub fn split_name_key(k: &[u8]) -> Result<(String, u64), Corrupt> {
    const BAD: Corrupt = Corrupt("key: invalid");
    let (len, rest) = k.split_first_chunk::<2>().ok_or(BAD)?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() != len + 8 {
        return Err(BAD);
    }
    let (name, n) = rest.split_at(len);
    let name = std::str::from_utf8(name).map_err(|_| BAD)?.to_owned();
    let mut num = [0u8; 8];
    num.copy_from_slice(n);
    Ok((name, u64::from_be_bytes(num)))
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len().min(usize::from(u16::MAX)) as u16);
    b.put_slice(&s.as_bytes()[..s.len().min(usize::from(u16::MAX))]);
}

fn get_str(r: &mut &[u8]) -> Option<String> {
    if r.remaining() < 2 {
        return None;
    }
    let n = usize::from(r.get_u16());
    if r.remaining() < n {
        return None;
    }
    let s = std::str::from_utf8(&r[..n]).ok()?.to_owned();
    r.advance(n);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use musqratt_codec::Properties;

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let properties = Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        };
        let m = StoredMessage {
            publish: Publish {
                dup: false,
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: Some(1),
                properties,
                payload: Bytes::from_static(b"hello"),
            },
            publisher: 7,
            expires_at_ms: 1_700_000_000_000,
        };
        let v = encode_message(&m);
        assert_eq!(decode_message(&v), Ok(m));
        assert!(decode_message(&v[..v.len() - 1]).is_err());
        let mut flipped = v.clone();
        flipped[17] ^= 0xff;
        assert!(decode_message(&flipped).is_err());

        let mut options = SubscriptionOptions::new(QoS::AtLeastOnce);
        options.no_local = true;
        options.retain_handling = RetainHandling::SendIfNew;
        let s = StoredSession {
            expiry_interval: 3600,
            expires_at_ms: 1_700_000_000_000,
            subscriptions: vec![(
                "x/#".into(),
                SubscriptionRecord {
                    options,
                    sub_id: Some(9),
                },
            )],
        };
        let v = encode_session(&s);
        assert_eq!(decode_session(&v), Ok(s));
        assert!(decode_session(&v[..v.len() - 2]).is_err());

        let e = StoredEntry {
            msg: 42,
            qos: QoS::ExactlyOnce,
            retain: false,
            sent: Some((513, InflightState::AwaitPubComp)),
            sub_ids: vec![1, 2],
        };
        let v = encode_entry(&e);
        assert_eq!(decode_entry(&v), Ok(e));
        assert!(decode_entry(&v[..v.len() - 1]).is_err());

        assert_eq!(decode_ref(&encode_ref(5)), Ok(5));
        let k = name_key("sess", 77);
        assert_eq!(split_name_key(&k), Ok(("sess".into(), 77)));
        assert!(k.starts_with(&name_prefix("sess")));
        assert!(!name_key("sessx", 1).starts_with(&name_prefix("sess")));
    }

    #[test]
    fn a_will_round_trips_without_its_delay_property_and_damage_is_detected() {
        let properties = Properties {
            will_delay_interval: Some(30),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        };
        let will = Will {
            topic: "status/dev1".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties,
        };
        let w = StoredWill {
            will: will.clone(),
            delay: 30,
            fires_at_ms: 1_700_000_000_000,
        };
        let v = encode_will(&w);
        let back = decode_will(&v).expect("decodes");
        assert_eq!(back.delay, 30);
        assert_eq!(back.fires_at_ms, 1_700_000_000_000);
        // Everything but the Will Delay Interval, which the timing fields replace.
        let mut expected = will;
        expected.properties.will_delay_interval = None;
        assert_eq!(back.will, expected);

        // QoS 0, no properties (a 3.1.1 will).
        let plain = StoredWill {
            will: Will {
                topic: "t".into(),
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::default(),
            },
            delay: 0,
            fires_at_ms: 0,
        };
        assert_eq!(decode_will(&encode_will(&plain)), Ok(plain));

        assert!(decode_will(&v[..v.len() - 1]).is_err());
        assert!(decode_will(&v[..WILL_HEADER]).is_err());
        let mut format = v.clone();
        format[0] = 9;
        assert!(decode_will(&format).is_err());
        let mut flipped = v.clone();
        flipped[WILL_HEADER] ^= 0xff;
        assert!(decode_will(&flipped).is_err());
        let mut longer = v.clone();
        longer.push(0);
        assert!(decode_will(&longer).is_err());
    }
}
