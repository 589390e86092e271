//! Test fixtures: mock providers and the real `cordon serve` binary, started
//! on 127.0.0.1:0 with a temporary configuration, store and log file.

#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::panic,
    reason = "fixtures: each test binary uses a different part; a failure here is a test failure"
)]

pub mod admin;
pub mod mock;
pub mod pg;
pub mod records;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cordon::auth::key::NewKey;
use cordon::store::{KeyRow, Store};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use mock::{Behaviour, MockProvider};

/// A provider entry of the gateway file, pointing at a mock.
pub struct ProviderSpec {
    pub id: String,
    pub base_url: String,
    /// TOML inline table body for `models`, e.g. `"gpt-4o" = "gpt-4o-2024"`.
    pub models: String,
    /// Lines of `[providers.data]`.
    pub data: String,
    pub priority: i64,
    /// Extra lines in the `[[providers]]` table (auth, timeout_ms, headers…).
    pub extra: String,
    /// The provider's protocol: `openai` (default) or `anthropic`.
    pub api: &'static str,
}

/// Data terms that pass any reasonable EU policy.
pub const EU_TERMS: &str = r#"
jurisdiction = "FR"
processing = ["FR"]
dpa = "signed"
trains_on_data = false
retention_days = 0
certifications = ["iso27001"]
"#;

/// Data terms of a US provider under DPF.
pub const US_TERMS: &str = r#"
jurisdiction = "US"
processing = ["US"]
dpa = "signed"
trains_on_data = false
retention_days = 30
transfer = "dpf"
"#;

#[derive(Default)]
pub struct GatewayBuilder {
    providers: Vec<ProviderSpec>,
    tenants: Vec<(String, String)>,
    keys: Vec<(String, Option<String>, Option<i64>)>,
    env: HashMap<String, String>,
    server_extra: String,
    gateway_tail: String,
    files: Vec<(String, Vec<u8>)>,
    serve_args: Vec<String>,
    /// `[store] url`; `None`: `sqlite://cordon.db` beside the gateway file.
    store_url: Option<String>,
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub keys: Vec<String>,
    pub key_ids: Vec<String>,
    pub log: PathBuf,
    pub db: PathBuf,
    env: HashMap<String, String>,
    args: Vec<String>,
    child: Child,
}

impl GatewayBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn provider(mut self, id: &str, mock: &MockProvider, models: &str, data: &str) -> Self {
        self.providers.push(ProviderSpec {
            id: id.to_owned(),
            base_url: mock.base_url(),
            models: models.to_owned(),
            data: data.to_owned(),
            priority: 10 * (self.providers.len() as i64 + 1),
            extra: String::new(),
            api: "openai",
        });
        self
    }

    /// A provider speaking the Anthropic Messages protocol (`api =
    /// "anthropic"`), pointing at `mock` (see `MockProvider::start_anthropic`).
    pub fn anthropic_provider(
        mut self,
        id: &str,
        mock: &MockProvider,
        models: &str,
        data: &str,
    ) -> Self {
        self = self.provider(id, mock, models, data);
        if let Some(p) = self.providers.last_mut() {
            p.api = "anthropic";
        }
        self
    }

    /// A provider at any `base_url` (e.g. a closed port, for connect errors).
    pub fn provider_at(mut self, id: &str, base_url: &str, models: &str, data: &str) -> Self {
        self.providers.push(ProviderSpec {
            id: id.to_owned(),
            base_url: base_url.to_owned(),
            models: models.to_owned(),
            data: data.to_owned(),
            priority: 10 * (self.providers.len() as i64 + 1),
            extra: String::new(),
            api: "openai",
        });
        self
    }

    /// Adds lines to the last provider's table.
    pub fn provider_extra(mut self, lines: &str) -> Self {
        if let Some(p) = self.providers.last_mut() {
            p.extra.push_str(lines);
            p.extra.push('\n');
        }
        self
    }

    pub fn tenant(mut self, name: &str, policy: &str) -> Self {
        self.tenants.push((name.to_owned(), policy.to_owned()));
        self
    }

    /// A key for `tenant` (and `project`), created before the server starts.
    pub fn key(mut self, tenant: &str, project: Option<&str>) -> Self {
        self.keys
            .push((tenant.to_owned(), project.map(str::to_owned), None));
        self
    }

    /// A key for `tenant` (and `project`) that expires at `expires_ms`
    /// (Unix milliseconds), created before the server starts.
    pub fn key_expiring(mut self, tenant: &str, project: Option<&str>, expires_ms: i64) -> Self {
        self.keys.push((
            tenant.to_owned(),
            project.map(str::to_owned),
            Some(expires_ms),
        ));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_owned(), v.to_owned());
        self
    }

    /// Extra arguments to `cordon serve`.
    pub fn serve_arg(mut self, arg: &str) -> Self {
        self.serve_args.push(arg.to_owned());
        self
    }

    /// Tables appended to the gateway file (e.g. `[tls]`).
    pub fn gateway_tail(mut self, toml: &str) -> Self {
        self.gateway_tail.push_str(toml);
        self.gateway_tail.push('\n');
        self
    }

    /// A file written beside the gateway file before start.
    pub fn file(mut self, name: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_owned(), content.into()));
        self
    }

    /// The store the gateway (and the keys made before it starts) uses,
    /// instead of a SQLite file of its own.
    pub fn store_url(mut self, url: &str) -> Self {
        self.store_url = Some(url.to_owned());
        self
    }

    pub fn server_extra(mut self, lines: &str) -> Self {
        self.server_extra.push_str(lines);
        self.server_extra.push('\n');
        self
    }

    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        let mut gw = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}\n[store]\nurl = \"{}\"\n",
            self.server_extra,
            self.store_url.as_deref().unwrap_or("sqlite://cordon.db")
        );
        for p in &self.providers {
            gw.push_str(&format!(
                "\n[[providers]]\nid = \"{}\"\napi = \"{}\"\nbase_url = \"{}\"\npriority = {}\nmodels = {{ {} }}\n{}\n[providers.data]\n{}\n",
                p.id, p.api, p.base_url, p.priority, p.models, p.extra, p.data
            ));
        }
        gw.push_str(&self.gateway_tail);
        for (name, content) in &self.files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let config = dir.path().join("cordon.toml");
        std::fs::write(&config, gw).unwrap();
        for (name, policy) in &self.tenants {
            std::fs::write(
                dir.path().join("policies").join(format!("{name}.toml")),
                format!("tenant = \"{name}\"\n{policy}"),
            )
            .unwrap();
        }

        // Keys go in the store before the server starts, which loads them all.
        let db = dir.path().join("cordon.db");
        let url = self
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", db.display()));
        let store = Store::connect(&url).await.unwrap();
        let mut keys = Vec::new();
        let mut key_ids = Vec::new();
        for (tenant, project, expires_ms) in &self.keys {
            let k = NewKey::generate();
            store
                .insert_key(&KeyRow {
                    id: k.id.clone(),
                    tenant: tenant.clone(),
                    project: project.clone(),
                    name: None,
                    hash: k.hash,
                    created_ms: 0,
                    expires_ms: *expires_ms,
                    revoked_ms: None,
                    last_used_ms: None,
                    scope: Default::default(),
                })
                .await
                .unwrap();
            keys.push(k.raw.expose().clone());
            key_ids.push(k.id.to_string());
        }
        store.close().await;

        spawn(dir, self.env, self.serve_args, keys, key_ids).await
    }
}

