//! SUBSCRIBE and UNSUBSCRIBE (§3.8, §3.10). After the SUBACK go, in order:
//! the retained messages (per Retain Handling), then the held messages of
//! every matching topic (DESIGN §3), all at min(message QoS, granted QoS).

use std::sync::Arc;
use std::time::Instant;

use musqratt_codec::{
    topic, Packet, Properties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};

use crate::broker::{split_shared, Broker};
use crate::connection::{Connection, Output};
use crate::message::Message;
use crate::session::{Outgoing, SubscriptionRecord};
use crate::topic_tree::Subscriber;

impl Connection {
    pub(crate) fn handle_subscribe(
        &mut self,
        broker: &Broker,
        sub: Subscribe,
        now: Instant,
        out: &mut Output,
    ) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let v5 = self.version.is_v5();
        let sub_id = sub.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(sub.filters.len());
        // (filter, granted QoS, subscription id, send retained?) of accepted filters.
        let mut accepted: Vec<(String, QoS, bool)> = Vec::new();

        for (filter, opts) in sub.filters {
            if topic::validate_topic_filter(&filter).is_err() {
                tracing::debug!(client = %self.client_id, %filter, "invalid topic filter");
                codes.push(if v5 {
                    ReasonCode::TOPIC_FILTER_INVALID
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let (group, plain) = split_shared(&filter);
            if group.is_some() && opts.no_local {
                // §3.8.3.1: No Local on a shared subscription is a Protocol Error.
                return self.protocol_violation(
                    broker,
                    ReasonCode::PROTOCOL_ERROR,
                    "No Local set on a shared subscription",
                    now,
                    out,
                );
            }
            let subscriber = Subscriber {
                session: Arc::clone(&session),
                session_id: self.session_id,
                options: opts,
                sub_id,
            };
            let is_new = broker.topics_write().subscribe(plain, group, subscriber);
            {
                let mut s = session.lock();
                if s.conn != Some(self.conn_ref) {
                    // Taken over (or discarded by a clean start) on another
                    // worker while we inserted: that worker has already
                    // cleared the session's subscriptions, so undo ours.
                    drop(s);
                    broker
                        .topics_write()
                        .unsubscribe(plain, group, self.session_id);
                    return;
                }
                let record = SubscriptionRecord {
                    options: opts,
                    sub_id,
                };
                s.subscriptions.insert(filter.clone(), record);
            }
            codes.push(ReasonCode(opts.qos.as_u8()));
            let send_retained = group.is_none()
                && match opts.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            accepted.push((filter, opts.qos, send_retained));
        }

        let suback = SubAck {
            packet_id: sub.packet_id,
            properties: Properties::default(),
            reason_codes: codes,
        };
        self.send(broker, &Packet::SubAck(suback), out);

        // Retained first, then held: both queued on our own session and drained now.
        let mut queued: Vec<Outgoing> = Vec::new();
        for (filter, granted, send_retained) in &accepted {
            let plain = split_shared(filter).1;
            let sub_ids: Vec<u32> = sub_id.into_iter().collect();
            if *send_retained {
                for msg in broker.retained.lock().matching(plain, now) {
                    queued.push(outgoing(msg, *granted, true, &sub_ids));
                }
            }
            if broker.config.hold_enabled {
                let held = broker.hold.lock().take_matching(plain, now);
                for msg in held {
                    queued.push(outgoing(msg, *granted, false, &sub_ids));
                }
            }
        }
        if queued.is_empty() {
            return;
        }
        let mut s = session.lock();
        for o in queued {
            if s.enqueue(o, usize::MAX).is_err() {
                broker.metrics.messages_dropped.add(1);
            }
        }
        s.wake_pending = false;
        self.drain(broker, &mut s, now, out);
    }

    pub(crate) fn handle_unsubscribe(&mut self, broker: &Broker, u: Unsubscribe, out: &mut Output) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mut codes = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            let existed = session.lock().subscriptions.remove(filter).is_some();
            if existed {
                let (group, plain) = split_shared(filter);
                broker
                    .topics_write()
                    .unsubscribe(plain, group, self.session_id);
            }
            codes.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        let unsuback = UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            reason_codes: codes,
        };
        self.send(broker, &Packet::UnsubAck(unsuback), out);
    }
}

fn outgoing(msg: Arc<Message>, granted: QoS, retain: bool, sub_ids: &[u32]) -> Outgoing {
    Outgoing {
        qos: granted.min(msg.qos),
        msg,
        retain,
        sub_ids: sub_ids.to_vec(),
    }
}
