#!/usr/bin/env bash
# Soak test: the router under ilp-loadgen for a long time, with some sink misbehaviour, its
# memory watched and its durable balances checked against what the peers saw.
#
#   bash tuning/soak.sh [--duration 10m] [--rate N] [--router-cpus LIST] [--loadgen-cpus LIST]
#
#   --duration D   how long the soak sends: 30s, 10m, 1h, or plain seconds (default 10m)
#   --rate N       Prepares per second, open loop; default: half the saturation rate, measured
#                  first with a 5 s closed-loop run on a separate router instance
#   --router-cpus LIST, --loadgen-cpus LIST
#                  CPUs for each (e.g. 0 and 1, or 0-3 and 4-7); give both or neither.
#                  Default as tuning/bench.sh: the first half of the allowed CPUs for the router
#
# It builds release binaries, writes a config (tuning/router.toml on a free loopback port, with
# a [state] dir) into a temp dir, starts the router pinned, and runs ilp-loadgen open loop with
# --sink-reject-fraction 0.01 (F99) and --sink-wrong-fraction 0.01 (the router answers F05).
# Router VmRSS is sampled every 10 s. After the run the router is stopped with SIGTERM (40 s
# allowed) and checked; FAIL (exit 1) when any check fails:
#   - RSS at the end of the run is more than max(16 MiB, 20 %) above RSS at the end of the
#     first minute (of the first half, for runs under 2 minutes);
#   - durable balances (`ilp-router balances`): alice's must equal the sum of the sender's
#     Fulfill log, bob's minus the sum of the sink's log (only right fulfillments are logged:
#     rejects and wrong fulfillments must credit nothing), and the two logs must agree;
#   - the load generator's report: F99 and F05 each about 1 % of the Prepares the sink got
#     (5 binomial standard deviations + 0.05 points), no other reject code, no timeouts,
#     errors or bad fulfillments, every Prepare reached the sink, every right Fulfill reached
#     the sender; the router must not exit during the run and must stop cleanly.
# Output: target/soak/<UTC timestamp>/ (loadgen JSON and HTML report, rss.csv, balances.json,
# router logs, summary.txt, summary.json). The two Fulfill logs take 16 bytes per fulfilled
# packet (about 8 GB for 10 min at 800 000/s) in the temp dir (set TMPDIR to move it); it is
# deleted when the soak passes and kept when it fails. Exit: 0 pass, 1 fail, 2 usage error.
set -euo pipefail
cd "$(dirname "$0")/.."

# The RSS bound: growth past the first minute up to this many MiB, or this percentage, is fine.
rss_growth_mib=16
rss_growth_pct=20
reject_fraction=0.01
wrong_fraction=0.01
amount=3
window=512
sample_s=10
saturation_s=5
stop_limit_s=40

duration=10m
rate=""
router_cpus=""
loadgen_cpus=""
usage() { echo "soak.sh: $* (see --help)" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) [ $# -ge 2 ] || usage "--duration needs a value"; duration=$2; shift 2 ;;
        --rate) [ $# -ge 2 ] || usage "--rate needs a value"; rate=$2; shift 2 ;;
        --router-cpus) [ $# -ge 2 ] || usage "--router-cpus needs a value"; router_cpus=$2; shift 2 ;;
        --loadgen-cpus) [ $# -ge 2 ] || usage "--loadgen-cpus needs a value"; loadgen_cpus=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) usage "unknown argument $1" ;;
    esac
done

if [[ $duration =~ ^([0-9]+)(s|m|h)?$ ]]; then
    n=$((10#${BASH_REMATCH[1]}))
    case "${BASH_REMATCH[2]}" in
        m) secs=$((n * 60)) ;;
        h) secs=$((n * 3600)) ;;
        *) secs=$n ;;
    esac
else
    usage "--duration $duration: expected a whole number with s, m or h (30s, 10m, 1h)"
fi
[ "$secs" -ge 20 ] && [ "$secs" -lt 86400 ] || usage "--duration must be at least 20s and under a day"
if [ -n "$rate" ]; then
    [[ $rate =~ ^[1-9][0-9]*$ ]] || usage "--rate $rate: expected a positive whole number of Prepares per second"
fi
if [ -n "$router_cpus$loadgen_cpus" ] && { [ -z "$router_cpus" ] || [ -z "$loadgen_cpus" ]; }; then
    usage "give both --router-cpus and --loadgen-cpus, or neither"
fi
for tool in python3 timeout cargo; do
    command -v "$tool" >/dev/null || { echo "soak.sh: $tool is needed" >&2; exit 2; }
