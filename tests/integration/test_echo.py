"""Echo behaviour, as seen by a conforming client (the `websockets` package)
and by raw frames: message types and sizes, ordering, fragmentation,
ping/pong and the clean closing handshake.

The tests on the shared server run over ws:// and over wss:// (the
`transport` fixture): the same messages, sealed in TLS records, must come
back the same.  The tests that start a server of their own check
configuration (the echo path, two workers, the segment pool's steady state)
rather than the protocol, and stay on ws:// (test_tls echoes over wss on two
workers)."""

import asyncio

import pytest

import wsraw
from conftest import metrics, run_async, total, ws_connect
from wsraw import OP_BINARY, OP_CONT, OP_PING, OP_TEXT

MIB = 1 << 20
SIZES = [0, 1, 125, 126, 65535, 65536, MIB]
T = 30  # generous per-operation timeout (seconds)


def text_of(n: int) -> str:
    """Deterministic ASCII text of exactly n bytes."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    return (alphabet * (n // len(alphabet) + 1))[:n]


def binary_of(n: int) -> bytes:
    """Deterministic bytes (all 256 values) of exactly n bytes."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


@pytest.fixture(scope="module")
def both_listeners(ringgate_module, tls_server_args):
    """Default limits (max message size 1 MiB), except a 4 MiB backpressure
    threshold: these tests pipeline up to ~1 MiB before reading, which the
    default 100 KiB with slow_consumer_policy close would rightly treat as a
    slow consumer once the kernel's socket buffer is full (test_backpressure
    covers that).  Listens for ws:// and wss://."""
    return ringgate_module("--frame-buffer-size", "4MiB", *tls_server_args)


@pytest.fixture
def server(both_listeners, on_transport):
    """The shared server on this test's transport (conftest.Endpoint)."""
    return on_transport(both_listeners)


@pytest.mark.parametrize("size", SIZES)
def test_text_echo_sizes(server, size):
    """A text message of `size` bytes (frame-length encoding boundaries 125/126/
    65535/65536 and exactly the 1 MiB default limit) comes back as ONE text
    message with identical content."""
    msg = text_of(size)

    async def main():
        async with server.ws_connect() as ws:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), T)
            assert isinstance(got, str), f"text message echoed as {type(got).__name__}"
            assert len(got) == size and got == msg
    run_async(main())


@pytest.mark.parametrize("size", SIZES)
def test_binary_echo_sizes(server, size):
    """A binary message of `size` bytes comes back as ONE binary message with
    identical bytes (including exactly 1 MiB = the default limit)."""
    msg = binary_of(size)

    async def main():
        async with server.ws_connect() as ws:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), T)
            assert isinstance(got, bytes), f"binary message echoed as {type(got).__name__}"
            assert len(got) == size and got == msg
    run_async(main())


def test_multibyte_text_echo(server):
    """Non-ASCII UTF-8 (2-, 3- and 4-byte sequences) is echoed unchanged."""
    msg = "héllo € 𝄞 日本語 " * 100

    async def main():
        async with server.ws_connect() as ws:
            await ws.send(msg)
            assert await asyncio.wait_for(ws.recv(), T) == msg
    run_async(main())


def test_pipelined_messages_keep_order(server):
    """200 messages (alternating text/binary, varying sizes) sent back to back
    before reading anything are all echoed, each with its own type, in order."""
    msgs = []
    for i in range(200):
        if i % 2:
            msgs.append(f"msg-{i}-" + text_of(i * 37 % 3000))
        else:
            msgs.append(i.to_bytes(4, "big") + binary_of(i * 53 % 5000))

    async def main():
        async with server.ws_connect() as ws:
            for m in msgs:
                await ws.send(m)
            for i, m in enumerate(msgs):
                got = await asyncio.wait_for(ws.recv(), T)
                assert type(got) is type(m), f"message {i}: type {type(got).__name__}"
                assert got == m, f"message {i} differs (out of order or corrupted)"
    run_async(main())


def test_several_connections_are_independent(server):
    """Ten concurrent connections each get back only their own messages."""
    async def one(i):
        async with server.ws_connect() as ws:
            for j in range(20):
                m = f"conn{i}-msg{j}"
                await ws.send(m)
                assert await asyncio.wait_for(ws.recv(), T) == m

    async def main():
        await asyncio.gather(*(one(i) for i in range(10)))
    run_async(main())


def test_fragmented_text_via_websockets(server):
    """A text message sent as several fragments (websockets sends a list as a
    fragmented message) is echoed as the reassembled whole message."""
    parts = ["hel", "lo ", "", "wor", "ld"]

    async def main():
        async with server.ws_connect() as ws:
            await ws.send(parts)
            assert await asyncio.wait_for(ws.recv(), T) == "hello world"
    run_async(main())


