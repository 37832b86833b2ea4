#!/usr/bin/env bash
# Server memory per idle wss:// connection: ringgate with a TLS listener,
# ringgate-load holding N idle wss connections (tickets resumed after the
# first ones, paced), the server's RSS sampled before the first connection
# and once all are held.  Loopback only, bounded by N and the hold time.
#   perf/results/tls/idle.sh [N] [WORKERS]    (from the repository root, after ninja -C build)
set -euo pipefail
n="${1:-100000}"
workers="${2:-6}"
build=build
dir="$(mktemp -d /tmp/ringgate-tls-idle.XXXXXX)"
trap 'kill "$server" 2>/dev/null || true; kill "$load" 2>/dev/null || true; rm -rf "$dir"' EXIT
/usr/bin/python3 perf/results/tls/make_certs.py "$dir" ec
# Another process on these ports would share them (SO_REUSEPORT) and hold
# part of the connections.
if ss -Hltn 'sport = :18080 or sport = :18443 or sport = :19090' | grep -q .; then
  echo "ports 18080/18443/19090 are in use already: stop whatever listens there first" >&2; exit 1
fi
"$build/ringgate" --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:19090 --tls-listen 127.0.0.1:18443 \
  --tls-cert-file "$dir/ec.pem" --tls-key-file "$dir/ec.key" --workers "$workers" --ping-interval 0 \
  --tls-handshakes-max 8192 >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$dir/server.log" && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
before=$(rss "$server")
"$build/tools/ringgate-load" hold --connections "$n" --rate 2000 --duration 20 --close-timeout 120 --tls-resume \
  --tls-ca "$dir/ca.pem" --json wss://localhost:18443/echo >"$dir/load.out" 2>"$dir/load.err" &
load=$!
# Sample while the connections are held: the highest RSS seen.
peak=$before; held=0
while kill -0 "$load" 2>/dev/null; do
  r=$(rss "$server"); [ "$r" -gt "$peak" ] && peak=$r
  h=$(curl -s 127.0.0.1:19090/metrics | awk '/^ws_tls_connections / {print $2}')
  [ -n "$h" ] && [ "$h" -gt "$held" ] && held=$h
  sleep 1
done
wait "$load" || true
tail -1 "$dir/load.out" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
t = j["tls"]
print("load: upgraded %d held %d closed_clean %d full %d resumed %d failed %d client RSS/conn %d B" % (
    j["upgraded"], j["held"], j["closed_clean"], t["full"], t["resumed"], t["failed"], j["client_rss_per_connection"]))'
echo "server: workers $workers, RSS before $before KiB, peak $peak KiB while $held TLS connections were held"
awk -v b="$before" -v p="$peak" -v h="$held" 'BEGIN { printf "server user space per idle wss connection: %.0f B\n", (p - b) * 1024 / h }'
