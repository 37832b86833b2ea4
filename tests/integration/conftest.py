"""Fixtures for ringgate integration tests.

The binary is taken from $RINGGATE_BIN (default: build/ringgate,
relative to the repository root).  Each server is started with
`--listen 127.0.0.1:0 <extra args>`; the fixture waits (<= 10 s) for the
stderr line `listening on HOST:PORT`, and on teardown sends SIGTERM, waits
(<= 15 s), and asserts exit status 0 and a log free of sanitizer reports.

Fixtures:
    ringgate         function-scoped factory: ringgate(*args) -> RinggateServer
    ringgate_module  module-scoped factory (for servers shared by a test module)

Set $RINGGATE_LOG_DIR to keep every server's full log in that directory.

A RinggateServer has .pid, .port, .host, .log() (captured stdout+stderr so
far), .uri(path), .stop(), .alive(), and unpacks as (pid, port, log).
"""

from __future__ import annotations

import os
import pathlib
import re
import resource
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")
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


def ringgate_bin() -> pathlib.Path:
    p = pathlib.Path(os.environ.get("RINGGATE_BIN", "build/ringgate"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


class RinggateServer:
    """A running ringgate process with its output captured by a reader thread."""

    def __init__(self, args, startup_timeout: float = STARTUP_TIMEOUT, env=None):
        binary = ringgate_bin()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            pytest.fail(f"ringgate binary not found or not executable: {binary} "
                        f"(build it, or set RINGGATE_BIN)", pytrace=False)
        self.args = [str(binary), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *[str(a) for a in args]]
        self.expect_clean_exit = True   # tests that force an unclean exit clear this
        self.returncode = None
        self.started_by = os.environ.get("PYTEST_CURRENT_TEST", "unknown").split(" ")[0]
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._eof = threading.Event()
        self.host = None
        self.port = None
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read_output, name=f"ringgate-log-{self.pid}",
                                        daemon=True)
        self._reader.start()
        deadline = time.monotonic() + startup_timeout
        while not self._ready.wait(0.05):
            if self._eof.is_set() or self.proc.poll() is not None:
                self.proc.wait(5)
                self.returncode = self.proc.returncode
                pytest.fail(f"ringgate exited (status {self.proc.returncode}) before listening; "
                            f"args={self.args}\n--- log ---\n{self.log()}", pytrace=False)
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"ringgate did not print 'listening on HOST:PORT' within "
                            f"{startup_timeout}s; args={self.args}\n--- log ---\n{self.log()}",
                            pytrace=False)

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

    def __iter__(self):
        return iter((self.pid, self.port, self.log))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def assert_alive(self):
        assert self.alive(), (f"ringgate died (status {self.proc.returncode})\n"
                              f"--- log tail ---\n{self.log_tail()}")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

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
        elif s.expect_clean_exit and rc != 0:
            problems.append(f"pid {s.pid}: exit status {rc}, expected 0")
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


@pytest.fixture(scope="session", autouse=True)
def _check_binary_once():
    """Fail fast, with one clear message, if the binary is missing."""
    b = ringgate_bin()
    if not b.is_file():
        pytest.exit(f"ringgate binary not found: {b} (set RINGGATE_BIN or build it)", returncode=2)
