//! `cordon keys create|list|revoke` and `cordon usage` through the real binary,
//! against a SQLite store beside a temporary gateway file.

#![expect(
    clippy::unwrap_used,
    reason = "test scaffolding outside #[test] functions: a failed setup should abort the test"
)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use cordon::auth::key::PresentedKey;
use cordon::store::Store;
use cordon::usage::UsageRecord;

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
models = { "chat" = "chat-large" }
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
[projects.research]
data = { processing_in = ["FR"] }
"#;

struct Fixture {
    dir: tempfile::TempDir,
    /// Where the binary runs: not the configuration's directory, to show the
    /// store's relative path is resolved against the latter.
    cwd: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("policies")).unwrap();
        fs::write(dir.path().join("cordon.toml"), GATEWAY).unwrap();
        fs::write(dir.path().join("policies/acme.toml"), TENANT).unwrap();
        Fixture {
            dir,
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("cordon.toml")
    }

    fn cordon(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .current_dir(self.cwd.path())
            .output()
            .unwrap()
    }

    /// Runs `keys create` and returns (id, raw key).
    fn create(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec!["keys", "create", "--tenant", "acme"];
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
        let (id, raw) = (field("id:"), field("key:"));
        assert_eq!(
            stdout.matches(raw.as_str()).count(),
            1,
            "printed once: {stdout}"
        );
        assert!(!text(&out.stderr).contains(&raw), "not on stderr");
        (id, raw)
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

    fn store_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("cordon.db").display())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The secret part of `cdn_<id>_<secret>` and the hex hash the store should hold.
