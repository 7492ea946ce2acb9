"""A tiny HTTP client (stdlib urllib) for talking to other ledger nodes and witnesses."""

from __future__ import annotations

import base64
import binascii
import http.client
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from credential import jsontext
from credential.errors import LedgerError, PasaporteError, UsageError
from credential.note import Checkpoint, Note, parse_checkpoint, parse_note
from credential.text import one_line

__all__ = ["MESSAGE_MAX", "all_entries", "checkpoint", "consistency_proof", "entries", "get_json",
           "get_text", "inclusion_proof", "node_url", "post", "public_url", "remote_message",
           "shown"]

TIMEOUT = 15.0
MAX_RESPONSE = 8 * 1024 * 1024  # ledger.http pages /entries well below it (MAX_PAGE_BYTES)
# The whole body of one answer, however it trickles in: the socket timeout bounds each wait
# only, and a byte every half second would keep a mirror on one page for a day. A page of
# ledger.http's (2 MiB at most) in two minutes is 17 KB/s, slower than any real link.
DEADLINE = 120.0
_CHUNK = 64 * 1024
MESSAGE_MAX = 200  # characters of another node's own words shown per language


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Reads follow a redirect to another http(s) address (a proxy moving the API); a POST never
    does. urllib would turn a redirected POST into a GET carrying the same headers: an append
    token sent to whatever host the answer names, and that host's answer to the GET taken for
    the append's (nothing appended, the batch believed published). Its 3xx is the answer."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        target = urllib.parse.urlsplit(newurl)
        # nor to an address with a user or password, which urllib takes for a host name to
        # look up (the password sent to the resolver), as ``node_url`` refuses it when typed
        if (req.get_method() != "GET" or target.scheme.lower() not in ("http", "https")
                or "@" in target.netloc):
            raise urllib.error.HTTPError(req.full_url, code, msg, headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_Redirects())
# What urllib lets through of an answer that is not HTTP at all (a status line of junk, a
# broken chunk, a thousand headers): http.client's own exceptions, not OSErrors.
_NOT_HTTP = (urllib.error.URLError, OSError, ValueError, http.client.HTTPException)


def node_url(text: str) -> str:
    """A node's base address as an operator typed it, checked before anything is asked of it,
    remembered or written: http or https, a host and a usable port, without trailing slashes.
    Refused (``ledger_url_invalid``, a usage error) with a user name or password: the ledger's
    reads are public and its appends carry a token of their own, while an address is kept in
    settings and shown in every message and status report that names the node (urllib would
    not even send them: it takes ``user:password@host`` for a host name). Refused too with a
    query or fragment, which the API's paths, appended to the address, would land inside."""
    url = text.strip()
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # "http://[::1"
        parts = None
    try:
        port_ok = parts is not None and parts.port != 0
    except ValueError:  # "host:port", "host:99999": urllib checks the port when asked for it
        port_ok = False
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        problem = "not an http:// or https:// address with a host"
    elif not url.isascii():
        problem = "it has characters outside ASCII (write a host name in its xn-- form)"
    elif any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        problem = "it has spaces, control characters or backslashes"
    elif not port_ok or parts.netloc.endswith(":"):  # "host:" has no port, and no default
        problem = "its port is not a number from 1 to 65535"
    elif parts.username is not None or parts.password is not None:
        problem = "it carries a user name or password (reads are public; appends use a token)"
    elif "?" in url or "#" in url:  # an empty one too: the API's paths would land inside it
        problem = "it carries a query or fragment (? or #)"
    elif ";" in parts.path:
        problem = "it carries path parameters (;), which may hold a secret"
    else:
        return url.rstrip("/")
    raise UsageError("ledger_url_invalid", url=shown(public_url(url)), reason=problem)


def public_url(url: str) -> str:
    """``url`` without user, password, path parameters, query or fragment, as a message or a
    public report may show it. Text that is no URL at all is shown as it is: it holds no
    address's secrets, and the operator needs to see what was typed."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or bracket: its user and password taken off as text
        return re.sub(r"(//)[^/?#]*@", r"\1", url).split("?", 1)[0].split("#", 1)[0]
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path.split(";", 1)[0]  # ";token=…" path parameters carry secrets too
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


def _unreachable(url: str, exc: Exception) -> LedgerError:
    if isinstance(exc, http.client.HTTPException):
        # its text is http.client's English, or the junk the other end sent
        said = PasaporteError("ledger_answer_not_http", detail=shown(str(exc)))
        return LedgerError("ledger_unreachable", url=url, reason=said.message["en"],
                           reason_es=said.message["es"])
    return LedgerError("ledger_unreachable", url=url, reason=shown(str(exc)))


def shown(text: str) -> str:
    """Another node's words, fit for a terminal and a log line (an escape sequence would act
    on the operator's terminal): ``credential.text.one_line`` at MESSAGE_MAX."""
    return one_line(text, MESSAGE_MAX)


def remote_message(body: bytes) -> tuple[str, str] | None:
    """The Spanish and English of a refusal in the ledger's own JSON form
    (``{"code", "message": {"es", "en"}}``), made fit to show; ``None`` for any other body,
    whose language nobody knows."""
    try:
        doc = jsontext.loads(body[:64 * 1024])
    except ValueError:
        return None
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, dict):
        return None
    es, en = message.get("es"), message.get("en")
    if not isinstance(es, str) or not isinstance(en, str):
        return None
    return shown(es), shown(en)


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
    """POST and return ``(status, content type, body)`` whatever the status (a redirect is
    not followed: its 3xx is the status). ``timeout`` bounds each wait on the socket
    (connecting, each read), the whole answer is read within ``DEADLINE``."""
    try:
        req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
        try:
            resp = _OPENER.open(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            # A refusal's body trickles in as slowly as an answer's can: read under the same
            # bounds, or one witness sending a 409 byte by byte is waited on for ever.
            resp = exc
        with resp:
            return (resp.status or 0, resp.headers.get("Content-Type", ""),
                    _read(resp, url, refuse=False))
    except _NOT_HTTP as exc:  # ValueError: not a URL
        raise _unreachable(url, exc) from None


def _get(url: str) -> bytes:
    try:
        with _OPENER.open(url, timeout=TIMEOUT) as resp:
            return _read(resp, url)
    except urllib.error.HTTPError as exc:
        with exc:
            raise LedgerError("ledger_remote_error", url=url, status=exc.code) from None
    except _NOT_HTTP as exc:  # ValueError: not a URL
        raise _unreachable(url, exc) from None


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
