"""Headless Chromium for the browser tests (test_browser.py).

Chromium verifies certificates itself; nothing here weakens that.  Its trust
comes from the NSS database of the user running it, $HOME/.pki/nssdb on
Linux, so each browser gets a throwaway HOME whose database trusts exactly
the CAs the test names (certutil, Debian's libnss3-tools):

    home = NssHome(tmp / "home", {"ringgate-test-ca": ca.cert_path})
    with PageServer(leaf, {"/page.html": html}) as pages:     # https://localhost:PORT/page.html
        browser = Chromium(home, tmp / "profile")             # headless, DevTools on a port of its own
        async with await Cdp.connect(browser.devtools_url) as cdp:
            page = await cdp.open(pages.url("/page.html"))   # fails on a navigation error
            result = await page.evaluate("echo('wss://localhost:4443/echo')")
        browser.stop()

The test drives the page through the DevTools protocol over a WebSocket
(python3-websockets): Runtime.evaluate with awaitPromise runs a function of
the page and returns its result by value, and Log/Runtime events keep what
the browser said on its console (a failed WebSocket's net:: error is there).
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time

# The Debian wrapper /usr/bin/chromium only adds flags (extensions, GPU
# rasterization) from /etc/chromium.d before exec'ing this binary; the tests
# pass their own flags, so they start the binary itself.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
DEVTOOLS_RE = re.compile(r"DevTools listening on (ws://\S+)")
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


def chromium_bin() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


# ---------------------------------------------------------------------------
# Trust: an NSS database in a throwaway HOME
# ---------------------------------------------------------------------------

class NssHome:
    """A directory to be the browser's HOME, whose $HOME/.pki/nssdb trusts
    each CA of `cas` ({nickname: PEM path}) to issue server certificates
    (trust flags "C,,") and nothing else."""

    def __init__(self, directory: pathlib.Path, cas: dict[str, pathlib.Path]):
        self.dir = pathlib.Path(directory)
        self.nssdb = self.dir / ".pki" / "nssdb"
        self.nssdb.mkdir(parents=True)
        db = f"sql:{self.nssdb}"
        self._certutil("-d", db, "-N", "--empty-password")
        for nickname, pem in cas.items():
            self._certutil("-d", db, "-A", "-t", "C,,", "-n", nickname, "-i", str(pem))
        self.listing = self._certutil("-d", db, "-L")
        for nickname in cas:
            assert re.search(rf"^{re.escape(nickname)}\s+C,,\s*$", self.listing, re.M), self.listing

    @staticmethod
    def _certutil(*args) -> str:
        certutil = shutil.which("certutil")
        assert certutil, "certutil not found: install libnss3-tools (tools/dev/deps.sh)"
        out = subprocess.run([certutil, *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"certutil {' '.join(args)}: status {out.returncode}\n{out.stdout}{out.stderr}"
        return out.stdout

    def env(self) -> dict:
        """The browser's environment: this HOME, and XDG and temporary
        directories inside it, so that nothing it writes outlives the test's
        directory."""
        tmp = self.dir / "tmp"
        tmp.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(HOME=str(self.dir), XDG_CONFIG_HOME=str(self.dir / ".config"),
                   XDG_CACHE_HOME=str(self.dir / ".cache"), XDG_DATA_HOME=str(self.dir / ".local/share"),
                   TMPDIR=str(tmp))
        return env


# ---------------------------------------------------------------------------
# The page: HTTPS from a leaf of the test CA
# ---------------------------------------------------------------------------

class PageServer:
    """http.server on 127.0.0.1:0 speaking HTTPS with `leaf` (tlsca.Leaf),
    serving `files` ({path: bytes}, as text/html) and 404 for anything else.
    The TLS handshake runs in each connection's thread, so a slow client
    holds up nobody.  A context manager; .url(path) is https://localhost:PORT/path."""

    def __init__(self, leaf, files: dict[str, bytes]):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(leaf.cert_path), str(leaf.key_path))
        self.requests: list[str] = []
        served = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                served.append(path)
                body = files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                request.settimeout(10)
                try:
                    tls = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # a client that gave up on our certificate
                with tls:
                    super().finish_request(tls, client_address)

            def handle_error(self, request, client_address):
                pass  # resets and timeouts of idle keep-alive connections

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="page-server", daemon=True)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# ---------------------------------------------------------------------------
# The browser process
# ---------------------------------------------------------------------------

