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
import urllib.error
import urllib.request
from typing import Any

from credential.errors import LedgerError

__all__ = ["post_entries"]

TIMEOUT = 10.0


def post_entries(url: str, token: str, entries: list[dict[str, Any]],
                 idempotency_key: str | None = None) -> dict[str, Any]:
    """Append ``entries`` as one batch; returns the node's answer (checkpoint, start, end).
    With ``idempotency_key`` a retry of the same batch is appended once, however often sent."""
    body = json.dumps({"entries": entries}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    req = urllib.request.Request(url.rstrip("/") + "/entries", data=body, method="POST",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            answer: dict[str, Any] = json.loads(resp.read(1 << 20))
            return answer
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(4096).decode("utf-8", "replace")
        raise LedgerError("ledger_publish_refused", status=exc.code, detail=detail[:300]) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LedgerError("ledger_publish_unreachable", url=url, reason=str(exc)[:200]) from None
