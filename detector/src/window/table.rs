//! The group states of one correlation, 16 bytes a group in the common case.
//!
//! A busy correlation tracks a million groups, nearly all holding one or two event times. A
//! general hash map of key and [`State`] costs about 50 bytes a slot, doubles (with both tables
//! alive while it grows) and needs a recency queue for expiry. Here instead:
//! - a slot is a 64-bit key fingerprint and a 64-bit payload, which holds up to two event times
//!   (as 31-bit offsets from a base time) of an `event_count` or first-seen state inline; any
//!   other state lives in a slab the payload points to;
//! - the table is 256 segments chosen by the key's top byte, each an open-addressed Robin Hood
//!   array grown by a quarter at a time, so growth copies one small segment, never the table;
//! - expired groups are dropped when their segment fills up, before it grows, and the cap on
//!   groups evicts the least recently updated a sixteenth at a time: no queue of updates.
//!
//! Two groups are the same group when the first 64 bits of their 128-bit hashes agree: at a
//! million live groups of one correlation, two distinct ones share a slot with odds of about 1
//! in 37 million.
//!
//! Where a group lands is decided by those 64 bits passed through a permutation keyed with a
//! random secret of each table ([`Placement`]). The key hash is not secret (anyone can compute
//! it for a user name they make up), so without it an attacker who controls a grouped field
//! could send names that all land in one segment at one place, making every lookup there scan
//! them all.

use super::{Key, State};
use smallvec::SmallVec;

/// Segments, chosen by the top byte of the key.
const SEGMENTS: usize = 256;
/// A segment grows or is swept when an insert would take it past 17/20 full.
const MAX_LOAD: (usize, usize) = (17, 20);
/// After a rebuild a segment is at most about 68 % full, so the next is 25 % of inserts away.
const REBUILT_LOAD: (usize, usize) = (68, 100);
const MIN_SLOTS: usize = 8;

const OCCUPIED: u64 = 1 << 63;
const FORM_SHIFT: u32 = 61;
const FINGERPRINT: u64 = (1 << 56) - 1;

/// What a slot's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// An index into the slab.
    Slab = 0,
    /// `State::Times` of up to two times.
    Times = 1,
    /// `State::EarlyCount` of up to two times, each with its met flag.
    EarlyCount = 2,
    /// `State::Known`.
    Known = 3,
}

impl Form {
    fn of(tag: u64) -> Form {
        match (tag >> FORM_SHIFT) & 3 {
            1 => Form::Times,
            2 => Form::EarlyCount,
            3 => Form::Known,
            _ => Form::Slab,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    /// 0 when empty; else [`OCCUPIED`], the [`Form`] and the low 56 bits of the key's first word
    /// (its top byte is the segment's number).
    tag: u64,
    val: u64,
}

#[derive(Debug, Default)]
struct Segment {
    slots: Vec<Slot>,
    len: usize,
    /// Inline times are offsets from this: set by the first time stored, and again at each
    /// rebuild from the newest time held (so one outlier cannot push every later group out of
    /// range for good).
    base: Option<i64>,
}

/// The group states of one correlation.
#[derive(Debug, Default)]
pub struct Table {
    placement: Placement,
    segments: Vec<Segment>,
    /// States that do not fit a slot; freed entries hold `State::Known(i64::MIN)`.
    slab: Vec<State>,
    free: Vec<u32>,
    len: usize,
}

/// A secret permutation of 64-bit keys: the table stores the permuted key (the top byte chooses
/// the segment, the rest is the fingerprint and the probe's start), and inverts it to list keys.
#[derive(Debug, Clone, Copy)]
struct Placement {
    xor: u64,
    mul: [u64; 2],
    inv: [u64; 2],
}

impl Default for Placement {
    fn default() -> Self {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new();
        let word = |i: u64| random.hash_one(i);
        Placement::with([word(0), word(1) | 1, word(2) | 1])
    }
}

impl Placement {
    /// From a xor mask and two odd multipliers.
    fn with([xor, m0, m1]: [u64; 3]) -> Placement {
        Placement {
            xor,
            mul: [m0 | 1, m1 | 1],
            inv: [inverse(m0 | 1), inverse(m1 | 1)],
        }
    }

    fn apply(&self, x: u64) -> u64 {
        let x = (x ^ self.xor).wrapping_mul(self.mul[0]);
        (x ^ x >> 32).wrapping_mul(self.mul[1])
    }

    fn invert(&self, y: u64) -> u64 {
        let x = y.wrapping_mul(self.inv[1]);
        (x ^ x >> 32).wrapping_mul(self.inv[0]) ^ self.xor
    }
}

/// The inverse of an odd number modulo 2^64 (Newton's iteration doubles the correct bits).
fn inverse(odd: u64) -> u64 {
    let mut x = odd;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(x)));
    }
    x
}

