//! Parallel replay: worker threads decode and match pieces of the input (the stateless
//! stages, most of the work); the calling thread takes their results in input order through
//! de-duplication, correlations and the gate, and writes. State sees the records in the order
//! a one-thread replay sees them, so the output is the same, byte for byte, whatever the number
//! of threads: correlations need no sharding and keep every key, whatever they group by.

use super::{error_kind, finished, unreadable, Emit, InOrder, Options, Progress, Writer};
use crate::alert::gate::Candidate;
use crate::alert::SummaryFields;
use crate::engine::RuleSet;
use crate::event::{Decoder, Detached, DetachedRecord, Event, Scratch};
use crate::pipeline::{hit_candidate, Identity, Pipeline, Prepare, Prepared};
use crate::source::file::{read_lines, Input, InputError, InputErrorKind, Location};
use crate::source::select::{Selection, SelectionFields};
use crate::source::split::{split, Part};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader};
use std::ops::Range;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

/// Pieces decoded ahead of the one being taken in order, per thread: bounds the memory held
/// by results waiting for their turn (two replay as fast as four).
const AHEAD_PER_THREAD: usize = 2;
/// A worker's read buffer for a piece of a plain file, a quarter of one thread's: with two
/// threads, 64 KiB measured about 4 % less CPU than 256 KiB (16 and 32 KiB no better).
const PIECE_BUFFER: usize = 64 << 10;

/// What a worker made of a piece.
enum Done {
    /// Its records, decoded and matched.
    Batch(Batch),
    /// An input to read on the calling thread, in order.
    InOrder(Box<dyn BufRead + Send>),
    /// An input that could not be opened.
    Unreadable(io::Error),
}

/// The records of one piece, in order.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    hits: Vec<u32>,
    /// Gate candidates of the reported hits (alerts).
    candidates: Vec<Option<Candidate>>,
    /// The records that matched a rule, and the sources' strings.
    arena: Detached,
    /// Lines the piece held.
    lines: usize,
    /// Reading failed: the rest of the input is not read (as one thread stops at the error).
    failed: bool,
}

enum Record {
    Event(Matched),
    /// Outside `--since`/`--until`/`--account`/`--region`.
    Unselected {
        line: usize,
    },
    /// Matching it panicked (a bug): counted, as the calling thread counts its own.
    Panicked {
        line: usize,
    },
    Error(InputError),
}

/// A record after the stateless stages; ranges point into its batch.
struct Matched {
    line: usize,
    identity: Identity,
    hits: Range<usize>,
    candidates: Range<usize>,
    unreadable: bool,
    record: Option<DetachedRecord>,
    source: Option<(Range<usize>, Range<usize>)>,
    event_id: Option<Range<usize>>,
}

/// One worker's decoder and stateless stages.
struct Worker<'s> {
    stateless: Stateless<'s>,
    decoder: Decoder<'s>,
    prepare: Prepare<'s>,
}

/// What the stateless stages need beyond the decoder, shared by the workers.
#[derive(Clone, Copy)]
struct Stateless<'s> {
    set: &'s RuleSet,
    select: Option<&'s (Selection, SelectionFields)>,
    /// The fields alerts carry, when writing alerts: hits' candidates are made by the workers.
    summaries: Option<&'s SummaryFields>,
}

/// Batches given back once taken, so their memory is reused, not allocated and faulted in anew:
/// a few for pieces, many (a group's worth) for small inputs, whose batches stay small. Kept
/// apart so that no more than a few large batches are ever kept.
struct Spares {
    small: Pool,
    large: Pool,
}

/// Batches kept, up to a number.
struct Pool {
    kept: Mutex<Vec<Batch>>,
    most: usize,
}

/// A batch that held more records than this, or more bytes of their text, is kept with the
/// large ones.
const SMALL_BATCH: (usize, usize) = (256, 64 << 10);

impl Spares {
    /// Pools for as many batches as can be out at once: `ahead` pieces held, one more being
    /// decoded by each of `threads`.
    fn new(ahead: usize, threads: usize) -> Self {
        let pool = |most| Pool {
            kept: Mutex::new(Vec::new()),
            most,
        };
        let out = ahead + threads;
        Spares {
            small: pool(out * crate::source::split::GROUP_INPUTS),
            large: pool(out),
        }
    }

