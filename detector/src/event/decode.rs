//! Decoding CloudTrail records out of every wrapper they arrive in, in one pass.
//!
//! A document is one of: a bare record; a CloudTrail log file `{"Records":[...]}`; a JSON array
//! of records; an EventBridge event whose `detail` is the record; an SNS notification whose
//! `Message` string holds any of these. The top-level object is walked once: its keys are
//! captured as if it were a bare record while `Records` and `detail` are decoded as records
//! alongside, and the kind is settled when the object ends.

use super::fields::FieldTable;
use super::{Cap, Event, Scratch};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// Limits applied to every document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest document (a line, a file, a message body) accepted, in bytes.
    pub max_document_bytes: usize,
    /// How many SNS notifications may wrap one another.
    pub max_envelope_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 256 << 20,
            max_envelope_depth: 4,
        }
    }
}

/// Why a document, or one record in it, could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    Utf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The document exceeds [`Limits::max_document_bytes`].
    #[error("document of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Size seen (at least).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The JSON ends before it is complete.
    #[error("truncated JSON: input ends at line {line}, column {column}")]
    Truncated {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The JSON nests deeper than the parser allows.
    #[error("JSON nested too deeply (over 128 levels) at line {line}, column {column}")]
    TooDeep {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The JSON is malformed.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A record position holds something other than an object.
    #[error("expected a CloudTrail record (a JSON object), found {found}")]
    NotARecord {
        /// The JSON type found.
        found: &'static str,
    },
    /// An EventBridge event that does not carry a CloudTrail record.
    #[error("EventBridge event of detail-type '{detail_type}' does not carry a CloudTrail record")]
    NotCloudTrail {
        /// The event's `detail-type`.
        detail_type: String,
    },
    /// SNS notifications wrapped in each other too many times.
    #[error("SNS notifications nested more than {limit} deep")]
    EnvelopeTooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// An SNS notification whose `Message` is not a string.
    #[error("SNS notification without a string Message")]
    BadNotification,
}

impl DecodeError {
    /// A short stable name of the error kind, for metrics labels and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Utf8 { .. } => "utf8",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::Syntax { .. } => "syntax",
            DecodeError::NotARecord { .. } => "not_a_record",
            DecodeError::NotCloudTrail { .. } => "not_cloudtrail",
            DecodeError::EnvelopeTooDeep { .. } => "envelope_too_deep",
            DecodeError::BadNotification => "bad_notification",
        }
    }

    fn from_json(e: &serde_json::Error) -> Self {
        let (line, column) = (e.line(), e.column());
        let message = e.to_string();
        if e.is_eof() {
            DecodeError::Truncated { line, column }
        } else if message.starts_with("recursion limit exceeded") {
            DecodeError::TooDeep { line, column }
        } else {
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            DecodeError::Syntax {
                line,
                column,
                message,
            }
        }
    }
}

/// What the decoder hands on: each record, or why one could not be read.
pub type Item<'e, 'a> = Result<&'e Event<'a>, DecodeError>;

/// Decodes documents into events, capturing the fields of one [`FieldTable`].
#[derive(Debug)]
pub struct Decoder<'f> {
    fields: &'f FieldTable,
    limits: Limits,
    top: Scratch,
    inner: Scratch,
}

