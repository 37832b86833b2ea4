"""Protocol violations after a valid handshake, sent as hand-built frames.

For each violation the server must send a close frame with the specified
status code and then close the TCP connection.  Every test also keeps a
second, well-behaved connection ("bystander") open across the violation and
checks that it still echoes afterwards: one misbehaving client must never
disturb another.

Every test runs twice, over ws:// and over wss:// (the `transport` fixture):
the same hand-built frames, sealed in TLS records, must get the same answers,
so the TLS byte stream changes nothing the WebSocket layer does.  The
bystander uses the same transport as the violator.

The shared server runs with --max-message-size 64KiB and listens on both.
"""

import asyncio
import struct

import pytest

from conftest import run_async
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                   build_frame, close_payload)

T = 10
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def both_listeners(ringgate_module, tls_server_args):
    return ringgate_module("--max-message-size", "64KiB", *tls_server_args)


@pytest.fixture
def server(both_listeners, on_transport):
    """The shared server on this test's transport (conftest.Endpoint)."""
    return on_transport(both_listeners)


@pytest.fixture
def bystander(server):
    """A healthy connection opened before the violation; after the test it
    must still echo text and binary correctly."""
    ws, _ = server.handshake()
    assert ws.echo("before") == (OP_TEXT, b"before")
    yield ws
    try:
        assert ws.echo("after") == (OP_TEXT, b"after"), "bystander connection broken"
        assert ws.echo(b"\x00after\xff") == (OP_BINARY, b"\x00after\xff")
    finally:
        ws.close()
    server.assert_alive()


def violate(server, *frames, expect: int, raw: bytes = b""):
    """Open a fresh connection, send `frames` (and/or raw bytes), and assert the
    server sends close(`expect`) and then closes TCP."""
    ws, _ = server.handshake()
    with ws:
        ws.send_raw(b"".join(frames) + raw)
        code, reason, before = ws.expect_close(T)
        assert code == expect, (f"expected close code {expect}, got {code} "
                                f"(reason {reason!r}; frames before: "
                                f"{[(f.opcode, f.payload[:30]) for f in before]})")
        return before


# ---------------------------------------------------------------------------
# 1002 protocol errors
# ---------------------------------------------------------------------------

def test_unmasked_frame_is_1002(server, bystander):
    """A client frame without the MASK bit (RFC 6455 5.1) -> close 1002."""
    violate(server, build_frame(OP_TEXT, b"hello", mask=False), expect=1002)


@pytest.mark.parametrize("rsv", ["rsv1", "rsv2", "rsv3"])
def test_rsv_bits_are_1002(server, bystander, rsv):
    """RSV bits set without a negotiated extension -> close 1002."""
    violate(server, build_frame(OP_TEXT, b"hello", **{rsv: True}), expect=1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF], ids=["op3", "op7", "opB", "opF"])
def test_reserved_opcode_is_1002(server, bystander, opcode):
    """Reserved non-control (3-7) and control (B-F) opcodes -> close 1002."""
    violate(server, build_frame(opcode, b"x"), expect=1002)


def test_ping_payload_126_is_1002(server, bystander):
    """A control frame (ping) with a 126-byte payload (> 125) -> close 1002."""
    violate(server, build_frame(OP_PING, b"p" * 126), expect=1002)


def test_fragmented_ping_is_1002(server, bystander):
    """A control frame with FIN=0 (fragmented ping) -> close 1002."""
    violate(server, build_frame(OP_PING, b"p", fin=False), expect=1002)


def test_continuation_without_start_is_1002(server, bystander):
    """A continuation frame with no fragmented message in progress -> 1002."""
    violate(server, build_frame(OP_CONT, b"orphan", fin=True), expect=1002)


def test_continuation_after_complete_message_is_1002(server, bystander):
    """A complete text message followed by a continuation frame -> the text is
    echoed, then close 1002."""
    before = violate(server, build_frame(OP_TEXT, b"done"), build_frame(OP_CONT, b"late"),
                     expect=1002)
    assert [(f.opcode, f.payload) for f in before] in ([], [(OP_TEXT, b"done")])


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_new_message_during_fragmented_is_1002(server, bystander, second):
    """A new TEXT/BINARY frame while a fragmented message is in progress -> 1002."""
    violate(server, build_frame(OP_TEXT, b"part1", fin=False), build_frame(second, b"new"),
            expect=1002)


def test_close_with_one_byte_payload_is_1002(server, bystander):
    """A close frame with a 1-byte payload (a status code needs 2) -> 1002."""
    violate(server, build_frame(OP_CLOSE, b"\x03"), expect=1002)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 5000])
