//! DISCONNECT from the client (§3.14): a normal disconnection deletes the
//! will; reason 0x04 keeps it; v5 may change the Session Expiry Interval.

use std::time::Instant;

use musqratt_codec::{Disconnect, ReasonCode};

use crate::broker::Broker;
use crate::connection::{Connection, Output};

impl Connection {
    pub(crate) fn handle_disconnect(
        &mut self,
        broker: &Broker,
        d: Disconnect,
        now: Instant,
        out: &mut Output,
    ) {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.session_expiry == 0 && expiry != 0 {
                // §3.14.2.2.2: cannot turn a zero expiry into a non-zero one.
                return self.protocol_violation(
                    broker,
                    ReasonCode::PROTOCOL_ERROR,
                    "DISCONNECT sets a Session Expiry Interval after CONNECT set 0",
                    now,
                    out,
                );
            }
            self.session_expiry = expiry;
        }
        let keep_will = d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE;
        if !keep_will {
            self.will = None;
        }
        tracing::debug!(client = %self.client_id, reason = %d.reason_code, "client disconnected");
        self.close(broker, now, out, keep_will);
    }
}
