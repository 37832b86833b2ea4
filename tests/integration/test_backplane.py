"""The Redis backplane: ringgate nodes sharing publishes through a real Redis.

Each test starts its own redis-server (redis_server.py) and two nodes with
--backplane redis://...; clients are python3-websockets on /ws.  What is
asserted is the fleet's promise: a publish on any node reaches every
subscriber of the channel (or device of the user) on every node once, in
the order published; a node asks Redis only for what its clients hold;
Redis being down is an explicit 503, and coming back restores every
subscription.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from conftest import admin_get, metrics, publish, run_async, run_ringgate, total, wait_until, ws_connect
from redis_server import REDIS_SERVER, RedisServer

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed "
                                "(tools/dev/deps.sh)")


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(log_path=tmp_path / "redis.log")
    yield r
    r.stop()


@pytest.fixture
def nodes(ringgate, redis):
    return [ringgate("--backplane", redis.url, "--workers", "2") for _ in range(2)]


def subscribed(node, names: int):
    """Waits until the node's Redis subscriptions (as Redis confirmed them) reach `names`."""
    wait_until(lambda: total(metrics(node), "ws_backplane_subscriptions") == names, 10, 0.05,
               f"{names} names subscribed in Redis")


def shard_subscribers(redis, key: str) -> int:
    out = redis.cli("PUBSUB", "SHARDNUMSUB", key).split()
    return int(out[1]) if len(out) == 2 else 0


async def recv_json(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def test_a_publish_on_any_node_reaches_every_subscriber_once_in_order(nodes):
    a, b = nodes
    count = 40

    async def scenario():
        clients = [await ws_connect(n.uri("/ws?channels=news")).__aenter__() for n in (a, a, b, b, b)]
        bystander = await ws_connect(b.uri("/ws?channels=other")).__aenter__()
        for ws in clients + [bystander]:
            assert (await recv_json(ws))["type"] == "subscribed"
        subscribed(a, 1)
        subscribed(b, 2)
        sent = []
        for i in range(count):
            # One after another, alternating the node published on.
            status, body = publish(a if i % 2 == 0 else b, "news", json.dumps({"n": i}).encode())
            assert status == 200, body
            answer = json.loads(body)
            assert answer["nodes"] == 2
            sent.append(answer["id"])
        for ws in clients:
            got = [await recv_json(ws) for _ in range(count)]
            assert [m["id"] for m in got] == sent, "every subscriber: each message once, in publish order"
            assert [m["data"]["n"] for m in got] == list(range(count))
        # Nothing more for them, nothing at all for the other channel's.
        status, _ = publish(a, "other", b'"marker"')
        assert status == 200
        assert (await recv_json(bystander))["data"] == "marker"
        for ws in clients:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
        for ws in clients + [bystander]:
            await ws.close()

    run_async(scenario(), 60)
    assert sum(total(metrics(n), "ws_backplane_messages_total") for n in nodes) == 2 * count + 1


def test_a_node_asks_redis_only_for_what_its_clients_hold(nodes, redis):
    a, b = nodes

    async def scenario():
        async with ws_connect(a.uri("/ws?channels=only-on-a&user=alice")) as ws:
            await recv_json(ws)
            subscribed(a, 2)
            assert shard_subscribers(redis, "rg:{c:only-on-a}") == 1  # a, not b
            assert shard_subscribers(redis, "rg:{u:alice}") == 1
            assert total(metrics(b), "ws_backplane_subscriptions") == 0
            # A second subscriber on the same node asks Redis for nothing more.
            async with ws_connect(a.uri("/ws?channels=only-on-a")) as again:
                await recv_json(again)
                assert total(metrics(a), "ws_backplane_names") == 2
                assert shard_subscribers(redis, "rg:{c:only-on-a}") == 1
        # The last one gone: the node lets go of the names in Redis.
        subscribed(a, 0)
        assert shard_subscribers(redis, "rg:{c:only-on-a}") == 0
        assert shard_subscribers(redis, "rg:{u:alice}") == 0

    run_async(scenario(), 30)


def test_a_user_send_reaches_the_users_devices_on_every_node(nodes):
    a, b = nodes

    async def scenario():
        devices = [await ws_connect(n.uri("/ws?user=alice")).__aenter__() for n in (a, a, b)]
        other = await ws_connect(b.uri("/ws?user=bob")).__aenter__()
        subscribed(a, 1)
        subscribed(b, 2)
        status, body = publish_user(b, "alice", b'{"text":"hi"}')
        assert status == 200 and json.loads(body)["nodes"] == 2, body
        for ws in devices:
            m = await recv_json(ws)
            assert m["user"] == "alice" and m["data"] == {"text": "hi"}
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(other.recv(), 0.3)
        for ws in devices + [other]:
            await ws.close()

    run_async(scenario(), 30)


def publish_user(node, user, body):
    import http.client
    conn = http.client.HTTPConnection(node.admin_host, node.admin_port, timeout=10)
    try:
        conn.request("POST", f"/users/{user}/send", body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_redis_down_is_a_503_and_its_return_restores_every_subscription(nodes, redis):
    a, b = nodes

    async def scenario():
        async with ws_connect(b.uri("/ws?channels=news")) as ws:
            await recv_json(ws)
            subscribed(b, 1)
            redis.stop()
            wait_until(lambda: total(metrics(a), "ws_backplane_up") == 0, 10, 0.05, "node a sees Redis down")
            status, body = publish(a, "news", b'"lost?"')
            assert status == 503 and json.loads(body)["error"] == "backplane_down", body
            assert total(metrics(a), "ws_publish_rejections_total", reason="backplane_down") >= 1
            status, _, doc = admin_get(b.admin_port, "/status")
            wait_until(lambda: json.loads(admin_get(b.admin_port, "/status")[2])["backplane"]["state"] == "down", 10,
                       0.05, "/status says down")
            # The subscriber stays connected through the outage.
            redis.start()
            subscribed(b, 1)
            wait_until(lambda: total(metrics(a), "ws_backplane_up") == 1, 10, 0.05, "node a back up")
            status, body = publish(a, "news", b'"after"')
            assert status == 200, body
            m = await recv_json(ws)
            assert m["data"] == "after"
            assert total(metrics(b), "ws_backplane_connects_total") >= 2

    run_async(scenario(), 60)


def test_a_foreign_message_on_a_ringgate_key_is_counted_not_delivered(nodes, redis):
    a, b = nodes

    async def scenario():
        async with ws_connect(b.uri("/ws?channels=news")) as ws:
            await recv_json(ws)
            subscribed(b, 1)
            assert redis.cli("SPUBLISH", "rg:{c:news}", "not ours").strip() == "1"
            wait_until(lambda: total(metrics(b), "ws_backplane_malformed_total") == 1, 10, 0.05, "counted")
            status, _ = publish(a, "news", b'"real"')
            assert status == 200
            assert (await recv_json(ws))["data"] == "real"

    run_async(scenario(), 30)


@pytest.mark.parametrize("url,says", [
    ("redis://h:70000", "from 1 to 65535"),
    ("redis-cluster://h:7000", "off or redis://"),
    ("redis://user@h:6379", "a host is needed"),
])
def test_a_bad_backplane_url_refuses_to_start_naming_it(url, says):
    r = run_ringgate("--listen", "127.0.0.1:0", "--admin-listen", "off", "--backplane", url)
    assert r.returncode != 0
    assert says in r.stdout + r.stderr
