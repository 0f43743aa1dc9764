//! CloudTrail events: decoding from every envelope, and the field view rules match against.
//!
//! The decoder captures only the fields the compiled rules use (see [`FieldTable`]), as byte
//! ranges of the input; values are turned into text lazily, once per event, when a rule asks.

mod decode;
mod detached;
mod fields;
mod scan;
pub mod text;

pub use decode::{DecodeError, Decoder, Limits};
pub use detached::{Detached, DetachedRecord};
pub use fields::{FieldId, FieldTable};
pub use scan::{ends_inside_value, is_whole_value};

use serde_json::Value;
use std::cell::OnceCell;

/// The value of one field in one event, as rules compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// The event has no such field.
    Missing,
    /// The field is present with JSON `null`.
    Null,
    /// The field's text (see [`text`] for how non-strings become text).
    Text(&'a str),
}

impl<'a> FieldValue<'a> {
    /// The text, if the field has a non-null value.
    pub fn text(self) -> Option<&'a str> {
        match self {
            FieldValue::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// What the decoder captured at one trie node.
#[derive(Debug, Clone, Default)]
pub(crate) enum Cap {
    #[default]
    None,
    /// An object that was walked; its wanted children are captured at their own nodes.
    Object,
    /// The raw JSON text of the value, as a byte range of the document.
    Raw(usize, usize),
    /// A string without escapes: the byte range of its content (no rewriting needed).
    Str(usize, usize),
    /// The raw JSON of each element of an array that a longer path crosses.
    Elements(Vec<(usize, usize)>),
}

/// Per-thread scratch space reused across events, so decoding allocates almost nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) caps: Vec<Cap>,
    pub(crate) touched: Vec<u32>,
    values: Vec<OnceCell<Resolved>>,
    /// Fields resolved for the current event, so a reset clears only those.
    resolved: std::cell::RefCell<Vec<u32>>,
    parsed: Vec<OnceCell<Option<Value>>>,
    pub(crate) whole: Option<(usize, usize)>,
    whole_text: OnceCell<Option<String>>,
    /// A value a rule read could not be parsed (nested too deeply); it read as missing.
    unreadable: std::cell::Cell<bool>,
}

#[derive(Debug, Clone)]
enum Resolved {
    Missing,
    Null,
    Borrowed(usize, usize),
    Owned(String),
}

impl Scratch {
    /// Scratch sized for `fields`.
    pub fn new(fields: &FieldTable) -> Self {
        let mut s = Scratch::default();
        s.reset(fields);
        s
    }

    /// Forgets the previous event.
    pub(crate) fn reset(&mut self, fields: &FieldTable) {
        let nodes = fields.trie.nodes.len();
        if self.caps.len() != nodes {
            self.caps = vec![Cap::None; nodes];
            self.parsed = (0..nodes).map(|_| OnceCell::new()).collect();
            self.touched.clear();
        }
        for &n in &self.touched {
            self.caps[n as usize] = Cap::None;
            self.parsed[n as usize] = OnceCell::new();
        }
        self.touched.clear();
        if self.values.len() != fields.len() {
            self.values = (0..fields.len()).map(|_| OnceCell::new()).collect();
            self.resolved.get_mut().clear();
        } else {
            for &f in self.resolved.get_mut().iter() {
                self.values[f as usize] = OnceCell::new();
            }
            self.resolved.get_mut().clear();
        }
        self.whole = None;
        self.whole_text = OnceCell::new();
        self.unreadable.set(false);
    }

    pub(crate) fn set(&mut self, node: u32, cap: Cap) {
        if matches!(self.caps[node as usize], Cap::None) {
            self.touched.push(node);
        }
        self.caps[node as usize] = cap;
    }
}

/// One decoded CloudTrail record: a view over the input document and the captured fields.
pub struct Event<'a> {
    doc: &'a str,
    scratch: &'a Scratch,
    fields: &'a FieldTable,
}

impl<'a> Event<'a> {
    pub(crate) fn new(doc: &'a str, scratch: &'a Scratch, fields: &'a FieldTable) -> Self {
        Event {
            doc,
            scratch,
            fields,
        }
    }

