"""Hostile clients against the data path's budgets (the hardening issue).

- Half-sent messages are charged to max_buffered_bytes: a flood of them stays
  inside the budget (those that find no room are refused with close 1013 when
  their frame ends) while a bystander's echo works,
  and every gauge reads 0 once the connections are gone.
- A trickle cannot hold a half-sent message: mid-message, only
  min_message_rate bytes per second push the stall timer back (close 1008).
- The echo endpoint can be switched off, or made to require a token.
"""

import struct
import time

import pytest

import wsraw
from conftest import metrics, total, wait_until
from test_pubsub import token

KIB = 1024
MIB = 1024 * KIB


def start_message(port: int, declared: int, first: int):
    """An upgraded raw connection that declared a binary frame of `declared`
    bytes and sent `first` of them (masked with a zero key, so the payload is
    sent as is)."""
    ws, _ = wsraw.handshake(port)
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, declared) + b"\0\0\0\0"
    ws.send_raw(header + b"\xab" * first)
    return ws


def close_code(ws, timeout=10.0):
    """The server's close code (and reason), or None if TCP ended without one."""
    try:
        code, reason, _ = ws.expect_close(timeout=timeout, reply=True)
        return code, reason
    except AssertionError:
        return None, b""


def test_half_sent_messages_are_charged_to_the_budget_and_refused_inside_it(ringgate):
    budget = 4 * MIB
    srv = ringgate("--workers", "1", "--max-buffered-bytes", "4MiB", "--max-message-size", "1MiB",
                   "--max-frame-size", "1MiB", "--stall-timeout", "30s")
    # 24 clients each hold 256 KiB of a 512 KiB message: 6 MiB wanted, 4 MiB allowed.
    flood = []
    for _ in range(24):
        flood.append(start_message(srv.port, 512 * KIB, 256 * KIB))
    # The messages that fit are charged while they are held; the others hold
    # nothing (their bytes are read and dropped until their frame ends).
    wait_until(lambda: total(metrics(srv), "ws_inbound_bytes") >= 3 * MIB, 10,
               what="the half-sent messages that fit charged to the budget")
    time.sleep(0.5)  # every client's 256 KiB read
    m = metrics(srv)
    assert total(m, "ws_bytes_buffered") <= budget, m.get("ws_bytes_buffered")
    assert total(m, "ws_inbound_bytes") <= budget
    assert total(m, "ws_segment_bytes") <= budget + 64 * KIB

    # A bystander still gets its echo.
    with wsraw.handshake(srv.port)[0] as bystander:
        bystander.send_text("still here")
        assert bystander.recv_message(timeout=5) == (wsraw.OP_TEXT, b"still here")
        bystander.send_close(1000)

    # Each message is finished: one that found no room is refused when its
    # frame ends (the same close however its bytes were split into reads),
    # with 1013 naming the budget; the others are echoed.
    for ws in flood:
        ws.send_raw(b"\xab" * (256 * KIB))
    refused = 0
    echoed = 0
    for ws in flood:
        try:
            opcode, payload = ws.recv_message(timeout=10)
        except wsraw.ServerClosed as closed:
            assert closed.code == 1013, (closed.code, closed.reason)
            assert b"buffer budget" in closed.reason, closed.reason
            refused += 1
            continue
        assert (opcode, len(payload)) == (wsraw.OP_BINARY, 512 * KIB)
        echoed += 1
    assert refused > 0 and echoed > 0, (refused, echoed)
    assert refused == total(metrics(srv), "ws_inbound_refusals_total")

    # Once every connection has gone, the gauges say so.
    for ws in flood:
        ws.close()
    def drained():
        m = metrics(srv)
        return all(total(m, name) == 0 for name in
                   ("ws_bytes_buffered", "ws_inbound_bytes", "ws_segment_bytes", "ws_segments_live",
                    "ws_total_connections"))
    wait_until(drained, 10, what="buffered, inbound and segment gauges at 0 after every close")


