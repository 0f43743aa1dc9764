//! Compiled value tests: what one detection entry checks on one field's text.
//!
//! The values of an entry are grouped by kind so one test covers many of them: literal
//! equality is one set lookup, many `contains` needles one Aho-Corasick automaton, many
//! wildcard patterns one anchored `regex-automata` regex. Case-insensitivity is ASCII-only,
//! as in the reference oracle (SQLite's NOCASE and LIKE).

use crate::rule::value::{Cidr, CmpOp, Piece, Position, ReFlags, SigmaString, TimePart, Value};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use rustc_hash::FxHashSet;
use std::net::IpAddr;

/// One compiled test over a field's value.
#[derive(Debug, Clone)]
pub enum Test {
    /// Missing or JSON null.
    Null,
    /// Present (`true`) or absent (`false`), null counting as present.
    Exists(bool),
    /// Any non-null value (`*`).
    NotNull,
    /// Equal to one of these (lower-cased when not `cased`).
    Exact { values: Vec<Box<[u8]>>, cased: bool },
    /// Equal to one of many (lower-cased when not `cased`).
    ExactSet {
        values: FxHashSet<Box<[u8]>>,
        cased: bool,
    },
    /// Starts with one of these.
    Prefix { values: Vec<Box<[u8]>>, cased: bool },
    /// Ends with one of these.
    Suffix { values: Vec<Box<[u8]>>, cased: bool },
    /// Contains one of these.
    Contains(Box<AhoCorasick>),
    /// Matches one of several wildcard patterns (anchored).
    Wildcard(Box<Regex>),
    /// `re`: an unanchored regular-expression search, behind a literal every match contains.
    Regex(Box<Regex>, Option<Box<memchr::memmem::Finder<'static>>>),
    /// An IP address inside one of these networks.
    Cidr(Vec<Cidr>),
    /// A number compared with a constant.
    Compare(CmpOp, f64),
    /// Equal to (or positioned within) another field's value.
    FieldRef {
        other: crate::event::FieldId,
        position: Position,
        cased: bool,
    },
}

impl Test {
    /// Heap bytes of the compiled regex this test holds (0 for tests without one).
    pub fn regex_bytes(&self) -> usize {
        match self {
            Test::Wildcard(re) | Test::Regex(re, _) => re.memory_usage(),
            Test::Contains(ac) => ac.memory_usage(),
            _ => 0,
        }
    }

    /// Whether the test holds; `value` is the field's text, `None` when missing or null.
    #[inline]
    pub fn test(
        &self,
        value: Option<&str>,
        present: bool,
        other: &dyn Fn(crate::event::FieldId) -> Option<String>,
    ) -> bool {
        match self {
            Test::Null => value.is_none(),
            Test::Exists(want) => present == *want,
            Test::NotNull => value.is_some(),
            _ => match value {
                Some(v) => self.test_text(v.as_bytes(), other),
                None => false,
            },
        }
    }

    #[inline(always)]
    fn test_text(&self, v: &[u8], other: &dyn Fn(crate::event::FieldId) -> Option<String>) -> bool {
        match self {
            Test::Exact { values, cased } => values.iter().any(|x| eq(x, v, *cased)),
            Test::ExactSet { values, cased } => {
                if *cased {
                    values.contains(v)
                } else {
                    values.contains(v.to_ascii_lowercase().as_slice())
                }
            }
            Test::Prefix { values, cased } => values
                .iter()
                .any(|x| v.len() >= x.len() && eq(x, &v[..x.len()], *cased)),
            Test::Suffix { values, cased } => values
                .iter()
                .any(|x| v.len() >= x.len() && eq(x, &v[v.len() - x.len()..], *cased)),
            Test::Contains(ac) => ac.is_match(v),
            Test::Wildcard(re) => re.is_match(v),
            Test::Regex(re, required) => {
                required.as_ref().is_none_or(|f| f.find(v).is_some()) && re.is_match(v)
            }
            Test::Cidr(nets) => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
            {
                Some(ip) => nets.iter().any(|n| n.contains(ip)),
                None => false,
            },
            Test::Compare(op, n) => match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
            {
                Some(x) => op.test(x, *n),
                None => false,
            },
            Test::FieldRef {
                other: id,
                position,
                cased,
            } => match other(*id) {
                Some(o) => positioned(v, o.as_bytes(), *position, *cased),
                None => false,
            },
            Test::Null | Test::Exists(_) | Test::NotNull => unreachable!("handled in test()"),
        }
    }

