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
import threading
import time

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


# ---------------------------------------------------------------- helpers

TOKEN = "admin-test-token-0123456789abcdef0123"  # 37 bytes: over the 32-byte floor
ADMIN_CLIENTS_MAX = 256  # control/admin.h: Admin::clients_max


def exchange(port, data: bytes, source=None, timeout=10.0):
    """One request on a fresh connection from `source` (a local address such
    as 127.0.0.2, so the server sees another client); reads until the server
    closes and returns (HttpResponse, seconds taken)."""
    started = time.monotonic()
    sock = wsraw.connect(port, source=source, timeout=timeout)
    try:
        wsraw.send_tolerant(sock, data)
        raw, how = wsraw.recv_until_eof(sock, timeout)
    finally:
        sock.close()
    assert raw, f"no answer at all (connection {how})"
    resp = wsraw.parse_http_response(raw)
    resp.how = how
    return resp, time.monotonic() - started


def publish_request(channel="news", token=TOKEN, body=b'{"n":1}') -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    return (f"POST /publish/{channel} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def health_request(path="/healthz") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n".encode()


def token_server(ringgate, tmp_path, *args):
    f = tmp_path / "api.token"
    f.write_text(TOKEN + "\n")
    return ringgate("--workers", "1", "--api-token-file", f, *args)


def source_addresses(n):
    """n loopback addresses other than 127.0.0.1: n different clients."""
    return [f"127.0.0.{i}" for i in range(2, 2 + n)]


# ---------------------------------------------------------------- one HTTP rule set

ODDITIES = [
    # (id, request bytes, the reason the 400 names; the same on both ports)
    ("nul_in_value", b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", "NUL in a header value"),
    ("bare_cr_in_value", b"GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR"),
    ("bare_lf", b"GET /healthz HTTP/1.1\nHost: a\n\n", "bare LF line ending"),
    ("bare_lf_last_line", b"GET /healthz HTTP/1.1\r\nHost: a\r\n\n", "bare LF line ending"),
    ("duplicate_authorization",
     b"GET /healthz HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
     "duplicate Authorization header"),
    ("duplicate_host", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "duplicate Host header"),
    ("duplicate_content_length",
     b"POST /publish/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
     "duplicate Content-Length header"),
    ("obs_fold", b"GET /healthz HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n", "obsolete header line folding"),
]


@pytest.fixture(scope="module")
def rules_server(ringgate_module):
    return ringgate_module("--workers", "1")


@pytest.mark.parametrize("request_bytes,reason", [o[1:] for o in ODDITIES], ids=[o[0] for o in ODDITIES])
def test_each_http_oddity_gets_400_naming_it_from_both_ports(rules_server, request_bytes, reason):
    """The admin parser and the upgrade parser share one head grammar
    (proto/http_rules.h): the same bytes get 400 with the same reason from
    either port, at once (a bare-LF request used to wait 10 s on the admin
    port, and of two Authorization headers the last one won)."""
    resp, took = exchange(rules_server.admin_port, request_bytes, timeout=5)
    assert resp.status == 400, resp.describe()
    assert json.loads(resp.body) == {"error": "bad_request", "message": json.loads(resp.body)["message"]}
    assert reason in json.loads(resp.body)["message"], resp.describe()
    assert resp.how == "eof" and took < 3, (resp.how, took)
    upgrade = wsraw.http_exchange(rules_server.port, request_bytes, timeout=5)
    assert upgrade.status == 400 and reason in upgrade.body.decode(), upgrade.describe()


# ---------------------------------------------------------------- the admin listener cannot be starved

def test_idle_and_trickling_sockets_cannot_lock_out_health_checks_or_publishers(ringgate, tmp_path):
    """The attack: more connections than the admin listener's 256 slots, from
    ten addresses (under admin_per_ip_limit each), half of them silent and
    half trickling a request a byte at a time.  /healthz, /readyz and a
    publish with the token still answer at once (a newcomer takes the slot
    of the connection that has waited longest without a request), and every
    attacking socket is closed within admin_request_timeout of its accept,
    trickle or not."""
    timeout_s = 5
    srv = token_server(ringgate, tmp_path, "--admin-request-timeout", f"{timeout_s}s")
    port = srv.admin_port
    attackers = []  # (socket, connected at, trickles)
    for i, source in enumerate(source_addresses(10)):
        for j in range(30):
            s = wsraw.connect(port, source=source, timeout=10)
            s.setblocking(False)
            attackers.append((s, time.monotonic(), (i + j) % 2 == 1))
    # The premise: every slot is taken (this probe takes the slot of the
    # attacker that has waited longest, so the count stays at 256).
    status, _, body = admin_get(port, "/status")
    assert status == 200 and json.loads(body)["admin"]["connections"] == ADMIN_CLIENTS_MAX, body
    closed_at = {}
    stop = threading.Event()

    def trickle_and_watch():
        prefix = b"GET /metrics HTTP/1.1\r\nX-Slow: "
        sent = 0
        while not stop.is_set() and len(closed_at) < len(attackers):
            for k, (s, _, trickles) in enumerate(attackers):
                if k in closed_at:
                    continue
                try:
                    if trickles:
                        s.send(prefix[sent:sent + 1] if sent < len(prefix) else b"a")
                    if s.recv(4096) == b"":
                        closed_at[k] = time.monotonic()
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[k] = time.monotonic()
            sent += 1
            time.sleep(0.1)

    watcher = threading.Thread(target=trickle_and_watch, daemon=True)
    watcher.start()
    try:
        for _ in range(3):
            for path in ("/healthz", "/readyz"):
                resp, took = exchange(port, health_request(path), timeout=5)
                assert resp.status == 200 and took < 1.5, (path, resp.describe(), took)
            resp, took = exchange(port, publish_request(), timeout=5)
            assert resp.status == 200 and json.loads(resp.body)["recipients"] == 0, resp.describe()
            assert took < 1.5, took
        wait_until(lambda: len(closed_at) == len(attackers), timeout_s + 5,
                   what="the server to close every attacking socket")
    finally:
        stop.set()
        watcher.join(5)
        for s, _, _ in attackers:
            s.close()
    late = [(k, closed_at[k] - attackers[k][1]) for k in closed_at if closed_at[k] - attackers[k][1] > timeout_s + 1.5]
    assert not late, f"{len(late)} sockets outlived admin_request_timeout: {late[:5]}"
    m = metrics(srv)
    evicted = total(m, "ws_admin_refusals_total", reason="evicted")
    timed_out = total(m, "ws_admin_refusals_total", reason="timeout")
    assert evicted >= len(attackers) - ADMIN_CLIENTS_MAX, (evicted, timed_out)
    assert evicted + timed_out == len(attackers), (evicted, timed_out)
    assert total(m, "ws_admin_refusals_total", reason="per_ip") == 0
    assert total(m, "ws_publishes_total") == 3


def test_one_address_holds_at_most_admin_per_ip_limit_connections(ringgate):
    """Beyond admin_per_ip_limit a newcomer from that address is answered 429
    with Retry-After at once, without taking a slot; other addresses are
    unaffected, and the address gets its slots back as its connections end."""
    srv = ringgate("--workers", "1", "--admin-per-ip-limit", "8")
    port = srv.admin_port
    held = [wsraw.connect(port, source="127.0.0.2") for _ in range(8)]
    wait_until(lambda: json.loads(admin_get(port, "/status")[2])["admin"]["connections"] >= 9, 5,
               what="8 held connections (and this probe) in /status")
    for _ in range(3):
        resp, took = exchange(port, health_request(), source="127.0.0.2", timeout=5)
        assert resp.status == 429 and resp.header("Retry-After") == "1", resp.describe()
        assert json.loads(resp.body)["error"] == "too_many_connections" and "admin_per_ip_limit (8)" in resp.body.decode()
        assert took < 1.5
    resp, _ = exchange(port, health_request(), source="127.0.0.3", timeout=5)
    assert resp.status == 200, resp.describe()
    held.pop().close()
    wait_until(lambda: exchange(port, health_request(), source="127.0.0.2", timeout=5)[0].status == 200, 5,
               what="a slot for 127.0.0.2 once one of its connections closed")
    for s in held:
        s.close()
    assert total(metrics(srv), "ws_admin_refusals_total", reason="per_ip") >= 3


def test_health_checks_keep_their_reserve_when_every_general_slot_holds_a_request(ringgate):
    """240 publishes whose bodies trickle (no token configured, so their
    heads are accepted) hold every general slot: a further non-health
    request gets 503 busy with Retry-After, /healthz and /readyz still 200
    from the reserve; when the bodies miss their deadline the slots return."""
    timeout_s = 4
    srv = ringgate("--workers", "1", "--admin-request-timeout", f"{timeout_s}s")
    port = srv.admin_port
    head = b"POST /publish/slow HTTP/1.1\r\nHost: admin\r\nContent-Length: 1000\r\n\r\n{"
    slow = []
    for source in source_addresses(10):
        for _ in range(24):
            s = wsraw.connect(port, source=source)
            s.sendall(head)
            slow.append(s)
    wait_until(lambda: exchange(port, health_request("/metrics"), timeout=5)[0].status == 503, timeout_s - 1,
               what="/metrics to be refused once 240 bodies hold the general slots")
    resp, _ = exchange(port, health_request("/status"), timeout=5)
    assert resp.status == 503 and resp.header("Retry-After") == "1", resp.describe()
    assert json.loads(resp.body)["error"] == "busy"
    for path in ("/healthz", "/readyz"):
        resp, took = exchange(port, health_request(path), timeout=5)
        assert resp.status == 200 and took < 1.5, (path, resp.describe(), took)
    closed = [wsraw.wait_closed(s, timeout_s + 3)[0] for s in slow]
    assert all(closed), f"{closed.count(False)} slow bodies outlived their deadline"
    for s in slow:
        s.close()
    status, _, body = admin_get(port, "/status")
    assert status == 200 and json.loads(body)["admin"]["committed"] == 0, body
    m = metrics(srv)
    assert total(m, "ws_admin_refusals_total", reason="timeout") == 240
    assert total(m, "ws_admin_refusals_total", reason="busy") >= 2


def test_a_request_must_end_within_its_deadline_however_it_trickles(ringgate):
    """The deadline runs from the accept (the first request) or the first
    byte (the next ones on a kept-alive connection), not from the last byte:
    a byte every 200 ms does not keep a connection past admin_request_timeout."""
    srv = ringgate("--workers", "1", "--admin-request-timeout", "1s")
    port = srv.admin_port
    s = wsraw.connect(port)
    started = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100
    closed = None
    for i in range(len(request)):
        if not wsraw.send_tolerant(s, request[i:i + 1]):
            closed = time.monotonic()
            break
        got, how = wsraw.recv_until_eof(s, 0.2)
        if how != "timeout":
            closed = time.monotonic()
            break
    s.close()
    assert closed is not None and closed - started < 2.5, closed and closed - started
    assert total(metrics(srv), "ws_admin_refusals_total", reason="timeout") == 1


# ---------------------------------------------------------------- wrong tokens

def test_repeated_wrong_tokens_are_slowed_refused_and_counted_per_address(ringgate, tmp_path):
    """Five wrong or missing tokens from one address get 401 at once; from
    the sixth in the window each is answered 429 with Retry-After, held back
    a second, and counted.  The right token from the same address is never
    held, and another address still gets its immediate 401s."""
    srv = token_server(ringgate, tmp_path)
    port = srv.admin_port
    for token in ("wrong-1", None, "wrong-3", "wrong-4", "wrong-5"):
        resp, took = exchange(port, publish_request(token=token), source="127.0.0.2")
        assert resp.status == 401 and resp.header("WWW-Authenticate") == "Bearer", resp.describe()
        assert took < 0.9, took
    for _ in range(2):
        resp, took = exchange(port, publish_request(token="wrong-again"), source="127.0.0.2")
        assert resp.status == 429, resp.describe()
        assert 1 <= int(resp.header("Retry-After")) <= 60
        assert json.loads(resp.body)["error"] == "too_many_failures"
        assert took >= 0.9, took
    resp, took = exchange(port, publish_request(), source="127.0.0.2")
    assert resp.status == 200 and took < 0.9, (resp.describe(), took)
    resp, took = exchange(port, publish_request(token="wrong-elsewhere"), source="127.0.0.3")
    assert resp.status == 401 and took < 0.9, (resp.describe(), took)
    m = metrics(srv)
    assert total(m, "ws_publish_auth_failures_total") == 8
    assert total(m, "ws_publish_auth_throttled_total") == 2
    assert m[("ws_publish_rejections_total", frozenset({("reason", "unauthorized")}))] == 8
    assert total(m, "ws_publishes_total") == 1
