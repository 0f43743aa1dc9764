//! Sigma values and modifiers: what one `field|mod|mod: value` entry asks of a field.

use super::error::{excerpt, Located};
use super::limits::{MAX_ENTRY_VALUES, MAX_REGEX_BYTES, MAX_REGEX_NEST, MAX_VALUE_BYTES};
use super::yaml::{Node, NodeKind, Scalar};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One piece of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal bytes (UTF-8 unless an encoding modifier produced raw bytes).
    Lit(Vec<u8>),
    /// `*`: any run of characters.
    Any,
    /// `?`: exactly one character.
    One,
}

/// A Sigma string: literals and wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigmaString {
    /// The pieces, adjacent literals merged.
    pub pieces: Vec<Piece>,
}

impl SigmaString {
    /// Parses a rule string: `*` and `?` are wildcards, `\*`, `\?` and `\\` escape them.
    pub fn parse(s: &str) -> Self {
        let mut out = SigmaString::default();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => out.pieces.push(Piece::Any),
                '?' => out.pieces.push(Piece::One),
                '\\' => match chars.peek() {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        out.push_lit(n.to_string().as_bytes());
                    }
                    // A backslash before anything else is itself (Windows paths stay readable).
                    _ => out.push_lit(b"\\"),
                },
                c => out.push_lit(c.to_string().as_bytes()),
            }
        }
        out
    }

    /// A string with no wildcards.
    pub fn literal(bytes: &[u8]) -> Self {
        let mut s = SigmaString::default();
        s.push_lit(bytes);
        s
    }

    fn push_lit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Piece::Lit(l)) = self.pieces.last_mut() {
            l.extend_from_slice(bytes);
        } else {
            self.pieces.push(Piece::Lit(bytes.to_vec()));
        }
    }

    fn push(&mut self, piece: Piece) {
        match piece {
            Piece::Lit(l) => self.push_lit(&l),
            p => self.pieces.push(p),
        }
    }

    /// Whether the string holds `*` or `?`.
    pub fn has_wildcards(&self) -> bool {
        self.pieces.iter().any(|p| !matches!(p, Piece::Lit(_)))
    }

    /// The literal bytes, when there are no wildcards.
    pub fn as_literal(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.extend_from_slice(l),
                _ => return None,
            }
        }
        Some(out)
    }

    fn starts_any(&self) -> bool {
        matches!(self.pieces.first(), Some(Piece::Any))
    }

    fn ends_any(&self) -> bool {
        matches!(self.pieces.last(), Some(Piece::Any))
    }

    fn prepend_any(&mut self) {
        if !self.starts_any() {
            self.pieces.insert(0, Piece::Any);
        }
    }

    fn append_any(&mut self) {
        if !self.ends_any() {
            self.pieces.push(Piece::Any);
        }
    }

    /// Maps every literal run through `f`, keeping the wildcards.
    fn map_literals(&self, f: impl Fn(&[u8]) -> Vec<u8>) -> Self {
        let mut out = SigmaString::default();
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.push_lit(&f(l)),
                p => out.push(p.clone()),
            }
        }
        out
    }

    /// Readable form, with wildcards shown as `*` / `?`, for messages.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.push_str(&String::from_utf8_lossy(l)),
                Piece::Any => out.push('*'),
                Piece::One => out.push('?'),
            }
        }
        out
    }
}

/// Comparison operators of the numeric modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `lt`
    Lt,
    /// `lte`
    Lte,
    /// `gt`
    Gt,
    /// `gte`
    Gte,
}

impl CmpOp {
    /// Applies the comparison.
    pub fn test(self, left: f64, right: f64) -> bool {
        match self {
            CmpOp::Lt => left < right,
            CmpOp::Lte => left <= right,
            CmpOp::Gt => left > right,
            CmpOp::Gte => left >= right,
        }
    }
}

