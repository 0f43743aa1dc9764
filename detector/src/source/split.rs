//! Inputs cut into pieces that decode independently, for parallel replay.
//!
//! A plain local file is cut by byte offset: piece `i` holds the lines that start in its range,
//! so each worker reads its own range with positioned reads and no line is split or read twice.
//! A compressed file or an S3 object (small, as CloudTrail's log files are) is one piece. What
//! can be neither cut nor held whole — standard input, a large compressed file or object, a file
//! that opens with a document over many lines — is read by the thread that keeps state, at its
//! turn, exactly as a one-thread replay reads it.

use super::file::{open, reading, Input};
use std::fs::File;
use std::io::{self, BufRead, Read};
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
    /// A whole input, read in order by the thread that keeps state.
    InOrder(Box<dyn BufRead + Send>),
    /// The input could not be opened.
    Unreadable(io::Error),
}

/// The pieces of `inputs`, opened lazily in order (S3 objects are fetched in listing order).
/// `chunk` is the size of a plain file's pieces, in bytes.
pub fn split(
    inputs: &[Input],
    progress: Arc<AtomicU64>,
    chunk: u64,
) -> impl Iterator<Item = Piece> + Send + '_ {
    let chunk = chunk.max(1);
    inputs.iter().enumerate().flat_map(move |(i, input)| {
        let parts = match parts(input, &progress, chunk) {
            Ok(parts) => parts,
            Err(e) => vec![Part::Unreadable(e)],
        };
        let n = parts.len();
        parts.into_iter().enumerate().map(move |(k, part)| Piece {
            input: i,
            last: k + 1 == n,
            part,
        })
    })
}

fn parts(input: &Input, progress: &Arc<AtomicU64>, chunk: u64) -> io::Result<Vec<Part>> {
    if let Input::File(path) = input {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            // A pipe or a device (`<(zcat ...)`): read once, in order, from this handle.
            return Ok(vec![Part::InOrder(reading(
                Box::new(file),
                progress.clone(),
            )?)]);
        }
        let size = meta.len();
        let mut head = vec![0; PEEK.min(size as usize)];
        let n = read_at_most(&file, 0, &mut head)?;
        head.truncate(n);
        if !head.starts_with(&[0x1f, 0x8b]) && plain_lines(&head) {
            let file = Arc::new(file);
            let count = size.div_ceil(chunk).max(1);
            return Ok((0..count)
                .map(|k| {
                    Part::Lines(Lines {
                        file: file.clone(),
                        pos: k * chunk,
                        end: ((k + 1) * chunk).min(size),
                        skip_first: k > 0,
                        done: false,
                        progress: progress.clone(),
                    })
                })
                .collect());
        }
    }
    let whole = !matches!(input, Input::Stdin) && input.size().is_some_and(|s| s <= WHOLE_UP_TO);
    let reader = open(input, progress.clone())?;
    Ok(vec![if whole {
        Part::Whole(reader)
    } else {
        Part::InOrder(reader)
    }])
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
            .map(|p| match p.part {
                Part::Lines(mut l) => {
                    let mut out = Vec::new();
                    l.read_to_end(&mut out).unwrap();
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
        let parts: Vec<Piece> = split(&inputs, Arc::default(), 4).collect();
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
        let mut parts: Vec<Piece> = split(&inputs, Arc::default(), 4).collect();
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
    fn a_missing_file_is_one_unreadable_piece() {
        let inputs = vec![Input::File("/nonexistent/trailwatch".into())];
        let parts: Vec<Piece> = split(&inputs, Arc::default(), 4).collect();
        assert_eq!(parts.len(), 1);
        assert!(matches!(parts[0].part, Part::Unreadable(_)));
    }
}
