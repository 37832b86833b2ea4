#!/usr/bin/python3
"""Capacity lab: one command per scenario, a report per run.

Each scenario starts ringgate with a given configuration, drives it with
ringgate-load, samples the server's RSS, the client's RSS, /proc/meminfo Slab
and /proc/net/sockstat once a second, and writes perf/results/<scenario>/:

  report.md     tables (and how to reproduce them)
  *.svg         charts: connections and memory over time; latency by rate
  samples.csv   the raw samples
  load.json     ringgate-load's JSON summary
  server.log / load.log

Scenarios:
  density   hold N idle connections; memory per connection split into server
            user space, kernel, and client
  ramp      the success-by-rate table
  flood     limits set low, then flooded past them; every attempt classified
  echo      throughput and RTT
  admission time from attempt to refusal at 3x max_connections, and the echo
            RTT of held connections during that flood vs before it (plus
            the same flood against per_ip_limit: 429s); writes
            load-echo-<phase>.json / load-flood-<phase>.json (and .log),
            metrics-<phase>.txt (the server's /metrics) instead of load.json

Usage (from the repository root, after ./run.sh or ninja -C build):
  /usr/bin/python3 perf/capacity.py density --connections 1000000 --rate 20000
  /usr/bin/python3 perf/capacity.py ramp --connections 10000 --rates 50,100,1000,5000,20000
  /usr/bin/python3 perf/capacity.py flood --connections 6000 --max-connections 2000
  /usr/bin/python3 perf/capacity.py echo --connections 100 --inflight 16 --size 20 --duration 10
  /usr/bin/python3 perf/capacity.py admission   # C=10000: 30000 attempts; 100 echo conns, 10 s before

Everything is bounded: the load tool stops by itself (--duration,
--connections) and the whole run is capped by --timeout.
"""

from __future__ import annotations

import argparse
import csv
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

REPO = pathlib.Path(__file__).resolve().parents[1]
LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")
SLOTS_PER_WORKER_HINT = 20000


# ---------------------------------------------------------------- sampling

def status_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def meminfo_kib():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


def sockstat():
    """TCP inuse / orphan / tw / alloc / mem (pages) and sockets used."""
    out = {}
    with open("/proc/net/sockstat") as f:
        for line in f:
            head, _, rest = line.partition(":")
            parts = rest.split()
            for k, v in zip(parts[::2], parts[1::2]):
                out[f"{head.strip().lower()}_{k}"] = int(v)
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    def __init__(self, server_pid, period_s=1.0, t0=None):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.client_pid = None
        self.period_s = period_s
        self.samples = []
        self.stop = threading.Event()
        self.t0 = time.monotonic() if t0 is None else t0

    def sample(self):
        mi = meminfo_kib()
        ss = sockstat()
        return {
            "t_s": round(time.monotonic() - self.t0, 2),
            "server_rss_kib": status_kib(self.server_pid),
            "client_rss_kib": status_kib(self.client_pid) if self.client_pid else None,
            "server_fds": fd_count(self.server_pid),
            "client_fds": fd_count(self.client_pid) if self.client_pid else None,
            "slab_kib": mi.get("Slab"),
            "mem_available_kib": mi.get("MemAvailable"),
            "tcp_inuse": ss.get("tcp_inuse"),
            "tcp_mem_pages": ss.get("tcp_mem"),
            "sockets_used": ss.get("sockets_used"),
        }

    def run(self):
        while not self.stop.is_set():
            self.samples.append(self.sample())
            self.stop.wait(self.period_s)


# ---------------------------------------------------------------- processes

class Server:
    def __init__(self, binary, args, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([str(binary), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = None
        self.lines = []
        deadline = time.monotonic() + 60
        while self.port is None:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("ringgate exited during start-up:\n" + "".join(self.lines))
            self.lines.append(line)
            self.log.write(line)
            m = LISTEN_RE.search(line)
            if m:
                self.port = int(m.group(2))
            if time.monotonic() > deadline:
                raise RuntimeError("ringgate did not report its port within 60 s")
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            self.log.write(line)
            self.log.flush()

    def stop(self, timeout_s=120):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.reader.join(timeout=5)
            self.log.close()


def run_load(binary, args, sampler, log_path, timeout_s):
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(binary), *args, "--json"], stdout=subprocess.PIPE, stderr=log, text=True)
        sampler.client_pid = proc.pid
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"ringgate-load did not finish within {timeout_s} s")
    lines = [l for l in out.splitlines() if l.strip()]
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return proc.returncode, summary, "\n".join(lines[:-1])


# ---------------------------------------------------------------- charts

