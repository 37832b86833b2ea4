"""Admission control at accept time: per_ip_limit (429) and accept_rate
(token bucket + bounded FIFO queue, 503 on overflow or timeout).

Clients are raw sockets bound to distinct loopback source addresses
(127.0.0.2, 127.0.0.3, ...), so the server sees distinct client IPs.  Every
refusal must be an explicit HTTP answer with Retry-After and a JSON body;
nothing may hang.  /metrics is parsed with python3-prometheus-client and
checked against what the test did.
"""

import json
import socket
import time

import pytest

import wsraw
from test_admin import admin_port, get, samples, total
from wsraw import OP_TEXT


def connect_from(source, port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def upgrade_from(source, port, timeout=5.0):
    """Upgrade from `source`; returns ("101", RawWS) or (status, HttpResponse)."""
    s = connect_from(source, port, timeout)
    key = wsraw.new_key()
    wsraw.send_tolerant(s, wsraw.build_request(port, key=key))
    head, leftover = wsraw.read_http_head(s, timeout)
    resp = wsraw.parse_http_response(head)
    if resp.status == 101:
        ws = wsraw.RawWS(s, leftover)
        ws.key = key
        return 101, ws
    more, how = wsraw.recv_until_eof(s, timeout)
    s.close()
    resp = wsraw.parse_http_response(head + leftover + more)
    resp.how = how
    return resp.status, resp


def metrics(srv):
    status, _, body = get(admin_port(srv), "/metrics")
    assert status == 200
    return samples(body)


def by_reason(m, reason):
    return sum(v for (n, labels), v in m.items()
               if n == "ws_handshake_failures_total" and dict(labels).get("reason") == reason)


def assert_refusal(resp, status, words):
    assert resp.status == status, resp.describe()
    assert resp.header("Retry-After") == "60"
    assert resp.header("Content-Type") == "application/json"
    body = json.loads(resp.body)
    assert body["retry_after_seconds"] == 60
    assert words in body["message"], body
    assert resp.how == "eof", resp.how  # an orderly close, never a reset


def test_per_ip_limit_answers_429_per_address_and_frees_on_close(ringgate):
    """per_ip_limit 3 over two workers: a fourth connection from one address
    gets 429 while other addresses still upgrade; closing one frees a place."""
    srv = ringgate("--workers", "2", "--per-ip-limit", "3")
    held = []
    for _ in range(3):
        status, ws = upgrade_from("127.0.0.2", srv.port)
        assert status == 101
        held.append(ws)
    status, resp = upgrade_from("127.0.0.2", srv.port)
    assert_refusal(resp, 429, "per_ip_limit")
    assert resp.reason == "Too Many Requests"
    assert json.loads(resp.body)["error"] == "Too Many Requests"
    # Another address is unaffected, and the held connections still echo.
    others = []
    for _ in range(3):
        status, ws = upgrade_from("127.0.0.3", srv.port)
        assert status == 101
        others.append(ws)
    for ws in held + others:
        assert ws.echo("still here") == (OP_TEXT, b"still here")
    # A close frees a place for the address (the count follows the release).
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:
        status, got = upgrade_from("127.0.0.2", srv.port)
        if status == 101:
            held.append(got)
            break
        assert status == 429 and time.monotonic() < deadline
        time.sleep(0.05)
    m = metrics(srv)
    refused_429 = total(m, "ws_per_ip_rejections_total")
    assert refused_429 >= 1 and refused_429 == by_reason(m, "per_ip")
    assert total(m, "ws_connection_limit_rejections_total") == refused_429
    assert total(m, "ws_total_connections") == 6
    for ws in held + others:
        ws.close()


def test_per_ip_limit_counts_handshakes_in_progress(ringgate):
    """Connections that have not sent a request yet count too: a client
    cannot hold the limit's worth of half-open sockets and then more."""
    srv = ringgate("--workers", "1", "--per-ip-limit", "2")
    silent = [connect_from("127.0.0.4", srv.port) for _ in range(2)]
    time.sleep(0.2)  # both accepted
    status, resp = upgrade_from("127.0.0.4", srv.port)
    assert_refusal(resp, 429, "per_ip_limit")
    for s in silent:
        s.close()
    deadline = time.monotonic() + 5
    while True:
        status, got = upgrade_from("127.0.0.4", srv.port)
        if status == 101:
            got.close()
            break
        assert status == 429 and time.monotonic() < deadline
        time.sleep(0.05)


def test_per_ip_limit_applies_to_ipv6_clients(ringgate):
    srv = ringgate("--listen", "[::1]:0", "--workers", "1", "--per-ip-limit", "1")
    first = socket.create_connection(("::1", srv.port), timeout=5)
    key = wsraw.new_key()
    first.sendall(wsraw.build_request(srv.port, key=key))
    head, leftover = wsraw.read_http_head(first)
    assert wsraw.parse_http_response(head).status == 101
    second = socket.create_connection(("::1", srv.port), timeout=5)
    second.sendall(wsraw.build_request(srv.port))
    raw, how = wsraw.recv_until_eof(second)
    resp = wsraw.parse_http_response(raw)
    resp.how = how
    assert_refusal(resp, 429, "per_ip_limit")
    first.close()
    second.close()


def test_accept_queue_timeout_answers_503_never_hangs(ringgate):
    """accept_rate 1/s with a burst of 1 and a 500 ms queue timeout: of five
    simultaneous connections one upgrades at once and four wait, then get
    503 when no token arrives in time: none is left hanging."""
    srv = ringgate("--workers", "1", "--accept-rate", "1", "--accept-burst", "1",
                   "--accept-queue-timeout", "500ms", "--accept-queue-max", "100")
    socks = [connect_from("127.0.0.2", srv.port) for _ in range(5)]
    for s in socks:
        s.sendall(wsraw.build_request(srv.port))
    statuses = []
    started = time.monotonic()
    for s in socks:
        head, leftover = wsraw.read_http_head(s, timeout=5)
        resp = wsraw.parse_http_response(head)
        if resp.status == 101:
            statuses.append(101)
            continue
        more, how = wsraw.recv_until_eof(s, 5)
        resp = wsraw.parse_http_response(head + leftover + more)
        resp.how = how
        assert_refusal(resp, 503, "accept_rate")
        statuses.append(503)
    elapsed = time.monotonic() - started
    for s in socks:
        s.close()
    assert sorted(statuses) == [101, 503, 503, 503, 503]
    assert elapsed < 3, elapsed  # the 500 ms timeout plus ticks, not the 10 s handshake timeout
    m = metrics(srv)
    assert by_reason(m, "accept_queue_timeout") == 4
    assert total(m, "ws_accept_queue_rejections_total") == 4
    assert total(m, "ws_accept_queued_total") == 4
    assert total(m, "ws_accept_queue_depth") == 0


def test_accept_rate_burst_is_served_or_refused_never_hung(ringgate):
    """A burst of 60 against accept_rate 20/s, burst 5, queue 10: every
    attempt ends in 101 or an explicit 503 well within the handshake
    timeout; queued ones that got a token upgraded; the counts agree with
    /metrics."""
    srv = ringgate("--workers", "1", "--accept-rate", "20", "--accept-burst", "5",
                   "--accept-queue-max", "10", "--accept-queue-timeout", "2s")
    socks = [connect_from("127.0.0.%d" % (2 + i % 3), srv.port) for i in range(60)]
    for s in socks:
        s.sendall(wsraw.build_request(srv.port))
    upgraded, refused = [], 0
    for s in socks:
        head, leftover = wsraw.read_http_head(s, timeout=8)
        resp = wsraw.parse_http_response(head)
        if resp.status == 101:
            upgraded.append(wsraw.RawWS(s, leftover))
            continue
        more, how = wsraw.recv_until_eof(s, 5)
        resp = wsraw.parse_http_response(head + leftover + more)
        resp.how = how
        assert_refusal(resp, 503, "accept_rate")
        refused += 1
        s.close()
    assert len(upgraded) + refused == 60
    # The burst, plus the queue served at 20/s within 2 s, and no more
    # than burst + queue + what the bucket refills during the test.
    assert 5 <= len(upgraded) <= 5 + 10 + 20 * 3, len(upgraded)
    assert refused >= 60 - 5 - 10 - 20 * 3
    for ws in upgraded:
        assert ws.echo("ok") == (OP_TEXT, b"ok")
        ws.close()
    m = metrics(srv)
    assert total(m, "ws_handshake_successes_total") == len(upgraded)
    assert total(m, "ws_accept_queue_rejections_total") == refused
    assert total(m, "ws_accept_queue_depth") == 0
    served_from_queue = [v for (n, _), v in m.items() if n == "ws_accept_queue_wait_seconds_count"]
    assert served_from_queue and served_from_queue[0] == total(m, "ws_accept_queued_total") - by_reason(
        m, "accept_queue_timeout")


def test_admission_options_are_validated():
    from conftest import ringgate_bin
    import subprocess
    r = subprocess.run([str(ringgate_bin()), "--accept-rate", "10", "--accept-queue-timeout", "10ms"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "accept_queue_timeout must be between 100ms" in r.stderr
