//! Reaching providers: one pooled HTTPS client per provider (its own timeouts
//! and, optionally, its own extra CA), the provider's credential injected as
//! its `auth` says, and nothing of the client's headers but what the request
//! needs. cordon connects only to the configured `base_url`s.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{Api, Config, Env};
use crate::policy::ProviderId;
use crate::secret::Secret;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Connect timeout, separate from the provider's response timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which client endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    /// Anthropic Messages (`{base_url}/messages`).
    Messages,
}

impl Endpoint {
    /// The path under a provider's `base_url`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
        }
    }
}

/// Every provider's client, indexed like `Table::providers()`.
#[derive(Debug)]
pub struct Upstreams {
    list: Box<[Upstream]>,
}

/// One provider.
pub struct Upstream {
    pub id: ProviderId,
    pub api: Api,
    client: reqwest::Client,
    base_url: String,
    /// `{base_url}/chat/completions`, `/embeddings`, `/messages`, parsed once.
    urls: [reqwest::Url; 3],
    /// Credential header, marked sensitive; `None` when the provider needs none.
    auth: Option<(HeaderName, HeaderValue)>,
    headers: HeaderMap,
    pub timeout: Duration,
    /// Public model name → the provider's own name.
    pub models: HashMap<String, String>,
    /// Set when the provider cannot be used (e.g. its credential is missing).
    pub unavailable: Option<String>,
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// Could not connect or the connection broke before a response.
    Connect,
    /// No response headers within the provider's timeout.
    Timeout,
    /// The provider cannot be used at all (misconfigured).
    Unavailable,
}

// === impl Upstreams ===

impl Upstreams {
    /// Builds clients for every provider of `cfg`, in the table's order.
    /// Credentials are read from `env` now; a missing one makes that provider
    /// unavailable (reported in the returned warnings), not the gateway.
    pub fn build(cfg: &Config, env: &dyn Env) -> Result<(Self, Vec<String>), String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let by_id: HashMap<&str, &crate::config::Upstream> =
            cfg.upstreams.iter().map(|u| (u.id.as_str(), u)).collect();
        let mut warnings = Vec::new();
        let mut list = Vec::new();
        for p in cfg.table.providers() {
            let u = by_id
                .get(p.id.as_str())
                .ok_or_else(|| format!("provider `{}` has no upstream", p.id))?;
            let mut builder = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(u.timeout)
                .pool_idle_timeout(POOL_IDLE)
                .tcp_nodelay(true)
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none());
            if let Some(ca) = &u.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    format!(
                        "provider `{}`: cannot read ca_file {}: {e}",
                        u.id,
                        ca.display()
                    )
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("provider `{}`: ca_file {}: {e}", u.id, ca.display()))?;
                builder = builder.tls_certs_merge(certs);
            }
            let client = builder
                .build()
                .map_err(|e| format!("provider `{}`: cannot build HTTP client: {e}", u.id))?;

            let mut unavailable = None;
            let auth = if u.auth.env.is_empty() {
                None
            } else {
                match env.var(&u.auth.env) {
                    Some(key) => credential_header(&u.auth.header, &key)
                        .map(Some)
                        .ok_or_else(|| {
                            format!(
                                "provider `{}`: credential in `{}` is not a valid header value",
                                u.id, u.auth.env
                            )
                        })?,
                    None => {
                        let why = format!("credential variable `{}` is not set", u.auth.env);
                        warnings.push(format!("provider `{}` is unavailable: {why}", u.id));
                        unavailable = Some(why);
                        None
                    }
                }
            };
            let mut headers = HeaderMap::new();
            for (name, value) in &u.headers {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("provider `{}`: bad header name `{name}`", u.id))?;
                let mut value = HeaderValue::from_str(value.expose())
                    .map_err(|_| format!("provider `{}`: bad value for header `{name}`", u.id))?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            let url = |endpoint: Endpoint| {
                reqwest::Url::parse(&format!("{}{}", u.base_url, endpoint.path()))
                    .map_err(|e| format!("provider `{}`: base_url: {e}", u.id))
            };
            list.push(Upstream {
                id: u.id.clone(),
                api: u.api,
                client,
                base_url: u.base_url.clone(),
                urls: [
                    url(Endpoint::ChatCompletions)?,
                    url(Endpoint::Embeddings)?,
                    url(Endpoint::Messages)?,
                ],
                auth,
                headers,
                timeout: u.timeout,
                models: u
                    .models
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                unavailable,
            });
        }
        Ok((Self { list: list.into() }, warnings))
    }

    pub fn get(&self, index: usize) -> Option<&Upstream> {
        self.list.get(index)
    }
}

// === impl Upstream ===

impl Upstream {
    /// Sends one attempt and waits for the response headers, at most `timeout`.
    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        request_id: &str,
    ) -> Result<reqwest::Response, AttemptError> {
        if self.unavailable.is_some() {
            return Err(AttemptError::Unavailable);
        }
        let url = match endpoint {
            Endpoint::ChatCompletions => &self.urls[0],
            Endpoint::Embeddings => &self.urls[1],
            Endpoint::Messages => &self.urls[2],
        };
        let mut req = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .header("x-request-id", request_id)
            .body(body);
        if let Some((name, value)) = &self.auth {
            req = req.header(name.clone(), value.clone());
        }
        match tokio::time::timeout(self.timeout, req.send()).await {
            Err(_) => Err(AttemptError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(AttemptError::Timeout),
            Ok(Err(_)) => Err(AttemptError::Connect),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The provider's own name for a public model.
    pub fn upstream_model<'a>(&'a self, public: &'a str) -> &'a str {
        self.models.get(public).map_or(public, String::as_str)
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("id", &self.id)
            .field("api", &self.api)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `Authorization: Bearer <key>` for the default header, the key as is otherwise.
fn credential_header(header: &str, key: &str) -> Option<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(header.as_bytes()).ok()?;
    let value = if name == http::header::AUTHORIZATION {
        format!("Bearer {key}")
    } else {
        key.to_owned()
    };
    let secret = Secret::new(value);
    let mut value = HeaderValue::from_str(secret.expose()).ok()?;
    value.set_sensitive(true);
    Some((name, value))
}
