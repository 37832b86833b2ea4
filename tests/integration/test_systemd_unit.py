"""systemd/ringgate.service: what the issue asks of it, and a stop that
leaves time for the drain."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT, ringgate_bin

UNIT = REPO_ROOT / "systemd" / "ringgate.service"


def unit_settings():
    settings = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|min)?", text)
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "min": 60, None: 1}[m.group(2)]


def test_limits_restart_and_hardening():
    s = unit_settings()
    assert s["LimitNOFILE"] == ["1048576"]
    assert s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["2"]  # configuration errors
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("ProtectHome", "yes"), ("ProtectKernelTunables", "yes"), ("DynamicUser", "yes")):
        assert s[key] == [value], key
    assert "@system-service" in s["SystemCallFilter"][0]


def test_stop_waits_for_the_drain():
    """SIGTERM to the main process only, and longer than drain_timeout before SIGKILL."""
    s = unit_settings()
    assert s["KillSignal"] == ["SIGTERM"]
    assert s["KillMode"] == ["mixed"]
    help_text = subprocess.run([str(ringgate_bin()), "--help"], capture_output=True, text=True).stdout
    drain = re.search(r"--drain-timeout .*?\[default: (\S+)\]", help_text, re.S).group(1)
    assert seconds(s["TimeoutStopSec"][0]) > seconds(drain)


def test_nofile_fits_under_the_profiles_nr_open():
    s = unit_settings()
    for profile in ("high-density", "capacity-lab"):
        text = (REPO_ROOT / "sysctl" / f"{profile}.conf").read_text()
        nr_open = int(re.search(r"^fs\.nr_open = (\d+)$", text, re.M).group(1))
        assert int(s["LimitNOFILE"][0]) <= nr_open


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_it(tmp_path):
    unit = tmp_path / "ringgate.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/ringgate", str(ringgate_bin())))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr
