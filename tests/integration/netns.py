"""Throwaway network namespaces for tests that change net.* sysctls.

net.* sysctls that a network namespace owns (somaxconn, the port range,
tcp_rmem, ...) can be changed inside one without touching the host's.
Global ones (tcp_mem, netdev_max_backlog) are absent there, and some
(rmem_max, nf_conntrack_max) are read-only: the tests use that too.

    with Netns() as ns:
        ns.sysctl_write("net.core.somaxconn", "128")
        ns.run(["ringgate", "tune", "check", ...])

HostGuard snapshots the host's own values and says whether any changed.
"""

from __future__ import annotations

import itertools
import os
import subprocess

_counter = itertools.count()


def sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def read_host(key: str):
    """The host's value, exactly as the kernel prints it (None if absent)."""
    try:
        with open(sysctl_path(key)) as f:
            return f.read()
    except OSError:
        return None


class Netns:
    def __init__(self):
        self.name = f"rgtest-{os.getpid()}-{next(_counter)}"

    def __enter__(self):
        r = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ip netns add {self.name} failed: {r.stderr.strip()}")
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def argv(self, args):
        return ["ip", "netns", "exec", self.name, *[str(a) for a in args]]

    def run(self, args, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(self.argv(args), **kw)

    def sysctl_read(self, key: str):
        """The namespace's value, exactly as the kernel prints it (None if absent)."""
        r = self.run(["cat", sysctl_path(key)])
        return r.stdout if r.returncode == 0 else None

    def sysctl_write(self, key: str, value: str):
        r = self.run(["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", value, sysctl_path(key)])
        assert r.returncode == 0, f"{key}={value} in {self.name}: {r.stderr}"

    def netns_id(self) -> str:
        return self.run(["readlink", "/proc/self/ns/net"]).stdout.strip()


class HostGuard:
    """Records the host's values of `keys`; changed() lists any that moved."""

    def __init__(self, keys):
        self.before = {k: read_host(k) for k in keys}

    def changed(self):
        return {k: (v, read_host(k)) for k, v in self.before.items() if read_host(k) != v}
