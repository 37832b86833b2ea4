"""A real redis-server for backplane tests, started and stopped by the test.

RedisServer(port=None) starts Debian's redis-server on 127.0.0.1 (a free
port unless given), without persistence, and waits (<= 10 s) until it
answers PING.  .cli(*args) runs redis-cli against it and returns stdout;
.stop() shuts it down (and waits); .start(*redis_server_args) starts it
again on the same port (for reconnection tests).  Every wait is bounded.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, port: int | None = None, log_path=None, extra=()):
        self.port = port or free_port()
        self.log_path = log_path
        self.extra = tuple(extra)  # redis-server arguments on every start
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, *extra):
        """Starts it (again); `extra` are more redis-server arguments."""
        log = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--protected-mode", "no", *self.extra,
                                      *extra],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.cli("PING").strip() == "PONG":
                    return
            except subprocess.SubprocessError:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING within 10 s")

    def cli(self, *args, timeout: float = 5) -> str:
        return subprocess.run([REDIS_CLI, "-p", str(self.port), *[str(a) for a in args]], capture_output=True,
                              text=True, timeout=timeout).stdout

    def stop(self):
        if self.proc:
            stop_process(self.proc)


def stop_process(proc, timeout: float = 10):
    """SIGTERM, then SIGKILL after `timeout` s: for the peers tests start."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a Redis Cluster node")


class RedisCluster:
    """A Redis Cluster of `primaries` redis-server nodes on 127.0.0.1 (no
    replicas), formed with `redis-cli --cluster create`, ready once every
    node says cluster_state:ok (<= 30 s).  .nodes are RedisServers;
    .node_ids maps each port to its cluster node id; .url is
    redis-cluster:// with the first node as the only seed (the others are
    found through it)."""

    def __init__(self, tmp_path, primaries: int = 3):
        self.dir = tmp_path / "cluster"
        self.dir.mkdir(exist_ok=True)
        self.nodes = []
        try:
            for _ in range(primaries):
                port = free_cluster_port()
                self.nodes.append(RedisServer(port, log_path=self.dir / f"{port}.log", extra=(
                    "--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / f"{port}.conf"),
                    "--cluster-node-timeout", "2000", "--dir", str(self.dir))))
            out = subprocess.run([REDIS_CLI, "--cluster", "create",
                                  *[f"127.0.0.1:{n.port}" for n in self.nodes],
                                  "--cluster-replicas", "0", "--cluster-yes"],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, f"redis-cli --cluster create failed: {out.stdout} {out.stderr}"
            deadline = time.monotonic() + 30
            while not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok within 30 s"
                time.sleep(0.1)
            self.node_ids = {n.port: n.cli("CLUSTER", "MYID").strip() for n in self.nodes}
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis-cluster://127.0.0.1:{self.nodes[0].port}"

    def keyslot(self, key: str) -> int:
        return int(self.nodes[0].cli("CLUSTER", "KEYSLOT", key).strip())

    def owner(self, slot: int) -> RedisServer:
        """The primary serving `slot`, as CLUSTER NODES on the first node
        says now: "ID HOST:PORT@BUS FLAGS ... SLOT-RANGES"."""
        for line in self.nodes[0].cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for r in fields[8:]:
                if r.startswith("["):  # a slot being migrated
                    continue
                start, _, end = r.partition("-")
                if int(start) <= slot <= int(end or start):
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no primary serves slot {slot}")

    def move_slot(self, slot: int, to: RedisServer):
        """Migrates one slot, keys and all, to the primary `to`, the way
        redis-cli --cluster reshard does: IMPORTING, MIGRATING, MIGRATE,
        then NODE on every primary."""
        source = self.owner(slot)
        assert source is not to
        to_id, source_id = self.node_ids[to.port], self.node_ids[source.port]
        assert to.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id).strip() == "OK"
        assert source.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", to_id).strip() == "OK"
        for _ in range(100):
            keys = source.cli("CLUSTER", "GETKEYSINSLOT", slot, 100).split()
            if not keys:
                break
            out = source.cli("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys).strip()
            assert out in ("OK", "NOKEY"), f"MIGRATE: {out}"
        for n in [to, source] + [n for n in self.nodes if n not in (to, source)]:
            assert n.cli("CLUSTER", "SETSLOT", slot, "NODE", to_id).strip() == "OK"

    def stop(self):
        for n in self.nodes:
            n.stop()