def test_a_trickle_cannot_hold_a_half_sent_message(ringgate):
    srv = ringgate("--workers", "1", "--stall-timeout", "2s", "--min-message-rate", "1KiB")
    trickler = start_message(srv.port, 64 * KIB, 1 * KIB)
    steady = start_message(srv.port, 64 * KIB, 1 * KIB)
    started = time.monotonic()
    # One byte every 0.25 s keeps the old stall timer (any byte was progress)
    # alive forever; it earns nothing against 2 KiB per 2 s window.  The
    # steady sender's 2 KiB every 0.5 s is a real upload and completes.
    closed_at = None
    sent = 1 * KIB
    while time.monotonic() - started < 8 and closed_at is None:
        trickler.send_raw(b"\xab")
        if sent < 64 * KIB:
            chunk = min(2 * KIB, 64 * KIB - sent) if int((time.monotonic() - started) * 4) % 2 == 0 else 0
            if chunk:
                steady.send_raw(b"\xcd" * chunk)
                sent += chunk
        time.sleep(0.25)
        if trickler.poll(0.01):  # the close frame, kept for close_code()
            closed_at = time.monotonic()
    assert closed_at is not None, "the trickler was still connected after 8 s"
    assert closed_at - started < 5, f"closed after {closed_at - started:.1f} s: stall_timeout is 2 s"
    code, reason = close_code(trickler)
    assert code == 1008 and b"min_message_rate" in reason, (code, reason)
    assert total(metrics(srv), "ws_message_timeouts_total") == 1
    # The steady one finishes its message and gets it back whole.
    while sent < 64 * KIB:
        steady.send_raw(b"\xcd" * min(8 * KIB, 64 * KIB - sent))
        sent += min(8 * KIB, 64 * KIB - sent)
    opcode, payload = steady.recv_message(timeout=10)
    assert opcode == wsraw.OP_BINARY and len(payload) == 64 * KIB
    assert payload[:KIB] == b"\xab" * KIB and payload[KIB:] == b"\xcd" * (63 * KIB)
    steady.send_close(1000)
    steady.close()


def test_echo_path_off_answers_404_and_pubsub_still_works(ringgate):
    srv = ringgate("--workers", "1", "--echo-path", "off")
    with pytest.raises(wsraw.UpgradeRefused) as refused:
        wsraw.handshake(srv.port, "/echo")
    assert refused.value.response.status == 404
    ws, _ = wsraw.handshake(srv.port, "/ws?channels=news")
    with ws:
        opcode, payload = ws.recv_message(timeout=5)
        assert b'"subscribed"' in payload


def test_both_endpoints_off_or_echo_auth_without_auth_refuse_to_start(ringgate):
    srv = ringgate("--echo-path", "off", "--pubsub-path", "off", require_listening=False)
    srv.expected_exit = None  # asserted here
    assert not srv.listening and srv.returncode != 0
    assert "no endpoint" in srv.log()
    srv = ringgate("--echo-auth", "jwt", require_listening=False)
    srv.expected_exit = None
    assert not srv.listening and srv.returncode != 0
    assert "echo_auth = jwt needs auth = jwt" in srv.log()


def test_echo_auth_jwt_requires_a_token_on_the_echo_endpoint(ringgate, tmp_path):
    key = b"echo-auth-test-key-0123456789abcdef"
    (tmp_path / "jwt.key").write_bytes(key)
    srv = ringgate("--workers", "1", "--auth", "jwt", "--jwt-secret-file", str(tmp_path / "jwt.key"),
                   "--echo-auth", "jwt")
    with pytest.raises(wsraw.UpgradeRefused) as refused:
        wsraw.handshake(srv.port, "/echo")
    assert refused.value.response.status == 401
    assert b"token is required" in refused.value.response.body
    with pytest.raises(wsraw.UpgradeRefused) as refused:
        wsraw.handshake(srv.port, "/echo?token=" + token(key=b"another-key-0123456789abcdefghijkl"))
    assert refused.value.response.status == 401
    ws, _ = wsraw.handshake(srv.port, "/echo?token=" + token(key=key))
    with ws:
        ws.send_text("authorised")
        assert ws.recv_message(timeout=5) == (wsraw.OP_TEXT, b"authorised")
        ws.send_close(1000)


def test_an_echo_larger_than_half_the_budget_comes_back(ringgate):
    """The message being echoed leaves the inbound account as its echo joins
    the outbound one: a 1 MiB echo fits a 1.5 MiB budget (it is not charged
    twice, which would close the client as a slow consumer)."""
    srv = ringgate("--workers", "1", "--max-buffered-bytes", "1536KiB", "--max-message-size", "1MiB",
                   "--max-frame-size", "1MiB", "--frame-buffer-size", "2MiB")
    ws, _ = wsraw.handshake(srv.port)
    with ws:
        payload = bytes(range(256)) * 4096  # 1 MiB
        ws.send_binary(payload)
        assert ws.recv_message(timeout=10) == (wsraw.OP_BINARY, payload)
        ws.send_close(1000)
    m = metrics(srv)
    assert total(m, "ws_slow_consumer_closes_total") == 0
    assert total(m, "ws_inbound_refusals_total") == 0
