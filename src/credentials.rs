//! BYOK: a tenant's own provider credential, sealed with AES-256-GCM under
//! the gateway's master key before it is stored, and opened only to be sent.
//!
//! The master key comes from `CORDON_MASTER_KEY` (64 hex characters) or from
//! the file named by `CORDON_MASTER_KEY_FILE`; with neither, BYOK is off.
//! Each sealed value carries a fresh random nonce and the public id of the
//! key that sealed it, and is bound to its (tenant, provider) by the
//! associated data: a row copied to another tenant or provider does not
//! open. Pure: no store and no I/O, except reading the master key file.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};

use crate::config::Env;
use crate::secret::Secret;

/// The variable holding the master key as 64 hex characters.
pub const MASTER_KEY_VAR: &str = "CORDON_MASTER_KEY";
/// The variable naming a file that holds the master key as 64 hex characters.
pub const MASTER_KEY_FILE_VAR: &str = "CORDON_MASTER_KEY_FILE";

/// The longest credential accepted for sealing, in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;

/// Prefix of the associated data; the version changes if its layout does.
const AAD_TAG: &[u8] = b"cordon-byok-v1";
/// Domain separation for the master key's public id.
const ID_TAG: &[u8] = b"cordon master key id v1\0";
/// A master key file larger than this is certainly not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The 32-byte key every BYOK credential is sealed under. `Debug` prints
/// `*****`; the key itself is never formatted.
#[derive(Clone)]
pub struct MasterKey {
    key: Secret<[u8; 32]>,
    id: String,
}

/// A credential as stored: nonce, ciphertext (with its tag) and the id of
/// the master key that sealed it. Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub master_key_id: String,
}

/// Where the master key was read from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    Var,
    File(PathBuf),
}

/// Why no master key could be read. Never holds the key or any part of it.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("set either `{MASTER_KEY_VAR}` or `{MASTER_KEY_FILE_VAR}`, not both")]
    Both,
    #[error("{origin} must hold 64 hex characters (32 bytes); it holds {len} characters")]
    Length { origin: KeyOrigin, len: usize },
    #[error("{origin} must hold only hex characters (0-9, a-f)")]
    NotHex { origin: KeyOrigin },
    #[error("cannot read the master key file {} (`{MASTER_KEY_FILE_VAR}`): {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Why a credential could not be sealed or opened. Holds no credential,
/// key or ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "the credential was sealed under master key `{sealed_with}`, but the master key in use is `{in_use}`"
    )]
    OtherMasterKey { sealed_with: String, in_use: String },
    #[error(
        "the credential stored for tenant `{tenant}`, provider `{provider}` does not authenticate: \
         the row was moved to another tenant or provider, or altered"
    )]
    DoesNotAuthenticate { tenant: String, provider: String },
    #[error("the credential stored for tenant `{tenant}`, provider `{provider}` is not UTF-8 text")]
    NotUtf8 { tenant: String, provider: String },
    #[error("a stored nonce must be 12 bytes; this one has {0}")]
    NonceLength(usize),
    #[error("a credential may be at most {MAX_CREDENTIAL_BYTES} bytes")]
    TooLong,
}

// === impl MasterKey ===

impl MasterKey {
    /// The master key from `CORDON_MASTER_KEY` or `CORDON_MASTER_KEY_FILE`
    /// (surrounding whitespace ignored); `Ok(None)` when neither is set
    /// (BYOK off); an error when both are, or the key is malformed.
    pub fn from_env(env: &dyn Env) -> Result<Option<Self>, MasterKeyError> {
        match (env.var(MASTER_KEY_VAR), env.var(MASTER_KEY_FILE_VAR)) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(MasterKeyError::Both),
            (Some(hex), None) => Self::from_hex(hex.trim(), KeyOrigin::Var).map(Some),
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let text = read_key_file(&path)?;
                Self::from_hex(text.expose().trim(), KeyOrigin::File(path)).map(Some)
            }
        }
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(hex: &str, origin: KeyOrigin) -> Result<Self, MasterKeyError> {
        let len = hex.chars().count();
        if len != 64 {
            return Err(MasterKeyError::Length { origin, len });
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex, &mut key).map_err(|_| MasterKeyError::NotHex { origin })?;
        Ok(Self::from_bytes(key))
    }

    /// A master key from its 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(ID_TAG);
        h.update(key);
        let id = hex::encode(&h.finalize()[..8]);
        Self {
            key: Secret::new(key),
            id,
        }
    }

    /// A public fingerprint of the key (16 hex digits), stored beside each
    /// credential it seals; it reveals nothing usable about the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.key.expose()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

