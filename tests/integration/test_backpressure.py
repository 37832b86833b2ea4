"""Per-connection buffer accounting, backpressure and the slow-consumer
policies, against real sockets that stop reading.

A slow reader is a raw client with a tiny receive buffer that sends
messages and reads none of the echoes: the echoes fill the kernel's socket
buffers first, then the connection's own buffer in ringgate, where
frame_buffer_size and max_buffered_bytes apply.
"""

import http.client
import select
import socket
import threading
import time

import pytest

import wsraw
from conftest import REPO_ROOT, metrics, ringgate_bin, rss_kib, total, wait_until
from wsraw import OP_BINARY, OP_CLOSE, OP_TEXT


def slow_reader(port, path="/echo"):
    # 4 KiB from the SYN on (see wsraw.connect: set later, the kernel drops
    # what it had already offered room for, and the server's retransmission
    # timer backs off for seconds).
    ws, _ = wsraw.handshake(port, path, rcvbuf=4096)
    return ws


def fast_reader(ws):
    """The slow reader recovers: a 1 MiB receive buffer, and a window clamp
    that lets the advertised window grow to it at once (without the clamp
    the window stays near 4 KiB and every 16 KiB echo takes ~0.4 s)."""
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_WINDOW_CLAMP, 1 << 20)


def push(ws, frame, count, timeout=0.5):
    """Sends up to `count` frames; stops when the server stops reading (no
    progress for `timeout`) or closes.  Returns (whole frames sent, the
    unsent rest of a frame the kernel took only part of)."""
    ws.sock.setblocking(False)
    for i in range(count):
        view = memoryview(frame)
        while view:
            try:
                view = view[ws.sock.send(view):]
            except BlockingIOError:
                _, writable, _ = select.select([], [ws.sock], [], timeout)
                if not writable:
                    ws.sock.setblocking(True)
                    return i, bytes(view)
            except (BrokenPipeError, ConnectionResetError):
                ws.sock.setblocking(True)
                return i, b""
    ws.sock.setblocking(True)
    return count, b""


def read_until_close(ws, timeout=10):
    """Reads frames until the server's close frame; returns (data frames, code, reason)."""
    data = 0
    deadline = time.monotonic() + timeout
    while True:
        fr = ws.recv_frame(timeout=max(0.1, deadline - time.monotonic()))
        if fr.opcode == OP_CLOSE:
            code, reason = wsraw.parse_close(fr.payload)
            return data, code, reason
        data += 1


def test_slow_reader_is_closed_with_1008_and_its_buffer_stops_at_the_limit(ringgate):
    srv = ringgate("--workers", "1", "--frame-buffer-size", "64KiB", "--backpressure-timeout", "30s")
    ws = slow_reader(srv.port)
    message = 16 * 1024
    frame = wsraw.build_frame(OP_BINARY, b"s" * message)
    push(ws, frame, 400)
    ws.sock.settimeout(10)
    # Meanwhile another client is unaffected.
    with wsraw.handshake(srv.port)[0] as other:
        assert other.echo(b"unaffected") == (OP_BINARY, b"unaffected")
    m = metrics(srv)
    assert total(m, "ws_slow_consumer_closes_total") == 1
    assert total(m, "ws_backpressure_activations_total") == 1
    # The buffer stopped at the limit: the message that crossed it, no more.
    assert total(m, "ws_bytes_buffered_max_connection") <= 64 * 1024 + message + 64
    # Reading now (at full speed: close_timeout runs meanwhile) drains the
    # echoes that were buffered, then the close.
    fast_reader(ws)
    echoed, code, reason = read_until_close(ws)
    assert (code, reason) == (1008, b"slow consumer")
    assert echoed >= 1
    ws.close()