def test_close_with_invalid_code_is_1002(server, bystander, code):
    """A close frame carrying a status code that must not be sent on the wire
    (< 1000, 1004 reserved, 1005/1006/1015 local-only, >= 5000) -> 1002."""
    violate(server, build_frame(OP_CLOSE, close_payload(code)), expect=1002)


@pytest.mark.parametrize("code", [0, 1016, 1100, 2000, 2999, 65535])
def test_close_with_unassigned_code_is_1002(server, bystander, code):
    """(Beyond the brief; Autobahn 7.9.x) codes 0 and unassigned 1016-2999 and
    65535 are also invalid on the wire -> 1002."""
    violate(server, build_frame(OP_CLOSE, close_payload(code)), expect=1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 4000, 4999])
def test_close_with_valid_code_is_echoed(server, bystander, code):
    """A close frame with a valid code is answered with the same code, then
    the server closes TCP."""
    ws, _ = server.handshake()
    with ws:
        ws.send_raw(build_frame(OP_CLOSE, close_payload(code, b"bye")))
        got, _, before = ws.expect_close(T, reply=False)
        assert got == code and not before


def test_frames_after_close_are_ignored(server, bystander):
    """Data sent after the client's close frame is not echoed; the server just
    completes the closing handshake."""
    ws, _ = server.handshake()
    with ws:
        ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"ghost"))
        got, _, before = ws.expect_close(T, reply=False)
        assert got == 1000 and not before


# ---------------------------------------------------------------------------
# 1007 invalid UTF-8
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b"\xff",                 # never valid
    b"\xc0\xaf",             # overlong '/'
    b"\xed\xa0\x80",         # UTF-16 surrogate U+D800
    b"\xf4\x90\x80\x80",     # > U+10FFFF
    b"abc\x80def",           # stray continuation byte
    b"\xe2\x82",             # truncated at end of message
], ids=["ff", "overlong", "surrogate", "above-max", "stray-cont", "truncated"])
def test_invalid_utf8_text_is_1007(server, bystander, payload):
    """A text message that is not valid UTF-8 -> close 1007."""
    violate(server, build_frame(OP_TEXT, payload), expect=1007)


def test_invalid_utf8_across_fragments_is_1007(server, bystander):
    """Fragments b"\\xe2\\x82" + b"\\x28": each fragment alone is a valid
    prefix but together they are invalid -> 1007 (validation must carry state
    across fragments and still reject)."""
    violate(server, build_frame(OP_TEXT, b"\xe2\x82", fin=False),
            build_frame(OP_CONT, b"\x28", fin=True), expect=1007)


def test_invalid_utf8_in_first_fragment_is_1007(server, bystander):
    """An invalid first fragment (never completed) is rejected with 1007 too."""
    violate(server, build_frame(OP_TEXT, b"ok\xff", fin=False), expect=1007)


def test_invalid_utf8_in_close_reason_is_1007(server, bystander):
    """A close frame whose reason is not valid UTF-8 -> 1007 (RFC 6455 7.1.6)."""
    violate(server, build_frame(OP_CLOSE, close_payload(1000, b"\xff\xfe")), expect=1007)


def test_valid_multibyte_split_across_fragments_is_echoed(server, bystander):
    """Fragments b"\\xe2\\x82" + b"\\xac" form a valid "€": echoed as one text
    message "€" (no false 1007 at the fragment boundary)."""
    ws, _ = server.handshake()
    with ws:
        ws.send_raw(build_frame(OP_TEXT, b"\xe2\x82", fin=False) +
                    build_frame(OP_CONT, b"\xac", fin=True))
        assert ws.recv_message(T) == (OP_TEXT, "€".encode())


def test_four_byte_char_split_into_single_bytes_is_echoed(server, bystander):
    """U+1D11E split into four 1-byte fragments is echoed as one message."""
    data = "𝄞".encode()
    ws, _ = server.handshake()
    with ws:
        frames = [build_frame(OP_TEXT, data[:1], fin=False)]
        frames += [build_frame(OP_CONT, data[i:i + 1], fin=(i == 3)) for i in (1, 2, 3)]
        ws.send_raw(b"".join(frames))
        assert ws.recv_message(T) == (OP_TEXT, data)


def test_binary_is_not_utf8_checked(server, bystander):
    """Binary messages may contain any bytes: b"\\xff\\xc0" is echoed."""
    ws, _ = server.handshake()
    with ws:
        assert ws.echo(b"\xff\xc0\xed\xa0\x80") == (OP_BINARY, b"\xff\xc0\xed\xa0\x80")


# ---------------------------------------------------------------------------
# 1009 message too big
# ---------------------------------------------------------------------------

