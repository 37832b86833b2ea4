#!/usr/bin/python3
"""Fan-out across a fleet: three nodes, one Redis, N subscribers.

Starts tools/fleet/fleet.py's Fleet (Redis, three nodes of two workers on
127.0.3.1-3, HAProxy idle: 100,000 connections through it would need
200,000 descriptors, ten times this host's RLIMIT_NOFILE), then runs three
`ringgate-load fanout` at once, one per node, each with N/3 subscribers
connected straight to its node over 100 channels of its own, and each
publishing on

- `same`: its own node's API,
- `cross`: the next node's API (every delivery crosses Redis to another node),
- `local`: its own node, on three nodes started without a backplane (the
  baseline: a publish goes from the API straight to the node's workers).

At a paced rate (--rate per load process) for latency, and with --rate 0
(one publish in flight per process, as fast as answered) for throughput.
Redis CPU per publication is `INFO cpu` (user + sys) over the run, less
what an idle fleet costs it over the same time (measured first, 5 s),
divided by the publishes.  Writes one JSON per load process and run, and prints a
table.  Bounded: each run publishes `--messages` per channel and every
subprocess has a timeout.

    perf/results/fleet/fanout.py [--subscribers 100000] [--messages 20] [--rate 50]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tools/fleet"))
from fleet import Fleet, Node  # noqa: E402

LOAD = ROOT / "build-release/tools/ringgate-load"
BINARY = ROOT / "build-release/ringgate"
NODE_ARGS = ("--log-level", "warn", "--recv-buffer-count", "64", "--max-pending-handshakes", "1024")


def redis_cpu_s(redis) -> float:
    info = redis.cli("INFO", "cpu")
    return sum(float(m) for m in re.findall(r"used_cpu_(?:sys|user):([\d.]+)", info))


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idle_cpu_per_s(redis, seconds: float = 5) -> float:
    """Redis's own CPU while the fleet is idle (its cron, the nodes' PINGs
    and node-key renewals): subtracted from each run's."""
    cpu0, t0 = redis_cpu_s(redis), time.monotonic()
    time.sleep(seconds)
    return (redis_cpu_s(redis) - cpu0) / (time.monotonic() - t0)


def run(nodes, apis, args, name, redis=None):
    """Three load processes at once; returns their JSON reports, the Redis
    CPU seconds the run cost above idle, and each node's peak RSS."""
    per_node = args.subscribers // len(nodes)
    cpu0, t0 = (redis_cpu_s(redis) if redis else 0.0), time.monotonic()
    procs = []
    for i, n in enumerate(nodes):
        cmd = [str(LOAD), "fanout", "--connections", str(per_node), "--connect-rate", "4000", "--threads", "2",
               "--channels", "100", "--channel-prefix", f"n{i}-", "--messages", str(args.messages),
               "--rate", str(args.rate_now), "--api", apis[i], "--settle", "60s", "--duration", "300s",
               "--close-timeout", "30s", "--json", n.uri("/ws")]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    peak = {n.node_id: 0 for n in nodes}
    while any(p.poll() is None for p in procs):
        for n in nodes:
            peak[n.node_id] = max(peak[n.node_id], rss_kib(n.pid))
        time.sleep(0.5)
    reports = []
    for i, p in enumerate(procs):
        out = p.communicate(timeout=600)[0]
        j = json.loads(out.strip().splitlines()[-1])
        (HERE / f"fanout-{name}-{i}.json").write_text(json.dumps(j) + "\n")
        reports.append(j)
    cpu = redis_cpu_s(redis) - cpu0 - args.redis_idle_per_s * (time.monotonic() - t0) if redis else 0.0
    return reports, max(cpu, 0.0), peak


def summarise(name, reports, redis_cpu, peak):
    delivered = sum(j["delivered"] for j in reports)
    lost = sum(j["lost"] + j["duplicated"] + j["out_of_order"] for j in reports)
    publishes = sum(j["publishes_ok"] for j in reports)
    # Publishing and settling, per process; the processes ran together.
    wall = max(j["publishes_ok"] / j["publish_rate"] + j["settle_s"] for j in reports if j["publish_rate"] > 0)
    lat = [j["latency_us"] for j in reports]
    last = [j["last_delivery_us"] for j in reports]
    row = {"run": name, "subscribers": sum(j["subscribers_ready"] for j in reports), "publishes": publishes,
           "delivered": delivered, "lost_dup_ooo": lost, "deliveries_per_s": delivered / wall,
           "every_p50_ms": max(x["p50"] for x in lat) / 1000, "every_p99_ms": max(x["p99"] for x in lat) / 1000,
           "last_p50_ms": max(x["p50"] for x in last) / 1000, "last_p99_ms": max(x["p99"] for x in last) / 1000,
           "redis_cpu_us_per_publish": redis_cpu / publishes * 1e6 if publishes else 0,
           "node_rss_peak_mib": max(peak.values()) / 1024,
           "passed": all(j["passed"] for j in reports)}
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--messages", type=int, default=20, help="per channel and load process")
    ap.add_argument("--rate", type=float, default=50, help="publishes per second per load process (paced runs)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(pathlib.Path(tmp) / "fleet", nodes=3, binary=BINARY, workers=2, net=3, node_args=NODE_ARGS)
        try:
            nodes = fleet.nodes
            own = [f"http://{n.admin_host}:{n.admin_port}" for n in nodes]
            args.redis_idle_per_s = idle_cpu_per_s(fleet.redis)
            print(f"redis idle: {args.redis_idle_per_s * 1e3:.2f} ms CPU per second", flush=True)
            for rate in (args.rate, 0):
                args.rate_now = rate
                tag = "paced" if rate else "max"
                for kind, apis in (("same", own), ("cross", own[1:] + own[:1])):
                    rows.append(summarise(f"{kind}-{tag}", *run(nodes, apis, args, f"{kind}-{tag}",
                                                                 fleet.redis)))
        finally:
            fleet.down()
        # The baseline: the same three nodes' shape without a backplane.
        local = [Node(BINARY, tmp, i + 1, f"127.0.3.{i + 1}", 0, 0, "off", 2, "0s", NODE_ARGS) for i in range(3)]
        try:
            own = [f"http://{n.admin_host}:{n.admin_port}" for n in local]
            for rate in (args.rate, 0):
                args.rate_now = rate
                tag = "paced" if rate else "max"
                rows.append(summarise(f"local-{tag}", *run(local, own, args, f"local-{tag}")))
        finally:
            for n in local:
                n.stop()
    print("\n| run | subscribers | publishes | delivered | lost/dup/ooo | deliveries/s | every p50 / p99 ms "
          "| last p50 / p99 ms | Redis CPU us/publish | node RSS peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['subscribers']:,} | {r['publishes']:,} | {r['delivered']:,} | {r['lost_dup_ooo']} "
              f"| {r['deliveries_per_s']:,.0f} | {r['every_p50_ms']:.1f} / {r['every_p99_ms']:.1f} "
              f"| {r['last_p50_ms']:.1f} / {r['last_p99_ms']:.1f} | {r['redis_cpu_us_per_publish']:.1f} "
              f"| {r['node_rss_peak_mib']:.1f} |")


if __name__ == "__main__":
    main()
