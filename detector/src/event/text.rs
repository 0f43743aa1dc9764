//! The text a rule sees for a JSON value.
//!
//! Sigma compares strings, so every JSON value has one canonical text (see rules/README.md):
//! strings are themselves, booleans `true`/`false`, numbers as Python prints them (`1.0`,
//! `1e+16`), objects and arrays as compact JSON (`{"a":1,"b":[2]}`) with keys in document order
//! and only `"`, `\` and control characters escaped. This is what the reference oracle stores,
//! so a rule matches here exactly where it matches there.

use serde_json::Value;

/// Appends the compact JSON text of `value` to `out`.
pub fn write_compact(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_compact(v, out);
            }
            out.push('}');
        }
    }
}

/// The compact JSON text of `value`.
pub fn compact(value: &Value) -> String {
    let mut out = String::new();
    write_compact(value, &mut out);
    out
}

/// The text of a scalar or container as a rule compares it; `None` for JSON null.
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => {
            let mut out = String::new();
            write_number(n, &mut out);
            Some(out)
        }
        Value::Array(_) | Value::Object(_) => Some(compact(value)),
    }
}

fn write_number(n: &serde_json::Number, out: &mut String) {
    if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&float_text(f));
    }
}

/// A float as Python's `repr` writes it: shortest round-trip digits, `.0` on whole numbers,
/// exponent form below 1e-4 and from 1e16 up (`1e-05`, `1e+16`).
pub fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat((-point) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if point as usize >= digits.len() {
        let zeros = "0".repeat(point as usize - digits.len());
        format!("{sign}{digits}{zeros}.0")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Writes a JSON string literal escaping only what Python's `json.dumps(ensure_ascii=False)` does.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether any byte of `b` is escaped in a JSON string (`"`, `\\`, control characters). Nearly
/// every string has none: checked 16 bytes a step (a fixed-size block without an early exit is
/// compiled to a few vector instructions).
pub fn needs_escape(b: &[u8]) -> bool {
    let escaped = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = b.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | escaped(b)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| escaped(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_python() {
        let cases = [
            (1.0, "1.0"),
            (100000.0, "100000.0"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.1, "0.1"),
        ];
        for (f, want) in cases {
            assert_eq!(float_text(f), want, "{f}");
        }
    }

    #[test]
    fn compact_json_keeps_order_and_escapes_like_python() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": [true, null, 2.0], "s": "x\"y\\z\n\u0001é/"}"#)
                .unwrap();
        assert_eq!(
            compact(&v),
            "{\"b\":1,\"a\":[true,null,2.0],\"s\":\"x\\\"y\\\\z\\n\\u0001é/\"}"
        );
    }

    #[test]
    fn scalar_texts() {
        assert_eq!(value_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(value_text(&json!(42)).as_deref(), Some("42"));
        assert_eq!(value_text(&json!(-7)).as_deref(), Some("-7"));
        assert_eq!(value_text(&json!(null)), None);
        assert_eq!(value_text(&json!([])).as_deref(), Some("[]"));
    }

    #[test]
    fn an_escape_is_found_wherever_it_lies_in_a_block_or_the_rest() {
        for len in 0..=40 {
            assert!(!needs_escape(&vec![b'a'; len]));
            for at in 0..len {
                for c in [b'"', b'\\', 0, 0x1f] {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    assert!(needs_escape(&b), "{c} at {at} of {len}");
                }
            }
        }
        assert!(!needs_escape("é\u{7f}/ plain".as_bytes()));
    }
}
