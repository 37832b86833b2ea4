"""Start-up preflight: one `WARN preflight: <finding>; fix: <command>` line
per finding, and --strict-preflight refusing to start.

Kernel values are lowered only inside network namespaces made here; the
global ones (fs.file-max, tcp_mem) are exceeded by asking for a capacity
beyond them, with --strict-preflight so the server stops before it
allocates anything.  Running the printed fix (inside the namespace) must
make the finding go away.
"""

from __future__ import annotations

import os
import re
import resource
import select
import signal
import subprocess
import time

import pytest

from conftest import SANITIZER_MARKERS, ringgate_bin
from netns import HostGuard, Netns, read_host

PREFLIGHT_RE = re.compile(r" WARN preflight: (.*); fix: (.*)$", re.M)


@pytest.fixture(scope="module", autouse=True)
def host_untouched():
    guard = HostGuard(["net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
                       "fs.file-max", "net.ipv4.tcp_mem"])
    yield
    assert guard.changed() == {}


class Server:
    """ringgate started with `args` (in `netns`), read until it listens or exits."""

    def __init__(self, args, netns=None, preexec_fn=None, timeout=15.0):
        argv = [str(ringgate_bin()), *[str(a) for a in args]]
        if netns is not None:
            argv = netns.argv(argv)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        self.output = ""
        self.listening = False
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline and not self.listening:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 65536).decode("utf-8", "replace")
                if not chunk:
                    break  # exited
                self.output += chunk
                self.listening = "listening on" in self.output
            elif self.proc.poll() is not None:
                break

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rest, _ = self.proc.communicate()
        self.output += rest.decode("utf-8", "replace")
        for marker in SANITIZER_MARKERS:
            assert marker not in self.output, self.output
        return self.proc.returncode

    def findings(self):
        return PREFLIGHT_RE.findall(self.output)


def start(args, **kw) -> Server:
    return Server(["--listen", "127.0.0.1:0", "--admin-listen", "off", "--recv-buffer-count", "8", *args], **kw)


def run_fix(ns, fix: str):
    """Runs a printed `sysctl -w KEY=VALUE` fix inside the namespace."""
    assert fix.startswith("sysctl -w "), fix
    r = ns.run(["sh", "-c", fix + " >/dev/null"])
    assert r.returncode == 0, (fix, r.stderr)


@pytest.fixture
def ns():
    with Netns() as n:
        yield n


def test_backlog_over_somaxconn_warns_with_the_fix(ns):
    ns.sysctl_write("net.core.somaxconn", "128")
    srv = start(["--backlog", "4096"], netns=ns)
    assert srv.listening, srv.output
    assert srv.stop() == 0, srv.output
    assert srv.findings() == [("backlog 4096 exceeds net.core.somaxconn 128, so the kernel uses 128",
                               "sysctl -w net.core.somaxconn=4096")], srv.output
    # The line is "<time> WARN preflight: ...", before the start-up line.
    assert srv.output.index("WARN preflight:") < srv.output.index("listening on")

    run_fix(ns, srv.findings()[0][1])
    srv = start(["--backlog", "4096"], netns=ns)
    assert srv.listening, srv.output
    assert srv.stop() == 0
    assert srv.findings() == [], srv.output


def test_strict_preflight_refuses_to_start(ns):
    ns.sysctl_write("net.core.somaxconn", "128")
    srv = start(["--backlog", "4096", "--strict-preflight"], netns=ns)
    assert not srv.listening, srv.output
    assert srv.stop() == 1, srv.output
    assert len(srv.findings()) == 1, srv.output
    assert "--strict-preflight: refusing to start with 1 preflight finding(s) above" in srv.output


def test_strict_preflight_starts_on_a_clean_kernel(ns):
    srv = start(["--backlog", "1024", "--strict-preflight"], netns=ns)
    assert srv.listening, srv.output
    assert srv.stop() == 0, srv.output
    assert "preflight" not in srv.output, srv.output


def test_listen_port_in_the_ephemeral_range(ns):
    ns.sysctl_write("net.ipv4.ip_local_port_range", "10000 65535")
    args = ["--listen", "127.0.0.1:18080", "--admin-listen", "off", "--workers", "1", "--recv-buffer-count", "8"]
    srv = Server(args, netns=ns)
    assert srv.listening, srv.output
    assert srv.stop() == 0
    assert srv.findings() == [(
        "listen port 18080 is inside net.ipv4.ip_local_port_range 10000-65535 and not reserved: an outbound "
        "connection can take it while ringgate restarts",
        "sysctl -w net.ipv4.ip_local_reserved_ports=18080")], srv.output

    run_fix(ns, srv.findings()[0][1])
    srv = Server(args, netns=ns)
    assert srv.listening, srv.output
    assert srv.stop() == 0
    assert srv.findings() == [], srv.output


def test_nofile_hard_limit_that_costs_workers():
    cpus = os.cpu_count() or 1
    # Tables of 1,024 slots (960 usable, 912 planned): two more workers than CPUs.
    connections = 912 * (cpus + 2)

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    srv = Server(["--listen", "127.0.0.1:0", "--admin-listen", "off", "--recv-buffer-count", "8",
                  "--max-pending-handshakes", "64", "--max-connections", connections], preexec_fn=low_nofile)
    assert srv.listening, srv.output
    assert srv.stop() == 0, srv.output
    nofile = [f for f in srv.findings() if f[0].startswith("RLIMIT_NOFILE hard limit 1024")]
    assert len(nofile) == 1, srv.output
    what, fix = nofile[0]
    assert f"takes {cpus + 2} workers on {cpus} CPUs" in what, what
    assert re.fullmatch(r"LimitNOFILE=65536 in ringgate.service \(with sysctl -w fs.nr_open=65536 if it is "
                        r"lower\); then \d+ workers suffice", fix), fix


def test_strict_names_every_global_shortfall():
    """A capacity beyond this host's file-max and tcp_mem: each is a finding
    whose fix asks for at least what is missing; strict refuses before any
    worker or buffer exists."""
    srv = start(["--max-connections", "3000000", "--strict-preflight"])
    assert not srv.listening, srv.output
    assert srv.stop() == 1, srv.output
    found = dict(srv.findings())
    fixes = list(found.values())

    file_max = int(read_host("fs.file-max"))
    m = [re.fullmatch(r"sysctl -w fs\.file-max=(\d+)", f) for f in fixes]
    m = [x for x in m if x]
    if file_max < 3_000_000:
        assert len(m) == 1, srv.output
        assert int(m[0].group(1)) >= 3_000_000
    tcp_mem_cap = int(read_host("net.ipv4.tcp_mem").split()[2])
    m = [re.fullmatch(r'sysctl -w net\.ipv4\.tcp_mem="(\d+) (\d+) (\d+)"', f) for f in fixes]
    m = [x for x in m if x]
    if tcp_mem_cap * 4096 < 3_000_000 * 4096:
        assert len(m) == 1, srv.output
        low, pressure, high = (int(g) for g in m[0].groups())
        assert low <= pressure <= high and high >= 3_000_000
    conntrack = read_host("net.netfilter.nf_conntrack_max")
    if conntrack is not None and int(conntrack) < 3_000_000:
        assert any(f.startswith("sysctl -w net.netfilter.nf_conntrack_max=") for f in fixes), srv.output
    assert "--strict-preflight: refusing to start" in srv.output
