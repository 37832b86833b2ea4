"""HTTP upgrade handshake: the 101 response and every rejection path.

Rejections are checked on raw sockets: the whole response is read until the
server closes the connection; the status code must be exactly the one
specified, the body must be non-empty text/plain, the response must carry
`Connection: close`, and the server must actually close the connection.

The tests on the shared servers run over ws:// and over wss:// (the
`transport` fixture): the HTTP upgrade is the same bytes inside TLS records
(byte-by-byte sends are then one record per byte), and must get the same
answers; on wss "the server closes" means its close_notify, then FIN.  The
tests that start a server of their own check that a limit is configurable,
not how a request is answered, and stay on ws://.
"""

import base64
import os

import pytest

import wsraw
from conftest import Endpoint
from wsraw import OP_TEXT, build_request

T = 10


@pytest.fixture(scope="module")
def both_listeners(ringgate_module, tls_server_args):
    """Default limits: request line 8 KiB, headers 32 KiB, 100 headers."""
    return ringgate_module(*tls_server_args)


@pytest.fixture(scope="module")
def subproto_both_listeners(ringgate_module, tls_server_args):
    return ringgate_module("--subprotocols", "chat,superchat", *tls_server_args)


@pytest.fixture
def server(both_listeners, on_transport):
    """The shared server on this test's transport (conftest.Endpoint)."""
    return on_transport(both_listeners)


@pytest.fixture
def subproto_server(subproto_both_listeners, on_transport):
    return on_transport(subproto_both_listeners)


def assert_rejection(resp: wsraw.HttpResponse, status: int):
    assert resp.status == status, f"expected {status}, got {resp.status}: {resp.describe()}"
    assert resp.closed, f"server did not close the connection after {status}: {resp.describe()}"
    assert "close" in resp.header_tokens("Connection"), f"no 'Connection: close': {resp.describe()}"
    ctype = (resp.header("Content-Type") or "").lower()
    assert ctype.startswith("text/plain"), f"Content-Type {ctype!r}, expected text/plain"
    assert resp.body.strip(), f"empty body for {status}: {resp.describe()}"
    cl = resp.header("Content-Length")
    if cl is not None:
        assert int(cl) == len(resp.body), f"Content-Length {cl} but body has {len(resp.body)} bytes"
    assert resp.header("Sec-WebSocket-Accept") is None, "rejection must not carry Sec-WebSocket-Accept"


def reject(server, data, status, bytewise=False):
    """`server`: an Endpoint (either transport) or a RinggateServer (ws://)."""
    if not isinstance(server, Endpoint):
        server = Endpoint(server, "ws")
    resp = server.http_exchange(data, bytewise=bytewise, timeout=T)
    assert_rejection(resp, status)
    return resp


# ---------------------------------------------------------------------------
# Successful upgrade
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bytewise", [False, True], ids=["one-piece", "byte-by-byte"])
def test_101_with_correct_accept(server, bytewise):
    """A valid request (sent in one piece, or one byte per send) gets
    `101 Switching Protocols` with Upgrade/Connection headers and the correct
    Sec-WebSocket-Accept = base64(sha1(key + GUID)); the connection then echoes."""
    key = wsraw.new_key()
    ws, resp = server.handshake(key=key, bytewise=bytewise)
    with ws:
        assert resp.status == 101
        assert resp.header("Sec-WebSocket-Accept") == wsraw.accept_for(key)
        assert "websocket" in resp.header_tokens("Upgrade")
        assert "upgrade" in resp.header_tokens("Connection")
        assert ws.echo("hello") == (OP_TEXT, b"hello")


