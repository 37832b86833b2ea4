"""A fleet of three ringgate nodes behind a real HAProxy, sharing a real
Redis: tools/fleet/fleet.py's Fleet, the one `tools/fleet.sh up 3` starts,
here with ports the kernel picks and nodes on 127.0.2.1-3.

What is asserted is what the fleet promises its clients: fan-out across
nodes exactly once and in order (ringgate-load checks every delivery), a
user's devices on every node, a node killed with SIGKILL (its clients move
through HAProxy, its registry entries expire, nobody else misses a
message), Redis restarted (503 meanwhile, every subscription back after),
and a drain under load (1001 and nothing else, everyone back in seconds).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import metrics, publish, ringgate_bin, ringgate_load_bin, run_async, total, wait_until, ws_connect
from fleet import Fleet
from peers import HAPROXY, REDIS_SERVER
from test_backplane import lookup, publish_user, recv_json

pytestmark = pytest.mark.skipif(not (os.path.exists(HAPROXY) and os.path.exists(REDIS_SERVER)),
                                reason="haproxy and redis-server are needed (tools/dev/deps.sh)")


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path / "fleet", nodes=3, binary=ringgate_bin(), net=2, drain_grace="2s",
              node_args=("--pong-timeout", "3s", "--drain-timeout", "5s"))
    yield f
    f.down()
    for n in f.nodes:
        assert n.proc.returncode in (0, -signal.SIGKILL), f"{n.node_id} exited {n.proc.returncode}"


def connections(node) -> float:
    return total(metrics(node), "ws_total_connections")


def test_three_thousand_subscribers_get_every_message_of_three_nodes_once_in_order(fleet):
    """3,000 subscribers through HAProxy over 10 channels; 100 messages per
    channel published on each node's API in turn (300 per channel), 600 a
    second: a pace the subscribers keep up with on this machine, so that
    what is checked is the fleet's delivery, not the slow-consumer policy."""
    api = ",".join(f"http://{n.admin_host}:{n.admin_port}" for n in fleet.nodes)
    run = subprocess.run([str(ringgate_load_bin()), "fanout", "--connections", "3000", "--channels", "10", "--messages", "300",
                          "--rate", "600", "--api", api, "--settle", "30s", "--duration", "120s", "--json",
                          fleet.uri + "/ws"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-1500:]
    j = json.loads(run.stdout.strip().splitlines()[-1])
    assert j["subscribers_ready"] == 3000, j
    assert j["publishes_ok"] == 3000, j
    assert j["expected_deliveries"] == 3000 * 300 and j["delivered"] == 3000 * 300, j
    for key in ("lost", "duplicated", "out_of_order", "misrouted", "malformed"):
        assert j[key] == 0, (key, j)
    assert j["passed"] is True, j
    # Every node held subscribers of every channel (leastconn spread them),
    # and took each of the 3,000 messages from Redis once.
    for n in fleet.nodes:
        assert total(metrics(n), "ws_backplane_messages_total") == 3000, n.node_id


def test_a_users_devices_on_three_nodes_get_each_send_once(fleet):
    async def scenario():
        # Through HAProxy (the nodes take PROXY headers from 127.0.0.1):
        # leastconn puts one device on each node.
        devices = [await ws_connect(f"{fleet.uri}/ws?user=alice").__aenter__() for _ in fleet.nodes]
        assert [connections(n) for n in fleet.nodes] == [1, 1, 1]
        for n in fleet.nodes:
            wait_until(lambda: total(metrics(n), "ws_backplane_subscriptions") == 1, 10, 0.05, "alice subscribed")
        for i, n in enumerate(fleet.nodes):
            status, body = publish_user(n, "alice", json.dumps({"n": i}).encode())
            assert status == 200 and json.loads(body)["nodes"] == 3, body
        for ws in devices:
            assert [(await recv_json(ws))["data"]["n"] for _ in fleet.nodes] == [0, 1, 2]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)
        for ws in devices:
            await ws.close()

    run_async(scenario(), 60)


async def subscribe_through_haproxy(fleet, count, channel="news"):
    """`count` clients through HAProxy, each also a user of its own."""
    clients = []
    for i in range(count):
        ws = await ws_connect(f"{fleet.uri}/ws?channels={channel}&user=u{i}").__aenter__()
        assert (await recv_json(ws))["type"] == "subscribed"
        clients.append(ws)
    return clients


