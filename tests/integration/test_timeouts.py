"""Timeouts that protect the server from clients that stall:
--handshake-timeout (slowloris) and --close-timeout (peer never answers close)."""

import signal
import time

import pytest

import wsraw
from wsraw import OP_CLOSE, OP_TEXT, build_frame

BOUND = 5.0   # "within a few seconds" for a 500 ms timeout


@pytest.fixture(scope="module")
def server(ringgate_module):
    return ringgate_module("--handshake-timeout", "500ms", "--close-timeout", "500ms")


def _assert_closed_with_optional_408(sock, what):
    data, how = wsraw.recv_until_eof(sock, BOUND)
    assert how in ("eof", "reset"), f"{what}: connection still open after {BOUND}s"
    if data:
        resp = wsraw.parse_http_response(data)
        assert resp.status == 408, f"{what}: only a 408 may precede the close, got {resp.describe()}"


def test_slowloris_half_request_is_closed(server):
    """With --handshake-timeout 500ms, a client that sends half a request and
    stops is disconnected by the server (optionally after a 408) within a few
    seconds."""
    req = wsraw.build_request(server.port)
    sock = wsraw.connect(server.port)
    with sock:
        sock.sendall(req[:len(req) // 2])
        _assert_closed_with_optional_408(sock, "half request")


def test_silent_client_is_closed(server):
    """A client that connects and sends nothing is disconnected after the
    handshake timeout."""
    sock = wsraw.connect(server.port)
    with sock:
        _assert_closed_with_optional_408(sock, "silent client")


def test_trickling_client_is_closed(server):
    """The handshake timeout is a deadline for the whole request, not an idle
    timer: a client sending one header byte every 100 ms (never finishing)
    is still disconnected within a few seconds."""
    sock = wsraw.connect(server.port)
    with sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nX-Slow: ")
        deadline = time.monotonic() + BOUND
        closed = False
        while time.monotonic() < deadline:
            if not wsraw.send_tolerant(sock, b"a"):
                closed = True
                break
            sock.settimeout(0.1)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if chunk == b"":
                closed = True
                break
            # a 408 may arrive first: keep reading until EOF
        assert closed, "trickling client still connected after 5 s with a 500 ms handshake timeout"


def test_handshake_timeout_does_not_hit_upgraded_connections(server):
    """An upgraded connection that idles past the handshake timeout is NOT
    closed: it still echoes 1.5 s later."""
    ws, _ = wsraw.handshake(server.port)
    with ws:
        time.sleep(1.5)  # the subject: idle past the 500 ms handshake timeout
        assert ws.echo("late") == (OP_TEXT, b"late")


def test_close_timeout_when_peer_never_answers(server):
    """With --close-timeout 500ms: after the server starts the closing
    handshake (here because of invalid UTF-8 -> 1007) and the client never
    answers, the server closes TCP within a few seconds anyway -- both the
    FIN (server done sending) and the full release of its socket (probe data
    then gets RST), so a silent peer cannot pin a connection slot."""
    ws, _ = wsraw.handshake(server.port)
    with ws:
        ws.send_raw(build_frame(OP_TEXT, b"\xff"))
        fr = ws.recv_frame(BOUND)
        assert fr.opcode == OP_CLOSE and fr.close_code == 1007
        assert ws.wait_closed(BOUND), "server kept sending side open past the close timeout"
        assert ws.wait_released(BOUND), "server still holds the socket 5 s after close (close timeout 500ms)"


def test_close_timeout_applies_during_shutdown(ringgate):
    """With --close-timeout 500ms and --drain-timeout 30s, a client that never
    answers the SIGTERM close (1001) is disconnected after the close timeout,
    so the drain finishes and the process exits 0 long before 30 s."""
    srv = ringgate("--close-timeout", "500ms", "--drain-timeout", "30s")
    ws, _ = wsraw.handshake(srv.port)
    with ws:
        srv.signal(signal.SIGTERM)
        fr = ws.recv_frame(BOUND)
        assert fr.opcode == OP_CLOSE and fr.close_code == 1001
        assert ws.wait_closed(BOUND), "connection still open 5 s after the close (close timeout 500ms)"
    rc = srv.wait(BOUND * 2)
    assert rc == 0, f"exit status {rc} (None = still running: drain waited for the silent client)"


def test_default_handshake_timeout_not_too_short(ringgate):
    """With default settings (10 s handshake timeout) a client that takes
    1 s to finish its request is still upgraded."""
    srv = ringgate()
    req = wsraw.build_request(srv.port)
    sock = wsraw.connect(srv.port)
    with sock:
        sock.sendall(req[:20])
        time.sleep(1.0)  # the subject: a slow (but not too slow) client
        sock.sendall(req[20:])
        head, _ = wsraw.read_http_head(sock, 10)
        assert wsraw.parse_http_response(head).status == 101
