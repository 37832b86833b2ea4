"""ringgate-load against the real ringgate server, and against small scripted
servers for what ringgate does not do on purpose (lose, repeat or corrupt
messages) or does not do yet (the fanout tests script the pub/sub contract).

Every test is bounded in time: the tool stops by itself (--connections,
--duration, --hold) and each subprocess also has a hard timeout.

Environment:
  RINGGATE_BIN       the server (default build/ringgate)
  RINGGATE_LOAD_BIN  the load tool (default: tools/ringgate-load next to
                     RINGGATE_BIN's build, else build/tools/ringgate-load)
"""
import asyncio
import contextlib
import json
import re
import select
import signal
import subprocess
import threading
import time
import types

import pytest

from conftest import fd_count, metrics, ringgate_load_bin, run_async, tcp_sockets, total, wait_until, ws_connect

LOAD_BIN = ringgate_load_bin()
# A process holding tens of thousands of connections through direct
# descriptors keeps only stdio, its rings and (server) listeners in its fd table.
FD_BUDGET = 100


@pytest.fixture
def server(request, ringgate):
    """A ringgate server (conftest's fixture): --workers 2 unless the test
    parametrizes the arguments indirectly."""
    return ringgate(*getattr(request, "param", ("--workers", "2")))


def run_load(*args, timeout=120, sample_pids=(), interrupt_when=None, sig=signal.SIGINT):
    """Runs ringgate-load; returns (returncode, stdout, stderr, json, max fds
    seen per sampled process, with "load" for the tool itself).  With
    interrupt_when (a predicate), sends `sig` to the tool once it holds."""
    proc = subprocess.Popen([str(LOAD_BIN), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peaks = {"load": 0}
    peaks.update({pid: 0 for pid in sample_pids})
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peaks["load"] = max(peaks["load"], fd_count(proc.pid))
            for pid in sample_pids:
                peaks[pid] = max(peaks[pid], fd_count(pid))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        if interrupt_when is not None:
            wait_until(lambda: interrupt_when() or proc.poll() is not None, 30, what="the moment to interrupt")
            assert proc.poll() is None, f"ringgate-load exited before the signal: {proc.communicate()}"
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"ringgate-load ran past {timeout}s:\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        stop.set()
        sampler.join()
    summary = None
    lines = out.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        summary = json.loads(lines[-1])
    return proc.returncode, out, err, summary, peaks


# What the scripted servers below share: the upgrade answer, frames both
# ways, and a listener on a free loopback port that says where it is.
SCRIPT_PRELUDE = r"""
import asyncio, base64, hashlib, itertools, json, struct, sys, urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

async def upgrade(reader, writer):  # reads an upgrade request, answers 101; returns the request head
    head = await reader.readuntil(b"\r\n\r\n")
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    return head

def frame(opcode, payload):
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126: head += bytes([n])
    elif n < 65536: head += bytes([126]) + struct.pack("!H", n)
    else: head += bytes([127]) + struct.pack("!Q", n)
    return head + payload

async def read_frame(reader):  # one (masked) client frame: (opcode, unmasked payload)
    b0, b1 = await reader.readexactly(2)
    size = b1 & 0x7F
    if size == 126: size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127: size = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4)
    return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(await reader.readexactly(size)))

async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await asyncio.sleep(60)
"""


@contextlib.contextmanager
def scripted_server(tmp_path, name, body, *argv):
    """Runs SCRIPT_PRELUDE + body with Debian's python3 (argv after the
    script); yields the regex match of its first stderr line,
    `listening on 127.0.0.1:PORT[ api 127.0.0.1:PORT]`.  Killed on exit."""
    script = tmp_path / f"{name}.py"
    script.write_text(SCRIPT_PRELUDE + body)
    proc = subprocess.Popen(["/usr/bin/python3", str(script), *argv], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: select.select([proc.stderr], [], [], 0)[0], 10, what=f"{name} to start")
        line = proc.stderr.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)(?: api 127\.0\.0\.1:(\d+))?", line)
        assert m, f"{name} did not start: {line}{proc.stderr.read() if proc.poll() is not None else ''}"
        yield m
    finally:
        proc.kill()
        proc.wait()


def test_density_30k_held_by_one_process(server):
    # 30,000 connections from one process: 2 rings of 15,000 direct slots,
    # 3 source addresses (14,116 ports per pair).  The default close
    # timeout (5 s) must do: the whole 30,000 close cleanly within it.
    rc, out, err, j, peaks = run_load(
        "hold", "--connections", 30000, "--rate", 10000, "--duration", 3,
        "--json", server.uri(),
        timeout=180, sample_pids=(server.pid,))
    assert rc == 0, err
    assert j["attempted"] == 30000
    assert j["upgraded"] == 30000, out
    assert j["held"] == 30000, out
    assert j["failed_total"] == 0, j["failed"]
    assert j["threads"] == 2 and j["sources"] == 3
    assert j["closed_clean"] == 30000, out
    assert j["close_timeouts"] == 0 and j["slots_left"] == 0
    assert j["disconnects_after_success"] == 0
    assert 0 < peaks["load"] <= FD_BUDGET, peaks
    assert 0 < peaks[server.pid] <= FD_BUDGET, peaks
    hs = j["handshake_ms"]
    assert hs["count"] == 30000, hs
    assert 0 < hs["p50"] <= hs["p90"] <= hs["p99"] <= hs["p999"] <= hs["max"], hs
    assert j["cpu_seconds"] > 0 and "cpu_utilisation" in j
    # A progress line a second on stderr.
    assert re.search(r"\[\d+s\] (opening|holding)\s+open \d+", err), err


def test_ramp_step_of_10k_at_2000_per_second(server):
    rc, out, err, j, _ = run_load(
        "ramp", "--rates", 2000, "--connections", 10000, "--hold", 1, "--json", server.uri(), timeout=120)
    assert rc == 0, err
    (step,) = j["steps"]
    assert step["rate"] == 2000
    assert step["attempted"] == 10000
    assert step["upgraded"] == 10000, out
    assert step["success_pct"] == 100.0
    assert step["disconnects_after_success"] == 0
    assert step["held"] == 10000
    assert "success %" in out and "disconnects after success" in out


@pytest.mark.parametrize("mode_args", [
    ("--inflight", 8, "--size", 20),
    ("--inflight", 4, "--size", 6000, "--text"),  # frames larger than a recv buffer: the carry path
])
def test_echo_checks_every_byte(server, mode_args):
    rc, out, err, j, _ = run_load(
        "echo", "--connections", 50, *mode_args, "--duration", 2, "--json", server.uri(), timeout=60)
    assert rc == 0, err
    assert j["upgraded"] == 50
    assert j["msgs"] > 0 and j["msgs_per_s"] > 0 and j["bytes_per_s"] > 0
    assert j["mismatches"] == 0
    assert j["out_of_order"] == 0
    assert j["lost"] == 0 and j["duplicates"] == 0 and j["unanswered"] == 0, out
    assert j["protocol_errors"] == 0
    assert j["echoes_checked"] >= j["msgs"]
    assert j["rtt_us"]["count"] > 0 and j["rtt_us"]["p50"] <= j["rtt_us"]["max"]
    assert j["window_cpu_seconds"] > 0 and j["msgs_per_cpu_second"] > 0


@pytest.mark.parametrize("server", [("--workers", "1", "--max-connections", "500")], indirect=True)
def test_flood_classifies_every_attempt(server):
    # Two threads over five sources: attempts still take the sources round
    # robin across threads, 800 / 5 = 160 each.
    rc, out, err, j, _ = run_load(
        "flood", "--connections", 800, "--sources", 5, "--threads", 2, "--duration", 20, "--json", server.uri(),
        timeout=60)
    assert rc == 0, err
    assert j["attempted"] == 800
    assert [row["source"] for row in j["by_source"]] == [f"127.0.0.{i}" for i in range(2, 7)]
    assert [row["attempted"] for row in j["by_source"]] == [160] * 5, j["by_source"]
    for key in ("upgraded", "http_503_retry_after"):
        assert sum(row.get(key, 0) for row in j["by_source"]) == (j["upgraded"] if key == "upgraded"
                                                                 else j["failed"][key])
    assert "by source (5): attempted 160" in out
    assert j["upgraded"] + sum(j["failed"].values()) == 800
    assert j["upgraded"] == 500, out
    assert j["failed"]["http_503_retry_after"] == 300, out
    assert j["refused_ms"]["count"] == 300, out
    assert j["breaking_point"]["class"] == "http_503_retry_after"
    assert 1 <= j["breaking_point"]["attempt"] <= 800
    assert "breaking point" in out


@pytest.mark.parametrize("server", [("--workers", "1", "--max-connections", "300")], indirect=True)
def test_flood_admission_refuses_cleanly_and_what_it_admits_echoes(server):
    # The admission-control measurement: 600 attempts from 3 source
    # addresses at a server that holds 300.  Exactly 300 upgrade, exactly
    # 300 get 503 with Retry-After (each timed in refused_ms), every source
    # gets its third, and every admitted connection still echoes.
    rc, out, err, j, _ = run_load(
        "flood", "--connections", 600, "--sources", 3, "--verify-echo", "--duration", 20, "--json", server.uri(),
        timeout=90)
    assert rc == 0, err
    assert j["attempted"] == 600
    assert j["upgraded"] == 300, out
    assert j["failed"]["http_503_retry_after"] == 300, out
    assert j["failed_total"] == 300, j["failed"]
    assert j["refused_ms"]["count"] == 300, out
    assert 0 <= j["refused_ms"]["p50"] <= j["refused_ms"]["p99"] <= j["refused_ms"]["max"]
    assert j["handshake_ms"]["count"] == 300
    # Per source: round robin over 3 sources, and the rows add up to the totals.
    rows = j["by_source"]
    assert [r["source"] for r in rows] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert [r["attempted"] for r in rows] == [200, 200, 200], rows
    assert sum(r["attempted"] for r in rows) == j["attempted"]
    assert sum(r.get("upgraded", 0) for r in rows) == 300
    assert sum(r.get("http_503_retry_after", 0) for r in rows) == 300
    for r in rows:
        assert r["attempted"] == sum(v for k, v in r.items() if k not in ("source", "attempted")), r
        assert set(r) <= {"source", "attempted", "upgraded", "http_503_retry_after"}, r  # only non-zero classes
        # Attempts alternate between the sources, so each has about a third
        # of the first 300 (admission favours no source).
        assert 90 <= r.get("upgraded", 0) <= 110, rows
    # What was admitted works, then closes cleanly.
    assert j["held"] == 300
    assert j["held_checked"] == 300, out
    assert j["held_echoed"] == 300, out
    assert j["held_echo_failed"] == 0, out
    assert j["closed_clean"] == 300 and j["slots_left"] == 0, out
    assert j["disconnects_after_success"] == 0 and j["protocol_errors"] == 0
    assert "verify echo: checked 300  echoed 300  failed 0" in out


FAULTY_ECHO_SERVER = r"""
counter = itertools.count()

async def handler(reader, writer):
    behaviour = next(counter) % 4  # 0 echo, 1 corrupt echo, 2 silent, 3 hang up
    await upgrade(reader, writer)
    try:
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 8:
                writer.write(frame(8, data))
                await writer.drain()
                break
            if behaviour == 0: writer.write(frame(opcode, data))
            if behaviour == 1: writer.write(frame(opcode, data[:-1] + bytes([data[-1] ^ 1])))
            if behaviour == 3: break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

asyncio.run(serve(handler))
"""


def test_verify_echo_counts_no_echo_a_wrong_echo_and_a_hang_up_as_failed(tmp_path):
    with scripted_server(tmp_path, "faulty_echo", FAULTY_ECHO_SERVER) as m:
        started = time.monotonic()
        rc, out, err, j, _ = run_load("flood", "--connections", 40, "--verify-echo", "--close-timeout", "1s",
                                      "--hold", "200ms", "--duration", 10, "--json",
                                      f"ws://127.0.0.1:{m.group(1)}/", timeout=60)
        assert rc == 0, err
        assert j["upgraded"] == 40, out
        assert j["held_checked"] == 40, out
        assert j["held_echoed"] == 10, out
        assert j["held_echo_failed"] == 30, out
        # The hang-ups are gone; the rest (even the silent ones) close cleanly.
        assert j["disconnects_after_success"] == 10, out
        assert j["closed_clean"] == 30 and j["slots_left"] == 0, out
        assert j["protocol_errors"] == 0, out
        # The silent ones cost one --close-timeout, not one each.
        assert time.monotonic() - started < 15


def test_flood_against_a_closed_port_is_refused():
    # Port 1 on loopback: nothing listens there.
    rc, out, err, j, _ = run_load("flood", "--connections", 20, "--duration", 5, "--json", "ws://127.0.0.1:1/",
                                  timeout=30)
    assert rc == 0, err
    assert j["failed"]["refused"] == 20
    assert j["breaking_point"]["attempt"] >= 1


def test_refuses_a_non_loopback_target():
    # TEST-NET-1 (192.0.2.0/24): the tool must refuse before any socket exists.
    started = time.monotonic()
    rc, out, err, _, _ = run_load("hold", "--connections", 1, "--duration", 1, "ws://192.0.2.1:80/", timeout=10)
    assert rc == 2
    assert "loopback" in err and "192.0.2.1" in err
    assert time.monotonic() - started < 5


def test_refuses_an_impossible_port_plan():
    rc, out, err, _, _ = run_load("hold", "--connections", 100000, "--sources", 1, "ws://127.0.0.1:9/", timeout=10)
    assert rc == 2
    assert re.search(r"plan needs \d+ source addresses for 100000 connections \(\d+ ports per "
                     r"source/destination pair from ip_local_port_range \d+-\d+\), got --sources 1", err), err


def test_help_documents_every_flag():
    rc, out, err, _, _ = run_load("--help", timeout=10)
    assert rc == 0
    for flag in ("--connections", "--rate", "--rates", "--duration", "--hold", "--close-timeout",
                 "--handshake-timeout", "--threads", "--sources", "--inflight", "--size", "--binary",
                 "--text", "--verify-echo", "--seed", "--json", "--help", "--channels", "--messages", "--api",
                 "--api-token", "--channel-prefix", "--settle", "--stall-percent", "wss://", "--tls-ca",
                 "--tls-insecure", "--tls-server-name", "--tls-resume", "--tls-max-version"):
        assert flag in out, flag


PING_1013_SERVER = r"""
import websockets

async def handler(ws, path=None):
    # Ping first (the tool must answer with a masked pong), then turn the
    # connection away with 1013 as an overloaded server would.
    await asyncio.wait_for(ws.ping(b"are you there"), 5)
    await ws.close(1013, "try again later")

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


def test_pings_answered_and_close_1013_classified(tmp_path):
    # A python-websockets server (it checks masking and pong payloads itself):
    # every attempt upgrades, gets a ping, then a close 1013.
    with scripted_server(tmp_path, "ping_1013", PING_1013_SERVER) as m:
        rc, out, err, j, _ = run_load("flood", "--connections", 20, "--rate", 200, "--duration", 10, "--json",
                                      f"ws://127.0.0.1:{m.group(1)}/", timeout=60)
        assert rc == 0, err
        assert j["attempted"] == 20
        assert j["failed"]["close_1013"] == 20, out
        assert j["upgraded"] == 0
        assert j["pings"] == 20
        assert j["protocol_errors"] == 0
        assert j["breaking_point"]["class"] == "close_1013"
        # A close 1013 right after the 101 is a refusal too: timed to the close frame.
        assert j["refused_ms"]["count"] == 20, out
        assert 0 <= j["refused_ms"]["p50"] <= j["refused_ms"]["max"]


DOUBLE_CLOSE_SERVER = r"""
async def handler(reader, writer):
    await upgrade(reader, writer)
    # Two close frames with 1013 in one write: the second one is a protocol
    # violation the client must not count as another close_1013.
    writer.write(frame(8, struct.pack("!H", 1013)) * 2)
    await writer.drain()
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    writer.close()

asyncio.run(serve(handler))
"""


def test_a_second_close_frame_is_a_protocol_error_not_another_1013(tmp_path):
    with scripted_server(tmp_path, "double_close", DOUBLE_CLOSE_SERVER) as m:
        rc, out, err, j, _ = run_load("flood", "--connections", 20, "--rate", 200, "--duration", 10, "--json",
                                      f"ws://127.0.0.1:{m.group(1)}/", timeout=60)
        assert rc == 0, err
        assert j["attempted"] == 20
        assert j["failed"]["close_1013"] == 20, out
        assert j["upgraded"] == 0, out
        assert j["protocol_errors"] == 20, out
        assert j["disconnects_after_success"] == 20, out


LOSSY_ECHO_SERVER = r"""
async def handler(reader, writer):
    await upgrade(reader, writer)
    n = 0
    try:
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 8:
                writer.write(frame(8, data))
                await writer.drain()
                break
            # Message 2 of each connection is never echoed; message 5 twice.
            if n != 2: writer.write(frame(opcode, data))
            if n == 5: writer.write(frame(opcode, data))
            n += 1
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

asyncio.run(serve(handler))
"""


def test_a_lost_or_duplicated_echo_is_counted_once_not_as_every_later_mismatch(tmp_path):
    with scripted_server(tmp_path, "lossy_echo", LOSSY_ECHO_SERVER) as m:
        rc, out, err, j, _ = run_load("echo", "--connections", 5, "--inflight", 4, "--size", 64, "--duration", 1,
                                      "--json", f"ws://127.0.0.1:{m.group(1)}/", timeout=60)
        assert rc == 0, err
        assert j["upgraded"] == 5, out
        assert j["mismatches"] == 0, out
        assert j["lost"] == 5, out
        assert j["duplicates"] == 5, out
        assert j["unanswered"] == 0, out
        assert j["protocol_errors"] == 0, out
        assert j["msgs"] > 50, out
        assert j["rtt_us"]["count"] == j["echoes_checked"] - 5, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_hold_still_closes_every_connection(server, sig):
    rc, out, err, j, _ = run_load("hold", "--connections", 50, "--duration", 60, "--json", server.uri(),
                                  timeout=60, sig=sig,
                                  interrupt_when=lambda: total(metrics(server), "ws_total_connections") == 50)
    assert rc == 0, err
    assert j["interrupted"] is True
    assert j["upgraded"] == 50, out
    assert j["closed_clean"] == 50, out
    assert j["slots_left"] == 0, out


SILENT_SERVER = r"""
async def handler(reader, writer):
    await asyncio.sleep(60)  # accept, read nothing, answer nothing

asyncio.run(serve(handler))
"""


def test_a_signal_counts_unresolved_attempts_as_aborted(tmp_path):
    with scripted_server(tmp_path, "silent", SILENT_SERVER) as m:
        port = int(m.group(1))
        rc, out, err, j, _ = run_load("flood", "--connections", 20, "--handshake-timeout", "60s",
                                      "--duration", 30, "--json", f"ws://127.0.0.1:{port}/", timeout=60,
                                      interrupt_when=lambda: tcp_sockets(port) == 20)  # all 20 connected
        assert rc == 0, err
        assert j["interrupted"] is True
        assert j["attempted"] == 20, out
        assert j["failed"]["other"] == 20, out
        assert j["other_detail"].get("aborted") == 20, out


@pytest.mark.parametrize("server", [("--workers", "2", "--max-connections", "2000", "--per-ip-limit", "600")],
                         indirect=True)
def test_flood_6000_attempts_per_ip_and_capacity_refusals_are_explicit(server):
    # The admission flood: max_connections 2000 and per_ip_limit 600, then
    # 6000 attempts from 5 source addresses.  First a single address floods
    # (3000 attempts from 127.0.0.2: 600 upgrade, 2400 get 429) and holds;
    # then 3000 attempts round robin from 127.0.0.2..6 (.2 is already at its
    # limit: 600 x 429; the other four fill the remaining 1400 places, and the
    # rest get 503 or, where one address's handshakes in flight reach 600,
    # 429).  Every refusal carries Retry-After; nothing times out or is
    # reset; every held connection still echoes afterwards.
    first = subprocess.Popen(
        [str(LOAD_BIN), "flood", "--connections", "3000", "--sources", "1", "--verify-echo", "--hold", "25s",
         "--duration", "60", "--json", server.uri()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def first_flood_resolved():
            assert first.poll() is None, first.communicate()
            m = metrics(server)
            done = total(m, "ws_handshake_successes_total") + total(m, "ws_handshake_failures_total")
            return m if done >= 3000 else None

        m = wait_until(first_flood_resolved, 60, interval_s=0.1, what="the first flood to resolve all 3000 attempts")
        assert total(m, "ws_handshake_successes_total") == 600
        assert total(m, "ws_per_ip_rejections_total") == 2400

        rc, out, err, second, _ = run_load(
            "flood", "--connections", 3000, "--sources", 5, "--verify-echo", "--hold", "1s", "--duration", 60,
            "--json", server.uri(), timeout=120)
        assert rc == 0, err
        out1, err1 = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err1
    lines = out1.strip().splitlines()
    one = json.loads(lines[-1])

    # First flood: one address, exactly its limit.
    assert one["attempted"] == 3000
    assert one["upgraded"] == 600, out1
    assert one["failed"]["http_429_retry_after"] == 2400, out1
    assert one["failed_total"] == 2400
    assert one["held_echoed"] == 600 and one["held_echo_failed"] == 0, out1

    # Second flood: .2 is refused outright; the rest fill max_connections.
    assert second["attempted"] == 3000
    assert second["upgraded"] == 1400, out
    rows = {r["source"]: r for r in second["by_source"]}
    assert rows["127.0.0.2"].get("http_429_retry_after") == 600, rows
    assert rows["127.0.0.2"].get("upgraded", 0) == 0
    for src, r in rows.items():
        assert r.get("upgraded", 0) <= 600, r
        assert set(r) <= {"source", "attempted", "upgraded", "http_503_retry_after", "http_429_retry_after"}, r
    assert second["held_echoed"] == 1400 and second["held_echo_failed"] == 0, out

    # Together: exactly 2000 upgraded, every other attempt an explicit 503/429.
    for j in (one, second):
        refusals = j["failed"]["http_503_retry_after"] + j["failed"]["http_429_retry_after"]
        assert refusals == j["failed_total"], j["failed"]  # no timeouts, resets or answers without Retry-After
        assert j["refused_ms"]["count"] == j["failed_total"]
    assert one["upgraded"] + second["upgraded"] == 2000
    total_429 = one["failed"]["http_429_retry_after"] + second["failed"]["http_429_retry_after"]
    total_503 = one["failed"]["http_503_retry_after"] + second["failed"]["http_503_retry_after"]
    assert total_429 + total_503 == 4000

    # The server's counters agree with what the clients saw.
    m = metrics(server)
    assert total(m, "ws_handshake_attempts_total") == 6000
    assert total(m, "ws_handshake_successes_total") == 2000
    assert total(m, "ws_per_ip_rejections_total") == total_429
    assert total(m, "ws_max_connections_exceeded_total") == total_503
    assert total(m, "ws_connection_limit_rejections_total") == 4000
    assert total(m, "ws_handshake_failures_total", reason="per_ip") == total_429
    assert total(m, "ws_handshake_duration_seconds_count") == 2000

    # No descriptor exhaustion anywhere in the server's log.
    log = server.log()
    for word in ("EMFILE", "ENFILE", "Too many open files", "descriptor table full"):
        assert word not in log, log[-3000:]

    # Once the floods have gone, a new connection succeeds within a second.
    async def one_more():
        async with ws_connect(server.uri(), open_timeout=1, close_timeout=1) as ws:
            await ws.send("after the flood")
            return await asyncio.wait_for(ws.recv(), 1)

    started = time.monotonic()
    assert run_async(one_more(), 10) == "after the flood"
    assert time.monotonic() - started < 1.0


# A pub/sub server in the shape of ringgate's contract: WebSocket subscribers
# on one port (/ws?channels=NAME, one {"type":"subscribed"} notice per
# channel), POST /publish/NAME on another (keep-alive, JSON answers with
# "recipients"), each publish fanned out as {"type":"message",...,"data":BODY}.
# argv: clean | faulty (publish 23 never reaches its channel's first
# subscriber, publish 42 reaches it twice) | refuse (publish 7 is answered
# 503 and goes nowhere) | unresponsive (at publish 10 every subscriber is
# pinged; at publish 90 those that have not answered get close 1008 "slow
# consumer" and are dropped); then an optional bearer token the API requires.
FANOUT_SERVER = r"""
BEHAVIOUR = sys.argv[1]  # "clean", "faulty" (drop one, duplicate one), "refuse" (one 503) or "unresponsive"
TOKEN = sys.argv[2] if len(sys.argv) > 2 else ""
subscribers = {}  # channel -> [writer, ...] in subscription order
published = 0
pinged, ponged = set(), set()  # unresponsive: writers pinged, and those that answered


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


async def subscriber(reader, writer):
    head = await upgrade(reader, writer)
    query = urllib.parse.urlsplit(head.split(b" ")[1].decode()).query
    channels = [c for v in urllib.parse.parse_qs(query).get("channels", []) for c in v.split(",")]
    for channel in channels:
        subscribers.setdefault(channel, []).append(writer)
        writer.write(frame(1, compact({"type": "subscribed", "channel": channel})))
    try:
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 0xA:
                ponged.add(writer)
            if opcode == 8:
                writer.write(frame(8, data))
                await writer.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        for channel in channels:
            if writer in subscribers[channel]:
                subscribers[channel].remove(writer)
        writer.close()


async def api(reader, writer):
    global published
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ")
            headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
            body = await reader.readexactly(int(headers["content-length"]))
            status, answer = 200, None
            if TOKEN and headers.get("authorization") != "Bearer " + TOKEN:
                status, answer = 401, {"error": "unauthorized", "message": "bad token"}
            elif method != "POST" or not path.startswith("/publish/"):
                status, answer = 404, {"error": "not_found", "message": path}
            else:
                channel = path[len("/publish/"):]
                n, published = published, published + 1
                if BEHAVIOUR == "unresponsive" and n == 10:
                    for w in {w for ws in subscribers.values() for w in ws}:
                        w.write(frame(9, b"hb"))
                        pinged.add(w)
                if BEHAVIOUR == "unresponsive" and n == 90:
                    for ws in subscribers.values():
                        for w in [w for w in ws if w in pinged and w not in ponged]:
                            ws.remove(w)
                            w.write(frame(8, struct.pack("!H", 1008) + b"slow consumer"))
                            w.close()
                targets = list(subscribers.get(channel, []))
                if BEHAVIOUR == "refuse" and n == 7:
                    status, answer = 503, {"error": "mailbox_full", "message": "a worker mailbox was full"}
                else:
                    message = frame(1, b'{"type":"message","channel":"' + channel.encode() + b'","id":"m' +
                                         str(n).encode() + b'","data":' + body + b"}")
                    for i, w in enumerate(targets):
                        # faulty: publish 23 never reaches its first subscriber; publish 42 reaches it twice.
                        if BEHAVIOUR == "faulty" and n == 23 and i == 0: continue
                        w.write(message)
                        if BEHAVIOUR == "faulty" and n == 42 and i == 0: w.write(message)
                    answer = {"channel": channel, "id": f"m{n}", "recipients": len(targets)}
            payload = compact(answer)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def main():
    ws = await asyncio.start_server(subscriber, "127.0.0.1", 0, backlog=512)
    http = await asyncio.start_server(api, "127.0.0.1", 0)
    print(f"listening on 127.0.0.1:{ws.sockets[0].getsockname()[1]} "
          f"api 127.0.0.1:{http.sockets[0].getsockname()[1]}", file=sys.stderr, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@contextlib.contextmanager
def fanout_server(tmp_path, *argv):
    """FANOUT_SERVER running with `argv`; yields .url (subscribers) and .api."""
    with scripted_server(tmp_path, "fanout_server", FANOUT_SERVER, *argv) as m:
        assert m.group(2), m.group(0)
        yield types.SimpleNamespace(url=f"ws://127.0.0.1:{m.group(1)}/ws", api=f"http://127.0.0.1:{m.group(2)}")


def run_fanout(server, *args, timeout=60):
    # 50 subscribers over 5 channels, 20 messages each: 100 publishes, 1,000 deliveries.
    return run_load("fanout", "--connections", 50, "--channels", 5, "--messages", 20, "--api", server.api,
                    *args, "--json", server.url, timeout=timeout)


def test_fanout_every_message_reaches_every_subscriber_once_in_order(tmp_path):
    with fanout_server(tmp_path, "clean", "s3cret") as server:
        rc, out, err, j, _ = run_fanout(server, "--rate", 400, "--api-token", "s3cret")
    assert rc == 0, out + err
    assert j["mode"] == "fanout" and j["channels"] == 5 and j["messages_per_channel"] == 20
    assert j["subscribers_ready"] == 50 and j["subscribed"] == 50, out
    assert j["publishes"] == 100 and j["publishes_ok"] == 100, out
    assert j["publishes_failed"] == 0 and j["publishes_unsent"] == 0 and j["publish_failures"] == {}
    assert j["recipients"] == 1000 and j["expected_deliveries"] == 1000
    assert j["deliveries"] == 1000 and j["delivered"] == 1000, out
    for key in ("lost", "duplicated", "out_of_order", "gaps", "misrouted", "malformed", "untracked"):
        assert j[key] == 0, (key, out)
    assert j["latency_us"]["count"] == 1000 and j["last_delivery_us"]["count"] == 100
    assert 0 <= j["latency_us"]["p50"] <= j["latency_us"]["p99"] <= j["latency_us"]["max"]
    assert j["last_delivery_us"]["p50"] >= j["latency_us"]["p50"]
    assert j["last_delivery_us"]["max"] == j["latency_us"]["max"]
    assert 0 < j["publish_rate"] <= 440, j["publish_rate"]  # paced at 400/s
    assert j["settled"] is True and j["passed"] is True and j["failed_checks"] == []
    assert j["closed_clean"] == 50 and j["slots_left"] == 0
    assert "check: PASSED" in out


def test_fanout_reports_a_lost_and_a_duplicated_message_and_fails(tmp_path):
    with fanout_server(tmp_path, "faulty") as server:
        started = time.monotonic()
        rc, out, err, j, _ = run_fanout(server, "--rate", 0, "--settle", "1s")
    assert rc == 3, out + err
    assert j["subscribers_ready"] == 50 and j["publishes_ok"] == 100
    assert j["lost"] == 1, out
    assert j["duplicated"] == 1, out
    # The lost one is a gap the next message of that channel revealed.
    assert j["out_of_order"] == 1 and j["gaps"] == 1, out
    assert j["deliveries"] == 1000 and j["delivered"] == 999, out
    assert j["settled"] is False  # the lost message never came: --settle ran out
    assert j["passed"] is False and j["failed_checks"] == ["lost 1", "duplicated 1", "out_of_order 1"]
    assert "check: FAILED (lost 1, duplicated 1, out_of_order 1)" in out
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("behaviour", ["clean", "unresponsive"])
def test_fanout_stalled_subscribers_are_reported_not_checked(tmp_path, behaviour):
    # --stall-percent 10 of 50: the last subscriber of each of the 5 channels
    # stops reading once publishing begins.  clean keeps them (the close
    # phase drains all 20 messages of each, then the tool closes them);
    # unresponsive closes them (1008) when they leave its ping unanswered.
    # Either way the 45 others get every message and the run passes.
    with fanout_server(tmp_path, behaviour) as server:
        started = time.monotonic()
        rc, out, err, j, _ = run_fanout(server, "--rate", 200, "--stall-percent", 10)
    assert rc == 0, out + err
    assert j["stall_percent"] == 10 and j["stalled"] == 5, out
    assert j["subscribers_ready"] == 50 and j["subscribers_checked"] == 45
    assert j["publishes_ok"] == 100
    assert j["expected_deliveries"] == 900 and j["delivered"] == 900 and j["deliveries"] == 900, out
    for key in ("lost", "duplicated", "out_of_order", "misrouted", "malformed", "untracked"):
        assert j[key] == 0, (key, out)
    assert j["latency_us"]["count"] == 900 and j["last_delivery_us"]["count"] == 100
    assert j["settled"] is True and j["passed"] is True, out
    assert j["disconnects_after_success"] == 0 and j["slots_left"] == 0
    if behaviour == "clean":
        assert j["recipients"] == 1000  # the server counted the stalled ones
        assert j["stalled_received"] + j["stalled_drained"] == 100, out
        assert j["stalled_closed_by_server"] == 0 and j["stalled_closed_by_tool"] == 5, out
        assert j["closed_clean"] == 50
    else:
        assert j["stalled_closed_by_server"] == 5 and j["stalled_closed_by_tool"] == 0, out
        assert j["stalled_received"] + j["stalled_drained"] < 100  # publishes after the close never reached them
        assert j["closed_clean"] == 45
    assert "stalled (--stall-percent 10): 5 of the ready stopped reading" in out
    assert "check: PASSED" in out
    assert time.monotonic() - started < 20


def test_fanout_a_refused_publish_is_counted_not_lost(tmp_path):
    # 503 (a worker mailbox was full): counted as a failed publish, and its
    # missing sequence is no gap at the subscribers.
    with fanout_server(tmp_path, "refuse") as server:
        rc, out, err, j, _ = run_fanout(server, "--rate", 0)
    assert rc == 0, out + err
    assert j["publishes_ok"] == 99 and j["publishes_failed"] == 1
    assert j["publish_failures"] == {"http_503": 1}
    assert j["expected_deliveries"] == 990 and j["delivered"] == 990
    assert j["lost"] == 0 and j["out_of_order"] == 0 and j["duplicated"] == 0, out
    assert j["passed"] is True


# ---------------------------------------------------------------- wss://
# Every mode over TLS against a real ringgate (--tls-listen) with a CA made
# at test time (tlsca.py).  The tool verifies the server's certificate
# against --tls-ca; its report's tls section and the server's
# ws_tls_handshakes_total must agree.

@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory):
    from tlsca import TestCA
    return TestCA(tmp_path_factory.mktemp("load-tls-ca"))


@pytest.fixture(scope="module")
def tls_leaf(tls_ca):
    return tls_ca.issue("localhost", key="ec", days=20)


@pytest.fixture
def wss_server(request, ringgate, tls_leaf):
    """ringgate with a TLS listener: --workers 2 plus whatever the test
    parametrizes indirectly."""
    extra = getattr(request, "param", ())
    return ringgate("--tls-listen", "127.0.0.1:0", "--tls-cert-file", tls_leaf.cert_path, "--tls-key-file",
                    tls_leaf.key_path, "--workers", "2", *extra)


def tls_ok(srv, version=None, resumed=None) -> float:
    labels = {"result": "ok"}
    if version is not None:
        labels["version"] = version
    if resumed is not None:
        labels["resumed"] = resumed
    return total(metrics(srv), "ws_tls_handshakes_total", **labels)


def assert_tls_clean(j, n):
    t = j["tls"]
    assert t["failed"] == 0, t
    assert t["handshakes"] == n and t["full"] + t["resumed"] == n, t
    assert sum(t["failures"].values()) == 0 and t["alerts"] == {} and t["first_failure"] is None, t
    assert t["full_ms"]["count"] == t["full"] and t["resumed_ms"]["count"] == t["resumed"], t
    assert t["handshake_ms"]["count"] == n
    assert t["errors_after_handshake"] == 0


@pytest.mark.parametrize("mode_args", [
    ("--inflight", 8, "--size", 20),
    ("--inflight", 4, "--size", 6000, "--text"),  # frames over a recv buffer: split across records and reads
    ("--inflight", 2, "--size", 100000),          # messages over a record buffer: sealed in turns
])
def test_wss_echo_checks_every_byte(wss_server, tls_ca, mode_args):
    rc, out, err, j, _ = run_load(
        "echo", "--connections", 20, *mode_args, "--duration", 1, "--tls-ca", tls_ca.cert_path, "--json",
        wss_server.wss_uri("/echo"), timeout=60)
    assert rc == 0, err
    assert j["upgraded"] == 20 and j["failed_total"] == 0, out
    assert j["msgs"] > 0 and j["bytes_per_s"] > 0
    assert j["mismatches"] == 0 and j["out_of_order"] == 0, out
    assert j["lost"] == 0 and j["duplicates"] == 0 and j["unanswered"] == 0, out
    assert j["protocol_errors"] == 0 and j["disconnects_after_success"] == 0
    assert j["closed_clean"] == 20 and j["slots_left"] == 0, out
    assert_tls_clean(j, 20)
    t = j["tls"]
    assert t["verify"] is True and t["max_version"] == "1.3" and t["resume"] is False
    assert t["tls13"] == 20 and t["full"] == 20
    assert t["handshakes_per_s"] > 0 and t["client_cpu_us_per_handshake"] > 0
    assert "tls handshakes: 20 done: full 20, resumed 0 (TLS 1.3 20, TLS 1.2 0); failed 0" in out
    assert tls_ok(wss_server, "1.3", "0") == 20


def test_wss_hold_opens_and_closes_every_connection_cleanly(wss_server, tls_ca):
    rc, out, err, j, peaks = run_load(
        "hold", "--connections", 1000, "--rate", 1000, "--duration", 1, "--tls-ca", tls_ca.cert_path, "--json",
        wss_server.wss_uri("/echo"), timeout=90, sample_pids=(wss_server.pid,))
    assert rc == 0, err
    assert j["upgraded"] == 1000 and j["held"] == 1000 and j["failed_total"] == 0, out
    assert j["closed_clean"] == 1000 and j["close_timeouts"] == 0 and j["close_errors"] == 0, out
    assert j["slots_left"] == 0 and j["disconnects_after_success"] == 0
    assert_tls_clean(j, 1000)
    assert 0 < peaks["load"] <= FD_BUDGET, peaks  # TLS needs no descriptors of its own
    # What an idle wss connection costs the tool (RSS, BoringSSL's SSL
    # included): a few KiB, not a BIO pair's 34 KiB.  (Not under ASan,
    # whose redzones and quarantine are memory of their own.)
    if "asan" not in str(LOAD_BIN):
        assert 0 < j["client_rss_per_connection"] < 16384, j["client_rss_per_connection"]
    assert "client memory: RSS" in out
    assert tls_ok(wss_server) == 1000
    # The server let every SSL go: nothing half-closed is left behind.
    wait_until(lambda: total(metrics(wss_server), "ws_tls_connections") == 0, 10, what="every server SSL freed")


def test_wss_flood_verifies_an_address_and_every_admitted_connection_echoes(wss_server, tls_ca):
    # wss://127.0.0.1: no SNI, the certificate's IP entry is what is checked.
    rc, out, err, j, _ = run_load(
        "flood", "--connections", 200, "--verify-echo", "--hold", "200ms", "--duration", 20, "--tls-ca",
        tls_ca.cert_path, "--json", wss_server.wss_uri("/echo", host="127.0.0.1"), timeout=60)
    assert rc == 0, err
    assert j["attempted"] == 200 and j["upgraded"] == 200, out
    assert j["breaking_point"] is None
    assert j["held_checked"] == 200 and j["held_echoed"] == 200 and j["held_echo_failed"] == 0, out
    assert j["closed_clean"] == 200 and j["slots_left"] == 0, out
    assert_tls_clean(j, 200)


def test_wss_fanout_with_the_publish_api(wss_server, tls_ca):
    rc, out, err, j, _ = run_load(
        "fanout", "--connections", 100, "--channels", 5, "--messages", 20, "--rate", 500, "--settle", "10s",
        "--api", f"http://127.0.0.1:{wss_server.admin_port}", "--tls-ca", tls_ca.cert_path, "--json",
        wss_server.wss_uri("/ws"), timeout=60)
    assert rc == 0, out + err
    assert j["passed"] is True, j["failed_checks"]
    assert j["subscribers_ready"] == 100
    assert j["publishes_ok"] == 100 and j["recipients"] == 2000
    assert j["delivered"] == 2000 and j["expected_deliveries"] == 2000
    assert j["lost"] == 0 and j["duplicated"] == 0 and j["out_of_order"] == 0 and j["malformed"] == 0
    assert j["closed_clean"] == 100 and j["slots_left"] == 0
    assert_tls_clean(j, 100)
    assert total(metrics(wss_server), "ws_deliveries_total") == 2000


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_wss_resume_reuses_the_threads_session_ticket(wss_server, tls_ca, version):
    # Paced, so that all but the first few start after their thread's first
    # ticket arrived; two threads, each with its own ticket.
    rc, out, err, j, _ = run_load(
        "hold", "--connections", 80, "--rate", 400, "--threads", 2, "--duration", 0, "--tls-resume",
        "--tls-max-version", version, "--tls-ca", tls_ca.cert_path, "--json", wss_server.wss_uri("/echo"),
        timeout=60)
    assert rc == 0, err
    assert j["upgraded"] == 80 and j["closed_clean"] == 80, out
    assert_tls_clean(j, 80)
    t = j["tls"]
    assert t["resume"] is True and t["max_version"] == version
    assert t["tls13" if version == "1.3" else "tls12"] == 80, t
    assert t["full"] >= 2, t  # each thread's first connection has nothing to resume
    assert t["resumed"] >= 40, t  # most start after their thread's first ticket (slower builds: fewer)
    # The server saw the same split.
    assert tls_ok(wss_server, version, "1") == t["resumed"]
    assert tls_ok(wss_server, version, "0") == t["full"]
    assert "tls handshake, resumed: p50" in out


def test_wss_without_resume_every_handshake_is_full(wss_server, tls_ca):
    rc, out, err, j, _ = run_load(
        "hold", "--connections", 40, "--rate", 400, "--duration", 0, "--tls-ca", tls_ca.cert_path, "--json",
        wss_server.wss_uri("/echo"), timeout=60)
    assert rc == 0, err
    assert j["tls"]["full"] == 40 and j["tls"]["resumed"] == 0
    assert tls_ok(wss_server, "1.3", "1") == 0


def test_wss_a_wrong_ca_fails_every_handshake_with_a_clear_message(wss_server, tls_ca, tmp_path):
    from tlsca import TestCA
    other = TestCA(tmp_path / "other-ca", name="not the server's CA")
    rc, out, err, j, _ = run_load(
        "hold", "--connections", 30, "--rate", 300, "--duration", 0, "--tls-ca", other.cert_path, "--json",
        wss_server.wss_uri("/echo"), timeout=60)
    assert rc == 0, err  # the run completed; the report says what failed
    assert j["upgraded"] == 0 and j["failed"]["tls_failed"] == 30 and j["failed_total"] == 30, out
    t = j["tls"]
    assert t["failed"] == 30 and t["handshakes"] == 0
    assert t["failures"]["verify_untrusted"] == 30, t["failures"]
    assert "certificate verify failed" in t["first_failure"], t
    assert "tls failures: verify_untrusted 30" in out
    assert ("30 of 30 TLS handshakes failed (verify_untrusted 30); the first: handshake: certificate verify "
            "failed") in err, err
    assert "is --tls-ca the CA that issued the server's certificate?" in err
    assert j["slots_left"] == 0
    assert tls_ok(wss_server) == 0
    # The right name on the wrong certificate: counted as a name failure.
    rc, out, err, j, _ = run_load(
        "hold", "--connections", 5, "--duration", 0, "--tls-ca", tls_ca.cert_path, "--tls-server-name",
        "elsewhere.test", "--json", wss_server.wss_uri("/echo"), timeout=60)
    assert rc == 0, err
    assert j["tls"]["failures"]["verify_name"] == 5, j["tls"]
    assert "--tls-server-name sets the name checked" in err


@pytest.mark.parametrize("wss_server", [("--workers", "1", "--tls-handshakes-max", "1")], indirect=True)
def test_wss_handshakes_the_server_refuses_are_counted_by_alert(wss_server, tls_ca):
    # One handshake in flight at a time: an unpaced burst of 100 gets
    # ringgate's plaintext internal_error alert for most of them.
    rc, out, err, j, _ = run_load(
        "flood", "--connections", 100, "--duration", 10, "--hold", 0, "--tls-ca", tls_ca.cert_path, "--json",
        wss_server.wss_uri("/echo"), timeout=60)
    assert rc == 0, err
    t = j["tls"]
    refused = t["alerts"].get("internal_error", 0)
    assert refused >= 1, t
    assert t["failures"]["alert"] == refused == j["failed"]["tls_failed"], (t, j["failed"])
    assert t["handshakes"] + t["failed"] == 100 and j["upgraded"] == t["handshakes"], t
    assert "the server sent a fatal alert: internal_error (80)" in t["first_failure"]
    assert "alert_internal_error" in out
    assert total(metrics(wss_server), "ws_tls_refusals_total") == refused


def test_wss_needs_a_ca_or_an_explicit_insecure(tls_ca):
    rc, out, err, _, _ = run_load("hold", "--connections", 1, "wss://127.0.0.1:9/", timeout=10)
    assert rc == 2
    assert "wss:// needs --tls-ca FILE" in err and "--tls-insecure" in err, err
    rc, out, err, _, _ = run_load("hold", "--connections", 1, "--tls-ca", "/nonexistent/ca.pem", "wss://127.0.0.1:9/",
                                  timeout=10)
    assert rc == 2
    assert "--tls-ca /nonexistent/ca.pem: No such file or directory" in err, err
    rc, out, err, _, _ = run_load("hold", "--tls-ca", tls_ca.cert_path, "ws://127.0.0.1:9/", timeout=10)
    assert rc == 2 and "--tls-ca is for wss:// targets" in err, err


def test_wss_insecure_connects_without_verifying(wss_server):
    rc, out, err, j, _ = run_load(
        "echo", "--connections", 5, "--duration", "300ms", "--tls-insecure", "--tls-server-name", "whatever.test",
        "--json", wss_server.wss_uri("/echo"), timeout=60)
    assert rc == 0, err
    assert j["upgraded"] == 5 and j["mismatches"] == 0 and j["msgs"] > 0
    assert j["tls"]["verify"] is False and j["tls"]["failed"] == 0
    assert "certificate NOT verified (--tls-insecure)" in out


SPLIT_101_SERVER = r"""
async def handler(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    answer = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    # The 101 in two reads, the second one ending with a ping frame: the
    # bytes after the headers belong to the WebSocket stream.
    writer.write(answer[:40])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(answer[40:] + frame(9, b"hello"))
    await writer.drain()
    try:
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 8:
                writer.write(frame(8, data))
                await writer.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

asyncio.run(serve(handler))
"""


def test_a_split_101_and_the_frame_behind_it(tmp_path):
    with scripted_server(tmp_path, "split_101", SPLIT_101_SERVER) as m:
        rc, out, err, j, _ = run_load("hold", "--connections", 10, "--rate", 100, "--duration", "300ms", "--json",
                                      f"ws://127.0.0.1:{m.group(1)}/", timeout=60)
        assert rc == 0, err
        assert j["upgraded"] == 10, out
        assert j["pings"] == 10, out
        assert j["protocol_errors"] == 0 and j["closed_clean"] == 10, out
