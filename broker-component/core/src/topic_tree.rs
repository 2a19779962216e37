//! The subscription index: a trie over topic levels.
//!
//! Read-mostly: every PUBLISH walks it under a shared read lock; SUBSCRIBE and
//! UNSUBSCRIBE take the write lock briefly. A node whose last subscriber leaves
//! is removed with its empty ancestors — the topic ceases to exist (DESIGN §3).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use musqratt_codec::SubscriptionOptions;

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

#[derive(Default)]
struct Node {
    /// foldhash: several times faster than SipHash on short topic levels,
    /// still randomly seeded (levels come from clients).
    children: HashMap<Box<str>, Node, foldhash::fast::RandomState>,
    subscribers: Vec<Subscriber>,
    shared: Vec<SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }

    fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty() || !self.shared.is_empty()
    }
}

/// A match found for a topic: a plain subscriber, or the chosen member of a shared group.
pub(crate) type Match<'a> = &'a Subscriber;

#[derive(Default)]
pub(crate) struct TopicTree {
    root: Node,
    /// Nodes that have at least one subscriber: the live topic filters.
    filters: usize,
}

impl TopicTree {
    /// Adds or replaces `session_id`'s subscription. Returns true if it is new.
    pub(crate) fn subscribe(&mut self, filter: &str, group: Option<&str>, sub: Subscriber) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        let had = node.has_subscribers();
        let list = match group {
            None => &mut node.subscribers,
            Some(g) => {
                let idx = match node.shared.iter().position(|s| &*s.name == g) {
                    Some(i) => i,
                    None => {
                        node.shared.push(SharedGroup {
                            name: Box::from(g),
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                        });
                        node.shared.len() - 1
                    }
                };
                &mut node.shared[idx].members
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
        let levels: Vec<&str> = filter.split('/').collect();
        let mut removed = false;
        let mut lost_last = false;
        remove_rec(
            &mut self.root,
            &levels,
            group,
            session_id,
            &mut removed,
            &mut lost_last,
        );
        if lost_last {
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
        match_rec(&self.root, Some(topic), true, dollar, &mut f);
    }
}

fn remove_rec(
    node: &mut Node,
    levels: &[&str],
    group: Option<&str>,
    session_id: u64,
    removed: &mut bool,
    lost_last: &mut bool,
) {
    match levels.split_first() {
        None => {
            let had = node.has_subscribers();
            match group {
                None => node.subscribers.retain(|s| {
                    let keep = s.session_id != session_id;
                    *removed |= !keep;
                    keep
                }),
                Some(g) => {
                    for sg in node.shared.iter_mut().filter(|sg| &*sg.name == g) {
                        sg.members.retain(|s| {
                            let keep = s.session_id != session_id;
                            *removed |= !keep;
                            keep
                        });
                    }
                    node.shared.retain(|sg| !sg.members.is_empty());
                }
            }
            *lost_last = had && !node.has_subscribers();
        }
        Some((first, rest)) => {
            if let Some(child) = node.children.get_mut(*first) {
                remove_rec(child, rest, group, session_id, removed, lost_last);
                if child.is_empty() {
                    node.children.remove(*first);
                }
            }
        }
    }
}

/// `rest` is the part of the topic below `node` (None once every level is
/// consumed); levels are split as the walk goes, without allocating.
fn match_rec<'a>(
    node: &'a Node,
    rest: Option<&str>,
    first: bool,
    dollar: bool,
    f: &mut impl FnMut(Match<'a>),
) {
    let wildcards_allowed = !(dollar && first);
    if wildcards_allowed {
        // `#` matches the parent level too ("a/#" matches "a").
        if let Some(hash) = node.children.get("#") {
            emit(hash, f);
        }
    }
    let Some(rest) = rest else {
        return emit(node, f);
    };
    let (level, below) = match rest.split_once('/') {
        Some((level, below)) => (level, Some(below)),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(level) {
        match_rec(child, below, false, dollar, f);
    }
    if wildcards_allowed {
        if let Some(plus) = node.children.get("+") {
            match_rec(plus, below, false, dollar, f);
        }
    }
}

fn emit<'a>(node: &'a Node, f: &mut impl FnMut(Match<'a>)) {
    for s in &node.subscribers {
        f(s);
    }
    for group in &node.shared {
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
        assert!(t.root.is_empty(), "empty nodes are freed");
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
