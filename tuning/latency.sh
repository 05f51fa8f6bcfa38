#!/usr/bin/env bash
# The latency table: open-loop runs of ilp-loadgen at fixed rates, through the router,
# --direct (sender straight to sink: the floor of this machine and of the instrument) and
# through a relay (--direct with --relay-cpu: a hop that only copies bytes, on the router's
# CPU; the least any connector adds here), back to back, a fresh router per run. Prints p50 /
# p99 of each, the router's and the relay's p50 over the floor, the router's p99 as a
# multiple of the floor's, the busy CPU per round trip of the router (its CPU less what its
# cores spun with nothing to do, from its admin API) and of the relay, and the load
# generator's own send lateness (how late the pacer sent, which every latency figure
# includes).
#
#   bash tuning/latency.sh [--rates 1000,10000,100000] [--duration 5s] [--runs N]
#                          [--router-cpus LIST] [--loadgen-cpus LIST] [--before ROUTER_BINARY]
#                          [--io ring|glommio|both] [--pacer-spin-us US] [--router-flags "..."]
#                          [--no-relay]
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
# --no-relay: no relay runs (the relay takes the first router CPU, which must not be one of
# the load generator's).
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
relay=1
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
        --no-relay) relay=0; shift ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "latency.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "latency.sh: python3 is needed" >&2; exit 2; }
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
router_cpus=${router_cpus:-${cpus[0]}}
loadgen_cpus=${loadgen_cpus:-${cpus[1]:-${cpus[0]}}}
relay_cpu=${router_cpus%%[,-]*}
if [ "$relay" = 1 ] && python3 -c 'import sys
cpus = set()
for part in sys.argv[2].split(","):
    first, _, last = part.partition("-")
    cpus.update(range(int(first), int(last or first) + 1))
sys.exit(0 if int(sys.argv[1]) in cpus else 1)' "$relay_cpu" "$loadgen_cpus"; then
    echo "latency.sh: the relay's CPU ($relay_cpu, the first router CPU) is one of the load generator's ($loadgen_cpus): give CPUs apart, or --no-relay" >&2
    exit 2
