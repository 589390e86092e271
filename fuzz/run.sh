#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets for FUZZ_SECS seconds
# each (default 60) from the committed seeds in fuzz/corpus/<target>, and
# exits non-zero if any target crashes (a panic or a violated property; the
# input is saved under fuzz/artifacts/<target>/ and printed in base64).
#
# Works on the stable toolchain alone: cargo-fuzz passes nightly-only flags
# (-Zsanitizer, -Cpasses=sancov-module), which stable accepts with
# RUSTC_BOOTSTRAP=1. Installs cargo-fuzz if it is missing.
#
# New inputs the fuzzer finds go to a temporary directory, never into the
# repository: libFuzzer writes to the first corpus directory it is given and
# only reads the others.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECS:-60}"
# No sanitizer by default: cordon forbids unsafe code, and what the targets
# look for (panics, overflow, violated properties) needs none; debug
# assertions stay on (-a), so arithmetic overflow panics. Without AddressSanitizer
# the build takes a fraction of the time. FUZZ_SANITIZER=address for a deeper run.
sanitizer="${FUZZ_SANITIZER:-none}"
fuzz_dir="$PWD/fuzz"
cargo_fuzz_version="0.13.2"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# cargo-fuzz looks for the binaries in fuzz/target.
unset CARGO_TARGET_DIR

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz --version "$cargo_fuzz_version"
fi

targets=$(cargo fuzz list --fuzz-dir "$fuzz_dir")
cargo fuzz build --fuzz-dir "$fuzz_dir" -s "$sanitizer" -a

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
    mkdir -p "$scratch/$t"
    printf '\n=== fuzz %s (%ss) ===\n' "$t" "$secs"
    if cargo fuzz run --fuzz-dir "$fuzz_dir" -s "$sanitizer" -a "$t" "$scratch/$t" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec' \
            "$scratch/$t.log" || true
    else
        tail -n 60 "$scratch/$t.log"
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nfuzz targets that failed: %s\n' "${failed[*]}"
    exit 1
fi
printf '\nall fuzz targets ran %ss without a crash\n' "$secs"
