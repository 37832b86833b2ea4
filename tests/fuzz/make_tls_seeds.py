#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tls_server, tests/fuzz/corpus/fuzz_tls_server/.

Random bytes rarely get past a ClientHello parser, so the seeds are what real
clients send: Python's ssl (OpenSSL) as the client, talking to
tls_seed_server, which is fuzz_tls_server's own server (the same TlsContext,
certificates, ticket keys, fixed random stream and fixed clock:
tests/fuzz/tls_harness.h).  Each seed is everything the client sent on one
connection: TLS 1.3 and 1.2, with and without SNI (default, alt.test,
*.wild.test, unknown), ALPN offered or not, resumptions with a ticket from a
previous handshake (sealed under the key file's first key, and under its
second, which the server renews), then a WebSocket upgrade request and
close_notify.  Because the server's randomness and clock are fixed, a
transcript replays against the fuzz target to the same end: the handshake
completes wherever no ECDSA signature is made (the SNI certificate is
Ed25519, and resumptions sign nothing), so the fuzzer starts from
application data records too.  Each is written twice: as the raw bytes, and
with its ClientHello in fields (the target computes the lengths; see
fuzz_tls_server.cpp), and there are variants of the ClientHello in fields
(names, ALPN lists, tickets) that no client would send.

    tests/fuzz/make_tls_seeds.py [--server BUILD/tests/fuzz/tls_seed_server]
    tests/fuzz/make_tls_seeds.py --check   # every committed transcript still replays as recorded

Client randoms and key shares differ from run to run, so the bytes differ
each time the corpus is rewritten, but what each seed reaches does not: the
script replays every transcript against a fresh tls_seed_server and refuses
to write one that does not end as expected.  --check does the same for the
committed files.  Needs a build with tests/fuzz (-Dfuzz=true, or
-Dfuzz_replay=true); the default --server is the first of
build-fuzz*/ build*/ that has tls_seed_server.
"""

import argparse
import glob
import os
import ssl
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus", "fuzz_tls_server")

PHASES = {0: "handshake", 1: "open", 2: "failed"}
# A WebSocket upgrade, as a browser's wss:// sends it after the handshake.
UPGRADE = (b"GET /echo HTTP/1.1\r\nHost: alt.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class SeedServer:
    """One tls_seed_server process: one server connection."""

    def __init__(self, exe, second=False):
        self.p = subprocess.Popen([exe] + (["--seal-with-second"] if second else []),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.sent = []

    def _read(self, n):
        b = self.p.stdout.read(n)
        if len(b) != n:
            raise RuntimeError("tls_seed_server ended early")
        return b

    def send(self, data):
        self.sent.append(data)
        self.p.stdin.write(struct.pack(">I", len(data)) + data)
        self.p.stdin.flush()
        phase, done, closed, resumed, reason, n = struct.unpack(">BBBBHI", self._read(10))
        return self._read(n), {"phase": PHASES[phase], "done": bool(done), "closed": bool(closed),
                               "resumed": bool(resumed), "reason": reason}

    def close(self):
        self.p.stdin.close()
        self.p.stdout.close()
        if self.p.wait() != 0:
            raise RuntimeError("tls_seed_server failed")


def client_context(version=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test certificates are self-signed
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def connect(exe, ctx, sni=None, session=None, second=False, app=UPGRADE, close=True):
    """One connection of a real client: (client bytes, session, last status)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=sni, session=session)
    server = SeedServer(exe, second)

    def pump():
        out, st = server.send(outgoing.read())
        incoming.write(out)
        if st["phase"] == "failed":
            raise RuntimeError("tls_seed_server failed the handshake: %s" % st)
        return st

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
    if app:
        obj.write(app)
    # The client's last flight and the request; the answer and any tickets come back.
    status = pump()
    try:
        obj.read(4096)
    except ssl.SSLWantReadError:
        pass
    if close:
        try:
            obj.unwrap()  # close_notify (the server does not answer it here)
        except ssl.SSLWantReadError:
            pass
        status = pump()
    sess = obj.session
    server.close()
    return b"".join(server.sent), sess, status


