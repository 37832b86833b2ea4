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

import pytest

from conftest import RinggateServer
from netns import HostGuard, read_host

PREFLIGHT_RE = re.compile(r" WARN preflight: (.*); fix: (.*)$", re.M)


@pytest.fixture(scope="module", autouse=True)
def host_untouched():
    guard = HostGuard(["net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
                       "fs.file-max", "net.ipv4.tcp_mem"])
    yield
    assert guard.changed() == {}


def findings(srv):
    return PREFLIGHT_RE.findall(srv.log())


@pytest.fixture
def start(ringgate):
    """start(*args, netns=None, preexec_fn=None): a small server (no admin
    listener, 8 receive buffers) that may refuse to start (.listening says)."""
    def start(*args, **kw) -> RinggateServer:
        srv = ringgate("--admin-listen", "off", "--recv-buffer-count", "8", *args, require_listening=False, **kw)
        srv.expected_exit = None  # each test asserts the status it expects
        return srv
    return start


def run_fix(ns, fix: str):
    """Runs a printed `sysctl -w KEY=VALUE` fix inside the namespace."""
    assert fix.startswith("sysctl -w "), fix
    r = ns.run(["sh", "-c", fix + " >/dev/null"])
    assert r.returncode == 0, (fix, r.stderr)


def test_backlog_over_somaxconn_warns_with_the_fix(ns, start):
    ns.sysctl_write("net.core.somaxconn", "128")
    srv = start("--backlog", "4096", netns=ns)
    assert srv.listening, srv.log()
    assert srv.stop() == (0, None), srv.log()
    assert findings(srv) == [("backlog 4096 exceeds net.core.somaxconn 128, so the kernel uses 128",
                              "sysctl -w net.core.somaxconn=4096")], srv.log()
    # The line is "<time> WARN preflight: ...", before the start-up line.
    assert srv.log().index("WARN preflight:") < srv.log().index("listening on")

    run_fix(ns, findings(srv)[0][1])
    srv = start("--backlog", "4096", netns=ns)
    assert srv.listening, srv.log()
    assert srv.stop() == (0, None)
    assert findings(srv) == [], srv.log()


def test_strict_preflight_refuses_to_start(ns, start):
    ns.sysctl_write("net.core.somaxconn", "128")
    srv = start("--backlog", "4096", "--strict-preflight", netns=ns)
    assert not srv.listening, srv.log()
    assert srv.stop() == (1, None), srv.log()
    assert len(findings(srv)) == 1, srv.log()
    assert "--strict-preflight: refusing to start with 1 preflight finding(s) above" in srv.log()


def test_strict_preflight_starts_on_a_clean_kernel(ns, start):
    srv = start("--backlog", "1024", "--strict-preflight", netns=ns)
    assert srv.listening, srv.log()
    assert srv.stop() == (0, None), srv.log()
    assert "preflight" not in srv.log(), srv.log()


def test_listen_port_in_the_ephemeral_range(ns, start):
    ns.sysctl_write("net.ipv4.ip_local_port_range", "10000 65535")
    args = ["--listen", "127.0.0.1:18080", "--workers", "1"]
    srv = start(*args, netns=ns)
    assert srv.listening, srv.log()
    assert srv.stop() == (0, None)
    assert findings(srv) == [(
        "listen port 18080 is inside net.ipv4.ip_local_port_range 10000-65535 and not reserved: an outbound "
        "connection can take it while ringgate restarts",
        "sysctl -w net.ipv4.ip_local_reserved_ports=18080")], srv.log()

    run_fix(ns, findings(srv)[0][1])
    srv = start(*args, netns=ns)
    assert srv.listening, srv.log()
    assert srv.stop() == (0, None)
    assert findings(srv) == [], srv.log()


def test_nofile_hard_limit_that_costs_workers(start):
    cpus = os.cpu_count() or 1
    # Tables of 1,024 slots (960 usable, 912 planned): two more workers than CPUs.
    connections = 912 * (cpus + 2)

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    srv = start("--max-pending-handshakes", "64", "--max-connections", connections, preexec_fn=low_nofile)
    assert srv.listening, srv.log()
    assert srv.stop() == (0, None), srv.log()
    nofile = [f for f in findings(srv) if f[0].startswith("RLIMIT_NOFILE hard limit 1024")]
    assert len(nofile) == 1, srv.log()
    what, fix = nofile[0]
    assert f"takes {cpus + 2} workers on {cpus} CPUs" in what, what
    assert re.fullmatch(r"LimitNOFILE=65536 in ringgate.service \(with sysctl -w fs.nr_open=65536 if it is "
                        r"lower\); then \d+ workers suffice", fix), fix


def test_strict_names_every_global_shortfall(start):
    """A capacity beyond this host's file-max and tcp_mem: each is a finding
    whose fix asks for at least what is missing; strict refuses before any
    worker or buffer exists."""
    srv = start("--max-connections", "3000000", "--strict-preflight")
    assert not srv.listening, srv.log()
    assert srv.stop() == (1, None), srv.log()
    found = dict(findings(srv))
    fixes = list(found.values())

    file_max = int(read_host("fs.file-max"))
    m = [re.fullmatch(r"sysctl -w fs\.file-max=(\d+)", f) for f in fixes]
    m = [x for x in m if x]
    if file_max < 3_000_000:
        assert len(m) == 1, srv.log()
        assert int(m[0].group(1)) >= 3_000_000
    tcp_mem_cap = int(read_host("net.ipv4.tcp_mem").split()[2])
    m = [re.fullmatch(r'sysctl -w net\.ipv4\.tcp_mem="(\d+) (\d+) (\d+)"', f) for f in fixes]
    m = [x for x in m if x]
    if tcp_mem_cap * 4096 < 3_000_000 * 4096:
        assert len(m) == 1, srv.log()
        low, pressure, high = (int(g) for g in m[0].groups())
        assert low <= pressure <= high and high >= 3_000_000
    conntrack = read_host("net.netfilter.nf_conntrack_max")
    if conntrack is not None and int(conntrack) < 3_000_000:
        assert any(f.startswith("sysctl -w net.netfilter.nf_conntrack_max=") for f in fixes), srv.log()
    assert "--strict-preflight: refusing to start" in srv.log()
