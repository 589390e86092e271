//! Policy engine benchmarks at a realistic scale: 50 providers × 20 models ×
//! 200 tenants, generated deterministically as files and loaded through
//! `cordon::config::load`, exactly as `cordon` itself loads them.
//!
//! Run with `cargo bench --bench policy`; see `benches/README.md`.

#![expect(
    clippy::print_stdout,
    clippy::expect_used,
    reason = "benchmark harness: prints a one-off measurement and aborts on a broken fixture"
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cordon::config::{self, Config};
use cordon::policy::{Date, Decision, Table, parse_require};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};

const PROVIDERS: usize = 50;
const MODELS: usize = 20;
const TENANTS: usize = 200;
/// How many lookup keys the lookup benches cycle through.
const KEYS: usize = 4096;
const SEED: u64 = 0x00c0_4d0e_2026_1123;
const REQUIRE: &str = "max_retention_days=30, processing_in=EEA";

const MODEL_NAMES: [&str; MODELS] = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "o3-mini",
    "claude-sonnet-4",
    "claude-haiku-4",
    "claude-opus-4",
    "mistral-large",
    "mistral-medium",
    "mistral-small",
    "llama-3.3-70b",
    "llama-4-scout",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "qwen-2.5-72b",
    "deepseek-v3",
    "command-r-plus",
    "phi-4",
    "embed-large",
    "embed-small",
];

const EU: [&str; 12] = [
    "FR", "DE", "NL", "IE", "SE", "FI", "ES", "IT", "PL", "AT", "BE", "DK",
];
const EEA_ONLY: [&str; 2] = ["NO", "IS"];
const ADEQUATE: [&str; 5] = ["CH", "GB", "JP", "CA", "KR"];
const ELSEWHERE: [&str; 5] = ["US", "IN", "SG", "AU", "BR"];
const CERTS: [&str; 9] = [
    "iso27001",
    "iso27017",
    "iso27018",
    "iso42001",
    "soc2-type2",
    "hds",
    "secnumcloud",
    "c5",
    "x-internal-audit",
];

/// splitmix64: tiny, deterministic, good enough to vary a fixture.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// In `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Between `lo` and `hi` (inclusive) distinct items, in random order.
    fn sample<T: Copy>(&mut self, items: &[T], lo: usize, hi: usize) -> Vec<T> {
        let k = self.range(lo, hi);
        let mut pool: Vec<T> = items.to_vec();
        let mut out = Vec::with_capacity(k);
        for _ in 0..k.min(items.len()) {
            out.push(pool.swap_remove(self.below(pool.len())));
        }
        out
    }
}

/// A TOML array of strings.
fn list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn provider_id(i: usize) -> String {
    format!("prov-{i:02}")
}

// === fixture generation ===

/// Writes `cordon.toml`, `policies/_floor.toml` and one file per tenant into
/// `dir`, and returns the gateway file's path.
fn generate(dir: &Path) -> PathBuf {
    let mut rng = Rng(SEED);
    let mut gw = String::new();
    gw.push_str(
        "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:9090\"\n\n\
         [regions]\nnordics = [\"DK\", \"FI\", \"IS\", \"NO\", \"SE\"]\n",
    );
    for i in 0..PROVIDERS {
        provider(&mut rng, i, &mut gw);
    }
    let gateway = dir.join("cordon.toml");
    std::fs::write(&gateway, gw).expect("write cordon.toml");

    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("create policies/");
    std::fs::write(policies.join("_floor.toml"), "[data]\nno_training = true\n")
        .expect("write _floor.toml");
    for t in 0..TENANTS {
        let name = format!("tenant-{t:03}");
        let text = tenant(&mut rng, &name);
        std::fs::write(policies.join(format!("{name}.toml")), text).expect("write policy");
    }
    gateway
}