    /// A rough cost, so cheap tests run first in a conjunction.
    pub fn cost(&self) -> u32 {
        match self {
            Test::Null | Test::Exists(_) | Test::NotNull => 1,
            Test::Exact { .. } | Test::ExactSet { .. } => 2,
            Test::Prefix { .. } | Test::Suffix { .. } | Test::Compare(..) | Test::Cidr(_) => 3,
            Test::Contains(_) | Test::FieldRef { .. } => 5,
            Test::Wildcard(_) => 8,
            Test::Regex(..) => 10,
        }
    }

    /// The literal values, lower-cased, when this is case-insensitive equality (for indexing).
    pub fn exact_values(&self) -> Option<Vec<Box<[u8]>>> {
        match self {
            Test::Exact {
                values,
                cased: false,
            } => Some(values.clone()),
            Test::ExactSet {
                values,
                cased: false,
            } => Some(values.iter().cloned().collect()),
            _ => None,
        }
    }
}

#[inline]
fn eq(rule: &[u8], v: &[u8], cased: bool) -> bool {
    if cased {
        rule == v
    } else {
        rule.eq_ignore_ascii_case(v)
    }
}

fn positioned(v: &[u8], o: &[u8], position: Position, cased: bool) -> bool {
    let (v, o) = if cased {
        (v.to_vec(), o.to_vec())
    } else {
        (v.to_ascii_lowercase(), o.to_ascii_lowercase())
    };
    match position {
        Position::Whole => v == o,
        Position::Start => v.starts_with(&o),
        Position::End => v.ends_with(&o),
        Position::Anywhere => memchr::memmem::find(&v, &o).is_some(),
    }
}

/// Extracts a part of a timestamp as SQLite's `strftime` would (`None` if not a timestamp).
pub fn time_part(text: &str, part: TimePart) -> Option<String> {
    use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
    let t = text.trim();
    let dt: NaiveDateTime = if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        d.naive_utc()
    } else {
        let t = t.trim_end_matches('Z');
        [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()?
                .and_hms_opt(0, 0, 0)
        })?
    };
    Some(match part {
        TimePart::Minute => dt.minute().to_string(),
        TimePart::Hour => dt.hour().to_string(),
        TimePart::Day => dt.day().to_string(),
        TimePart::Week => dt.format("%W").to_string().parse::<u32>().ok()?.to_string(),
        TimePart::Month => dt.month().to_string(),
        TimePart::Year => dt.year().to_string(),
    })
}

/// Builds the tests for a list of values that are OR-ed together.
pub fn build_any(
    values: &[Value],
    cased: bool,
    resolve: &mut dyn FnMut(&str) -> crate::event::FieldId,
) -> Result<Vec<Test>, String> {
    let mut unbounded = usize::MAX;
    build_any_within(values, cased, resolve, &mut unbounded)
}

