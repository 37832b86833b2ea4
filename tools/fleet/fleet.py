#!/usr/bin/env python3
"""A ringgate fleet on one machine: Redis (or a three-primary Redis
Cluster), N ringgate nodes and HAProxy, all on loopback addresses.

    tools/fleet.sh up 3                 # Redis, 3 nodes, HAProxy; prints where
    tools/fleet.sh up 3 --cluster       # the same on a Redis Cluster
    tools/fleet.sh status               # each node's /status backplane line
    tools/fleet.sh down                 # stops everything it started

Node i listens on 127.0.1.i (ws :8080, admin :9090), HAProxy on
127.0.0.1:8000 (deploy/haproxy/haproxy.cfg: leastconn, /readyz checks,
PROXY v2), Redis on 127.0.0.1:6390 (a cluster: 7000..7002).  The state
(pids, addresses, logs) is kept in --dir (default /tmp/ringgate-fleet), so
`down` finds what `up` started.  Each node is `build/ringgate` (or
--binary) with --backplane, --node-id node-i, --proxy-protocol-from
127.0.0.1/32 and --drain-grace 6s, then whatever follows `--`.

The integration tests use the same class (tests/integration/test_fleet.py)
with ports the kernel picks.  Every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from peers import REPO_ROOT, HAProxy, RedisCluster, RedisServer, stop_process, wait_for  # noqa: E402

LISTEN_RE = re.compile(r"listening on (\S+):(\d+).*?admin=(\S+):(\d+)")
STARTUP_S = 15


class Node:
    """One ringgate process; its output goes to dir/node-i.log."""

    def __init__(self, binary, dir, index: int, host: str, port: int, admin_port: int, backplane: str, workers: int,
                 drain_grace: str, extra=()):
        self.index = index
        self.host = host
        self.node_id = f"node-{index}"
        self.log_path = pathlib.Path(dir) / f"{self.node_id}.log"
        self.tls_port = None
        self.args = [str(binary), "--listen", f"{host}:{port}", "--admin-listen", f"{host}:{admin_port}",
                     "--backplane", backplane, "--node-id", self.node_id, "--workers", str(workers),
                     "--proxy-protocol-from", "127.0.0.1/32", "--drain-grace", drain_grace, *map(str, extra)]
        self.start()

    def start(self):
        """Starts it (again, after a kill) and learns its ports from its log."""
        self.port = self.admin_port = None
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.pid = self.proc.pid

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.node_id} exited ({self.proc.returncode}); see {self.log_path}")
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return LISTEN_RE.search(f.read().decode("utf-8", "replace"))
        m = wait_for(listening, STARTUP_S, f"{self.node_id} listening")
        self.port, self.admin_host, self.admin_port = int(m.group(2)), m.group(3).strip("[]"), int(m.group(4))

    def uri(self, path: str = "/ws") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def get(self, path: str):
        """GET path on the admin listener: (status, body)."""
        try:
            with urllib.request.urlopen(f"http://{self.admin_host}:{self.admin_port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def backplane_up(self) -> bool:
        status, body = self.get("/metrics")
        return status == 200 and re.search(rb"(?m)^ws_backplane_up 1$", body) is not None

    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20):
        stop_process(self.proc, timeout)


class Fleet:
    """Redis (or a cluster), `nodes` ringgate nodes on 127.0.(net).(i+1) and
    HAProxy in front, up once every node's backplane is up and HAProxy
    accepts.  Ports 0: the kernel's choice (tests); else fixed (the CLI)."""

    def __init__(self, dir, nodes: int = 3, binary=None, cluster: bool = False, workers: int = 1, node_args=(),
                 net: int = 1, node_port: int = 0, admin_port: int = 0, haproxy_port: int = 0,
                 redis_port: int = 0, check_inter: str = "200ms", drain_grace: str = "6s",
                 haproxy_maxconn: int = 4000):
        self.dir = pathlib.Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = pathlib.Path(binary or os.environ.get("RINGGATE_BIN", REPO_ROOT / "build/ringgate"))
        self.nodes: list[Node] = []
        self.redis = self.cluster = self.haproxy = None
        try:
            if cluster:
                self.cluster = RedisCluster(self.dir, base_port=redis_port or None)
                backplane = self.cluster.url
            else:
                self.redis = RedisServer(redis_port or None, log_path=self.dir / "redis.log")
                backplane = self.redis.url
            for i in range(nodes):
                self.nodes.append(Node(self.binary, self.dir, i + 1, f"127.0.{net}.{i + 1}", node_port, admin_port,
                                       backplane, workers, drain_grace, node_args))
            for n in self.nodes:
                wait_for(n.backplane_up, 15, f"{n.node_id}'s backplane up")
            self.haproxy = HAProxy(self.dir, self.nodes, ws_port=haproxy_port, wss_port=None, check_inter=check_inter,
                                   maxconn=haproxy_maxconn)
        except BaseException:
            self.down()
            raise

    @property
    def uri(self) -> str:
        """Where clients connect: HAProxy's ws frontend."""
        return f"ws://{self.haproxy.host}:{self.haproxy.ws_port}"

    def redis_servers(self):
        return self.cluster.nodes if self.cluster else [self.redis]

    def state(self) -> dict:
        return {"haproxy": {"pid": self.haproxy.proc.pid, "ws": self.uri},
                "redis": [{"pid": r.proc.pid, "port": r.port} for r in self.redis_servers()],
                "nodes": [{"id": n.node_id, "pid": n.pid, "ws": n.uri(""), "log": str(n.log_path),
                           "admin": f"http://{n.admin_host}:{n.admin_port}"} for n in self.nodes]}

    def down(self):
        """Stops HAProxy, then the nodes (draining), then Redis."""
        if self.haproxy:
            self.haproxy.stop()
        for n in self.nodes:
            n.signal(signal.SIGTERM)
        for n in self.nodes:
            n.stop()
        for r in (self.cluster.nodes if self.cluster else [self.redis] if self.redis else []):
            r.stop()


