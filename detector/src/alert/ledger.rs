//! The ledger of published alert ids: what makes "no duplicates out" survive a crash.
//!
//! After the sinks confirm alerts and before the source messages are deleted, their ids are
//! appended and synced here. A restart reads the most recent ids back, so messages redelivered
//! after a crash (never deleted) do not publish the same alert again. The only gap left is a
//! crash between the sink's confirmation and the sync; FIFO topics close it with their
//! deduplication id (the alert id).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Recently published alert ids, remembered in memory and (optionally) on disk.
///
/// In memory an id is its 128-bit hash under a per-process seed (16 bytes, not a string
/// twice): a pipeline remembers up to a million hit and alert ids per stream or partition, and
/// as strings they took about 200 bytes each. Two ids that differ share a hash with odds of
/// about 2^-128 a pair. (XXH3 is not a keyed function against chosen input, but ids are cut
/// from SHA-256 digests: nobody chooses their bytes; the seed only keeps the set's layout from
/// being computed offline.)
#[derive(Debug)]
pub struct Ledger {
    ids: crate::keyed::Set<u128>,
    order: VecDeque<u128>,
    /// With a file: the remembered ids' text, oldest first, to compact the file with.
    texts: VecDeque<String>,
    capacity: usize,
    path: Option<PathBuf>,
    file: Option<File>,
    written: usize,
}

/// An id's hash, seeded per process.
fn key(id: &str) -> u128 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(0x7472_6169_6c77_6174_u64)
    });
    xxhash_rust::xxh3::xxh3_128_with_seed(id.as_bytes(), seed)
}

impl Ledger {
    /// A ledger of at most `capacity` ids, read back from and appended to `path` if given.
    pub fn open(path: Option<&Path>, capacity: usize) -> std::io::Result<Ledger> {
        let mut ledger = Ledger::in_memory(capacity);
        ledger.path = path.map(Path::to_path_buf);
        if let Some(p) = path {
            if p.exists() {
                for line in BufReader::new(File::open(p)?).lines() {
                    let line = line?;
                    if !line.is_empty() {
                        ledger.insert(&line, true);
                        ledger.written += 1;
                    }
                }
            }
            ledger.file = Some(OpenOptions::new().create(true).append(true).open(p)?);
        }
        Ok(ledger)
    }

    /// A ledger kept in memory only, of at most `capacity` ids.
    pub fn in_memory(capacity: usize) -> Ledger {
        Ledger {
            ids: Default::default(),
            order: VecDeque::new(),
            texts: VecDeque::new(),
            capacity: capacity.max(1),
            path: None,
            file: None,
            written: 0,
        }
    }

    /// Whether recorded ids are appended to a file (and survive a restart).
    pub fn is_durable(&self) -> bool {
        self.file.is_some()
    }

    /// Whether an id was recorded (and not yet forgotten).
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(&key(id))
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Remembers `id` in memory only (a ledger without a file); whether it was new. One hash,
    /// no allocation but the set's own: the pipeline calls it for every hit and alert.
    pub fn remember(&mut self, id: &str) -> bool {
        debug_assert!(self.file.is_none(), "a durable ledger records, then syncs");
        let k = key(id);
        if self.ids.contains(&k) {
            return false;
        }
        self.insert_key(k, id, false);
        true
    }

    /// Remembers `id` (its text too, with a file), forgetting the oldest beyond the capacity.
    fn insert(&mut self, id: &str, keep_text: bool) {
        self.insert_key(key(id), id, keep_text);
    }

