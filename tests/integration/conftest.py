"""Fixtures and shared helpers for ringgate integration tests.

The binary is taken from $RINGGATE_BIN (default: build/ringgate,
relative to the repository root).  Each server is started with
`--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 <extra args>` (later
arguments override those); the fixture waits (<= 10 s) for the log line
`listening on HOST:PORT ... admin=HOST:PORT`, and on teardown sends SIGTERM,
waits (<= 15 s), and asserts the expected exit status (0 unless the test
says otherwise) and a log free of sanitizer reports.

Fixtures:
    ringgate         function-scoped factory: ringgate(*args, **kw) -> RinggateServer
    ringgate_module  module-scoped factory (for servers shared by a test module)
    ns               a throwaway network namespace (netns.Netns) for sysctl tests
    transport        "ws" then "wss": a test that uses it (or on_transport) runs on both
    on_transport     on_transport(srv) -> Endpoint: srv as reached over this test's transport
    tls_server_args  the arguments that add a TLS listener (127.0.0.1:0, a leaf of tls_ca)
    tls_ca           a session's test CA (tlsca.TestCA); tls_client_context trusts it

Set $RINGGATE_LOG_DIR to keep every server's full log in that directory.

An Endpoint (a server on one transport) has .transport, .tls, .port (the
listener's), .uri(path), .ws_connect(path, **kw), .connect(), .handshake(path, **kw),
.http_exchange(data, **kw); anything else is the RinggateServer's.

A RinggateServer has .pid, .port, .admin_port, .tls_port, .host, .listening, .log()
(captured stdout+stderr so far), .uri(path), .wss_uri(path), .stop(), .alive(), .wait(),
.signal(), .fd_count(), and unpacks as (pid, port, log).  Set
.expected_exit to the status teardown should see (None: not checked).

Helpers (import them: `from conftest import wait_until, metrics, total`):
    wait_until(predicate, timeout_s, interval_s, what)  poll instead of sleeping
    admin_get(port, path, method)      one HTTP request to the admin listener
    publish(srv, channel, body)        POST /publish/{channel} (no token): (status, body)
    metrics(srv) / parse_metrics(text) /metrics as {(name, labels): value}
    total(m, name, **labels)           sum of a metric's samples (matching labels)
    ws_connect(uri, **kw)              python3-websockets client with test defaults
    run_async(coro, timeout_s)         asyncio.run with an overall bound
    ringgate_bin() / ringgate_load_bin() / run_ringgate(*args)
    rss_kib(pid) / fd_count(pid) / tcp_sockets(port, states)
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
# The fleet's peers (redis-server, a Redis Cluster, HAProxy), shared with tools/fleet/fleet.py.
if str(REPO_ROOT / "tools/fleet") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tools/fleet"))

LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")
ADMIN_RE = re.compile(r"admin=(\S+):(\d+)")
TLS_RE = re.compile(r"tls=(\S+):(\d+)")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer",
                     "UndefinedBehaviorSanitizer", "runtime error")
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


def _raise_nofile_limit():
    """Clients in these tests hold thousands of sockets: soft limit -> hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_raise_nofile_limit()


# ---------------------------------------------------------------------------
# Waiting
# ---------------------------------------------------------------------------

