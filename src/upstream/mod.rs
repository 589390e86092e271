//! Reaching providers: pooled HTTP/1.1 connections (see [`pool`]), one pool
//! per provider, one TLS configuration per distinct trust set and lowest TLS
//! version (the platform's roots, plus a provider's `ca_file`; `min_tls`),
//! the provider's credential
//! injected as its `auth` says, and nothing of the client's headers but what
//! the request needs. cordon connects only to the configured `base_url`s.
//!
//! Requests are built from parts prepared at load (parsed URIs, header
//! values), so an attempt parses nothing and allocates little.

pub(crate) mod byok;
mod pool;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::{Api, Config, Env, MinTls};
use crate::policy::ProviderId;
use crate::secret::Secret;

use pool::Pool;
pub use pool::UpstreamBody;

/// A provider's response: head, and a body read as it arrives.
pub type UpstreamResponse = http::Response<UpstreamBody>;

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
    pool: Arc<Pool>,
    base_url: String,
    /// `{base_url}/chat/completions`, `/embeddings`, `/messages` in origin
    /// form (path only, as sent on the request line), parsed once.
    paths: [Uri; 3],
    /// The `Host` header: the base URL's host, and its port unless default.
    host: HeaderValue,
    /// Credential header, marked sensitive; `None` when the provider needs none.
    auth: Option<(HeaderName, HeaderValue)>,
    /// The header a credential goes in (`authorization`: as a bearer token).
    auth_header: String,
    headers: HeaderMap,
    pub timeout: Duration,
    /// Public model name → the provider's own name.
    pub models: HashMap<String, Arc<str>>,
    /// Set when the provider cannot be used (e.g. its credential is missing).
    pub unavailable: Option<String>,
}

/// Why one attempt at a provider failed. Each kind knows whether the prompt
/// may have reached the provider and whether another provider may be tried
/// (SPEC section 3: only connect errors, timeouts, 429 and 5xx fail over; a
/// provider that answered has the prompt, and its answer is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptError {
    /// Nothing was sent: no connection could be made, or it broke before the
    /// request was written.
    Connect,
    /// The request was written, then the connection broke before an answer
    /// began.
    SentThenBroken,
    /// No complete answer within the provider's timeout.
    Timeout,
    /// The provider answered with a retryable status (429, 5xx).
    Status(StatusCode),
    /// The answer was larger than cordon accepts.
    AnswerTooLarge,
    /// The answer began, then broke, or it is not an answer of the
    /// provider's protocol (e.g. an error object sent with 200).
    BadAnswer,
    /// The provider cannot be used at all (misconfigured); never contacted.
    Unavailable,
}

// === impl AttemptError ===

impl AttemptError {
    /// Whether the prompt may have reached the provider.
    pub fn may_have_reached(self) -> bool {
        !matches!(self, AttemptError::Connect | AttemptError::Unavailable)
    }

    /// Whether the next eligible provider may be tried.
    pub fn failover_allowed(self) -> bool {
        match self {
            AttemptError::Connect
            | AttemptError::SentThenBroken
            | AttemptError::Timeout
            | AttemptError::Status(_)
            | AttemptError::Unavailable => true,
            AttemptError::AnswerTooLarge | AttemptError::BadAnswer => false,
        }
    }

    /// Whether it counts against the provider's passive health.
    pub fn counts_against_health(self) -> bool {
        !matches!(self, AttemptError::Unavailable)
    }
}

// === impl Upstreams ===

