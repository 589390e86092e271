//! read → raw (serde) → validate → `policy::Table::compile`.
//!
//! Validation collects every error it can rather than stopping at the first,
//! so `cordon check` shows a reviewer the whole list at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::value::Datetime;

use super::env::{Env, expand, is_var_name};
use super::error::{ConfigError, ConfigErrors, Reporter};
use super::{
    AdminTls, Api, Auth, Config, CredentialSource, DEFAULT_MAX_BODY_BYTES, DEFAULT_PRIORITY,
    DEFAULT_TIMEOUT_MS, LimitsBackend, MinTls, PolicyFile, Server, ServerLimits, Tls, Upstream,
    raw,
};
use crate::policy::{
    Certification, Country, Date, Dpa, Layer, LayerKind, Limits, Provider, ProviderId, Region,
    Regions, Rules, Table, TenantPolicy, Terms, Transfer,
};
use crate::secret::Secret;

const FLOOR_FILE: &str = "_floor.toml";

/// Loads and validates the gateway file at `path` and its policies directory.
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let Some(src) = read(path, &mut errors) else {
        return Err(ConfigErrors(errors));
    };
    let mut r = Reporter {
        file: path,
        src: &src,
        errors: &mut errors,
    };
    let gw: raw::Gateway = match toml::from_str(&src) {
        Ok(gw) => gw,
        Err(e) => {
            r.toml(&e);
            return Err(ConfigErrors(errors));
        }
    };
    let file_sha256: [u8; 32] = Sha256::digest(src.as_bytes()).into();
    let base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let gateway = Gateway::validate(gw, &base_dir, env, &mut r);

    let mut policy_files = Vec::new();
    let mut floor = None;
    let mut tenants = Vec::new();
    if let Some(dir) = &gateway.policies_dir {
        match policy_paths(dir) {
            Ok(paths) => {
                for p in paths {
                    let Some(text) = read(&p, &mut errors) else {
                        continue;
                    };
                    policy_files.push(PolicyFile {
                        path: p.clone(),
                        sha256: Sha256::digest(text.as_bytes()).into(),
                    });
                    let mut r = Reporter {
                        file: &p,
                        src: &text,
                        errors: &mut errors,
                    };
                    if p.file_name().is_some_and(|n| n == FLOOR_FILE) {
                        floor = parse_floor(&text, &gateway, &mut r);
                    } else if let Some(t) = parse_policy(&p, &text, &gateway, &mut r) {
                        tenants.push(t);
                    }
                }
            }
            Err(message) => errors.push(ConfigError {
                file: dir.clone(),
                line: None,
                key: None,
                message,
            }),
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let Gateway {
        server,
        tls,
        admin_tls,
        store_url,
        usage_spool,
        limits_backend,
        regions,
        providers,
        upstreams,
        ..
    } = gateway;
    let (Some(server), Some(store_url), Some(limits_backend), Some(usage_spool)) =
        (server, store_url, limits_backend, usage_spool)
    else {
        // Unreachable in practice: each `None` came with an error above.
        return Err(ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: "incomplete configuration".to_owned(),
        }]));
    };
    let table = Table::compile(providers, floor, tenants, regions);
    Ok(Config {
        file: path.to_path_buf(),
        file_sha256,
        server,
        tls,
        admin_tls,
        store_url,
        usage_spool,
        limits_backend,
        upstreams,
        table: Arc::new(table),
        policy_files,
    })
}

fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(ConfigError {
                file: path.to_path_buf(),
                line: None,
                key: None,
                message: format!("cannot read file: {e}"),
            });
            None
        }
    }
}

