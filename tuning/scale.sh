#!/usr/bin/env bash
# How the router scales with cores: for N = 1 … MAX router cores (pinned to the first N CPUs,
# `--btp-port-per-core`), a closed-loop load generator on the remaining CPUs opens one sender
# and one sink connection per router core (connection i to core i's port, so every core
# carries the same share), and the table gives packets/s, packets/s per router core and
# router CPU per packet (from /proc, so it holds on a shared machine). Then the cross-core
# case: two router cores, the sender's single connection on core 0 and the sink's on core 1,
# so every Prepare and every Fulfill crosses the mesh; compared with the same-core cost.
#
#   bash tuning/scale.sh [--max-cores N] [--duration 5s] [--window 512] [--no-cross]
#
# MAX defaults to half the CPUs this process may use (at least 1): the load generator needs
# the other half to keep N router cores busy. On a 2-CPU machine that is N = 1 only; the
# cross-core case then shares CPUs with the load generator (its CPU per packet still counts).
# On a large host, isolate the CPUs first (tuning/host.sh --check) and raise --max-cores.
# JSON per run in target/scale/.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=5s
window=512
max=""
cross=1
while [ $# -gt 0 ]; do
    case "$1" in
        --max-cores) max=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --window) window=$2; shift 2 ;;
        --no-cross) cross=0; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "scale.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v python3 >/dev/null || { echo "scale.sh: python3 is needed to read the JSON" >&2; exit 2; }
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
n=${#cpus[@]}
max=${max:-$(( n / 2 > 0 ? n / 2 : 1 ))}
if [ "$max" -ge "$n" ] && [ "$n" -gt 1 ]; then
    echo "scale.sh: --max-cores $max leaves no CPU for the load generator ($n CPUs)" >&2
    exit 2
fi

echo "== building release binaries"
cargo build --release --workspace --quiet
router=target/release/ilp-router
loadgen=target/release/ilp-loadgen
out=target/scale
mkdir -p "$out"
port=7768
router_pid=""
stop_router() {
    if [ -n "$router_pid" ]; then
        kill -TERM "$router_pid" 2>/dev/null || true
        wait "$router_pid" 2>/dev/null || true
        router_pid=""
    fi
}
trap stop_router EXIT

# Starts the router on the CPUs in $1 (one core each, a port per core); more router flags
# after it.
start_router() {
    local cpus=$1
    shift
    "$router" run --config tuning/router.toml --cpu-list "$cpus" --btp-port-per-core --log-level warn "$@" &
    router_pid=$!
    local cores
    cores=$(echo "$cpus" | tr ',' '\n' | grep -c .)
    for core in $(seq 0 $(( cores - 1 ))); do
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/$(( port + core ))) 2>/dev/null && break
            sleep 0.1
        done
    done
}

