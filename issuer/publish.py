"""Publishing the office's public record to the ledger over HTTP (``POST /entries``).

Every change that the public should be able to audit — a new office key, an issuance (as a
salted commitment), a status change, a bundle — is written to the office store's *outbox* in the
same transaction as the change itself, then pushed to the city's ledger node. If the node is
unreachable nothing is lost: the entries stay queued and the next command (or
``pasaporte issuer publish``) sends them. Nothing is published twice either: a batch is recorded
as *in flight* before it is sent, a retry resends exactly that batch under the same
``Idempotency-Key``, and the ledger appends it once. Entries carry no personal data by
construction.

An address and token are tried before they are saved (``check_access``): a token the node
refuses is refused at once, rather than saved and then refused after every later change.
"""

from __future__ import annotations

import json
from typing import Any

from credential import jsontext
from credential.errors import LedgerError
from credential.keys import b64url
from ledger import client
from ledger.scopes import POSSESSION_HEADER

__all__ = ["check_access", "post_entries", "server_message"]

_REFUSED_ACCESS = (401, 403)  # the node says who may append: the token is not one of them


def post_entries(url: str, token: str, entries: list[dict[str, Any]],
                 idempotency_key: str | None = None,
                 possession: dict[int, bytes] | None = None) -> dict[str, Any]:
    """Append ``entries`` as one batch; returns the node's answer (checkpoint, start, end).
    With ``idempotency_key`` a retry of the same batch is appended once, however often sent.
    ``possession``: each key registration's proof that the office holds the key, by its place
    in the batch (a node holds a token bound to an office to that)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if possession:
        headers[POSSESSION_HEADER] = ", ".join(f"{i}={b64url(sig)}"
                                               for i, sig in sorted(possession.items()))
    try:
        status, _, body = client.post(url.rstrip("/") + "/entries",
                                      json.dumps({"entries": entries}).encode(), headers)
    except LedgerError as exc:  # the node could not be reached: the entries stay queued
        raise LedgerError("ledger_publish_unreachable", url=url,
                          reason=exc.detail.get("reason", exc.code)) from None
    except ValueError as exc:  # a URL or token urllib cannot send (saved by an older version)
        raise LedgerError("ledger_publish_unreachable", url=url, reason=str(exc)[:200]) from None
    if not 200 <= status < 300:
        if status == 422 and _code(body) == "ledger_idempotency_mismatch":
            # The node took another batch under this key: the office's store is an older copy
            # of one that published more (a folder put back from a file-level snapshot), and
            # every later batch would meet the same refusal until the node forgets the key.
            raise LedgerError("ledger_publish_store_behind", key=idempotency_key or "?")
        es, en = server_message(body)
        raise LedgerError("ledger_publish_refused", status=status, reason_es=es, reason_en=en)
    # Not a ledger's answer (nested too deep, or a list from some other JSON service the URL
    # names): the batch stays in flight, sent again under its key, never taken as appended.
    answer = _json(body)
    if not isinstance(answer, dict):
        raise LedgerError("ledger_publish_unreachable", url=url, reason="the answer is not JSON")
    return answer


def check_access(url: str, token: str, office: tuple[str, str, str] | None = None
                 ) -> LedgerError | None:
    """Ask the node at ``url`` whether ``token`` may append, changing nothing: ``POST /entries``
    with an empty batch, which a node checks the token of first (401 without a valid one) and
    then refuses as empty (400 ``ledger_bad_entry``). Raises ``ledger_token_refused`` when the
    node refuses the token; returns a warning when it cannot tell (unreachable, or an answer
    that is not a ledger's), as an office may be set up before its network is; None when the
    token is good. With ``office`` (city, country, code), a token the node says is bound to
    another office is refused too (``ledger_token_other_office``)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    try:
        status, _, body = client.post(url.rstrip("/") + "/entries", b'{"entries": []}', headers)
    except LedgerError as exc:  # its message says why, in each language
        return LedgerError("ledger_unchecked", url=url, reason_es=exc.message["es"],
                           reason_en=exc.message["en"])
    except ValueError as exc:
        return LedgerError("ledger_unchecked", url=url, reason=str(exc)[:200])
    es, en = server_message(body)
    if status == 403 and _code(body) == "ledger_is_mirror":
        # the address is wrong, not the token: "use the token that node printed" sent the
        # clerk to make new tokens, which a mirror would refuse all the same
        raise LedgerError("issuer_ledger_is_mirror", url=url, reason_es=es, reason_en=en)
    if status in _REFUSED_ACCESS:
        raise LedgerError("ledger_token_refused", url=url, status=status,
                          reason_es=es, reason_en=en)
    if 200 <= status < 300 or (status == 400 and _code(body) == "ledger_bad_entry"):
        bound = _bound(body)
        if office is not None and bound is not None and bound != office:
            # a token bound to another office: the node would refuse every entry of this one
            raise LedgerError("ledger_token_other_office", url=url, city=bound[0],
                              office_code=bound[2], own=office[2])
        return None
    return LedgerError("ledger_unchecked", url=url, reason_es=f"HTTP {status}: {es}",
                       reason_en=f"HTTP {status}: {en}")


def _json(body: bytes) -> Any:
    # a node's answer is not trusted to be JSON, nor to be shallow (jsontext bounds nesting)
    try:
        return jsontext.loads(body)
    except ValueError:
        return None


def _bound(body: bytes) -> tuple[str, str, str] | None:
    """The office (city, country, code) a node says a bound token is for, if it says."""
    doc = _json(body)
    bound = doc.get("bound") if isinstance(doc, dict) else None
    if not isinstance(bound, dict):
        return None
    found = tuple(bound.get(k) for k in ("city", "country", "code"))
    if not all(isinstance(v, str) for v in found):
        return None
    return str(found[0]), str(found[1]), str(found[2])


def _code(body: bytes) -> str | None:
    doc = _json(body)
    code = doc.get("code") if isinstance(doc, dict) else None
    return code if isinstance(code, str) else None


def server_message(body: bytes) -> tuple[str, str]:
    """What a node's refusal says, in Spanish and in English: the ``message`` of its JSON
    ``{"code", "message": {"es", "en"}}``, else the body as text (a proxy's page), each fit for
    the clerk's terminal (``ledger.client.shown``: bounded, no control characters)."""
    said = client.remote_message(body)
    if said is not None:
        return said
    doc = _json(body)
    message = doc.get("message") if isinstance(doc, dict) else None
    text = message if isinstance(message, str) else body[:4 * client.MESSAGE_MAX].decode(
        "utf-8", "replace")
    return client.shown(text), client.shown(text)
