//! `cordon check` against bad configuration files: every kind of mistake is
//! rejected with exit code 1 and an `error: <file>:<line>: `<key>`: <message>`
//! line that names the right file, line, key and offending value.
//!
//! Each test starts from one minimal valid fixture (a gateway file with two
//! providers and one tenant policy, see `valid_fixture_passes`) and makes one
//! change, so the error it expects can only come from that change. Expected
//! line numbers are computed from the text written, never hard-coded.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed setup step must fail the test"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

/// The minimal valid gateway file: two providers and a custom region group.
const GATEWAY: &str = r#"[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"

[regions]
nordics = ["DK", "FI", "IS", "NO", "SE"]

[[providers]]
id = "azure-fr"
api = "openai"
base_url = "https://example-fr.openai.azure.com/openai/v1"
auth = { header = "api-key", env = "AZURE_FR_KEY" }
priority = 10
models = { "gpt-4o" = "gpt-4o-2024-08-06", "gpt-4o-mini" = "gpt-4o-mini" }

  [providers.data]
  entity = "Microsoft Ireland Operations Ltd"
  jurisdiction = "US"
  processing = ["FR"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 0
  certifications = ["iso27001", "soc2-type2"]
  transfer = "scc"
  review_by = 2027-01-31
  expires = { soc2-type2 = 2027-03-31 }

[[providers]]
id = "mistral-eu"
api = "openai"
base_url = "https://api.mistral.ai/v1"
models = { "mistral-large" = "mistral-large-latest", "gpt-4o" = "gpt-4o" }

  [providers.data]
  jurisdiction = "FR"
  processing = ["FR", "SE"]
  dpa = "by-reference"
  trains_on_data = false
  retention_days = 30
  certifications = ["iso27001"]
"#;

/// The minimal valid tenant policy, written as `policies/acme.toml`.
const POLICY: &str = r#"tenant = "acme"
description = "Acme Health"

[data]
processing_in = ["EEA"]
jurisdiction_in = ["EU", "US"]
dpa = ["signed", "by-reference"]
no_training = true
max_retention_days = 30
certifications = ["iso27001"]
transfer = ["scc", "adequacy"]
exclude_providers = []

[models]
allow = ["gpt-4o*", "mistral-*"]

[routing]
order = ["mistral-eu", "azure-fr"]
failover = true

[limits]
requests_per_minute = 600

[projects.research]
data = { processing_in = ["nordics"] }
"#;

/// What `cordon check` prints first on success.
const SUCCESS: &str = ": valid — ";

// === fixture ===

/// A gateway file and a `policies/` directory in a fresh temporary directory.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(gateway: &str, policies: &[(&str, &str)]) -> Self {
        let dir = TempDir::new().expect("create temporary directory");
        std::fs::write(dir.path().join("cordon.toml"), gateway).expect("write gateway file");
        std::fs::create_dir(dir.path().join("policies")).expect("create policies directory");
        for (name, text) in policies {
            std::fs::write(dir.path().join("policies").join(name), text)
                .expect("write policy file");
        }
        Self { dir }
    }

    /// The fixture with the given gateway file and the valid policy.
    fn with_gateway(gateway: &str) -> Self {
        Self::new(gateway, &[("acme.toml", POLICY)])
    }

    /// The fixture with the valid gateway file and the given `acme.toml`.
    fn with_policy(policy: &str) -> Self {
        Self::new(GATEWAY, &[("acme.toml", policy)])
    }

    fn gateway(&self) -> PathBuf {
        self.dir.path().join("cordon.toml")
    }

    fn policy(&self, name: &str) -> PathBuf {
        self.dir.path().join("policies").join(name)
    }

    /// Runs the real binary, `cordon check --config <gateway>`, with an
    /// environment holding only `PATH` and `vars`.
    fn check(&self, vars: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cordon"));
        cmd.arg("check")
            .arg("--config")
            .arg(self.gateway())
            .env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(vars.iter().copied());
        cmd.output().expect("run cordon")
    }
}

// === text helpers ===

/// `text` with `from`, which must occur exactly once, replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "fixture edit: `{from}` must occur exactly once"
    );
    text.replacen(from, to, 1)
}

/// `text` with the line `new` inserted after the line containing `anchor`.
fn insert_after(text: &str, anchor: &str, new: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains(anchor))
        .expect("fixture edit: anchor not found");
    edit(text, line, &format!("{line}\n{new}"))
}

