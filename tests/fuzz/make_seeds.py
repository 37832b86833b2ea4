#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/.

The seeds are the rows of the unit-test tables (tests/unit/test_*.cpp), one
file per row, named after it, with the control bytes each target reads first
(see the comment at the top of each tests/fuzz/fuzz_*.cpp).  Rows that only
differ in size beyond what fuzzing needs (a 32 KiB cookie, 64 KiB frames) are
kept small.  Rerun after changing a table or a target's input layout:

    tests/fuzz/make_seeds.py          # rewrites every corpus directory
    tests/fuzz/make_seeds.py --check  # exits 1 if the committed corpus differs
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# ---------------------------------------------------------------- WebSocket frames (tests/unit/test_support.h)

DEFAULT_MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def frame(opcode, payload=b"", fin=True, masked=True, rsv=0, mask=DEFAULT_MASK):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if masked:
        head += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + payload


def text(s, fin=True):
    return frame(0x1, s, fin)


def binary(b, fin=True):
    return frame(0x2, b, fin)


def cont(s, fin=True):
    return frame(0x0, s, fin)


def ping(s):
    return frame(0x9, s)


def pong(s):
    return frame(0xA, s)


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack(">H", code) + reason


def close(code=None, reason=b"", masked=True):
    return frame(0x8, b"" if code is None else close_payload(code, reason), masked=masked)


def close_raw(payload, fin=True):
    return frame(0x8, payload, fin)


def unmasked(opcode, payload=b"", fin=True):
    return frame(opcode, payload, fin, masked=False)


def with_mask(head):
    h = bytearray(head)
    h[1] |= 0x80
    return bytes(h) + bytes([1, 2, 3, 4])


def raw(opcode, fin, n):
    return frame(opcode, b"x" * n, fin)


# ---------------------------------------------------------------- per-target corpora