fn read_key_file(path: &Path) -> Result<Secret<String>, MasterKeyError> {
    use std::io::Read;
    let unreadable = |error| MasterKeyError::Unreadable {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = String::new();
    // Bounded, so a path to a device or a huge file cannot exhaust memory.
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    Ok(Secret::new(text))
}

// === impl KeyOrigin ===

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::Var => write!(f, "`{MASTER_KEY_VAR}`"),
            KeyOrigin::File(p) => write!(
                f,
                "the master key file {} (`{MASTER_KEY_FILE_VAR}`)",
                p.display()
            ),
        }
    }
}

// === impl Sealed ===

impl Sealed {
    /// A sealed credential from stored columns; the nonce must be 12 bytes.
    pub fn from_parts(
        nonce: &[u8],
        ciphertext: Vec<u8>,
        master_key_id: String,
    ) -> Result<Self, CredentialError> {
        let nonce =
            <[u8; 12]>::try_from(nonce).map_err(|_| CredentialError::NonceLength(nonce.len()))?;
        Ok(Self {
            nonce,
            ciphertext,
            master_key_id,
        })
    }
}

// === sealing ===

/// Seals `plaintext` for (tenant, provider) under `key`, with a fresh random
/// nonce.
pub fn seal(
    key: &MasterKey,
    tenant: &str,
    provider: &str,
    plaintext: &str,
) -> Result<Sealed, CredentialError> {
    if plaintext.len() > MAX_CREDENTIAL_BYTES {
        return Err(CredentialError::TooLong);
    }
    // A CSPRNG seeded from the operating system. With random 96-bit nonces
    // a key may seal about 2^32 values before a repeat becomes a risk; a
    // gateway's credentials are far fewer.
    let nonce: [u8; 12] = rand::random();
    let ciphertext = key
        .cipher()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &associated_data(tenant, provider),
            },
        )
        // Only a plaintext beyond 2^36 bytes fails, excluded above.
        .map_err(|_| CredentialError::TooLong)?;
    Ok(Sealed {
        nonce,
        ciphertext,
        master_key_id: key.id().to_owned(),
    })
}

/// Opens a credential sealed for (tenant, provider). Fails, without saying
/// anything of the content, when another master key sealed it, or when it
/// was sealed for another tenant or provider or altered since.
pub fn open(
    key: &MasterKey,
    tenant: &str,
    provider: &str,
    sealed: &Sealed,
) -> Result<Secret<String>, CredentialError> {
    if sealed.master_key_id != key.id() {
        return Err(CredentialError::OtherMasterKey {
            sealed_with: sealed.master_key_id.clone(),
            in_use: key.id().to_owned(),
        });
    }
    let plain = key
        .cipher()
        .decrypt(
            &Nonce::from(sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &associated_data(tenant, provider),
            },
        )
        .map_err(|_| CredentialError::DoesNotAuthenticate {
            tenant: tenant.to_owned(),
            provider: provider.to_owned(),
        })?;
    String::from_utf8(plain)
        .map(Secret::new)
        .map_err(|_| CredentialError::NotUtf8 {
            tenant: tenant.to_owned(),
            provider: provider.to_owned(),
        })
}

/// Opens with `old` and seals again with `new` (master key rotation).
pub fn reseal(
    old: &MasterKey,
    new: &MasterKey,
    tenant: &str,
    provider: &str,
    sealed: &Sealed,
) -> Result<Sealed, CredentialError> {
    let plain = open(old, tenant, provider, sealed)?;
    seal(new, tenant, provider, plain.expose())
}

/// The associated data binding a sealed value to its row: a versioned tag,
/// then tenant and provider, each prefixed with its length, so that no two
/// (tenant, provider) pairs encode alike.
fn associated_data(tenant: &str, provider: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_TAG.len() + 16 + tenant.len() + provider.len());
    aad.extend_from_slice(AAD_TAG);
    for part in [tenant, provider] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests;
