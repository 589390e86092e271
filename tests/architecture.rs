//! The policy engine, the wire protocols and the audit chain stay pure: no I/O, no clock, no
//! logging, no async runtime. This test reads its sources and fails on any of them, so the
//! guarantee does not rest on review alone.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use std::fs;
use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "tokio",
    "hyper",
    "reqwest",
    "tracing",
    "std::fs",
    "std::net",
    "std::env",
    "std::process",
    "SystemTime",
    "Instant",
    "now_utc",
    "now_local",
    "println!",
    "eprintln!",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn policy_and_protocol_modules_do_no_io_and_read_no_clock() {
    let mut files = Vec::new();
    for module in ["src/policy", "src/protocol", "src/audit"] {
        rust_files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(module),
            &mut files,
        );
    }
    assert!(
        files.len() >= 9,
        "expected the policy and protocol sources, found {files:?}"
    );
    let mut violations = Vec::new();
    for file in &files {
        // Unit tests may use anything; they are not part of the engine.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    violations.push(format!("{}:{}: uses `{word}`", file.display(), n + 1));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
