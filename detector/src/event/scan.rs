//! A validating JSON scanner specialised for capturing a few fields of large records.
//!
//! serde's visitor machinery costs more than the scanning itself when almost every value is
//! skipped. This scanner walks the bytes directly: strings are skipped with `memchr2` (SIMD),
//! keys are compared against the field trie without allocating, and wanted values are kept as
//! byte ranges. It checks the JSON grammar (structure, escapes, numbers, literals, nesting up to
//! [`MAX_DEPTH`]); it does not reject raw control characters inside strings, which are
//! unambiguous and harmless here.

/// Deepest nesting accepted, as in serde_json.
pub const MAX_DEPTH: usize = 128;

/// Why scanning stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// The input ended inside a value.
    Eof,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Not JSON; the text says what was expected.
    Syntax(&'static str),
}

/// The offset of the first `"` or `\` in `b`: 16 bytes a step with SSE2 (x86_64's baseline).
///
/// JSON strings are short (CloudTrail's average is about 15 bytes), so one inline compare of a
/// 16-byte block beats `memchr2`, whose setup costs more than the string.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn find_quote_or_backslash(b: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut i = 0;
    while i + 16 <= b.len() {
        // SAFETY: SSE2 is always present on x86_64, and the unaligned load reads the 16
        // bytes b[i..i + 16], which the loop condition keeps inside the slice.
        let mask = unsafe {
            let v = _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i);
            let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let s = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(q, s))
        };
        if mask != 0 {
            return Some(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    find_quote_or_backslash_swar(&b[i..]).map(|p| i + p)
}

/// Portable fallback: [`find_quote_or_backslash`] on other architectures.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn find_quote_or_backslash(b: &[u8]) -> Option<usize> {
    find_quote_or_backslash_swar(b)
}

/// Eight bytes at a time in a general-purpose register.
#[inline]
fn find_quote_or_backslash_swar(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= b.len() {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&b[i..i + 8]);
        let x = u64::from_le_bytes(chunk);
        let q = x ^ (ONES * b'"' as u64);
        let s = x ^ (ONES * b'\\' as u64);
        // A zero byte in q or s marks a match; the lowest flagged byte is always a true one.
        let found = ((q.wrapping_sub(ONES) & !q) | (s.wrapping_sub(ONES) & !s)) & HIGH;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|p| i + p)
}

/// A cursor over one JSON document.
pub struct Scanner<'a> {
    /// The document.
    pub b: &'a [u8],
    /// The current offset.
    pub pos: usize,
}