/// The `.toml` files of the policies directory, sorted; subdirectories and
/// other files are ignored.
fn policy_paths(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read policies directory: {e}"))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

// === the gateway file ===

/// The `[server]` limits, each within its range, or `None` after reporting.
fn server_limits(s: &raw::Server, r: &mut Reporter<'_>) -> Option<ServerLimits> {
    let d = ServerLimits::default();
    let mut ok = true;
    let mut num = |v: &Option<Spanned<u64>>, key: &str, min: u64, max: u64, default: u64| -> u64 {
        match v {
            None => default,
            Some(v) if (min..=max).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                r.at(
                    v.span().start,
                    key,
                    format!("must be between {min} and {max}"),
                );
                ok = false;
                default
            }
        }
    };
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let ms = Duration::from_millis;
    let limits = ServerLimits {
        // hyper's HTTP/1 reader needs at least 8 KiB.
        max_header_bytes: size(num(
            &s.max_header_bytes,
            "server.max_header_bytes",
            8192,
            1 << 20,
            d.max_header_bytes as u64,
        )),
        body_read_timeout: ms(num(
            &s.body_read_timeout_ms,
            "server.body_read_timeout_ms",
            1,
            3_600_000,
            d.body_read_timeout.as_millis() as u64,
        )),
        max_json_depth: size(num(
            &s.max_json_depth,
            "server.max_json_depth",
            2,
            1024,
            d.max_json_depth as u64,
        )),
        max_event_bytes: size(num(
            &s.max_event_bytes,
            "server.max_event_bytes",
            1024,
            1 << 30,
            d.max_event_bytes as u64,
        )),
        max_answer_bytes: size(num(
            &s.max_answer_bytes,
            "server.max_answer_bytes",
            1024,
            1 << 32,
            d.max_answer_bytes as u64,
        )),
        max_stream: ms(num(
            &s.max_stream_ms,
            "server.max_stream_ms",
            1,
            86_400_000,
            d.max_stream.as_millis() as u64,
        )),
        drain_timeout: ms(num(
            &s.drain_timeout_ms,
            "server.drain_timeout_ms",
            0,
            3_600_000,
            d.drain_timeout.as_millis() as u64,
        )),
    };
    ok.then_some(limits)
}

/// The gateway file, validated as far as it could be.
struct Gateway {
    server: Option<Server>,
    tls: Option<Tls>,
    admin_tls: Option<AdminTls>,
    store_url: Option<Secret<String>>,
    usage_spool: Option<PathBuf>,
    limits_backend: Option<LimitsBackend>,
    policies_dir: Option<PathBuf>,
    regions: Regions,
    providers: Vec<Provider>,
    upstreams: Vec<Upstream>,
    ids: BTreeSet<String>,
}

