#!/usr/bin/env bash
# wss:// against ws:// from the same load tool in the same run, on one server:
# echo messages and TLS connections (handshake, upgrade, close) per server-CPU-second (time on CPU of the
# server's threads from /proc/PID/task/*/schedstat around each phase), alternating ws and
# wss ROUNDS times so a noisy neighbour hits both.  Loopback only; every
# phase bounded in count and time.
#   perf/results/tls/ab.sh [ROUNDS]          (from the repository root, after ninja -C build-release or ./test.sh)
#   ECHO_ONLY=1 perf/results/tls/ab.sh 9     echo phases only (ECDSA), and the median wss/ws
# Handshake phases are paced (1,000/s) so that --tls-resume has a ticket
# from the first connections for the rest.
set -euo pipefail
rounds="${1:-3}"
# The release build (-O3, NDEBUG: what a packager ships) when there is one,
# for the server and the load tool alike: the figures are sensitive to the
# client's speed, which sets how many messages each server wakeup finds.
build="${BUILD:-build-release}"
[ -x "$build/ringgate" ] || build=build
dir="$(mktemp -d /tmp/ringgate-tls-ab.XXXXXX)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
/usr/bin/python3 perf/results/tls/make_certs.py "$dir" ec rsa
cpu() {  # nanoseconds on CPU of every thread of $1 (schedstat is exact; utime+stime are sampled at the tick)
  cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'
}
tick=1000000000
start_server() {  # key kind
  # Another process on these ports would share them (SO_REUSEPORT) and
  # take part of every phase's connections without a word.
  if ss -Hltn 'sport = :18080 or sport = :18443' | grep -q .; then
    echo "ports 18080/18443 are in use already: stop whatever listens there first" >&2; exit 1
  fi
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
keys="ec rsa"
[ "${ECHO_ONLY:-0}" = 1 ] && keys=ec
for key in $keys; do
  start_server "$key"
  for r in $(seq "$rounds"); do
    if [ "$key" = ec ]; then
      phase "echo-ws" echo --connections 100 --inflight 16 --size 20 --duration 5 ws://127.0.0.1:18080/echo | tee -a "$dir/echo"
      phase "echo-wss" echo --connections 100 --inflight 16 --size 20 --duration 5 --tls-ca "$dir/ca.pem" wss://localhost:18443/echo | tee -a "$dir/echo"
      [ "${ECHO_ONLY:-0}" = 1 ] && continue
    fi
    phase "hs-full-$key" hold --connections 2000 --rate 1000 --duration 0 --tls-ca "$dir/ca.pem" wss://localhost:18443/echo
    phase "hs-resumed-$key" hold --connections 2000 --rate 1000 --duration 0 --tls-resume --tls-ca "$dir/ca.pem" wss://localhost:18443/echo
  done
  kill "$server"; wait "$server" 2>/dev/null || true
done
# wss/ws per round, and the median over the rounds.
awk '$1 == "echo-ws" { ws = $4 } $1 == "echo-wss" && ws > 0 { r[++n] = $4 / ws }
  END { if (!n) exit; for (i = 1; i <= n; i++) { printf "wss/ws round %d: %.0f%%\n", i, 100 * r[i] }
        for (i = 2; i <= n; i++) for (j = i; j > 1 && r[j - 1] > r[j]; j--) { t = r[j]; r[j] = r[j - 1]; r[j - 1] = t }
        m = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2; printf "wss/ws median of %d: %.0f%%\n", n, 100 * m }' "$dir/echo"
