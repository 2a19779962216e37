//! A trie over topic levels, shared by the subscription tree (values at filter
//! nodes), the retained store and the hold queues (values at topic nodes).
//!
//! Every walk here is a loop, never a recursion: a topic or filter may have
//! as many levels as a client can fit in a string (`"/"` × 32,767 is a legal
//! 64 KiB filter), and a recursion per level overflows a worker's stack. That
//! includes dropping: the derived `Drop` of nested maps recurses, so `Node`
//! dismantles its subtree with an explicit stack.

use std::collections::HashMap;
use std::ops::ControlFlow;

/// foldhash: several times faster than SipHash on short topic levels, still
/// randomly seeded (levels come from clients).
type Children<V> = HashMap<Box<str>, Node<V>, foldhash::fast::RandomState>;

pub(crate) struct Node<V> {
    children: Children<V>,
    pub(crate) value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: Children::default(),
            value: None,
        }
    }
}

impl<V> Drop for Node<V> {
    fn drop(&mut self) {
        // Move every descendant onto a heap stack and drop them one by one,
        // each with no children left, so no drop nests inside another.
        let mut stack: Vec<Node<V>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, n)| n));
        }
    }
}

impl<V> Node<V> {
    pub(crate) fn child(&self, level: &str) -> Option<&Node<V>> {
        self.children.get(level)
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&str, &Node<V>)> {
        self.children.iter().map(|(k, n)| (&**k, n))
    }

    fn is_empty(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }
}

/// The levels of a topic or filter, split without allocating.
pub(crate) fn levels(topic: &str) -> std::str::Split<'_, char> {
    topic.split('/')
}

pub(crate) struct LevelTrie<V> {
    root: Node<V>,
}

impl<V> Default for LevelTrie<V> {
    fn default() -> Self {
        LevelTrie {
            root: Node::default(),
        }
    }
}

impl<V> LevelTrie<V> {
    pub(crate) fn root(&self) -> &Node<V> {
        &self.root
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// The node of `path`, created (with its ancestors) if missing.
    pub(crate) fn node_mut(&mut self, path: &str) -> &mut Node<V> {
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.children.entry(Box::from(level)).or_default();
        }
        node
    }

