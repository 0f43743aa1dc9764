//! A pipeline's state as one snapshot: correlation windows, suppression windows and the
//! de-duplication memory, so they are always restored together and agree with each other.
//!
//! `TRAILWATCH-PIPELINE 1 <xxh3-64 of the body, hex> <correlation len> <gate len> <dedup len>\n`
//! followed by the three parts. A bare correlation snapshot (`TRAILWATCH-STATE`, written by
//! earlier versions) is read as a pipeline state with empty suppression and de-duplication.

use crate::window::SnapshotError;

const MAGIC: &str = "TRAILWATCH-PIPELINE";
const VERSION: &str = "1";

/// Why a pipeline state was not restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Neither a pipeline state nor a correlation snapshot.
    #[error("not a trailwatch state (no '{MAGIC}' header)")]
    NotAState,
    /// Written by another format version.
    #[error("state format version {0}; this trailwatch reads version {VERSION} (delete the file to start with empty state)")]
    Version(String),
    /// Truncated or altered.
    #[error("state is corrupt: {0}")]
    Corrupt(&'static str),
    /// The correlation part.
    #[error(transparent)]
    Correlation(#[from] SnapshotError),
    /// The suppression part.
    #[error("suppression state is corrupt: {0}")]
    Gate(String),
    /// The de-duplication part.
    #[error("{0}")]
    Dedup(String),
    /// Sealed state that does not open.
    #[error(transparent)]
    Seal(#[from] super::seal::SealError),
}

/// The parts of a state.
pub(super) struct Parts<'a> {
    pub correlation: &'a [u8],
    pub gate: Option<&'a [u8]>,
    pub dedup: Option<&'a [u8]>,
}

pub(super) fn encode(correlation: &[u8], gate: &[u8], dedup: &[u8]) -> Vec<u8> {
    // Hashed part by part and copied once: a snapshot of a million ids is tens of megabytes,
    // and each extra copy of it is that much more peak memory.
    let mut sum = xxhash_rust::xxh3::Xxh3::new();
    for part in [correlation, gate, dedup] {
        sum.update(part);
    }
    let header = format!(
        "{MAGIC} {VERSION} {:016x} {} {} {}\n",
        sum.digest(),
        correlation.len(),
        gate.len(),
        dedup.len()
    );
    let mut out = Vec::with_capacity(header.len() + correlation.len() + gate.len() + dedup.len());
    for part in [header.as_bytes(), correlation, gate, dedup] {
        out.extend_from_slice(part);
    }
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<Parts<'_>, StateError> {
    if bytes.starts_with(b"TRAILWATCH-STATE ") {
        return Ok(Parts {
            correlation: bytes,
            gate: None,
            dedup: None,
        });
    }
    let nl = memchr::memchr(b'\n', bytes).ok_or(StateError::NotAState)?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| StateError::NotAState)?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, version, sum, c, g, d] = fields[..] else {
        return Err(StateError::NotAState);
    };
    if magic != MAGIC {
        return Err(StateError::NotAState);
    }
    if version != VERSION {
        return Err(StateError::Version(version.chars().take(20).collect()));
    }
    let len = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| StateError::Corrupt("bad length"))
    };
    let (c, g, d) = (len(c)?, len(g)?, len(d)?);
    let body = &bytes[nl + 1..];
    let total = c.checked_add(g).and_then(|x| x.checked_add(d));
    if total != Some(body.len()) {
        return Err(StateError::Corrupt("truncated or extended"));
    }
    if format!("{:016x}", xxhash_rust::xxh3::xxh3_64(body)) != sum {
        return Err(StateError::Corrupt("checksum mismatch"));
    }
    Ok(Parts {
        correlation: &body[..c],
        gate: Some(&body[c..c + g]),
        dedup: Some(&body[c + g..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_damage_is_rejected() {
        let bytes = encode(b"TRAILWATCH-STATE x", b"{}", b"12345678");
        let p = decode(&bytes).unwrap();
        assert_eq!(p.correlation, b"TRAILWATCH-STATE x");
        assert_eq!(p.gate, Some(&b"{}"[..]));
        assert_eq!(p.dedup, Some(&b"12345678"[..]));
        let mut altered = bytes.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            decode(&altered).err(),
            Some(StateError::Corrupt("checksum mismatch"))
        );
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(decode(b"garbage").err(), Some(StateError::NotAState));
        let v2 = String::from_utf8(bytes.clone())
            .unwrap()
            .replacen(" 1 ", " 2 ", 1);
        assert!(matches!(decode(v2.as_bytes()), Err(StateError::Version(v)) if v == "2"));
        let huge = format!("{MAGIC} 1 0 {} 1 1\n", usize::MAX);
        assert!(decode(huge.as_bytes()).is_err());
    }

    #[test]
    fn an_older_correlation_snapshot_is_read_as_correlation_only() {
        let p = decode(b"TRAILWATCH-STATE 1 abc\n{}").unwrap();
        assert!(p.gate.is_none() && p.dedup.is_none());
    }
}
