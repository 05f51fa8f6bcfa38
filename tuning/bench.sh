#!/usr/bin/env bash
# The benchmark runbook in one command: build release binaries, pin the router to some cores
# and ilp-loadgen to the others, then run
#   1. the harness ceiling: ilp-loadgen --direct (sender straight to sink, no router),
#   2. a saturation run (closed loop) through the router,
#   3. an open-loop run at half the saturation rate (latency at a sane load), and the direct
#      path open loop at the same rate (the floor that latency is compared with),
# reading the router's CPU time from /proc, and print one table. JSON goes to target/bench/.
#
#   bash tuning/bench.sh [--duration 10s] [--router-cpus LIST] [--loadgen-cpus LIST]
#                        [--connections N] [--window N] [--io glommio|ring]
#
# Defaults: on 2 CPUs the router gets the first and the load generator the second; on more,
# the router gets the first half. Router CPU per packet (from /proc/PID/task/*/schedstat) is
# the figure that matters on a shared machine; report medians of several runs. A router core
# spins after each batch (spin_us..spin_max_us), so its CPU time counts waiting for the load
# generator too: "less idle spin" takes out what its admin API (ilp_core_spin_idle_seconds_total,
# on 127.0.0.1:7781 here) says it spun with nothing to forward. --io: how ilp-loadgen reads
# and writes (its --io; default glommio; ring: the load threads' own io_uring ring, as the
# router's cores do, the yardstick for "router/harness" and the instrument for latency).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s
connections=""
window=512
io=glommio
router_cpus=""
loadgen_cpus=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --router-cpus) router_cpus=$2; shift 2 ;;
        --loadgen-cpus) loadgen_cpus=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --window) window=$2; shift 2 ;;
        --io) io=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "bench.sh: python3 is needed to read the JSON" >&2; exit 2; }
case "$io" in
    glommio|ring) ;;
    *) echo "bench.sh: --io glommio or ring" >&2; exit 2 ;;
esac
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
n=${#cpus[@]}
if [ -z "$router_cpus" ] || [ -z "$loadgen_cpus" ]; then
    if [ "$n" -lt 2 ]; then
        echo "bench.sh: only $n CPU; the router and the load generator would share it" >&2
        router_cpus=${cpus[0]}; loadgen_cpus=${cpus[0]}
    else
        half=$(( n / 2 ))
        router_cpus=$(IFS=,; echo "${cpus[*]:0:$half}")
        loadgen_cpus=$(IFS=,; echo "${cpus[*]:$half}")
    fi
fi
router_cores=$(echo "$router_cpus" | tr ',' '\n' | grep -c .)
loadgen_cores=$(echo "$loadgen_cpus" | tr ',' '\n' | grep -c .)
connections=${connections:-$(( 2 * loadgen_cores > router_cores ? 2 * loadgen_cores : router_cores ))}

echo "== building release binaries"
cargo build --release --workspace --quiet
router=target/release/ilp-router
loadgen=target/release/ilp-loadgen
out=target/bench
mkdir -p "$out"
port=7768

echo "== router on CPUs $router_cpus, ilp-loadgen (--io $io) on CPUs $loadgen_cpus, $connections connections x window $window, $duration per run"
# The example config plus an admin API on loopback, for the cores' idle spin
# (ilp_core_spin_idle_seconds_total): a core that spins is never idle by its CPU time.
admin_port=7781
config="$out/router.toml"
cp tuning/router.toml "$config"
printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$admin_port" >> "$config"
"$router" run --config "$config" --cpu-list "$router_cpus" --log-level warn &
router_pid=$!
trap 'kill -TERM $router_pid 2>/dev/null; wait $router_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
done

# Seconds all router cores have spun with nothing to do, so far.
idle_s() {
    python3 - "$admin_port" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("ilp_core_spin_idle_seconds_total{")))
PY
}

common=(--router "ws://127.0.0.1:$port" --sender alice:alice-secret --sink bob:bob-secret
        --destination g.router.bob --duration "$duration" --cpu-list "$loadgen_cpus"
        --connections "$connections" --window "$window" --io "$io")

