//! Client API keys: `cdn_<id>_<secret>`. The id (8 lower-case letters and
//! digits) is shown in listings; the secret (40 base62 characters) is shown
//! once, at creation, and only its SHA-256 is ever stored.
//!
//! Admin tokens (`cdnadm_<id>_<secret>`, [`super::token`]) have the same
//! shape under another prefix: [`generate_credential`] and
//! [`split_credential`] serve both.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// What every client key starts with.
pub const PREFIX: &str = "cdn_";
pub const ID_LEN: usize = 8;
pub const SECRET_LEN: usize = 40;
/// The shortest secret accepted when parsing (SPEC: at least 32 base62 characters).
pub const MIN_SECRET_LEN: usize = 32;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A key's public id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Arc<str>);

/// SHA-256 of a key's secret part.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

/// A key presented by a client, parsed: its id and the hash of its secret.
/// The raw secret is dropped as soon as it is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub id: KeyId,
    pub hash: KeyHash,
}

/// A newly generated key: the raw text exists only here, to be shown once.
#[derive(Debug)]
pub struct NewKey {
    pub id: KeyId,
    pub hash: KeyHash,
    pub raw: Secret<String>,
}

/// Why a presented key is malformed. Never includes the key's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("API key must be of the form `cdn_<id>_<secret>`")]
    Shape,
    #[error("API key id must be 8 lower-case letters or digits")]
    Id,
    #[error("API key secret must be at least 32 base62 characters")]
    Secret,
}

// === impl KeyId ===

/// `s` if it is a well-formed key id.
fn check_id(s: &str) -> Result<&str, KeyFormatError> {
    if s.len() == ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b)) {
        Ok(s)
    } else {
        Err(KeyFormatError::Id)
    }
}

impl KeyId {
    /// Validates an id as typed by an operator (e.g. `cordon keys revoke ID`).
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        check_id(s).map(|id| Self(Arc::from(id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared string (usage records hold it without a copy).
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

// === impl KeyHash ===

impl KeyHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// Compares without an early exit, so timing says nothing about the prefix.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// Why a `<prefix><id>_<secret>` credential is malformed, before each kind
/// of credential words it for its own users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    Shape,
    Id,
    Secret,
}

impl From<Malformed> for KeyFormatError {
    fn from(m: Malformed) -> Self {
        match m {
            Malformed::Shape => KeyFormatError::Shape,
            Malformed::Id => KeyFormatError::Id,
            Malformed::Secret => KeyFormatError::Secret,
        }
    }
}

/// Checks `<prefix><id>_<secret>` and hashes the secret; the id is borrowed
/// from `raw`.
pub(crate) fn split_credential<'a>(
    raw: &'a str,
    prefix: &str,
) -> Result<(&'a str, KeyHash), Malformed> {
    let rest = raw.strip_prefix(prefix).ok_or(Malformed::Shape)?;
    let (id, secret) = rest.split_once('_').ok_or(Malformed::Shape)?;
    let id = check_id(id).map_err(|_| Malformed::Id)?;
    if secret.len() < MIN_SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Malformed::Secret);
    }
    Ok((id, KeyHash::of(secret)))
}

/// A fresh `<prefix><id>_<secret>` from the operating system's CSPRNG: its
/// id, the hash of its secret, and the raw text (to be shown once).
pub(crate) fn generate_credential(prefix: &str) -> (KeyId, KeyHash, Secret<String>) {
    let id: String = random_chars(ID_ALPHABET, ID_LEN);
    let secret: String = random_chars(BASE62, SECRET_LEN);
    let hash = KeyHash::of(&secret);
    let raw = Secret::new(format!("{prefix}{id}_{secret}"));
    (KeyId(Arc::from(id)), hash, raw)
}

// === impl PresentedKey ===

impl PresentedKey {
    /// Parses `cdn_<id>_<secret>` and hashes the secret.
    pub fn parse(raw: &str) -> Result<Self, KeyFormatError> {
        let (id, hash) = Self::split(raw)?;
        Ok(Self {
            id: KeyId(Arc::from(id)),
            hash,
        })
    }

    /// What [`PresentedKey::parse`] checks, with the id borrowed from `raw`:
    /// the request path looks the id up without copying it.
    pub fn split(raw: &str) -> Result<(&str, KeyHash), KeyFormatError> {
        Ok(split_credential(raw, PREFIX)?)
    }
}

// === impl NewKey ===

impl NewKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let (id, hash, raw) = generate_credential(PREFIX);
        Self { id, hash, raw }
    }
}

/// `n` characters drawn uniformly from `alphabet` (rejection sampling).
fn random_chars(alphabet: &[u8], n: usize) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in rand::random::<[u8; 64]>() {
            if usize::from(b) < limit && out.len() < n {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_the_same_id_and_hash() {
        let k = NewKey::generate();
        let raw = k.raw.expose();
        assert!(raw.starts_with("cdn_"));
        assert_eq!(raw.len(), 4 + ID_LEN + 1 + SECRET_LEN);
        let p = PresentedKey::parse(raw).unwrap();
        assert_eq!(p.id, k.id);
        assert!(p.hash.ct_eq(&k.hash));
        assert_ne!(NewKey::generate().raw.expose(), raw, "keys are random");
    }

    #[test]
    fn malformed_keys_are_refused_with_a_precise_reason() {
        let secret = "a".repeat(32);
        assert_eq!(PresentedKey::parse("sk-123"), Err(KeyFormatError::Shape));
        assert_eq!(PresentedKey::parse("cdn_abc"), Err(KeyFormatError::Shape));
        assert_eq!(
            PresentedKey::parse(&format!("cdn_ABCDEFGH_{secret}")),
            Err(KeyFormatError::Id)
        );
        assert_eq!(
            PresentedKey::parse(&format!("cdn_abcd_{secret}")),
            Err(KeyFormatError::Id)
        );
        assert_eq!(
            PresentedKey::parse("cdn_abcdefgh_short"),
            Err(KeyFormatError::Secret)
        );
        assert_eq!(
            PresentedKey::parse(&format!("cdn_abcdefgh_{}-", "a".repeat(31))),
            Err(KeyFormatError::Secret)
        );
        assert!(PresentedKey::parse(&format!("cdn_abcdefgh_{secret}")).is_ok());
    }

    #[test]
    fn split_borrows_what_parse_copies() {
        let k = NewKey::generate();
        let (id, hash) = PresentedKey::split(k.raw.expose()).unwrap();
        assert_eq!(id, k.id.as_str());
        assert!(hash.ct_eq(&k.hash));
        for bad in [
            "sk-123",
            "cdn_ABCDEFGH_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "cdn_abcdefgh_x",
        ] {
            assert_eq!(
                PresentedKey::split(bad).map(|_| ()),
                PresentedKey::parse(bad).map(|_| ())
            );
        }
    }

    #[test]
    fn hash_hex_round_trips_and_debug_hides_it() {
        let h = KeyHash::of("x");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(format!("{h:?}"), "KeyHash(..)");
        assert!(!h.ct_eq(&KeyHash::of("y")));
    }
}
