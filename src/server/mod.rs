//! The listeners: the client API on `listen` (HTTP/1.1 and HTTP/2, HTTPS when
//! `[tls]` is set) and the admin API on `admin_listen` (HTTPS when
//! `[admin_tls]` is set, requiring a client certificate with `client_ca`). Owns the shared
//! [`State`] and the background tasks (key refresh, usage writer), and shuts
//! down gracefully: stop accepting, finish in-flight exchanges, flush usage.
//!
//! The key refresh re-reads, every `auth::REFRESH_MS`, the keys changed since
//! its previous run (with an overlap: `store::next_key_sync_since`) and
//! replaces their cache entries, those a request's lookup added included, so
//! a revocation reaches every replica within about a second.

pub(crate) mod admin;
mod bridge;
mod exchange;
pub mod reload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::{KeyCache, KeyState, LOOKUPS_PER_SECOND, REFRESH_MS};
use crate::clock;
use crate::config::{Config, Env, ServerLimits};
use crate::health::Health;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::store::{self, Store};
use crate::stream::body::BoxError;
use crate::upstream::Upstreams;
use crate::usage::{self, UsageSink};

/// The response body type of both listeners.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long a client may take to finish its TLS handshake or request headers.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// Everything a request needs, shared by all connections.
pub struct State {
    pub snapshot: ArcSwap<Snapshot>,
    pub keys: KeyCache,
    pub metrics: Metrics,
    pub usage: UsageSink,
    pub store: Store,
    /// Tenants' own provider credentials (BYOK).
    pub byok: crate::upstream::byok::Byok,
    /// The gateway file, for `POST /admin/reload`.
    pub config_path: PathBuf,
    /// Held by a reload from reading the files until its snapshot is in
    /// force, so that of two reloads (API, SIGHUP, file watch) the one that
    /// read the files last is the one left in force. It holds the
    /// fingerprint of the files the last reload read (see `reload::run`).
    pub reloading: std::sync::Mutex<Option<[u8; 32]>>,
    /// Set when the shutdown drain deadline has passed and the exchanges
    /// still running are being cut: each then records itself, in place, as
    /// `cut_by_shutdown`.
    pub cutting: AtomicBool,
}

/// One loaded configuration with what was built from it.
pub struct Snapshot {
    pub config: Config,
    /// Indexed like `config.table.providers()`.
    pub upstreams: Upstreams,
    pub health: Health,
    pub limits: Limits,
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds what serving `config` needs. With `previous` (a reload), rate
    /// limits and passive health carry over: each tenant limit whose value is
    /// unchanged keeps its window, and each provider still configured (same
    /// id, wherever it now sits in the list) keeps its health.
    pub fn build(
        config: Config,
        env: &dyn Env,
        previous: Option<&Snapshot>,
    ) -> Result<(Self, Vec<String>), String> {
        let (upstreams, warnings) = Upstreams::build(&config, env)?;
        let providers = config.table.providers();
        let (limits, health) = match previous {
            None => (
                Limits::from_table(&config.table),
                Health::new(providers.len()),
            ),
            Some(prev) => {
                let old: HashMap<&str, usize> = prev
                    .config
                    .table
                    .providers()
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.id.as_str(), i))
                    .collect();
                let moved: Vec<Option<usize>> = providers
                    .iter()
                    .map(|p| old.get(p.id.as_str()).copied())
                    .collect();
                (
                    prev.limits.carry_over(&config.table),
                    prev.health.carry_over(&moved),
                )
            }
        };
        Ok((
            Self {
                config,
                upstreams,
                health,
                limits,
            },
            warnings,
        ))
    }
}

// === impl Running ===

