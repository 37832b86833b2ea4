"""Heartbeats and idle timeouts, with short values so the tests stay quick.

A silent client is a raw socket that upgrades and then never answers
anything; a live one is python3-websockets, which answers pings itself.
"""

import asyncio
import time

import wsraw
from conftest import metrics, run_async, run_ringgate, total, wait_until, ws_connect
from wsraw import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT


def settled(srv, name, value, timeout=2.0):
    """Metrics once `name` reads `value`: a connection's record is released
    when its close completes, a loop turn after the peer may see the FIN."""
    def reads_value():
        m = metrics(srv)
        return m if total(m, name) == value else None
    return wait_until(reads_value, timeout, what=f"{name} == {value}")


def test_silent_client_is_pinged_then_closed_after_pong_timeout(ringgate):
    srv = ringgate("--workers", "1", "--ping-interval", "300ms", "--pong-timeout", "700ms")
    ws, _ = wsraw.handshake(srv.port)
    opened = time.monotonic()
    pings = 0
    closed_after = None
    while time.monotonic() - opened < 5:
        try:
            fr = ws.recv_frame(timeout=5 - (time.monotonic() - opened))
        except (EOFError, ConnectionResetError):  # the server went (a protocol error is a failure)
            closed_after = time.monotonic() - opened
            break
        assert fr.opcode == OP_PING, fr.opcode
        pings += 1
    assert closed_after is not None, "the server never closed a silent client"
    # First ping at ~300 ms, closed ~700 ms later; never before the pong
    # timeout, and well within interval + timeout plus a few loop ticks.
    assert 0.9 <= closed_after <= 2.5, closed_after
    assert pings >= 1
    m = settled(srv, "ws_total_connections", 0)
    assert total(m, "ws_heartbeat_timeouts_total") == 1
    assert total(m, "ws_pings_sent_total") == pings
    ws.close()


def test_client_that_answers_pings_stays_open_and_keeps_echoing(ringgate):
    srv = ringgate("--workers", "2", "--ping-interval", "200ms", "--pong-timeout", "500ms")

    async def run():
        async with ws_connect(srv.uri()) as ws:
            # The subject of the test: idle through several ping intervals and
            # pong timeouts while the library answers the server's pings.
            await asyncio.sleep(2.0)
            await ws.send("still alive")
            return await asyncio.wait_for(ws.recv(), 5)

    assert run_async(run()) == "still alive"
    m = metrics(srv)
    assert total(m, "ws_pings_sent_total") >= 3
    assert total(m, "ws_heartbeat_timeouts_total") == 0


def test_pongs_on_idle_connections_attach_no_session(ringgate):
    """A raw client answers every ping with a masked pong: the connection
    stays open, and the pongs are consumed without a wslay session (the
    pool's high-water mark at shutdown stays 0)."""
    srv = ringgate("--workers", "1", "--ping-interval", "200ms", "--pong-timeout", "400ms")
    ws, _ = wsraw.handshake(srv.port)
    started = time.monotonic()
    answered = 0
    while time.monotonic() - started < 1.5:
        fr = ws.recv_frame(timeout=2)
        assert fr.opcode == OP_PING
        assert ws.send_frame(OP_PONG, fr.payload)
        answered += 1
    assert answered >= 4
    m = metrics(srv)
    assert total(m, "ws_heartbeat_timeouts_total") == 0
    assert total(m, "ws_pongs_received_total") >= answered - 1
    ws.close()
    rc, problem = srv.stop()
    assert rc == 0 and problem is None
    assert "pools high-water: 0 sessions" in srv.log(), srv.log_tail()


def test_idle_connection_gets_close_1000_after_idle_timeout(ringgate):
    srv = ringgate("--workers", "1", "--ping-interval", "0", "--idle-timeout", "500ms")
    quiet, _ = wsraw.handshake(srv.port)
    chatty, _ = wsraw.handshake(srv.port)
    opened = time.monotonic()
    # The chatty one sends every 150 ms and is never closed.
    deadline = opened + 1.6
    while time.monotonic() < deadline:
        assert chatty.echo("tick") == (OP_TEXT, b"tick")
        time.sleep(0.15)  # pacing: the gap between messages is what the idle timer sees
    code, reason, before = quiet.expect_close(timeout=0.1)
    assert (code, reason) == (1000, b"idle timeout")
    assert before == []
    m = settled(srv, "ws_total_connections", 1)
    assert total(m, "ws_idle_closes_total") == 1
    assert chatty.echo("after") == (OP_TEXT, b"after")
    chatty.close()


def test_idle_close_arrives_on_schedule(ringgate):
    srv = ringgate("--workers", "1", "--ping-interval", "0", "--idle-timeout", "400ms")
    ws, _ = wsraw.handshake(srv.port)
    opened = time.monotonic()
    fr = ws.recv_frame(timeout=5)
    waited = time.monotonic() - opened
    assert fr.opcode == OP_CLOSE
    assert 0.35 <= waited <= 1.5, waited
    ws.close()


def test_heartbeat_options_are_validated():
    r = run_ringgate("--ping-interval", "10ms", timeout=10)
    assert r.returncode == 2
    assert "ping_interval and idle_timeout must be 0 (off) or between 100ms" in r.stderr


def test_pongs_and_a_close_in_one_write_need_no_session(ringgate):
    """A client that was not reading answers the pings it finds and closes
    in one write (what a drained slow reader does).  The server answers the
    close without attaching a wslay session to any of them."""
    srv = ringgate("--workers", "1", "--ping-interval", "200ms", "--pong-timeout", "5s")
    conns = [wsraw.handshake(srv.port)[0] for _ in range(20)]
    wait_until(lambda: total(metrics(srv), "ws_pings_sent_total") >= 2 * len(conns), 5,
               what="two pings per connection")
    for ws in conns:
        assert ws.recv_frame(timeout=2).opcode == OP_PING
        pong = wsraw.build_frame(OP_PONG, b"")
        assert ws.send_raw(pong + pong + wsraw.build_frame(OP_CLOSE, wsraw.close_payload(1000)))
    for ws in conns:
        while True:
            fr = ws.recv_frame(timeout=2)
            if fr.opcode == OP_CLOSE:
                assert fr.close_code == 1000
                break
            assert fr.opcode == OP_PING
        ws.sock.close()
    m = settled(srv, "ws_total_connections", 0)
    assert total(m, "ws_pongs_received_total") >= 20
    srv.stop()
    assert "pools high-water: 0 sessions" in srv.log(), srv.log_tail()
