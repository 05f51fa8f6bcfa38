#!/usr/bin/env bash
# The main job: build everything, start the router on the example config (tuning/router.toml),
# run ilp-loadgen against it, print the result, stop the router.
#
#   bash tuning/run-example.sh [DURATION]      (default 10s; e.g. 5s, 30s)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
cargo build --release --workspace --quiet
router=target/release/ilp-router
loadgen=target/release/ilp-loadgen

# The router on the first allowed CPU, the load generator on the last (the same one if there
# is only one).
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))' 2>/dev/null || nproc --all | xargs seq 0 | head -n -1)
router_cpu=${cpus[0]}
loadgen_cpu=${cpus[${#cpus[@]}-1]}

"$router" check-config tuning/router.toml
"$router" run --config tuning/router.toml --cpu-list "$router_cpu" --log-level warn &
router_pid=$!
trap 'kill -TERM $router_pid 2>/dev/null; wait $router_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/7768) 2>/dev/null && break
    sleep 0.1
done

"$loadgen" --router ws://127.0.0.1:7768 --sender alice:alice-secret --sink bob:bob-secret \
    --destination g.router.bob --duration "$duration" --cpu-list "$loadgen_cpu" \
    --router-pid "$router_pid" --json target/example-run.json --report target/example-run.html
echo "JSON: target/example-run.json   report: target/example-run.html"