impl<'f> Decoder<'f> {
    /// A decoder for the fields in `fields`.
    pub fn new(fields: &'f FieldTable, limits: Limits) -> Self {
        Decoder {
            fields,
            limits,
            top: Scratch::new(fields),
            inner: Scratch::new(fields),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decodes one document, calling `sink` for every record (and every bad record) in order.
    ///
    /// Returns an error when the document as a whole is unreadable; records before the point
    /// of failure have already been handed to `sink`.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        sink: &mut dyn FnMut(Item<'_, '_>),
    ) -> Result<(), DecodeError> {
        if bytes.len() > self.limits.max_document_bytes {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_document_bytes,
            });
        }
        let doc = std::str::from_utf8(bytes).map_err(|e| DecodeError::Utf8 {
            offset: e.valid_up_to(),
        })?;
        self.decode_str(doc, 0, sink)
    }

    fn decode_str(
        &mut self,
        doc: &str,
        depth: usize,
        sink: &mut dyn FnMut(Item<'_, '_>),
    ) -> Result<(), DecodeError> {
        let fields = self.fields;
        let base = doc.as_ptr() as usize;
        let first = doc.bytes().find(|b| !b.is_ascii_whitespace());
        let mut de = serde_json::Deserializer::from_str(doc);
        match first {
            Some(b'[') => {
                let seed = RecordsSeed {
                    fields,
                    scratch: &mut self.inner,
                    base,
                    doc,
                    sink,
                };
                de::Deserializer::deserialize_seq(&mut de, seed)
                    .map_err(|e| DecodeError::from_json(&e))?;
                de.end().map_err(|e| DecodeError::from_json(&e))?;
                Ok(())
            }
            Some(b'{') => {
                self.top.reset(fields);
                self.inner.reset(fields);
                if fields.whole_record {
                    let start = doc.len() - doc.trim_start().len();
                    self.top.whole = Some((start, doc.trim_end().len()));
                }
                let visitor = DocVisitor {
                    fields,
                    top: &mut self.top,
                    inner: &mut self.inner,
                    base,
                    doc,
                    sink,
                    kind: DocKind::default(),
                };
                let kind = de::Deserializer::deserialize_map(&mut de, visitor)
                    .map_err(|e| DecodeError::from_json(&e))?;
                de.end().map_err(|e| DecodeError::from_json(&e))?;
                self.finish(doc, kind, depth, sink)
            }
            None => Err(DecodeError::Truncated {
                line: doc.lines().count().max(1),
                column: 1,
            }),
            Some(_) => {
                // Parse it anyway, so a syntax error reports itself; valid JSON is the wrong type.
                let v: serde_json::Value =
                    serde_json::from_str(doc).map_err(|e| DecodeError::from_json(&e))?;
                Err(DecodeError::NotARecord {
                    found: json_type(&v),
                })
            }
        }
    }

    /// Settles what the top-level object was and emits its record(s).
    fn finish(
        &mut self,
        doc: &str,
        kind: DocKind,
        depth: usize,
        sink: &mut dyn FnMut(Item<'_, '_>),
    ) -> Result<(), DecodeError> {
        if kind.records {
            return Ok(());
        }
        if let Some((s, e)) = kind.detail_type {
            let detail_type = unquote(&doc[s..e]);
            if !detail_type.ends_with("via CloudTrail") {
                return Err(DecodeError::NotCloudTrail { detail_type });
            }
            if !kind.detail {
                return Err(DecodeError::NotARecord { found: "no detail" });
            }
            sink(Ok(&Event::new(doc, &self.inner, self.fields)));
            return Ok(());
        }
        if let (Some(t), Some(m)) = (kind.sns_type, kind.sns_message) {
            if unquote(&doc[t.0..t.1]) == "Notification" {
                let raw = &doc[m.0..m.1];
                let message: String =
                    serde_json::from_str(raw).map_err(|_| DecodeError::BadNotification)?;
                if depth + 1 > self.limits.max_envelope_depth {
                    return Err(DecodeError::EnvelopeTooDeep {
                        limit: self.limits.max_envelope_depth,
                    });
                }
                return self.decode_str(&message, depth + 1, sink);
            }
        }
        sink(Ok(&Event::new(doc, &self.top, self.fields)));
        Ok(())
    }
}

fn unquote(raw: &str) -> String {
    serde_json::from_str::<String>(raw).unwrap_or_default()
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn range(base: usize, raw: &RawValue) -> (usize, usize) {
    let s = raw.get().as_ptr() as usize - base;
    (s, s + raw.get().len())
}

#[derive(Default)]
struct DocKind {
    records: bool,
    detail: bool,
    detail_type: Option<(usize, usize)>,
    sns_type: Option<(usize, usize)>,
    sns_message: Option<(usize, usize)>,
}

/// The top-level object: a record, or an envelope around records.
struct DocVisitor<'s, 'd, 'k> {
    fields: &'s FieldTable,
    top: &'s mut Scratch,
    inner: &'s mut Scratch,
    base: usize,
    doc: &'d str,
    sink: &'k mut dyn FnMut(Item<'_, '_>),
    kind: DocKind,
}

