#!/usr/bin/env bash
# Limits shared by several routers through etcd ([cluster_state], shared_limit), measured:
#
#  A. the cost: one router, alice's limit shared (through a 3-member etcd on loopback) or
#     local, alternating closed-loop runs of ilp-loadgen in one script run; router CPU per
#     packet of each (median) and the etcd transactions and requests per second at that load;
#  B. two routers as one front: both route g.router.cluster to the same group of two backends
#     (bob1, bob2), alice multi-homed (one ilp-loadgen per router, same credentials), a large
#     shared limit: the combined packets/s;
#  C. the same with a limit small enough to run out mid-run; r1 is killed -9 after 1 s; then
#     r1 restarts (it reconciles), both stop, and etcd's record shows the posted balance of
#     every router: the sum equals what the sinks fulfilled (less what was in flight at the
#     kill) and stays within max_balance.
#
#   bash tuning/shared-limit-bench.sh [--runs N] [--duration 4s] [--window N]
#
# Defaults: 3 runs of each mode in A, 4 s each (B too), window 512 x 2 connections; C runs
# 8 s and kills r1 after 1 s. Needs etcd (Debian's etcd-server) and python3. JSON of every run and
# the tables go to target/bench/shared-limit/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
duration=4s
window=512
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --window) window=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "shared-limit-bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for tool in python3 etcd; do
    command -v "$tool" >/dev/null || { echo "shared-limit-bench.sh: $tool is needed (apt-get install etcd-server python3)" >&2; exit 2; }
done
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
cpu0=${cpus[0]}
cpu1=${cpus[1]:-${cpus[0]}}

echo "== building release binaries"
cargo build --release --workspace --quiet
router=$PWD/target/release/ilp-router
loadgen=$PWD/target/release/ilp-loadgen
out=$PWD/target/bench/shared-limit
rm -rf "$out"
mkdir -p "$out"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== etcd: 3 members on loopback"
cluster="m0=http://127.0.0.1:22380,m1=http://127.0.0.1:22382,m2=http://127.0.0.1:22384"
for i in 0 1 2; do
    client=$((22379 + 2 * i)); peer=$((22380 + 2 * i))
    etcd --name "m$i" --data-dir "$out/etcd-$i" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
        >"$out/etcd-$i.log" 2>&1 &
    pids+=($!)
done
etcd_urls='"http://127.0.0.1:22379", "http://127.0.0.1:22381", "http://127.0.0.1:22383"'
python3 - <<'PY'
import time, urllib.request
deadline = time.time() + 30
for port in (22379, 22381, 22383):
    while True:
        try:
            if b'"true"' in urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read():
                break
        except Exception:
            pass
        if time.time() > deadline:
            raise SystemExit(f"etcd on {port} is not healthy")
        time.sleep(0.2)
PY

# config NAME BTP ADMIN SHARED MAX_BALANCE CHUNK_DIVISOR PREFIX
config() {
    python3 - "$out" "$@" "$etcd_urls" <<'PY'
import sys
out, name, btp, admin, shared, max_balance, divisor, prefix, etcd = sys.argv[1:]
peer = lambda n, extra="": f'''
[[peers]]
name = "{n}"
auth_tokens = ["{n}-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
{extra}'''
text = f'''ilp_address = "g.router"
min_message_window_ms = 1000
max_hold_time_ms = 30000
[listen]
btp = "127.0.0.1:{btp}"
[admin]
listen = "127.0.0.1:{admin}"
[state]
dir = "{out}/state-{name}"
[cluster_state]
etcd = [{etcd}]
box_id = "{name}"
prefix = "{prefix}"
chunk_divisor = {divisor}
'''
text += peer("alice", f'max_balance = "{max_balance}"\nshared_limit = {shared}\n')
text += peer("bob1", 'max_balance = "1000000000000000"\n')
text += peer("bob2", 'max_balance = "1000000000000000"\n')
text += '''
[[groups]]
name = "cluster"
peers = ["bob1", "bob2"]
[[routes]]
prefix = "g.router.cluster"
group = "cluster"
[rates]
USD = "1"
'''
open(f"{out}/{name}.toml", "w").write(text)
PY
}