def test_drop_policy_drops_while_backpressured_and_the_connection_recovers(ringgate):
    srv = ringgate("--workers", "1", "--frame-buffer-size", "64KiB", "--slow-consumer-policy", "drop",
                   "--backpressure-timeout", "30s")
    ws = slow_reader(srv.port)
    frame = wsraw.build_frame(OP_BINARY, b"d" * (16 * 1024))
    sent, rest = push(ws, frame, 400)
    m = metrics(srv)
    dropped = total(m, "ws_slow_consumer_drops_total")
    assert dropped >= 1 and total(m, "ws_slow_consumer_closes_total") == 0
    assert total(m, "ws_backpressure_activations_total") >= 1
    assert total(m, "ws_bytes_buffered_max_connection") <= 64 * 1024 + 16 * 1024 + 64
    # Draining ends backpressure; reading resumes and echoes work again.  The
    # frame the kernel took only part of is finished first.
    if rest:
        finisher = threading.Thread(target=ws.sock.sendall, args=(rest,), daemon=True)
        finisher.start()
        finisher.join(10)
        assert not finisher.is_alive()
        sent += 1
    fast_reader(ws)
    received = 0
    marker_sent = False
    deadline = time.monotonic() + 20
    while True:
        assert time.monotonic() < deadline, f"no echo after the drain ({received} echoes, marker sent: {marker_sent})"
        idle = not ws.buf and not select.select([ws.sock], [], [], 0.05)[0]
        if idle:
            # Nothing to read: once the server is no longer backpressured a
            # new message must be read and echoed, not dropped.
            if not marker_sent and total(metrics(srv), "ws_backpressured_connections") == 0:
                assert ws.send_frame(OP_TEXT, b"after the drain")
                marker_sent = True
            continue
        fr = ws.recv_frame(timeout=10)
        if fr.opcode == OP_TEXT:
            assert marker_sent and fr.payload == b"after the drain", fr
            break
        assert fr.opcode == OP_BINARY, fr
        received += 1
    # Every message was either echoed or dropped, never both, never lost.
    m = metrics(srv)
    assert received + total(m, "ws_slow_consumer_drops_total") == sent
    assert total(m, "ws_backpressured_connections") == 0
    assert total(m, "ws_backpressure_duration_seconds_count") == total(m, "ws_backpressure_activations_total")
    ws.close()


def test_backpressure_timeout_closes_a_reader_that_never_drains(ringgate):
    """The client keeps sending and never reads: whenever the kernel takes
    some output and backpressure lifts, more echoes pile up, until ringgate
    holds more than frame_buffer_size for backpressure_timeout; then it is a
    slow consumer and goes, even under the drop policy."""
    srv = ringgate("--workers", "1", "--frame-buffer-size", "64KiB", "--slow-consumer-policy", "drop",
                   "--backpressure-timeout", "500ms", "--close-timeout", "500ms")
    ws = slow_reader(srv.port)
    frame = wsraw.build_frame(OP_BINARY, b"t" * (16 * 1024))
    stop = threading.Event()

    def pusher():
        while not stop.is_set():
            sent, rest = push(ws, frame, 50, timeout=0.2)
            if rest == b"" and sent < 50:
                return  # closed
            if rest:
                # A timeout only means ringgate is not reading right now
                # (backpressure): keep pushing, or a reader that drained part
                # of the way at backpressure_timeout would get no more input
                # and never be closed.  Only a dead socket ends the pusher.
                ws.sock.settimeout(0.2)
                view = memoryview(rest)
                while view and not stop.is_set():
                    try:
                        view = view[ws.sock.send(view):]
                    except socket.timeout:
                        continue
                    except OSError:
                        return

    thread = threading.Thread(target=pusher, daemon=True)
    thread.start()
    try:
        wait_until(lambda: total(metrics(srv), "ws_slow_consumer_closes_total") >= 1, 20,
                   what="a slow-consumer close after backpressure_timeout")
        # The close frame waits behind output the peer does not read;
        # close_timeout then ends the TCP connection.
        wait_until(lambda: total(metrics(srv), "ws_total_connections") == 0, 5,
                   what="the slow consumer released after close_timeout")
    finally:
        stop.set()
        thread.join(5)
        ws.close()


