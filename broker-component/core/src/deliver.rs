//! Moving a session's queue onto the wire: packet ids, the inflight window
//! (the client's Receive Maximum), outgoing topic aliases, the client's
//! Maximum Packet Size and per-delivery message expiry.

use std::time::Instant;

use musqratt_codec::{encoded_len, Packet, Properties, PubAck, Publish, QoS};

use crate::broker::Broker;
use crate::connection::{Connection, Output};
use crate::metrics::Metrics;
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
                s.queue.pop_front();
                continue;
            }
            if front.qos != QoS::AtMostOnce && s.inflight.len() >= window {
                break;
            }
            let Some(o) = s.queue.pop_front() else { break };
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
        if s.queue.len() < queued_before || s.queue.is_empty() {
            s.progress_at = Some(now);
        }
        if !s.waiters.is_empty() && s.queue.len() <= broker.config.queue_low_watermark() {
            s.release_waiters(&mut out.resumes);
        }
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
        let properties = if self.version.is_v5() {
            let mut p = msg.properties.as_deref().cloned().unwrap_or_default();
            p.message_expiry_interval = msg.remaining_expiry(now);
            p.subscription_identifiers.clone_from(&o.sub_ids);
            p
        } else {
            Properties::default()
        };
        let mut packet = Packet::Publish(Publish {
            dup,
            qos: o.qos,
            retain: o.retain,
            topic: msg.topic.clone(),
            packet_id,
            properties,
            payload: msg.payload.clone(),
        });
        if self.client_max_packet != u32::MAX
            && encoded_len(&packet, self.version) > self.client_max_packet as usize
        {
            Metrics::add(&broker.metrics.messages_dropped, 1);
            tracing::debug!(client = %self.client_id, topic = %msg.topic, "message larger than the client's Maximum Packet Size, discarded");
            return false;
        }
        if self.client_alias_max > 0 {
            if let Packet::Publish(p) = &mut packet {
                self.apply_topic_alias(p);
            }
        }
        self.send(broker, &packet, out);
        Metrics::add(&broker.metrics.messages_sent, 1);
        true
    }

    /// Outgoing topic aliases (§3.3.2.3.4): the first message on a topic
    /// establishes an alias while the client's Topic Alias Maximum allows;
    /// later messages send the alias with an empty topic.
    fn apply_topic_alias(&mut self, p: &mut Publish) {
        let max = self.client_alias_max;
        let aliases = self.aliases.get_or_insert_with(Default::default);
        if let Some(&alias) = aliases.outbound.get(&p.topic) {
            p.topic.clear();
            p.properties.topic_alias = Some(alias);
        } else if aliases.outbound.len() < usize::from(max) {
            let alias = aliases.outbound.len() as u16 + 1;
            aliases.outbound.insert(p.topic.clone(), alias);
            p.properties.topic_alias = Some(alias);
        }
    }
}