class Chromium:
    """Headless Chromium with the DevTools protocol on a port of its own
    (--remote-debugging-port=0: the port is read from its stderr).  It runs
    in a process group of its own, which stop() ends (SIGTERM, then
    SIGKILL), renderers and helpers included.

    The flags turn off the sandbox (we run as root), the GPU, first-run and
    background work, and proxies; none touches certificate checks, and
    .argv is there for a test to prove it."""

    def __init__(self, home: NssHome, profile_dir: pathlib.Path, binary: str | None = None):
        self.binary = binary or chromium_bin()
        assert self.binary, "chromium not found: install the chromium package (tools/dev/deps.sh)"
        self.argv = [
            self.binary,
            "--headless=new",
            "--no-sandbox",             # root in a container; sandboxing, not certificates
            f"--user-data-dir={profile_dir}",
            "--remote-debugging-port=0",
            "--no-first-run", "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",  # a container's /dev/shm may be 64 MB
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions",
            "--no-proxy-server",
            "--password-store=basic",
            "about:blank",
        ]
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._url_found = threading.Event()
        self.devtools_url = None
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=home.env(), start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"chromium-{self.proc.pid}", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._url_found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"chromium did not print its DevTools URL within {STARTUP_TIMEOUT}s "
                                     f"(status {self.proc.returncode})\n--- stderr ---\n{self.log()}")

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self._lines.append(line)
            if not self._url_found.is_set():
                m = DEVTOOLS_RE.search(line)
                if m:
                    self.devtools_url = m.group(1)
                    self._url_found.set()

    def log(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def stop(self):
        """SIGTERM to the browser (it shuts its helpers down), then SIGKILL
        to its process group for whatever is left; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers that outlived the browser
        except ProcessLookupError:
            pass
        self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        return self.proc.returncode


# ---------------------------------------------------------------------------
# The DevTools protocol
# ---------------------------------------------------------------------------

class CdpError(AssertionError):
    pass


class Cdp:
    """One DevTools connection to the browser endpoint; pages are attached
    with flat sessions (Target.attachToTarget flatten=true) over it."""

    def __init__(self, ws):
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: dict[str | None, list[dict]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, timeout_s: float = 10) -> "Cdp":
        import websockets
        ws = await asyncio.wait_for(websockets.connect(url, max_size=None, ping_interval=None,
                                                       open_timeout=timeout_s), timeout_s)
        return cls(ws)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self._reader.cancel()
        await asyncio.wait_for(self.ws.close(), 5)

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                else:
                    self._events.setdefault(msg.get("sessionId"), []).append(msg)
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(CdpError("the DevTools connection closed"))

    async def call(self, method: str, params: dict | None = None, session: str | None = None,
                   timeout_s: float = 10) -> dict:
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send(json.dumps(msg))
        try:
            reply = await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            raise CdpError(f"{method}: no answer within {timeout_s}s") from None
        finally:
            self._pending.pop(msg_id, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply["result"]

    def events(self, session: str | None, method: str | None = None) -> list[dict]:
        return [e for e in self._events.get(session, []) if method is None or e["method"] == method]

    async def wait_event(self, session: str | None, method: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.events(session, method)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise CdpError(f"no {method} within {timeout_s}s")
            await asyncio.sleep(0.02)

    async def open(self, url: str, timeout_s: float = 15) -> "Page":
        """A new tab showing `url`, once its load event has fired.  A failed
        navigation (a certificate error on the page itself, say) raises
        CdpError with Chromium's net:: error."""
        target = (await self.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await self.call("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, target, session)
        try:
            for domain in ("Page", "Runtime", "Log"):
                await self.call(f"{domain}.enable", session=session)
            nav = await self.call("Page.navigate", {"url": url}, session=session, timeout_s=timeout_s)
            if nav.get("errorText"):
                raise CdpError(f"navigating to {url}: {nav['errorText']}")
            await self.wait_event(session, "Page.loadEventFired", timeout_s)
        except BaseException:
            await page.close()
            raise
        return page


class Page:
    def __init__(self, cdp: Cdp, target: str, session: str):
        self.cdp, self.target, self.session = cdp, target, session

    async def evaluate(self, expression: str, timeout_s: float = 15):
        """The value of `expression` (a promise is awaited), by value.  A
        thrown exception raises CdpError with its description."""
        r = await self.cdp.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                     "returnByValue": True, "timeout": timeout_s * 1000},
                                session=self.session, timeout_s=timeout_s + 2)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError(f"{expression}: {d.get('exception', {}).get('description') or d.get('text')}\n"
                           f"--- console ---\n{self.console()}")
        return r["result"].get("value")

    def console(self) -> str:
        """What the page and the browser said on this tab's console: the
        page's console.log calls and the browser's own entries (a
        WebSocket's net:: error, a mixed-content block)."""
        lines = []
        for e in self.cdp.events(self.session):
            if e["method"] == "Log.entryAdded":
                entry = e["params"]["entry"]
                lines.append(f"[{entry['source']}/{entry['level']}] {entry['text']}")
            elif e["method"] == "Runtime.consoleAPICalled":
                args = e["params"]["args"]
                lines.append(f"[console.{e['params']['type']}] "
                             + " ".join(str(a.get("value", a.get("description", ""))) for a in args))
        return "\n".join(lines)

    async def wait_console(self, text: str, timeout_s: float = 5) -> str:
        """The console once it contains `text` (the browser's own entries may
        come a little after the page has seen the event)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.console():
            if time.monotonic() >= deadline:
                raise CdpError(f"{text!r} not on the console within {timeout_s}s:\n{self.console()}")
            await asyncio.sleep(0.02)
        return self.console()

    async def close(self):
        await self.cdp.call("Target.closeTarget", {"targetId": self.target})