# start NAME CPU: starts the router of $out/NAME.toml pinned to CPU; sets started_pid
start() {
    "$router" run --config "$out/$1.toml" --cpu-list "$2" --log-level warn 2>>"$out/$1.log" &
    started_pid=$!
    pids+=("$started_pid")
    local port
    port=$(python3 -c "import re,sys; print(re.search(r'btp = \"127.0.0.1:(\d+)\"', open(sys.argv[1]).read())[1])" "$out/$1.toml")
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "shared-limit-bench.sh: router $1 did not start; see $out/$1.log" >&2
    exit 1
}

metric() { # metric ADMIN_PORT NAME{LABELS}: the sample's value
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
port, name = sys.argv[1], sys.argv[2]
for line in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode().splitlines():
    if line.startswith(name + " "):
        print(line.split()[1]); break
else:
    print(0)
PY
}

amount=1000
echo "== A: one router (CPU $cpu0), ilp-loadgen (CPU $cpu1), alice shared or local, $runs x $duration each"
# The smallest chunks there are (max_balance / 2^20, about 950 Prepares of 1000): the router
# takes what it uses in half a second at the rate it sees, so this shows how often it goes to
# etcd at full load. Each run has a prefix of its own in etcd.
for i in $(seq "$runs"); do
    for mode in local shared; do
        shared=false; [ "$mode" = shared ] && shared=true
        config "a-$mode-$i" 7768 7780 "$shared" 1000000000000000 1048576 "/bench/a-$mode-$i"
        start "a-$mode-$i" "$cpu0"
        rpid=$started_pid
        "$loadgen" --router ws://127.0.0.1:7768 --sinks 2 --destination g.router.cluster \
            --cpu-list "$cpu1" --duration "$duration" --window "$window" --connections 2 \
            --amount "$amount" --router-pid "$rpid" --json "$out/a-$mode-$i.json" >/dev/null
        echo "$(metric 7780 'ilp_cluster_store_txns_total{result="ok"}') $(metric 7780 ilp_cluster_store_requests_total)" \
            > "$out/a-$mode-$i.etcd"
        kill -TERM "$rpid"; wait "$rpid" || true
        echo "   run $i $mode done"
    done
done

echo "== B: two routers (r1 on CPU $cpu0, r2 on CPU $cpu1), alice multi-homed, a large shared limit, $duration"
config b-r1 7768 7780 true 1000000000000000 8 /bench/b
config b-r2 7769 7781 true 1000000000000000 8 /bench/b
start b-r1 "$cpu0"; r1=$started_pid
start b-r2 "$cpu1"; r2=$started_pid
for n in 1 2; do
    "$loadgen" --router ws://127.0.0.1:776$((7 + n)) --sinks 2 --destination g.router.cluster \
        --duration "$duration" --window "$window" --connections 2 --amount "$amount" \
        --json "$out/b-r$n.json" >/dev/null &
    lg[$n]=$!
done
wait "${lg[1]}" "${lg[2]}"
kill -TERM "$r1" "$r2"; wait "$r1" "$r2" || true

echo "== C: the same with max_balance 2*10^9 (2 000 000 Prepares of 1000), 8 s, r1 killed -9 after 1 s"
config r1 7768 7780 true 2000000000 8 /bench/c
config r2 7769 7781 true 2000000000 8 /bench/c
start r1 "$cpu0"; r1=$started_pid
start r2 "$cpu1"; r2=$started_pid
for n in 1 2; do
    "$loadgen" --router ws://127.0.0.1:776$((7 + n)) --sinks 2 --destination g.router.cluster \
        --duration 8s --window "$window" --connections 2 --amount "$amount" \
        --json "$out/c-r$n.json" >"$out/c-r$n.out" 2>&1 &
    lg[$n]=$!
done
sleep 1
kill -9 "$r1"
wait "${lg[1]}" || echo "   (r1's load generator ended with status $?: its router was killed)"
wait "${lg[2]}" || true
# etcd's record while r1 is dead: what r1 held stays counted.
python3 - <<'PY' > "$out/c-dead.json"
import json, urllib.request
req = urllib.request.Request("http://127.0.0.1:22379/v3/kv/range", method="POST",
      data=json.dumps({"key": "L2JlbmNoL2MvbGltaXRzL2FsaWNl"}).encode())  # /bench/c/limits/alice
print(json.load(urllib.request.urlopen(req, timeout=5))["kvs"][0]["value"])
PY
start r1 "$cpu0"; r1=$started_pid
sleep 3  # r1 reconciles from its ledger
kill -TERM "$r1" "$r2"; wait "$r1" "$r2" || true

