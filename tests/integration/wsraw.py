"""Raw-socket WebSocket helpers for ringgate integration tests.

Everything here talks bytes on a plain TCP socket so tests can send exactly
what they want (including invalid requests and invalid frames) and see exactly
what the server answers.  Nothing here depends on the `websockets` package.

TLS (wss://): connect(), http_exchange(), handshake() and try_handshake()
take `tls=ssl.SSLContext` (and `server_hostname`, default the host connected
to); the socket is then wrapped by Python's ssl before the first byte of HTTP,
and everything above it is unchanged.  What differs is how a connection ends,
and the helpers hide it: the server's close_notify reads as EOF, after which
the helpers also wait for the TCP FIN; an end of TCP without close_notify
(a truncation, RFC 8446 6.1) is never taken for a clean close: it is
how="truncated" from recv_until_eof() and fails wait_closed().  SSLSocket
has no MSG_PEEK: use RawWS.poll() to ask whether the server sent anything.

Blocking API (one socket, used by most tests):
    build_request(...)       -> bytes of an HTTP upgrade request (valid by default)
    http_exchange(...)       -> send a request, read the whole response until the
                                server closes, parse it (error responses)
    handshake(...)           -> perform a valid upgrade, return (RawWS, HttpResponse);
                                any other answer raises UpgradeRefused (.status, .response)
    try_handshake(...)       -> RawWS, or None if refused with an expected status (for polls)
    read_upgrade_response()  -> the answer to an upgrade request already sent: a 101
                                head, or a whole refusal read until the server closes
    build_frame(...)         -> bytes of one WebSocket frame (masked by default)
    RawWS.recv_frame()       -> next frame from the server
    RawWS.recv_message()     -> next whole data message (fragments reassembled)
    RawWS.expect_close()     -> read until the server's close frame, return its code,
                                then verify the server closes TCP
    RawWS.poll()             -> whether the server sent something (MSG_PEEK, TLS too)

Async API (asyncio streams, for thousands of connections):
    async_handshake(), async_send_frame(), async_recv_frame(), async_echo(),
    async_close()

Every wait is bounded by an explicit timeout.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 10.0


class RawProtocolError(AssertionError):
    """The server sent something that is not a valid server->client frame."""


class UpgradeRefused(AssertionError):
    """The server answered an upgrade request with something other than 101."""

    def __init__(self, response):
        super().__init__(f"expected 101, got {response.status}: {response.describe()}")
        self.response = response
        self.status = response.status


class TlsTruncated(AssertionError):
    """The TCP stream ended without the server's TLS close_notify."""

    def __init__(self):
        super().__init__("the server ended TCP without a TLS close_notify (a truncation, RFC 8446 6.1)")


class ServerClosed(AssertionError):
    """A close frame arrived where a data message was expected."""

    def __init__(self, code, reason):
        super().__init__(f"server sent close frame code={code} reason={reason!r}")
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------------------
# Handshake helpers
# ---------------------------------------------------------------------------

def new_key() -> str:
    """A fresh, valid Sec-WebSocket-Key (base64 of 16 random bytes)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept value RFC 6455 section 4.2.2 requires for `key`."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


_DEFAULT_HEADER_ORDER = ("Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version")


def build_request(port: int, path: str = "/echo", *, method: str = "GET", version: str = "HTTP/1.1",
                  key: str | None = None, headers: dict | None = None,
                  extra: list | tuple = (), extra_lines: list | tuple = (),
                  request_line: bytes | None = None) -> bytes:
    """Build an HTTP/1.1 WebSocket upgrade request.

    By default the request is valid.  Adjust it with:
      headers      {name: value} overriding the default headers; value None drops it
      extra        [(name, value), ...] appended after the default headers
      extra_lines  raw header lines (bytes, without CRLF) appended verbatim
      request_line raw request line (without CRLF) replacing "METHOD PATH VERSION"
    """
    if key is None:
        key = new_key()
    hdrs = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    order = list(_DEFAULT_HEADER_ORDER)
    for name, value in (headers or {}).items():
        if name not in hdrs:
            order.append(name)
        hdrs[name] = value
    if request_line is None:
        request_line = f"{method} {path} {version}".encode("latin-1")
    lines = [request_line]
    for name in order:
        if hdrs[name] is not None:
            lines.append(f"{name}: {hdrs[name]}".encode("latin-1"))
    for name, value in extra:
        lines.append(f"{name}: {value}".encode("latin-1"))
    lines.extend(extra_lines)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass
class HttpResponse:
    status: int
    reason: str
    version: str
    headers: list  # [(name, value)] in order received, names as sent
    body: bytes
    raw: bytes
    closed: bool = False   # server closed the connection (FIN or RST) after the response
    how: str = ""          # "eof" | "reset" | "timeout" | "open"

    def header(self, name: str):
        """First value of header `name` (case-insensitive), or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_values(self, name: str) -> list:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header_tokens(self, name: str) -> list:
        """Comma-separated tokens of all `name` headers, lower-cased."""
        out = []
        for v in self.header_values(name):
            out.extend(t.strip().lower() for t in v.split(",") if t.strip())
        return out

    def describe(self) -> str:
        return f"{self.raw[:600]!r} (connection {self.how})"


