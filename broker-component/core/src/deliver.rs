//! Moving a session's queue onto the wire: packet ids, the inflight window
//! (the client's Receive Maximum), outgoing topic aliases, the client's
//! Maximum Packet Size and per-delivery message expiry.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use musqratt_codec::{encode_publish, Packet, Properties, PubAck, PublishRef, QoS};

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
                if let Some(o) = s.pop_queued() {
                    broker.persist_unqueued(s, &o);
                }
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
                let inflight = Inflight {
                    packet_id,
                    out: o,
                    state,
                };
                // QoS 2: the PUBLISH leaves once its packet id is stored (persist.rs).
                broker.persist_sent(s, &inflight, out);
                s.inflight.push_back(inflight);
            } else {
                broker.persist_unqueued(s, &o);
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
            } else if let Some(gone) = s.inflight.remove(i) {
                broker.persist_unqueued(s, &gone.out);
            }
        }
    }

    /// Encodes one PUBLISH for this client. Returns false if it was discarded:
    /// over the client's Maximum Packet Size (§3.1.2.11.4: the server discards
    /// it and behaves as if delivery completed), or not encodable at all (a
    /// maximum-size PUBLISH plus a Subscription Identifier exceeds what the
    /// Remaining Length can express, §1.5.5) — treated the same way. Either
    /// is counted in `messages_dropped` and logged once per connection.
    ///
    /// This is the per-subscriber hot path: the PUBLISH is encoded straight
    /// from the shared message (no owned copy of topic or payload), v5
    /// properties are built only when there is something to say, and the one
    /// size computation of the encoder also checks the client's limit.
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
        let version = self.version;
        let max = self.client_max_packet;
        let mut props: Option<Properties> = None;
        if version.is_v5() {
            let expiry = msg.remaining_expiry(now);
            if msg.properties.is_some() || expiry.is_some() || !o.sub_ids.is_empty() {
                let mut p = msg.properties.as_deref().cloned().unwrap_or_default();
                p.message_expiry_interval = expiry;
                p.subscription_identifiers.clone_from(&o.sub_ids);
                props = Some(p);
            }
        }
        if self.client_alias_max > 0 {
            if let Some(alias) = self.outbound_alias(broker, &msg.topic) {
                let (number, known) = match alias {
                    AliasUse::Known(a) => (a, true),
                    AliasUse::New(a) => (a, false),
                };
                let topic = if known { "" } else { msg.topic.as_str() };
                let p = props.get_or_insert_with(Properties::default);
                p.topic_alias = Some(number);
                let publish = o.publish(dup, packet_id, topic, p);
                if transmit(broker, out, |b| encode_publish(&publish, version, max, b)).is_ok() {
                    if !known {
                        if let Some(a) = self.aliases.as_mut() {
                            a.outbound.assign(number, &msg.topic);
                        }
                    }
                    broker.metrics.messages_sent.add(1);
                    return true;
                }
                // Establishing an alias adds 3 bytes (a one-byte topic even
                // grows with a known one): retry without, which may still fit.
                p.topic_alias = None;
            }
        }
        let publish = o.publish(dup, packet_id, &msg.topic, props.as_ref().unwrap_or(&EMPTY));
        match transmit(broker, out, |b| encode_publish(&publish, version, max, b)) {
            Ok(_) => {
                broker.metrics.messages_sent.add(1);
                true
            }
            Err(e) => {
                broker.metrics.messages_dropped.add(1);
                self.log_dropped("PUBLISH", &msg.topic, &e);
                false
            }
        }
    }

    /// Outgoing topic aliases (§3.3.2.3.4): the alias of `topic` if the client
    /// knows one, else a free alias to establish with this message, else
    /// `None` (send the topic in full). The client's Topic Alias Maximum is an
    /// upper bound, not an obligation: we keep at most `max_outbound_aliases`
    /// and `max_outbound_alias_bytes` of topics per connection, reusing the
    /// least recently used alias when full.
    fn outbound_alias(&mut self, broker: &Broker, topic: &str) -> Option<AliasUse> {
        let max = self
            .client_alias_max
            .min(broker.config.max_outbound_aliases);
        let max_bytes = broker.config.max_outbound_alias_bytes;
        if max == 0 || topic.len() > max_bytes {
            return None;
        }
        let aliases = self.aliases.get_or_insert_with(Default::default);
        aliases.outbound.lookup(topic, max, max_bytes)
    }
}

/// How a PUBLISH uses an outbound topic alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasUse {
    /// The client knows this alias for the topic: send an empty topic.
    Known(u16),
    /// A free alias: send the topic with it, then [`OutboundAliases::assign`].
    New(u16),
}

/// The topic aliases we assigned to one client (server → client), bounded in
/// number and in bytes of topic kept: a client's Topic Alias Maximum of
/// 65,535 must not make the broker keep a copy of every topic it delivers.
/// Least recently used aliases are reassigned (a PUBLISH with a topic and an
/// alias replaces the client's mapping, §3.3.2.3.4). Finding the least
/// recently used one scans the slots; they are few (the configured maximum).
#[derive(Debug, Default)]
pub(crate) struct OutboundAliases {
    /// Topic → alias.
    by_topic: HashMap<Arc<str>, u16>,
    /// Index alias − 1: the topic the client has for it and its last use;
    /// `None` for a free alias (evicted, or its PUBLISH could not be sent).
    slots: Vec<Option<(Arc<str>, u64)>>,
    /// Bytes of topic held in `by_topic`.
    bytes: usize,
    /// Logical clock of uses, for least-recently-used.
    uses: u64,
}

