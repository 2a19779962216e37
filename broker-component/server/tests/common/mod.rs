//! Shared by the integration tests of the `musqratt` binary (each test file is its own crate and
//! uses only part of this module).
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub use musqratt_test_support::{
    mosquitto_pub, mosquitto_sub, raw, Broker, Mosquitto, Msg, Sub, START_TIMEOUT, WAIT,
};

/// Start the broker under test: `$MUSQRATT_BIN`, else the binary cargo built for these tests.
pub fn broker() -> Broker {
    broker_with_args(&[])
}

pub fn broker_with_args(args: &[&str]) -> Broker {
    Broker::start_bin(Path::new(env!("CARGO_BIN_EXE_musqratt")), args)
}

/// What a rumqttc event loop thread reports (v4 and v5 alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    ConnAck {
        session_present: bool,
    },
    SubAck,
    PubAck,
    PubComp,
    /// An outgoing PUBLISH was written to the socket (QoS 0 completion).
    Sent,
    /// The DISCONNECT was written.
    Disconnected,
    Error(String),
}

/// An incoming PUBLISH, for v4 and v5 alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 Message Expiry Interval as received (v5 only).
    pub expiry: Option<u32>,
}

/// The receiving ends fed by a client's event loop thread.
pub struct Inbox {
    pub events: mpsc::Receiver<Ev>,
    pub publishes: mpsc::Receiver<Received>,
}

impl Inbox {
    /// Wait for an event matching `pred`; panics on an error event or timeout.
    pub fn wait(&self, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ev::Error(e)) => panic!("client error while waiting for {what}: {e}"),
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Wait (up to `WAIT`) until the DISCONNECT is written or the event loop ended.
    pub fn wait_disconnected(&self) {
        let deadline = Instant::now() + WAIT;
        while let Ok(ev) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if matches!(ev, Ev::Disconnected | Ev::Error(_)) {
                return;
            }
        }
    }

    /// The next incoming PUBLISH, or panic after `WAIT`.
    pub fn expect_publish(&self) -> Received {
        self.publishes
            .recv_timeout(WAIT)
            .expect("timed out waiting for a PUBLISH")
    }

    /// Assert that no PUBLISH arrives within `d`.
    pub fn expect_no_publish(&self, d: Duration) {
        if let Ok(p) = self.publishes.recv_timeout(d) {
            panic!("unexpected PUBLISH: {p:?}");
        }
    }
}

/// rumqttc MQTT 3.1.1 client driven by a thread.
pub mod v4 {
    use super::*;
    use rumqttc::{Client, Event, Incoming, MqttOptions, Outgoing, QoS};

    pub fn qos(q: u8) -> QoS {
        match q {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    pub struct C {
        pub client: Client,
        pub inbox: Inbox,
    }

    /// Connect (clean session unless `persistent`) and wait for the CONNACK.
    pub fn connect(port: u16, id: &str, persistent: bool) -> (C, bool) {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(!persistent);
        let (client, mut conn) = Client::new(opts, 64);
        let (etx, events) = mpsc::channel();
        let (ptx, publishes) = mpsc::channel();
        thread::spawn(move || {
            for ev in conn.iter() {
                let e = match ev {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = ptx.send(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            qos: p.qos as u8,
                            retain: p.retain,
                            expiry: None,
                        });
                        continue;
                    }
                    Ok(Event::Incoming(Incoming::ConnAck(a))) => Ev::ConnAck {
                        session_present: a.session_present,
                    },
                    Ok(Event::Incoming(Incoming::SubAck(_))) => Ev::SubAck,
                    Ok(Event::Incoming(Incoming::PubAck(_))) => Ev::PubAck,
                    Ok(Event::Incoming(Incoming::PubComp(_))) => Ev::PubComp,
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => Ev::Sent,
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => Ev::Disconnected,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = etx.send(Ev::Error(e.to_string()));
                        return; // no automatic reconnect in tests
                    }
                };
                if etx.send(e).is_err() {
                    return;
                }
            }
        });
        let c = C {
            client,
            inbox: Inbox { events, publishes },
        };
        let sp = match c.inbox.wait("CONNACK", |e| matches!(e, Ev::ConnAck { .. })) {
            Ev::ConnAck { session_present } => session_present,
            _ => unreachable!(),
        };
        (c, sp)
    }

    impl C {
        pub fn subscribe(&self, filter: &str, q: u8) {
            self.client.subscribe(filter, qos(q)).unwrap();
            self.inbox.wait("SUBACK", |e| *e == Ev::SubAck);
        }

        /// Publish and wait for the end of the flow (written / PUBACK / PUBCOMP).
        pub fn publish(&self, topic: &str, q: u8, retain: bool, payload: &[u8]) {
            self.client
                .publish(topic, qos(q), retain, payload.to_vec())
                .unwrap();
            let want = [Ev::Sent, Ev::PubAck, Ev::PubComp][q as usize].clone();
            self.inbox.wait(&format!("{want:?}"), |e| *e == want);
        }

        pub fn disconnect(self) {
            let _ = self.client.disconnect();
            self.inbox.wait_disconnected();
        }
    }
}

