"""The ledger's HTTP API (a Flask blueprint) and ``create_app``.

Read endpoints are public and cacheable; ``POST /entries`` needs a per-client bearer token
(only its SHA-256 is stored); ``POST /add-checkpoint`` is the C2SP tlog-witness call. Every
refusal is a 4xx with JSON ``{"code": …, "message": {"es": …, "en": …}}`` (but tlog-witness's
409, which is the size the witness cosigned). A query parameter given twice is refused.

    GET  /checkpoint                       signed note (text/plain) with its cosignatures
    GET  /entries?start=&end=              [{"index", "leaf": base64}], at most 1000 per page
                                           and about MAX_PAGE_BYTES of JSON (at least one);
                                           a start past the log's size: 404
    GET  /proof/inclusion?index=&size=     {"index", "size", "proof": [base64…]}
    GET  /proof/consistency?old=&new=      {"old", "new", "proof": [base64…]}
    POST /entries                          {"entries": [...]} → 201 {"checkpoint", "start", "end"}
                                           (application/json, else 415; at most MAX_REQUEST
                                           bytes, else 413; optional Idempotency-Key header:
                                           retries are safe; not the types in LOCAL_ONLY: 403)
    POST /add-checkpoint                   tlog-witness: cosignature lines, or 409 with the size
                                           cosigned (text/x.tlog.size, as the spec says)
    GET  /status?max_age=&max_behind=      the node's health (ledger.status): 200 ok or warning,
                                           503 critical; public facts only, never cached
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
from typing import IO, Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed
from werkzeug.serving import DechunkedInput

from credential import jsontext
from credential.errors import (
    LedgerError,
    MalformedInput,
    PasaporteError,
    StoreError,
    UsageError,
)
from credential.note import parse_size
from credential.text import escaped
from ledger.entries import MAX_RECORD, check_new, entry_from_json
from ledger.scopes import POSSESSION_HEADER, check_possession, parse_possession
from ledger.status import DEFAULT_MAX_AGE, DEFAULT_MAX_BEHIND
from ledger.status import status as node_status
from ledger.store import MAX_BATCH, AppendRequest, LedgerStore
from ledger.witness import MAX_BODY, add_checkpoint

__all__ = ["LOCAL_ONLY", "MAX_PAGE", "MAX_PAGE_BYTES", "bp", "create_app"]

MAX_PAGE = 1000
# A page of /entries stops once its JSON would pass this many bytes (and always holds at least
# one record): a quarter of what ledger.client reads of an answer (8 MiB), so a page of the
# largest records (1000 notices of 2000 emoji, ~10.7 MB of JSON) is still read whole by every
# mirror, while a page of ordinary records (~150 bytes each) never comes near it.
MAX_PAGE_BYTES = 2 * 1024 * 1024
# The largest record's item: base64 (4/3) plus '{"index": …, "leaf": ""}, ' — under the page
# bound, so a page always has room for one.
_MAX_ITEM = 4 * (MAX_RECORD + 2) // 3 + 64
assert _MAX_ITEM < MAX_PAGE_BYTES
# Types an append token may not write; ``ledger append --file`` (the node's operator, at the
# node) still writes every type.
# * ``witness_cosignature``: only the log writes these, when its witnesses answer; audit holds
#   every one about this log to the witness's key forever, so one forged record from a token
#   holder would make every later audit fail (the log is append-only: it cannot be removed).
# * ``notice``: governance notices are the joint committee's, appended by the operator on its
#   behalf. The tokens belong to the issuing offices, whose software never writes one
#   (issuer/store.py queues keys, credentials, statuses and bundles), and free text that both
#   cities' signatures carry forever must not be writable with one office's (perhaps leaked)
#   token.
LOCAL_ONLY = frozenset({"witness_cosignature", "notice"})
MAX_POST_ENTRIES = 1000
MAX_REQUEST = 1024 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"
_MAX_INT = (1 << 63) - 1

bp = Blueprint("ledger", __name__)


def _store() -> LedgerStore:
    store: LedgerStore = current_app.extensions["ledger"]
    return store


def _error(http_status: int, code: str, **detail: Any) -> Response:
    err = PasaporteError(code, **detail)
    resp = jsonify(err.to_dict())
    resp.status_code = http_status
    return resp


def _only(*names: str) -> None:
    """Refuse a query parameter the address does not take: read endpoints are cached (proofs
    and full pages forever), and a parameter that changes nothing would let anyone mint
    endless cache keys for one answer, and a typo (``?strat=``) pass unnoticed."""
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise MalformedInput("ledger_param_unknown", name=escaped(unknown[0][:40]),
                             path=request.path)


def _int_arg(name: str, *, required: bool = True, default: int = 0) -> int:
    given = request.args.getlist(name)
    if len(given) > 1:
        # Which one counts differs between servers, proxies and caches: a cache keyed on the
        # last could hand one client's page (cached forever) to whoever asked for another.
        raise MalformedInput("ledger_param_repeated", name=name)
    raw = given[0] if given else None
    if raw is None or raw == "":
        if required:
            raise MalformedInput("ledger_bad_param", name=name, reason="missing")
        return default
    value = parse_size(raw)  # the same reading as a checkpoint's size line
    if value is None:
        # the cause a client can act on: a number written with leading zeros is one too, but
        # not as a checkpoint's size line is written (one way, as every proof is keyed by it)
        digits = raw.isascii() and raw.isdigit()
        reason = ("written with leading zeros" if digits and raw[0] == "0" else
                  f"larger than {_MAX_INT}" if digits else "not a non-negative integer")
        raise MalformedInput("ledger_bad_param", name=name, reason=reason)
    if value > _MAX_INT:
        raise MalformedInput("ledger_bad_param", name=name,
                             reason=f"larger than {_MAX_INT}")
    return value


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(x).decode() for x in items]


# The status of each refusal that is not a plain 400; codes are unique across error classes.
_STATUS = {
    "ledger_bad_size": 404,  # a proof of a size the log does not have
    "ledger_start_past_end": 404,  # records the log does not have, likewise
    "ledger_no_checkpoint": 404,
    "ledger_idempotency_mismatch": 422,  # the key was used for another batch
    "ledger_entry_type_local_only": 403,  # well-formed, but not this client's to write
    "ledger_token_out_of_scope": 403,  # likewise: another office's
    "ledger_token_key_taken": 403,  # likewise: another city registered that kid first
    "ledger_key_unproven": 403,  # likewise: a registration without its key's proof
    "ledger_key_not_held": 403,  # likewise: a key the office does not show it holds
    "ledger_body_too_large": 413,  # as for a body over the app's own limit (werkzeug's)
    "ledger_not_json": 415,
    "ledger_no_witness_key": 503,  # the node's state, not the request
    "ledger_behind_witness": 503,  # likewise (restored from an old copy): offices keep it queued
    "ledger_node_behind_witness": 503,  # what offices are told of it
}


def _public(exc: StoreError) -> StoreError:
    """What anyone may read of a store error. One naming the database (its URL: host, port,
    role and database name; a file's path; or the server's own words, which name them too)
    says only that the node cannot use its database; the node's log gets the whole error.
    A busy store keeps its code (send it again), naming the log instead of a server's
    database (a SQLite file's base name, as before, says nothing); so does a full disk, or one
    that fails (free space; check the device), named as the log too."""
    store = _store()
    if exc.code in ("store_busy", "store_full", "store_io_error"):
        # what to do differs (send it again; free space; check the disk), and the client, an
        # office, tells its operator which: the code stays, the log named instead of the file
        if exc.code == "store_busy" and store.engine.url.get_backend_name() == "sqlite":
            return exc
        public = StoreError(exc.code, what=store.origin, **(
            {"reason": str(exc.detail["reason"])} if "reason" in exc.detail else {}))
    elif "db" in exc.detail or "what" in exc.detail:
        public = StoreError("ledger_node_database_unavailable")
    else:
        return exc
    current_app.logger.error("%s", exc.diagnostics())
    return public


@bp.errorhandler(PasaporteError)
def _pasaporte_error(exc: PasaporteError) -> Response:
    # a store error is the node's state, not the request: nothing the client can change
    status = _STATUS.get(exc.code, 503 if isinstance(exc, StoreError) else 400)
    if isinstance(exc, StoreError) and status == 503:
        exc = _public(exc)
    elif exc.code == "ledger_behind_witness":
        # the operator's long advice (restore a newer copy…) is not the office's: an office is
        # shown 200 characters of a node's words, and needs to know its entries wait
        exc = LedgerError("ledger_node_behind_witness", size=exc.detail.get("size", "?"),
                          have=exc.detail.get("have", "?"))
    resp = jsonify(exc.to_dict())
    resp.status_code = status
    return resp


@bp.get("/checkpoint")
def checkpoint() -> Response:
    _only()
    signed = _store().checkpoint()
    resp = Response(signed.note, mimetype="text/plain")
    resp.headers["Cache-Control"] = "public, max-age=5"
    return resp


@bp.get("/entries")
def entries() -> Response:
    _only("start", "end")
    start = _int_arg("start")
    end = _int_arg("end")
    if end < start:
        raise MalformedInput("ledger_bad_param", name="end", reason="end is before start")
    # no size query first: records and the head are written in one transaction, so asking
    # past the end simply returns fewer rows
    end = min(end, start + MAX_PAGE)
    rows = _store().entries(start, end) if start < end else []
    if not rows:
        # Only now the size: a start at the log's end is "nothing yet" (a poller's empty page),
        # one beyond it names records that do not exist, as a proof of a size it lacks would.
        have = _store().public_size()
        if start > have:
            raise LedgerError("ledger_start_past_end", start=start, have=have)
    items: list[dict[str, Any]] = []
    size = 0
    cut = False
    for i, leaf in rows:
        encoded = base64.b64encode(leaf).decode()
        size += len(encoded) + 64  # with '{"index": …, "leaf": ""}, '
        if items and size > MAX_PAGE_BYTES:
            cut = True  # clients ask again from where the page stops
            break
        items.append({"index": i, "leaf": encoded})
    resp = jsonify(items)
    # records never change once written, so a full page (by count or by bytes: either way
    # the records it ends before exist) is cacheable forever
    full = cut or len(items) == MAX_PAGE
    resp.headers["Cache-Control"] = IMMUTABLE if full else "public, max-age=5"
    return resp


def _proof(body: dict[str, Any], proof: list[bytes]) -> Response:
    # A proof between two sizes of an append-only log never changes: cache it forever.
    resp = jsonify({**body, "proof": _b64(proof)})
    resp.headers["Cache-Control"] = IMMUTABLE
    return resp


@bp.get("/proof/inclusion")
def proof_inclusion() -> Response:
    _only("index", "size")
    index, size = _int_arg("index"), _int_arg("size")
    return _proof({"index": index, "size": size}, _store().inclusion_proof(index, size))


@bp.get("/proof/consistency")
def proof_consistency() -> Response:
    _only("old", "new")
    old, new = _int_arg("old"), _int_arg("new")
    if old == 0:  # RFC 9162 §2.1.4: a proof is between two non-empty trees
        raise MalformedInput("ledger_bad_param", name="old", reason="must be at least 1")
    return _proof({"old": old, "new": new}, _store().consistency_proof(old, new))


@bp.post("/entries")
def post_entries() -> Response:
    _only()  # ?token=… (a careless client's) or a typo is refused, not taken in silence
    store = _store()
    if store.mirror_of is not None:
        # before the token: a mirror keeps none, and "unauthorized" would send the issuer
        # looking for a new one instead of for the log's own address
        return _error(403, "ledger_is_mirror", home=store.origin, url=store.mirror_of)
    auth = request.headers.get("Authorization", "")
    scheme, _, credentials = auth.partition(" ")
    # the scheme's name is case-insensitive (RFC 9110 §11.1): "bearer" from another library
    token = credentials.strip() if scheme.lower() == "bearer" else ""
    known = store.token_client(token) if token and len(token) <= 200 else None
    if known is None:
        return _error(401, "ledger_unauthorized")
    client, scope = known
    if request.mimetype != "application/json":
        # what the body is read as is said, not guessed (the documentation says JSON)
        raise MalformedInput("ledger_not_json")
    try:
        items = _entries_body(_body(MAX_REQUEST))
    except MalformedInput as exc:
        if scope is None or exc.code != "ledger_bad_entry":
            raise
        # An office trying its token (``issuer ledger`` sends no entries) is told whose office
        # a bound one is: another city's token would otherwise be saved, and every entry of
        # this office refused later, its queue stuck behind the first.
        resp = jsonify({**exc.to_dict(), "bound": {"city": scope.city,
                                                    "country": scope.country,
                                                    "code": scope.code}})
        resp.status_code = 400
        return resp
    if len(items) > min(MAX_POST_ENTRIES, MAX_BATCH):
        raise LedgerError("ledger_batch_too_large", size=len(items), limit=MAX_POST_ENTRIES)
    batch = [entry_from_json(item) for item in items]  # malformed is 400, whoever sends it
    for number, entry in enumerate(batch):
        if entry.TYPE in LOCAL_ONLY:
            raise LedgerError("ledger_entry_type_local_only", type=entry.TYPE, index=number)
    check_new(batch)
    if scope is not None:
        check_possession(client, scope, batch,
                         parse_possession(request.headers.get(POSSESSION_HEADER, "")))
    key = request.headers.get("Idempotency-Key")
    # A client retrying after a lost answer sends the same key (IETF httpapi Idempotency-Key)
    # and gets the first answer again rather than a second copy of its batch.
    signed = store.append(batch, request=None if key is None else AppendRequest(client, key),
                          bound=None if scope is None else (client, scope))
    resp = jsonify({"checkpoint": signed.note, "start": signed.start, "end": signed.end})
    resp.status_code = 201
    if signed.replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


def _body(limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes. A chunked body has no length to
    check beforehand: under ``ledger serve`` its framing is read here (``_dechunked``); under
    another server the stream stops at the app's limit as if the body ended there, and the
    byte after the limit is read to tell a body that long from one that is longer."""
    raw = _chunked_input()
    if raw is not None:
        return _dechunked(raw, limit)
    stream = request.stream
    parts: list[bytes] = []
    got = 0
    while got <= limit:
        part = stream.read(limit + 1 - got)  # a socket may give fewer bytes than asked for
        if not part:
            break
        parts.append(part)
        got += len(part)
    if got > limit:
        raise MalformedInput("ledger_body_too_large", limit=limit)
    return b"".join(parts)


# A chunk's size line (RFC 9112 §7.1): hexadecimal digits and nothing else of a number (no
# sign, "0x" or "_", which int(…, 16) would take), chunk extensions (read, and ignored), and
# its line break, or a bare LF (§2.2).
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")
_CRLF = (b"\r\n", b"\n")
# A size line with its extensions, or a trailer field: no client writes one this long.
_MAX_FRAMING_LINE = 4096


def _chunked_input() -> IO[bytes] | None:
    """The connection's own input under a chunked body, when werkzeug's server (``ledger
    serve``) would dechunk it, for ``_dechunked`` to read instead: werkzeug's reader turns bad
    framing into the same ``ClientDisconnected`` as a client gone quiet (its OSError), takes
    "-5" or "0x2" for sizes, refuses chunk extensions, and waits for every byte a chunk says
    is coming, even 2⁸⁰ of them. Any other server dechunks before the app: None."""
    stream = request.environ.get("wsgi.input")
    if not isinstance(stream, DechunkedInput):
        return None
    # werkzeug's name for what it wraps; were it renamed, its own reading still works
    raw: IO[bytes] | None = getattr(stream, "_rfile", None)
    return raw


def _dechunked(raw: IO[bytes], limit: int) -> bytes:
    """A chunked body read from the connection: 413 as soon as a chunk's size line takes it
    past ``limit``, before any of that chunk is waited for; ``ledger_body_chunked_invalid`` for
    framing that is not chunked encoding (the same bytes sent again fail again); the client
    stopping before the last chunk is ``ClientDisconnected`` (``ledger_body_incomplete``)."""
    parts: list[bytes] = []
    got = 0
    while True:
        size = _CHUNK_SIZE.fullmatch(_framing_line(raw))
        if size is None:
            raise MalformedInput("ledger_body_chunked_invalid")
        length = int(size[1], 16)
        if length == 0:  # the last chunk
            break
        got += length
        if got > limit:
            raise MalformedInput("ledger_body_too_large", limit=limit)
        parts.append(_exactly(raw, length))
        if _framing_line(raw) not in _CRLF:  # a chunk longer than its size line said
            raise MalformedInput("ledger_body_chunked_invalid")
    # The trailer fields, up to the empty line that ends the body: none is used, but each
    # counts towards the limit, as the body's bytes do.
    while (line := _framing_line(raw)) not in _CRLF:
        got += len(line)
        if b":" not in line:  # no "name: value"
            raise MalformedInput("ledger_body_chunked_invalid")
        if got > limit:
            raise MalformedInput("ledger_body_too_large", limit=limit)
    return b"".join(parts)


def _framing_line(raw: IO[bytes]) -> bytes:
    """One line of a chunked body's framing, with its line break; no more than
    ``_MAX_FRAMING_LINE`` bytes are waited for."""
    try:
        line = raw.readline(_MAX_FRAMING_LINE + 1)
    except (OSError, ValueError):  # the client went quiet (``serve --client-timeout``) or away
        raise ClientDisconnected() from None
    if line.endswith(b"\n"):
        return line
    if len(line) > _MAX_FRAMING_LINE:
        raise MalformedInput("ledger_body_chunked_invalid")
    raise ClientDisconnected()  # the connection ended part way through the line


def _exactly(raw: IO[bytes], length: int) -> bytes:
    """A chunk's ``length`` bytes (at most the body limit), as the socket gives them."""
    parts: list[bytes] = []
    while length:
        try:
            part = raw.read(length)
        except (OSError, ValueError):
            raise ClientDisconnected() from None
        if not part:
            raise ClientDisconnected()
        parts.append(part)
        length -= len(part)
    return b"".join(parts)


def _entries_body(data: bytes) -> list[Any]:
    """The ``entries`` of a ``POST /entries`` body: exactly ``{"entries": [ … ]}``, non-empty,
    no key twice in any object (the request says what the documentation says, and no more)."""
    try:
        # UTF-8 and nothing else (RFC 8259 §8.1): json.loads would take UTF-16 and UTF-32 bytes
        # too, a body another JSON reader (a proxy's filter, an auditor's tool) reads otherwise
        body = jsontext.loads(data.decode("utf-8"))
    except (jsontext.DuplicateKey, jsontext.NumberTooLong) as exc:
        # which of two values a parser keeps differs between parsers: the sender and the log
        # could read two different batches from the same bytes
        raise MalformedInput("ledger_bad_body", reason=str(exc)) from None
    except ValueError:  # nested too deep, not UTF-8, not JSON
        raise MalformedInput("ledger_bad_json") from None
    if not isinstance(body, dict) or "entries" not in body:
        raise MalformedInput("ledger_bad_body", reason='expected {"entries": [ … ]}')
    if set(body) != {"entries"}:
        raise MalformedInput("ledger_bad_body", reason="unknown fields: "
                             + ", ".join(sorted(set(body) - {"entries"}))[:200])
    items = body["entries"]
    if not isinstance(items, list) or not items:
        raise MalformedInput("ledger_bad_entry", reason="expected a non-empty list of entries")
    return items


@bp.post("/add-checkpoint")
def post_add_checkpoint() -> Response:
    reply = add_checkpoint(_store(), _body(MAX_BODY))
    return Response(reply.body, status=reply.status, content_type=reply.content_type)


@bp.get("/status")
def status() -> Response:
    # No authentication: the report holds only sizes, times, origins and key names. A load
    # balancer takes a node answering 503 out of service, so only a node that cannot read its
    # own log answers it (the error handler's 503). Split-view evidence is "critical" in the
    # report, but it is about another city's log: this node still serves and proves its own,
    # and its witness is what caught the fork; taking it offline would help no one.
    _only("max_age", "max_behind")
    max_age = _int_arg("max_age", required=False, default=DEFAULT_MAX_AGE)
    max_behind = _int_arg("max_behind", required=False, default=DEFAULT_MAX_BEHIND)
    report = node_status(_store(), now=int(time.time()), max_age=max_age,
                         max_behind=max_behind)
    resp = jsonify(report.to_json())
    resp.status_code = 200
    resp.headers["Cache-Control"] = "no-store"  # a probe must see now, not a cached minute ago
    return resp


def _store_from(app: Flask) -> LedgerStore:
    """The log ``create_app``'s settings name, opened (see there)."""
    for variable in ("PASAPORTE_LEDGER_PASSPHRASE", "PASAPORTE_PASSPHRASE"):
        if os.environ.get(variable) == "" and not app.config.get("PASSPHRASE"):
            # "export PASAPORTE_LEDGER_PASSPHRASE=$PASS" with PASS unset: named, rather than
            # a node that silently serves read-only and refuses every append
            raise UsageError("passphrase_env_empty", variable=variable)
    passphrase = app.config.get("PASSPHRASE") or os.environ.get("PASAPORTE_PASSPHRASE")
    return LedgerStore.open(app.config.get("HOME"), db=app.config.get("DB"),
                            passphrase=str(passphrase) if passphrase else None)


def create_app(test_config: dict[str, Any] | None = None, *, store: LedgerStore | None = None
               ) -> Flask:
    """The ledger app, for ``ledger serve`` or any WSGI server (``ledger.http:create_app()``).

    ``store`` picks the log; otherwise the settings ``HOME``, ``DB`` and ``PASSPHRASE`` do, from
    ``test_config`` or the environment: ``PASAPORTE_LEDGER_HOME`` (else ``PASAPORTE_HOME``, else
    the default home), ``PASAPORTE_LEDGER_DB`` (the same variable the CLI reads) and
    ``PASAPORTE_LEDGER_PASSPHRASE`` (else ``PASAPORTE_PASSPHRASE``; without one the node serves
    read-only and refuses appends).
    """
    app = Flask("ledger")
    app.config.from_prefixed_env("PASAPORTE_LEDGER")
    # from_prefixed_env reads each value as JSON where it parses ("1.500000" becomes 1.5,
    # "0123" fails, "true" a bool): a passphrase, a path or a URL is taken as written.
    for name in ("HOME", "DB", "PASSPHRASE"):
        raw = os.environ.get(f"PASAPORTE_LEDGER_{name}")
        if raw is not None:
            app.config[name] = raw
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST
    if test_config:
        app.config.update(test_config)
    if store is None:
        try:
            store = _store_from(app)
        except PasaporteError as exc:
            # A WSGI server shows its traceback, whose last line is English only: the operator
            # reads the refusal in both languages first, with its code (as ``serve`` says it).
            logging.getLogger("ledger.http").error("%s", exc.diagnostics())
            raise
        if store.signer is None and store.mirror_of is None:
            # said once at start, where the operator looks: otherwise only each office's
            # refused append told (a mirror serves read-only by design)
            logging.getLogger("ledger.http").warning(
                "%s", PasaporteError("ledger_serving_read_only").diagnostics())
    app.extensions["ledger"] = store
    app.register_blueprint(bp)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 400
        code = {404: "ledger_not_found", 405: "ledger_method_not_allowed",
                413: "ledger_body_too_large"}.get(status, "ledger_http_error")
        if isinstance(exc, ClientDisconnected):
            # the body stopped short of its Content-Length or its last chunk: the client went
            # quiet (``serve --client-timeout``) or hung up; "Request refused (400)" named no
            # cause (a chunked body whose framing is wrong is ``_dechunked``'s own refusal)
            code = "ledger_body_incomplete"
        resp = _error(status, code, status=status, limit=MAX_REQUEST)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            # RFC 9110 §15.5.6: a 405 MUST say which methods the resource takes
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    return app
