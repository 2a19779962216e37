//! Incoming PUBLISH (§3.3): topic aliases, Receive Maximum, the QoS 1/2
//! acknowledgement flows, then routing (or holding) the message.

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::{Packet, PubAck, Publish, QoS, ReasonCode};

use crate::acl::{Subject, Want};
use crate::broker::Broker;
use crate::connection::{Connection, Output};
use crate::message::Message;
use crate::route::Routed;

impl Connection {
    pub(crate) fn handle_publish(
        &mut self,
        broker: &Broker,
        mut p: Publish,
        now: Instant,
        out: &mut Output,
    ) {
        let topic = match self.resolve_topic_alias(broker, &mut p) {
            Ok(t) => t,
            Err((reason, detail)) => {
                return self.protocol_violation(broker, reason, detail, now, out)
            }
        };
        if broker.config.too_many_levels(&topic) {
            return self.protocol_violation(
                broker,
                ReasonCode::TOPIC_NAME_INVALID,
                "PUBLISH topic with more than limits.max_topic_levels levels",
                now,
                out,
            );
        }
        let packet_id = p.packet_id.unwrap_or(0);
        let qos = p.qos;
        if !p.properties.subscription_identifiers.is_empty() {
            // §3.3.4: only the server sets Subscription Identifiers.
            return self.protocol_violation(
                broker,
                ReasonCode::PROTOCOL_ERROR,
                "PUBLISH from a client with a Subscription Identifier",
                now,
                out,
            );
        }
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            // §3.3.2.3.2: the payload claims to be UTF-8 and is not.
            tracing::info!(client = %self.client_id, %topic, "PUBLISH payload is not the UTF-8 its Payload Format Indicator claims");
            let mut ack = PubAck::new(packet_id);
            ack.reason_code = ReasonCode::PAYLOAD_FORMAT_INVALID;
            return match qos {
                QoS::AtMostOnce => self.protocol_violation(
                    broker,
                    ReasonCode::PAYLOAD_FORMAT_INVALID,
                    "invalid UTF-8 payload with Payload Format Indicator 1",
                    now,
                    out,
                ),
                QoS::AtLeastOnce => self.send(broker, &Packet::PubAck(ack), out),
                QoS::ExactlyOnce => self.send(broker, &Packet::PubRec(ack), out),
            };
        }

