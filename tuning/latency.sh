#!/usr/bin/env bash
# The latency table: open-loop runs of ilp-loadgen at fixed rates, through the router and
# --direct (sender straight to sink: the floor of this machine and of the instrument), each
# pair back to back, a fresh router per run. Prints p50 / p99 of both, the router's p50 over
# the floor and its p99 as a multiple of the floor's, and the load generator's own send
# lateness (how late the pacer sent, which every latency figure includes).
#
#   bash tuning/latency.sh [--rates 1000,10000,100000] [--duration 5s] [--runs N]
#                          [--router-cpus LIST] [--loadgen-cpus LIST] [--before ROUTER_BINARY]
#                          [--io ring|glommio|both] [--pacer-spin-us US] [--router-flags "..."]
#
# Defaults: 3 runs of each pair (medians shown), 5 s each, router on the first CPU and the
# load generator on the second. --before runs another build of the router (e.g. the previous
# commit's target/release/ilp-router, copied aside) in the same rounds, before the current
# one, and adds its row: before against after from one run. Also printed: the router's CPU
# per round trip (spinning included). --io: how ilp-loadgen reads and writes its connections
# (its --io; default ring, the precise instrument: glommio's cost per wake-up would land in
# the figures through the router and hardly in the floor); both: each round runs both, and
# the table has a row for each. --pacer-spin-us: the load generator's, the same for the
# router and --direct runs (default 1000, its most: at 1 000/s and above it never parks
# between sends; a CPU that halts between sends wakes slow and cold, and at 1 000/s that cost
# the router's figure far more than the floor's, BENCHMARKS.md). --router-flags: more
# `ilp-router run` flags (e.g. "--spin-max-us 2000"), for this build and --before alike.
# First it measures how quiet the host is: the stalls of a thread that only spins, on each
# CPU at once (host-stalls.txt); a p99 is not the router's while they are frequent.
# JSON of every run and the table go to target/bench/latency/.
set -euo pipefail
cd "$(dirname "$0")/.."

rates=1000,10000,100000
duration=5s
runs=3
router_cpus=""
loadgen_cpus=""
before=""
io=ring
pacer_spin=1000
router_flags=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) rates=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --router-cpus) router_cpus=$2; shift 2 ;;
        --loadgen-cpus) loadgen_cpus=$2; shift 2 ;;
        --before) before=$2; shift 2 ;;
        --io) io=$2; shift 2 ;;
        --pacer-spin-us) pacer_spin=$2; shift 2 ;;
        --router-flags) router_flags=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "latency.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "latency.sh: python3 is needed" >&2; exit 2; }
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
router_cpus=${router_cpus:-${cpus[0]}}
loadgen_cpus=${loadgen_cpus:-${cpus[1]:-${cpus[0]}}}

case "$io" in
    ring|glommio) ios=("$io") ;;
    both) ios=(glommio ring) ;;
    *) echo "latency.sh: --io ring, glommio or both" >&2; exit 2 ;;
esac
if [ -n "$before" ] && [ ! -x "$before" ]; then
    echo "latency.sh: --before $before is not an executable" >&2; exit 2