impl Gateway {
    fn validate(gw: raw::Gateway, base: &Path, env: &dyn Env, r: &mut Reporter<'_>) -> Self {
        let text = |s: &Spanned<String>, key: &str, r: &mut Reporter<'_>| -> Option<String> {
            expand(s.get_ref(), env)
                .map_err(|e| r.at(s.span().start, key, e.to_string()))
                .ok()
        };
        let addr = |s: &Spanned<String>, key: &str, r: &mut Reporter<'_>| -> Option<SocketAddr> {
            let v = text(s, key, r)?;
            v.parse()
                .map_err(|_| {
                    r.at(
                        s.span().start,
                        key,
                        format!("`{}` is not an address of the form IP:port", s.get_ref()),
                    )
                })
                .ok()
        };

        let listen = addr(&gw.server.listen, "server.listen", r);
        let admin_listen = addr(&gw.server.admin_listen, "server.admin_listen", r);
        let policies_dir = match &gw.server.policies_dir {
            Some(d) => text(d, "server.policies_dir", r).map(|d| base.join(d)),
            None => Some(base.join("policies")),
        };
        let max_body_bytes = match &gw.server.max_body_bytes {
            Some(m) if *m.get_ref() == 0 => {
                r.at(
                    m.span().start,
                    "server.max_body_bytes",
                    "must be greater than 0",
                );
                None
            }
            Some(m) => Some(*m.get_ref()),
            None => Some(DEFAULT_MAX_BODY_BYTES),
        };
        let limits = server_limits(&gw.server, r);
        let server = match (listen, admin_listen, &policies_dir, max_body_bytes, limits) {
            (Some(listen), Some(admin_listen), Some(dir), Some(max_body_bytes), Some(limits)) => {
                Some(Server {
                    listen,
                    admin_listen,
                    policies_dir: dir.clone(),
                    max_body_bytes,
                    limits,
                })
            }
            _ => None,
        };

        let tls = gw.tls.as_ref().and_then(|t| {
            let cert = text(&t.cert, "tls.cert", r)?;
            let key = text(&t.key, "tls.key", r)?;
            Some(Tls {
                cert: base.join(cert),
                key: base.join(key),
            })
        });

        let admin_tls = gw.admin_tls.as_ref().and_then(|t| {
            // Read when the admin listener starts; checked here so that
            // `cordon check` names a missing file.
            let file = |s: &Spanned<String>, key: &str, r: &mut Reporter<'_>| -> Option<PathBuf> {
                let path = base.join(text(s, key, r)?);
                match std::fs::File::open(&path) {
                    Ok(_) => Some(path),
                    Err(e) => {
                        r.at(
                            s.span().start,
                            key,
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            };
            let cert = file(&t.cert, "admin_tls.cert", r);
            let key = file(&t.key, "admin_tls.key", r);
            let client_ca = match &t.client_ca {
                Some(ca) => Some(file(ca, "admin_tls.client_ca", r)?),
                None => None,
            };
            Some(AdminTls {
                cert: cert?,
                key: key?,
                client_ca,
            })
        });

        let store_url = match &gw.store {
            None => Some("sqlite://cordon.db".to_owned()),
            Some(s) => text(&s.url, "store.url", r).and_then(|u| {
                let ok = ["sqlite:", "postgres://", "postgresql://"]
                    .iter()
                    .any(|p| u.starts_with(p));
                if !ok {
                    r.at(
                        s.url.span().start,
                        "store.url",
                        "must start with sqlite:, postgres:// or postgresql://",
                    );
                }
                ok.then_some(u)
            }),
        }
        .map(Secret::new);

        let usage_spool = match gw.store.as_ref().and_then(|s| s.spool.as_ref()) {
            Some(p) => text(p, "store.spool", r).map(|p| base.join(p)),
            None => Some(base.join("cordon-usage.spool")),
        };

        let limits_backend = match &gw.limits {
            None => Some(LimitsBackend::Local),
            Some(l) => text(&l.backend, "limits.backend", r).and_then(|b| {
                if b == "local" {
                    Some(LimitsBackend::Local)
                } else if b.starts_with("redis://") || b.starts_with("rediss://") {
                    // Accepting it and limiting per process would let every
                    // replica admit the whole limit: refused until built.
                    r.at(
                        l.backend.span().start,
                        "limits.backend",
                        "a Redis backend is not supported by this version (limits are kept \
                         per process); use \"local\"",
                    );
                    None
                } else {
                    r.at(
                        l.backend.span().start,
                        "limits.backend",
                        "must be \"local\"",
                    );
                    None
                }
            }),
        };

        let mut regions = Regions::default();
        for (name, members) in &gw.regions {
            let key = format!("regions.{}", name.get_ref());
            if Country::parse(name.get_ref()).is_ok() {
                r.at(
                    name.span().start,
                    &key,
                    "a region group may not be named like a country code",
                );
                continue;
            }
            let countries: Vec<Country> =
                members.iter().filter_map(|m| country(m, &key, r)).collect();
            if let Err(e) = regions.define(name.get_ref(), &countries) {
                r.at(name.span().start, &key, e.to_string());
            }
        }

        let min_tls = gw
            .upstream
            .as_ref()
            .and_then(|u| u.min_tls.as_ref())
            .and_then(|v| parse_named::<MinTls>(v, "upstream.min_tls", r))
            .unwrap_or_default();

        let mut ids = BTreeSet::new();
        let mut providers = Vec::new();
        let mut upstreams = Vec::new();
        for p in &gw.providers {
            if let Some((provider, upstream)) =
                validate_provider(p, base, env, &regions, min_tls, &mut ids, r)
            {
                providers.push(provider);
                upstreams.push(upstream);
            }
        }

        Gateway {
            server,
            tls,
            admin_tls,
            store_url,
            usage_spool,
            limits_backend,
            policies_dir,
            regions,
            providers,
            upstreams,
            ids,
        }
    }
}

