"""The ledger's HTTP client against a real (if odd) server: what it says when a node answers
with something that is not what it asked for."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from credential.errors import LedgerError, PasaporteError
from credential.note import parse_note
from ledger import client


class _NotANote(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server calls it by this name
        body = b"hola\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def odd_node() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotANote)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


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
        for byte in body:
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.01)

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_that_trickles_in_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wait on the socket is short, so only a deadline on the whole answer ends a node
    that sends a byte now and then (a mirror would sit on one page for a day)."""
    monkeypatch.setattr(client, "DEADLINE", 1.0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(LedgerError) as caught:
            client.get_text(f"http://127.0.0.1:{server.server_port}/checkpoint")
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.code == "ledger_unreachable" and "1 s" in caught.value.message["en"]
    assert time.monotonic() - started < 3.5
