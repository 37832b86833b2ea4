#!/usr/bin/env bash
# A/B: baseline (9617000) vs rooms (HEAD) servers, both debugoptimized, the
# same load tool, alternating rounds on one machine.
set -u
LOAD=/work/main/build/tools/ringgate-load
declare -A BIN=([before]=/work/baseline/build/server/ringgate [after]=/work/main/build/ringgate)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # label round
  local label=$1 round=$2 port=$((18400 + round * 2)) admin=$((19400 + round * 2))
  ${BIN[$label]} --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin --workers 1 --log-level warn >/dev/null 2>&1 &
  local pid=$!
  for i in $(seq 50); do curl -sf http://127.0.0.1:$admin/healthz >/dev/null && break; sleep 0.1; done
  local t0=$(ticks $pid)
  $LOAD echo --connections 100 --inflight 16 --size 20 --duration 5 --json ws://127.0.0.1:$port/echo 2>/dev/null | tail -1 > /tmp/perf/echo-$label-$round.json
  local t1=$(ticks $pid)
  $LOAD hold --connections 10000 --rate 0 --duration 1 --json ws://127.0.0.1:$port/echo 2>/dev/null | tail -1 > /tmp/perf/hs-$label-$round.json
  local t2=$(ticks $pid)
  kill -TERM $pid; wait $pid
  echo "$label $round echo_server_cpu_s=$(( (t1-t0) ))e-2 hold_server_cpu_s=$(( (t2-t1) ))e-2"
}
for round in 1 2 3; do run before $round; run after $round; done