fn validate_provider(
    p: &raw::Provider,
    base: &Path,
    env: &dyn Env,
    regions: &Regions,
    default_min_tls: MinTls,
    ids: &mut BTreeSet<String>,
    r: &mut Reporter<'_>,
) -> Option<(Provider, Upstream)> {
    let errors_before = r.errors.len();
    let id = p.id.get_ref();
    if !is_name(id) {
        r.at(
            p.id.span().start,
            "providers.id",
            format!("`{id}` must be lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit"),
        );
    } else if !ids.insert(id.clone()) {
        r.at(
            p.id.span().start,
            "providers.id",
            format!("provider `{id}` is defined twice"),
        );
    }
    let key = |k: &str| format!("providers.{k}");

    let api = match p.api.get_ref().as_str() {
        "openai" => Some(Api::OpenAi),
        "anthropic" => Some(Api::Anthropic),
        other => {
            r.at(
                p.api.span().start,
                &key("api"),
                format!("`{other}` is not one of openai, anthropic"),
            );
            None
        }
    };

    let base_url = expand(p.base_url.get_ref(), env)
        .map_err(|e| r.at(p.base_url.span().start, &key("base_url"), e.to_string()))
        .ok()
        .filter(|u| {
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && u.len() > "https://".len();
            if !ok {
                r.at(
                    p.base_url.span().start,
                    &key("base_url"),
                    "must be an http:// or https:// URL",
                );
            }
            ok
        });
    let plain_http = base_url
        .as_deref()
        .is_some_and(|u| u.starts_with("http://"));
    // Over plain HTTP the prompt and the provider's credential cross the
    // network readable by anyone on the path: only to this machine, or when
    // the operator says so in the provider's own table. The host is not
    // named: it may come from the environment.
    if let Some(u) = &base_url
        && plain_http
        && !is_loopback_url(u)
        && p.allow_http != Some(true)
    {
        r.at(
            p.base_url.span().start,
            &key("base_url"),
            "plain http:// is accepted only to a loopback host (127.0.0.0/8, ::1, localhost); \
             use https://, or set `allow_http = true` in this provider to send prompts and \
             credentials unencrypted",
        );
    }
    let min_tls = match &p.min_tls {
        None => default_min_tls,
        Some(v) => {
            let parsed = parse_named::<MinTls>(v, &key("min_tls"), r);
            if parsed.is_some() && plain_http {
                r.at(
                    v.span().start,
                    &key("min_tls"),
                    "applies only to an https:// base_url (this one is plain http://)",
                );
            }
            parsed.unwrap_or_default()
        }
    };

    let auth = p.auth.as_ref().and_then(|spanned| {
        let a = spanned.get_ref();
        let header = a.header.as_ref().map_or("authorization".to_owned(), |h| {
            h.get_ref().to_ascii_lowercase()
        });
        if !is_header_name(&header) {
            let at = a.header.as_ref().map_or(0, |h| h.span().start);
            r.at(at, &key("auth.header"), "not a valid HTTP header name");
        }
        let source = match (&a.env, &a.file) {
            (Some(var), None) => {
                if !is_var_name(var.get_ref()) {
                    r.at(
                        var.span().start,
                        &key("auth.env"),
                        "must be the name of an environment variable (the credential is never written inline)",
                    );
                }
                CredentialSource::Env(var.get_ref().clone())
            }
            (None, Some(file)) => {
                let path = expand(file.get_ref(), env)
                    .map_err(|e| r.at(file.span().start, &key("auth.file"), e.to_string()))
                    .ok()?;
                if path.is_empty() {
                    r.at(
                        file.span().start,
                        &key("auth.file"),
                        "must be the path of the file holding the credential",
                    );
                }
                CredentialSource::File(base.join(path))
            }
            _ => {
                r.at(
                    spanned.span().start,
                    &key("auth"),
                    "set exactly one of `env` (an environment variable) and `file` (a file \
                     holding the credential)",
                );
                return None;
            }
        };
        Some(Auth { header, source })
    });

    let mut headers = Vec::new();
    for (name, value) in &p.headers {
        let hkey = key(&format!("headers.{}", name.get_ref()));
        let lname = name.get_ref().to_ascii_lowercase();
        if !is_header_name(&lname) {
            r.at(name.span().start, &hkey, "not a valid HTTP header name");
        } else if matches!(
            lname.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            r.at(
                name.span().start,
                &hkey,
                "this header is set by cordon and cannot be overridden",
            );
        }
        match expand(value.get_ref(), env) {
            Ok(v) => headers.push((lname, Secret::new(v))),
            Err(e) => r.at(value.span().start, &hkey, e.to_string()),
        }
    }

    let timeout = match &p.timeout_ms {
        Some(t) if *t.get_ref() == 0 => {
            r.at(t.span().start, &key("timeout_ms"), "must be greater than 0");
            DEFAULT_TIMEOUT_MS
        }
        Some(t) => *t.get_ref(),
        None => DEFAULT_TIMEOUT_MS,
    };

    let ca_file = p.ca_file.as_ref().and_then(|c| {
        expand(c.get_ref(), env)
            .map_err(|e| r.at(c.span().start, &key("ca_file"), e.to_string()))
            .ok()
            .map(|c| base.join(c))
    });

    let mut models = BTreeMap::new();
    if p.models.get_ref().is_empty() {
        r.at(
            p.models.span().start,
            &key("models"),
            "a provider must serve at least one model",
        );
    }
    for (public, upstream) in p.models.get_ref() {
        if public.get_ref().trim().is_empty() || upstream.get_ref().trim().is_empty() {
            r.at(
                public.span().start,
                &key("models"),
                "model names may not be empty",
            );
        }
        models.insert(public.get_ref().clone(), upstream.get_ref().clone());
    }

    let terms = validate_terms(p.data.get_ref(), regions, r);

    if r.errors.len() > errors_before {
        return None;
    }
    let (api, base_url) = (api?, base_url?);
    let pid = ProviderId::new(id);
    Some((
        Provider {
            id: pid.clone(),
            priority: p.priority.unwrap_or(DEFAULT_PRIORITY),
            models: models.keys().cloned().collect(),
            terms,
        },
        Upstream {
            id: pid,
            api,
            base_url: base_url.trim_end_matches('/').to_owned(),
            auth,
            headers,
            timeout: Duration::from_millis(timeout),
            ca_file,
            min_tls,
            models,
        },
    ))
}

