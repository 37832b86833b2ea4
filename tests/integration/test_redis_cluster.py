"""The backplane on a Redis Cluster: three primaries started by the test
(tools/fleet/peers.py RedisCluster), three ringgate nodes given one seed with
--backplane redis-cluster://..., real python3-websockets clients.

What is asserted: names spread over the primaries, each subscribed on the
primary of its slot; a publish on any node reaches every subscriber on
every node once, in order; a user's devices on every node get each send
once; the registry answers across shards; and when a subscribed name's
slot moves to another primary, the nodes learn the map again and the
name's subscribers keep receiving.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from conftest import metrics, publish, run_async, total, wait_until, ws_connect
from peers import RedisCluster
from test_backplane import connected, lookup, per_node, publish_user, recv_json, shard_subscribers, subscribed

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed "
                                "(tools/dev/deps.sh)")

CHANNELS = [f"ch-{i}" for i in range(12)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    yield c
    c.stop()


@pytest.fixture
def nodes(ringgate, cluster):
    return [connected(ringgate("--backplane", cluster.url, "--workers", "2", "--node-id", f"node-{i}",
                               "--pong-timeout", "3s")) for i in "abc"]


def key(channel: str) -> str:
    return "rg:{c:" + channel + "}"


def test_names_spread_over_the_primaries_and_publishes_reach_every_node_in_order(nodes, cluster):
    count = 10  # per node published on, per channel

    async def scenario():
        # Every channel on every node, two subscribers per node for the first.
        subs = {ch: [await ws_connect(n.uri(f"/ws?channels={ch}")).__aenter__() for n in nodes] for ch in CHANNELS}
        subs[CHANNELS[0]] += [await ws_connect(n.uri(f"/ws?channels={CHANNELS[0]}")).__aenter__() for n in nodes]
        for clients in subs.values():
            for ws in clients:
                assert (await recv_json(ws))["type"] == "subscribed"
        for n in nodes:
            subscribed(n, len(CHANNELS))
        # Each name is subscribed once per node, on the primary of its slot
        # and nowhere else; the names use every primary.
        owners = set()
        for ch in CHANNELS:
            owner = cluster.owner(cluster.keyslot(key(ch)))
            owners.add(owner.port)
            assert shard_subscribers(owner, key(ch)) == 3, ch
        assert len(owners) == 3, "twelve names hash to all three primaries"
        for n in nodes:
            assert total(metrics(n), "ws_backplane_primaries") == 3

        sent = {ch: [] for ch in CHANNELS}
        for i in range(count):
            for n in nodes:
                for ch in CHANNELS:
                    status, body = publish(n, ch, json.dumps({"n": i}).encode())
                    assert status == 200, body
                    answer = json.loads(body)
                    assert answer["nodes"] == 3, body
                    sent[ch].append(answer["id"])
        for ch, clients in subs.items():
            for ws in clients:
                got = [await recv_json(ws) for _ in range(3 * count)]
                assert [m["id"] for m in got] == sent[ch], f"{ch}: each message once, in publish order"
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.2)
        for clients in subs.values():
            for ws in clients:
                await ws.close()

    run_async(scenario(), 120)
    assert sum(total(metrics(n), "ws_backplane_messages_total") for n in nodes) == 3 * 3 * count * len(CHANNELS)


def test_a_users_devices_on_every_node_get_each_send_once_and_the_registry_finds_them(nodes):
    async def scenario():
        devices = [await ws_connect(n.uri("/ws?user=alice")).__aenter__() for n in nodes + nodes[:1]]
        other = await ws_connect(nodes[1].uri("/ws?user=bob")).__aenter__()
        subscribed(nodes[0], 1)
        for i, n in enumerate(nodes):
            status, body = publish_user(n, "alice", json.dumps({"n": i}).encode())
            assert status == 200 and json.loads(body)["nodes"] == 3, body
        for ws in devices:
            assert [(await recv_json(ws))["data"]["n"] for _ in nodes] == [0, 1, 2]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(other.recv(), 0.2)
        # The registry's hash and the node keys live on different primaries.
        for asked in nodes:
            wait_until(lambda: per_node(lookup(asked, "/users/alice")[1], "connections") ==
                       [("node-a", 2), ("node-b", 1), ("node-c", 1)], 10, 0.1, "alice: 2 on a, 1 on b and c")
        for ws in devices + [other]:
            await ws.close()

    run_async(scenario(), 60)


def test_a_subscribed_names_slot_moving_to_another_primary_keeps_its_subscribers(nodes, cluster):
    channel = "moving"
    slot = cluster.keyslot(key(channel))

    async def scenario():
        clients = [await ws_connect(n.uri(f"/ws?channels={channel}")).__aenter__() for n in nodes]
        for ws in clients:
            assert (await recv_json(ws))["type"] == "subscribed"
        for n in nodes:
            subscribed(n, 1)
        source = cluster.owner(slot)
        status, body = publish(nodes[0], channel, b'"before"')
        assert status == 200, body
        for ws in clients:
            assert (await recv_json(ws))["data"] == "before"
        # The registry's hash for the name is in that slot: it moves too.
        wait_until(lambda: lookup(nodes[0], f"/channels/{channel}")[1]["subscribers"] == 3, 10, 0.1,
                   "3 subscribers in the registry")
        connects = [total(metrics(n), "ws_backplane_connects_total") for n in nodes]

        target = next(n for n in cluster.nodes if n is not source)
        cluster.move_slot(slot, target)
        assert cluster.owner(slot) is target

        # Redis unsubscribed the name on the old primary; every node learns
        # the map again and subscribes on the new one.
        wait_until(lambda: shard_subscribers(target, key(channel)) == 3, 15, 0.1,
                   "all three nodes subscribed on the slot's new primary")
        assert shard_subscribers(source, key(channel)) == 0
        for n, before in zip(nodes, connects):
            connected(n)
            m = metrics(n)
            assert total(m, "ws_backplane_connects_total") > before
            assert total(m, "ws_backplane_slots_moved_total") >= 1
            assert total(m, "ws_backplane_primaries") == 3
        # Publishing on every node (the publishers' maps are stale: MOVED is
        # followed) reaches every subscriber, once, in order.
        ids = []
        for i, n in enumerate(nodes):
            status, body = publish(n, channel, json.dumps({"after": i}).encode())
            assert status == 200, body
            ids.append(json.loads(body)["id"])
        for ws in clients:
            assert [(await recv_json(ws))["id"] for _ in nodes] == ids
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)
        assert lookup(nodes[1], f"/channels/{channel}")[1]["subscribers"] == 3
        for ws in clients:
            await ws.close()

    run_async(scenario(), 90)


def test_a_primary_down_is_a_503_and_its_return_restores_every_subscription(nodes, cluster):
    channels = [f"back-{i}" for i in range(6)]
    down_primary = cluster.nodes[1]

    async def scenario():
        clients = [await ws_connect(n.uri("/ws?channels=" + ",".join(channels))).__aenter__() for n in nodes]
        for ws in clients:
            assert [(await recv_json(ws))["type"] for _ in channels] == ["subscribed"] * len(channels)
        for n in nodes:
            subscribed(n, len(channels))
        down_primary.stop()
        # One primary gone: the whole backplane is down on every node (a
        # node that delivered only some channels would fail silently).
        for n in nodes:
            wait_until(lambda: total(metrics(n), "ws_backplane_up") == 0, 10, 0.05, "the backplane down")
        status, body = publish(nodes[0], channels[0], b'"lost"')
        assert status == 503 and b"backplane_down" in body, body
        down_primary.start()
        wait_until(lambda: all("cluster_state:ok" in c.cli("CLUSTER", "INFO") for c in cluster.nodes), 30, 0.1,
                   "the cluster ok again")
        for n in nodes:
            connected(n)
            subscribed(n, len(channels))
        ids = []
        for ch, n in zip(channels, nodes * 2):
            status, body = publish(n, ch, json.dumps(ch).encode())
            assert status == 200 and json.loads(body)["nodes"] == 3, body
            ids.append(json.loads(body)["id"])
        for ws in clients:
            got = [await recv_json(ws) for _ in channels]
            assert sorted(m["id"] for m in got) == sorted(ids)
        for ws in clients:
            await ws.close()

    run_async(scenario(), 90)


def test_a_cluster_node_given_as_one_redis_is_refused_with_a_hint_and_backoff(ringgate, cluster):
    """redis:// pointed at a cluster node: PING answers, then subscribing
    names of other primaries' slots is refused (MOVED).  The node says to
    use redis-cluster://, and does not retry ten times a second: a
    connection that failed soon after its first answer keeps backing off."""
    node = ringgate("--backplane", f"redis://127.0.0.1:{cluster.nodes[0].port}", "--workers", "1")
    elsewhere = [ch for ch in CHANNELS if cluster.owner(cluster.keyslot(key(ch))) is not cluster.nodes[0]]
    assert elsewhere

    async def scenario():
        async with ws_connect(node.uri(f"/ws?channels={elsewhere[0]}")) as ws:
            assert (await recv_json(ws))["type"] == "subscribed"
            wait_until(lambda: "redis-cluster://" in node.log(), 10, 0.1, "the hint in the log")
            first = total(metrics(node), "ws_backplane_connects_total")
            await asyncio.sleep(3)
            again = total(metrics(node), "ws_backplane_connects_total") - first
            # 100, 200, 400, 800, 1,600 ms apart (+-50% jitter): a handful in
            # 3 s, not the ~20 a backoff reset at every first answer gave.
            assert again <= 6, f"{again} reconnections in 3 s"
            status, body = publish(node, elsewhere[0], b'"x"')
            assert status in (503, 200), body

    run_async(scenario(), 30)
    assert total(metrics(node), "ws_backplane_slots_moved_total") >= 1
