//! State files at rest: sealed with a key derived from the HMAC secret.
//!
//! A pipeline's state holds what its alerts will hold (principal ARNs in open suppression
//! windows, group values of buffered correlation hits). With an HMAC secret configured, the
//! state is encrypted and authenticated (ChaCha20-Poly1305, a key derived from the secret), so
//! a copied state file or state topic shows no names without the secret, and an altered one is
//! rejected. Unsealed state from before is still read.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::Mac;

const MAGIC: &[u8] = b"TRAILWATCH-SEALED 1\n";
const NONCE: usize = 12;

/// Why sealed state could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sealed, but no secret is configured.
    #[error(
        "the state is sealed; configure the HMAC key it was written with ([alerts] hmac_key_file)"
    )]
    NoKey,
    /// Another secret, or altered bytes.
    #[error(
        "the sealed state does not open with this HMAC key (another key, or the file was altered)"
    )]
    WrongKey,
    /// A partition state whose header no tag of this key vouches for.
    #[error("the partition state's header is not vouched for by this HMAC key (written by a version before header tags, for another group, topic or partition, or altered)")]
    Unvouched,
}

/// The key state is sealed with, and the key that vouches for what travels beside it.
#[derive(Clone)]
pub struct SealKey {
    cipher: Key,
    mac: [u8; 32],
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// Derives the sealing keys from the HMAC secret (never the secret itself).
    pub fn derive(secret: &[u8]) -> Self {
        SealKey {
            cipher: Key::clone_from_slice(&derive(secret, b"trailwatch state sealing v1")),
            mac: derive(secret, b"trailwatch state header v1"),
        }
    }

    /// A tag vouching for `parts` (each length-prefixed, so no two lists share their bytes).
    pub fn vouch(&self, parts: &[&[u8]]) -> [u8; 32] {
        header_mac(&self.mac, parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is [`SealKey::vouch`]'s for `parts` (compared in constant time).
    pub fn vouches(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        header_mac(&self.mac, parts).verify_slice(tag).is_ok()
    }

    /// `plain`, encrypted and authenticated.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE] = rand::random();
        let cipher = ChaCha20Poly1305::new(&self.cipher);
        // Encryption fails only past 256 GiB of input.
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .unwrap_or_default();
        [MAGIC, &nonce, &sealed].concat()
    }
}

type HeaderMac = hmac::Hmac<sha2::Sha256>;

/// HMAC-SHA256 of `secret` over `label`: one key per use, none of them the secret.
fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    match <HeaderMac as Mac>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(label);
            mac.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => {
            use sha2::Digest;
            sha2::Sha256::digest([secret, label].concat()).into()
        }
    }
}

fn header_mac(key: &[u8; 32], parts: &[&[u8]]) -> HeaderMac {
    // HMAC takes keys of any length: the fallback (a zero key) is never taken.
    let mut mac = <HeaderMac as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <HeaderMac as KeyInit>::new(&Default::default()));
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac
}

/// Whether `bytes` is sealed state.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The plain state of `bytes`: opened with `key` when sealed, as it is otherwise.
pub fn open<'a>(
    key: Option<&SealKey>,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, [u8]>, SealError> {
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    };
    let key = key.ok_or(SealError::NoKey)?;
    if rest.len() < NONCE {
        return Err(SealError::WrongKey);
    }
    let (nonce, sealed) = rest.split_at(NONCE);
    ChaCha20Poly1305::new(&key.cipher)
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| SealError::WrongKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_hides_names_and_opens_only_with_its_key() {
        let key = SealKey::derive(b"test-secret-0123456789abcdef");
        let plain = b"arn:aws:iam::111122223333:user/alice";
        let sealed = key.seal(plain);
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(5).any(|w| w == b"alice"));
        assert_eq!(&*open(Some(&key), &sealed).unwrap(), plain);
        let other = SealKey::derive(b"another-secret-0123456789abc");
        assert_eq!(open(Some(&other), &sealed), Err(SealError::WrongKey));
        assert_eq!(open(None, &sealed), Err(SealError::NoKey));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(open(Some(&key), &altered), Err(SealError::WrongKey));
        assert_eq!(
            &*open(None, plain).unwrap(),
            plain,
            "unsealed state reads as before"
        );
        assert_ne!(key.seal(plain), sealed, "a fresh nonce each time");
    }
}