/// Where a fingerprint starts probing in `n` slots: the high bits of the fingerprint scaled to
/// `n` (so segments need not be powers of two), from stored bits only so entries can be moved.
fn home(fp: u64, n: usize) -> usize {
    (((fp << 8) as u128 * n as u128) >> 64) as usize
}

impl Segment {
    fn distance(&self, pos: usize) -> usize {
        let n = self.slots.len();
        let h = home(self.slots[pos].tag & FINGERPRINT, n);
        (pos + n - h) % n
    }

    fn find(&self, fp: u64) -> Option<usize> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut pos = home(fp, n);
        for dist in 0..n {
            let s = self.slots[pos];
            if s.tag == 0 || self.distance(pos) < dist {
                return None;
            }
            if s.tag & FINGERPRINT == fp {
                return Some(pos);
            }
            pos = (pos + 1) % n;
        }
        None
    }

    /// Places a slot whose key is not present, with room for it; returns where it went.
    fn place(&mut self, mut slot: Slot) -> usize {
        let n = self.slots.len();
        let mut pos = home(slot.tag & FINGERPRINT, n);
        let mut dist = 0;
        let mut placed = None;
        loop {
            if self.slots[pos].tag == 0 {
                self.slots[pos] = slot;
                self.len += 1;
                return placed.unwrap_or(pos);
            }
            let theirs = self.distance(pos);
            if theirs < dist {
                std::mem::swap(&mut self.slots[pos], &mut slot);
                placed.get_or_insert(pos);
                dist = theirs;
            }
            pos = (pos + 1) % n;
            dist += 1;
        }
    }

    /// Empties `pos`, moving the slots after it back (Robin Hood backward shift).
    fn take(&mut self, mut pos: usize) -> Slot {
        let n = self.slots.len();
        let gone = self.slots[pos];
        loop {
            let next = (pos + 1) % n;
            if self.slots[next].tag == 0 || self.distance(next) == 0 {
                self.slots[pos] = Slot::default();
                break;
            }
            self.slots[pos] = self.slots[next];
            pos = next;
        }
        self.len -= 1;
        gone
    }
}

/// The payload of a slot just placed, until its state is stored: an inline `Known(i64::MIN)`.
const PLACEHOLDER: u64 = OCCUPIED | (Form::Known as u64) << FORM_SHIFT;

/// Half the range of inline times on either side of a segment's base.
const HALF_RANGE: i64 = 1 << 30;

/// One inline time: its offset from `base` plus one (0 means none), shifted left, with `flag`.
fn encode(t: i64, flag: bool, base: i64) -> Option<u32> {
    let off = t.checked_sub(base)?.checked_add(1)?;
    (1..1 << 31)
        .contains(&off)
        .then(|| ((off as u32) << 1) | u32::from(flag))
}

fn decode(x: u32, base: i64) -> Option<(i64, bool)> {
    (x != 0).then(|| (base + i64::from(x >> 1) - 1, x & 1 == 1))
}

/// A state as a slot's form and payload, when it fits one.
fn pack(state: &State, base: i64) -> Option<(Form, u64)> {
    let pair = |a: Option<u32>, b: Option<u32>| Some(u64::from(a?) | u64::from(b?) << 32);
    let two = |xs: &[(i64, bool)]| match xs {
        [] => Some(0),
        [a] => pair(encode(a.0, a.1, base), Some(0)),
        [a, b] => pair(encode(a.0, a.1, base), encode(b.0, b.1, base)),
        _ => None,
    };
    match state {
        State::Times(ts) => {
            let xs: SmallVec<[(i64, bool); 2]> = ts.iter().map(|&t| (t, false)).collect();
            Some((Form::Times, two(&xs)?))
        }
        State::EarlyCount(cs) => {
            let xs: SmallVec<[(i64, bool); 2]> = cs.iter().map(|&x| (x >> 1, x & 1 == 1)).collect();
            Some((Form::EarlyCount, two(&xs)?))
        }
        State::Known(t) => Some((Form::Known, u64::from(encode(*t, false, base)?))),
        _ => None,
    }
}