def http_upgrade():
    # [flags: limits bits 0-1, policy bit 2, plan length bits 3-5] [plan] [request]
    def request(line, headers, eol="\r\n"):
        return (line + eol + "".join(h + eol for h in headers) + eol).encode("latin-1")

    base = ["Host: example.com", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]

    def without(name):
        return [h for h in base if h.split(":")[0] != name]

    def replaced(name, value):
        return without(name) + [name + ": " + value]

    def req(line="GET /echo HTTP/1.1", headers=None):
        return request(line, base if headers is None else headers)

    ok = req()
    rows = {
        "minimal": ok,
        "browser_like": request("GET /echo HTTP/1.1", [
            "Host: server.example.com:8080", "Connection: keep-alive, Upgrade", "Pragma: no-cache",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64)", "Upgrade: websocket", "Origin: http://example.com",
            "Sec-WebSocket-Version: 13", "Accept-Encoding: gzip, deflate, br",
            "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]),
        "query_string": req("GET /echo?token=abc&x=1 HTTP/1.1"),
        "pubsub_channels": req("GET /ws?channels=news.eu,chat:1&token=a.b.c HTTP/1.1"),
        "pubsub_bearer": request("GET /ws HTTP/1.1", base + ["Authorization: Bearer abc.def.ghi"]),
        "bearer_duplicate": request("GET /ws HTTP/1.1", base + ["Authorization: Bearer a", "Authorization: Bearer b"]),
        "basic_auth": request("GET /ws HTTP/1.1", base + ["Authorization: Basic dXNlcjpwdw=="]),
        "long_query_string": req("GET /echo?token=" + "t" * 300 + " HTTP/1.1"),
        "header_names_case_insensitive": request("GET /echo HTTP/1.1", [
            "HOST: a", "upgrade: websocket", "CONNECTION: Upgrade", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
            "SEC-WEBSOCKET-VERSION: 13"]),
        "connection_token_list": request("GET /echo HTTP/1.1", replaced("Connection", "keep-alive, UPGRADE")),
        "upgrade_token_list": request("GET /echo HTTP/1.1", replaced("Upgrade", "foo/1, websocket")),
        "whitespace_around_values": request("GET /echo HTTP/1.1", [
            "Host:a", "Upgrade: \twebsocket \t", "Connection:   Upgrade",
            "Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==\t", "Sec-WebSocket-Version:  13 "]),
        "bare_lf": request("GET /echo HTTP/1.1", base, "\n"),
        "leading_empty_lines": b"\n\r\n\n" + ok,
        "trailing_ws_bytes": ok + bytes([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]),
        "trailing_second_request": ok + ok,
        "empty_header_value": request("GET /echo HTTP/1.1", base + ["X-Empty:", "X-Blank:   "]),
        "long_header_name": request("GET /echo HTTP/1.1", base + ["X" * 40 + ": y"]),
        "header_name_prefix_of_ours": request("GET /echo HTTP/1.1", base + [
            "Sec-WebSocket-Keys: nope", "Hosts: x", "Upgrade-X: y"]),
        "obs_text_in_value": request("GET /echo HTTP/1.1", base + ["X-Name: caf\xc3\xa9"]),
        "subprotocol_client_order": request("GET /echo HTTP/1.1", base + ["Sec-WebSocket-Protocol: foo, superchat ,chat"]),
        "subprotocol_two_headers": request("GET /echo HTTP/1.1", base + [
            "Sec-WebSocket-Protocol: foo", "Sec-WebSocket-Protocol: v2.json, chat"]),
        "subprotocol_empty_list": request("GET /echo HTTP/1.1", base + ["Sec-WebSocket-Protocol: , ,"]),
        "double_space": req("GET  /echo HTTP/1.1"),
        "no_version": b"GET /echo\r\nHost: a\r\n\r\n",
        "version_garbage": req("GET /echo HTTX/1.1"),
        "cr_without_lf": b"GET /echo HTTP/1.1\rHost: a\r\n\r\n",
        "path_control_char": req("GET /ec\x01ho HTTP/1.1"),
        "nul_in_method": b"G\0T /echo HTTP/1.1\r\n\r\n",
        "header_without_colon": request("GET /echo HTTP/1.1", base + ["NoColonHere"]),
        "obs_fold": request("GET /echo HTTP/1.1", ["Host: a", "X-Long: one", " two"]),
        "space_before_colon": request("GET /echo HTTP/1.1", ["Host : a"]),
        "control_char_in_value": request("GET /echo HTTP/1.1", base + ["X-A: a\x01z"]),
        "cr_in_value": b"GET /echo HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "bad_end_of_headers": b"GET /echo HTTP/1.1\r\nHost: a\r\n\rX",
        "duplicate_host": request("GET /echo HTTP/1.1", base + ["Host: b"]),
        "tracked_value_too_long": request("GET /echo HTTP/1.1", replaced("Upgrade", "w" * 1100)),
        "protocols_too_long": request("GET /echo HTTP/1.1", base + [
            "Sec-WebSocket-Protocol: " + "p" * 300, "Sec-WebSocket-Protocol: " + "q" * 300]),
        "incomplete_headers": b"GET /echo HTTP/1.1\r\nHost: a\r\n",
        "incomplete_final_cr": b"GET /echo HTTP/1.1\r\nHost: a\r\n\r",
        "unknown_path": req("GET /chat HTTP/1.1"),
        "absolute_form": req("GET http://example.com/echo HTTP/1.1"),
        "path_too_long": req("GET /" + "a" * 1100 + " HTTP/1.1"),
        "post": req("POST /echo HTTP/1.1"),
        "long_method": req("G" * 20 + " /echo HTTP/1.1"),
        "http_1_0": req("GET /echo HTTP/1.0"),
        "http_2_0": req("GET /echo HTTP/2.0"),
        "missing_host": request("GET /echo HTTP/1.1", without("Host")),
        "missing_upgrade": request("GET /echo HTTP/1.1", without("Upgrade")),
        "upgrade_h2c": request("GET /echo HTTP/1.1", replaced("Upgrade", "h2c")),
        "connection_keep_alive": request("GET /echo HTTP/1.1", replaced("Connection", "keep-alive")),
        "missing_version": request("GET /echo HTTP/1.1", without("Sec-WebSocket-Version")),
        "version_13_long": request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Version", "13000000000")),
        "version_list": request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Version", "13, 8")),
        "missing_key": request("GET /echo HTTP/1.1", without("Sec-WebSocket-Key")),
        "invalid_key_17_bytes": request("GET /echo HTTP/1.1", replaced("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA=")),
        "duplicate_key": request("GET /echo HTTP/1.1", base + ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]),
    }
    out = {}
    plan = bytes([7, 0x40])
    for name, r in rows.items():
        flags = 0x04 | (len(plan) << 3)
        out[name] = bytes([flags]) + plan + r
    # Small limits, and limits from the input (414 / 431 paths).
    out["limits_small_request_line"] = bytes([0x01]) + req("GET /echo?" + "q" * 100 + " HTTP/1.1")
    out["limits_small_too_many_headers"] = bytes([0x01]) + request("GET /echo HTTP/1.1", base + ["X-A: 1"] * 4)
    out["limits_from_input"] = bytes([0x02, 5, 0x00, 0x40, 6]) + ok
    return out


def http_request():
    # [flags: the step the bytes arrive in] [buffer]
    rows = {
        "post": b"POST /publish/a HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"price\":1}\n",
        "get_close": b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
        "keep_alive_list": b"GET /status HTTP/1.1\r\nConnection: foo, keep-alive\r\n\r\n",
        "http10": b"GET / HTTP/1.0\r\n\r\n",
        "bad_length": b"POST /p HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        "two_lengths": b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "no_colon": b"GET / HTTP/1.1\r\nHost\r\n\r\n",
        "http2": b"GET / HTTP/2.0\r\n\r\n",
        "request_line": b"GET  HTTP/1.1\r\n\r\n",
        "huge": b"GET / HTTP/1.1\r\nX: " + b"a" * 8200 + b"\r\n\r\n",
        "users_send_bearer_chunked": b"POST /users/al/send?x=1 HTTP/1.1\r\nauthorization:  Bearer t0k \r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n",
        "incomplete": b"POST /publish/news HTTP/1.1\r\nContent-Length: 5\r\n",
    }
    return {name: bytes([3]) + r for name, r in rows.items()}


