//! Configuration at scale: 10 000 tenants × 100 providers (32 models),
//! generated deterministically as files (the same generator as the `policy`
//! bench) and loaded through `cordon::config::load`.
//!
//! Measures, against the targets of the performance issue:
//! - load + compile wall-clock time (read, parse, validate, compile), the
//!   median of 3 loads, each in a fresh process (the bench re-runs itself);
//! - that process's peak memory (`VmHWM`) and resident memory (`VmRSS`) from
//!   `/proc/self/status`, before and after the load;
//! - eligibility lookup (decide, then the first eligible provider) in ns/op
//!   over 4,096 random keys, at this scale and at 10 tenants × 5 providers.
//!
//! Run with `cargo bench --bench scale`; sizes: `SCALE_TENANTS`,
//! `SCALE_PROVIDERS` (defaults 10000 and 100). See `benches/README.md`.

#![expect(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "benchmark harness: reads its knobs from the environment, prints a table, aborts on a broken fixture"
)]

mod fixture;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cordon::config::{self, Config};
use cordon::policy::{Date, Decision, Layer, Table, parse_require};
use fixture::{MODEL_NAMES, MORE_MODEL_NAMES, Rng, Spec};

/// The size of the targets; `SCALE_TENANTS` and `SCALE_PROVIDERS` override it.
const DEFAULT_TENANTS: usize = 10_000;
const DEFAULT_PROVIDERS: usize = 100;
const SEED: u64 = 0x5ca1_e000_2026_1123;
/// How many lookup keys the lookup loops cycle through (a power of two).
const KEYS: usize = 4096;
/// Lookups per timed round; the median of `ROUNDS` rounds is reported.
const ITERS: usize = 1_000_000;
const ROUNDS: usize = 5;
/// Loads measured, each in a fresh process; the median is reported.
const LOADS: usize = 3;
const REQUIRE: &str = "max_retention_days=30, processing_in=EEA";
/// Set (to the gateway file) when the bench re-runs itself to measure one load.
const CHILD: &str = "CORDON_SCALE_CHILD_LOAD";

fn main() {
    if let Ok(gateway) = std::env::var(CHILD) {
        child(Path::new(&gateway));
        return;
    }
    let tenants = knob("SCALE_TENANTS", DEFAULT_TENANTS);
    let providers = knob("SCALE_PROVIDERS", DEFAULT_PROVIDERS);
    let models: Vec<&str> = MODEL_NAMES
        .iter()
        .chain(MORE_MODEL_NAMES.iter())
        .copied()
        .collect();

    // The large configuration: loads in fresh processes, then lookups here.
    let dir = tempfile::tempdir().expect("create temp dir");
    let started = Instant::now();
    let gateway = fixture::generate(
        dir.path(),
        &Spec {
            providers,
            tenants,
            models: &models,
            seed: SEED,
        },
    );
    let generated = started.elapsed();
    let bytes = disk_bytes(dir.path());
    println!(
        "scale: {tenants} tenants x {providers} providers x {} models: {} files, {:.1} MiB, \
         generated in {:.2} s",
        models.len(),
        tenants + 2,
        bytes as f64 / 1_048_576.0,
        generated.as_secs_f64()
    );

    let mut loads: Vec<Load> = (0..LOADS).map(|_| measure_in_child(&gateway)).collect();
    for (i, l) in loads.iter().enumerate() {
        println!(
            "  load {}: {:.0} ms; VmHWM {:.0} -> {:.0} MiB; VmRSS {:.0} -> {:.0} MiB",
            i + 1,
            l.ms,
            mb(l.hwm_before),
            mb(l.hwm_after),
            mb(l.rss_before),
            mb(l.rss_after)
        );
    }
    loads.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    let median = &loads[LOADS / 2];
    let peak = loads.iter().map(|l| l.hwm_after).max().unwrap_or(0);

    let big = load(&gateway);
    let big_lookups = lookups(&big.table, "large");
    drop(big);
    drop(dir);

    // The small configuration, to show that lookup time does not grow.
    let small_dir = tempfile::tempdir().expect("create temp dir");
    let small_gateway = fixture::generate(
        small_dir.path(),
        &Spec {
            providers: 5,
            tenants: 10,
            models: &models,
            seed: SEED,
        },
    );
    let small = load(&small_gateway);
    let small_lookups = lookups(&small.table, "small");

    let ok = |pass: bool| if pass { "ok" } else { "ABOVE TARGET" };
    // The load targets are for the size; the lookup target holds at any size.
    let sized = |pass: bool| {
        if (tenants, providers) == (DEFAULT_TENANTS, DEFAULT_PROVIDERS) {
            ok(pass)
        } else {
            "n/a (set for 10000 x 100)"
        }
    };
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| load + compile {tenants} x {providers}, median of {LOADS} fresh processes | {:.0} ms | < 2 s: {} |",
        median.ms,
        sized(median.ms < 2000.0)
    );
    println!(
        "| peak memory (VmHWM) after the load, highest of {LOADS} | {:.0} MiB (+{:.0} MiB over the process before loading) | < 500 MiB: {} |",
        mb(peak),
        mb(median.hwm_after.saturating_sub(median.hwm_before)),
        sized(peak < 500 * 1024)
    );
    println!(
        "| resident after the load (VmRSS, config alive) | {:.0} MiB (+{:.0} MiB) | |",
        mb(median.rss_after),
        mb(median.rss_after.saturating_sub(median.rss_before))
    );
    for (label, l) in [
        (format!("{tenants} x {providers}"), &big_lookups),
        ("10 x 5".to_owned(), &small_lookups),
    ] {
        println!(
            "| lookup, {label} | {:.0} ns/op | < 1 µs: {} |",
            l.plain,
            ok(l.plain < 1000.0)
        );
        println!(
            "| lookup with require, {label} | {:.0} ns/op | < 1 µs: {} |",
            l.require,
            ok(l.require < 1000.0)
        );
    }
}

