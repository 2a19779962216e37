//! CONNECT (§3.1): authenticate (nothing to check yet), bind or create the
//! session, answer CONNACK, then resume delivery of a present session.

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::{ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode};

use crate::broker::Broker;
use crate::connection::{Connection, Output, State};
use crate::session::{Session, SessionCell};

impl Connection {
    pub(crate) fn handle_connect(
        &mut self,
        broker: &Broker,
        c: Connect,
        now: Instant,
        out: &mut Output,
    ) {
        self.version = c.protocol;
        let v5 = c.protocol == ProtocolVersion::V5;

        if c.properties.authentication_method.is_some() {
            // We offer no enhanced authentication methods (§4.12).
            tracing::warn!(client = %c.client_id, "closing connection: unsupported authentication method");
            return self.refuse(broker, ReasonCode::BAD_AUTHENTICATION_METHOD, now, out);
        }

        if c.will
            .as_ref()
            .is_some_and(|w| broker.config.too_many_levels(&w.topic))
        {
            tracing::warn!(client = %c.client_id, "closing connection: will topic with more than limits.max_topic_levels levels");
            return self.refuse(broker, ReasonCode::TOPIC_NAME_INVALID, now, out);
        }

        let mut assigned = None;
        let client_id: Arc<str> = if c.client_id.is_empty() {
            if !v5 && !c.clean_start {
                // §3.1.3.1 (3.1.1): an empty id requires clean session.
                tracing::warn!("closing connection: empty client id with clean session off");
                return self.refuse(broker, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, now, out);
            }
            let id = broker.generate_client_id();
            assigned = Some(id.clone());
            Arc::from(id)
        } else {
            Arc::from(c.client_id.as_str())
        };

        // Keep-alive, bounded by the server's maximum (Server Keep Alive, §3.2.2.3.14).
        let mut server_keep_alive = None;
        self.keep_alive = c.keep_alive;
        let max_ka = broker.config.max_keepalive_secs;
        if max_ka > 0 && (c.keep_alive == 0 || c.keep_alive > max_ka) {
            self.keep_alive = max_ka;
            server_keep_alive = Some(max_ka);
        }

        self.session_expiry = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            broker.config.session_default_expiry_secs
        };
        if v5 {
            self.client_receive_max = c.properties.receive_maximum.unwrap_or(u16::MAX);
            self.client_max_packet = c.properties.maximum_packet_size.unwrap_or(u32::MAX);
            self.client_alias_max = c.properties.topic_alias_maximum.unwrap_or(0);
        }
        self.will = c.will.map(Box::new);
        self.client_id = Arc::clone(&client_id);

        // Bind the session: take over a connected one, resume or discard a stored one.
        let (cell, session_present) = {
            let mut registry = broker.sessions.lock();
            let existing = registry.get(&client_id).cloned();
            match existing {
                Some(cell) => {
                    let mut s = cell.lock();
                    if let Some(old) = s.conn.take() {
                        out.kicks.push(old);
                    }
                    s.release_waiters(&mut out.resumes);
                    s.wake_pending = false;
                    s.pending_will = None; // a new connection cancels a delayed will
                    s.expires_at = None;
                    if c.clean_start {
                        // Discard the old session: a fresh one replaces it.
                        let old_id = s.id;
                        let filters = s.end();
                        drop(s);
                        let fresh = self.new_session(broker, &client_id);
                        registry.insert(Arc::clone(&client_id), Arc::clone(&fresh));
                        drop(registry);
                        broker.unsubscribe_all(old_id, &filters);
                        (fresh, false)
                    } else {
                        s.conn = Some(self.conn_ref);
                        s.expiry_interval = self.session_expiry;
                        drop(s);
                        (cell, true)
                    }
                }
                None => {
                    let fresh = self.new_session(broker, &client_id);
                    registry.insert(Arc::clone(&client_id), Arc::clone(&fresh));
                    (fresh, false)
                }
            }
        };
        self.session_id = cell.lock().id;
        self.session = Some(Arc::clone(&cell));
        self.state = State::Connected;
        broker.metrics.clients_connected.add(1);

        let mut props = Properties::default();
        if v5 {
            props.assigned_client_identifier = assigned;
            props.server_keep_alive = server_keep_alive;
            props.receive_maximum = Some(broker.config.max_inflight);
            props.topic_alias_maximum = Some(broker.config.topic_alias_maximum);
            if broker.config.max_packet_size < musqratt_codec::MAX_REMAINING_LENGTH as u32 {
                props.maximum_packet_size = Some(broker.config.max_packet_size);
            }
        }
        let connack = ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties: props,
        };
        self.send(broker, &Packet::ConnAck(connack), out);
        tracing::debug!(client = %client_id, version = ?self.version, session_present, "client connected");

        let mut s = cell.lock();
        if session_present {
            self.redeliver(broker, &mut s, now, out);
        }
        self.drain(broker, &mut s, now, out);
    }

    /// A new session, bound to this connection.
    fn new_session(&self, broker: &Broker, client_id: &Arc<str>) -> Arc<SessionCell> {
        let mut session = Session::new(
            broker.new_session_id(),
            Arc::clone(client_id),
            self.session_expiry,
        );
        session.conn = Some(self.conn_ref);
        Arc::new(parking_lot::Mutex::new(session))
    }

    /// CONNACK with an error code, then close (§3.2.2.2).
    pub(crate) fn refuse(
        &mut self,
        broker: &Broker,
        reason: ReasonCode,
        now: Instant,
        out: &mut Output,
    ) {
        let connack = ConnAck {
            session_present: false,
            reason_code: reason,
            properties: Properties::default(),
        };
        self.send(broker, &Packet::ConnAck(connack), out);
        self.close(broker, now, out, false);
    }
}
