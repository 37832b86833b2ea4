#!/usr/bin/python3
"""What the backplane costs Redis per name a node holds.

A node of the fleet holds one sharded subscription per channel and per
connected user (control/backplane.h).  This measures, against a real
redis-server started here (no persistence, 127.0.0.1, a free port), what N
such subscriptions from one connection cost: Redis memory per
subscription, how fast one connection subscribes them (SSUBSCRIBE commands
of 512 keys, at most 16,384 answers outstanding, as the backplane does on
reconnect), and
the SPUBLISH rate to those names (pipelined, 1,000 per batch) with the
subscriber draining what Redis pushes, and what the registry's entries
(one hash per user, one field per node) cost.

    perf/results/fleet/redis_cost.py [N]        (default 1,000,000)

Prints one line per figure.  Bounded: N names, 100,000 publishes, and
every read has a 60 s timeout.
"""

import os
import random
import socket
import subprocess
import sys
import time


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until(sock, marker, count):
    """Reads until `marker` has been seen `count` times."""
    seen, tail = 0, b""
    while seen < count:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("redis closed the connection")
        data = tail + chunk
        seen += data.count(marker) - tail.count(marker)
        tail = data[-len(marker):]


def info_memory(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "memory"], capture_output=True, text=True).stdout
    return int(next(l.split(":")[1] for l in out.splitlines() if l.startswith("used_memory:")))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        names = [b"rg:{u:user%07d}" % i for i in range(n)]
        before = info_memory(port)
        sub = connect(port)
        t0 = time.monotonic()
        # As the backplane does: 512 names per command, at most 16,384 names'
        # answers outstanding (Redis closes a subscriber whose unread output
        # passes client-output-buffer-limit pubsub, 32 MB).
        batch, window = 512, 16384
        for start in range(0, n, window):
            chunk = names[start:start + window]
            sub.sendall(b"".join(resp(b"SSUBSCRIBE", *chunk[i:i + batch]) for i in range(0, len(chunk), batch)))
            read_until(sub, b"ssubscribe", len(chunk))
        t_sub = time.monotonic() - t0
        after = info_memory(port)
        print(f"subscriptions: {n:,} on one connection in {t_sub:.2f} s ({n / t_sub:,.0f}/s)")
        print(f"redis memory: {before:,} B before, {after:,} B after: {(after - before) / n:.0f} B per subscription")
        pub = connect(port)
        publishes = 100_000
        rng = random.Random(7)
        message = b"rg1 1a2b-1\n" + b'{"text":"hello"}'
        t0 = time.monotonic()
        for start in range(0, publishes, 1000):
            pub.sendall(b"".join(resp(b"SPUBLISH", names[rng.randrange(n)], message) for _ in range(1000)))
            read_until(pub, b":1\r\n", 1000)
        read_until(sub, b"smessage", publishes)
        t_pub = time.monotonic() - t0
        print(f"spublish: {publishes:,} to random names among {n:,}, delivered to the subscriber, in {t_pub:.2f} s "
              f"({publishes / t_pub:,.0f}/s)")
        # The registry: one hash per user, one field for this node's
        # instance, written as the backplane writes them (HSET, pipelined,
        # 1,000 per round trip here; the backplane sends a second's changes
        # at once).
        before = info_memory(port)
        instance = b"node-1.example:8080/1796686866917"
        t0 = time.monotonic()
        for start in range(0, n, 1000):
            pub.sendall(b"".join(resp(b"HSET", name + b":nodes", instance, b"1")
                                 for name in names[start:start + 1000]))
            read_until(pub, b":1\r\n", min(1000, n - start))
        t_reg = time.monotonic() - t0
        after = info_memory(port)
        print(f"registry: {n:,} HSET in {t_reg:.2f} s ({n / t_reg:,.0f}/s), {(after - before) / n:.0f} B per entry")
        rss = int(open(f"/proc/{redis.pid}/status").read().split("VmRSS:")[1].split()[0])
        print(f"redis-server RSS: {rss / 1024:.0f} MiB")
    finally:
        redis.terminate()
        redis.wait(10)


if __name__ == "__main__":
    main()
