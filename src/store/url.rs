//! Store URLs: which backend a URL names, and where a relative SQLite path points.

use std::path::Path;

use super::StoreError;

/// The database behind a [`super::Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names: `sqlite:…` (including `sqlite://path` and
    /// `sqlite::memory:`), `postgres://…` or `postgresql://…`.
    pub fn of(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Whether a SQLite URL names an in-memory database (`sqlite::memory:`,
/// `sqlite://:memory:`, `sqlite://?mode=memory`).
pub(crate) fn is_sqlite_memory(url: &str) -> bool {
    let (database, params) = split_sqlite(url);
    database.is_empty()
        || database == ":memory:"
        || params.is_some_and(|p| p.contains("mode=memory"))
}

/// `sqlite:` URL → (percent-encoded path, query string).
fn split_sqlite(url: &str) -> (&str, Option<&str>) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    match rest.split_once('?') {
        Some((db, params)) => (db, Some(params)),
        None => (rest, None),
    }
}

/// Makes a relative SQLite path relative to `base_dir` instead of the process's
/// working directory. The gateway file's `[store] url = "sqlite://cordon.db"`
/// means `cordon.db` beside that file, like every other relative path in it
/// (`policies_dir`, `tls.cert`), whichever directory cordon is started from.
///
/// Absolute paths (`sqlite:///var/lib/cordon/cordon.db`), in-memory databases
/// and PostgreSQL URLs are returned unchanged. The query string
/// (`?mode=…`) is kept.
pub fn resolve_url(url: &str, base_dir: &Path) -> Result<String, StoreError> {
    if Backend::of(url)? != Backend::Sqlite || is_sqlite_memory(url) {
        return Ok(url.to_owned());
    }
    let (database, params) = split_sqlite(url);
    if Path::new(database).is_absolute() || base_dir.as_os_str().is_empty() {
        return Ok(url.to_owned());
    }
    let base = base_dir.to_str().ok_or_else(|| {
        StoreError::Path("the configuration directory's path is not valid UTF-8".to_owned())
    })?;
    // sqlx percent-decodes the path; the part taken from the URL is already
    // encoded, the directory is not.
    let base = base
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    let sep = if base.ends_with('/') { "" } else { "/" };
    let mut out = format!("sqlite://{base}{sep}{database}");
    if let Some(p) = params {
        out.push('?');
        out.push_str(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_recognised_by_scheme() {
        assert_eq!(Backend::of("sqlite://a.db"), Ok(Backend::Sqlite));
        assert_eq!(Backend::of("sqlite::memory:"), Ok(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://u@h/db"), Ok(Backend::Postgres));
        assert_eq!(Backend::of("postgresql://u@h/db"), Ok(Backend::Postgres));
        assert_eq!(
            Backend::of("mysql://root:hunter2@h/db"),
            Err(StoreError::UnsupportedUrl)
        );
        assert!(!StoreError::UnsupportedUrl.to_string().contains("hunter2"));
    }

    #[test]
    fn relative_sqlite_paths_are_resolved_against_the_config_directory() {
        let base = Path::new("/etc/cordon");
        assert_eq!(
            resolve_url("sqlite://cordon.db", base).unwrap(),
            "sqlite:///etc/cordon/cordon.db"
        );
        assert_eq!(
            resolve_url("sqlite:data/cordon.db?mode=rwc", base).unwrap(),
            "sqlite:///etc/cordon/data/cordon.db?mode=rwc"
        );
        assert_eq!(
            resolve_url("sqlite:///var/lib/cordon.db", base).unwrap(),
            "sqlite:///var/lib/cordon.db"
        );
        assert_eq!(
            resolve_url("sqlite://a.db", Path::new("/odd?dir%/")).unwrap(),
            "sqlite:///odd%3Fdir%25/a.db"
        );
        // A config given as a bare file name: its directory is the working directory.
        assert_eq!(
            resolve_url("sqlite://cordon.db", Path::new("")).unwrap(),
            "sqlite://cordon.db"
        );
        for unchanged in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "postgres://postgres@127.0.0.1/test",
        ] {
            assert_eq!(resolve_url(unchanged, base).unwrap(), unchanged);
        }
        assert_eq!(
            resolve_url("redis://x", base),
            Err(StoreError::UnsupportedUrl)
        );
    }
}