def test_accept_known_vector(server):
    """RFC 6455 section 1.3 example: key dGhlIHNhbXBsZSBub25jZQ== ->
    accept s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws, resp = server.handshake(key=key)
    with ws:
        assert resp.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_no_extension_negotiated(server):
    """Offering permessage-deflate still yields a 101 WITHOUT any
    Sec-WebSocket-Extensions header (the server implements no extensions),
    and uncompressed frames echo normally."""
    ws, resp = server.handshake(headers={
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    with ws:
        assert resp.header("Sec-WebSocket-Extensions") is None, resp.describe()
        assert ws.echo(b"\x01\x02\x03") == (wsraw.OP_BINARY, b"\x01\x02\x03")


def test_header_names_and_tokens_case_insensitive(server):
    """Header names and the `websocket`/`upgrade` tokens are case-insensitive
    and Connection may list several tokens (Firefox sends
    `Connection: keep-alive, Upgrade`)."""
    key = wsraw.new_key()
    req = build_request(server.port, key=key, headers={
        "Host": None, "Upgrade": None, "Connection": None,
        "Sec-WebSocket-Key": None, "Sec-WebSocket-Version": None},
        extra=[("host", f"127.0.0.1:{server.port}"), ("UPGRADE", "WebSocket"),
               ("connection", "keep-alive, Upgrade"), ("sec-websocket-key", key),
               ("SEC-WEBSOCKET-VERSION", "13")])
    sock = server.connect()
    with sock:
        sock.sendall(req)
        head, leftover = wsraw.read_http_head(sock, T)
        resp = wsraw.parse_http_response(head)
        assert resp.status == 101, resp.describe()
        assert resp.header("Sec-WebSocket-Accept") == wsraw.accept_for(key)
        ws = wsraw.RawWS(sock, leftover)
        assert ws.echo("case") == (OP_TEXT, b"case")


def test_subprotocol_first_offered_supported(subproto_server):
    """With --subprotocols chat,superchat, a client offering "superchat, chat"
    gets exactly one Sec-WebSocket-Protocol: superchat (the first one the
    client offered that the server supports)."""
    ws, resp = subproto_server.handshake(headers={"Sec-WebSocket-Protocol": "superchat, chat"})
    with ws:
        values = resp.header_values("Sec-WebSocket-Protocol")
        assert values == ["superchat"], resp.describe()


def test_subprotocol_skips_unknown(subproto_server):
    """Unknown offers are skipped: "foo, chat, superchat" selects "chat"."""
    ws, resp = subproto_server.handshake(headers={"Sec-WebSocket-Protocol": "foo, chat, superchat"})
    with ws:
        assert resp.header_values("Sec-WebSocket-Protocol") == ["chat"], resp.describe()


def test_subprotocol_only_unknown(subproto_server):
    """Offering only unsupported subprotocols still upgrades, with NO
    Sec-WebSocket-Protocol header in the response."""
    ws, resp = subproto_server.handshake(headers={"Sec-WebSocket-Protocol": "foo, bar"})
    with ws:
        assert resp.header("Sec-WebSocket-Protocol") is None, resp.describe()
        assert ws.echo("ok") == (OP_TEXT, b"ok")


def test_subprotocol_none_configured(server):
    """Without --subprotocols, an offered subprotocol is not selected."""
    ws, resp = server.handshake(headers={"Sec-WebSocket-Protocol": "chat"})
    with ws:
        assert resp.header("Sec-WebSocket-Protocol") is None, resp.describe()


def test_exactly_max_headers_is_accepted(server):
    """100 header lines in total (= --max-headers default) is still accepted."""
    extra = [(f"X-Pad-{i}", "v") for i in range(100 - 5)]
    ws, resp = server.handshake(extra=extra)
    ws.close()
    assert resp.status == 101


def test_large_but_allowed_headers_accepted(server):
    """16 KiB of headers (half the 32 KiB default limit) is accepted."""
    extra = [(f"X-Big-{i}", "b" * 4000) for i in range(4)]
    ws, resp = server.handshake(extra=extra)
    ws.close()
    assert resp.status == 101


# ---------------------------------------------------------------------------
# Rejections
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bytewise", [False, True], ids=["one-piece", "byte-by-byte"])
def test_post_is_405(server, bytewise):
    """A non-GET method gets 405 Method Not Allowed with `Allow: GET`."""
    resp = reject(server, build_request(server.port, method="POST"), 405, bytewise=bytewise)
    assert [t.upper() for t in resp.header_tokens("Allow")] == ["GET"], resp.describe()


def test_put_is_405(server):
    """PUT also gets 405 with `Allow: GET`."""
    resp = reject(server, build_request(server.port, method="PUT"), 405)
    assert [t.upper() for t in resp.header_tokens("Allow")] == ["GET"], resp.describe()


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-piece", "byte-by-byte"])
def test_unknown_path_is_404(server, bytewise):
    """An upgrade to a path other than --echo-path gets 404."""
    reject(server, build_request(server.port, "/nope"), 404, bytewise=bytewise)


def test_request_line_too_long_is_414(server):
    """A request line longer than --max-request-line (8 KiB) gets 414."""
    reject(server, build_request(server.port, "/echo?" + "a" * 9000), 414)


# ws:// only: that the limit is configurable; the 414 itself runs on both above.
def test_request_line_limit_configurable(ringgate):
    """--max-request-line 256 rejects a 300-byte request line with 414 while a
    short request still upgrades."""
    srv = ringgate("--max-request-line", "256")
    reject(srv, build_request(srv.port, "/" + "p" * 300), 414)
    ws, _ = wsraw.handshake(srv.port)
    ws.close()


def test_headers_too_large_is_431(server):
    """Total header bytes above --max-header-bytes (32 KiB) gets 431."""
    extra = [(f"X-Big-{i}", "b" * 4000) for i in range(10)]   # ~40 KiB
    reject(server, build_request(server.port, extra=extra), 431)


def test_single_huge_header_is_431(server):
    """One 40 KiB header line also exceeds --max-header-bytes: 431."""
    reject(server, build_request(server.port, extra=[("X-Huge", "h" * 40000)]), 431)


def test_too_many_headers_is_431(server):
    """More header lines than --max-headers (100) gets 431, even though
    the total size is small."""
    extra = [(f"X-Pad-{i}", "v") for i in range(101)]
    reject(server, build_request(server.port, extra=extra), 431)


# ws:// only: that the limit is configurable; the 431 itself runs on both above.
def test_max_headers_configurable(ringgate):
    """--max-headers 10: 11 headers -> 431; 6 headers upgrade."""
    srv = ringgate("--max-headers", "10")
    reject(srv, build_request(srv.port, extra=[(f"X-{i}", "v") for i in range(6)]), 431)
    ws, _ = wsraw.handshake(srv.port, extra=[("X-1", "v")])
    ws.close()


# ws:// only: that the limit is configurable; the 431 itself runs on both above.
def test_max_header_bytes_configurable(ringgate):
    """--max-header-bytes 1KiB: a 2000-byte header -> 431."""
    srv = ringgate("--max-header-bytes", "1KiB")
    reject(srv, build_request(srv.port, extra=[("X-Big", "b" * 2000)]), 431)
    ws, _ = wsraw.handshake(srv.port)
    ws.close()


@pytest.mark.parametrize("version", ["8", None], ids=["version-8", "version-missing"])
def test_bad_websocket_version_is_426(server, version):
    """Sec-WebSocket-Version other than 13 (or missing) gets 426 Upgrade
    Required with `Sec-WebSocket-Version: 13`."""
    resp = reject(server, build_request(server.port, headers={"Sec-WebSocket-Version": version}), 426)
    assert resp.header_tokens("Sec-WebSocket-Version") == ["13"], resp.describe()


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-piece", "byte-by-byte"])
def test_missing_key_is_400(server, bytewise):
    """A request without Sec-WebSocket-Key gets 400."""
    reject(server, build_request(server.port, headers={"Sec-WebSocket-Key": None}), 400,
           bytewise=bytewise)


@pytest.mark.parametrize("key", [
    "not-base64!!",                                           # not base64 at all
    base64.b64encode(os.urandom(15)).decode(),                # 15 bytes
    base64.b64encode(os.urandom(17)).decode(),                # 17 bytes
    base64.b64encode(os.urandom(32)).decode(),                # 32 bytes
    "",                                                       # empty
], ids=["garbage", "15-bytes", "17-bytes", "32-bytes", "empty"])
def test_bad_key_is_400(server, key):
    """A Sec-WebSocket-Key that does not base64-decode to exactly 16 bytes gets 400."""
    reject(server, build_request(server.port, headers={"Sec-WebSocket-Key": key}), 400)


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /echo\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/9.Z\r\nHost: x\r\n\r\n",
], ids=["garbage", "method-only", "no-version", "extra-token", "bad-version"])
def test_malformed_request_line_is_400(server, raw):
    """A malformed request line gets 400."""
    reject(server, raw, 400)


def test_missing_upgrade_is_426(server):
    """A GET to the echo path without `Upgrade: websocket` gets 426."""
    reject(server, build_request(server.port, headers={"Upgrade": None}), 426)


def test_connection_without_upgrade_token_is_400(server):
    """`Connection: keep-alive` (no `upgrade` token) gets 400."""
    reject(server, build_request(server.port, headers={"Connection": "keep-alive"}), 400)


def test_missing_host_is_400(server):
    """A request without Host gets 400."""
    reject(server, build_request(server.port, headers={"Host": None}), 400)


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-piece", "byte-by-byte"])
def test_header_without_colon_is_400(server, bytewise):
    """A header line without a colon gets 400."""
    reject(server, build_request(server.port, extra_lines=[b"ThisLineHasNoColon"]), 400,
           bytewise=bytewise)


def test_server_survives_rejections(server):
    """After a burst of 50 malformed requests the server still upgrades and echoes."""
    for i in range(50):
        reject(server, b"GARBAGE %d\r\n\r\n" % i, 400)
    ws, _ = server.handshake()
    with ws:
        assert ws.echo("alive") == (OP_TEXT, b"alive")
    server.assert_alive()