/// The kind of JSON value starting at a byte.
pub fn kind_of(first: u8) -> &'static str {
    match first {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// Whether `b` starts a JSON value that it ends inside of (a document cut short, or opened on
/// one line and continued on the next).
pub fn ends_inside_value(b: &[u8]) -> bool {
    matches!(Scanner::new(b).skip_value(0), Err(ScanError::Eof))
}

/// Whether `b` is one JSON value, white space around it and nothing else.
pub fn is_whole_value(b: &[u8]) -> bool {
    let mut sc = Scanner::new(b);
    sc.skip_value(0).is_ok() && sc.peek().is_none()
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Scanner { b, pos: 0 }
    }

    /// Skips white space.
    #[inline(always)]
    pub fn ws(&mut self) {
        // Records are compact, so the first byte is rarely white space; the position is kept in
        // a register rather than stored back at every step.
        let mut p = self.pos;
        while let Some(&c) = self.b.get(p) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            p += 1;
        }
        self.pos = p;
    }

    /// The next byte after white space, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.pos).copied()
    }

    /// Consumes `c` (after white space) or fails with `what`.
    #[inline]
    pub fn expect(&mut self, c: u8, what: &'static str) -> Result<(), ScanError> {
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(ScanError::Syntax(what)),
            None => Err(ScanError::Eof),
        }
    }

    /// After a member: `true` if another follows (`,`), `false` at the closing `close`.
    #[inline]
    pub fn next_member(&mut self, close: u8, what: &'static str) -> Result<bool, ScanError> {
        // Compact JSON: the separator follows the value directly.
        if self.b.get(self.pos) == Some(&b',') {
            self.pos += 1;
            return Ok(true);
        }
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(false)
            }
            Some(_) => Err(ScanError::Syntax(what)),
            None => Err(ScanError::Eof),
        }
    }

    /// Opens a container at `open`; `Ok(false)` when it is empty (and already closed).
    #[inline]
    pub fn open(&mut self, open: u8, close: u8) -> Result<bool, ScanError> {
        self.pos += 1; // the caller saw `open`
        debug_assert_eq!(self.b[self.pos - 1], open);
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// Reads a string at `"`; returns the content range and whether it holds escapes.
    #[inline(always)]
    pub fn string(&mut self) -> Result<(usize, usize, bool), ScanError> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match find_quote_or_backslash(&self.b[self.pos..]) {
                None => return Err(ScanError::Eof),
                Some(i) => {
                    self.pos += i;
                    if self.b[self.pos] == b'"' {
                        let end = self.pos;
                        self.pos += 1;
                        return Ok((start, end, escaped));
                    }
                    escaped = true;
                    self.escape()?;
                }
            }
        }
    }

    fn escape(&mut self) -> Result<(), ScanError> {
        match self.b.get(self.pos + 1) {
            None => Err(ScanError::Eof),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let hex = self
                    .b
                    .get(self.pos + 2..self.pos + 6)
                    .ok_or(ScanError::Eof)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(ScanError::Syntax("invalid \\u escape"));
                }
                self.pos += 6;
                Ok(())
            }
            Some(_) => Err(ScanError::Syntax("invalid escape")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.b.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), ScanError> {
        if self.b[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.b.get(self.pos) {
            None => return Err(ScanError::Eof),
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            Some(_) => return Err(ScanError::Syntax("invalid number")),
        }
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.eof_or("invalid number"));
            }
        }
        if matches!(self.b.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.b.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.eof_or("invalid number"));
            }
        }
        Ok(())
    }

    fn eof_or(&self, what: &'static str) -> ScanError {
        if self.pos >= self.b.len() {
            ScanError::Eof
        } else {
            ScanError::Syntax(what)
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ScanError> {
        let end = self.pos + word.len();
        match self.b.get(self.pos..end) {
            Some(w) if w == word => {
                self.pos = end;
                Ok(())
            }
            _ if word.starts_with(&self.b[self.pos..]) => Err(ScanError::Eof),
            _ => Err(ScanError::Syntax("expected a JSON value")),
        }
    }

    /// Skips one value (after white space), checking its grammar; `depth` is its nesting level.
    #[inline(always)]
    pub fn skip_value(&mut self, depth: usize) -> Result<(), ScanError> {
        // Most skipped values are strings right where the scanner stands (compact JSON): they
        // are crossed here, without a call and a dispatch on the first byte.
        if self.b.get(self.pos) == Some(&b'"') {
            return self.string().map(|_| ());
        }
        self.skip_other(depth)
    }

    /// [`Scanner::skip_value`] for anything but a string at the current offset.
    fn skip_other(&mut self, depth: usize) -> Result<(), ScanError> {
        match self.peek() {
            None => Err(ScanError::Eof),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(ScanError::TooDeep);
                }
                if !self.open(b'{', b'}')? {
                    return Ok(());
                }
                loop {
                    self.key()?;
                    self.skip_value(depth + 1)?;
                    if !self.next_member(b'}', "expected ',' or '}' after an object member")? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(ScanError::TooDeep);
                }
                if !self.open(b'[', b']')? {
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if !self.next_member(b']', "expected ',' or ']' after an array element")? {
                        return Ok(());
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(ScanError::Syntax("expected a JSON value")),
        }
    }

    /// Reads `"key":`; returns the key's content range and whether it holds escapes.
    #[inline(always)]
    pub fn key(&mut self) -> Result<(usize, usize, bool), ScanError> {
        // Compact JSON without escapes in keys (every CloudTrail key) takes one search; anything
        // else goes the general way, which also reports the errors.
        let b = self.b;
        let start = self.pos + 1;
        if b.get(self.pos) == Some(&b'"') {
            if let Some(i) = b.get(start..).and_then(find_quote_or_backslash) {
                let end = start + i;
                if b[end] == b'"' && b.get(end + 1) == Some(&b':') {
                    self.pos = end + 2;
                    self.ws();
                    return Ok((start, end, false));
                }
            }
        }
        self.key_slow()
    }

    /// [`Scanner::key`] for white space, escapes and errors.
    #[inline(never)]
    fn key_slow(&mut self) -> Result<(usize, usize, bool), ScanError> {
        match self.peek() {
            Some(b'"') => {}
            Some(_) => return Err(ScanError::Syntax("expected a string key")),
            None => return Err(ScanError::Eof),
        }
        let k = self.string()?;
        self.expect(b':', "expected ':' after a key")?;
        self.ws();
        Ok(k)
    }

    /// Fails unless only white space remains.
    pub fn end(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(ScanError::Syntax(
                "trailing characters after the JSON value",
            )),
        }
    }

    /// 1-based line and column of the current offset.
    pub fn line_column(&self) -> (usize, usize) {
        let upto = &self.b[..self.pos.min(self.b.len())];
        let line = 1 + memchr::memchr_iter(b'\n', upto).count();
        let column = match memchr::memrchr(b'\n', upto) {
            Some(i) => upto.len() - i,
            None => upto.len() + 1,
        };
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> Result<(), ScanError> {
        let mut sc = Scanner::new(s.as_bytes());
        sc.skip_value(0)?;
        sc.end()
    }

    #[test]
    fn accepts_what_serde_accepts() {
        for s in [
            "{}",
            "[]",
            r#"{"a":[1,-2.5e+3,0,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{"c":{}}}"#,
            " \n 1 ",
            "-0.0e0",
            r#""a""#,
        ] {
            assert_eq!(check(s), Ok(()), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_ok());
        }
    }

    #[test]
    fn rejects_what_serde_rejects() {
        for s in [
            "{",
            "[1,",
            r#"{"a"}"#,
            r#"{"a":}"#,
            "{,}",
            "[1 2]",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul1",
            r#""\x""#,
            r#""\u12G4""#,
            r#"{"a":1,}"#,
            "[1,]",
            "{} {}",
            r#"{1:2}"#,
            "+1",
            ".5",
        ] {
            assert!(check(s).is_err(), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_err(), "{s}");
        }
        assert_eq!(check("{"), Err(ScanError::Eof));
        assert_eq!(check(r#"{"a":tr"#), Err(ScanError::Eof));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(check(&deep), Err(ScanError::TooDeep));
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn positions_for_messages() {
        let mut sc = Scanner::new(b"{\n  \"a\": x}");
        assert!(sc.skip_value(0).is_err());
        assert_eq!(sc.line_column(), (2, 8));
    }

    #[test]
    fn swar_search_finds_the_first_delimiter() {
        for text in [
            "",
            "abc",
            "abcdefgh\"",
            "ab\\cdefghij\"",
            "é\"",
            "\"",
            "xxxxxxxxxxxxxxxx\\",
            "\u{80}\u{80}\u{80}\u{80}\"",
        ] {
            let want = text.bytes().position(|c| c == b'"' || c == b'\\');
            assert_eq!(find_quote_or_backslash(text.as_bytes()), want, "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_key_reads_the_same_either_way(s in "\"[\" :a-z\\\\u0-9,]{0,40}") {
            let (mut fast, mut slow) = (Scanner::new(s.as_bytes()), Scanner::new(s.as_bytes()));
            proptest::prop_assert_eq!(fast.key(), slow.key_slow(), "{}", s);
            proptest::prop_assert_eq!(fast.pos, slow.pos, "{}", s);
        }

        #[test]
        fn swar_agrees_with_a_plain_search(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let want = b.iter().position(|&c| c == b'"' || c == b'\\');
            proptest::prop_assert_eq!(find_quote_or_backslash(&b), want);
            proptest::prop_assert_eq!(find_quote_or_backslash_swar(&b), want);
        }

        /// What tells a document over many lines from JSON lines answers as serde_json did
        /// (where the grammars agree: no raw control characters here).
        #[test]
        fn whole_and_cut_short_agree_with_serde(s in "[\\[\\]{}\":,a-z0-9 .eE+\\-\\\\]{0,60}") {
            let theirs = serde_json::from_str::<serde_json::Value>(&s);
            proptest::prop_assert_eq!(is_whole_value(s.as_bytes()), theirs.is_ok(), "{}", s);
            let eof = matches!(&theirs, Err(e) if e.is_eof());
            proptest::prop_assert_eq!(ends_inside_value(s.as_bytes()), eof, "{}", s);
        }

        #[test]
        fn agrees_with_serde(s in "[\\[\\]{}\":,a-z0-9 .eE+\\-\\\\]{0,60}") {
            let ours = check(&s).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&s).is_ok();
            proptest::prop_assert_eq!(ours, theirs, "{}", s);
        }
    }
}
