"""The ``pasaporte ledger`` command group (mounted by ``pasaporte.cli``; ``python -m ledger`` too).

    init --origin ORIGIN      create the log and witness keys, print the log's verifier key
    key [--witness]           print the log's (or the witness's) verifier key again
    passphrase                change the passphrase that seals the node's keys
    serve [--host] [--port]   run the HTTP API (and the witness endpoint)
    append --file F.jsonl     append one batch, print the new checkpoint
    audit [--deep]            recompute everything; exit 1 naming the first bad record
    check-bundle --bundle F --trust-root R   a trust bundle against the public record
    prove-bundle --bundle F --out P   the bundle's proof of publication, for counters
    entries [--start] [--end] [--type]   the public record, decoded, one JSON line per record
    mirror --from URL         copy and check another node's log (resumes)
    witness --log URL --log-key VKEY   witness another city's log (and cosign it now)
    token add|revoke NAME     per-client append tokens for POST /entries
    witnesses add|remove|list the witnesses this log asks for cosignatures
    checkpoint                print the newest checkpoint with its cosignatures
    status [--json] [--max-age S]   health for a monitor: exit 0 ok, 1 warning, 2 critical,
                              3 unknown (usage error)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
import re
import signal
import socket
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar, cast

import click

from credential import jsontext
from credential.bundle import MAX_BUNDLE
from credential.errors import (
    LedgerError,
    MalformedInput,
    PasaporteError,
    StoreError,
    UsageError,
    as_usage,
)
from credential.home import (
    held_lock,
    make_folders,
    read_bounded,
    read_new_passphrase,
    read_passphrase,
    resolve_home,
)
from credential.logproof import name_host
from credential.note import (
    COSIGNATURE_V1,
    MAX_KEY_NAME,
    check_own_name,
    is_key_name,
    parse_verifier_key,
)
from credential.text import NOT_TEXT, WIDE_BOMS, decode_file, escaped
from credential.times import rfc3339
from ledger.client import node_url
from ledger.entries import ENTRY_TYPES, decode_record, entry_to_json
from ledger.keys import LedgerConfig, load_config, open_keys, reseal_keys, save_config
from ledger.status import CRITICAL, DEFAULT_MAX_AGE, DEFAULT_MAX_BEHIND, EXIT, UNKNOWN_EXIT
from ledger.status import status as node_status
from ledger.store import (
    MAX_BATCH,
    LedgerStore,
    check_token_name,
    create_home,
    default_witness_name,
)
from pasaporte.cli import BilingualCommand, BilingualGroup, json_text

__all__ = ["group"]

ENTRIES_PAGE = 1000  # records read per query: a million-record log streams in bounded memory
# ``append --file`` bounds. The longest valid entry (a 2000-character notice, every character
# written as a JSON surrogate-pair escape) is under 25 KB, so a longer line is not an entry.
# The file may hold MAX_BATCH entries, 10 times POST /entries' 1000, so it gets 10 times the
# HTTP body limit (ledger.http.MAX_REQUEST, 1 MiB): the same bytes per entry as over HTTP.
MAX_LINE = 64 * 1024
MAX_FILE = 10 * 1024 * 1024
# ``serve``: seconds a client may keep the node waiting on its socket (default of
# --client-timeout). An issuer's append, its body included, arrives in a moment; a client
# silent for this long is gone or hostile.
CLIENT_TIMEOUT = 30

home_option = click.option("--home", type=click.Path(file_okay=False), default=None,
                           help="Carpeta de datos del nodo (por omisión: PASAPORTE_HOME o XDG) "
                                "/ Data directory (default: PASAPORTE_HOME or XDG).")
db_option = click.option("--db", default=None, metavar="URL",
                         help="Dirección de la base de datos (por omisión: PASAPORTE_LEDGER_DB o "
                              "SQLite en --home) / Database URL (default: PASAPORTE_LEDGER_DB or "
                              "SQLite in --home).")


def _node_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An option naming another node: checked as the command is read (``node_url``), so a
    mistyped address is a usage error before any passphrase is asked or anything written."""
    return None if value is None else node_url(value)


def _open(home: str | None, db: str | None, write: bool = False,
          log_only: bool = False) -> LedgerStore:
    """The node at ``home``; ``write`` opens its keys (asking for the passphrase), and
    ``log_only`` is for what only a log does (tokens, witnesses). Either on a mirror, which has
    no keys and appends nothing, says so before asking for anything."""
    if write or log_only:
        mirror_of = _mirror_of(home)
        if mirror_of is not None:
            raise StoreError("ledger_is_mirror", home=str(resolve_home("ledger", home)),
                             url=mirror_of)
    return LedgerStore.open(home, db=db, passphrase=read_passphrase() if write else None)


def _mirror_of(home: str | None) -> str | None:
    return load_config(resolve_home("ledger", home)).mirror_of


def _interactive() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a bar on stderr, opened at the first call
    (the total is often known only once work has started). Only for a person at a terminal:
    in a cron job's log a bar is noise."""
    with contextlib.ExitStack() as bars:
        bar: Any = None
        shown = 0

        def progress(done: int, total: int) -> None:
            nonlocal bar, shown
            if not _interactive():
                return
            if bar is None:
                bar = bars.enter_context(click.progressbar(length=total, label=label,
                                                           file=sys.stderr))
            bar.update(done - shown)
            shown = done

        yield progress


@click.group(cls=BilingualGroup, context_settings={"help_option_names": ["-h", "--help"]})
def group() -> None:
    """Registro público de transparencia / Public transparency ledger."""


@group.command()
@click.option("--origin", required=True,
              help="Nombre del registro, p. ej. ledger.cdmx.example/v1 / The log's name, e.g. "
                   "ledger.cdmx.example/v1.")
@click.option("--witness-name", default=None,
              help="Nombre de testigo de este nodo (ORIGIN/witness) / This node's witness name "
                   "(ORIGIN/witness).")
