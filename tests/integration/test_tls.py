"""wss://: TLS termination in the workers, against real clients.

Clients are Python's ssl module (OpenSSL, in the test process only) under
python3-websockets, verifying the server's certificate against a CA made at
test time (tlsca.py); raw sockets and ssl.SSLObject over memory BIOs craft
the bad inputs (garbage, plain HTTP, truncated and tampered records, an early
close_notify).  Every bad-input test keeps a bystander wss connection open
and checks it still echoes afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import time

import pytest

from conftest import admin_get, metrics, publish, run_async, total, wait_until, ws_connect
from tlsca import TestCA
import wsraw

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("tls-ca"))


@pytest.fixture(scope="module")
def leaf(ca):
    return ca.issue("localhost", key="ec", days=20)


def tls_args(leaf, *extra):
    return ["--tls-listen", "127.0.0.1:0", "--tls-cert-file", str(leaf.cert_path), "--tls-key-file",
            str(leaf.key_path), *extra]


@pytest.fixture(scope="module")
def srv(ringgate_module, leaf):
    return ringgate_module(*tls_args(leaf, "--workers", "2", "--handshake-timeout", "2s"))


def client_context(ca, max_version=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.cert_path))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


async def echo_once(uri, ctx, message="ping"):
    async with ws_connect(uri, ssl=ctx) as ws:
        await ws.send(message)
        return await asyncio.wait_for(ws.recv(), 10)


class Bystander:
    """A wss connection opened before a bad input and checked after it."""

    def __init__(self, srv, ca):
        self.uri = srv.wss_uri("/echo")
        self.ctx = client_context(ca)

    async def __aenter__(self):
        self.ws = await ws_connect(self.uri, ssl=self.ctx).__aenter__()
        await self.ws.send("before")
        assert await asyncio.wait_for(self.ws.recv(), 10) == "before"
        return self

    async def __aexit__(self, *exc):
        if exc[0] is None:
            await self.ws.send("after")
            assert await asyncio.wait_for(self.ws.recv(), 10) == "after", "the bystander stopped echoing"
        await self.ws.close()


def raw_exchange(port, data: bytes, read_s: float = 5.0, half_close: bool = False) -> bytes:
    """Sends `data` on a fresh TCP connection, returns what arrives until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_s) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        deadline = time.monotonic() + read_s
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out