# -- the command line -------------------------------------------------------

def stop_pid(pid: int, timeout_s: float = 20):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("nodes", nargs="?", type=int, default=3, help="up: how many nodes (1..20, default 3)")
    ap.add_argument("--cluster", action="store_true", help="a three-primary Redis Cluster instead of one Redis")
    ap.add_argument("--workers", type=int, default=1, help="workers per node (default 1)")
    ap.add_argument("--binary", help="the ringgate binary (default $RINGGATE_BIN, else build/ringgate)")
    ap.add_argument("--dir", default=os.environ.get("RINGGATE_FLEET_DIR", "/tmp/ringgate-fleet"),
                    help="state and logs (default /tmp/ringgate-fleet)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:split])
    node_args = argv[split + 1:]  # after --: more arguments for every node
    state_file = pathlib.Path(a.dir) / "fleet.json"
    if a.command == "up":
        if not 1 <= a.nodes <= 20:
            ap.error("1 to 20 nodes")
        if state_file.exists():
            print(f"a fleet is already up ({state_file}); `tools/fleet.sh down` first", file=sys.stderr)
            return 1
        fleet = Fleet(a.dir, a.nodes, a.binary, a.cluster, a.workers, node_args, node_port=8080, admin_port=9090,
                      haproxy_port=8000, redis_port=7000 if a.cluster else 6390, check_inter="2s")
        state_file.write_text(json.dumps(fleet.state(), indent=2))
        s = fleet.state()
        print(f"clients:   {s['haproxy']['ws']}/ws   (HAProxy, leastconn over {a.nodes} nodes)")
        for n in s["nodes"]:
            print(f"{n['id']}:    {n['ws']}/ws  admin {n['admin']}  log {n['log']}")
        print(f"redis:     {', '.join(str(r['port']) for r in s['redis'])} on 127.0.0.1"
              f"{' (cluster)' if a.cluster else ''}")
        print(f"publish:   curl -d '\"hi\"' {s['nodes'][0]['admin']}/publish/news")
        print("stop:      tools/fleet.sh down")
        return 0
    if not state_file.exists():
        print(f"no fleet is up ({state_file} is missing)", file=sys.stderr)
        return 1 if a.command == "status" else 0
    s = json.loads(state_file.read_text())
    if a.command == "status":
        for n in s["nodes"]:
            try:
                with urllib.request.urlopen(n["admin"] + "/status", timeout=5) as r:
                    status = json.loads(r.read())
                state = "leaving" if status.get("leaving") else "draining" if status.get("draining") else "serving"
                print(f"{n['id']}: {state}, {status.get('open_connections')} connections, "
                      f"backplane {json.dumps(status.get('backplane'))}")
            except OSError as e:
                print(f"{n['id']}: unreachable ({e})")
        return 0
    stop_pid(s["haproxy"]["pid"])
    for n in s["nodes"]:  # in parallel: each drains for drain_grace
        try:
            os.kill(n["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    for n in s["nodes"]:
        stop_pid(n["pid"])
    for r in s["redis"]:
        stop_pid(r["pid"])
    # A cluster's node files: the next `up --cluster` forms a new cluster.
    shutil.rmtree(pathlib.Path(a.dir) / "cluster", ignore_errors=True)
    state_file.unlink()
    print("fleet stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