def parse_http_response(data: bytes) -> HttpResponse:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no complete HTTP response head in {data[:600]!r}")
    lines = head.split(b"\r\n")
    status_line = lines[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise AssertionError(f"malformed status line {status_line!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise AssertionError(f"malformed response header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return HttpResponse(status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "",
                        version=parts[0], headers=headers, body=body, raw=data)


def connect(port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT,
            source: str | None = None, *, tls: ssl.SSLContext | None = None,
            server_hostname: str | None = None, rcvbuf: int | None = None,
            proxy: bytes | None = None) -> socket.socket:
    """TCP connect with TCP_NODELAY (so byte-by-byte sends leave as separate
    segments), from the local address `source` if given (e.g. 127.0.0.2, so
    the server sees another client IP).  With `tls`, the TLS handshake is done
    too (verifying the server as `server_hostname`, default `host`) and an
    ssl.SSLSocket is returned: each send is then one or more TLS records.
    (`tls` loses ssl.OP_IGNORE_UNEXPECTED_EOF, so that truncations show.)

    `rcvbuf` sets SO_RCVBUF before the SYN, so the window is small from the
    start.  Set after connect, the buffer shrinks below a window already
    advertised: the kernel then drops in-window data and the sender retries
    on a backed-off retransmission timer (seconds), which no test can
    time.

    `proxy` (a PROXY protocol header, see proxy_v2()) is sent first, below
    TLS, as a balancer would."""
    if rcvbuf is None:
        sock = socket.create_connection((host, port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
    else:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            if source:
                sock.bind((source, 0))
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    if proxy:
        sock.sendall(proxy)
    if tls is not None:
        # An end of TCP without close_notify must not pass for a clean EOF:
        # Python sets OP_IGNORE_UNEXPECTED_EOF by default (OpenSSL then
        # reports a truncation as a close_notify), and suppress_ragged_eofs
        # would turn the SSLEOFError left into b"".
        tls.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        try:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or host, suppress_ragged_eofs=False)
        except BaseException:
            sock.close()
            raise
    return sock


PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(source: str = "203.0.113.7", source_port: int = 40000, dest: str | None = None,
             dest_port: int = 443, *, local: bool = False, tlvs: bytes = b"") -> bytes:
    """A PROXY protocol v2 header (HAProxy's proxy-protocol.txt, 2.2), built
    here from the spec rather than by ringgate's encoder: PROXY over TCP
    from `source` (IPv4 or IPv6, by its spelling), or LOCAL (the balancer's
    own connection, no addresses)."""
    if local:
        return PROXY_V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    v6 = ":" in source
    family = socket.AF_INET6 if v6 else socket.AF_INET
    dest = dest or ("::1" if v6 else "127.0.0.1")
    block = (socket.inet_pton(family, source) + socket.inet_pton(family, dest) +
             struct.pack("!HH", source_port, dest_port))
    fam_proto = 0x21 if v6 else 0x11  # AF_INET6 / AF_INET, STREAM
    return PROXY_V2_SIGNATURE + bytes([0x21, fam_proto]) + struct.pack("!H", len(block) + len(tlvs)) + block + tlvs


def is_tls(sock: socket.socket) -> bool:
    return isinstance(sock, ssl.SSLSocket)


_TCP_CLOSE = 7  # include/net/tcp_states.h


def _tcp_state(sock: socket.socket) -> int:
    return socket.socket.getsockopt(sock, socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]  # tcpi_state


def is_truncation(exc: ssl.SSLError) -> bool:
    """An end of TCP without close_notify (SSLEOFError; Python 3.11.2 with
    OpenSSL 3 raises a plain SSLError with this reason)."""
    return isinstance(exc, ssl.SSLEOFError) or getattr(exc, "reason", None) == "UNEXPECTED_EOF_WHILE_READING"


def recv_some(sock: socket.socket, n: int = 65536) -> bytes:
    """One recv, the same on TCP and TLS: data; b"" at a clean end (FIN, or
    on TLS the server's close_notify); ConnectionResetError on RST; on TLS,
    TlsTruncated when TCP ends without close_notify.  socket.timeout as usual."""
    if not is_tls(sock):
        return sock.recv(n)
    try:
        return sock.recv(n)
    except ssl.SSLZeroReturnError:
        return b""
    except ssl.SSLError as exc:
        if not is_truncation(exc):
            raise
        # ssl reports an RST like a FIN without close_notify; the socket's
        # TCP state tells them apart (CLOSE after RST, CLOSE_WAIT after FIN).
        if _tcp_state(sock) == _TCP_CLOSE:
            raise ConnectionResetError("the server reset the connection (under TLS)") from None
        raise TlsTruncated() from None


def _await_fin_after_close_notify(sock: ssl.SSLSocket, deadline: float) -> str:
    """After the server's close_notify: read the TCP stream under the TLS
    layer until its FIN.  Returns "eof", "reset" or "timeout"."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        sock.settimeout(remaining)
        try:
            rest = socket.socket.recv(sock, 65536)  # the raw descriptor, under ssl
        except socket.timeout:
            return "timeout"
        except ConnectionResetError:
            return "reset"
        if not rest:
            return "eof"
        raise AssertionError(f"the server sent {len(rest)} bytes after its close_notify: {rest[:60]!r}")


def send_tolerant(sock: socket.socket, data: bytes, bytewise: bool = False) -> bool:
    """Send `data` (in one sendall, or one sendall per byte).

    Returns False instead of raising if the server already closed/reset the
    connection (a server may legitimately answer an error and close before it
    has read everything we wanted to send)."""
    try:
        if bytewise:
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
        else:
            sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return False


def recv_until_eof(sock: socket.socket, timeout: float = DEFAULT_TIMEOUT, limit: int = 4 << 20):
    """Read until the server closes.  Returns (data, how) with how in
    "eof" (orderly FIN), "reset" (RST) or "timeout" (still open at deadline).
    On TLS, "eof" means close_notify and then FIN (the FIN is waited for, so
    "eof" says the same on both transports), and a FIN without close_notify
    is "truncated"."""
    deadline = time.monotonic() + timeout
    chunks = []
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), "timeout"
        sock.settimeout(remaining)
        try:
            chunk = recv_some(sock)
        except socket.timeout:
            return b"".join(chunks), "timeout"
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        except TlsTruncated:
            return b"".join(chunks), "truncated"
        if not chunk:
            if is_tls(sock):
                return b"".join(chunks), _await_fin_after_close_notify(sock, deadline)
            return b"".join(chunks), "eof"
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise AssertionError(f"server sent more than {limit} bytes without closing")


def wait_closed(sock: socket.socket, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, bytes]:
    """Wait (bounded) until the server closes the TCP connection; discard data.
    Returns (closed, data_received_meanwhile).  On TLS, an end without
    close_notify raises TlsTruncated."""
    data, how = recv_until_eof(sock, timeout)
    if how == "truncated":
        raise TlsTruncated()
    return how in ("eof", "reset"), data


def http_exchange(port: int, data: bytes, *, bytewise: bool = False,
                  timeout: float = DEFAULT_TIMEOUT, tls: ssl.SSLContext | None = None,
                  server_hostname: str | None = None) -> HttpResponse:
    """Send a request expected to be REJECTED, read everything until the server
    closes (bounded by `timeout`), parse and return the response.  A response
    ended by a TLS truncation has how="truncated" and closed=False."""
    sock = connect(port, timeout=timeout, tls=tls, server_hostname=server_hostname)
    try:
        send_tolerant(sock, data, bytewise=bytewise)
        raw, how = recv_until_eof(sock, timeout)
    finally:
        sock.close()
    if not raw:
        raise AssertionError(f"server sent no response at all (connection {how})")
    resp = parse_http_response(raw)
    resp.closed = how in ("eof", "reset")
    resp.how = how
    return resp


def read_http_head(sock: socket.socket, timeout: float = DEFAULT_TIMEOUT, limit: int = 65536):
    """Read until the end of an HTTP response head; return (head+CRLFCRLF, leftover)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for HTTP response head, got {buf[:600]!r}")
        sock.settimeout(remaining)
        try:
            chunk = recv_some(sock)
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError(f"server closed before completing response head, got {buf[:600]!r}")
        buf += chunk
        if len(buf) > limit:
            raise AssertionError("HTTP response head too large")
    idx = buf.index(b"\r\n\r\n") + 4
    return buf[:idx], buf[idx:]


def read_upgrade_response(sock: socket.socket, timeout: float = DEFAULT_TIMEOUT):
    """Read the answer to an upgrade request already sent on `sock`.

    Returns (HttpResponse, leftover).  For a 101 the response is the head
    (how="open") and leftover holds any frame bytes that came with it.  For
    anything else the rest is read until the server closes (bounded by
    `timeout`), the whole response is parsed, body included (how says how
    the connection ended), and leftover is b""."""
    head, leftover = read_http_head(sock, timeout)
    resp = parse_http_response(head)
    if resp.status == 101:
        resp.how = "open"
        return resp, leftover
    more, how = recv_until_eof(sock, timeout)
    resp = parse_http_response(head + leftover + more)
    resp.closed = how in ("eof", "reset")
    resp.how = how
    return resp, b""


def handshake(port: int, path: str = "/echo", *, headers: dict | None = None, extra=(),
              bytewise: bool = False, timeout: float = DEFAULT_TIMEOUT, key: str | None = None,
              host: str = "127.0.0.1", source: str | None = None, tls: ssl.SSLContext | None = None,
              server_hostname: str | None = None, rcvbuf: int | None = None, proxy: bytes | None = None):
    """Perform a WebSocket upgrade on a raw socket (on TLS with `tls`: see
    connect()).

    Returns (RawWS, HttpResponse).  Raises UpgradeRefused (an AssertionError
    carrying the whole response) unless the server answered 101.  The
    response's Sec-WebSocket-Accept is NOT checked here (tests that care
    check it explicitly)."""
    key = key or new_key()
    req = build_request(port, path, key=key, headers=headers, extra=extra)
    sock = connect(port, host=host, timeout=timeout, source=source, tls=tls, server_hostname=server_hostname,
                   rcvbuf=rcvbuf, proxy=proxy)
    try:
        if not send_tolerant(sock, req, bytewise=bytewise):
            raise AssertionError("server closed the connection during the upgrade request")
        resp, leftover = read_upgrade_response(sock, timeout)
    except BaseException:
        sock.close()
        raise
    if resp.status != 101:
        sock.close()
        raise UpgradeRefused(resp)
    ws = RawWS(sock, leftover)
    ws.key = key
    return ws, resp


def try_handshake(port: int, path: str = "/echo", *, refused=(503,), **kw):
    """handshake() for polls: the RawWS, or None if the server refused with
    one of the `refused` statuses (any other answer still raises)."""
    try:
        return handshake(port, path, **kw)[0]
    except UpgradeRefused as exc:
        if exc.status in refused:
            return None
        raise


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------

def mask_bytes(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def build_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False,
                rsv2: bool = False, rsv3: bool = False, mask: bool = True,
                mask_key: bytes | None = None) -> bytes:
    """Encode one frame.  Client frames must be masked; pass mask=False only to
    test the server's rejection of unmasked frames."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | (opcode & 0x0F)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        mask_key = mask_key if mask_key is not None else os.urandom(4)
        return head + mask_key + mask_bytes(payload, mask_key)
    return head + payload


def close_payload(code: int | None = None, reason: bytes = b"") -> bytes:
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool = False

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def close_reason(self) -> bytes:
        return self.payload[2:]


def parse_close(payload: bytes):
    if len(payload) == 0:
        return None, b""
    if len(payload) == 1:
        raise RawProtocolError("server sent a close frame with a 1-byte payload")
    return struct.unpack("!H", payload[:2])[0], payload[2:]


class RawWS:
    """An upgraded raw connection.  Server frames are validated: they must be
    unmasked, have RSV bits clear and control frames must be FIN with <= 125
    bytes."""

    def __init__(self, sock: socket.socket, leftover: bytes = b""):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.key = None
        self.pongs: list[bytes] = []

    # -- sending ------------------------------------------------------------
    def send_raw(self, data: bytes) -> bool:
        return send_tolerant(self.sock, data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> bool:
        return self.send_raw(build_frame(opcode, payload, **kw))

    def send_text(self, text, **kw) -> bool:
        return self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text, **kw)

    def send_binary(self, data: bytes, **kw) -> bool:
        return self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> bool:
        return self.send_frame(OP_CLOSE, close_payload(code, reason))

    # -- receiving ----------------------------------------------------------
    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {n} bytes (have {len(self.buf)})")
            self.sock.settimeout(remaining)
            try:
                chunk = recv_some(self.sock, max(65536, n - len(self.buf)))
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            except TlsTruncated as exc:
                raise EOFError(f"{exc} while {n} bytes were expected (have {len(self.buf)})") from exc
            if not chunk:
                raise EOFError(f"server closed TCP while {n} bytes were expected (have {len(self.buf)})")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        b0, b1 = self._read_exact(2, deadline)
        fin = bool(b0 & 0x80)
        rsv = (b0 >> 4) & 0x7
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        if masked:
            raise RawProtocolError("server sent a masked frame (RFC 6455 5.1 forbids it)")
        if rsv:
            raise RawProtocolError(f"server sent RSV bits {rsv:#x} without a negotiated extension")
        if opcode >= 0x8:
            if not fin or n > 125:
                raise RawProtocolError(f"server sent invalid control frame opcode={opcode:#x} fin={fin} len={n}")
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise RawProtocolError(f"server sent reserved opcode {opcode:#x}")
        payload = self._read_exact(n, deadline)
        return Frame(fin, rsv, opcode, payload, masked)

    def recv_message(self, timeout: float = DEFAULT_TIMEOUT):
        """Next whole data message as (opcode, payload).  Pongs are collected
        into self.pongs; pings are answered; a close frame raises ServerClosed."""
        deadline = time.monotonic() + timeout
        opcode = None
        parts = []
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            fr = self.recv_frame(remaining)
            if fr.opcode == OP_PONG:
                self.pongs.append(fr.payload)
                continue
            if fr.opcode == OP_PING:
                self.send_frame(OP_PONG, fr.payload)
                continue
            if fr.opcode == OP_CLOSE:
                code, reason = parse_close(fr.payload)
                raise ServerClosed(code, reason)
            if fr.opcode == OP_CONT:
                if opcode is None:
                    raise RawProtocolError("server sent a continuation frame with no message in progress")
            else:
                if opcode is not None:
                    raise RawProtocolError("server started a new message inside a fragmented one")
                opcode = fr.opcode
            parts.append(fr.payload)
            if fr.fin:
                return opcode, b"".join(parts)

    def recv_pong(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.pongs:
            fr = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if fr.opcode == OP_PONG:
                return fr.payload
            if fr.opcode == OP_CLOSE:
                raise ServerClosed(*parse_close(fr.payload))
            raise RawProtocolError(f"expected pong, got opcode {fr.opcode:#x}")
        return self.pongs.pop(0)

    def echo(self, payload, opcode: int | None = None, timeout: float = DEFAULT_TIMEOUT):
        """Send one message and return the echoed (opcode, payload)."""
        if opcode is None:
            opcode = OP_TEXT if isinstance(payload, str) else OP_BINARY
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not self.send_frame(opcode, payload):
            raise AssertionError("server closed the connection while we were sending")
        return self.recv_message(timeout)

    def poll(self, timeout: float = 0.0) -> bool:
        """True if the server has sent something not yet consumed (kept for
        recv_frame), waiting up to `timeout`.  What MSG_PEEK did on a plain
        socket, on TLS too (SSLSocket refuses recv flags).  The end of the
        connection is not data: False (recv_frame will report it)."""
        if self.buf or (is_tls(self.sock) and self.sock.pending()):
            return True
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = recv_some(self.sock)
        except (socket.timeout, BlockingIOError, ConnectionResetError, TlsTruncated):
            return False
        self.buf += chunk
        return bool(chunk)

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """True once the server has closed TCP (extra data is discarded)."""
        closed, _ = wait_closed(self.sock, timeout)
        return closed

    def wait_released(self, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.1) -> bool:
        """True once the server process has really closed its socket, not just
        sent FIN (shutdown of its write side).

        Probe: send a masked pong every `interval`.  While the server still
        holds the socket it reads and ignores the pong; once it has closed the
        socket, the kernel answers data with RST and our send fails.  Use only
        after the server's FIN was seen (see wait_closed).  On TLS the probe
        is a record (ssl still writes after the server's close_notify) and
        the RST is read under the TLS layer, which has nothing more to say."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.send_raw(build_frame(OP_PONG, b"probe")):
                return True
            self.sock.settimeout(interval)
            try:
                if socket.socket.recv(self.sock, 65536) == b"":  # the descriptor itself, under any ssl
                    time.sleep(interval)
            except socket.timeout:
                pass
            except ConnectionResetError:
                return True
        return False

    def expect_close(self, timeout: float = DEFAULT_TIMEOUT, reply: bool = True,
                     tcp_close_timeout: float = DEFAULT_TIMEOUT):
        """Read frames until the server's close frame.

        Returns (code, reason, data_frames_seen_before).  Then, like a polite
        client, echo the close (if `reply`), and assert the server closes TCP
        within `tcp_close_timeout`."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            try:
                fr = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except EOFError as exc:
                raise AssertionError(f"server closed TCP without sending a close frame "
                                     f"(frames before: {[(f.opcode, f.payload[:40]) for f in before]})") from exc
            if fr.opcode == OP_CLOSE:
                code, reason = parse_close(fr.payload)
                break
            before.append(fr)
        if reply:
            self.send_raw(build_frame(OP_CLOSE, close_payload(code if code is not None else 1000)))
        closed = self.wait_closed(tcp_close_timeout)
        assert closed, f"server sent close {code} but did not close TCP within {tcp_close_timeout}s"
        return code, reason, before

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# Async (asyncio streams) helpers for many connections
# ---------------------------------------------------------------------------

async def async_handshake(port: int, path: str = "/echo", host: str = "127.0.0.1",
                          timeout: float = 30.0):
    """Open a TCP connection and send an upgrade request.

    Returns (reader, writer, HttpResponse).  The caller checks resp.status;
    for a non-101 status the connection is closed here and reader/writer are
    None."""
    async def run():
        reader, writer = await asyncio.open_connection(host, port)
        key = new_key()
        writer.write(build_request(port, path, key=key))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            writer.close()
            raise AssertionError(f"server closed during handshake: {exc.partial[:300]!r}") from exc
        resp = parse_http_response(head)
        if resp.status != 101:
            try:
                rest = await asyncio.wait_for(reader.read(65536), 5)
            except (asyncio.TimeoutError, ConnectionError):
                rest = b""
            resp.body = rest
            writer.close()
            return None, None, resp
        if resp.header("Sec-WebSocket-Accept") != accept_for(key):
            writer.close()
            raise AssertionError(f"bad Sec-WebSocket-Accept {resp.header('Sec-WebSocket-Accept')!r}")
        return reader, writer, resp
    return await asyncio.wait_for(run(), timeout)


async def async_recv_frame(reader: asyncio.StreamReader) -> Frame:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    if b1 & 0x80:
        raise RawProtocolError("server sent a masked frame")
    payload = await reader.readexactly(n)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload)


async def async_echo(reader, writer, payload: bytes, opcode: int = OP_BINARY, timeout: float = 30.0):
    """Send one (unfragmented) message, return the echoed payload (asserting opcode)."""
    async def run():
        writer.write(build_frame(opcode, payload))
        await writer.drain()
        parts = []
        while True:
            fr = await async_recv_frame(reader)
            if fr.opcode in (OP_PING, OP_PONG):
                continue
            if fr.opcode == OP_CLOSE:
                raise ServerClosed(*parse_close(fr.payload))
            if not parts:
                assert fr.opcode == opcode, f"echo opcode {fr.opcode} != {opcode}"
            parts.append(fr.payload)
            if fr.fin:
                return b"".join(parts)
    return await asyncio.wait_for(run(), timeout)


async def async_close(reader, writer, code: int = 1000, timeout: float = 30.0):
    """Clean close: send close(code), read until the server's close frame,
    then wait for the server to close TCP.  Returns the server's close code.
    The writer is always closed afterwards."""
    async def run():
        writer.write(build_frame(OP_CLOSE, close_payload(code)))
        await writer.drain()
        while True:
            fr = await async_recv_frame(reader)
            if fr.opcode == OP_CLOSE:
                got, _ = parse_close(fr.payload)
                break
        rest = await reader.read(65536)   # b"" once the server closed TCP
        while rest:
            rest = await reader.read(65536)
        return got
    try:
        return await asyncio.wait_for(run(), timeout)
    finally:
        writer.close()