def wait_until(predicate, timeout_s: float, interval_s: float = 0.02, what: str = "the condition"):
    """Calls predicate() every interval_s until it returns something truthy,
    and returns that value.  After timeout_s raises AssertionError naming
    `what` and the last value seen.  Exceptions from predicate propagate:
    a poll never hides a failure."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what} "
                                 f"(last value: {repr(value)[:300]})")
        time.sleep(interval_s)


# ---------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------

def ringgate_bin() -> pathlib.Path:
    p = pathlib.Path(os.environ.get("RINGGATE_BIN", "build/ringgate"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


def ringgate_load_bin() -> pathlib.Path:
    """$RINGGATE_LOAD_BIN, else tools/ringgate-load in RINGGATE_BIN's build
    directory, else build/tools/ringgate-load."""
    if "RINGGATE_LOAD_BIN" in os.environ:
        return pathlib.Path(os.environ["RINGGATE_LOAD_BIN"])
    sibling = ringgate_bin().resolve().parent / "tools" / "ringgate-load"  # build/ringgate -> build/tools/
    return sibling if sibling.exists() else REPO_ROOT / "build/tools/ringgate-load"


def run_ringgate(*args, timeout: float = 20) -> subprocess.CompletedProcess:
    """Runs `ringgate ARGS` to completion (for options that fail or print and exit)."""
    return subprocess.run([str(ringgate_bin()), *[str(a) for a in args]], capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------

class RinggateServer:
    """A running ringgate process with its output captured by a reader thread.

    preexec_fn runs in the child before exec (e.g. to lower a limit); netns
    (a netns.Netns) starts it inside that network namespace.  With
    require_listening=False a server that exits before listening (e.g.
    --strict-preflight refusing) is not a failure: .listening says which."""

    def __init__(self, args, startup_timeout: float = STARTUP_TIMEOUT, env=None, preexec_fn=None, netns=None,
                 require_listening: bool = True):
        binary = ringgate_bin()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            pytest.fail(f"ringgate binary not found or not executable: {binary} "
                        f"(build it, or set RINGGATE_BIN)", pytrace=False)
        self.args = [str(binary), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *[str(a) for a in args]]
        argv = netns.argv(self.args) if netns is not None else self.args
        self.expected_exit = 0   # what teardown expects; None: not checked (tests that force an unclean exit)
        self.returncode = None
        self.listening = False
        self.started_by = os.environ.get("PYTEST_CURRENT_TEST", "unknown").split(" ")[0]
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._eof = threading.Event()
        self.host = None
        self.port = None
        self.admin_port = None
        self.admin_host = "127.0.0.1"
        self.tls_port = None  # with --tls-listen
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read_output, name=f"ringgate-log-{self.pid}",
                                        daemon=True)
        self._reader.start()
        deadline = time.monotonic() + startup_timeout
        while not self._ready.wait(0.05):
            if self._eof.is_set() or self.proc.poll() is not None:
                self.proc.wait(5)
                self._reader.join(5)
                self.returncode = self.proc.returncode
                if not require_listening:
                    return
                pytest.fail(f"ringgate exited (status {self.proc.returncode}) before listening; "
                            f"args={self.args}\n--- log ---\n{self.log()}", pytrace=False)
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"ringgate did not print 'listening on HOST:PORT' within "
                            f"{startup_timeout}s; args={self.args}\n--- log ---\n{self.log()}",
                            pytrace=False)
        self.listening = True

    def _read_output(self):
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._lock:
                    self._lines.append(line)
                if not self._ready.is_set():
                    m = LISTEN_RE.search(line)
                    if m:
                        self.host, self.port = m.group(1), int(m.group(2))
                        a = ADMIN_RE.search(line)
                        self.admin_port = int(a.group(2)) if a else None
                        if a:
                            self.admin_host = a.group(1).strip("[]")
                        t = TLS_RE.search(line)
                        self.tls_port = int(t.group(2)) if t else None
                        self._ready.set()
        finally:
            self._eof.set()

    # -- accessors ----------------------------------------------------------
    def log(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def log_tail(self, n: int = 60) -> str:
        with self._lock:
            return "".join(self._lines[-n:])

    def uri(self, path: str = "/echo") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def wss_uri(self, path: str = "/echo", host: str = "localhost") -> str:
        return f"wss://{host}:{self.tls_port}{path}"

    def __iter__(self):
        return iter((self.pid, self.port, self.log))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assert_alive(self):
        assert self.alive(), (f"ringgate died (status {self.proc.returncode})\n"
                              f"--- log tail ---\n{self.log_tail()}")

    def fd_count(self) -> int:
        return fd_count(self.pid)

    # -- lifecycle ----------------------------------------------------------
    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float):
        """Wait for exit; returns the exit status or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.returncode = self.proc.wait(10)
        self._reader.join(5)

    def stop(self, timeout: float = STOP_TIMEOUT):
        """SIGTERM and wait; SIGKILL (and report) if it does not exit in time.
        Returns (returncode, problem_or_None)."""
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self._reader.join(5)
            return self.returncode, None
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            return self.returncode, f"did not exit within {timeout}s of SIGTERM (killed)"
        return rc, None

    def sanitizer_report(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return marker
        return None


def _save_log(s):
    """With $RINGGATE_LOG_DIR set, keep every server's full log (CI artifact)."""
    d = os.environ.get("RINGGATE_LOG_DIR")
    if not d:
        return
    os.makedirs(d, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", s.started_by)[-150:]
    with open(os.path.join(d, f"{name}.{s.pid}.log"), "w") as f:
        f.write(f"# args: {s.args}\n# exit status: {s.returncode}\n")
        f.write(s.log())


def _teardown(servers):
    problems = []
    for s in servers:
        rc, problem = s.stop()
        _save_log(s)
        if problem:
            problems.append(f"pid {s.pid}: {problem}")
        elif s.expected_exit is not None and rc != s.expected_exit:
            problems.append(f"pid {s.pid}: exit status {rc}, expected {s.expected_exit}")
        marker = s.sanitizer_report()
        if marker:
            problems.append(f"pid {s.pid}: log contains {marker!r}")
        if problems:
            # Printed output is shown by pytest for failing tests/teardowns.
            print(f"--- ringgate pid {s.pid} args {s.args[1:]} log tail ---\n{s.log_tail(200)}")
    if problems:
        pytest.fail("ringgate teardown problems:\n  " + "\n  ".join(problems), pytrace=False)


def _factory():
    servers = []

    def start(*args, **kw) -> RinggateServer:
        s = RinggateServer(args, **kw)
        servers.append(s)
        return s
    return start, servers


@pytest.fixture
def ringgate():
    """Factory: ringgate('--workers', '2', ...) -> started RinggateServer,
    stopped (SIGTERM) and checked at the end of the test."""
    start, servers = _factory()
    yield start
    _teardown(servers)


@pytest.fixture(scope="module")
def ringgate_module():
    """Like `ringgate` but servers live until the end of the test module."""
    start, servers = _factory()
    yield start
    _teardown(servers)


@pytest.fixture
def ns():
    """A throwaway network namespace (netns.Netns), deleted after the test."""
    from netns import Netns
    with Netns() as n:
        assert n.netns_id() != os.readlink("/proc/self/ns/net"), "not a namespace of its own"
        yield n


# ---------------------------------------------------------------------------
# Transports: the same tests over ws:// and wss://
# ---------------------------------------------------------------------------

TRANSPORTS = ("ws", "wss")


class Endpoint:
    """A server as a client reaches it over one transport: "ws" (its plain
    listener) or "wss" (its TLS listener, the certificate verified as
    `localhost` against the test CA).  The clients below take the transport
    into account, so a test body written against an Endpoint runs unchanged
    on both; every other attribute is the RinggateServer's."""

    def __init__(self, srv: RinggateServer, transport: str, ssl_context: ssl.SSLContext | None = None):
        assert transport in TRANSPORTS, transport
        self.srv = srv
        self.transport = transport
        self.tls = transport == "wss"
        self.ssl_context = ssl_context if self.tls else None
        if self.tls:
            assert ssl_context is not None, "wss needs a client SSLContext"
            assert srv.tls_port is not None, "the server was started without a TLS listener (tls_server_args)"
        self.port = srv.tls_port if self.tls else srv.port

    def __repr__(self):
        return f"Endpoint({self.transport}, port {self.port})"

    def __getattr__(self, name):
        return getattr(self.srv, name)

    def _raw_tls(self) -> dict:
        return {"tls": self.ssl_context, "server_hostname": "localhost"} if self.tls else {}

    def uri(self, path: str = "/echo") -> str:
        return self.srv.wss_uri(path) if self.tls else self.srv.uri(path)

    def ws_connect(self, path: str = "/echo", **kw):
        """conftest.ws_connect on this transport (python3-websockets)."""
        if self.tls:
            kw.setdefault("ssl", self.ssl_context)
        return ws_connect(self.uri(path), **kw)

    def connect(self, **kw):
        """wsraw.connect: a TCP socket, or an SSLSocket after its handshake."""
        import wsraw
        return wsraw.connect(self.port, **self._raw_tls(), **kw)

    def handshake(self, path: str = "/echo", **kw):
        """wsraw.handshake -> (RawWS, HttpResponse)."""
        import wsraw
        return wsraw.handshake(self.port, path, **self._raw_tls(), **kw)

    def http_exchange(self, data: bytes, **kw):
        """wsraw.http_exchange -> HttpResponse (read until the server closes)."""
        import wsraw
        return wsraw.http_exchange(self.port, data, **self._raw_tls(), **kw)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory):
    """A test CA for the whole session (tests that need their own make one)."""
    from tlsca import TestCA
    return TestCA(tmp_path_factory.mktemp("session-ca"))


@pytest.fixture(scope="session")
def tls_server_args(tls_ca):
    """Arguments that add a TLS listener on 127.0.0.1:0, with a leaf for
    `localhost` issued by tls_ca, to a server started by ringgate(...)."""
    leaf = tls_ca.issue("localhost", key="ec")
    return ("--tls-listen", "127.0.0.1:0", "--tls-cert-file", str(leaf.cert_path),
            "--tls-key-file", str(leaf.key_path))


@pytest.fixture(scope="session")
def tls_client_context(tls_ca) -> ssl.SSLContext:
    """What a wss client uses: Python's default context, trusting only
    tls_ca, except that a truncation (TCP ended without close_notify) is an
    error, not a clean EOF, as wsraw.connect() would make it anyway."""
    ctx = ssl.create_default_context(cafile=str(tls_ca.cert_path))
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    """The transport of this run of the test: "ws", then "wss"."""
    return request.param


@pytest.fixture
def on_transport(transport, tls_client_context):
    """on_transport(srv) -> Endpoint of srv on this test's transport (the
    server must have been started with tls_server_args)."""
    return lambda srv: Endpoint(srv, transport, tls_client_context)


@pytest.fixture(scope="session", autouse=True)
def _check_binary_once():
    """Fail fast, with one clear message, if the binary is missing."""
    b = ringgate_bin()
    if not b.is_file():
        pytest.exit(f"ringgate binary not found: {b} (set RINGGATE_BIN or build it)", returncode=2)


# ---------------------------------------------------------------------------
# The admin listener: /metrics, /readyz, /status, the publish API
# ---------------------------------------------------------------------------

def admin_get(port: int, path: str, method: str = "GET", host: str = "127.0.0.1"):
    """One HTTP request to the admin port; returns (status, headers, body).
    Header names are lower-cased; Content-Length must match the body."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: admin\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    assert int(headers["content-length"]) == len(body)
    return status, headers, body.decode()


def publish(srv, channel: str, body: bytes):
    """POST /publish/{channel} on the admin listener (no token); returns
    (status, body)."""
    import http.client
    conn = http.client.HTTPConnection(srv.admin_host, srv.admin_port, timeout=10)
    try:
        conn.request("POST", f"/publish/{channel}", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def parse_metrics(text: str) -> dict:
    """{(name, frozenset(labels.items())): value} from a Prometheus text
    exposition, parsed by python3-prometheus-client."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metrics(srv) -> dict:
    """The server's /metrics, parsed (see parse_metrics)."""
    status, _, body = admin_get(srv.admin_port, "/metrics", host=srv.admin_host)
    assert status == 200, body
    return parse_metrics(body)


def total(m: dict, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in m.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------

def ws_connect(uri: str, **kw):
    """websockets.connect with test defaults: no size limit, no compression,
    no client pings, 30 s open/close timeouts (each may be overridden)."""
    import websockets
    kw.setdefault("max_size", None)
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", 30)
    kw.setdefault("close_timeout", 30)
    kw.setdefault("ping_interval", None)
    return websockets.connect(uri, **kw)


def run_async(coro, timeout_s: float = 120):
    """Runs a coroutine to completion with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


# ---------------------------------------------------------------------------
# Processes and sockets, from /proc
# ---------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid: int) -> int:
    """Entries in /proc/PID/fd (0 once the process is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


TCP_ESTABLISHED, TCP_CLOSE_WAIT = "01", "08"


def tcp_sockets(port: int, states=(TCP_ESTABLISHED,)) -> int:
    """Sockets of this network namespace whose LOCAL port is `port` (so, on
    a server's port: the server's side of its connections) in `states`
    (hex codes of /proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            f = open(table)
        except OSError:
            continue
        with f:
            next(f)
            for line in f:
                parts = line.split()
                local, state = parts[1], parts[3]
                if int(local.rsplit(":", 1)[1], 16) == port and state in states:
                    count += 1
    return count
