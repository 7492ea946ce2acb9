"""The ledger's HTTP client against a real (if odd) server: what it says when a node answers
with something that is not what it asked for."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from credential.errors import LedgerError, PasaporteError, UsageError, message_catalog
from credential.note import parse_note
from ledger import client
from tests.ledger.helpers import reply, serving, trickle


class _NotANote(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server calls it by this name
        reply(self, 200, "text/plain", b"hola\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def odd_node() -> Iterator[str]:
    with serving(_NotANote) as url:
        yield url


def test_a_checkpoint_that_is_no_note_is_said_in_each_language(odd_node: str) -> None:
    with pytest.raises(LedgerError) as caught:
        client.checkpoint(odd_node)
    with pytest.raises(PasaporteError) as inner:  # what the note parser itself says of it
        parse_note("hola\n")
    message = caught.value.message
    assert caught.value.code == "ledger_remote_error"
    assert inner.value.message["es"] in message["es"]
    assert inner.value.message["en"] in message["en"]
    assert inner.value.message["en"] not in message["es"]


class _Trickle(http.server.BaseHTTPRequestHandler):
    """A node that sends its answer a byte at a time, a little slower than the deadline."""

    def do_GET(self) -> None:  # http.server calls it by this name
        body = b"x" * 400
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        trickle(self.wfile, body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_that_trickles_in_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wait on the socket is short, so only a deadline on the whole answer ends a node
    that sends a byte now and then (a mirror would sit on one page for a day)."""
    monkeypatch.setattr(client, "DEADLINE", 1.0)
    started = time.monotonic()
    with serving(_Trickle) as url, pytest.raises(LedgerError) as caught:
        client.get_text(f"{url}/checkpoint")
    assert caught.value.code == "ledger_unreachable" and "1 s" in caught.value.message["en"]
    assert time.monotonic() - started < 3.5


_SEEN: list[tuple[str, str, str | None]] = []


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    """Where a redirect points: it answers anything with what an append's answer looks like."""

    def _any(self) -> None:
        _SEEN.append((self.command, self.path, self.headers.get("Authorization")))
        reply(self, 200, "application/json", b'{"checkpoint": "x", "start": 0, "end": 1}')

    do_GET = do_POST = _any  # http.server calls them by these names

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    _SEEN.clear()
    with serving(_Elsewhere) as url:
        yield url


