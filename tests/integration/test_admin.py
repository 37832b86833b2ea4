"""The admin listener: /healthz, /readyz, /metrics, /status, and its
hardening: the secrets it starts with, the HTTP rules it shares with the
upgrade port, deadlines, the per-address cap, the health-check reserve and
the throttle on wrong tokens.

/metrics is parsed with a real Prometheus text parser (Debian's
python3-prometheus-client), and its counters are checked against what the
test itself did to the server.
"""

import asyncio
import base64
import json
import resource

import pytest
import websockets

import wsraw
from conftest import admin_get, metrics, parse_metrics, run_async, run_ringgate, total, wait_until, ws_connect
from wsraw import OP_TEXT


def test_metrics_parse_and_agree_with_what_the_test_did(ringgate):
    """Three upgraded connections, two refused at max_connections, one 404
    and four echoes: /metrics parses and every counter says exactly that."""
    srv = ringgate("--workers", "2", "--max-connections", "3")
    conns = [wsraw.handshake(srv.port)[0] for _ in range(3)]
    for ws in conns:
        assert ws.echo("m") == (OP_TEXT, b"m")
    assert conns[0].echo("again") == (OP_TEXT, b"again")
    for _ in range(2):
        resp = wsraw.http_exchange(srv.port, wsraw.build_request(srv.port))
        assert resp.status == 503 and resp.header("Retry-After") == "60"
        assert resp.header("Content-Type") == "application/json"
        assert json.loads(resp.body) == {"error": "Service Unavailable",
                                         "message": "Server at maximum connection capacity",
                                         "retry_after_seconds": 60}
    assert wsraw.http_exchange(srv.port, wsraw.build_request(srv.port, "/nope")).status == 404

    status, headers, body = admin_get(srv.admin_port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    m = parse_metrics(body)
    assert total(m, "ws_total_connections") == 3
    assert total(m, "ws_handshake_successes_total") == 3
    assert total(m, "ws_max_connections_exceeded_total") == 2
    assert total(m, "ws_handshake_failures_total") == 3  # two 503s and one 404
    assert total(m, "ws_messages_received_total") == 4
    assert total(m, "ws_accepted_total") == 6
    assert m[("ringgate_budget_used", frozenset({("budget", "max_connections")}))] == 3
    assert m[("ringgate_budget_limit", frozenset({("budget", "max_connections")}))] == 3
    per_worker_limits = [v for (n, l), v in m.items()
                         if n == "ringgate_budget_limit" and ("budget", "table_slots") in l]
    assert len(per_worker_limits) == 2 and all(v > 0 for v in per_worker_limits)
    for ws in conns:
        ws.close()


def test_readyz_flips_at_the_threshold_and_back(ringgate):
    """max_connections 10, not_ready_percent 50: ready with 4 open, 503 with
    5, ready again once one closes."""
    srv = ringgate("--workers", "1", "--max-connections", "10", "--not-ready-percent", "50")
    port = srv.admin_port
    conns = [wsraw.handshake(srv.port)[0] for _ in range(4)]
    assert admin_get(port, "/readyz")[0] == 200
    conns.append(wsraw.handshake(srv.port)[0])
    status, _, body = admin_get(port, "/readyz")
    assert status == 503 and "5 of 10" in body, body
    first = conns.pop(0)
    first.send_close(1000)
    assert first.recv_frame(5).close_code == 1000
    assert first.wait_closed(5)
    wait_until(lambda: admin_get(port, "/readyz")[0] == 200, 5, what="/readyz 200 once a connection closed")
    for ws in conns:
        ws.close()


def test_healthz_status_and_errors(ringgate):
    """/healthz names every worker loop; /status is JSON with per-worker
    counts; unknown paths get 404 and other methods 405, each with a reason."""
    srv = ringgate("--workers", "3")
    port = srv.admin_port
    status, _, body = admin_get(port, "/healthz")
    assert status == 200 and "3 worker loops" in body
    with wsraw.handshake(srv.port)[0] as ws:
        status, headers, body = admin_get(port, "/status")
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        assert doc["open_connections"] == 1 and doc["draining"] is False
        assert len(doc["workers"]) == 3
        assert sum(w["open_connections"] for w in doc["workers"]) == 1
        assert all(w["loop_heartbeat_age_ms"] < 2000 for w in doc["workers"])
        # Every budget, with its use, limit and utilisation.
        budgets = doc["budgets"]
        assert set(budgets) == {"max_connections", "table_slots", "buffered_bytes", "files", "tcp_memory_pages",
                                "process_fds", "ephemeral_ports"}, budgets
        assert budgets["max_connections"]["used"] == 1
        assert budgets["table_slots"]["used"] == 1
        assert budgets["table_slots"]["limit"] == sum(w["table_slots"] for w in doc["workers"]) > 0
        low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        assert budgets["ephemeral_ports"] == {"used": 0, "limit": high - low + 1,
                                              "utilisation": 0.0}
        for b in budgets.values():
            assert b["limit"] == 0 or abs(b["utilisation"] - b["used"] / b["limit"]) < 1e-3, b
        ws.echo("x")
    status, _, body = admin_get(port, "/nope")
    assert status == 404 and "/metrics" in body
    status, headers, body = admin_get(port, "/metrics", method="POST")
    assert status == 405 and headers.get("allow") == "GET"


def test_admin_port_in_use_fails_start_up(ringgate):
    """A second server on the same admin port must not share it silently:
    it fails to start, naming the admin address."""
    srv = ringgate("--workers", "1")
    port = srv.admin_port
    r = run_ringgate("--listen", "127.0.0.1:0", "--admin-listen", f"127.0.0.1:{port}", "--workers", "1")
    assert r.returncode != 0
    assert "admin" in r.stderr and str(port) in r.stderr, r.stderr


def test_kernel_budget_near_its_limit_refuses_with_503(ringgate):
    """With RLIMIT_NOFILE lowered to 64 the process's own fds (stdio,
    listeners, rings) are ~10% of it; with kernel_refuse_percent 5 that
    budget is over the line, so handshakes get the JSON 503 (not EMFILE
    later), /readyz is 503, and /metrics shows the process_fds budget."""

    def lower_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    srv = ringgate("--workers", "1", "--kernel-refuse-percent", "5", "--not-ready-percent", "5",
                   preexec_fn=lower_nofile)
    assert "process fds" in srv.log(), srv.log()
    # Budgets are sampled once a second: wait for the first sample that
    # sees the listeners and rings.
    wait_until(lambda: admin_get(srv.admin_port, "/readyz")[0] == 503, 5,
               what="the kernel budget to cross not_ready_percent (/readyz 503)")
    resp = wsraw.http_exchange(srv.port, wsraw.build_request(srv.port))
    assert resp.status == 503 and resp.header("Retry-After") == "60", resp.describe()
    assert json.loads(resp.body)["error"] == "Service Unavailable"
    status, _, body = admin_get(srv.admin_port, "/readyz")
    assert status == 503 and "kernel budget" in body, body
    m = metrics(srv)
    assert m[("ringgate_budget_limit", frozenset({("budget", "process_fds")}))] == 64
    assert 0 < m[("ringgate_budget_used", frozenset({("budget", "process_fds")}))] < 64
    assert total(m, "ws_kernel_budget_rejections_total") == 1
    assert m[("ringgate_budget_limit", frozenset({("budget", "files")}))] > 0


def test_reject_close_upgrades_then_closes_1013(ringgate):
    """reject = close: at max_connections a newcomer is upgraded and then
    closed at once with 1013 (Try Again Later) and a reason, which a real
    client (python3-websockets) reports as the close code; the held
    connection keeps echoing."""
    srv = ringgate("--workers", "1", "--max-connections", "1", "--reject", "close")
    with wsraw.handshake(srv.port)[0] as held:
        async def newcomer():
            async with ws_connect(srv.uri()) as ws:
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                except websockets.ConnectionClosed as e:
                    return e.rcvd.code, e.rcvd.reason
            return None, None
        code, reason = run_async(newcomer())
        assert code == 1013 and "capacity" in reason, (code, reason)
        assert held.echo("still") == (OP_TEXT, b"still")
    assert total(metrics(srv), "ws_max_connections_exceeded_total") == 1


# ---------------------------------------------------------------- secrets

@pytest.mark.parametrize("setting", ["jwt_secret_file", "api_token_file"])
@pytest.mark.parametrize("content", [b"k", b"k\n", b"", b"x" * 31 + b"\n"], ids=["1", "1nl", "0", "31nl"])
def test_a_short_secret_refuses_to_start_and_says_how_to_make_one(tmp_path, setting, content):
    """RFC 7518 3.2: an HS256 key of at least 256 bits; the API token gets the
    same floor.  Exit 2 (a configuration error), naming the file, the rule
    and the command that makes a good secret."""
    f = tmp_path / "secret"
    f.write_bytes(content)
    extra = ("--auth", "jwt") if setting == "jwt_secret_file" else ()
    r = run_ringgate("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *extra,
                     "--" + setting.replace("_", "-"), f)
    assert r.returncode == 2, r.stderr
    assert setting in r.stderr and str(f) in r.stderr, r.stderr
    assert "at least 32 bytes" in r.stderr, r.stderr
    assert f"head -c 32 /dev/urandom | base64 > {f}" in r.stderr, r.stderr
    assert "listening on" not in r.stderr


def test_an_api_token_that_cannot_travel_in_a_header_refuses_to_start(tmp_path):
    f = tmp_path / "token"
    f.write_bytes(b"a" * 20 + b" " + b"b" * 20 + b"\n")
    r = run_ringgate("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--api-token-file", f)
    assert r.returncode == 2 and "Authorization header" in r.stderr, r.stderr


def test_secrets_of_32_bytes_and_the_suggested_command_start(ringgate, tmp_path):
    """The boundary (exactly 32 bytes) and what `head -c 32 /dev/urandom |
    base64` writes (44 bytes and a newline) are accepted."""
    key = tmp_path / "jwt.key"
    key.write_bytes(b"k" * 32)
    token = tmp_path / "api.token"
    token.write_bytes(base64.b64encode(b"\x01" * 32) + b"\n")
    srv = ringgate("--workers", "1", "--auth", "jwt", "--jwt-secret-file", key, "--api-token-file", token)
    assert "with a bearer token" in srv.log()


def test_an_admin_listener_others_can_reach_without_a_token_is_a_warning(ringgate, tmp_path):
    srv = ringgate("--workers", "1", "--admin-listen", "0.0.0.0:0")
    assert "WARN" in srv.log() and "api_token_file is not set" in srv.log(), srv.log()
    token = tmp_path / "api.token"
    token.write_bytes(b"t" * 40)
    quiet = ringgate("--workers", "1", "--admin-listen", "0.0.0.0:0", "--api-token-file", token)
    local = ringgate("--workers", "1")  # 127.0.0.1: no warning either
    for s in (quiet, local):
        assert "api_token_file is not set" not in s.log(), s.log()
