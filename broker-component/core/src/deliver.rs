//! Moving a session's queue onto the wire: packet ids, the inflight window
//! (the client's Receive Maximum), outgoing topic aliases, the client's
//! Maximum Packet Size and per-delivery message expiry.

use std::sync::LazyLock;
use std::time::Instant;

use musqratt_codec::{encode_publish, publish_len, Packet, Properties, PubAck, PublishRef, QoS};

use crate::broker::Broker;
use crate::connection::{transmit, Connection, Output};
use crate::session::{Inflight, InflightState, Outgoing, Session};

impl Connection {
    /// Sends queued messages while the inflight window has room.
    pub(crate) fn drain(
        &mut self,
        broker: &Broker,
        s: &mut Session,
        now: Instant,
        out: &mut Output,
    ) {
        let window = usize::from(
            self.client_receive_max
                .min(broker.config.max_inflight)
                .max(1),
        );
        let queued_before = s.queue.len();
        while let Some(front) = s.queue.front() {
            if front.msg.is_expired(now) {
                s.pop_queued();
                continue;
            }
            if front.qos != QoS::AtMostOnce && s.inflight.len() >= window {
                break;
            }
            let Some(o) = s.pop_queued() else { break };
            if o.qos == QoS::AtMostOnce {
                self.send_publish(broker, &o, None, false, now, out);
                continue;
            }
            let packet_id = s.allocate_packet_id();
            if self.send_publish(broker, &o, Some(packet_id), false, now, out) {
                let state = match o.qos {
                    QoS::AtLeastOnce => InflightState::AwaitPubAck,
                    _ => InflightState::AwaitPubRec,
                };
                s.inflight.push_back(Inflight {
                    packet_id,
                    out: o,
                    state,
                });
            }
        }
        let moved = queued_before.saturating_sub(s.queue.len());
        s.drained(moved, &broker.config, now, &mut out.resumes);
    }

    /// On session resumption (§4.4): resend unacknowledged PUBLISH with DUP
    /// set and PUBREL for those already past PUBREC, in the original order.
    pub(crate) fn redeliver(
        &mut self,
        broker: &Broker,
        s: &mut Session,
        now: Instant,
        out: &mut Output,
    ) {
        let mut i = 0;
        while i < s.inflight.len() {
            let inflight = s.inflight[i].clone();
            let keep = match inflight.state {
                InflightState::AwaitPubComp => {
                    self.send(
                        broker,
                        &Packet::PubRel(PubAck::new(inflight.packet_id)),
                        out,
                    );
                    true
                }
                _ => self.send_publish(
                    broker,
                    &inflight.out,
                    Some(inflight.packet_id),
                    true,
                    now,
                    out,
                ),
            };
            if keep {
                i += 1;
            } else {
                s.inflight.remove(i);
            }
        }
    }

    /// Encodes one PUBLISH for this client. Returns false if it was discarded
    /// because it exceeds the client's Maximum Packet Size (§3.1.2.11.4: the
    /// server discards it and behaves as if delivery completed).
    ///
    /// This is the per-subscriber hot path: the PUBLISH is encoded straight
    /// from the shared message (no owned copy of topic or payload), and v5
    /// properties are built only when there is something to say.
    pub(crate) fn send_publish(
        &mut self,
        broker: &Broker,
        o: &Outgoing,
        packet_id: Option<u16>,
        dup: bool,
        now: Instant,
        out: &mut Output,
    ) -> bool {
        let msg = &o.msg;
        let mut props: Option<Properties> = None;
        if self.version.is_v5() {
            let expiry = msg.remaining_expiry(now);
            if msg.properties.is_some() || expiry.is_some() || !o.sub_ids.is_empty() {
                let mut p = msg.properties.as_deref().cloned().unwrap_or_default();
                p.message_expiry_interval = expiry;
                p.subscription_identifiers.clone_from(&o.sub_ids);
                props = Some(p);
            }
        }
        if self.client_max_packet != u32::MAX {
            let full = o.publish(dup, packet_id, &msg.topic, props.as_ref().unwrap_or(&EMPTY));
            if publish_len(&full, self.version) > self.client_max_packet as usize {
                broker.metrics.messages_dropped.add(1);
                tracing::debug!(client = %self.client_id, topic = %msg.topic, "message larger than the client's Maximum Packet Size, discarded");
                return false;
            }
        }
        // An alias only shrinks the packet: the size check above holds.
        let (alias, send_topic) = match self.client_alias_max {
            0 => (None, true),
            _ => self.topic_alias_for(&msg.topic),
        };
        if let Some(alias) = alias {
            props.get_or_insert_with(Properties::default).topic_alias = Some(alias);
        }
        let topic = if send_topic { msg.topic.as_str() } else { "" };
        let publish = o.publish(dup, packet_id, topic, props.as_ref().unwrap_or(&EMPTY));
        transmit(broker, out, |b| encode_publish(&publish, self.version, b));
        broker.metrics.messages_sent.add(1);
        true
    }

    /// Outgoing topic aliases (§3.3.2.3.4): the first message on a topic
    /// establishes an alias while the client's Topic Alias Maximum allows;
    /// later messages send the alias with an empty topic. Returns the alias
    /// and whether the topic must still be sent.
    fn topic_alias_for(&mut self, topic: &str) -> (Option<u16>, bool) {
        let max = self.client_alias_max;
        let aliases = self.aliases.get_or_insert_with(Default::default);
        if let Some(&alias) = aliases.outbound.get(topic) {
            (Some(alias), false)
        } else if aliases.outbound.len() < usize::from(max) {
            let alias = aliases.outbound.len() as u16 + 1;
            aliases.outbound.insert(topic.to_owned(), alias);
            (Some(alias), true)
        } else {
            (None, true)
        }
    }
}

impl Outgoing {
    /// The PUBLISH of this delivery, borrowed from the stored message.
    fn publish<'a>(
        &'a self,
        dup: bool,
        packet_id: Option<u16>,
        topic: &'a str,
        properties: &'a Properties,
    ) -> PublishRef<'a> {
        PublishRef {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic,
            packet_id,
            properties,
            payload: &self.msg.payload,
        }
    }
}

/// The property set of a PUBLISH that carries none.
static EMPTY: LazyLock<Properties> = LazyLock::new(Properties::default);