        // Clients may not inject broker statistics.
        let reserved = topic.starts_with("$SYS/") || topic == "$SYS";
        let denied = !reserved && !self.may(broker, &topic, Want::Write);
        if denied {
            self.note_acl_denied("PUBLISH", &topic, now);
            if self.version.is_v5() {
                // §3.4.2.1 / §3.5.2.1: 0x87 ends the exchange (a PUBREC with a failure code
                // frees the packet id: nothing is recorded for it). Nothing is routed,
                // retained, held or stored.
                let mut ack = PubAck::new(packet_id);
                ack.reason_code = ReasonCode::NOT_AUTHORIZED;
                match qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => self.send(broker, &Packet::PubAck(ack), out),
                    QoS::ExactlyOnce => self.send(broker, &Packet::PubRec(ack), out),
                }
                return;
            }
            // 3.1.1 cannot say it: the message is dropped, and acknowledged as usual below
            // (the QoS 2 exchange runs to its PUBCOMP) so that the client does not retry it.
        }

        if qos == QoS::ExactlyOnce {
            let Some(session) = self.session.clone() else {
                return;
            };
            let mut s = session.lock();
            if s.incoming_qos2.contains(&packet_id) {
                // A retransmission: already routed, only acknowledge again (§4.3.3).
                drop(s);
                return self.send(broker, &Packet::PubRec(PubAck::new(packet_id)), out);
            }
            // Receive Maximum exists only in v5 (§3.3.4). A 3.1.1 client may
            // pipeline any number of QoS 2 PUBLISH before the PUBRELs that come
            // after them in its byte stream, so refusing one loses messages
            // (mqtt.js, rumqttc, Paho do this by default); the 16-bit packet
            // id space bounds the set at 65,535 ids instead.
            if self.version.is_v5()
                && s.incoming_qos2.len() >= usize::from(broker.config.max_inflight)
            {
                drop(s);
                return self.protocol_violation(
                    broker,
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "more unacknowledged QoS 2 PUBLISH than our Receive Maximum",
                    now,
                    out,
                );
            }
            s.incoming_qos2.insert(packet_id);
            broker.persist_incoming_qos2(&s, packet_id, true, out);
        }

        let routed = if reserved {
            tracing::debug!(client = %self.client_id, %topic, "PUBLISH to $SYS ignored");
            Routed::NoSubscribers
        } else if denied {
            Routed::Delivered
        } else {
            // Released by delivery (docs/storage.md): a QoS 1 message that is only queued
            // for its subscribers (not retained, not held) needs the store only until each
            // durable subscriber acknowledged it; its PUBACK may leave at whichever comes
            // first, that or the commit. (QoS 2 waits for the commit: its packet id state
            // must be durable whatever happens to the message.)
            let soft = qos == QoS::AtLeastOnce
                && !p.retain
                && broker
                    .journal
                    .as_ref()
                    .is_some_and(|j| j.backlog() < crate::persist::MAX_RELEASE_BACKLOG);
            let mut msg = Message::from_publish(
                p,
                topic,
                self.session_id,
                broker.config.message_default_expiry_secs,
                now,
            );
            if soft {
                msg.release_by_delivery(self.conn_ref.worker);
            }
            let msg = Arc::new(msg);
            let hard_before = out.durable_after;
            let routed = broker.publish(Arc::clone(&msg), Some(self.conn_ref), now, out);
            if soft && routed == Routed::Delivered && out.durable_after > hard_before {
                // What routing recorded (the message, its queue entries) only keeps it for
                // its subscribers: the output waits for that or for their acknowledgements.
                out.soft_after = out.soft_after.max(out.durable_after);
                out.durable_after = hard_before;
                // Drop the routing guard: from here on, the last acknowledgement ends the
                // count (and it may have come already).
                if msg.uncount().is_none() {
                    out.soft_messages.push(msg);
                }
            }
            routed
        };

        let mut ack = PubAck::new(packet_id);
        if self.version.is_v5() {
            match routed {
                Routed::NoSubscribers => ack.reason_code = ReasonCode::NO_MATCHING_SUBSCRIBERS,
                Routed::Refused => {
                    // §3.4.2.1 / §3.5.2.1: a limit refused the message; a PUBREC with a
                    // failure code ends the QoS 2 exchange, so its packet id is free again.
                    // (3.1.1 has no way to say it: its publisher is acknowledged, and the
                    // drop counted and logged as for any subscriber's.)
                    ack.reason_code = ReasonCode::QUOTA_EXCEEDED;
                    if qos == QoS::ExactlyOnce {
                        if let Some(session) = &self.session {
                            let mut s = session.lock();
                            s.incoming_qos2.remove(&packet_id);
                            broker.persist_incoming_qos2(&s, packet_id, false, out);
                        }
                    }
                }
                Routed::Delivered | Routed::Held => {}
            }
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(broker, &Packet::PubAck(ack), out),
            QoS::ExactlyOnce => self.send(broker, &Packet::PubRec(ack), out),
        }
    }

    /// Whether the ACL (if any) lets this client do `want` on `topic`.
    pub(crate) fn may(&self, broker: &Broker, topic: &str, want: Want) -> bool {
        broker
            .acl
            .as_ref()
            .is_none_or(|acl| acl.table().check(self.subject(), topic, want))
    }

    pub(crate) fn subject(&self) -> Subject<'_> {
        Subject {
            client_id: &self.client_id,
            username: self.username.as_deref(),
        }
    }

    /// A log line per interval for what the ACL refused this client (it may retry at will).
    pub(crate) fn note_acl_denied(&mut self, what: &str, topic: &str, now: Instant) {
        if let Some(n) = self.acl_log.note(1, now) {
            let topic = crate::handle_subscribe::Abbrev(topic);
            tracing::info!(client = %self.client_id, username = ?self.username.as_deref(), %topic, refused = n, "{what} not authorized by the ACL (refusals since the last line: {n})");
        }
    }

    /// Resolves the topic of a v5 PUBLISH that uses a Topic Alias (§3.3.2.3.4).
    fn resolve_topic_alias(
        &mut self,
        broker: &Broker,
        p: &mut Publish,
    ) -> Result<String, (ReasonCode, &'static str)> {
        let Some(alias) = p.properties.topic_alias else {
            if p.topic.is_empty() {
                return Err((
                    ReasonCode::PROTOCOL_ERROR,
                    "PUBLISH with an empty topic and no alias",
                ));
            }
            return Ok(std::mem::take(&mut p.topic));
        };
        if alias == 0 || alias > broker.config.topic_alias_maximum {
            return Err((ReasonCode::TOPIC_ALIAS_INVALID, "Topic Alias out of range"));
        }
        let aliases = self.aliases.get_or_insert_with(Default::default);
        if p.topic.is_empty() {
            match aliases.inbound.get(&alias) {
                Some(t) => Ok(t.clone()),
                None => Err((ReasonCode::PROTOCOL_ERROR, "unknown Topic Alias")),
            }
        } else {
            aliases.inbound.insert(alias, p.topic.clone());
            Ok(std::mem::take(&mut p.topic))
        }
    }
}
