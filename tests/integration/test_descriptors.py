"""Connection capacity, descriptor usage and slot recycling.

Connections are io_uring direct descriptors, so thousands of open
connections must not show up in /proc/PID/fd; --max-connections is a hard
cap answered with HTTP 503; and closed connections must free their slot and
record so the full capacity is available again.
"""

import asyncio
import time

import wsraw
from conftest import TCP_CLOSE_WAIT, TCP_ESTABLISHED, run_async, tcp_sockets, wait_until
from wsraw import OP_BINARY

N = 2000
BATCH = 200
OP_TIMEOUT = 30.0
RELEASE_TIMEOUT = 10.0


async def _open_one(port, i):
    """Upgrade and echo one message.  Returns (reader, writer) or raises;
    a non-101 answer raises Rejected(status)."""
    r, w, resp = await wsraw.async_handshake(port, timeout=OP_TIMEOUT)
    if resp.status != 101:
        raise Rejected(resp.status, resp.raw + resp.body)
    payload = b"conn-%d" % i
    try:
        got = await wsraw.async_echo(r, w, payload, OP_BINARY, timeout=OP_TIMEOUT)
    except BaseException:
        w.close()
        raise
    assert got == payload, f"connection {i}: echo {got!r} != {payload!r}"
    return r, w


class Rejected(Exception):
    def __init__(self, status, raw):
        super().__init__(f"HTTP {status}: {raw[:200]!r}")
        self.status = status


async def open_many(port, n, retry_503_until=None):
    """Open n upgraded connections in concurrent batches of BATCH.

    If retry_503_until (a monotonic deadline) is given, connections refused
    with 503 are retried until then (the server may need a moment to recycle
    slots of connections that were just closed).  Any other failure, or a 503
    after the deadline, fails the test (after closing what was opened)."""
    conns = {}
    pending = list(range(n))
    failures = []
    while pending:
        retry = []
        for start in range(0, len(pending), BATCH):
            ids = pending[start:start + BATCH]
            results = await asyncio.gather(*(_open_one(port, i) for i in ids), return_exceptions=True)
            for i, res in zip(ids, results):
                if isinstance(res, BaseException):
                    if (isinstance(res, Rejected) and res.status == 503 and retry_503_until
                            and time.monotonic() < retry_503_until):
                        retry.append(i)
                    else:
                        failures.append((i, repr(res)))
                else:
                    conns[i] = res
        if failures:
            break
        pending = retry
        if pending:
            await asyncio.sleep(0.2)
    if failures:
        await close_many(list(conns.values()), check=False)
        raise AssertionError(f"{len(failures)} of {n} connections failed "
                             f"({len(conns)} succeeded); first: {failures[:5]}")
    return [conns[i] for i in range(n)]


async def close_many(conns, check=True):
    """Clean close (1000) of every connection, in batches; each must get close 1000 back."""
    bad = []
    for start in range(0, len(conns), BATCH):
        batch = conns[start:start + BATCH]
        results = await asyncio.gather(*(wsraw.async_close(r, w, 1000, timeout=OP_TIMEOUT)
                                         for r, w in batch), return_exceptions=True)
        bad += [(start + k, res) for k, res in enumerate(results) if res != 1000]
    if check:
        assert not bad, f"{len(bad)} connections did not close cleanly; first: {bad[:5]}"


async def wait_released(port, timeout=RELEASE_TIMEOUT):
    """Until no socket on the server's port is left that the server has not
    closed (ESTABLISHED or CLOSE_WAIT on its side)."""
    deadline = time.monotonic() + timeout
    while True:
        n = tcp_sockets(port, (TCP_ESTABLISHED, TCP_CLOSE_WAIT))
        if n == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} server-side sockets still open {timeout}s after all clients closed")
        await asyncio.sleep(0.1)


async def echo_all(conns):
    for start in range(0, len(conns), BATCH):
        batch = conns[start:start + BATCH]
        res = await asyncio.gather(*(wsraw.async_echo(r, w, b"again-%d" % (start + k), OP_BINARY,
                                                      timeout=OP_TIMEOUT)
                                     for k, (r, w) in enumerate(batch)))
        for k, got in enumerate(res):
            assert got == b"again-%d" % (start + k)


def test_2000_connections_no_fds_cap_503_and_recycling(ringgate):
    """With --workers 2 --max-connections 2000:
      1. 2,000 concurrent upgraded, echoing connections grow the server's
         /proc/PID/fd count by at most 5 (direct descriptors);
      2. a 2,001st connection is refused with HTTP 503 while 2,000 are open,
         and the 2,000 still echo afterwards;
      3. after all 2,000 close cleanly and the server released them, another
         2,000 all succeed concurrently -- only possible if every slot and
         per-connection record of the first batch was freed."""
    srv = ringgate("--workers", "2", "--max-connections", str(N))
    fds_before = srv.fd_count()

    async def main():
        conns = await open_many(srv.port, N)
        fds_open = srv.fd_count()
        try:
            assert fds_open - fds_before <= 5, (
                f"fd table grew from {fds_before} to {fds_open} with {N} connections open")

            r, w, resp = await wsraw.async_handshake(srv.port, timeout=OP_TIMEOUT)
            if w is not None:
                w.close()
            assert resp.status == 503, f"connection {N + 1} got {resp.status}, expected 503"

            await echo_all(conns)
        except BaseException:
            await close_many(conns, check=False)  # tidy up; the failure above is the one to report
            raise
        await close_many(conns)  # every one of the 2,000 closes cleanly (1000 back)
        await wait_released(srv.port)

        conns2 = await open_many(srv.port, N, retry_503_until=time.monotonic() + RELEASE_TIMEOUT)
        try:
            fds_open2 = srv.fd_count()
            assert fds_open2 - fds_before <= 5, (
                f"second batch: fd table grew from {fds_before} to {fds_open2}")
            await echo_all(conns2)
        finally:
            await close_many(conns2)

    run_async(main(), 300)
    srv.assert_alive()


def test_small_cap_503_then_slot_reuse(ringgate):
    """--max-connections 10: the 11th concurrent connection gets 503 (a text/plain
    body, then close); after one of the 10 closes, a new connection upgrades."""
    srv = ringgate("--max-connections", "10")
    conns = [wsraw.handshake(srv.port)[0] for _ in range(10)]
    try:
        resp = wsraw.http_exchange(srv.port, wsraw.build_request(srv.port))
        assert resp.status == 503, resp.describe()
        assert resp.closed
        assert resp.body.strip()
        for c in conns:
            assert c.echo(b"x") == (OP_BINARY, b"x")
        first = conns.pop(0)
        with first:
            first.send_close(1000)
            assert first.recv_frame(10).close_code == 1000
            assert first.wait_closed(10)
        ws = wait_until(lambda: wsraw.try_handshake(srv.port), RELEASE_TIMEOUT,
                        what="a 101 once one of the 10 connections closed")
        conns.append(ws)
        assert ws.echo("reused") == (wsraw.OP_TEXT, b"reused")
    finally:
        for c in conns:
            c.close()