impl<'de, 's, 'd, 'k> Visitor<'de> for DocVisitor<'s, 'd, 'k> {
    type Value = DocKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<DocKind, A::Error> {
        let trie = &self.fields.trie;
        while let Some(key) = map.next_key_seed(EnvelopeKeySeed { trie })? {
            match key {
                TopKey::Records => {
                    let seed = RecordsSeed {
                        fields: self.fields,
                        scratch: self.inner,
                        base: self.base,
                        doc: self.doc,
                        sink: self.sink,
                    };
                    self.kind.records |= map.next_value_seed(MaybeSeq(seed))?;
                }
                TopKey::Detail => {
                    let raw: &RawValue = map.next_value()?;
                    if raw.get().starts_with('{') {
                        let (s, e) = range(self.base, raw);
                        parse_record(self.fields, self.inner, self.base, self.doc, s, e)
                            .map_err(de::Error::custom)?;
                        self.kind.detail = true;
                    }
                }
                TopKey::DetailType | TopKey::SnsType | TopKey::SnsMessage => {
                    let raw: &RawValue = map.next_value()?;
                    let r = Some(range(self.base, raw));
                    if raw.get().starts_with('"') {
                        match key {
                            TopKey::DetailType => self.kind.detail_type = r,
                            TopKey::SnsType => self.kind.sns_type = r,
                            _ => self.kind.sns_message = r,
                        }
                    }
                }
                TopKey::Field(node) => {
                    capture_value(&mut map, self.fields, self.top, self.base, node)?
                }
                TopKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self.kind)
    }
}

/// Parses the record at `doc[s..e]` into `scratch`.
fn parse_record(
    fields: &FieldTable,
    scratch: &mut Scratch,
    base: usize,
    doc: &str,
    s: usize,
    e: usize,
) -> Result<(), serde_json::Error> {
    scratch.reset(fields);
    if fields.whole_record {
        scratch.whole = Some((s, e));
    }
    let mut de = serde_json::Deserializer::from_str(&doc[s..e]);
    de::Deserializer::deserialize_map(
        &mut de,
        ObjectVisitor {
            fields,
            scratch,
            base,
            node: 0,
        },
    )
}

enum TopKey {
    Records,
    Detail,
    DetailType,
    SnsType,
    SnsMessage,
    Field(u32),
    Other,
}

struct EnvelopeKeySeed<'t> {
    trie: &'t super::fields::Trie,
}

impl<'de> DeserializeSeed<'de> for EnvelopeKeySeed<'_> {
    type Value = TopKey;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<TopKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeKeySeed<'_> {
    type Value = TopKey;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<TopKey, E> {
        Ok(match k {
            "Records" => TopKey::Records,
            "detail" => TopKey::Detail,
            "detail-type" => TopKey::DetailType,
            "Type" => TopKey::SnsType,
            "Message" => TopKey::SnsMessage,
            _ => match self.trie.lookup(0, k) {
                Some(n) => TopKey::Field(n),
                None => TopKey::Other,
            },
        })
    }
}

/// Looks a key up among the children of one trie node.
struct KeySeed<'t> {
    trie: &'t super::fields::Trie,
    node: u32,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<u32>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<u32>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<u32>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<Option<u32>, E> {
        Ok(self.trie.lookup(self.node, k))
    }
}

/// Captures the value of the current map entry at trie node `node`.
fn capture_value<'de, A: MapAccess<'de>>(
    map: &mut A,
    fields: &FieldTable,
    scratch: &mut Scratch,
    base: usize,
    node: u32,
) -> Result<(), A::Error> {
    if fields.trie.nodes[node as usize].terminal {
        let raw: &RawValue = map.next_value()?;
        let (s, e) = range(base, raw);
        scratch.set(node, Cap::Raw(s, e));
        Ok(())
    } else {
        map.next_value_seed(InnerSeed {
            fields,
            scratch,
            base,
            node,
        })
    }
}

/// Walks an object, capturing the children the trie wants below `node`.
struct ObjectVisitor<'s> {
    fields: &'s FieldTable,
    scratch: &'s mut Scratch,
    base: usize,
    node: u32,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let trie = &self.fields.trie;
        while let Some(child) = map.next_key_seed(KeySeed {
            trie,
            node: self.node,
        })? {
            match child {
                Some(c) => capture_value(&mut map, self.fields, self.scratch, self.base, c)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A value on the way to a wanted field: an object is walked, an array kept for crossing.
struct InnerSeed<'s> {
    fields: &'s FieldTable,
    scratch: &'s mut Scratch,
    base: usize,
    node: u32,
}

impl<'de> DeserializeSeed<'de> for InnerSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InnerSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.scratch.set(self.node, Cap::Object);
        ObjectVisitor {
            fields: self.fields,
            scratch: self.scratch,
            base: self.base,
            node: self.node,
        }
        .visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut elems = Vec::new();
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            elems.push(range(self.base, raw));
        }
        self.scratch.set(self.node, Cap::Elements(elems));
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// `Records`: an array is decoded record by record; anything else is not a log file.
struct MaybeSeq<'s, 'd, 'k>(RecordsSeed<'s, 'd, 'k>);

