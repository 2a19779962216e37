//! A deterministic in-memory harness for the sans-IO core: it plays the
//! transport (routes wakes and kicks between connections, collects what each
//! connection transmits) and owns the clock, so tests never sleep.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use musqratt_codec::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, Will,
};
use musqratt_core::{Broker, BrokerConfig, ConnRef, Connection, Output};

pub struct Client {
    conn: Connection,
    version: ProtocolVersion,
    inbox: BytesMut,
    pub closed: bool,
    /// Bytes the core did not consume (paused by flow control).
    unread: Vec<u8>,
    pub paused: bool,
}

pub struct Harness {
    pub broker: Arc<Broker>,
    pub now: Instant,
    clients: HashMap<u64, Client>,
    next_serial: u64,
    /// The journal ticket the last packet's output waited for (`Output::durable_after`).
    pub last_durable_after: u64,
    /// What the last packet's output may be released by instead (`Output::soft_after`,
    /// `Output::soft_messages`), and the workers it told of deliveries (`Output::delivered`).
    pub last_soft_after: u64,
    pub last_soft_messages: Vec<Arc<musqratt_core::message::Message>>,
    pub last_delivered: Vec<u32>,
}

pub type Id = u64;

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(BrokerConfig::default())
    }

    /// Over a broker the test prepared (a journal attached, state restored), at `now`.
    pub fn with_broker(broker: Broker, now: Instant) -> Harness {
        Harness {
            broker: Arc::new(broker),
            now,
            clients: HashMap::new(),
            next_serial: 1,
            last_durable_after: 0,
            last_soft_after: 0,
            last_soft_messages: Vec::new(),
            last_delivered: Vec::new(),
        }
    }

    pub fn with_config(config: BrokerConfig) -> Harness {
        let now = Instant::now();
        Harness {
            broker: Arc::new(Broker::new(config, now)),
            now,
            clients: HashMap::new(),
            next_serial: 1,
            last_durable_after: 0,
            last_soft_after: 0,
            last_soft_messages: Vec::new(),
            last_delivered: Vec::new(),
        }
    }

    /// Opens a socket (no CONNECT yet).
    pub fn open(&mut self, version: ProtocolVersion) -> Id {
        let serial = self.next_serial;
        self.next_serial += 1;
        let r = ConnRef {
            worker: 0,
            slot: serial as u32,
            serial,
        };
        self.clients.insert(
            serial,
            Client {
                conn: Connection::new(r, self.now),
                version,
                inbox: BytesMut::new(),
                closed: false,
                unread: Vec::new(),
                paused: false,
            },
        );
        serial
    }

    /// Opens and sends CONNECT; returns the id and the CONNACK's packets.
    pub fn connect_with(&mut self, c: Connect) -> (Id, Vec<Packet>) {
        let id = self.open(c.protocol);
        self.send(id, Packet::Connect(c));
        let got = self.recv(id);
        (id, got)
    }

    pub fn connect(&mut self, version: ProtocolVersion, client_id: &str) -> Id {
        let (id, got) = self.connect_with(connect(version, client_id));
        assert!(
            matches!(got.first(), Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::SUCCESS),
            "{got:?}"
        );
        id
    }

    pub fn send(&mut self, id: Id, packet: Packet) {
        let version = self.clients[&id].version;
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf).unwrap();
        self.send_raw(id, &buf);
    }

    pub fn send_raw(&mut self, id: Id, bytes: &[u8]) {
        let now = self.now;
        let broker = Arc::clone(&self.broker);
        let mut out = Output::new();
        let c = self.clients.get_mut(&id).expect("client");
        c.unread.extend_from_slice(bytes);
        if c.paused {
            return;
        }
        let data = std::mem::take(&mut c.unread);
        let used = c.conn.handle_bytes(&broker, &data, now, &mut out);
        self.last_durable_after = out.durable_after;
        self.last_soft_after = out.soft_after;
        self.last_soft_messages = std::mem::take(&mut out.soft_messages);
        self.last_delivered = std::mem::take(&mut out.delivered);
        if out.pause {
            c.paused = true;
            c.unread = data[used..].to_vec();
        } else {
            assert!(
                used == data.len() || c.conn.is_closed(),
                "partial packet left"
            );
        }
        self.settle(id, out);
    }

    /// Applies an Output produced by client `id` (or by the broker timer when
    /// `id` is 0), then routes wakes and kicks until nothing is left to do.
    fn settle(&mut self, id: Id, out: Output) {
        let mut pending = vec![(id, out)];
        let mut resumed = Vec::new();
        let broker = Arc::clone(&self.broker);
        while let Some((from, mut out)) = pending.pop() {
            if let Some(c) = self.clients.get_mut(&from) {
                c.inbox.extend_from_slice(&out.transmit);
                if out.close {
                    c.closed = true;
                }
            }
            for r in out.resumes.drain(..) {
                if let Some(c) = self.clients.get_mut(&r.serial) {
                    if c.paused {
                        c.paused = false;
                        resumed.push(r.serial);
                    }
                }
            }
            for k in out.kicks.drain(..) {
                if let Some(c) = self.clients.get_mut(&k.serial) {
                    let mut o = Output::new();
                    c.conn.handle_kick(&broker, self.now, &mut o);
                    pending.push((k.serial, o));
                }
            }
            for w in out.wakes.drain(..) {
                if let Some(c) = self.clients.get_mut(&w.serial) {
                    let mut o = Output::new();
                    c.conn.handle_wake(&broker, self.now, &mut o);
                    pending.push((w.serial, o));
                }
            }
        }
        for id in resumed {
            self.send_raw(id, &[]);
        }
    }

    /// Everything the broker has sent to `id` since the last call.
    pub fn recv(&mut self, id: Id) -> Vec<Packet> {
        let c = self.clients.get_mut(&id).expect("client");
        let mut packets = Vec::new();
        let mut used = 0;
        while let Some((p, n)) =
            decode(&c.inbox[used..], c.version, u32::MAX).expect("broker sent a valid packet")
        {
            packets.push(p);
            used += n;
        }
        assert_eq!(used, c.inbox.len(), "broker sent a partial packet");
        c.inbox.clear();
        packets
    }

    pub fn clients_paused(&self, id: Id) -> bool {
        self.clients[&id].paused
    }

    pub fn is_closed(&self, id: Id) -> bool {
        self.clients[&id].closed
    }

    /// The peer's socket drops without DISCONNECT.
    pub fn drop_socket(&mut self, id: Id) {
        let broker = Arc::clone(&self.broker);
        let mut out = Output::new();
        let c = self.clients.get_mut(&id).expect("client");
        c.conn.handle_close(&broker, self.now, &mut out);
        self.settle(id, out);
    }

    /// Moves the clock and runs every timer that is due. Paused publishers
    /// resume, as the transport does after `publisher_stall`.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        let paused: Vec<Id> = self
            .clients
            .iter()
            .filter(|(_, c)| c.paused)
            .map(|(id, _)| *id)
            .collect();
        for id in paused {
            self.clients.get_mut(&id).unwrap().paused = false;
            self.send_raw(id, &[]);
        }
        let broker = Arc::clone(&self.broker);
        let mut out = Output::new();
        broker.handle_timeout(self.now, &mut out);
        self.settle(0, out);
        let ids: Vec<Id> = self.clients.keys().copied().collect();
        for id in ids {
            let mut out = Output::new();
            let c = self.clients.get_mut(&id).unwrap();
            c.conn.handle_timeout(&broker, self.now, &mut out);
            self.settle(id, out);
        }
    }

    pub fn subscribe(&mut self, id: Id, filter: &str, qos: QoS) -> Vec<Packet> {
        self.subscribe_opts(id, filter, SubscriptionOptions::new(qos), None)
    }

    pub fn subscribe_opts(
        &mut self,
        id: Id,
        filter: &str,
        opts: SubscriptionOptions,
        sub_id: Option<u32>,
    ) -> Vec<Packet> {
        let mut properties = Properties::default();
        properties.subscription_identifiers.extend(sub_id);
        self.send(
            id,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties,
                filters: vec![(filter.into(), opts)],
            }),
        );
        let got = self.recv(id);
        assert!(matches!(got.first(), Some(Packet::SubAck(_))), "{got:?}");
        got
    }

    pub fn publish(
        &mut self,
        id: Id,
        topic: &str,
        payload: &str,
        qos: QoS,
        retain: bool,
    ) -> Vec<Packet> {
        self.send(id, Packet::Publish(publish(topic, payload, qos, retain)));
        self.recv(id)
    }
}

pub fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 0,
        properties: Properties::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

pub fn will(topic: &str, payload: &str, delay: Option<u32>) -> Will {
    let properties = Properties {
        will_delay_interval: delay,
        ..Default::default()
    };
    Will {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    }
}

pub fn publish(topic: &str, payload: &str, qos: QoS, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            Some(7)
        },
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

/// The PUBLISH packets among `packets`.
pub fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| {
            if let Packet::Publish(p) = p {
                Some(p)
            } else {
                None
            }
        })
        .collect()
}

pub fn payloads(packets: &[Packet]) -> Vec<String> {
    publishes(packets)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

pub fn ack(id: u16) -> PubAck {
    PubAck::new(id)
}
