#!/usr/bin/env bash
# The router fronting a cluster, against the same router forwarding to one peer, in one run:
# alternating closed-loop runs of ilp-loadgen over BTP (alice -> router -> backends), a fresh
# router for each run, 1 000 destinations round robin, reading the router's CPU time from /proc.
#   single:    g.router.cluster routed to one peer (bob1), one sink
#   spread_N:  N peers and N sinks, no group: 1 000 routes g.router.cluster.<k> -> bob<k % N + 1>
#   group_N:   g.router.cluster routed to a group of bob1..bobN (hash policy), N sinks
# for N = 4 and 64. spread_N has group_N's connections and fan-out without the selection, so
# group_N / spread_N is what choosing a backend costs; group_N / single adds the fan-out (more
# connections, smaller batches per connection). Prints the median of each and the ratios.
#
#   bash tuning/cluster-bench.sh [--runs N] [--duration 3s] [--window N] [--connections N]
#                                [--router-cpus LIST] [--loadgen-cpus LIST]
#
# Defaults: 5 runs of each, 3 s, window 512 x 2 sender connections (each sink opens as many),
# router on the first CPU and the load generator on the second. JSON of every run and the
# table go to target/bench/cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
duration=3s
window=512
connections=2
router_cpus=""
loadgen_cpus=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --window) window=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --router-cpus) router_cpus=$2; shift 2 ;;
        --loadgen-cpus) loadgen_cpus=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "cluster-bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "cluster-bench.sh: python3 is needed" >&2; exit 2; }
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
router_cpus=${router_cpus:-${cpus[0]}}
loadgen_cpus=${loadgen_cpus:-${cpus[1]:-${cpus[0]}}}

echo "== building release binaries"
cargo build --release --workspace --quiet
router=target/release/ilp-router
loadgen=target/release/ilp-loadgen
out=target/bench/cluster
mkdir -p "$out"
rm -f "$out"/*.json

# tuning/router.toml without bob, plus bob1..bob64, the group and the routes.
for kind in single spread_4 group_4 spread_64 group_64; do
    python3 - "$out/$kind.toml" "$kind" <<'PY'
import sys
path, kind = sys.argv[1], sys.argv[2]
text = open("tuning/router.toml").read()
head, sep, _ = text.partition('[[peers]]\nname = "bob"')
assert sep, "tuning/router.toml's bob changed"
n = 1 if kind == "single" else int(kind.split("_")[1])
for i in range(1, n + 1):
    head += f'''[[peers]]
name = "bob{i}"
auth_tokens = ["bob{i}-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"

'''
if kind == "single":
    head += '[[routes]]\nprefix = "g.router.cluster"\npeer = "bob1"\n'
elif kind.startswith("spread"):
    for k in range(1000):
        head += f'[[routes]]\nprefix = "g.router.cluster.{k}"\npeer = "bob{k % n + 1}"\n'
else:
    names = ", ".join(f'"bob{i}"' for i in range(1, n + 1))
    head += f'[[groups]]\nname = "cluster"\npeers = [{names}]\npolicy = "hash"\n'
    head += '[[routes]]\nprefix = "g.router.cluster"\ngroup = "cluster"\n'
head += '\n[rates]\nUSD = "1"\n[limits]\nconnections_per_peer_max = 64\n'
open(path, "w").write(head)
PY
done

echo "== router on CPU $router_cpus, ilp-loadgen on CPU $loadgen_cpus, $connections x window $window, $runs x $duration each"
for i in $(seq "$runs"); do
    for kind in single spread_4 group_4 spread_64 group_64; do
        sinks=${kind#*_}; [ "$kind" = single ] && sinks=1
        "$router" run --config "$out/$kind.toml" --cpu-list "$router_cpus" --log-level error &
        router_pid=$!
        trap 'kill -TERM "$router_pid" 2>/dev/null || true' EXIT
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/7768) 2>/dev/null && break
            sleep 0.1
        done
        if ! "$loadgen" --router ws://127.0.0.1:7768 --sender alice:alice-secret \
            --sink bob:bob-secret --sinks "$sinks" --destination g.router.cluster \
            --destinations 1000 --cpu-list "$loadgen_cpus" --duration "$duration" \
            --window "$window" --connections "$connections" --router-pid "$router_pid" \
            --json "$out/$kind-$i.json" >/dev/null; then
            kill -TERM "$router_pid"; wait "$router_pid" || true
            echo "cluster-bench.sh: run $i $kind failed (see above)" >&2
            exit 1
        fi
        kill -TERM "$router_pid"
        wait "$router_pid" || true
        echo "   run $i $kind done"
    done
done

python3 - "$out" "$runs" <<'PY'
import json, statistics as st, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = {}
kinds = ("single", "spread_4", "group_4", "spread_64", "group_64")
for kind in kinds:
    rs = [json.load(open(f"{out}/{kind}-{i}.json")) for i in range(1, runs + 1)]
    cpu = [r["router_cpu_us_per_packet"] for r in rs]
    shares = [min(s["fulfilled"] for s in r["sinks"]) / max(1, max(s["fulfilled"] for s in r["sinks"])) for r in rs]
    rows[kind] = (st.median(r["pps"] for r in rs), st.median(cpu), min(cpu), max(cpu),
                  st.median(r["latency_us"]["p50"] for r in rs), st.median(shares),
                  sum(sum(r["rejected"].values()) + r["timeouts"] + r["errors"] for r in rs))
lines = ["| route | packets/s (median) | router CPU µs/packet (median, min–max) | p50 µs (median) | least/most loaded sink | rejected, timed out or failed |",
         "| --- | ---: | ---: | ---: | ---: | ---: |"]
for kind, (pps, cpu, lo, hi, p50, share, bad) in rows.items():
    lines.append(f"| {kind} | {pps:,.0f} | {cpu:.3f} ({lo:.3f}–{hi:.3f}) | {p50:.0f} | {share:.2f} | {bad} |")
lines.append("")
for n in (4, 64):
    g, sp = rows[f"group_{n}"][1], rows[f"spread_{n}"][1]
    lines.append(f"group_{n} / spread_{n} router CPU per packet: {g / sp:.3f}; group_{n} / single: {g / rows['single'][1]:.3f}")
text = "\n".join(lines)
print("\n" + text)
open(f"{out}/table.md", "w").write(text + "\n")
PY