impl Upstreams {
    /// Builds clients for every provider of `cfg`, in the table's order.
    /// Credentials are read now, from `env` or their file; a missing,
    /// empty or unreadable one makes that provider unavailable (reported in
    /// the returned warnings), not the gateway.
    pub fn build(cfg: &Config, env: &dyn Env) -> Result<(Self, Vec<String>), String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let by_id: HashMap<&str, &crate::config::Upstream> =
            cfg.upstreams.iter().map(|u| (u.id.as_str(), u)).collect();
        // One TLS configuration (one root store) per distinct (`ca_file`,
        // `min_tls`); one connection pool, and its lock, per provider.
        let mut trust: HashMap<(Option<PathBuf>, MinTls), rustls::ClientConfig> = HashMap::new();
        let mut warnings = Vec::new();
        let mut list = Vec::new();
        for p in cfg.table.providers() {
            let u = by_id
                .get(p.id.as_str())
                .ok_or_else(|| format!("provider `{}` has no upstream", p.id))?;
            let trust_key = (u.ca_file.clone(), u.min_tls);
            let tls = match trust.get(&trust_key) {
                Some(t) => t.clone(),
                None => {
                    let t = tls_config(u.ca_file.as_deref(), u.min_tls)
                        .map_err(|e| format!("provider `{}`: {e}", u.id))?;
                    trust.insert(trust_key, t.clone());
                    t
                }
            };

            let mut unavailable = None;
            let auth = match &u.auth {
                None => None,
                Some(auth) => {
                    let header = auth
                        .source
                        .read(env)
                        .map_err(|e| e.to_string())
                        .and_then(|key| {
                            credential_header(&auth.header, key.expose()).ok_or_else(|| {
                                format!(
                                    "the credential in {} is not a valid header value",
                                    auth.source
                                )
                            })
                        });
                    match header {
                        Ok(h) => Some(h),
                        Err(why) => {
                            warnings.push(format!("provider `{}` is unavailable: {why}", u.id));
                            unavailable = Some(why);
                            None
                        }
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
            let (target, host) = target_and_host(&u.base_url).ok_or_else(|| {
                format!(
                    "provider `{}`: base_url must be an http(s) URL with a host and no credentials in it",
                    u.id
                )
            })?;
            let path = |endpoint: Endpoint| {
                let full = format!("{}{}", u.base_url, endpoint.path());
                full.parse::<Uri>()
                    .ok()
                    .and_then(|uri| uri.path_and_query().cloned())
                    .and_then(|p| Uri::try_from(p.as_str()).ok())
                    .ok_or_else(|| format!("provider `{}`: base_url is not an http(s) URL", u.id))
            };
            let pool = Pool::new(https_connector(tls), target);
            list.push(Upstream {
                id: u.id.clone(),
                api: u.api,
                pool,
                base_url: u.base_url.clone(),
                paths: [
                    path(Endpoint::ChatCompletions)?,
                    path(Endpoint::Embeddings)?,
                    path(Endpoint::Messages)?,
                ],
                host,
                auth,
                auth_header: u
                    .auth
                    .as_ref()
                    .map_or_else(|| "authorization".to_owned(), |a| a.header.clone()),
                headers,
                timeout: u.timeout,
                models: u
                    .models
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::from(v.as_str())))
                    .collect(),
                unavailable,
            });
        }
        Ok((Self { list: list.into() }, warnings))
    }

    pub fn get(&self, index: usize) -> Option<&Upstream> {
        self.list.get(index)
    }

    /// Each provider that cannot be used (its credential is missing), with
    /// why, in the table's order.
    pub fn unavailable(&self) -> impl Iterator<Item = (&ProviderId, &str)> {
        self.list
            .iter()
            .filter_map(|u| Some((&u.id, u.unavailable.as_deref()?)))
    }
}

// === impl Upstream ===