fn unpack(form: Form, val: u64, base: i64) -> State {
    let times = || {
        [val as u32, (val >> 32) as u32]
            .into_iter()
            .filter_map(move |x| decode(x, base))
    };
    match form {
        Form::Times => State::Times(times().map(|(t, _)| t).collect()),
        Form::EarlyCount => {
            State::EarlyCount(times().map(|(t, m)| t << 1 | i64::from(m)).collect())
        }
        Form::Known => State::Known(times().next().map_or(i64::MIN, |(t, _)| t)),
        Form::Slab => State::Known(i64::MIN),
    }
}

/// The newest time a state that could fit a slot holds, to choose the base for inline times.
fn inline_time(state: &State) -> Option<i64> {
    match state {
        State::Times(_) | State::EarlyCount(_) | State::Known(_) => {
            Some(state.last()).filter(|&t| t != i64::MIN)
        }
        _ => None,
    }
}

impl Table {
    /// Groups held, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Applies `f` to the state of `key`; a group missing, or last updated before `lo` (expired),
    /// starts as `fresh()`. A new group beyond `max_keys` first evicts expired groups, then the
    /// least recently updated; returns `f`'s result and how many groups were evicted.
    pub fn update<R>(
        &mut self,
        key: &Key,
        lo: i64,
        max_keys: usize,
        fresh: impl FnOnce() -> State,
        f: impl FnOnce(&mut State) -> R,
    ) -> (R, u64) {
        let mut evicted = 0;
        let (seg, fp, found) = self.find(key);
        let pos = match found {
            Some(pos) => {
                if self.last_of(seg, &self.segments[seg].slots[pos]) < lo {
                    self.store(seg, pos, fresh());
                }
                pos
            }
            None => {
                if self.len >= max_keys.max(1) {
                    evicted = self.make_room(lo, max_keys.max(1));
                }
                self.insert_new(seg, fp, fresh(), lo)
            }
        };
        (self.apply(seg, pos, f), evicted)
    }

    /// Applies `f` to the state of `key` if it holds one (expired or not).
    pub fn modify<R>(&mut self, key: &Key, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let (seg, _, pos) = self.find(key);
        Some(self.apply(seg, pos?, f))
    }

    /// Forgets the group of `key`.
    pub fn remove(&mut self, key: &Key) {
        if let (seg, _, Some(pos)) = self.find(key) {
            let slot = self.segments[seg].take(pos);
            self.release(slot);
            self.len -= 1;
        }
    }

    /// Adds a group (restoring a snapshot): no expiry, no cap.
    pub fn insert(&mut self, key: &Key, state: State) {
        match self.find(key) {
            (seg, _, Some(pos)) => self.store(seg, pos, state),
            (seg, fp, None) => {
                self.insert_new(seg, fp, state, i64::MIN);
            }
        }
    }