fn knob(name: &str, default: usize) -> usize {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    match v.trim().parse() {
        Ok(n) => n,
        Err(_) => {
            println!("{name}={v} is not a number");
            std::process::exit(2);
        }
    }
}

fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read the fixture directory") {
        let entry = entry.expect("read a directory entry");
        let meta = entry.metadata().expect("stat a fixture file");
        total += if meta.is_dir() {
            disk_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// KiB to MiB.
fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn load(gateway: &Path) -> Config {
    match config::load(gateway, &HashMap::<String, String>::new()) {
        Ok(c) => c,
        Err(errors) => {
            println!("generated configuration does not load:\n{errors}");
            std::process::exit(1);
        }
    }
}

// === one load in a fresh process ===

/// One load's time and the memory of the process that did it (KiB).
struct Load {
    ms: f64,
    hwm_before: u64,
    hwm_after: u64,
    rss_before: u64,
    rss_after: u64,
}

/// `VmHWM` and `VmRSS` of this process, in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a memory field in /proc/self/status")
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// In the re-run process: load once, print one line for the parent.
fn child(gateway: &Path) {
    let (hwm_before, rss_before) = memory();
    let started = Instant::now();
    let config = load(gateway);
    let elapsed = started.elapsed();
    let (hwm_after, rss_after) = memory();
    println!(
        "{} {hwm_before} {hwm_after} {rss_before} {rss_after}",
        elapsed.as_secs_f64() * 1e3
    );
    black_box(&config);
}

fn measure_in_child(gateway: &Path) -> Load {
    let exe = std::env::current_exe().expect("locate the bench binary");
    let out = Command::new(exe)
        .env(CHILD, gateway)
        .output()
        .expect("re-run the bench binary");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        println!(
            "the load process failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("a number from the load process"))
        .collect();
    assert_eq!(
        v.len(),
        5,
        "unexpected output from the load process: {text}"
    );
    Load {
        ms: v[0],
        hwm_before: v[1] as u64,
        hwm_after: v[2] as u64,
        rss_before: v[3] as u64,
        rss_after: v[4] as u64,
    }
}

// === lookups ===

fn today() -> Date {
    time::macros::date!(2026 - 11 - 23)
}

/// A lookup key: (tenant, project, model).
type Key = (String, Option<String>, String);

/// Random tenants (the project for 1 key in 3 when the tenant has one) and
/// random served models.
fn keys(table: &Table) -> Vec<Key> {
    let tenants = table.tenants();
    let models = table.models();
    let mut rng = Rng(SEED ^ 0xfeed);
    (0..KEYS)
        .map(|i| {
            let t = *rng.pick(&tenants);
            let project = if i % 3 == 0 {
                t.projects.keys().next().cloned()
            } else {
                None
            };
            let model = (*rng.pick(&models)).to_owned();
            (t.tenant.clone(), project, model)
        })
        .collect()
}

/// What the request path does: decide, then take the first eligible provider.
fn first_provider<'a>(table: &'a Table, key: &'a Key, extra: Option<&'a Layer>) -> Option<&'a str> {
    match table.decide(&key.0, key.1.as_deref(), &key.2, today(), extra) {
        Decision::Route(routes) => routes.eligible().next().map(|p| p.id.as_str()),
        _ => None,
    }
}

/// Median ns per lookup over `ROUNDS` rounds of `ITERS` lookups.
fn time_lookups(table: &Table, keys: &[Key], extra: Option<&Layer>) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for i in 0..ITERS {
                let key = &keys[i & (KEYS - 1)];
                black_box(first_provider(table, black_box(key), extra));
            }
            duration_ns(started.elapsed()) / ITERS as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn duration_ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

struct Lookups {
    plain: f64,
    require: f64,
}

fn lookups(table: &Table, label: &str) -> Lookups {
    let keys = keys(table);
    let require = parse_require(REQUIRE, table).expect("parse the require header");
    let (mut routed, mut denied, mut other) = (0, 0, 0);
    for k in &keys {
        match table.decide(&k.0, k.1.as_deref(), &k.2, today(), None) {
            Decision::Route(r) if r.eligible().next().is_some() => routed += 1,
            Decision::Route(_) => denied += 1,
            _ => other += 1,
        }
    }
    println!(
        "lookup keys ({label}: {} tenants, {} providers, {} models): {} keys, {routed} routed, \
         {denied} denied, {other} model not allowed",
        table.tenants().len(),
        table.providers().len(),
        table.models().len(),
        keys.len(),
    );
    Lookups {
        plain: time_lookups(table, &keys, None),
        require: time_lookups(table, &keys, Some(&require)),
    }
}