def test_a_node_killed_leaves_its_clients_to_the_others_and_the_registry_within_its_ttl(fleet):
    victim, *survivors = fleet.nodes

    async def scenario():
        clients = await subscribe_through_haproxy(fleet, 30)
        assert [connections(n) for n in fleet.nodes] == [10, 10, 10], "leastconn: ten each"
        wait_until(lambda: lookup(survivors[0], "/channels/news")[1]["subscribers"] == 30, 10, 0.1,
                   "the registry: 30 subscribers")
        on_victim = []
        for i in range(30):
            if any(n["node"] == victim.node_id for n in lookup(survivors[0], f"/users/u{i}")[1]["nodes"]):
                on_victim.append(i)
        assert len(on_victim) == 10

        # Messages keep coming from a survivor while the victim dies.
        sent = []

        async def publisher():
            for k in range(40):
                status, body = await asyncio.to_thread(publish, survivors[k % 2], "news", json.dumps(k).encode())
                assert status == 200, body
                sent.append(k)
                await asyncio.sleep(0.02)

        task = asyncio.create_task(publisher())
        await asyncio.sleep(0.2)
        victim.signal(signal.SIGKILL)
        await task
        # The survivors' subscribers missed nothing, in order.
        for i, ws in enumerate(clients):
            if i in on_victim:
                continue
            assert [(await recv_json(ws))["data"] for _ in sent] == sent, f"client {i}"
        # The victim's clients lost their connection and come back through
        # HAProxy, to the survivors.
        for i in on_victim:
            with pytest.raises(Exception):
                while True:
                    await asyncio.wait_for(clients[i].recv(), 10)
            clients[i] = await ws_connect(f"{fleet.uri}/ws?channels=news&user=u{i}").__aenter__()
            assert (await recv_json(clients[i]))["type"] == "subscribed"
        assert sum(connections(n) for n in survivors) == 30
        # Its registry entries are gone within the TTL (pong_timeout, 3 s).
        wait_until(lambda: all(n["node"] != victim.node_id for n in lookup(survivors[1], "/channels/news")[1]["nodes"]),
                   6, 0.2, "the dead node's entries gone")
        wait_until(lambda: lookup(survivors[1], "/channels/news")[1]["subscribers"] == 30, 10, 0.1,
                   "30 subscribers on the survivors")
        assert lookup(survivors[0], f"/users/u{on_victim[0]}")[1]["nodes"][0]["node"] != victim.node_id
        # Every later publish reaches everyone, the moved clients too.
        status, body = publish(survivors[0], "news", b'"after"')
        assert status == 200 and json.loads(body)["nodes"] == 2, body
        for ws in clients:
            assert (await recv_json(ws))["data"] == "after"
        for ws in clients:
            await ws.close()

    run_async(scenario(), 90)


def test_redis_restarted_is_503_meanwhile_and_every_subscription_after(fleet):
    async def scenario():
        clients = await subscribe_through_haproxy(fleet, 9)
        for n in fleet.nodes:  # news and three users each
            wait_until(lambda: total(metrics(n), "ws_backplane_subscriptions") == 4, 10, 0.05, "4 subscribed")
        fleet.redis.stop()
        for n in fleet.nodes:
            wait_until(lambda: total(metrics(n), "ws_backplane_up") == 0, 10, 0.05, "the backplane down")
            status, body = publish(n, "news", b'"lost"')
            assert status == 503 and b"backplane_down" in body, body
        fleet.redis.start()
        for n in fleet.nodes:
            wait_until(lambda: total(metrics(n), "ws_backplane_up") == 1 and
                       total(metrics(n), "ws_backplane_subscriptions") == 4, 15, 0.05, "every subscription back")
        for i, n in enumerate(fleet.nodes):
            status, body = publish(n, "news", json.dumps(i).encode())
            assert status == 200 and json.loads(body)["nodes"] == 3, body
        status, body = publish_user(fleet.nodes[0], "u4", b'"you"')
        assert status == 200 and json.loads(body)["nodes"] == 1, body
        for i, ws in enumerate(clients):
            got = [(await recv_json(ws))["data"] for _ in range(4 if i == 4 else 3)]
            assert got == ([0, 1, 2, "you"] if i == 4 else [0, 1, 2]), f"client {i}: nothing from the outage"
        for ws in clients:
            await ws.close()

    run_async(scenario(), 60)


def test_a_drain_under_load_closes_with_1001_only_and_everyone_is_back_in_seconds(fleet):
    leaving, *staying = fleet.nodes

    async def scenario():
        clients = await subscribe_through_haproxy(fleet, 30)
        stop = asyncio.Event()
        errors = []

        async def publisher():
            k = 0
            while not stop.is_set():
                status, body = await asyncio.to_thread(publish, staying[k % 2], "news", b'"tick"')
                if status != 200:
                    errors.append((status, body))
                k += 1
                await asyncio.sleep(0.01)

        async def client(i):
            """Reads ticks; on a close, it must be 1001, and it reconnects."""
            ws = clients[i]
            while not stop.is_set():
                try:
                    await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                except Exception:
                    code = ws.close_code
                    if code != 1001:
                        errors.append((i, code, ws.close_reason))
                    began = time.monotonic()
                    ws = await ws_connect(f"{fleet.uri}/ws?channels=news&user=u{i}").__aenter__()
                    assert (await recv_json(ws))["type"] == "subscribed"
                    moved.append((i, code, time.monotonic() - began))
            clients[i] = ws

        moved = []
        tasks = [asyncio.create_task(publisher())] + [asyncio.create_task(client(i)) for i in range(30)]
        await asyncio.sleep(0.5)
        leaving.signal(signal.SIGTERM)
        # drain_grace 2 s, then 1001; reconnects go through HAProxy, which
        # took the node out of rotation when its /readyz turned 503.
        await asyncio.to_thread(wait_until, lambda: len(moved) == 10, 15, 0.1, "the drained node's 10 clients back")
        stop.set()
        await asyncio.gather(*tasks)
        assert not errors, errors
        assert all(code == 1001 for _, code, _ in moved), moved
        assert max(seconds for _, _, seconds in moved) < 5, moved
        assert await asyncio.to_thread(leaving.proc.wait, 15) == 0
        assert sum(connections(n) for n in staying) == 30
        for ws in clients:
            await ws.close()

    run_async(scenario(), 90)
