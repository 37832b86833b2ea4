"""wss:// from a real browser: headless Chromium loads an https:// page
and, from it, echoes and subscribes through ringgate's TLS listener.

Trust is the browser's own: the test CA (tlsca.py) is added to the NSS
database of a throwaway HOME (certutil, "C,,"), which is where Chromium on
Linux looks for locally trusted roots.  No flag weakens certificate checks
(asserted on the command line), and the same browser, from the same page,
fails to open a wss:// to a ringgate whose certificate comes from a CA it
was not given: close 1006 and net::ERR_CERT_AUTHORITY_INVALID on its console,
while that ringgate counts a failed handshake and no completed one.

The page (browser_page.html) is served over HTTPS on 127.0.0.1 by a leaf of
the test CA, so the WebSocket is what a real site opens (wss:// from an
https:// page: no mixed content).  The test drives it with the DevTools
protocol (browser.py): each page function returns its result by value.

Chromium and certutil come from Debian's chromium and libnss3-tools, listed
in tools/dev/deps.sh like every other package the tests use: a machine
without them fails here rather than skipping.
"""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest

from browser import Cdp, CdpError, Chromium, NssHome, PageServer, chromium_bin
from conftest import metrics, publish, run_async, total, wait_until
from tlsca import TestCA

PAGE = (pathlib.Path(__file__).resolve().parent / "browser_page.html").read_bytes()
TEST_TIMEOUT = 20  # each test's whole browser session (the page's own waits end in 10 s)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium():
    binary = chromium_bin()
    if binary is None:
        pytest.fail("chromium is not installed: tools/dev/deps.sh installs it (Debian's chromium, "
                    "libnss3-tools)", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def ca(dirs):
    return TestCA(dirs / "ca")


@pytest.fixture(scope="module")
def untrusted_ca(dirs):
    """A CA made the same way, never given to the browser."""
    return TestCA(dirs / "untrusted-ca", name="ringgate untrusted test CA")


@pytest.fixture(scope="module")
def home(dirs, ca):
    return NssHome(dirs / "home", {"ringgate-test-ca": ca.cert_path})


@pytest.fixture(scope="module")
def pages(ca):
    with PageServer(ca.issue("localhost"), {"/ringgate.html": PAGE}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium, home, dirs):
    b = Chromium(home, dirs / "profile", binary=chromium)
    yield b
    b.stop()


def tls_args(leaf, *extra):
    return ["--tls-listen", "127.0.0.1:0", "--tls-cert-file", str(leaf.cert_path), "--tls-key-file",
            str(leaf.key_path), *extra]


@pytest.fixture(scope="module")
def srv(ringgate_module, ca):
    return ringgate_module(*tls_args(ca.issue("localhost"), "--workers", "2"))


@pytest.fixture(scope="module")
def untrusted_srv(ringgate_module, untrusted_ca):
    return ringgate_module(*tls_args(untrusted_ca.issue("localhost"), "--workers", "1"))


# ---------------------------------------------------------------- helpers


def with_page(browser, url, body, timeout_s=TEST_TIMEOUT):
    """Opens `url` in a new tab of `browser` and returns `await body(page)`;
    the tab's console is printed (pytest shows it when the test fails)."""
    async def go():
        async with await Cdp.connect(browser.devtools_url) as cdp:
            page = await cdp.open(url)
            try:
                return await body(page)
            finally:
                print(f"--- console of {url} ---\n{page.console()}")
                await page.close()
    return run_async(go(), timeout_s)


def call(fn, *args) -> str:
    """A call of a page function, as a Runtime.evaluate expression."""
    return f"{fn}({', '.join(json.dumps(a) for a in args)})"


def tls_handshakes(srv, **labels) -> float:
    return total(metrics(srv), "ws_tls_handshakes_total", **labels)


# ---------------------------------------------------------------- tests


def test_the_browser_runs_with_its_certificate_checks(browser, home):
    """What the rest of the file relies on: no flag that skips or narrows
    verification, and the one CA the test added is the NSS database's only
    entry."""
    forbidden = ("ignore-certificate-errors", "allow-insecure-localhost", "unsafely-treat-insecure-origin-as-secure",
                 "allow-running-insecure-content", "disable-web-security")  # the first covers -spki-list
    for arg in browser.argv:
        assert not any(f in arg for f in forbidden), arg
    entries = [line for line in home.listing.splitlines()[3:] if line.strip()]
    assert len(entries) == 1 and entries[0].startswith("ringgate-test-ca"), home.listing


def test_echo_over_wss_from_an_https_page(browser, pages, srv):
    before = tls_handshakes(srv, result="ok", version="1.3")

    async def body(page):
        return await page.evaluate(call("echo", srv.wss_uri("/echo")))
    r = with_page(browser, pages.url("/ringgate.html"), body)
    assert r["opened"] is True, r
    assert r["protocol"] == "" and r["extensions"] == "", r  # ringgate negotiates no extension
    assert r["text"] == "h\u00e9llo from a browser \u2713"
    assert r["binaryType"] == "[object ArrayBuffer]" and r["binary"] == list(range(256)), r
    assert r["big"] == {"sent": 72_000, "received": 72_000, "equal": True}, r["big"]
    assert r["close"]["code"] == 1000 and r["close"]["wasClean"] is True, r["close"]
    assert tls_handshakes(srv, result="ok", version="1.3") >= before + 1
    assert tls_handshakes(srv, result="ok", version="1.2") == 0  # Chromium speaks 1.3


def test_pubsub_over_wss_from_an_https_page(browser, pages, srv):
    before = tls_handshakes(srv, result="ok", version="1.3")

    async def body(page):
        sub = await page.evaluate(call("subscribe", srv.wss_uri("/ws?channels=news")))
        assert sub == {"opened": True, "first": {"type": "subscribed", "channel": "news"}}, sub
        status, answer = await asyncio.to_thread(publish, srv, "news", b'{"from":"the test","n":7}')
        assert status == 200, answer
        msg = await page.evaluate("nextMessage()")
        closed = await page.evaluate("closeSubscription()")
        return msg, closed
    msg, closed = with_page(browser, pages.url("/ringgate.html"), body)
    assert isinstance(msg.pop("id"), str), msg
    assert msg == {"type": "message", "channel": "news", "data": {"from": "the test", "n": 7}}, msg
    assert closed["code"] == 1000 and closed["wasClean"] is True, closed
    assert tls_handshakes(srv, result="ok", version="1.3") >= before + 1


def test_a_ca_the_browser_does_not_trust_fails_to_connect(browser, pages, srv, untrusted_srv):
    """The same browser and page, a ringgate whose leaf comes from a CA not
    in the NSS database: the WebSocket never opens (1006), the browser names
    the certificate error, and ringgate sees the handshake fail.  The page's
    next connection, to the trusted ringgate, echoes: only the CA differs."""
    async def body(page):
        refused = await page.evaluate(call("echo", untrusted_srv.wss_uri("/echo")))
        await page.wait_console("net::ERR_CERT_AUTHORITY_INVALID")
        trusted = await page.evaluate(call("echo", srv.wss_uri("/echo")))
        return refused, trusted
    refused, trusted = with_page(browser, pages.url("/ringgate.html"), body)
    assert refused["opened"] is False and refused["state"] == "closed", refused
    assert refused["closed"]["code"] == 1006 and refused["closed"]["wasClean"] is False, refused
    assert trusted["opened"] is True and trusted["text"] == "h\u00e9llo from a browser \u2713", trusted
    wait_until(lambda: tls_handshakes(untrusted_srv, result="failed") >= 1, 5,
               what="the untrusted server to count the failed handshake")
    assert tls_handshakes(untrusted_srv, result="ok") == 0


def test_a_page_from_an_untrusted_ca_does_not_load(browser, untrusted_ca):
    """The page itself is checked the same way: served by a leaf of the
    untrusted CA, navigation fails with the certificate error."""
    with PageServer(untrusted_ca.issue("localhost"), {"/ringgate.html": PAGE}) as other:
        with pytest.raises(CdpError, match="ERR_CERT_AUTHORITY_INVALID"):
            with_page(browser, other.url("/ringgate.html"), lambda page: asyncio.sleep(0))
        assert other.requests == [], "no request may reach a server the browser does not trust"