def charts(out_dir, samples, extra=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(charts skipped: python3-matplotlib is not installed)"]
    made = []
    t = [s["t_s"] for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [s["tcp_inuse"] or 0 for s in samples], label="TCP sockets in use (both ends)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("sockets")
    ax.set_title("Connections over time")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out_dir / "connections.svg")
    plt.close(fig)
    made.append("![connections over time](connections.svg)")

    fig, ax = plt.subplots(figsize=(8, 4))
    mib = lambda v: (v or 0) / 1024
    ax.plot(t, [mib(s["server_rss_kib"]) for s in samples], label="server RSS")
    ax.plot(t, [mib(s["client_rss_kib"]) for s in samples], label="client RSS")
    ax.plot(t, [mib(s["slab_kib"]) for s in samples], label="kernel slab (system)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_title("Memory over time")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out_dir / "memory.svg")
    plt.close(fig)
    made.append("![memory over time](memory.svg)")

    if extra and extra.get("steps"):
        steps = extra["steps"]
        rates = [s.get("rate") for s in steps]
        fig, ax = plt.subplots(figsize=(8, 4))
        for p in ("p50", "p90", "p99", "p999"):
            ax.plot(rates, [(s.get("handshake_ms") or {}).get(p) for s in steps], marker="o", label=p)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("connection rate (conn/s)")
        ax.set_ylabel("handshake latency (ms)")
        ax.set_title("Handshake latency percentiles by rate")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "latency_by_rate.svg")
        plt.close(fig)
        made.append("![latency by rate](latency_by_rate.svg)")
    return made


# ---------------------------------------------------------------- report

def pct_table(name, d):
    if not d:
        return ""
    keys = [k for k in ("p50", "p90", "p99", "p999", "max") if k in d]
    return (f"| {name} | " + " | ".join(keys) + " |\n| --- |" + " --- |" * len(keys) + "\n| | "
            + " | ".join(f"{d[k]}" for k in keys) + " |\n")


def kv_table(rows):
    out = "| metric | value |\n| --- | --- |\n"
    for k, v in rows:
        out += f"| {k} | {v} |\n"
    return out


def fmt_bytes(b):
    if b is None:
        return "n/a"
    return f"{b:,.0f} B"


def machine_line():
    cpus = os.cpu_count()
    mem_gib = meminfo_kib().get("MemTotal", 0) / 1024 / 1024
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return (f"{cpus} CPUs, {mem_gib:.0f} GiB, kernel {os.uname().release}, RLIMIT_NOFILE hard {nofile}, "
            f"ringgate {git_rev()}")


def git_rev():
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


# ---------------------------------------------------------------- admission
#
# The admission-control issue asks: "Using ringgate-load flood mode as the
# benchmark, report the time from attempt to refusal at 3x capacity, and the
# echo RTT p99 of held connections during the flood compared with before it."
#
# One server (--max-connections C) and three runs of ringgate-load:
#   before   echo on E connections (--inflight 1) for D seconds, nothing else;
#   during   the same echo run again; --flood-after seconds into its measured
#            window a flood of 3C attempts starts.  The echo connections are
#            open first, so they are among the held ones: the flood gets C - E
#            upgrades and the rest are refused (503 + Retry-After).  Once the
#            flood has resolved every attempt the echo run is stopped (SIGINT:
#            it closes its window, its connections and reports), so its window
#            is the calm lead plus the flood.  The flood holds what it got for
#            FLOOD_HOLD_S more, past the echo run's end and the /metrics scrape.
#   per_ip   (optional) a fresh server with --per-ip-limit L, then `during`
#            again: the refusals are 429s.
# The echo tool reports one RTT histogram per run, so "during" covers its
# whole window; its per-second throughput (progress lines, stamped here on one
# clock) shows the flood's seconds: with K messages in flight on each of E
# connections, E x K / (msgs/s) is the mean RTT (Little's law).

PROGRESS_RE = re.compile(r"^\[(\d+)s\] (\w+)\s+open (\d+)\s+attempts/s (\d+)\s+upgraded (\d+)\s+errors (\d+)"
                         r"(?:\s+msgs/s (\d+))?")
ADMIN_RE = re.compile(r"admin=(\S+):(\d+)")
FLOOD_BOUND_S = 30
FLOOD_HOLD_S = 8
METRIC_RE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$")


# Kernel counters (this network namespace, cumulative) that say whether the
# kernel itself dropped or delayed any of the flood: a full accept queue drops
# the handshake (ListenOverflows/ListenDrops) and the client resends its SYN
# after 1 s, 3 s, 7 s (TCPSynRetrans).
NETSTAT_KEYS = {"TcpExt:ListenOverflows": "listen_overflows", "TcpExt:ListenDrops": "listen_drops",
                "TcpExt:TCPSynRetrans": "syn_retrans", "TcpExt:TCPReqQFullDrop": "reqq_full_drops",
                "TcpExt:SyncookiesSent": "syncookies_sent"}


def netstat_counters():
    out = {}
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for head, vals in zip(lines[::2], lines[1::2]):
        keys, values = head.split(), vals.split()
        for k, v in zip(keys[1:], values[1:]):
            name = NETSTAT_KEYS.get(keys[0] + k)
            if name:
                out[name] = int(v)
    return out


def cpu_seconds(pid):
    """utime + stime of a process, seconds (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, IndexError, ValueError):
        return None


class PhaseSampler(Sampler):
    """The usual samples plus the phase's name, the server's CPU time, the
    flood client's RSS, sockets in TIME_WAIT (every refused attempt leaves
    one) and the kernel's drop counters."""

    def __init__(self, server_pid, period_s, t0):
        super().__init__(server_pid, period_s, t0)
        self.phase = ""
        self.flood_pid = None

    def sample(self):
        s = {"phase": self.phase, **super().sample()}
        ss = sockstat()
        s["server_cpu_s"] = cpu_seconds(self.server_pid)
        s["tcp_tw"] = ss.get("tcp_tw")
        s["tcp_orphan"] = ss.get("tcp_orphan")
        s["flood_rss_kib"] = status_kib(self.flood_pid) if self.flood_pid else None
        ns = netstat_counters()
        for name in NETSTAT_KEYS.values():
            s[name] = ns.get(name)
        return s


