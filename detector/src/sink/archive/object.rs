//! One archive object: gzip-compressed JSON lines whose first line places the object in its
//! writer's chain (sequence number and the SHA-256 of the object before it).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read as _, Write};

/// The object format this build writes and reads.
pub const FORMAT: u32 = 1;

/// The first line of every object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always `"header"`.
    pub kind: String,
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The instance whose chain this object belongs to.
    pub writer: String,
    /// Position in the writer's chain, from 1.
    pub seq: u64,
    /// Hex SHA-256 of the previous object's stored bytes; `None` for the first object.
    pub prev: Option<String>,
    /// When the first record of the object was accepted (RFC 3339, UTC).
    pub opened: String,
    /// When the object was sealed (RFC 3339, UTC); its key's date is this one's.
    pub sealed: String,
    /// Records after the header.
    pub records: u64,
    /// The journal the records came from (what a restart checks to not seal it twice).
    pub journal: String,
    /// Hex SHA-256 of the record lines (each with its line end).
    #[serde(default)]
    pub records_sha256: String,
    /// Hex HMAC-SHA256, keyed with the archive key, of this header with an empty `mac`:
    /// without the key nobody can forge an object, even the newest of a chain.
    #[serde(default)]
    pub mac: String,
}

impl Header {
    /// Sets `records_sha256` and `mac` for these records.
    pub fn seal(&mut self, records: &[Vec<u8>], key: &[u8]) {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for r in records {
            h.update(r);
            h.update(b"\n");
        }
        self.records_sha256 = hex(&h.finalize());
        self.mac = self.expected_mac(key);
    }

    /// The MAC this header must carry under `key`.
    pub fn expected_mac(&self, key: &[u8]) -> String {
        use hmac::Mac;
        let mut unsigned = self.clone();
        unsigned.mac.clear();
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(&serde_json::to_vec(&unsigned).unwrap_or_default());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `mac` holds under `key` (compared in constant time).
    pub fn mac_holds(&self, key: &[u8]) -> bool {
        let expected = self.expected_mac(key);
        expected.len() == self.mac.len()
            && expected
                .bytes()
                .zip(self.mac.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0
    }
}

/// Why an object cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not gzip, or cut short.
    #[error("not a readable gzip object: {0}")]
    Gzip(std::io::Error),
    /// The first line is not a header of a format this build reads.
    #[error("no valid header line: {0}")]
    Header(String),
    /// A record line is not JSON.
    #[error("record {line} is not JSON: {message}")]
    Record {
        /// 1-based line in the object (the header is line 1).
        line: usize,
        /// What the parser said.
        message: String,
    },
}

/// Bytes an object is at most when read back: a sealed object holds at most the configured
/// object size; this guards readers against a decompression bomb put in the archive.
pub const MAX_UNCOMPRESSED: u64 = 1 << 30;

/// Builds an object's stored bytes from its header and record lines (each one JSON text).
pub fn encode(header: &Header, records: &[Vec<u8>]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let head = serde_json::to_vec(header).unwrap_or_default();
    // Writes to a Vec cannot fail.
    let _ = gz.write_all(&head);
    let _ = gz.write_all(b"\n");
    for r in records {
        let _ = gz.write_all(r);
        let _ = gz.write_all(b"\n");
    }
    gz.finish().unwrap_or_default()
}

/// The longest record line read back: alerts and batch records are kilobytes; this bounds
/// what a hostile line can cost a reader.
pub const MAX_LINE: usize = 16 << 20;

/// What reading an object found besides its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The header.
    pub header: Header,
    /// Record lines read.
    pub records: u64,
    /// Hex SHA-256 of the record lines as read (compare with `header.records_sha256`).
    pub records_sha256: String,
}

/// What [`read`] hands each record line to: its line number in the object and its text.
pub type RecordFn<'a> = dyn FnMut(usize, &[u8]) -> Result<(), ObjectError> + 'a;