def test_exactly_max_message_size_is_echoed(server, bystander):
    """A 64 KiB message (= --max-message-size) is accepted and echoed."""
    ws, _ = server.handshake()
    with ws:
        data = bytes(range(256)) * (LIMIT // 256)
        assert ws.echo(data, timeout=30) == (OP_BINARY, data)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_single_frame_over_limit_is_1009(server, bystander, opcode):
    """One frame of 64 KiB + 1 -> close 1009."""
    violate(server, build_frame(opcode, b"a" * (LIMIT + 1)), expect=1009)


def test_fragments_over_limit_is_1009(server, bystander):
    """Fragments of 16 KiB each whose sum exceeds 64 KiB -> close 1009 (the
    limit applies to the reassembled message, not just to one frame)."""
    chunk = b"b" * (16 * 1024)
    frames = [build_frame(OP_BINARY, chunk, fin=False)]
    frames += [build_frame(OP_CONT, chunk, fin=False) for _ in range(3)]  # = 64 KiB so far
    frames.append(build_frame(OP_CONT, b"!", fin=True))                   # 64 KiB + 1
    violate(server, *frames, expect=1009)


def test_huge_declared_length_is_1009(server, bystander):
    """A frame header declaring 2^40 bytes is refused with 1009 from the
    header alone (the server must not wait for, or allocate, the payload)."""
    hdr = struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 40) + b"\x00\x00\x00\x00"
    violate(server, raw=hdr + b"x" * 100, expect=1009)


# ---------------------------------------------------------------------------
# Isolation under concurrent abuse
# ---------------------------------------------------------------------------

def test_concurrent_connection_unaffected_by_many_violations(server):
    """A websockets-client connection keeps echoing correctly (messages in order,
    content intact) while 30 other connections commit assorted violations."""
    bad_frames = [
        build_frame(OP_TEXT, b"x", mask=False),
        build_frame(OP_TEXT, b"\xff"),
        build_frame(0x3, b"x"),
        build_frame(OP_PING, b"p" * 126),
        build_frame(OP_CONT, b"x"),
        build_frame(OP_BINARY, b"z" * (LIMIT + 1)),
    ]
    expected = [1002, 1007, 1002, 1002, 1002, 1009]

    async def good():
        async with server.ws_connect(open_timeout=T, close_timeout=T) as ws:
            for i in range(300):
                m = f"good-{i}" if i % 2 else f"good-{i}".encode()
                await ws.send(m)
                assert await asyncio.wait_for(ws.recv(), T) == m
                if i % 10 == 0:
                    await asyncio.sleep(0.005)  # pacing: let the violators' threads interleave

    def bad(i):
        violate(server, bad_frames[i % len(bad_frames)], expect=expected[i % len(expected)])

    async def main():
        loop = asyncio.get_running_loop()
        good_task = asyncio.create_task(good())
        await asyncio.gather(*(loop.run_in_executor(None, bad, i) for i in range(30)))
        await good_task

    run_async(main(), 120)
    server.assert_alive()


def test_ping_flood_gets_all_pongs_in_order(server, bystander):
    """500 pings sent back to back (before reading anything) are all answered
    by pongs carrying the matching payloads, in order, and the bystander keeps
    working."""
    ws, _ = server.handshake()
    with ws:
        ws.send_raw(b"".join(build_frame(OP_PING, b"%d" % i) for i in range(500)))
        for i in range(500):
            fr = ws.recv_frame(T)
            assert fr.opcode == OP_PONG, f"frame {i}: opcode {fr.opcode:#x}"
            assert fr.payload == b"%d" % i, f"pong {i} carries {fr.payload!r}"
        assert ws.echo("after pings") == (OP_TEXT, b"after pings")


def test_max_frame_size_bounds_each_frame_not_the_message(ringgate, tls_server_args, on_transport):
    """--max-frame-size 1KiB: a 4 KiB message in 1 KiB fragments is echoed;
    one frame of 1 KiB + 1 is closed with 1009 naming max_frame_size."""
    srv = on_transport(ringgate("--max-frame-size", "1KiB", *tls_server_args))
    ws, _ = srv.handshake()
    with ws:
        chunk = b"f" * 1024
        frames = [build_frame(OP_BINARY, chunk, fin=False)]
        frames += [build_frame(OP_CONT, chunk, fin=False) for _ in range(2)]
        frames.append(build_frame(OP_CONT, chunk, fin=True))
        ws.send_raw(b"".join(frames))
        assert ws.recv_message(T) == (OP_BINARY, chunk * 4)
        ws.send_raw(build_frame(OP_BINARY, b"g" * 1025))
        code, reason, _ = ws.expect_close(T)
        assert (code, reason) == (1009, b"frame larger than max_frame_size")
