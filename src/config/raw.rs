//! The files as written: serde types that mirror the TOML, unknown keys
//! rejected. Values that need checking beyond their TOML type keep their span
//! so errors can name the line. Nothing outside `config` sees these types.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub server: Server,
    pub tls: Option<Tls>,
    pub admin_tls: Option<AdminTls>,
    pub store: Option<Store>,
    pub limits: Option<LimitsBackend>,
    /// Defaults for every provider connection.
    pub upstream: Option<UpstreamDefaults>,
    #[serde(default)]
    pub regions: BTreeMap<S, Vec<S>>,
    #[serde(default)]
    pub providers: Vec<Provider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: S,
    pub admin_listen: S,
    pub policies_dir: Option<S>,
    pub max_body_bytes: Option<Spanned<u64>>,
    pub max_header_bytes: Option<Spanned<u64>>,
    pub body_read_timeout_ms: Option<Spanned<u64>>,
    pub max_json_depth: Option<Spanned<u64>>,
    pub max_event_bytes: Option<Spanned<u64>>,
    pub max_answer_bytes: Option<Spanned<u64>>,
    pub max_stream_ms: Option<Spanned<u64>>,
    pub drain_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: S,
    pub key: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    pub cert: S,
    pub key: S,
    /// CA (PEM) whose client certificates the admin listener requires.
    pub client_ca: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub url: S,
    /// Where usage records wait while the store is unavailable.
    pub spool: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsBackend {
    pub backend: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDefaults {
    /// Lowest TLS version offered to providers: "1.2" or "1.3".
    pub min_tls: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: S,
    pub api: S,
    pub base_url: S,
    pub auth: Option<Spanned<Auth>>,
    #[serde(default)]
    pub headers: BTreeMap<S, S>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub priority: Option<i64>,
    /// Extra CA certificate (PEM) trusted for this provider only.
    pub ca_file: Option<S>,
    /// Lowest TLS version offered to this provider ("1.2" or "1.3");
    /// overrides `[upstream] min_tls`.
    pub min_tls: Option<S>,
    /// Opt-in for a plain `http://` base URL to a host that is not loopback.
    pub allow_http: Option<bool>,
    pub models: Spanned<BTreeMap<S, S>>,
    pub data: Spanned<Terms>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub header: Option<S>,
    /// Exactly one of `env` and `file` (checked in `load`).
    pub env: Option<S>,
    pub file: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    pub entity: Option<String>,
    pub jurisdiction: Option<S>,
    pub processing: Option<Vec<S>>,
    pub dpa: Option<S>,
    pub trains_on_data: Option<bool>,
    pub retention_days: Option<u32>,
    pub certifications: Option<Vec<S>>,
    pub transfer: Option<S>,
    pub purpose: Option<String>,
    pub evidence: Option<String>,
    pub effective_from: Option<Spanned<Datetime>>,
    pub review_by: Option<Spanned<Datetime>>,
    #[serde(default)]
    pub expires: BTreeMap<S, Spanned<Datetime>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub tenant: S,
    pub description: Option<String>,
    pub data: Option<Rules>,
    pub models: Option<Models>,
    pub routing: Option<Routing>,
    pub limits: Option<Limits>,
    #[serde(default)]
    pub projects: BTreeMap<S, Project>,
}

/// `_floor.toml`: the same `[data]` and `[models]` tables, nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    pub data: Option<Rules>,
    pub models: Option<Models>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub data: Option<Rules>,
    pub models: Option<Models>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub processing_in: Option<Vec<S>>,
    pub jurisdiction_in: Option<Vec<S>>,
    pub dpa: Option<Vec<S>>,
    pub no_training: Option<bool>,
    pub max_retention_days: Option<u32>,
    pub certifications: Option<Vec<S>>,
    pub transfer: Option<Vec<S>>,
    pub exclude_providers: Option<Vec<S>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    pub allow: Vec<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default)]
    pub order: Vec<S>,
    pub failover: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub requests_per_minute: Option<Spanned<u32>>,
    pub tokens_per_minute: Option<Spanned<u32>>,
}
