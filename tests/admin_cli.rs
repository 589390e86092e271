//! `cordon admin-token create|list|revoke`, the audit entries CLI actions
//! append, and `cordon audit verify` (including on a log tampered with by
//! someone who owns the database), through the real binary against a SQLite
//! store beside a temporary gateway file.

#![expect(
    clippy::unwrap_used,
    reason = "test scaffolding outside #[test] functions: a failed setup should abort the test"
)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use cordon::audit::{AuditEntry, NewAuditEntry, Outcome};
use cordon::auth::key::KeyId;
use cordon::auth::token::{PresentedToken, Role};
use cordon::store::Store;
use sqlx::sqlite::SqlitePoolOptions;

const GATEWAY: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"

[store]
url = "sqlite://cordon.db"

[[providers]]
id = "eu-host"
api = "openai"
base_url = "https://eu.example/v1"
models = { "chat" = "chat-large", "embed" = "embed-small" }
  [providers.data]
  jurisdiction = "FR"
  processing = ["FR"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 0
"#;

const TENANT: &str = r#"
tenant = "acme"
[data]
processing_in = ["EEA"]
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("policies")).unwrap();
        fs::write(dir.path().join("cordon.toml"), GATEWAY).unwrap();
        fs::write(dir.path().join("policies/acme.toml"), TENANT).unwrap();
        Fixture { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("cordon.toml")
    }

    fn cordon(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }

    /// Runs `args`, which must succeed, and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cordon(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs `args`, which must exit 1, and returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.cordon(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    /// Runs `admin-token create` with `extra` and returns (id, raw token).
    fn create_token(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec!["admin-token", "create"];
        args.extend_from_slice(extra);
        let out = self.cordon(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .to_owned()
        };
        let (id, raw) = (field("id:"), field("token:"));
        assert_eq!(stdout.matches(raw.as_str()).count(), 1, "printed once");
        assert!(!text(&out.stderr).contains(&raw), "not on stderr");
        (id, raw)
    }

    fn create_key(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec!["keys", "create", "--tenant", "acme"];
        args.extend_from_slice(extra);
        let stdout = self.ok(&args);
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .to_owned()
        };
        (field("id:"), field("key:"))
    }

    fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("cordon.db").display())
    }

    /// Every file of the SQLite store (database, WAL, shared memory), concatenated.
    fn store_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("cordon.db") {
                bytes.extend(fs::read(&path).unwrap());
            }
        }
        bytes
    }

    /// Runs `f` against the store, as another process would.
    fn with_store<T>(&self, f: impl AsyncFnOnce(&Store) -> T) -> T {
        runtime().block_on(async {
            let store = Store::connect(&self.store_url()).await.unwrap();
            let out = f(&store).await;
            store.close().await;
            out
        })
    }

    fn audit_log(&self) -> Vec<AuditEntry> {
        self.with_store(async |s| s.audit_entries(i64::MIN, None, 1_000).await.unwrap())
    }

    /// Runs SQL statements directly, as the database's owner: the triggers
    /// that keep the log append-only are dropped first.
    fn tamper(&self, statements: &[&str]) {
        runtime().block_on(async {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&self.store_url())
                .await
                .unwrap();
            for sql in [
                "DROP TRIGGER audit_no_update",
                "DROP TRIGGER audit_no_delete",
            ]
            .iter()
            .chain(statements)
            {
                sqlx::query(sqlx::AssertSqlSafe(*sql))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        });
    }
}