/// Reads an object line by line, handing each record line to `each` (a line over
/// [`MAX_LINE`] or the object past [`MAX_UNCOMPRESSED`] is an error): memory stays bounded by
/// one line whatever the object holds.
pub fn read(bytes: &[u8], each: &mut RecordFn<'_>) -> Result<Read, ObjectError> {
    use sha2::Digest;
    // One gzip member, with the header this encoder writes: a member appended, a file name
    // added or a time set would change the stored bytes without changing what they hold, so
    // the newest object (which nothing names yet) could be rewritten unnoticed.
    let canonical = bytes
        .get(..10)
        .is_some_and(|h| h == [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    if !canonical {
        return Err(ObjectError::Gzip(std::io::Error::other(
            "not a gzip member with the header trailwatch writes",
        )));
    }
    let gz = flate2::bufread::GzDecoder::new(bytes).take(MAX_UNCOMPRESSED);
    let mut reader = std::io::BufReader::new(gz);
    let mut line = Vec::new();
    let mut next = |line: &mut Vec<u8>| -> Result<bool, ObjectError> {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', line)
            .map_err(ObjectError::Gzip)?;
        if n > MAX_LINE {
            return Err(ObjectError::Header(format!(
                "a line longer than {MAX_LINE} bytes"
            )));
        }
        Ok(n > 0)
    };
    if !next(&mut line)? {
        return Err(ObjectError::Header("the object is empty".into()));
    }
    let header: Header = serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(&line))
        .map_err(|e| ObjectError::Header(e.to_string()))?;
    if header.kind != "header" || header.format != FORMAT {
        return Err(ObjectError::Header(format!(
            "kind {:?}, format {}",
            header.kind, header.format
        )));
    }
    let mut hash = sha2::Sha256::new();
    let mut records = 0u64;
    while next(&mut line)? {
        if line.len() > MAX_LINE {
            return Err(ObjectError::Header(format!(
                "a line longer than {MAX_LINE} bytes"
            )));
        }
        hash.update(&line);
        if !line.ends_with(b"\n") {
            hash.update(b"\n");
        }
        records += 1;
        each(
            records as usize + 1,
            line.strip_suffix(b"\n").unwrap_or(&line),
        )?;
    }
    let rest = reader.into_inner().into_inner().into_inner();
    if !rest.is_empty() {
        return Err(ObjectError::Gzip(std::io::Error::other(format!(
            "{} bytes after the gzip member (or the object is over {MAX_UNCOMPRESSED} bytes)",
            rest.len()
        ))));
    }
    Ok(Read {
        header,
        records,
        records_sha256: hex(&hash.finalize()),
    })
}

/// Whether the unused bits after the final deflate block of a whole gzip member are zero, as
/// every encoder writes them. No decoder reads them, so without this check they could be
/// changed in the newest object (which no successor names yet) and it would still read intact.
/// It inflates the object once more, so verification asks it of that object only.
pub fn padding_is_zero(bytes: &[u8]) -> bool {
    // The member ends with 8 bytes of CRC and size; the deflate stream's last byte is before.
    let Some(&last) = bytes.len().checked_sub(9).and_then(|at| bytes.get(at)) else {
        return true;
    };
    if last == 0 {
        return true;
    }
    // Padding is the high bits of that byte. If the highest set bit is read, clearing it
    // changes what decodes (the CRC then fails) or breaks the stream; if it is not, the member
    // still reads whole.
    let mut cleared = bytes.to_vec();
    let at = bytes.len() - 9;
    cleared[at] &= !(0x80u8 >> last.leading_zeros());
    let mut gz = flate2::bufread::GzDecoder::new(&cleared[..]).take(MAX_UNCOMPRESSED + 1);
    !matches!(std::io::copy(&mut gz, &mut std::io::sink()), Ok(n) if n <= MAX_UNCOMPRESSED)
}

/// Reads an object checking that every record is JSON, keeping none of them.
pub fn check(bytes: &[u8]) -> Result<Read, ObjectError> {
    read(bytes, &mut |line, text| {
        serde_json::from_slice::<serde::de::IgnoredAny>(text)
            .map(drop)
            .map_err(|e| ObjectError::Record {
                line,
                message: e.to_string(),
            })
    })
}

/// The object's header and its records, parsed.
pub fn decode(bytes: &[u8]) -> Result<(Header, Vec<serde_json::Value>), ObjectError> {
    let mut records = Vec::new();
    let read = read(bytes, &mut |line, text| {
        let value = serde_json::from_slice(text).map_err(|e| ObjectError::Record {
            line,
            message: e.to_string(),
        })?;
        records.push(value);
        Ok(())
    })?;
    Ok((read.header, records))
}

/// Hex SHA-256 of stored bytes: what the next object and the day's manifest name.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The bytes of lower-case hex only, as [`hex`] writes it: `A` or `+a` would be other texts of
/// the same bytes (signatures and tags must have one).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The day (`YYYY-MM-DD`) of an RFC 3339 time, as keys and manifests use it.
pub fn day_of(time: &str) -> &str {
    time.get(..10).unwrap_or(time)
}

/// Where an object lives below the archive's prefix: `writer/YYYY/MM/DD/<seq>.jsonl.gz`.
pub fn object_name(writer: &str, day: &str, seq: u64) -> String {
    format!("{}/{seq:012}.jsonl.gz", day_folder(writer, day))
}

/// Where a day's manifest lives below the archive's prefix.
pub fn manifest_name(writer: &str, day: &str) -> String {
    format!("{}/manifest.json", day_folder(writer, day))
}

fn day_folder(writer: &str, day: &str) -> String {
    format!("{writer}/{}", day.replace('-', "/"))
}

/// What an archive key names, parsed back: writer, day and (for an object) its sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// `writer/YYYY/MM/DD/<seq>.jsonl.gz`
    Object {
        /// The chain's writer.
        writer: String,
        /// `YYYY-MM-DD`.
        day: String,
        /// Sequence number.
        seq: u64,
    },
    /// `writer/YYYY/MM/DD/manifest.json`
    Manifest {
        /// The chain's writer.
        writer: String,
        /// `YYYY-MM-DD`.
        day: String,
    },
}