/// [`build_any`], taking the heap bytes of what it compiles from `budget` and failing once
/// the budget is spent: checked after every regex, so many small patterns stop early.
pub fn build_any_within(
    values: &[Value],
    cased: bool,
    resolve: &mut dyn FnMut(&str) -> crate::event::FieldId,
    budget: &mut usize,
) -> Result<Vec<Test>, String> {
    let spend = |t: &Test, budget: &mut usize| -> Result<(), String> {
        let bytes = t.regex_bytes();
        if bytes > *budget {
            *budget = 0;
            return Err(format!(
                "the rule set's compiled regular expressions and substring matchers need more than {} bytes",
                crate::rule::limits::MAX_SET_MATCHER_BYTES
            ));
        }
        *budget -= bytes;
        Ok(())
    };
    let mut exact = Vec::new();
    let mut prefix = Vec::new();
    let mut suffix = Vec::new();
    let mut contains = Vec::new();
    let mut wild = Vec::new();
    let mut cidrs = Vec::new();
    let mut tests = Vec::new();
    let fold = |b: &[u8]| -> Box<[u8]> {
        if cased {
            b.into()
        } else {
            b.to_ascii_lowercase().into()
        }
    };
    for v in values {
        match v {
            Value::Str(s) => match shape(s) {
                Shape::Exact(l) => exact.push(fold(&l)),
                Shape::Prefix(l) => prefix.push(fold(&l)),
                Shape::Suffix(l) => suffix.push(fold(&l)),
                Shape::Contains(l) => contains.push(l),
                Shape::Anything => tests.push(Test::NotNull),
                Shape::Pattern => wild.push(s.clone()),
            },
            Value::Num(n) => exact.push(fold(n.as_bytes())),
            Value::Bool(b) => {
                let (word, digit) = if *b { ("true", "1") } else { ("false", "0") };
                exact.push(fold(word.as_bytes()));
                exact.push(fold(digit.as_bytes()));
            }
            Value::Null => tests.push(Test::Null),
            Value::Regex(p, f) => {
                let t = Test::Regex(
                    Box::new(build_regex(p, *f)?),
                    required_literal(p, *f).map(Box::new),
                );
                spend(&t, budget)?;
                tests.push(t);
            }
            Value::Cidr(c) => cidrs.push(*c),
            Value::Compare(op, n) => tests.push(Test::Compare(*op, *n)),
            Value::FieldRef(f, position) => tests.push(Test::FieldRef {
                other: resolve(f),
                position: *position,
                cased,
            }),
            Value::Exists(b) => tests.push(Test::Exists(*b)),
        }
    }
    let mut out = Vec::new();
    match exact.len() {
        0 => {}
        1..=8 => out.push(Test::Exact {
            values: exact,
            cased,
        }),
        _ => out.push(Test::ExactSet {
            values: exact.into_iter().collect(),
            cased,
        }),
    }
    if !prefix.is_empty() {
        out.push(Test::Prefix {
            values: prefix,
            cased,
        });
    }
    if !suffix.is_empty() {
        out.push(Test::Suffix {
            values: suffix,
            cased,
        });
    }
    if !contains.is_empty() {
        // Building the automaton takes time and memory in proportion to its patterns: check
        // an estimate first, then what it really takes.
        let total = contains.iter().map(Vec::len).sum::<usize>();
        let estimate = total.saturating_mul(crate::rule::limits::CONTAINS_BYTES_FACTOR);
        if estimate > *budget {
            return Err(format!(
                "the rule set's compiled regular expressions and substring matchers need more than {} bytes",
                crate::rule::limits::MAX_SET_MATCHER_BYTES
            ));
        }
        // A DFA is fastest, but over long patterns it is huge (16 patterns of 64 KiB took
        // 180 MB): past 64 KiB of patterns use the compact NFA.
        let kind = (total > 64 * 1024).then_some(AhoCorasickKind::ContiguousNFA);
        let ac = AhoCorasickBuilder::new()
            .kind(kind)
            .ascii_case_insensitive(!cased)
            .match_kind(MatchKind::LeftmostFirst)
            .build(&contains)
            .map_err(|e| format!("cannot build the contains matcher: {e}"))?;
        let t = Test::Contains(Box::new(ac));
        spend(&t, budget)?;
        out.push(t);
    }
    if !wild.is_empty() {
        let t = Test::Wildcard(Box::new(build_wildcards(&wild, cased)?));
        spend(&t, budget)?;
        out.push(t);
    }
    if !cidrs.is_empty() {
        out.push(Test::Cidr(cidrs));
    }
    out.extend(tests);
    out.sort_by_key(Test::cost);
    Ok(out)
}

enum Shape {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    Anything,
    Pattern,
}