/// The 1-based line of `snippet`, which must occur exactly once in `text`.
fn line_of(text: &str, snippet: &str) -> usize {
    assert_eq!(
        text.matches(snippet).count(),
        1,
        "`{snippet}` must occur exactly once to locate its line"
    );
    let at = text.find(snippet).expect("snippet occurs");
    text[..at].matches('\n').count() + 1
}

// === assertions ===

/// One error `cordon check` must report.
struct Expected<'a> {
    file: PathBuf,
    /// `None` for an error about the file as a whole.
    line: Option<usize>,
    key: Option<&'a str>,
    /// Substrings the message must contain (the offending value, the reason).
    message: &'a [&'a str],
}

fn at<'a>(file: PathBuf, line: usize, key: &'a str, message: &'a [&'a str]) -> Expected<'a> {
    Expected {
        file,
        line: Some(line),
        key: Some(key),
        message,
    }
}

impl Expected<'_> {
    /// `error: <file>:<line>: `<key>`: `
    fn prefix(&self) -> String {
        let mut p = format!("error: {}", self.file.display());
        if let Some(line) = self.line {
            p.push_str(&format!(":{line}"));
        }
        p.push_str(": ");
        if let Some(key) = self.key {
            p.push_str(&format!("`{key}`: "));
        }
        p
    }

    fn matches(&self, line: &str) -> bool {
        line.strip_prefix(&self.prefix())
            .is_some_and(|rest| self.message.iter().all(|m| rest.contains(m)))
    }
}

/// `cordon check` failed cleanly, reporting `n` errors: exit code 1, no
/// panic, no success line, `n` `error:` lines and the count line.
fn assert_failed(out: &Output, n: usize) {
    let (stderr, context) = context(out);
    assert_eq!(out.status.code(), Some(1), "exit code\n{context}");
    assert!(!stderr.contains("panicked"), "cordon panicked\n{context}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(SUCCESS),
        "reported success\n{context}"
    );
    let errors = stderr.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(errors, n, "number of errors reported\n{context}");
    let count = format!(
        "{n} error{} in the configuration",
        if n == 1 { "" } else { "s" }
    );
    assert!(stderr.contains(&count), "count line `{count}`\n{context}");
}

/// stderr, and both streams for assertion messages.
fn context(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let context = format!("--- stdout:\n{stdout}\n--- stderr:\n{stderr}");
    (stderr, context)
}

/// The load was rejected with exactly the `expected` errors, in any order.
fn assert_rejected(out: &Output, expected: &[Expected<'_>]) {
    let (stderr, context) = context(out);
    for e in expected {
        assert!(
            stderr.lines().any(|l| e.matches(l)),
            "expected an error line starting with\n  {}\ncontaining {:?}\n{context}",
            e.prefix(),
            e.message
        );
    }
    assert_failed(out, expected.len());
}

/// The load was rejected with exactly one error, at `line` of `file` under `key`.
fn assert_one_error(out: &Output, file: PathBuf, line: usize, key: &str, message: &[&str]) {
    assert_rejected(out, &[at(file, line, key, message)]);
}

// === the fixture itself ===

#[test]
fn valid_fixture_passes() {
    let f = Fixture::with_policy(POLICY);
    let out = f.check(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("{}{SUCCESS}2 providers", f.gateway().display())),
        "{stdout}"
    );
    assert!(stdout.contains("1 tenants"), "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");
}

// === TOML syntax ===

#[test]
fn toml_syntax_error_in_gateway_file() {
    let gw = edit(
        GATEWAY,
        r#"api = "openai"
base_url = "https://api.mistral"#,
        r#"api = openai
base_url = "https://api.mistral"#,
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "api = openai");
    assert_one_error(&f.check(&[]), f.gateway(), line, "providers.api", &[]);
}

#[test]
fn toml_syntax_error_in_policy_file() {
    let policy = edit(POLICY, "no_training = true", "no_training = yes");
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "no_training = yes");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "data.no_training",
        &[],
    );
}

// === unknown keys ===

#[test]
fn unknown_key_in_server() {
    let gw = insert_after(
        GATEWAY,
        "admin_listen =",
        "metrics_listen = \"127.0.0.1:9100\"",
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "metrics_listen");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "server.metrics_listen",
        &["unknown field `metrics_listen`"],
    );
}

