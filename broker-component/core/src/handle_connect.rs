//! CONNECT (§3.1): authenticate (user name and password, auth.rs), bind or create
//! the session, answer CONNACK, then resume delivery of a present session.

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::{
    encoded_len, ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode,
};

use crate::auth::Verdict;
use crate::broker::Broker;
use crate::connection::{Connection, Identity, Output, State};
use crate::session::{Session, SessionCell};

/// MQTT 3.1 §3.1: "between 1 and 23 characters".
const MQTT31_MAX_CLIENT_ID: usize = 23;

impl Connection {
    pub(crate) fn handle_connect(
        &mut self,
        broker: &Broker,
        mut c: Connect,
        now: Instant,
        out: &mut Output,
    ) {
        self.version = c.protocol;
        let v5 = c.protocol == ProtocolVersion::V5;
        let v31 = c.protocol == ProtocolVersion::V31;

        if c.properties.authentication_method.is_some() {
            // We offer no enhanced authentication methods (§4.12).
            tracing::warn!(client = %c.client_id, "closing connection: unsupported authentication method");
            return self.refuse(broker, ReasonCode::BAD_AUTHENTICATION_METHOD, now, out);
        }

        let verdict = match self.identity.take().map(|b| *b) {
            // A TLS listener with use_identity_as_username: the certificate's CN is the user
            // name from here on (what later checks see), the CONNECT's are ignored.
            Some(Identity::CommonName(name)) => {
                c.username = Some(name);
                c.password = None;
                Verdict::Allowed
            }
            Some(Identity::Missing) => {
                tracing::warn!(client = %c.client_id, "connection refused: no client certificate with a subject CN (listener.tls.use_identity_as_username)");
                return self.refuse(broker, ReasonCode::BAD_USER_NAME_OR_PASSWORD, now, out);
            }
            // Once per CONNECT, on this worker: a PBKDF2 of at most auth::MAX_ITERATIONS.
            None => broker.auth.check(
                broker.config.allow_anonymous,
                c.username.as_deref(),
                c.password.as_deref(),
            ),
        };
        // The user name is the client's: logged quoted (Debug), so it cannot forge a log line.
        // The password is never logged.
        match verdict {
            Verdict::Allowed => {}
            Verdict::NotAuthorized => {
                tracing::warn!(client = %c.client_id, "connection refused: no user name and auth.allow_anonymous is false");
                return self.refuse(broker, ReasonCode::NOT_AUTHORIZED, now, out);
            }
            Verdict::BadUserNameOrPassword => {
                let user = c.username.as_deref().unwrap_or_default();
                tracing::warn!(client = %c.client_id, username = ?user, "connection refused: bad user name or password");
                return self.refuse(broker, ReasonCode::BAD_USER_NAME_OR_PASSWORD, now, out);
            }
        }

        self.username = c.username.as_deref().map(Arc::from);

        if c.will
            .as_ref()
            .is_some_and(|w| broker.config.too_many_levels(&w.topic))
        {
            tracing::warn!(client = %c.client_id, "closing connection: will topic with more than limits.max_topic_levels levels");
            return self.refuse(broker, ReasonCode::TOPIC_NAME_INVALID, now, out);
        }

        if v31 && !(1..=MQTT31_MAX_CLIENT_ID).contains(&c.client_id.chars().count()) {
            // MQTT 3.1 §3.1: a Client Identifier is 1 to 23 characters, and 3.1
            // servers assign none; the answer is return code 2, Identifier rejected.
            tracing::warn!(client = %c.client_id, "closing connection: MQTT 3.1 client identifier not 1..=23 characters");
            return self.refuse(broker, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, now, out);
        }
        let wants_assigned = c.client_id.is_empty();
        if wants_assigned && !v5 && !c.clean_start {
            // §3.1.3.1 (3.1.1): an empty id requires clean session.
            tracing::warn!("closing connection: empty client id with clean session off");
            return self.refuse(broker, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, now, out);
        }

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

        // Bind the session: take over a connected one, resume or discard a stored one.
        let mut registry = broker.sessions.lock();
        let mut assigned = None;
        let client_id: Arc<str> = if wants_assigned {
            // An assigned id names a new session, never an existing one: a
            // client that asked for an id must not resume a session someone
            // planted (or Session Present would be 1 with a stranger's state).
            loop {
                match broker.generate_client_id() {
                    Some(id) if registry.contains_key(id.as_str()) => continue,
                    Some(id) => {
                        assigned = Some(id.clone());
                        break Arc::from(id);
                    }
                    None => {
                        drop(registry);
                        return self.refuse(broker, ReasonCode::SERVER_UNAVAILABLE, now, out);
                    }
                }
            }
        } else {
            Arc::from(c.client_id.as_str())
        };
        self.will = c.will.map(Box::new);
        if let (Some(acl), Some(w)) = (&broker.acl, &self.will) {
            // Mosquitto 2.0 accepts the CONNECT and checks write access to the will topic when
            // the will would be sent, dropping it if denied. Checked here instead, once: the
            // will is then never stored, and the identity it is checked for is this one.
            let subject = crate::acl::Subject {
                client_id: &client_id,
                username: self.username.as_deref(),
            };
            if !acl
                .table()
                .check(subject, &w.topic, crate::acl::Want::Write)
            {
                let topic = crate::handle_subscribe::Abbrev(&w.topic);
                tracing::info!(client = %client_id, username = ?self.username.as_deref(), %topic, "will dropped: the ACL denies write access to its topic");
                self.will = None;
            }
        }
        self.client_id = Arc::clone(&client_id);
        // Whether the client id had a session: its stored will (a pending will, or the will of
        // the connection taken over) is this connection's to replace or delete.
        let mut replaced = crate::will::Replaced::Nothing;
        let (cell, session_present) = match registry.get(&client_id).cloned() {
            Some(cell) => {
                let mut s = cell.lock();
                if let Some(old) = s.conn.take() {
                    out.kicks.push(old);
                }
                s.release_waiters(&mut out.resumes);
                s.wake_pending = false;
                // A new connection cancels a delayed will and the expiry clock,
                // and their timer entries with them. (Its stored record is replaced or
                // deleted below, with this connection's will.)
                replaced = if broker.cancel_timers(&mut s) {
                    crate::will::Replaced::PendingWill
                } else {
                    crate::will::Replaced::Session
                };
                // A session with expiry 0 (3.1.1 CleanSession=1, v5 Session Expiry
                // 0) ends with its connection (3.1.1 §3.1.2.4, v5 §3.1.2.11.2):
                // taking it over starts a new one even with a persistent CONNECT.
                // With an ACL, a session is not handed to another user: what was queued for
                // it was checked against its own user's rights.
                let other_user = broker.acl.is_some()
                    && s.identity_known
                    && s.username.as_deref() != self.username.as_deref();
                if other_user {
                    tracing::info!(client = %client_id, username = ?self.username.as_deref(), "session of another user name discarded (ACL)");
                }
                if c.clean_start || s.expiry_interval == 0 || other_user {
                    // Discard the old session: a fresh one replaces it.
                    let old_id = s.id;
                    broker.persist_session_end(&s, false, out);
                    let filters = s.end();
                    drop(s);
                    let fresh = self.new_session(broker, &client_id);
                    registry.insert(Arc::clone(&client_id), Arc::clone(&fresh));
                    drop(registry);
                    broker.unsubscribe_all(old_id, &filters);
                    (fresh, false)
                } else {
                    if !s.identity_known {
                        self.drop_unreadable(broker, &mut s);
                    }
                    s.conn = Some(self.conn_ref);
                    s.expiry_interval = self.session_expiry;
                    s.username.clone_from(&self.username);
                    s.identity_known = true;
                    drop(s);
                    drop(registry);
                    (cell, true)
                }
            }
            None => {
                let fresh = self.new_session(broker, &client_id);
                registry.insert(Arc::clone(&client_id), Arc::clone(&fresh));
                drop(registry);
                (fresh, false)
            }
        };
        self.session_id = {
            let s = cell.lock();
            // Created or resumed: its record (the expiry may have changed) before CONNACK.
            broker.persist_session(&s, out);
            // Unless a newer connection took the session meanwhile (its will ops came first).
            if s.conn == Some(self.conn_ref) {
                self.will_stored =
                    broker.persist_connect_will(&s, self.will.as_deref(), replaced, out);
            }
            s.id
        };
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
        let mut connack = Packet::ConnAck(ConnAck {
            // MQTT 3.1 has this byte reserved: no Session Present flag.
            session_present: session_present && !v31,
            reason_code: ReasonCode::SUCCESS,
            properties: props,
        });
        if !self.fit_to_client_max(&mut connack) {
            // Not even a CONNACK without properties fits (Maximum Packet Size
            // under 5 bytes): we may send nothing, not even a DISCONNECT, so
            // close (§3.1.2.11.4).
            tracing::warn!(client = %client_id, max = self.client_max_packet, "closing connection: the client's Maximum Packet Size is too small for a CONNACK");
            return self.close(broker, now, out, false);
        }
        self.send(broker, &connack, out);
        tracing::debug!(client = %client_id, version = ?self.version, session_present, "client connected");

        let mut s = cell.lock();
        if session_present {
            self.redeliver(broker, &mut s, now, out);
        }
        self.drain(broker, &mut s, now, out);
    }

