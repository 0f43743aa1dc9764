//! The set of field paths rules read, and the trie the decoder walks to capture only those.

use rustc_hash::FxHashMap;

/// Index of a field path in a [`FieldTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u32);

/// Every dotted field path the compiled rules use, each with how to find it in an event.
///
/// Built once when rules compile; the decoder captures only these fields and skips the rest.
#[derive(Debug, Clone, Default)]
pub struct FieldTable {
    paths: Vec<Box<str>>,
    index: FxHashMap<Box<str>, FieldId>,
    pub(crate) trie: Trie,
    pub(crate) plans: Vec<FieldPlan>,
    /// Whether some rule searches the whole event text (Sigma keywords).
    pub(crate) whole_record: bool,
}

/// Where a field's value may be captured.
#[derive(Debug, Clone)]
pub(crate) struct FieldPlan {
    /// The root trie node for the whole dotted name used as one top-level key, if it has dots.
    pub literal: Option<u32>,
    /// The trie node of a top-level (one-segment) path, read without walking `nodes`.
    pub top: Option<u32>,
    /// Trie nodes along the path, one per segment.
    pub nodes: Vec<u32>,
    /// The path's segments.
    pub segments: Vec<Box<str>>,
}

/// A key trie over field paths; node 0 is the event's top-level object.
#[derive(Debug, Clone)]
pub(crate) struct Trie {
    pub nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct TrieNode {
    /// Children sorted by key length; `by_len[n]` is the range of keys of length `n`.
    /// Most keys of an event are not wanted, and a length check rejects them without hashing.
    children: Vec<(Box<[u8]>, u32)>,
    by_len: Vec<(u32, u32)>,
    /// Some field ends here, so the whole value is captured.
    pub terminal: bool,
}

/// Equality of two byte strings of the same length, without a `memcmp` call for short keys.
#[inline]
fn same_len_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert_eq!(n, b.len());
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |s: &[u8], at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_le_bytes(w)
    };
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        // Two overlapping half-words cover 4..=7 bytes.
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        // Two overlapping words cover 8..=16 bytes.
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

impl TrieNode {
    fn get(&self, key: &[u8]) -> Option<u32> {
        let &(start, end) = self.by_len.get(key.len())?;
        self.children[start as usize..end as usize]
            .iter()
            .find(|(k, _)| same_len_eq(k, key))
            .map(|&(_, id)| id)
    }

    fn insert(&mut self, key: &[u8], id: u32) {
        self.children.push((key.into(), id));
        self.children.sort_by_key(|(k, _)| k.len());
        let max = self
            .children
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        self.by_len = vec![(0, 0); max + 1];
        for len in 0..=max {
            let start = self.children.partition_point(|(k, _)| k.len() < len);
            let end = self.children.partition_point(|(k, _)| k.len() <= len);
            self.by_len[len] = (start as u32, end as u32);
        }
    }
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![TrieNode::default()],
        }
    }
}

impl Trie {
    fn child(&mut self, parent: u32, key: &str) -> u32 {
        if let Some(id) = self.lookup(parent, key) {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(TrieNode::default());
        self.nodes[parent as usize].insert(key.as_bytes(), id);
        id
    }

    /// The child of `parent` reached by `key`.
    #[inline]
    pub fn lookup(&self, parent: u32, key: &str) -> Option<u32> {
        self.nodes[parent as usize].get(key.as_bytes())
    }

    /// The child of `parent` reached by the key bytes `key`.
    #[inline]
    pub fn lookup_bytes(&self, parent: u32, key: &[u8]) -> Option<u32> {
        self.nodes[parent as usize].get(key)
    }
}

impl FieldTable {
    /// An empty table (the decoder then captures only what [`FieldTable::intern`] adds).
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `path`, adding it if new.
    pub fn intern(&mut self, path: &str) -> FieldId {
        if let Some(&id) = self.index.get(path) {
            return id;
        }
        let id = FieldId(self.paths.len() as u32);
        self.paths.push(path.into());
        self.index.insert(path.into(), id);
        let segments: Vec<Box<str>> = path.split('.').map(Into::into).collect();
        let mut node = 0;
        let mut nodes = Vec::with_capacity(segments.len());
        for seg in &segments {
            node = self.trie.child(node, seg);
            nodes.push(node);
        }
        self.trie.nodes[node as usize].terminal = true;
        let literal = (segments.len() > 1).then(|| {
            let lit = self.trie.child(0, path);
            self.trie.nodes[lit as usize].terminal = true;
            lit
        });
        self.plans.push(FieldPlan {
            top: (nodes.len() == 1).then(|| nodes[0]),
            literal,
            nodes,
            segments,
        });
        id
    }

    /// The id of `path` if some rule uses it.
    pub fn get(&self, path: &str) -> Option<FieldId> {
        self.index.get(path).copied()
    }

    /// The dotted path of a field.
    pub fn path(&self, id: FieldId) -> &str {
        &self.paths[id.0 as usize]
    }

    /// How many fields the table holds.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the table holds no field.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Asks the decoder to keep each event's whole text (for keyword search).
    pub fn want_whole_record(&mut self) {
        self.whole_record = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_key_equality() {
        for (a, b) in [
            ("", ""),
            ("abc", "abd"),
            ("type", "type"),
            ("type", "typf"),
            ("xype", "type"),
            ("eventID", "eventID"),
            ("eventID", "eventIE"),
            ("eventID", "fventID"),
            ("event", "evfnt"),
            ("eventName", "eventNamf"),
            ("eventName", "eventName"),
            ("abcdefghijklmnop", "abcdefghijklmnop"),
            ("xbcdefghijklmnop", "abcdefghijklmnop"),
            ("abcdefghijklmnopq", "abcdefghijklmnopz"),
        ] {
            assert_eq!(same_len_eq(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_node_finds_exactly_its_children(
            keys in proptest::collection::btree_set("[a-cA.]{0,20}", 0..80),
            probes in proptest::collection::vec("[a-cA.]{0,20}", 0..40),
        ) {
            let mut node = TrieNode::default();
            for (id, k) in keys.iter().enumerate() {
                node.insert(k.as_bytes(), id as u32);
            }
            for (id, k) in keys.iter().enumerate() {
                proptest::prop_assert_eq!(node.get(k.as_bytes()), Some(id as u32));
            }
            for p in &probes {
                let want = keys.iter().position(|k| k == p).map(|i| i as u32);
                proptest::prop_assert_eq!(node.get(p.as_bytes()), want);
            }
        }
    }

    #[test]
    fn interning_is_idempotent_and_builds_the_trie() {
        let mut t = FieldTable::new();
        let a = t.intern("userIdentity.type");
        let b = t.intern("userIdentity.arn");
        assert_eq!(t.intern("userIdentity.type"), a);
        assert_ne!(a, b);
        let ui = t.trie.lookup(0, "userIdentity").unwrap();
        assert!(!t.trie.nodes[ui as usize].terminal);
        let ty = t.trie.lookup(ui, "type").unwrap();
        assert!(t.trie.nodes[ty as usize].terminal);
        // The whole dotted name is also a top-level key, as the oracle reads it.
        assert!(t.trie.lookup(0, "userIdentity.type").is_some());
        assert_eq!(t.path(b), "userIdentity.arn");
    }
}
