"""ringgate nodes behind a real HAProxy, configured by deploy/haproxy/haproxy.cfg.

The shipped configuration is used as it is, except for what a machine of
its own would set: the addresses it binds and the servers it balances (two
nodes on 127.0.0.2 and 127.0.0.3), global maxconn (this machine's
RLIMIT_NOFILE), and the health-check interval (200 ms instead of 2 s, so
the drain test takes seconds; `timeout check` stays 2 s, so a check slowed
by a loaded machine is not taken for a failure).  Clients connect from their own loopback
addresses (127.0.0.9, ...), so what a node sees through the PROXY header
can be told from HAProxy's address.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import admin_get, metrics, publish, total, wait_until
from peers import HAPROXY, HAProxy, RedisServer
import wsraw

pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY), reason="haproxy is not installed (tools/dev/deps.sh)")

NODE_HOSTS = ("127.0.0.2", "127.0.0.3")


@pytest.fixture
def fleet(ringgate, tmp_path, tls_server_args):
    redis = RedisServer(log_path=tmp_path / "redis.log")

    def node(host, *extra):
        return ringgate("--listen", f"{host}:0", "--admin-listen", f"{host}:0", "--tls-listen", f"{host}:0",
                        *tls_server_args[2:], "--proxy-protocol-from", "127.0.0.1/32", "--workers", "1",
                        "--backplane", redis.url, "--node-id", f"node-{host}", *extra)
    nodes = [node(h, "--per-ip-limit", "1", "--drain-grace", "6s", "--drain-timeout", "5s") for h in NODE_HOSTS]
    proxy = HAProxy(tmp_path, nodes)  # health checks every 200 ms
    for n in nodes:  # the backplane connects on its own thread, after start-up
        wait_until(lambda: total(metrics(n), "ws_backplane_up") == 1, 10, 0.05, "the backplane up")
    # The fixture's probe of HAProxy's frontend reached a node as a PROXY
    # header and a FIN: let it be counted before tests take their baselines.
    wait_until(lambda: sum(proxy_headers(n) for n in nodes) == 1, 10, 0.05, "the probe's header counted")
    yield nodes, proxy
    proxy.stop()
    redis.stop()


def proxy_headers(node) -> float:
    return total(metrics(node), "ws_proxy_headers_total", command="proxy")


def test_clients_reach_the_nodes_with_their_own_addresses(fleet, tls_client_context):
    nodes, proxy = fleet
    base = [proxy_headers(n) for n in nodes]  # the fixture's probe made one
    # per_ip_limit 1 on each node.  Were the nodes to see HAProxy's address
    # (127.0.0.1 for every client), the second connection would be refused.
    first, _ = wsraw.handshake(proxy.ws_port, source="127.0.0.9")
    second, _ = wsraw.handshake(proxy.ws_port, source="127.0.0.9")  # leastconn: the other node
    with first, second:
        assert first.echo(b"one")[1] == b"one" and second.echo(b"two")[1] == b"two"
        assert [proxy_headers(n) - b for n, b in zip(nodes, base)] == [1, 1], "leastconn: one on each node"
        # A third from the same client: both nodes already hold one of its
        # connections, and the 429 crosses HAProxy.
        with pytest.raises(wsraw.UpgradeRefused) as refused:
            wsraw.handshake(proxy.ws_port, source="127.0.0.9")
        assert refused.value.status == 429
        third, _ = wsraw.handshake(proxy.ws_port, source="127.0.0.10")
        secure, _ = wsraw.handshake(proxy.wss_port, source="127.0.0.11", tls=tls_client_context,
                                    server_hostname="localhost")
        with third, secure:
            assert third.echo(b"three")[1] == b"three"
            assert secure.echo(b"over wss")[1] == b"over wss"
    assert sum(total(metrics(n), "ws_handshake_failures_total", reason="per_ip") for n in nodes) == 1
    assert sum(proxy_headers(n) for n in nodes) - sum(base) == 5


def test_a_draining_node_leaves_the_rotation_before_its_clients_move(fleet):
    nodes, proxy = fleet
    leaving, staying = nodes
    clients = [wsraw.handshake(proxy.ws_port, source=f"127.0.0.{20 + i}")[0] for i in range(4)]
    try:
        assert [total(metrics(n), "ws_total_connections") for n in nodes] == [2, 2]
        leaving.signal(signal.SIGTERM)
        # 1. /readyz is 503 at once (as soon as the main thread takes the
        #    signal); the node still serves its connections.
        wait_until(lambda: admin_get(leaving.admin_port, "/readyz", host=leaving.admin_host)[0] == 503, 2, 0.02,
                   "/readyz 503 after SIGTERM")
        assert "drain_grace" in admin_get(leaving.admin_port, "/readyz", host=leaving.admin_host)[2]
        # 2. HAProxy's checks take it out of rotation (fall 2 x 200 ms):
        #    newcomers all land on the other node.
        time.sleep(1.0)
        before = proxy_headers(leaving)
        newcomers = [wsraw.handshake(proxy.ws_port, source=f"127.0.0.{30 + i}")[0] for i in range(4)]
        for ws in newcomers:
            ws.close()
        assert proxy_headers(leaving) == before, "a node in drain_grace got a newcomer through HAProxy"
        for ws in clients:
            assert ws.echo(b"still here")[1] == b"still here"
        # 3. After drain_grace its clients get 1001 and reconnect through
        #    HAProxy, to the other node.
        moved = []
        for i, ws in enumerate(clients):
            if ws.poll(5.0):
                code = ws.expect_close()[0]
                assert code == 1001
                moved.append(i)
        assert len(moved) == 2, f"the leaving node held 2 of the 4 clients, {len(moved)} were closed"
        for i in moved:
            clients[i] = wsraw.handshake(proxy.ws_port, source=f"127.0.0.{20 + i}")[0]
            assert clients[i].echo(b"moved")[1] == b"moved"
        assert leaving.wait(10) == 0
        assert total(metrics(staying), "ws_total_connections") == 4

    finally:
        for ws in clients:
            ws.close()


def registry(node, path):
    import http.client
    conn = http.client.HTTPConnection(node.admin_host, node.admin_port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_a_publish_reaches_clients_on_every_node_behind_haproxy_and_the_registry_knows_where(fleet):
    nodes, proxy = fleet
    clients = []
    try:
        for i in range(4):
            ws, _ = wsraw.handshake(proxy.ws_port, f"/ws?channels=news&user=user{i}", source=f"127.0.0.{40 + i}")
            assert json.loads(ws.recv_message()[1])["type"] == "subscribed"
            clients.append(ws)
        # leastconn spread them 2 and 2; any node says where each one is.
        wait_until(lambda: sorted(n["subscribers"] for n in registry(nodes[0], "/channels/news")["nodes"]) == [2, 2],
                   10, 0.1, "news: two subscribers on each node")
        homes = [registry(nodes[1], f"/users/user{i}")["nodes"] for i in range(4)]
        assert all(len(h) == 1 and h[0]["connections"] == 1 for h in homes), homes
        assert sorted(h[0]["node"] for h in homes) == ["node-127.0.0.2"] * 2 + ["node-127.0.0.3"] * 2
        wait_until(lambda: all(total(metrics(n), "ws_backplane_subscriptions") == 3 for n in nodes), 10, 0.05,
                   "each node subscribed to news and its two users")
        status, body = publish(nodes[0], "news", b'{"breaking":true}')
        assert status == 200 and json.loads(body)["nodes"] == 2, body
        for ws in clients:
            message = json.loads(ws.recv_message()[1])
            assert message["channel"] == "news" and message["data"] == {"breaking": True}
    finally:
        for ws in clients:
            ws.close()
