"""The PROXY protocol v2 from balancers (proxy_protocol_from).

The headers are built by wsraw.proxy_v2() from HAProxy's spec, not by
ringgate's encoder, and sent the way a balancer sends them: before the
request, below TLS.  What is asserted is what an operator relies on: the
per-IP limit counts the client's address from the header, not the
balancer's; a bad header from a balancer and any header from a
non-balancer get a clear refusal that costs nobody else anything.
test_haproxy.py runs the same path behind a real HAProxy.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from conftest import metrics, total, wait_until
import wsraw

BALANCER = ("--proxy-protocol-from", "127.0.0.1/32")


@pytest.fixture(scope="module")
def srv(ringgate_module, tls_server_args):
    return ringgate_module(*BALANCER, "--per-ip-limit", "1", "--workers", "2", *tls_server_args)


def refusal(srv, reason):
    return total(metrics(srv), "ws_handshake_failures_total", reason=reason)


def test_per_ip_limit_counts_the_client_address_from_the_header(srv):
    before = total(metrics(srv), "ws_proxy_headers_total", command="proxy")
    a, _ = wsraw.handshake(srv.port, proxy=wsraw.proxy_v2("203.0.113.7"))
    with a:
        # Same client behind the same balancer: over per_ip_limit 1.
        with pytest.raises(wsraw.UpgradeRefused) as refused:
            wsraw.handshake(srv.port, proxy=wsraw.proxy_v2("203.0.113.7", source_port=40001))
        assert refused.value.status == 429
        # Another client behind the same balancer (all from 127.0.0.1): served.
        b, _ = wsraw.handshake(srv.port, proxy=wsraw.proxy_v2("203.0.113.8"))
        c, _ = wsraw.handshake(srv.port, proxy=wsraw.proxy_v2("2001:db8::1"))
        with b, c:
            assert a.echo(b"after the header")[1] == b"after the header"
            assert c.echo(b"v6")[1] == b"v6"
    assert total(metrics(srv), "ws_proxy_headers_total", command="proxy") == before + 4
    # The limit is released with the connection: the client may come back.
    wait_until(lambda: wsraw.try_handshake(srv.port, refused=(429,), proxy=wsraw.proxy_v2("203.0.113.7")),
               10, 0.1, "client 203.0.113.7 served again after its connection closed").close()


@pytest.mark.parametrize("cut", [1, 5, 12, 13, 15, 16, 20, 27, 28])
def test_a_header_split_across_segments_is_read_whole(srv, cut):
    header = wsraw.proxy_v2("198.51.100.%d" % cut)
    request = wsraw.build_request(srv.port)
    sock = wsraw.connect(srv.port)
    try:
        sock.sendall(header[:cut])
        time.sleep(0.05)  # its own segment, its own recv
        sock.sendall(header[cut:] + request)
        resp, leftover = wsraw.read_upgrade_response(sock)
        assert resp.status == 101, resp.describe()
        ws = wsraw.RawWS(sock, leftover)
        assert ws.echo(b"split")[1] == b"split"
        ws.close()
    finally:
        sock.close()


def test_local_command_keeps_the_connection_as_the_balancers(srv):
    before = total(metrics(srv), "ws_proxy_headers_total", command="local")
    # LOCAL (a balancer's own connection) names no client: per_ip_limit does
    # not count it under anyone, so two at once are both served.
    a, _ = wsraw.handshake(srv.port, proxy=wsraw.proxy_v2(local=True))
    b, _ = wsraw.handshake(srv.port, proxy=wsraw.proxy_v2(local=True, tlvs=b"\x01\x00\x08http/1.1"))
    with a, b:
        assert b.echo(b"local")[1] == b"local"
    assert total(metrics(srv), "ws_proxy_headers_total", command="local") == before + 2


BAD_HEADERS = [
    (wsraw.build_request(1), "no PROXY protocol v2 header"),
    (b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8080\r\n", "version 1 is not accepted"),
    (wsraw.PROXY_V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "version is not 2"),
    (wsraw.PROXY_V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12), "datagram"),
    (wsraw.PROXY_V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "shorter than its address family"),
    (wsraw.PROXY_V2_SIGNATURE + b"\x21\x11\x08\x00", "longer than the 1024 bytes"),
]


@pytest.mark.parametrize("case", range(len(BAD_HEADERS)), ids=["http", "v1", "version", "udp", "short", "long"])
def test_a_bad_header_from_a_balancer_is_answered_400_naming_it(srv, case):
    data, why = BAD_HEADERS[case]
    # Each case's bystander is a client of its own: per_ip_limit is 1, and the
    # previous case's may not be released yet.
    with wsraw.handshake(srv.port, proxy=wsraw.proxy_v2("192.0.2.%d" % (200 + case)))[0] as bystander:
        before = refusal(srv, "proxy_header")
        resp = wsraw.http_exchange(srv.port, data + wsraw.build_request(srv.port))
        assert resp.status == 400
        assert why in resp.body.decode(), resp.describe()
        assert refusal(srv, "proxy_header") == before + 1
        assert bystander.echo(b"unharmed")[1] == b"unharmed"


def test_a_header_from_an_address_that_is_no_balancer_is_refused(ringgate):
    srv = ringgate("--proxy-protocol-from", "127.0.0.2/32, 10.0.0.0/8")
    resp = wsraw.http_exchange(srv.port, wsraw.proxy_v2("203.0.113.7") + wsraw.build_request(srv.port))
    assert resp.status == 400
    assert "not listed in proxy_protocol_from" in resp.body.decode(), resp.describe()
    resp = wsraw.http_exchange(srv.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n" + wsraw.build_request(srv.port))
    assert resp.status == 400
    assert total(metrics(srv), "ws_handshake_failures_total", reason="proxy_untrusted") == 2
    # A client that sends no header is served as ever, and the balancer is.
    with wsraw.handshake(srv.port)[0] as ws:
        assert ws.echo(b"direct")[1] == b"direct"
    with wsraw.handshake(srv.port, source="127.0.0.2", proxy=wsraw.proxy_v2("203.0.113.9"))[0] as ws:
        assert ws.echo(b"balanced")[1] == b"balanced"


def test_without_proxy_protocol_from_every_header_is_refused(ringgate):
    srv = ringgate()
    resp = wsraw.http_exchange(srv.port, wsraw.proxy_v2("203.0.113.7") + wsraw.build_request(srv.port))
    assert resp.status == 400
    assert "not listed in proxy_protocol_from" in resp.body.decode()


def test_wss_behind_a_balancer_reads_the_header_below_tls(srv, tls_client_context):
    ws, _ = wsraw.handshake(srv.tls_port, tls=tls_client_context, server_hostname="localhost",
                            proxy=wsraw.proxy_v2("203.0.113.50"))
    with ws:
        assert ws.echo(b"over tls")[1] == b"over tls"
        # The same client again: refused before its TLS handshake, with a
        # plaintext alert (no handshake is spent on a refusal).
        before = refusal(srv, "per_ip")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            wsraw.handshake(srv.tls_port, tls=tls_client_context, server_hostname="localhost",
                            proxy=wsraw.proxy_v2("203.0.113.50", source_port=2))
        assert refusal(srv, "per_ip") == before + 1
    before = refusal(srv, "proxy_header")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        wsraw.handshake(srv.tls_port, tls=tls_client_context, server_hostname="localhost",
                        proxy=b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n")
    assert refusal(srv, "proxy_header") == before + 1


@pytest.mark.parametrize("ranges,message", [
    ("10.0.0.1/8", "address bits set beyond its prefix length"),
    ("10.0.0.0/33", "IPv4 prefix is at most 32 bits"),
    ("balancer.local", "is not an IPv4 or IPv6 address"),
    ("fd00::/x", "must be a number"),
])
def test_a_bad_range_refuses_to_start_naming_it(ranges, message):
    from conftest import run_ringgate
    r = run_ringgate("--listen", "127.0.0.1:0", "--admin-listen", "off", "--proxy-protocol-from", ranges)
    assert r.returncode != 0
    assert "proxy_protocol_from" in r.stdout + r.stderr and message in r.stdout + r.stderr