def replay(exe, data):
    """What a fresh server makes of `data` in one recv."""
    server = SeedServer(exe)
    _, status = server.send(data)
    server.close()
    return status


# ---- the ClientHello in fields (fuzz_tls_server.cpp)

def u16(b, at):
    return struct.unpack(">H", b[at:at + 2])[0]


def parse_client_hello(stream):
    """(fields dict, rest of stream) from a stream that starts with a ClientHello record."""
    assert stream[0] == 0x16, "not a handshake record"
    rec_len = u16(stream, 3)
    record = stream[5:5 + rec_len]
    assert record[0] == 1, "not a ClientHello"
    hs_len = int.from_bytes(record[1:4], "big")
    assert hs_len + 4 == len(record), "ClientHello spans records"
    b = record[4:]
    at = 0
    f = {"version": b[0:2], "random": b[2:34]}
    at = 34
    n = b[at]
    f["session_id"] = b[at + 1:at + 1 + n]
    at += 1 + n
    n = u16(b, at)
    f["suites"] = b[at + 2:at + 2 + n]
    at += 2 + n
    n = b[at]
    f["compression"] = b[at + 1:at + 1 + n]
    at += 1 + n
    exts = []
    if at < len(b):
        end = at + 2 + u16(b, at)
        at += 2
        while at < end:
            t, n = u16(b, at), u16(b, at + 2)
            data = b[at + 4:at + 4 + n]
            at += 4 + n
            if t == 0:  # server_name: one host_name
                assert u16(data, 0) == len(data) - 2 and data[2] == 0 and u16(data, 3) == len(data) - 5
                data = data[5:]
            elif t == 16:  # ALPN: without the list's length
                assert u16(data, 0) == len(data) - 2
                data = data[2:]
            exts.append((t, data))
    f["extensions"] = exts
    return f, stream[5 + rec_len:]


def fields_bytes(f):
    out = f["version"] + f["random"]
    out += bytes([len(f["session_id"])]) + f["session_id"]
    out += struct.pack(">H", len(f["suites"])) + f["suites"]
    out += bytes([len(f["compression"])]) + f["compression"]
    out += bytes([len(f["extensions"])])
    for t, data in f["extensions"]:
        out += struct.pack(">HH", t, len(data)) + data
    return out


def build_client_hello(f):
    """What fuzz_tls_server makes of the fields (to prove the round trip)."""
    body = f["version"] + f["random"] + bytes([len(f["session_id"])]) + f["session_id"]
    body += struct.pack(">H", len(f["suites"])) + f["suites"] + bytes([len(f["compression"])]) + f["compression"]
    if f["extensions"]:
        ext = b""
        for t, data in f["extensions"]:
            if t == 0:
                ext += struct.pack(">HHHBH", t, len(data) + 5, len(data) + 3, 0, len(data)) + data
            elif t == 16:
                ext += struct.pack(">HHH", t, len(data) + 2, len(data)) + data
            else:
                ext += struct.pack(">HH", t, len(data)) + data
        body += struct.pack(">H", len(ext)) + ext
    hello = bytes([1]) + len(body).to_bytes(3, "big") + body
    out = b""
    for at in range(0, len(hello), 16384):
        chunk = hello[at:at + 16384]
        out += bytes([0x16, 3, 1]) + struct.pack(">H", len(chunk)) + chunk
    return out


def with_extension(f, t, data):
    g = dict(f)
    exts = [(et, ed) for et, ed in f["extensions"] if et != t]
    # pre_shared_key stays last (RFC 8446 4.2.11)
    last = [(et, ed) for et, ed in exts if et == 41]
    exts = [(et, ed) for et, ed in exts if et != 41]
    g["extensions"] = exts + ([(t, data)] if data is not None else []) + last
    return g


# ---- control bytes (fuzz_tls_server.cpp)