echo "== 1/4 harness ceiling (--direct)"
"$loadgen" "${common[@]}" --direct --json "$out/direct.json" >/dev/null
echo "== 2/4 saturation (closed loop)"
idle0=$(idle_s)
"$loadgen" "${common[@]}" --router-pid "$router_pid" --json "$out/saturation.json" --report "$out/saturation.html" >/dev/null
idle1=$(idle_s)
half_rate=$(python3 -c "import json; print(max(1, int(json.load(open('$out/saturation.json'))['pps'] / 2)))")
echo "== 3/4 open loop at $half_rate /s (half of saturation)"
"$loadgen" "${common[@]}" --rate "$half_rate" --router-pid "$router_pid" --json "$out/half-rate.json" --report "$out/half-rate.html" >/dev/null
idle2=$(idle_s)
echo "== 4/4 direct, open loop at $half_rate /s (the floor at that rate)"
"$loadgen" "${common[@]}" --direct --rate "$half_rate" --json "$out/direct-half-rate.json" >/dev/null

python3 - "$out" "$idle0" "$idle1" "$idle2" <<'PY'
import json, sys, platform, os
out = sys.argv[1]
idle0, idle1, idle2 = map(float, sys.argv[2:5])
# Idle spin during each router run: what its CPU time holds beyond the load it carried.
idle = {"saturation.json": idle1 - idle0, "half-rate.json": idle2 - idle1}
runs = [("direct (no router)", "direct.json"), ("saturation", "saturation.json"), ("open loop, half rate", "half-rate.json"), ("direct, half rate", "direct-half-rate.json")]
def f(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)
floor = json.load(open(f"{out}/direct-half-rate.json"))["latency_us"]["p50"]
rows = []
for name, file in runs:
    r = json.load(open(f"{out}/{file}"))
    l = r["latency_us"]
    rej = sum(r["rejected"].values())
    router, harness = r.get("router_cpu_us_per_packet"), r.get("loadgen_cpu_us_per_packet")
    # The router's CPU per round trip over the load generator's own in the same run: the
    # issue's bar is 1.0 (the harness does the same parses and emits per round trip).
    ratio = router / harness if router and harness else None
    # Less the idle spin: the CPU the packets themselves took (the harness's figure keeps
    # its executor's own 50 µs spin before each park; it has no way to tell it apart).
    busy = router - idle[file] * 1e6 / r["fulfilled"] if router and r["fulfilled"] and file in idle else None
    busy_ratio = busy / harness if busy and harness else None
    r["router_busy_cpu_us_per_packet"] = busy
    over = l["p50"] - floor if file == "half-rate.json" and l["p50"] is not None and floor is not None else None
    rows.append((name, f(r["pps"]), f(router, "{:.3f}"), f(busy, "{:.3f}"), f(harness, "{:.3f}"), f(ratio, "{:.2f}"), f(busy_ratio, "{:.2f}"), f(l["p50"]), f(over), f(l["p99"]), f(l["p999"]), str(rej), str(r["timeouts"])))
head = ("run", "packets/s", "router CPU µs/pkt", "less idle spin", "harness CPU µs/pkt", "router/harness", "less idle/harness", "p50 µs", "p50 over direct", "p99 µs", "p99.9 µs", "rejected", "timeouts")
widths = [max(len(x[i]) for x in rows + [head]) for i in range(len(head))]
line = lambda cols: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))
print()
print(line(head))
print("  ".join("-" * w for w in widths))
for row in rows:
    print(line(row))
summary = {name: json.load(open(f"{out}/{file}")) for name, file in runs}
for name, file in runs:
    if file in idle:
        summary[name]["router_spin_idle_s"] = idle[file]
json.dump({"machine": {"cpus": os.cpu_count(), "kernel": platform.release()}, "runs": summary}, open(f"{out}/bench.json", "w"), indent=2)
print(f"\nJSON: {out}/bench.json (and one file per run); reports: {out}/saturation.html, {out}/half-rate.html")
PY
