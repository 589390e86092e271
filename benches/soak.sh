#!/usr/bin/env bash
# Runs the bounded soak (benches/soak.rs): cordon serve, built in release,
# under mixed traffic with injected provider faults and clients that give up,
# for at most SOAK_SECS seconds (default 300), then checks records, memory,
# the in-flight gauge and the ineligible provider (benches/README.md, "Soak").
#
#   benches/soak.sh                   # 5 minutes
#   SOAK_SECS=30 benches/soak.sh      # a quick look
#
# Exits non-zero when a check fails (3 if the watchdog had to stop it).
set -euo pipefail
cd "$(dirname "$0")/.."
# 48 clients, their connections to cordon and cordon's to the mocks.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
exec cargo bench --locked --bench soak