/// Recognises the common wildcard shapes that need no regex.
fn shape(s: &SigmaString) -> Shape {
    let mut pieces: Vec<&Piece> = Vec::new();
    for p in &s.pieces {
        if matches!(p, Piece::Any) && matches!(pieces.last(), Some(Piece::Any)) {
            continue; // `**` is `*`
        }
        pieces.push(p);
    }
    match pieces.as_slice() {
        [] => Shape::Exact(Vec::new()),
        [Piece::Lit(l)] => Shape::Exact(l.clone()),
        [Piece::Any] => Shape::Anything,
        [Piece::Lit(l), Piece::Any] => Shape::Prefix(l.clone()),
        [Piece::Any, Piece::Lit(l)] => Shape::Suffix(l.clone()),
        [Piece::Any, Piece::Lit(l), Piece::Any] => Shape::Contains(l.clone()),
        _ => Shape::Pattern,
    }
}

/// One anchored regex for several wildcard patterns.
fn build_wildcards(patterns: &[SigmaString], cased: bool) -> Result<Regex, String> {
    let alts: Vec<String> = patterns.iter().map(|p| wildcard_regex(p, cased)).collect();
    let pattern = format!(r"\A(?:{})\z", alts.join("|"));
    let limit = crate::rule::limits::MAX_WILDCARD_COMPILED_BYTES;
    Regex::builder()
        .syntax(syntax::Config::new().utf8(false).unicode(false))
        .configure(
            Regex::config()
                .utf8_empty(false)
                .nfa_size_limit(Some(limit))
                .onepass_size_limit(Some(limit))
                .dfa_size_limit(Some(limit)),
        )
        .build(&pattern)
        .map_err(|e| {
            format!(
                "cannot compile the wildcard patterns: {}",
                crate::rule::excerpt(&with_sources(&e))
            )
        })
}

/// A wildcard pattern as regex syntax over bytes: `*` any bytes, `?` one UTF-8 character.
fn wildcard_regex(s: &SigmaString, cased: bool) -> String {
    let mut out = String::new();
    for p in &s.pieces {
        match p {
            Piece::Any => out.push_str(r"(?s:.)*"),
            // One UTF-8 encoded character, as SQLite's LIKE `_` matches one character.
            Piece::One => out.push_str(r"(?:[\x00-\x7F]|[\xC0-\xDF][\x80-\xBF]|[\xE0-\xEF][\x80-\xBF]{2}|[\xF0-\xF7][\x80-\xBF]{3})"),
            Piece::Lit(bytes) => {
                for &b in bytes {
                    if !cased && b.is_ascii_alphabetic() {
                        out.push_str(&format!("[{}{}]", b.to_ascii_lowercase() as char, b.to_ascii_uppercase() as char));
                    } else {
                        out.push_str(&format!(r"\x{b:02X}"));
                    }
                }
            }
        }
    }
    out
}

/// Compiles an `re` value: Python-style search, flags from the modifiers.
///
/// The compiled size is bounded ([`MAX_REGEX_COMPILED_BYTES`]): `\w{1000}{1000}` is a short
/// pattern whose automaton would not fit in memory.
///
/// [`MAX_REGEX_COMPILED_BYTES`]: crate::rule::limits::MAX_REGEX_COMPILED_BYTES
pub fn build_regex(pattern: &str, flags: ReFlags) -> Result<Regex, String> {
    use crate::rule::limits::{MAX_REGEX_BYTES, MAX_REGEX_COMPILED_BYTES, MAX_REGEX_NEST};
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(format!(
            "regular expression '{}' is {} bytes long; the limit is {MAX_REGEX_BYTES}",
            crate::rule::excerpt(pattern),
            pattern.len()
        ));
    }
    let limit = MAX_REGEX_COMPILED_BYTES;
    Regex::builder()
        .syntax(
            syntax::Config::new()
                .nest_limit(MAX_REGEX_NEST)
                .case_insensitive(flags.insensitive)
                .multi_line(flags.multiline)
                .dot_matches_new_line(flags.dotall),
        )
        .configure(
            Regex::config()
                .nfa_size_limit(Some(limit))
                .onepass_size_limit(Some(limit))
                .dfa_size_limit(Some(limit)),
        )
        .build(pattern)
        .map_err(|e| {
            format!(
                "invalid regular expression '{}': {}",
                crate::rule::excerpt(pattern),
                crate::rule::excerpt(&with_sources(&e))
            )
        })
}

