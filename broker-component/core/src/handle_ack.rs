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
    fn complete(
        &mut self,
        broker: &Broker,
        id: u16,
        state: InflightState,
        now: Instant,
        out: &mut Output,
    ) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mut s = session.lock();
        match s
            .inflight
            .iter()
            .position(|i| i.packet_id == id && i.state == state)
        {
            Some(pos) => {
                s.inflight.remove(pos);
                self.drain(broker, &mut s, now, out);
            }
            None => {
                tracing::debug!(client = %self.client_id, id, "acknowledgement for an unknown packet id")
            }
        }
    }

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
        match s.inflight.iter().position(|i| i.packet_id == a.packet_id) {
            Some(pos) if a.reason_code.is_error() => {
                // §4.3.3: a PUBREC with an error ends the flow.
                s.inflight.remove(pos);
                self.drain(broker, &mut s, now, out);
                return;
            }
            Some(pos) => s.inflight[pos].state = InflightState::AwaitPubComp,
            None => {
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
        let found = session.lock().incoming_qos2.remove(&a.packet_id);
        let mut comp = PubAck::new(a.packet_id);
        if !found && self.version.is_v5() {
            comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        self.send(broker, &Packet::PubComp(comp), out);
    }
}