/// (seq, actor, action, tenant, target, outcome) of an audit entry.
type Summary<'a> = (
    i64,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Outcome,
);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn admin_tokens_are_created_once_listed_and_revoked() {
    let fx = Fixture::new();
    let (admin, admin_raw) = fx.create_token(&["--role", "platform-admin", "--name", "ops"]);
    let (tenant_admin, tenant_raw) = fx.create_token(&[
        "--role",
        "tenant-admin",
        "--tenant",
        "acme",
        "--expires-in",
        "30d",
    ]);
    let (viewer, _) = fx.create_token(&["--role", "viewer", "--tenant", "acme"]);
    assert!(admin_raw.starts_with("cdnadm_"));

    // Only the hash of the secret is stored, and it is the one a presented
    // token splits into.
    let stored = fx.with_store(async |s| {
        s.get_admin_token(&KeyId::parse(&tenant_admin).unwrap())
            .await
            .unwrap()
            .unwrap()
    });
    let (id, hash) = PresentedToken::split(&tenant_raw).unwrap();
    assert_eq!(id, tenant_admin);
    assert!(stored.hash.ct_eq(&hash));
    assert_eq!(stored.role, Role::TenantAdmin);
    assert_eq!(stored.tenant.as_deref(), Some("acme"));
    assert!(stored.expires_ms.is_some());
    let bytes = fx.store_bytes();
    for raw in [&admin_raw, &tenant_raw] {
        let secret = raw.rsplit('_').next().unwrap();
        assert!(!contains(&bytes, raw), "raw token in the store");
        assert!(!contains(&bytes, secret), "secret in the store");
    }

    let listing = fx.ok(&["admin-token", "list"]);
    let header = listing.lines().next().unwrap();
    for column in [
        "ID",
        "ROLE",
        "TENANT",
        "NAME",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "REVOKED",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = |id: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_owned()
    };
    assert!(row(&admin).contains("platform-admin") && row(&admin).contains("ops"));
    assert!(row(&tenant_admin).contains("tenant-admin") && row(&tenant_admin).contains("acme"));
    assert!(row(&viewer).contains("viewer"));
    for raw in [&admin_raw, &tenant_raw] {
        let secret = raw.rsplit('_').next().unwrap();
        assert!(!listing.contains(secret), "{listing}");
    }
    assert!(!listing.contains(&stored.hash.to_hex()[..16]), "no hash");

    let out = fx.ok(&["admin-token", "revoke", &viewer]);
    assert!(
        out.contains(&format!("revoked admin token {viewer}")),
        "{out}"
    );
    let out = fx.ok(&["admin-token", "revoke", &viewer]);
    assert!(out.contains("already revoked"), "{out}");
    let listing = fx.ok(&["admin-token", "list"]);
    let revoked = listing.lines().find(|l| l.starts_with(&viewer)).unwrap();
    assert!(revoked.trim_end().ends_with("UTC"), "{revoked}");
    let err = fx.fails(&["admin-token", "revoke", "zzzzzzzz"]);
    assert!(err.contains("no admin token with id zzzzzzzz"), "{err}");
    let err = fx.fails(&["admin-token", "revoke", "not-an-id"]);
    assert!(err.contains("not a token id"), "{err}");
}