impl OutboundAliases {
    /// See [`Connection::outbound_alias`]; `topic.len() <= max_bytes`.
    fn lookup(&mut self, topic: &str, max: u16, max_bytes: usize) -> Option<AliasUse> {
        self.uses += 1;
        if let Some(&alias) = self.by_topic.get(topic) {
            if let Some(Some(slot)) = self.slots.get_mut(usize::from(alias).saturating_sub(1)) {
                slot.1 = self.uses;
            }
            return Some(AliasUse::Known(alias));
        }
        let max = usize::from(max);
        while self.by_topic.len() >= max || self.bytes + topic.len() > max_bytes {
            if !self.evict_least_recently_used() {
                return None;
            }
        }
        let free = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.slots.len() < max => self.slots.len(),
            None => return None,
        };
        // Aliases are 1..=max and max <= u16::MAX.
        u16::try_from(free + 1).ok().map(AliasUse::New)
    }

    /// Records that the client now has `topic` for `alias` (its PUBLISH went out).
    pub(crate) fn assign(&mut self, alias: u16, topic: &str) {
        let Some(i) = usize::from(alias).checked_sub(1) else {
            return;
        };
        if i > self.slots.len() {
            return;
        }
        if i == self.slots.len() {
            self.slots.push(None);
        }
        let topic: Arc<str> = Arc::from(topic);
        if let Some(Some((old, _))) = self.slots.get(i) {
            self.bytes -= old.len();
            self.by_topic.remove(old);
        }
        self.bytes += topic.len();
        self.by_topic.insert(Arc::clone(&topic), alias);
        self.slots[i] = Some((topic, self.uses));
    }

    /// Frees the least recently used alias; false if none is in use.
    fn evict_least_recently_used(&mut self) -> bool {
        let lru = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(_, used)| (*used, i)))
            .min();
        let Some((_, i)) = lru else { return false };
        if let Some((topic, _)) = self.slots.get_mut(i).and_then(Option::take) {
            self.bytes -= topic.len();
            self.by_topic.remove(&topic);
        }
        true
    }

    /// Aliases in use (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_topic.len()
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

#[cfg(test)]
mod tests {
    use super::{AliasUse, OutboundAliases};

    /// Looks up and, for a new alias, assigns it as a successful send does.
    fn deliver(a: &mut OutboundAliases, topic: &str, max: u16, bytes: usize) -> Option<AliasUse> {
        let r = a.lookup(topic, max, bytes);
        if let Some(AliasUse::New(n)) = r {
            a.assign(n, topic);
        }
        r
    }

    #[test]
    fn count_cap_reuses_the_least_recently_used_alias() {
        let mut a = OutboundAliases::default();
        assert_eq!(deliver(&mut a, "a", 2, 100), Some(AliasUse::New(1)));
        assert_eq!(deliver(&mut a, "b", 2, 100), Some(AliasUse::New(2)));
        assert_eq!(deliver(&mut a, "a", 2, 100), Some(AliasUse::Known(1)));
        // Full: "b" is the least recently used, its alias goes to "c".
        assert_eq!(deliver(&mut a, "c", 2, 100), Some(AliasUse::New(2)));
        assert_eq!(a.len(), 2);
        assert_eq!(deliver(&mut a, "a", 2, 100), Some(AliasUse::Known(1)));
        assert_eq!(deliver(&mut a, "c", 2, 100), Some(AliasUse::Known(2)));
        assert_eq!(deliver(&mut a, "b", 2, 100), Some(AliasUse::New(1)));
    }

    #[test]
    fn byte_cap_bounds_the_topics_kept() {
        let mut a = OutboundAliases::default();
        assert_eq!(deliver(&mut a, "aaaa", 10, 10), Some(AliasUse::New(1)));
        assert_eq!(deliver(&mut a, "bbbb", 10, 10), Some(AliasUse::New(2)));
        // 4 + 4 + 4 > 10: the least recently used is evicted first.
        assert_eq!(deliver(&mut a, "cccc", 10, 10), Some(AliasUse::New(1)));
        assert_eq!(a.bytes, 8);
        // 10 bytes needs both others gone; the lowest free alias is used.
        assert_eq!(
            deliver(&mut a, "dddddddddd", 10, 10),
            Some(AliasUse::New(1))
        );
        assert_eq!((a.len(), a.bytes), (1, 10));
    }

    #[test]
    fn an_unsent_new_alias_is_not_assigned() {
        let mut a = OutboundAliases::default();
        assert_eq!(a.lookup("a", 4, 100), Some(AliasUse::New(1)));
        // The PUBLISH establishing it was not sent: the next topic may take it,
        // and "a" is not treated as known.
        assert_eq!(deliver(&mut a, "b", 4, 100), Some(AliasUse::New(1)));
        assert_eq!(deliver(&mut a, "a", 4, 100), Some(AliasUse::New(2)));
    }
}