fn validate_terms(d: &raw::Terms, regions: &Regions, r: &mut Reporter<'_>) -> Terms {
    let key = |k: &str| format!("providers.data.{k}");
    let jurisdiction = d
        .jurisdiction
        .as_ref()
        .and_then(|j| country(j, &key("jurisdiction"), r));
    let processing: Vec<Country> = d
        .processing
        .iter()
        .flatten()
        .filter_map(|c| country(c, &key("processing"), r))
        .collect();
    let dpa = d
        .dpa
        .as_ref()
        .and_then(|v| parse_named::<Dpa>(v, &key("dpa"), r));
    let transfer = d
        .transfer
        .as_ref()
        .and_then(|v| parse_named::<Transfer>(v, &key("transfer"), r));
    if let (Some(Transfer::Adequacy), Some(t)) = (transfer, &d.transfer)
        && processing.is_empty()
    {
        r.at(
            t.span().start,
            &key("transfer"),
            "`adequacy` claimed, but `processing` does not say where data is processed",
        );
    }
    if let (Some(Transfer::Adequacy), Some(t)) = (transfer, &d.transfer) {
        let outside: Vec<String> = processing
            .iter()
            .filter(|c| !regions.adequate().contains(**c))
            .map(|c| c.to_string())
            .collect();
        if !outside.is_empty() {
            r.at(
                t.span().start,
                &key("transfer"),
                format!(
                    "`adequacy` claimed, but {} has no EU adequacy decision (for the US, use `dpf` or `scc`)",
                    outside.join(", ")
                ),
            );
        }
    }
    let mut certifications: BTreeMap<Certification, Option<Date>> = BTreeMap::new();
    for c in d.certifications.iter().flatten() {
        if let Some(cert) = parse_named::<Certification>(c, &key("certifications"), r) {
            certifications.insert(cert, None);
        }
    }
    for (name, when) in &d.expires {
        let ekey = key(&format!("expires.{}", name.get_ref()));
        let Some(cert) = parse_named::<Certification>(name, &ekey, r) else {
            continue;
        };
        let Some(day) = date(when, &ekey, r) else {
            continue;
        };
        match certifications.get_mut(&cert) {
            Some(slot) => *slot = Some(day),
            None => r.at(
                name.span().start,
                &ekey,
                format!("`{cert}` has an expiry but is not in `certifications`"),
            ),
        }
    }
    Terms {
        entity: d.entity.clone(),
        jurisdiction,
        processing,
        dpa,
        trains_on_data: d.trains_on_data,
        retention_days: d.retention_days,
        certifications,
        transfer,
        purpose: d.purpose.clone(),
        evidence: d.evidence.clone(),
        effective_from: d
            .effective_from
            .as_ref()
            .and_then(|v| date(v, &key("effective_from"), r)),
        review_by: d
            .review_by
            .as_ref()
            .and_then(|v| date(v, &key("review_by"), r)),
    }
}

