//! `cordon demo`: a complete gateway with nothing to configure. It starts
//! SIMULATED providers in several jurisdictions inside this process, writes a
//! gateway file and tenant policies (embedded below) into a private temporary
//! directory with a SQLite store, creates one key per tenant, and starts the
//! real gateway on them. Everything is deleted on shutdown.
//!
//! Nothing outside `demo` and `cli::demo` uses this module: the simulated
//! providers are reached over HTTP like any other provider.

mod sim;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use sim::Profile;
use sim::Sim;

use crate::auth::key::NewKey;
use crate::clock;
use crate::config;
use crate::policy::Table;
use crate::secret::Secret;
use crate::server::Running;
use crate::store::{self, KeyRow, Store};

/// The demo gateway file; `@LISTEN@` and `@SIM:<id>@` are filled in at start.
const GATEWAY: &str = include_str!("cordon.toml");

const POLICIES: &[(&str, &str)] = &[
    ("_floor.toml", include_str!("policies/_floor.toml")),
    ("eu-only.toml", include_str!("policies/eu-only.toml")),
    ("global.toml", include_str!("policies/global.toml")),
];

/// The simulated providers, as declared in the embedded gateway file.
pub const PROVIDERS: &[Profile] = &[
    Profile {
        id: "sim-fr",
        city: "Paris",
        terms: "processing FR, jurisdiction FR, signed DPA, zero retention, ISO 27001",
        anthropic: false,
    },
    Profile {
        id: "sim-de-us-parent",
        city: "Frankfurt",
        terms: "processing DE, jurisdiction US (parent company), signed DPA, SCCs, zero retention",
        anthropic: false,
    },
    Profile {
        id: "sim-us",
        city: "Virginia",
        terms: "processing US, jurisdiction US, Data Privacy Framework, 30-day retention",
        anthropic: false,
    },
    Profile {
        id: "sim-cn",
        city: "Hangzhou",
        terms: "processing CN, jurisdiction CN, no DPA, trains on prompts",
        anthropic: false,
    },
    Profile {
        id: "sim-ie-anthropic",
        city: "Dublin",
        terms: "Anthropic protocol, processing IE, jurisdiction IE, signed DPA, zero retention",
        anthropic: true,
    },
];

/// A running demo.
pub struct Demo {
    /// The client API.
    pub addr: SocketAddr,
    /// Metrics and health.
    pub admin_addr: SocketAddr,
    /// The temporary directory holding the gateway file, policies and store.
    pub dir: PathBuf,
    /// One key per tenant, in tenant order.
    pub keys: Vec<DemoKey>,
    /// The policies in force.
    pub table: Arc<Table>,
    /// Each simulated provider with its base URL.
    pub providers: Vec<(&'static Profile, String)>,
    running: Running,
    sims: Vec<Sim>,
    temp: TempDir,
}

pub struct DemoKey {
    pub tenant: String,
    pub key: Secret<String>,
}

/// Starts the simulated providers and a gateway listening on `listen`.
pub async fn start(listen: SocketAddr) -> Result<Demo, String> {
    let temp = TempDir::new().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let dir = temp.0.clone();

    let mut gateway = GATEWAY.replace("@LISTEN@", &listen.to_string());
    let mut sims = Vec::new();
    let mut providers = Vec::new();
    for profile in PROVIDERS {
        let sim = Sim::start(profile)
            .await
            .map_err(|e| format!("cannot start simulated provider {}: {e}", profile.id))?;
        gateway = gateway.replace(&format!("@SIM:{}@", profile.id), &sim.base_url());
        providers.push((profile, sim.base_url()));
        sims.push(sim);
    }
    let file = dir.join("cordon.toml");
    write_files(&dir, &file, &gateway)
        .map_err(|e| format!("cannot write the demo configuration: {e}"))?;

    // The demo reads nothing from the environment.
    let env: HashMap<String, String> = HashMap::new();
    let config = config::load(&file, &env).map_err(|errors| {
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        format!(
            "the embedded demo configuration is invalid:\n{}",
            lines.join("\n")
        )
    })?;

    // Keys go into the store before the gateway starts, which loads them all.
    let url =
        store::resolve_url(config.store_url.expose(), &dir).map_err(|e| format!("store: {e}"))?;
    let store = Store::connect(&url)
        .await
        .map_err(|e| format!("store: {e}"))?;
    let mut keys = Vec::new();
    for tenant in config.table.tenants() {
        let key = NewKey::generate();
        let row = KeyRow {
            id: key.id.clone(),
            tenant: tenant.tenant.clone(),
            project: None,
            name: Some("demo".to_owned()),
            hash: key.hash,
            created_ms: clock::now_ms(),
            expires_ms: None,
            revoked_ms: None,
            last_used_ms: None,
            scope: store::KeyScope::default(),
        };
        store
            .insert_key(&row)
            .await
            .map_err(|e| format!("store: {e}"))?;
        keys.push(DemoKey {
            tenant: tenant.tenant.clone(),
            key: key.raw,
        });
    }
    store.close().await;

    let table = config.table.clone();
    let running = Running::start(config, &env).await?;
    Ok(Demo {
        addr: running.addr,
        admin_addr: running.admin_addr,
        dir,
        keys,
        table,
        providers,
        running,
        sims,
        temp,
    })
}

impl Demo {
    /// The raw key of `tenant`'s demo key.
    pub fn key(&self, tenant: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.tenant == tenant)
            .map(|k| k.key.expose().as_str())
    }

    /// Stops the gateway (finishing in-flight requests), then the simulated
    /// providers, and deletes the temporary directory.
    pub async fn shutdown(self) {
        let Demo {
            running,
            sims,
            temp,
            ..
        } = self;
        running.shutdown().await;
        drop(sims);
        drop(temp);
    }
}

fn write_files(dir: &Path, file: &Path, gateway: &str) -> io::Result<()> {
    std::fs::write(file, gateway)?;
    let policies = dir.join("policies");
    std::fs::create_dir(&policies)?;
    for (name, text) in POLICIES {
        std::fs::write(policies.join(name), text)?;
    }
    Ok(())
}

/// A directory only this user can read, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<Self> {
        let name = format!("cordon-demo-{}", hex::encode(rand::random::<[u8; 6]>()));
        let path = std::env::temp_dir().join(name);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
