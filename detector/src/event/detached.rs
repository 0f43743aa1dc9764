//! Records copied out of the documents they were decoded from, to be read again elsewhere.
//!
//! Parallel replay decodes and matches records on worker threads while one thread keeps the
//! state (de-duplication, correlations, the gate) in input order. A record that hit a rule
//! travels from one to the other as its own text and the decoder's captures, rebased onto that
//! text: an [`Event`] made again from them reads every field exactly as the original did,
//! without decoding anything twice.

use super::fields::{FieldId, FieldTable};
use super::{Cap, Event, FieldValue, Scratch};
use std::ops::Range;

/// An arena of detached records and strings, filled by one thread and read by another.
#[derive(Debug, Default)]
pub struct Detached {
    text: String,
    caps: Vec<(u32, Cap)>,
}

/// Where one detached record lies in its [`Detached`].
#[derive(Debug, Clone)]
pub struct DetachedRecord {
    text: Range<usize>,
    caps: Range<usize>,
}

impl Detached {
    /// Bytes of text the arena holds without growing.
    pub fn text_capacity(&self) -> usize {
        self.text.capacity()
    }

    /// Forgets everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.text.clear();
        self.caps.clear();
    }

    /// Copies `ev`'s record (its own text, not the whole document) and captures.
    pub fn push(&mut self, ev: &Event<'_>) -> DetachedRecord {
        let scratch = ev.scratch;
        let (s, e) = scratch.whole.unwrap_or((0, ev.doc.len()));
        let start = self.text.len();
        self.text.push_str(&ev.doc[s..e]);
        let first_cap = self.caps.len();
        let rebase = |(a, b): (usize, usize)| {
            debug_assert!(s <= a && b <= e, "a capture outside its record");
            (a.saturating_sub(s), b.saturating_sub(s))
        };
        for &node in &scratch.touched {
            let cap = match &scratch.caps[node as usize] {
                Cap::None => continue,
                Cap::Object => Cap::Object,
                Cap::Raw(a, b) => {
                    let (a, b) = rebase((*a, *b));
                    Cap::Raw(a, b)
                }
                Cap::Str(a, b) => {
                    let (a, b) = rebase((*a, *b));
                    Cap::Str(a, b)
                }
                Cap::Elements(list) => Cap::Elements(list.iter().map(|&r| rebase(r)).collect()),
            };
            self.caps.push((node, cap));
        }
        DetachedRecord {
            text: start..self.text.len(),
            caps: first_cap..self.caps.len(),
        }
    }

    /// Copies only the top-level `fields` of `ev`: the event made again answers those alone
    /// (every other field reads as missing, and its record text is theirs). For a reader that
    /// needs nothing else, at the cost of a few short strings instead of the record.
    pub fn push_fields(&mut self, ev: &Event<'_>, fields: &[FieldId]) -> DetachedRecord {
        let table = ev.fields;
        let start = self.text.len();
        let first_cap = self.caps.len();
        for &f in fields {
            let Some(node) = table.plans[f.0 as usize].top else {
                self.text.truncate(start);
                self.caps.truncate(first_cap);
                return self.push(ev);
            };
            let at = self.text.len() - start;
            let cap = match ev.get(f) {
                FieldValue::Missing => continue,
                FieldValue::Null => {
                    self.text.push_str("null");
                    Cap::Raw(at, at + 4)
                }
                FieldValue::Text(t) => {
                    self.text.push_str(t);
                    Cap::Str(at, at + t.len())
                }
            };
            self.caps.push((node, cap));
        }
        DetachedRecord {
            text: start..self.text.len(),
            caps: first_cap..self.caps.len(),
        }
    }

    /// Copies a string; [`Detached::str`] reads it back.
    pub fn push_str(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    /// A string copied with [`Detached::push_str`].
    pub fn str(&self, at: Range<usize>) -> &str {
        self.text.get(at).unwrap_or_default()
    }

    /// The event of a record pushed here (with the same field table), its captures set in
    /// `scratch`.
    pub fn event<'a>(
        &'a self,
        record: &DetachedRecord,
        scratch: &'a mut Scratch,
        fields: &'a FieldTable,
    ) -> Event<'a> {
        scratch.reset(fields);
        for (node, cap) in &self.caps[record.caps.clone()] {
            scratch.set(*node, cap.clone());
        }
        let doc = self.str(record.text.clone());
        scratch.whole = Some((0, doc.len()));
        Event::new(doc, scratch, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Decoder, FieldValue, Limits};

    fn table(paths: &[&str]) -> FieldTable {
        let mut t = FieldTable::default();
        for p in paths {
            t.intern(p);
        }
        t.want_whole_record();
        t
    }

    /// The value of each of the first `n` fields, as text.
    fn values(ev: &Event<'_>, n: usize) -> Vec<Option<String>> {
        (0..n)
            .map(|i| match ev.get(FieldId(i as u32)) {
                FieldValue::Text(t) => Some(t.to_string()),
                FieldValue::Null => Some("<null>".into()),
                FieldValue::Missing => None,
            })
            .collect()
    }

    #[test]
    fn a_detached_record_reads_every_field_as_the_original() {
        let paths = [
            "eventID",
            "eventName",
            "userIdentity.arn",
            "requestParameters.items.name",
            "requestParameters",
            "escaped",
            "n",
            "missing",
            "nul",
        ];
        let fields = table(&paths);
        let docs = [
            r#"{"Records":[{"eventID":"a"},{"eventID":"b","eventName":"X","userIdentity":{"arn":"arn:1"},"requestParameters":{"items":[{"name":"p"},{"name":"q"}]},"escaped":"tab\there é","n":12,"nul":null}]}"#,
            r#"{"detail-type":"AWS API Call via CloudTrail","detail":{"eventID":"c","eventName":"Y","n":-1.5e3}}"#,
            r#"{"Type":"Notification","Message":"{\"eventID\":\"d\",\"eventName\":\"Z\",\"escaped\":\"\\u00e9\"}"}"#,
        ];
        let mut decoder = Decoder::new(&fields, Limits::default());
        let mut arena = Detached::default();
        let mut expected = Vec::new();
        let mut records = Vec::new();
        for doc in docs {
            decoder
                .decode(doc.as_bytes(), &mut |item| {
                    let ev = item.unwrap();
                    expected.push((values(ev, paths.len()), ev.whole_text().map(str::to_string)));
                    records.push(arena.push(ev));
                })
                .unwrap();
        }
        assert_eq!(records.len(), 4);
        let mut scratch = Scratch::new(&fields);
        for (record, (values_before, whole)) in records.iter().zip(&expected) {
            let ev = arena.event(record, &mut scratch, &fields);
            assert_eq!(&values(&ev, paths.len()), values_before);
            assert_eq!(ev.whole_text().map(str::to_string), *whole);
        }
        let s = arena.push_str("account");
        assert_eq!(arena.str(s), "account");
    }

    #[test]
    fn a_record_detached_by_fields_answers_those_alone() {
        let fields = table(&["eventID", "eventTime", "eventName", "nul"]);
        let doc = r#"{"eventID":"i\u0041","eventTime":"t","eventName":"X","nul":null}"#;
        let mut decoder = Decoder::new(&fields, Limits::default());
        let mut arena = Detached::default();
        let mut record = None;
        let ids = [FieldId(0), FieldId(1), FieldId(3)];
        decoder
            .decode(doc.as_bytes(), &mut |item| {
                record = Some(arena.push_fields(item.unwrap(), &ids));
            })
            .unwrap();
        let mut scratch = Scratch::new(&fields);
        let ev = arena.event(&record.unwrap(), &mut scratch, &fields);
        assert_eq!(ev.get(FieldId(0)), FieldValue::Text("iA"));
        assert_eq!(ev.get(FieldId(1)), FieldValue::Text("t"));
        assert_eq!(ev.get(FieldId(2)), FieldValue::Missing);
        assert_eq!(ev.get(FieldId(3)), FieldValue::Null);
    }
}