    /// A spare batch for a small input or a piece, or a new one.
    fn take(&self, small: bool) -> Batch {
        let pool = if small { &self.small } else { &self.large };
        let spare = pool.kept.lock().ok().and_then(|mut kept| kept.pop());
        spare.unwrap_or_default()
    }

    /// Keeps a taken batch, emptied, unless its pool is full.
    fn give(&self, batch: Batch) {
        let small = batch.records.capacity() <= SMALL_BATCH.0
            && batch.arena.text_capacity() <= SMALL_BATCH.1;
        let pool = if small { &self.small } else { &self.large };
        // Cleared (its records dropped) before the lock, which workers wait on to take one.
        let batch = batch.recycled();
        if let Ok(mut kept) = pool.kept.lock() {
            if kept.len() < pool.most {
                kept.push(batch);
            }
        }
    }
}

impl Batch {
    /// Empties a batch taken in order, so a worker can fill it again without new memory.
    fn recycled(mut self) -> Batch {
        self.records.clear();
        self.hits.clear();
        self.candidates.clear();
        self.arena.clear();
        (self.lines, self.failed) = (0, false);
        self
    }
}

impl<'s> Worker<'s> {
    fn new(set: &'s RuleSet, opts: &'s Options) -> Self {
        Worker {
            stateless: Stateless {
                set,
                select: opts.select.as_ref(),
                summaries: opts
                    .summaries
                    .as_ref()
                    .filter(|_| opts.emit == Emit::Alerts),
            },
            decoder: Decoder::new(set.fields(), opts.limits),
            prepare: Prepare::new(set),
        }
    }

    /// Decodes and matches a piece; a panic (a bug) costs the piece, counted, not the replay.
    fn piece(&mut self, part: Part, name: &str, opts: &'s Options, batch: Batch) -> Done {
        let run = std::panic::AssertUnwindSafe(|| self.decode(part, name, batch));
        match std::panic::catch_unwind(run) {
            Ok(done) => done,
            Err(_) => {
                *self = Worker::new(self.stateless.set, opts);
                let mut batch = Batch::default();
                batch.records.push(Record::Panicked { line: 0 });
                Done::Batch(batch)
            }
        }
    }

    fn decode(&mut self, part: Part, name: &str, mut batch: Batch) -> Done {
        let (reader, first): (Box<dyn BufRead>, bool) = match part {
            Part::Lines(lines) => (
                Box::new(BufReader::with_capacity(PIECE_BUFFER, lines)),
                false,
            ),
            Part::Whole(reader) => (reader, true),
            Part::Small(small) => (small.reader(), true),
            Part::InOrder(reader) => return Done::InOrder(reader),
            Part::Unreadable(e) => return Done::Unreadable(e),
        };
        let Worker {
            stateless,
            decoder,
            prepare,
        } = self;
        let stateless = *stateless;
        batch.lines = read_lines(name, reader, first, decoder, &mut |item, loc| {
            let record = match item {
                Ok(ev) if stateless.select.is_some_and(|(s, f)| !s.keeps(ev, f)) => {
                    Record::Unselected { line: loc.line }
                }
                Ok(ev) => {
                    let run = std::panic::AssertUnwindSafe(|| {
                        matched(stateless, prepare, ev, loc.line, &mut batch)
                    });
                    match std::panic::catch_unwind(run) {
                        Ok(m) => Record::Event(m),
                        Err(_) => Record::Panicked { line: loc.line },
                    }
                }
                Err(e) => {
                    batch.failed |= matches!(e.kind, InputErrorKind::Io(_));
                    Record::Error(e)
                }
            };
            batch.records.push(record);
        });
        Done::Batch(batch)
    }
}

