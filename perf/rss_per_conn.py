#!/usr/bin/python3
"""Measure ringgate's memory cost per idle WebSocket connection.

Starts the server (binary from --bin, else $RINGGATE_BIN, else
build/ringgate relative to the repository root) with
`--listen 127.0.0.1:0 --max-connections N --workers W`, records VmRSS of the
server process and Slab from /proc/meminfo, opens N idle upgraded
connections (raw asyncio streams doing the handshake: much lighter on the
client than a full WebSocket library), waits for RSS to settle, records
again, and prints a markdown table plus one JSON line:

  {"connections": N, "rss_before_kib": ..., "rss_after_kib": ...,
   "rss_delta_kib": ..., "bytes_per_connection": delta/N,
   "slab_before_kib": ..., "slab_after_kib": ..., "slab_delta_kib": ...,
   "slab_bytes_per_connection": ..., ...}

bytes_per_connection only sees memory touched AFTER start-up.  A server that
preallocates per-connection pools sized by --max-connections shows a tiny
delta, so the script also starts a baseline server with a 64-slot table per
worker (everything else equal) and reports
bytes_per_connection_incl_prealloc = (rss_after - rss_minimal)/N
(skip with --no-baseline).

Slab is system-wide (it includes the client's sockets too: both ends of each
loopback connection live in this kernel), so read it as an upper bound for
kernel memory per connection pair.

Everything is bounded: --timeout (default 300 s) caps the whole run.
Usage:
  /usr/bin/python3 perf/rss_per_conn.py [--bin PATH] [--connections 10000]
      [--workers W] [--batch 500] [--json-out FILE] [--extra-arg=--log-level=warn ...]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import pathlib
import re
import resource
import signal
import subprocess
import sys
import threading
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")


def read_status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/{pid}/status")


def read_meminfo_kib(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/meminfo")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Server:
    def __init__(self, binary, args, startup_timeout=10.0):
        self.cmd = [str(binary), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines = []
        self.port = None
        self.ready = threading.Event()
        t = threading.Thread(target=self._reader, daemon=True)
        t.start()
        deadline = time.monotonic() + startup_timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"server failed to start: {self.cmd}\n{''.join(self.lines)}")

    def _reader(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            m = LISTEN_RE.search(line)
            if m and not self.ready.is_set():
                self.port = int(m.group(2))
                self.ready.set()

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def request_bytes(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


async def open_idle(port: int, path: str, timeout: float):
    async def run():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        req = request_bytes(port)
        if path != "/echo":
            req = req.replace(b"GET /echo ", f"GET {path} ".encode(), 1)
        w.write(req)
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            w.close()
            raise RuntimeError(f"HTTP {status}")
        return r, w
    return await asyncio.wait_for(run(), timeout)


async def open_all(port, n, batch, path, deadline):
    conns, errors = [], []
    for start in range(0, n, batch):
        if time.monotonic() > deadline:
            errors.append(f"time budget exhausted after {len(conns)} connections")
            break
        k = min(batch, n - start)
        res = await asyncio.gather(*(open_idle(port, path, 30.0) for _ in range(k)),
                                   return_exceptions=True)
        for x in res:
            (errors.append(repr(x)) if isinstance(x, BaseException) else conns.append(x))
        if len(errors) > 20:
            break
    return conns, errors


def settle_rss(pid, max_wait=15.0, interval=0.5, tolerance_kib=64):
    """Poll VmRSS until two consecutive samples differ by <= tolerance (bounded)."""
    deadline = time.monotonic() + max_wait
    prev = read_status_kib(pid, "VmRSS")
    while time.monotonic() < deadline:
        time.sleep(interval)
        cur = read_status_kib(pid, "VmRSS")
        if abs(cur - prev) <= tolerance_kib:
            return cur
        prev = cur
    return prev


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("RINGGATE_BIN", "build/ringgate"))
    ap.add_argument("--connections", "-n", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=None,
                    help="default: ceil(N/19000)+1")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--path", default="/echo")
    ap.add_argument("--timeout", type=float, default=300.0, help="overall time budget (s)")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the 64-slot baseline server")
    ap.add_argument("--extra-arg", action="append", default=[],
                    help="extra server argument (repeatable), e.g. --extra-arg=--log-level=warn")
    a = ap.parse_args()

    n = a.connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if n + 100 > hard:
        sys.exit(f"--connections {n} needs {n + 100} client fds, RLIMIT_NOFILE hard is {hard}")
    workers = a.workers or (math.ceil(n / 19000) + 1)
    binary = pathlib.Path(a.bin)
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.is_file():
        sys.exit(f"binary not found: {binary}")

    deadline = time.monotonic() + a.timeout
    extra = []
    for x in a.extra_arg:
        extra.extend(x.split("=", 1) if x.startswith("--") and "=" in x else [x])
    result = {"connections_requested": n, "workers": workers, "binary": str(binary)}
    if not a.no_baseline:
        # A server that preallocates per-connection state at start-up shows
        # almost no RSS delta; compare with a minimal server to expose it.
        # Same pools, but a 64-slot table: the difference is the slab that a
        # full-size server reserves (32 B per slot) for the connections.
        base = Server(binary, ["--max-connections", "1", "--table-slots-per-worker", "64",
                               "--workers", str(workers), *extra])
        try:
            time.sleep(0.5)
            result["rss_minimal_server_kib"] = settle_rss(base.proc.pid, max_wait=5)
        finally:
            base.stop()
    srv = Server(binary, ["--max-connections", str(n), "--workers", str(workers), *extra])
    rc = None
    try:
        time.sleep(0.5)
        rss_before = settle_rss(srv.proc.pid, max_wait=5)
        slab_before = read_meminfo_kib("Slab")
        fds_before = fd_count(srv.proc.pid)
        t0 = time.monotonic()

        async def run():
            conns, errors = await open_all(srv.port, n, a.batch, a.path, deadline - 30)
            return conns, errors
        loop = asyncio.new_event_loop()
        conns, errors = loop.run_until_complete(run())
        open_seconds = time.monotonic() - t0

        rss_after = settle_rss(srv.proc.pid)
        slab_after = read_meminfo_kib("Slab")
        fds_after = fd_count(srv.proc.pid)
        opened = len(conns)
        for _, w in conns:
            w.close()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()

        delta = rss_after - rss_before
        result.update({
            "connections": opened,
            "errors": len(errors),
            "first_errors": errors[:5],
            "open_seconds": round(open_seconds, 2),
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "rss_delta_kib": delta,
            "bytes_per_connection": round(delta * 1024 / opened, 1) if opened else None,
            "slab_before_kib": slab_before,
            "slab_after_kib": slab_after,
            "slab_delta_kib": slab_after - slab_before,
            "slab_bytes_per_connection": round((slab_after - slab_before) * 1024 / opened, 1) if opened else None,
            "bytes_per_connection_incl_prealloc": (
                round((rss_after - result["rss_minimal_server_kib"]) * 1024 / opened, 1)
                if opened and "rss_minimal_server_kib" in result else None),
            "server_fds_before": fds_before,
            "server_fds_after": fds_after,
        })
    finally:
        rc = srv.stop()
        result["server_exit_status"] = rc

    print("| metric | value |")
    print("| --- | --- |")
    for k in ("connections", "errors", "workers", "open_seconds", "rss_before_kib", "rss_after_kib",
              "rss_delta_kib", "bytes_per_connection", "rss_minimal_server_kib",
              "bytes_per_connection_incl_prealloc", "slab_before_kib", "slab_after_kib",
              "slab_delta_kib", "slab_bytes_per_connection", "server_fds_before", "server_fds_after",
              "server_exit_status"):
        print(f"| {k} | {result.get(k)} |")
    print()
    print(json.dumps(result))
    if a.json_out:
        pathlib.Path(a.json_out).write_text(json.dumps(result, indent=2) + "\n")
    if result.get("errors") or result.get("connections") != n:
        sys.exit(1)


if __name__ == "__main__":
    main()
