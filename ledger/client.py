"""A tiny HTTP client (stdlib urllib) for talking to other ledger nodes and witnesses."""

from __future__ import annotations

import base64
import binascii
import time
import urllib.error
import urllib.request
from typing import Any

from credential import jsontext
from credential.errors import LedgerError, PasaporteError
from credential.note import Checkpoint, Note, parse_checkpoint, parse_note

__all__ = ["all_entries", "checkpoint", "consistency_proof", "entries", "get_json", "get_text",
           "inclusion_proof", "post"]

TIMEOUT = 15.0
MAX_RESPONSE = 8 * 1024 * 1024  # ledger.http pages /entries well below it (MAX_PAGE_BYTES)
# The whole body of one answer, however it trickles in: the socket timeout bounds each wait
# only, and a byte every half second would keep a mirror on one page for a day. A page of
# ledger.http's (2 MiB at most) in two minutes is 17 KB/s, slower than any real link.
DEADLINE = 120.0
_CHUNK = 64 * 1024


def _read(resp: Any, url: str, limit: int = MAX_RESPONSE, *, refuse: bool = True) -> bytes:
    """At most ``limit`` bytes of an answer, all within ``DEADLINE`` seconds. A longer one is
    refused as such (``refuse``), not cut short into "bad JSON"; a slower one is refused as
    unreachable, its remainder never waited for."""
    end = time.monotonic() + DEADLINE
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > end:
            raise LedgerError("ledger_unreachable", url=url,
                              reason=f"no whole answer within {DEADLINE:.0f} s")
        chunk: bytes = resp.read1(min(_CHUNK, limit + 1 - size))  # what has come, one wait
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    data = b"".join(parts)
    if len(data) > limit:
        if refuse:
            raise LedgerError("ledger_remote_error", url=url,
                              status=f"answer larger than {limit} bytes")
        data = data[:limit]
    return data


def post(url: str, body: bytes, headers: dict[str, str] | None = None, *,
         timeout: float = TIMEOUT) -> tuple[int, str, bytes]:
    """POST and return ``(status, content type, body)`` whatever the status. ``timeout``
    bounds each wait on the socket (connecting, each read), not the whole exchange."""
    try:
        req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return (resp.status, resp.headers.get("Content-Type", ""),
                    _read(resp, url, refuse=False))
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read(MAX_RESPONSE)
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: not a URL
        raise LedgerError("ledger_unreachable", url=url, reason=str(exc)[:200]) from None


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return _read(resp, url)
    except urllib.error.HTTPError as exc:
        with exc:
            raise LedgerError("ledger_remote_error", url=url, status=exc.code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: not a URL
        raise LedgerError("ledger_unreachable", url=url, reason=str(exc)[:200]) from None


def get_text(url: str) -> str:
    try:
        return _get(url).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise LedgerError("ledger_remote_error", url=url, status="not UTF-8") from None


def get_json(url: str) -> Any:
    try:
        return jsontext.loads(_get(url))
    except ValueError:
        raise LedgerError("ledger_remote_error", url=url, status="bad JSON") from None


def consistency_proof(url: str, old: int, new: int) -> list[bytes]:
    """``GET /proof/consistency`` of the node at ``url``, decoded (checked by the caller)."""
    return _proof(url, f"{url}/proof/consistency?old={old}&new={new}")


def inclusion_proof(url: str, index: int, size: int) -> list[bytes]:
    """``GET /proof/inclusion`` of the node at ``url``, decoded (checked by the caller)."""
    return _proof(url, f"{url}/proof/inclusion?index={index}&size={size}")


def _proof(url: str, query: str) -> list[bytes]:
    got = get_json(query)
    try:
        return [base64.b64decode(p, validate=True) for p in got["proof"]]
    except (KeyError, TypeError, binascii.Error):
        raise LedgerError("ledger_remote_error", url=url, status="bad proof") from None


def entries(url: str, start: int, end: int) -> list[bytes]:
    """``GET /entries`` of the node at ``url``: the leaves of records ``start``, ``start + 1``,
    … (a page may stop short of ``end``, and is empty past the log's end). Every item must name
    its index in sequence and carry a base64 leaf; anything else is the node's error."""
    items = get_json(f"{url}/entries?start={start}&end={end}")
    if not isinstance(items, list) or len(items) > max(end - start, 0):
        raise LedgerError("ledger_remote_error", url=url, status="not a list of entries")
    leaves = []
    for index, item in enumerate(items, start=start):
        leaf = item.get("leaf") if isinstance(item, dict) else None
        if not isinstance(item, dict) or item.get("index") != index or not isinstance(leaf, str):
            raise LedgerError("ledger_remote_error", url=url, status=f"record {index} missing")
        try:
            leaves.append(base64.b64decode(leaf, validate=True))
        except binascii.Error:
            raise LedgerError("ledger_remote_error", url=url,
                              status=f"record {index} is not base64") from None
    return leaves


def all_entries(url: str, start: int, end: int) -> list[bytes]:
    """Every leaf of records ``[start, end)``, over as many pages as the node takes (another
    node, or another version of this one, may page by fewer than asked for)."""
    leaves: list[bytes] = []
    while start + len(leaves) < end:
        page = entries(url, start + len(leaves), end)
        if not page:
            raise LedgerError("ledger_remote_error", url=url, status="empty page")
        leaves += page
    return leaves


def checkpoint(url: str) -> tuple[str, Note, Checkpoint]:
    """``GET /checkpoint`` of the node at ``url``: its text, parsed but not verified (whoever
    relies on it verifies the signatures against keys it holds)."""
    text = get_text(f"{url}/checkpoint")
    try:
        note = parse_note(text)
        return text, note, parse_checkpoint(note.text)
    except PasaporteError as exc:
        raise LedgerError("ledger_remote_error", url=url, status=exc.message["en"],
                          status_es=exc.message["es"]) from None