class LoadRun:
    """One ringgate-load process that may run alongside another: its progress
    lines (stderr, one a second) are stamped on the scenario clock as they
    arrive, so the runs can be laid over each other afterwards."""

    def __init__(self, name, binary, args, log_path, t0):
        self.name = name
        self.args = [str(x) for x in args]
        self.t0 = t0
        self.progress = []  # (scenario seconds, line)
        self.stdout = []
        self.summary, self.table, self.rc = {}, "", None
        self.log = open(log_path, "w")
        self.log.write(f"$ ringgate-load {' '.join(self.args)} --json\n")
        self.log.write("(each stderr line is prefixed with the scenario clock, seconds)\n")
        self.started_s = time.monotonic() - t0
        self.ended_s = None
        self.interrupted_s = None
        self.proc = subprocess.Popen([str(binary), *self.args, "--json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.readers = [threading.Thread(target=self._read_err, daemon=True),
                        threading.Thread(target=self._read_out, daemon=True)]
        for r in self.readers:
            r.start()

    def _read_err(self):
        for line in self.proc.stderr:
            t = time.monotonic() - self.t0
            line = line.rstrip("\n")
            self.progress.append((t, line))
            self.log.write(f"[t={t:8.3f}] {line}\n")
            self.log.flush()

    def _read_out(self):
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))

    def wait_for_phase(self, phase, deadline):
        """Until a progress line names `phase` (True), the process ends or the deadline passes."""
        while time.monotonic() < deadline:
            if any(m and m.group(2) == phase for m in (PROGRESS_RE.match(l) for _, l in self.progress)):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def wait(self, deadline):
        try:
            self.rc = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"ringgate-load ({self.name}) did not finish within --timeout")
        self._finish()
        return self.summary

    def interrupt(self):
        """SIGINT: ringgate-load ends its measured window now, closes cleanly
        and reports (its JSON says interrupted: true)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.interrupted_s = time.monotonic() - self.t0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.rc = self.proc.wait()
        self._finish()

    def _finish(self):
        if self.ended_s is not None:
            return
        self.ended_s = time.monotonic() - self.t0
        for r in self.readers:
            r.join(timeout=10)
        lines = [l for l in self.stdout if l.strip()]
        if lines and lines[-1].startswith("{"):
            self.summary = json.loads(lines[-1])
            lines = lines[:-1]
        self.table = "\n".join(lines)
        self.log.write(f"--- stdout ---\n{self.table}\n--- exit status {self.rc} at t={self.ended_s:.3f} ---\n")
        self.log.close()

    def per_second(self):
        """[(scenario seconds at the middle of the interval, phase, attempts/s, upgraded, msgs/s or None,
        failed)]"""
        out, last_t = [], self.started_s
        for t, line in self.progress:
            m = PROGRESS_RE.match(line)
            if not m:
                continue
            msgs = int(m.group(7)) if m.group(7) is not None else None
            out.append(((last_t + t) / 2, m.group(2), int(m.group(4)), int(m.group(5)), msgs, int(m.group(6))))
            last_t = t
        return out

    def first_phase_s(self, phase):
        for t, line in self.progress:
            m = PROGRESS_RE.match(line)
            if m and m.group(2) == phase:
                return t
        return None


def scrape_metrics(host, port):
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError as e:
        return f"# scrape failed: {e}\n"


def metric_sums(text):
    """Prometheus text -> {(name, labels without worker): value summed over workers}."""
    out = {}
    for line in text.splitlines():
        m = METRIC_RE.match(line)
        if not m or line.startswith("#"):
            continue
        labels = tuple(l for l in (m.group(2) or "").split(",") if l and not l.startswith("worker="))
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        out[(m.group(1), labels)] = out.get((m.group(1), labels), 0) + v
    return out


def echo_with_flood(load_bin, echo_args, flood_args, url, out_dir, t0, deadline, sampler, phase, lead, admin):
    """One echo run; with flood_args, a flood that starts `lead` seconds into
    it, and the echo run is ended (SIGINT) as soon as the flood has resolved
    every attempt, so its window is the calm lead plus the flood.
    Returns (echo LoadRun, flood LoadRun or None, /metrics text scraped while
    the flood still held its connections, or None)."""
    sampler.phase = phase
    echo = LoadRun(f"echo {phase}", load_bin, echo_args + [url], out_dir / f"load-echo-{phase}.log", t0)
    sampler.client_pid = echo.proc.pid
    flood, metrics = None, None
    try:
        if flood_args is not None:
            # The echo connections must be open (and echoing) before the flood
            # starts: the first "echoing" progress line comes one second in.
            if not echo.wait_for_phase("echoing", min(deadline, time.monotonic() + 60)):
                raise RuntimeError(f"the echo run ({phase}) did not reach its measured window")
            time.sleep(max(0.0, echo.started_s + lead - (time.monotonic() - t0)))
            flood = LoadRun(f"flood {phase}", load_bin, flood_args + [url], out_dir / f"load-flood-{phase}.log", t0)
            sampler.flood_pid = flood.proc.pid
            # Every attempt resolved: the first "observing" progress line
            # (one a second).  The echo's own --duration bounds the wait.
            while echo.proc.poll() is None and time.monotonic() < deadline:
                if flood.wait_for_phase("observing", min(deadline, time.monotonic() + 0.2)) or \
                        flood.proc.poll() is not None:
                    echo.interrupt()
                    break
        echo.wait(deadline)
        if flood is not None:
            if admin:
                metrics = scrape_metrics(*admin)
                (out_dir / f"metrics-{phase}.txt").write_text(metrics)
            flood.wait(deadline)
    finally:
        for r in (echo, flood):
            if r is not None and r.ended_s is None:
                r.kill()
        sampler.client_pid = None
        sampler.flood_pid = None
    return echo, flood, metrics


def run_admission(a, server_bin, load_bin, out_dir):
    cap = a.max_connections or 10000
    echo_n = a.connections or 100
    dur = a.duration or 10
    inflight = a.inflight or 1
    lead = a.flood_after
    workers = a.workers or 2
    attempts = a.flood_factor * cap
    per_ip = cap // 10 if a.per_ip_limit is None else a.per_ip_limit
    if echo_n >= cap:
        sys.exit("capacity: admission needs --connections (echo) below --max-connections")
    if lead < 1:
        sys.exit("capacity: admission needs --flood-after of at least 1 s (the echo run's first progress line)")
    # Sources for the flood: every refused attempt leaves its port in
    # TIME_WAIT, so each (source, server) pair can take half the local port
    # range (ringgate-load's own budget); one more source for slack (the echo
    # runs share 127.0.0.2).
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    sources = math.ceil(attempts / ((hi - lo + 1) // 2)) + 1
    deadline = time.monotonic() + a.timeout
    load_before = os.getloadavg()

    server_args = ["--log-level", "warn", "--max-connections", str(cap), "--workers", str(workers)] + a.server_arg
    echo_cmd = lambda seconds: (["echo", "--connections", str(echo_n), "--inflight", str(inflight), "--size",
                                 str(a.size), "--duration", f"{seconds:g}"] + a.load_arg)
    # The flood: attempts as fast as the client goes, for at most
    # FLOOD_BOUND_S; each then resolves within the handshake timeout (10 s).
    # It holds what it got for FLOOD_HOLD_S after the last attempt resolved:
    # past the end of the echo run, which is stopped (SIGINT) once the flood
    # has resolved every attempt; its --duration is only the bound.
    flood_args = ["flood", "--connections", str(attempts), "--sources", str(sources),
                  "--duration", f"{FLOOD_BOUND_S}", "--hold", f"{FLOOD_HOLD_S}"] + a.flood_arg
    echo_before_args, echo_during_args = echo_cmd(dur), echo_cmd(lead + FLOOD_BOUND_S + 15)

    t0 = time.monotonic()
    runs = {}
    metrics = {}
    samples = []
    servers = [("max_connections", server_args, "server.log",
                [("before", echo_before_args, None), ("during", echo_during_args, flood_args)])]
    if per_ip:
        servers.append(("per_ip_limit", server_args + ["--per-ip-limit", str(per_ip)], "server-per-ip.log",
                        [("per_ip", echo_during_args, flood_args)]))
    exit_statuses = {}
    for label, args, log_name, phases in servers:
        server = Server(server_bin, args, out_dir / log_name)
        admin_m = next((ADMIN_RE.search(l) for l in server.lines if ADMIN_RE.search(l)), None)
        admin = (admin_m.group(1), int(admin_m.group(2))) if admin_m else None
        url = f"ws://127.0.0.1:{server.port}/echo"
        sampler = PhaseSampler(server.proc.pid, 0.5, t0)
        sampler.start()
        try:
            time.sleep(1.0)
            for phase, eargs, fargs in phases:
                echo, flood, text = echo_with_flood(load_bin, eargs, fargs, url, out_dir, t0, deadline, sampler,
                                                    phase, lead, admin)
                runs[phase] = (echo, flood)
                if text is not None:
                    metrics[phase] = text
                sampler.phase = "idle"
                time.sleep(1.0)
        finally:
            sampler.stop.set()
            sampler.join(timeout=5)
            exit_statuses[label] = server.stop()
            samples += sampler.samples

    # ---- files
    with open(out_dir / "samples.csv", "w", newline="") as f:
        if samples:
            w = csv.DictWriter(f, fieldnames=list(samples[0].keys()))
            w.writeheader()
            w.writerows(samples)
    for phase, (echo, flood) in runs.items():
        (out_dir / f"load-echo-{phase}.json").write_text(json.dumps(echo.summary, indent=2) + "\n")
        if flood is not None:
            (out_dir / f"load-flood-{phase}.json").write_text(json.dumps(flood.summary, indent=2) + "\n")

    # ---- report
    before = runs["before"][0].summary
    flood_rows = [(p, runs[p][0], runs[p][1]) for p in ("during", "per_ip") if p in runs]
    ms = lambda us: f"{us / 1000:.3f}" if us is not None else "n/a"
    num = lambda v: f"{v:,}" if isinstance(v, int) else ("n/a" if v is None else str(v))
    pcts = ("p50", "p90", "p99", "p999", "max")

    def refusals(fs):
        return {k: v for k, v in (fs.get("failed") or {}).items() if v}

    def flood_window(echo, flood):
        """(flood start, first 'observing' progress line = every attempt resolved
        by then, echo window start, echo window end) on the scenario clock."""
        es = echo.summary
        if echo.interrupted_s is not None:  # the window ended at the signal (within ringgate-load's 5 ms poll)
            w1 = echo.interrupted_s
            w0 = w1 - (es.get("window_s") or 0)
        else:  # it began once the connections were open (process start-up not counted: ~0.1 s early)
            w0 = echo.started_s + ((es.get("handshake_ms") or {}).get("max") or 0) / 1000
            w1 = w0 + (es.get("window_s") or 0)
        return flood.started_s, flood.first_phase_s("observing"), w0, w1

    def sample_at(t, key, after):
        """The sampled value of `key` just before (after=False) or after t."""
        pts = [(s["t_s"], s[key]) for s in samples if s.get(key) is not None]
        pts = [p for p in pts if (p[0] >= t if after else p[0] <= t)]
        return (min(pts) if after else max(pts))[1] if pts else None

    def delta(key, t_from, t_to):
        v0, v1 = sample_at(t_from, key, False), sample_at(t_to, key, True)
        return round(v1 - v0, 2) if v0 is not None and v1 is not None else None

    def server_hist(text, name):
        """p50/p90/p99 upper bounds (bucket edges) of a server histogram."""
        buckets = []
        for line in text.splitlines():
            m = re.match(rf'^{name}_bucket\{{le="([^"]+)"\}} (\S+)$', line)
            if m:
                buckets.append((float(m.group(1)), float(m.group(2))))
        if not buckets or not buckets[-1][1]:
            return None
        total = buckets[-1][1]
        q = lambda p: next(le for le, c in buckets if c >= p * total)
        return {"count": int(total), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99)}

    lines = ["# Capacity: admission", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine_line()}; load average "
             f"{load_before[0]:.1f} when the run started and {os.getloadavg()[0]:.1f} when it ended: the machine is "
             "shared, and others' work competed for the same 2 cores with the server and both clients. Treat times "
             "as this box's, not ringgate's alone.",
             "",
             "The admission-control issue asks: *\"Using ringgate-load flood mode as the benchmark, report the time "
             "from attempt to refusal at 3x capacity, and the echo RTT p99 of held connections during the flood "
             "compared with before it.\"*", "",
             "Reproduce:", "", "```sh", "/usr/bin/python3 perf/capacity.py " + " ".join(sys.argv[1:]), "```", "",
             f"Server: `ringgate {' '.join(server_args)}`"
             + (f" (the per_ip run: a fresh one with `--per-ip-limit {per_ip}` added)" if per_ip else "") + "  ",
             f"Echo before: `ringgate-load {' '.join(echo_before_args)} --json`  ",
             f"Echo during: `ringgate-load {' '.join(echo_during_args)} --json`, ended with SIGINT once the flood "
             "had resolved every attempt (`--duration` is only its bound)  ",
             f"Flood: `ringgate-load {' '.join(flood_args)} --json`  ",
             "Exit statuses: " + ", ".join(f"{p} echo {e.rc}" + (f" / flood {f.rc}" if f else "")
                                           for p, (e, f) in runs.items())
             + "; server " + ", ".join(f"{k} {v}" for k, v in exit_statuses.items()) + ".", "",
             "How it runs:", "",
             f"1. **before**: the echo run alone: {echo_n} connections, {inflight} x {a.size} B in flight each, "
             f"{dur:g} s measured.",
             f"2. **during**: the same echo run again. Once it is echoing (its connections open, so they are among "
             f"the held ones) and {lead:g} s in, a flood of {attempts:,} attempts ({a.flood_factor}x max_connections "
             f"{cap:,}) from {sources} source addresses, as fast as the client goes. It can upgrade "
             f"{cap - echo_n:,}; the rest must be refused. As soon as the flood has resolved every attempt (its first "
             "`observing` progress line, within 1 s) the echo run is ended, so its window is "
             f"{lead:g} s of calm plus the flood. The flood holds what it got for {FLOOD_HOLD_S} s more: the echo "
             "window never sees the flood's exit.",
             ]
    if per_ip:
        lines.append(f"3. **per_ip**: a fresh server with `--per-ip-limit {per_ip}`, then step 2 again: each source "
                     f"address may hold {per_ip:,} (the echo's {echo_n} count against 127.0.0.2), the rest get 429.")
    lines += ["", "## Time from attempt to refusal", "",
              "ringgate-load's `refused_ms`: connect start -> the refusal's status line and headers, for every "
              "refused attempt; `handshake_ms`: connect start -> 101 for the admitted ones.", "",
              "| flood | attempted | upgraded | refused (class) | refused p50 ms | p90 | p99 | p99.9 | max | "
              "handshake p50 ms | p99 | max | every attempt resolved within | flood client CPU s | server CPU s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for phase, echo, flood in flood_rows:
        fs = flood.summary
        r, h = fs.get("refused_ms") or {}, fs.get("handshake_ms") or {}
        f0, f1, _, _ = flood_window(echo, flood)
        name = f"{a.flood_factor}x max_connections {cap:,}" + (f", per_ip_limit {per_ip:,}" if phase == "per_ip"
                                                              else "")
        lines.append(f"| {name} | {num(fs.get('attempted'))} | {num(fs.get('upgraded'))} | "
                     + ", ".join(f"{k} {v:,}" for k, v in refusals(fs).items()) + " | "
                     + " | ".join(str(r.get(k)) for k in pcts) + " | "
                     + " | ".join(str(h.get(k)) for k in ("p50", "p99", "max")) + " | "
                     + (f"<= {f1 - f0:.1f} s" if f1 else "n/a") + f" | {fs.get('cpu_seconds')} | "
                     + f"{num(delta('server_cpu_s', f0, f1)) if f1 else 'n/a'} |")
    lines += ["", "\"Every attempt resolved within\": from the flood's start to its first `observing` progress line "
              "(1 s steps). Server CPU: the server's utime + stime over the same stretch (sampled every 0.5 s; "
              "its echo work included).", ""]
    for phase, echo, flood in flood_rows:
        fs = flood.summary
        failed = fs.get("failed") or {}
        want = "http_429_retry_after" if phase == "per_ip" else "http_503_retry_after"
        refused_n = fs.get("failed_total") or 0
        held_total = (fs.get("held") or 0) + (echo.summary.get("upgraded") or 0)
        f0, f1, _, _ = flood_window(echo, flood)
        first = next((row[2] for row in flood.per_second()), None)
        kernel = {k: delta(k, f0, f1 or f0) for k in NETSTAT_KEYS.values()}
        lines.append(f"- **{phase}**: {refused_n:,} refused, {failed.get(want, 0):,} of them `{want}` "
                     f"({'every one' if failed.get(want, 0) == refused_n else 'NOT every one'}); "
                     f"`refused_ms` timed {num((fs.get('refused_ms') or {}).get('count'))}. Held at the end: flood "
                     f"{num(fs.get('held'))} + echo {num(echo.summary.get('upgraded'))} = {held_total:,}"
                     + (" = max_connections" if phase == "during" and held_total == cap else "")
                     + f". The client started {num(first)} attempts in the flood's first second"
                     + (f"; all {num(fs.get('attempted'))} resolved within {f1 - f0:.1f} s, "
                        f"~{(fs.get('attempted') or 0) / (f1 - f0):,.0f} attempts/s end to end" if f1 else "")
                     + ". Kernel counters over the flood: "
                     + ", ".join(f"{k} +{num(v)}" for k, v in kernel.items()) + ".")
    kernel_drops = sum(delta(k, flood.started_s, flood_window(echo, flood)[1] or flood.started_s) or 0
                       for _, echo, flood in flood_rows for k in NETSTAT_KEYS.values())
    lines += ["", "Reading the refusal times: an unpaced flood starts its attempts far faster than the box (server, "
              "both clients and whatever else runs on the 2 cores) resolves them, so nearly all of them are in "
              "flight at once and an attempt's time to refusal is mostly the time it waits behind the others (compare "
              "the refusal percentiles with \"every attempt resolved within\"), not the cost of refusing it. "
              + ("The kernel dropped no handshake on the way (every counter above +0), so no attempt paid a SYN "
                 "retransmit (1 s, 3 s, 7 s). " if kernel_drops == 0 else
                 "The kernel counters above are not all zero: some attempts paid a SYN retransmit (1 s, 3 s, 7 s), "
                 "which shows in the tail. ")
              + "The server's own histogram (accept -> 101, under \"The server's view\") starts only once the "
              "server has accepted a connection; what the client's figure has beyond it was spent before that "
              "(the client's connect, the kernel's accept queue, each process waiting for a core). "
              "A paced flood (`--flood-arg=--rate --flood-arg=N`, N below that throughput) would measure the "
              "cost of one refusal rather than the queue.", ""]

    lines += ["## Echo RTT of the held connections, before vs during the flood", "",
              f"{echo_n} echo connections opened before the flood, {inflight} x {a.size} B binary message(s) in "
              "flight each; RTT = send -> its echo checked, for every message of the measured window.", "",
              "| run | window s | msgs/s | RTT p50 ms | p90 | p99 | p99.9 | max | mismatches | unanswered |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    echo_rows = [("before (no flood)", before)] + [
        (f"during the {'503' if p == 'during' else '429'} flood", e.summary) for p, e, _ in flood_rows]
    for name, es in echo_rows:
        rtt = es.get("rtt_us") or {}
        lines.append(f"| {name} | {es.get('window_s', 0):.1f} | {num(round(es.get('msgs_per_s') or 0))} | "
                     + " | ".join(ms(rtt.get(k)) for k in pcts)
                     + f" | {num(es.get('mismatches'))} | {num(es.get('unanswered'))} |")
    b_rtt = before.get("rtt_us") or {}
    for name, es in echo_rows[1:]:
        rtt = es.get("rtt_us") or {}
        ratio = lambda k: (f"{rtt[k] / b_rtt[k]:.1f}x" if rtt.get(k) and b_rtt.get(k) else "n/a")
        tput = (f"{(es.get('msgs_per_s') or 0) / before['msgs_per_s']:.2f}x" if before.get("msgs_per_s") else "n/a")
        lines.append(f"| {name} / before | | {tput} | " + " | ".join(ratio(k) for k in pcts) + " | | |")
    lines.append("")
    for phase, echo, flood in flood_rows:
        f0, f1, w0, w1 = flood_window(echo, flood)
        if f1:
            share = (min(f1, w1) - max(f0, w0)) / (w1 - w0) * 100 if w1 > w0 else 0
            lines.append(f"- **{phase}**: echo window t={w0:.1f}..{w1:.1f} s (scenario clock), connections "
                         f"{num(echo.summary.get('upgraded'))}, held to the end {num(echo.summary.get('held'))}; "
                         f"the flood ran from t={f0:.1f} s until every attempt was resolved by t={f1:.1f} s: "
                         f"{share:.0f}% of the window" + (" (the flood outlasted the window!)" if f1 > w1 + 1 else "")
                         + ". The RTT histogram covers the whole window; the per-second view below isolates the "
                         "flood's seconds.")
        else:
            lines.append(f"- **{phase}**: the flood's end is unknown (no `observing` progress line).")
    lines += ["", "### Per second", "",
              f"From the progress lines (one a second, stamped on the scenario clock on arrival). Mean RTT = "
              f"{echo_n} x {inflight} / msgs/s (Little's law: each connection always has {inflight} in flight, so "
              "this is the mean round trip, client turnaround included).", "",
              "| t (s) | run | echo msgs/s | mean RTT ms | flood attempts/s | flood upgraded (total) | "
              "flood refused or failed (total) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    timeline = []
    for phase, (echo, flood) in runs.items():
        for t, ph, _, _, msgs, _ in echo.per_second():
            if ph == "echoing" and msgs is not None:
                timeline.append((t, phase, msgs, None, None, None))
        if flood is not None:
            for t, ph, att, up, _, failed in flood.per_second():
                if t <= (echo.ended_s or t):  # while the echo ran
                    timeline.append((t, phase, None, att, up, failed))
    timeline.sort()
    merged = []  # one row per (run, second): echo and flood lines of the same second merged
    for row in timeline:
        if merged and merged[-1][1] == row[1] and abs(merged[-1][0] - row[0]) < 0.5:
            merged[-1] = tuple(m if m is not None else r for m, r in zip(merged[-1], row))
        else:
            merged.append(row)
    blank = lambda v: "" if v is None else num(v)
    for t, phase, msgs, att, up, failed in merged:
        rtt = f"{echo_n * inflight / msgs * 1000:.3f}" if msgs else ""
        lines.append(f"| {t:.1f} | {phase} | {blank(msgs)} | {rtt} | {blank(att)} | {blank(up)} | {blank(failed)} |")
    lines.append("")

    lines += ["## Every flood attempt, classified", ""]
    for phase, echo, flood in flood_rows:
        fs = flood.summary
        lines += [f"### {phase}", "",
                  kv_table([("attempted", num(fs.get("attempted"))), ("upgraded", num(fs.get("upgraded")))]
                           + [(k, num(v)) for k, v in (fs.get("failed") or {}).items()]
                           + [("other_detail", json.dumps(fs.get("other_detail"))),
                              ("breaking point", json.dumps(fs.get("breaking_point"))),
                              ("held after the watch", num(fs.get("held"))),
                              ("disconnects after success", num(fs.get("disconnects_after_success")))]), "",
                  "| source | attempts and their outcomes |", "| --- | --- |"]
        lines += [f"| {row['source']} | " + ", ".join(f"{k} {v:,}" for k, v in row.items() if k != "source") + " |"
                  for row in fs.get("by_source") or []]
        lines.append("")

    if metrics:
        lines += ["## The server's view", "",
                  "`/metrics` (admin listener), summed over workers, scraped right after each echo run ended while "
                  "the flood still held its connections (so open connections = the flood's). Counters run from the "
                  "server's start: `during` includes the `before` echo run.", "",
                  "| metric | " + " | ".join(metrics) + " |", "| --- |" + " --- |" * len(metrics)]
        sums = {p: metric_sums(t) for p, t in metrics.items()}
        keys = set()
        for d in sums.values():
            keys |= {k for k, v in d.items() if v and not k[0].endswith(("_bucket", "_sum", "_count"))
                     and k[0] != "ringgate_budget_limit"
                     and not (k[0] == "ringgate_budget_used" and "table_slots" not in str(k[1])
                              and "max_connections" not in str(k[1]))}
        for k in sorted(keys):
            lines.append(f"| `{k[0]}{'{' + ','.join(k[1]) + '}' if k[1] else ''}` | "
                         + " | ".join(num(int(sums[p].get(k, 0))) for p in metrics) + " |")
        hists = {p: server_hist(t, "ws_handshake_duration_seconds") for p, t in metrics.items()}
        lines.append("| `ws_handshake_duration_seconds` (accept -> 101; bucket bounds) | "
                     + " | ".join(f"{h['count']:,}: p50 <= {h['p50']:g} s, p90 <= {h['p90']:g} s, "
                                  f"p99 <= {h['p99']:g} s" if h else "n/a" for h in hists.values()) + " |")
        lines.append("")

    def peak(key, phase=None):
        vals = [s[key] for s in samples if s.get(key) is not None and (phase is None or s["phase"] == phase)]
        return max(vals) if vals else None

    lines += ["## Memory and sockets (sampled every 0.5 s)", "",
              "| phase | server RSS peak KiB | server fds peak | TCP sockets in use peak (both ends) | "
              "TIME_WAIT peak | flood client RSS peak KiB | system Slab peak KiB |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for phase in runs:
        lines.append(f"| {phase} | {num(peak('server_rss_kib', phase))} | {num(peak('server_fds', phase))} | "
                     f"{num(peak('tcp_inuse', phase))} | {num(peak('tcp_tw', phase))} | "
                     f"{num(peak('flood_rss_kib', phase))} | {num(peak('slab_kib', phase))} |")
    lines.append("")

    lines += ["## Charts", ""] + admission_charts(out_dir, samples, runs, merged, echo_n, inflight, flood_window)
    lines.append("")
    for phase, (echo, flood) in runs.items():
        lines += [f"## ringgate-load's own tables: {phase}", "", "```", echo.table]
        if flood is not None:
            lines += ["", flood.table]
        lines += ["```", ""]
    lines += ["## Raw JSON", ""]
    for phase, (echo, flood) in runs.items():
        for kind, r in (("echo", echo), ("flood", flood)):
            if r is None:
                continue
            lines += [f"<details><summary>load-{kind}-{phase}.json</summary>", "", "```json",
                      json.dumps(r.summary, indent=2), "```", "", "</details>", ""]
    lines += ["## Raw data", "",
              "`samples.csv` (every 0.5 s, with the phase), `load-echo-<phase>.json` / `load-flood-<phase>.json` "
              "(ringgate-load's JSON lines), `load-*.log` (progress lines stamped on the scenario clock, then the "
              "tool's table), `metrics-<phase>.txt` (the server's /metrics), `server*.log`.", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    print((out_dir / "report.md").read_text())
    ok = all(e.rc == 0 and (f is None or f.rc == 0) for e, f in runs.values())
    return 0 if ok else 1


def admission_charts(out_dir, samples, runs, per_second, echo_n, inflight, flood_window):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(charts skipped: python3-matplotlib is not installed)"]
    made = charts(out_dir, samples)
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax_rtt, ax_flood, ax_sock = axes
    for phase in runs:
        pts = [(row[0], echo_n * inflight / row[2] * 1000) for row in per_second if row[1] == phase and row[2]]
        if pts:
            ax_rtt.plot(*zip(*pts), marker=".", label=f"echo {phase}")
        rows = [row for row in per_second if row[1] == phase and row[4] is not None]
        if rows and runs[phase][1] is not None:
            rows.insert(0, (runs[phase][1].started_s, phase, None, None, 0, 0))  # the flood starts at zero
            ax_flood.plot([r[0] for r in rows], [r[4] for r in rows], marker=".", label=f"flood {phase}: upgraded")
            ax_flood.plot([r[0] for r in rows], [r[5] for r in rows], marker=".", linestyle="--",
                          label=f"flood {phase}: refused")
    for phase, (echo, flood) in runs.items():
        if flood is None:
            continue
        f0, f1, w0, w1 = flood_window(echo, flood)
        for ax in axes:
            ax.axvspan(f0, f1 or f0, color="tab:red", alpha=0.12)
    ax_rtt.set_ylabel("mean echo RTT, ms\n(E x inflight / msgs/s)")
    ax_rtt.set_yscale("log")
    ax_rtt.set_title("Held echo connections through the flood (shaded: flood start -> all attempts resolved)")
    ax_flood.set_ylabel("flood attempts resolved\n(running total)")
    t = [s["t_s"] for s in samples]
    ax_sock.plot(t, [s["tcp_inuse"] or 0 for s in samples], label="TCP sockets in use")
    ax_sock.plot(t, [s["tcp_tw"] or 0 for s in samples], label="TIME_WAIT")
    ax_sock.set_ylabel("sockets")
    ax_sock.set_xlabel("scenario clock, seconds")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(out_dir / "admission_timeline.svg")
    plt.close(fig)
    made.append("![admission timeline](admission_timeline.svg)")

    fig, ax = plt.subplots(figsize=(8, 4))
    keys = ["p50", "p90", "p99", "p999", "max"]
    names = list(runs)
    width = 0.8 / len(names)
    for i, phase in enumerate(names):
        rtt = runs[phase][0].summary.get("rtt_us") or {}
        ax.bar([k + i * width for k in range(len(keys))], [(rtt.get(k) or 0) / 1000 for k in keys], width,
               label=f"echo {phase}")
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(keys))], keys)
    ax.set_yscale("log")
    ax.set_ylabel("echo RTT, ms")
    ax.set_title("Echo RTT of held connections: before vs during the flood")
    ax.grid(True, alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "rtt_before_during.svg")
    plt.close(fig)
    made.append("![echo RTT before vs during](rtt_before_during.svg)")
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["density", "ramp", "flood", "echo", "admission"])
    ap.add_argument("--connections", type=int)
    ap.add_argument("--rate", type=int, help="connections/s (density, flood)")
    ap.add_argument("--rates", default="50,100,1000,5000,20000", help="ramp steps")
    ap.add_argument("--duration", type=float, help="seconds to hold / run")
    ap.add_argument("--max-connections", type=int, help="server limit (flood; admission: the capacity C, 10000)")
    ap.add_argument("--inflight", type=int, help="echo messages in flight per connection (echo 16, admission 1)")
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--workers", type=int, help="server workers (default: computed; admission 2)")
    ap.add_argument("--flood-factor", type=int, default=3,
                    help="admission: flood attempts = this x --max-connections (3)")
    ap.add_argument("--flood-after", type=float, default=2.0,
                    help="admission: seconds into the second echo run at which the flood starts (2)")
    ap.add_argument("--per-ip-limit", type=int,
                    help="admission: per_ip_limit of the extra 429 run (default max_connections / 10; 0 skips it)")
    ap.add_argument("--flood-arg", action="append", default=[],
                    help="admission: extra argument for the flood's ringgate-load only (repeatable)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra ringgate argument (repeatable)")
    ap.add_argument("--load-arg", action="append", default=[], help="extra ringgate-load argument (repeatable)")
    ap.add_argument("--out", help="output folder (default perf/results/<scenario>)")
    ap.add_argument("--timeout", type=float, default=3600, help="cap on the whole run, seconds")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server_bin = pathlib.Path(os.environ.get("RINGGATE_BIN", REPO / "build/ringgate"))
    load_bin = pathlib.Path(os.environ.get("RINGGATE_LOAD_BIN", REPO / "build/tools/ringgate-load"))
    for b in (server_bin, load_bin):
        if not b.exists():
            sys.exit(f"capacity: {b} not found: build first (./run.sh --help or ninja -C build)")
    out_dir = pathlib.Path(a.out) if a.out else REPO / "perf/results" / a.scenario
    out_dir.mkdir(parents=True, exist_ok=True)
    if a.scenario == "admission":
        return run_admission(a, server_bin, load_bin, out_dir)

    defaults = {
        "density": dict(connections=100000, rate=20000, duration=10),
        "ramp": dict(connections=10000, duration=2),
        "flood": dict(connections=6000, rate=0, duration=30, max_connections=2000),
        "echo": dict(connections=100, duration=10),
    }[a.scenario]
    n = a.connections or defaults["connections"]
    duration = a.duration or defaults["duration"]

    server_args = ["--log-level", "warn"]
    if a.scenario == "density":
        # Many workers (one table of RLIMIT_NOFILE slots each): keep each
        # worker's fixed pools small so they do not hide the per-connection cost.
        server_args += ["--max-connections", str(n), "--recv-buffer-count", "64",
                        "--max-pending-handshakes", "1024"]
    elif a.scenario == "flood":
        server_args += ["--max-connections", str(a.max_connections or defaults["max_connections"])]
    elif a.scenario == "ramp":
        server_args += ["--max-connections", str(max(n, 1000))]
    if a.workers:
        server_args += ["--workers", str(a.workers)]
    server_args += a.server_arg

    uri_path = "/echo"
    load_args_common = ["--connections", str(n), "--duration", str(duration)] + a.load_arg
    if a.scenario == "density":
        load_args = ["hold", "--rate", str(a.rate or defaults["rate"])] + load_args_common
    elif a.scenario == "ramp":
        load_args = ["ramp", "--rates", a.rates, "--connections", str(n), "--hold", str(duration)] + a.load_arg
    elif a.scenario == "flood":
        load_args = ["flood"] + (["--rate", str(a.rate)] if a.rate else []) + load_args_common
    else:
        load_args = ["echo", "--inflight", str(a.inflight or 16), "--size", str(a.size)] + load_args_common

    mem_before = meminfo_kib()
    server = Server(server_bin, server_args, out_dir / "server.log")
    time.sleep(1.0)
    sampler = Sampler(server.proc.pid)
    baseline = sampler.sample()
    sampler.start()
    started = time.monotonic()
    rc, summary, table = -1, {}, ""
    try:
        rc, summary, table = run_load(load_bin, load_args + [f"ws://127.0.0.1:{server.port}{uri_path}"], sampler,
                                      out_dir / "load.log", a.timeout)
    finally:
        sampler.stop.set()
        sampler.join(timeout=5)
        exit_status = server.stop()
    elapsed = time.monotonic() - started
    samples = sampler.samples

    with open(out_dir / "samples.csv", "w", newline="") as f:
        if samples:
            w = csv.DictWriter(f, fieldnames=list(samples[0].keys()))
            w.writeheader()
            w.writerows(samples)
    with open(out_dir / "load.json", "w") as f:
        json.dump(summary, f, indent=2)

    # Peak memory while the connections were held.
    def peak(key):
        vals = [s[key] for s in samples if s.get(key) is not None]
        return max(vals) if vals else None

    held = summary.get("held") or summary.get("upgraded") or 0
    lines = [f"# Capacity: {a.scenario}", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine_line()}.", "",
             "Reproduce:", "", "```sh",
             "/usr/bin/python3 perf/capacity.py " + " ".join(sys.argv[1:]), "```", "",
             f"Server: `ringgate {' '.join(server_args)}`  ", f"Load: `ringgate-load {' '.join(load_args)} --json`  ",
             f"Load exit status {rc}, server exit status {exit_status}, run time {elapsed:.0f} s.", ""]
    if a.scenario == "density":
        srv = peak("server_rss_kib")
        cli = peak("client_rss_kib")
        slab = peak("slab_kib")
        per = lambda kib_delta: (kib_delta * 1024 / held) if held and kib_delta is not None else None
        srv_b = per(srv - baseline["server_rss_kib"]) if srv else None
        slab_b = per(slab - baseline["slab_kib"]) if slab else None
        cli_b = per(cli) if cli else None
        avail_drop = (mem_before["MemAvailable"] - min(s["mem_available_kib"] for s in samples)) if samples else None
        lines += ["## Memory per held connection", "",
                  kv_table([
                      ("connections attempted", summary.get("attempted")),
                      ("connections upgraded", summary.get("upgraded")),
                      ("connections held", held),
                      ("server workers", next((re.search(r"workers=(\d+)", l).group(1) for l in server.lines
                                               if "workers=" in l), "?")),
                      ("server user space (RSS delta at peak / held)", fmt_bytes(srv_b)),
                      ("server user space, everything (RSS at peak / held: pools, rings, slab)",
                       fmt_bytes(per(srv)) if srv else "n/a"),
                      ("kernel (system Slab delta at peak / held; both ends of each pair)", fmt_bytes(slab_b)),
                      ("client user space (ringgate-load peak RSS / held)", fmt_bytes(cli_b)),
                      ("server RSS baseline / peak", f"{baseline['server_rss_kib']} KiB / {srv} KiB"),
                      ("system Slab baseline / peak", f"{baseline['slab_kib']} KiB / {slab} KiB"),
                      ("MemAvailable drop at peak", f"{avail_drop} KiB" if avail_drop is not None else "n/a"),
                      ("server fds at peak", peak("server_fds")),
                      ("client fds at peak", peak("client_fds")),
                      ("handshake latency ms", json.dumps(summary.get("handshake_ms"))),
                      ("client CPU seconds", summary.get("cpu_seconds")),
                  ]), ""]
        failed = summary.get("failed") or {}
        if any(failed.values()) if isinstance(failed, dict) else failed:
            lines += ["## Failures", "", "```json", json.dumps(failed, indent=2), "```", ""]
    elif a.scenario == "ramp":
        lines += ["## Success by rate", ""]
        steps = summary.get("steps") or []
        lines += ["| rate (conn/s) | attempted | upgraded | success % | disconnects after success | "
                  "handshake p50 ms | p99 ms | p99.9 ms | client CPU s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for s in steps:
            hs = s.get("handshake_ms") or {}
            lines.append(f"| {s.get('rate')} | {s.get('attempted')} | {s.get('upgraded')} | "
                         f"{s.get('success_pct')} | {s.get('disconnects_after_success')} | {hs.get('p50')} | "
                         f"{hs.get('p99')} | {hs.get('p999')} | {s.get('cpu_seconds', '')} |")
        lines.append("")
    elif a.scenario == "flood":
        lines += ["## Every attempt, classified", "", kv_table(sorted((summary.get("failed") or {}).items())
                                                                + [("upgraded", summary.get("upgraded")),
                                                                   ("attempted", summary.get("attempted"))]), "",
                  "## Breaking point", "", "```json", json.dumps(summary.get("breaking_point"), indent=2), "```", ""]
        # How fast the excess was told no (ringgate-load's refused_ms), and
        # what each source address got (older load.json files have neither).
        if (summary.get("refused_ms") or {}).get("count"):
            lines += ["## Refusal latency (connect start -> 4xx/5xx or close 1013)", "",
                      pct_table("refused ms", summary["refused_ms"]), ""]
        by_source = summary.get("by_source") or []
        if by_source:
            lines += ["## By source address", "", "| source | attempts and their outcomes |", "| --- | --- |"]
            lines += [f"| {row['source']} | " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "source") + " |"
                      for row in by_source]
            lines.append("")
    else:
        lines += ["## Echo", "", kv_table([
            ("connections", summary.get("upgraded")),
            ("messages/s", summary.get("msgs_per_s")),
            ("bytes/s", summary.get("bytes_per_s")),
            ("mismatches", summary.get("mismatches")),
            ("client CPU seconds", summary.get("cpu_seconds")),
            ("client CPU utilisation", summary.get("cpu_utilisation")),
        ]), "", pct_table("RTT us", summary.get("rtt_us"))]
    if table:
        lines += ["## ringgate-load's own table", "", "```", table, "```", ""]
    lines += ["## Charts", ""] + charts(out_dir, samples, summary) + [""]
    lines += ["## Raw data", "", "`samples.csv` (one row per second), `load.json`, `server.log`, `load.log`.", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    print((out_dir / "report.md").read_text())
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