def ws_frame():
    # [flags: max_message bit 0, max_frame bit 1, plan length bits 2-4] [u16 limits] [plan] [stream]
    def seed(items, max_message=None, max_frame=None, plan=bytes([5, 1])):
        flags = (1 if max_message is not None else 0) | (2 if max_frame is not None else 0) | (len(plan) << 2)
        head = bytes([flags])
        if max_message is not None:
            head += struct.pack(">H", max_message)
        if max_frame is not None:
            head += struct.pack(">H", max_frame)
        return head + plan + b"".join(items)

    rows = {
        "one_text": seed([text("hello")]),
        "binary_126": seed([binary(bytes([7]) * 126)]),
        "several_messages": seed([text("a"), binary(bytes([1]) * 300), text(""), text("zz")]),
        "fragmented_with_control": seed([text("Hel", False), ping("p"), cont("l", False), pong(""), cont("o")]),
        "stream_ends_mid_message": seed([text("Hel", False), cont("l", False)]),
        "close_1000_reason": seed([close(1000, "bye")]),
        "close_utf8_reason": seed([close(1001, "\u00e9t\u00e9 \U0001F600")]),
        "close_then_more": seed([close(1000), text("after")]),
        "close_inside_fragmented": seed([text("a", False), close(1000), cont("b")]),
        "fragments_at_max": seed([text("01234", False), cont("56789")], max_message=10),
        "control_not_counted": seed([text("0123456789", False), ping("p" * 15), cont("")], max_message=10),
        "partial_close_payload_at_end": seed([bytes([0x88, 0x85, 1, 2, 3, 4, 0x03])]),
        "unmasked_after_valid": seed([text("a"), ping("b"), unmasked(0x1, "hi")]),
        "rsv1": seed([frame(0x1, "hi", rsv=4)]),
        "opcode_b_mid_message": seed([text("a", False), raw(0xB, True, 0)]),
        "ping_126": seed([ping("p" * 126)]),
        "ping_fragmented": seed([raw(0x9, False, 3)]),
        "continuation_first": seed([cont("x")]),
        "text_inside_fragmented": seed([text("a", False), text("b")]),
        "fragments_over_max": seed([text("012345", False), cont("6789", False), cont("A")], max_message=10),
        "second_fragment_over_max_frame": seed([text("01234", False), cont("567890")], max_frame=5),
        "close_one_byte": seed([close_raw(bytes([0x03]))]),
        "close_code_1005": seed([close(1005)]),
        "close_overlong_utf8": seed([ping("x"), close(1000, b"ab\xc0\x80")]),
        "len16_non_minimal": seed([text("a"), with_mask(bytes([0x81, 0x7E, 0x00, 0x05])), b"x" * 5]),
        "len64_top_bit": seed([ping(""), with_mask(bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]))]),
        "len_bad_and_unmasked": seed([bytes([0x82, 0x7E, 0x00, 0x01, ord("x")])]),
        "opcode_b_fragmented_126": seed([with_mask(bytes([0x0B, 0x7E, 0x01, 0x00]))]),
    }
    # A 64 KiB frame's header only: the tracker follows the declared length without the data.
    rows["binary_65536_header"] = seed([with_mask(bytes([0x82, 0x7F]) + struct.pack(">Q", 65536)), b"x" * 100])
    return rows


def ws_session():
    # [flags] [u16 max_message] [plan] [stream or frame specs]
    def seed(items, flags=0x20 | 0x02, max_message=0, plan=bytes([7, 3])):
        flags = (flags & ~0x70) | (len(plan) << 4)
        return bytes([flags]) + struct.pack(">H", max_message) + plan + b"".join(items)

    all_bytes = bytes(range(256))
    rows = {
        "text": seed([text("Hello, ringgate")]),
        "text_utf8": seed([text("caf\u00e9 \u20ac \U0001F600")]),
        "binary_all_bytes": seed([binary(all_bytes)]),
        "several_messages": seed([text("one"), binary(bytes([1, 2, 3])), text("three")]),
        "fragmented_text": seed([text("Hel", False), cont("l", False), cont("o")]),
        "fragmented_utf8_split_codepoint": seed([text(b"caf\xc3", False), cont(b"\xa9!")]),
        "fragmented_with_ping": seed([text("Hel", False), ping("p"), cont("lo")]),
        "ping_125": seed([ping("p" * 125)]),
        "pong_ignored": seed([pong("unsolicited")]),
        "message_at_max": seed([text("0123456789")], max_message=10),
        "close_1000_reason": seed([close(1000, "bye")]),
        "close_empty": seed([close()]),
        "text_then_close": seed([text("last"), close(1000)]),
        "close_then_garbage_ignored": seed([close(1000), bytes([0xFF, 0xFF, 0xFF])]),
        "text_then_unmasked": seed([text("ok"), unmasked(0x1, "hi"), text("never")]),
        "opcode_b": seed([text("x"), raw(0xB, True, 0)]),
        "bad_length": seed([text("ok"), bytes([0x81, 0xFE, 0x00, 0x02, 1, 2, 3, 4, ord("x"), ord("y")])]),
        "close_bad_utf8_reason": seed([close(1000, b"bad \xff")]),
        "oversize_fragments": seed([text("012345", False), cont("6789", False), cont("A")], max_message=10),
        "ping_then_violation": seed([text("012345", False), ping("p"), cont("6789A")], max_message=10),
        "text_bad_utf8": seed([text(b"bad \xff")]),
        "fragmented_truncated_at_end": seed([text("ok", False), cont(b"\xe2\x82", True)]),
        "binary_not_validated": seed([binary(bytes([0xFF, 0xC0]))]),
        "echo_in_1_byte_sends": seed([text("abc"), ping("p")], flags=0x80 | 0x02, plan=bytes([0])),
        "no_echo": seed([text("a"), binary(b"b")], flags=0x04),
        "tight_pool": seed([binary(b"z" * 1200), binary(b"y" * 1200), text("x" * 900)], flags=0x08),
        "close_straddling_reads": seed([binary(b"B" * 100), close(1000, "\u00e9t\u00e9 \u00e9t\u00e9")],
                                       plan=bytes([101, 5])),
    }
    # Structured: [b0] [len | 0x80 unmasked] [mask x4] [payload]
    def spec(b0, payload, masked=True, mask=b"\x01\x02\x03\x04"):
        return bytes([b0, len(payload) | (0 if masked else 0x80)]) + mask + payload
    rows["structured_fragments_and_ping"] = bytes([0x01 | 0x20, 0, 0, 4, 9]) + \
        spec(0x01, b"Hel") + spec(0x89, b"pp") + spec(0x80, b"lo") + spec(0x88, b"\x03\xe8bye")
    rows["structured_violations"] = bytes([0x01 | 0x02 | 0x10, 0, 16, 3]) + \
        spec(0x81, b"0123456789ABCDEF") + spec(0x82, b"0123456789ABCDEFG") + spec(0x81, b"x", masked=False)
    return rows