fi

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
rm -f "$out"/*.json "$out"/*.busy
# The example config plus an admin API on loopback: what the router's cores spun with
# nothing to do (ilp_core_spin_idle_seconds_total), to tell their busy CPU from their spin.
admin_port=7782
config="$out/router.toml"
cp tuning/router.toml "$config"
printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$admin_port" >> "$config"
# The router's CPU time and its cores' idle spin so far, in seconds: "cpu idle".
router_seconds() {
    python3 - "$1" "$admin_port" <<'PY'
import os, sys, urllib.request
pid, port = sys.argv[1], sys.argv[2]
ns = 0
for task in os.listdir(f"/proc/{pid}/task"):
    try:
        ns += int(open(f"/proc/{pid}/task/{task}/schedstat").read().split()[0])
    except OSError:
        pass
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
idle = sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("ilp_core_spin_idle_seconds_total{"))
print(ns / 1e9, idle)
PY
}

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
echo "== router on CPU $router_cpus${router_flags:+ ($router_flags)}, ilp-loadgen (--io ${ios[*]}, --pacer-spin-us $pacer_spin) on CPU $loadgen_cpus$([ "$relay" = 1 ] && echo ", the relay on CPU $relay_cpu"), $runs x $duration per rate and path"
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
                    "${build#*:}" run --config "$config" --cpu-list "$router_cpus" --log-level error "${router_extra[@]}" &
                    router_pid=$!
                    for _ in $(seq 100); do
                        (exec 3<>/dev/tcp/127.0.0.1/7768) 2>/dev/null && break
                        sleep 0.1
                    done
                    ok=1
                    seconds_before=$(router_seconds "$router_pid") || ok=0
                    "$loadgen" "${common[@]}" --io "$mode" --rate "$rate" --router-pid "$router_pid" \
                        --json "$out/$name-$mode-$rate-$i.json" >/dev/null || ok=0
                    # The router's CPU and idle spin over the load generator's whole run.
                    [ "$ok" = 1 ] && echo "$seconds_before $(router_seconds "$router_pid")" > "$out/$name-$mode-$rate-$i.busy"
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
            if [ "$relay" = 1 ]; then
                "$loadgen" "${common[@]}" --io "$mode" --rate "$rate" --direct --relay-cpu "$relay_cpu" \
                    --json "$out/relay-$mode-$rate-$i.json" >/dev/null
            fi
        done
        echo "   run $i at $rate/s done"
    done
done

python3 - "$out" "$runs" "$rates" "${ios[*]}" "${before:+before}" "$relay" <<'PY'
import json, os, statistics as st, sys
out, runs, rates = sys.argv[1], int(sys.argv[2]), [int(r) for r in sys.argv[3].split(",")]
ios = sys.argv[4].split()
builds = (["before"] if sys.argv[5] else []) + ["router"]
relay = sys.argv[6] == "1"
def busy(path, i, r):
    """The router's busy CPU per round trip: its CPU less its cores' idle spin, over the
    load generator's whole run, per Fulfill."""
    try:
        c0, i0, c1, i1 = map(float, open(f"{out}/{path}-{i}.busy").read().split())
    except (OSError, ValueError):
        return None
    return ((c1 - c0) - (i1 - i0)) * 1e6 / r["fulfilled"] if r["fulfilled"] else None
def med(path, rate, key):
    vals = []
    for i in range(1, runs + 1):
        r = json.load(open(f"{out}/{path}-{rate}-{i}.json"))
        if key in ("p50", "p99"):
            v = r["latency_us"][key]
        elif key == "busy":
            v = r.get("relay_busy_cpu_us_per_packet") if path.startswith("relay") else busy(f"{path}-{rate}", i, r)
        else:
            v = (r.get("send_lateness_us") or {}).get(key.removeprefix("lateness_"))
        vals.append(v)
    vals = [v for v in vals if v is not None]
    return st.median(vals) if vals else None
def f(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)
lines = ["| rate | build | ilp-loadgen --io | through the router p50 / p99 µs | `--direct` p50 / p99 µs | relay p50 / p99 µs | **router p50 over direct** | relay p50 over direct | router p99 / direct p99 | busy CPU µs per round trip: router / relay | send lateness p50 / p99 µs |",
         "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for rate in rates:
    for io in ios:
        dp50, dp99 = med(f"direct-{io}", rate, "p50"), med(f"direct-{io}", rate, "p99")
        if relay:
            yp50, yp99 = med(f"relay-{io}", rate, "p50"), med(f"relay-{io}", rate, "p99")
            ybusy = med(f"relay-{io}", rate, "busy")
        else:
            yp50 = yp99 = ybusy = None
        for b in builds:
            rp50, rp99 = med(f"{b}-{io}", rate, "p50"), med(f"{b}-{io}", rate, "p99")
            l50, l99 = med(f"{b}-{io}", rate, "lateness_p50"), med(f"{b}-{io}", rate, "lateness_p99")
            rbusy = med(f"{b}-{io}", rate, "busy")
            lat = "n/a" if l50 is None else f"{l50:.0f} / {l99:.0f}"
            name = "this build" if b == "router" else "before"
            yover = None if yp50 is None else yp50 - dp50
            lines.append(f"| {rate:,} | {name} | {io} | {rp50:.0f} / {rp99:.0f} | {dp50:.0f} / {dp99:.0f} | {f(yp50)} / {f(yp99)} | **{rp50 - dp50:+.0f}** | {f(yover, '{:+.0f}')} | {rp99 / dp99:.2f} | {f(rbusy, '{:.1f}')} / {f(ybusy, '{:.1f}')} | {lat} |")
text = "\n".join(lines)
print("\n" + text)
open(f"{out}/table.md", "w").write(text + "\n")
PY