fn provider(rng: &mut Rng, i: usize, out: &mut String) {
    let id = provider_id(i);
    // Where it processes: EU only, EEA, EU + adequate country, or partly outside.
    let profile = rng.below(20);
    let mut processing: Vec<&str> = rng.sample(&EU, 1, 3);
    let outside_adequate = match profile {
        0..=8 => false,
        9..=10 => {
            processing.push(*rng.pick(&EEA_ONLY));
            false
        }
        11..=13 => {
            processing.push(*rng.pick(&ADEQUATE));
            false
        }
        14..=16 => {
            processing.push(*rng.pick(&ELSEWHERE));
            true
        }
        _ => {
            processing = rng.sample(&ELSEWHERE, 1, 2);
            true
        }
    };
    processing.dedup();
    let jurisdiction = match rng.below(10) {
        0..=4 => *rng.pick(&EU),
        5..=7 => "US",
        8 => *rng.pick(&ADEQUATE),
        _ => processing[0],
    };
    // `adequacy` is only valid when every processing country is adequate.
    let transfer = if outside_adequate {
        *rng.pick(&[Some("dpf"), Some("scc"), Some("bcr"), Some("none"), None])
    } else {
        *rng.pick(&[Some("adequacy"), Some("scc"), None])
    };
    let dpa = *rng.pick(&[
        "signed",
        "signed",
        "signed",
        "signed",
        "signed",
        "by-reference",
        "by-reference",
        "pending",
        "none",
    ]);
    let trains = *rng.pick(&[
        Some(false),
        Some(false),
        Some(false),
        Some(false),
        Some(false),
        Some(false),
        Some(true),
        None,
    ]);
    let retention = *rng.pick(&[
        Some(0u32),
        Some(0),
        Some(7),
        Some(30),
        Some(30),
        Some(90),
        None,
    ]);
    let certs = rng.sample(&CERTS, 0, 4);
    let models = rng.sample(&MODEL_NAMES, 3, 8);
    let anthropic = models.iter().all(|m| m.starts_with("claude"));

    let _ = writeln!(out, "\n[[providers]]\nid = \"{id}\"");
    let _ = writeln!(
        out,
        "api = \"{}\"",
        if anthropic { "anthropic" } else { "openai" }
    );
    let _ = writeln!(out, "base_url = \"https://{id}.example.com/v1\"");
    let _ = writeln!(
        out,
        "auth = {{ env = \"{}_KEY\" }}",
        id.to_uppercase().replace('-', "_")
    );
    let _ = writeln!(out, "priority = {}", rng.range(1, 100));
    let mapped: Vec<String> = models
        .iter()
        .map(|m| format!("\"{m}\" = \"{m}-{}\"", rng.range(2024, 2026)))
        .collect();
    let _ = writeln!(out, "models = {{ {} }}", mapped.join(", "));
    let _ = writeln!(out, "  [providers.data]");
    let _ = writeln!(out, "  entity = \"Provider {i} Ltd\"");
    let _ = writeln!(out, "  jurisdiction = \"{jurisdiction}\"");
    let _ = writeln!(out, "  processing = {}", list(&processing));
    let _ = writeln!(out, "  dpa = \"{dpa}\"");
    if let Some(t) = trains {
        let _ = writeln!(out, "  trains_on_data = {t}");
    }
    if let Some(r) = retention {
        let _ = writeln!(out, "  retention_days = {r}");
    }
    let _ = writeln!(out, "  certifications = {}", list(&certs));
    if let Some(t) = transfer {
        let _ = writeln!(out, "  transfer = \"{t}\"");
    }
    let _ = writeln!(out, "  purpose = \"LLM inference\"");
    // A few providers are past review or not yet effective; most are current.
    match rng.below(20) {
        0 => {
            let _ = writeln!(out, "  review_by = 2026-06-30");
        }
        1 => {
            let _ = writeln!(out, "  effective_from = 2027-01-01");
        }
        2..=12 => {
            let _ = writeln!(out, "  review_by = 2027-{:02}-28", rng.range(1, 12));
        }
        _ => {}
    }
    // Some certifications expire, a few already have (today is 2026-11-23).
    let mut expiring: Vec<String> = Vec::new();
    for c in &certs {
        if rng.chance(1, 3) {
            let (y, m) = if rng.chance(1, 4) {
                (2026, rng.range(1, 10))
            } else {
                (2027, rng.range(1, 12))
            };
            expiring.push(format!("{c} = {y}-{m:02}-15"));
        }
    }
    if !expiring.is_empty() {
        let _ = writeln!(out, "  expires = {{ {} }}", expiring.join(", "));
    }
}

fn tenant(rng: &mut Rng, name: &str) -> String {
    let mut out = format!("tenant = \"{name}\"\ndescription = \"Generated tenant {name}\"\n");
    out.push_str("\n[data]\n");
    out.push_str(&data_rules(rng, "\n"));
    if rng.chance(1, 2) {
        let globs = match rng.below(5) {
            0 => vec!["gpt-*".to_owned(), "o3-*".to_owned()],
            1 => vec!["claude-*".to_owned(), "mistral-*".to_owned()],
            2 => vec![
                "mistral-*".to_owned(),
                "llama-*".to_owned(),
                "embed-*".to_owned(),
            ],
            3 => vec!["*".to_owned()],
            _ => rng
                .sample(&MODEL_NAMES, 2, 6)
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
        };
        let _ = writeln!(out, "\n[models]\nallow = {}", list(&globs));
    }
    if rng.chance(3, 5) {
        let order: Vec<String> = rng
            .sample(&(0..PROVIDERS).collect::<Vec<_>>(), 1, 4)
            .into_iter()
            .map(provider_id)
            .collect();
        let _ = writeln!(
            out,
            "\n[routing]\norder = {}\nfailover = {}",
            list(&order),
            rng.chance(4, 5)
        );
    }
    if rng.chance(1, 3) {
        let _ = writeln!(
            out,
            "\n[limits]\nrequests_per_minute = {}\ntokens_per_minute = {}",
            rng.range(1, 20) * 60,
            rng.range(1, 40) * 10_000
        );
    }
    if rng.chance(1, 4) {
        let project = *rng.pick(&["research", "support", "internal"]);
        let rules = data_rules(rng, ", ");
        let rules = rules.trim_end_matches(", ");
        if rules.is_empty() {
            let _ = writeln!(
                out,
                "\n[projects.{project}]\ndata = {{ max_retention_days = 0 }}"
            );
        } else {
            let _ = writeln!(out, "\n[projects.{project}]\ndata = {{ {rules} }}");
        }
        if rng.chance(1, 3) {
            let _ = writeln!(out, "models = {{ allow = [\"gpt-*\", \"mistral-*\"] }}");
        }
    }
    out
}