class MemoryTls:
    """A TLS client over memory BIOs on a raw socket: it lets a test send
    records the ssl module would never send (tampered, truncated)."""

    def __init__(self, port, ca, server_hostname="localhost"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = client_context(ca).wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)

    def flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed during the handshake")
                self.incoming.write(chunk)

    def seal(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()

    def read_raw_until_eof(self, timeout_s=5.0) -> bytes:
        self.sock.settimeout(timeout_s)
        out = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return out

    def close(self):
        self.sock.close()


def upgrade_request(path="/echo") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def alert_records(data: bytes) -> list[tuple[int, int]]:
    """(level, description) of each plaintext alert record in `data`."""
    out = []
    i = 0
    while i + 5 <= len(data):
        kind, length = data[i], int.from_bytes(data[i + 3:i + 5], "big")
        if kind == 0x15 and length == 2 and i + 7 <= len(data):
            out.append((data[i + 5], data[i + 6]))
        i += 5 + length
    return out


# ---------------------------------------------------------------- the happy paths


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_echo_over_wss_verifies_the_certificate(srv, ca, version):
    async def go():
        ctx = client_context(ca, max_version=version)
        async with ws_connect(srv.wss_uri("/echo"), ssl=ctx) as ws:
            obj = ws.transport.get_extra_info("ssl_object")
            assert obj.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
            assert obj.selected_alpn_protocol() in (None, "http/1.1")
            # Text, binary, a message of several records, one larger than a record buffer.
            for m in ["hello", b"\x00\x01\x02" * 5, "x" * 40_000, bytes(range(256)) * 1200]:
                await ws.send(m)
                assert await asyncio.wait_for(ws.recv(), 10) == m
            # Many small frames gathered into records.
            for i in range(200):
                await ws.send(f"m{i}")
            for i in range(200):
                assert await asyncio.wait_for(ws.recv(), 10) == f"m{i}"
    run_async(go(), 60)
    m = metrics(srv)
    label = "1.3" if version == ssl.TLSVersion.TLSv1_3 else "1.2"
    assert total(m, "ws_tls_handshakes_total", result="ok", version=label) >= 1


def test_an_untrusted_client_is_refused_by_its_own_verification(srv, tmp_path):
    other = TestCA(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        run_async(echo_once(srv.wss_uri("/echo"), client_context(other)), 30)


def test_alpn_http11_is_selected(srv, ca):
    ctx = client_context(ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "http/1.1"


def test_pubsub_over_wss_receives_a_publication(srv, ca):
    async def go():
        async with ws_connect(srv.wss_uri("/ws?channels=news"), ssl=client_context(ca)) as ws:
            subscribed = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert subscribed == {"type": "subscribed", "channel": "news"}
            status, body = await asyncio.to_thread(publish, srv, "news", b'{"n":1}')
            assert status == 200, body
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["type"] == "message" and msg["channel"] == "news" and msg["data"] == {"n": 1}, msg
    run_async(go(), 30)


def test_plain_listener_still_serves_ws(srv):
    async def go():
        async with ws_connect(srv.uri("/echo")) as ws:
            await ws.send("plain")
            return await asyncio.wait_for(ws.recv(), 10)
    assert run_async(go(), 30) == "plain"


def test_metrics_and_status_show_tls(srv, ca, leaf):
    run_async(echo_once(srv.wss_uri("/echo"), client_context(ca)), 30)
    m = metrics(srv)
    expiry = total(m, "ws_tls_certificate_expiry_seconds")
    expected = (leaf.not_after.timestamp() - time.time())
    assert abs(expiry - expected) < 120, (expiry, expected)
    assert total(m, "ws_tls_handshake_duration_seconds_count") >= 1
    status, _, body = admin_get(srv.admin_port, "/status")
    assert status == 200
    tls = json.loads(body)["tls"]
    assert tls["listen"].startswith("127.0.0.1:")
    assert tls["certificate_expiry_s"] > 19 * 86400


# ---------------------------------------------------------------- bad input


def test_plain_http_on_the_tls_port_gets_a_400_naming_the_mistake(srv, ca):
    async def go():
        async with Bystander(srv, ca):
            before = total(metrics(srv), "ws_tls_failures_total", reason="plain_http")
            answer = await asyncio.to_thread(raw_exchange, srv.tls_port, upgrade_request())
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:100]
            assert b"This port speaks TLS" in answer
            assert total(metrics(srv), "ws_tls_failures_total", reason="plain_http") == before + 1
    run_async(go(), 30)


def test_garbage_instead_of_a_client_hello_gets_a_decode_error_alert(srv, ca):
    async def go():
        async with Bystander(srv, ca):
            before = total(metrics(srv), "ws_tls_failures_total", reason="not_tls")
            answer = await asyncio.to_thread(raw_exchange, srv.tls_port, b"\x00\xffgarbage" * 20)
            assert alert_records(answer) == [(2, 50)], answer  # fatal decode_error
            assert total(metrics(srv), "ws_tls_failures_total", reason="not_tls") == before + 1
    run_async(go(), 30)


def test_a_malformed_client_hello_gets_a_fatal_alert(srv, ca):
    async def go():
        async with Bystander(srv, ca):
            before = total(metrics(srv), "ws_tls_failures_total", reason="handshake")
            record = b"\x16\x03\x01\x00\x08" + b"\x01\x00\x00\x04abcd"  # a ClientHello of 4 bytes
            answer = await asyncio.to_thread(raw_exchange, srv.tls_port, record)
            alerts = alert_records(answer)
            assert alerts and alerts[0][0] == 2, answer  # fatal
            assert total(metrics(srv), "ws_tls_failures_total", reason="handshake") == before + 1
    run_async(go(), 30)


def test_a_truncated_handshake_is_closed_on_schedule_and_counted(srv, ca):
    async def go():
        async with Bystander(srv, ca):
            before = total(metrics(srv), "ws_tls_failures_total", reason="truncated")
            # Half a ClientHello, then silence: handshake_timeout (2 s) ends it.
            hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40
            start = time.monotonic()
            answer = await asyncio.to_thread(raw_exchange, srv.tls_port, hello, 10.0)
            took = time.monotonic() - start
            assert 1.5 < took < 8, took
            assert answer == b"" or alert_records(answer), answer
            # Half a ClientHello, then the client's FIN: counted as truncated.
            await asyncio.to_thread(raw_exchange, srv.tls_port, hello, 5.0, True)
            wait_until(lambda: total(metrics(srv), "ws_tls_failures_total", reason="truncated") >= before + 1, 5,
                       what="the truncated handshake counted")
    run_async(go(), 40)


def test_a_tampered_record_gets_bad_record_mac_and_a_close(srv, ca):
    async def go():
        async with Bystander(srv, ca):
            before = total(metrics(srv), "ws_tls_failures_total", reason="bad_record")
            t = MemoryTls(srv.tls_port, ca)
            try:
                await asyncio.to_thread(t.handshake)
                record = bytearray(t.seal(upgrade_request()))
                record[-3] ^= 0x40  # inside the AEAD tag
                t.sock.sendall(bytes(record))
                answer = await asyncio.to_thread(t.read_raw_until_eof)
            finally:
                t.close()
            # The alert is encrypted under TLS 1.3, so only the close is
            # visible here; the count says which alert it was.
            assert answer is not None
            wait_until(lambda: total(metrics(srv), "ws_tls_failures_total", reason="bad_record") == before + 1, 5,
                       what="the bad record counted")
    run_async(go(), 30)


def test_an_early_close_notify_is_answered_with_ours(srv, ca):
    async def go():
        async with Bystander(srv, ca):
            before = total(metrics(srv), "ws_tls_close_notify_total")
            t = MemoryTls(srv.tls_port, ca)
            try:
                await asyncio.to_thread(t.handshake)
                with pytest.raises(ssl.SSLWantReadError):
                    t.obj.unwrap()  # sends our close_notify, wants the server's
                t.flush()
                answer = await asyncio.to_thread(t.read_raw_until_eof)
                t.incoming.write(answer)
                t.obj.unwrap()  # the server's close_notify arrived: a clean TLS close
            finally:
                t.close()
            assert total(metrics(srv), "ws_tls_close_notify_total") == before + 1
    run_async(go(), 30)


def test_a_closing_websocket_says_close_notify_before_fin(srv, ca):
    t = MemoryTls(srv.tls_port, ca)
    try:
        t.handshake()
        t.sock.sendall(t.seal(upgrade_request("/nowhere")))  # 404, then the server closes
        answer = t.read_raw_until_eof()
        t.incoming.write(answer)
        t.incoming.write_eof()
        # Without the server's close_notify, the end of the bytes would be a
        # truncation: read() would raise SSLEOFError instead of ending.
        plain = b""
        while chunk := t.obj.read(65536):
            plain += chunk
    finally:
        t.close()
    assert plain.startswith(b"HTTP/1.1 404"), plain[:80]


# ---------------------------------------------------------------- limits


def test_handshakes_over_tls_handshakes_max_get_an_internal_error_alert(ringgate, leaf, ca):
    s = ringgate(*tls_args(leaf, "--workers", "1", "--tls-handshakes-max", "2", "--handshake-timeout", "5s"))
    # Two silent connections hold the two handshake places.
    held = [socket.create_connection(("127.0.0.1", s.tls_port), timeout=5) for _ in range(2)]
    try:
        wait_until(lambda: total(metrics(s), "ws_tls_handshakes_in_flight") == 2, 5, what="two handshakes in flight")
        answer = raw_exchange(s.tls_port, b"", 5.0)
        assert alert_records(answer) == [(2, 80)], answer  # fatal internal_error, before any handshake
        assert total(metrics(s), "ws_tls_refusals_total") == 1
        assert total(metrics(s), "ws_handshake_failures_total", reason="tls_handshakes") == 1
        # A refused connection that stays open (lingering until the client
        # goes or close_timeout) holds no handshake place: it never began one.
        held.append(socket.create_connection(("127.0.0.1", s.tls_port), timeout=5))
        wait_until(lambda: total(metrics(s), "ws_handshake_failures_total", reason="tls_handshakes") == 2, 5,
                   what="the third connection refused")
        assert total(metrics(s), "ws_tls_handshakes_in_flight") == 2
    finally:
        for h in held:
            h.close()
    # With the places free again, a real client gets through.
    wait_until(lambda: total(metrics(s), "ws_tls_handshakes_in_flight") == 0, 5, what="the places freed")
    assert run_async(echo_once(s.wss_uri("/echo"), client_context(ca)), 30) == "ping"


def test_one_record_buffer_serves_many_connections_in_turn(ringgate, leaf, ca):
    """tls_record_buffers = 1: every send waits its turn for the one buffer;
    nothing is lost or reordered, and the buffer is back once all is sent."""
    s = ringgate(*tls_args(leaf, "--workers", "1", "--tls-record-buffers", "1"))

    async def client(i):
        async with ws_connect(s.wss_uri("/echo"), ssl=client_context(ca)) as ws:
            for j in range(20):
                m = f"{i}:{j}:" + "y" * (j * 997)
                await ws.send(m)
                assert await asyncio.wait_for(ws.recv(), 20) == m

    async def go():
        await asyncio.gather(*(client(i) for i in range(8)))
    run_async(go(), 90)
    wait_until(lambda: total(metrics(s), "ws_tls_record_buffers_in_use") == 0, 5, what="the buffer back")
    wait_until(lambda: total(metrics(s), "ws_tls_connections") == 0, 10, what="every SSL freed")


def test_tls_bytes_held_read_zero_once_everything_closed(ringgate, leaf, ca):
    s = ringgate(*tls_args(leaf, "--workers", "1"))

    async def go():
        conns = [await ws_connect(s.wss_uri("/echo"), ssl=client_context(ca)).__aenter__() for _ in range(20)]
        held = total(metrics(s), "ws_tls_bytes_held")
        assert held >= 20 * 4096, held  # each established SSL is charged
        for c in conns:
            await c.close()
    run_async(go(), 60)
    wait_until(lambda: total(metrics(s), "ws_tls_bytes_held") == 0, 10, what="TLS bytes held back to 0")


# ---------------------------------------------------------------- start-up


def test_start_up_refuses_a_key_that_is_not_the_certificates(ringgate, ca):
    a = ca.issue("localhost")
    b = ca.issue("localhost")
    s = ringgate("--tls-listen", "127.0.0.1:0", "--tls-cert-file", str(a.cert_path), "--tls-key-file",
                 str(b.key_path), require_listening=False)
    s.expected_exit = 2
    assert s.wait(10) == 2
    assert "is not the key of tls_cert_file" in s.log()


def test_start_up_refuses_tls_listen_without_a_certificate(ringgate):
    s = ringgate("--tls-listen", "127.0.0.1:0", require_listening=False)
    s.expected_exit = 2
    assert s.wait(10) == 2
    assert "tls_listen needs tls_cert_file" in s.log()


def test_start_up_line_says_what_each_listener_serves(srv):
    line = next(l for l in srv.log().splitlines() if "listening on" in l)
    assert f"tls=127.0.0.1:{srv.tls_port}" in line and "echo=/echo" in line and "pubsub=/ws" in line
    tls_line = next(l for l in srv.log().splitlines() if "tls: " in l)
    assert "ECDSA 256" in tls_line and "kernel TLS offload" in tls_line


# ---------------------------------------------------------------- SNI, resumption, reload


def tls_upgrade(port, ctx, server_hostname="localhost", session=None, path="/echo"):
    """A TLS connection that upgrades (reads the 101): (socket, session reused?, peer certificate DER).
    The 101 is read so that TLS 1.3 session tickets, sent after the handshake, have arrived."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    s.sendall(upgrade_request(path))
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(4096)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101"), answer[:80]
    return s, s.session_reused, s.getpeercert(binary_form=True)


def common_name(der: bytes) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def serial(der: bytes) -> int:
    from cryptography import x509
    return x509.load_der_x509_certificate(der).serial_number


def test_sni_picks_the_certificate_that_covers_the_name(ringgate, ca, leaf):
    alt = ca.issue("alt.test")
    wild = ca.issue("*.wild.test")
    s = ringgate(*tls_args(leaf, "--workers", "1", "--tls-sni-certs",
                           f"{alt.cert_path}:{alt.key_path},{wild.cert_path}:{wild.key_path}"))
    ctx = client_context(ca)
    for name, expected in [("alt.test", "alt.test"), ("a.wild.test", "*.wild.test"), ("localhost", "localhost"),
                           ("ALT.TEST", "alt.test")]:
        conn, _, der = tls_upgrade(s.tls_port, ctx, server_hostname=name)
        conn.close()
        assert common_name(der) == expected, name
    # A name no certificate covers gets the default one (which the client then rejects).
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_upgrade(s.tls_port, ctx, server_hostname="nowhere.test")
    assert "(+2 by SNI: alt.test *.wild.test)" in s.log()


def test_a_second_connection_resumes_with_the_first_ones_ticket(srv, ca):
    ctx = client_context(ca)
    before = total(metrics(srv), "ws_tls_handshakes_total", result="ok", resumed="1")
    first, reused, _ = tls_upgrade(srv.tls_port, ctx)
    assert not reused
    session = first.session
    first.close()
    assert session is not None and session.has_ticket
    second, reused, _ = tls_upgrade(srv.tls_port, ctx, session=session)
    second.close()
    assert reused
    assert total(metrics(srv), "ws_tls_handshakes_total", result="ok", resumed="1") == before + 1


def write_ticket_keys(path, *keys):
    path.write_bytes(b"".join(keys))


def test_nodes_sharing_a_ticket_key_file_resume_each_others_sessions(ringgate, ca, leaf, tmp_path):
    keys = tmp_path / "tickets.key"
    write_ticket_keys(keys, os.urandom(80))
    a = ringgate(*tls_args(leaf, "--workers", "1", "--tls-ticket-key-file", str(keys)))
    b = ringgate(*tls_args(leaf, "--workers", "1", "--tls-ticket-key-file", str(keys)))
    ctx = client_context(ca)
    first, _, _ = tls_upgrade(a.tls_port, ctx)
    session = first.session
    first.close()
    second, reused, _ = tls_upgrade(b.tls_port, ctx, session=session)
    second.close()
    assert reused, "node b did not resume node a's session"
    assert total(metrics(b), "ws_tls_handshakes_total", result="ok", resumed="1") == 1
    # A node with other keys cannot: a full handshake, no error.
    other_keys = tmp_path / "other.key"
    write_ticket_keys(other_keys, os.urandom(80))
    c = ringgate(*tls_args(leaf, "--workers", "1", "--tls-ticket-key-file", str(other_keys)))
    third, reused, _ = tls_upgrade(c.tls_port, ctx, session=session)
    third.close()
    assert not reused
    assert "1 ticket key(s) from tls_ticket_key_file" in a.log()


def test_ticket_keys_rotate_on_sighup_and_old_tickets_still_resume(ringgate, ca, leaf, tmp_path):
    keys = tmp_path / "tickets.key"
    old, new = os.urandom(80), os.urandom(80)
    write_ticket_keys(keys, old)
    s = ringgate(*tls_args(leaf, "--workers", "1", "--tls-ticket-key-file", str(keys)))
    ctx = client_context(ca)
    first, _, _ = tls_upgrade(s.tls_port, ctx)
    old_session = first.session
    first.close()
    # Rotation: the new key first, the old one still there to open tickets.
    write_ticket_keys(keys, new, old)
    s.signal(signal.SIGHUP)
    wait_until(lambda: total(metrics(s), "ws_tls_reloads_total", result="ok") == 1, 5, what="the reload")
    second, reused, _ = tls_upgrade(s.tls_port, ctx, session=old_session)
    second.close()
    assert reused, "a ticket under the previous key must still resume"
    # The old key retired: its tickets get a full handshake.
    write_ticket_keys(keys, new)
    s.signal(signal.SIGHUP)
    wait_until(lambda: total(metrics(s), "ws_tls_reloads_total", result="ok") == 2, 5, what="the second reload")
    third, reused, _ = tls_upgrade(s.tls_port, ctx, session=old_session)
    third.close()
    assert not reused


def test_sighup_swaps_the_certificate_and_open_connections_keep_working(ringgate, ca, tmp_path):
    import shutil
    first_leaf, second_leaf = ca.issue("localhost"), ca.issue("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(first_leaf.cert_path, cert)
    shutil.copy(first_leaf.key_path, key)
    s = ringgate("--tls-listen", "127.0.0.1:0", "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                 "--workers", "1")
    ctx = client_context(ca)

    async def go():
        async with ws_connect(s.wss_uri("/echo"), ssl=ctx) as old:
            before_der = old.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            shutil.copy(second_leaf.cert_path, cert)
            shutil.copy(second_leaf.key_path, key)
            s.signal(signal.SIGHUP)
            await asyncio.to_thread(wait_until, lambda: total(metrics(s), "ws_tls_reloads_total", result="ok") == 1,
                                    5, 0.02, "the reload")
            conn, _, after_der = await asyncio.to_thread(tls_upgrade, s.tls_port, ctx)
            conn.close()
            assert serial(after_der) != serial(before_der), "new connections must see the new certificate"
            # The old connection still echoes, on its old certificate.
            await old.send("still here")
            assert await asyncio.wait_for(old.recv(), 10) == "still here"
        # A broken file is refused: the log says why, and the second certificate stays.
        cert.write_text("not a certificate\n")
        s.signal(signal.SIGHUP)
        await asyncio.to_thread(wait_until, lambda: total(metrics(s), "ws_tls_reloads_total", result="failed") == 1,
                                5, 0.02, "the failed reload")
        conn, _, der = await asyncio.to_thread(tls_upgrade, s.tls_port, ctx)
        conn.close()
        assert serial(der) == serial(after_der)
    run_async(go(), 60)
    assert "TLS reload failed, still serving the previous certificates" in s.log()


def test_start_up_refuses_a_malformed_ticket_key_file(ringgate, leaf, tmp_path):
    keys = tmp_path / "short.key"
    keys.write_bytes(b"\x00" * 79)
    s = ringgate(*tls_args(leaf, "--tls-ticket-key-file", str(keys)), require_listening=False)
    s.expected_exit = 2
    assert s.wait(10) == 2
    assert "holds 79 bytes; it must hold 1 to 16 keys of 80 bytes each" in s.log()
    assert "head -c 80 /dev/urandom" in s.log()


def test_a_client_initiated_close_is_answered_then_close_notify_then_fin(srv, ca):
    t = MemoryTls(srv.tls_port, ca)
    try:
        t.handshake()
        t.sock.sendall(t.seal(upgrade_request("/echo")))
        # A masked close frame, 1000 "bye" (zero mask key: the payload as is).
        t.sock.sendall(t.seal(b"\x88\x85\x00\x00\x00\x00" + b"\x03\xe8bye"))
        answer = t.read_raw_until_eof()
        t.incoming.write(answer)
        t.incoming.write_eof()
        plain = b""
        while chunk := t.obj.read(65536):  # SSLEOFError here: FIN without close_notify
            plain += chunk
    finally:
        t.close()
    head, _, frames = plain.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    assert frames[0] == 0x88 and frames[2:4] == b"\x03\xe8", frames[:8]  # our close reply, 1000


def test_input_while_waiting_for_a_record_buffer_is_bounded_at_64_kib(ringgate, leaf, ca):
    """tls_record_buffers = 1, held by a reader that never reads: a second
    client's ClientHello makes BoringSSL wait for a buffer to write its flight
    into, and what that client sends meanwhile is kept for it, up to 64 KiB.
    Past that the connection goes (input_overrun); the stash is freed, and
    once the buffer is back a new client is served."""
    s = ringgate(*tls_args(leaf, "--workers", "1", "--tls-record-buffers", "1", "--slow-consumer-policy", "drop",
                           "--frame-buffer-size", "16MiB", "--backpressure-timeout", "60s"))
    holder, _ = wsraw.handshake(s.tls_port, tls=client_context(ca), server_hostname="localhost", rcvbuf=4096)
    frame = wsraw.build_frame(wsraw.OP_BINARY, b"h" * 16384)
    holder.sock.settimeout(0.5)
    try:
        for _ in range(2000):  # bounded: the server stops reading long before
            holder.sock.sendall(frame)
    except (socket.timeout, ssl.SSLWantWriteError):
        pass
    # Its output fills the kernel's send buffer, then its own: the record in
    # flight stays in flight.
    wait_until(lambda: total(metrics(s), "ws_backpressured_connections") == 1, 10, what="the reader backpressured")
    assert total(metrics(s), "ws_tls_record_buffers_in_use") == 1

    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    hello = client_context(ca).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    waiting = socket.create_connection(("127.0.0.1", s.tls_port), timeout=10)
    waiting.sendall(outgoing.read())
    wait_until(lambda: total(metrics(s), "ws_tls_handshakes_in_flight") == 1, 5, what="the handshake started")
    # An application-data record's worth of bytes at a time, 80 KiB in all.
    junk = bytes([0x17, 0x03, 0x03, 0x40, 0x00]) + b"j" * 0x4000
    sent = 0
    try:
        for _ in range(5):
            waiting.sendall(junk)
            sent += len(junk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent > 64 * 1024, sent
    wait_until(lambda: total(metrics(s), "ws_tls_failures_total", reason="input_overrun") == 1, 5,
               what="the connection over 64 KiB of stashed input closed as input_overrun")
    waiting.settimeout(5)
    try:
        assert waiting.recv(4096) == b"", "no flight, no alert: there is no buffer to write one into"
    except ConnectionResetError:
        pass
    waiting.close()
    assert total(metrics(s), "ws_tls_handshakes_in_flight") == 0
    holder.close()
    wait_until(lambda: total(metrics(s), "ws_tls_bytes_held") == 0, 10, what="TLS bytes held back to 0")

    async def served():
        async with ws_connect(s.wss_uri("/echo"), ssl=client_context(ca)) as ws:
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 10) == "after"
    run_async(served(), 30)


def test_sighup_without_a_tls_listener_changes_nothing_and_says_so(ringgate):
    s = ringgate("--workers", "1")
    with wsraw.handshake(s.port)[0] as ws:
        s.signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: nothing to reload (tls_listen is off)" in s.log(), 5, what="the SIGHUP answered")
        assert ws.echo("still open") == (wsraw.OP_TEXT, b"still open")
    assert total(metrics(s), "ws_tls_reloads_total") == 0
    with wsraw.handshake(s.port)[0] as ws:
        assert ws.echo("new after SIGHUP") == (wsraw.OP_TEXT, b"new after SIGHUP")