def ws_wire():
    # [flags: plan length bits 0-2, server-frame specs bit 3] [u16 carry] [plan] [stream]
    def seed(items, carry=256, plan=bytes([3, 9]), flags=0):
        return bytes([flags | len(plan)]) + struct.pack(">H", carry) + plan + b"".join(items)

    rows = {
        # client pongs and lone closes
        "three_pongs": seed([pong("a"), pong(""), pong("z" * 125)]),
        "pong_then_text": seed([pong("a"), text("hi")]),
        "pong_then_partial_pong": seed([pong("abc"), pong("abc")[:7]]),
        "pong_126_after_pong": seed([pong(""), pong("p" * 126)]),
        "pong_rsv3": seed([pong(""), frame(0xA, "a", rsv=1)]),
        "pong_len16_non_minimal": seed([with_mask(bytes([0x8A, 0x7E, 0x00, 0x05])), b"x" * 5]),
        "close_1001_reason": seed([close(1001, "bye")]),
        "close_4999_reason_123": seed([close(4999, "r" * 123)]),
        "two_pongs_then_empty_close": seed([pong(""), pong("p" * 125), close()]),
        "close_then_pong": seed([close(1000), pong("")]),
        "unmasked_close": seed([close(1000, masked=False)]),
        "fragmented_close": seed([frame(0x8, close_payload(1000), fin=False)]),
        "close_code_1015": seed([close(1015)]),
        "close_truncated_utf8": seed([close(1000, b"caf\xc3")]),
        # close scan
        "frames_then_close": seed([text("a"), ping(""), pong("p"), close(1001, "bye")]),
        "close_header_without_payload": seed([text("a"), with_mask(bytes([0x88, 0x05]))]),
        "reserved_opcode_then_close": seed([raw(0x3, True, 2), close(1000)]),
        "text_then_partial_payload": seed([text("a"), text("hello")[:8]]),
        "bad_length_then_close": seed([with_mask(bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 1])), close(1000)]),
        # splitter (server frames)
        "several": seed([unmasked(0x1, "a"), unmasked(0x9, "pp"), unmasked(0x2, bytes([3]) * 300),
                         unmasked(0x1, "", False), unmasked(0x0, "end")], carry=512),
        "payload_126": seed([unmasked(0x2, bytes([2]) * 126), unmasked(0x1, "x")]),
        "frame_fills_carry": seed([unmasked(0x2, bytes([1]) * 60), unmasked(0x2, bytes([2]) * 60)], carry=62,
                                  plan=bytes([50])),
        "frame_over_carry": seed([unmasked(0x2, bytes([1]) * 60), unmasked(0x2, bytes([2]) * 61)], carry=62,
                                 plan=bytes([50])),
        "header_sized_carry": seed([unmasked(0x1, "abcdefghijkl"), unmasked(0x9, "")], carry=14),
        "len64_non_minimal": seed([bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]), b"x" * 300], carry=1024),
        "partial_ext_len_at_end": seed([unmasked(0x1, "abc"), bytes([0x82, 0x7E, 0x01])]),
        "masked_frames": seed([text("masked"), binary(bytes([9]) * 200)]),
        "tiny_carry": seed([unmasked(0x1, "abc"), unmasked(0x2, "defg")], carry=1, plan=bytes([1])),
    }
    # Server frames from specs: [b0] [len] [payload]; 0x7E: 126 + next byte, 0x7F: 64 KiB.
    rows["specs_mixed_lengths"] = bytes([0x08 | 2]) + struct.pack(">H", 300) + bytes([100, 200]) + \
        bytes([0x81, 5]) + b"hello" + bytes([0x82, 0x7E, 10]) + b"b" * 136 + bytes([0x88, 2]) + b"\x03\xe8"
    rows["specs_64k_frame"] = bytes([0x08 | 1]) + struct.pack(">H", 4096) + bytes([0xC8]) + \
        bytes([0x82, 0x7F]) + b"big"
    return rows