    /// The field table this event was decoded for.
    pub fn fields(&self) -> &'a FieldTable {
        self.fields
    }

    /// The text of a `Cap::Str` range.
    #[inline(always)]
    fn str_at(&self, s: usize, e: usize) -> &'a str {
        debug_assert!(s <= e && self.doc.is_char_boundary(s) && self.doc.is_char_boundary(e));
        // SAFETY: the decoder records `Cap::Str` only for the content of a JSON string of this
        // document, between two ASCII quotes, so both ends are char boundaries within it.
        unsafe { self.doc.get_unchecked(s..e) }
    }

    /// The value of a field: read straight from the capture when it is a plain string or
    /// literal, else resolved on first use and cached for the event.
    #[inline(always)]
    pub fn get(&self, id: FieldId) -> FieldValue<'_> {
        if let Some(node) = self.fields.plans[id.0 as usize].top {
            match self.scratch.caps[node as usize] {
                Cap::None | Cap::Object => return FieldValue::Missing,
                Cap::Str(s, e) => return FieldValue::Text(self.str_at(s, e)),
                _ => {}
            }
        }
        self.get_slow(id)
    }

    #[inline(never)]
    fn get_slow(&self, id: FieldId) -> FieldValue<'_> {
        match self.direct(id) {
            Some(v) => v,
            None => self.resolved(id),
        }
    }

    /// The common cases, which need neither parsing nor caching.
    #[inline]
    fn direct(&self, id: FieldId) -> Option<FieldValue<'_>> {
        let plan = &self.fields.plans[id.0 as usize];
        let caps = &self.scratch.caps;
        if let Some(lit) = plan.literal {
            match caps[lit as usize] {
                Cap::None => {}
                Cap::Str(s, e) => return Some(FieldValue::Text(self.str_at(s, e))),
                _ => return None,
            }
        }
        let n = plan.nodes.len();
        for (i, &node) in plan.nodes.iter().enumerate() {
            let last = i + 1 == n;
            match caps[node as usize] {
                Cap::None => return Some(FieldValue::Missing),
                Cap::Object if last => return Some(FieldValue::Missing),
                Cap::Object => continue,
                Cap::Str(s, e) if last => return Some(FieldValue::Text(self.str_at(s, e))),
                Cap::Str(..) => return Some(FieldValue::Missing),
                Cap::Raw(s, e) if last => {
                    return match &self.doc.as_bytes()[s..e] {
                        b"null" => Some(FieldValue::Null),
                        b"true" | b"false" => Some(FieldValue::Text(&self.doc[s..e])),
                        _ => None,
                    }
                }
                _ => return None,
            }
        }
        Some(FieldValue::Missing)
    }

    /// The value of a field, resolved on first use and cached for the event.
    fn resolved(&self, id: FieldId) -> FieldValue<'_> {
        let resolved = self.scratch.values[id.0 as usize].get_or_init(|| {
            self.scratch.resolved.borrow_mut().push(id.0);
            self.resolve(id)
        });
        match resolved {
            Resolved::Missing => FieldValue::Missing,
            Resolved::Null => FieldValue::Null,
            Resolved::Borrowed(s, e) => FieldValue::Text(&self.doc[*s..*e]),
            Resolved::Owned(t) => FieldValue::Text(t),
        }
    }

    /// The value of a field by path; `Missing` when no rule registered the path.
    pub fn get_path(&self, path: &str) -> FieldValue<'_> {
        match self.fields.get(path) {
            Some(id) => self.get(id),
            None => FieldValue::Missing,
        }
    }

    /// Whether a value some rule read could not be parsed (JSON nested over 128 levels)
    /// and so read as missing. Values no rule reads are skipped, however deep.
    pub fn had_unreadable_value(&self) -> bool {
        self.scratch.unreadable.get()
    }

    fn parse_raw(&self, raw: &str) -> Option<Value> {
        match serde_json::from_str(raw) {
            Ok(v) => Some(v),
            Err(_) => {
                self.scratch.unreadable.set(true);
                None
            }
        }
    }

    /// The record's text as it stands in the input.
    pub fn raw_text(&self) -> Option<&str> {
        let (s, e) = self.scratch.whole?;
        self.doc.get(s..e)
    }

    /// The whole record's compact JSON text.
    pub fn whole_text(&self) -> Option<&str> {
        self.scratch
            .whole_text
            .get_or_init(|| {
                let (s, e) = self.scratch.whole?;
                let v = self.parse_raw(&self.doc[s..e])?;
                Some(text::compact(&v))
            })
            .as_deref()
    }

    fn resolve(&self, id: FieldId) -> Resolved {
        let plan = &self.fields.plans[id.0 as usize];
        if let Some(lit) = plan.literal {
            // A top-level key spelled with the dots wins over the nested path (oracle rule).
            match self.scratch.caps[lit as usize] {
                Cap::Raw(s, e) => return self.raw_value(s, e),
                Cap::Str(s, e) => return Resolved::Borrowed(s, e),
                _ => {}
            }
        }
        for (i, &node) in plan.nodes.iter().enumerate() {
            let last = i + 1 == plan.nodes.len();
            match &self.scratch.caps[node as usize] {
                Cap::None => return Resolved::Missing,
                Cap::Object if last => return Resolved::Missing,
                Cap::Object => continue,
                Cap::Str(s, e) if last => return Resolved::Borrowed(*s, *e),
                Cap::Str(..) => return Resolved::Missing,
                Cap::Raw(s, e) if last => return self.raw_value(*s, *e),
                Cap::Raw(..) => {
                    let Some(v) = self.parsed(node) else {
                        return Resolved::Missing;
                    };
                    return collected(lookup_all(v, &plan.segments[i + 1..]));
                }
                Cap::Elements(elems) => {
                    let rest = &plan.segments[i + 1..];
                    let mut vals = Vec::new();
                    for &(s, e) in elems {
                        if let Some(v) = self.parse_raw(&self.doc[s..e]) {
                            lookup(&v, rest, &mut |x| vals.push(x.clone()));
                        }
                    }
                    return collected(vals.iter().collect());
                }
            }
        }
        Resolved::Missing
    }

    fn parsed(&self, node: u32) -> Option<&Value> {
        self.scratch.parsed[node as usize]
            .get_or_init(|| match self.scratch.caps[node as usize] {
                Cap::Raw(s, e) => self.parse_raw(&self.doc[s..e]),
                _ => None,
            })
            .as_ref()
    }

    /// The text of a captured raw JSON value, borrowing it when it needs no rewriting.
    fn raw_value(&self, s: usize, e: usize) -> Resolved {
        let raw = &self.doc[s..e];
        let bytes = raw.as_bytes();
        match bytes.first() {
            Some(b'"') if !bytes.contains(&b'\\') => Resolved::Borrowed(s + 1, e - 1),
            Some(b'n') => Resolved::Null,
            Some(b't') | Some(b'f') => Resolved::Borrowed(s, e),
            Some(b'-' | b'0'..=b'9') if bytes[1..].iter().all(u8::is_ascii_digit) => {
                Resolved::Borrowed(s, e)
            }
            _ => match self.parse_raw(raw) {
                Some(v) => match text::value_text(&v) {
                    Some(t) => Resolved::Owned(t),
                    None => Resolved::Null,
                },
                None => Resolved::Missing,
            },
        }
    }
}

