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

Usage (from the repository root, after ./run.sh or ninja -C build):
  /usr/bin/python3 perf/capacity.py density --connections 1000000 --rate 20000
  /usr/bin/python3 perf/capacity.py ramp --connections 10000 --rates 50,100,1000,5000,20000
  /usr/bin/python3 perf/capacity.py flood --connections 6000 --max-connections 2000
  /usr/bin/python3 perf/capacity.py echo --connections 100 --inflight 16 --size 20 --duration 10

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
    def __init__(self, server_pid, period_s=1.0):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.client_pid = None
        self.period_s = period_s
        self.samples = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["density", "ramp", "flood", "echo"])
    ap.add_argument("--connections", type=int)
    ap.add_argument("--rate", type=int, help="connections/s (density, flood)")
    ap.add_argument("--rates", default="50,100,1000,5000,20000", help="ramp steps")
    ap.add_argument("--duration", type=float, help="seconds to hold / run")
    ap.add_argument("--max-connections", type=int, help="server limit (flood)")
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--workers", type=int, help="server workers (default: computed)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra ringgate argument (repeatable)")
    ap.add_argument("--load-arg", action="append", default=[], help="extra ringgate-load argument (repeatable)")
    ap.add_argument("--out", help="output folder (default perf/results/<scenario>)")
    ap.add_argument("--timeout", type=float, default=3600, help="cap on the whole run, seconds")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server_bin = pathlib.Path(os.environ.get("RINGGATE_BIN", REPO / "build/server/ringgate"))
    load_bin = pathlib.Path(os.environ.get("RINGGATE_LOAD_BIN", REPO / "build/tools/ringgate-load"))
    for b in (server_bin, load_bin):
        if not b.exists():
            sys.exit(f"capacity: {b} not found: build first (./run.sh --help or ninja -C build)")
    out_dir = pathlib.Path(a.out) if a.out else REPO / "perf/results" / a.scenario
    out_dir.mkdir(parents=True, exist_ok=True)

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
        load_args = ["echo", "--inflight", str(a.inflight), "--size", str(a.size)] + load_args_common

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