def utf8():
    # [flags: plan length bits 0-2] [plan] [text]
    rows = {
        "ascii": b"Hello, world", "nul": b"\x00", "u0080_min2": b"\xc2\x80", "u07ff_max2": b"\xdf\xbf",
        "u0800_min3": b"\xe0\xa0\x80", "ud7ff_below_surrogates": b"\xed\x9f\xbf", "ue000": b"\xee\x80\x80",
        "uffff_max3": b"\xef\xbf\xbf", "bom": b"\xef\xbb\xbf", "u10000_min4": b"\xf0\x90\x80\x80",
        "u10ffff_max4": b"\xf4\x8f\xbf\xbf", "kosme": bytes([0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5]),
        "mixed": "a\u00e9 \u20ac \U0001F600 z".encode(), "lone_cont_80": b"\x80", "ascii_then_cont": b"a\x80",
        "lead_c0": b"\xc0", "lead_f5": b"\xf5", "lead_ff": b"\xff", "overlong_c0_af": b"\xc0\xaf",
        "overlong_e0_9f_bf": b"\xe0\x9f\xbf", "overlong_f0_8f_bf_bf": b"\xf0\x8f\xbf\xbf",
        "surrogate_ed_a0_80": b"\xed\xa0\x80", "above_max_f4_90": b"\xf4\x90\x80\x80",
        "three_byte_bad_third": b"\xe2\x82\x41", "lead_after_lead": b"\xe2\xc2\x80", "trunc_2_of_4": b"\xf0\x9f",
        "trunc_f4_8f_bf": b"\xf4\x8f\xbf", "long_ascii_then_emoji": b"0123456789abcdef" * 4 + "\U0001F600".encode(),
    }
    return {name: bytes([2, 3, 5]) + t for name, t in rows.items()}


COMMANDS = {
    "subscribe": '{"type":"subscribe","channel":"a"}',
    "unsubscribe": '{"type":"unsubscribe","channel":"news.eu"}',
    "ack": '{"type":"ack","id":"17-3"}',
    "whitespace": ' \n{ "channel" : "a" ,\t"type" : "subscribe" }\r\n',
    "escaped_value": '{"type":"sub\\u0073cribe","channel":"\\u0061"}',
    "unknown_field_ignored": '{"type":"subscribe","channel":"a","x":{"y":[1,2]}}',
    "ack_ignores_channel": '{"type":"ack","id":"i","channel":"bad channel"}',
    "max_channel": '{"type":"subscribe","channel":"' + "c" * 128 + '"}',
    "truncated": '{"type":"subscribe","channel":"a"',
    "trailing_garbage": '{"type":"subscribe","channel":"a"}x',
    "two_documents": '{"type":"ack","id":"1"}{"type":"ack","id":"2"}',
    "single_quotes": "{'type':'subscribe'}",
    "nul_byte": '{"type":"ack","id":"1"}\0',
    "invalid_utf8": '{"type":"subscribe","channel":"\udcff"}',
    "deep_nesting": '{"type":"ack","id":"1","x":' + "[" * 10 + "]" * 10 + "}",
    "array": '["subscribe","a"]',
    "duplicate_type": '{"type":"ack","type":"subscribe","channel":"a"}',
    "empty_object": "{}",
    "type_null": '{"type":null}',
    "unknown_type": '{"type":"publish","channel":"a"}',
    "missing_channel": '{"type":"subscribe"}',
    "channel_array": '{"type":"unsubscribe","channel":["a"]}',
    "channel_pattern": '{"type":"subscribe","channel":"news.*"}',
    "channel_escaped_nul": '{"type":"subscribe","channel":"a\\u0000"}',
    "missing_id": '{"type":"ack"}',
    "id_bad_char": '{"type":"ack","id":"a/b"}',
}


def pubsub_command():
    # [split] [frame]
    out = {}
    for name, c in COMMANDS.items():
        out[name] = bytes([7]) + c.encode("utf-8", "surrogateescape")
    out["pattern_news"] = bytes([6]) + b"news.*news.eu"
    out["pattern_star"] = bytes([1]) + b"*chat:1"
    return out


def channels_query():
    rows = {
        "other_params": "token=abc&x=1", "one": "channels=a", "two": "channels=a,b",
        "with_others": "token=x.y.z&channels=news.eu,chat:1&v=2", "percent_comma": "channels=a%2Cb",
        "percent_lower": "channels=%61%2cb", "repeated_param_merges": "channels=a&channels=b,a",
        "duplicates": "channels=a,a,a", "prefix_not_key": "xchannels=a&channels_x=b", "empty_value": "channels=",
        "empty_item": "channels=a,,b", "trailing_comma": "channels=a,", "bad_char": "channels=a b",
        "plus_is_not_space": "channels=a+b", "pattern": "channels=news.*", "bad_percent": "channels=a%2",
        "bad_percent_hex": "channels=a%zz", "percent_nul": "channels=a%00",
        "too_long_name": "channels=" + "a" * 129,
        "too_many": "channels=" + ",".join("c%d" % i for i in range(65)),
        "bare_token": "a=1&token", "token_first": "channels=x&token=a.b.c&token=z",
    }
    return {name: q.encode() for name, q in rows.items()}


