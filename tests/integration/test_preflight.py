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

import wsraw
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
    """A capacity of 3,000,000 against this host's fs.file-max, tcp_mem and
    nf_conntrack_max: each that falls short is one finding naming the host's
    value and a fix asking for at least what the capacity needs; each that
    does not is no finding.  --strict-preflight refuses before any worker or
    buffer exists (RLIMIT_NOFILE is a finding at this capacity in any case)."""
    n = 3_000_000
    srv = start("--max-connections", n, "--strict-preflight")
    assert not srv.listening, srv.log()
    assert srv.stop() == (1, None), srv.log()
    found = findings(srv)
    assert "--strict-preflight: refusing to start" in srv.log()

    def finding(pattern):
        """(match of `what`, fix) of the one finding whose text matches, or None."""
        hits = [(m, fix) for m, fix in ((re.match(pattern, what), fix) for what, fix in found) if m]
        assert len(hits) <= 1, srv.log()
        return hits[0] if hits else None

    # fs.file-max: every socket is a file, planned at 80% (so >= 1.25 n).
    file_max = int(read_host("fs.file-max"))
    hit = finding(rf"fs\.file-max (\d+) is below the (\d+) that {n} connections need")
    if hit:
        m, fix = hit
        have, need = int(m.group(1)), int(m.group(2))
        assert have == file_max and need > have and need >= n * 5 // 4, srv.log()
        assert fix == f"sysctl -w fs.file-max={need}"
    else:
        assert file_max >= n * 5 // 4, f"fs.file-max {file_max} is short of {n} connections, no finding"

    # tcp_mem: n x 4 KiB of buffers, capped at 150%, in pages.
    host_mem = [int(v) for v in read_host("net.ipv4.tcp_mem").split()]
    min_pages = n * 4096 * 3 // 2 // os.sysconf("SC_PAGE_SIZE")
    hit = finding(rf"net\.ipv4\.tcp_mem caps TCP buffers at (\d+) pages \(.*\), below the (\d+) pages that {n} "
                  rf"connections")
    if hit:
        m, fix = hit
        have, need = int(m.group(1)), int(m.group(2))
        assert have == host_mem[2] and need > have and need >= min_pages, srv.log()
        fixed = re.fullmatch(r'sysctl -w net\.ipv4\.tcp_mem="(\d+) (\d+) (\d+)"', fix)
        assert fixed, fix
        low, pressure, high = (int(g) for g in fixed.groups())
        assert low <= pressure <= high == need, fix
        assert low >= host_mem[0] and pressure >= host_mem[1], (fix, host_mem)  # never lowers a field
    else:
        assert host_mem[2] >= min_pages, f"tcp_mem {host_mem} is short of {n} connections, no finding"

    # nf_conntrack_max, where conntrack is loaded: one entry per connection at 80%.
    conntrack = read_host("net.netfilter.nf_conntrack_max")
    hit = finding(rf"net\.netfilter\.nf_conntrack_max (\d+) is below the (\d+) entries that {n} tracked")
    if hit:
        m, fix = hit
        have, need = int(m.group(1)), int(m.group(2))
        assert conntrack is not None and have == int(conntrack) and need > have and need >= n * 5 // 4, srv.log()
        assert fix == f"sysctl -w net.netfilter.nf_conntrack_max={need}"
    else:
        assert conntrack is None or int(conntrack) >= n * 5 // 4, f"nf_conntrack_max {conntrack}: no finding"


def test_a_second_process_on_the_same_port_is_refused_unless_shared(ringgate):
    """SO_REUSEPORT would let a second ringgate on the same port take part of
    the first one's connections silently: it refuses to start, naming the
    port, unless listen_shared says the overlap is meant."""
    import wsraw
    first = ringgate("--workers", "1")
    for host in ("127.0.0.1", "0.0.0.0"):
        second = ringgate("--workers", "1", "--listen", f"{host}:{first.port}", require_listening=False)
        second.expected_exit = 1
        assert second.wait(10) == 1
        log = second.log()
        assert f"listen {host}:{first.port}: another process already accepts connections there" in log, log
        assert "listen_shared" in log
    shared = ringgate("--workers", "1", "--listen", f"127.0.0.1:{first.port}", "--listen-shared")
    assert shared.port == first.port
    with wsraw.handshake(first.port)[0] as ws:
        assert ws.echo("either process") == (wsraw.OP_TEXT, b"either process")