    /// Drops optional CONNACK properties, least needed first, until the
    /// packet fits the client's Maximum Packet Size (§3.1.2.11.4: the server
    /// MUST NOT send a larger packet). `false` if even a bare CONNACK does not.
    fn fit_to_client_max(&self, connack: &mut Packet) -> bool {
        // Reason String and User Properties first (§3.2.2.3.9, .10 allow it),
        // then what the client can do without: absent Topic Alias Maximum
        // means no aliases, absent Maximum Packet Size and Receive Maximum
        // are only our limits unannounced; the Assigned Client Identifier last.
        const DROP_ORDER: [fn(&mut Properties); 9] = [
            |p| p.reason_string = None,
            |p| p.user_properties.clear(),
            |p| p.response_information = None,
            |p| p.server_reference = None,
            |p| p.topic_alias_maximum = None,
            |p| p.maximum_packet_size = None,
            |p| p.receive_maximum = None,
            |p| p.server_keep_alive = None,
            |p| *p = Properties::default(),
        ];
        let limit = self.client_max_packet as usize;
        let mut steps = DROP_ORDER.iter();
        // A CONNACK that cannot be encoded at all (an oversize property) sheds too.
        while !matches!(encoded_len(connack, self.version), Ok(n) if n <= limit) {
            let (Packet::ConnAck(ack), Some(drop_some)) = (&mut *connack, steps.next()) else {
                return false;
            };
            drop_some(&mut ack.properties);
        }
        true
    }

