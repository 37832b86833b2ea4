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
    def __init__(self, port: int | None = None, log_path=None):
        self.port = port or free_port()
        self.log_path = log_path
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, *extra):
        """Starts it (again); `extra` are more redis-server arguments."""
        log = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--protected-mode", "no", *extra],
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