def test_fragmented_binary_via_async_iterator(server):
    """A binary message produced by an async iterator (many fragments, 200 KiB
    total) is echoed as one binary message with identical bytes."""
    chunks = [bytes([i]) * 4096 for i in range(50)]

    async def gen():
        for c in chunks:
            yield c

    async def main():
        async with server.ws_connect() as ws:
            await ws.send(gen())
            got = await asyncio.wait_for(ws.recv(), T)
            assert isinstance(got, bytes) and got == b"".join(chunks)
    run_async(main())


def test_fragmented_raw_with_interleaved_ping(server):
    """Raw fragments TEXT(fin=0) CONT(fin=0) PING CONT(fin=1): the ping in the
    middle of a fragmented message (allowed by RFC 6455 5.4) is answered with
    a pong, and the reassembled text is echoed as one message."""
    with server.handshake()[0] as ws:
        ws.send_frame(OP_TEXT, b"frag", fin=False)
        ws.send_frame(OP_CONT, b"mented ", fin=False)
        ws.send_frame(OP_PING, b"mid")
        ws.send_frame(OP_CONT, b"message", fin=True)
        op, payload = ws.recv_message(T)
        assert (op, payload) == (OP_TEXT, b"fragmented message")
        assert b"mid" in ws.pongs or ws.recv_pong(T) == b"mid"


def test_raw_binary_fragments_many(server):
    """100 one-byte binary fragments are reassembled and echoed as one binary message."""
    data = bytes(range(100))
    with server.handshake()[0] as ws:
        ws.send_frame(OP_BINARY, data[:1], fin=False)
        for i in range(1, 99):
            ws.send_frame(OP_CONT, data[i:i + 1], fin=False)
        ws.send_frame(OP_CONT, data[99:], fin=True)
        assert ws.recv_message(T) == (OP_BINARY, data)


def test_ping_pong_via_websockets(server):
    """ws.ping(b"data") is answered by a pong carrying the same payload."""
    async def main():
        async with server.ws_connect() as ws:
            waiter = await ws.ping(b"data")
            await asyncio.wait_for(waiter, T)
            # the connection still echoes after the ping
            await ws.send("after ping")
            assert await asyncio.wait_for(ws.recv(), T) == "after ping"
    run_async(main())


@pytest.mark.parametrize("payload", [b"", b"data", bytes(range(125))])
def test_ping_pong_raw(server, payload):
    """A raw ping with an empty, short or maximal (125 B) payload gets a pong
    with exactly that payload."""
    with server.handshake()[0] as ws:
        ws.send_frame(OP_PING, payload)
        assert ws.recv_pong(T) == payload


def test_unsolicited_pong_is_ignored(server):
    """An unsolicited pong from the client is ignored (no reply, no close):
    the next message is still echoed."""
    with server.handshake()[0] as ws:
        ws.send_frame(wsraw.OP_PONG, b"unsolicited")
        assert ws.echo("still here") == (OP_TEXT, b"still here")


def test_clean_close_via_websockets(server):
    """Client close(1000): the server answers with close code 1000."""
    async def main():
        ws = await server.ws_connect()
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), T) == "x"
        await asyncio.wait_for(ws.close(1000, "bye"), T)
        assert ws.close_code == 1000
    run_async(main())


def test_clean_close_raw_server_closes_tcp(server):
    """Raw close(1000): the server echoes a close frame with code 1000 and then
    closes the TCP connection itself (recv returns EOF, and later probe data
    is answered with RST: the socket is really gone) without us closing.  On
    wss the EOF is the server's close_notify followed by its FIN."""
    ws, _ = server.handshake()
    with ws:
        ws.send_close(1000, b"bye")
        fr = ws.recv_frame(T)
        assert fr.opcode == wsraw.OP_CLOSE, f"expected close frame, got opcode {fr.opcode}"
        assert fr.close_code == 1000
        assert ws.wait_closed(T), "server did not close TCP after the closing handshake"
        assert ws.wait_released(T), "server sent FIN but still holds the socket"


def test_empty_close_frame_is_accepted(server):
    """A close frame with no payload (no status code) is valid: the server
    replies with a close frame (empty, or 1000) and closes TCP."""
    ws, _ = server.handshake()
    with ws:
        ws.send_close(None)
        fr = ws.recv_frame(T)
        assert fr.opcode == wsraw.OP_CLOSE
        assert fr.close_code in (None, 1000), f"unexpected close code {fr.close_code}"
        assert ws.wait_closed(T)