#[test]
fn roles_and_tenants_must_agree() {
    let fx = Fixture::new();
    assert_eq!(fx.ok(&["admin-token", "list"]).trim(), "no admin tokens");
    for (args, says) in [
        (
            &["admin-token", "create", "--role", "tenant-admin"][..],
            "pass --tenant",
        ),
        (
            &["admin-token", "create", "--role", "viewer"][..],
            "pass --tenant",
        ),
        (
            &[
                "admin-token",
                "create",
                "--role",
                "auditor",
                "--tenant",
                "acme",
            ][..],
            "--tenant is not allowed",
        ),
        (
            &[
                "admin-token",
                "create",
                "--role",
                "platform-admin",
                "--tenant",
                "acme",
            ][..],
            "--tenant is not allowed",
        ),
        (
            &[
                "admin-token",
                "create",
                "--role",
                "viewer",
                "--tenant",
                "nobody",
            ][..],
            "unknown tenant `nobody`",
        ),
    ] {
        let out = fx.cordon(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "no token printed");
    }
    let out = fx.cordon(&["admin-token", "create", "--role", "root"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a role"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fx.ok(&["admin-token", "list"]).trim(), "no admin tokens");
}

#[test]
fn key_scope_is_set_at_creation_and_listed() {
    let fx = Fixture::new();
    let (scoped, _) = fx.create_key(&["--model", "chat*", "--model", "embed", "--rpm", "60"]);
    let (plain, _) = fx.create_key(&[]);
    let listing = fx.ok(&["keys", "list", "--tenant", "acme"]);
    let header = listing.lines().next().unwrap();
    assert!(
        header.contains("MODELS") && header.contains("RPM"),
        "{header}"
    );
    let row = listing.lines().find(|l| l.starts_with(&scoped)).unwrap();
    assert!(row.contains("chat*,embed") && row.contains(" 60 "), "{row}");
    let row = listing.lines().find(|l| l.starts_with(&plain)).unwrap();
    assert!(row.contains(" any "), "{row}");
    let stored = fx.with_store(async |s| {
        s.get_key(&KeyId::parse(&scoped).unwrap())
            .await
            .unwrap()
            .unwrap()
    });
    assert_eq!(
        stored.scope.models,
        Some(vec!["chat*".to_owned(), "embed".to_owned()])
    );
    assert_eq!(stored.scope.rpm, Some(60));

    let err = fx.fails(&[
        "keys", "create", "--tenant", "acme", "--model", "chat[", "--rpm", "5",
    ]);
    assert!(err.contains("not a valid glob"), "{err}");
    let out = fx.cordon(&["keys", "create", "--tenant", "acme", "--rpm", "0"]);
    assert!(!out.status.success(), "a zero limit is refused");
}

#[test]
fn cli_actions_are_audited_without_secrets_and_the_chain_verifies() {
    let fx = Fixture::new();
    let out = fx.ok(&["audit", "verify"]);
    assert_eq!(
        out.trim(),
        format!("0 entries, chain intact; last hash {}", "0".repeat(64))
    );

    let (key, raw_key) = fx.create_key(&[]);
    fx.ok(&["keys", "revoke", &key]);
    fx.ok(&["keys", "revoke", &key]);
    fx.fails(&["keys", "revoke", "zzzzzzzz"]);
    let (token, raw_token) = fx.create_token(&["--role", "tenant-admin", "--tenant", "acme"]);
    fx.ok(&["admin-token", "revoke", &token]);
    // Refused before the store is opened: nothing to audit.
    fx.fails(&["keys", "create", "--tenant", "nobody"]);

    let log = fx.audit_log();
    let summary: Vec<Summary<'_>> = log
        .iter()
        .map(|e| {
            (
                e.seq,
                e.actor.as_str(),
                e.action.as_str(),
                e.tenant.as_deref(),
                e.target.as_deref(),
                e.outcome,
            )
        })
        .collect();
    let (k, t) = (Some(key.as_str()), Some(token.as_str()));
    assert_eq!(
        summary,
        [
            (1, "cli", "key.create", Some("acme"), k, Outcome::Success),
            (2, "cli", "key.revoke", Some("acme"), k, Outcome::Success),
            (3, "cli", "key.revoke", Some("acme"), k, Outcome::Failure),
            (
                4,
                "cli",
                "key.revoke",
                None,
                Some("zzzzzzzz"),
                Outcome::Failure
            ),
            (
                5,
                "cli",
                "admin_token.create",
                Some("acme"),
                t,
                Outcome::Success
            ),
            (
                6,
                "cli",
                "admin_token.revoke",
                Some("acme"),
                t,
                Outcome::Success
            ),
        ]
    );
    assert_eq!(
        log[2].detail.as_deref(),
        Some(r#"{"reason":"already revoked"}"#)
    );
    assert_eq!(log[4].detail.as_deref(), Some(r#"{"role":"tenant-admin"}"#));
    let everything = format!("{log:?}");
    for raw in [&raw_key, &raw_token] {
        let secret = raw.rsplit('_').next().unwrap();
        assert!(!everything.contains(secret), "{everything}");
    }

    let out = fx.ok(&["audit", "verify"]);
    assert_eq!(
        out.trim(),
        format!("6 entries, chain intact; last hash {}", log[5].hash)
    );
}

/// A log of five entries, tampered with by `statements` (after the triggers
/// are dropped); `audit verify` must exit 1 naming `seq` and `kind`.
fn assert_tampering_found(statements: &[&str], seq: i64, kind: &str) {
    let fx = Fixture::new();
    fx.with_store(async |s| {
        for i in 1..=5 {
            let e = NewAuditEntry::new(i, "cli", "key.create", Outcome::Success)
                .tenant(Some("acme"))
                .target(&format!("key0000{i}"));
            s.append_audit(&e).await.unwrap();
        }
    });
    fx.ok(&["audit", "verify"]);
    fx.tamper(statements);
    let err = fx.fails(&["audit", "verify"]);
    let want = format!("audit chain broken at entry {seq}: {kind}");
    assert!(
        err.contains(&want),
        "{statements:?}: want {want:?}, got {err}"
    );
}

#[test]
fn tampering_by_the_database_owner_is_found_at_the_right_entry() {
    // An edited field.
    assert_tampering_found(
        &["UPDATE audit SET actor = 'token:intruder' WHERE seq = 3"],
        3,
        "edited",
    );
    // A deleted entry, first or in the middle.
    assert_tampering_found(&["DELETE FROM audit WHERE seq = 2"], 2, "missing");
    assert_tampering_found(&["DELETE FROM audit WHERE seq = 1"], 1, "missing");
    // Two rows swapped (their numbers exchanged).
    assert_tampering_found(
        &[
            "UPDATE audit SET seq = 100 WHERE seq = 2",
            "UPDATE audit SET seq = 2 WHERE seq = 4",
            "UPDATE audit SET seq = 4 WHERE seq = 100",
        ],
        2,
        "edited",
    );
    // A deletion hidden by renumbering the later entries.
    assert_tampering_found(
        &[
            "DELETE FROM audit WHERE seq = 3",
            "UPDATE audit SET seq = seq + 100 WHERE seq > 3",
            "UPDATE audit SET seq = seq - 101 WHERE seq > 100",
        ],
        3,
        "edited",
    );
}

#[test]
fn forged_entries_with_valid_hashes_are_found_by_their_links() {
    let fx = Fixture::new();
    let log = fx.with_store(async |s| {
        for i in 1..=4 {
            let e = NewAuditEntry::new(i, "cli", "key.create", Outcome::Success);
            s.append_audit(&e).await.unwrap();
        }
        s.audit_entries(i64::MIN, None, 10).await.unwrap()
    });
    // A forger who knows the encoding inserts an entry at 3, hashed and
    // linked to entry 2, and renumbers entries 3 and 4 with fresh hashes
    // over their own (old) previous hashes.
    let forged = NewAuditEntry::new(3, "cli", "key.revoke", Outcome::Success).link(3, log[1].hash);
    let mut moved: Vec<AuditEntry> = log[2..].to_vec();
    for e in &mut moved {
        e.seq += 1;
        e.hash = e.content_hash();
    }
    let insert = |e: &AuditEntry| {
        format!(
            "INSERT INTO audit (seq, time_ms, actor, action, outcome, prev_hash, hash) \
             VALUES ({}, {}, '{}', '{}', '{}', '{}', '{}')",
            e.seq, e.time_ms, e.actor, e.action, e.outcome, e.prev_hash, e.hash
        )
    };
    let statements: Vec<String> = std::iter::once("DELETE FROM audit WHERE seq >= 3".to_owned())
        .chain([&forged].into_iter().chain(&moved).map(insert))
        .collect();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    fx.tamper(&statements);
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains("audit chain broken at entry 4: relinked"),
        "{err}"
    );
}
