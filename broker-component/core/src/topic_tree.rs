//! The subscription index: a trie over topic levels.
//!
//! Read-mostly: every PUBLISH walks it under a shared read lock; SUBSCRIBE and
//! UNSUBSCRIBE take the write lock briefly. A node whose last subscriber leaves
//! is removed with its empty ancestors — the topic ceases to exist (docs/design.md §3).
//! The trie itself, and why every walk over it is a loop, is `level_trie`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use musqratt_codec::SubscriptionOptions;
use smallvec::{smallvec, SmallVec};

use crate::level_trie::{LevelTrie, Node};
use crate::session::SessionCell;

/// One subscription in the tree.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) session: Arc<SessionCell>,
    pub(crate) session_id: u64,
    pub(crate) options: SubscriptionOptions,
    pub(crate) sub_id: Option<u32>,
}

/// `$share/{name}/filter` subscribers: each message goes to one member.
struct SharedGroup {
    name: Box<str>,
    members: Vec<Subscriber>,
    next: AtomicUsize,
}

/// The subscriptions of one filter node.
#[derive(Default)]
struct Subs {
    subscribers: Vec<Subscriber>,
    shared: Vec<SharedGroup>,
}

impl Subs {
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.shared.is_empty()
    }
}

/// A match found for a topic: a plain subscriber, or the chosen member of a shared group.
pub(crate) type Match<'a> = &'a Subscriber;

/// Every walk is iterative (see `level_trie`): a filter may have tens of
/// thousands of levels when `limits.max_topic_levels` is raised.
#[derive(Default)]
pub(crate) struct TopicTree {
    trie: LevelTrie<Subs>,
    /// Nodes that have at least one subscriber: the live topic filters.
    filters: usize,
}

impl TopicTree {
    /// Adds or replaces `session_id`'s subscription. Returns true if it is new.
    pub(crate) fn subscribe(&mut self, filter: &str, group: Option<&str>, sub: Subscriber) -> bool {
        let node = self.trie.node_mut(filter);
        let had = node.value.is_some();
        let subs = node.value.get_or_insert_with(Subs::default);
        let list = match group {
            None => &mut subs.subscribers,
            Some(g) => {
                let idx = match subs.shared.iter().position(|s| &*s.name == g) {
                    Some(i) => i,
                    None => {
                        subs.shared.push(SharedGroup {
                            name: Box::from(g),
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                        });
                        subs.shared.len() - 1
                    }
                };
                &mut subs.shared[idx].members
            }
        };
        let new = match list.iter_mut().find(|s| s.session_id == sub.session_id) {
            Some(existing) => {
                *existing = sub;
                false
            }
            None => {
                list.push(sub);
                true
            }
        };
        if !had {
            self.filters += 1;
        }
        new
    }

    /// Removes `session_id`'s subscription; prunes empty nodes. Returns true if it existed.
    pub(crate) fn unsubscribe(
        &mut self,
        filter: &str,
        group: Option<&str>,
        session_id: u64,
    ) -> bool {
        let Some(subs) = self.trie.get_mut(filter) else {
            return false;
        };
        let mut removed = false;
        match group {
            None => subs.subscribers.retain(|s| {
                let keep = s.session_id != session_id;
                removed |= !keep;
                keep
            }),
            Some(g) => {
                for sg in subs.shared.iter_mut().filter(|sg| &*sg.name == g) {
                    sg.members.retain(|s| {
                        let keep = s.session_id != session_id;
                        removed |= !keep;
                        keep
                    });
                }
                subs.shared.retain(|sg| !sg.members.is_empty());
            }
        }
        if subs.is_empty() {
            // The filter's last subscriber left: the topic ceases to exist.
            self.trie.remove(filter);
            self.filters -= 1;
        }
        removed
    }

    /// Number of topic filters with at least one subscriber.
    pub(crate) fn filter_count(&self) -> usize {
        self.filters
    }

