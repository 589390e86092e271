//! Configuration reload: on SIGHUP, and whenever the gateway file, a policy
//! file or a provider's credential file (`auth.file`) changes (checked every
//! [`WATCH_EVERY`]), so a rotated secret file is picked up without a restart. The new configuration is
//! loaded and validated whole; if anything is wrong it is rejected, the errors
//! are logged (file, line, key; never values) and counted, and the previous
//! configuration stays in force. Requests in flight keep the snapshot they
//! started with; each attempt re-checks eligibility against the new one.
//! Reloads run one at a time, so the last to read the files is the one in
//! force.
//! Rate-limit windows and passive health survive a reload (for unchanged
//! limits and for providers that remain), so a reload is not a way around a
//! limit and does not send traffic back to a provider that was ejected.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{Snapshot, State, set_attestation_gauges};
use crate::audit::{ACTOR_FILE_WATCH, ACTOR_SIGHUP, NewAuditEntry, Outcome};
use crate::config::{self, ConfigError, ProcessEnv};

/// How often the files are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Watches `config_path` and its policies directory until shutdown.
pub async fn run(state: Arc<State>, config_path: PathBuf, mut shutdown: watch::Receiver<bool>) {
    // The check and the reload run on the blocking pool: with thousands of
    // policy files neither may hold up a runtime worker (and its requests).
    let check = || {
        let (st, c) = (state.clone(), config_path.clone());
        tokio::task::spawn_blocking(move || current_fingerprint(&st, &c))
    };
    if let Ok(first) = check().await {
        *state
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(first);
    }
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => false,
            _ = signalled => true,
            _ = shutdown.changed() => return,
        };
        // Unchanged since the last reload (whoever started it): nothing to do.
        let now = check().await.ok();
        let seen = *state
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !forced && now.is_some() && now == seen {
            continue;
        }
        let (st, c) = (state.clone(), config_path.clone());
        if let Ok(result) = tokio::task::spawn_blocking(move || reload(&st, &c)).await {
            let actor = if forced {
                ACTOR_SIGHUP
            } else {
                ACTOR_FILE_WATCH
            };
            audit(&state, actor, &result).await;
        }
    }
}

/// Appends a reload to the audit log: the files' hashes, or how many errors
/// rejected it. A store failure is logged, not fatal: the reload happened.
pub(crate) async fn audit(
    state: &State,
    actor: &str,
    result: &Result<Reloaded, Vec<ConfigError>>,
) -> Option<()> {
    let now = crate::clock::now_ms();
    let entry = match result {
        Ok(r) => NewAuditEntry::new(now, actor, "reload", Outcome::Success)
            .detail("files", files_json(r)),
        Err(errors) => NewAuditEntry::new(now, actor, "reload", Outcome::Failure)
            .detail("errors", errors.len()),
    };
    match state.store.append_audit(&entry).await {
        Ok(_) => Some(()),
        Err(e) => {
            tracing::error!(error = %e, "could not append a reload to the audit log");
            None
        }
    }
}

/// What a reload loaded: every file read, with the SHA-256 of its bytes (the
/// gateway file first, then the policy files), for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reloaded {
    pub files: Vec<(PathBuf, [u8; 32])>,
}

/// Loads, validates and swaps in the configuration at `path`. On any error
/// nothing changes and the errors (file, line, key; never a value) are
/// returned.
pub(crate) fn reload(state: &State, path: &Path) -> Result<Reloaded, Vec<ConfigError>> {
    // One reload at a time (this runs on the blocking pool). Without this, a
    // reload that read older files could swap its snapshot in after one that
    // read newer files and had already answered `200`.
    let mut read = state
        .reloading
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // What this reload reads, so the watcher does not read it again.
    *read = Some(current_fingerprint(state, path));
    let result = config::load(path, &ProcessEnv)
        .map_err(|errors| errors.0)
        .and_then(|cfg| {
            // Rate-limit windows and passive health carry over from the
            // configuration in force (see `Snapshot::build`).
            let previous = state.snapshot.load();
            Snapshot::build(cfg, &ProcessEnv, Some(&previous)).map_err(|message| {
                vec![ConfigError {
                    file: path.to_path_buf(),
                    line: None,
                    key: None,
                    message,
                }]
            })
        });
    match result {
        Ok((snapshot, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            set_attestation_gauges(&state.metrics, &snapshot.config);
            let config = &snapshot.config;
            let files: Vec<(PathBuf, [u8; 32])> =
                std::iter::once((config.file.clone(), config.file_sha256))
                    .chain(
                        config
                            .policy_files
                            .iter()
                            .map(|f| (f.path.clone(), f.sha256)),
                    )
                    .collect();
            let listed: Vec<String> = files
                .iter()
                .map(|(p, h)| format!("{}={}", p.display(), &hex::encode(h)[..12]))
                .collect();
            state.snapshot.store(Arc::new(snapshot));
            state
                .metrics
                .config_reloads
                .with_label_values(&["success"])
                .inc();
            tracing::info!(files = %listed.join(" "), "configuration reloaded");
            Ok(Reloaded { files })
        }
        Err(errors) => {
            state
                .metrics
                .config_reloads
                .with_label_values(&["failure"])
                .inc();
            for e in &errors {
                tracing::error!(error = %e, "configuration change rejected");
            }
            tracing::error!(
                errors = errors.len(),
                "configuration change rejected; the previous configuration stays in force"
            );
            Err(errors)
        }
    }
}

/// [`fingerprint`] of the gateway file at `path`, the policies directory and
/// the credential files of the configuration in force.
fn current_fingerprint(state: &State, path: &Path) -> [u8; 32] {
    let snapshot = state.snapshot.load();
    let config = &snapshot.config;
    fingerprint(
        path,
        &config.server.policies_dir,
        &config.credential_files(),
    )
}

/// A hash of the names, sizes, modification times (and, on Unix, inode
/// numbers) of the gateway file, every file in the policies directory and
/// every credential file: one `stat` a file every check, not a read (an
/// in-place edit that keeps both size and nanosecond mtime is not seen;
/// SIGHUP reloads regardless). `stat` follows symbolic links, so a
/// Kubernetes secret's `..data` swap counts as a change.
fn fingerprint(config: &Path, policies: &Path, credentials: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut add = |p: &Path| {
        h.update(p.as_os_str().as_encoded_bytes());
        match std::fs::metadata(p) {
            Ok(m) => {
                h.update(m.len().to_le_bytes());
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .unwrap_or_default();
                h.update(mtime.as_nanos().to_le_bytes());
                // A file replaced by a rename (how secret agents write) is a
                // new inode, even when it kept the old size and mtime.
                #[cfg(unix)]
                h.update(std::os::unix::fs::MetadataExt::ino(&m).to_le_bytes());
            }
            Err(_) => h.update([0xff]),
        }
    };
    add(config);
    let mut files: Vec<PathBuf> = std::fs::read_dir(policies)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in &files {
        add(f);
    }
    for f in credentials {
        add(f);
    }
    h.finalize().into()
}

/// `[{"path", "sha256"}]` for the files a reload read (audit and API).
pub(crate) fn files_json(r: &Reloaded) -> serde_json::Value {
    r.files
        .iter()
        .map(|(p, h)| serde_json::json!({ "path": p.display().to_string(), "sha256": hex::encode(h) }))
        .collect()
}
