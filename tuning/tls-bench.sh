#!/usr/bin/env bash
# TLS against plaintext through the same router, in one run: alternating closed-loop runs of
# ilp-loadgen over BTP (ws:// and wss://) and ILP over HTTP (http:// and https://, both legs:
# the load generator POSTs to the router, the router POSTs to the sink), a fresh router for
# each run, reading the router's CPU time from /proc. Prints the median of each and the
# TLS/plaintext ratio per transport, and whether this kernel offers kernel TLS (the TLS ULP).
#
#   bash tuning/tls-bench.sh [--runs N] [--duration 3s] [--window N] [--connections N]
#                            [--router-cpus LIST] [--loadgen-cpus LIST]
#
# Defaults: 5 runs of each, 3 s, window 512 x 2 connections (as tuning/bench.sh), router on
# the first CPU and the load generator on the second. Certificates are made with openssl (a
# throwaway CA and a certificate for localhost). JSON of every run and the table go to
# target/bench/tls/.
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
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "tls-bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

for tool in python3 openssl; do
    command -v "$tool" >/dev/null || { echo "tls-bench.sh: $tool is needed" >&2; exit 2; }
done
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
router_cpus=${router_cpus:-${cpus[0]}}
loadgen_cpus=${loadgen_cpus:-${cpus[1]:-${cpus[0]}}}

echo "== building release binaries"
cargo build --release --workspace --quiet
router=target/release/ilp-router
loadgen=target/release/ilp-loadgen
out=$PWD/target/bench/tls
mkdir -p "$out"
rm -f "$out"/*.json

echo "== certificates (throwaway CA, localhost)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=tls-bench CA" -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$out/san.ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
    -CAcreateserial -days 2 -extfile "$out/san.ext" -out "$out/server.pem" 2>/dev/null

# tuning/router.toml plus the HTTP and TLS listeners, and two HTTP sinks: carol (http://) and
# dave (https://), whose Prepares are POSTed to the load generator's sink.
python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
text = open("tuning/router.toml").read()
listen = '[listen]\nbtp = "127.0.0.1:7768"'
assert listen in text, "tuning/router.toml's [listen] changed"
text = text.replace(listen, listen + '\nbtp_tls = "127.0.0.1:7443"\nhttp = "127.0.0.1:7770"\nhttp_tls = "127.0.0.1:7771"')
for name, url in (("carol", "http://127.0.0.1:7795/"), ("dave", "https://localhost:7796/")):
    text += f'''
[[peers]]
name = "{name}"
auth_tokens = ["{name}-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
http_url = "{url}"
outgoing_token = "{name}-secret"
'''
text += f'''
[tls]
cert_file = "{out}/server.pem"
key_file = "{out}/server.key"
ca_file = "{out}/ca.pem"
'''
open(f"{out}/router.toml", "w").write(text)
PY

tls=(--ca-file "$out/ca.pem")
btp=(--router ws://127.0.0.1:7768 --sender alice:alice-secret --sink bob:bob-secret
     --destination g.router.bob)
btp_tls=(--router wss://localhost:7443 "${tls[@]}" --sender alice:alice-secret
         --sink bob:bob-secret --destination g.router.bob)
http=(--transport http --router http://127.0.0.1:7770/ --sender alice:alice-secret
      --sink carol:carol-secret --sink-listen 127.0.0.1:7795 --destination g.router.carol)
http_tls=(--transport http --router https://localhost:7771/ "${tls[@]}"
          --sender alice:alice-secret --sink dave:dave-secret --sink-listen 127.0.0.1:7796
          --sink-cert "$out/server.pem" --sink-key "$out/server.key" --destination g.router.dave)

echo "== router on CPU $router_cpus, ilp-loadgen on CPU $loadgen_cpus, $connections x window $window, $runs x $duration each"
for i in $(seq "$runs"); do
    for transport in btp btp_tls http http_tls; do
        "$router" run --config "$out/router.toml" --cpu-list "$router_cpus" --log-level error &
        router_pid=$!
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/7768) 2>/dev/null && break
            sleep 0.1
        done
        declare -n args=$transport
        "$loadgen" "${args[@]}" --cpu-list "$loadgen_cpus" --duration "$duration" \
            --window "$window" --connections "$connections" --router-pid "$router_pid" \
            --json "$out/$transport-$i.json" >/dev/null
        unset -n args
        kill -TERM "$router_pid"
        wait "$router_pid" || true
        echo "   run $i $transport done"
    done
done

ulp=$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null || echo "unreadable")
python3 - "$out" "$runs" "$ulp" <<'PY'
import json, statistics as st, sys
out, runs, ulp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = {"btp": "BTP, ws://", "btp_tls": "BTP, wss://", "http": "HTTP, http://", "http_tls": "HTTP, https://"}
rows = {}
for t in names:
    rs = [json.load(open(f"{out}/{t}-{i}.json")) for i in range(1, runs + 1)]
    cpu = [r["router_cpu_us_per_packet"] for r in rs]
    rows[t] = (st.median(r["pps"] for r in rs), st.median(cpu), min(cpu), max(cpu),
               st.median(r["latency_us"]["p50"] for r in rs),
               sum(sum(r["rejected"].values()) + r["timeouts"] + r["errors"] for r in rs))
lines = ["| link | packets/s (median) | router CPU µs/packet (median, min–max) | p50 µs (median) | rejected, timed out or failed |",
         "| --- | ---: | ---: | ---: | ---: |"]
for t, (pps, cpu, lo, hi, p50, bad) in rows.items():
    lines.append(f"| {names[t]} | {pps:,.0f} | {cpu:.3f} ({lo:.3f}–{hi:.3f}) | {p50:.0f} | {bad} |")
lines.append("")
lines.append(f"TLS / plaintext router CPU per packet: BTP {rows['btp_tls'][1] / rows['btp'][1]:.2f}, "
             f"HTTP {rows['http_tls'][1] / rows['http'][1]:.2f}")
ktls = "tls" in ulp.split()
lines.append(f"kernel TLS: {'the TLS ULP is available' if ktls else 'not available on this kernel'} "
             f"(net.ipv4.tcp_available_ulp: {ulp})")
text = "\n".join(lines)
print("\n" + text)
open(f"{out}/table.md", "w").write(text + "\n")
PY