@home_option
@db_option
def init(origin: str, witness_name: str | None, home: str | None, db: str | None) -> None:
    """Crea el registro / Create the log.

    Sus llaves (cifradas en disco) y su base de datos; muestra la llave verificadora / Its keys
    (encrypted at rest) and database; prints the verifier key."""
    from credential.home import refuse_other_role, resolve_home

    root = resolve_home("ledger", home)
    if (root / "ledger.json").exists():
        raise StoreError("ledger_already_initialised", home=str(root))
    # before the passphrase is typed twice and the database made (a blank pasted at its end)
    refuse_other_role(root, "ledger")
    for option, name in (("--origin", origin), ("--witness-name", witness_name)):
        if name is not None and not is_key_name(name):
            raise UsageError("ledger_bad_name", option=option, name=escaped(name[:80]))
    for option, name in (("--origin", origin),
                         ("--witness-name", witness_name or default_witness_name(origin))):
        if len(name) > MAX_KEY_NAME:
            raise UsageError("ledger_name_too_long", option=option, name=escaped(name[:80]),
                             max=MAX_KEY_NAME)
    passphrase = read_passphrase(confirm=True)
    with LedgerStore.init(root, origin, passphrase, db=db, witness_name=witness_name) as store:
        click.echo(store.verifier.vkey)


@group.command()
@click.option("--witness", is_flag=True,
              help="Muestra en su lugar la llave de testigo / Print the witness key instead.")
@home_option
def key(witness: bool, home: str | None) -> None:
    """Llave verificadora / Verifier key.

    Muestra la llave verificadora C2SP del registro (nombre+keyid+base64) / Print the log's
    C2SP verifier key (name+keyid+base64)."""
    from credential.home import resolve_home

    config = load_config(resolve_home("ledger", home))
    vkey = config.witness_vkey if witness else config.log_vkey
    if not vkey:
        raise StoreError("ledger_no_witness_key")
    click.echo(vkey)


@group.command("passphrase")
@home_option
def change_passphrase(home: str | None) -> None:
    """Cambia la frase de acceso / Change the node's passphrase.

    Las llaves del registro y del testigo se sellan de nuevo con ella (pide la actual y luego
    la nueva dos veces) / The log's and the witness's keys are sealed anew under it (asks for
    the current one, then the new one twice)."""
    root = resolve_home("ledger", home)
    mirror_of = _mirror_of(home)
    if mirror_of is not None:  # it has no keys: said before any passphrase is asked for
        raise StoreError("ledger_is_mirror", home=str(root), url=mirror_of)
    if not os.access(root, os.W_OK):  # the keys are replaced in this folder: said before
        # both passphrases are typed in vain
        raise StoreError("file_error", path=str(root), reason="Permission denied")
    current = read_passphrase()
    # Every key is opened before the new passphrase is even asked for: a wrong current one is
    # refused here (passphrase_wrong), with nothing asked in vain and nothing changed.
    click.echo("Comprobando la frase actual… / Checking the current passphrase…", err=True)
    opened = open_keys(root, current)
    new = read_new_passphrase(current)
    names = ", ".join(opened.secrets)
    click.echo(f"Sellando de nuevo {names} (Argon2id)… / Sealing {names} anew (Argon2id)…",
               err=True)
    reseal_keys(root, opened, current, new)
    click.echo("ok: frase de acceso cambiada / passphrase changed")
    # A running `serve` keeps the keys it opened and goes on signing; its next start needs the
    # new passphrase, and a service's environment is where the old one is most often left.
    # And the change is usually made to shut someone out, whom an old backup would let back in.
    for notice in ("ledger_passphrase_restart", "ledger_passphrase_backups"):
        click.echo(PasaporteError(notice).diagnostics(), err=True)


@group.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Dirección en la que escuchar / Address to listen on.")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535),
              help="Puerto; 0 elige uno libre (se muestra) / Port; 0 picks a free one (printed).")
@click.option("--client-timeout", default=CLIENT_TIMEOUT, show_default=True,
              type=click.IntRange(1, 3600),
              help="Segundos que se espera a un cliente callado antes de cerrar su conexión / "
                   "Seconds a silent client is waited for before its connection is closed.")
@home_option
@db_option
def serve(host: str, port: int, client_timeout: int, home: str | None, db: str | None) -> None:
    """Sirve la API HTTP / Serve the HTTP API.

    Hasta que se le interrumpa / Until interrupted."""
    from werkzeug.serving import make_server

    from ledger.http import create_app

    # A mirror has no keys: it serves its copy read-only (appends refused), as anyone may.
    store = _open(home, db, write=_mirror_of(home) is None)
    app = create_app(store=store)
    try:
        listening = _listen(host, port)
    except BaseException:
        store.close()
        raise
    with listening:  # werkzeug serves on a copy of it (socket.fromfd)
        server = make_server(host, port, app, threaded=True, fd=listening.fileno(),
                             request_handler=_request_handler(client_timeout))
    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"escuchando en / listening on http://{host}:{server.port}", nl=True)
    sys.stdout.flush()
    if store.signer is not None:
        # Its newest checkpoint shown to the witnesses again: a database restored from an old
        # copy is told by a witness that cosigned more of it, before the first append would
        # sign a second history of those sizes (it then appends nothing).
        from ledger.witness import WITNESS_TIMEOUT, request_cosignatures

        # Waited for (a few seconds at most) before the first request is served: answered
        # later, an office's append could come first and sign that second history.
        with contextlib.suppress(PasaporteError):
            request_cosignatures(store, wait=WITNESS_TIMEOUT)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()


