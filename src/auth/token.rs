//! Admin tokens: `cdnadm_<id>_<secret>`, for the admin API. The same shape
//! as client keys under another prefix (id: 8 lower-case letters and digits;
//! secret: 40 base62 characters), generated and hashed by the same code in
//! [`super::key`]: only the SHA-256 of the secret is stored, and the raw
//! token is shown once, at creation.
//!
//! Each token carries a [`Role`]; `tenant-admin` and `viewer` tokens are bound
//! to one tenant, `platform-admin` and `auditor` tokens to none.

use std::fmt;
use std::str::FromStr;

use super::key::{self, KeyHash, KeyId, Malformed};
use crate::secret::Secret;

/// What every admin token starts with. A client key (`cdn_…`) never parses
/// as an admin token, nor a token as a key.
pub const PREFIX: &str = "cdnadm_";

/// An admin token's public id (the same shape as a key id).
pub type TokenId = KeyId;
/// SHA-256 of an admin token's secret part.
pub type TokenHash = KeyHash;

/// What an admin token may do (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, every tenant.
    PlatformAdmin,
    /// Its tenant: keys, BYOK credentials, usage, explain.
    TenantAdmin,
    /// Read only, its tenant.
    Viewer,
    /// Read-only audit log and usage, every tenant.
    Auditor,
}

/// A newly generated admin token: the raw text exists only here, to be shown once.
#[derive(Debug)]
pub struct NewToken {
    pub id: TokenId,
    pub hash: TokenHash,
    pub raw: Secret<String>,
}

/// An admin token as presented in `Authorization: Bearer`.
#[derive(Debug, Clone, Copy)]
pub struct PresentedToken;

/// Why a presented admin token is malformed. Never includes the token's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("admin token must be of the form `cdnadm_<id>_<secret>`")]
    Shape,
    #[error("admin token id must be 8 lower-case letters or digits")]
    Id,
    #[error("admin token secret must be at least 32 base62 characters")]
    Secret,
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role: expected platform-admin, tenant-admin, viewer or auditor")]
pub struct UnknownRole(pub String);

// === impl Role ===

impl Role {
    pub const ALL: [Role; 4] = [
        Role::PlatformAdmin,
        Role::TenantAdmin,
        Role::Viewer,
        Role::Auditor,
    ];

    /// The name used on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }

    /// Whether a token of this role is bound to exactly one tenant (and
    /// tokens of the other roles to none).
    pub fn is_tenant_scoped(self) -> bool {
        matches!(self, Role::TenantAdmin | Role::Viewer)
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl NewToken ===

impl NewToken {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let (id, hash, raw) = key::generate_credential(PREFIX);
        Self { id, hash, raw }
    }
}

// === impl PresentedToken ===

impl PresentedToken {
    /// Checks `cdnadm_<id>_<secret>` and hashes the secret: the id (borrowed
    /// from `raw`) to look the token up by, and the hash to compare, in
    /// constant time, with the stored one.
    pub fn split(raw: &str) -> Result<(&str, TokenHash), TokenFormatError> {
        key::split_credential(raw, PREFIX).map_err(|m| match m {
            Malformed::Shape => TokenFormatError::Shape,
            Malformed::Id => TokenFormatError::Id,
            Malformed::Secret => TokenFormatError::Secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::key::{ID_LEN, NewKey, PresentedKey, SECRET_LEN};

    #[test]
    fn generated_tokens_split_back_to_their_id_and_hash() {
        let t = NewToken::generate();
        let raw = t.raw.expose();
        assert!(raw.starts_with("cdnadm_"));
        assert_eq!(raw.len(), PREFIX.len() + ID_LEN + 1 + SECRET_LEN);
        let (id, hash) = PresentedToken::split(raw).unwrap();
        assert_eq!(id, t.id.as_str());
        assert!(hash.ct_eq(&t.hash));
        assert_ne!(NewToken::generate().raw.expose(), raw, "tokens are random");
        // Only the secret is hashed.
        let secret = raw.rsplit('_').next().unwrap();
        assert!(KeyHash::of(secret).ct_eq(&t.hash));
    }

    #[test]
    fn keys_and_tokens_never_pass_for_one_another() {
        let key = NewKey::generate();
        let token = NewToken::generate();
        assert!(PresentedToken::split(key.raw.expose()).is_err());
        assert!(PresentedKey::split(token.raw.expose()).is_err());
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_precise_reason() {
        let secret = "a".repeat(32);
        assert_eq!(
            PresentedToken::split("Bearer x").map(|_| ()),
            Err(TokenFormatError::Shape)
        );
        assert_eq!(
            PresentedToken::split("cdnadm_abcdefgh").map(|_| ()),
            Err(TokenFormatError::Shape)
        );
        assert_eq!(
            PresentedToken::split(&format!("cdnadm_ABCDEFGH_{secret}")).map(|_| ()),
            Err(TokenFormatError::Id)
        );
        assert_eq!(
            PresentedToken::split("cdnadm_abcdefgh_short").map(|_| ()),
            Err(TokenFormatError::Secret)
        );
        let good = format!("cdnadm_abcdefgh_{secret}");
        let (id, _) = PresentedToken::split(&good).unwrap();
        assert_eq!(id, "abcdefgh");
        for e in [
            TokenFormatError::Shape,
            TokenFormatError::Id,
            TokenFormatError::Secret,
        ] {
            assert!(e.to_string().starts_with("admin token"), "{e}");
        }
    }

    #[test]
    fn roles_round_trip_and_know_their_scope() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        let scoped: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.is_tenant_scoped())
            .collect();
        assert_eq!(scoped, [Role::TenantAdmin, Role::Viewer]);
        let err = "admin".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("platform-admin"), "{err}");
    }
}
