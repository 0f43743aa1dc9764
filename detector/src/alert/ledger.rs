//! The ledger of published alert ids: what makes "no duplicates out" survive a crash.
//!
//! After the sinks confirm alerts and before the source messages are deleted, their ids are
//! appended and synced here. A restart reads the most recent ids back, so messages redelivered
//! after a crash (never deleted) do not publish the same alert again. The only gap left is a
//! crash between the sink's confirmation and the sync; FIFO topics close it with their
//! deduplication id (the alert id).

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Recently published alert ids, remembered in memory and (optionally) on disk.
#[derive(Debug)]
pub struct Ledger {
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
    path: Option<PathBuf>,
    file: Option<File>,
    written: usize,
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
                        ledger.insert(line);
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
            ids: HashSet::new(),
            order: VecDeque::new(),
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

    /// Whether an alert id was published.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Records published ids, synced to disk before returning.
    pub fn record<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> std::io::Result<()> {
        let mut text = String::new();
        for id in ids {
            if self.file.is_some() && !self.ids.contains(id) {
                text.push_str(id);
                text.push('\n');
                self.written += 1;
            }
            self.insert(id.to_string());
        }
        if let (Some(f), false) = (self.file.as_mut(), text.is_empty()) {
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
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
        let text: String = self.order.iter().map(|id| format!("{id}\n")).collect();
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
        let memory = Ledger::open(None, 2).unwrap();
        assert!(memory.is_empty());
    }
}
