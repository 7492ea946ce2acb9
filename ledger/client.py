"""A tiny HTTP client (stdlib urllib) for talking to other ledger nodes and witnesses."""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from typing import Any

from credential import jsontext
from credential.errors import LedgerError

__all__ = ["consistency_proof", "get_json", "get_text", "post"]

TIMEOUT = 15.0
MAX_RESPONSE = 8 * 1024 * 1024


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """POST and return ``(status, content type, body)`` whatever the status."""
    try:
        req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read(MAX_RESPONSE)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read(MAX_RESPONSE)
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: not a URL
        raise LedgerError("ledger_unreachable", url=url, reason=str(exc)[:200]) from None


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            data: bytes = resp.read(MAX_RESPONSE)
            return data
    except urllib.error.HTTPError as exc:
        with exc:
            raise LedgerError("ledger_remote_error", url=url, status=exc.code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: not a URL
        raise LedgerError("ledger_unreachable", url=url, reason=str(exc)[:200]) from None


def get_text(url: str) -> str:
    return _get(url).decode("utf-8", errors="strict")


def get_json(url: str) -> Any:
    try:
        return jsontext.loads(_get(url))
    except ValueError:
        raise LedgerError("ledger_remote_error", url=url, status="bad JSON") from None


def consistency_proof(url: str, old: int, new: int) -> list[bytes]:
    """``GET /proof/consistency`` of the node at ``url``, decoded (checked by the caller)."""
    got = get_json(f"{url}/proof/consistency?old={old}&new={new}")
    try:
        return [base64.b64decode(p, validate=True) for p in got["proof"]]
    except (KeyError, TypeError, binascii.Error):
        raise LedgerError("ledger_remote_error", url=url, status="bad proof") from None