/// The stateless stages for one record, its results kept in `batch`.
fn matched(
    stateless: Stateless<'_>,
    prepare: &mut Prepare<'_>,
    ev: &Event<'_>,
    line: usize,
    batch: &mut Batch,
) -> Matched {
    let set = stateless.set;
    let identity = prepare.identity(ev);
    prepare.matches(ev);
    let start = batch.hits.len();
    batch.hits.extend_from_slice(&prepare.hits);
    let links = set.links();
    let first_candidate = batch.candidates.len();
    if let Some(summaries) = stateless.summaries {
        for &r in &prepare.hits {
            let r = r as usize;
            if links.rule_reported[r] {
                let c = hit_candidate(set, r, ev, summaries, identity.future).with_window_id();
                batch.candidates.push(Some(c));
            }
        }
    }
    // Correlations read the group's fields; otherwise a hit is written by its eventID and
    // eventTime alone (the replay writer reads nothing else), so only they are copied.
    let record = if prepare.hits.is_empty() {
        None
    } else if prepare
        .hits
        .iter()
        .any(|&r| !links.reach[r as usize].is_empty())
    {
        Some(batch.arena.push(ev))
    } else {
        Some(batch.arena.push_fields(ev, &[set.event_id, set.event_time]))
    };
    let (mut source, mut event_id) = (None, None);
    if let (Some((a, r)), Some(_)) = (set.delivery, identity.time) {
        if let (Some(a), Some(r)) = (ev.get(a).text(), ev.get(r).text()) {
            source = Some((batch.arena.push_str(a), batch.arena.push_str(r)));
            event_id = ev.get(set.event_id).text().map(|t| batch.arena.push_str(t));
        }
    }
    Matched {
        line,
        identity,
        hits: start..batch.hits.len(),
        candidates: first_candidate..batch.candidates.len(),
        unreadable: ev.had_unreadable_value(),
        record,
        source,
        event_id,
    }
}

