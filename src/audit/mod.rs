//! The audit log's hash chain: what an entry holds, how it is hashed, and how
//! a whole log is verified. Pure: the store appends and reads entries
//! (`Store::append_audit`), `cordon audit verify` feeds them to [`Verifier`].
//!
//! Entry `n` (numbered 1, 2, 3, … with no gaps) holds the hash of entry
//! `n - 1` (64 zeros for entry 1) and its own hash: SHA-256 over a version
//! tag, the previous hash, its number and every field, each length-prefixed
//! so no two different entries encode alike ([`entry_hash`]). Verification
//! finds the first entry that was edited, that is missing, or that does not
//! link to the one before it (an insertion, a reordering, or a deletion
//! followed by renumbering).
//!
//! Limit: the chain cannot show that its newest entries were removed (or
//! rewritten with fresh hashes), since what is left is itself a valid chain.
//! `cordon audit verify` prints the last hash so it can be recorded elsewhere
//! (a ticket, a log shipper, a second system) and compared later.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The version tag that starts every hashed encoding; a new encoding gets a new tag.
const HASH_TAG: &[u8] = b"cordon-audit-v1\0";

/// The actor of an action taken through the command line.
pub const ACTOR_CLI: &str = "cli";
/// The actor of a reload started by a changed configuration or credential file.
pub const ACTOR_FILE_WATCH: &str = "file-watch";
/// The actor of a reload started by SIGHUP.
pub const ACTOR_SIGHUP: &str = "sighup";

/// A SHA-256 in the chain. Not a secret: printed in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditHash(pub [u8; 32]);

/// The previous hash of entry 1.
pub const GENESIS: AuditHash = AuditHash([0; 32]);

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    /// Attempted and failed (an unknown id, a store error, …).
    Failure,
    /// Refused: the actor may not do this.
    Denied,
}

/// An entry to append; the store numbers, links and hashes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub time_ms: i64,
    /// [`ACTOR_CLI`] or [`token_actor`]`(id)`.
    pub actor: String,
    /// What was done, e.g. `key.create`, `admin_token.revoke`, `reload`.
    pub action: String,
    pub tenant: Option<String>,
    /// The key, token or credential acted on.
    pub target: Option<String>,
    pub outcome: Outcome,
    /// Extra facts, never a secret. Stored as the JSON text of the object.
    pub detail: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A stored entry, exactly as it is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub time_ms: i64,
    pub actor: String,
    pub action: String,
    pub tenant: Option<String>,
    pub target: Option<String>,
    pub outcome: Outcome,
    /// The JSON object's text, as stored (and hashed).
    pub detail: Option<String>,
    pub prev_hash: AuditHash,
    pub hash: AuditHash,
}

/// An entry's hashed fields other than its number and previous hash.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    pub time_ms: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub tenant: Option<&'a str>,
    pub target: Option<&'a str>,
    pub outcome: Outcome,
    pub detail: Option<&'a str>,
}

/// A chain that verified: how many entries, and the newest one's number and
/// hash (to anchor elsewhere). An empty log has `last_seq` 0 and hash [`GENESIS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedChain {
    pub count: u64,
    pub last_seq: i64,
    pub last_hash: AuditHash,
}

/// The first place a chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {kind}")]
pub struct ChainBreak {
    /// The first broken entry: for [`BreakKind::Missing`], the first number
    /// that is absent.
    pub seq: i64,
    pub kind: BreakKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// Its hash does not match its content: a field, its number or its
    /// previous hash was changed.
    Edited,
    /// No entry has this number though a later one exists: deleted.
    Missing,
    /// Its previous hash is not the hash of the entry before it: an entry was
    /// inserted, entries were reordered, or one was deleted and the later ones
    /// renumbered.
    Relinked,
}

/// Checks entries one at a time, in order, so a log of any length is
/// verified without holding it all.
#[derive(Debug, Clone)]
pub struct Verifier {
    next_seq: i64,
    last_hash: AuditHash,
    count: u64,
}

/// The actor of an action taken with admin token `id`.
pub fn token_actor(id: &str) -> String {
    format!("token:{id}")
}