impl std::fmt::Display for SigmaString {
    /// The pattern as a rule would write it: wildcards as `*` and `?`, literal ones escaped,
    /// bytes that are not UTF-8 (from encoding modifiers) as `\xNN`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Any => f.write_str("*")?,
                Piece::One => f.write_str("?")?,
                Piece::Lit(bytes) => {
                    for chunk in bytes.utf8_chunks() {
                        for c in chunk.valid().chars() {
                            match c {
                                '*' | '?' | '\\' => write!(f, "\\{c}")?,
                                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                                c => write!(f, "{c}")?,
                            }
                        }
                        for b in chunk.invalid() {
                            write!(f, "\\x{b:02x}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Value {
    /// The value as `explain` shows it beside the event's: strings quoted, other tests named.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => write!(f, "'{s}'"),
            Value::Num(n) => f.write_str(n),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("null"),
            Value::Regex(p, flags) => {
                let flags: String = [
                    (flags.insensitive, 'i'),
                    (flags.multiline, 'm'),
                    (flags.dotall, 's'),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, c)| *c)
                .collect();
                write!(f, "/{}/{flags}", p.escape_default())
            }
            Value::Cidr(c) => write!(f, "cidr {}/{}", c.addr, c.prefix),
            Value::Compare(op, x) => {
                let op = match op {
                    CmpOp::Lt => "<",
                    CmpOp::Lte => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Gte => ">=",
                };
                write!(f, "{op} {x}")
            }
            Value::FieldRef(field, pos) => {
                let how = match pos {
                    Position::Whole => "equal to",
                    Position::Start => "starting with",
                    Position::End => "ending with",
                    Position::Anywhere => "containing",
                };
                write!(f, "{how} field {field}")
            }
            Value::Exists(true) => f.write_str("present"),
            Value::Exists(false) => f.write_str("absent"),
        }
    }
}

/// Where a string must occur (for field references).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The whole value.
    Whole,
    /// At the start.
    Start,
    /// At the end.
    End,
    /// Anywhere.
    Anywhere,
}

/// Flags of the `re` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReFlags {
    /// `i`: case-insensitive.
    pub insensitive: bool,
    /// `m`: `^`/`$` match at line breaks.
    pub multiline: bool,
    /// `s`: `.` matches a newline.
    pub dotall: bool,
}

/// A network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::/n` (a bare address is a host network).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parts of a timestamp the time modifiers extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePart {
    /// 0–59
    Minute,
    /// 0–23
    Hour,
    /// 1–31
    Day,
    /// Week of the year, Monday first (SQLite `%W`: 0–53).
    Week,
    /// 1–12
    Month,
    /// The year.
    Year,
}

/// What one value of a detection entry asks of the field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string, with wildcards; equality ignores ASCII case unless `cased`.
    Str(SigmaString),
    /// A number, compared by its text.
    Num(String),
    /// A boolean: matches `true`/`false` (or `1`/`0`).
    Bool(bool),
    /// `null`: the field is missing or JSON null.
    Null,
    /// `re`: a regular expression, searched (unanchored).
    Regex(String, ReFlags),
    /// `cidr`: the field is an IP address inside the network.
    Cidr(Cidr),
    /// `lt`/`lte`/`gt`/`gte`: numeric comparison.
    Compare(CmpOp, f64),
    /// `fieldref`: compare with another field of the same event.
    FieldRef(String, Position),
    /// `exists`: the field is present (`true`) or absent (`false`).
    Exists(bool),
}

/// One `field|modifiers: values` entry of a search, ready to compile.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// The entry's key as written (`field|mod|mod`).
    pub key: String,
    /// The field path; `None` for keywords (search the whole event).
    pub field: Option<String>,
    /// The values; each inner list is one original value's expansion (OR).
    pub values: Vec<Vec<Value>>,
    /// `all`: every value must match (else any).
    pub all: bool,
    /// `cased`: case-sensitive string matching.
    pub cased: bool,
    /// `neq`: the field must differ from every value.
    pub neq: bool,
    /// A time modifier: compare this part of the field's timestamp.
    pub time_part: Option<TimePart>,
    /// Line of the entry.
    pub line: usize,
}

/// Values for `expand` placeholders (`%name%`), from configuration.
pub type Placeholders = BTreeMap<String, Vec<String>>;