fi
router_pid=""
# A router this script started never outlives it.
trap '[ -n "$router_pid" ] && kill -TERM "$router_pid" 2>/dev/null; true' EXIT
echo "== building release binaries"
cargo build --release --workspace --quiet
router=target/release/ilp-router
loadgen=target/release/ilp-loadgen
out=target/bench/latency
mkdir -p "$out"
rm -f "$out"/*.json

common=(--router ws://127.0.0.1:7768 --sender alice:alice-secret --sink bob:bob-secret
        --destination g.router.bob --duration "$duration" --cpu-list "$loadgen_cpus"
        --connections 1 --pacer-spin-us "$pacer_spin")
read -ra router_extra <<< "$router_flags"
# How quiet the host is: a thread that only reads the clock, on each CPU at once (as in a run
# through the router), counts the times it lost its CPU. Whatever stalls it stalls a packet
# in flight on that CPU too; on a guest, stalls the guest cannot see (the host running
# something else on the vCPU's thread) show here and nowhere else.
echo "== host stalls: a thread that only spins, 3 s on each of CPUs $router_cpus and $loadgen_cpus at once"
python3 - "$router_cpus" "$loadgen_cpus" <<'PY' | tee "$out/host-stalls.txt"
import os, sys, time
from multiprocessing import Pool
def probe(cpu, secs=3.0):
    os.sched_setaffinity(0, {cpu})
    now = time.perf_counter_ns
    end, last = now() + int(secs * 1e9), now()
    over50 = over200 = over1000 = lost = worst = 0
    while True:
        t = now()
        gap, last = t - last, t
        if t > end:
            break
        if gap > 10_000:
            lost += gap
            worst = max(worst, gap)
            over50 += gap > 50_000
            over200 += gap > 200_000
            over1000 += gap > 1_000_000
    return (f"   CPU {cpu}: stalls over 50 µs {over50 / secs:.0f}/s, over 200 µs {over200 / secs:.1f}/s, "
            f"over 1 ms {over1000 / secs:.1f}/s; time lost in stalls over 10 µs {lost / secs / 1e7:.2f} %; "
            f"longest {worst / 1000:.0f} µs")
cpus = set()
for part in ",".join(sys.argv[1:]).split(","):
    first, _, last = part.partition("-")
    cpus.update(range(int(first), int(last or first) + 1))
cpus = sorted(cpus)
with Pool(len(cpus)) as pool:
    print("\n".join(pool.map(probe, cpus)))
PY
echo "== router on CPU $router_cpus${router_flags:+ ($router_flags)}, ilp-loadgen (--io ${ios[*]}, --pacer-spin-us $pacer_spin) on CPU $loadgen_cpus, $runs x $duration per rate and path"
IFS=, read -ra rate_list <<< "$rates"
for i in $(seq "$runs"); do
    for rate in "${rate_list[@]}"; do
        for mode in "${ios[@]}"; do
            builds=("router:$router")
            [ -n "$before" ] && builds=("before:$before" "${builds[@]}")
            for build in "${builds[@]}"; do
                name=${build%%:*}
                # A run whose load generator could not connect (a router that was not yet
                # taking connections) is made again once, with a fresh router.
                for attempt in 1 2; do
                    "${build#*:}" run --config tuning/router.toml --cpu-list "$router_cpus" --log-level error "${router_extra[@]}" &
                    router_pid=$!
                    for _ in $(seq 100); do
                        (exec 3<>/dev/tcp/127.0.0.1/7768) 2>/dev/null && break
                        sleep 0.1
                    done
                    ok=1
                    "$loadgen" "${common[@]}" --io "$mode" --rate "$rate" --router-pid "$router_pid" \
                        --json "$out/$name-$mode-$rate-$i.json" >/dev/null || ok=0
                    kill -TERM "$router_pid"
                    wait "$router_pid" || true
                    router_pid=""
                    [ "$ok" = 1 ] && break
                    echo "   ($name at $rate/s: ilp-loadgen failed; run again)" >&2
                    [ "$attempt" = 2 ] && { echo "latency.sh: ilp-loadgen failed twice" >&2; exit 1; }
                done
            done
            "$loadgen" "${common[@]}" --io "$mode" --rate "$rate" --direct \
                --json "$out/direct-$mode-$rate-$i.json" >/dev/null
        done
        echo "   run $i at $rate/s done"
    done
done

python3 - "$out" "$runs" "$rates" "${ios[*]}" "${before:+before}" <<'PY'
import json, statistics as st, sys
out, runs, rates = sys.argv[1], int(sys.argv[2]), [int(r) for r in sys.argv[3].split(",")]
ios = sys.argv[4].split()
builds = (["before"] if sys.argv[5] else []) + ["router"]
def med(path, rate, key):
    vals = []
    for i in range(1, runs + 1):
        r = json.load(open(f"{out}/{path}-{rate}-{i}.json"))
        if key in ("p50", "p99"):
            v = r["latency_us"][key]
        elif key == "cpu":
            v = r.get("router_cpu_us_per_packet")
        else:
            v = (r.get("send_lateness_us") or {}).get(key.removeprefix("lateness_"))
        vals.append(v)
    vals = [v for v in vals if v is not None]
    return st.median(vals) if vals else None
lines = ["| rate | build | ilp-loadgen --io | through the router p50 / p99 µs | `--direct` p50 / p99 µs | p50 over direct | p99 / direct p99 | router CPU µs per round trip | send lateness p50 / p99 µs |",
         "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
for rate in rates:
    for io in ios:
        dp50, dp99 = med(f"direct-{io}", rate, "p50"), med(f"direct-{io}", rate, "p99")
        for b in builds:
            rp50, rp99 = med(f"{b}-{io}", rate, "p50"), med(f"{b}-{io}", rate, "p99")
            l50, l99 = med(f"{b}-{io}", rate, "lateness_p50"), med(f"{b}-{io}", rate, "lateness_p99")
            cpu = med(f"{b}-{io}", rate, "cpu")
            lat = "n/a" if l50 is None else f"{l50:.0f} / {l99:.0f}"
            cpu = "n/a" if cpu is None else f"{cpu:.1f}"
            name = "this build" if b == "router" else "before"
            lines.append(f"| {rate:,} | {name} | {io} | {rp50:.0f} / {rp99:.0f} | {dp50:.0f} / {dp99:.0f} | {rp50 - dp50:+.0f} | {rp99 / dp99:.2f} | {cpu} | {lat} |")
text = "\n".join(lines)
print("\n" + text)
open(f"{out}/table.md", "w").write(text + "\n")
PY