# Runs one sender and one sink process per router core (connection i on port + i), all on
# the CPUs in $2, for router cores in $1; writes $out/$3-<i>.json.
run_load() {
    local cores=$1 lg_cpus=$2 name=$3 pids=() sinks=()
    # The sinks outlive the senders (stopped once they are done), so no Prepare finds bob gone.
    for core in $(seq 0 $(( cores - 1 ))); do
        local url="ws://127.0.0.1:$(( port + core ))"
        "$loadgen" --router "$url" --role sink --sink bob:bob-secret --connections 1 \
            --duration 60m --cpu-list "$lg_cpus" >/dev/null 2>&1 &
        sinks+=($!)
    done
    sleep 0.3
    for core in $(seq 0 $(( cores - 1 ))); do
        local url="ws://127.0.0.1:$(( port + core ))"
        "$loadgen" --router "$url" --role send --sender alice:alice-secret --sink bob:bob-secret \
            --destination g.router.bob --connections 1 --window "$window" \
            --duration "$duration" --cpu-list "$lg_cpus" --router-pid "$router_pid" \
            --json "$out/$name-$core.json" >/dev/null &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    for pid in "${sinks[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

for cores in $(seq 1 "$max"); do
    router_cpus=$(IFS=,; echo "${cpus[*]:0:$cores}")
    lg=("${cpus[@]:$cores}")
    [ ${#lg[@]} -gt 0 ] || lg=("${cpus[@]}")
    lg_cpus=$(IFS=,; echo "${lg[*]}")
    echo "== $cores router core(s) on CPUs $router_cpus, load on CPUs $lg_cpus, $duration"
    start_router "$router_cpus"
    run_load "$cores" "$lg_cpus" "n$cores"
    stop_router
done

if [ "$cross" = 1 ]; then
    if [ "$n" -lt 2 ]; then
        echo "== cross-core: skipped, one CPU"
        cross=0
    else
        router_cpus="${cpus[0]},${cpus[1]}"
        lg=("${cpus[@]:2}")
        shared=()
        if [ ${#lg[@]} -eq 0 ]; then
            lg=("${cpus[@]}")
            # The router's cores share their CPUs with the load generators here: a core that
            # spins for its next packet (spin_max_us) takes that CPU from them, so only the
            # minimum spin, as on a host that shares CPUs.
            shared=(--spin-max-us 0)
        fi
        lg_cpus=$(IFS=,; echo "${lg[*]}")
        echo "== cross-core: router on CPUs $router_cpus, sender on core 0's port, sink on core 1's ${shared[*]}"
        start_router "$router_cpus" "${shared[@]}"
        "$loadgen" --router "ws://127.0.0.1:$(( port + 1 ))" --role sink --sink bob:bob-secret \
            --connections 1 --duration 60m --cpu-list "$lg_cpus" >/dev/null 2>&1 &
        sink=$!
        sleep 0.3
        "$loadgen" --router "ws://127.0.0.1:$port" --role send --sender alice:alice-secret \
            --sink bob:bob-secret --destination g.router.bob --connections 1 --window "$window" \
            --duration "$duration" --cpu-list "$lg_cpus" --router-pid "$router_pid" \
            --json "$out/cross-0.json" >/dev/null
        kill -TERM "$sink" 2>/dev/null || true
        wait "$sink" 2>/dev/null || true
        stop_router
    fi
fi

python3 - "$out" "$max" "$cross" <<'PY'
import glob, json, sys, os, platform
out, max_cores, cross = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def load(prefix):
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{prefix}-*.json"))]
    pps = sum(r["pps"] for r in runs)
    # Every sender reads the same router's CPU time over the same window: take their mean.
    cpu = [r["router_cpu_us_per_packet"] for r in runs if r.get("router_cpu_us_per_packet")]
    # Each sender divides the router's CPU by its own packets: the router's cost per packet
    # over all of them is that over the number of senders.
    per_pkt = (sum(cpu) / len(cpu)) / len(runs) if cpu else None
    rejected = sum(sum(r["rejected"].values()) for r in runs)
    return pps, per_pkt, rejected, len(runs)
rows = []
for n in range(1, max_cores + 1):
    pps, cpu, rej, k = load(f"n{n}")
    rows.append((f"{n} core(s), same core", f"{pps:,.0f}", f"{pps / n:,.0f}", "n/a" if cpu is None else f"{cpu:.3f}", str(rej)))
if cross:
    pps, cpu, rej, k = load("cross")
    rows.append(("2 cores, every packet crosses", f"{pps:,.0f}", f"{pps / 2:,.0f}", "n/a" if cpu is None else f"{cpu:.3f}", str(rej)))
head = ("run", "packets/s", "per router core", "router CPU µs/pkt", "rejected")
widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
line = lambda cols: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))
print()
print(line(head))
print("  ".join("-" * w for w in widths))
for r in rows:
    print(line(r))
print(f"\n{os.cpu_count()} CPUs, kernel {platform.release()}; JSON per run in {out}/")
PY