def raw_seed(stream, plan=(0x40, 5, 0xC2), small_reads=False, read_size=0):
    flags = (len(plan) << 1) | (0x10 if small_reads else 0)
    return bytes([flags, read_size]) + bytes(plan) + stream


def fields_seed(fields, rest, plan=(0x40, 5, 0xC2)):
    return bytes([1 | (len(plan) << 1), 0]) + bytes(plan) + fields_bytes(fields) + rest


# ---- the seeds

def expected(name):
    """How a transcript named `name` ends on replay (fed whole to a fresh server)."""
    if "_default_" in name:
        # On the ECDSA default certificate the client's Finished covers a
        # signature made with BoringSSL's own randomness: a replay fails there.
        return {"phase": "failed", "done": False}
    return {"phase": "open", "done": True, "closed": "no_close" not in name, "resumed": "resumed" in name}


def transcripts(exe):
    """name -> client bytes, each replayed against a fresh server to the end expected() gives."""
    out = {}

    def add(name, data):
        got, want = replay(exe, data), expected(name)
        if any(got[k] != v for k, v in want.items()):
            raise RuntimeError("%s replays to %s, expected %s" % (name, got, want))
        out[name] = data

    for version in ("1.3", "1.2"):
        v = "tls" + version.replace(".", "")
        ctx = client_context(version, ["http/1.1"])
        # Full handshakes on the Ed25519 certificate replay to the end.
        for sni, tag in (("alt.test", "alt"), ("a.wild.test", "wild"), ("ALT.TEST.", "alt_upper_dot")):
            add("%s_%s" % (v, tag), connect(exe, ctx, sni)[0])
        for sni, tag in ((None, "no_sni"), ("localhost", "localhost"), ("unknown.test", "unknown_name")):
            add("%s_default_%s" % (v, tag), connect(exe, ctx, sni)[0])
        # Resumption signs nothing: it replays to the end on either certificate.
        for sni, tag in (("localhost", "resumed"), ("alt.test", "alt_resumed")):
            _, session, _ = connect(exe, ctx, sni)
            assert session is not None and session.has_ticket, (version, sni)
            add("%s_%s" % (v, tag), connect(exe, ctx, sni, session=session)[0])
        # A ticket sealed under the file's second key: opened, and renewed.
        _, session, _ = connect(exe, ctx, "localhost", second=True)
        add("%s_resumed_second_key" % v, connect(exe, ctx, "localhost", session=session)[0])
        # ALPN: h2 only (no answer), none at all; and no close_notify.
        add("%s_alpn_h2_only" % v, connect(exe, client_context(version, ["h2"]), "alt.test")[0])
        add("%s_no_alpn_no_close" % v, connect(exe, client_context(version), "alt.test", close=False)[0])
    return out