done
pin=()
command -v taskset >/dev/null && pin=(taskset -c)

mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
ncpu=${#cpus[@]}
if [ -z "$router_cpus" ]; then
    if [ "$ncpu" -lt 2 ]; then
        echo "soak.sh: only $ncpu CPU; the router and the load generator share it" >&2
        router_cpus=${cpus[0]}; loadgen_cpus=${cpus[0]}
    else
        half=$(( ncpu / 2 ))
        router_cpus=$(IFS=,; echo "${cpus[*]:0:$half}")
        loadgen_cpus=$(IFS=,; echo "${cpus[*]:$half}")
    fi
fi
count_cpus() {  # 0,2-4 -> 4
    python3 -c 'import sys
n = 0
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    n += int(b or a) - int(a) + 1
print(n)' "$1" 2>/dev/null || usage "bad CPU list $1"
}
router_cores=$(count_cpus "$router_cpus")
loadgen_cores=$(count_cpus "$loadgen_cpus")
connections=$(( 2 * loadgen_cores > router_cores ? 2 * loadgen_cores : router_cores ))

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=target/soak/$stamp
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/ilp-soak.XXXXXX")
router_pid=""
sampler_pid=""

# Stops the router: SIGTERM, then up to $stop_limit_s for it to drain (each in-flight Prepare
# resolves by its expiry at the latest). Returns its exit status, or 124 if it had to be killed.
stop_router() {
    local pid=$router_pid rc=0 i
    router_pid=""
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < stop_limit_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 124
    fi
    wait "$pid" || rc=$?
    return "$rc"
}
cleanup() {
    local rc=$?
    if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; fi
    if [ -n "$router_pid" ]; then stop_router || true; fi
    if [ "$rc" -eq 0 ]; then
        rm -rf "$work"
    else
        echo "soak.sh: kept the work dir (config, state, Fulfill logs): $work" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "soak.sh: FAIL: $*" >&2; exit 1; }

echo "== building release binaries"
timeout 1800 cargo build --release --workspace --quiet || die "cargo build failed or took over 30 min"
# Copies, so that a rebuild by someone else during the soak cannot change what runs.
cp target/release/ilp-router target/release/ilp-loadgen "$work/"
router=$work/ilp-router
loadgen=$work/ilp-loadgen

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed "s/127\.0\.0\.1:7768/127.0.0.1:$port/" tuning/router.toml > "$work/router.toml"
grep -q "127.0.0.1:$port" "$work/router.toml" || die "tuning/router.toml has no listen address 127.0.0.1:7768 to replace"
printf '\n[state]\ndir = "%s"\nmsync_interval_ms = 1000\n' "$work/state" >> "$work/router.toml"
"$router" check-config "$work/router.toml" >/dev/null || die "the generated config $work/router.toml is refused"
cp "$work/router.toml" "$out/router.toml"

# Starts the router pinned, stderr to $2, [state] dir overridden by $1; waits (10 s at most)
# until it accepts connections.
start_router() {
    local i
    "${pin[@]}" ${pin:+"$router_cpus"} "$router" run --config "$work/router.toml" --cpu-list "$router_cpus" \
        --log-level warn --state-dir "$1" </dev/null >/dev/null 2>"$2" &
    router_pid=$!
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$router_pid" 2>/dev/null || { router_pid=""; tail -n 20 "$2" >&2; die "the router exited at start (log: $2)"; }
        sleep 0.1
    done
    die "the router did not listen on 127.0.0.1:$port within 10 s (log: $2)"
}

common=(--router "ws://127.0.0.1:$port" --sender alice:alice-secret --sink bob:bob-secret
        --destination g.router.bob --cpu-list "$loadgen_cpus" --connections "$connections"
        --window "$window" --amount "$amount")
echo "== router on CPUs $router_cpus, ilp-loadgen on CPUs $loadgen_cpus, port $port, $connections connections x window $window"

if [ -z "$rate" ]; then
    echo "== saturation: ${saturation_s}s closed loop (separate router instance and state)"
    start_router "$work/saturation-state" "$out/router-saturation.log"
    timeout -k 5 $((saturation_s + 60)) "${pin[@]}" ${pin:+"$loadgen_cpus"} "$loadgen" "${common[@]}" \
        --duration "${saturation_s}s" --router-pid "$router_pid" --json "$out/saturation.json" \
        >"$out/saturation.txt" 2>&1 || { cat "$out/saturation.txt" >&2; die "the saturation run failed"; }
    stop_router || die "the router did not stop cleanly after the saturation run (exit $?)"
    rate=$(python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(max(1, int(r['pps'] / 2)))" "$out/saturation.json")
    rate_note="half of saturation"
else
    rate_note="--rate"
fi

# The two Fulfill logs: 8 bytes each per fulfilled packet. Refuse a soak that cannot fit.
need=$(( rate * (secs + 5) * 16 + (1 << 30) ))
avail=$(df -P -B1 "$work" | awk 'NR == 2 { print $4 }')
[ "$avail" -ge "$need" ] || die "the Fulfill logs need about $((need >> 20)) MiB in $work, only $((avail >> 20)) MiB free (set TMPDIR, or lower --duration / --rate)"

echo "== soak: $secs s open loop at $rate /s ($rate_note), sink rejects $reject_fraction, wrong fulfillments $wrong_fraction"
start_router "$work/state" "$out/router.log"
echo "time_s,rss_kib" > "$out/rss.csv"
t0=$(date +%s.%N)
python3 -c '
import signal, sys, time
pid, path, t0, every = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(path, "a") as f:
    k = 0
    while True:
        try:
            with open(f"/proc/{pid}/status") as s:
                rss = next(l.split()[1] for l in s if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            break
        f.write(f"{time.time() - t0:.1f},{rss}\n")
        f.flush()
        k += 1
        time.sleep(max(0.0, t0 + k * every - time.time()))
' "$router_pid" "$out/rss.csv" "$t0" "$sample_s" &
sampler_pid=$!

loadgen_rc=0
timeout -k 10 $((secs + 120)) "${pin[@]}" ${pin:+"$loadgen_cpus"} "$loadgen" "${common[@]}" \
    --duration "${secs}s" --rate "$rate" \
    --sink-reject-fraction "$reject_fraction" --sink-wrong-fraction "$wrong_fraction" \
    --sender-log "$work/sender.log" --sink-log "$work/sink.log" \
    --router-pid "$router_pid" --json "$out/soak.json" --report "$out/soak.html" \
    >"$out/soak.txt" || loadgen_rc=$?

kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
router_alive=1
if rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$router_pid/status" 2>/dev/null) && [ -n "$rss" ]; then
    echo "$(python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$t0"),$rss" >> "$out/rss.csv"
fi
kill -0 "$router_pid" 2>/dev/null || router_alive=0

echo "== stopping the router (SIGTERM, up to ${stop_limit_s}s)"
stop_started=$(date +%s.%N)
router_rc=0
stop_router || router_rc=$?
stop_s=$(python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$stop_started")

balances_rc=0
timeout 30 "$router" balances --state-dir "$work/state" >"$out/balances.json" 2>"$out/balances.err" || balances_rc=$?

verdict=0
python3 - "$out" "$work" "$rate" "$rate_note" "$secs" "$amount" "$reject_fraction" "$wrong_fraction" \
    "$rss_growth_mib" "$rss_growth_pct" "$loadgen_rc" "$router_alive" "$router_rc" "$stop_s" \
    "$balances_rc" "$router_cpus" "$loadgen_cpus" <<'PY' | tee "$out/summary.txt" || verdict=$?
import array, json, math, os, sys

(out, work, rate, rate_note, secs, amount, reject_fraction, wrong_fraction, growth_mib, growth_pct,
 loadgen_rc, router_alive, router_rc, stop_s, balances_rc, router_cpus, loadgen_cpus) = sys.argv[1:]
rate, secs, amount = int(rate), int(secs), int(amount)
reject_fraction, wrong_fraction = float(reject_fraction), float(wrong_fraction)
growth_mib, growth_pct = int(growth_mib), int(growth_pct)
loadgen_rc, router_alive, router_rc, balances_rc = map(int, (loadgen_rc, router_alive, router_rc, balances_rc))

rows, failures = [], []
def row(name, value, ok=None, why=None):
    rows.append((name, value, "" if ok is None else ("OK" if ok else "FAIL")))
    if ok is False:
        failures.append(f"{name}: {why or value}")
def n(v):
    return f"{v:,}".replace(",", " ")

def log_sum(path):
    """Sum and count of a Fulfill log (8-byte little-endian amounts). Chunks that are all
    `amount` (the usual case) are compared as bytes; any other chunk is summed record by
    record."""
    total = count = odd = 0
    pattern = amount.to_bytes(8, "little") * (1 << 20)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        while chunk := f.read(8 << 20):
            if len(chunk) % 8:
                return ("torn", len(chunk))
            k = len(chunk) // 8
            count += k
            if chunk == pattern[:len(chunk)]:
                total += k * amount
            else:
                a = array.array("Q", chunk)
                if sys.byteorder != "little":
                    a.byteswap()
                s = sum(a)
                total += s
                odd += sum(1 for x in a if x != amount)
    return total, count, odd

r = json.load(open(f"{out}/soak.json")) if os.path.exists(f"{out}/soak.json") else None
row("load generator exit", str(loadgen_rc), loadgen_rc == 0,
    f"ilp-loadgen exited {loadgen_rc}" + (" (killed by the time limit)" if loadgen_rc in (124, 137) else ""))
row("router alive through the run", "yes" if router_alive else "no", bool(router_alive),
    f"the router exited during the soak (see {out}/router.log)")
row("router stop (SIGTERM)", f"exit {router_rc} after {stop_s} s", router_rc == 0,
    "the router did not stop within 40 s (killed)" if router_rc == 124
    else f"killed by signal {router_rc - 128}" if router_rc > 128 else f"exit status {router_rc}")

sink_received = fulfilled = 0
if r is None:
    row("load generator report", "missing", False, f"no {out}/soak.json")
else:
    dur = r["duration_s"]
    sent, fulfilled, sink_received = r["sent"], r["fulfilled"], r.get("sink_received", 0)
    rejected = r.get("rejected", {})
    row("open-loop rate", f"{n(rate)} /s ({rate_note}); sent {n(round(sent / dur))} /s over {dur:.1f} s")
    row("packets sent", n(sent), sent >= 1000, f"only {sent} Prepares sent: too little to mean anything")
    row("reached the sink", f"{n(sink_received)}", sink_received == sent,
        f"the sink got {sink_received} of {sent} Prepares")
    row("fulfilled", f"{n(fulfilled)} ({100 * fulfilled / max(sent, 1):.2f} %)")
    for code, fraction, what in (("F99", reject_fraction, "sink rejects"), ("F05", wrong_fraction, "wrong fulfillments")):
        got = rejected.get(code, 0)
        base = max(sink_received, 1)
        share = got / base
        tol = 5 * math.sqrt(fraction * (1 - fraction) / base) + 0.0005
        row(f"rejected {code} ({what})", f"{n(got)} ({100 * share:.3f} %, expected {100 * fraction:.1f} ± {100 * tol:.3f})",
            abs(share - fraction) <= tol, f"{got} of {sink_received} = {100 * share:.3f} %, expected {100 * fraction:.1f} % ± {100 * tol:.3f}")
    other = {c: v for c, v in rejected.items() if c not in ("F99", "F05") and v}
    row("rejected, other codes", ", ".join(f"{c} {n(v)}" for c, v in sorted(other.items())) or "none", not other)
    errs = (r.get("timeouts", 0), r.get("errors", 0), r.get("bad_fulfillments", 0))
    row("timeouts / errors / bad fulfillments", " / ".join(map(str, errs)), errs == (0, 0, 0))
    row("ended early (a connection broke)", str(r.get("ended_early")), not r.get("ended_early"))
    l = r.get("latency_us", {})
    fmt = lambda v: "n/a" if v is None else f"{v:.0f}"
    row("latency p50 / p99 / p99.9 / max (µs)", " / ".join(fmt(l.get(k)) for k in ("p50", "p99", "p999", "max")))
    cpu = r.get("router_cpu_us_per_packet")
    row("router CPU per packet", "n/a" if cpu is None else f"{cpu:.3f} µs ({r.get('router_cpu_s', 0):.1f} s in all)")

# RSS: at the end of the first minute (the first half of a shorter run) against the end.
samples = []
with open(f"{out}/rss.csv") as f:
    next(f)
    for line in f:
        t, kib = line.strip().split(",")
        samples.append((float(t), int(kib)))
if len(samples) < 2:
    row("router RSS", f"{len(samples)} samples", False, "too few RSS samples")
    rss = {}
else:
    warm = min(60, secs / 2)
    start = [s for s in samples if s[0] <= warm + 2][-1]
    end = samples[-1]
    peak = max(samples, key=lambda s: s[1])
    bound = max(growth_mib * 1024, start[1] * growth_pct // 100)
    growth = end[1] - start[1]
    mib = lambda k: f"{k / 1024:.1f} MiB"
    row("router RSS idle (t=0)", mib(samples[0][1]))
    row(f"router RSS at {start[0]:.0f} s (end of {'first minute' if warm == 60 else 'first half'})", mib(start[1]))
    row(f"router RSS at end ({end[0]:.0f} s)", mib(end[1]))
    row(f"router RSS max (at {peak[0]:.0f} s)", mib(peak[1]))
    row("router RSS growth", f"{growth / 1024:+.1f} MiB (bound {mib(bound)})", growth <= bound,
        f"RSS grew {growth} KiB from {start[1]} KiB at {start[0]:.0f} s to {end[1]} KiB at {end[0]:.0f} s; bound {bound} KiB = max({growth_mib} MiB, {growth_pct} %)")
    rss = {"idle_kib": samples[0][1], "start_kib": start[1], "start_s": start[0], "end_kib": end[1],
           "end_s": end[0], "max_kib": peak[1], "bound_kib": bound, "samples": len(samples)}

# Balances: durable `posted`, positive when the peer owes us. Alice pays for every Fulfill she
# received; we owe bob for every right Fulfill he sent. Rejects and wrong fulfillments: nothing.
balances = {}
if balances_rc == 0:
    try:
        balances = {p["name"]: int(p["posted"]) for p in json.load(open(f"{out}/balances.json"))["peers"]}
    except (ValueError, KeyError, TypeError) as e:
        balances_rc = -1
if balances_rc != 0:
    err = open(f"{out}/balances.err").read().strip() if os.path.exists(f"{out}/balances.err") else ""
    row("ilp-router balances", f"exit {balances_rc}", False, f"ilp-router balances failed: {err or 'unreadable output'}")
sender = log_sum(f"{work}/sender.log")
sink = log_sum(f"{work}/sink.log")
for name, log in (("sender log", sender), ("sink log", sink)):
    if log is None or log[0] == "torn":
        row(name, "missing" if log is None else "torn record", False)
    else:
        row(f"{name}: Fulfills, sum", f"{n(log[1])}, {n(log[0])}", log[2] == 0 and log[1] == fulfilled,
            f"{log[1]} records (report: {fulfilled} fulfilled), {log[2]} not of amount {amount}")
ok_logs = all(l is not None and l[0] != "torn" for l in (sender, sink))
if balances_rc == 0 and ok_logs:
    alice, bob = balances.get("alice"), balances.get("bob")
    row("balance alice = sender log sum", f"{alice} vs {sender[0]}", alice == sender[0],
        f"alice's durable balance is {alice}, the sender was fulfilled {sender[0]} (difference {None if alice is None else alice - sender[0]})")
    row("balance bob = -(sink log sum)", f"{bob} vs {-sink[0]}", bob == -sink[0],
        f"bob's durable balance is {bob}, the sink fulfilled {sink[0]} rightly (expected {-sink[0]}, difference {None if bob is None else bob + sink[0]})")
    row("sender log sum = sink log sum", f"{sender[0]} vs {sink[0]}", sender[0] == sink[0],
        f"the sink sent {sink[0]} in right Fulfills, the sender got {sender[0]}")
    if r is not None:
        right = sink_received - r.get("rejected", {}).get("F99", 0) - r.get("rejected", {}).get("F05", 0)
        row("sink: right Fulfills = received - F99 - F05", f"{n(sink[1])} vs {n(right)}", sink[1] == right,
            f"the sink logged {sink[1]} right Fulfills; received {sink_received} minus F99 and F05 rejects is {right}")

verdict = "FAIL" if failures else "PASS"
w0 = max(len(x[0]) for x in rows)
w1 = max(len(x[1]) for x in rows)
print()
print(f"soak: {secs} s, router CPUs {router_cpus}, ilp-loadgen CPUs {loadgen_cpus}")
print(f"{'check'.ljust(w0)}  {'value'.ljust(w1)}  result")
print(f"{'-' * w0}  {'-' * w1}  ------")
for name, value, ok in rows:
    print(f"{name.ljust(w0)}  {value.ljust(w1)}  {ok}")
print()
for f in failures:
    print(f"FAIL: {f}")
print(f"soak {verdict}: {out}/ (soak.json, soak.html, rss.csv, balances.json, router.log, summary.json)")
json.dump({"verdict": verdict, "failures": failures, "rate": rate, "rate_note": rate_note, "duration_s": secs,
           "router_cpus": router_cpus, "loadgen_cpus": loadgen_cpus, "rss": rss, "balances": balances,
           "sender_log": None if not ok_logs else {"sum": sender[0], "count": sender[1]},
           "sink_log": None if not ok_logs else {"sum": sink[0], "count": sink[1]},
           "rows": [{"check": a, "value": b, "result": c} for a, b, c in rows], "loadgen": r},
          open(f"{out}/summary.json", "w"), indent=2)
sys.exit(1 if failures else 0)
PY
exit "$verdict"