def test_many_slow_readers_stay_within_the_global_budget(ringgate):
    """1,000 slow readers at once against max_buffered_bytes 2 MiB: the
    buffered bytes never pass the budget (messages beyond it are dropped and
    counted), the server's memory does not grow with them, and it still
    serves a new client."""
    budget = 2 * 1024 * 1024
    srv = ringgate("--workers", "1", "--frame-buffer-size", "64KiB", "--slow-consumer-policy", "drop",
                   "--max-buffered-bytes", "2MiB", "--backpressure-timeout", "60s")
    base = rss_kib(srv.pid)
    readers = []
    for _ in range(1000):
        ws = slow_reader(srv.port)
        ws.sock.setblocking(False)
        readers.append(ws)
    frame = wsraw.build_frame(OP_BINARY, b"g" * (16 * 1024))
    for _ in range(12):
        for ws in readers:
            try:
                ws.sock.send(frame)  # a partial send is fine: these connections are abandoned
            except BlockingIOError:
                pass
        assert total(metrics(srv), "ws_bytes_buffered") <= budget

    def settled_within_budget():
        m = metrics(srv)
        assert total(m, "ws_bytes_buffered") <= budget
        # The budget holds echo output and messages being received alike: an
        # echo past it is dropped (drop policy), a message that finds no room
        # is refused with close 1013.
        hit = total(m, "ws_buffer_budget_hits_total") + total(m, "ws_inbound_refusals_total") > 0
        return m if hit and total(m, "ws_backpressured_connections") == 0 else None

    m = wait_until(settled_within_budget, 20, interval_s=0.1,
                   what="a budget hit and no connection left backpressured")
    assert total(m, "ws_slow_consumer_drops_total") >= total(m, "ws_buffer_budget_hits_total")
    limit = [v for (n, l), v in m.items() if n == "ringgate_budget_limit" and dict(l).get("budget") == "buffered_bytes"]
    assert limit == [budget]
    grown = rss_kib(srv.pid) - base
    # Under AddressSanitizer freed memory sits in its quarantine (up to
    # 256 MiB), so RSS says nothing there; the buffered-bytes bound above does.
    if "asan" not in str(ringgate_bin()):
        assert grown < 96 * 1024, f"server RSS grew {grown} KiB for 1,000 slow readers"
    with wsraw.handshake(srv.port)[0] as ws:
        assert ws.echo("still serving") == (OP_TEXT, b"still serving")
    for ws in readers:
        ws.close()


def test_a_full_buffer_budget_refuses_new_handshakes_with_503(ringgate):
    """One subscriber that never reads holds the whole budget
    (max_buffered_bytes 1 MiB, below its own frame_buffer_size): new
    handshakes get 503 counted as buffered_bytes, until it goes.  (Deliveries
    only: an echo client that never reads would be refused its next message
    with 1013 once the budget is full, since reassembly shares it.)"""
    budget = 1024 * 1024
    srv = ringgate("--workers", "1", "--frame-buffer-size", "4MiB", "--slow-consumer-policy", "drop",
                   "--max-buffered-bytes", "1MiB")
    whale = slow_reader(srv.port, "/ws?channels=whale")
    body = b'"' + b"w" * (30 * 1000) + b'"'
    api = http.client.HTTPConnection("127.0.0.1", srv.admin_port, timeout=10)

    def refusal():
        """The 503 a newcomer gets once the whale holds (nearly) the whole budget."""
        # Loopback send buffers autotune up to net.ipv4.tcp_wmem's max, and
        # ringgate buffers only what the kernel will not take: keep publishing.
        for _ in range(8):
            api.request("POST", "/publish/whale", body=body)
            r = api.getresponse()
            r.read()
            assert r.status == 200, r.status
        if total(metrics(srv), "ws_bytes_buffered") * 100 < budget * 95:
            return None
        try:
            wsraw.handshake(srv.port, timeout=5)[0].close()  # not full yet: upgraded, try again
            return None
        except wsraw.UpgradeRefused as refused:
            assert refused.status == 503, refused.response.describe()
            return refused.response

    resp = wait_until(refusal, 30, interval_s=0.01, what="a 503 while the whale holds the budget")
    api.close()
    assert resp.header("Retry-After") == "60"
    m = metrics(srv)
    assert sum(v for (n, l), v in m.items() if n == "ws_handshake_failures_total"
               and dict(l).get("reason") == "buffered_bytes") == 1
    assert total(m, "ws_bytes_buffered") <= budget
    assert total(m, "ws_buffer_budget_hits_total") >= 1
    whale.close()
    wait_until(lambda: total(metrics(srv), "ws_bytes_buffered") == 0, 10,
               what="the whale's buffered bytes released once it closed")
    with wsraw.handshake(srv.port)[0] as ws:
        assert ws.echo("room again") == (OP_TEXT, b"room again")


@pytest.mark.parametrize("profile,connections,buffer,drain", [
    ("production", 1000, 102400, "0.50"),
    ("high-throughput", 5000, 1048576, "0.30"),
    ("constrained", 100, 10240, "0.70"),
])
def test_shipped_profiles_load_and_set_what_they_document(ringgate, profile, connections, buffer, drain):
    srv = ringgate("--config", str(REPO_ROOT / "profiles" / f"{profile}.toml"))
    log = srv.log()
    assert f"capacity={connections} connections" in log, log
    assert f"buffering: {buffer} bytes per connection before backpressure (off at {drain})" in log, log
    with wsraw.handshake(srv.port)[0] as ws:
        assert ws.echo("profiled") == (OP_TEXT, b"profiled")
