//! Alerts written in event-time order. Replay makes them in processing order: a roll-up when
//! its window closes, a correlation after the lateness, and log files need not arrive sorted.
//! So they are held and sorted by when the incident began (`first_seen`, then alert before
//! roll-up before storm, then id); past a memory budget sorted runs spill to temporary files
//! and are merged at the end, so a year of alerts needs no more memory than a day's.

use super::{Alert, AlertKind};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

/// Bytes of held lines before a run spills to disk.
pub const BUDGET: usize = 64 << 20;

/// The sort key: first-seen time, kind, alert id.
type Key = (Box<str>, u8, Box<str>);

struct Entry {
    key: Key,
    line: Box<[u8]>,
}

/// Alert lines held to be written in event-time order.
pub struct Ordered {
    held: Vec<Entry>,
    bytes: usize,
    budget: usize,
    runs: Vec<std::fs::File>,
}

impl Ordered {
    /// Holds up to `budget` bytes in memory before spilling a sorted run.
    pub fn new(budget: usize) -> Self {
        Ordered {
            held: Vec::new(),
            bytes: 0,
            budget,
            runs: Vec::new(),
        }
    }

    /// Holds `line` (the rendered alert, without a newline) until [`Ordered::finish`].
    pub fn push(&mut self, alert: &Alert, line: &[u8]) -> io::Result<()> {
        let kind = match alert.kind {
            AlertKind::Alert => 0,
            AlertKind::Rollup => 1,
            AlertKind::Storm => 2,
        };
        let key: Key = (
            alert.first_seen.as_deref().unwrap_or_default().into(),
            kind,
            alert.alert_id.as_str().into(),
        );
        self.bytes += line.len() + key.0.len() + key.2.len() + 64;
        self.held.push(Entry {
            key,
            line: line.into(),
        });
        if self.bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the held lines, sorted, to a temporary file.
    fn spill(&mut self) -> io::Result<()> {
        self.held.sort_by(|a, b| a.key.cmp(&b.key));
        let mut file = BufWriter::new(tempfile::tempfile()?);
        for e in self.held.drain(..) {
            for part in [e.key.0.as_bytes(), &[e.key.1], e.key.2.as_bytes(), &e.line] {
                file.write_all(&(part.len() as u32).to_le_bytes())?;
                file.write_all(part)?;
            }
        }
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        self.runs.push(file);
        self.bytes = 0;
        Ok(())
    }

    /// Writes every line, in order, each followed by a newline.
    pub fn finish(mut self, out: &mut dyn Write) -> io::Result<()> {
        self.held.sort_by(|a, b| a.key.cmp(&b.key));
        if self.runs.is_empty() {
            for e in &self.held {
                out.write_all(&e.line)?;
                out.write_all(b"\n")?;
            }
            return Ok(());
        }
        let mut sources: Vec<Source> = self
            .runs
            .into_iter()
            .map(|f| Source::Run(BufReader::new(f)))
            .collect();
        sources.push(Source::Memory(self.held.into_iter()));
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(e) = s.next()? {
                heap.push(Reverse((e.key, i, e.line)));
            }
        }
        while let Some(Reverse((_, i, line))) = heap.pop() {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
            if let Some(e) = sources[i].next()? {
                heap.push(Reverse((e.key, i, e.line)));
            }
        }
        Ok(())
    }
}

enum Source {
    Run(BufReader<std::fs::File>),
    Memory(std::vec::IntoIter<Entry>),
}

impl Source {
    fn next(&mut self) -> io::Result<Option<Entry>> {
        let r = match self {
            Source::Memory(it) => return Ok(it.next()),
            Source::Run(r) => r,
        };
        let Some(time) = part(r)? else {
            return Ok(None);
        };
        let missing = || io::Error::new(io::ErrorKind::UnexpectedEof, "truncated alert run");
        let kind = part(r)?.ok_or_else(missing)?;
        let id = part(r)?.ok_or_else(missing)?;
        let line = part(r)?.ok_or_else(missing)?;
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned().into_boxed_str();
        Ok(Some(Entry {
            key: (text(time), kind.first().copied().unwrap_or(0), text(id)),
            line: line.into(),
        }))
    }
}

/// One length-prefixed part, or `None` at the end of the run.
fn part(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn alert(t: u32, kind: AlertKind, id: u32) -> Alert {
        let time = format!("2026-01-01T00:{:02}:{:02}Z", t / 60, t % 60);
        Alert {
            kind,
            ..Alert::bare("r", &format!("{id:04}"), &time)
        }
    }

    proptest! {
        /// Whatever the arrival order and however small the budget (many spilled runs), the
        /// output is every line once, sorted by (first seen, kind, id).
        #[test]
        fn output_is_sorted_and_complete(
            alerts in prop::collection::vec((0u32..600, 0u8..3, 0u32..50), 0..200),
            budget in prop_oneof![Just(0usize), Just(500), Just(BUDGET)],
        ) {
            let kinds = [AlertKind::Alert, AlertKind::Rollup, AlertKind::Storm];
            let mut o = Ordered::new(budget);
            let mut want = Vec::new();
            for (t, k, id) in &alerts {
                let a = alert(*t, kinds[*k as usize], *id);
                let line = format!("{} {} {}", a.first_seen.as_deref().unwrap(), k, a.alert_id);
                o.push(&a, line.as_bytes()).unwrap();
                want.push(line);
            }
            let mut out = Vec::new();
            o.finish(&mut out).unwrap();
            want.sort();
            let got: Vec<String> = String::from_utf8(out).unwrap().lines().map(String::from).collect();
            prop_assert_eq!(got, want);
        }
    }
}
