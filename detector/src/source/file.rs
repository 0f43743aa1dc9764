//! Historical input: files, directories (the S3 `AWSLogs/...` layout included), `.gz`, stdin.
//!
//! A file is JSON lines (one document a line, streamed) or one JSON document (a CloudTrail log
//! file, an array, a pretty-printed record). Every document goes through the same [`Decoder`]
//! as live messages. A bad line is reported with its file and line and reading goes on.

use crate::event::{DecodeError, Decoder, Event};
use flate2::bufread::MultiGzDecoder;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Where a record or an error came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file path, or `-` for stdin.
    pub source: String,
    /// 1-based line of the document in the (decompressed) file.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// Something in the input that could not be read, with where it was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct InputError {
    /// Where.
    pub location: Location,
    /// What.
    pub kind: InputErrorKind,
}

impl InputError {
    /// An input that could not be opened or read on (line 0: no record of it was reached).
    pub fn unreadable(input: &Input, e: &io::Error) -> InputError {
        InputError {
            location: Location {
                source: input.name(),
                line: 0,
            },
            kind: InputErrorKind::Io(e.to_string()),
        }
    }
}

/// What went wrong reading input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputErrorKind {
    /// A document or record could not be decoded.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The file could not be read (I/O error, corrupt gzip); the rest of it is skipped.
    #[error("read error, rest of file skipped: {0}")]
    Io(String),
}

/// One input to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file.
    File(PathBuf),
    /// Standard input.
    Stdin,
    /// An object in S3.
    S3(super::s3::Object),
}

impl Input {
    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            // `display` formats through a lossy UTF-8 iterator: dearer than the check, per file.
            Input::File(p) => p
                .to_str()
                .map_or_else(|| p.display().to_string(), str::to_owned),
            Input::Stdin => "-".into(),
            Input::S3(o) => format!("s3://{}/{}", o.bucket, o.key),
        }
    }

    /// The size on disk, when known.
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
            Input::S3(o) => Some(o.size),
        }
    }
}

/// Expands arguments into inputs: `-` is stdin, `s3://bucket/prefix` the CloudTrail files
/// under it, directories are walked recursively in name order for CloudTrail files (`.json`,
/// `.jsonl`, `.ndjson`, each optionally `.gz`), skipping hidden entries and `CloudTrail-Digest`
/// folders (digests are not events).
pub fn expand_inputs(args: &[PathBuf]) -> Result<Vec<Input>, String> {
    expand_selected(args, &super::select::Selection::default())
}

/// [`expand_inputs`], leaving out the CloudTrail files (and S3 prefixes) whose names say they
/// hold none of the events `selection` asks for.
pub fn expand_selected(
    args: &[PathBuf],
    selection: &super::select::Selection,
) -> Result<Vec<Input>, String> {
    let mut out = Vec::new();
    for a in args {
        if let Some(location) = a.to_str().filter(|s| super::s3::is_s3(s)) {
            out.extend(super::s3::list(location, selection).map_err(|e| e.to_string())?);
        } else if a.as_os_str() == "-" {
            out.push(Input::Stdin);
        } else if a.is_dir() {
            let files = super::walk::event_files(a, selection);
            out.extend(files.into_iter().map(Input::File));
        } else if a.exists() {
            // A file, or a pipe such as `<(zcat old.json.gz)` (read once, in order).
            out.push(Input::File(a.clone()));
        } else {
            return Err(format!("{}: no such file or directory", a.display()));
        }
    }
    Ok(out)
}

/// The `YYYYMMDDTHHMMZ` in a CloudTrail log file name
/// (`<account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<unique>.json.gz`), as a number that sorts as
/// its text does; 0, before any, for other names.
pub(crate) fn cloudtrail_file_time(p: &Path) -> u128 {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.split('_')
        .find(|part| {
            part.len() == 14
                && part.as_bytes()[8] == b'T'
                && part.ends_with('Z')
                && part[..8].bytes().all(|b| b.is_ascii_digit())
        })
        // Fourteen bytes, the first a digit, read big-endian: the text's order, and never 0.
        .map_or(0, |part| {
            part.bytes().fold(0u128, |n, b| (n << 8) | u128::from(b))
        })
}

pub(crate) fn is_event_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(name);
    name.ends_with(".json") || name.ends_with(".jsonl") || name.ends_with(".ndjson")
}

