//! Decoding CloudTrail records out of every wrapper they arrive in, in one pass.
//!
//! A document is one of: a bare record; a CloudTrail log file `{"Records":[...]}`; a JSON array
//! of records; an EventBridge event whose `detail` is the record; an SNS notification whose
//! `Message` string holds any of these. The top-level object is walked once: its keys are
//! captured as if it were a bare record while `Records` and `detail` are decoded as records
//! alongside, and the kind is settled when the object ends.

use super::fields::FieldTable;
use super::scan::{kind_of, ScanError, Scanner, MAX_DEPTH};
use super::{Cap, Event, Scratch};

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
        // simdutf8 checks valid input several times faster than std; std locates an error.
        let doc = match simdutf8::basic::from_utf8(bytes) {
            Ok(doc) => doc,
            Err(_) => {
                let offset = std::str::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), |_| 0);
                return Err(DecodeError::Utf8 { offset });
            }
        };
        self.decode_str(doc, 0, sink)
    }

    fn decode_str(
        &mut self,
        doc: &str,
        depth: usize,
        sink: &mut dyn FnMut(Item<'_, '_>),
    ) -> Result<(), DecodeError> {
        let mut sc = Scanner::new(doc.as_bytes());
        let result = match sc.peek() {
            Some(b'[') => self.records(&mut sc, doc, 0, sink).and_then(|_| sc.end()),
            Some(b'{') => {
                let kind = self.top_object(&mut sc, doc, sink);
                match kind.and_then(|k| sc.end().map(|_| k)) {
                    Ok(kind) => return self.finish(doc, kind, depth, sink),
                    Err(e) => Err(e),
                }
            }
            None => Err(ScanError::Eof),
            Some(_) => match sc.skip_value(0).and_then(|_| sc.end()) {
                Ok(()) => {
                    return Err(DecodeError::NotARecord {
                        found: kind_of(doc.trim_start().as_bytes()[0]),
                    })
                }
                Err(e) => Err(e),
            },
        };
        result.map_err(|e| scan_error(&sc, e))
    }

    /// The top-level object: captured as a bare record while envelope keys are noted.
    fn top_object(
        &mut self,
        sc: &mut Scanner<'_>,
        doc: &str,
        sink: &mut dyn FnMut(Item<'_, '_>),
    ) -> Result<DocKind, ScanError> {
        let fields = self.fields;
        self.top.reset(fields);
        self.inner.reset(fields);
        let mut kind = DocKind::default();
        let start = sc.pos;
        if !sc.open(b'{', b'}')? {
            self.top.whole = Some((start, sc.pos));
            return Ok(kind);
        }
        loop {
            let (ks, ke, esc) = sc.key()?;
            let key = key_text(doc, ks, ke, esc);
            match key.as_ref() {
                "Records" if sc.peek() == Some(b'[') => {
                    self.records(sc, doc, 1, sink)?;
                    kind.records = true;
                }
                "detail" if sc.peek() == Some(b'{') => {
                    capture_record(sc, fields, &mut self.inner, 1)?;
                    kind.detail = true;
                }
                "detail-type" | "Type" | "Message" if sc.peek() == Some(b'"') => {
                    let s = sc.pos;
                    sc.string()?;
                    let r = Some((s, sc.pos));
                    match key.as_ref() {
                        "detail-type" => kind.detail_type = r,
                        "Type" => kind.sns_type = r,
                        _ => kind.sns_message = r,
                    }
                }
                k => match fields.trie.lookup(0, k) {
                    Some(node) => capture(sc, fields, &mut self.top, node, 1)?,
                    None => sc.skip_value(1)?,
                },
            }
            if !sc.next_member(b'}', "expected ',' or '}' after an object member")? {
                break;
            }
        }
        // Always kept (two offsets): de-duplication hashes a record without an eventID by it.
        self.top.whole = Some((start, sc.pos));
        Ok(kind)
    }

    /// An array of records at `[`: each record is handed to the sink as soon as it is read.
    fn records(
        &mut self,
        sc: &mut Scanner<'_>,
        doc: &str,
        depth: usize,
        sink: &mut dyn FnMut(Item<'_, '_>),
    ) -> Result<(), ScanError> {
        if depth >= MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        if !sc.open(b'[', b']')? {
            return Ok(());
        }
        loop {
            match sc.peek() {
                Some(b'{') => {
                    capture_record(sc, self.fields, &mut self.inner, depth + 1)?;
                    sink(Ok(&Event::new(doc, &self.inner, self.fields)));
                }
                Some(c) => {
                    sc.skip_value(depth + 1)?;
                    sink(Err(DecodeError::NotARecord { found: kind_of(c) }));
                }
                None => return Err(ScanError::Eof),
            }
            if !sc.next_member(b']', "expected ',' or ']' after an array element")? {
                return Ok(());
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
                let detail_type = crate::escape::shown(&detail_type, crate::escape::SHOWN_CHARS);
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
                let message: String = serde_json::from_str(&doc[m.0..m.1])
                    .map_err(|_| DecodeError::BadNotification)?;
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

fn scan_error(sc: &Scanner<'_>, e: ScanError) -> DecodeError {
    let (line, column) = sc.line_column();
    match e {
        ScanError::Eof => DecodeError::Truncated { line, column },
        ScanError::TooDeep => DecodeError::TooDeep { line, column },
        ScanError::Syntax(message) => DecodeError::Syntax {
            line,
            column,
            message: message.to_string(),
        },
    }
}

/// A key's text: borrowed when it has no escapes (CloudTrail keys never do).
fn key_text(doc: &str, s: usize, e: usize, escaped: bool) -> std::borrow::Cow<'_, str> {
    if escaped {
        serde_json::from_str::<String>(&doc[s - 1..e + 1])
            .map(std::borrow::Cow::Owned)
            .unwrap_or_default()
    } else {
        std::borrow::Cow::Borrowed(&doc[s..e])
    }
}

/// Reads a record object at `{` into `scratch`.
fn capture_record(
    sc: &mut Scanner<'_>,
    fields: &FieldTable,
    scratch: &mut Scratch,
    depth: usize,
) -> Result<(), ScanError> {
    scratch.reset(fields);
    let start = sc.pos;
    object(sc, fields, scratch, 0, depth)?;
    scratch.whole = Some((start, sc.pos));
    Ok(())
}

/// Walks an object at `{`, capturing the children the trie wants below `node`.
fn object(
    sc: &mut Scanner<'_>,
    fields: &FieldTable,
    scratch: &mut Scratch,
    node: u32,
    depth: usize,
) -> Result<(), ScanError> {
    if depth >= MAX_DEPTH {
        return Err(ScanError::TooDeep);
    }
    if !sc.open(b'{', b'}')? {
        return Ok(());
    }
    let doc = sc.b;
    loop {
        let (ks, ke, esc) = sc.key()?;
        let child = if esc {
            let text = serde_json::from_slice::<String>(&doc[ks - 1..ke + 1]).unwrap_or_default();
            fields.trie.lookup(node, &text)
        } else {
            fields.trie.lookup_bytes(node, &doc[ks..ke])
        };
        match child {
            Some(c) => capture(sc, fields, scratch, c, depth + 1)?,
            None => sc.skip_value(depth + 1)?,
        }
        if !sc.next_member(b'}', "expected ',' or '}' after an object member")? {
            return Ok(());
        }
    }
}

/// Captures the value at the scanner for trie node `node`.
fn capture(
    sc: &mut Scanner<'_>,
    fields: &FieldTable,
    scratch: &mut Scratch,
    node: u32,
    depth: usize,
) -> Result<(), ScanError> {
    if fields.trie.nodes[node as usize].terminal {
        let s = sc.pos;
        if sc.peek() == Some(b'"') {
            let (cs, ce, escaped) = sc.string()?;
            let cap = if escaped {
                Cap::Raw(s, sc.pos)
            } else {
                Cap::Str(cs, ce)
            };
            scratch.set(node, cap);
            return Ok(());
        }
        sc.skip_value(depth)?;
        scratch.set(node, Cap::Raw(s, sc.pos));
        return Ok(());
    }
    match sc.peek() {
        Some(b'{') => {
            scratch.set(node, Cap::Object);
            object(sc, fields, scratch, node, depth)
        }
        Some(b'[') => {
            // A longer path crosses this array: keep each element for lazy lookup.
            if depth >= MAX_DEPTH {
                return Err(ScanError::TooDeep);
            }
            let mut elems = Vec::new();
            if sc.open(b'[', b']')? {
                loop {
                    sc.ws();
                    let s = sc.pos;
                    sc.skip_value(depth + 1)?;
                    elems.push((s, sc.pos));
                    if !sc.next_member(b']', "expected ',' or ']' after an array element")? {
                        break;
                    }
                }
            }
            scratch.set(node, Cap::Elements(elems));
            Ok(())
        }
        _ => sc.skip_value(depth),
    }
}

fn unquote(raw: &str) -> String {
    serde_json::from_str::<String>(raw).unwrap_or_default()
}

#[derive(Default)]
struct DocKind {
    records: bool,
    detail: bool,
    detail_type: Option<(usize, usize)>,
    sns_type: Option<(usize, usize)>,
    sns_message: Option<(usize, usize)>,
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
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            // Wherever it is (read by a rule, skipped, a log file's element), the document is
            // rejected as too deep and nothing of it is evaluated.
            for doc in [
                format!(r#"{{"eventName":"A","x":{{"y":{deep}}}}}"#),
                format!(r#"{{"eventName":"A","x":{deep}}}"#),
                format!(r#"{{"eventName":"A","skipped":{deep}}}"#),
                format!(r#"{{"Records":[{deep}]}}"#),
                format!(
                    r#"{{"detail-type":"AWS API Call via CloudTrail","detail":{{"a":{deep}}}}}"#
                ),
            ] {
                let (recs, _, r) = decode(&doc, &["eventName", "x.y.z", "x"]);
                assert!(recs.is_empty(), "{recs:?}");
                assert!(
                    matches!(r, Err(DecodeError::TooDeep { line: 1, .. })),
                    "{r:?}"
                );
            }
        }
        let ok = format!(
            r#"{{"eventName":"A","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(decode(&ok, &["eventName"]).0, vec![vec!["A"]]);
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

    /// What the reference oracle stores for `field` of `event` (its `field_value`).
    fn oracle_value(event: &serde_json::Value, field: &str) -> String {
        use crate::event::text::{compact, value_text};
        fn lookup<'v>(
            node: &'v serde_json::Value,
            parts: &[&str],
            out: &mut Vec<&'v serde_json::Value>,
        ) {
            match (parts.split_first(), node) {
                (None, _) => out.push(node),
                (Some(_), serde_json::Value::Array(items)) => {
                    items.iter().for_each(|i| lookup(i, parts, out))
                }
                (Some((first, rest)), serde_json::Value::Object(m)) => {
                    if let Some(c) = m.get(*first) {
                        lookup(c, rest, out)
                    }
                }
                _ => {}
            }
        }
        let show = |v: Option<String>| v.unwrap_or_else(|| "<none>".into());
        if let Some(v) = event.get(field) {
            return show(value_text(v));
        }
        let parts: Vec<&str> = field.split('.').collect();
        let mut vals = Vec::new();
        lookup(event, &parts, &mut vals);
        let vals: Vec<serde_json::Value> =
            vals.into_iter().filter(|v| !v.is_null()).cloned().collect();
        match vals.len() {
            0 => show(None),
            1 => show(value_text(&vals[0])),
            _ => compact(&serde_json::Value::Array(vals)),
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            (-1000i64..1000).prop_map(|n| serde_json::json!(n)),
            (-1e6f64..1e6).prop_map(|f| serde_json::json!(f)),
            "[a-zA-Z\\\"\n é/]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![Just("a"), Just("b"), Just("c"), Just("a.b")],
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| serde_json::Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest::proptest! {
        /// The scanner-driven capture gives, for every field, exactly the oracle's value.
        #[test]
        fn captured_fields_equal_the_oracle(
            members in proptest::collection::vec((proptest::prop_oneof![proptest::strategy::Just("a"), proptest::strategy::Just("b"), proptest::strategy::Just("a.b"), proptest::strategy::Just("c")], json_value()), 0..5),
            pretty in proptest::bool::ANY,
        ) {
            let event = serde_json::Value::Object(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            let text = if pretty { serde_json::to_string_pretty(&event).unwrap() } else { event.to_string() };
            let paths = ["a", "b", "a.b", "a.b.c", "b.a", "c.a.b", "a.a"];
            let (recs, errs, r) = decode(&text, &paths);
            proptest::prop_assert!(r.is_ok() && errs.is_empty(), "{:?} {:?}", r, errs);
            let got: Vec<String> = recs[0].iter().map(|v| if v == "<missing>" || v == "<null>" { "<none>".to_string() } else { v.clone() }).collect();
            let want: Vec<String> = paths.iter().map(|p| oracle_value(&event, p)).collect();
            proptest::prop_assert_eq!(got, want, "{}", text);
        }

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