/// A stopped gateway whose files are kept.
pub struct Stopped {
    pub dir: tempfile::TempDir,
    env: HashMap<String, String>,
    args: Vec<String>,
    keys: Vec<String>,
    key_ids: Vec<String>,
}

impl Stopped {
    /// Sets (or replaces) an environment variable for the next start.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_owned(), v.to_owned());
        self
    }

    /// Starts `cordon serve` again on the same configuration, store and spool.
    pub async fn start(self) -> Gateway {
        spawn(self.dir, self.env, self.args, self.keys, self.key_ids).await
    }
}

/// Starts `cordon serve` on the configuration in `dir` and waits for its
/// listen lines. The log file is appended to, so a restart keeps both runs.
async fn spawn(
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
    args: Vec<String>,
    keys: Vec<String>,
    key_ids: Vec<String>,
) -> Gateway {
    let config = dir.path().join("cordon.toml");
    let db = dir.path().join("cordon.db");
    let log = dir.path().join("cordon.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(&args)
        .env("RUST_LOG", "trace")
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut addr, mut admin) = (None, None);
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("cordon listening on ") {
                addr = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("cordon admin listening on ") {
                admin = Some(a.parse().unwrap());
            }
            if addr.is_some() && admin.is_some() {
                break;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .is_err()
        || addr.is_none()
    {
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("cordon did not start:\n{logs}");
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Gateway {
        addr: addr.unwrap(),
        admin: admin.unwrap(),
        dir,
        keys,
        key_ids,
        log,
        db,
        env,
        args,
        child,
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Sends a signal (e.g. `HUP`) to the server process.
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{name}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// The value of one series of `/metrics`, named with its labels as the
    /// exposition writes them (`cordon_in_flight_requests`,
    /// `cordon_config_reloads_total{result="success"}`); `None` if absent.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = http()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.trim().parse().unwrap())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it to exit (usage flushed).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        self.dir
    }

    /// Sends SIGTERM and waits at most `patience` for the process to exit:
    /// its exit status (`None` if it had not exited) and its directory.
    pub async fn terminate(
        mut self,
        patience: Duration,
    ) -> (Option<std::process::ExitStatus>, tempfile::TempDir) {
        self.signal("TERM");
        let status = tokio::time::timeout(patience, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        (status, self.dir)
    }

    /// Stops the server (SIGTERM), keeping its files, to start it again later.
    pub async fn stop_for_restart(self) -> Stopped {
        let (env, args) = (self.env.clone(), self.args.clone());
        let (keys, key_ids) = (self.keys.clone(), self.key_ids.clone());
        let dir = self.stop().await;
        Stopped {
            dir,
            env,
            args,
            keys,
            key_ids,
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&format!("sqlite://{}", self.db.display()))
            .await
            .unwrap()
    }
}

/// A chat request body.
pub fn chat(model: &str, prompt: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// An HTTP client for tests (installs the process-wide rustls provider first).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}
