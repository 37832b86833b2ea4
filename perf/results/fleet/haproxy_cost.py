#!/usr/bin/python3
"""What a connection through HAProxy costs HAProxy (deploy/haproxy/haproxy.cfg,
TCP mode, PROXY v2 to the nodes).

Starts tools/fleet/fleet.py's Fleet (Redis, three nodes, HAProxy with
maxconn 9,000: each connection holds two of HAProxy's descriptors and this
host's RLIMIT_NOFILE is 20,000), holds N WebSocket connections through it
with `ringgate-load hold` for 10 s, and prints HAProxy's RSS before and
while they are held, and the kernel's TCP sockets in use.

    perf/results/fleet/haproxy_cost.py [N]      (default 9,000)
"""

import pathlib
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tools/fleet"))
from fleet import Fleet  # noqa: E402


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tcp_inuse():
    for line in open("/proc/net/sockstat"):
        if line.startswith("TCP:"):
            return int(line.split()[2])
    return 0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(pathlib.Path(tmp) / "fleet", nodes=3, binary=ROOT / "build-release/ringgate", net=3,
                      haproxy_maxconn=9000, node_args=("--log-level", "warn"))
        try:
            pid = fleet.haproxy.proc.pid
            before, sockets_before = rss_kib(pid), tcp_inuse()
            peak = [0, 0]

            def sample():
                while load.poll() is None:
                    peak[0] = max(peak[0], rss_kib(pid))
                    peak[1] = max(peak[1], tcp_inuse())
                    time.sleep(0.2)
            load = subprocess.Popen([str(ROOT / "build-release/tools/ringgate-load"), "hold", "--connections", str(n),
                                     "--rate", "3000", "--duration", "10s", fleet.uri + "/ws"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            t = threading.Thread(target=sample)
            t.start()
            out = load.communicate(timeout=120)[0]
            t.join()
            print(next(l for l in out.splitlines() if "upgraded" in l).strip())
            print(f"haproxy RSS: {before:,} KiB idle, {peak[0]:,} KiB holding {n:,}: "
                  f"{(peak[0] - before) * 1024 / n:,.0f} B per connection")
            print(f"TCP sockets in use: {sockets_before:,} -> {peak[1]:,} "
                  f"({(peak[1] - sockets_before) / n:.1f} per connection: client, HAProxy x2, node)")
        finally:
            fleet.down()


if __name__ == "__main__":
    main()