/// An error and its causes, `: `-separated (regex-automata says "error building NFA" and
/// keeps the reason, such as the size limit, in its source).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The longest literal that every match of the pattern must contain, if there is a useful one.
///
/// Only literals that are direct parts of the top-level concatenation qualify: each of them
/// appears in any match. A substring search for it rejects most values far faster than the
/// regex (`.+:assumed-role/aws:.+` runs ten times faster behind `:assumed-role/aws:`).
fn required_literal(pattern: &str, flags: ReFlags) -> Option<memchr::memmem::Finder<'static>> {
    use regex_syntax::hir::HirKind;
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(flags.insensitive)
        .multi_line(flags.multiline)
        .dot_matches_new_line(flags.dotall)
        .build()
        .parse(pattern)
        .ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let best = parts
        .iter()
        .filter_map(|p| match p.kind() {
            HirKind::Literal(lit) => Some(lit.0.to_vec()),
            _ => None,
        })
        .max_by_key(Vec::len)?;
    (best.len() >= 3).then(|| memchr::memmem::Finder::new(&best).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldId;

    fn tests_for(values: &[Value], cased: bool) -> Vec<Test> {
        build_any(values, cased, &mut |_| FieldId(0)).unwrap()
    }

    fn any(tests: &[Test], v: Option<&str>) -> bool {
        tests.iter().any(|t| t.test(v, v.is_some(), &|_| None))
    }

    fn s(text: &str) -> Value {
        Value::Str(SigmaString::parse(text))
    }

    #[test]
    fn a_substring_automaton_over_the_budget_is_not_built() {
        let values: Vec<Value> = (0..10).map(|i| s(&format!("*needle{i}*"))).collect();
        let mut budget = 1_000; // 10 × 7 bytes × 32 = 2,240 estimated
        let err = build_any_within(&values, false, &mut |_| FieldId(0), &mut budget)
            .expect_err("over the budget");
        assert!(err.contains("need more than"), "{err}");
        let mut budget = 1 << 20;
        let tests = build_any_within(&values, false, &mut |_| FieldId(0), &mut budget).unwrap();
        let spent = (1 << 20) - budget;
        assert_eq!(spent, tests[0].regex_bytes());
        assert!(spent > 0);
    }

    #[test]
    fn equality_ignores_ascii_case_only() {
        let t = tests_for(&[s("ConsoleLogin")], false);
        assert!(any(&t, Some("consolelogin")));
        assert!(!any(&t, Some("ConsoleLogin2")));
        assert!(!any(&t, None));
        let t = tests_for(&[s("É")], false);
        assert!(!any(&t, Some("é")), "NOCASE folds ASCII only");
        let t = tests_for(&[s("Abc")], true);
        assert!(!any(&t, Some("abc")));
    }

    #[test]
    fn shapes_without_regex() {
        let t = tests_for(&[s("Update*")], false);
        assert!(matches!(t[0], Test::Prefix { .. }));
        assert!(any(&t, Some("updateFunctionConfiguration20150331")));
        let t = tests_for(&[s("*Suspended*")], false);
        assert!(any(&t, Some(r#"{"status":"suspended"}"#)));
        let t = tests_for(&[s("*")], false);
        assert!(any(&t, Some("")));
        assert!(!any(&t, None));
    }

    #[test]
    fn wildcard_patterns() {
        let t = tests_for(&[s("a?c*z"), s("x*y*z")], false);
        assert!(matches!(t[0], Test::Wildcard(_)));
        assert!(any(&t, Some("ABC123Z")));
        assert!(
            any(&t, Some("aéc z")),
            "? is one character, even a multi-byte one"
        );
        assert!(any(&t, Some("x-y-z")));
        assert!(!any(&t, Some("abcz!")));
        assert!(any(&t, Some("a\nc\nz")), "* crosses newlines");
        let t = tests_for(&[s(r"a\*b*")], false);
        assert!(any(&t, Some("a*bcd")));
        assert!(!any(&t, Some("axbcd")));
    }

    #[test]
    fn many_values_become_a_set() {
        let vals: Vec<Value> = (0..20).map(|i| s(&format!("Event{i}"))).collect();
        let t = tests_for(&vals, false);
        assert!(matches!(t[0], Test::ExactSet { .. }));
        assert!(any(&t, Some("EVENT7")));
        assert!(!any(&t, Some("Event20")));
    }

    #[test]
    fn booleans_numbers_null() {
        let t = tests_for(&[Value::Bool(true)], false);
        assert!(any(&t, Some("true")) && any(&t, Some("TRUE")) && any(&t, Some("1")));
        assert!(!any(&t, Some("false")));
        let t = tests_for(&[Value::Num("5".into())], false);
        assert!(any(&t, Some("5")) && !any(&t, Some("5.0")));
        let t = tests_for(&[Value::Null], false);
        assert!(any(&t, None) && !any(&t, Some("")));
    }

    #[test]
    fn regex_is_an_unanchored_search() {
        let t = tests_for(
            &[Value::Regex(
                ".+:assumed-role/aws:.+".into(),
                ReFlags::default(),
            )],
            false,
        );
        assert!(any(
            &t,
            Some("arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1")
        ));
        assert!(!any(&t, Some("arn:aws:sts::1:assumed-role/AWS:x")));
        let t = tests_for(
            &[Value::Regex(
                "abc".into(),
                ReFlags {
                    insensitive: true,
                    ..Default::default()
                },
            )],
            false,
        );
        assert!(any(&t, Some("xxABCxx")));
    }

    #[test]
    fn regex_prefilter_literal_is_sound() {
        let f = required_literal(".+:assumed-role/aws:.+", ReFlags::default()).unwrap();
        assert_eq!(f.needle(), b":assumed-role/aws:");
        assert!(required_literal("abc|xyz", ReFlags::default()).is_none());
        assert!(required_literal(
            "abc",
            ReFlags {
                insensitive: true,
                ..Default::default()
            }
        )
        .is_none());
        let t = tests_for(
            &[Value::Regex("^a+:role/(x|y)$".into(), ReFlags::default())],
            false,
        );
        assert!(any(&t, Some("aa:role/x")));
        assert!(!any(&t, Some("aa:role/z")));
    }

    #[test]
    fn numeric_comparison() {
        let t = tests_for(&[Value::Compare(CmpOp::Gt, 5.0)], false);
        assert!(any(&t, Some("10")), "numeric, not text, order");
        assert!(!any(&t, Some("5")) && !any(&t, Some("abc")));
    }

    #[test]
    fn cidr_matching() {
        let t = tests_for(&[Value::Cidr(Cidr::parse("10.0.0.0/8").unwrap())], false);
        assert!(any(&t, Some("10.20.30.40")));
        assert!(!any(&t, Some("100.20.30.40")));
        assert!(!any(&t, Some("AWS Internal")));
    }

    #[test]
    fn time_parts_like_sqlite() {
        assert_eq!(
            time_part("2024-03-05T07:08:09Z", TimePart::Hour).as_deref(),
            Some("7")
        );
        assert_eq!(
            time_part("2024-03-05 07:08:09", TimePart::Minute).as_deref(),
            Some("8")
        );
        assert_eq!(
            time_part("2024-03-05T07:08:09+02:00", TimePart::Hour).as_deref(),
            Some("5")
        );
        assert_eq!(
            time_part("2024-01-01T00:00:00Z", TimePart::Week).as_deref(),
            Some("1")
        );
        assert_eq!(
            time_part("2023-01-01T00:00:00Z", TimePart::Week).as_deref(),
            Some("0")
        );
        assert_eq!(time_part("not a time", TimePart::Year), None);
    }
}