/// Reads a YAML file mapping placeholder names to value lists.
pub fn load_placeholders(path: &std::path::Path) -> Result<Placeholders, super::RuleError> {
    let err = |line, m: String| super::RuleError::new(path, line, m);
    let text = super::parse::read_rule_file(path)?;
    let docs = super::yaml::load_documents(&text).map_err(|e| err(e.line, e.message))?;
    let Some(map) = docs.first().and_then(|d| d.as_map()) else {
        return Err(err(
            0,
            "expected a mapping of placeholder name to list of values".into(),
        ));
    };
    let mut out = Placeholders::new();
    for (k, v) in map {
        // A value that is not text would silently leave the placeholder empty, and every rule
        // using it matching nothing: a broken file must say so.
        let text = |n: &super::yaml::Node, line: usize| {
            n.as_text().ok_or_else(|| {
                err(
                    line,
                    format!(
                        "placeholder '{}': expected a value or a list of values, found a {}",
                        k.text,
                        n.type_name()
                    ),
                )
            })
        };
        let values = match &v.kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|i| text(i, i.line))
                .collect::<Result<_, _>>()?,
            // A missing value has no line of its own: the key's.
            _ => vec![text(v, k.line)?],
        };
        out.insert(k.text.clone(), values);
    }
    Ok(out)
}

const MODIFIERS: &[&str] = &[
    "contains",
    "startswith",
    "endswith",
    "all",
    "base64",
    "base64offset",
    "utf16le",
    "utf16be",
    "utf16",
    "wide",
    "windash",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "exists",
    "cased",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "fieldref",
    "expand",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
];

/// Parses one detection entry: `key` is `field|mod|mod` (or `|mod` for keywords).
pub(crate) fn parse_entry(
    key: &str,
    line: usize,
    node: &Node,
    placeholders: &Placeholders,
) -> Result<FieldSpec, Located> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let field = (!field.is_empty()).then(|| field.to_string());
    let mods: Vec<&str> = parts.collect();
    let label = field.clone().unwrap_or_else(|| "<keywords>".to_string());
    let err = |msg: String| Located::new(line, msg).field(&label);
    for m in &mods {
        if !MODIFIERS.contains(m) {
            return Err(err(format!(
                "unknown modifier '{}' (known: {})",
                excerpt(m),
                MODIFIERS.join(", ")
            )));
        }
    }
    let raw = raw_values(node).map_err(&err)?;
    if raw.is_empty() {
        return Err(err("empty list of values".into()));
    }
    if raw.len() > MAX_ENTRY_VALUES {
        return Err(err(format!(
            "{} values; an entry may hold at most {MAX_ENTRY_VALUES}",
            raw.len()
        )));
    }
    let has = |m: &str| mods.contains(&m);
    if has("all") && raw.len() < 2 {
        return Err(err(
            "'all' needs a list of two or more values (use separate selections instead)".into(),
        ));
    }
    let mut spec = FieldSpec {
        key: key.to_string(),
        field,
        values: Vec::new(),
        all: has("all"),
        cased: has("cased"),
        neq: has("neq"),
        time_part: None,
        line,
    };
    let mut count = 0usize;
    for r in raw {
        let expansion = apply_modifiers(r, &mods, placeholders, &mut spec).map_err(&err)?;
        count += expansion.len();
        if count > MAX_ENTRY_VALUES {
            return Err(err(format!(
                "the modifiers expand the values to more than {MAX_ENTRY_VALUES}"
            )));
        }
        spec.values.push(expansion);
    }
    if spec.field.is_none()
        && spec
            .values
            .iter()
            .flatten()
            .any(|v| matches!(v, Value::FieldRef(..) | Value::Exists(_)))
    {
        return Err(err("keywords cannot use 'fieldref' or 'exists'".into()));
    }
    Ok(spec)
}