/// Replays `inputs` with `opts.threads` workers; see the module's description.
pub(super) fn replay(
    pipeline: &mut Pipeline<'_>,
    writer: &mut Writer<'_, '_>,
    inputs: &[Input],
    opts: &Options,
    progress: &Progress,
    unselected: &mut u64,
    on_error: &mut dyn FnMut(&InputError),
) -> io::Result<()> {
    let threads = opts.threads.max(1);
    let ahead = threads * AHEAD_PER_THREAD;
    let set = writer.set;
    let feed = Feed::new(
        split(inputs, progress.bytes.clone(), opts.piece_bytes),
        ahead,
    );
    let spares = Spares::new(ahead, threads);
    std::thread::scope(|scope| {
        // However the taker stops (an error returned early, a panic), waiting workers are
        // released, or the scope would wait for them for ever.
        let _closing = Closing(&feed);
        let (done_tx, done_rx) = mpsc::channel::<(u64, Vec<(usize, bool, Done)>)>();
        for _ in 0..threads {
            let (feed, done_tx, spares) = (&feed, done_tx.clone(), &spares);
            scope.spawn(move || {
                yield_to_state();
                let mut worker = Worker::new(set, opts);
                while let Some((seq, pieces)) = feed.next() {
                    let done = pieces.into_iter().map(|piece| {
                        let batch = spares.take(matches!(piece.part, Part::Small(_)));
                        // Named here, not every input before the workers start.
                        let name = inputs[piece.input].name();
                        let done = worker.piece(piece.part, &name, opts, batch);
                        (piece.input, piece.last, done)
                    });
                    if done_tx.send((seq, done.collect())).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut taker = Taker {
            pipeline,
            writer,
            inputs,
            opts,
            progress,
            unselected,
            on_error,
            scratch: Scratch::new(set.fields()),
            current: None,
            base: 0,
            failed: false,
        };
        let mut waiting = BTreeMap::new();
        let mut next = 0u64;
        for (seq, done) in done_rx {
            waiting.insert(seq, done);
            while let Some(done) = waiting.remove(&next) {
                for (input, last, done) in done {
                    if let Some(batch) = taker.take(input, done) {
                        spares.give(batch);
                    }
                    if last {
                        taker.finished()?;
                    }
                }
                next += 1;
                feed.give_back();
            }
        }
        // Every worker has stopped: a piece still missing means one died outside its guard.
        if !waiting.is_empty() || !feed.exhausted() {
            return Err(io::Error::other("a replay worker stopped early"));
        }
        Ok(())
    })
}

/// Lowers the calling worker's scheduling priority below the thread that keeps state.
///
/// Workers are one per core and the thread that keeps state is one more: with equal
/// priorities the scheduler gives it about two thirds of a core, and every piece waits for it
/// (alerts: it is the longest single path). Best effort: where the system says no, nothing
/// changes but speed.
fn yield_to_state() {
    #[cfg(target_os = "linux")]
    // SAFETY: nice reads no memory of ours; on Linux it changes the calling thread's nice
    // value (threads have their own), relative to what the process was started with.
    unsafe {
        libc::nice(WORKER_NICE);
    }
}

/// How much nicer than the thread that keeps state a worker is.
#[cfg(target_os = "linux")]
const WORKER_NICE: libc::c_int = 5;

/// Hands out the pieces in order, each against a permit given back once its results were taken
/// in order: at most `ahead` pieces' results are held at once. Workers take pieces themselves,
/// so none waits for another thread to be scheduled to hand one over.
struct Feed<I> {
    pieces: Mutex<Unhanded<I>>,
    permits: Mutex<Permits>,
    freed: Condvar,
}

struct Permits {
    free: usize,
    /// The taker stopped (an error, a closed output): no more pieces are handed out.
    closed: bool,
}

/// The pieces not handed out yet.
struct Unhanded<I> {
    iter: I,
    /// The next piece's place in the input order.
    seq: u64,
    exhausted: bool,
}

impl<I: Iterator> Feed<I> {
    fn new(pieces: I, permits: usize) -> Self {
        Feed {
            pieces: Mutex::new(Unhanded {
                iter: pieces,
                seq: 0,
                exhausted: false,
            }),
            permits: Mutex::new(Permits {
                free: permits,
                closed: false,
            }),
            freed: Condvar::new(),
        }
    }

    /// The next piece and its place in the input order, once a permit is free; `None` once
    /// every piece was handed out or the feed was closed.
    fn next(&self) -> Option<(u64, I::Item)> {
        {
            let mut permits = self.permits.lock().ok()?;
            while permits.free == 0 && !permits.closed {
                permits = self.freed.wait(permits).ok()?;
            }
            if permits.closed {
                return None;
            }
            permits.free -= 1;
        }
        // Opening a piece may wait for its download (S3): the permits stay free meanwhile.
        let Ok(mut pieces) = self.pieces.lock() else {
            // Splitting panicked on another worker: this one stops too, its permit given back.
            self.give_back();
            return None;
        };
        let piece = if pieces.exhausted {
            None
        } else {
            pieces.iter.next()
        };
        match piece {
            Some(piece) => {
                pieces.seq += 1;
                Some((pieces.seq - 1, piece))
            }
            None => {
                pieces.exhausted = true;
                drop(pieces);
                // Another worker may wait for a permit that no taken piece will give back.
                self.give_back();
                None
            }
        }
    }

    /// Gives a permit back.
    fn give_back(&self) {
        if let Ok(mut permits) = self.permits.lock() {
            permits.free += 1;
            self.freed.notify_one();
        }
    }

    /// Stops handing out pieces: every worker waiting for a permit, or asking later, gets `None`.
    fn close(&self) {
        if let Ok(mut permits) = self.permits.lock() {
            permits.closed = true;
        }
        self.freed.notify_all();
    }

    /// Whether every piece was handed out.
    fn exhausted(&self) -> bool {
        self.pieces.lock().is_ok_and(|p| p.exhausted)
    }
}

/// Closes a [`Feed`] when dropped.
struct Closing<'a, I: Iterator>(&'a Feed<I>);

impl<I: Iterator> Drop for Closing<'_, I> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Takes the workers' results in input order through the stages that keep state.
struct Taker<'a, 'p, 's, 'o> {
    pipeline: &'a mut Pipeline<'p>,
    writer: &'a mut Writer<'s, 'o>,
    inputs: &'a [Input],
    opts: &'a Options,
    progress: &'a Progress,
    unselected: &'a mut u64,
    on_error: &'a mut dyn FnMut(&InputError),
    /// Detached records are made events again here.
    scratch: Scratch,
    /// The input being taken.
    current: Option<usize>,
    /// Lines of the input before the piece being taken.
    base: usize,
    /// Reading the input failed: its later pieces are dropped.
    failed: bool,
}

impl Taker<'_, '_, '_, '_> {
    /// Takes a piece's results; gives back its batch for reuse.
    fn take(&mut self, input: usize, done: Done) -> Option<Batch> {
        if self.current != Some(input) {
            self.current = Some(input);
            self.writer.start(&self.inputs[input]);
            (self.base, self.failed) = (0, false);
        }
        if self.failed {
            return None;
        }
        match done {
            Done::Batch(mut batch) => {
                self.batch(&mut batch);
                return Some(batch);
            }
            Done::InOrder(reader) => {
                let (decoder, stages) = self.pipeline.parts();
                let mut reading = InOrder {
                    stages,
                    writer: &mut *self.writer,
                    select: self.opts.select.as_ref(),
                    unselected: &mut *self.unselected,
                    on_error: &mut *self.on_error,
                };
                reading.read(&self.inputs[input].name(), reader, decoder);
            }
            Done::Unreadable(e) => unreadable(
                self.pipeline.stages(),
                &self.inputs[input],
                &e,
                self.on_error,
            ),
        }
        None
    }

    fn batch(&mut self, batch: &mut Batch) {
        let fields = self.writer.set.fields();
        let base = self.base;
        let Batch {
            records,
            hits,
            candidates,
            arena,
            ..
        } = batch;
        for record in records.iter() {
            let w = &mut *self.writer;
            let line = match record {
                Record::Event(m) => m.line,
                Record::Unselected { line } | Record::Panicked { line } => *line,
                Record::Error(e) => e.location.line,
            };
            (w.line_no, w.record) = (base + line, w.record + 1);
            let stages = self.pipeline.stages();
            match record {
                Record::Event(m) if w.error.is_none() => {
                    let ev = m
                        .record
                        .as_ref()
                        .map(|r| arena.event(r, &mut self.scratch, fields));
                    let prepared = Prepared {
                        identity: m.identity,
                        hits: &hits[m.hits.clone()],
                        unreadable: m.unreadable,
                        event: ev.as_ref(),
                        source: m
                            .source
                            .as_ref()
                            .map(|(a, r)| (arena.str(a.clone()), arena.str(r.clone()))),
                        event_id: m.event_id.as_ref().map(|t| arena.str(t.clone())),
                        candidates: &mut candidates[m.candidates.clone()],
                    };
                    stages.prepared(prepared, w);
                }
                Record::Event(_) => {}
                Record::Unselected { .. } => *self.unselected += 1,
                Record::Panicked { .. } => {
                    stages.count_error("panic");
                    tracing::error!(
                        "matching a record panicked; it was skipped and counted (a bug: please report)"
                    );
                }
                Record::Error(e) => {
                    let e = InputError {
                        location: Location {
                            source: e.location.source.clone(),
                            line: base + e.location.line,
                        },
                        kind: e.kind.clone(),
                    };
                    stages.count_error(error_kind(&e));
                    (self.on_error)(&e);
                }
            }
        }
        self.base += batch.lines;
        self.failed = batch.failed;
    }

    fn finished(&mut self) -> io::Result<()> {
        finished(self.pipeline, self.writer, *self.unselected, self.progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::split::Piece;
    use std::time::Duration;

    /// Pieces of five inputs, never read.
    fn five_pieces() -> impl Iterator<Item = Piece> {
        (0..5).map(|input| Piece {
            input,
            last: true,
            part: Part::Unreadable(io::Error::other("unused")),
        })
    }

    #[test]
    fn the_feed_hands_pieces_in_order_against_permits_then_ends_for_every_worker() {
        let feed = Feed::new(five_pieces(), 2);
        let seq = |p: Option<(u64, Piece)>| p.map(|(seq, piece)| (seq, piece.input));
        assert_eq!(seq(feed.next()), Some((0, 0)));
        assert_eq!(seq(feed.next()), Some((1, 1)));
        std::thread::scope(|s| {
            let third = s.spawn(|| seq(feed.next()));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!third.is_finished(), "a piece handed out without a permit");
            feed.give_back();
            assert_eq!(third.join().unwrap(), Some((2, 2)));
        });
        feed.give_back();
        feed.give_back();
        assert_eq!(seq(feed.next()), Some((3, 3)));
        assert_eq!(seq(feed.next()), Some((4, 4)));
        assert!(!feed.exhausted());
        // Every permit is out: one given back reaches the end, which frees the other workers.
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..3).map(|_| s.spawn(|| feed.next().is_none())).collect();
            std::thread::sleep(Duration::from_millis(20));
            feed.give_back();
            for w in workers {
                assert!(w.join().unwrap(), "a piece after the last");
            }
        });
        assert!(feed.exhausted());
    }

    #[test]
    fn a_closed_feed_releases_the_workers_waiting_for_a_permit() {
        let feed = Feed::new(five_pieces(), 1);
        assert!(feed.next().is_some());
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..2).map(|_| s.spawn(|| feed.next().is_none())).collect();
            std::thread::sleep(Duration::from_millis(20));
            feed.close();
            for w in workers {
                assert!(
                    w.join().unwrap(),
                    "a piece handed out after the feed closed"
                );
            }
        });
        feed.give_back();
        assert!(feed.next().is_none(), "closed for good");
        assert!(!feed.exhausted());
    }
}
