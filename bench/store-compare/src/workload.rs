//! The broker's durable-store write pattern, as key/value operations.
//!
//! Per accepted QoS 1/2 message:
//! - one message record: key = message id (u64 BE), value = topic length (u16 BE) + topic (~30 B)
//!   + payload (incompressible pseudo-random bytes, so that fjall's LZ4 does not flatter it);
//! - one queue entry per subscriber session: key = session id (u64 BE) + sequence (u64 BE),
//!   value = message id (8) + QoS (1) + packet id (2) + flags/padding (5) = 16 B.
//!
//! Every session receives every message here, so a session's sequence is the message id.

use crate::engines::{Op, Space};

pub const FIRST_SESSION: u64 = 1_000;

#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub payload: usize,
    pub subs: u64,
}

pub fn msg_key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

pub fn queue_key(session: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&session.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

impl Workload {
    pub fn topic(id: u64) -> String {
        // ~30 bytes: "site/plant-07/line-12/sensor-0345"
        format!(
            "site/plant-{:02}/line-{:02}/sensor-{:04}",
            id % 13,
            id % 17,
            id % 9973
        )
    }

    pub fn msg_value(&self, id: u64) -> Vec<u8> {
        let topic = Self::topic(id);
        let mut v = Vec::with_capacity(2 + topic.len() + self.payload);
        v.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        v.extend_from_slice(topic.as_bytes());
        let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        while v.len() < 2 + topic.len() + self.payload {
            x = xorshift(x);
            let take = (2 + topic.len() + self.payload - v.len()).min(8);
            v.extend_from_slice(&x.to_le_bytes()[..take]);
        }
        v
    }

    pub fn queue_value(id: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&id.to_be_bytes());
        v.push(1); // QoS
        v.extend_from_slice(&((id % 65_535) as u16 + 1).to_be_bytes()); // packet id
        v.extend_from_slice(&[0u8; 5]); // flags (dup, retain, ...) and padding
        v
    }

    /// Messages `first .. first + n`: one message record and `subs` queue entries each.
    pub fn insert(&self, first: u64, n: u64, ops: &mut Vec<Op>) {
        for id in first..first + n {
            ops.push(Op {
                space: Space::Msgs,
                key: msg_key(id),
                value: Some(self.msg_value(id)),
            });
            for s in 0..self.subs {
                ops.push(Op {
                    space: Space::Queue,
                    key: queue_key(FIRST_SESSION + s, id),
                    value: Some(Self::queue_value(id)),
                });
            }
        }
    }

    /// Acknowledgement of messages `first .. first + n` by every session: the queue entries go,
    /// then the message record (its last entry went).
    pub fn delete(&self, first: u64, n: u64, ops: &mut Vec<Op>) {
        for id in first..first + n {
            for s in 0..self.subs {
                ops.push(Op {
                    space: Space::Queue,
                    key: queue_key(FIRST_SESSION + s, id),
                    value: None,
                });
            }
            ops.push(Op {
                space: Space::Msgs,
                key: msg_key(id),
                value: None,
            });
        }
    }
}
