"""The peers a ringgate fleet runs with, started and stopped by
tools/fleet/fleet.py and by the integration tests: Debian's redis-server
(one, or a Redis Cluster) and HAProxy with deploy/haproxy/haproxy.cfg.

RedisServer(port=None) starts redis-server on 127.0.0.1 (a free port unless
given), without persistence, and waits (<= 10 s) until it answers PING.
.cli(*args) runs redis-cli against it and returns stdout; .stop() shuts it
down (and waits); .start(*redis_server_args) starts it again on the same
port (for reconnection tests).  RedisCluster forms a cluster of such
servers; HAProxy runs the shipped configuration with this machine's
addresses.  Every wait is bounded.  Standard library only.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import socket
import subprocess
import time

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


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
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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

    def __init__(self, tmp_path, primaries: int = 3, base_port=None):
        self.dir = tmp_path / "cluster"
        self.dir.mkdir(exist_ok=True)
        self.nodes = []
        try:
            for _ in range(primaries):
                port = base_port + len(self.nodes) if base_port else free_cluster_port()
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


def haproxy_config(ws_port: int, wss_port, nodes, check_inter: str = "2s", host: str = "127.0.0.1",
                   maxconn: int = 4000) -> str:
    """deploy/haproxy/haproxy.cfg with this machine's addresses: frontends
    on host:ws_port (and host:wss_port, or no wss at all when None), the
    nodes (objects with .host, .port, .tls_port, .admin_port) as servers,
    global maxconn (RLIMIT_NOFILE bounds it), and the health check's
    interval (`timeout check` stays 2 s)."""
    text = (REPO_ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    text = re.sub(r"(?m)^(\s*)bind :80$", rf"\g<1>bind {host}:{ws_port}", text)
    text = re.sub(r"(?m)^(\s*)maxconn \d+$", rf"\g<1>maxconn {maxconn}", text)
    text = re.sub(r"inter 2s fall 2 rise 3", f"inter {check_inter} fall 2 rise 2", text)
    if wss_port is None:
        for block in (r"(?ms)^frontend wss\n.*?(?=^\S|\Z)", r"(?ms)^backend ringgate_wss\n.*?(?=^\S|\Z)"):
            text = re.sub(block, "", text)
    else:
        text = re.sub(r"(?m)^(\s*)bind :443$", rf"\g<1>bind {host}:{wss_port}", text)
    backends = [("ringgate_ws", lambda n: n.port)] + ([("ringgate_wss", lambda n: n.tls_port)] if wss_port else [])
    for backend, port_of in backends:
        servers = "".join(f"    server node{i + 1} {n.host}:{port_of(n)} check port {n.admin_port}\n"
                          for i, n in enumerate(nodes))
        block = re.search(rf"(?ms)^backend {backend}\n.*?(?=^\S|\Z)", text)
        assert block, f"the shipped haproxy.cfg has no backend {backend}"
        body = re.sub(r"(?m)^\s*server .*\n", "", block.group(0))
        text = text.replace(block.group(0), body.rstrip("\n") + "\n" + servers + "\n")
    return text


class HAProxy:
    """haproxy -db running haproxy_config(...), its output in dir/haproxy.log;
    ready once its ws frontend accepts (<= 10 s)."""

    def __init__(self, dir, nodes, ws_port: int = 0, wss_port=0, check_inter: str = "200ms",
                 host: str = "127.0.0.1", maxconn: int = 4000):
        self.host = host
        self.ws_port = ws_port or free_port(host)
        self.wss_port = None if wss_port is None else (wss_port or free_port(host))
        self.config = pathlib.Path(dir) / "haproxy.cfg"
        self.config.write_text(haproxy_config(self.ws_port, self.wss_port, nodes, check_inter, host, maxconn))
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = open(pathlib.Path(dir) / "haproxy.log", "w+")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def accepting():
            try:
                socket.create_connection((host, self.ws_port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(accepting, 10, "haproxy accepting")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        stop_process(self.proc)
        self.log.close()