    fn insert_key(&mut self, k: u128, id: &str, keep_text: bool) {
        if self.ids.insert(k) {
            self.order.push_back(k);
            if keep_text {
                self.texts.push_back(id.to_string());
            }
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
                self.texts.pop_front();
            }
        }
    }

    /// Records published ids, synced to disk before returning.
    pub fn record<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> std::io::Result<()> {
        let mut fresh: Vec<(u128, &str)> = Vec::new();
        let mut batch = crate::keyed::Set::default();
        for id in ids {
            let k = key(id);
            if !self.ids.contains(&k) && batch.insert(k) {
                fresh.push((k, id));
            }
        }
        // Synced before remembered: after a failed write the ids are still new, so the retry
        // (`Handled::confirm` keeps them pending) writes them instead of finding them known.
        if let (Some(f), false) = (self.file.as_mut(), fresh.is_empty()) {
            let mut text = String::new();
            for (_, id) in &fresh {
                text.push_str(id);
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            self.written += fresh.len();
        }
        let durable = self.file.is_some();
        for (k, id) in fresh {
            self.insert_key(k, id, durable);
        }
        if self.written > 2 * self.capacity {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with only the remembered ids.
    fn compact(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let text: String = self.texts.iter().map(|id| format!("{id}\n")).collect();
        crate::durable::save_atomically(&path, text.as_bytes())?;
        self.file = Some(OpenOptions::new().append(true).open(&path)?);
        self.written = self.order.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("published");
        let mut l = Ledger::open(Some(&path), 3).unwrap();
        l.record(["a", "b"]).unwrap();
        l.record(["b", "c", "d"]).unwrap();
        assert!(
            !l.contains("a") && l.contains("d"),
            "oldest forgotten beyond capacity"
        );
        let again = Ledger::open(Some(&path), 3).unwrap();
        assert!(again.contains("b") && again.contains("c") && again.contains("d"));
        assert_eq!(again.len(), 3);
        let mut l = again;
        for i in 0..10 {
            l.record([format!("x{i}").as_str()]).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 6, "compacted: {lines}");
        let reopened = Ledger::open(Some(&path), 3).unwrap();
        assert!(["x7", "x8", "x9"].iter().all(|id| reopened.contains(id)));
        assert!(!reopened.contains("x6") && reopened.len() == 3);
        let memory = Ledger::open(None, 2).unwrap();
        assert!(memory.is_empty());
    }

    /// An id whose write failed is not remembered, so the retry writes it (before, it was
    /// remembered first: the retry found it known, wrote nothing and reported success, and a
    /// restart forgot it).
    #[cfg(target_os = "linux")]
    #[test]
    fn an_id_whose_write_failed_is_not_taken_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("published");
        let mut l = Ledger::open(Some(&path), 10).unwrap();
        l.record(["a"]).unwrap();
        l.file = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        assert!(l.record(["b", "a"]).is_err(), "a full disk is an error");
        assert!(!l.contains("b") && l.contains("a"));
        l.file = Some(OpenOptions::new().append(true).open(&path).unwrap());
        l.record(["b"]).unwrap();
        let reopened = Ledger::open(Some(&path), 10).unwrap();
        assert!(reopened.contains("a") && reopened.contains("b"));
    }

    /// In memory only hashes are kept (no text), ids that differ stay apart, and the oldest
    /// is forgotten beyond the capacity.
    #[test]
    fn an_in_memory_ledger_keeps_hashes_and_forgets_the_oldest() {
        let mut l = Ledger::in_memory(2);
        l.record(["hit/a", "a"]).unwrap();
        assert!(l.contains("a") && l.contains("hit/a"));
        assert!(!l.contains("hit/b") && !l.contains("") && !l.contains("A"));
        l.record(["b", "b"]).unwrap();
        assert!(!l.contains("hit/a") && l.contains("a") && l.contains("b"));
        assert_eq!(l.len(), 2);
        assert!(l.texts.is_empty());
        assert!(!l.remember("b") && l.remember("c") && !l.remember("c"));
        assert!(!l.contains("a") && l.contains("b") && l.contains("c"));
        let many: Vec<String> = (0..10_000).map(|i| format!("{i:032x}")).collect();
        let mut big = Ledger::in_memory(10_000);
        big.record(many.iter().map(String::as_str)).unwrap();
        assert_eq!(big.len(), 10_000, "no two of 10,000 ids share a key");
    }
}