#[test]
fn unknown_key_in_provider() {
    let gw = insert_after(GATEWAY, "priority = 10", "weight = 3");
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "weight = 3");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.weight",
        &["unknown field `weight`"],
    );
}

#[test]
fn unknown_key_in_provider_data() {
    let gw = insert_after(
        GATEWAY,
        "retention_days = 30",
        "  trains_on_prompts = false",
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "trains_on_prompts");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.data.trains_on_prompts",
        &["unknown field `trains_on_prompts`"],
    );
}

#[test]
fn unknown_key_in_policy_data() {
    let policy = insert_after(POLICY, "max_retention_days = 30", "max_retention = 0");
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "max_retention = 0");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "data.max_retention",
        &["unknown field `max_retention`"],
    );
}

#[test]
fn unknown_key_in_project() {
    let policy = insert_after(
        POLICY,
        r#"data = { processing_in = ["nordics"] }"#,
        r#"model = { allow = ["gpt-4o"] }"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "model = {");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "projects.research.model",
        &["unknown field `model`"],
    );
}

/// The spec writes a project's rules as an inline table; a typo inside it
/// must be named by its full dotted key, not just the enclosing table.
#[test]
fn unknown_key_in_project_inline_data() {
    let policy = edit(
        POLICY,
        r#"data = { processing_in = ["nordics"] }"#,
        r#"data = { processing_in = ["nordics"], max_retention = 0 }"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "max_retention = 0");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "projects.research.data.max_retention",
        &["unknown field `max_retention`"],
    );
}

// === certifications ===

#[test]
fn unknown_certification_in_provider() {
    let gw = edit(
        GATEWAY,
        r#"certifications = ["iso27001", "soc2-type2"]"#,
        r#"certifications = ["iso27001", "soc2-type2", "soc2"]"#,
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, r#""soc2"]"#);
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.data.certifications",
        &["`soc2`", "x-"],
    );
}

#[test]
fn unknown_certification_in_policy() {
    let policy = edit(
        POLICY,
        r#"certifications = ["iso27001"]"#,
        r#"certifications = ["iso27001", "ISO27017"]"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "ISO27017");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "data.certifications",
        &["`ISO27017`"],
    );
}

#[test]
fn expiry_for_certification_the_provider_does_not_list() {
    let gw = edit(
        GATEWAY,
        "expires = { soc2-type2 = 2027-03-31 }",
        "expires = { soc2-type2 = 2027-03-31, iso27017 = 2027-06-30 }",
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "iso27017 = ");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.data.expires.iso27017",
        &["`iso27017`", "certifications"],
    );
}

// === countries and regions ===

#[test]
fn bad_country_code_in_provider_processing() {
    let gw = edit(
        GATEWAY,
        r#"processing = ["FR", "SE"]"#,
        r#"processing = ["FR", "UK"]"#,
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, r#""UK""#);
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.data.processing",
        &["`UK`", "ISO 3166-1"],
    );
}

#[test]
fn bad_country_code_in_provider_jurisdiction() {
    let gw = edit(GATEWAY, r#"jurisdiction = "US""#, r#"jurisdiction = "USA""#);
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, r#""USA""#);
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.data.jurisdiction",
        &["`USA`", "ISO 3166-1"],
    );
}

#[test]
fn bad_country_code_in_policy_processing_in() {
    let policy = edit(
        POLICY,
        r#"processing_in = ["EEA"]"#,
        r#"processing_in = ["EEA", "fr"]"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, r#""fr""#);
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "data.processing_in",
        &["`fr`"],
    );
}

#[test]
fn unknown_region_group_in_policy() {
    let policy = edit(
        POLICY,
        r#"data = { processing_in = ["nordics"] }"#,
        r#"data = { processing_in = ["nordic"] }"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, r#""nordic""#);
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "projects.research.data.processing_in",
        &["`nordic`", "region group"],
    );
}

#[test]
fn regions_may_not_redefine_a_builtin_group() {
    let gw = insert_after(GATEWAY, "nordics = [", r#"EU = ["FR", "DE"]"#);
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "EU = [");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "regions.EU",
        &["`EU`", "built in"],
    );
}