/// SHA-256 over the version tag, `prev_hash`, `seq` and every field, each
/// text field length-prefixed (and `None` told apart from `Some("")`).
///
/// Encoding (version 1): `cordon-audit-v1\0`, the 32 bytes of `prev_hash`,
/// `seq` and `time_ms` as 8-byte big-endian integers, then actor, action,
/// tenant, target, outcome (its `as_str`) and detail, each as `0x00` when
/// absent or `0x01`, its UTF-8 length as an 8-byte big-endian integer, and
/// its bytes.
pub fn entry_hash(prev_hash: &AuditHash, seq: i64, f: &EntryFields<'_>) -> AuditHash {
    fn text(h: &mut Sha256, s: Option<&str>) {
        match s {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let mut h = Sha256::new();
    h.update(HASH_TAG);
    h.update(prev_hash.0);
    h.update(seq.to_be_bytes());
    h.update(f.time_ms.to_be_bytes());
    text(&mut h, Some(f.actor));
    text(&mut h, Some(f.action));
    text(&mut h, f.tenant);
    text(&mut h, f.target);
    text(&mut h, Some(f.outcome.as_str()));
    text(&mut h, f.detail);
    AuditHash(h.finalize().into())
}

/// Verifies a whole log, given in ascending `seq` order.
pub fn verify(entries: impl IntoIterator<Item = AuditEntry>) -> Result<VerifiedChain, ChainBreak> {
    let mut v = Verifier::new();
    for e in entries {
        v.push(&e)?;
    }
    Ok(v.finish())
}

// === impl AuditHash ===

impl AuditHash {
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditHash({})", self.to_hex())
    }
}

// === impl Outcome ===

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

impl FromStr for Outcome {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        [Outcome::Success, Outcome::Failure, Outcome::Denied]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl NewAuditEntry ===

impl NewAuditEntry {
    /// An entry with no tenant, target or detail (add them with the builders).
    pub fn new(time_ms: i64, actor: &str, action: &str, outcome: Outcome) -> Self {
        Self {
            time_ms,
            actor: actor.to_owned(),
            action: action.to_owned(),
            tenant: None,
            target: None,
            outcome,
            detail: None,
        }
    }

    pub fn tenant(mut self, tenant: Option<&str>) -> Self {
        self.tenant = tenant.map(str::to_owned);
        self
    }

    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(target.to_owned());
        self
    }

    /// Adds `key: value` to the detail object. Never pass a secret.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.detail
            .get_or_insert_with(serde_json::Map::new)
            .insert(key.to_owned(), value.into());
        self
    }

    /// This entry as entry `seq`, after the entry whose hash is `prev_hash`.
    pub fn link(&self, seq: i64, prev_hash: AuditHash) -> AuditEntry {
        let detail = self
            .detail
            .as_ref()
            .map(|d| serde_json::Value::Object(d.clone()).to_string());
        let mut entry = AuditEntry {
            seq,
            time_ms: self.time_ms,
            actor: self.actor.clone(),
            action: self.action.clone(),
            tenant: self.tenant.clone(),
            target: self.target.clone(),
            outcome: self.outcome,
            detail,
            prev_hash,
            hash: GENESIS,
        };
        entry.hash = entry.content_hash();
        entry
    }
}

// === impl AuditEntry ===

impl AuditEntry {
    pub fn fields(&self) -> EntryFields<'_> {
        EntryFields {
            time_ms: self.time_ms,
            actor: &self.actor,
            action: &self.action,
            tenant: self.tenant.as_deref(),
            target: self.target.as_deref(),
            outcome: self.outcome,
            detail: self.detail.as_deref(),
        }
    }

    /// The hash this entry's content calls for (equal to `hash` unless edited).
    pub fn content_hash(&self) -> AuditHash {
        entry_hash(&self.prev_hash, self.seq, &self.fields())
    }
}

// === impl BreakKind ===

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakKind::Edited => "edited (its hash does not match its content)",
            BreakKind::Missing => "missing (deleted: a later entry exists)",
            BreakKind::Relinked => {
                "relinked (its previous hash is not the previous entry's: an entry was \
                 inserted, reordered, or deleted and the rest renumbered)"
            }
        })
    }
}

// === impl Verifier ===

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            last_hash: GENESIS,
            count: 0,
        }
    }

    /// Checks the next entry. The number is checked first (a gap names the
    /// first missing entry even when later ones were edited too), then the
    /// entry's own hash, then its link to the previous entry.
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), ChainBreak> {
        let broken = |seq, kind| Err(ChainBreak { seq, kind });
        if e.seq > self.next_seq {
            return broken(self.next_seq, BreakKind::Missing);
        }
        if e.seq < self.next_seq {
            // A repeated or out-of-order number.
            return broken(e.seq, BreakKind::Relinked);
        }
        if e.content_hash() != e.hash {
            return broken(e.seq, BreakKind::Edited);
        }
        if e.prev_hash != self.last_hash {
            return broken(e.seq, BreakKind::Relinked);
        }
        self.next_seq += 1;
        self.last_hash = e.hash;
        self.count += 1;
        Ok(())
    }

    pub fn finish(self) -> VerifiedChain {
        VerifiedChain {
            count: self.count,
            last_seq: self.next_seq - 1,
            last_hash: self.last_hash,
        }
    }
}

#[cfg(test)]
mod tests;
