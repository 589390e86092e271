//! SQLite's threads run behind the requests.
//!
//! sqlx runs each SQLite connection on a thread of its own. That thread does
//! the store's background work: usage batches every 50 ms, the key sync, the
//! usage CLI's queries. None of it is on a request's path, but at the default
//! priority a batch competes with the request threads for the same cores, and
//! a request that arrives during one waits behind it. At a fixed 1 000
//! requests/s this lowered cordon's added p99 in each of four A/B pairs, from
//! +0.72–3.08 ms to +0.18–1.95 (`benches/README.md`).
//!
//! So each connection's thread gets the nice value [`NICE`] once it is open.
//! Linux keeps a nice value per thread, so the request threads keep theirs.
//! It is 10, not 19: at 10 the thread still gets about a tenth of a busy
//! core, more than the 7.8% of samples the batches took at the proxy's full
//! rate in the load benchmark, so records do not pile up behind a saturated
//! core (at 19 it would get 1.5%). Best effort: where it cannot be set,
//! it is logged at debug and the store works as before. PostgreSQL's work is
//! in the server, not in cordon's threads.

/// What sqlx's SQLite threads are named (`cordon-sqlite-<n>`).
pub(super) const SQLITE_THREAD: &str = "cordon-sqlite-";

/// The nice value of SQLite's threads (the request threads keep 0).
#[cfg(target_os = "linux")]
pub(super) const NICE: i32 = 10;

/// Lowers every SQLite thread of this process that is still above [`NICE`].
/// Runs after each connection opens (sqlx's `after_connect`), when that
/// connection's thread exists.
#[expect(
    clippy::unnecessary_wraps,
    reason = "the shape sqlx's after_connect wants"
)]
pub(super) fn lower_sqlite_threads() -> Result<(), sqlx::Error> {
    #[cfg(target_os = "linux")]
    for tid in threads_named(SQLITE_THREAD) {
        let Some(pid) = rustix::process::Pid::from_raw(tid) else {
            continue;
        };
        if rustix::process::getpriority_process(Some(pid)).is_ok_and(|n| n >= NICE) {
            continue;
        }
        if let Err(e) = rustix::process::setpriority_process(Some(pid), NICE) {
            tracing::debug!(error = %e, "could not lower a SQLite thread's priority");
        }
    }
    Ok(())
}

/// The ids of this process's threads whose name starts with `prefix` (the
/// kernel keeps the first 15 bytes of a name).
#[cfg(target_os = "linux")]
pub(super) fn threads_named(prefix: &str) -> Vec<i32> {
    let prefix = &prefix[..prefix.len().min(15)];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}