/// A random set of data rules, as `key = value` items each followed by `sep`.
fn data_rules(rng: &mut Rng, sep: &str) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push_str(sep);
    };
    if rng.chance(3, 5) {
        let region = *rng.pick(&[
            "[\"EEA\"]",
            "[\"EEA\"]",
            "[\"EU\"]",
            "[\"ADEQUATE\"]",
            "[\"EEA\", \"CH\"]",
            "[\"FR\", \"DE\"]",
            "[\"nordics\"]",
            "[\"EU\", \"US\"]",
        ]);
        line(format!("processing_in = {region}"));
    }
    if rng.chance(3, 10) {
        let region = *rng.pick(&["[\"EU\"]", "[\"EEA\", \"GB\"]", "[\"ADEQUATE\"]"]);
        line(format!("jurisdiction_in = {region}"));
    }
    if rng.chance(1, 2) {
        let dpa = *rng.pick(&["[\"signed\"]", "[\"signed\", \"by-reference\"]"]);
        line(format!("dpa = {dpa}"));
    }
    if rng.chance(1, 5) {
        line("no_training = true".to_owned());
    }
    if rng.chance(2, 5) {
        line(format!(
            "max_retention_days = {}",
            rng.pick(&[0, 7, 30, 90])
        ));
    }
    if rng.chance(2, 5) {
        let certs = rng.sample(&["iso27001", "soc2-type2", "iso27018", "hds"], 1, 2);
        line(format!("certifications = {}", list(&certs)));
    }
    if rng.chance(2, 5) {
        let t = *rng.pick(&[
            "[\"scc\", \"dpf\"]",
            "[\"adequacy\", \"scc\"]",
            "[\"adequacy\"]",
            "[\"adequacy\", \"dpf\", \"scc\", \"bcr\"]",
        ]);
        line(format!("transfer = {t}"));
    }
    if rng.chance(1, 5) {
        let ids: Vec<String> = rng
            .sample(&(0..PROVIDERS).collect::<Vec<_>>(), 1, 2)
            .into_iter()
            .map(provider_id)
            .collect();
        line(format!("exclude_providers = {}", list(&ids)));
    }
    out
}

// === the benchmarks ===

struct Fixture {
    /// Keeps the generated files alive for the load bench.
    _dir: tempfile::TempDir,
    gateway: PathBuf,
    config: Config,
}

fn env() -> HashMap<String, String> {
    HashMap::new()
}

fn load(gateway: &Path) -> Config {
    match config::load(gateway, &env()) {
        Ok(c) => c,
        Err(errors) => {
            println!("generated configuration does not load:\n{errors}");
            std::process::exit(1);
        }
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("create temp dir");
    let gateway = generate(dir.path());
    // One plain wall-clock measurement, visible even with `--quick`.
    let started = Instant::now();
    let config = load(&gateway);
    let elapsed = started.elapsed();
    println!(
        "load + compile ({PROVIDERS} providers x {MODELS} models x {TENANTS} tenants, \
         {} policy files): {:.1} ms (one wall-clock run, files just written)",
        config.policy_files.len(),
        elapsed.as_secs_f64() * 1e3
    );
    Fixture {
        _dir: dir,
        gateway,
        config,
    }
}

fn today() -> Date {
    time::macros::date!(2026 - 11 - 23)
}

/// A lookup key: (tenant, project, model).
type Key = (String, Option<String>, &'static str);

/// Cycles through tenants and models (and projects, for tenants that have one).
fn keys(table: &Table) -> Vec<Key> {
    let tenants = table.tenants();
    let mut rng = Rng(SEED ^ 0xfeed);
    (0..KEYS)
        .map(|i| {
            let t = tenants[i % tenants.len()];
            let project = if i % 3 == 0 {
                t.projects.keys().next().cloned()
            } else {
                None
            };
            (t.tenant.clone(), project, *rng.pick(&MODEL_NAMES))
        })
        .collect()
}

/// What the request path does: decide, then take the first eligible provider.
fn first_provider<'a>(
    table: &'a Table,
    key: &'a Key,
    extra: Option<&'a cordon::policy::Layer>,
) -> Option<&'a str> {
    match table.decide(&key.0, key.1.as_deref(), key.2, today(), extra) {
        Decision::Route(routes) => routes.eligible().next().map(|p| p.id.as_str()),
        _ => None,
    }
}