    /// Every group, as (key, state); the key's second word is not kept and reads 0.
    pub fn iter(&self) -> impl Iterator<Item = (Key, State)> + '_ {
        self.segments.iter().enumerate().flat_map(move |(i, seg)| {
            seg.slots.iter().filter(|s| s.tag != 0).map(move |s| {
                let placed = (i as u64) << 56 | (s.tag & FINGERPRINT);
                let key = (self.placement.invert(placed), 0);
                (key, self.state_of(i, s))
            })
        })
    }

    /// The key as placed (its segment and fingerprint), and its slot if it is held.
    fn find(&self, key: &Key) -> (usize, u64, Option<usize>) {
        let x = self.placement.apply(key.0);
        let (seg, fp) = ((x >> 56) as usize, x & FINGERPRINT);
        (seg, fp, self.segments.get(seg).and_then(|g| g.find(fp)))
    }

    fn state_of(&self, seg: usize, s: &Slot) -> State {
        match Form::of(s.tag) {
            Form::Slab => self.slab[s.val as usize].clone(),
            form => unpack(form, s.val, self.segments[seg].base.unwrap_or(0)),
        }
    }

    /// Runs `f` on the state at `pos`: a slab state in place (a panic in `f` leaves the table
    /// consistent, as the service survives a panicking event), an inline one on a copy.
    fn apply<R>(&mut self, seg: usize, pos: usize, f: impl FnOnce(&mut State) -> R) -> R {
        let s = self.segments[seg].slots[pos];
        let mut state = match Form::of(s.tag) {
            Form::Slab => {
                let i = s.val as usize;
                let r = f(&mut self.slab[i]);
                if inline_time(&self.slab[i]).is_some() {
                    // It may fit a slot again.
                    let state = std::mem::replace(&mut self.slab[i], State::Known(i64::MIN));
                    self.store(seg, pos, state);
                }
                return r;
            }
            form => unpack(form, s.val, self.segments[seg].base.unwrap_or(0)),
        };
        let r = f(&mut state);
        self.store(seg, pos, state);
        r
    }

    /// Writes `state` at `pos`, replacing what the slot held (its slab entry is reused, or
    /// freed when the state now fits inline).
    fn store(&mut self, seg: usize, pos: usize, state: State) {
        let old = self.segments[seg].slots[pos];
        let held = (Form::of(old.tag) == Form::Slab).then_some(old.val as u32);
        let segment = &mut self.segments[seg];
        if segment.base.is_none() {
            segment.base = inline_time(&state).map(|t| t.saturating_sub(HALF_RANGE));
        }
        let packed = segment.base.and_then(|base| pack(&state, base));
        let (form, val) = match (packed, held) {
            (Some(p), held) => {
                if let Some(i) = held {
                    self.free_index(i);
                }
                p
            }
            (None, Some(i)) => {
                self.slab[i as usize] = state;
                (Form::Slab, u64::from(i))
            }
            (None, None) => (Form::Slab, u64::from(self.alloc(state))),
        };
        let slot = &mut self.segments[seg].slots[pos];
        slot.tag = OCCUPIED | (form as u64) << FORM_SHIFT | (slot.tag & FINGERPRINT);
        slot.val = val;
    }

    fn alloc(&mut self, state: State) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = state;
                i
            }
            None => {
                self.slab.push(state);
                (self.slab.len() - 1) as u32
            }
        }
    }

    fn free_index(&mut self, i: u32) {
        self.slab[i as usize] = State::Known(i64::MIN);
        self.free.push(i);
    }

    /// Frees what a removed slot held.
    fn release(&mut self, slot: Slot) {
        if Form::of(slot.tag) == Form::Slab {
            self.free_index(slot.val as u32);
        }
    }

    fn last_of(&self, seg: usize, s: &Slot) -> i64 {
        match Form::of(s.tag) {
            Form::Slab => self.slab[s.val as usize].last(),
            form => unpack(form, s.val, self.segments[seg].base.unwrap_or(0)).last(),
        }
    }

    /// Inserts a new key (placed at `seg`, `fp`), sweeping or growing its segment first when full.
    fn insert_new(&mut self, seg: usize, fp: u64, state: State, lo: i64) -> usize {
        if self.segments.is_empty() {
            self.segments = (0..SEGMENTS).map(|_| Segment::default()).collect();
        }
        let (n, len) = (self.segments[seg].slots.len(), self.segments[seg].len);
        if (len + 1) * MAX_LOAD.1 > n * MAX_LOAD.0 {
            self.rebuild(seg, |last| last >= lo, 1);
        }
        let pos = self.segments[seg].place(Slot {
            tag: PLACEHOLDER | fp,
            val: 0,
        });
        self.len += 1;
        self.store(seg, pos, state);
        pos
    }

    /// Rebuilds a segment with the slots whose last update `keep` accepts, sized for `room`
    /// more and with its base chosen again; returns how many were dropped.
    fn rebuild(&mut self, seg: usize, mut keep: impl FnMut(i64) -> bool, room: usize) -> usize {
        let slots = std::mem::take(&mut self.segments[seg].slots);
        let mut kept = Vec::with_capacity(self.segments[seg].len);
        let mut dropped = 0;
        for s in slots.iter().filter(|s| s.tag != 0) {
            if keep(self.last_of(seg, s)) {
                let state = match Form::of(s.tag) {
                    Form::Slab => {
                        let i = s.val as u32;
                        let state =
                            std::mem::replace(&mut self.slab[i as usize], State::Known(i64::MIN));
                        self.free.push(i);
                        state
                    }
                    form => unpack(form, s.val, self.segments[seg].base.unwrap_or(0)),
                };
                kept.push((s.tag & FINGERPRINT, state));
            } else {
                self.release(*s);
                dropped += 1;
            }
        }
        self.len -= dropped;
        let need = kept.len() + room;
        // A segment left empty gives its slots back.
        let n = match need {
            0 => 0,
            _ => (need * REBUILT_LOAD.1)
                .div_ceil(REBUILT_LOAD.0)
                .max(MIN_SLOTS),
        };
        let segment = &mut self.segments[seg];
        segment.base = kept
            .iter()
            .filter_map(|(_, s)| inline_time(s))
            .max()
            .map(|t| t.saturating_sub(HALF_RANGE));
        segment.slots = vec![Slot::default(); n];
        segment.len = 0;
        for (fp, state) in kept {
            let pos = self.segments[seg].place(Slot {
                tag: PLACEHOLDER | fp,
                val: 0,
            });
            self.store(seg, pos, state);
        }
        dropped
    }

    /// Below `max_keys` again: expired groups go first, then the least recently updated (at least
    /// a sixteenth of the cap, all of the oldest second) so that a flood of new keys costs O(1)
    /// each.
    fn make_room(&mut self, lo: i64, max_keys: usize) -> u64 {
        self.drop_where(|last| last < lo);
        // Down to a sixteenth below the cap, so the next sweep is that many new keys away.
        let goal = max_keys.saturating_sub((max_keys / 16).max(1));
        if self.len <= goal {
            return 0;
        }
        let batch = self.len - goal;
        let mut lasts: Vec<i64> = self
            .segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.slots.iter().filter(|s| s.tag != 0).map(move |s| (i, s)))
            .map(|(i, s)| self.last_of(i, s))
            .collect();
        let (_, &mut cut, _) = lasts.select_nth_unstable(batch - 1);
        // Every group updated at or before the cut goes: groups of the same second are not told
        // apart by where they lie (which the secret placement decides), so the same input
        // evicts the same groups in every run.
        self.drop_where(|last| last <= cut) as u64
    }

    /// Drops the groups whose last update `gone` accepts, rebuilding only the segments that
    /// hold one (with a small cap most segments are empty, and most of the rest untouched).
    fn drop_where(&mut self, gone: impl Fn(i64) -> bool) -> usize {
        let mut dropped = 0;
        for seg in 0..self.segments.len() {
            let segment = &self.segments[seg];
            let any = segment.len > 0
                && segment
                    .slots
                    .iter()
                    .any(|s| s.tag != 0 && gone(self.last_of(seg, s)));
            if any {
                dropped += self.rebuild(seg, |last| !gone(last), 0);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Updates group `i` to `Known(time)` under `cap`; returns how many were evicted.
    fn see(t: &mut Table, i: u64, time: i64, cap: usize) -> u64 {
        t.update(
            &key(i),
            i64::MIN,
            cap,
            || State::Known(i64::MIN),
            |s| *s = State::Known(time),
        )
        .1
    }

    /// [`see`] for each group of `ids` at its own number as time; how many were evicted.
    fn see_each(t: &mut Table, ids: std::ops::Range<u64>, cap: usize) -> u64 {
        ids.map(|i| see(t, i, i as i64, cap)).sum()
    }

    /// Updates group `i` to `Known(time)`, groups last updated before `lo` having expired.
    fn advance(t: &mut Table, i: u64, time: i64, lo: i64) {
        t.update(
            &key(i),
            lo,
            usize::MAX,
            || State::Known(i64::MIN),
            |s| *s = State::Known(time),
        );
    }

    fn key(i: u64) -> Key {
        let h = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
        ((h >> 64) as u64, h as u64)
    }

    #[test]
    fn common_states_fit_a_slot_and_round_trip() {
        let base = 1_700_000_000 - (1 << 29);
        let cases = [
            State::Times(SmallVec::new()),
            State::Times(SmallVec::from_slice(&[1_700_000_000])),
            State::Times(SmallVec::from_slice(&[1_700_000_000, 1_700_000_060])),
            State::EarlyCount(SmallVec::from_slice(&[1_700_000_000 << 1 | 1])),
            State::Known(1_700_000_000),
        ];
        for s in cases {
            let (form, val) = pack(&s, base).expect("fits");
            assert_eq!(format!("{:?}", unpack(form, val, base)), format!("{s:?}"));
        }
        let far = State::Times(SmallVec::from_slice(&[i64::MAX / 2]));
        assert!(
            pack(&far, base).is_none(),
            "a time out of range goes to the slab"
        );
        let three = State::Times(SmallVec::from_slice(&[1, 2, 3]));
        assert!(pack(&three, base).is_none());
        assert!(pack(&State::Known(i64::MIN), base).is_none());
    }

    #[test]
    fn slots_are_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn expired_groups_start_fresh_and_are_swept_before_growing() {
        let mut t = Table::default();
        for i in 0..10_000u64 {
            advance(&mut t, i, i as i64, 0);
        }
        assert_eq!(t.len(), 10_000);
        // Everything before 9,000 has expired: the segments are swept as they fill again.
        for i in 10_000..20_000u64 {
            advance(&mut t, i, i as i64, i as i64 - 1_000);
        }
        assert!(t.len() < 12_000, "{} groups held", t.len());
        let found = t
            .update(
                &key(5),
                19_000,
                usize::MAX,
                || State::Known(-1),
                |s| format!("{s:?}"),
            )
            .0;
        assert_eq!(found, "Known(-1)", "an expired group starts fresh");
    }

    #[test]
    fn the_cap_evicts_the_least_recently_updated() {
        let mut t = Table::default();
        let evicted = see_each(&mut t, 0..100, 64);
        assert!(t.len() <= 64);
        assert_eq!(evicted as usize + t.len(), 100);
        let kept: Vec<i64> = t.iter().map(|(_, s)| s.last()).collect();
        let oldest_kept = kept.iter().min().unwrap();
        assert_eq!(*oldest_kept, 100 - t.len() as i64, "the newest are kept");
    }

    fn slab_used(t: &Table) -> usize {
        t.slab.len() - t.free.len()
    }

    #[test]
    fn a_panic_while_updating_leaves_every_group_as_it_was() {
        let mut t = Table::default();
        let three = |x| State::Times(SmallVec::from_slice(&[x, x + 1, x + 2]));
        t.update(&key(1), i64::MIN, 100, || three(10), |_| ());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.update(&key(1), i64::MIN, 100, || three(0), |_| panic!("a bug"))
        }));
        assert!(caught.is_err());
        t.update(&key(2), i64::MIN, 100, || three(20), |_| ());
        let a = t.modify(&key(1), |s| format!("{s:?}"));
        assert_eq!(a, Some(format!("{:?}", three(10))));
        assert_eq!(slab_used(&t), 2);
    }

    #[test]
    fn inserting_a_key_again_reuses_its_slab_entry() {
        let mut t = Table::default();
        for x in 1_700_000_000..1_700_000_005 {
            t.insert(
                &key(7),
                State::Times(SmallVec::from_slice(&[x, x + 1, x + 2])),
            );
        }
        assert_eq!((t.len(), slab_used(&t)), (1, 1));
        t.insert(&key(7), State::Known(1_700_000_000));
        assert_eq!(slab_used(&t), 0, "a state that fits a slot frees its entry");
    }

    #[test]
    fn at_the_cap_one_sweep_makes_room_for_a_sixteenth() {
        let mut t = Table::default();
        let mut evicted = see_each(&mut t, 0..160, 160);
        assert_eq!((t.len(), evicted), (160, 0));
        evicted += see(&mut t, 1000, 1000, 160);
        assert_eq!((t.len(), evicted), (151, 10));
        evicted += see_each(&mut t, 1001..1009, 160);
        assert_eq!(
            (t.len(), evicted),
            (159, 10),
            "no eviction until the cap again"
        );
    }

    #[test]
    fn with_a_small_cap_only_the_segments_in_use_hold_slots() {
        // A hostile probe found a cap of 16 four to seven times slower than before: every
        // eviction rebuilt and scanned all 256 segments. Emptied segments now give their slots
        // back and only segments holding a group to drop are rebuilt.
        let mut t = Table::default();
        let evicted = see_each(&mut t, 0..10_000, 16);
        assert_eq!(evicted as usize + t.len(), 10_000);
        let holding = t.segments.iter().filter(|g| !g.slots.is_empty()).count();
        assert!(
            holding <= 16,
            "{holding} segments hold slots for {} groups",
            t.len()
        );
    }

    #[test]
    fn an_outlier_time_does_not_push_later_groups_out_of_their_slots() {
        let mut t = Table::default();
        let now = 1_700_000_000;
        // The first time a correlation sees is from 1970: later ones are out of its range.
        for i in 0..256u64 {
            advance(&mut t, i, 0, i64::MIN);
        }
        for i in 256..20_000u64 {
            advance(&mut t, i, now, i64::MIN);
        }
        assert!(
            slab_used(&t) < 2_000,
            "{} groups in the slab",
            slab_used(&t)
        );
        let old = t.modify(&key(3), |s| s.last());
        assert_eq!(old, Some(0), "the outlier itself is kept exactly");
    }

    #[test]
    fn keys_made_to_collide_in_the_open_are_spread_by_the_secret_placement() {
        let mut t = Table::default();
        // What an attacker can compute: 5,000 keys whose first 20 bits agree, which would share
        // a segment and a place without the secret permutation.
        for i in 0..5_000u64 {
            let k = (0xABCDE << 44 | i, 0);
            t.update(
                &k,
                i64::MIN,
                usize::MAX,
                || State::Known(i64::MIN),
                |s| *s = State::Known(1_700_000_000),
            );
        }
        let longest = t
            .segments
            .iter()
            .flat_map(|g| {
                (0..g.slots.len())
                    .filter(|&p| g.slots[p].tag != 0)
                    .map(move |p| g.distance(p))
            })
            .max()
            .unwrap();
        assert!(longest < 40, "a probe of {longest} slots");
        let busiest = t.segments.iter().map(|g| g.len).max().unwrap();
        assert!(busiest < 60, "{busiest} keys in one segment");
        let mut listed: Vec<u64> = t.iter().map(|(k, _)| k.0).collect();
        listed.sort_unstable();
        let made: Vec<u64> = (0..5_000u64).map(|i| 0xABCDE << 44 | i).collect();
        assert_eq!(listed, made, "keys are listed as given");
    }

    proptest! {
        /// The placement is a permutation: inverting gives the key back.
        #[test]
        fn placement_inverts(words in any::<[u64; 3]>(), x in any::<u64>()) {
            let p = Placement::with(words);
            prop_assert_eq!(p.invert(p.apply(x)), x);
        }

        /// The table behaves as a map of key to state (expiry aside), whatever the operations.
        #[test]
        fn the_table_is_a_map(ops in proptest::collection::vec((0u64..300, 0u8..5, -5i64..5), 1..2000)) {
            let mut t = Table::default();
            let mut model: HashMap<u64, State> = HashMap::new();
            for (k, op, x) in ops {
                let time = 1_700_000_000 + x * 1000;
                match op {
                    0 => {
                        t.remove(&key(k));
                        model.remove(&k);
                    }
                    1 => {
                        // A state of three times does not fit a slot.
                        let s = State::Times(SmallVec::from_slice(&[time, time + 1, time + 2]));
                        t.update(&key(k), i64::MIN, usize::MAX, || State::Known(i64::MIN), |st| *st = s.clone());
                        model.insert(k, s);
                    }
                    4 => {
                        // Times far apart: out of a segment's range, then its base again.
                        let s = State::Known(x * 1_000_000_000);
                        t.update(&key(k), i64::MIN, usize::MAX, || State::Known(i64::MIN), |st| *st = s.clone());
                        model.insert(k, s);
                    }
                    _ => {
                        let s = State::EarlyCount(SmallVec::from_slice(&[time << 1 | i64::from(op == 3)]));
                        t.update(&key(k), i64::MIN, usize::MAX, || State::Known(i64::MIN), |st| *st = s.clone());
                        model.insert(k, s);
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
            for (k, s) in &model {
                let got = t.modify(&key(*k), |st| format!("{st:?}"));
                prop_assert_eq!(got, Some(format!("{s:?}")));
            }
            prop_assert_eq!(t.iter().count(), model.len());
            // Every slab entry in use belongs to exactly one slot.
            let mut held: Vec<u64> = t.segments.iter().flat_map(|g| g.slots.iter()).filter(|s| s.tag != 0 && Form::of(s.tag) == Form::Slab).map(|s| s.val).collect();
            let n = held.len();
            held.sort_unstable();
            held.dedup();
            prop_assert_eq!(held.len(), n);
            prop_assert_eq!(slab_used(&t), n);
        }
    }
}