    #[cfg(test)]
    pub(crate) fn get(&self, path: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in levels(path) {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    pub(crate) fn get_mut(&mut self, path: &str) -> Option<&mut V> {
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.children.get_mut(level)?;
        }
        node.value.as_mut()
    }

    /// Removes the node of `path` if it holds no value and has no children,
    /// and with it every ancestor left empty (the topic ceases to exist).
    pub(crate) fn prune(&mut self, path: &str) {
        // Pass 1: find the deepest ancestor that must stay (the root, or one
        // with a value or another child); everything below it on the path goes.
        let mut keep_depth = 0;
        let mut node = &self.root;
        for (depth, level) in levels(path).enumerate() {
            if depth == 0 || node.value.is_some() || node.children.len() > 1 {
                keep_depth = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if !node.is_empty() {
            return;
        }
        // Pass 2: cut the chain below the kept ancestor; dropping it is iterative.
        let mut node = &mut self.root;
        let mut it = levels(path);
        for _ in 0..keep_depth {
            let Some(level) = it.next() else { return };
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(level) = it.next() {
            node.children.remove(level);
        }
    }

    /// Removes and returns the value of `path`, pruning what it leaves empty.
    pub(crate) fn remove(&mut self, path: &str) -> Option<V> {
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.children.get_mut(level)?;
        }
        let v = node.value.take();
        self.prune(path);
        v
    }

    /// Calls `f(value)` for every value at a topic matched by `filter` (a
    /// valid, non-shared topic filter), until `f` breaks. Wildcards at the
    /// first level do not match `$` topics (§4.7.2). A topic reached through
    /// several branches is visited once: each node sits at one depth, and the
    /// filter's level at that depth decides whether to enter it. The values
    /// carry their own topic, so the walk builds no topic strings.
    ///
    /// Every node the walk visits costs one unit of `budget`: a wildcard filter
    /// that matches little in a large store may visit many nodes for few
    /// values, and a SUBSCRIBE holds its worker (and the store's lock) while it
    /// walks. Returns [`Walk::OutOfBudget`] if the budget ran out first.
    pub(crate) fn for_each_match<'a>(
        &'a self,
        filter: &str,
        budget: &mut usize,
        mut f: impl FnMut(&'a V) -> ControlFlow<()>,
    ) -> Walk {
        let filter: Vec<&str> = levels(filter).collect();
        // (node, index of the filter level to match below it)
        let mut stack: Vec<(&'a Node<V>, usize)> = vec![(&self.root, 0)];
        while let Some((node, i)) = stack.pop() {
            if *budget == 0 {
                return Walk::OutOfBudget;
            }
            *budget -= 1;
            let Some(&level) = filter.get(i) else {
                if let Some(v) = &node.value {
                    if f(v).is_break() {
                        return Walk::Stopped;
                    }
                }
                continue;
            };
            match level {
                "#" => {
                    // "a/#" matches "a" itself, then the whole subtree.
                    if i > 0 {
                        if let Some(v) = &node.value {
                            if f(v).is_break() {
                                return Walk::Stopped;
                            }
                        }
                    }
                    match walk_subtree(node, i == 0, budget, &mut f) {
                        Walk::Done => {}
                        end => return end,
                    }
                }
                "+" => {
                    for (name, child) in node.children() {
                        if !(i == 0 && name.starts_with('$')) {
                            stack.push((child, i + 1));
                        }
                    }
                }
                name => {
                    if let Some(child) = node.children.get(name) {
                        stack.push((child, i + 1));
                    }
                }
            }
        }
        Walk::Done
    }
}

/// A walk budget that never runs out, for the broker's own walks (`$SYS`) and tests.
pub(crate) fn unlimited() -> usize {
    usize::MAX
}

/// How a budgeted walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Every match was visited.
    Done,
    /// The callback asked to stop.
    Stopped,
    /// The node budget ran out before the walk was done.
    OutOfBudget,
}

/// Every value strictly below `node`, depth first.
fn walk_subtree<'a, V>(
    node: &'a Node<V>,
    at_root: bool,
    budget: &mut usize,
    f: &mut impl FnMut(&'a V) -> ControlFlow<()>,
) -> Walk {
    let mut stack: Vec<&'a Node<V>> = node
        .children()
        .filter(|(name, _)| !(at_root && name.starts_with('$')))
        .map(|(_, child)| child)
        .collect();
    while let Some(node) = stack.pop() {
        if *budget == 0 {
            return Walk::OutOfBudget;
        }
        *budget -= 1;
        if let Some(v) = &node.value {
            if f(v).is_break() {
                return Walk::Stopped;
            }
        }
        stack.extend(node.children.values());
    }
    Walk::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are the topics themselves, as the stores keep them.
    fn found(t: &LevelTrie<String>, filter: &str) -> Vec<String> {
        let mut v = Vec::new();
        let walk = t.for_each_match(filter, &mut unlimited(), |topic| {
            v.push(topic.clone());
            ControlFlow::Continue(())
        });
        assert_eq!(walk, Walk::Done);
        v.sort();
        v
    }

    fn trie(topics: &[&str]) -> LevelTrie<String> {
        let mut t = LevelTrie::default();
        for topic in topics {
            t.node_mut(topic).value = Some(topic.to_string());
        }
        t
    }

    #[test]
    fn filters_match_as_the_spec_says() {
        let t = trie(&["a", "a/b", "a/b/c", "a/x/c", "/lead", "$SYS/v", "b"]);
        assert_eq!(found(&t, "a/#"), ["a", "a/b", "a/b/c", "a/x/c"]);
        assert_eq!(found(&t, "a/+/c"), ["a/b/c", "a/x/c"]);
        assert_eq!(found(&t, "#"), ["/lead", "a", "a/b", "a/b/c", "a/x/c", "b"]);
        assert_eq!(found(&t, "+"), ["a", "b"]);
        assert_eq!(found(&t, "+/lead"), ["/lead"]);
        assert_eq!(found(&t, "$SYS/#"), ["$SYS/v"]);
        assert_eq!(found(&t, "a/b"), ["a/b"]);
        assert_eq!(found(&t, "a/b/c/d"), Vec::<String>::new());
        // Every filter agrees with the codec's reference matcher.
        let topics = ["a", "a/b", "a/b/c", "a/x/c", "/lead", "$SYS/v", "b"];
        for filter in ["#", "+", "a/#", "+/+", "+/b/#", "$SYS/+", "+/+/c", "/+"] {
            let mut want: Vec<String> = topics
                .iter()
                .filter(|t| musqratt_codec::topic::matches(filter, t))
                .map(|t| t.to_string())
                .collect();
            want.sort();
            assert_eq!(found(&t, filter), want, "filter {filter}");
        }
    }

    #[test]
    fn walk_stops_when_told() {
        let t = trie(&["a/1", "a/2", "a/3", "a/4"]);
        let mut n = 0;
        let walk = t.for_each_match("a/+", &mut unlimited(), |_| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!((n, walk), (2, Walk::Stopped));
    }

    #[test]
    fn walk_stops_when_the_budget_runs_out() {
        // 1,000 topics of which one matches `+/+/x`: the walk must look at
        // every `+/+` node to find it, so a small budget runs out first.
        let topics: Vec<String> = (0..1000).map(|i| format!("t/{i}/y")).collect();
        let mut t = trie(&topics.iter().map(String::as_str).collect::<Vec<_>>());
        t.node_mut("t/999/x").value = Some("t/999/x".into());
        let mut budget = 100;
        let mut seen = 0;
        let walk = t.for_each_match("+/+/x", &mut budget, |_| {
            seen += 1;
            ControlFlow::Continue(())
        });
        assert_eq!((walk, budget), (Walk::OutOfBudget, 0));
        assert!(seen <= 1);
        // `#` counts every node of the subtree too.
        let mut budget = 10;
        let walk = t.for_each_match("#", &mut budget, |_| ControlFlow::Continue(()));
        assert_eq!(walk, Walk::OutOfBudget);
        // With enough budget the same walks complete, and what is left says
        // how much they cost.
        let mut budget = 5000;
        let mut found = Vec::new();
        let walk = t.for_each_match("+/+/x", &mut budget, |v| {
            found.push(v.clone());
            ControlFlow::Continue(())
        });
        assert_eq!((walk, found), (Walk::Done, vec!["t/999/x".to_string()]));
        assert!(budget < 5000 - 1000, "it visited every t/N node");
    }

    #[test]
    fn remove_prunes_empty_ancestors_only() {
        let mut t = trie(&["a", "a/b/c/d", "a/b/x"]);
        assert_eq!(t.remove("a/b/c/d").as_deref(), Some("a/b/c/d"));
        assert!(t
            .root
            .child("a")
            .unwrap()
            .child("b")
            .unwrap()
            .child("c")
            .is_none());
        assert!(t.get("a/b/x").is_some());
        assert!(t.remove("a/b/x").is_some());
        assert!(
            t.root.child("a").unwrap().children.is_empty(),
            "a stays: it has a value"
        );
        assert!(t.remove("a").is_some());
        assert!(t.is_empty());
        assert_eq!(t.remove("nope/x"), None);
    }

    #[test]
    fn very_deep_paths_walk_and_drop_without_recursion() {
        // 100,000 levels: far beyond what a recursion per level survives on a
        // 2 MiB thread stack (and the test threads' stacks are small).
        let deep = "/".repeat(99_999);
        let mut t = LevelTrie::default();
        t.node_mut(&deep).value = Some(String::from("deep"));
        assert!(t.get(&deep).is_some());
        assert_eq!(found(&t, &deep).len(), 1);
        assert_eq!(found(&t, "#").len(), 1);
        let plus_deep = "+/".repeat(50_000) + "#";
        assert_eq!(found(&t, &plus_deep).len(), 1);
        assert!(t.remove(&deep).is_some());
        assert!(t.is_empty());
        t.node_mut(&deep).value = Some(String::from("again"));
        drop(t); // the Drop of Node is iterative
    }
}