/// Every eligible provider's index, in routing order.
fn all_eligible(table: &Table, key: &Key, extra: Option<&cordon::policy::Layer>) -> Vec<usize> {
    match table.decide(&key.0, key.1.as_deref(), key.2, today(), extra) {
        Decision::Route(routes) => routes.eligible_indexed().map(|(i, _)| i).collect(),
        _ => Vec::new(),
    }
}

/// Prints how the lookup keys are decided, so the numbers can be judged.
fn describe(table: &Table, keys: &[Key], extra: Option<&cordon::policy::Layer>) {
    let (mut routed, mut denied, mut not_allowed, mut other, mut candidates) = (0, 0, 0, 0, 0);
    for k in keys {
        match table.decide(&k.0, k.1.as_deref(), k.2, today(), extra) {
            Decision::Route(r) => {
                let n = r.eligible().count();
                candidates += n;
                if n == 0 {
                    denied += 1;
                } else {
                    routed += 1;
                }
            }
            Decision::ModelNotAllowed => not_allowed += 1,
            _ => other += 1,
        }
    }
    println!(
        "lookup keys{}: {} total, {routed} routed (avg {:.1} eligible), {denied} denied, \
         {not_allowed} model not allowed, {other} other",
        if extra.is_some() { " with require" } else { "" },
        keys.len(),
        candidates as f64 / routed.max(1) as f64,
    );
}

fn benches(c: &mut Criterion) {
    let fx = fixture();
    let table: &Table = &fx.config.table;
    let keys = keys(table);
    let require = parse_require(REQUIRE, table).expect("parse the require header");
    describe(table, &keys, None);
    describe(table, &keys, Some(&require));

    {
        let mut g = c.benchmark_group("load");
        g.sample_size(10);
        // One load per sample: with linear sampling, 10 samples cost 55 loads.
        g.sampling_mode(SamplingMode::Flat);
        g.measurement_time(Duration::from_secs(10));
        g.bench_function("load_and_compile_50x20x200", |b| {
            b.iter(|| load(black_box(&fx.gateway)))
        });
        g.finish();
    }

    c.bench_function("eligibility_lookup_50x20x200", |b| {
        let mut i = 0;
        b.iter(|| {
            let key = &keys[i % KEYS];
            i += 1;
            black_box(first_provider(table, black_box(key), None))
        })
    });

    // Only keys that route to at least one provider: what served traffic looks like.
    let routed: Vec<Key> = keys
        .iter()
        .filter(|k| first_provider(table, k, None).is_some())
        .cloned()
        .collect();
    assert!(!routed.is_empty(), "the fixture routes some keys");
    c.bench_function("eligibility_lookup_routed_only", |b| {
        let mut i = 0;
        b.iter(|| {
            let key = &routed[i % routed.len()];
            i += 1;
            black_box(first_provider(table, black_box(key), None))
        })
    });

    c.bench_function("eligibility_lookup_with_require", |b| {
        let mut i = 0;
        b.iter(|| {
            let key = &keys[i % KEYS];
            i += 1;
            black_box(first_provider(table, black_box(key), Some(&require)))
        })
    });

    // What `cordon serve` does today (src/server/exchange.rs): every eligible
    // provider, not just the first, so failover has its list.
    c.bench_function("eligibility_all_with_require", |b| {
        let mut i = 0;
        b.iter(|| {
            let key = &keys[i % KEYS];
            i += 1;
            all_eligible(table, black_box(key), Some(&require))
        })
    });

    c.bench_function("parse_require", |b| {
        b.iter(|| parse_require(black_box(REQUIRE), table))
    });

    // The slow path, used to explain a denial: pick a key that is denied.
    let denied = keys
        .iter()
        .find(|k| {
            matches!(
                table.decide(&k.0, k.1.as_deref(), k.2, today(), None),
                Decision::Route(r) if r.eligible().next().is_none()
            )
        })
        .unwrap_or(&keys[0]);
    c.bench_function("explain_one", |b| {
        b.iter(|| {
            table.explain(
                black_box(&denied.0),
                denied.1.as_deref(),
                black_box(denied.2),
                today(),
                None,
            )
        })
    });
}

criterion_group!(policy, benches);
criterion_main!(policy);
