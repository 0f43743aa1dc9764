//! A day's manifest: the objects a writer sealed that day with their hashes, signed with the
//! archive key, so that an object deleted, altered or swapped within the day is detected even
//! by someone who can rewrite the chain after it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

/// One object of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number in the writer's chain.
    pub seq: u64,
    /// Hex SHA-256 of the object's stored bytes.
    pub sha256: String,
}

/// The signed list of one writer's objects of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"manifest"`.
    pub kind: String,
    /// The object format of the day's objects.
    pub format: u32,
    /// The chain's writer.
    pub writer: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Hash of the object before the day's first (the last of an earlier day), if any.
    pub prev: Option<String>,
    /// The day's objects in chain order.
    pub objects: Vec<Entry>,
    /// Hex HMAC-SHA256, keyed with the archive key, of this manifest without its signature.
    pub signature: String,
}

impl Manifest {
    /// A signed manifest.
    pub fn signed(
        writer: &str,
        day: &str,
        prev: Option<String>,
        objects: Vec<Entry>,
        key: &[u8],
    ) -> Manifest {
        let mut m = Manifest {
            kind: "manifest".into(),
            format: super::object::FORMAT,
            writer: writer.into(),
            day: day.into(),
            prev,
            objects,
            signature: String::new(),
        };
        m.signature = m.expected_signature(key);
        m
    }

    /// The bytes stored for this manifest: the only form [`Manifest::from_stored`] accepts.
    pub fn to_stored(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads a stored manifest, refusing any bytes but the form [`Manifest::to_stored`] writes:
    /// the signature covers the content, so a change that keeps the content (whitespace, an
    /// escape, the case of a hex digit) must still be seen as a change of the stored object.
    pub fn from_stored(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("unreadable: {e}"))?;
        if m.to_stored() != bytes {
            return Err("its bytes are not the form the writer writes (altered)".into());
        }
        Ok(m)
    }

    /// Whether the signature is the archive key's over this content.
    pub fn signature_holds(&self, key: &[u8]) -> bool {
        let mut mac = mac(key);
        mac.update(&self.unsigned_bytes());
        let Some(given) = super::object::unhex(&self.signature) else {
            return false;
        };
        // Constant time: the check must not tell a forger how much of a signature was right.
        mac.verify_slice(&given).is_ok()
    }

    fn expected_signature(&self, key: &[u8]) -> String {
        let mut mac = mac(key);
        mac.update(&self.unsigned_bytes());
        super::object::hex(&mac.finalize().into_bytes())
    }

    /// The canonical bytes signed: the manifest's JSON with an empty signature (field order
    /// is the struct's, so it does not depend on how the stored file was formatted).
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.signature.clear();
        serde_json::to_vec(&m).unwrap_or_default()
    }
}

fn mac(key: &[u8]) -> Hmac<sha2::Sha256> {
    // HMAC takes keys of any length.
    <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                seq: 3,
                sha256: "aa".repeat(32),
            },
            Entry {
                seq: 4,
                sha256: "bb".repeat(32),
            },
        ]
    }

    #[test]
    fn a_signature_holds_only_for_its_key_and_content() {
        let m = Manifest::signed(
            "w1",
            "2026-12-01",
            Some("cc".repeat(32)),
            entries(),
            b"key one",
        );
        assert!(m.signature_holds(b"key one"));
        assert!(!m.signature_holds(b"key two"));
        let text = serde_json::to_string_pretty(&m).unwrap();
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert!(
            back.signature_holds(b"key one"),
            "formatting is not content"
        );
        let mut dropped = m.clone();
        dropped.objects.remove(0);
        assert!(!dropped.signature_holds(b"key one"));
        let mut swapped = m.clone();
        swapped.objects.swap(0, 1);
        assert!(!swapped.signature_holds(b"key one"));
        let mut garbage = m.clone();
        garbage.signature = "zz".into();
        assert!(!garbage.signature_holds(b"key one"));
        let mut shouted = m.clone();
        shouted.signature = shouted.signature.to_ascii_uppercase();
        assert!(!shouted.signature_holds(b"key one"));
        let mut signed = m.clone();
        signed.signature.replace_range(0..1, "+");
        assert!(
            !signed.signature_holds(b"key one"),
            "from_str_radix would take +a"
        );
    }

    #[test]
    fn only_the_written_form_is_read() {
        let m = Manifest::signed("w1", "2026-12-01", None, entries(), b"k");
        let stored = m.to_stored();
        assert_eq!(Manifest::from_stored(&stored), Ok(m));
        // Found by the property test: a space turned into a carriage return is still JSON.
        let i = stored.iter().position(|&b| b == b' ').unwrap();
        let mut reformatted = stored.clone();
        reformatted[i] = b'\r';
        assert!(Manifest::from_stored(&reformatted)
            .unwrap_err()
            .contains("not the form"));
        let compact =
            serde_json::to_vec(&Manifest::signed("w1", "2026-12-01", None, entries(), b"k"))
                .unwrap();
        assert!(Manifest::from_stored(&compact).is_err());
        assert!(Manifest::from_stored(b"{")
            .unwrap_err()
            .starts_with("unreadable"));
    }
}