    /// A session restored from the store does not know the user name it was queued for: with
    /// an ACL, what it holds that this client may not read is dropped before it is resumed
    /// (counted in `messages_dropped`). Messages past PUBREC were delivered already and stay.
    fn drop_unreadable(&self, broker: &Broker, s: &mut Session) {
        let Some(acl) = &broker.acl else { return };
        let table = acl.table();
        let subject = self.subject();
        let readable = |o: &crate::session::Outgoing| {
            table.check(subject, &o.msg.topic, crate::acl::Want::Read)
        };
        let mut dropped = 0u64;
        let mut i = 0;
        while let Some(o) = s.queue.get(i) {
            if readable(o) {
                i += 1;
                continue;
            }
            let o = o.clone();
            s.remove_queued(i);
            broker.persist_unqueued(s, &o);
            dropped += 1;
        }
        let mut i = 0;
        while let Some(f) = s.inflight.get(i) {
            if f.state == crate::session::InflightState::AwaitPubComp || readable(&f.out) {
                i += 1;
            } else if let Some(gone) = s.inflight.remove(i) {
                broker.persist_unqueued(s, &gone.out);
                dropped += 1;
            }
        }
        if dropped > 0 {
            broker.metrics.messages_dropped.add(dropped);
            tracing::info!(client = %self.client_id, dropped, "restored session resumed: messages this user may not read dropped (ACL)");
        }
    }

    /// A new session, bound to this connection.
    fn new_session(&self, broker: &Broker, client_id: &Arc<str>) -> Arc<SessionCell> {
        let mut session = Session::new(
            broker.new_session_id(),
            Arc::clone(client_id),
            self.session_expiry,
        );
        session.conn = Some(self.conn_ref);
        session.username.clone_from(&self.username);
        session.identity_known = true;
        session.charge = crate::budget::Charge::of(&broker.memory);
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