#[test]
fn adequacy_claimed_for_processing_in_the_us() {
    let gw = edit(
        GATEWAY,
        r#"processing = ["FR"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 0
  certifications = ["iso27001", "soc2-type2"]
  transfer = "scc""#,
        r#"processing = ["FR", "US"]
  dpa = "signed"
  trains_on_data = false
  retention_days = 0
  certifications = ["iso27001", "soc2-type2"]
  transfer = "adequacy""#,
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, r#"transfer = "adequacy""#);
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.data.transfer",
        &["adequacy", "US"],
    );
}

// === policy files ===

#[test]
fn tenant_must_equal_the_file_name() {
    let policy = edit(POLICY, r#"tenant = "acme""#, r#"tenant = "acme-health""#);
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "tenant = ");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "tenant",
        &["`acme-health`", "`acme`"],
    );
}

#[test]
fn reserved_policy_file_name() {
    let f = Fixture::new(
        GATEWAY,
        &[("acme.toml", POLICY), ("_template.toml", POLICY)],
    );
    assert_rejected(
        &f.check(&[]),
        &[Expected {
            file: f.policy("_template.toml"),
            line: None,
            key: None,
            message: &["reserved", "_floor.toml"],
        }],
    );
}

#[test]
fn unknown_provider_in_exclude_providers() {
    let policy = edit(
        POLICY,
        "exclude_providers = []",
        r#"exclude_providers = ["deepseek"]"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "deepseek");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "data.exclude_providers",
        &["unknown provider `deepseek`"],
    );
}

#[test]
fn unknown_provider_in_routing_order() {
    let policy = edit(
        POLICY,
        r#"order = ["mistral-eu", "azure-fr"]"#,
        r#"order = ["mistral-eu", "azure-fr", "openai-us"]"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "openai-us");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "routing.order",
        &["unknown provider `openai-us`"],
    );
}

#[test]
fn invalid_glob_in_models_allow() {
    let policy = edit(
        POLICY,
        r#"allow = ["gpt-4o*", "mistral-*"]"#,
        r#"allow = ["gpt-4o*", "mistral-[large"]"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "mistral-[large");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "models.allow",
        &["`mistral-[large`", "glob"],
    );
}

#[test]
fn bad_dpa_value_in_policy() {
    let policy = edit(
        POLICY,
        r#"dpa = ["signed", "by-reference"]"#,
        r#"dpa = ["signed", "yes"]"#,
    );
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, r#""yes""#);
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "data.dpa",
        &["`yes`", "signed, by-reference, pending, none"],
    );
}

#[test]
fn negative_max_retention_days() {
    let policy = edit(POLICY, "max_retention_days = 30", "max_retention_days = -1");
    let f = Fixture::with_policy(&policy);
    let line = line_of(&policy, "max_retention_days = -1");
    assert_one_error(
        &f.check(&[]),
        f.policy("acme.toml"),
        line,
        "data.max_retention_days",
        &["-1"],
    );
}

// === providers ===

#[test]
fn duplicate_provider_id() {
    let duplicate = r#"
[[providers]]
id = "azure-fr"   # the duplicate
api = "openai"
base_url = "https://example-se.openai.azure.com/openai/v1"
models = { "gpt-4o" = "gpt-4o" }
  [providers.data]
  processing = ["SE"]
"#;
    let gw = format!("{GATEWAY}{duplicate}");
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "# the duplicate");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.id",
        &["`azure-fr`", "twice"],
    );
}

#[test]
fn date_with_a_time() {
    let gw = edit(
        GATEWAY,
        "review_by = 2027-01-31",
        "review_by = 2027-01-31T10:00:00",
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "review_by = ");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.data.review_by",
        &["2027-01-31T10:00:00", "without a time"],
    );
}

// === environment variables ===

#[test]
fn missing_environment_variable() {
    let gw = edit(
        GATEWAY,
        r#"base_url = "https://api.mistral.ai/v1""#,
        r#"base_url = "https://${CORDON_TEST_MISSING_HOST}/v1""#,
    );
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "CORDON_TEST_MISSING_HOST");
    // `check` clears the environment, so the variable is unset.
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "providers.base_url",
        &["CORDON_TEST_MISSING_HOST", "not set"],
    );
}