def seeds(exe):
    out = {}
    base_fields = None
    for name, data in sorted(transcripts(exe).items()):
        out["raw_" + name] = raw_seed(data)
        fields, rest = parse_client_hello(data)
        if build_client_hello(fields) + rest != data:
            raise RuntimeError("%s: the ClientHello in fields does not rebuild byte for byte" % name)
        out["fields_" + name] = fields_seed(fields, rest)
        if name == "tls13_alt":
            base_fields, base_rest = fields, rest
            out["raw_" + name + "_byte_by_byte"] = raw_seed(data, plan=())
            out["raw_" + name + "_one_byte_reads"] = raw_seed(data, plan=(0xC1,), small_reads=True, read_size=0)
        if name == "tls12_resumed":
            out["raw_" + name + "_small_reads"] = raw_seed(data, plan=(7, 0x80), small_reads=True, read_size=9)
    # The ClientHello alone, and things no client sends, in fields.
    f = base_fields
    out["fields_hello_only"] = fields_seed(f, b"")
    names = {"upper_root_dot": b"A.WILD.TEST.", "bare_wild": b"wild.test", "two_labels_deep": b"a.b.wild.test",
             "empty": b"", "long": b"a" * 63 + b"." + b"b" * 63 + b"." + b"c" * 63 + b".test",
             "nul": b"alt.test\x00.evil", "star": b"*.wild.test", "dot": b".", "high_bytes": b"\xff\xfe.test"}
    for tag, name in names.items():
        out["fields_sni_" + tag] = fields_seed(with_extension(f, 0, name), base_rest)
    alpns = {"h2_then_http11": b"\x02h2\x08http/1.1", "empty_protocol": b"\x00\x08http/1.1",
             "overlong": b"\x09http/1.1", "http11_prefix": b"\x07http/1.", "none": b""}
    for tag, lst in alpns.items():
        out["fields_alpn_" + tag] = fields_seed(with_extension(f, 16, lst), base_rest)
    # TLS 1.2 session_ticket extension contents (the ticket callback's input).
    key1 = b"ringgate-fuzz-k1"
    tickets = {"our_name_garbage": key1 + bytes(range(16)) + b"\x00" * 48 + b"\x11" * 32,
               "our_name_short": key1 + b"\x00" * 15, "our_name_exactly": key1 + b"\x00" * 16,
               "other_name": b"someone-elses-k1" + b"\x00" * 96, "empty": b""}
    f12 = parse_client_hello(transcripts_tls12_hello(exe))[0]
    for tag, t in tickets.items():
        out["fields_tls12_ticket_" + tag] = fields_seed(with_extension(f12, 35, t), b"")
    # Not TLS at all.
    out["raw_plain_http"] = raw_seed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out["raw_sslv2_hello"] = raw_seed(bytes([0x80, 0x2E, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10]) +
                                      bytes([0x00, 0xC0, 0x2F]) * 7 + bytes(16))
    out["raw_alert"] = raw_seed(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]))
    out["raw_oversized_record"] = raw_seed(bytes([0x16, 0x03, 0x01, 0x48, 0x01]) + bytes(16))
    return out


def transcripts_tls12_hello(exe):
    ctx = client_context("1.2", ["http/1.1"])
    data, _, _ = connect(exe, ctx, "alt.test", app=None, close=False)
    return data


def find_server():
    for pattern in ("build-fuzz*", "build*"):
        for d in sorted(glob.glob(os.path.join(ROOT, pattern))):
            exe = os.path.join(d, "tests", "fuzz", "tls_seed_server")
            if os.access(exe, os.X_OK):
                return exe
    return None


def check(exe):
    """Every committed raw transcript still replays to the end expected() gives."""
    bad = 0
    for name in sorted(os.listdir(CORPUS)):
        if not name.startswith("raw_tls"):
            continue
        data = open(os.path.join(CORPUS, name), "rb").read()
        stream = data[2 + ((data[0] >> 1) & 7):]
        got = replay(exe, stream)
        ok = all(got[k] == v for k, v in expected(name).items())
        print("%-40s %-7s done=%d closed=%d resumed=%d reason=%-4d %s" % (
            name, got["phase"], got["done"], got["closed"], got["resumed"], got["reason"], "ok" if ok else "DIFFERS"))
        bad += not ok
    return bad == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="tls_seed_server of a build with tests/fuzz")
    ap.add_argument("--check", action="store_true", help="replay the committed transcripts instead of writing")
    args = ap.parse_args()
    exe = args.server or find_server()
    if not exe:
        sys.exit("no tls_seed_server: build tests/fuzz first (tools/fuzz.sh, or -Dfuzz_replay=true), or pass --server")
    if args.check:
        sys.exit(0 if check(exe) else 1)
    made = seeds(exe)
    os.makedirs(CORPUS, exist_ok=True)
    for n in os.listdir(CORPUS):
        if not n.startswith("finding-"):
            os.remove(os.path.join(CORPUS, n))
    total = 0
    for name, data in sorted(made.items()):
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)
        total += len(data)
    print("wrote %d seeds, %d bytes, under %s" % (len(made), total, os.path.relpath(CORPUS, ROOT)))


if __name__ == "__main__":
    main()
