"""Graceful shutdown on SIGTERM and forced shutdown on a second SIGTERM."""

import asyncio
import signal
import time

import wsraw
from conftest import run_async, ws_connect
from wsraw import OP_CLOSE

T = 15


def test_sigterm_closes_all_connections_with_1001(ringgate):
    """20 open connections (over 2 workers) each receive a close frame with
    code 1001 (going away) after SIGTERM; the conforming clients answer, and
    the process exits with status 0 well within --drain-timeout."""
    srv = ringgate("--workers", "2", "--drain-timeout", "10s")

    async def main():
        conns = []
        for i in range(20):
            ws = await ws_connect(srv.uri(), open_timeout=T, close_timeout=T)
            await ws.send(f"hi {i}")
            assert await asyncio.wait_for(ws.recv(), T) == f"hi {i}"
            conns.append(ws)
        srv.signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in conns)), T)
        codes = [ws.close_code for ws in conns]
        assert codes == [1001] * 20, f"close codes after SIGTERM: {codes}"

    run_async(main(), 60)
    rc = srv.wait(12)  # drain timeout 10 s + margin
    assert rc is not None, "server did not exit within the drain timeout"
    assert rc == 0, f"exit status {rc}"


def test_sigterm_raw_client_sees_1001_then_tcp_close(ringgate):
    """A raw client sees the server's close frame 1001 and, once it answers,
    the server closes TCP and exits 0."""
    srv = ringgate()
    ws, _ = wsraw.handshake(srv.port)
    with ws:
        srv.signal(signal.SIGTERM)
        code, _, before = ws.expect_close(T, reply=True)
        assert code == 1001 and not before
    assert srv.wait(T) == 0


def test_sigterm_with_no_connections_exits_promptly(ringgate):
    """An idle server exits 0 promptly (< 5 s) on SIGTERM."""
    srv = ringgate()
    start = time.monotonic()
    srv.signal(signal.SIGTERM)
    rc = srv.wait(5)
    assert rc == 0, f"exit status {rc} (None = still running after 5 s)"
    assert time.monotonic() - start < 5


def test_drain_timeout_bounds_shutdown(ringgate):
    """With --drain-timeout 1s and --close-timeout 30s, a client that never
    answers the close cannot hold the shutdown: the process exits within a
    few seconds.  (The exit status is not specified for an expired drain, so
    it is not asserted; sanitizer reports are still checked at teardown.)"""
    srv = ringgate("--drain-timeout", "1s", "--close-timeout", "30s")
    srv.expected_exit = None  # not specified for a forced exit
    ws, _ = wsraw.handshake(srv.port)
    with ws:
        srv.signal(signal.SIGTERM)
        rc = srv.wait(8)
        assert rc is not None, "server still running 8 s after SIGTERM with a 1 s drain timeout"


def test_second_sigterm_forces_exit(ringgate):
    """With --drain-timeout 30s (and a long close timeout) a raw client that
    never answers the close keeps the server draining; a SECOND SIGTERM makes
    it exit promptly (< 5 s).  The exit status may be non-zero."""
    srv = ringgate("--drain-timeout", "30s", "--close-timeout", "30s")
    srv.expected_exit = None  # not specified for a forced exit
    ws, _ = wsraw.handshake(srv.port)
    with ws:
        srv.signal(signal.SIGTERM)
        fr = ws.recv_frame(T)  # the server started closing us; we never answer
        assert fr.opcode == OP_CLOSE and fr.close_code == 1001
        time.sleep(0.5)  # the subject: nothing happens for a while (the drain goes on)
        assert srv.alive(), ("server exited although a client had not answered the close "
                             "(drain-timeout 30s, close-timeout 30s)")
        start = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait(5)
        assert rc is not None, "server still running 5 s after the second SIGTERM"
        assert time.monotonic() - start < 5


def test_drain_grace_keeps_serving_with_readyz_503_then_drains(ringgate):
    """With --drain-grace, SIGTERM turns /readyz 503 at once while open
    connections echo and newcomers are still served; the 1001s come when the
    grace is over, and the process exits 0."""
    from conftest import admin_get, wait_until
    srv = ringgate("--drain-grace", "1500ms")
    ws, _ = wsraw.handshake(srv.port)
    with ws:
        srv.signal(signal.SIGTERM)
        signalled = time.monotonic()
        wait_until(lambda: admin_get(srv.admin_port, "/readyz")[0] == 503, 2, 0.02, "/readyz 503")
        assert "leaving" in admin_get(srv.admin_port, "/readyz")[2]
        assert ws.echo(b"during the grace")[1] == b"during the grace"
        with wsraw.handshake(srv.port)[0] as newcomer:
            assert newcomer.echo(b"new")[1] == b"new"
        code = ws.expect_close(T)[0]
        assert code == 1001
        assert time.monotonic() - signalled >= 1.4, "the drain began before drain_grace was over"
    assert srv.wait(T) == 0


def test_a_second_signal_during_drain_grace_drains_at_once(ringgate):
    """Impatience during the grace skips what is left of it, not the drain:
    the client still gets 1001 and the exit is clean."""
    srv = ringgate("--drain-grace", "60s")
    ws, _ = wsraw.handshake(srv.port)
    with ws:
        srv.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert not ws.poll(0.2), "a close came during the grace"
        srv.signal(signal.SIGTERM)
        code = ws.expect_close(T)[0]
        assert code == 1001
    assert srv.wait(T) == 0
