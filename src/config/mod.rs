//! `cordon.toml` and `policies/*.toml` → a validated [`Config`] holding the
//! compiled policy [`Table`]. Every error names the file, the line and the key;
//! a load with any error is rejected whole. Values are never logged.

mod credential;
mod env;
mod error;
mod load;
mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use credential::{CredentialSource, MAX_CREDENTIAL_FILE_BYTES, NoCredential};
pub use env::{Env, EnvError, ProcessEnv, expand};
pub use error::{ConfigError, ConfigErrors};
pub use load::load;

use crate::policy::{ProviderId, Table};
use crate::secret::Secret;

/// Everything cordon runs on, validated.
#[derive(Debug)]
pub struct Config {
    /// The gateway file this was loaded from.
    pub file: PathBuf,
    /// SHA-256 of the gateway file's bytes as read (for the audit log).
    pub file_sha256: [u8; 32],
    pub server: Server,
    pub tls: Option<Tls>,
    /// HTTPS for the admin listener (`[admin_tls]`); plain HTTP without it.
    pub admin_tls: Option<AdminTls>,
    /// May hold a password, hence secret.
    pub store_url: Secret<String>,
    /// The usage spool file (`[store] spool`, default `cordon-usage.spool`
    /// beside the gateway file).
    pub usage_spool: PathBuf,
    pub limits_backend: LimitsBackend,
    /// How to reach each provider, in the gateway file's order.
    pub upstreams: Vec<Upstream>,
    /// The compiled policies.
    pub table: Arc<Table>,
    /// Every policy file read, with the SHA-256 of its bytes (for audit).
    pub policy_files: Vec<PolicyFile>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub policies_dir: PathBuf,
    pub max_body_bytes: u64,
    /// What a client and a provider may make cordon hold or wait for.
    pub limits: ServerLimits,
}

/// Bounds on everything a client or a provider controls (`[server]` keys;
/// defaults in `docs/configuration.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Request line and headers, in all (HTTP/1.1), or the header list
    /// (HTTP/2): over it, 431. Read when the listener starts.
    pub max_header_bytes: usize,
    /// The whole request body must arrive within this: else 408.
    pub body_read_timeout: Duration,
    /// Nesting of arrays and objects in a request body: over it, 400.
    pub max_json_depth: usize,
    /// One server-sent event from a provider: over it, the stream ends with
    /// an error event.
    pub max_event_bytes: usize,
    /// A provider's non-streamed answer: over it, 502 (no failover).
    pub max_answer_bytes: usize,
    /// A stream's whole duration: past it, the stream ends with an error
    /// event.
    pub max_stream: Duration,
    /// How long a shutdown waits for exchanges in flight before cutting
    /// them. Read when the listener starts.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            body_read_timeout: Duration::from_secs(30),
            max_json_depth: 64,
            max_event_bytes: 1 << 20,
            max_answer_bytes: 64 << 20,
            max_stream: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[admin_tls]`: the admin listener's certificate and key, and the CA whose
/// client certificates it then requires.
#[derive(Debug, Clone)]
pub struct AdminTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, a client without a certificate signed by this CA gets no
    /// answer.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsBackend {
    /// Counters in this process.
    Local,
}

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    OpenAi,
    Anthropic,
}

/// How cordon reaches one provider.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub id: ProviderId,
    pub api: Api,
    pub base_url: String,
    /// `None`: the provider is sent no credential.
    pub auth: Option<Auth>,
    /// Extra static headers; values may come from the environment.
    pub headers: Vec<(String, Secret<String>)>,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    /// The lowest TLS version offered (the provider's `min_tls`, else
    /// `[upstream] min_tls`, else 1.2).
    pub min_tls: MinTls,
    /// Public model name → the provider's own name for it.
    pub models: BTreeMap<String, String>,
}

/// The lowest TLS version cordon offers a provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MinTls {
    /// TLS 1.2 and 1.3 (rustls's safe defaults).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl MinTls {
    pub fn as_str(self) -> &'static str {
        match self {
            MinTls::V1_2 => "1.2",
            MinTls::V1_3 => "1.3",
        }
    }
}

impl std::str::FromStr for MinTls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.2" => Ok(MinTls::V1_2),
            "1.3" => Ok(MinTls::V1_3),
            other => Err(format!("`{other}` is not one of \"1.2\", \"1.3\"")),
        }
    }
}

impl std::fmt::Display for MinTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which header carries the provider credential, and where it is read from.
/// The credential itself is read when serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `authorization` means `Authorization: Bearer <key>`; any other header gets the key as is.
    pub header: String,
    pub source: CredentialSource,
}

/// A policy file that was read, for the audit log of reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub path: PathBuf,
    pub sha256: [u8; 32],
}

// === impl Config ===

impl Config {
    /// Each provider whose credential cannot be read now, with why, in the
    /// gateway file's order. Such a provider is never sent a request.
    pub fn missing_credentials(&self, env: &dyn Env) -> Vec<(String, NoCredential)> {
        self.upstreams
            .iter()
            .filter_map(|u| {
                let auth = u.auth.as_ref()?;
                let why = auth.source.read(env).err()?;
                Some((u.id.to_string(), why))
            })
            .collect()
    }

    /// Every provider credential file, for the reload watcher.
    pub fn credential_files(&self) -> Vec<PathBuf> {
        self.upstreams
            .iter()
            .filter_map(|u| u.auth.as_ref()?.source.file().map(PathBuf::from))
            .collect()
    }
}

pub const DEFAULT_MAX_BODY_BYTES: u64 = 10_485_760;
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_PRIORITY: i64 = 100;

#[cfg(test)]
mod tests;