fn raw_values(node: &Node) -> Result<Vec<Scalar>, String> {
    match &node.kind {
        NodeKind::Scalar(s) => Ok(vec![s.clone()]),
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| match &i.kind {
                NodeKind::Scalar(s) => Ok(s.clone()),
                _ => Err(format!(
                    "line {}: a value list may hold only scalars, found a {}",
                    i.line,
                    i.type_name()
                )),
            })
            .collect(),
        NodeKind::Map(_) => {
            Err("a field's value must be a scalar or a list of scalars, not a mapping".into())
        }
    }
}

/// Applies the modifier chain, left to right, to one raw value.
fn apply_modifiers(
    raw: Scalar,
    mods: &[&str],
    placeholders: &Placeholders,
    spec: &mut FieldSpec,
) -> Result<Vec<Value>, String> {
    let mut vals: Vec<Value> = vec![match raw {
        Scalar::Str(s) if mods.contains(&"re") => Value::Regex(s, ReFlags::default()),
        Scalar::Str(s) if mods.contains(&"expand") => Value::Str(SigmaString::parse(&s)),
        Scalar::Str(s) => Value::Str(SigmaString::parse(&s)),
        Scalar::Int(i) => Value::Num(i.to_string()),
        Scalar::Float(f) => Value::Num(f),
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Null => Value::Null,
    }];
    check_sizes(&vals)?;
    for &m in mods {
        vals = match m {
            "all" | "cased" | "neq" => vals,
            "contains" | "startswith" | "endswith" => map_each(vals, |v| wrap(v, m))?,
            "base64" => map_each(vals, |v| encode(v, b64))?,
            "base64offset" => flat_each(vals, base64offset)?,
            "utf16le" | "wide" => map_each(vals, |v| encode(v, utf16le))?,
            "utf16be" => map_each(vals, |v| encode(v, utf16be))?,
            "utf16" => map_each(vals, |v| encode(v, utf16_bom))?,
            "windash" => flat_each(vals, windash)?,
            "expand" => flat_each(vals, |v| expand(v, placeholders))?,
            "re" => map_each(vals, |v| match v {
                Value::Regex(..) => Ok(v),
                _ => Err("'re' needs a string pattern".into()),
            })?,
            "i" | "m" | "s" => map_each(vals, |v| re_flag(v, m))?,
            "cidr" => map_each(vals, cidr)?,
            "exists" => map_each(vals, exists)?,
            "gt" | "gte" | "lt" | "lte" => map_each(vals, |v| compare(v, m))?,
            "fieldref" => map_each(vals, fieldref)?,
            _ => {
                spec.time_part = Some(time_part(m));
                vals
            }
        };
        check_sizes(&vals)?;
    }
    for v in &vals {
        if let Value::Regex(p, flags) = v {
            validate_regex(p, *flags)?;
        }
    }
    Ok(vals)
}

/// Bytes a value takes (its literal text; a wildcard counts one).
pub(crate) fn value_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => s
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(l) => l.len(),
                _ => 1,
            })
            .sum(),
        Value::Num(t) | Value::FieldRef(t, _) | Value::Regex(t, _) => t.len(),
        _ => 0,
    }
}

/// Holds every value of one raw value's expansion to [`MAX_VALUE_BYTES`] and
/// [`MAX_ENTRY_VALUES`]: modifier chains such as `wide|wide|wide|…` double a value each step.
fn check_sizes(vals: &[Value]) -> Result<(), String> {
    if vals.len() > MAX_ENTRY_VALUES {
        return Err(format!(
            "the modifiers expand one value to more than {MAX_ENTRY_VALUES} values"
        ));
    }
    for v in vals {
        if matches!(v, Value::Regex(..)) {
            continue; // a regex has its own, lower, limit (checked with its syntax)
        }
        let len = value_len(v);
        if len > MAX_VALUE_BYTES {
            return Err(format!(
                "a value is {len} bytes long (after modifiers); the limit is {MAX_VALUE_BYTES}"
            ));
        }
    }
    Ok(())
}

fn map_each(
    vals: Vec<Value>,
    f: impl Fn(Value) -> Result<Value, String>,
) -> Result<Vec<Value>, String> {
    vals.into_iter().map(f).collect()
}

