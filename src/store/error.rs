//! [`StoreError`]: what went wrong, never with what values.
//!
//! A database driver's error can carry the values a statement was given (for
//! example PostgreSQL's `DETAIL: Key (hash)=(…) already exists`). Those values
//! include key hashes, so no `sqlx::Error` is kept, displayed or chained as a
//! `source`: each is reduced, when it happens, to a description built only from
//! its kind, SQLSTATE code and constraint or table name.

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;

/// A store failure. `Display` and `Debug` hold no SQL parameter values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:…` nor `postgres://…`. The URL itself is not
    /// repeated: it may hold a password.
    #[error("unsupported store URL: expected `sqlite:…`, `postgres://…` or `postgresql://…`")]
    UnsupportedUrl,
    /// A relative SQLite path could not be resolved against the configuration's directory.
    #[error("cannot resolve the SQLite path: {0}")]
    Path(String),
    /// `insert_key` with an id that is already taken (generate another key).
    #[error("a key with this id already exists")]
    DuplicateKey,
    /// `insert_admin_token` with an id that is already taken (generate another token).
    #[error("an admin token with this id already exists")]
    DuplicateToken,
    /// `replace_credentials` found a credential deleted or set again (or
    /// never stored) since it was read; nothing was replaced.
    #[error(
        "a credential being replaced was deleted or set again since it was read; nothing was changed"
    )]
    CredentialChanged,
    /// A row holds something this version cannot read (e.g. a malformed hash).
    #[error("corrupt row in `{table}`: {what}")]
    Corrupt {
        table: &'static str,
        what: &'static str,
    },
    #[error("cannot migrate the store schema: {0}")]
    Migrate(String),
    /// Any other database failure, with the operation that failed.
    #[error("store {op} failed: {detail}")]
    Database { op: &'static str, detail: String },
}

impl StoreError {
    /// Wraps a driver error raised by `op`, keeping only a safe description.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |e| StoreError::Database {
            op,
            detail: describe(&e),
        }
    }

    pub(crate) fn migrate(e: &MigrateError) -> StoreError {
        StoreError::Migrate(describe_migrate(e))
    }
}

/// A description of `e` that never includes a bound value.
pub(crate) fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => describe_database(d.as_ref()),
        // The OS message ("Connection refused (os error 111)"): no values.
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        sqlx::Error::Configuration(_) => "invalid store URL or connection options".to_owned(),
        sqlx::Error::InvalidArgument(_) => "invalid argument".to_owned(),
        sqlx::Error::Tls(_) => "TLS error".to_owned(),
        sqlx::Error::Protocol(_) => "protocol error".to_owned(),
        sqlx::Error::RowNotFound => "row not found".to_owned(),
        sqlx::Error::TypeNotFound { .. } => "unknown database type".to_owned(),
        sqlx::Error::ColumnIndexOutOfBounds { index, len } => {
            format!("column index {index} out of bounds ({len} columns)")
        }
        sqlx::Error::ColumnNotFound(name) => format!("column `{name}` not found"),
        sqlx::Error::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        sqlx::Error::Encode(_) => "cannot encode a value".to_owned(),
        sqlx::Error::Decode(_) => "cannot decode a value".to_owned(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_owned(),
        sqlx::Error::PoolClosed => "the connection pool is closed".to_owned(),
        sqlx::Error::WorkerCrashed => "the database worker crashed".to_owned(),
        sqlx::Error::Migrate(m) => describe_migrate(m),
        _ => "database error".to_owned(),
    }
}

fn describe_database(d: &dyn DatabaseError) -> String {
    let kind = match d.kind() {
        ErrorKind::UniqueViolation => "unique constraint violated",
        ErrorKind::ForeignKeyViolation => "foreign key constraint violated",
        ErrorKind::NotNullViolation => "not-null constraint violated",
        ErrorKind::CheckViolation => "check constraint violated",
        ErrorKind::ExclusionViolation => "exclusion constraint violated",
        _ => "database error",
    };
    let mut s = kind.to_owned();
    if let Some(code) = d.code() {
        s.push_str(&format!(" (code {code})"));
    }
    if let Some(c) = d.constraint() {
        s.push_str(&format!(", constraint `{c}`"));
    }
    if let Some(t) = d.table() {
        s.push_str(&format!(", table `{t}`"));
    }
    // SQLite's messages are built from the schema ("UNIQUE constraint failed:
    // keys.id", "no such table: keys") and never quote a bound value;
    // PostgreSQL's may ("invalid input syntax for type bigint: \"…\""), so
    // only SQLite's are shown.
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        s.push_str(": ");
        s.push_str(d.message());
    }
    s
}

fn describe_migrate(e: &MigrateError) -> String {
    match e {
        MigrateError::Execute(inner) => describe(inner),
        MigrateError::ExecuteMigration(inner, version) => {
            format!("migration {version}: {}", describe(inner))
        }
        MigrateError::Source(_) => "cannot resolve the embedded migrations".to_owned(),
        // The remaining variants carry only version numbers.
        other => other.to_string(),
    }
}
