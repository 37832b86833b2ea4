"""`ringgate tune`: plan, check, apply and rollback against the real kernel.

The host's own settings are never touched: apply and rollback of net.*
settings run inside network namespaces made for each test, fs.* settings
(global) only with --dry-run, and every test runs with the sysctl.d
directory and the state file under tmp_path.  A module-wide guard fails the
run if any of the host's values moved anyway.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import REPO_ROOT, SANITIZER_MARKERS, ringgate_bin
from netns import HostGuard, Netns, read_host

PROFILE_DIR = REPO_ROOT / "sysctl"

# The per-namespace settings from the list, each set away from the
# namespace defaults so every one of them visibly changes.
NS_PROFILE = """\
# test profile: settings a network namespace owns
net.core.somaxconn = 16384
net.ipv4.tcp_max_syn_backlog = 16384
net.ipv4.ip_local_port_range = 10000 65535
net.ipv4.tcp_tw_reuse = 1
net.ipv4.tcp_fin_timeout = 15
net.ipv4.tcp_rmem = 8192 262144 67108864
net.ipv4.tcp_wmem = 8192 65536 67108864
"""
NS_KEYS = [line.split(" = ")[0] for line in NS_PROFILE.splitlines() if " = " in line]

ALL_KEYS = NS_KEYS + [
    "net.core.netdev_max_backlog", "net.ipv4.tcp_mem", "net.core.rmem_max", "net.core.wmem_max",
    "fs.file-max", "fs.nr_open", "net.netfilter.nf_conntrack_max", "net.ipv4.ip_local_reserved_ports",
]


@pytest.fixture(scope="module", autouse=True)
def host_untouched():
    guard = HostGuard(ALL_KEYS)
    yield
    assert guard.changed() == {}, "a test changed the host's own sysctls"


@pytest.fixture
def paths(tmp_path, monkeypatch):
    """Every tune command in a test writes under tmp_path, never /etc."""
    monkeypatch.setenv("RINGGATE_SYSCTL_DIR", str(tmp_path / "sysctl.d"))
    monkeypatch.setenv("RINGGATE_TUNE_STATE", str(tmp_path / "state"))
    return tmp_path


def tune(*args, netns=None):
    """Runs `ringgate tune ARGS`: in `netns`, or on the host only if it cannot write."""
    args = [str(a) for a in args]
    argv = [str(ringgate_bin()), "tune", *args]
    if netns is not None:
        r = netns.run(argv)
    else:
        assert args[0] in ("plan", "check") or "--dry-run" in args, f"would change the host: {args}"
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    for marker in SANITIZER_MARKERS:
        assert marker not in r.stderr, r.stderr
    return r


def write_profile(tmp_path, text, name="ns.conf"):
    p = tmp_path / name
    p.write_text(text)
    return p


def rows(out: str):
    """Table rows: {setting: [cells...]} (cells split on 2+ spaces)."""
    table = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 2 and re.fullmatch(r"[a-z0-9_.-]+\.[a-z0-9_.-]+", cells[0]):
            table[cells[0]] = cells[1:]
    return table


# ------------------------------------------------------------ apply / rollback

def test_apply_then_rollback_in_a_namespace(ns, paths):
    profile = write_profile(paths, NS_PROFILE)
    before = {k: ns.sysctl_read(k) for k in NS_KEYS}
    assert all(v is not None for v in before.values()), before

    r = tune("apply", "--profile", profile, netns=ns)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in NS_PROFILE.splitlines():
        if " = " in line:
            key, value = line.split(" = ")
            assert ns.sysctl_read(key).split() == value.split(), key
            assert ns.sysctl_read(key) != before[key], f"{key} did not change"
    conf = (paths / "sysctl.d" / "60-ringgate.conf").read_text()
    assert "net.ipv4.ip_local_port_range = 10000 65535" in conf
    assert (paths / "state").exists()

    # Once more: rollback still goes back to before the first apply.
    assert tune("apply", "--profile", profile, netns=ns).returncode == 0

    r = tune("rollback", netns=ns)
    assert r.returncode == 0, r.stdout + r.stderr
    after = {k: ns.sysctl_read(k) for k in NS_KEYS}
    assert after == before, "rollback restores every value exactly (tabs included)"
    assert not (paths / "sysctl.d" / "60-ringgate.conf").exists()
    assert not (paths / "state").exists()


def test_a_read_only_key_is_named_and_nothing_changes(ns, paths):
    # net.core.rmem_max is global: a namespace sees it read-only.
    profile = write_profile(paths, "net.core.somaxconn = 16384\nnet.core.rmem_max = 67108864\n")
    before = ns.sysctl_read("net.core.somaxconn")
    r = tune("apply", "--profile", profile, netns=ns)
    assert r.returncode == 1
    assert "net.core.rmem_max: write refused" in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr
    assert ns.sysctl_read("net.core.somaxconn") == before
    assert not (paths / "state").exists()
    assert not (paths / "sysctl.d").exists()


def test_a_missing_key_is_named_and_nothing_changes(ns, paths):
    # tcp_mem and netdev_max_backlog exist only in the initial namespace.
    profile = write_profile(paths, "net.core.somaxconn = 16384\nnet.ipv4.tcp_mem = 1 2 3\n"
                                   "net.core.netdev_max_backlog = 65536\n")
    before = ns.sysctl_read("net.core.somaxconn")
    for extra in ([], ["--dry-run"]):
        r = tune("apply", "--profile", profile, *extra, netns=ns)
        assert r.returncode == 1
        assert "net.ipv4.tcp_mem: does not exist on this kernel" in r.stderr, r.stderr
        assert "net.core.netdev_max_backlog: does not exist" in r.stderr, r.stderr
        assert ns.sysctl_read("net.core.somaxconn") == before
        assert not (paths / "state").exists()


def test_a_refused_value_halfway_puts_back_what_changed(ns, paths):
    # The kernel takes 0..2 for tcp_tw_reuse: 7 is refused after two writes.
    profile = write_profile(paths, "net.core.somaxconn = 16384\nnet.ipv4.tcp_fin_timeout = 15\n"
                                   "net.ipv4.tcp_tw_reuse = 7\n")
    keys = ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse"]
    before = {k: ns.sysctl_read(k) for k in keys}
    r = tune("apply", "--profile", profile, netns=ns)
    assert r.returncode == 1
    assert "net.ipv4.tcp_tw_reuse: the kernel refused the value" in r.stderr, r.stderr
    assert "restored the values and the file this run had changed" in r.stderr
    assert {k: ns.sysctl_read(k) for k in keys} == before
    assert not (paths / "sysctl.d" / "60-ringgate.conf").exists()
    assert not (paths / "state").exists()


def test_rollback_refuses_another_namespace(paths):
    profile = write_profile(paths, "net.core.somaxconn = 16384\n")
    with Netns() as a, Netns() as b:
        before = a.sysctl_read("net.core.somaxconn")
        assert tune("apply", "--profile", profile, netns=a).returncode == 0
        r = tune("rollback", netns=b)
        assert r.returncode == 1
        assert "network namespace" in r.stderr, r.stderr
        assert a.sysctl_read("net.core.somaxconn").strip() == "16384"
        r = tune("rollback", netns=a)
        assert r.returncode == 0, r.stderr
        assert a.sysctl_read("net.core.somaxconn") == before


def test_rollback_without_state(ns, paths):
    r = tune("rollback", netns=ns)
    assert r.returncode == 1
    assert "nothing to roll back" in r.stderr


# ------------------------------------------------------------ fs.*: dry run only

@pytest.mark.parametrize("profile", ["high-density", "capacity-lab"])
def test_shipped_profiles_dry_run_on_the_host(paths, profile):
    fs_before = {k: read_host(k) for k in ("fs.file-max", "fs.nr_open")}
    r = tune("apply", "--profile", profile, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    table = rows(r.stdout)
    for key in ("fs.file-max", "fs.nr_open", "net.core.somaxconn", "net.ipv4.tcp_mem"):
        assert key in table, r.stdout
        assert table[key][0].split() == read_host(key).split(), f"'now' column of {key}"
    assert "would write " + str(paths / "sysctl.d" / "60-ringgate.conf") in r.stdout
    assert re.search(r"^fs\.file-max = \d+$", r.stdout, re.M)
    assert "dry run: nothing written" in r.stdout
    assert not (paths / "sysctl.d").exists()
    assert not (paths / "state").exists()
    assert {k: read_host(k) for k in fs_before} == fs_before


def test_shipped_profiles_are_what_the_plan_generates():
    for name, extra in (("high-density", []), ("capacity-lab", ["--clients-on-host"])):
        r = tune("plan", "--connections", "1000000", *extra, "--format", "sysctl", "--name", name)
        assert r.returncode == 0, r.stderr
        shipped = (PROFILE_DIR / f"{name}.conf").read_text()
        assert shipped == r.stdout, f"sysctl/{name}.conf is stale: regenerate it with the plan command it names"


# ------------------------------------------------------------ check

def test_check_against_deliberately_low_values(ns, paths):
    profile = write_profile(paths, NS_PROFILE)
    low = {
        "net.core.somaxconn": "128",
        "net.ipv4.tcp_max_syn_backlog": "128",
        "net.ipv4.ip_local_port_range": "40000 40100",
        "net.ipv4.tcp_tw_reuse": "0",
        "net.ipv4.tcp_fin_timeout": "120",
        "net.ipv4.tcp_rmem": "4096 4096 4096",
        "net.ipv4.tcp_wmem": "4096 4096 4096",
    }
    for k, v in low.items():
        ns.sysctl_write(k, v)
    r = tune("check", "--profile", profile, netns=ns)
    assert r.returncode == 1, r.stdout
    table = rows(r.stdout)
    assert set(table) == set(NS_KEYS), r.stdout
    for k, v in low.items():
        now, wanted, ok = table[k]
        assert now == v, (k, table[k])
        assert ok == "NO", (k, table[k])
    assert table["net.core.somaxconn"][1] == ">= 16384"
    assert table["net.ipv4.tcp_fin_timeout"][1] == "<= 15"
    assert table["net.ipv4.ip_local_port_range"][1] == "covers 10000 65535"
    assert table["net.ipv4.tcp_tw_reuse"][1] == "== 1"
    assert "7 of 7 settings fall short" in r.stdout

    # Raise one: it turns ok, the rest still fall short.
    ns.sysctl_write("net.core.somaxconn", "65535")
    r = tune("check", "--profile", profile, netns=ns)
    assert r.returncode == 1
    assert rows(r.stdout)["net.core.somaxconn"][2] == "yes"
    assert "6 of 7 settings fall short" in r.stdout

    # Everything at (or past) the profile: exit 0.
    for line in NS_PROFILE.splitlines():
        if " = " in line:
            k, v = line.split(" = ")
            if k != "net.core.somaxconn":
                ns.sysctl_write(k, v)
    ns.sysctl_write("net.ipv4.ip_local_port_range", "1024 65535")  # wider than wanted is fine
    r = tune("check", "--profile", profile, netns=ns)
    assert r.returncode == 0, r.stdout
    assert "all 7 settings meet the wanted values" in r.stdout


def test_check_against_a_plan_names_what_a_namespace_lacks(ns, paths):
    r = tune("check", "--connections", "100000", netns=ns)
    assert r.returncode == 1
    table = rows(r.stdout)
    assert table["net.ipv4.tcp_mem"][2] == "MISSING", r.stdout
    assert "net.ipv4.tcp_mem: does not exist on this kernel" in r.stderr
    assert len(table) == 14


def test_check_on_the_host_reads_only(paths):
    r = tune("check", "--connections", "1000")
    assert r.returncode in (0, 1), r.stderr
    table = rows(r.stdout)
    assert len(table) == 14, r.stdout
    short = [k for k, cells in table.items() if cells[-1] in ("NO", "MISSING")]
    assert (r.returncode == 1) == bool(short), r.stdout


def test_check_usage(paths):
    assert tune("check").returncode == 2
    assert tune("check", "--profile", "no-such-profile").returncode == 2


# ------------------------------------------------------------ plan

@pytest.mark.parametrize("connections,fits", [(100_000, True), (1_000_000, True), (5_000_000, False)])
def test_plan_on_a_host_like_this_one(connections, fits):
    r = tune("plan", "--connections", connections, "--ram", "24GiB", "--cpus", "2", "--nofile", "20000")
    assert r.returncode == (0 if fits else 1), r.stdout + r.stderr
    for part in ("LimitNOFILE=", "workers ", "memory budget", "kernel per socket", "ringgate per connection",
                 "ringgate fixed", "socket buffers", "headroom", "host RAM"):
        assert part in r.stdout, part
    assert ("fits this host: yes" if fits else "fits this host: NO") in r.stdout
    assert len(rows(r.stdout)) == 14
