//! Hash maps and sets whose keys come from events (ids, field values, group keys).
//!
//! Whoever writes a CloudTrail field (a user name, a user agent, an injected record's eventID)
//! chooses these keys, and the hashes of unkeyed functions (FxHash, xxh3) can be computed
//! offline: keys made to share a bucket would turn every lookup into a scan of them all. These
//! maps place keys with a per-process random seed (foldhash, hashbrown's default), which costs
//! about what FxHash does. Snapshots must not show the seed (the same state is the same
//! snapshot in any process), so maps that are saved are written in key order ([`sorted`]).

/// A map keyed by data from events, placed with a per-process random seed.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A set of data from events, placed with a per-process random seed.
pub type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Serde's `with` for a [`Map`]: written in key order, read as any map.
pub mod sorted {
    use super::Map;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::hash::Hash;

    /// Writes the entries in key order.
    pub fn serialize<S, K, V>(map: &Map<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        K: Serialize + Ord,
        V: Serialize,
    {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        s.collect_map(entries)
    }

    /// Reads a map written by [`serialize`] (or in any order).
    pub fn deserialize<'de, D, K, V>(d: D) -> Result<Map<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
    {
        Map::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Saved {
        #[serde(with = "sorted")]
        counts: Map<String, u32>,
    }

    #[test]
    fn a_saved_map_does_not_show_the_seed() {
        // Two maps of the same entries, each with its own seed and filled in another order.
        let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
        let a: Map<String, u32> = keys.iter().map(|k| (k.clone(), 1)).collect();
        let b: Map<String, u32> = keys.iter().rev().map(|k| (k.clone(), 1)).collect();
        let text = |counts| serde_json::to_string(&Saved { counts }).unwrap();
        let (ta, tb) = (text(a), text(b));
        assert_eq!(ta, tb);
        assert!(ta.starts_with(r#"{"counts":{"user-0":1,"user-1":1,"user-10":1,"#));
        let back: Saved = serde_json::from_str(&ta).unwrap();
        assert_eq!(back.counts.len(), 200);
        assert_eq!(back.counts["user-199"], 1);
    }

    #[test]
    fn keys_are_placed_differently_by_each_map() {
        use std::hash::BuildHasher;
        // The seed differs between maps, so a key's hash, which decides its bucket, is not
        // something one can compute from the key alone.
        let a = foldhash::fast::RandomState::default();
        let b = foldhash::fast::RandomState::default();
        let differ = (0..64u64)
            .filter(|k| a.hash_one(k) != b.hash_one(k))
            .count();
        assert!(differ > 60, "{differ} of 64 hashes differ");
    }
}