    /// Calls `f` for every subscription matching `topic`: every plain subscriber,
    /// and one member per shared group (round robin, preferring online members).
    pub(crate) fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(Match<'a>)) {
        // §4.7.2: wildcards at the first level do not match `$` topics.
        let dollar = topic.starts_with('$');
        // (filter node, the part of the topic below it: None once every level
        // is consumed). Each node sits at one depth, so it is visited at most
        // once; levels are split as the walk goes, without allocating.
        // Inline room for the usual few branches: no allocation per PUBLISH
        // (this runs for every message); a deep or wildcard-heavy tree spills
        // to the heap.
        let mut stack: SmallVec<[(&'a Node<Subs>, Option<&str>); 8]> =
            smallvec![(self.trie.root(), Some(topic))];
        while let Some((node, rest)) = stack.pop() {
            let first = std::ptr::eq(node, self.trie.root());
            let wildcards_allowed = !(dollar && first);
            if wildcards_allowed {
                // `#` matches the parent level too ("a/#" matches "a").
                if let Some(hash) = node.child("#") {
                    emit(hash, &mut f);
                }
            }
            let Some(rest) = rest else {
                emit(node, &mut f);
                continue;
            };
            let (level, below) = match rest.split_once('/') {
                Some((level, below)) => (level, Some(below)),
                None => (rest, None),
            };
            if let Some(child) = node.child(level) {
                stack.push((child, below));
            }
            if wildcards_allowed {
                if let Some(plus) = node.child("+") {
                    stack.push((plus, below));
                }
            }
        }
    }
}

fn emit<'a>(node: &'a Node<Subs>, f: &mut impl FnMut(Match<'a>)) {
    let Some(subs) = &node.value else { return };
    for s in &subs.subscribers {
        f(s);
    }
    for group in &subs.shared {
        if let Some(member) = pick_member(group) {
            f(member);
        }
    }
}

/// Round robin over the group, skipping members whose session is offline when
/// an online one exists.
fn pick_member(group: &SharedGroup) -> Option<&Subscriber> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    let start = group.next.fetch_add(1, Ordering::Relaxed);
    for i in 0..n {
        let m = &group.members[(start + i) % n];
        if m.session.lock().conn.is_some() {
            return Some(m);
        }
    }
    Some(&group.members[start % n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Session;
    use musqratt_codec::QoS;

    fn sub(id: u64) -> Subscriber {
        Subscriber {
            session: Arc::new(parking_lot::Mutex::new(Session::new(id, Arc::from("c"), 0))),
            session_id: id,
            options: SubscriptionOptions::new(QoS::AtMostOnce),
            sub_id: None,
        }
    }

    fn matches(t: &TopicTree, topic: &str) -> Vec<u64> {
        let mut v = Vec::new();
        t.for_each_match(topic, |s| v.push(s.session_id));
        v.sort();
        v
    }

    #[test]
    fn wildcards_and_pruning() {
        let mut t = TopicTree::default();
        assert!(t.subscribe("a/+/c", None, sub(1)));
        assert!(t.subscribe("a/#", None, sub(2)));
        assert!(t.subscribe("#", None, sub(3)));
        assert!(!t.subscribe("#", None, sub(3)));
        assert_eq!(matches(&t, "a/b/c"), vec![1, 2, 3]);
        assert_eq!(matches(&t, "a"), vec![2, 3]);
        assert_eq!(matches(&t, "$SYS/x"), Vec::<u64>::new());
        assert_eq!(t.filter_count(), 3);
        assert!(t.unsubscribe("a/+/c", None, 1));
        assert!(!t.unsubscribe("a/+/c", None, 1));
        assert_eq!(t.filter_count(), 2);
        assert!(t.unsubscribe("a/#", None, 2));
        assert!(t.unsubscribe("#", None, 3));
        assert_eq!(t.filter_count(), 0);
        assert!(t.trie.is_empty(), "empty nodes are freed");
    }

    #[test]
    fn filters_of_tens_of_thousands_of_levels() {
        // "/" x 32767 is a legal 64 KiB filter: 32,768 empty levels. Each walk
        // below recursed once per level before and overflowed the stack.
        let deep = "/".repeat(32_767);
        let mut t = TopicTree::default();
        assert!(t.subscribe(&deep, None, sub(1)));
        assert!(t.subscribe(&(deep.clone() + "/#"), None, sub(2)));
        assert!(t.subscribe(&("+/".repeat(20_000) + "#"), None, sub(3)));
        assert_eq!(matches(&t, &deep), vec![1, 2, 3]);
        assert_eq!(matches(&t, "a"), Vec::<u64>::new());
        assert!(t.unsubscribe(&deep, None, 1));
        assert_eq!(matches(&t, &deep), vec![2, 3]);
        assert_eq!(t.filter_count(), 2);
        drop(t); // dropping the deep branches is iterative too
    }

    #[test]
    fn shared_group_round_robin() {
        let mut t = TopicTree::default();
        t.subscribe("t", Some("g"), sub(1));
        t.subscribe("t", Some("g"), sub(2));
        let a = matches(&t, "t");
        let b = matches(&t, "t");
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 1);
        assert_ne!(a, b);
    }
}
