"""Publishing the office's public record to the ledger over HTTP (``POST /entries``).

Every change that the public should be able to audit — a new office key, an issuance (as a
salted commitment), a status change, a bundle — is written to the office store's *outbox* in the
same transaction as the change itself, then pushed to the city's ledger node. If the node is
unreachable nothing is lost: the entries stay queued and the next command (or
``pasaporte issuer publish``) sends them. Nothing is published twice either: a batch is recorded
as *in flight* before it is sent, a retry resends exactly that batch under the same
``Idempotency-Key``, and the ledger appends it once. Entries carry no personal data by
construction.
"""

from __future__ import annotations

import json
from typing import Any

from credential.errors import LedgerError
from ledger import client

__all__ = ["post_entries"]


def post_entries(url: str, token: str, entries: list[dict[str, Any]],
                 idempotency_key: str | None = None) -> dict[str, Any]:
    """Append ``entries`` as one batch; returns the node's answer (checkpoint, start, end).
    With ``idempotency_key`` a retry of the same batch is appended once, however often sent."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    try:
        status, _, body = client.post(url.rstrip("/") + "/entries",
                                      json.dumps({"entries": entries}).encode(), headers)
    except LedgerError as exc:  # the node could not be reached: the entries stay queued
        raise LedgerError("ledger_publish_unreachable", url=url,
                          reason=exc.detail.get("reason", exc.code)) from None
    except ValueError as exc:  # a URL or token urllib cannot send (saved by an older version)
        raise LedgerError("ledger_publish_unreachable", url=url, reason=str(exc)[:200]) from None
    if not 200 <= status < 300:
        raise LedgerError("ledger_publish_refused", status=status,
                          detail=body[:300].decode("utf-8", "replace"))
    try:
        answer: dict[str, Any] = json.loads(body)
    except ValueError:
        raise LedgerError("ledger_publish_unreachable", url=url,
                          reason="the answer is not JSON") from None
    return answer