// === policy files ===

fn parse_floor(src: &str, gw: &Gateway, r: &mut Reporter<'_>) -> Option<Layer> {
    let raw: raw::Floor = toml::from_str(src).map_err(|e| r.toml(&e)).ok()?;
    Some(layer(
        LayerKind::Floor,
        raw.data.as_ref(),
        raw.models.as_ref(),
        "",
        gw,
        r,
    ))
}

fn parse_policy(
    path: &Path,
    src: &str,
    gw: &Gateway,
    r: &mut Reporter<'_>,
) -> Option<TenantPolicy> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem.starts_with('_') {
        r.file(format!(
            "file names starting with `_` are reserved (only `{FLOOR_FILE}` is known)"
        ));
        return None;
    }
    let raw: raw::Policy = toml::from_str(src).map_err(|e| r.toml(&e)).ok()?;
    let before = r.errors.len();
    let tenant = raw.tenant.get_ref();
    if tenant != stem {
        r.at(
            raw.tenant.span().start,
            "tenant",
            format!("`{tenant}` must equal the file name `{stem}`"),
        );
    } else if !is_name(tenant) {
        r.at(
            raw.tenant.span().start,
            "tenant",
            format!("`{tenant}` must be lower-case letters, digits, `-`, `_` or `.`"),
        );
    }
    let tenant_layer = layer(
        LayerKind::Tenant,
        raw.data.as_ref(),
        raw.models.as_ref(),
        "",
        gw,
        r,
    );

    let mut order = Vec::new();
    for id in raw.routing.iter().flat_map(|x| x.order.iter()) {
        if let Some(pid) = provider_ref(id, "routing.order", gw, r) {
            if order.contains(&pid) {
                r.at(
                    id.span().start,
                    "routing.order",
                    format!("`{pid}` is listed twice"),
                );
            }
            order.push(pid);
        }
    }

    let limit = |v: &Option<Spanned<u32>>, key: &str, r: &mut Reporter<'_>| -> Option<u32> {
        let v = v.as_ref()?;
        if *v.get_ref() == 0 {
            r.at(
                v.span().start,
                key,
                "must be greater than 0 (omit it for no limit)",
            );
        }
        Some(*v.get_ref())
    };
    let limits = Limits {
        requests_per_minute: raw
            .limits
            .as_ref()
            .and_then(|l| limit(&l.requests_per_minute, "limits.requests_per_minute", r)),
        tokens_per_minute: raw
            .limits
            .as_ref()
            .and_then(|l| limit(&l.tokens_per_minute, "limits.tokens_per_minute", r)),
    };

    let mut projects = BTreeMap::new();
    for (name, p) in &raw.projects {
        let prefix = format!("projects.{}.", name.get_ref());
        if !is_name(name.get_ref()) {
            r.at(
                name.span().start,
                &format!("projects.{}", name.get_ref()),
                "project names must be lower-case letters, digits, `-`, `_` or `.`",
            );
        }
        let l = layer(
            LayerKind::Project,
            p.data.as_ref(),
            p.models.as_ref(),
            &prefix,
            gw,
            r,
        );
        projects.insert(name.get_ref().clone(), l);
    }

    (r.errors.len() == before).then(|| TenantPolicy {
        tenant: tenant.clone(),
        description: raw.description.clone(),
        layer: tenant_layer,
        order,
        failover: raw
            .routing
            .as_ref()
            .and_then(|x| x.failover)
            .unwrap_or(true),
        limits,
        projects,
    })
}

