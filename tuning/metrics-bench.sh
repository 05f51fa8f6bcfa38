#!/usr/bin/env bash
# The router with its admin API scraped four times a second, against the same router without
# an admin API, in one run: alternating closed-loop BTP runs of ilp-loadgen (tuning/router.toml,
# alice -> router -> bob), a fresh router per run, router CPU per packet from /proc. The
# scrapes' own cost (one report per core per scrape, the admin thread) is counted in the
# router's CPU time. Prints the medians and the ratio.
#
#   bash tuning/metrics-bench.sh [--runs N] [--duration 3s] [--scrape-interval 0.25]
#                                [--router-cpus LIST] [--loadgen-cpus LIST]
#
# Defaults: 7 runs of each, 3 s, window 512 x 2 connections (as tuning/bench.sh), router on
# the first CPU, the load generator and the scraper on the second. JSON of every run and the
# table go to target/bench/metrics/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=7
duration=3s
interval=0.25
router_cpus=""
loadgen_cpus=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --scrape-interval) interval=$2; shift 2 ;;
        --router-cpus) router_cpus=$2; shift 2 ;;
        --loadgen-cpus) loadgen_cpus=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "metrics-bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "metrics-bench.sh: python3 is needed" >&2; exit 2; }
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
router_cpus=${router_cpus:-${cpus[0]}}
loadgen_cpus=${loadgen_cpus:-${cpus[1]:-${cpus[0]}}}

echo "== building release binaries"
cargo build --release --workspace --quiet
router=target/release/ilp-router
loadgen=target/release/ilp-loadgen
out=target/bench/metrics
mkdir -p "$out"
rm -f "$out"/*.json
cp tuning/router.toml "$out/off.toml"
{ cat tuning/router.toml; printf '\n[admin]\nlisten = "127.0.0.1:7781"\n'; } > "$out/on.toml"

echo "== router on CPU $router_cpus, ilp-loadgen and the scraper on CPU $loadgen_cpus, $runs x $duration each, a scrape every ${interval}s"
for i in $(seq "$runs"); do
    for mode in off on; do
        "$router" run --config "$out/$mode.toml" --cpu-list "$router_cpus" --log-level error &
        router_pid=$!
        trap 'kill -TERM "$router_pid" 2>/dev/null || true' EXIT
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/7768) 2>/dev/null && break
            sleep 0.1
        done
        scraper=""
        if [ "$mode" = on ]; then
            ( while true; do
                  taskset -c "$loadgen_cpus" "$router" admin --url 127.0.0.1:7781 metrics >/dev/null || true
                  sleep "$interval"
              done ) &
            scraper=$!
        fi
        "$loadgen" --router ws://127.0.0.1:7768 --cpu-list "$loadgen_cpus" --duration "$duration" \
            --window 512 --connections 2 --router-pid "$router_pid" \
            --json "$out/$mode-$i.json" >/dev/null
        [ -n "$scraper" ] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
        kill -TERM "$router_pid"
        wait "$router_pid" || true
        echo "   run $i $mode done"
    done
done

python3 - "$out" "$runs" <<'PY'
import json, statistics as st, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = {}
for mode in ("off", "on"):
    rs = [json.load(open(f"{out}/{mode}-{i}.json")) for i in range(1, runs + 1)]
    cpu = [r["router_cpu_us_per_packet"] for r in rs]
    rows[mode] = (st.median(r["pps"] for r in rs), st.median(cpu), min(cpu), max(cpu))
lines = ["| admin API | packets/s (median) | router CPU µs/packet (median, min–max) |",
         "| --- | ---: | ---: |"]
for mode, (pps, cpu, lo, hi) in rows.items():
    label = "none" if mode == "off" else "scraped every few hundred ms"
    lines.append(f"| {label} | {pps:,.0f} | {cpu:.3f} ({lo:.3f}–{hi:.3f}) |")
lines.append(f"\nscraped / none router CPU per packet: {rows['on'][1] / rows['off'][1]:.3f}")
text = "\n".join(lines)
print("\n" + text)
open(f"{out}/table.md", "w").write(text + "\n")
PY