impl Running {
    /// Starts serving `config`: connects the store, binds both listeners.
    pub async fn start(config: Config, env: &dyn Env) -> Result<Running, String> {
        let base_dir: PathBuf = config
            .file
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let url = store::resolve_url(config.store_url.expose(), &base_dir)
            .map_err(|e| format!("store: {e}"))?;
        let store = Store::connect(&url)
            .await
            .map_err(|e| format!("store: {e}"))?;

        let config_path = config.file.clone();
        let listen = config.server.listen;
        let admin_listen = config.server.admin_listen;
        let tls = match &config.tls {
            Some(t) => Some(tls_acceptor("tls", &t.cert, &t.key, None)?),
            None => None,
        };
        let admin_tls = match &config.admin_tls {
            Some(t) => Some(tls_acceptor(
                "admin_tls",
                &t.cert,
                &t.key,
                t.client_ca.as_deref(),
            )?),
            None => None,
        };
        let (snapshot, warnings) = Snapshot::build(config, env, None)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let metrics = Metrics::new();
        set_attestation_gauges(&metrics, &snapshot.config);
        let spool = usage::Spool::open(&snapshot.config.usage_spool)
            .map_err(|e| format!("usage spool {}: {e}", snapshot.config.usage_spool.display()))?;
        if spool.pending() > 0 {
            tracing::info!(
                records = spool.pending(),
                "replaying usage records spooled by an earlier run"
            );
        }
        let master = crate::credentials::MasterKey::from_env(env)
            .map_err(|e| format!("BYOK master key: {e}"))?;
        let byok = crate::upstream::byok::Byok::new(master);
        let (usage, writer) = usage::channel(store.clone(), metrics.clone(), spool);
        let state = Arc::new(State {
            snapshot: ArcSwap::from_pointee(snapshot),
            keys: KeyCache::with_lookups(LOOKUPS_PER_SECOND, metrics.key_lookups.clone()),
            metrics,
            usage,
            store: store.clone(),
            byok,
            config_path: config_path.clone(),
            reloading: std::sync::Mutex::new(None),
            cutting: AtomicBool::new(false),
        });

        // Load every key and BYOK credential before accepting requests.
        refresh_keys(&state, None)
            .await
            .map_err(|e| format!("store: {e}"))?;
        refresh_credentials(&state, None)
            .await
            .map_err(|e| format!("store: {e}"))?;

        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let admin = TcpListener::bind(admin_listen)
            .await
            .map_err(|e| format!("cannot listen on {admin_listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;

        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(writer.run());
        tasks.spawn(key_refresher(state.clone(), rx.clone()));
        tasks.spawn(credential_refresher(state.clone(), rx.clone()));
        tasks.spawn(reload::run(state.clone(), config_path, rx.clone()));
        let limits = state.snapshot.load().config.server.limits;
        let s = state.clone();
        let cut = state.clone();
        tasks.spawn(accept_loop(
            listener,
            tls,
            limits,
            rx.clone(),
            move |req| exchange::handle(s.clone(), req),
            move || cut.cutting.store(true, Ordering::Relaxed),
        ));
        let s = state.clone();
        tasks.spawn(accept_loop(
            admin,
            admin_tls,
            limits,
            rx,
            move |req| admin::handle(s.clone(), req),
            || {},
        ));
        // The state's usage sink must close when serving stops, so the writer
        // can drain and exit: drop our handle now; connections hold theirs.
        drop(state);
        Ok(Running {
            addr,
            admin_addr,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting, waits for in-flight exchanges (at most 30 s), then for
    /// the usage writer to store what is queued.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Serves connections until `shutdown` flips, then drains them: each gets
/// until the drain deadline to finish; then `on_cut` runs and those still
/// open are dropped (their exchanges record themselves as cut).
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ServerLimits,
    mut shutdown: watch::Receiver<bool>,
    handler: F,
    on_cut: impl FnOnce(),
) where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its headers (or its TLS handshake) must not
    // hold a connection forever.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE)
        // Request line and headers beyond this: 431 (hyper answers it).
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    // Every connection's task, so the ones still open at the drain deadline
    // can be cut while the runtime still runs (a task merely left behind
    // would be dropped with the runtime, where nothing can record it).
    let mut conns = JoinSet::new();
    loop {
        let (stream, _peer) = tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        let service = service_fn(move |req| {
            let fut = h(req);
            async move { Ok::<_, std::convert::Infallible>(fut.await) }
        });
        match &tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                conns.spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                conns.spawn(async move {
                    let Ok(Ok(tls_stream)) =
                        tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        on_cut();
        tracing::warn!(
            connections = conns.len(),
            "drain deadline passed; cutting the connections still open"
        );
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Keeps the key cache in step with the store, and writes back last-use times.
async fn key_refresher(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut last_started = Some(clock::now_ms());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(REFRESH_MS)) => {}
            _ = shutdown.changed() => return,
        }
        let started = clock::now_ms();
        match refresh_keys(&state, last_started).await {
            Ok(()) => last_started = Some(started),
            Err(e) => {
                tracing::warn!(error = %e, "key refresh failed; keeping the keys already loaded")
            }
        }
        let touches = state.keys.take_touches();
        if !touches.is_empty()
            && let Err(e) = state.store.touch_keys(&touches).await
        {
            tracing::debug!(error = %e, "could not record key last-use times");
        }
    }
}

async fn refresh_keys(state: &State, previous_start: Option<i64>) -> Result<(), store::StoreError> {
    let rows = state
        .store
        .keys_updated_since(store::next_key_sync_since(previous_start))
        .await?;
    state.keys.apply(rows.into_iter().map(key_state).collect());
    Ok(())
}

/// Keeps the BYOK credentials in step with the store.
async fn credential_refresher(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut last_started = Some(clock::now_ms());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(crate::upstream::byok::REFRESH_MS)) => {}
            _ = shutdown.changed() => return,
        }
        let started = clock::now_ms();
        match refresh_credentials(&state, last_started).await {
            Ok(()) => last_started = Some(started),
            Err(e) => tracing::warn!(
                error = %e,
                "BYOK credential refresh failed; keeping the credentials already loaded"
            ),
        }
    }
}

async fn refresh_credentials(
    state: &State,
    previous_start: Option<i64>,
) -> Result<(), store::StoreError> {
    let rows = state
        .store
        .credentials_updated_since(store::next_key_sync_since(previous_start))
        .await?;
    state.byok.apply(&rows);
    Ok(())
}

/// What the key cache needs of a stored key.
pub(crate) fn key_state(r: store::KeyRow) -> KeyState {
    KeyState {
        id: r.id,
        tenant: r.tenant,
        project: r.project,
        hash: r.hash,
        expires_ms: r.expires_ms,
        revoked: r.revoked_ms.is_some(),
        last_used_ms: r.last_used_ms,
        scope: r.scope,
    }
}

/// The earliest date after which each provider's terms stop counting
/// (certification expiry or review date), as a Unix timestamp gauge.
pub(crate) fn set_attestation_gauges(metrics: &Metrics, config: &Config) {
    for p in config.table.providers() {
        let dates = p
            .terms
            .certifications
            .values()
            .flatten()
            .chain(p.terms.review_by.as_ref());
        if let Some(earliest) = dates.min() {
            let ts = earliest.midnight().assume_utc().unix_timestamp() as f64;
            metrics
                .attestation_expiry
                .with_label_values(&[p.id.as_str()])
                .set(ts);
        }
    }
}

/// A TLS acceptor for a listener, from the PEM files of its `[tls]` or
/// `[admin_tls]` table (`table` names it in errors). With `client_ca`, a
/// client must present a certificate signed by that CA or the handshake
/// fails.
fn tls_acceptor(
    table: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{table}.cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{table}.cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{table}.key {}: {e}", key.display()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let bad =
                |e: &dyn std::fmt::Display| format!("{table}.client_ca {}: {e}", ca.display());
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no certificate in it"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| bad(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{table}: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
