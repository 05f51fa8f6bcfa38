#!/usr/bin/env bash
# BTP and ILP over HTTP through the same router, side by side in one run: alternating closed-loop
# runs of ilp-loadgen (BTP: alice -> router -> bob; HTTP: alice POSTs to the router's [listen]
# http, the router POSTs to carol, the load generator's sink), a fresh router for each run,
# reading the router's CPU time from /proc. Prints the median of each and HTTP's ratio to BTP.
#
#   bash tuning/http-vs-btp.sh [--runs N] [--duration 3s] [--window N] [--connections N]
#                              [--router BINARY] [--router-cpus LIST] [--loadgen-cpus LIST]
#                              [-- extra router flags, e.g. --http-pipeline-max 64]
#
# Defaults: 7 runs of each, 3 s, window 512 x 2 connections (as tuning/bench.sh), the release
# router, router on the first CPU and the load generator on the second. JSON of every run and
# the table go to target/bench/http-vs-btp/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=7
duration=3s
window=512
connections=2
router=""
router_cpus=""
loadgen_cpus=""
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --window) window=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --router) router=$2; shift 2 ;;
        --router-cpus) router_cpus=$2; shift 2 ;;
        --loadgen-cpus) loadgen_cpus=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "http-vs-btp.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "http-vs-btp.sh: python3 is needed" >&2; exit 2; }
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
router_cpus=${router_cpus:-${cpus[0]}}
loadgen_cpus=${loadgen_cpus:-${cpus[1]:-${cpus[0]}}}

echo "== building release binaries"
cargo build --release --workspace --quiet
router=${router:-target/release/ilp-router}
loadgen=target/release/ilp-loadgen
out=target/bench/http-vs-btp
mkdir -p "$out"
rm -f "$out"/*.json

# tuning/router.toml plus an HTTP listener and carol, whose Prepares are POSTed to the sink.
python3 - "$out/router.toml" <<'PY'
import sys
text = open("tuning/router.toml").read()
text = text.replace('[listen]\nbtp = "127.0.0.1:7768"', '[listen]\nbtp = "127.0.0.1:7768"\nhttp = "127.0.0.1:7770"')
assert 'http = "127.0.0.1:7770"' in text, "tuning/router.toml's [listen] changed"
text += '''
[[peers]]
name = "carol"
auth_tokens = ["carol-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
http_url = "http://127.0.0.1:7795/"
outgoing_token = "carol-secret"
'''
open(sys.argv[1], "w").write(text)
PY

btp=(--router ws://127.0.0.1:7768 --sender alice:alice-secret --sink bob:bob-secret
     --destination g.router.bob)
http=(--transport http --router http://127.0.0.1:7770/ --sender alice:alice-secret
      --sink carol:carol-secret --sink-listen 127.0.0.1:7795 --destination g.router.carol)

echo "== router on CPU $router_cpus, ilp-loadgen on CPU $loadgen_cpus, $connections x window $window, $runs x $duration each"
for i in $(seq "$runs"); do
    for transport in btp http; do
        "$router" run --config "$out/router.toml" --cpu-list "$router_cpus" --log-level error \
            "${extra[@]}" &
        router_pid=$!
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/7768) 2>/dev/null && break
            sleep 0.1
        done
        if [ "$transport" = btp ]; then args=("${btp[@]}"); else args=("${http[@]}"); fi
        "$loadgen" "${args[@]}" --cpu-list "$loadgen_cpus" --duration "$duration" \
            --window "$window" --connections "$connections" --router-pid "$router_pid" \
            --json "$out/$transport-$i.json" >/dev/null
        kill -TERM "$router_pid"
        wait "$router_pid" || true
        echo "   run $i $transport done"
    done
done

python3 - "$out" "$runs" <<'PY'
import json, statistics as st, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = {}
for t in ("btp", "http"):
    rs = [json.load(open(f"{out}/{t}-{i}.json")) for i in range(1, runs + 1)]
    cpu = [r["router_cpu_us_per_packet"] for r in rs]
    rows[t] = (st.median(r["pps"] for r in rs), st.median(cpu), min(cpu), max(cpu),
               st.median(r["latency_us"]["p50"] for r in rs),
               sum(sum(r["rejected"].values()) + r["timeouts"] + r["errors"] for r in rs))
lines = ["| transport | packets/s (median) | router CPU µs/packet (median, min–max) | p50 µs (median) | rejected, timed out or failed |",
         "| --- | ---: | ---: | ---: | ---: |"]
for t, (pps, cpu, lo, hi, p50, bad) in rows.items():
    lines.append(f"| {t.upper()} | {pps:,.0f} | {cpu:.3f} ({lo:.3f}–{hi:.3f}) | {p50:.0f} | {bad} |")
ratio = rows["http"][1] / rows["btp"][1]
lines.append(f"\nHTTP / BTP router CPU per packet: {ratio:.2f}")
text = "\n".join(lines)
print("\n" + text)
open(f"{out}/table.md", "w").write(text + "\n")
PY