def _request_handler(client_timeout: int) -> type[Any]:
    """``serve``'s handling of a connection, before the API sees a request."""
    import http.server

    from werkzeug.serving import WSGIRequestHandler

    from ledger.client import shown

    class Handler(WSGIRequestHandler):
        # Each wait on a client's socket, for its request line, headers, body or the next
        # request: a connection that sends half a request and stops would otherwise hold a
        # thread and a file descriptor for ever, and a few hundred of them stop the node.
        timeout = client_timeout

        def setup(self) -> None:
            super().setup()
            self.rfile = cast(io.BufferedIOBase, _QuietAfterTimeout(self.rfile))

        def parse_request(self) -> bool:
            """Refuse a body whose length the headers do not say once (RFC 9112 §6.3): two
            Content-Length values that differ (werkzeug kept the last, and a proxy in front
            that reads the first would see another batch in the same bytes: request
            smuggling), one that is no number (read as no body at all, then "not JSON"), or
            one beside chunked framing. The connection is closed after the answer."""
            if not super().parse_request():
                return False
            lengths = [value.strip() for value in self.headers.get_all("Content-Length") or []]
            if lengths and (len(set(lengths)) > 1 or not all(map(_DIGITS.fullmatch, lengths))
                            or "Transfer-Encoding" in self.headers):
                self.close_connection = True
                self.send_error(400, "Content-Length conflicting or invalid")
                return False
            # Likewise a transfer coding other than chunked alone (RFC 9112 §6.3, §6.1):
            # werkzeug dechunked "chunked, gzip" and ignored the rest, a body a proxy in front
            # that follows the RFC reads otherwise.
            codings = [c.strip().lower() for value in self.headers.get_all("Transfer-Encoding")
                       or [] for c in value.split(",") if c.strip()]
            if codings and codings != ["chunked"]:
                self.close_connection = True
                if codings[-1] != "chunked":
                    self.send_error(400, "Transfer-Encoding does not end with chunked")
                else:
                    self.send_error(501, "Transfer-Encoding other than chunked")
                return False
            return True

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # werkzeug colours the line with terminal escapes even into a file or a journal;
            # the request line as the client sent it, made inert and bounded (``shown``), and
            # without a token a careless client put in its query (logs go to journald and log
            # shippers, which a token must never reach)
            self.log("info", '"%s" %s %s', shown(_redacted(self.requestline)), code, size)

        def send_error(self, code: int, message: str | None = None,
                       explain: str | None = None) -> None:
            """What the HTTP layer refuses before the API sees it (a request line or headers
            too long, a bad request line, a silent client): the API's JSON error, in both
            languages, not http.server's English HTML page."""
            reason = message or http.server.BaseHTTPRequestHandler.responses.get(
                code, ("", ""))[0]
            error = PasaporteError("ledger_http_unreadable", status=int(code),
                                   reason=shown(reason))
            body = json.dumps(error.to_dict(), ensure_ascii=False).encode()
            self.log_error("code %d, message %s", code, shown(reason))
            if self.request_version == "HTTP/0.9":
                # a request line refused before its version was read: left at http.server's
                # default, the answer went out without a status line or headers (HTTP/0.9),
                # and clients never saw the status or the message
                self.request_version = "HTTP/1.1"
            self.send_response(code)
            self.send_header("Connection", "close")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


_T = TypeVar("_T")
_DIGITS = re.compile(r"[0-9]{1,18}")


