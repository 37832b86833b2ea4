#!/usr/bin/env bash
# wss:// against ws:// from the same load tool in the same run, on one server:
# echo messages and TLS connections (handshake, upgrade, close) per server-CPU-second (utime+stime of the
# server process from /proc/PID/stat around each phase), alternating ws and
# wss ROUNDS times so a noisy neighbour hits both.  Loopback only; every
# phase bounded in count and time.
#   perf/results/tls/ab.sh [ROUNDS]          (from the repository root, after ninja -C build)
# Handshake phases are paced (1,000/s) so that --tls-resume has a ticket
# from the first connections for the rest.
set -euo pipefail
rounds="${1:-3}"
build=build
dir="$(mktemp -d /tmp/ringgate-tls-ab.XXXXXX)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
/usr/bin/python3 perf/results/tls/make_certs.py "$dir" ec rsa
cpu() {  # utime + stime of $1 in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
tick=$(getconf CLK_TCK)
start_server() {  # key kind
  "$build/ringgate" --listen 127.0.0.1:18080 --admin-listen off --tls-listen 127.0.0.1:18443 \
    --tls-cert-file "$dir/$1.pem" --tls-key-file "$dir/$1.key" --workers 1 --tls-handshakes-max 8192 \
    >"$dir/server.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do grep -q "listening on" "$dir/server.log" && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
phase() {  # label, then ringgate-load arguments: prints "label count cpu_s per_cpu_s"
  local label="$1"; shift
  local c0 c1 out n
  c0=$(cpu "$server")
  out=$("$build/tools/ringgate-load" "$@" --json 2>/dev/null | tail -1)
  c1=$(cpu "$server")
  n=$(/usr/bin/python3 -c 'import json,sys; j=json.loads(sys.argv[1]); k=sys.argv[2]
print(j["msgs"] if k == "echo" else j["tls"]["handshakes"])' "$out" "${label%%-*}")
  awk -v l="$label" -v n="$n" -v c=$((c1 - c0)) -v t="$tick" 'BEGIN { s = c / t; printf "%-22s %10d %8.2f %12.0f\n", l, n, s, (s > 0 ? n / s : 0) }'
}
printf '%-22s %10s %8s %12s\n' phase count cpu_s per_cpu_s
for key in ec rsa; do
  start_server "$key"
  for r in $(seq "$rounds"); do
    if [ "$key" = ec ]; then
      phase "echo-ws" echo --connections 100 --inflight 16 --size 20 --duration 5 ws://127.0.0.1:18080/echo
      phase "echo-wss" echo --connections 100 --inflight 16 --size 20 --duration 5 --tls-ca "$dir/ca.pem" wss://localhost:18443/echo
    fi
    phase "hs-full-$key" hold --connections 2000 --rate 1000 --duration 0 --tls-ca "$dir/ca.pem" wss://localhost:18443/echo
    phase "hs-resumed-$key" hold --connections 2000 --rate 1000 --duration 0 --tls-resume --tls-ca "$dir/ca.pem" wss://localhost:18443/echo
  done
  kill "$server"; wait "$server" 2>/dev/null || true
done
