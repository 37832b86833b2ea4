"""Pub/sub against the real server: channels, the publish API, per-user
delivery, JWT auth, malformed commands and bad publishes.

Clients are python3-websockets (an independent WebSocket implementation),
raw sockets where a test must not read, and ringgate-load's fanout mode for
the 20,000-subscriber delivery check.  Tokens are made here with hmac and
base64 from the standard library, independently of proto/jwt.
"""

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import subprocess
import time

import pytest
import websockets

import wsraw
from conftest import admin_get, metrics, ringgate_load_bin, run_async, total

SECRET = b"integration-test-secret-0123456789"

# ---------------------------------------------------------------- helpers

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub="alice", channels=("*",), exp_in=3600, alg="HS256", key=SECRET, sign_alg=None, **extra):
    header = {"alg": alg, "typ": "JWT"}
    payload = {"sub": sub, "exp": int(time.time()) + exp_in, **extra}
    if channels is not None:
        payload["channels"] = list(channels)
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if (sign_alg or alg) == "none":
        return signing_input + "."
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[sign_alg or alg]
    return signing_input + "." + b64url(hmac.new(key, signing_input.encode(), digest).digest())


class Api:
    """A keep-alive connection to the publish API."""

    def __init__(self, srv, token=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.admin_port, timeout=10)
        self.token = token

    def post(self, path, body=b"", headers=None):
        h = {"Content-Type": "application/octet-stream", **(headers or {})}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        self.conn.request("POST", path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def publish(self, channel, body):
        status, _, data = self.post(f"/publish/{channel}", body)
        assert status == 200, (status, data)
        return json.loads(data)

    def close(self):
        self.conn.close()


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect_nothing(ws, within=0.3):
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.recv(), within)