impl Upstream {
    /// Sends one attempt and waits for the response headers; the caller
    /// bounds the wait (the provider's `timeout`).
    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        request_id: &str,
        connected: &std::sync::atomic::AtomicBool,
        own: Option<&Secret<String>>,
    ) -> Result<UpstreamResponse, AttemptError> {
        // The tenant's own credential (BYOK) replaces the operator's.
        let own = match own {
            None if self.unavailable.is_some() => return Err(AttemptError::Unavailable),
            None => None,
            Some(key) => Some(
                credential_header(&self.auth_header, key.expose())
                    .ok_or(AttemptError::Unavailable)?,
            ),
        };
        let path = match endpoint {
            Endpoint::ChatCompletions => &self.paths[0],
            Endpoint::Embeddings => &self.paths[1],
            Endpoint::Messages => &self.paths[2],
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = path.clone();
        let h = req.headers_mut();
        h.reserve(self.headers.len() + 5);
        // First, so a `Host` among the provider's configured headers wins.
        h.insert(http::header::HOST, self.host.clone());
        for (name, value) in &self.headers {
            h.insert(name.clone(), value.clone());
        }
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        // The id is ours or was checked as a header value when it arrived.
        if let Ok(id) = HeaderValue::from_str(request_id) {
            h.insert(HeaderName::from_static("x-request-id"), id);
        }
        if let Some((name, value)) = own.as_ref().or(self.auth.as_ref()) {
            h.insert(name.clone(), value.clone());
        }
        self.pool
            .send_marking(req, connected)
            .await
            .map_err(|e| match e {
                pool::SendError::Connect => AttemptError::Connect,
                pool::SendError::Broken => AttemptError::SentThenBroken,
            })
    }

    /// The provider's own name for a public model.
    pub fn upstream_model<'a>(&'a self, public: &'a Arc<str>) -> &'a Arc<str> {
        self.models.get(&**public).unwrap_or(public)
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

/// Where to connect for `base_url` (scheme and authority) and its `Host`
/// header; `None` unless it is an http(s) URL with a host and no userinfo.
fn target_and_host(base_url: &str) -> Option<(Uri, HeaderValue)> {
    let uri = base_url.parse::<Uri>().ok()?;
    let scheme = uri
        .scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(port) if port != default_port => HeaderValue::from_str(&format!("{host}:{port}")),
        _ => HeaderValue::from_str(host),
    }
    .ok()?;
    let target = Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .ok()?;
    Some((target, host))
}

/// TLS trusting the platform's roots, plus those of `ca_file`, offering
/// TLS 1.3 and, unless `min_tls` is 1.3, TLS 1.2.
fn tls_config(
    ca_file: Option<&std::path::Path>,
    min_tls: MinTls,
) -> Result<rustls::ClientConfig, String> {
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match ca_file {
        None => rustls_platform_verifier::Verifier::new(crypto.clone()),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", path.display()));
            }
            rustls_platform_verifier::Verifier::new_with_extra_roots(certs, crypto.clone())
        }
    }
    .map_err(|e| format!("cannot load the trusted roots: {e}"))?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_tls {
        MinTls::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTls::V1_3 => &[&rustls::version::TLS13],
    };
    Ok(rustls::ClientConfig::builder_with_provider(crypto)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Connects over TCP, or TLS with `tls` offering only HTTP/1.1 by ALPN.
fn https_connector(tls: rustls::ClientConfig) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
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

#[cfg(test)]
mod tests {
    use super::target_and_host;

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_default() {
        let host = |url: &str| {
            target_and_host(url)
                .map(|(target, host)| (target.to_string(), host.to_str().unwrap_or("?").to_owned()))
        };
        let both = |t: &str, h: &str| Some((t.to_owned(), h.to_owned()));
        assert_eq!(
            host("https://api.openai.com/v1"),
            both("https://api.openai.com/", "api.openai.com")
        );
        assert_eq!(
            host("https://api.openai.com:443/v1"),
            both("https://api.openai.com:443/", "api.openai.com")
        );
        assert_eq!(
            host("http://127.0.0.1:8080/v1"),
            both("http://127.0.0.1:8080/", "127.0.0.1:8080")
        );
        assert_eq!(
            host("http://example.eu:443/v1"),
            both("http://example.eu:443/", "example.eu:443")
        );
        assert_eq!(
            host("http://[::1]:9000/v1"),
            both("http://[::1]:9000/", "[::1]:9000")
        );
        // Not http(s), no host, or credentials in the URL: refused.
        assert_eq!(host("ftp://example.eu/v1"), None);
        assert_eq!(host("/v1"), None);
        assert_eq!(host("https://user:pw@example.eu/v1"), None);
    }
}