class _QuietAfterTimeout:
    """A connection's input that, once a read has timed out, reads as ended. After the API
    answers a body cut short by the client's silence, werkzeug drains what is left to read;
    the socket file refuses every read after a timeout ("cannot read from timed out object"),
    and each such client wrote a traceback into the node's log."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw = raw
        self._timed_out = False

    def _guarded(self, read: Callable[[], _T], ended: _T) -> _T:
        if self._timed_out:
            return ended
        try:
            return read()
        except TimeoutError:
            self._timed_out = True
            raise

    def read(self, size: int = -1) -> bytes:
        return self._guarded(lambda: self._raw.read(size), b"")

    def readline(self, size: int = -1) -> bytes:
        return self._guarded(lambda: self._raw.readline(size), b"")

    def readinto(self, buffer: bytearray) -> int:  # werkzeug reads a body this way
        return self._guarded(lambda: self._raw.readinto(buffer), 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here rather than by werkzeug, which on failure prints the
    OS's English text and exits: a port in use, a host name that does not resolve or an
    address this machine does not have is one bilingual error (``ledger_serve_failed``)."""
    from werkzeug.serving import get_sockaddr, select_address_family

    try:
        family = select_address_family(host, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(get_sockaddr(host, port, family))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise StoreError("ledger_serve_failed", host=host, port=port,
                         reason=exc.strerror or str(exc)) from None
    return sock


def _stop(_signum: int, _frame: object) -> None:
    # SIGTERM ends `serve` like Ctrl-C does: finish the response, close the database
    raise KeyboardInterrupt


def _utf8_lines(stream: BinaryIO) -> BinaryIO:
    """``stream``, or, for a file that opens with a UTF-16 or UTF-32 byte order mark (what
    PowerShell 5's ``>`` writes, as claims and batch files may be), its text as UTF-8 lines,
    read within the same bound: it was refused as "line 1 is not UTF-8"."""
    peek = getattr(stream, "peek", None)
    head = peek(4)[:4] if peek is not None else b""
    if not any(head.startswith(bom) for bom, _ in WIDE_BOMS):
        return stream
    raw = stream.read(4 * MAX_FILE + 1)  # at most four bytes a character
    if len(raw) > 4 * MAX_FILE:
        raise MalformedInput("ledger_jsonl_too_large", line=1, limit=MAX_FILE)
    try:
        return io.BytesIO(decode_file(raw).encode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedInput("ledger_jsonl_not_utf8", line=1) from None


def _read_jsonl(path: str) -> list[tuple[int, dict[str, Any]]]:
    """The entries of a JSON Lines file, each with its line number (blank lines are skipped,
    and an error names the line an editor shows), read in bounded binary lines: an endless line
    (``/dev/zero``), a huge file or bytes that are not UTF-8 are one typed error naming the
    line, never an unbounded read or a decoding traceback."""
    items: list[tuple[int, dict[str, Any]]] = []
    total = 0
    with contextlib.ExitStack() as files:
        stream: BinaryIO = sys.stdin.buffer
        if path != "-":
            stream = files.enter_context(Path(path).open("rb"))
        stream = _utf8_lines(stream)
        for number in itertools.count(1):
            raw = stream.readline(MAX_LINE + 1)
            if not raw:
                break
            total += len(raw)
            if len(raw) - raw.endswith(b"\n") > MAX_LINE:
                raise MalformedInput("ledger_jsonl_line_too_long", line=number, limit=MAX_LINE)
            if total > MAX_FILE:
                raise MalformedInput("ledger_jsonl_too_large", line=number, limit=MAX_FILE)
            try:
                # "-sig" on the first line: an editor on Windows starts the file with a BOM
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise MalformedInput("ledger_jsonl_not_utf8", line=number) from None
            if not line.strip():
                continue
            try:
                item = jsontext.loads(line)
            except json.JSONDecodeError:
                raise MalformedInput("ledger_jsonl_line_invalid", line=number,
                                     reason="not valid JSON") from None
            except ValueError as exc:
                # a duplicate key, a number past any field, nesting too deep: an object, maybe,
                # but say what, as POST /entries does (not "not a JSON object")
                raise MalformedInput("ledger_jsonl_line_invalid", line=number,
                                     reason=str(exc)) from None
            if not isinstance(item, dict):
                raise MalformedInput("ledger_bad_jsonl", line=number)
            items.append((number, item))
            if len(items) > MAX_BATCH:
                # read no further (memory stays bounded): the count is "more than", not a size
                raise LedgerError("ledger_jsonl_too_many", line=number, limit=MAX_BATCH)
    return items


@group.command()
@click.option("--file", "path", required=True,
              help="Archivo JSON Lines de entradas ('-': entrada estándar) / JSON Lines file of "
                   "entries ('-': stdin).",
              type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@home_option
@db_option
def append(path: str, home: str | None, db: str | None) -> None:
    """Agrega entradas / Append entries.

    Agrega las entradas del archivo en un solo lote y muestra el checkpoint nuevo / Append the
    file's entries as one batch and print the new checkpoint."""
    from ledger.entries import WitnessCosignature, check_new, entry_from_json

    items = _read_jsonl(path)
    batch = []
    for number, item in items:
        try:
            batch.append(entry_from_json(item))
        except MalformedInput as exc:
            # the entry's own message, in each half in its language
            raise MalformedInput("ledger_bad_line", line=number, reason_es=exc.message["es"],
                                 reason_en=exc.message["en"]) from None
    lines = [number for number, _ in items]
    for number, entry in zip(lines, batch, strict=True):
        if isinstance(entry, WitnessCosignature):
            # the node logs the cosignatures it keeps; one pasted back from "ledger entries"
            # (or typed) has no kept row beside it, and every audit after fails for good
            raise UsageError("ledger_entry_type_node_only", line=number, type=entry.TYPE)
    check_new(batch, lines)
    with _open(home, db, write=True) as store:
        if store.witnesses():
            # Its newest checkpoint shown to the witnesses first, as ``serve`` does on start:
            # a database restored from an old copy hears from one that cosigned more of it,
            # and appends nothing, before this batch would sign a second history of those
            # sizes (waited for: an administrator's command, not an office's request).
            from ledger.witness import WITNESS_TIMEOUT, request_cosignatures

            request_cosignatures(store, wait=2 * WITNESS_TIMEOUT)
        signed = store.append(batch)
    click.echo(signed.note, nl=False)


_SECRET_PARAM = re.compile(r"(?i)([?&](?:token|access_token|auth|authorization|key|password|"
                           r"secret)=)[^&\s]*")
_TOKEN_LIKE = re.compile(r"lt_[A-Za-z0-9_-]{8,}")


def _redacted(line: str) -> str:
    """A request line without the secrets a query may carry (an append token, ``lt_…``)."""
    return _TOKEN_LIKE.sub("lt_[…]", _SECRET_PARAM.sub(r"\1[…]", line))


def _inert_line(line: str) -> str:
    """A JSON line with what ``credential.text`` keeps out of shown text (C1's CSI, a bidi
    override, U+2028 where JSON Lines readers split) written as JSON escapes, beyond the ASCII
    controls JSON escapes itself."""
    if line.isprintable():  # the common case, and a quick one
        return line
    return "".join(json.dumps(c)[1:-1] if unicodedata.category(c) in NOT_TEXT else c
                   for c in line)


@group.command()
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="Primer registro (incluido) / First record (inclusive).")
@click.option("--end", type=click.IntRange(min=0), default=None,
              help="Se detiene antes de este registro (por omisión: hasta el final) / Stop "
                   "before this record (default: the whole log).")
@click.option("--type", "types", multiple=True, type=click.Choice(sorted(ENTRY_TYPES)),
              metavar="TYPE",
              help="Solo registros de este tipo (repetible): " + ", ".join(sorted(ENTRY_TYPES))
                   + " / Only records of this type (repeatable).")
@home_option
@db_option
def entries(start: int, end: int | None, types: tuple[str, ...], home: str | None,
            db: str | None) -> None:
    """Muestra el registro / Print the public record.

    Decodificado: un objeto JSON por línea (index, time, entry) / Decoded: one JSON object per
    line (index, time, entry).

    Lo que un residente o un periodista lee después de «mirror»: por ejemplo, cada llave de
    oficina emisora registrada alguna vez («--type key_registered»), o cada cambio de estado
    / What a resident or a journalist reads after `mirror`: e.g. every issuing-office key
    ever registered (`--type key_registered`), or every status change."""
    if end is not None and start > end:  # as GET /entries answers 400
        raise UsageError("usage_error", reason_es="--start va después de --end",
                         reason_en="--start is after --end")
    with _open(home, db) as store:
        size = store.public_size()
        stop = size if end is None else min(end, size)
        if start > size:
            # nothing to print, and not because nothing is new (start == size, which a script
            # reading what came since its last run meets every time): a log shorter than a
            # script saw it, or a wrong number; refused as the HTTP API refuses it (404)
            raise LedgerError("ledger_start_past_end", start=start, have=size)
        for page in range(start, stop, ENTRIES_PAGE):
            for index, leaf in store.entries(page, min(page + ENTRIES_PAGE, stop)):
                try:
                    record = decode_record(leaf)
                except MalformedInput as exc:
                    # which record: a mirror's copy of a log that wrote it under older rules
                    raise MalformedInput("ledger_record_unreadable", index=index,
                                         reason_es=exc.message["es"],
                                         reason_en=exc.message["en"]) from None
                if types and record.entry.TYPE not in types:
                    continue
                # ``entry`` is the same JSON object ``append --file`` takes (fields such as a
                # status change's own ``index`` stay apart from the record's).
                line = json_text({"index": index, "time": rfc3339(record.time_ms // 1000),
                                  "entry": entry_to_json(record.entry)})
                # Accented text stays readable (on a terminal that is not UTF-8, exact as
                # JSON escapes: ``json_text``). The fields refuse what a terminal would act on
                # (C1's CSI, a bidi override) or a reader split a line at (U+2028); should a
                # field some day let one through, it is still written as a JSON escape.
                click.echo(_inert_line(line))


@group.command("check-bundle")
@click.option("--bundle", "bundles", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Paquete de confianza (repetible) / A trust bundle (repeatable).")
@click.option("--trust-root", "roots", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Llave raíz de una ciudad (repetible) / A city root key (repeatable).")
@home_option
@db_option
def check_bundle(bundles: tuple[str, ...], roots: tuple[str, ...], home: str | None,
                 db: str | None) -> None:
    """Coteja paquetes con el registro / Check bundles against the ledger.

    Coteja paquetes de confianza con el registro público (por ejemplo, una réplica): cada llave
    de oficina registrada, cada llave comprometida marcada como tal, el paquete mismo publicado.
    Si no, termina con código 1 / Check trust bundles against the public record (e.g. a
    mirror): every office key registered, every compromise reflected, the bundle itself
    published. Exit 1 otherwise."""
    from credential.bundle import MAX_ROOT, RootKey, check_roots, parse_bundle
    from ledger.crosscheck import check_bundle as run_check
    from ledger.crosscheck import read_public_record

    trusted = [RootKey.from_json(read_bounded(p, MAX_ROOT)) for p in roots]
    check_roots(trusted)
    signed = [read_bounded(p, MAX_BUNDLE) for p in bundles]
    parsed = [parse_bundle(data, trusted) for data in signed]  # untrusted bundles fail here
    with _open(home, db) as store, _progress("Leyendo / Reading") as progress:
        record = read_public_record(store, progress)
    problems = 0
    for bundle, data in zip(parsed, signed, strict=True):
        findings = run_check(bundle, data, record)
        problems += len(findings)
        for finding in findings:
            click.echo(f"✗ {finding.message['es']}\n  {finding.message['en']}")
        if not findings:
            click.echo(f"ok: {bundle.city} v{bundle.version}: {len(bundle.keys)} llave(s) "
                       f"registrada(s), paquete publicado / key(s) registered, bundle published")
    if problems:
        raise LedgerError("ledger_bundle_mismatch", count=problems)


def _not_the_database(out: str, store: LedgerStore) -> None:
    """Refuse ``out`` naming the log's own SQLite file (or its journal), wherever ``--db`` or
    the settings put it: the proof would replace the log."""
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or not url.database:
        return
    database = os.path.realpath(url.database)
    if os.path.realpath(out) in {database + suffix for suffix in ("", "-wal", "-shm")}:
        raise UsageError("output_same_file", options="--out / --db", path=out)


@group.command("prove-bundle")
@click.option("--bundle", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Paquete de confianza, tal como lo publicó la ciudad / The trust bundle, "
                   "exactly as the city published it.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Archivo de su prueba (JSON), que va con el paquete a las ventanillas / Where "
                   "to write its proof (JSON), to go with the bundle to counters.")
@click.option("--from", "url", default=None,
              callback=_node_url,
              help="Consulta la API pública de un nodo en lugar de un registro o réplica local / "
                   "Ask a node's public API instead of a local log or mirror.")
@home_option
@db_option
def prove_bundle(bundle: str, out: str, url: str | None, home: str | None,
                 db: str | None) -> None:
    """Prueba de publicación de un paquete / A bundle's proof of publication.

    Escribe la prueba de publicación de un paquete: su registro, su prueba de inclusión y un
    checkpoint cosignado, que las ventanillas comprueban sin conexión (verify --bundle-proof) /
    Write a bundle's proof of publication: its record, inclusion proof and a cosigned
    checkpoint, which counters check offline (verify --bundle-proof)."""
    from credential.home import atomic_write, check_output
    from ledger.bundleproof import prove_bundle as make_proof
    from ledger.bundleproof import prove_bundle_remote, uncosigned_warning

    # not into the node's own folder: --out <home>/ledger.db replaced the public log with
    # this small proof, and said "ok"
    check_output(out, "--out", resolve_home("ledger", home))
    signed = read_bounded(bundle, MAX_BUNDLE)
    with _progress("Leyendo / Reading") as progress:
        if url is not None:
            proof, size, cosigned = prove_bundle_remote(url, signed, progress)
        else:
            with _open(home, db) as store:
                _not_the_database(out, store)
                proof, size, cosigned = make_proof(store, signed, progress)
    atomic_write(Path(out), proof.to_json(), mode=0o644)  # public, as the bundle it proves
    click.echo(f"ok: registro / record {proof.index}, checkpoint {size} → {out}")
    if not cosigned:
        click.echo(uncosigned_warning(), err=True)


@group.command()
@click.option("--deep", is_flag=True,
              help="También decodifica y valida cada registro / Also decode and validate every "
                   "record.")
@home_option
@db_option
def audit(deep: bool, home: str | None, db: str | None) -> None:
    """Audita el registro / Audit the log.

    Recalcula la cadena, las hojas, los nodos y los checkpoints; termina con código 1 en el
    primer registro dañado / Recompute chain, leaves, nodes and checkpoints; exit 1 at the first
    bad record."""
    from ledger.audit import audit as run_audit

    with _open(home, db) as store, _progress("Auditando / Auditing") as progress:
        report = run_audit(store, deep=deep, progress=progress)
    if report.first is not None:
        seq, what = report.first
        raise LedgerError("ledger_audit_failed", index=seq, reason=what,
                          reason_es=report.spanish(seq, what))
    click.echo(f"ok: {report.size - report.unverified} records / registros")
    if report.unverified:
        click.echo(PasaporteError("ledger_audit_mirror_unverified",
                                  unverified=report.unverified).diagnostics(), err=True)


@group.command()
@click.option("--from", "url", required=True,
              callback=_node_url,
              help="Dirección base del otro nodo / The other node's base URL.")
@click.option("--log-key", default=None,
              help="Llave verificadora del registro (solo la primera vez) / The log's verifier "
                   "key (first run only).")
@click.option("--witness-key", multiple=True,
              help="Exige la cosignatura de uno de estos testigos (se recuerda) / Require a "
                   "cosignature from one of these (remembered for later runs).")
@click.option("--unwitnessed", is_flag=True,
              help="Acepta solo la firma del registro (sin testigo, una historia doble pasa "
                   "inadvertida) / Accept the log's signature alone (no witness: a split view "
                   "goes unseen).")
@home_option
@db_option
def mirror(url: str, log_key: str | None, witness_key: tuple[str, ...], unwitnessed: bool,
           home: str | None, db: str | None) -> None:
    """Replica otro registro / Mirror another log.

    Copia aquí el registro de otro nodo y comprueba cada enlace y la raíz cosignada / Copy
    another node's log here, checking every link and the cosigned root."""
    from credential.home import resolve_home
    from ledger.mirror import mirror as run_mirror

    for k in witness_key:
        _vkey(k, "--witness-key", witness=True)  # a typo fails here, before anything is written
    if log_key:
        _vkey(log_key, "--log-key")
    root = resolve_home("ledger", home)
    with _mirror_lock(root):
        _mirror(root, url, log_key, witness_key, unwitnessed, home, db, run_mirror)


def _holds_nothing(home: str | None, db: str | None) -> bool:
    """Whether a mirror's home has copied nothing yet: no record, no verified checkpoint."""
    with _open(home, db) as store:
        if store.size():
            return False
        try:
            store.checkpoint()
        except LedgerError:  # ledger_no_checkpoint
            return True
        return False


def _vkey(text: str, option: str, *, witness: bool = False) -> None:
    """A verifier key as typed on the command line: one that does not parse, or whose name the
    ledger's records cannot hold (``check_own_name``), or, given for a witness, that is no
    witness's key, is a mistake in the command (exit 2), found before anything is read or
    written."""
    with as_usage():
        if witness:
            from ledger.store import witness_key

            witness_key(text)
            return
        verifier = parse_verifier_key(text)
        check_own_name(verifier.name)
    if verifier.alg == COSIGNATURE_V1:
        # the other city's witness key (the line below its log key in their notes): the URL was
        # then said to serve "another log", and a mirror told to check --from and --home
        raise UsageError("ledger_log_key_is_witness_key", option=option, name=verifier.name)


def _mirror_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """One mirror run per home at a time: a second one, working from what it read before the
    first stored its pages, would take the first's verified records for a broken chain and
    cut them off."""
    make_folders(root)
    return held_lock(root / ".mirror.lock", busy=StoreError("ledger_mirror_busy", home=str(root)))


def _mirror(root: Path, url: str, log_key: str | None, witness_key: tuple[str, ...],
            unwitnessed: bool, home: str | None, db: str | None,
            run_mirror: Callable[..., Any]) -> None:
    if not (root / "ledger.json").exists():
        if not log_key:
            raise UsageError("usage_error", reason="--log-key is needed on the first mirror run")
        if not witness_key and not unwitnessed:
            raise UsageError("ledger_mirror_needs_witness")
        verifier = parse_verifier_key(log_key)
        create_home(root, LedgerConfig(origin=verifier.name, log_vkey=log_key, db=db,
                                       mirror_of=url))
    config = load_config(root)
    # (the store opened to ask only when a key given may replace one kept)
    fresh = bool((log_key and config.log_vkey != log_key) or witness_key) and _holds_nothing(
        home, db)
    if log_key and config.log_vkey != log_key:
        if not fresh:
            given = parse_verifier_key(log_key).name
            if given == config.origin:  # rebuilt, or an impostor
                raise LedgerError("ledger_witness_key_changed", origin=config.origin)
            raise LedgerError("ledger_mirror_key_changed", origin=config.origin,
                              home=str(root), given=escaped(given))
        # A first run that copied nothing (the node out of reach, a key mistyped) is set
        # right by running it again with the right key: there is no copy to contradict.
        verifier = parse_verifier_key(log_key)
        config = dataclasses.replace(config, origin=verifier.name, log_vkey=log_key)
        save_config(root, config)
    # Ordered, no repeats. Until something is copied, the keys given replace those of a run
    # that copied nothing (a wrong --from, refused): kept, the other log's own witness key
    # stayed, and its operator alone could then satisfy this mirror.
    kept = () if fresh and witness_key else config.mirror_witnesses
    known = tuple(dict.fromkeys(kept + witness_key))
    if known != config.mirror_witnesses:
        save_config(root, dataclasses.replace(config, mirror_witnesses=known))
    if not known and not unwitnessed:
        raise UsageError("ledger_mirror_needs_witness")
    witnesses = [parse_verifier_key(k) for k in known]
    with _open(home, db) as store, _progress("Copiando / Copying") as progress:
        cp = run_mirror(store, url, witnesses, progress=progress)
    if url != config.mirror_of:  # the node moved: status and refusals name where it is now
        save_config(root, dataclasses.replace(load_config(root), mirror_of=url))
    click.echo(f"ok: {cp.origin} {cp.size}")


@group.command()
@click.option("--log", "url", required=True,
              callback=_node_url,
              help="Dirección base del registro de la otra ciudad / The other city's ledger base "
                   "URL.")
@click.option("--log-key", required=True,
              help="Llave verificadora de ese registro / That log's verifier key.")
@home_option
@db_option
def witness(url: str, log_key: str, home: str | None, db: str | None) -> None:
    """Atestigua el registro de otra ciudad / Witness another city's log.

    Lo recuerda, comprueba ahora su checkpoint y lo cosigna / Remember it, check its checkpoint
    now and cosign it."""
    from ledger.witness import check_log, pull, witness_log

    _vkey(log_key, "--log-key")
    with _open(home, db, write=True) as store:
        check_log(url, log_key)  # a URL or key mistyped is refused before anything is saved
        origin = witness_log(store, log_key, url)
        cp, line = pull(store, origin)
    click.echo(f"ok: {cp.origin} {cp.size}")
    click.echo(line, nl=False)


@group.group()
def token() -> None:
    """Fichas de escritura / Append tokens.

    Para POST /entries (solo se guarda su hash) / For POST /entries (only a hash is stored)."""


@token.command("add")
@click.argument("name")
@click.option("--root", "root_file", type=click.Path(exists=True, dir_okay=False),
              help="Archivo raíz de la oficina («issuer root»): la ficha solo escribe lo de esa "
                   "oficina (su ciudad, sus llaves, sus listas) / The office's root file "
                   "(\"issuer root\"): the token writes only what is that office's (its city, "
                   "its keys, its lists).")
@home_option
@db_option
def token_add(name: str, root_file: str | None, home: str | None, db: str | None) -> None:
    """Crea (o reemplaza) la ficha de NAME y la muestra una sola vez / Create (or replace)
    NAME's token and print it once."""
    from credential.bundle import MAX_ROOT, RootKey
    from ledger.scopes import Scope

    check_token_name(name)
    scope = None
    if root_file is not None:
        with as_usage(MalformedInput):
            root = RootKey.from_json(read_bounded(root_file, MAX_ROOT))
            scope = Scope.of_root(root.city, root.country, root.code)
    with _open(home, db, log_only=True) as store:
        replacing = store.has_token(name)
        click.echo(store.add_token(name, scope))
    if replacing:
        # a re-run by mistake shuts the client out: say so where it is seen, not in silence
        click.echo(PasaporteError("ledger_token_replaced", name=name).diagnostics(), err=True)
    if scope is None:
        # said where it is seen: a leaked unbound token writes for any city
        click.echo(PasaporteError("ledger_token_unbound", name=name).diagnostics(), err=True)


@token.command("revoke")
@click.argument("name")
@home_option
@db_option
def token_revoke(name: str, home: str | None, db: str | None) -> None:
    """Rechaza la ficha de NAME desde ahora (sus envíos reciben 401) / Refuse NAME's token from
    now on (its appends get 401)."""
    check_token_name(name)
    with _open(home, db, log_only=True) as store:
        if not store.revoke_token(name):
            raise UsageError("usage_error", reason=f"no token named {name}")
    click.echo(f"ok: {name}")


@group.group()
def witnesses() -> None:
    """Testigos / Witnesses.

    Los testigos a los que este registro pide cosignar cada checkpoint / The witnesses this log
    asks to cosign each checkpoint."""


@witnesses.command("add")
@click.option("--url", required=True,
              callback=_node_url,
              help="Dirección base del testigo (… /add-checkpoint) / The witness's base URL (… "
                   "/add-checkpoint).")
@click.option("--key", "vkey", required=True,
              help="Llave de testigo / The witness's verifier key.")
@home_option
@db_option
def witnesses_add(url: str, vkey: str, home: str | None, db: str | None) -> None:
    """Pide al testigo en URL que cosigne cada checkpoint nuevo (una llave nueva del mismo
    nombre reemplaza a la anterior, que se guarda para la auditoría) / Ask the witness at URL to
    cosign every new checkpoint (a new key under the same name replaces the one before, which
    is kept for audit)."""
    _vkey(vkey, "--key", witness=True)
    with _open(home, db, log_only=True) as store:
        added = store.add_witness(url, vkey)
        origin = store.verifier.name
    click.echo(f"ok: {added.verifier.name}")
    if name_host(added.verifier.name) == name_host(origin):
        click.echo(PasaporteError("ledger_witness_same_host", witness=added.verifier.name,
                                  origin=origin, host=name_host(origin)).diagnostics(),
                   err=True)
    if added.moved_from is not None and not added.replaced:
        # a witness that worked, asked from now on somewhere else: said, so that a wrong
        # address (this node's own, say) is not found only as every cosignature failing (a
        # new key is a rebuilt witness, said below, whose address may well be new)
        click.echo(PasaporteError("ledger_witness_url_changed", name=added.verifier.name,
                                  old=added.moved_from, new=url).diagnostics(), err=True)
    if added.replaced:
        # a key changed under a known name is a rebuilt witness, or a key mistyped or not
        # the other city's: the operator must see it, and not take the old one for lost
        click.echo(PasaporteError(
            "ledger_witness_key_replaced", name=added.verifier.name,
            old=", ".join(key.key_id.hex() for key in added.replaced),
            new=added.verifier.key_id.hex()).diagnostics(), err=True)


@witnesses.command("remove")
@click.argument("name")
@home_option
@db_option
def witnesses_remove(name: str, home: str | None, db: str | None) -> None:
    """Deja de pedir cosignaturas a NAME (como lo muestra «list») / Stop asking NAME (as
    `list` shows it) for cosignatures."""
    with _open(home, db, log_only=True) as store:
        if not store.remove_witness(name):
            raise UsageError("usage_error", reason=f"no witness named {name}")
    click.echo(f"ok: {name}")


@witnesses.command("list")
@home_option
@db_option
def witnesses_list(home: str | None, db: str | None) -> None:
    """Una línea por testigo: nombre, URL, último tamaño cosignado, llave verificadora / One
    line per witness: name, URL, the last size it cosigned, its verifier key."""
    config = load_config(resolve_home("ledger", home))
    if config.mirror_of is not None:
        # A mirror asks no witness: it holds the log's checkpoints to the witness keys it was
        # given (``ledger mirror --witness-key``), the cosignatures coming with the log's. Said
        # "no witnesses configured", an auditor read that it checked none.
        # (no URL: a mirror never calls the witnesses, and the log's is not theirs)
        for vkey in config.mirror_witnesses:
            click.echo(f"{parse_verifier_key(vkey).name}\t-\t-\t{vkey}")
        if config.mirror_witnesses:
            click.echo("réplica: exige la cosignatura de estas llaves (ledger mirror "
                       "--witness-key) / a mirror: it requires a cosignature by these keys "
                       "(ledger mirror --witness-key)", err=True)
        else:
            click.echo("réplica sin testigos: no exige ninguna cosignatura (ledger mirror "
                       "--unwitnessed) / a mirror without witnesses: it requires no "
                       "cosignature (ledger mirror --unwitnessed)", err=True)
        return
    with _open(home, db) as store:
        rows = store.witnesses()
    for name, vkey, url, size in rows:
        click.echo(f"{name}\t{url}\t{size}\t{vkey}")
    if not rows:  # on stderr: a script reading the list still reads none
        click.echo("ningún testigo configurado / no witnesses configured "
                   "(ledger witnesses add)", err=True)


@group.command()
@click.option("--cosign", is_flag=True,
              help="Pide antes a los testigos que lo cosignen / Ask the witnesses to cosign it "
                   "first.")
@home_option
@db_option
def checkpoint(cosign: bool, home: str | None, db: str | None) -> None:
    """Último checkpoint / The newest checkpoint.

    Muestra el checkpoint más reciente con todas las cosignaturas que tiene / Print the newest
    checkpoint with every cosignature it has."""
    from ledger.witness import WITNESS_TIMEOUT, request_cosignatures

    with _open(home, db, write=cosign) as store:
        got = want = 0
        if cosign:
            # someone waits at a terminal for these: longer than an append's answer does
            want = len(store.witnesses())
            got = request_cosignatures(store, wait=4 * WITNESS_TIMEOUT)
        click.echo(store.checkpoint().note, nl=False)
    if got < want:  # asked for cosignatures and did not get them all: not a success
        raise LedgerError("ledger_cosign_missing", got=got, want=want)


class _MonitorCommand(BilingualCommand):
    """A command whose exit status a monitor reads (Nagios plugin convention): click's usage
    error exits 2, which is "critical" there, so here it is 3, "unknown"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            click.echo(ctx.get_usage(), err=True)
            click.echo(UsageError("usage_error", reason=exc.format_message()).diagnostics(),
                       err=True)
            raise click.exceptions.Exit(UNKNOWN_EXIT) from None


# the largest a limit may be: what GET /status?max_age= and max_behind= take, as the same check
_MAX_LIMIT = (1 << 63) - 1


def _status_unknown(exc: Exception) -> NoReturn:
    """A failure of the check itself is "unknown", never the 1 the console script gives it,
    which a monitor would read as a warning about the node."""
    if os.environ.get("PASAPORTE_DEBUG"):
        raise exc
    click.echo(PasaporteError("internal_error", kind=type(exc).__name__,
                              reason=str(exc)[:200]).diagnostics(), err=True)
    raise click.exceptions.Exit(UNKNOWN_EXIT) from None


@group.command("status", cls=_MonitorCommand)
@click.option("--json", "as_json", is_flag=True,
              help="Informe en JSON (forma documentada) / Report as JSON (documented shape).")
@click.option("--max-age", type=click.IntRange(min=0, max=_MAX_LIMIT), default=DEFAULT_MAX_AGE,
              show_default=True, metavar="SECONDS",
              help="Aviso si el último checkpoint, o uno que un testigo no cosignó, es más viejo "
                   "/ Warn when the newest checkpoint, or one a witness left uncosigned, is "
                   "older.")
@click.option("--max-behind", type=click.IntRange(min=0, max=_MAX_LIMIT),
              default=DEFAULT_MAX_BEHIND,
              show_default=True, metavar="RECORDS",
              help="Aviso si un testigo va más atrás / Warn when a witness is further behind.")
@home_option
@db_option
def status(as_json: bool, max_age: int, max_behind: int, home: str | None,
           db: str | None) -> None:
    """Salud del nodo o réplica / The node's (or mirror's) health.

    Código de salida: 0 bien, 1 aviso, 2 crítico, 3 desconocido / Exit 0 ok, 1 warning,
    2 critical, 3 unknown."""
    try:
        with _open(home, db) as store:
            report = node_status(store, now=int(time.time()), max_age=max_age,
                                max_behind=max_behind)
    except (PasaporteError, OSError) as exc:
        # The node cannot be read (no home, database missing or unreadable): it is down as far
        # as anyone can tell, so critical, with the error that says why.
        error = exc if isinstance(exc, PasaporteError) else StoreError(
            "file_error", path=exc.filename or "(disco / disk)",
            reason=exc.strerror or type(exc).__name__)
        click.echo(error.diagnostics(), err=True)
        if as_json:  # the same object GET /status answers with its 503
            click.echo(json_text(error.to_dict()))
        raise click.exceptions.Exit(EXIT[CRITICAL]) from None
    except Exception as exc:
        _status_unknown(exc)
    try:
        shown = (json_text(report.to_json(), sort_keys=True) if as_json
                 else "\n".join(report.lines()))
    except Exception as exc:  # a report that cannot be written out is no verdict either
        _status_unknown(exc)
    click.echo(shown)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)
