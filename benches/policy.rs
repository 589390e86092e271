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

mod fixture;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cordon::config::{self, Config};
use cordon::policy::{Date, Decision, Table, parse_require};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use fixture::{MODEL_NAMES, Rng, Spec};

const PROVIDERS: usize = 50;
const MODELS: usize = MODEL_NAMES.len();
const TENANTS: usize = 200;
/// How many lookup keys the lookup benches cycle through.
const KEYS: usize = 4096;
const SEED: u64 = 0x00c0_4d0e_2026_1123;
const REQUIRE: &str = "max_retention_days=30, processing_in=EEA";

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
    let spec = Spec {
        providers: PROVIDERS,
        tenants: TENANTS,
        models: &MODEL_NAMES,
        seed: SEED,
    };
    let gateway = fixture::generate(dir.path(), &spec);
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