fn lookup_all<'v>(v: &'v Value, parts: &[Box<str>]) -> Vec<&'v Value> {
    let mut out = Vec::new();
    lookup(v, parts, &mut |x| out.push(x));
    out
}

/// The values at a dotted path; arrays on the way are crossed element by element.
fn lookup<'v>(node: &'v Value, parts: &[Box<str>], out: &mut dyn FnMut(&'v Value)) {
    let Some((first, rest)) = parts.split_first() else {
        out(node);
        return;
    };
    match node {
        Value::Array(items) => items.iter().for_each(|item| lookup(item, parts, out)),
        Value::Object(map) => {
            if let Some(child) = map.get(first.as_ref()) {
                lookup(child, rest, out);
            }
        }
        _ => {}
    }
}

/// One value stands for itself; several become the JSON text of their list (oracle rule).
fn collected(vals: Vec<&Value>) -> Resolved {
    let non_null: Vec<&Value> = vals.iter().copied().filter(|v| !v.is_null()).collect();
    match non_null.len() {
        0 if vals.is_empty() => Resolved::Missing,
        0 => Resolved::Null,
        1 => text::value_text(non_null[0]).map_or(Resolved::Null, Resolved::Owned),
        _ => {
            let list = Value::Array(non_null.into_iter().cloned().collect());
            Resolved::Owned(text::compact(&list))
        }
    }
}
