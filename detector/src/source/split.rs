//! Inputs cut into pieces that decode independently, for parallel replay.
//!
//! A plain local file is cut by byte offset: piece `i` holds the lines that start in its range,
//! so each worker reads its own range with positioned reads and no line is split or read twice.
//! A compressed file or an S3 object (small, as CloudTrail's log files are) is one piece. What
//! can be neither cut nor held whole — standard input, a large compressed file or object, a file
//! that opens with a document over many lines — is read by the thread that keeps state, at its
//! turn, exactly as a one-thread replay reads it.

use super::file::{open, read_whole, reading, reading_bytes, Input, GZIP_MAGIC, READ_WHOLE};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, Read, Seek};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Compressed inputs up to this size (as stored) are decoded whole by one worker, whose results
/// are then held until their turn; larger ones are read in order.
const WHOLE_UP_TO: u64 = 8 << 20;
/// Bytes looked at to tell a JSON-lines file from one document over many lines.
const PEEK: usize = 64 << 10;

/// A part of one input.
pub struct Piece {
    /// Index of the input in the list given to [`split`].
    pub input: usize,
    /// The input's last piece.
    pub last: bool,
    /// What to read.
    pub part: Part,
}

/// What a [`Piece`] reads.
pub enum Part {
    /// The lines of a plain file that start within `start..end`, read with positioned reads.
    Lines(Lines),
    /// A whole input, from its start, decoded by one worker.
    Whole(Box<dyn BufRead + Send>),
    /// A small file's bytes, read when it was opened (no handle is kept while it waits in a
    /// group): decoded from its start by one worker.
    Small(Small),
    /// A whole input, read in order by the thread that keeps state.
    InOrder(Box<dyn BufRead + Send>),
    /// The input could not be opened.
    Unreadable(io::Error),
}

/// A small file's bytes, with the progress counter its reading adds to.
pub struct Small {
    bytes: Vec<u8>,
    progress: Arc<AtomicU64>,
}

impl Small {
    /// A reader of the file's bytes, gunzipped when they are gzip.
    pub fn reader(self) -> Box<dyn BufRead + Send> {
        reading_bytes(self.bytes, &self.progress)
    }
}

/// Small inputs are grouped up to this many stored bytes: a worker takes them together, so the
/// hand-over of a piece is not paid for every log file (CloudTrail writes many of a few records).
const GROUP_BYTES: u64 = READ_WHOLE;
/// ...and up to this many inputs.
pub const GROUP_INPUTS: usize = 64;

/// The pieces of `inputs`, opened lazily in order (S3 objects are fetched in listing order),
/// handed out a few at a time: each item is decoded by one worker, its pieces in turn. Small
/// inputs, whole, go together (up to [`GROUP_BYTES`], [`GROUP_INPUTS`]); any other piece alone.
/// `chunk` is the size of a plain file's pieces, in bytes.
pub fn split(
    inputs: &[Input],
    progress: Arc<AtomicU64>,
    chunk: u64,
) -> impl Iterator<Item = Vec<Piece>> + Send + '_ {
    Pieces {
        inputs,
        next: 0,
        opened: VecDeque::new(),
        progress,
        chunk: chunk.max(1),
    }
}

/// The iterator behind [`split`].
struct Pieces<'a> {
    inputs: &'a [Input],
    /// The next input to open.
    next: usize,
    /// Pieces of opened inputs not handed out yet, with whether each may join a group and its
    /// stored size.
    opened: VecDeque<(Piece, Option<u64>)>,
    progress: Arc<AtomicU64>,
    chunk: u64,
}