# ws:// only: routing by path is decided after TLS, the same code on both listeners.
def test_echo_on_root_path(ringgate):
    """With --echo-path / the echo endpoint is `/`; `/echo` is then unknown (404)."""
    srv = ringgate("--echo-path", "/")

    async def main():
        async with ws_connect(srv.uri("/")) as ws:
            await ws.send("root")
            assert await asyncio.wait_for(ws.recv(), T) == "root"
            await ws.send(b"\x00\x01")
            assert await asyncio.wait_for(ws.recv(), T) == b"\x00\x01"
    run_async(main())
    resp = wsraw.http_exchange(srv.port, wsraw.build_request(srv.port, "/echo"))
    assert resp.status == 404, resp.describe()


# ws:// only: routing by path is decided after TLS, the same code on both listeners.
def test_custom_echo_path(ringgate):
    """--echo-path /custom/ws moves the endpoint; the default /echo is 404."""
    srv = ringgate("--echo-path", "/custom/ws")

    async def main():
        async with ws_connect(srv.uri("/custom/ws")) as ws:
            await ws.send("custom")
            assert await asyncio.wait_for(ws.recv(), T) == "custom"
    run_async(main())
    resp = wsraw.http_exchange(srv.port, wsraw.build_request(srv.port, "/echo"))
    assert resp.status == 404, resp.describe()


# ws:// only: the spread over workers (test_tls's server echoes over wss on two).
def test_multiple_workers_all_echo(ringgate):
    """With --workers 2, 40 connections (spread over both workers by the
    kernel) all echo correctly."""
    srv = ringgate("--workers", "2")

    async def one(i):
        async with ws_connect(srv.uri()) as ws:
            await ws.send(f"w{i}")
            assert await asyncio.wait_for(ws.recv(), T) == f"w{i}"

    async def main():
        await asyncio.gather(*(one(i) for i in range(40)))
    run_async(main())


def test_default_limit_plus_one_is_1009(server):
    """With the default --max-message-size (1 MiB), a 1 MiB + 1 message is
    refused with close 1009 (the 1 MiB echo tests above show the limit is
    inclusive)."""
    ws, _ = server.handshake()
    with ws:
        ws.send_frame(OP_BINARY, b"\x00" * (MIB + 1))
        code, _, before = ws.expect_close(T)
        assert code == 1009 and not before


# ws:// only: it counts the segment pool above the byte stream; TLS's record buffers are test_tls's.
def test_steady_echo_allocates_no_segments(ringgate):
    """Echo output and reassembly live in pooled segments: once the pool has
    what a client's traffic needs, thousands more echoes (small, spanning
    segments, fragmented, from several clients at once) allocate none, every
    byte comes back intact, and idle connections hold no segment."""
    srv = ringgate("--workers", "1")
    sizes = [20, 4000, 20000, 100000]

    async def client(rounds):
        async with ws_connect(srv.uri()) as ws:
            for i in range(rounds):
                n = sizes[i % len(sizes)]
                msg = binary_of(n) if i % 2 else text_of(n)
                if i % 7 == 3:
                    # websockets sends an iterable as fragments
                    parts = [msg[: n // 3], msg[n // 3 : 2 * n // 3], msg[2 * n // 3 :]]
                    await ws.send(parts)
                else:
                    await ws.send(msg)
                assert await asyncio.wait_for(ws.recv(), T) == msg, (i, n)

    async def clients(count, rounds):
        await asyncio.gather(*(client(rounds) for _ in range(count)))

    run_async(clients(4, 40))  # warm the pool: each client's peak, at once
    warm = metrics(srv)
    run_async(clients(4, 400))
    after = metrics(srv)
    assert total(after, "ws_messages_received_total") - total(warm, "ws_messages_received_total") == 1600
    # 1,600 echoes take at least 3,200 segments (one in, one out, each); a
    # pool that allocated per message would show thousands here.  Timing may
    # make the four clients overlap a little more than during the warm-up,
    # which costs at most their peak once: 4 x 2 x 25 segments.
    grown = total(after, "ws_segment_allocations_total") - total(warm, "ws_segment_allocations_total")
    assert grown <= 200, f"{grown} segments allocated in steady state"
    assert total(after, "ws_segments_live") == 0, "idle connections hold segments"
    assert total(after, "ws_segment_bytes") == 0, "idle connections hold no segment memory"
    assert total(after, "ws_segment_cache_bytes") > 0, "the pool keeps freed segments for reuse"
    assert total(after, "ws_bytes_buffered") == 0