/// Counts bytes read from the underlying (compressed) file, for progress.
pub struct Counting<R> {
    inner: R,
    /// Bytes read so far.
    pub count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens an input, transparently gunzipping (by magic number, not by name).
pub fn open(
    input: &Input,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> io::Result<Box<dyn BufRead + Send>> {
    let (raw, size): (Box<dyn Read + Send>, _) = match input {
        Input::File(p) => {
            let file = File::open(p)?;
            let size = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            if let Some(size) = size.filter(|&s| s <= READ_WHOLE) {
                // As a parallel replay's worker reads it (source::split), so that both make
                // the same of it, good or broken.
                return Ok(reading_bytes(read_whole(&file, size)?, &progress));
            }
            (Box::new(file), size)
        }
        Input::Stdin => (Box::new(io::stdin()), None),
        Input::S3(o) => (o.reader()?, Some(o.size)),
    };
    reading(raw, size, progress)
}

/// Read buffers: 256 KiB, or less for an input known to be smaller (CloudTrail writes many log
/// files of a few KiB, and a buffer is allocated zeroed for each).
const READ_BUFFER: usize = 256 << 10;

/// A reader of an opened input's bytes of `size` (when known), transparently gunzipping (by
/// magic number).
pub fn reading(
    raw: Box<dyn Read + Send>,
    size: Option<u64>,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> io::Result<Box<dyn BufRead + Send>> {
    let capacity = size.map_or(READ_BUFFER, |s| {
        usize::try_from(s.saturating_add(1)).map_or(READ_BUFFER, |s| s.clamp(4 << 10, READ_BUFFER))
    });
    let mut reader = BufReader::with_capacity(
        capacity,
        Counting {
            inner: raw,
            count: progress,
        },
    );
    let head = reader.fill_buf()?;
    if !head.starts_with(GZIP_MAGIC) {
        return Ok(Box::new(reader));
    }
    // Reads from `reader`'s buffer: no buffer of its own between them.
    let inflated = inflated_capacity(head, size, capacity);
    Ok(Box::new(BufReader::with_capacity(
        inflated,
        MultiGzDecoder::new(reader),
    )))
}

/// Local files up to this size are read whole when opened, and inflated in one call when they
/// are gzip ([`super::gunzip`]): CloudTrail's log files are a few KiB.
pub const READ_WHOLE: u64 = 128 << 10;

/// All of `file`, which was `size` bytes when its metadata was read (it may have grown since).
pub fn read_whole(file: &File, size: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    (&*file).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A reader of a whole file's `bytes`, already read (counted into `progress` now), gunzipped
/// when they are gzip (in one call when [`super::gunzip`] accepts them, else streamed): no copy
/// into a read buffer of its own.
pub fn reading_bytes(
    bytes: Vec<u8>,
    progress: &std::sync::atomic::AtomicU64,
) -> Box<dyn BufRead + Send> {
    progress.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    if !bytes.starts_with(GZIP_MAGIC) {
        return Box::new(io::Cursor::new(bytes));
    }
    if let Some(text) = super::gunzip::inflate_whole(&bytes) {
        return Box::new(io::Cursor::new(text));
    }
    let size = Some(bytes.len() as u64);
    let inflated = inflated_capacity(&bytes, size, bytes.len());
    Box::new(BufReader::with_capacity(
        inflated,
        MultiGzDecoder::new(io::Cursor::new(bytes)),
    ))
}

/// gzip's first two bytes.
pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// The read buffer for the inflated bytes of a gzip input whose first `head` bytes are read and
/// which is `size` bytes as stored, when known.
///
/// std zeroes a reader's whole buffer before the first read into it, so a buffer far larger than
/// a small log file's text costs more than inflating it. When `head` is the whole input, its
/// trailer's ISIZE (the last member's inflated size, modulo 2^32) sizes the buffer; it is only a
/// hint (a forged one costs a buffer of at most [`READ_BUFFER`], or lines copied out of a small
/// one). Otherwise a log file inflates about tenfold.
fn inflated_capacity(head: &[u8], size: Option<u64>, stored_capacity: usize) -> usize {
    if size == Some(head.len() as u64) && head.len() >= 18 {
        if let Some(isize) = super::gunzip::last_member_size(head) {
            return isize.saturating_add(1).clamp(4 << 10, READ_BUFFER);
        }
    }
    stored_capacity.saturating_mul(16).min(READ_BUFFER)
}

/// Reads every document of `input`, handing each record (or error) to `sink`.
///
/// Fails only when the input cannot be opened. (Memory-mapping large files was measured twice:
/// slower than streaming through a 256 KiB buffer without read-ahead advice, as fast and no
/// faster with `MADV_SEQUENTIAL`: the copy's cost moves to the first touch of each page, and a
/// file truncated while mapped would kill the process.)
pub fn read_input(
    input: &Input,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    decoder: &mut Decoder<'_>,
    sink: &mut dyn FnMut(Result<&Event<'_>, InputError>, &Location),
) -> io::Result<()> {
    let reader = open(input, progress)?;
    read_documents(&input.name(), reader, decoder, sink);
    Ok(())
}

/// Reads every document of `reader`, handing each record (or error) to `sink` with its location.
pub fn read_documents(
    name: &str,
    reader: Box<dyn BufRead>,
    decoder: &mut Decoder<'_>,
    sink: &mut dyn FnMut(Result<&Event<'_>, InputError>, &Location),
) {
    read_lines(name, reader, true, decoder, sink);
}

/// Reads every document of `reader` as [`read_documents`] does, and returns how many lines it
/// read. With `first` false, the reader does not start an input: its first line is not looked
/// at as the opening of a document over many lines.
pub fn read_lines(
    name: &str,
    mut reader: impl BufRead,
    mut first: bool,
    decoder: &mut Decoder<'_>,
    sink: &mut dyn FnMut(Result<&Event<'_>, InputError>, &Location),
) -> usize {
    let limit = decoder.limits().max_document_bytes;
    let mut loc = Location {
        source: name.to_string(),
        line: 0,
    };
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let buffered = if first {
            Ok(false)
        } else {
            decode_buffered(&mut reader, limit, decoder, &mut loc, sink)
        };
        buf.clear();
        let read = match buffered {
            Ok(true) => continue,
            Ok(false) => {
                loc.line += 1;
                read_line_limited(&mut reader, &mut buf, limit)
            }
            // Reported here, not retried: an inflater that found a bad checksum says so once,
            // then reads as ended.
            Err(e) => {
                loc.line += 1;
                Err(e)
            }
        };
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                let err = InputError {
                    location: loc.clone(),
                    kind: InputErrorKind::Io(e.to_string()),
                };
                sink(Err(err), &loc);
                return loc.line;
            }
        };
        match read {
            Line::Eof => return loc.line - 1,
            Line::TooLong(size) => {
                let kind = DecodeError::TooLarge { size, limit };
                sink(
                    Err(InputError {
                        location: loc.clone(),
                        kind: kind.into(),
                    }),
                    &loc,
                );
                continue;
            }
            Line::Ok => {}
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if first && starts_multiline_document(&buf) {
            first = false;
            // A truncated record on the first line of a JSON-lines file also opens a document
            // without closing it; the line after it tells them apart. Only a document over
            // many lines (pretty-printed) is read whole: never a file of records after a bad one.
            let mut next = Vec::new();
            let next_read = read_line_limited(&mut reader, &mut next, limit);
            if !opens_log_file(&buf) && matches!(next_read, Ok(Line::Ok)) && is_whole_record(&next)
            {
                let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                decode_one(decoder, line, &loc, sink);
                loc.line += 1;
                let line = next.strip_suffix(b"\n").unwrap_or(&next);
                decode_one(
                    decoder,
                    line.strip_suffix(b"\r").unwrap_or(line),
                    &loc,
                    sink,
                );
                continue;
            }
            let start_line = loc.line;
            let read = match next_read {
                Ok(Line::Ok | Line::Eof) => {
                    let mut chained = io::Cursor::new(next).chain(&mut reader);
                    read_document(&mut chained, &mut buf, limit)
                }
                Ok(Line::TooLong(size)) => Ok(Document::too_large(size)),
                Err(e) => Err(e),
            };
            let doc = match read {
                Ok(doc) => doc,
                Err(e) => {
                    let err = InputError {
                        location: loc.clone(),
                        kind: InputErrorKind::Io(e.to_string()),
                    };
                    sink(Err(err), &loc);
                    return loc.line;
                }
            };
            let at = Location {
                source: name.to_string(),
                line: start_line,
            };
            if doc.size > limit {
                let kind = DecodeError::TooLarge {
                    size: doc.size,
                    limit,
                };
                sink(
                    Err(InputError {
                        location: at.clone(),
                        kind: kind.into(),
                    }),
                    &at,
                );
            } else {
                decode_one(decoder, &buf, &at, sink);
            }
            // The lines after a document are read as the file's first ones were: records,
            // or another document over many lines. What shares the closing line is a record.
            loc.line = start_line + doc.lines;
            first = doc.closed;
            let tail = doc.tail.strip_suffix(b"\n").unwrap_or(&doc.tail);
            let tail = tail.strip_suffix(b"\r").unwrap_or(tail);
            if !tail.trim_ascii().is_empty() {
                decode_one(decoder, tail.trim_ascii(), &loc, sink);
            }
            continue;
        }
        first = false;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        decode_one(decoder, line, &loc, sink);
    }
}

/// A line that opens a document and holds nothing else, as a log file's first line does:
/// `{`, `[` or `{"Records": [`, never a record cut short.
fn opens_log_file(line: &[u8]) -> bool {
    let mut bare = line.to_vec();
    bare.retain(|b| !b.is_ascii_whitespace());
    matches!(bare.as_slice(), b"{" | b"[" | b"{\"Records\":[")
}

/// A line that holds one whole JSON object: a record of a JSON-lines file.
fn is_whole_record(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    // The decoder's grammar (raw control characters in strings are read), as for the first line.
    t.starts_with(b"{") && crate::event::is_whole_value(t)
}

/// A first line that opens a document and does not close it: `{`, `[`, or `{"Records": [`.
///
/// The first line of a CloudTrail log file is often the whole file: it is skipped over with
/// the scanner, not built into a `serde_json::Value` (a quarter of the time of a replay of many
/// small log files went to building and dropping that tree).
pub(crate) fn starts_multiline_document(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    if !(t.starts_with(b"{") || t.starts_with(b"[")) {
        return false;
    }
    crate::event::ends_inside_value(t)
}

/// Decodes the next line where it lies in the reader's buffer, when the buffer holds all of it
/// (nearly always): copying each line out first cost more than reading it. `false` leaves the
/// line, untouched, to the general way (a line across the buffer's end, over the limit, at the
/// end of the input). A read error is returned, not left: a gzip member's bad checksum or size
/// is reported by the inflater once, and reads as the end after that.
fn decode_buffered(
    reader: &mut impl BufRead,
    limit: usize,
    decoder: &mut Decoder<'_>,
    loc: &mut Location,
    sink: &mut dyn FnMut(Result<&Event<'_>, InputError>, &Location),
) -> io::Result<bool> {
    let chunk = reader.fill_buf()?;
    let Some(end) = memchr::memchr(b'\n', chunk) else {
        return Ok(false);
    };
    let line = &chunk[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > limit {
        return Ok(false);
    }
    loc.line += 1;
    if !line.iter().all(u8::is_ascii_whitespace) {
        decode_one(decoder, line, loc, sink);
    }
    reader.consume(end + 1);
    Ok(true)
}

fn decode_one(
    decoder: &mut Decoder<'_>,
    doc: &[u8],
    loc: &Location,
    sink: &mut dyn FnMut(Result<&Event<'_>, InputError>, &Location),
) {
    let result = decoder.decode(doc, &mut |item| match item {
        Ok(ev) => sink(Ok(ev), loc),
        Err(e) => sink(
            Err(InputError {
                location: loc.clone(),
                kind: e.into(),
            }),
            loc,
        ),
    });
    if let Err(e) = result {
        sink(
            Err(InputError {
                location: loc.clone(),
                kind: e.into(),
            }),
            loc,
        );
    }
}

enum Line {
    Ok,
    Eof,
    TooLong(usize),
}

/// Reads one line into `buf` without ever holding more than `limit` bytes of it (its line
/// end aside, which no document limit counts).
#[inline]
fn read_line_limited(r: &mut dyn BufRead, buf: &mut Vec<u8>, limit: usize) -> io::Result<Line> {
    let mut total = 0usize;
    let mut over = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        total += take;
        if !over && total > limit.saturating_add(2) {
            over = true;
            buf.clear();
        }
        if !over {
            buf.extend_from_slice(&chunk[..take]);
        }
        r.consume(take);
        if done {
            break;
        }
    }
    if total == 0 {
        return Ok(Line::Eof);
    }
    let line = buf.strip_suffix(b"\n").unwrap_or(buf);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(if over || line.len() > limit {
        Line::TooLong(total)
    } else {
        Line::Ok
    })
}

/// How a document over many lines ended.
struct Document {
    /// Lines read after the document's first line, the closing line included.
    lines: usize,
    /// Bytes of the document; over the limit, the document was not kept.
    size: usize,
    /// Whether the document closed (or the input ended first).
    closed: bool,
    /// The rest of the closing line, after the byte that closed the document.
    tail: Vec<u8>,
}

impl Document {
    fn too_large(size: usize) -> Document {
        Document {
            lines: 1,
            size,
            closed: false,
            tail: Vec::new(),
        }
    }
}

/// Reads a document whose first line is in `buf`, up to the byte that closes it and then to
/// the end of that line; never holds more than `limit` bytes of it.
fn read_document(r: &mut dyn BufRead, buf: &mut Vec<u8>, limit: usize) -> io::Result<Document> {
    let mut nesting = Nesting::default();
    let mut doc = Document {
        lines: 0,
        size: buf.len(),
        closed: false,
        tail: Vec::new(),
    };
    if nesting.feed(buf).is_some() {
        // Not a document over many lines after all: decoding it whole reports what follows.
        doc.closed = true;
        return Ok(doc);
    }
    // Whether what was read after the first line ends with a line end (nothing read yet: the
    // first line's own).
    let mut ends_line = true;
    while !doc.closed {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            doc.lines += usize::from(!ends_line);
            return Ok(doc);
        }
        let take = match nesting.feed(chunk) {
            Some(end) => {
                doc.closed = true;
                end
            }
            None => chunk.len(),
        };
        doc.lines += memchr::memchr_iter(b'\n', &chunk[..take]).count();
        ends_line = chunk[..take].last().is_some_and(|&b| b == b'\n');
        doc.size += take;
        if doc.size <= limit {
            buf.extend_from_slice(&chunk[..take]);
        } else if !buf.is_empty() {
            *buf = Vec::new();
        }
        r.consume(take);
    }
    match read_line_limited(r, &mut doc.tail, limit)? {
        Line::Ok => {
            ends_line = doc.tail.ends_with(b"\n");
            doc.lines += usize::from(ends_line);
        }
        Line::Eof => {}
        // A closing line longer than a document may be is not a record worth reading.
        Line::TooLong(_) => {
            ends_line = true;
            doc.lines += 1;
            doc.tail.clear();
        }
    }
    // A last line without its line end is a line too.
    doc.lines += usize::from(!ends_line);
    Ok(doc)
}

/// Where a JSON text's brackets close, tracked across the pieces it is read in.
#[derive(Default)]
struct Nesting {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Nesting {
    /// Feeds the next bytes; returns the offset just past the byte that closes the outermost
    /// object or array, if it is among them.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldTable, Limits};

    #[test]
    fn a_truncated_first_record_with_raw_tabs_costs_that_line_only() {
        // Raw control characters in strings are read as the decoder reads them: the second
        // line is a whole record, so the file is JSON lines, not a document over many lines.
        let text = "{\"eventName\":\"a\tb\",\"eventID\":\"x\n{\"eventName\":\"c\td\",\"eventID\":\"y\"}\n{\"eventName\":\"e\",\"eventID\":\"z\"}\n";
        let (names, errors) = run(text.as_bytes(), Limits::default());
        assert_eq!(names, ["c\td", "e"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(":1:") || errors[0].contains("line 1"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_first_line_opens_a_document_only_when_it_ends_inside_one() {
        let deep = "[".repeat(200);
        let opens = [
            "{",
            "[",
            " {\"Records\": [",
            "{\"Records\":[{\"eventID\":\"a\"},",
            "{\"eventName\":\"Get",
            "[1, 2,",
            "{\"a\": {\"b\": [true, nul",
            "{\"a\":\"\\",
        ];
        let closed = [
            "{}",
            "[]",
            "{\"eventID\":\"a\"}",
            "{\"Records\":[{\"eventID\":\"a\"}]}\r",
            "{\"a\":1} trailing",
            "{\"a\" 1",
            "{\"a\":\"\\q\"}",
            "\"a string\"",
            "tru",
            "",
            "   ",
            deep.as_str(),
        ];
        for line in opens {
            assert!(
                starts_multiline_document(line.as_bytes()),
                "{line:?} opens a document"
            );
        }
        for line in closed {
            assert!(
                !starts_multiline_document(line.as_bytes()),
                "{line:?} does not"
            );
        }
    }

    fn run(text: &[u8], limits: Limits) -> (Vec<String>, Vec<String>) {
        let mut fields = FieldTable::new();
        let name = fields.intern("eventName");
        let mut decoder = Decoder::new(&fields, limits);
        let mut names = Vec::new();
        let mut errors = Vec::new();
        let reader: Box<dyn BufRead> = Box::new(io::Cursor::new(text.to_vec()));
        read_documents("t", reader, &mut decoder, &mut |item, _| match item {
            Ok(ev) => names.push(ev.get(name).text().unwrap_or("-").to_string()),
            Err(e) => errors.push(e.to_string()),
        });
        (names, errors)
    }

    /// What `read_lines` makes of `text` read through a buffer of `capacity` bytes: each record's
    /// eventName and each error, with the line they were found at.
    fn through_buffer(text: &[u8], capacity: usize, limits: Limits) -> Vec<String> {
        let mut fields = FieldTable::new();
        let name = fields.intern("eventName");
        let mut decoder = Decoder::new(&fields, limits);
        let mut seen = Vec::new();
        let reader = io::BufReader::with_capacity(capacity, text);
        let lines = read_lines(
            "t",
            reader,
            true,
            &mut decoder,
            &mut |item, loc| match item {
                Ok(ev) => seen.push(format!(
                    "{} {}",
                    loc.line,
                    ev.get(name).text().unwrap_or("-")
                )),
                Err(e) => seen.push(e.to_string()),
            },
        );
        seen.push(format!("{lines} lines"));
        seen
    }

    #[test]
    fn lines_read_in_place_or_copied_read_the_same() {
        let long = format!("{{\"eventName\":\"{}\"}}", "x".repeat(200));
        let text = format!(
            "{{\"eventName\":\"A\"}}\r\n\n  \n{{\"eventName\":\"B\"}}\n{long}\nnot json\r\n{{\"eventName\":\"C\"}}\n\
             {{\"eventName\":\n{{\"eventName\":\"D\"}}"
        );
        let limits = Limits {
            max_document_bytes: 100,
            ..Limits::default()
        };
        let whole = through_buffer(text.as_bytes(), 1 << 16, limits);
        assert_eq!(whole.len(), 8, "{whole:?}");
        assert_eq!(whole[0], "1 A");
        assert_eq!(whole[1], "4 B");
        assert!(
            whole[2].starts_with("t:5: document of 217 bytes"),
            "{whole:?}"
        );
        assert!(whole[3].starts_with("t:6: invalid JSON"), "{whole:?}");
        assert_eq!(whole[4], "7 C");
        assert!(whole[5].starts_with("t:8: truncated JSON"), "{whole:?}");
        assert_eq!(whole[6..], ["9 D", "9 lines"]);
        // Small buffers cut lines at every place: read the general way, they read the same.
        for capacity in [1, 2, 7, 16, 19, 20, 21, 64, 100] {
            assert_eq!(
                through_buffer(text.as_bytes(), capacity, limits),
                whole,
                "{capacity}"
            );
        }
    }

    #[test]
    fn json_lines_with_bad_lines_in_between() {
        let text =
            b"{\"eventName\":\"A\"}\n{\"eventName\":\n\n{\"eventName\":\"B\"}\nnot json\n[1]\n";
        let (names, errors) = run(text, Limits::default());
        assert_eq!(names, vec!["A", "B"]);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("t:2: truncated JSON"),
            "{}",
            errors[0]
        );
        assert!(errors[1].starts_with("t:5: invalid JSON"), "{}", errors[1]);
        assert!(
            errors[2].starts_with("t:6: expected a CloudTrail record"),
            "{}",
            errors[2]
        );
    }

    #[test]
    fn a_truncated_first_record_does_not_swallow_the_records_after_it() {
        let mut text = b"{\"eventName\": \"Trunc\", \"userIdentity\": {\n".to_vec();
        for i in 0..1000 {
            text.extend_from_slice(format!("{{\"eventName\":\"E{i}\"}}\n").as_bytes());
        }
        let (names, errors) = run(&text, Limits::default());
        assert_eq!(names.len(), 1000, "{errors:?}");
        assert_eq!((names[0].as_str(), names[999].as_str()), ("E0", "E999"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("t:1: truncated JSON"), "{errors:?}");
    }

    #[test]
    fn a_log_file_with_one_record_a_line_is_one_document() {
        let text = b"{\"Records\": [\n{\"eventName\": \"A\"},\n{\"eventName\": \"B\"}\n]}\n";
        let (names, errors) = run(text, Limits::default());
        assert_eq!(names, vec!["A", "B"]);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn pretty_printed_log_file() {
        let text = b"{\n  \"Records\": [\n    {\"eventName\": \"A\"},\n    {\"eventName\": \"B\"}\n  ]\n}\n";
        let (names, errors) = run(text, Limits::default());
        assert_eq!(names, vec!["A", "B"]);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn records_after_a_document_over_many_lines_are_read() {
        let mut text = b"{\n  \"Records\": [\n    {\"eventName\": \"A]}\\\"{\"},\n    {\"eventName\": \"B\"}\n  ]\n}\n".to_vec();
        for i in 0..50 {
            text.extend_from_slice(format!("{{\"eventName\":\"E{i}\"}}\n").as_bytes());
        }
        text.extend_from_slice(b"not json\n");
        let (names, errors) = run(&text, Limits::default());
        assert_eq!(names.len(), 52, "{names:?} {errors:?}");
        assert_eq!(names[..3], ["A]}\"{", "B", "E0"]);
        assert_eq!(names[51], "E49");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("t:57: invalid JSON"), "{errors:?}");
    }

    #[test]
    fn documents_over_many_lines_one_after_another() {
        let doc = |n: &str| format!("{{\"Records\": [\n {{\"eventName\": \"{n}\"}}\n]}}");
        let text = format!(
            "{}\n\n{}{{\"eventName\": \"C\"}}\n{}\n[\n",
            doc("A"),
            doc("B"),
            doc("D")
        );
        let (names, errors) = run(text.as_bytes(), Limits::default());
        assert_eq!(names, vec!["A", "B", "C", "D"], "{errors:?}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("t:11: truncated JSON"), "{errors:?}");
    }

    #[test]
    fn what_follows_a_document_on_its_closing_line_is_read_on_that_line() {
        let text = b"[\n{\"eventName\": \"A\"}\n] junk\n{\"eventName\": \"B\"}";
        let (names, errors) = run(text, Limits::default());
        assert_eq!(names, vec!["A", "B"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("t:3: invalid JSON"), "{errors:?}");
    }

    #[test]
    fn an_oversized_document_over_many_lines_is_skipped_whole() {
        let mut text = b"{\"Records\": [\n".to_vec();
        for _ in 0..100 {
            text.extend_from_slice(b"{\"eventName\": \"big\"},\n");
        }
        text.extend_from_slice(b"{\"eventName\": \"last\"}\n]}\n{\"eventName\":\"ok\"}\n");
        let limits = Limits {
            max_document_bytes: 1000,
            ..Limits::default()
        };
        let (names, errors) = run(&text, limits);
        assert_eq!(names, vec!["ok"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("t:1: ") && errors[0].contains("over the limit of 1000 bytes"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_document_limit_does_not_count_the_line_end() {
        let at = |n: usize, end: &str| {
            let line = format!("{{\"eventName\":\"{}\"}}", "x".repeat(n - 16));
            assert_eq!(line.len(), n);
            format!("{line}{end}")
        };
        let limits = || Limits {
            max_document_bytes: 100,
            ..Limits::default()
        };
        for end in ["\n", "\r\n", ""] {
            let (names, errors) = run(at(100, end).as_bytes(), limits());
            assert_eq!((names.len(), errors.len()), (1, 0), "{end:?} {errors:?}");
            let (names, errors) = run(at(101, end).as_bytes(), limits());
            assert_eq!((names.len(), errors.len()), (0, 1), "{end:?} {errors:?}");
        }
    }

    proptest::proptest! {
        /// Any mix of documents, records, fragments and line ends: nothing panics, every line
        /// is counted once, and errors name lines that exist.
        #[test]
        fn any_text_is_read_line_by_line(parts in proptest::collection::vec(0usize..12, 0..40)) {
            const PARTS: [&str; 12] = [
                "{\"Records\": [\n", "{\"eventName\":\"A\"}\n", "{\"eventName\":\"B\"},\n",
                "]}\n", "]}", "{", "[\n", "\"\\\"}", "\n", "\r\n", "not json\n", "{\"x\": [1,\n",
            ];
            let text: String = parts.iter().map(|&i| PARTS[i]).collect();
            let mut fields = FieldTable::new();
            fields.intern("eventName");
            let limits = Limits { max_document_bytes: 64, ..Limits::default() };
            let mut decoder = Decoder::new(&fields, limits);
            let mut worst = 0;
            let lines = read_lines("t", io::Cursor::new(text.as_bytes()), true, &mut decoder, &mut |_, loc| {
                worst = worst.max(loc.line);
            });
            let expected = text.lines().count();
            proptest::prop_assert_eq!(lines, expected, "{:?}", text);
            proptest::prop_assert!(worst <= expected, "{:?}", text);
        }
    }

    #[test]
    fn oversized_line_is_skipped_not_slurped() {
        let big = format!(
            "{{\"eventName\":\"{}\"}}\n{{\"eventName\":\"ok\"}}\n",
            "x".repeat(5000)
        );
        let limits = Limits {
            max_document_bytes: 1000,
            ..Limits::default()
        };
        let (names, errors) = run(big.as_bytes(), limits);
        assert_eq!(names, vec!["ok"]);
        assert!(
            errors[0].contains("over the limit of 1000 bytes"),
            "{errors:?}"
        );
    }

    #[test]
    fn gzip_by_magic_number() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json.gz");
        let mut enc = GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        enc.write_all(b"{\"Records\":[{\"eventName\":\"Z\"}]}")
            .unwrap();
        enc.finish().unwrap();
        let mut fields = FieldTable::new();
        let name = fields.intern("eventName");
        let mut decoder = Decoder::new(&fields, Limits::default());
        let reader = open(&Input::File(path), Default::default()).unwrap();
        let mut names = Vec::new();
        read_documents("x", reader, &mut decoder, &mut |item, _| {
            names.push(item.unwrap().get(name).text().unwrap().to_string())
        });
        assert_eq!(names, vec!["Z"]);
    }

    #[test]
    fn a_gzip_trailer_that_lies_about_the_size_only_sizes_the_buffer() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        // Several members, the last one tiny: its ISIZE says far less than the whole text.
        let lines: Vec<String> = (0..3000)
            .map(|i| {
                format!(
                    "{{\"eventName\":\"E{i}\",\"pad\":\"{}\"}}\n",
                    "x".repeat(i % 97)
                )
            })
            .collect();
        let text = lines.concat();
        let mut bytes = Vec::new();
        for part in [&text[..100_000], &text[100_000..text.len() - 1], "\n"] {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part.as_bytes()).unwrap();
            bytes.extend(enc.finish().unwrap());
        }
        let n = bytes.len();
        let mut fields = FieldTable::new();
        let name = fields.intern("eventName");
        for isize in [None, Some(0u32), Some(1), Some(u32::MAX)] {
            let mut bytes = bytes.clone();
            if let Some(v) = isize {
                // CRC and size are checked per member by the inflater: forge the last member's
                // size and expect the same lines, then the error the forgery is.
                bytes[n - 4..].copy_from_slice(&v.to_le_bytes());
            }
            for reader in [
                reading_bytes(bytes.clone(), &Default::default()),
                reading(
                    Box::new(io::Cursor::new(bytes.clone())),
                    Some(n as u64),
                    Default::default(),
                )
                .unwrap(),
            ] {
                let mut decoder = Decoder::new(&fields, Limits::default());
                let (mut names, mut errors) = (Vec::new(), Vec::new());
                read_documents("x", reader, &mut decoder, &mut |item, _| match item {
                    Ok(ev) => names.push(ev.get(name).text().unwrap().to_string()),
                    Err(e) => errors.push(e.to_string()),
                });
                let want: Vec<String> = (0..3000).map(|i| format!("E{i}")).collect();
                assert_eq!(names, want, "ISIZE {isize:?}");
                assert_eq!(
                    errors.len(),
                    usize::from(isize.is_some_and(|v| v != 1)),
                    "{errors:?}"
                );
            }
        }
    }

    #[test]
    fn truncated_gzip_reports_an_io_error() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json.gz");
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for _ in 0..1000 {
            enc.write_all(b"{\"eventName\":\"Z\"}\n").unwrap();
        }
        let bytes = enc.finish().unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let mut fields = FieldTable::new();
        fields.intern("eventName");
        let mut decoder = Decoder::new(&fields, Limits::default());
        let reader = open(&Input::File(path), Default::default()).unwrap();
        let (mut ok, mut errs) = (0, Vec::new());
        read_documents("x", reader, &mut decoder, &mut |item, _| match item {
            Ok(_) => ok += 1,
            Err(e) => errs.push(e),
        });
        assert!(ok > 0 && ok < 1000, "{ok}");
        assert!(
            errs.iter().any(|e| matches!(e.kind, InputErrorKind::Io(_))),
            "{errs:?}"
        );
    }

    #[test]
    fn cloudtrail_files_are_read_in_time_order_across_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for (acct, stamp) in [
            ("222222222222", "20240101T0010Z"),
            ("111111111111", "20240101T0015Z"),
            ("222222222222", "20240101T0020Z"),
        ] {
            let d = dir
                .path()
                .join(format!("AWSLogs/{acct}/CloudTrail/us-east-1/2024/01/01"));
            std::fs::create_dir_all(&d).unwrap();
            let name = format!("{acct}_CloudTrail_us-east-1_{stamp}_abc.json.gz");
            std::fs::write(d.join(&name), b"").unwrap();
            expected.push(name);
        }
        let names: Vec<String> = expand_inputs(&[dir.path().to_path_buf()])
            .unwrap()
            .iter()
            .map(|i| match i {
                Input::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn directory_walk_follows_s3_layout_and_skips_digests() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir
            .path()
            .join("AWSLogs/123456789012/CloudTrail/us-east-1/2024/01/02");
        let digest = dir
            .path()
            .join("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/01/02");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::create_dir_all(&digest).unwrap();
        std::fs::write(day.join("b.json.gz"), b"").unwrap();
        std::fs::write(day.join("a.json"), b"").unwrap();
        std::fs::write(day.join("notes.txt"), b"").unwrap();
        std::fs::write(digest.join("d.json.gz"), b"").unwrap();
        let inputs = expand_inputs(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<String> = inputs
            .iter()
            .map(|i| match i {
                Input::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                _ => "-".into(),
            })
            .collect();
        assert_eq!(names, vec!["a.json", "b.json.gz"]);
        assert!(expand_inputs(&[PathBuf::from("/no/such/path")]).is_err());
    }
}
