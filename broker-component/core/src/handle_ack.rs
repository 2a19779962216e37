//! PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4–3.7): the acknowledgement flows.
//! Outgoing QoS 1: PUBLISH → PUBACK. Outgoing QoS 2: PUBLISH → PUBREC →
//! PUBREL → PUBCOMP. Incoming QoS 2 ends with our PUBCOMP on PUBREL.

use std::time::Instant;

use musqratt_codec::{Packet, PubAck, ReasonCode};

use crate::broker::Broker;
use crate::connection::{Connection, Output};
use crate::session::InflightState;

impl Connection {
    pub(crate) fn handle_puback(
        &mut self,
        broker: &Broker,
        a: PubAck,
        now: Instant,
        out: &mut Output,
    ) {
        self.complete(broker, a.packet_id, InflightState::AwaitPubAck, now, out);
    }

    pub(crate) fn handle_pubcomp(
        &mut self,
        broker: &Broker,
        a: PubAck,
        now: Instant,
        out: &mut Output,
    ) {
        self.complete(broker, a.packet_id, InflightState::AwaitPubComp, now, out);
    }

    /// Removes a finished inflight message and fills the window again.
    ///
    /// An acknowledgement of the wrong kind for a packet id in flight (PUBCOMP
    /// to a QoS 1 delivery, PUBACK to a QoS 2 one or to our PUBREL, PUBCOMP
    /// before PUBREC) is a protocol violation (§4.3.2, §4.3.3): ignoring it
    /// would leave the message stuck in the window. An id not in flight at all
    /// stays harmless: after a reconnect a late PUBACK may legitimately name a
    /// message that completed or was discarded meanwhile.
    fn complete(
        &mut self,
        broker: &Broker,
        id: u16,
        expected: InflightState,
        now: Instant,
        out: &mut Output,
    ) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mut s = session.lock();
        match s.inflight.iter().position(|i| i.packet_id == id) {
            Some(pos) if s.inflight.get(pos).is_some_and(|i| i.state == expected) => {
                if let Some(done) = s.inflight.remove(pos) {
                    broker.entry_done(&s, &done.out, out);
                }
                self.drain(broker, &mut s, now, out);
            }
            Some(_) => {
                drop(s);
                let detail = match expected {
                    InflightState::AwaitPubAck => "PUBACK for a packet id in a QoS 2 flow",
                    _ => "PUBCOMP for a packet id not awaiting PUBCOMP",
                };
                self.ack_violation(broker, id, detail, now, out);
            }
            None => {
                tracing::debug!(client = %self.client_id, id, "acknowledgement for an unknown packet id")
            }
        }
    }

    /// PUBREC (§3.5): the client received our QoS 2 PUBLISH; answer PUBREL.
    /// Only a QoS 2 delivery can be PUBREC'd: a PUBREC for a QoS 1 delivery
    /// must not turn it into a QoS 2 flow (it would never be redelivered).
    pub(crate) fn handle_pubrec(
        &mut self,
        broker: &Broker,
        a: PubAck,
        now: Instant,
        out: &mut Output,
    ) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mut s = session.lock();
        let mut rel = PubAck::new(a.packet_id);
        let pos = s.inflight.iter().position(|i| i.packet_id == a.packet_id);
        let state = pos.and_then(|p| s.inflight.get(p)).map(|i| i.state);
        match (pos, state) {
            (Some(pos), Some(InflightState::AwaitPubRec)) if a.reason_code.is_error() => {
                // §4.3.3: a PUBREC with an error ends the flow.
                if let Some(done) = s.inflight.remove(pos) {
                    broker.entry_done(&s, &done.out, out);
                }
                self.drain(broker, &mut s, now, out);
                return;
            }
            (Some(pos), Some(InflightState::AwaitPubRec)) => {
                if let Some(i) = s.inflight.get_mut(pos) {
                    i.state = InflightState::AwaitPubComp;
                }
                // The PUBREL leaves once the new state is stored: after a restart we send
                // PUBREL again, never the PUBLISH (which the client would deliver twice).
                if let Some(i) = s.inflight.get(pos) {
                    broker.persist_sent(&s, i, out);
                }
            }
            // A repeated PUBREC (its PUBREL crossed it): PUBREL again, as §4.3.3
            // lets the receiver resend PUBREC for a QoS 2 message.
            (Some(_), Some(InflightState::AwaitPubComp)) => {}
            (Some(_), _) => {
                drop(s);
                return self.ack_violation(
                    broker,
                    a.packet_id,
                    "PUBREC for a QoS 1 delivery",
                    now,
                    out,
                );
            }
            (None, _) => {
                if self.version.is_v5() {
                    rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
            }
        }
        drop(s);
        self.send(broker, &Packet::PubRel(rel), out);
    }

    pub(crate) fn handle_pubrel(&mut self, broker: &Broker, a: PubAck, out: &mut Output) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let found = {
            let mut s = session.lock();
            let found = s.incoming_qos2.remove(&a.packet_id);
            if found {
                broker.persist_incoming_qos2(&s, a.packet_id, false, out);
            }
            found
        };
        let mut comp = PubAck::new(a.packet_id);
        if !found && self.version.is_v5() {
            comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.send(broker, &Packet::PubComp(comp), out);
    }

    /// An acknowledgement that does not fit the flow of its packet id: close
    /// (v5: DISCONNECT 0x82 Protocol Error). The message stays in the session's
    /// inflight window, so it is redelivered if the session resumes.
    fn ack_violation(
        &mut self,
        broker: &Broker,
        id: u16,
        detail: &str,
        now: Instant,
        out: &mut Output,
    ) {
        let detail = format!("{detail} (packet id {id})");
        self.protocol_violation(broker, ReasonCode::PROTOCOL_ERROR, &detail, now, out);
    }
}