impl Pieces<'_> {
    /// Opens the next input into `opened`; `false` when none is left.
    fn open_next(&mut self) -> bool {
        let Some(input) = self.inputs.get(self.next) else {
            return false;
        };
        let i = self.next;
        self.next += 1;
        let (parts, size) = match parts(input, &self.progress, self.chunk) {
            Ok(found) => found,
            Err(e) => (vec![Part::Unreadable(e)], 0),
        };
        let n = parts.len();
        for (k, part) in parts.into_iter().enumerate() {
            // Only what holds no open file (a group of them would hold GROUP_INPUTS each).
            let small = n == 1 && matches!(part, Part::Small(_) | Part::Unreadable(_));
            let piece = Piece {
                input: i,
                last: k + 1 == n,
                part,
            };
            self.opened.push_back((piece, small.then_some(size)));
        }
        true
    }
}

impl Iterator for Pieces<'_> {
    type Item = Vec<Piece>;

    fn next(&mut self) -> Option<Vec<Piece>> {
        let mut group = Vec::new();
        let mut bytes = 0;
        while group.len() < GROUP_INPUTS {
            if self.opened.is_empty() && !self.open_next() {
                break;
            }
            let size = self.opened.front().and_then(|(_, small)| *small);
            match size {
                Some(size) if group.is_empty() || bytes + size <= GROUP_BYTES => bytes += size,
                // A piece that goes alone, or a small one that starts the next group.
                _ => {
                    if group.is_empty() {
                        group.extend(self.opened.pop_front().map(|(piece, _)| piece));
                    }
                    break;
                }
            }
            group.extend(self.opened.pop_front().map(|(piece, _)| piece));
        }
        (!group.is_empty()).then_some(group)
    }
}

/// The parts of one input, and its size as stored (0 when unknown).
fn parts(input: &Input, progress: &Arc<AtomicU64>, chunk: u64) -> io::Result<(Vec<Part>, u64)> {
    if let Input::File(path) = input {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            // A pipe or a device (`<(zcat ...)`): read once, in order, from this handle.
            let reader = reading(Box::new(file), None, progress.clone())?;
            return Ok((vec![Part::InOrder(reader)], 0));
        }
        let size = meta.len();
        // A small file that is one piece anyway (gzip cannot be cut) is read whole and held as
        // bytes, as a one-thread replay reads it when it opens it (source::file::open).
        if size <= READ_WHOLE && (size <= chunk || starts_gzip(&file)?) {
            let small = Small {
                bytes: read_whole(&file, size)?,
                progress: progress.clone(),
            };
            return Ok((vec![Part::Small(small)], size));
        }
        let mut head = vec![0; PEEK.min(size as usize)];
        let n = read_at_most(&file, 0, &mut head)?;
        head.truncate(n);
        if !head.starts_with(&[0x1f, 0x8b]) && plain_lines(&head) {
            let file = Arc::new(file);
            let count = size.div_ceil(chunk).max(1);
            let lines = (0..count).map(|k| {
                Part::Lines(Lines {
                    file: file.clone(),
                    pos: k * chunk,
                    end: ((k + 1) * chunk).min(size),
                    skip_first: k > 0,
                    done: false,
                    progress: progress.clone(),
                })
            });
            return Ok((lines.collect(), size));
        }
        // Read from this handle, not opened twice (Windows' positioned reads move it).
        let mut file = file;
        file.rewind()?;
        let reader = reading(Box::new(file), Some(size), progress.clone())?;
        return Ok((vec![whole_or_in_order(reader, size)], size));
    }
    let size = input.size();
    let reader = open(input, progress.clone())?;
    Ok(match size {
        Some(size) => (vec![whole_or_in_order(reader, size)], size),
        None => (vec![Part::InOrder(reader)], 0),
    })
}

/// Whether `file` opens with gzip's magic number; the handle is left at the file's start.
fn starts_gzip(file: &File) -> io::Result<bool> {
    let mut head = [0; 2];
    let n = read_at_most(file, 0, &mut head)?;
    // Windows' positioned reads move the handle.
    #[cfg(not(unix))]
    (&*file).rewind()?;
    Ok(head[..n] == *GZIP_MAGIC)
}

fn whole_or_in_order(reader: Box<dyn BufRead + Send>, size: u64) -> Part {
    if size <= WHOLE_UP_TO {
        Part::Whole(reader)
    } else {
        Part::InOrder(reader)
    }
}