/// rumqttc MQTT 5 client driven by a thread.
pub mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{Client, Event, MqttOptions};
    use rumqttc::Outgoing;

    pub fn qos(q: u8) -> QoS {
        match q {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    pub struct C {
        pub client: Client,
        pub inbox: Inbox,
    }

    /// Connect (clean start unless `session_expiry` is given) and wait for the CONNACK.
    pub fn connect(port: u16, id: &str, session_expiry: Option<u32>) -> (C, bool) {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_start(session_expiry.is_none());
        opts.set_session_expiry_interval(session_expiry);
        let (client, mut conn) = Client::new(opts, 64);
        let (etx, events) = mpsc::channel();
        let (ptx, publishes) = mpsc::channel();
        thread::spawn(move || {
            for ev in conn.iter() {
                let e = match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = ptx.send(Received {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            qos: p.qos as u8,
                            retain: p.retain,
                            expiry: p.properties.and_then(|p| p.message_expiry_interval),
                        });
                        continue;
                    }
                    Ok(Event::Incoming(Packet::ConnAck(a))) => Ev::ConnAck {
                        session_present: a.session_present,
                    },
                    Ok(Event::Incoming(Packet::SubAck(_))) => Ev::SubAck,
                    Ok(Event::Incoming(Packet::PubAck(_))) => Ev::PubAck,
                    Ok(Event::Incoming(Packet::PubComp(_))) => Ev::PubComp,
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => Ev::Sent,
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => Ev::Disconnected,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = etx.send(Ev::Error(e.to_string()));
                        return;
                    }
                };
                if etx.send(e).is_err() {
                    return;
                }
            }
        });
        let c = C {
            client,
            inbox: Inbox { events, publishes },
        };
        let sp = match c.inbox.wait("CONNACK", |e| matches!(e, Ev::ConnAck { .. })) {
            Ev::ConnAck { session_present } => session_present,
            _ => unreachable!(),
        };
        (c, sp)
    }

    impl C {
        pub fn subscribe(&self, filter: &str, q: u8) {
            self.client.subscribe(filter, qos(q)).unwrap();
            self.inbox.wait("SUBACK", |e| *e == Ev::SubAck);
        }

        /// Publish with properties and wait for the end of the flow.
        pub fn publish_props(
            &self,
            topic: &str,
            q: u8,
            retain: bool,
            payload: &[u8],
            props: PublishProperties,
        ) {
            self.client
                .publish_with_properties(topic, qos(q), retain, payload.to_vec(), props)
                .unwrap();
            let want = [Ev::Sent, Ev::PubAck, Ev::PubComp][q as usize].clone();
            self.inbox.wait(&format!("{want:?}"), |e| *e == want);
        }

        pub fn publish(&self, topic: &str, q: u8, retain: bool, payload: &[u8]) {
            self.publish_props(topic, q, retain, payload, PublishProperties::default());
        }

        pub fn disconnect(self) {
            let _ = self.client.disconnect();
            self.inbox.wait_disconnected();
        }
    }
}
