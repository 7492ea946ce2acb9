"""Small builders shared by the ledger tests."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.store import LedgerStore


def schema_back_to(store: LedgerStore, revision: str, *, then_up: bool = False) -> None:
    """Take ``store``'s schema back to ``revision`` (a database an earlier release made),
    and with ``then_up`` upgrade it again, as the next writer's open does."""
    from alembic import command

    from ledger.store import _alembic_config

    with store.engine.connect() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        if then_up:
            command.upgrade(cfg, "head")
        conn.commit()


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def commitment(i: int) -> dict[str, Any]:
    return {"type": "credential_issued", "commitment": b64u(hashlib.sha256(b"c%d" % i).digest())}


def valid_entries() -> list[dict[str, Any]]:
    """One valid JSON entry of every type."""
    return [
        {"type": "key_registered", "kid": "cdmx-office-1", "public_key": b64u(bytes(range(32))),
         "city": "Ciudad de México", "country": "MX", "office": "Oficina Centro",
         "valid_from": "2025-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"},
        {"type": "key_rotated", "kid": "cdmx-office-2", "replaces": "cdmx-office-1"},
        {"type": "key_compromised", "kid": "cdmx-office-1", "effective": "2025-06-01T12:00:00Z"},
        {"type": "bundle_published", "city": "Ciudad de México", "version": 3,
         "digest": b64u(hashlib.sha256(b"bundle").digest())},
        commitment(0),
        {"type": "status_changed", "list": "cdmx-2025", "index": 17, "status": "revoked",
         "reason": "data_error"},
        {"type": "witness_cosignature", "origin": "ledger.la.example/log", "size": 12,
         "root": b64u(bytes(32)), "witness": "ledger.cdmx.example/witness",
         "signature": b64u(bytes(76))},
        {"type": "notice", "text": "Ceremonia de llaves 2025 / 2025 key ceremony"},
    ]


def http_entries() -> list[dict[str, Any]]:
    """One valid JSON entry of every type an append token may write over HTTP (not the types
    only the node itself writes: ``ledger.http.LOCAL_ONLY``)."""
    return [e for e in valid_entries() if e["type"] not in ("witness_cosignature", "notice")]


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a free port of 127.0.0.1 answering with ``handler`` (a node or a
    witness that misbehaves in some way); yields its base URL, stopped at the end."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def reply(h: http.server.BaseHTTPRequestHandler, status: int, ctype: str, body: bytes) -> None:
    """Answer a request with ``body`` whole (a test node's or witness's reply)."""
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def trickle(wfile: Any, body: bytes, pause: float = 0.01) -> None:
    """Send ``body`` a byte at a time (a slow or hostile peer), until the client hangs up."""
    for byte in body:
        try:
            wfile.write(bytes([byte]))
            wfile.flush()
        except OSError:
            return
        time.sleep(pause)
