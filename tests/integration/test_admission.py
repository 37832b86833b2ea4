"""Admission control at accept time: per_ip_limit (429) and accept_rate
(token bucket + bounded FIFO queue, 503 on overflow or timeout).

Clients are raw sockets bound to distinct loopback source addresses
(127.0.0.2, 127.0.0.3, ...), so the server sees distinct client IPs.  Every
refusal must be an explicit HTTP answer with Retry-After and a JSON body;
nothing may hang.  /metrics is parsed with python3-prometheus-client and
checked against what the test did.
"""

import json
import time

import pytest

import wsraw
from conftest import metrics, run_ringgate, total, wait_until
from wsraw import OP_TEXT


def upgrade_from(source, port):
    """An upgraded RawWS from local address `source` (fails on a refusal)."""
    return wsraw.handshake(port, source=source, timeout=5)[0]


def refusal_from(source, port):
    """The whole refusal `source` gets for an upgrade (fails on a 101)."""
    with pytest.raises(wsraw.UpgradeRefused) as refused:
        wsraw.handshake(port, source=source, timeout=5)[0].close()
    return refused.value.response


def assert_refusal(resp, status, words):
    assert resp.status == status, resp.describe()
    assert resp.header("Retry-After") == "60"
    assert resp.header("Content-Type") == "application/json"
    body = json.loads(resp.body)
    assert body["retry_after_seconds"] == 60
    assert words in body["message"], body
    assert resp.how == "eof", resp.how  # an orderly close, never a reset


def send_upgrades(sources, port):
    """Connects from each of `sources` and sends an upgrade request on each
    before reading any answer; returns the sockets."""
    socks = [wsraw.connect(port, source=src, timeout=5) for src in sources]
    for s in socks:
        s.sendall(wsraw.build_request(port))
    return socks


def test_per_ip_limit_answers_429_per_address_and_frees_on_close(ringgate):
    """per_ip_limit 3 over two workers: a fourth connection from one address
    gets 429 while other addresses still upgrade; closing one frees a place."""
    srv = ringgate("--workers", "2", "--per-ip-limit", "3")
    held = [upgrade_from("127.0.0.2", srv.port) for _ in range(3)]
    resp = refusal_from("127.0.0.2", srv.port)
    assert_refusal(resp, 429, "per_ip_limit")
    assert resp.reason == "Too Many Requests"
    assert json.loads(resp.body)["error"] == "Too Many Requests"
    # Another address is unaffected, and the held connections still echo.
    others = [upgrade_from("127.0.0.3", srv.port) for _ in range(3)]
    for ws in held + others:
        assert ws.echo("still here") == (OP_TEXT, b"still here")
    # A close frees a place for the address (the count follows the release).
    held.pop().close()
    held.append(wait_until(lambda: wsraw.try_handshake(srv.port, source="127.0.0.2", refused=(429,), timeout=5),
                           5, what="a 101 for 127.0.0.2 once one of its connections closed"))
    m = metrics(srv)
    refused_429 = total(m, "ws_per_ip_rejections_total")
    assert refused_429 >= 1 and refused_429 == total(m, "ws_handshake_failures_total", reason="per_ip")
    assert total(m, "ws_connection_limit_rejections_total") == refused_429
    assert total(m, "ws_total_connections") == 6
    for ws in held + others:
        ws.close()


def test_per_ip_limit_counts_handshakes_in_progress(ringgate):
    """Connections that have not sent a request yet count too: a client
    cannot hold the limit's worth of half-open sockets and then more."""
    srv = ringgate("--workers", "1", "--per-ip-limit", "2")
    silent = [wsraw.connect(srv.port, source="127.0.0.4", timeout=5) for _ in range(2)]
    wait_until(lambda: total(metrics(srv), "ws_accepted_total") == 2, 5, what="both silent connections accepted")
    assert_refusal(refusal_from("127.0.0.4", srv.port), 429, "per_ip_limit")
    for s in silent:
        s.close()
    wait_until(lambda: wsraw.try_handshake(srv.port, source="127.0.0.4", refused=(429,), timeout=5),
               5, what="a 101 for 127.0.0.4 once its silent connections closed").close()


def test_per_ip_limit_applies_to_ipv6_clients(ringgate):
    srv = ringgate("--listen", "[::1]:0", "--workers", "1", "--per-ip-limit", "1")
    first, _ = wsraw.handshake(srv.port, host="::1", timeout=5)
    with pytest.raises(wsraw.UpgradeRefused) as refused:
        wsraw.handshake(srv.port, host="::1", timeout=5)
    assert_refusal(refused.value.response, 429, "per_ip_limit")
    first.close()


def test_accept_queue_timeout_answers_503_never_hangs(ringgate):
    """accept_rate 1/s with a burst of 1 and a 500 ms queue timeout: of five
    simultaneous connections one upgrades at once and four wait, then get
    503 when no token arrives in time: none is left hanging."""
    srv = ringgate("--workers", "1", "--accept-rate", "1", "--accept-burst", "1",
                   "--accept-queue-timeout", "500ms", "--accept-queue-max", "100")
    socks = send_upgrades(["127.0.0.2"] * 5, srv.port)
    statuses = []
    started = time.monotonic()
    for s in socks:
        resp, _ = wsraw.read_upgrade_response(s, timeout=5)
        if resp.status != 101:
            assert_refusal(resp, 503, "accept_rate")
        statuses.append(resp.status)
    elapsed = time.monotonic() - started
    for s in socks:
        s.close()
    assert sorted(statuses) == [101, 503, 503, 503, 503]
    assert elapsed < 3, elapsed  # the 500 ms timeout plus ticks, not the 10 s handshake timeout
    m = metrics(srv)
    assert total(m, "ws_handshake_failures_total", reason="accept_queue_timeout") == 4
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
    started = time.monotonic()
    socks = send_upgrades(["127.0.0.%d" % (2 + i % 3) for i in range(60)], srv.port)
    upgraded, refused = [], 0
    for s in socks:
        resp, leftover = wsraw.read_upgrade_response(s, timeout=8)
        if resp.status == 101:
            upgraded.append(wsraw.RawWS(s, leftover))
            continue
        assert_refusal(resp, 503, "accept_rate")
        refused += 1
        s.close()
    elapsed = time.monotonic() - started
    assert len(upgraded) + refused == 60
    # At least the burst and a full queue (served at 20/s, well within its
    # 2 s timeout); at most one upgrade per token: the burst plus what the
    # bucket refilled by the time the last answer was in.
    assert 5 + 10 <= len(upgraded) <= 5 + 20 * elapsed + 1, (len(upgraded), elapsed)
    for ws in upgraded:
        assert ws.echo("ok") == (OP_TEXT, b"ok")
        ws.close()
    m = metrics(srv)
    assert total(m, "ws_handshake_successes_total") == len(upgraded)
    assert total(m, "ws_accept_queue_rejections_total") == refused
    assert total(m, "ws_accept_queue_depth") == 0
    served_from_queue = [v for (n, _), v in m.items() if n == "ws_accept_queue_wait_seconds_count"]
    assert served_from_queue and served_from_queue[0] == total(m, "ws_accept_queued_total") - total(
        m, "ws_handshake_failures_total", reason="accept_queue_timeout")


def test_admission_options_are_validated():
    r = run_ringgate("--accept-rate", "10", "--accept-queue-timeout", "10ms", timeout=10)
    assert r.returncode == 2
    assert "accept_queue_timeout must be between 100ms" in r.stderr