@pytest.fixture(scope="module")
def jwt_server(ringgate_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("secrets")
    (d / "jwt.key").write_bytes(SECRET + b"\n")
    return ringgate_module("--workers", "2", "--auth", "jwt", "--jwt-secret-file", str(d / "jwt.key"))


# ---------------------------------------------------------------- delivery

def test_20000_subscribers_2_workers_10_channels_100_messages_exactly_once_in_order(ringgate):
    """ringgate-load fanout: every subscriber checks the per-channel sequence
    of every message it gets; the server's counters must agree."""
    srv = ringgate("--workers", "2")
    out = subprocess.run(
        [str(ringgate_load_bin()), "fanout", srv.uri("/ws"), "--connections", "20000", "--channels", "10",
         "--messages", "100", "--rate", "0", "--threads", "2", "--settle", "30s",
         "--api", f"http://127.0.0.1:{srv.admin_port}", "--json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])  # the summary is the last line
    assert r["subscribers_ready"] == 20000
    assert r["publishes_ok"] == 1000 and r["publishes_failed"] == 0
    assert r["recipients"] == 2_000_000
    assert r["delivered"] == 2_000_000
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["out_of_order"] == 0
    assert r["misrouted"] == 0 and r["malformed"] == 0
    m = metrics(srv)
    assert total(m, "ws_deliveries_total") == 2_000_000
    assert total(m, "ws_delivery_drops_total") == 0
    assert total(m, "ws_publishes_total") == 1000
    # Both workers fanned out every publication (subscribers land on both).
    assert total(m, "ws_fanouts_total") == 2000


def test_messages_in_order_with_each_kind_of_body(ringgate):
    srv = ringgate("--workers", "2", "--raw-channels", "raw.*")
    api = Api(srv)

    async def main():
        subs = [await websockets.connect(srv.uri(f"/ws?channels=c{i % 5}")) for i in range(50)]
        for ws in subs:
            assert (await recv_json(ws))["type"] == "subscribed"
        for seq in range(20):
            for ch in range(5):
                assert api.publish(f"c{ch}", json.dumps({"seq": seq}).encode())["recipients"] == 10
        for i, ws in enumerate(subs):
            for seq in range(20):
                msg = await recv_json(ws)
                assert msg["type"] == "message" and msg["channel"] == f"c{i % 5}"
                assert msg["data"] == {"seq": seq}
        await expect_nothing(subs[0])
        # Bodies: JSON embedded, text escaped, invalid UTF-8 as base64.
        ws = subs[0]
        api.publish("c0", b'  [1, {"a": null}]  ')
        assert (await recv_json(ws))["data"] == [1, {"a": None}]
        api.publish("c0", b'line\n"quoted"\\')
        assert (await recv_json(ws))["data"] == 'line\n"quoted"\\'
        api.publish("c0", b"\xff\xfe\x00")
        msg = await recv_json(ws)
        assert msg["encoding"] == "base64" and base64.b64decode(msg["data"]) == b"\xff\xfe\x00"
        # A raw channel gets the body itself: text or binary frame.
        raw = await websockets.connect(srv.uri("/ws?channels=raw.ticks"))
        assert (await recv_json(raw))["channel"] == "raw.ticks"
        assert api.publish("raw.ticks", b"tick 1")["recipients"] == 1
        assert await asyncio.wait_for(raw.recv(), 5) == "tick 1"
        api.publish("raw.ticks", b"\x00\xff")
        assert await asyncio.wait_for(raw.recv(), 5) == b"\x00\xff"
        for c in subs + [raw]:
            await c.close()

    run_async(main())
    api.close()


def test_subscribe_unsubscribe_by_command(ringgate):
    srv = ringgate("--workers", "1", "--max-subscriptions", "3")
    api = Api(srv)

    async def main():
        ws = await websockets.connect(srv.uri("/ws"))
        await ws.send(json.dumps({"type": "subscribe", "channel": "news.eu"}))
        assert await recv_json(ws) == {"type": "subscribed", "channel": "news.eu"}
        assert api.publish("news.eu", b'"hello"')["recipients"] == 1
        msg = await recv_json(ws)
        assert msg["data"] == "hello" and msg["channel"] == "news.eu" and msg["id"]
        # Subscribing twice is one subscription.
        await ws.send(json.dumps({"type": "subscribe", "channel": "news.eu"}))
        assert (await recv_json(ws))["type"] == "subscribed"
        assert api.publish("news.eu", b"1")["recipients"] == 1
        assert (await recv_json(ws))["data"] == 1
        await ws.send(json.dumps({"type": "unsubscribe", "channel": "news.eu"}))
        assert await recv_json(ws) == {"type": "unsubscribed", "channel": "news.eu"}
        assert api.publish("news.eu", b"2")["recipients"] == 0
        await expect_nothing(ws)
        # max_subscriptions = 3: the fourth is refused with an error frame.
        for ch in ("a", "b", "c"):
            await ws.send(json.dumps({"type": "subscribe", "channel": ch}))
            assert (await recv_json(ws))["type"] == "subscribed"
        await ws.send(json.dumps({"type": "subscribe", "channel": "d"}))
        err = await recv_json(ws)
        assert err["type"] == "error" and err["code"] == "too_many_channels" and "max_subscriptions" in err["message"]
        await ws.send(json.dumps({"type": "ack", "id": "x-1"}))
        await expect_nothing(ws)
        await ws.close()

    run_async(main())
    m = metrics(srv)
    assert total(m, "ws_acks_total") == 1
    assert total(m, "ws_subscribes_total") == 5
    assert total(m, "ws_unsubscribes_total") == 1
    assert total(m, "ws_command_errors_total") == 1
    api.close()


def test_malformed_commands_get_error_frames_and_the_connection_stays_open(ringgate):
    srv = ringgate("--workers", "1")
    api = Api(srv)
    cases = [
        ("{", "malformed_json"),
        ("[]", "not_object"),
        ('{"channel":"a"}', "missing_type"),
        ('{"type":7}', "invalid_type"),
        ('{"type":"dance"}', "unknown_type"),
        ('{"type":"subscribe"}', "missing_channel"),
        ('{"type":"subscribe","channel":"has space"}', "invalid_channel"),
        ('{"type":"subscribe","channel":"a","channel":"b"}', "duplicate_field"),
        ('{"type":"ack"}', "missing_id"),
        ('{"type":"subscribe","channel":"' + "x" * 2000 + '"}', "too_large"),
    ]

    async def main():
        ws = await websockets.connect(srv.uri("/ws"))
        for text, code in cases:
            await ws.send(text)
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == code, (text[:40], err)
            assert err["message"]
        await ws.send(b'{"type":"subscribe","channel":"a"}')  # binary: not a command
        err = await recv_json(ws)
        assert err["code"] == "malformed_json" and "binary" in err["message"]
        # Still open, still served.
        await ws.send('{"type":"subscribe","channel":"ok"}')
        assert await recv_json(ws) == {"type": "subscribed", "channel": "ok"}
        assert api.publish("ok", b"{}")["recipients"] == 1
        assert (await recv_json(ws))["data"] == {}
        await ws.close()

    run_async(main())
    assert total(metrics(srv), "ws_command_errors_total") == len(cases) + 1
    api.close()


def test_bad_channels_query_and_long_query_are_refused_at_handshake(ringgate):
    srv = ringgate("--workers", "1")
    for query, status, words in [("channels=a,,b", 400, b"channel"), ("channels=bad%20name", 400, b"channel"),
                                 ("channels=" + ",".join(f"c{i}" for i in range(65)), 400, b"channels"),
                                 ("x=" + "y" * 7500, 414, b"query")]:
        resp = wsraw.http_exchange(srv.port, wsraw.build_request(srv.port, "/ws?" + query))
        assert resp.status == status, (query[:30], resp.describe())
        assert words in resp.body.lower(), resp.body


# ---------------------------------------------------------------- users

def test_a_user_message_reaches_all_three_devices_and_nobody_else(jwt_server):
    srv = jwt_server
    api = Api(srv)

    async def main():
        alice = [await websockets.connect(srv.uri("/ws?token=" + token("alice"))) for _ in range(2)]
        alice.append(await websockets.connect(srv.uri("/ws"),
                                              extra_headers={"Authorization": "Bearer " + token("alice")}))
        bob = await websockets.connect(srv.uri("/ws?token=" + token("bob")))
        status, _, body = api.post("/users/alice/send", b'{"note":"hi"}')
        assert status == 200, body
        answer = json.loads(body)
        assert answer["recipients"] == 3 and answer["user"] == "alice"
        for ws in alice:
            msg = await recv_json(ws)
            assert msg == {"type": "message", "user": "alice", "id": answer["id"], "data": {"note": "hi"}}
        await expect_nothing(bob)
        # Nobody of that name: accepted, zero recipients.
        status, _, body = api.post("/users/carol/send", b"x")
        assert status == 200 and json.loads(body)["recipients"] == 0
        await alice[0].close()
        status, _, body = api.post("/users/alice/send", b"again")
        assert json.loads(body)["recipients"] == 2
        for ws in alice[1:]:
            assert (await recv_json(ws))["data"] == "again"
        for ws in alice[1:] + [bob]:
            await ws.close()

    run_async(main())
    api.close()


# ---------------------------------------------------------------- auth

BAD_TOKENS = [
    ("missing", None, b"token is required"),
    ("expired", token(exp_in=-10), b"expired"),
    ("bad_signature", token(key=b"another key"), b"signature"),
    ("alg_none", token(alg="none"), b"HS256"),
    ("wrong_alg", token(alg="HS384"), b"HS256"),
    ("none_header_signed_hs256", token(alg="none", sign_alg="HS256"), b"HS256"),
    ("garbage", "abc.def", b"base64url"),
]


# Named by case only: a token carries its expiry time, so an id made of it
# would differ on every run (no stable -k selection or junit history).
@pytest.mark.parametrize("case,tok,reason", BAD_TOKENS, ids=[case for case, _, _ in BAD_TOKENS])
def test_bad_tokens_get_401_naming_what_was_wrong(jwt_server, case, tok, reason):
    path = "/ws" if tok is None else "/ws?token=" + tok
    resp = wsraw.http_exchange(jwt_server.port, wsraw.build_request(jwt_server.port, path))
    assert resp.status == 401, resp.describe()
    assert resp.header("WWW-Authenticate") == "Bearer"
    assert reason in resp.body, resp.body


def test_token_channels_claim_decides_what_may_be_subscribed(jwt_server):
    srv = jwt_server
    api = Api(srv)

    async def main():
        t = token("dave", channels=["news.*", "chat"])
        ws = await websockets.connect(srv.uri("/ws?channels=news.eu,secret,chat&token=" + t))
        answers = [await recv_json(ws) for _ in range(3)]
        assert answers[0] == {"type": "subscribed", "channel": "news.eu"}
        assert answers[1]["type"] == "error" and answers[1]["code"] == "forbidden_channel"
        assert answers[2] == {"type": "subscribed", "channel": "chat"}
        await ws.send(json.dumps({"type": "subscribe", "channel": "news"}))  # "news.*" does not match "news"
        err = await recv_json(ws)
        assert err["code"] == "forbidden_channel"
        assert api.publish("secret", b"1")["recipients"] == 0
        assert api.publish("news.eu", b"2")["recipients"] == 1
        assert (await recv_json(ws))["data"] == 2
        # A token without a channels claim may subscribe to nothing.
        ws2 = await websockets.connect(srv.uri("/ws?channels=chat&token=" + token("erin", channels=None)))
        assert (await recv_json(ws2))["code"] == "forbidden_channel"
        await ws.close()
        await ws2.close()

    run_async(main())
    api.close()


# ---------------------------------------------------------------- publish API

def test_bad_publish_requests_get_400_401_405_411_413(ringgate, tmp_path):
    (tmp_path / "api.token").write_text("s3cret-api-token-0123456789abcdef\n")
    srv = ringgate("--workers", "1", "--max-publish-size", "1KiB", "--api-token-file", str(tmp_path / "api.token"))
    port = srv.admin_port
    good = Api(srv, token="s3cret-api-token-0123456789abcdef")
    for name, why in [("has%20space", b"character"), ("x" * 129, b"longer than 128"), ("a*", b"character")]:
        status, _, body = good.post(f"/publish/{name}", b"x")
        assert status == 400, (name, body)
        assert json.loads(body)["error"] == "bad_request" and why in body
    status, _, body = good.post("/users/bad%2Fname/send", b"x")  # names are never percent-decoded
    assert status == 400 and b"user name" in body
    # The same keep-alive connection still publishes.
    assert good.publish("fine", b"ok")["recipients"] == 0
    status, _, body = good.post("/publish/fine", b"y" * 1025)
    assert status == 413 and b"max_publish_size" in body
    good.close()

    anon = Api(srv)
    status, headers, body = anon.post("/publish/fine", b"x")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    anon.close()
    wrong = Api(srv, token="guess")
    assert wrong.post("/publish/fine", b"x")[0] == 401
    wrong.close()

    status, headers, _ = admin_get(port, "/publish/fine")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, _ = admin_get(port, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET"
    # No Content-Length: 411 and the connection is closed.
    resp = wsraw.http_exchange(port, b"POST /publish/fine HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                     b"Authorization: Bearer s3cret-api-token-0123456789abcdef\r\n\r\n0\r\n\r\n")
    assert resp.status == 411
    m = metrics(srv)
    assert m[("ws_publish_rejections_total", frozenset({("reason", "bad_request")}))] == 4
    assert m[("ws_publish_rejections_total", frozenset({("reason", "unauthorized")}))] == 2
    assert m[("ws_publish_rejections_total", frozenset({("reason", "too_large")}))] == 1
    assert total(m, "ws_publishes_total") == 1


def test_eventfd_wake_path_delivers_like_msg_ring(ringgate):
    srv = ringgate("--workers", "2", "--cross-worker-wake", "eventfd")
    assert "woken by eventfd" in srv.log()
    api = Api(srv)

    async def main():
        subs = [await websockets.connect(srv.uri("/ws?channels=e")) for _ in range(20)]
        for ws in subs:
            await recv_json(ws)
        for seq in range(30):
            assert api.publish("e", str(seq).encode())["recipients"] == 20
        for ws in subs:
            assert [(await recv_json(ws))["data"] for _ in range(30)] == list(range(30))
            await ws.close()

    run_async(main())
    api.close()


# ---------------------------------------------------------------- slow consumers

@pytest.mark.parametrize("policy", ["close", "drop"])
def test_a_subscriber_that_stops_reading_does_not_cost_the_others(ringgate, policy):
    """One raw subscriber never reads; 300 messages of 32 KiB (9.6 MB, more
    than loopback's socket buffers absorb) go to it and to a reading one.
    The reader gets all 300 in order; the stuck one is closed with 1008
    (close) or has messages dropped and counted (drop)."""
    srv = ringgate("--workers", "1", "--frame-buffer-size", "256KiB", "--slow-consumer-policy", policy,
                   "--backpressure-timeout", "10s", "--close-timeout", "60s")
    api = Api(srv)
    stuck, _ = wsraw.handshake(srv.port, "/ws?channels=firehose")

    async def main():
        reader = await websockets.connect(srv.uri("/ws?channels=firehose"), max_size=1 << 20, max_queue=None)
        await recv_json(reader)
        body = json.dumps({"pad": "p" * 32000, "seq": 0})
        got = []

        async def read_all():
            while len(got) < 300:
                got.append((await recv_json(reader, timeout=20))["data"]["seq"])

        task = asyncio.create_task(read_all())
        loop = asyncio.get_running_loop()
        for seq in range(300):
            # The reader stays within 4 messages (128 KB) of the publisher, half
            # of frame_buffer_size, so a busy machine cannot make it look slow;
            # the stuck subscriber still gets all 9.6 MB queued.
            while len(got) < seq - 4 and not task.done():
                await asyncio.sleep(0.001)
            await loop.run_in_executor(None, api.publish, "firehose", body.replace('"seq": 0', f'"seq": {seq}').encode())
        await task
        assert got == list(range(300))
        await reader.close()

    run_async(main())
    m = metrics(srv)
    if policy == "close":
        assert total(m, "ws_slow_consumer_closes_total") == 1
        # Its close frame comes after whatever it had not read.
        deadline = time.monotonic() + 30
        code = None
        frames = 0
        while time.monotonic() < deadline and code is None:
            fr = stuck.recv_frame(timeout=10)
            frames += 1
            if fr.opcode == wsraw.OP_CLOSE:
                code = fr.close_code
        assert code == 1008, frames
    else:
        assert total(m, "ws_slow_consumer_drops_total") > 0
        assert total(m, "ws_delivery_drops_total") == total(m, "ws_slow_consumer_drops_total")
        assert total(m, "ws_slow_consumer_closes_total") == 0
    stuck.sock.close()
    api.close()