def b64url(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


KEY = b"secret-key-for-tests"
HS256 = '{"alg":"HS256","typ":"JWT"}'


def sign(header, payload, key=KEY):
    t = b64url(header) + "." + b64url(payload)
    return t + "." + b64url(hmac.new(key, t.encode(), hashlib.sha256).digest())


def jwt():
    # [mode] [now: 8 bytes] [token / payload / header\npayload]
    def payload(extra=',"channels":["news.*","chat"]'):
        return '{"sub":"alice","exp":1700000600' + extra + "}"

    good = sign(HS256, payload())
    sig = good.rsplit(".", 1)[1]
    now = struct.pack(">q", 1_700_000_000)
    raw_rows = {
        "valid": good,
        "valid_no_channels": sign(HS256, payload("")),
        "bad_signature": good[:-1] + ("Q" if good[-1] == "A" else "A"),
        "payload_swapped": good.split(".")[0] + "." + b64url('{"sub":"mallory","exp":9999999999}') + "." + sig,
        "short_signature": good.rsplit(".", 1)[0] + "." + sig[:40],
        "alg_none_unsigned": b64url('{"alg":"none"}') + "." + b64url(payload()) + ".",
        "alg_hs384": sign('{"alg":"HS384"}', payload()),
        "alg_twice": sign('{"alg":"HS256","alg":"none"}', payload()),
        "crit": sign('{"alg":"HS256","crit":["exp"]}', payload()),
        "two_parts": b64url(HS256) + "." + b64url(payload()),
        "padded_header": b64url(HS256) + "==." + b64url(payload()) + "." + sig,
        "std_alphabet": "eyJhbGciOiJIUzI1NiJ9+." + b64url(payload()) + "." + sig,
    }
    out = {}
    for name, tok in raw_rows.items():
        out["raw_" + name] = bytes([0x00]) + bytes(8) + tok.encode()
    out["raw_valid_now_from_input"] = bytes([0x04]) + now + good.encode()
    signed_rows = {
        "claims": payload(),
        "nbf_past": payload(',"nbf":1600000000'),
        "nbf_future": payload(',"nbf":1700000001'),
        "nbf_string": payload(',"nbf":"soon"'),
        "fractional_exp": '{"sub":"a","exp":1700000001.5}',
        "payload_array": "[1]",
        "payload_deep": '{"sub":"a","exp":1800000000,"x":' + "[" * 20 + "]" * 20 + "}",
        "duplicate_sub": '{"sub":"a","sub":"root","exp":1800000000}',
        "sub_number": '{"sub":7,"exp":1800000000}',
        "exp_huge": '{"sub":"a","exp":1e300}',
        "exp_null": '{"sub":"a","exp":null}',
        "channels_star_and_prefix": payload(',"channels":["*","a.*","b"]'),
        "channels_bad_pattern": payload(',"channels":["news*"]'),
        "channels_33": payload(',"channels":[' + ",".join('"c%d"' % i for i in range(33)) + "]"),
    }
    for name, p in signed_rows.items():
        out["signed_" + name] = bytes([0x01]) + bytes(8) + p.encode()
    out["signed_header_alg_none"] = bytes([0x03]) + bytes(8) + b'{"alg":"none"}\n' + payload().encode()
    out["signed_header_no_alg"] = bytes([0x03]) + bytes(8) + b'{"typ":"JWT"}\n' + payload().encode()
    out["signed_now_from_input"] = bytes([0x05]) + struct.pack(">q", 1_700_000_599) + payload().encode()
    return out


def pubsub_body():
    # [flags] [limit] [name_len] [id_len] [seed] [u16 cut] [body]
    rows = {
        "object": '{"price":1.5,"tags":["a"]}', "array": "[1,2,3]", "number": "42", "json_string": '"hi"',
        "null": "null", "json_with_spaces": ' {"a" : 1}\n', "json_unicode": '{"w":"caf\u00e9"}',
        "plain_text": "hello world", "empty": "", "quotes": 'say "hi"', "truncated_json": '{"a":',
        "controls": "a\nb\x01", "utf8_text": "\u20ac 5", "deep_json_is_text": "[" * 70 + "]" * 70,
        "nul_in_text": "a\0b",
    }
    out = {}
    for i, (name, body) in enumerate(rows.items()):
        out[name] = bytes([0x00, 0, 6, 1, i, 0x00, 0x30]) + body.encode()
    binary_rows = {"invalid_utf8": b"\xff\xfe", "truncated_utf8": b"caf\xc3", "surrogate_utf8": b"\xed\xa0\x80",
                   "overlong": b"\xc0\xaf"}
    for name, body in binary_rows.items():
        out[name] = bytes([0x00, 0, 6, 1, 3, 0x00, 0x20]) + body
    out["raw_text"] = bytes([0x01, 0, 1, 1, 0, 0x00, 0x0C]) + b"hi"
    out["raw_binary"] = bytes([0x01, 0, 1, 1, 0, 0x00, 0x0C]) + b"\xff\x00"
    out["user_envelope"] = bytes([0x02, 0, 5, 1, 0, 0x01, 0x00]) + b'{"a":1}'
    out["small_classifier"] = bytes([0x04, 4, 0, 0, 0, 0x00, 0x40]) + b"[1,2,3,4,5,6,7,8,9]"
    out["long_names_controls"] = bytes([0x00, 0, 127, 127, 9, 0x02, 0x00]) + b"\x01" * 40
    return out


def config():
    # [mode: 0 TOML, 1 key=value, 2 units] [text]
    docs = {
        "fractions": "buffer_drain_threshold = 0.3\n",
        "strings_integers_arrays": '\n# comment\nlisten = "0.0.0.0:9001"\nworkers = 4\nmax_message_size = "4MiB"\n'
                                   'max-header-bytes = 8192\nsubprotocols = ["a", "b"]\nhandshake_timeout = "3s"\n'
                                   "close_timeout = 2        # bare number: seconds\necho_path = '/sock'\n"
                                   "max_headers = true\n",
        "empty_array": "subprotocols = []\n",
        "syntax_line_3": "workers = 4\nbacklog = 5\nmax_headers = \n",
        "unterminated_string": 'a = 1\n\n\n\necho_path = "/x\n',
        "duplicate_key": "workers = 1\nworkers = 2\n",
        "unknown_key": 'colour = "blue"\n',
        "negative": "workers = -1\n",
        "float": "workers = 1.5\n",
        "table": '[network]\nlisten = "a:1"\n',
        "inline_table": 'listen = { host = "a" }\n',
        "mixed_array": 'subprotocols = ["a", 2]\n',
        "u32_overflow": "workers = 4294967296\n",
        "bad_duration": 'close_timeout = "2 weeks"\n',
        "multiline_strings": 'echo_path = """\n/echo"""\npubsub_path = \'\'\'/ws\'\'\'\n',
        "dates_and_floats": "x = 1979-05-27T07:32:00Z\ny = inf\nz = 0x1F\n",
        "choices": 'reject = "close"\nslow_consumer_policy = "drop"\nauth = "jwt"\ncross_worker_wake = "eventfd"\n',
        "raw_channels": 'raw_channels = ["ticks.*", "raw"]\n',
    }
    out = {name: b"\x00" + d.encode() for name, d in docs.items()}
    for path in ("profiles/production.toml", "profiles/high-throughput.toml", "profiles/constrained.toml",
                 "docs/ringgate.example.toml"):
        full = os.path.join(ROOT, path)
        if os.path.exists(full):
            with open(full, "rb") as f:
                body = f.read()
            if len(body) <= 16 * 1024:
                out["file_" + os.path.basename(path).replace(".", "_")] = b"\x00" + body
    options = {"workers": "workers=4", "listen": "listen=[::1]:9000", "size": "max-message-size=64KiB",
               "duration": "ping_interval=500ms", "choice": "reject=close", "fraction": "buffer-drain-threshold=0.5",
               "list": "subprotocols=a,b", "flag": "strict-preflight=", "unknown": "colour=blue"}
    out.update({"option_" + k: b"\x01" + v.encode() for k, v in options.items()})
    units = {"kib": "64KiB", "mb": "1MB", "gib": "2GiB", "ms": "500ms", "us": "250us", "min": "1min",
             "overflow": "18446744073709551615GiB", "bare": "30"}
    out.update({"units_" + k: b"\x02" + v.encode() for k, v in units.items()})
    return out


def tls_ticket_keys():
    # The rows of TicketKeys.FileFormat (tests/unit/test_tls_ticket_keys.cpp).
    key = lambda c: bytes([c]) * 80
    return {"empty": b"", "short": key(1)[:79], "one_key": key(1), "two_keys": key(1) + key(2),
            "same_name_twice": key(1) + key(1), "key_and_a_half": key(1) + key(2)[:40],
            "sixteen": b"".join(key(i) for i in range(16)), "seventeen": b"".join(key(i) for i in range(17))}


def tls_names():
    # PATTERN \0 HOST, the rows of TlsNames.Table (tests/unit/test_tls_names.cpp).
    rows = {"exact": ("example.com", "example.com"), "case": ("Example.COM", "example.com"),
            "root_dot": ("example.com", "example.com."), "wildcard": ("*.example.com", "a.example.com"),
            "wildcard_two_labels": ("*.example.com", "a.b.example.com"),
            "wildcard_bare": ("*.example.com", "example.com"), "wildcard_empty_label": ("*.example.com", ".example.com"),
            "too_wide": ("*.com", "example.com"), "star": ("*", "example.com"),
            "partial": ("a*.example.com", "ab.example.com"), "double_star": ("*.*.example.com", "a.b.example.com")}
    out = {name: (p + "\0" + h).encode() for name, (p, h) in rows.items()}
    out["no_nul"] = b"localhost"
    return out


def proxy_protocol():
    # A control byte (no plan: read whole), then the stream: the rows of
    # ProxyProtocol's table (tests/unit/test_proxy_protocol.cpp).
    sig = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])
    req = b"GET /echo HTTP/1.1\r\n"
    v4 = bytes([192, 0, 2, 7, 127, 0, 0, 1, 0xC8, 0x22, 0x01, 0xBB])
    v6 = bytes([0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [0x42] + [0] * 15 + [1, 0x9C, 0x40, 0x1F, 0x90])
    crc = bytes([0x04, 0x00, 0x04, 1, 2, 3, 4])
    alpn = bytes([0x01, 0x00, 0x08]) + b"http/1.1"
    head = lambda vc, ft, body: sig + bytes([vc, ft, len(body) >> 8, len(body) & 0xFF]) + body
    rows = {"tcp4": head(0x21, 0x11, v4) + req, "tcp6": head(0x21, 0x21, v6) + req,
            "tcp4_tlvs": head(0x21, 0x11, v4 + crc + alpn) + req, "local": head(0x20, 0x11, v4) + req,
            "local_unspec": head(0x20, 0x00, b"") + req, "unix": head(0x21, 0x31, bytes(216)) + req,
            "http": req, "v1": b"PROXY TCP4 192.0.2.7 127.0.0.1 51234 443\r\n" + req,
            "udp": head(0x21, 0x12, v4), "tlv_past_end": head(0x21, 0x11, v4 + bytes([1, 0, 5, 0x61])),
            "too_long": sig + bytes([0x21, 0x11, 0x03, 0xF1])}
    out = {name: b"\x00" + data for name, data in rows.items()}
    out["split_plan"] = bytes([0x03, 5, 1, 9]) + rows["tcp4_tlvs"]
    return out


def backplane():
    # Control byte 0: a key length, the key, the payload.  Control byte 1: a
    # URL.  Control byte 2: a cluster's error answer.  The rows of BackplaneWire's tables (tests/unit/test_backplane_wire.cpp).
    def pair(key, payload):
        return b"\x00" + bytes([len(key)]) + key + payload
    out = {"channel": pair(b"rg:{c:news}", b"rg1 18c2-7\n{\"a\":1}"),
           "user": pair(b"rg:{u:alice}", b"rg1 x-1\nhello"),
           "empty_body": pair(b"rg:{c:a.b:c-d_e}", b"rg1 id\n"),
           "binary_body": pair(b"rg:{c:bin}", b"rg1 id\n\x00\xff\x80\n"),
           "foreign_key": pair(b"rg:{x:news}", b"rg1 id\nbody"),
           "bad_name": pair(b"rg:{c:a b}", b"rg1 id\nbody"),
           "no_prefix": pair(b"rg:{c:n}", b"hello"),
           "no_newline": pair(b"rg:{c:n}", b"rg1 " + b"a" * 140),
           "bad_id": pair(b"rg:{c:n}", b"rg1 a b\nbody")}
    for name, url in {"url": b"redis://127.0.0.1:6379", "url_v6": b"redis://[::1]:7000",
                      "url_default_port": b"redis://redis.local", "url_bad_port": b"redis://h:70000",
                      "url_cluster": b"redis-cluster://h:7000", "url_userinfo": b"redis://u@h:1",
                      "url_cluster_seeds": b"redis-cluster://[::1]:7000,h:7001/",
                      "url_two_singles": b"redis://a:1,b:2"}.items():
        out[name] = b"\x01" + url
    for name, error in {"moved": b"MOVED 3999 127.0.0.1:6381", "ask": b"ASK 16383 10.0.0.2:7000",
                        "moved_no_host": b"MOVED 0 :7002", "moved_v6": b"MOVED 12 ::1:7003",
                        "moved_bad_slot": b"MOVED 16384 h:1", "crossslot": b"CROSSSLOT Keys in request"}.items():
        out["redirect_" + name] = b"\x02" + error
    return out


TARGETS = {
    "fuzz_http_upgrade": http_upgrade,
    "fuzz_http_request": http_request,
    "fuzz_ws_frame": ws_frame,
    "fuzz_ws_session": ws_session,
    "fuzz_ws_wire": ws_wire,
    "fuzz_utf8": utf8,
    "fuzz_pubsub_command": pubsub_command,
    "fuzz_channels_query": channels_query,
    "fuzz_jwt": jwt,
    "fuzz_pubsub_body": pubsub_body,
    "fuzz_config": config,
    "fuzz_tls_ticket_keys": tls_ticket_keys,
    "fuzz_tls_names": tls_names,
    "fuzz_proxy_protocol": proxy_protocol,
    "fuzz_backplane": backplane,
}


def write(root):
    total = 0
    for target, make in TARGETS.items():
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for name, data in sorted(make().items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += len(data)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed corpus instead of writing")
    args = ap.parse_args()
    corpus = os.path.join(HERE, "corpus")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            write(tmp)
            differ = []
            for target in TARGETS:
                want = {n: open(os.path.join(tmp, target, n), "rb").read() for n in os.listdir(os.path.join(tmp, target))}
                have_dir = os.path.join(corpus, target)
                for n, data in want.items():
                    p = os.path.join(have_dir, n)
                    if not os.path.exists(p) or open(p, "rb").read() != data:
                        differ.append(os.path.join(target, n))
            for d in differ:
                print("differs or missing:", d)
            sys.exit(1 if differ else 0)
    # Seeds are regenerated; files not made here (crash reproducers added by
    # hand, named finding-*) are kept.
    for target in TARGETS:
        d = os.path.join(corpus, target)
        if os.path.isdir(d):
            for n in os.listdir(d):
                if not n.startswith("finding-"):
                    os.remove(os.path.join(d, n))
    total = write(corpus)
    print("wrote %d bytes of seeds under %s" % (total, os.path.relpath(corpus, ROOT)))


if __name__ == "__main__":
    main()