/// Whether a file starting with `head` can be cut at line starts: its first non-blank line is
/// whole within `head` and does not open a document over many lines.
fn plain_lines(head: &[u8]) -> bool {
    let mut rest = head;
    while let Some(end) = memchr::memchr(b'\n', rest) {
        let line = &rest[..end];
        if !line.iter().all(u8::is_ascii_whitespace) {
            return !super::file::starts_multiline_document(line);
        }
        rest = &rest[end + 1..];
    }
    false
}

fn read_at_most(file: &File, at: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match pread(file, &mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// One positioned read, retried when a signal interrupts it.
fn pread(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    loop {
        #[cfg(unix)]
        let read = std::os::unix::fs::FileExt::read_at(file, buf, at);
        #[cfg(windows)]
        let read = std::os::windows::fs::FileExt::seek_read(file, buf, at);
        match read {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// The lines of a file that start within `pos..end`: a reader from the first line start at or
/// after `pos` (the file's start for the first piece) through the end of the line that holds
/// byte `end - 1`.
pub struct Lines {
    file: Arc<File>,
    pos: u64,
    end: u64,
    /// Bytes up to the first line start must be skipped (all pieces but the first).
    skip_first: bool,
    done: bool,
    progress: Arc<AtomicU64>,
}

impl Lines {
    /// Moves to the first line that starts at or after the piece's start: past the first
    /// newline at or after `pos - 1`.
    fn skip_to_line_start(&mut self) -> io::Result<()> {
        self.skip_first = false;
        let mut at = self.pos - 1;
        let mut buf = [0u8; 4096];
        loop {
            let n = read_at_most(&self.file, at, &mut buf)?;
            self.progress.fetch_add(n as u64, Ordering::Relaxed);
            if n == 0 {
                self.done = true;
                return Ok(());
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                self.pos = at + i as u64 + 1;
                // A line that starts at or after `end` is the next piece's.
                self.done = self.pos >= self.end;
                return Ok(());
            }
            at += n as u64;
        }
    }
}

impl Read for Lines {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.skip_first && !self.done {
            self.skip_to_line_start()?;
        }
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        // Up to byte `end - 1`, read as it is; past it, only to the end of that line.
        let before = self.end.saturating_sub(self.pos);
        let want = match before {
            0 => buf.len(),
            b => buf.len().min(usize::try_from(b).unwrap_or(usize::MAX)),
        };
        let mut n = pread(&self.file, &mut buf[..want], self.pos)?;
        if n == 0 {
            self.done = true;
        } else if before == 0 {
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                n = i + 1;
                self.done = true;
            }
        } else if n as u64 == before && buf[n - 1] == b'\n' {
            // The range ends exactly at a line's end.
            self.done = true;
        }
        self.pos += n as u64;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pieces_of(text: &[u8], chunk: u64) -> Vec<Vec<u8>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let inputs = vec![Input::File(f.path().to_path_buf())];
        split(&inputs, Arc::default(), chunk)
            .flatten()
            .map(|p| match p.part {
                Part::Lines(mut l) => {
                    let mut out = Vec::new();
                    l.read_to_end(&mut out).unwrap();
                    out
                }
                // Within one chunk: held whole.
                Part::Small(small) => {
                    let mut out = Vec::new();
                    small.reader().read_to_end(&mut out).unwrap();
                    out
                }
                _ => panic!("not cut into lines"),
            })
            .collect()
    }

    #[test]
    fn every_line_is_in_exactly_one_piece_whatever_the_chunk_size() {
        let mut text = Vec::new();
        for i in 0..40 {
            text.extend_from_slice(format!("{{\"eventID\":\"{i}\"}}").as_bytes());
            text.extend_from_slice(b"\n".repeat(i % 3).as_slice());
            if i % 7 == 0 {
                text.extend_from_slice(b"{\"long\":\"");
                text.extend_from_slice(&b"x".repeat(300));
                text.extend_from_slice(b"\"}\n");
            }
        }
        text.extend_from_slice(b"{\"last\":\"no newline\"}");
        for chunk in [1, 2, 3, 7, 16, 17, 64, 100, 333, 4096, 1 << 20] {
            let pieces = pieces_of(&text, chunk);
            assert_eq!(pieces.concat(), text, "chunk {chunk}");
            let filled: Vec<&Vec<u8>> = pieces.iter().filter(|p| !p.is_empty()).collect();
            for p in &filled[..filled.len() - 1] {
                assert!(p.ends_with(b"\n"), "chunk {chunk}: a split line");
            }
        }
    }

    #[test]
    fn a_file_that_opens_a_document_over_many_lines_is_not_cut() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"{\"Records\": [\n{\"eventID\":\"a\"}\n]}\n")
            .unwrap();
        let inputs = vec![Input::File(f.path().to_path_buf())];
        let parts: Vec<Piece> = split(&inputs, Arc::default(), 4).flatten().collect();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].last);
        assert!(matches!(parts[0].part, Part::Whole(_)));
    }

    #[cfg(unix)]
    #[test]
    fn a_pipe_is_read_in_order_not_held_whole() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "{\"eventID\":\"a\"}\n"))
        };
        let inputs = vec![Input::File(fifo)];
        let mut parts: Vec<Piece> = split(&inputs, Arc::default(), 4).flatten().collect();
        assert_eq!(parts.len(), 1);
        let Part::InOrder(reader) = &mut parts[0].part else {
            panic!("a pipe must be read in order");
        };
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"eventID\":\"a\"}\n");
        writer.join().unwrap().unwrap();
    }

    #[test]
    fn small_inputs_go_together_in_order_and_large_ones_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut inputs = Vec::new();
        for i in 0..150 {
            let path = dir.path().join(format!("{i:03}.json"));
            // Input 70 is over the group's budget; 90 is missing.
            let size = if i == 70 { 200 << 10 } else { 1000 };
            let line = format!("{{\"eventID\":\"{}\"}}\n", "x".repeat(size));
            if i != 90 {
                std::fs::write(&path, line).unwrap();
            }
            inputs.push(Input::File(path));
        }
        let groups: Vec<Vec<Piece>> = split(&inputs, Arc::default(), 1 << 20).collect();
        let order: Vec<usize> = groups.iter().flatten().map(|p| p.input).collect();
        assert_eq!(
            order,
            (0..150).collect::<Vec<_>>(),
            "every input once, in order"
        );
        for g in &groups {
            assert!(g.len() <= GROUP_INPUTS);
            let bytes: u64 = g.iter().map(|p| inputs[p.input].size().unwrap_or(0)).sum();
            assert!(
                g.len() == 1 || bytes <= GROUP_BYTES,
                "{bytes} bytes in a group"
            );
            assert!(g.iter().all(|p| p.last));
        }
        let alone = groups
            .iter()
            .find(|g| g.iter().any(|p| p.input == 70))
            .unwrap();
        assert_eq!(alone.len(), 1, "a large input goes alone");
        assert!(
            groups.len() < 10,
            "{} groups for 150 small inputs",
            groups.len()
        );
        let missing = groups.iter().flatten().find(|p| p.input == 90).unwrap();
        assert!(matches!(missing.part, Part::Unreadable(_)));
        let small = groups
            .iter()
            .flatten()
            .filter(|p| matches!(p.part, Part::Small(_)));
        assert_eq!(
            small.count(),
            148,
            "small files are held as bytes, not open files"
        );
    }

    #[test]
    fn a_missing_file_is_one_unreadable_piece() {
        let inputs = vec![Input::File("/nonexistent/trailwatch".into())];
        let parts: Vec<Piece> = split(&inputs, Arc::default(), 4).flatten().collect();
        assert_eq!(parts.len(), 1);
        assert!(matches!(parts[0].part, Part::Unreadable(_)));
    }
}