#[test]
fn secret_header_value_never_appears_in_errors() {
    const CANARY: &str = "canary-9f8e7d";
    let gw = insert_after(
        GATEWAY,
        "priority = 10",
        r#"headers = { "x-secret" = "${CORDON_TEST_SECRET}" }"#,
    );
    // The one error: an unknown certification in the same provider.
    let gw = edit(
        &gw,
        r#"certifications = ["iso27001", "soc2-type2"]"#,
        r#"certifications = ["iso27001", "soc2-type2", "soc3"]"#,
    );
    let f = Fixture::with_gateway(&gw);
    let out = f.check(&[("CORDON_TEST_SECRET", CANARY)]);
    let line = line_of(&gw, "soc3");
    assert_one_error(
        &out,
        f.gateway(),
        line,
        "providers.data.certifications",
        &["`soc3`"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr.contains(CANARY),
        "secret leaked to stderr:\n{stderr}"
    );
    assert!(
        !stdout.contains(CANARY),
        "secret leaked to stdout:\n{stdout}"
    );
}

/// A value that came from the environment is never echoed in an error
/// (config/error.rs: "never a value that came from the environment").
#[test]
fn invalid_value_from_environment_is_not_echoed() {
    const CANARY: &str = "canary-listen-4c3b2a";
    let gw = edit(
        GATEWAY,
        r#"listen = "127.0.0.1:8080""#,
        r#"listen = "${CORDON_TEST_LISTEN}""#,
    );
    let f = Fixture::with_gateway(&gw);
    let out = f.check(&[("CORDON_TEST_LISTEN", CANARY)]);
    let line = line_of(&gw, "CORDON_TEST_LISTEN");
    assert_one_error(&out, f.gateway(), line, "server.listen", &["IP:port"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(CANARY),
        "environment value leaked:\n{stderr}"
    );
}

// === several errors ===

/// Errors in different files are all reported, not just the first.
#[test]
fn errors_in_several_files_are_all_reported() {
    let gw = edit(GATEWAY, r#"jurisdiction = "FR""#, r#"jurisdiction = "FRA""#);
    let acme = edit(
        POLICY,
        r#"dpa = ["signed", "by-reference"]"#,
        r#"dpa = ["signd"]"#,
    );
    let beta = r#"tenant = "beta"
[routing]
order = ["mistral"]
"#;
    let f = Fixture::new(&gw, &[("acme.toml", &acme), ("beta.toml", beta)]);
    let out = f.check(&[]);
    assert_rejected(
        &out,
        &[
            at(
                f.gateway(),
                line_of(&gw, "FRA"),
                "providers.data.jurisdiction",
                &["`FRA`"],
            ),
            at(
                f.policy("acme.toml"),
                line_of(&acme, "signd"),
                "data.dpa",
                &["`signd`"],
            ),
            at(
                f.policy("beta.toml"),
                line_of(beta, r#"["mistral"]"#),
                "routing.order",
                &["unknown provider `mistral`"],
            ),
        ],
    );
}

/// Several errors in one file are all reported, each at its own line.
#[test]
fn errors_in_one_file_are_all_reported() {
    let gw = edit(
        GATEWAY,
        r#"listen = "127.0.0.1:8080""#,
        r#"listen = "8080""#,
    );
    let gw = edit(
        &gw,
        r#"api = "openai"
base_url = "https://api"#,
        r#"api = "gemini"
base_url = "https://api"#,
    );
    let gw = edit(
        &gw,
        r#"processing = ["FR"]"#,
        r#"processing = ["FR", "ZZ"]"#,
    );
    let f = Fixture::with_gateway(&gw);
    assert_rejected(
        &f.check(&[]),
        &[
            at(
                f.gateway(),
                line_of(&gw, r#""8080""#),
                "server.listen",
                &["`8080`"],
            ),
            at(
                f.gateway(),
                line_of(&gw, "gemini"),
                "providers.api",
                &["`gemini`", "openai, anthropic"],
            ),
            at(
                f.gateway(),
                line_of(&gw, r#""ZZ"]"#),
                "providers.data.processing",
                &["`ZZ`"],
            ),
        ],
    );
}

/// A missing required key is named as such; the error must not point at
/// whichever key happens to be on the first line.
#[test]
fn missing_tenant_key_in_policy() {
    let policy = edit(POLICY, "tenant = \"acme\"\n", "");
    let f = Fixture::with_policy(&policy);
    let out = f.check(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Either `<file>:1: `tenant`: …` or `<file>: …` is right; naming the
    // `description` key on line 1 is not.
    let file = f.policy("acme.toml");
    let with_key = format!("error: {}:1: `tenant`: ", file.display());
    let without_key = format!("error: {}: ", file.display());
    let without_key_at_line = format!("error: {}:1: missing", file.display());
    let ok = stderr.lines().any(|l| {
        (l.starts_with(&with_key)
            || l.starts_with(&without_key)
            || l.starts_with(&without_key_at_line))
            && l.contains("missing field `tenant`")
    });
    assert!(
        ok,
        "expected a `missing field `tenant`` error that names `tenant` or no key\n{stderr}"
    );
    assert_failed(&out, 1);
}

#[test]
fn redis_limits_backend_is_refused_until_it_is_built() {
    let gw = format!("{GATEWAY}\n[limits]\nbackend = \"redis://127.0.0.1:6379\"\n");
    let f = Fixture::with_gateway(&gw);
    let line = line_of(&gw, "backend = ");
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line,
        "limits.backend",
        &["Redis backend is not supported", "use \"local\""],
    );
}

// === plain HTTP and TLS versions to providers ===

/// `cordon check` accepted the configuration.
fn assert_passes(out: &Output) {
    let (_, context) = context(out);
    assert_eq!(out.status.code(), Some(0), "exit code\n{context}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(SUCCESS),
        "{context}"
    );
}

#[test]
fn plain_http_base_url_to_a_remote_host_needs_allow_http() {
    let gw = edit(
        GATEWAY,
        r#"base_url = "https://api.mistral.ai/v1""#,
        r#"base_url = "http://api.mistral.ai/v1""#,
    );
    let f = Fixture::with_gateway(&gw);
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line_of(&gw, "http://api.mistral.ai"),
        "providers.base_url",
        &["loopback", "allow_http = true"],
    );

    // A host from the environment: refused the same way, never printed.
    let from_env = edit(
        GATEWAY,
        r#"base_url = "https://api.mistral.ai/v1""#,
        r#"base_url = "http://${CORDON_TEST_HOST}/v1""#,
    );
    let f = Fixture::with_gateway(&from_env);
    let out = f.check(&[("CORDON_TEST_HOST", "internal-llm-7f3a.example")]);
    assert_one_error(
        &out,
        f.gateway(),
        line_of(&from_env, "CORDON_TEST_HOST"),
        "providers.base_url",
        &["loopback"],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("internal-llm-7f3a"));

    // The opt-in, in the provider's own table.
    let opted_in = insert_after(&gw, "http://api.mistral.ai", "allow_http = true");
    assert_passes(&Fixture::with_gateway(&opted_in).check(&[]));

    // Loopback needs no opt-in.
    for host in [
        "127.0.0.1:8000",
        "localhost:8000",
        "[::1]:8000",
        "127.0.0.53",
    ] {
        let local = edit(
            GATEWAY,
            r#"base_url = "https://api.mistral.ai/v1""#,
            &format!(r#"base_url = "http://{host}/v1""#),
        );
        assert_passes(&Fixture::with_gateway(&local).check(&[]));
    }
}

#[test]
fn bad_min_tls_value() {
    let gw = insert_after(GATEWAY, "https://api.mistral.ai/v1", r#"min_tls = "1.1""#);
    let gw = format!("{gw}\n[upstream]\nmin_tls = \"TLSv1.3\"\n");
    let f = Fixture::with_gateway(&gw);
    assert_rejected(
        &f.check(&[]),
        &[
            at(
                f.gateway(),
                line_of(&gw, r#""1.1""#),
                "providers.min_tls",
                &["`1.1`", "\"1.2\", \"1.3\""],
            ),
            at(
                f.gateway(),
                line_of(&gw, "TLSv1.3"),
                "upstream.min_tls",
                &["`TLSv1.3`", "\"1.2\", \"1.3\""],
            ),
        ],
    );

    // Valid values, in the provider and gateway-wide.
    let good = insert_after(GATEWAY, "https://api.mistral.ai/v1", r#"min_tls = "1.2""#);
    let good = format!("{good}\n[upstream]\nmin_tls = \"1.3\"\n");
    assert_passes(&Fixture::with_gateway(&good).check(&[]));
}

#[test]
fn min_tls_on_a_plain_http_base_url() {
    let gw = edit(
        GATEWAY,
        r#"base_url = "https://api.mistral.ai/v1""#,
        "base_url = \"http://127.0.0.1:8000/v1\"\nmin_tls = \"1.3\"",
    );
    let f = Fixture::with_gateway(&gw);
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line_of(&gw, "min_tls"),
        "providers.min_tls",
        &["https://"],
    );
}

// === provider credentials ===

#[test]
fn auth_needs_exactly_one_of_env_and_file() {
    for auth in [
        r#"auth = { header = "api-key", env = "AZURE_FR_KEY", file = "secrets/azure-fr" }"#,
        r#"auth = { header = "api-key" }"#,
    ] {
        let gw = edit(
            GATEWAY,
            r#"auth = { header = "api-key", env = "AZURE_FR_KEY" }"#,
            auth,
        );
        let f = Fixture::with_gateway(&gw);
        assert_one_error(
            &f.check(&[]),
            f.gateway(),
            line_of(&gw, "auth = {"),
            "providers.auth",
            &["exactly one of `env`", "`file`"],
        );
    }
}

#[test]
fn check_warns_of_each_provider_without_a_credential() {
    // The fixture's `azure-fr` reads `AZURE_FR_KEY`, which `check` leaves unset.
    let f = Fixture::with_policy(POLICY);
    let out = f.check(&[]);
    assert_passes(&out);
    let (stderr, ctx) = context(&out);
    assert!(
        stderr.contains(
            "warning: provider `azure-fr` has no credential (credential variable `AZURE_FR_KEY` \
             is not set); it will not be used"
        ),
        "{ctx}"
    );
    let out = f.check(&[("AZURE_FR_KEY", "canary-5c1d")]);
    assert_passes(&out);
    let (stderr, ctx) = context(&out);
    assert!(!stderr.contains("warning"), "{ctx}");
    assert!(
        !stderr.contains("canary-5c1d")
            && !String::from_utf8_lossy(&out.stdout).contains("canary-5c1d")
    );

    // A credential file, relative to the gateway file: missing, empty, present.
    let gw = edit(
        GATEWAY,
        r#"env = "AZURE_FR_KEY""#,
        r#"file = "secrets/azure-fr""#,
    );
    let f = Fixture::with_gateway(&gw);
    let file = f.dir.path().join("secrets/azure-fr");
    let out = f.check(&[]);
    assert_passes(&out);
    let (stderr, ctx) = context(&out);
    let expected = format!(
        "warning: provider `azure-fr` has no credential (credential file {} cannot be read",
        file.display()
    );
    assert!(stderr.contains(&expected), "{ctx}");
    std::fs::create_dir(f.dir.path().join("secrets")).expect("create secrets directory");
    std::fs::write(&file, "\n").expect("write credential file");
    let (stderr, ctx) = context(&f.check(&[]));
    assert!(
        stderr.contains(&format!("(credential file {} is empty)", file.display())),
        "{ctx}"
    );
    std::fs::write(&file, "canary-77ab\n").expect("write credential file");
    let out = f.check(&[]);
    assert_passes(&out);
    let (stderr, ctx) = context(&out);
    assert!(!stderr.contains("warning"), "{ctx}");
    assert!(!ctx.contains("canary-77ab"));
}

// === the admin listener's TLS ===

#[test]
fn admin_tls_files_must_be_readable() {
    let gw = format!(
        "{GATEWAY}\n[admin_tls]\ncert = \"admin.pem\"\nkey = \"admin.key\"\nclient_ca = \"clients-ca.pem\"\n"
    );
    let f = Fixture::with_gateway(&gw);
    assert_rejected(
        &f.check(&[]),
        &[
            at(
                f.gateway(),
                line_of(&gw, "admin.pem"),
                "admin_tls.cert",
                &["admin.pem", "cannot read"],
            ),
            at(
                f.gateway(),
                line_of(&gw, "admin.key"),
                "admin_tls.key",
                &["admin.key", "cannot read"],
            ),
            at(
                f.gateway(),
                line_of(&gw, "clients-ca.pem"),
                "admin_tls.client_ca",
                &["clients-ca.pem", "cannot read"],
            ),
        ],
    );
    for name in ["admin.pem", "admin.key", "clients-ca.pem"] {
        std::fs::write(f.dir.path().join(name), "x").expect("write file");
    }
    assert_passes(&f.check(&[]));

    // `cert` and `key` are required.
    let gw = format!("{GATEWAY}\n[admin_tls]\ncert = \"admin.pem\"\n");
    let f = Fixture::with_gateway(&gw);
    assert_one_error(
        &f.check(&[]),
        f.gateway(),
        line_of(&gw, "[admin_tls]"),
        "admin_tls.key",
        &["missing field `key`"],
    );
}