/// Parses a name below the prefix; `None` for anything the archive does not write.
pub fn parse_name(name: &str) -> Option<Name> {
    let parts: Vec<&str> = name.split('/').collect();
    let [writer, y, m, d, file] = parts.as_slice() else {
        return None;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let within = |s: &str, hi: u32| s.parse::<u32>().is_ok_and(|n| (1..=hi).contains(&n));
    if writer.is_empty() || !digits(y, 4) || !digits(m, 2) || !digits(d, 2) {
        return None;
    }
    if !within(m, 12) || !within(d, 31) {
        return None;
    }
    let day = format!("{y}-{m}-{d}");
    let writer = writer.to_string();
    if *file == "manifest.json" {
        return Some(Name::Manifest { writer, day });
    }
    let seq = file.strip_suffix(".jsonl.gz")?;
    if !digits(seq, 12) {
        return None;
    }
    Some(Name::Object {
        writer,
        day,
        seq: seq.parse().ok()?,
    })
}

/// Now as RFC 3339 UTC with milliseconds, the form every archive time takes.
pub fn now_rfc3339() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64) -> Header {
        Header {
            kind: "header".into(),
            format: FORMAT,
            writer: "w1".into(),
            seq,
            prev: None,
            opened: "2026-12-01T10:00:00.000Z".into(),
            sealed: "2026-12-01T10:05:00.000Z".into(),
            records: 2,
            journal: "j".into(),
            records_sha256: String::new(),
            mac: String::new(),
        }
    }

    #[test]
    fn objects_round_trip() {
        let bytes = encode(
            &header(7),
            &[b"{\"a\":1}".to_vec(), b"{\"b\":[2]}".to_vec()],
        );
        let (h, records) = decode(&bytes).unwrap();
        assert_eq!(h, header(7));
        assert_eq!(
            records,
            vec![serde_json::json!({"a":1}), serde_json::json!({"b":[2]})]
        );
        assert_eq!(sha256_hex(&bytes).len(), 64);
    }

    #[test]
    fn damaged_objects_are_errors() {
        let bytes = encode(&header(1), &[b"{}".to_vec()]);
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(ObjectError::Gzip(_))
        ));
        assert!(matches!(
            decode(b"plain"),
            Err(ObjectError::Gzip(_) | ObjectError::Header(_))
        ));
        let not_json = encode(&header(1), &[b"{".to_vec()]);
        assert!(matches!(
            decode(&not_json),
            Err(ObjectError::Record { line: 2, .. })
        ));
        let mut wrong = header(1);
        wrong.format = 99;
        assert!(matches!(
            decode(&encode(&wrong, &[])),
            Err(ObjectError::Header(_))
        ));
    }

    #[test]
    fn only_the_gzip_form_the_encoder_writes_is_read() {
        let bytes = encode(&header(1), &[b"{}".to_vec()]);
        assert!(check(&bytes).is_ok());
        let mut timed = bytes.clone();
        timed[4] = 1;
        let mut appended = bytes.clone();
        appended.extend(
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default())
                .finish()
                .unwrap(),
        );
        for (what, b) in [("a time", timed), ("a second member", appended)] {
            assert!(matches!(check(&b), Err(ObjectError::Gzip(_))), "{what}");
        }
    }

    #[test]
    fn any_bit_of_the_last_deflate_byte_or_of_the_flags_changed_is_refused() {
        let mut padded = 0;
        for n in 0..200u64 {
            let records: Vec<Vec<u8>> = (0..n % 17)
                .map(|i| {
                    format!(
                        "{{\"n\":{n},\"i\":{i},\"pad\":\"{}\"}}",
                        "x".repeat((n * i % 23) as usize)
                    )
                    .into_bytes()
                })
                .collect();
            let mut h = header(n + 1);
            h.records = records.len() as u64;
            let bytes = encode(&h, &records);
            assert!(check(&bytes).is_ok(), "object {n} as written");
            let last = bytes.len() - 9;
            padded += usize::from(bytes[last] < 0x80);
            assert!(padding_is_zero(&bytes), "object {n} as written");
            for bit in 0..8 {
                let mut changed = bytes.clone();
                changed[last] ^= 1 << bit;
                assert!(
                    check(&changed).is_err() || !padding_is_zero(&changed),
                    "object {n}, bit {bit} of byte {last}"
                );
            }
            for xfl in [2, 4] {
                let mut changed = bytes.clone();
                changed[8] = xfl;
                assert!(check(&changed).is_err(), "object {n}, XFL {xfl}");
            }
        }
        // Most objects have unused bits to change, so the loop above tried the padding.
        assert!(padded > 100, "{padded} of 200 objects had a free high bit");
    }

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let o = object_name("w1", "2026-12-01", 42);
        assert_eq!(o, "w1/2026/12/01/000000000042.jsonl.gz");
        assert_eq!(
            parse_name(&o),
            Some(Name::Object {
                writer: "w1".into(),
                day: "2026-12-01".into(),
                seq: 42
            })
        );
        assert_eq!(
            parse_name(&manifest_name("w1", "2026-12-01")),
            Some(Name::Manifest {
                writer: "w1".into(),
                day: "2026-12-01".into()
            })
        );
        for other in [
            "w1/2026/13/45/000000000001.jsonl.gz",
            "w1/2026/12/01/42.jsonl.gz",
            "w1/2026/12/x.json",
            "notes.txt",
            "/2026/12/01/manifest.json",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }
}