fn layer(
    kind: LayerKind,
    data: Option<&raw::Rules>,
    models: Option<&raw::Models>,
    prefix: &str,
    gw: &Gateway,
    r: &mut Reporter<'_>,
) -> Layer {
    let key = |k: &str| format!("{prefix}data.{k}");
    let mut rules = Rules::default();
    if let Some(d) = data {
        let region = |v: &Option<Vec<Spanned<String>>>, k: &str, r: &mut Reporter<'_>| {
            let v = v.as_ref()?;
            let mut set = crate::policy::RegionSet::new();
            for name in v {
                match gw.regions.resolve(name.get_ref()) {
                    Ok(s) => set.union_with(&s),
                    Err(e) => r.at(name.span().start, &key(k), e.to_string()),
                }
            }
            Some(Region {
                names: v.iter().map(|n| n.get_ref().clone()).collect(),
                set,
            })
        };
        rules.processing_in = region(&d.processing_in, "processing_in", r);
        rules.jurisdiction_in = region(&d.jurisdiction_in, "jurisdiction_in", r);
        rules.dpa = d.dpa.as_ref().map(|v| {
            v.iter()
                .filter_map(|x| parse_named::<Dpa>(x, &key("dpa"), r))
                .collect()
        });
        rules.transfer = d.transfer.as_ref().map(|v| {
            v.iter()
                .filter_map(|x| parse_named::<Transfer>(x, &key("transfer"), r))
                .collect()
        });
        rules.certifications = d
            .certifications
            .iter()
            .flatten()
            .filter_map(|x| parse_named::<Certification>(x, &key("certifications"), r))
            .collect();
        rules.no_training = d.no_training.unwrap_or(true);
        rules.max_retention_days = d.max_retention_days;
        rules.exclude_providers = d
            .exclude_providers
            .iter()
            .flatten()
            .filter_map(|id| provider_ref(id, &key("exclude_providers"), gw, r))
            .collect();
    }
    let models = models.map(|m| {
        m.allow
            .iter()
            .filter_map(|g| match glob::Pattern::new(g.get_ref()) {
                Ok(p) => Some(p),
                Err(e) => {
                    r.at(
                        g.span().start,
                        &format!("{prefix}models.allow"),
                        format!("`{}` is not a valid glob: {}", g.get_ref(), e.msg),
                    );
                    None
                }
            })
            .collect()
    });
    Layer {
        kind,
        rules,
        models,
    }
}

// === leaf values ===

fn provider_ref(
    id: &Spanned<String>,
    key: &str,
    gw: &Gateway,
    r: &mut Reporter<'_>,
) -> Option<ProviderId> {
    if gw.ids.contains(id.get_ref()) {
        Some(ProviderId::new(id.get_ref()))
    } else {
        r.at(
            id.span().start,
            key,
            format!(
                "unknown provider `{}` (not in the gateway file)",
                id.get_ref()
            ),
        );
        None
    }
}

fn country(v: &Spanned<String>, key: &str, r: &mut Reporter<'_>) -> Option<Country> {
    Country::parse(v.get_ref())
        .map_err(|e| r.at(v.span().start, key, e.to_string()))
        .ok()
}

fn parse_named<T: std::str::FromStr>(
    v: &Spanned<String>,
    key: &str,
    r: &mut Reporter<'_>,
) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    v.get_ref()
        .parse()
        .map_err(|e: T::Err| r.at(v.span().start, key, e.to_string()))
        .ok()
}

fn date(v: &Spanned<Datetime>, key: &str, r: &mut Reporter<'_>) -> Option<Date> {
    let dt = v.get_ref();
    let day = match (dt.date, dt.time, dt.offset) {
        (Some(d), None, None) => time::Month::try_from(d.month)
            .ok()
            .and_then(|m| Date::from_calendar_date(i32::from(d.year), m, d.day).ok()),
        _ => None,
    };
    if day.is_none() {
        r.at(
            v.span().start,
            key,
            format!("`{dt}` must be a date such as 2027-01-31, without a time"),
        );
    }
    day
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Whether an `http://` URL's host is this machine: an address in
/// 127.0.0.0/8, `::1`, or the name `localhost`.
pub(super) fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
