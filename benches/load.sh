#!/usr/bin/env bash
# Runs the load benchmark (benches/load.rs): installs its tools if they are
# missing, raises the open-file limit for the slow-stream test, then builds
# cordon in release and runs direct / nginx / cordon side by side
# (results and every knob: benches/README.md).
#
#   benches/load.sh                      # everything, about 10 minutes
#   LOAD_SECS=5 LOAD_RUNS=1 benches/load.sh   # a quick look
#   LOAD_ONLY=chat,fixed benches/load.sh      # some parts only
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v taskset >/dev/null || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y "${need_apt[@]}" >/dev/null 2>&1 ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "${need_apt[@]}" >/dev/null; }
fi
command -v oha >/dev/null || cargo install --locked oha@1.16.0
export PATH="$HOME/.cargo/bin:$PATH"

# 10 000 slow streams need about 20 000 descriptors in cordon and as many in
# the harness (client side and mock side).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

exec cargo bench --locked --bench load