impl<'de> DeserializeSeed<'de> for MaybeSeq<'_, '_, '_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self.0)
    }
}

/// An array of records, each handed to the sink as soon as it is decoded.
struct RecordsSeed<'s, 'd, 'k> {
    fields: &'s FieldTable,
    scratch: &'s mut Scratch,
    base: usize,
    doc: &'d str,
    sink: &'k mut dyn FnMut(Item<'_, '_>),
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of CloudTrail records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        loop {
            let elem = RecordElem {
                fields: self.fields,
                scratch: &mut *self.scratch,
                base: self.base,
                doc: self.doc,
            };
            match seq.next_element_seed(elem)? {
                None => return Ok(true),
                Some(Ok(())) => (self.sink)(Ok(&Event::new(self.doc, self.scratch, self.fields))),
                Some(Err(found)) => (self.sink)(Err(DecodeError::NotARecord { found })),
            }
        }
    }
    // Any other `Records` value means this is not a log file; the key is then just ignored.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// One element of a records array: decoded into the scratch, or the JSON type it was instead.
struct RecordElem<'s, 'd> {
    fields: &'s FieldTable,
    scratch: &'s mut Scratch,
    base: usize,
    doc: &'d str,
}

impl<'de> DeserializeSeed<'de> for RecordElem<'_, '_> {
    type Value = Result<(), &'static str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.fields.whole_record {
            // Keyword rules need the record's own text, so take it raw and walk it after.
            let raw: &RawValue = de::Deserialize::deserialize(d)?;
            if !raw.get().starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or_default();
                return Ok(Err(json_type(&v)));
            }
            let (s, e) = range(self.base, raw);
            parse_record(self.fields, self.scratch, self.base, self.doc, s, e)
                .map_err(de::Error::custom)?;
            return Ok(Ok(()));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordElem<'_, '_> {
    type Value = Result<(), &'static str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CloudTrail record")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.scratch.reset(self.fields);
        ObjectVisitor {
            fields: self.fields,
            scratch: self.scratch,
            base: self.base,
            node: 0,
        }
        .visit_map(map)?;
        Ok(Ok(()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("an array"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err("a string"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err("null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldValue;

    /// Decodes `doc` and returns, per record, the requested fields' values (or the error).
    fn decode(
        doc: &str,
        paths: &[&str],
    ) -> (Vec<Vec<String>>, Vec<String>, Result<(), DecodeError>) {
        let mut fields = FieldTable::new();
        let ids: Vec<_> = paths.iter().map(|p| fields.intern(p)).collect();
        let mut d = Decoder::new(&fields, Limits::default());
        let mut records = Vec::new();
        let mut errors = Vec::new();
        let r = d.decode(doc.as_bytes(), &mut |item| match item {
            Ok(ev) => records.push(
                ids.iter()
                    .map(|&id| match ev.get(id) {
                        FieldValue::Missing => "<missing>".to_string(),
                        FieldValue::Null => "<null>".to_string(),
                        FieldValue::Text(t) => t.to_string(),
                    })
                    .collect(),
            ),
            Err(e) => errors.push(e.to_string()),
        });
        (records, errors, r)
    }

    #[test]
    fn bare_record_fields_and_texts() {
        let doc = r#"{"eventName":"A","readOnly":true,"n":12,"f":1.5,"z":null,"s":"x\"y","o":{"b": 1, "a": [1, 2]},"userIdentity":{"type":"Root"}}"#;
        let (recs, errs, r) = decode(
            doc,
            &[
                "eventName",
                "readOnly",
                "n",
                "f",
                "z",
                "s",
                "o",
                "userIdentity.type",
                "nope",
                "userIdentity.nope",
            ],
        );
        assert!(r.is_ok() && errs.is_empty());
        assert_eq!(
            recs,
            vec![vec![
                "A",
                "true",
                "12",
                "1.5",
                "<null>",
                "x\"y",
                r#"{"b":1,"a":[1,2]}"#,
                "Root",
                "<missing>",
                "<missing>"
            ]]
        );
    }

    #[test]
    fn log_file_records_in_order() {
        let doc = r#"{"Records":[{"eventName":"A"},{"eventName":"B"},7,{"eventName":"C"}]}"#;
        let (recs, errs, r) = decode(doc, &["eventName"]);
        assert!(r.is_ok());
        assert_eq!(recs, vec![vec!["A"], vec!["B"], vec!["C"]]);
        assert_eq!(
            errs,
            vec!["expected a CloudTrail record (a JSON object), found a number"]
        );
    }

    #[test]
    fn eventbridge_envelope_yields_detail() {
        let doc = r#"{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.s3","detail":{"eventName":"PutBucketAcl","eventSource":"s3.amazonaws.com"}}"#;
        let (recs, _, r) = decode(doc, &["eventName", "source"]);
        assert!(r.is_ok());
        assert_eq!(recs, vec![vec!["PutBucketAcl", "<missing>"]]);
        let other = r#"{"detail-type":"EC2 Instance State-change Notification","detail":{"state":"running"}}"#;
        let (recs, _, r) = decode(other, &["eventName"]);
        assert!(recs.is_empty());
        assert!(matches!(r, Err(DecodeError::NotCloudTrail { .. })));
    }

    #[test]
    fn sns_notification_wraps_anything() {
        let inner = r#"{"detail-type":"AWS Console Sign In via CloudTrail","detail":{"eventName":"ConsoleLogin"}}"#;
        let doc = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": inner})
            .to_string();
        let (recs, _, r) = decode(&doc, &["eventName"]);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(recs, vec![vec!["ConsoleLogin"]]);
        let records = serde_json::json!({"Type": "Notification", "Message": r#"{"Records":[{"eventName":"X"},{"eventName":"Y"}]}"#}).to_string();
        assert_eq!(decode(&records, &["eventName"]).0.len(), 2);
        let bad = r#"{"Type":"Notification","Message":"{not json"}"#;
        assert!(matches!(
            decode(bad, &["eventName"]).2,
            Err(DecodeError::Truncated { .. } | DecodeError::Syntax { .. })
        ));
    }

    #[test]
    fn nested_notifications_are_bounded() {
        let mut doc = r#"{"eventName":"deep"}"#.to_string();
        for _ in 0..6 {
            doc = serde_json::json!({"Type": "Notification", "Message": doc}).to_string();
        }
        assert!(matches!(
            decode(&doc, &["eventName"]).2,
            Err(DecodeError::EnvelopeTooDeep { limit: 4 })
        ));
    }

    #[test]
    fn oracle_path_rules() {
        // A top-level key spelled with dots wins over the nested path.
        let (recs, _, _) = decode(r#"{"a.b":"lit","a":{"b":"nested"}}"#, &["a.b"]);
        assert_eq!(recs, vec![vec!["lit"]]);
        // Arrays on the way are crossed: one value stands alone, several become a JSON list.
        let doc = r#"{"rp":{"items":[{"v":"x"},{"v":"y"},{"w":1}]},"one":[{"v":"only"}]}"#;
        let (recs, _, _) = decode(doc, &["rp.items.v", "one.v"]);
        assert_eq!(recs, vec![vec![r#"["x","y"]"#, "only"]]);
        // A whole object and a path inside it, both wanted.
        let doc = r#"{"requestParameters":{"attribute":"userData","x":[1]}}"#;
        let (recs, _, _) = decode(doc, &["requestParameters", "requestParameters.attribute"]);
        assert_eq!(
            recs,
            vec![vec![r#"{"attribute":"userData","x":[1]}"#, "userData"]]
        );
        // Duplicate keys: the last one wins, as in Python.
        let (recs, _, _) = decode(r#"{"eventName":"A","eventName":"B"}"#, &["eventName"]);
        assert_eq!(recs, vec![vec!["B"]]);
    }

    #[test]
    fn malformed_input_gives_typed_errors() {
        type Check = fn(&DecodeError) -> bool;
        let cases: &[(&str, Check)] = &[
            (r#"{"eventName":"A""#, |e| {
                matches!(e, DecodeError::Truncated { .. })
            }),
            (r#"{"eventName":}"#, |e| {
                matches!(e, DecodeError::Syntax { .. })
            }),
            (r#"{"a":1} {"b":2}"#, |e| {
                matches!(e, DecodeError::Syntax { .. })
            }),
            ("42", |e| {
                matches!(e, DecodeError::NotARecord { found: "a number" })
            }),
            ("\"text\"", |e| {
                matches!(e, DecodeError::NotARecord { found: "a string" })
            }),
            ("", |e| matches!(e, DecodeError::Truncated { .. })),
            ("nul", |e| {
                matches!(
                    e,
                    DecodeError::Syntax { .. } | DecodeError::Truncated { .. }
                )
            }),
        ];
        for (doc, ok) in cases {
            let (_, _, r) = decode(doc, &["eventName"]);
            let e = r.expect_err(doc);
            assert!(ok(&e), "{doc}: {e:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for depth in [200, 100_000] {
            // On the path to a wanted field: the parser's depth limit rejects the document.
            let doc = format!(
                r#"{{"eventName":"A","x":{{"y":{}{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let (recs, _, r) = decode(&doc, &["eventName", "x.y.z"]);
            assert!(recs.is_empty() || r.is_ok(), "{r:?}");
            // Inside a value read whole: the record decodes, the value reads as missing and
            // the event says so.
            let doc = format!(
                r#"{{"eventName":"A","x":{}{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            let mut fields = FieldTable::new();
            let x = fields.intern("x");
            let mut d = Decoder::new(&fields, Limits::default());
            let mut seen = Vec::new();
            d.decode(doc.as_bytes(), &mut |item| {
                let ev = item.unwrap();
                seen.push((ev.get(x) == FieldValue::Missing, ev.had_unreadable_value()));
            })
            .unwrap();
            assert_eq!(seen, vec![(true, true)]);
            // Not wanted at all: skipped without harm.
            let (recs, _, r) = decode(&doc, &["eventName"]);
            assert!(r.is_ok());
            assert_eq!(recs, vec![vec!["A"]]);
        }
        let doc = format!(r#"{{"Records":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        let (recs, errs, r) = decode(&doc, &["eventName"]);
        assert!(recs.is_empty() && r.is_ok());
        assert_eq!(
            errs,
            vec!["expected a CloudTrail record (a JSON object), found an array"]
        );
    }

    #[test]
    fn oversized_and_invalid_utf8() {
        let mut fields = FieldTable::new();
        fields.intern("eventName");
        let mut d = Decoder::new(
            &fields,
            Limits {
                max_document_bytes: 10,
                ..Limits::default()
            },
        );
        let r = d.decode(br#"{"eventName":"too long"}"#, &mut |_| {});
        assert_eq!(
            r,
            Err(DecodeError::TooLarge {
                size: 24,
                limit: 10
            })
        );
        let mut d = Decoder::new(&fields, Limits::default());
        let r = d.decode(b"{\"eventName\":\"\xff\"}", &mut |_| {});
        assert_eq!(r, Err(DecodeError::Utf8 { offset: 14 }));
    }

    #[test]
    fn wrong_types_on_the_path_are_missing() {
        let (recs, _, r) = decode(
            r#"{"userIdentity":"Root","eventName":{"x":1}}"#,
            &["userIdentity.type", "eventName"],
        );
        assert!(r.is_ok());
        assert_eq!(recs, vec![vec!["<missing>", r#"{"x":1}"#]]);
    }

    #[test]
    fn keyword_text_is_the_whole_record() {
        let mut fields = FieldTable::new();
        fields.intern("eventName");
        fields.want_whole_record();
        let mut d = Decoder::new(&fields, Limits::default());
        let mut texts = Vec::new();
        d.decode(
            br#"{"Records":[{"eventName": "A", "x": [1]}]}"#,
            &mut |item| texts.push(item.unwrap().whole_text().unwrap().to_string()),
        )
        .unwrap();
        assert_eq!(texts, vec![r#"{"eventName":"A","x":[1]}"#]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut fields = FieldTable::new();
            fields.intern("eventName");
            fields.intern("userIdentity.sessionContext.sessionIssuer.type");
            fields.intern("requestParameters");
            let mut d = Decoder::new(&fields, Limits::default());
            let _ = d.decode(&bytes, &mut |item| {
                if let Ok(ev) = item {
                    let _ = ev.get_path("requestParameters");
                }
            });
        }

        #[test]
        fn arbitrary_json_never_panics(s in "[\\[\\]{}\":,a-z0-9 \\\\]{0,200}") {
            let mut fields = FieldTable::new();
            fields.intern("a.b");
            fields.intern("a");
            let mut d = Decoder::new(&fields, Limits::default());
            let _ = d.decode(s.as_bytes(), &mut |item| {
                if let Ok(ev) = item {
                    let _ = ev.get_path("a.b");
                    let _ = ev.get_path("a");
                }
            });
        }
    }
}