def _redirecting(location: str, code: int) -> type[http.server.BaseHTTPRequestHandler]:
    class Redirect(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(code)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _any  # http.server calls them by these names

        def log_message(self, *args: object) -> None:
            pass

    return Redirect


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_post_is_never_redirected(elsewhere: str, code: int) -> None:
    """urllib turns a redirected POST into a GET with the same headers: the append token went
    to whatever host the answer named, and that host's answer was taken for the append's."""
    with serving(_redirecting(elsewhere + "/entries", code)) as url:
        status, _, _ = client.post(url + "/entries", b'{"entries": []}',
                                   {"Authorization": "Bearer secret"})
        assert status == code
    assert _SEEN == []


def test_a_read_follows_a_redirect_to_http_only(elsewhere: str) -> None:
    with serving(_redirecting(elsewhere + "/moved", 302)) as url:
        assert client.get_json(url + "/entries")["end"] == 1
    assert _SEEN == [("GET", "/moved", None)]
    port = urllib.parse.urlsplit(elsewhere).port
    for target in ("ftp://127.0.0.1/x", "file:///etc/passwd",
                   f"http://admin:hunter2@127.0.0.1:{port}/moved"):
        with serving(_redirecting(target, 302)) as url:
            with pytest.raises(LedgerError) as caught:
                client.get_text(url + "/checkpoint")
            assert caught.value.code == "ledger_remote_error"


@contextlib.contextmanager
def _raw_server(answer: bytes) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    threading.Thread(target=run, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.parametrize("answer", [
    b"no status line\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc",
    b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc",
    b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
], ids=["status", "chunk", "refusal-chunk", "headers", "header-line"])
def test_an_answer_that_is_not_http_is_a_typed_error(answer: bytes) -> None:
    """http.client's own exceptions are not OSErrors: they reached the CLI as "unexpected
    error" with the other end's bytes (newlines and all) printed on the terminal."""
    with _raw_server(answer) as url:
        for call in (functools.partial(client.get_text, url + "/checkpoint"),
                     functools.partial(client.post, url + "/add-checkpoint", b"old 0\n\n")):
            with pytest.raises(LedgerError) as caught:
                call()
            es, en = caught.value.message["es"], caught.value.message["en"]
            if caught.value.code == "ledger_remote_error":  # a GET refused: its body unread
                assert caught.value.detail["status"] == 409
                continue
            assert caught.value.code == "ledger_unreachable"
            assert "no es HTTP válido" in es and "not valid HTTP" in en
            # the reason is ledger_answer_not_http's, each half in its own language
            assert message_catalog()["ledger_answer_not_http"]["es"] in es
            assert "not valid HTTP (" not in es
            assert "status line" not in es and "\n" not in es + en


class _TrickledRefusal(http.server.BaseHTTPRequestHandler):
    """A witness that refuses, a byte at a time."""

    def do_POST(self) -> None:  # http.server calls it by this name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"9" * 400 + b"\n"
        self.send_response(409)
        self.send_header("Content-Type", "text/x.tlog.size")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        trickle(self.wfile, body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_refusal_that_trickles_in_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal's body was read with no deadline at all: a witness could hold the log's
    request to it (and so every later one: it is "still busy") for as long as it liked."""
    monkeypatch.setattr(client, "DEADLINE", 1.0)
    with serving(_TrickledRefusal) as url:
        with pytest.raises(LedgerError) as caught:
            client.post(url + "/add-checkpoint", b"old 0\n\n")
        assert caught.value.code == "ledger_unreachable" and "1 s" in caught.value.message["en"]


def test_a_node_address_is_checked_and_shown_without_its_secrets() -> None:
    assert client.node_url(" https://ledger.example/log/ ") == "https://ledger.example/log"
    assert client.node_url("http://[::1]:8700") == "http://[::1]:8700"
    assert client.node_url("HTTP://127.0.0.1:8700") == "HTTP://127.0.0.1:8700"
    assert client.node_url("http://xn--r8jz45g.xn--zckzah:8700/") == (
        "http://xn--r8jz45g.xn--zckzah:8700")
    for bad in ("", "ledger.example", "ftp://ledger.example", "http://", "http:///log",
                "http://[::1", "http://h:0", "http://h:port", "http://h:65536",
                "http://u@h", "http://u:p@h", "http://h/?a=1", "http://h/#x", "http://h?",
                "http://h#", "http://h:", "http://[::1]:", "http://ho st:8700",
                "http://h:8700/a b", "http://h/a\\b", "http://例え.テスト:8700",
                "http://h:8700/x;token=hunter2", "http://h/\x00"):
        with pytest.raises(PasaporteError) as caught:
            client.node_url(bad)
        assert caught.value.code == "ledger_url_invalid", bad
        assert isinstance(caught.value, UsageError), bad
        assert "{" not in caught.value.message["es"] + caught.value.message["en"], bad
    assert client.public_url("https://u:pw@m.example:8443/x;token=s;v=1?k=1#f") == (
        "https://m.example:8443/x")
    assert client.public_url("ledger.example") == "ledger.example"  # nothing to hide, as typed
    for broken in ("http://admin:s3cret@h:99999/x?t=1", "http://admin:s3cret@[::1/x"):
        assert "s3cret" not in client.public_url(broken) and "admin" not in client.public_url(
            broken), broken
        with pytest.raises(PasaporteError) as caught:
            client.node_url(broken)
        assert "s3cret" not in caught.value.message["es"] + caught.value.message["en"]
    assert client.public_url("http://[::1]:8700/") == "http://[::1]:8700/"
