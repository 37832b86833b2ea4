"""Misbehaving clients must not cost other connections anything.

Each test is a way one client (or a few) could take memory, pool entries or
answer slots from everyone else, and checks that ringgate bounds it and that a
well-behaved client is still served.
"""

import signal
import socket
import time

import wsraw
from conftest import metrics, rss_kib, total, wait_until
from wsraw import OP_BINARY, OP_CLOSE, OP_TEXT


def test_peer_that_never_reads_cannot_grow_server_memory(ringgate):
    """A client that floods 60 KB messages and never reads its echoes: the
    server stops reading from it once frame_buffer_size is buffered
    (backpressure; echoes of what it had already read are dropped), so the
    client's sends block and the server's RSS stays bounded; another client
    still echoes meanwhile."""
    srv = ringgate("--workers", "1", "--frame-buffer-size", "1MiB", "--slow-consumer-policy", "drop",
                   "--backpressure-timeout", "60s")
    base = rss_kib(srv.pid)
    ws, _ = wsraw.handshake(srv.port, rcvbuf=4096)
    sock = ws.sock
    sock.settimeout(0.5)
    frame = wsraw.build_frame(OP_BINARY, b"x" * 60000)
    sent = 0
    blocked = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sent < (400 << 20):
        try:
            sock.sendall(frame)
            sent += len(frame)
        except socket.timeout:
            blocked = True
            break
    assert blocked, f"the server kept reading {sent >> 20} MiB from a peer that never reads"
    grown = rss_kib(srv.pid) - base
    assert grown < 64 * 1024, f"server RSS grew {grown} KiB for one non-reading peer"
    with wsraw.handshake(srv.port)[0] as other:
        assert other.echo(b"still here") == (OP_BINARY, b"still here")
    ws.close()


def test_stalled_partial_frames_release_their_sessions(ringgate):
    """Four clients each send one byte of a frame header and go silent, with
    max_active_sessions 4: a fifth client is told 1013 while they hold the
    pool, but after stall_timeout they are closed and a new client echoes."""
    srv = ringgate("--workers", "1", "--max-active-sessions", "4", "--stall-timeout", "500ms")
    hoard = []
    for _ in range(4):
        ws, _ = wsraw.handshake(srv.port)
        ws.send_raw(b"\x82")
        hoard.append(ws)

    def newcomer(want_opcode):
        """A new client's first answer to "hello", if it is a `want_opcode` frame."""
        with wsraw.handshake(srv.port)[0] as ws:
            ws.send_text("hello")
            frame = ws.recv_frame(5)
            assert frame.opcode in (OP_TEXT, OP_CLOSE), frame
            return frame if frame.opcode == want_opcode else None

    # Once the server has read the four partial headers, the pool is theirs.
    frame = wait_until(lambda: newcomer(OP_CLOSE), 2, what="a newcomer closed while the four hold the pool")
    assert frame.close_code == 1013, frame
    for ws in hoard:
        # After stall_timeout each stalled connection is told why (1008) or simply closed.
        assert ws.wait_closed(10)
        ws.close()
    frame = wait_until(lambda: newcomer(OP_TEXT), 5, interval_s=0.1, what="an echo once the sessions are released")
    assert frame.payload == b"hello"
    # (Connection log lines are rate-limited, 5 per 10 s: the one 1013 above
    # and the stall closes fit.)
    wait_until(lambda: "made no progress" in srv.log(), 2, what="the stall logged")


def test_drain_sends_1001_to_idle_connections_beyond_the_session_pool(ringgate):
    """SIGTERM with 300 idle connections and max_active_sessions 50: every
    one gets close 1001 (idle connections get a constant close frame, not a
    session), and the process exits 0."""
    srv = ringgate("--workers", "1", "--max-active-sessions", "50")
    conns = [wsraw.handshake(srv.port)[0] for _ in range(300)]
    wait_until(lambda: total(metrics(srv), "ws_total_connections") == 300, 5, what="300 open connections")
    srv.signal(signal.SIGTERM)
    codes = {}
    for ws in conns:
        frame = ws.recv_frame(10)
        code = frame.close_code if frame.opcode == 8 else None
        codes[code] = codes.get(code, 0) + 1
        ws.send_close(1001)
    assert codes == {1001: 300}, codes
    for ws in conns:
        assert ws.wait_closed(10)
        ws.close()
    assert srv.wait(15) == 0


def test_lingering_error_answers_do_not_hold_answer_slots(ringgate):
    """With max_pending_handshakes 4, four clients get 404 and keep their
    sockets open without reading: their answer slots are free as soon as the
    404s are sent, so a valid upgrade right after still gets 101."""
    srv = ringgate("--workers", "1", "--max-pending-handshakes", "4")
    bad = []
    for _ in range(4):
        s = wsraw.connect(srv.port)
        s.sendall(wsraw.build_request(srv.port, "/nope"))
        bad.append(s)
    for s in bad:  # each 404 has been sent (the recv waits for it)
        s.settimeout(5)
        assert s.recv(64).startswith(b"HTTP/1.1 404")
    with wsraw.handshake(srv.port)[0] as ws:
        assert ws.echo("ok") == (OP_TEXT, b"ok")
    for s in bad:
        s.close()


def test_full_table_still_answers_explicitly(ringgate):
    """A worker whose regular table slots are all taken (12 silent clients
    holding them mid-handshake) still answers a newcomer explicitly: it is
    accepted into a reserved slot and gets 503 with Retry-After, instead of
    waiting in the backlog until it times out.  Once a slot frees, new
    connections upgrade again."""
    srv = ringgate("--workers", "1", "--table-slots-per-worker", "16", "--reserved-slots", "4")
    assert "12 slots (+4 reserved for refusals of 16)" in srv.log(), srv.log()
    silent = [wsraw.connect(srv.port) for _ in range(12)]
    wait_until(lambda: total(metrics(srv), "ws_accepted_total") == 12, 5, what="the 12 silent clients accepted")
    for _ in range(6):  # more newcomers than reserved slots: each is answered and let go
        resp = wsraw.http_exchange(srv.port, wsraw.build_request(srv.port), timeout=5)
        assert resp.status == 503, resp.describe()
        assert resp.header("Retry-After") == "60"
    silent.pop().close()
    ws = wait_until(lambda: wsraw.try_handshake(srv.port, timeout=5), 10, what="a 101 once a slot freed")
    with ws:
        assert ws.echo("room again") == (OP_TEXT, b"room again")
    for s in silent:
        s.close()