fn secret_and_hash(raw: &str) -> (String, String) {
    let secret = raw.rsplit('_').next().unwrap().to_owned();
    let hash = PresentedKey::parse(raw).unwrap().hash.to_hex();
    (secret, hash)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn raw_keys_never_reach_the_store_files() {
    let fx = Fixture::new();
    let keys = [
        fx.create(&[]),
        fx.create(&["--name", "ci bot", "--project", "research"]),
        fx.create(&["--expires-in", "90d"]),
    ];
    assert!(
        fx.dir.path().join("cordon.db").exists(),
        "the store sits beside the gateway file"
    );
    assert!(
        !fx.cwd.path().join("cordon.db").exists(),
        "not in the working directory"
    );
    let bytes = fx.store_bytes();
    for (id, raw) in &keys {
        let (secret, hash) = secret_and_hash(raw);
        assert!(contains(&bytes, id), "positive control: the id is stored");
        assert!(
            contains(&bytes, &hash),
            "positive control: the hash is stored"
        );
        assert!(!contains(&bytes, raw), "raw key {id} found in the store");
        assert!(
            !contains(&bytes, &secret),
            "secret of {id} found in the store"
        );
    }
}

#[test]
fn list_shows_keys_but_never_a_hash_or_a_secret() {
    let fx = Fixture::new();
    let (id1, raw1) = fx.create(&["--name", "ci bot", "--project", "research"]);
    let (id2, raw2) = fx.create(&["--expires-in", "12h"]);
    let out = fx.cordon(&["keys", "list", "--tenant", "acme"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let header = listing.lines().next().unwrap();
    for column in [
        "ID",
        "NAME",
        "PROJECT",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "REVOKED",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row1 = listing.lines().find(|l| l.starts_with(&id1)).unwrap();
    assert!(
        row1.contains("ci bot") && row1.contains("research"),
        "{row1}"
    );
    let row2 = listing.lines().find(|l| l.starts_with(&id2)).unwrap();
    assert!(row2.contains("UTC"), "an expiry date: {row2}");
    let everything = format!("{listing}{}", text(&out.stderr));
    for raw in [&raw1, &raw2] {
        let (secret, hash) = secret_and_hash(raw);
        assert!(!everything.contains(raw.as_str()), "{everything}");
        assert!(!everything.contains(&secret), "{everything}");
        assert!(!everything.contains(&hash), "{everything}");
        assert!(!everything.contains(&hash[..16]), "not even a prefix");
    }
}

#[test]
fn keys_for_unknown_tenants_or_projects_are_refused() {
    let fx = Fixture::new();
    let out = fx.cordon(&["keys", "create", "--tenant", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown tenant `nobody`"));
    assert!(out.stdout.is_empty(), "no key printed");

    let out = fx.cordon(&["keys", "create", "--tenant", "acme", "--project", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no project `nope`"));
    assert!(out.stdout.is_empty(), "no key printed");

    let out = fx.cordon(&["keys", "list", "--tenant", "acme"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "no keys for tenant acme");

    let out = fx.cordon(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--expires-in",
        "90 days",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not a duration"));
}

#[test]
fn revoked_keys_show_as_revoked() {
    let fx = Fixture::new();
    let (id, _) = fx.create(&[]);
    let (other, _) = fx.create(&[]);
    let out = fx.cordon(&["keys", "revoke", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("revoked key {id}")));

    let listing = text(&fx.cordon(&["keys", "list", "--tenant", "acme"]).stdout);
    let revoked = listing.lines().find(|l| l.starts_with(&id)).unwrap();
    let active = listing.lines().find(|l| l.starts_with(&other)).unwrap();
    assert!(
        revoked.trim_end().ends_with("UTC"),
        "a revocation time: {revoked}"
    );
    assert!(active.trim_end().ends_with('-'), "not revoked: {active}");

    let again = fx.cordon(&["keys", "revoke", &id]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("already revoked"));

    let unknown = fx.cordon(&["keys", "revoke", "zzzzzzzz"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no key with id zzzzzzzz"));

    let malformed = fx.cordon(&["keys", "revoke", "not-an-id"]);
    assert_eq!(malformed.status.code(), Some(1));
}

fn record(time_ms: i64, model: &str, provider: Option<&str>) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{time_ms}").into(),
        time_ms,
        tenant: "acme".into(),
        project: None,
        key_id: "abcd1234".into(),
        endpoint: "chat.completions",
        model: model.into(),
        provider: provider.map(Into::into),
        upstream_model: None,
        policy_version: None,
        prompt_tokens: provider.map(|_| 100),
        completion_tokens: provider.map(|_| 7),
        status: if provider.is_some() { 200 } else { 403 },
        outcome: if provider.is_some() { "ok" } else { "refused" },
        attempts: 1,
        providers_tried: provider.unwrap_or_default().into(),
        latency_ms: 10.0,
        ttft_ms: None,
        overhead_ms: 1.0,
        streamed: false,
        client_api: "openai",
        provider_api: None,
    }
}

#[test]
fn usage_prints_totals_by_model_and_provider() {
    let fx = Fixture::new();
    let out = fx.cordon(&["usage", "--tenant", "acme"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no requests"));

    // 2026-01-01 and 2026-02-01, UTC.
    let (jan, feb) = (1_767_225_600_000, 1_769_904_000_000);
    runtime().block_on(async {
        let store = Store::connect(&fx.store_url()).await.unwrap();
        store
            .insert_usage(&[
                record(jan, "chat", Some("eu-host")),
                record(feb, "chat", Some("eu-host")),
                record(feb + 1, "embed", Some("us-host")),
                record(feb + 2, "chat", None),
            ])
            .await
            .unwrap();
        store.close().await;
    });

    let out = fx.cordon(&["usage", "--tenant", "acme", "--by", "model"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let row = |first: &str| {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(first))
            .unwrap_or_else(|| panic!("no {first} row in {stdout}"));
        cells(line)
    };
    assert_eq!(row("chat"), ["chat", "3", "200", "14", "1"]);
    assert_eq!(row("embed"), ["embed", "1", "100", "7", "0"]);
    assert_eq!(row("total"), ["total", "4", "300", "21", "1"]);

    let out = fx.cordon(&[
        "usage",
        "--tenant",
        "acme",
        "--since",
        "2026-02-01",
        "--by",
        "provider",
    ]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("since 2026-02-01 00:00 UTC"), "{stdout}");
    let row = |first: &str| {
        let line = stdout.lines().find(|l| l.starts_with(first)).unwrap();
        cells(line)
    };
    assert_eq!(row("(none)"), ["(none)", "1", "0", "0", "1"]);
    assert_eq!(row("eu-host"), ["eu-host", "1", "100", "7", "0"]);
    assert_eq!(row("total"), ["total", "3", "200", "14", "1"]);

    let out = fx.cordon(&["usage", "--tenant", "acme", "--since", "last tuesday"]);
    assert!(!out.status.success());
}

#[test]
fn usage_groups_by_key_project_and_day_as_table_json_and_csv() {
    let fx = Fixture::new();
    // 2026-01-01 and 2026-02-01, UTC.
    let (jan, feb) = (1_767_225_600_000_i64, 1_769_904_000_000_i64);
    let with = |time_ms, key: &str, project: Option<&str>, provider| UsageRecord {
        key_id: key.into(),
        project: project.map(Into::into),
        ..record(time_ms, "chat", provider)
    };
    runtime().block_on(async {
        let store = Store::connect(&fx.store_url()).await.unwrap();
        store
            .insert_usage(&[
                with(jan, "key00001", Some("research"), Some("eu-host")),
                with(jan + 86_399_999, "key00001", None, Some("eu-host")),
                with(feb, "key00002", Some("research"), None),
                with(feb + 1, "key00002", Some("ops, \"eu\""), Some("eu-host")),
            ])
            .await
            .unwrap();
        store.close().await;
    });
    let usage = |extra: &[&str]| {
        let mut args = vec!["usage", "--tenant", "acme"];
        args.extend_from_slice(extra);
        let out = fx.cordon(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };

    let table = usage(&["--by", "day"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[1].starts_with("DAY"), "{table}");
    assert!(lines[2].starts_with("2026-01-01  2 "), "{table}");
    assert!(lines[3].starts_with("2026-02-01  2 "), "{table}");
    assert!(lines[4].starts_with("total"), "{table}");

    let json = usage(&["--by", "project", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"project": "(none)", "requests": 1, "prompt_tokens": 100, "completion_tokens": 7, "refused": 0},
            {"project": "ops, \"eu\"", "requests": 1, "prompt_tokens": 100, "completion_tokens": 7, "refused": 0},
            {"project": "research", "requests": 2, "prompt_tokens": 100, "completion_tokens": 7, "refused": 1},
        ])
    );

    assert_eq!(
        usage(&["--by", "project", "--format", "csv"]),
        "project,requests,prompt_tokens,completion_tokens,refused\n\
         (none),1,100,7,0\n\
         \"ops, \"\"eu\"\"\",1,100,7,0\n\
         research,2,100,7,1\n"
    );
    assert_eq!(
        usage(&["--by", "key", "--format", "csv", "--until", "2026-02-01"]),
        "key,requests,prompt_tokens,completion_tokens,refused\n\
         key00001,2,200,14,0\n",
        "until is exclusive: February is left out"
    );
    assert_eq!(
        usage(&["--format", "csv", "--since", "2026-02-01"]),
        "requests,prompt_tokens,completion_tokens,refused\n2,100,7,1\n",
        "without --by: one row in all"
    );
    let json = usage(&[
        "--by",
        "provider",
        "--format",
        "json",
        "--since",
        "2027-01-01",
    ]);
    assert_eq!(json.trim(), "[]", "no requests: an empty array");

    let table = usage(&["--since", "2026-01-15", "--until", "2026-03-01"]);
    assert!(
        table.contains("since 2026-01-15 00:00 UTC, until 2026-03-01 00:00 UTC"),
        "{table}"
    );
    let out = fx.cordon(&[
        "usage",
        "--tenant",
        "acme",
        "--since",
        "2026-03-01",
        "--until",
        "2026-02-01",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--since must be before --until"));
    let out = fx.cordon(&["usage", "--tenant", "acme", "--format", "xml"]);
    assert!(!out.status.success());
}

#[test]
fn usage_and_keys_report_an_unreachable_store_without_its_url() {
    let fx = Fixture::new();
    let gateway = GATEWAY.replace(
        "sqlite://cordon.db",
        "postgres://cordon:hunter2@127.0.0.1:1/cordon",
    );
    fs::write(fx.config(), gateway).unwrap();
    let out = fx.cordon(&["keys", "list", "--tenant", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: store connect failed"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