fn flat_each(
    vals: Vec<Value>,
    f: impl Fn(Value) -> Result<Vec<Value>, String>,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for v in vals {
        out.extend(f(v)?);
        if out.len() > MAX_ENTRY_VALUES {
            return Err(format!(
                "the modifiers expand one value to more than {MAX_ENTRY_VALUES} values"
            ));
        }
    }
    Ok(out)
}

/// Numbers and booleans become their text when a string modifier applies to them.
fn as_string(v: Value, modifier: &str) -> Result<SigmaString, String> {
    match v {
        Value::Str(s) => Ok(s),
        Value::Num(n) => Ok(SigmaString::literal(n.as_bytes())),
        Value::Bool(b) => Ok(SigmaString::literal(b.to_string().as_bytes())),
        Value::FieldRef(..) => Err(format!(
            "'{modifier}' cannot follow 'fieldref'; put it before"
        )),
        other => Err(format!(
            "'{modifier}' applies to strings, not {}",
            kind_name(&other)
        )),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Str(_) => "a string",
        Value::Num(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Regex(..) => "a regular expression",
        Value::Cidr(_) => "a network",
        Value::Compare(..) => "a comparison",
        Value::FieldRef(..) => "a field reference",
        Value::Exists(_) => "an existence test",
    }
}

fn wrap(v: Value, m: &str) -> Result<Value, String> {
    if let Value::FieldRef(f, pos) = v {
        let new = match (pos, m) {
            (Position::Whole, "contains") => Position::Anywhere,
            (Position::Whole, "startswith") => Position::Start,
            (Position::Whole, "endswith") => Position::End,
            _ => {
                return Err(format!(
                    "'{m}' cannot be combined with another position modifier"
                ))
            }
        };
        return Ok(Value::FieldRef(f, new));
    }
    let mut s = as_string(v, m)?;
    match m {
        "contains" => {
            s.prepend_any();
            s.append_any();
        }
        "startswith" => s.append_any(),
        _ => s.prepend_any(),
    }
    Ok(Value::Str(s))
}

fn encode(v: Value, f: impl Fn(&[u8]) -> Vec<u8>) -> Result<Value, String> {
    let s = as_string(v, "encoding")?;
    if s.has_wildcards() {
        return Err("encoding modifiers cannot encode wildcards; apply contains/startswith/endswith after them".into());
    }
    Ok(Value::Str(s.map_literals(f)))
}

fn b64(b: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(b)
        .into_bytes()
}

fn utf16le(b: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(b)
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

fn utf16be(b: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(b)
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect()
}

fn utf16_bom(b: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    out.extend(utf16le(b));
    out
}

/// The three base64 forms of a value at offsets 0, 1 and 2 of an encoded stream (pySigma's).
fn base64offset(v: Value) -> Result<Vec<Value>, String> {
    let s = as_string(v, "base64offset")?;
    let Some(lit) = s.as_literal() else {
        return Err("'base64offset' cannot encode wildcards".into());
    };
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    let mut out = Vec::new();
    for i in 0..3 {
        let mut padded = vec![b' '; i];
        padded.extend_from_slice(&lit);
        let enc = b64(&padded);
        let end = enc.len() - END_TRIM[(lit.len() + i) % 3];
        let start = START[i].min(end);
        out.push(Value::Str(SigmaString::literal(&enc[start..end])));
    }
    Ok(out)
}

/// Every spelling of command-line dashes: `-`, `/`, en dash, em dash, horizontal bar.
fn windash(v: Value) -> Result<Vec<Value>, String> {
    const DASHES: [&str; 5] = ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"];
    let s = as_string(v, "windash")?;
    let mut variants = vec![SigmaString::default()];
    let mut dashes = 0;
    for piece in &s.pieces {
        let Piece::Lit(bytes) = piece else {
            variants.iter_mut().for_each(|v| v.push(piece.clone()));
            continue;
        };
        let text = String::from_utf8_lossy(bytes).into_owned();
        let chars: Vec<char> = text.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            // pySigma's `\B[-/]\b`: a dash not preceded by a word character, followed by one.
            let prev_word = i > 0 && is_word(chars[i - 1]);
            let next_word = chars.get(i + 1).is_some_and(|&n| is_word(n));
            if (c == '-' || c == '/') && !prev_word && next_word {
                dashes += 1;
                if dashes > 3 {
                    return Err(
                        "'windash' expands at most three dashes in one value; split the value"
                            .into(),
                    );
                }
                variants = variants
                    .into_iter()
                    .flat_map(|v| {
                        DASHES.iter().map(move |d| {
                            let mut n = v.clone();
                            n.push_lit(d.as_bytes());
                            n
                        })
                    })
                    .collect();
            } else {
                let mut buf = [0u8; 4];
                let enc = c.encode_utf8(&mut buf).as_bytes().to_vec();
                variants.iter_mut().for_each(|v| v.push_lit(&enc));
            }
        }
    }
    Ok(variants.into_iter().map(Value::Str).collect())
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces `%name%` placeholders with each configured value (every combination).
fn expand(v: Value, placeholders: &Placeholders) -> Result<Vec<Value>, String> {
    let s = as_string(v, "expand")?;
    let text = s.display();
    let mut results = vec![String::new()];
    let mut rest = text.as_str();
    while let Some(start) = rest.find('%') {
        let Some(len) = rest[start + 1..].find('%') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        let Some(values) = placeholders.get(name) else {
            return Err(format!(
                "placeholder '%{}%' has no values: define it under [placeholders] in the configuration",
                excerpt(name)
            ));
        };
        // Every combination: the count multiplies with each placeholder, so check it first.
        if results.len().saturating_mul(values.len()) > MAX_ENTRY_VALUES {
            return Err(format!(
                "'expand' makes more than {MAX_ENTRY_VALUES} combinations of placeholder values"
            ));
        }
        let prefix = &rest[..start];
        results = results
            .into_iter()
            .flat_map(|r| values.iter().map(move |v| format!("{r}{prefix}{v}")))
            .collect();
        rest = &rest[start + len + 2..];
    }
    Ok(results
        .into_iter()
        .map(|r| Value::Str(SigmaString::parse(&format!("{r}{rest}"))))
        .collect())
}

fn re_flag(v: Value, m: &str) -> Result<Value, String> {
    match v {
        Value::Regex(p, mut f) => {
            match m {
                "i" => f.insensitive = true,
                "m" => f.multiline = true,
                _ => f.dotall = true,
            }
            Ok(Value::Regex(p, f))
        }
        _ => Err(format!("'{m}' is a flag of 're' and must follow it")),
    }
}

fn validate_regex(pattern: &str, flags: ReFlags) -> Result<(), String> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(format!(
            "regular expression '{}' is {} bytes long; the limit is {MAX_REGEX_BYTES}",
            excerpt(pattern),
            pattern.len()
        ));
    }
    regex_syntax::ParserBuilder::new()
        .nest_limit(MAX_REGEX_NEST)
        .case_insensitive(flags.insensitive)
        .multi_line(flags.multiline)
        .dot_matches_new_line(flags.dotall)
        .build()
        .parse(pattern)
        .map(|_| ())
        .map_err(|e| format!("invalid regular expression: {}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    s.lines()
        .filter(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .next()
        .unwrap_or_else(|| excerpt(&s.replace('\n', " ")))
}

fn cidr(v: Value) -> Result<Value, String> {
    let s = as_string(v, "cidr")?;
    let text = s.display();
    Cidr::parse(&text).map(Value::Cidr).ok_or_else(|| {
        format!(
            "'{}' is not a network in CIDR notation (e.g. 10.0.0.0/8)",
            excerpt(&text)
        )
    })
}

fn exists(v: Value) -> Result<Value, String> {
    match v {
        Value::Bool(b) => Ok(Value::Exists(b)),
        Value::Str(s)
            if s.as_literal()
                .is_some_and(|l| l.eq_ignore_ascii_case(b"true")) =>
        {
            Ok(Value::Exists(true))
        }
        Value::Str(s)
            if s.as_literal()
                .is_some_and(|l| l.eq_ignore_ascii_case(b"false")) =>
        {
            Ok(Value::Exists(false))
        }
        _ => Err("'exists' takes true or false".into()),
    }
}

fn compare(v: Value, m: &str) -> Result<Value, String> {
    let op = match m {
        "gt" => CmpOp::Gt,
        "gte" => CmpOp::Gte,
        "lt" => CmpOp::Lt,
        _ => CmpOp::Lte,
    };
    let n = match &v {
        Value::Num(n) => n.parse::<f64>().ok(),
        Value::Str(s) => s
            .as_literal()
            .and_then(|l| String::from_utf8(l).ok()?.trim().parse().ok()),
        _ => None,
    };
    n.filter(|n: &f64| n.is_finite())
        .map(|n| Value::Compare(op, n))
        .ok_or_else(|| format!("'{m}' needs a number"))
}

fn fieldref(v: Value) -> Result<Value, String> {
    match v {
        Value::Str(s) => match s.as_literal().and_then(|l| String::from_utf8(l).ok()) {
            Some(f) if !f.is_empty() => Ok(Value::FieldRef(f, Position::Whole)),
            _ => Err("'fieldref' needs a plain field name".into()),
        },
        _ => Err("'fieldref' needs a field name".into()),
    }
}

fn time_part(m: &str) -> TimePart {
    match m {
        "minute" => TimePart::Minute,
        "hour" => TimePart::Hour,
        "day" => TimePart::Day,
        "week" => TimePart::Week,
        "month" => TimePart::Month,
        _ => TimePart::Year,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn values_display_as_a_rule_writes_them() {
        let s = |t: &str| Value::Str(SigmaString::parse(t)).to_string();
        assert_eq!(s("*Delete?Trail*"), "'*Delete?Trail*'");
        assert_eq!(s("a\\*b"), "'a\\*b'", "an escaped wildcard stays escaped");
        let bytes = Value::Str(SigmaString {
            pieces: vec![Piece::Lit(vec![b'a', 0xff])],
        });
        assert_eq!(bytes.to_string(), "'a\\xff'");
        assert_eq!(Value::Compare(CmpOp::Gte, 5.0).to_string(), ">= 5");
        assert_eq!(Value::Exists(false).to_string(), "absent");
        assert_eq!(
            Value::FieldRef("userIdentity.arn".into(), Position::Start).to_string(),
            "starting with field userIdentity.arn"
        );
    }

    use super::*;
    use crate::rule::yaml::load_documents;

    fn entry(key: &str, yaml: &str) -> Result<FieldSpec, Located> {
        let doc = load_documents(&format!("v: {yaml}\n")).unwrap();
        parse_entry(key, 1, doc[0].get("v").unwrap(), &Placeholders::new())
    }

    fn strs(spec: &FieldSpec) -> Vec<String> {
        spec.values
            .iter()
            .flatten()
            .map(|v| match v {
                Value::Str(s) => s.display(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn wildcards_and_escapes() {
        let s = SigmaString::parse(r"a*b?c\*d\?e\\f\g");
        assert_eq!(
            s.pieces,
            vec![
                Piece::Lit(b"a".to_vec()),
                Piece::Any,
                Piece::Lit(b"b".to_vec()),
                Piece::One,
                Piece::Lit(b"c*d?e\\f\\g".to_vec()),
            ]
        );
    }

    #[test]
    fn contains_wraps_once() {
        let spec = entry("f|contains", "'*x'").unwrap();
        assert_eq!(strs(&spec), vec!["*x*"]);
    }

    #[test]
    fn base64offset_matches_pysigma() {
        // pySigma's documented example values for "/bin/bash".
        let spec = entry("f|base64offset|contains", "'/bin/bash'").unwrap();
        assert_eq!(
            strs(&spec),
            vec!["*L2Jpbi9iYXNo*", "*9iaW4vYmFza*", "*vYmluL2Jhc2*"]
        );
    }

    #[test]
    fn windash_expands_flags_only() {
        let spec = entry("f|windash|contains", "' -foo'").unwrap();
        assert_eq!(spec.values[0].len(), 5);
        assert!(strs(&spec).contains(&"* /foo*".to_string()));
        let spec = entry("f|windash", "'a-b'").unwrap();
        assert_eq!(
            strs(&spec),
            vec!["a-b"],
            "a dash inside a word is not a flag"
        );
    }

    #[test]
    fn utf16le_then_base64() {
        let spec = entry("f|wide|base64", "'cmd'").unwrap();
        assert_eq!(strs(&spec), vec!["YwBtAGQA"]);
    }

    #[test]
    fn regex_flags_and_errors() {
        let spec = entry("f|re|i", "'^abc'").unwrap();
        assert_eq!(
            spec.values[0][0],
            Value::Regex(
                "^abc".into(),
                ReFlags {
                    insensitive: true,
                    ..Default::default()
                }
            )
        );
        let err = entry("f|re", "'(unclosed'").unwrap_err();
        assert!(
            err.message.contains("invalid regular expression"),
            "{}",
            err.message
        );
        let err = entry("f|i", "'x'").unwrap_err();
        assert!(err.message.contains("flag of 're'"));
    }

    #[test]
    fn unknown_modifier_is_named() {
        let err = entry("f|contans", "'x'").unwrap_err();
        assert!(err.message.contains("unknown modifier 'contans'"));
        assert_eq!(err.field.as_deref(), Some("f"));
    }

    #[test]
    fn all_needs_a_list() {
        assert!(entry("f|contains|all", "'x'").is_err());
        assert!(entry("f|contains|all", "[a, b]").unwrap().all);
    }

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(entry("f|cidr", "'not-a-net'").is_err());
    }

    #[test]
    fn a_placeholder_value_that_is_not_text_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        for (body, line, found) in [
            ("ok: [a, b]\nbad:\n  nested: x\n", 2, "mapping"),
            ("bad:\n  - a\n  - [b, c]\n", 3, "list"),
            ("bad:\n", 1, "null"),
            ("bad: [a, ~]\n", 1, "null"),
        ] {
            let path = dir.path().join("placeholders.yml");
            std::fs::write(&path, body).unwrap();
            let e = load_placeholders(&path).unwrap_err().to_string();
            assert!(e.contains(&format!(":{line}")), "{body:?}: {e}");
            assert!(e.contains("placeholder 'bad'"), "{body:?}: {e}");
            assert!(e.contains(found), "{body:?}: {e}");
        }
        let path = dir.path().join("placeholders.yml");
        std::fs::write(&path, "a: [x, 1, true]\nb: one\nc: []\n").unwrap();
        let p = load_placeholders(&path).unwrap();
        assert_eq!(p["a"], vec!["x", "1", "true"]);
        assert_eq!(p["b"], vec!["one"]);
        assert!(
            p["c"].is_empty(),
            "an empty list is a placeholder with no values"
        );
    }

    #[test]
    fn expand_uses_placeholders() {
        let doc = load_documents("v: '%admins%*'\n").unwrap();
        let mut ph = Placeholders::new();
        ph.insert("admins".into(), vec!["alice".into(), "bob".into()]);
        let spec = parse_entry("f|expand", 1, doc[0].get("v").unwrap(), &ph).unwrap();
        assert_eq!(strs(&spec), vec!["alice*", "bob*"]);
        let err = parse_entry(
            "f|expand",
            1,
            doc[0].get("v").unwrap(),
            &Placeholders::new(),
        )
        .unwrap_err();
        assert!(err.message.contains("'%admins%' has no values"));
    }

    #[test]
    fn numeric_and_exists() {
        assert_eq!(
            entry("f|gte", "5").unwrap().values[0][0],
            Value::Compare(CmpOp::Gte, 5.0)
        );
        assert!(entry("f|gt", "'abc'").is_err());
        assert_eq!(
            entry("f|exists", "true").unwrap().values[0][0],
            Value::Exists(true)
        );
        assert!(entry("f|exists", "'maybe'").is_err());
    }

    #[test]
    fn fieldref_positions() {
        let spec = entry("f|fieldref|startswith", "other.field").unwrap();
        assert_eq!(
            spec.values[0][0],
            Value::FieldRef("other.field".into(), Position::Start)
        );
    }
}
