//! `cordon check` and `cordon explain` through the real binary.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const GATEWAY: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"

[[providers]]
id = "eu-host"
api = "openai"
base_url = "https://eu.example/v1"
priority = 20
models = { "chat" = "chat-large" }
  [providers.data]
  jurisdiction = "FR"
  processing = ["FR"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 0
  certifications = ["iso27001"]
  review_by = 2027-06-30

[[providers]]
id = "us-host"
api = "openai"
base_url = "https://us.example/v1"
priority = 10
models = { "chat" = "chat-large", "embed" = "embed-small" }
  [providers.data]
  jurisdiction = "US"
  processing = ["US"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 30
  transfer = "dpf"
"#;

const TENANT: &str = r#"
tenant = "acme"
[data]
processing_in = ["EEA"]
[projects.strict]
data = { certifications = ["hds"] }
"#;

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("policies")).unwrap();
    fs::write(dir.path().join("cordon.toml"), GATEWAY).unwrap();
    fs::write(dir.path().join("policies/acme.toml"), TENANT).unwrap();
    let path = dir.path().join("cordon.toml");
    (dir, path)
}

fn cordon(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn explain_json_has_the_documented_shape() {
    let (_dir, cfg) = fixture();
    let out = cordon(
        &cfg,
        &[
            "explain",
            "--tenant",
            "acme",
            "--model",
            "chat",
            "--at",
            "2027-01-01",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["model"], "chat");
    assert_eq!(v["project"], Value::Null);
    assert_eq!(v["eligible"], serde_json::json!(["eu-host"]));
    let providers = v["providers"].as_array().unwrap();
    // Eligible first, then the rest by (priority, id).
    let ids: Vec<&str> = providers
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["eu-host", "us-host"]);
    assert_eq!(providers[0]["eligible"], true);
    assert_eq!(providers[0]["failed_rules"], serde_json::json!([]));
    assert_eq!(providers[1]["eligible"], false);
    let rules = providers[1]["failed_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["rule"], "processing_in");
    assert_eq!(rules[0]["layer"], "tenant");
    assert!(rules[0]["detail"].as_str().unwrap().contains("US"));
    assert_eq!(v["policy_version"].as_str().unwrap().len(), 12);
}

#[test]
fn explain_reports_project_layer_and_staleness_by_date() {
    let (_dir, cfg) = fixture();
    let out = cordon(
        &cfg,
        &[
            "explain",
            "--tenant",
            "acme",
            "--project",
            "strict",
            "--model",
            "chat",
            "--at",
            "2027-07-01",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["project"], "strict");
    assert_eq!(v["eligible"], serde_json::json!([]));
    let eu = &v["providers"][1];
    assert_eq!(eu["id"], "eu-host");
    let rules: Vec<(&str, &str)> = eu["failed_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rule"].as_str().unwrap(), r["layer"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rules,
        [("certifications", "project"), ("stale_terms", "provider")]
    );
}

#[test]
fn explain_text_names_each_failed_rule() {
    let (_dir, cfg) = fixture();
    let out = cordon(
        &cfg,
        &[
            "explain",
            "--tenant",
            "acme",
            "--model",
            "chat",
            "--at",
            "2027-01-01",
        ],
    );
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("eligible, in routing order: eu-host"), "{s}");
    assert!(s.contains("us-host — not eligible"), "{s}");
    assert!(s.contains("processing_in (tenant)"), "{s}");
}

#[test]
fn explain_unknown_tenant_and_bad_date_fail_cleanly() {
    let (_dir, cfg) = fixture();
    let out = cordon(&cfg, &["explain", "--tenant", "nobody", "--model", "chat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no policy for tenant `nobody`"));

    let out = cordon(
        &cfg,
        &[
            "explain",
            "--tenant",
            "acme",
            "--model",
            "chat",
            "--at",
            "2027-13-01",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(text(&out.stderr).contains("YYYY-MM-DD"));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn check_prints_routes_per_tenant_and_project() {
    let (_dir, cfg) = fixture();
    let out = cordon(&cfg, &["check", "--at", "2027-01-01"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("valid — 2 providers, 2 models, 1 tenants"),
        "{s}"
    );
    assert!(s.contains("tenant acme\n"), "{s}");
    assert!(s.contains("tenant acme project strict"), "{s}");
    // `embed` is served only from the US: refused, with the reason.
    assert!(s.contains("none (us-host: processing_in)"), "{s}");
}

/// The fixture with a credential for each provider: `eu-host` from the
/// variable `CORDON_TEST_EU_KEY`, `us-host` from the file `secrets/us`.
fn fixture_with_credentials() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = fixture();
    let gateway = GATEWAY
        .replace(
            "priority = 20\n",
            "priority = 20\nauth = { env = \"CORDON_TEST_EU_KEY\" }\n",
        )
        .replace(
            "priority = 10\n",
            "priority = 10\nauth = { header = \"api-key\", file = \"secrets/us\" }\n",
        );
    fs::write(&path, gateway).unwrap();
    (dir, path)
}

fn explain_json(cfg: &Path, eu_key: Option<&str>) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
    cmd.args(["explain", "--tenant", "acme", "--model", "chat"])
        .args(["--at", "2027-01-01", "--json", "--config"])
        .arg(cfg)
        .env_remove("CORDON_TEST_EU_KEY");
    if let Some(k) = eu_key {
        cmd.env("CORDON_TEST_EU_KEY", k);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("canary"),
        "no credential is shown"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn explain_shows_a_provider_without_a_credential_as_not_eligible() {
    let (dir, cfg) = fixture_with_credentials();
    // `eu-host` passes the policy, but its variable is unset.
    let v = explain_json(&cfg, None);
    assert_eq!(v["eligible"], serde_json::json!([]));
    let ids: Vec<&str> = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["us-host", "eu-host"], "the others by (priority, id)");
    let eu = &v["providers"][1];
    assert_eq!(eu["eligible"], false);
    assert_eq!(
        eu["failed_rules"],
        serde_json::json!([{
            "rule": "credential",
            "layer": "provider",
            "detail": "credential variable `CORDON_TEST_EU_KEY` is not set",
        }])
    );
    // `us-host` fails the policy and has no credential file: both reported.
    let us: Vec<&str> = v["providers"][0]["failed_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(us, ["processing_in", "credential"]);
    let detail = v["providers"][0]["failed_rules"][1]["detail"]
        .as_str()
        .unwrap();
    assert!(detail.starts_with("credential file "), "{detail}");
    assert!(detail.contains("secrets/us cannot be read"), "{detail}");

    // With the credential set, `eu-host` is eligible again.
    let v = explain_json(&cfg, Some("canary-eu-1"));
    assert_eq!(v["eligible"], serde_json::json!(["eu-host"]));
    assert_eq!(v["providers"][0]["failed_rules"], serde_json::json!([]));

    // Text output names the rule too.
    fs::create_dir(dir.path().join("secrets")).unwrap();
    fs::write(dir.path().join("secrets/us"), "canary-us-1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["explain", "--tenant", "acme", "--model", "embed"])
        .args(["--at", "2027-01-01", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(s.contains("us-host — not eligible"), "{s}");
    assert!(!s.contains("credential"), "the file is there now: {s}");
}

#[test]
fn check_warns_of_a_missing_credential_and_still_succeeds() {
    let (_dir, cfg) = fixture_with_credentials();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", "--at", "2027-01-01", "--config"])
        .arg(&cfg)
        .env_remove("CORDON_TEST_EU_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].starts_with(
            "warning: provider `eu-host` has no credential (credential variable \
             `CORDON_TEST_EU_KEY` is not set)"
        ),
        "{err}"
    );
    assert!(
        warnings[1].starts_with("warning: provider `us-host` has no credential (credential file ")
    );
}