python3 - "$out" "$runs" "$amount" <<'PY'
import base64, json, statistics as st, sys, urllib.request, os
out, runs, amount = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = ["### A: one router, alice's limit local or shared through etcd", "",
         "| alice's limit | packets/s (median) | router CPU µs/packet (median, min–max) | etcd txns/s | etcd requests/s |",
         "| --- | ---: | ---: | ---: | ---: |"]
med = {}
for mode in ("local", "shared"):
    rs = [json.load(open(f"{out}/a-{mode}-{i}.json")) for i in range(1, runs + 1)]
    cpu = [r["router_cpu_us_per_packet"] for r in rs]
    etcd = [list(map(float, open(f"{out}/a-{mode}-{i}.etcd").read().split())) for i in range(1, runs + 1)]
    dur = st.median(r["duration_s"] for r in rs)
    med[mode] = st.median(cpu)
    lines.append(f"| {mode} | {st.median(r['pps'] for r in rs):,.0f} | {st.median(cpu):.3f} ({min(cpu):.3f}–{max(cpu):.3f}) "
                 f"| {st.median(e[0] for e in etcd) / dur:.1f} | {st.median(e[1] for e in etcd) / dur:.1f} |")
lines += ["", f"shared / local router CPU per packet: {med['shared'] / med['local']:.3f}", ""]
# B
b = [json.load(open(f"{out}/b-r{n}.json")) for n in (1, 2)]
lines += ["### B: two routers, alice multi-homed (one ilp-loadgen per router), a large shared limit", "",
          "| router | packets/s | rejected | router CPU µs/packet |", "| --- | ---: | ---: | ---: |"]
for n, r in zip(("r1", "r2"), b):
    lines.append(f"| {n} | {r['pps']:,.0f} | {sum(r['rejected'].values()):,} | n/a (both routers share the load generators' CPUs) |")
lines += [f"| both | {sum(r['pps'] for r in b):,.0f} | | |", ""]
# C
req = urllib.request.Request("http://127.0.0.1:22379/v3/kv/range", method="POST",
      data=json.dumps({"key": base64.b64encode(b"/bench/c/limits/alice").decode()}).encode())
kv = json.load(urllib.request.urlopen(req, timeout=5))["kvs"][0]
record = json.loads(base64.b64decode(kv["value"]))
c = {n: json.load(open(f"{out}/c-{n}.json")) for n in ("r1", "r2") if os.path.exists(f"{out}/c-{n}.json")}
posted = sum(int(e["posted"]) for e in record["boxes"].values())
ceilings = sum(int(e["ceiling"]) for e in record["boxes"].values())
lines += ["### C: the same with max_balance 2 000 000 000 (2 000 000 Prepares of 1000), 8 s, r1 killed -9 after 1 s, restarted after the run", "",
          "| router | fulfilled (sender) | T04 | sinks fulfilled | posted in etcd | ceiling in etcd |",
          "| --- | ---: | ---: | ---: | ---: | ---: |"]
for n in ("r1", "r2"):
    e = record["boxes"].get(n, {})
    r = c.get(n)
    sinks = sum(s["fulfilled"] for s in r.get("sinks", [])) if r else 0
    lines.append(f"| {n} | {r['fulfilled'] if r else 0:,} | {r['rejected'].get('T04', 0) if r else 0:,} | {sinks:,} | "
                 f"{int(e.get('posted', 0)) // amount:,} | {int(e.get('ceiling', 0)) // amount:,} |")
dead = json.loads(base64.b64decode(open(f"{out}/c-dead.json").read().strip()))["boxes"]
lines += ["", f"etcd while r1 was dead, after r2 ran out (amounts / 1000): r1 ceiling {int(dead['r1']['ceiling']) // amount:,} "
          f"(posted {int(dead['r1']['posted']) // amount:,} as last published), r2 ceiling {int(dead['r2']['ceiling']) // amount:,}; "
          f"sum {(int(dead['r1']['ceiling']) + int(dead['r2']['ceiling'])) // amount:,}",
          f"etcd after r1 restarted and both stopped: posted {posted // amount:,} of max_balance "
          f"{int(record['max_balance']) // amount:,}; ceilings {ceilings // amount:,}"]
text = "\n".join(lines)
print("\n" + text)
open(f"{out}/table.md", "w").write(text + "\n")
PY
