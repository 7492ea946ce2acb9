"""The ledger's storage: append batches, serve entries, proofs and checkpoints (SQLAlchemy 2).

The issuer's entry point::

    from ledger.store import LedgerStore
    from ledger.entries import CredentialIssued

    with LedgerStore.open(home_or_db_url, passphrase=...) as store:
        signed = store.append([CredentialIssued(commitment=digest), {"type": "notice", ...}])
        signed.checkpoint.size, signed.note      # the new C2SP checkpoint, with cosignatures

``append`` takes typed entries (:mod:`ledger.entries`) or dicts (JSON style, base64url bytes; or
raw ``bytes`` values), writes them as one batch in one transaction with one signed checkpoint,
then asks the configured witnesses to cosign it. Sequencing is serialized across processes by
locking the single ``ledger_head`` row (SQLite ``BEGIN IMMEDIATE`` in WAL mode; PostgreSQL
``SELECT … FOR UPDATE``), so concurrent appenders never fork the chain, skip or reuse a number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cbor2
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import update as sql_update
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from credential import merkle
from credential.disk import disk_trouble
from credential.errors import LedgerError, MalformedInput, PasaporteError, StoreError, UsageError
from credential.home import held_lock, make_folders, refuse_other_role, resolve_home
from credential.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    check_own_name,
    generate_signer,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_signature_lines,
    parse_verifier_key,
)
from credential.sqlstore import known_revisions, refuse_newer_release, sqlite_settings
from credential.text import escaped
from ledger import schema as t
from ledger.client import node_url
from ledger.entries import (
    MAX_RECORD,
    Entry,
    WitnessCosignature,
    as_entry,
    check_new,
    encode_record,
    record_prefix,
    record_time,
)
from ledger.keys import (
    CONFIG_NAME,
    LOG_KEY,
    WITNESS_KEY,
    LedgerConfig,
    load_config,
    open_keys,
    save_config,
    write_secret,
)
from ledger.scopes import Scope, check_scope, register_kids, register_kids_of_leaves

__all__ = ["MAX_BATCH", "AppendRequest", "LedgerStore", "SignedCheckpoint", "WitnessAdded",
           "check_token_name", "create_home", "database_url", "make_engine", "migrate",
           "witness_key"]

MAX_BATCH = 10_000
MAX_COSIGNATURES_PER_BATCH = 100
REQUEST_RETENTION_S = 30 * 86400  # how long an idempotency key is remembered
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # an append client's name
BUSY_TIMEOUT_S = 120.0  # how long an append waits for another process's before giving up
ZERO = bytes(32)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint, its signed note (with every cosignature known), and the batch it closed."""

    checkpoint: Checkpoint
    note: str
    start: int = 0
    end: int = 0
    replayed: bool = False  # an idempotent retry: this is the first answer, nothing appended


@dataclass(frozen=True)
class AppendRequest:
    """Who sent a batch and the ``Idempotency-Key`` they gave it: a retry with the same key gets
    the first answer back (for ``REQUEST_RETENTION_S``) instead of a second copy of the batch."""

    client: str
    key: str

    def __post_init__(self) -> None:
        if not (0 < len(self.client) <= 100 and _IDEMPOTENCY_KEY.fullmatch(self.key)):
            raise MalformedInput("ledger_bad_idempotency_key")


@dataclass(frozen=True)
class WitnessAdded:
    """What ``add_witness`` did: the key now asked, and the keys of the same name it took the
    place of (none for a witness new to the log, or the same key again). Those stay stored,
    without a URL, to check the cosignatures they gave; whoever added the key is told."""

    verifier: Verifier
    replaced: tuple[Verifier, ...] = ()
    moved_from: str | None = None  # the address it was asked at until now, if another


@dataclass(frozen=True)
class Head:
    size: int
    root: bytes
    last_hash: bytes
    last_time: int
    frontier: bytes


def database_url(home: Path, db: str | None = None, config: LedgerConfig | None = None) -> str:
    """``--db``, else ``PASAPORTE_LEDGER_DB``, else the home's settings, else SQLite in the home."""
    url = db or os.environ.get("PASAPORTE_LEDGER_DB") or (config.db if config else None)
    return url or f"sqlite:///{home / 'ledger.db'}"


def _shown(url: URL) -> str:
    """How an error names a database: SQLite's file, or the URL without its password (nor one
    given in the query, nor the tail of one whose unencoded ``@`` was read as the host's)."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    shown = _QUERY_PASSWORD.sub(r"\1***", url.render_as_string(hide_password=True))
    return _masked(shown) if "@" in (url.host or "") else shown


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*")


def _masked(url: str) -> str:
    """A URL as typed, for an error about it: what is before its last ``@`` may be (part of) a
    password, and so may a ``password=`` in its query."""
    return _QUERY_PASSWORD.sub(r"\1***", re.sub(r"//.*@", "//***@", url))


def _db_error(ctx: ExceptionContext) -> None:
    """Driver errors a person can act on become typed errors (HTTP 503, CLI exit 1) instead of
    tracebacks: another writer held the log longer than we wait (``store_busy``: nothing was
    written, send it again), its disk is full (``store_full``: nothing was written, free some
    space; also an I/O error on a disk with next to no room, as growing a WAL's ``-shm`` gives),
    its disk failed to read or write (``store_io_error``: check the disk and the device; the
    file is not known to be damaged, so nothing says to restore it), or the database cannot be
    used at all: a damaged or non-SQLite file, a folder that does not exist
    (``ledger_database_unreadable``: restore a damaged file); a server that cannot be reached,
    refuses the login, ended the session or did not answer in time
    (``ledger_database_unavailable``: check the server and the URL; there is no file, and a
    restore would only bring back an old copy the witnesses contradict); a role without the
    privileges (``ledger_database_denied``); a deadlock (``ledger_database_conflict``: again)."""
    if ctx.is_pre_ping:
        # a pooled session found dead: the pool replaces it (raising here failed the request)
        return
    exc = ctx.original_exception
    if (isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)) or (
            getattr(exc, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE):
        name = (ctx.engine.url.database if ctx.engine is not None else None) or "ledger"
        raise StoreError("store_busy", what=Path(name).name) from exc
    disk = disk_trouble(exc, _folder(ctx))
    if disk == "full" or getattr(exc, "sqlstate", None) == _PG_DISK_FULL:
        # the transaction rolled back whole: nothing to restore, only space to free
        raise StoreError("store_full", what=_shown(ctx.engine.url) if ctx.engine is not None
                         else "ledger") from exc
    if disk == "io":  # the disk failed to read or write: nothing shows the file is damaged
        raise StoreError("store_io_error", what=_shown(ctx.engine.url) if ctx.engine is not None
                         else "ledger", reason=_first_line(exc)) from exc
    where = _shown(ctx.engine.url) if ctx.engine is not None else "ledger"
    state = getattr(exc, "sqlstate", None)
    if state == _PG_NO_PRIVILEGE:  # a ProgrammingError, but the role's grants, not our SQL
        raise StoreError("ledger_database_denied", db=where, reason=_first_line(exc)) from exc
    if state in _PG_SCHEMA_GONE:
        # A ProgrammingError too, but not our SQL: a table or column of the log dropped by hand
        # since it was opened, as SQLite's "no such table" (an OperationalError) says below.
        raise StoreError("ledger_database_unreadable", db=where, reason=_first_line(exc)) from exc
    if state in _PG_CONFLICT:  # rolled back whole: the same request again may well pass
        raise StoreError("ledger_database_conflict", db=where, reason=_first_line(exc)) from exc
    errorname = getattr(exc, "sqlite_errorname", None)
    if errorname == "SQLITE_READONLY" or (errorname == "SQLITE_CANTOPEN" and _file_in_place(ctx)):
        # A read-only mount or permissions on a file that is there: nothing is damaged, and a
        # restore (as "unreadable" advised) would bring back an older copy of a healthy log.
        raise StoreError("store_not_writable", what=where, reason=_first_line(exc)) from exc
    # OperationalError: the database, not the statement, failed (cannot open or connect);
    # sqlite3's bare DatabaseError is a corrupt file or not a database at all.
    # Constraint and programming errors stay as they are: they are bugs to see, not states.
    server = ctx.engine is not None and ctx.engine.url.get_backend_name() != "sqlite"
    if server and ctx.statement is None and (
            isinstance(ctx.sqlalchemy_exception, sa_exc.ProgrammingError)
            or _BAD_CONNINFO.search(str(exc))):
        # Refused while connecting, before any SQL: an option in the URL the driver does not
        # take (?connect_timeout=abc, ?PASSWORD=, ?sslmode=bogus). The URL to fix, not a server
        # to check (nor an "unexpected error" to report).
        raise StoreError("ledger_bad_db_url", db=where, reason=_first_line(exc)) from exc
    if isinstance(ctx.sqlalchemy_exception, sa_exc.OperationalError) or (
            type(exc) is sqlite3.DatabaseError):
        if server and _NO_DATABASE.search(str(exc)):
            # dropped, lost, or its name mistyped: as a SQLite file that is not there, never
            # "there is nothing to restore" (libpq gives no SQLSTATE when connecting fails;
            # the server's words are read, in the English every installation logs by default)
            raise StoreError("ledger_database_missing", db=where) from exc
        raise StoreError("ledger_database_unavailable" if server else
                         "ledger_database_unreadable", db=where, reason=_first_line(exc)) from exc


def _file_in_place(ctx: ExceptionContext) -> bool:
    """Whether the SQLite file an error is about is a file in a folder that exists: one that
    cannot then be opened is a permission or a mount to fix, not damage or a wrong path."""
    url = ctx.engine.url if ctx.engine is not None else None
    if url is None or url.get_backend_name() != "sqlite" or not url.database:
        return False
    return Path(url.database).is_file()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _folder(ctx: ExceptionContext) -> Path | None:
    """The folder of the SQLite file an error is about (its disk's free space tells a full disk
    from a failing one); ``None`` for a server or an in-memory database."""
    url = ctx.engine.url if ctx.engine is not None else None
    if url is None or url.get_backend_name() != "sqlite" or not url.database or (
            url.database == ":memory:"):
        return None
    return Path(url.database).parent


_PG_LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout expiring
_NO_DATABASE = re.compile(r'FATAL:\s+database ".*" does not exist')
# libpq's words for a connection option it cannot use (psycopg raises some as ProgrammingError,
# a bad sslmode as OperationalError)
_BAD_CONNINFO = re.compile(r"invalid connection option|invalid \w+ value|bad value for")
_PG_DISK_FULL = "53100"
_PG_NO_PRIVILEGE = "42501"  # insufficient_privilege
_PG_CONFLICT = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
_PG_SCHEMA_GONE = frozenset({"42P01", "42703"})  # undefined_table, undefined_column
# Connecting to a database server, and checking that a pooled session still answers: a server
# that accepts connections and never answers (frozen, a hung storage array) is an error after
# this long instead of a hang. The URL's own connect_timeout (or PGCONNECT_TIMEOUT) wins.
CONNECT_TIMEOUT_S = 10
# libpq's TCP keepalives (unless the URL sets them): a session to a host that vanished (a
# partition, a crash) ends after about a minute rather than waiting for an answer for ever.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
               "keepalives_count": 3}


def _server_args(url: URL, busy_timeout: float) -> dict[str, Any]:
    """libpq's settings for a PostgreSQL server. The lock wait goes before the URL's own
    ``options`` (or PGOPTIONS, which libpq reads only when there are none): passing
    ``options`` alone replaced them, and a ``search_path`` there put the log in ``public``."""
    if url.get_driver_name() not in ("psycopg", "psycopg2"):
        return {}
    own = url.query.get("options")
    given = " ".join(own) if isinstance(own, tuple) else own
    if given is None:
        given = os.environ.get("PGOPTIONS", "")
    args: dict[str, Any] = {
        "options": f"-c lock_timeout={int(busy_timeout * 1000)} {given}".strip()}
    if "connect_timeout" not in url.query and not os.environ.get("PGCONNECT_TIMEOUT"):
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    args.update({k: v for k, v in _KEEPALIVES.items() if k not in url.query})
    return args


def _answer_within(url: URL) -> float | None:
    """How long a pooled session's liveness check waits: as long as connecting may take (0 or
    less: libpq's "for ever")."""
    raw = url.query.get("connect_timeout") or os.environ.get("PGCONNECT_TIMEOUT")
    try:
        seconds = float(raw) if isinstance(raw, str) else float(CONNECT_TIMEOUT_S)
    except ValueError:  # libpq refuses it when connecting
        seconds = float(CONNECT_TIMEOUT_S)
    return max(seconds, 2.0) if seconds > 0 else None  # libpq's own minimum is 2 s


def default_witness_name(origin: str) -> str:
    """The name of a node's witness key when ``init`` is not given one."""
    return f"{origin}/witness"


class _Cutoff:
    """Shuts a session's socket down once its deadline passes, unless ended first. A server
    that froze (SIGSTOP, a hung storage array) still has its kernel acknowledge every packet,
    so neither TCP keepalives nor the server's own timeouts end the wait: the driver waits on
    the socket for ever. Shut down, the socket reads as closed and the driver fails at once.

    One watching thread for the whole process, started on first use: a thread per pooled
    checkout (a ``threading.Timer`` each) cost every request on a busy node a thread start."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._due: dict[int, tuple[float, int]] = {}  # watch number → (deadline, fd)
        self._count = 0
        self._thread: threading.Thread | None = None

    def watch(self, fd: int, seconds: float) -> int:
        """Cut ``fd`` in ``seconds`` unless ``end`` is called with the number returned."""
        with self._wake:
            self._count += 1
            self._due[self._count] = (time.monotonic() + seconds, fd)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ledger-db-cutoff",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()
            return self._count

    def end(self, number: int) -> bool:
        """Stop watching; whether the socket was cut meanwhile (its deadline passed)."""
        with self._wake:  # never cut once ended: the fd may by then be another connection's
            return self._due.pop(number, None) is None

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for number, (deadline, fd) in list(self._due.items()):
                    if deadline <= now:
                        del self._due[number]
                        _shut(fd)
                nearest = min((deadline for deadline, _ in self._due.values()), default=None)
                self._wake.wait(None if nearest is None else nearest - now)


def _shut(fd: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


_CUTOFF = _Cutoff()


def _check_sessions(engine: Engine, seconds: float | None) -> None:
    """Check each pooled session on checkout (SQLAlchemy's pool_pre_ping, with a deadline):
    one the server ended (a restart, pg_terminate_backend, idle_session_timeout) is replaced
    instead of failing a request, and one whose server froze is given up after ``seconds``
    (then connecting again fails after connect_timeout: a 503, not a request hanging)."""

    @event.listens_for(engine, "connect")
    def _fresh(dbapi_conn: Any, record: Any) -> None:
        record.info["ledger_fresh"] = True  # just connected: nothing to check

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if record.info.pop("ledger_fresh", False):
            return
        fileno = getattr(dbapi_conn, "fileno", None)
        watch = _CUTOFF.watch(fileno(), seconds) if seconds and fileno is not None else None
        failed: Exception | None = None
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            failed = exc
        finally:
            cut = watch is not None and _CUTOFF.end(watch)
        if cut:
            # The server froze: connecting anew would wait connect_timeout once more (twice the
            # documented bound, past an office's patience). This session is dropped (any error
            # here invalidates it) and the request fails now; the next one connects.
            raise StoreError("ledger_database_unavailable", db=_shown(engine.url),
                             reason=f"no answer within {seconds:g} s") from failed
        if failed is not None:
            # ended by the server: the pool drops it and connects anew (a failure then is the
            # error)
            raise sa_exc.DisconnectionError(str(failed)[:200]) from failed


def make_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine with the ledger's settings: a bounded wait for another writer's lock on both
    backends; on SQLite also WAL, full sync and an explicit BEGIN; on a server, bounded waits
    for connecting and for a pooled session to answer, and the URL's own ``options`` kept. A
    URL no driver can use (a typo, a missing driver) is ``ledger_bad_db_url``; one whose host
    or port cannot be read (often an unencoded ``@`` or ``:`` in a password) is
    ``ledger_bad_db_url_host``, naming no part of the password."""
    try:
        parsed = make_url(url)
    except ValueError:  # a port that is not a number: int() said which, maybe a password's tail
        raise StoreError("ledger_bad_db_url_host", db=_masked(url)) from None
    except sa_exc.ArgumentError as exc:
        raise StoreError("ledger_bad_db_url", db=_masked(url), reason=str(exc)[:200]) from None
    try:
        if not url.startswith("sqlite"):
            if "@" in (parsed.host or ""):  # connecting would look up a password's tail
                raise StoreError("ledger_bad_db_url_host", db=_masked(url))
            engine = create_engine(parsed, connect_args=_server_args(parsed, busy_timeout))
            _per_process(engine)
            event.listen(engine, "handle_error", _db_error)
            _check_sessions(engine, _answer_within(parsed))
            return engine
        # a small pool: reopening SQLite (and re-running the PRAGMAs) per request costs more
        # than the proof itself; NullPool only for in-memory databases, which cannot be shared
        pool = {"poolclass": NullPool} if ":memory:" in url or url.endswith("sqlite://") else {}
        engine = create_engine(url, connect_args={"timeout": busy_timeout}, **pool)
    except (sa_exc.ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
        raise StoreError("ledger_bad_db_url", db=_masked(url), reason=str(exc)[:200]) from None
    _per_process(engine)
    event.listen(engine, "handle_error", _db_error)
    event.listen(engine, "connect", sqlite_settings)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ledger_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _per_process(engine: Engine) -> None:
    """A pooled connection serves only the process that opened it. A WSGI server that loads
    the app and then forks its workers (gunicorn --preload, uWSGI without lazy-apps) gave each
    worker the master's session: one PostgreSQL backend (or SQLite handle) answering four
    processes at once, an office's valid token read as unknown (401) from another worker's
    result. In a child, an inherited connection is dropped unclosed (closing it would end the
    parent's session too) and a new one opened, as SQLAlchemy's pooling guide recommends."""
    @event.listens_for(engine, "connect")
    def _opened(_dbapi: object, record: ConnectionPoolEntry) -> None:
        record.info["pid"] = os.getpid()

    # (typed Any: the pool's record and proxy take the assignment; their interfaces do not)
    @event.listens_for(engine, "checkout")
    def _taken(_dbapi: object, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise sa_exc.DisconnectionError("a connection opened by another process")


def witness_key(vkey: str) -> Verifier:
    """A witness's verifier key, as ``witnesses add`` and ``mirror --witness-key`` take it: a
    cosignature/v1 key. The other city's log key (the line just above it in their notes) was
    taken, found wrong only at the next cosigning, and kept for good among the witness's
    keys."""
    verifier = parse_verifier_key(vkey)
    check_own_name(verifier.name)  # its cosignature records hold the name
    if verifier.alg != COSIGNATURE_V1:
        raise UsageError("ledger_witness_key_not_cosigning", name=verifier.name,
                         kind_es=f"tipo {verifier.alg:#04x}, la de firmar un registro",
                         kind_en=f"type {verifier.alg:#04x}, a log's signing key")
    return verifier


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


# The key of the PostgreSQL advisory lock ``migrate`` holds (advisory locks are per database):
# any number other software there does not use; this is the start of sha256(its name).
_MIGRATE_LOCK = int.from_bytes(hashlib.sha256(b"pasaporte ledger migrate").digest()[:8], "big",
                               signed=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision and make sure the head row exists.

    One transaction, serialized (PostgreSQL: an advisory lock, SQLite: BEGIN IMMEDIATE), with
    the revision read under it: several workers opening an older release's database at once
    each ran the same DDL unlocked, and all but one failed (a duplicate column, a deadlock).
    Now one upgrades and the others find it done; a wait past the lock timeout is
    ``store_busy``."""
    with engine.connect().execution_options(ledger_write=True) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_MIGRATE_LOCK)))
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        current = MigrationContext.configure(
            conn, opts={"version_table": _VERSION_TABLE}).get_current_revision()
        refuse_newer_release(cfg, current, what=_shown(engine.url))
        command.upgrade(cfg, "head")
        if conn.execute(select(t.head.c.id)).first() is None:
            conn.execute(insert(t.head).values(
                id=1, size=0, root=merkle.EMPTY_ROOT, last_hash=ZERO, last_time=0, frontier=b""))
        conn.commit()


def _check_schema(conn: Connection, engine: Engine) -> None:
    """Raise ``ledger_database_unreadable`` for a ``schema_fault``."""
    fault = schema_fault(conn)
    if fault is not None:
        raise StoreError("ledger_database_unreadable", db=_shown(engine.url), reason=fault)


def _check_own_log(engine: Engine, log: Verifier) -> None:
    """Refuse a database that holds another log (a mistyped ``--db``, a ``PASAPORTE_LEDGER_DB``
    left set in the shell, which overrides the home's settings): its newest checkpoint must be
    signed by this home's log key (a mirror's: the key of the log it copies). Appended to, the
    other log was broken for good and this key signed a second tree of its sizes (a split
    view); a mirror took the other's records for its log rewriting its history."""
    with engine.connect() as conn:
        note = conn.execute(select(t.checkpoints.c.note)
                            .order_by(t.checkpoints.c.size.desc()).limit(1)).scalar()
    if note is None:
        return
    try:
        open_note(str(note), [log])
    except PasaporteError:
        try:
            parsed = parse_note(str(note))
            origin = parse_checkpoint(parsed.text).origin
        except PasaporteError:
            origin, parsed = "?", None
        signers = {(s.name, s.key_id) for s in parsed.signatures} if parsed else set()
        if (log.name, log.key_id) in signers:
            # Signed by this log's key and no longer verifying: its row was changed (by hand,
            # a damaged disk), not another log's. ``audit`` names it at its record, as it does
            # an older checkpoint; refused here, the DBA was sent to check --db.
            return
        if parsed is not None and origin == log.name:
            # another init under the same name (a retry in a new folder): not "another log (X),
            # not X", which named the same log twice
            theirs = next((s.key_id for s in parsed.signatures if s.name == origin), b"")
            raise StoreError("ledger_database_other_key", db=_shown(engine.url), origin=origin,
                             theirs=theirs.hex() or "?", ours=log.key_id.hex()) from None
        raise StoreError("ledger_database_other_log", db=_shown(engine.url),
                         origin=escaped(origin[:200]), ours=log.name) from None


# The revision that first made each table (the others: 0001's): a table its revision should
# have and the database lacks, or one a later revision made, is a schema changed by hand.
_TABLE_SINCE = {t.witness_given.name: "0002", t.requests.name: "0002",
                t.split_views.name: "0003", t.kids.name: "0006"}
_VERSION_TABLE = "ledger_alembic_version"


@functools.cache
@functools.cache
def _revisions() -> tuple[str, ...]:
    """The schema revisions these migrations know, oldest first (read once: ``schema_fault``
    runs at every /status)."""
    return known_revisions(_alembic_config())


def schema_fault(conn: Connection) -> str | None:
    """What is wrong with the log's tables for the schema revision they record, if anything:
    a table dropped (the node would serve ``ok`` on /status while every read of it failed,
    and audit pass a log it could no longer append to), or the revision set back (the next
    writer would run old migrations over newer tables). A revision these migrations do not
    know is a newer release's: ``migrate`` names that (``store_newer_release``)."""
    names = set(inspect(conn).get_table_names())
    current = (MigrationContext.configure(conn, opts={"version_table": _VERSION_TABLE})
               .get_current_revision() if _VERSION_TABLE in names else None)
    if current is None:
        return "schema revision not recorded"
    order = _revisions()
    if current not in order:
        return None
    at = order.index(current)
    for table in t.metadata.sorted_tables:
        made = order.index(_TABLE_SINCE.get(table.name, order[0]))
        if made <= at and table.name not in names:
            return f"table {table.name} missing"
        if made > at and table.name in names:
            return f"table {table.name} is newer than schema revision {current}"
    return None


def _has_log(engine: Engine) -> bool:
    """Whether the database holds an initialised log (any schema revision): the head row that
    ``migrate`` writes once the tables exist. A SQLite file that does not exist or is empty is
    not opened: connecting would create it, or write a header into it (WAL mode)."""
    url = engine.url
    if (url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:"
            and not url.database.startswith("file:")):
        path = Path(url.database)
        if not path.is_file() or path.stat().st_size == 0:
            return False
    with engine.connect() as conn:
        return inspect(conn).has_table(t.head.name) and conn.execute(
            select(t.head.c.id).where(t.head.c.id == 1)).first() is not None


def _ledger_tables(engine: Engine) -> list[str]:
    """The tables of the names a log's schema uses that the database already has (none in a
    SQLite file that does not exist yet or is empty: it is not opened)."""
    url = engine.url
    if (url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:"
            and not url.database.startswith("file:")):
        path = Path(url.database)
        if not path.is_file() or path.stat().st_size == 0:
            return []
    ours = {*t.metadata.tables, _VERSION_TABLE}
    with engine.connect() as conn:
        return sorted(ours & set(inspect(conn).get_table_names()))


def _refuse_existing_log(engine: Engine, root: Path) -> None:
    """Refuse a database that holds a log, unless it is this home's own SQLite file and the
    log in it is blank (no record, no signed checkpoint): what an ``init`` or a mirror's first
    run killed between making the database and saving the settings leaves. Nothing was ever
    signed or served from it, so it is taken over rather than blocking the home for good. (A
    database elsewhere may be another home's, however empty.)"""
    if not _has_log(engine):
        if leftover := _ledger_tables(engine):
            # Tables of a ledger's names that are no log (another application's, or a dump
            # restored in part): creating ours failed on the first, as "unexpected error"
            # with the raw SQL, after the keys were made.
            raise StoreError("ledger_database_foreign_tables", db=_shown(engine.url),
                             tables=", ".join(leftover))
        return
    url = engine.url
    own = (url.get_backend_name() == "sqlite" and bool(url.database)
           and Path(str(url.database)).resolve().parent == root.resolve())
    if own:
        with engine.connect() as conn:
            size = conn.execute(select(t.head.c.size).where(t.head.c.id == 1)).scalar()
            signed = conn.execute(select(t.checkpoints.c.size).limit(1)).first()
        if size == 0 and signed is None:
            return
    raise StoreError("ledger_already_initialised", home=_shown(engine.url))


def create_home(root: Path, config: LedgerConfig) -> None:
    """Create the home's log: the database at the current schema, then its settings (last, so
    a home with settings always has a usable database). The only way a log comes to exist
    (``ledger init``, a mirror's first run); a database that already holds one is refused
    rather than adopted under other keys."""
    # Owner-only, as an office's or a wallet's: its records are public, but whoever can write
    # here can swap the database (a token of their own in it) or the settings, and the node
    # signs over them with its key. A folder that exists already keeps its permissions.
    refuse_other_role(root, "ledger")
    make_folders(root)
    engine = make_engine(database_url(root, config.db, config))
    try:
        with _to_be_created(engine):
            _refuse_existing_log(engine, root)
        migrate(engine)
    finally:
        engine.dispose()
    save_config(root, config)


@contextlib.contextmanager
def _to_be_created(engine: Engine) -> Iterator[None]:
    """A log being made in a database its server does not have: to create first, not one
    "lost" to restore from a backup (no log ever was there); nor is a SQLite file that could
    not be made (a folder it may not write in) a damaged one to restore."""
    try:
        yield
    except StoreError as exc:
        if exc.code == "ledger_database_missing":
            raise StoreError("ledger_database_not_created", db=exc.detail["db"]) from exc
        file = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
        if exc.code == "ledger_database_unreadable" and file and not os.path.isfile(file):
            raise StoreError("ledger_database_cannot_create", db=exc.detail["db"],
                             reason=exc.detail.get("reason", "")) from exc
        raise


def check_token_name(name: str) -> str:
    """An append client's name (it names the client in logs and in ``token revoke``), checked
    before any query: one typed on a Latin-1 terminal (surrogate escapes) failed in the
    database driver as an internal error, where the name's rule was the answer."""
    if not _TOKEN_NAME.fullmatch(name):
        raise UsageError("ledger_bad_token_name", name=name[:80])
    return name


class LedgerStore:
    """One log's database, its origin and keys. Use :meth:`open`; close it (or ``with``)."""

    def __init__(self, engine: Engine, origin: str, verifier: Verifier,
                 signer: Signer | None = None, witness: Signer | None = None,
                 home: Path | None = None, witness_verifier: Verifier | None = None,
                 mirror_witnesses: Sequence[Verifier] = (), mirror_of: str | None = None
                 ) -> None:
        self.engine = engine
        self.origin = origin
        self.verifier = verifier
        self.signer = signer
        self.witness = witness
        self.home = home
        # this node's witness public key, known even to a read-only store (audit checks the
        # cosignatures it gave with it)
        self.witness_verifier = witness.verifier if witness is not None else witness_verifier
        # a mirror's required witnesses (its ledger.json), whose cosignatures audit checks too
        self.mirror_witnesses = tuple(mirror_witnesses)
        # the node a mirror copies (its ledger.json): a mirror logs no cosignatures and keeps
        # only the checkpoints it verified, which audit must not hold it to
        self.mirror_of = mirror_of
        self.is_postgres = engine.dialect.name == "postgresql"

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def init(cls, home: str | os.PathLike[str] | None, origin: str, passphrase: str, *,
             db: str | None = None, witness_name: str | None = None) -> LedgerStore:
        """Create a ledger home: keys (sealed with ``passphrase``), settings, schema, and the
        signed empty checkpoint. Returns the store, opened for appending."""
        root = resolve_home("ledger", home)
        if (root / "ledger.json").exists():
            raise StoreError("ledger_already_initialised", home=str(root))
        make_folders(root)  # see ``create_home``
        # One init per home at a time: two at once (a provisioning script started twice)
        # wrote over each other's keys, and the one that lost removed the winner's.
        # (on the folder itself: a lock file would be left in a home a failed init leaves)
        with held_lock(root, busy=StoreError("ledger_init_busy", home=str(root))):
            if (root / "ledger.json").exists():
                raise StoreError("ledger_already_initialised", home=str(root))
            return cls._init_locked(root, origin, passphrase, db, witness_name)

    @classmethod
    def _init_locked(cls, root: Path, origin: str, passphrase: str, db: str | None,
                     witness_name: str | None) -> LedgerStore:
        # before any key file is written: a home that lost its settings may still hold the keys
        # of the log in that database, which must not be replaced by new ones; and a database
        # that cannot be reached fails here, not after the keys exist
        engine = make_engine(database_url(root, db))
        try:
            with _to_be_created(engine):
                _refuse_existing_log(engine, root)
                engine.connect().close()
        finally:
            engine.dispose()
        log_signer = generate_signer(origin)
        witness = generate_signer(witness_name or default_witness_name(origin), COSIGNATURE_V1)
        write_secret(root / LOG_KEY, log_signer.seed, passphrase)
        write_secret(root / WITNESS_KEY, witness.seed, passphrase)
        config = LedgerConfig(origin=origin, log_vkey=log_signer.verifier.vkey,
                              witness_vkey=witness.verifier.vkey, db=db)
        create_home(root, config)  # migrates the database once
        # The signers are in hand: no second unsealing (two Argon2id derivations) and no second
        # migration, as reopening the home would cost.
        store = cls(make_engine(database_url(root, db, config)), origin, log_signer.verifier,
                    log_signer, witness, root)
        try:
            store.sign_initial_checkpoint()
            # Two inits at once on one empty database (PostgreSQL's check and schema are not
            # one transaction): the one whose checkpoint is not there lost, and says so now
            # rather than at its first append.
            _check_own_log(store.engine, log_signer.verifier)
        except BaseException as exc:
            store.close()
            if isinstance(exc, StoreError) and exc.code in ("ledger_database_other_log",
                                                            "ledger_database_other_key"):
                # The database is the winner's: keys and settings naming a log that never was
                # would only have every command here refused, and "init" again too.
                for name in (CONFIG_NAME, LOG_KEY, WITNESS_KEY):
                    (root / name).unlink(missing_ok=True)
            raise
        return store

    @classmethod
    def open(cls, url_or_home: str | os.PathLike[str] | None = None, *, db: str | None = None,
             passphrase: str | None = None) -> LedgerStore:
        """Open the ledger of a home directory (``--home``), or of a database URL.

        With a ``passphrase`` the log key (and the witness key, if any) are unlocked so the
        store can append and cosign; without one it is read-only. The database must hold the
        log (``ledger_database_missing`` otherwise): only :meth:`init` creates one.
        """
        target = os.fspath(url_or_home) if url_or_home is not None else None
        if target and "://" in target:
            db, target = target, None
        home = resolve_home("ledger", target)
        config = load_config(home)
        url = database_url(home, db, config)
        signer = witness = None
        if passphrase is not None and config.mirror_of is not None:
            # a mirror holds no keys ("run init" would be the wrong advice): it copies and serves
            raise StoreError("ledger_is_mirror", home=str(home), url=config.mirror_of)
        if passphrase is not None:
            # both keys at once: a change of passphrase a crash cut short is settled for the
            # pair, never one key at a time (ledger.keys.reseal_keys)
            secrets = open_keys(home, passphrase).secrets
            signer = Signer(config.origin, secrets[LOG_KEY])
            if WITNESS_KEY in secrets and config.witness_vkey:
                wname = parse_verifier_key(config.witness_vkey).name
                witness = Signer(wname, secrets[WITNESS_KEY], 0x04)
        engine = make_engine(url)
        try:
            # A lost, emptied or mistyped database must not become a new log signed with the
            # same key, contradicting the history others hold: it is restored, never recreated.
            if not _has_log(engine):
                raise StoreError("ledger_database_missing", db=_shown(engine.url))
            with engine.connect() as conn:
                _check_schema(conn, engine)
            _check_own_log(engine, parse_verifier_key(config.log_vkey))
            if signer is not None:
                # A writer brings an older node's schema up to date (a no-op once at the head
                # revision); read-only opens never change the database.
                migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        store = cls(engine, config.origin, parse_verifier_key(config.log_vkey), signer, witness,
                    home, parse_verifier_key(config.witness_vkey) if config.witness_vkey else None,
                    [parse_verifier_key(k) for k in config.mirror_witnesses], config.mirror_of)
        if signer is not None and signer.verifier != store.verifier:
            store.close()
            raise StoreError("ledger_key_mismatch")
        return store

    def close(self) -> None:
        self.engine.dispose()

    def check_schema(self, conn: Connection) -> None:
        """As at ``open``, for a node that has been running since: its tables as its schema
        revision says (``ledger_database_unreadable`` otherwise)."""
        _check_schema(conn, self.engine)

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def _head(self, conn: Connection, lock: bool = False) -> Head:
        query = select(t.head.c.size, t.head.c.root, t.head.c.last_hash, t.head.c.last_time,
                       t.head.c.frontier).where(t.head.c.id == 1)
        if lock and self.is_postgres:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise StoreError("ledger_not_initialised", home=str(self.home))
        return Head(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]), bytes(row[4]))

    def head(self, conn: Connection | None = None) -> Head:
        """The head row; read on ``conn`` when given (to be in its snapshot)."""
        if conn is not None:
            return self._head(conn)
        with self.engine.connect() as conn:
            return self._head(conn)

    def size(self) -> int:
        return self.head().size

    def public_size(self) -> int:
        """How many records readers are shown (``entries``, proofs, ``GET /entries``,
        ``check-bundle``): all of a log's; of a mirror's, those its newest verified checkpoint
        covers. A mirror run cut short keeps what it copied beyond that, to resume from, but
        until a checkpoint vouches for them those records are whatever a node chose to send:
        one that chains them well and then answers 503 must not have a mirror vouch for a key
        the log never registered."""
        return self.size() if self.mirror_of is None else self.verified_size()

    def verified_size(self) -> int:
        """The size of the newest checkpoint stored (0 before any): on a mirror, the records
        it verified. One indexed lookup: a mirror asks it for every page and proof it serves."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(t.checkpoints.c.size))).scalar() or 0)

    def _check_shown(self, size: int) -> None:
        """A mirror serves no proof about records it holds unverified (``public_size``)."""
        if self.mirror_of is not None and size > (shown := self.public_size()):
            raise LedgerError("ledger_bad_size", size=size, have=shown)

    def _lookup(self, conn: Connection, refs: Sequence[merkle.NodeRef]
                ) -> tuple[int, dict[merkle.NodeRef, bytes]]:
        """The head size and the hashes of ``refs``, in one round trip.

        Nodes on levels without rows are rebuilt from the stored level below them: a node
        ``span`` levels above its stored base covers ``2**span`` consecutive rows there.
        """
        # (ref, span, the first row's key, the rows' table: leaves 0, nodes 1)
        plan: list[tuple[merkle.NodeRef, int, int, int]] = []
        leaves: list[int] = []
        ids: list[int] = []
        for lvl, idx in refs:
            span = lvl % t.NODE_STRIDE
            base, first = lvl - span, idx << span
            if base == 0:
                plan.append(((lvl, idx), span, first, 0))
                leaves.extend(range(first, first + (1 << span)))
            else:
                key = t.node_id(base, first)
                plan.append(((lvl, idx), span, key, 1))
                ids.extend(range(key, key + (1 << span)))
        # the values inlined below are integers we computed (never user text)
        parts = ["SELECT 2, size, root FROM ledger_head WHERE id = 1"]
        if leaves:
            parts.append("SELECT 0, seq, hash FROM ledger_entries WHERE seq IN ("
                         + ", ".join(map(str, leaves)) + ")")
        if ids:
            parts.append("SELECT 1, id, hash FROM ledger_nodes WHERE id IN ("
                         + ", ".join(map(str, ids)) + ")")
        # The driver's own cursor: a proof reads a few dozen rows, and SQLAlchemy's per-row
        # wrapping was a third of the time a proof took (the target is under 1 ms at 1M).
        cursor = conn.connection.cursor()
        try:
            cursor.execute(" UNION ALL ".join(parts))
            rows = cursor.fetchall()
        finally:
            cursor.close()
        have = -1
        found: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
        for kind, key, value in rows:
            if kind == 2:
                have = int(key)
            else:
                found[kind][int(key)] = bytes(value)
        out: dict[merkle.NodeRef, bytes] = {}
        node_hash = merkle.node_hash
        for ref, span, first, table in plan:
            held = found[table]
            try:
                row = [held[first + j] for j in range(1 << span)]
            except KeyError:  # beyond what is stored: the caller names what is missing
                continue
            while len(row) > 1:
                row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
            out[ref] = row[0]
        return have, out

    def _source(self, conn: Connection) -> merkle.HashSource:
        def fetch(refs: Sequence[merkle.NodeRef]) -> Mapping[merkle.NodeRef, bytes]:
            return self._lookup(conn, refs)[1]
        return fetch

    def _proof(self, conn: Connection, size: int,
               groups: list[list[merkle.NodeRef]]) -> list[bytes]:
        """Resolve proof nodes and check ``size`` against the head, in one round trip."""
        have, found = self._lookup(conn, sorted({r for g in groups for r in g}))
        if not 0 < size <= have:
            raise LedgerError("ledger_bad_size", size=size, have=max(have, 0))
        return merkle._resolve(groups, lambda refs: found)

    def _check_size(self, conn: Connection, size: int) -> None:
        have = self._head(conn).size
        if not 0 < size <= have:
            raise LedgerError("ledger_bad_size", size=size, have=have)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise LedgerError("ledger_bad_index", index=index, size=size)
        self._check_shown(size)
        with self.engine.connect() as conn:
            return self._proof(conn, size, merkle.inclusion_nodes(index, size))

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        if old > new:  # a request error whatever the log holds, so no size to report
            raise MalformedInput("ledger_bad_param", name="old", reason="larger than new")
        self._check_shown(new)
        with self.engine.connect() as conn:
            if old == 0:  # a proof from the empty tree proves nothing: none is served
                raise LedgerError("ledger_bad_size", size=old, have=self._head(conn).size)
            return self._proof(conn, new, merkle.consistency_nodes(old, new))

    def root(self, size: int) -> bytes:
        with self.engine.connect() as conn:
            if size == 0:
                return merkle.EMPTY_ROOT
            self._check_size(conn, size)
            return merkle.tree_root(size, self._source(conn))

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """Records ``[start, end)`` as ``(index, leaf bytes)``; of a mirror, only those it
        verified (``public_size``)."""
        if self.mirror_of is not None:
            end = min(end, self.public_size())
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.entries.c.seq, t.entries.c.leaf)
                                .where(t.entries.c.seq >= start, t.entries.c.seq < end)
                                .order_by(t.entries.c.seq))
            return [(int(s), bytes(leaf)) for s, leaf in rows]

    def leaf_hash(self, index: int) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.entries.c.hash).where(t.entries.c.seq == index)).first()
            return bytes(row[0]) if row else None

    def checkpoint(self, size: int | None = None) -> SignedCheckpoint:
        """The latest checkpoint (or the one for ``size``) with all its cosignatures."""
        with self.engine.connect() as conn:
            query = select(t.checkpoints.c.size, t.checkpoints.c.note)
            if size is None:
                query = query.order_by(t.checkpoints.c.size.desc()).limit(1)
            else:
                query = query.where(t.checkpoints.c.size == size)
            row = conn.execute(query).first()
            if row is None:
                raise LedgerError("ledger_no_checkpoint")
            lines = conn.execute(select(t.cosignatures.c.line)
                                 .where(t.cosignatures.c.size == row[0])
                                 .order_by(t.cosignatures.c.id)).scalars().all()
        note_text = str(row[1]) + "".join(lines)
        return SignedCheckpoint(parse_checkpoint(parse_note(note_text).text), note_text)

    # -- appending --------------------------------------------------------------------------

    def _write_conn(self) -> Connection:
        return self.engine.connect().execution_options(ledger_write=True)

    def append(self, items: Iterable[Entry | Mapping[str, Any]], *, cosign: bool = True,
               request: AppendRequest | None = None,
               bound: tuple[str, Scope] | None = None) -> SignedCheckpoint:
        """Append a batch (one transaction, one checkpoint); then request cosignatures.

        With ``request``, a batch already appended under the same client and key is not
        appended again: the first answer comes back (``replayed``), or a different batch under
        a used key is refused (``ledger_idempotency_mismatch``). With ``bound`` (a client's
        name and the office its token is bound to), a batch that writes anything not that
        office's is refused (``ledger.scopes``)."""
        batch = [as_entry(item) for item in items]
        if not batch:
            raise UsageError("usage_error", reason="empty batch")
        if len(batch) > MAX_BATCH:
            raise LedgerError("ledger_batch_too_large", size=len(batch), limit=MAX_BATCH)
        # what no node takes into a new batch (a reason not for the public record, …), from
        # Python as from HTTP and the CLI: docs/ledger.md's own example wrote "holder_request"
        check_new(batch)
        if self.signer is None:
            raise StoreError("ledger_read_only")
        with self._write_conn() as conn, conn.begin():
            signed = self._append_locked(conn, batch, request, bound)
        if signed.replayed:
            note = self.checkpoint(signed.checkpoint.size).note  # with the cosignatures it has
            return dataclasses.replace(signed, note=note)
        if cosign:
            from ledger.witness import request_cosignatures

            if request_cosignatures(self, signed):  # re-read only when there is news
                return dataclasses.replace(signed,
                                           note=self.checkpoint(signed.checkpoint.size).note)
        return signed

    def _append_locked(self, conn: Connection, batch: Sequence[Entry],
                       request: AppendRequest | None = None,
                       bound: tuple[str, Scope] | None = None) -> SignedCheckpoint:
        assert self.signer is not None
        head = self._head(conn, lock=True)
        n = head.size
        w = t.witnesses.c
        ahead = conn.execute(select(w.name, w.size).where(w.url != "", w.size > n)
                             .order_by(w.size.desc())).first()
        if ahead is not None:
            # A witness already cosigned more of this log than the database holds: what is
            # appended now would be a second history of those sizes, signed by our key (a
            # fork both cities' witnesses and mirrors would hold against us forever).
            raise LedgerError("ledger_behind_witness", witness=str(ahead[0]),
                              size=int(ahead[1]), have=n)
        if bound is not None:  # under the lock: a key registered meanwhile is seen
            check_scope(conn, bound[0], bound[1], batch)
        digest = b""
        if request is not None:  # looked up under the lock: two retries cannot both append
            digest = _batch_digest(batch)
            first = self._first_answer(conn, request, digest)
            if first is not None:
                return first
        # Cosignatures received since the last append go on the public record first, under the
        # same lock (so two appenders never log one twice). Logging them as they arrive instead
        # would make a checkpoint whose cosignature makes a new checkpoint, without end.
        logged = self._pending_cosignatures(conn, min(MAX_COSIGNATURES_PER_BATCH,
                                                      MAX_BATCH - len(batch)))
        if logged:
            batch = [entry for _, _, entry in logged] + list(batch)
            for offset, (table, row_id, _) in enumerate(logged):
                conn.execute(sql_update(table).where(table.c.id == row_id)
                             .values(logged=n + offset))
        now = max(int(time.time() * 1000), head.last_time)
        size, root = _extend(conn, head, len(batch),
                             lambda seq, prev: encode_record(seq, prev, now, batch[seq - n]), now)
        register_kids(conn, batch, n)
        # start: where the caller's own entries begin (after any logged cosignatures)
        start = n + len(logged)
        if request is not None:
            stamp = int(time.time())
            conn.execute(delete(t.requests).where(
                t.requests.c.created < stamp - REQUEST_RETENTION_S))
            conn.execute(insert(t.requests).values(
                client=request.client, key=request.key, digest=digest, start=start, end=size,
                created=stamp))
        return self._sign_checkpoint(conn, size, root, start)

    def _first_answer(self, conn: Connection, request: AppendRequest, digest: bytes
                      ) -> SignedCheckpoint | None:
        r = t.requests.c
        row = conn.execute(select(r.digest, r.start, r.end).where(
            r.client == request.client, r.key == request.key)).first()
        if row is None:
            return None
        if bytes(row[0]) != digest:
            raise LedgerError("ledger_idempotency_mismatch", key=request.key)
        note = conn.execute(select(t.checkpoints.c.note)
                            .where(t.checkpoints.c.size == row[2])).scalar()
        if note is None:  # every batch's checkpoint is kept: this database lost one
            raise StoreError("ledger_checkpoint_missing", size=int(row[2]))
        cp = parse_checkpoint(parse_note(str(note)).text)
        return SignedCheckpoint(cp, str(note), int(row[1]), int(row[2]), replayed=True)

    def _sign_checkpoint(self, conn: Connection, size: int, root: bytes,
                         start: int) -> SignedCheckpoint:
        assert self.signer is not None
        cp = Checkpoint(self.origin, size, root)
        text = Note(cp.body(), (self.signer.sign(cp.body()),)).encode()
        _insert_checkpoint(conn, size, text)
        return SignedCheckpoint(cp, text, start, size)

    def sign_initial_checkpoint(self) -> SignedCheckpoint:
        """Sign the empty tree's checkpoint once, so witnesses and mirrors can start at 0."""
        with self._write_conn() as conn, conn.begin():
            head = self._head(conn, lock=True)
            have = conn.execute(select(t.checkpoints.c.size)
                                .where(t.checkpoints.c.size == head.size)).first()
            if have is None:
                return self._sign_checkpoint(conn, head.size, head.root, head.size)
        return self.checkpoint(head.size)

    def _pending_cosignatures(self, conn: Connection, limit: int
                              ) -> list[tuple[Table, int, WitnessCosignature]]:
        """Cosignatures not yet on the record, oldest first: those of this log's checkpoints
        (received from witnesses), then those our witness gave to other logs."""
        if limit <= 0:
            return []
        out: list[tuple[Table, int, WitnessCosignature]] = []
        received = conn.execute(
            select(t.cosignatures.c.id, t.cosignatures.c.size, t.cosignatures.c.line,
                   t.checkpoints.c.note)
            .join(t.checkpoints, t.checkpoints.c.size == t.cosignatures.c.size)
            .where(t.cosignatures.c.logged.is_(None))
            .order_by(t.cosignatures.c.id).limit(limit)).all()
        for row_id, size, line, note in received:
            sig = parse_signature_lines(str(line))[0]
            if sig.timestamp is None:  # not a cosignature/v1 (a plain note signature): the
                # entry format has no room for it; -1 keeps it from being picked up again.
                conn.execute(sql_update(t.cosignatures).where(t.cosignatures.c.id == row_id)
                             .values(logged=-1))
                continue
            cp = parse_checkpoint(parse_note(str(note)).text)
            out.append((t.cosignatures, int(row_id), WitnessCosignature(
                origin=cp.origin, size=int(size), root=cp.root, witness=sig.name,
                signature=sig.key_id + sig.signature)))
        if len(out) >= limit:
            return out
        w = t.witness_given.c
        given = conn.execute(select(w.id, w.origin, w.size, w.root, w.witness, w.signature)
                             .where(w.logged.is_(None)).order_by(w.id)
                             .limit(limit - len(out))).all()
        for row_id, origin, size, root, witness, signature in given:
            out.append((t.witness_given, int(row_id), WitnessCosignature(
                origin=str(origin), size=int(size), root=bytes(root), witness=str(witness),
                signature=bytes(signature))))
        return out

    def add_cosignatures(self, size: int, sigs: Iterable[NoteSignature],
                         witness: str | None = None) -> None:
        """Keep one cosignature per witness for the checkpoint of ``size`` (the first: asked
        again, a witness signs again with a new timestamp, which says nothing new). With
        ``witness``, also remember that this witness has now seen ``size`` (same transaction)."""
        sigs = list(sigs)
        with self.engine.begin() as conn:
            for sig in sigs:
                t.insert_new(conn, t.cosignatures, size=size, witness=sig.name, line=sig.line)
            if witness is not None:
                _seen(conn, witness, {sig.key_id for sig in sigs}, size)

    # -- mirroring --------------------------------------------------------------------------

    def append_records(self, leaves: Sequence[bytes]) -> int:
        """Append records copied verbatim from another log (mirrors); returns the new size.

        Each record's header must continue the chain: its sequence number and previous hash.
        """
        with self._write_conn() as conn, conn.begin():
            head = self._head(conn, lock=True)
            n = head.size

            def verbatim(seq: int, prev: bytes) -> bytes:
                leaf = leaves[seq - n]
                if not leaf.startswith(record_prefix(seq, prev)):
                    raise LedgerError("ledger_chain_broken", index=seq)
                return leaf

            # the head keeps the last record's time, as on the log (audit compares them)
            last = record_time(leaves[-1], n + len(leaves) - 1) if leaves else None
            register_kids_of_leaves(conn, leaves, n)
            return _extend(conn, head, len(leaves), verbatim,
                           head.last_time if last is None else last)[0]

    def truncate(self, size: int) -> None:
        """Drop records beyond ``size`` (mirrors only, after a fetched batch failed to verify)."""
        with self._write_conn() as conn, conn.begin():
            head = self._head(conn, lock=True)
            if size >= head.size:
                return
            conn.execute(delete(t.entries).where(t.entries.c.seq >= size))
            for lvl in range(t.NODE_STRIDE, 64, t.NODE_STRIDE):  # the only stored levels
                first = (size >> lvl)  # nodes at this level reaching past ``size`` go
                conn.execute(delete(t.nodes).where(t.nodes.c.id >= t.node_id(lvl, first),
                                                   t.nodes.c.id < t.node_id(lvl + 1, 0)))
            conn.execute(delete(t.checkpoints).where(t.checkpoints.c.size > size))
            # and whose each key is, by the records dropped (a mirror's junk page)
            conn.execute(delete(t.kids).where(t.kids.c.seq >= size))
            source = self._source(conn)
            refs = merkle.range_nodes(0, size) if size else []
            found = source(refs) if refs else {}
            hashes = [found[r] for r in refs]
            last = conn.execute(select(t.entries.c.hash, t.entries.c.leaf)
                                .where(t.entries.c.seq == size - 1)).first() if size else None
            when = record_time(bytes(last[1]), size - 1) if last is not None else 0
            conn.execute(sql_update(t.head).where(t.head.c.id == 1).values(
                size=size, root=merkle.fold(hashes),
                last_hash=bytes(last[0]) if last is not None else ZERO,
                last_time=head.last_time if when is None else when,
                frontier=b"".join(hashes)))

    def store_checkpoint(self, note_text: str) -> None:
        """Record another log's verified checkpoint (mirrors), with its cosignatures."""
        note = parse_note(note_text)
        cp = parse_checkpoint(note.text)
        own = Note(note.text, tuple(s for s in note.signatures if s.name == self.verifier.name))
        others = [s for s in note.signatures if s.name != self.verifier.name]
        with self._write_conn() as conn, conn.begin():
            self._head(conn, lock=True)  # two runs at once would link both to one before
            exists = conn.execute(select(t.checkpoints.c.size)
                                  .where(t.checkpoints.c.size == cp.size)).first()
            if exists is None:
                _insert_checkpoint(conn, cp.size, own.encode())
        self.add_cosignatures(cp.size, others)

    # -- append tokens and witnesses ---------------------------------------------------------

    def add_token(self, name: str, scope: Scope | None = None) -> str:
        """A new token for ``name`` (replacing its earlier one), bound to ``scope``'s office
        when given; returned once, only its hash is kept."""
        check_token_name(name)
        token = "lt_" + secrets.token_urlsafe(32)
        # This writes without the keys, so no open has brought an older schema up to date
        # (before 0006 a token has no office): as ``add_witness``.
        migrate(self.engine)
        with self.engine.begin() as conn:
            c = t.tokens.c
            if scope is not None:
                # A status list is named by its office's code alone (``CODE.N``): two cities
                # given one code (Ciudad Juárez and Ciudad Acuña are both MXCIU by default)
                # could each revoke the other's residents, and a restore would apply it.
                other = conn.execute(select(c.name, c.city, c.country).where(
                    c.code == scope.code, c.name != name,
                    or_(c.city != scope.city, c.country != scope.country))).first()
                if other is not None:
                    raise StoreError("ledger_token_code_taken", office_code=scope.code,
                                     other=str(other[0]), city=str(other[1]),
                                     country=str(other[2]), given=scope.city)
            conn.execute(delete(t.tokens).where(c.name == name))
            conn.execute(insert(t.tokens).values(
                name=name, digest=hashlib.sha256(token.encode()).digest(),
                created=int(time.time()), city=scope.city if scope else None,
                country=scope.country if scope else None, code=scope.code if scope else None))
        return token

    def has_token(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(t.tokens.c.name).where(t.tokens.c.name == name)
                                ).first() is not None

    def revoke_token(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(t.tokens).where(t.tokens.c.name == name)).rowcount)

    def token_client(self, token: str) -> tuple[str, Scope | None] | None:
        """The client a token is, and the office it is bound to (``None``: unbound)."""
        # Looked up by its SHA-256 (unique, indexed): the secret itself is never compared, so
        # there is no timing to leak, and a request costs one index probe, not a table scan.
        digest = hashlib.sha256(token.encode()).digest()
        c = t.tokens.c
        with self.engine.connect() as conn:
            row = conn.execute(select(c.name, c.city, c.country, c.code)
                               .where(c.digest == digest)).first()
        if row is None:
            return None
        name, city, country, code = row
        return str(name), (None if city is None else Scope(str(city), str(country), str(code)))

    def add_witness(self, url: str, vkey: str) -> WitnessAdded:
        """Ask the witness at ``url`` to cosign every new checkpoint with the key ``vkey``.

        The same key again (its address corrected, or added back after ``remove``) keeps the
        size it last cosigned: it has seen that tree, and status would otherwise report it
        behind by the whole log until its next cosignature. A new key under a name the log
        knows (the other city rebuilt its witness) starts over at 0 and takes the place of
        the key in use, which keeps its row without a URL: the cosignatures it gave are on the
        record, and audit checks them with it."""
        url = node_url(url)  # every checkpoint is posted there, its address shown in status
        verifier = witness_key(vkey)
        own = [self.verifier] + ([self.witness_verifier] if self.witness_verifier else [])
        if any(verifier.name == k.name or verifier.public_key == k.public_key for k in own):
            # a cosignature from this node's own key proves nothing: counters and mirrors
            # require the other city's, and would wait for it for ever
            raise UsageError("ledger_witness_is_self", name=verifier.name)
        # This writes without the keys, so no open has brought an older schema up to date:
        # before 0005 a name holds one key, and the new one would collide with the old.
        migrate(self.engine)
        with self._write_conn() as conn, conn.begin():
            # The head lock serializes writers on both backends: two ``witnesses add`` of one
            # name at once must not leave it two keys in use.
            self._head(conn, lock=True)
            w = t.witnesses.c
            before = conn.execute(select(w.url).where(w.name == verifier.name, w.url != "")
                                  ).scalar()
            replaced = _use_witness_key(conn, verifier, url)
        return WitnessAdded(verifier, replaced,
                            None if before is None or before == url else str(before))

    def remove_witness(self, name: str) -> bool:
        """Stop asking the witness ``name``; whether there was one. The cosignatures it gave
        stay (they are on the public record), and so does its key, without a URL, beside any
        key it had before: audit still checks them with it, and tells one not yet logged from
        a row slipped in by someone."""
        w = t.witnesses.c
        with self.engine.begin() as conn:
            return bool(conn.execute(sql_update(t.witnesses).where(w.name == name, w.url != "")
                                     .values(url="")).rowcount)

    def witness_ahead(self, name: str, vkey: str, size: int) -> None:
        """Remember that the witness ``name`` (its key ``vkey``) says it has cosigned ``size``
        records of this log, more than it holds: this database was restored from an old copy
        (or the witness was shown another history). Appends stop until the log holds as many
        (``_append_locked``); ``witnesses remove`` lifts it, once the other city confirms the
        witness is wrong; a size said at a wrong address goes once the witness, asked at its
        right one, answers its own (``_use_witness_key``)."""
        w = t.witnesses.c
        with self._write_conn() as conn, conn.begin():
            conn.execute(sql_update(t.witnesses).where(w.name == name, w.vkey == vkey,
                                                       w.size < size).values(size=size))

    def cosigned_by(self, verifier: Verifier) -> int:
        """The largest tree of this log the witness key ``verifier`` has a cosignature on here:
        what it signed, not what was said for it (a 409's size, ``witness_ahead``)."""
        co = t.cosignatures.c
        with self.engine.connect() as conn:
            for size, line in conn.execute(select(co.size, co.line)
                                           .where(co.witness == verifier.name)
                                           .order_by(co.size.desc())):
                if parse_signature_lines(str(line))[0].key_id == verifier.key_id:
                    return int(size)
        return 0

    def witnesses(self) -> list[tuple[str, str, str, int]]:
        """The witnesses this log asks (not those removed), each with its key in use (not
        those retired): name, key, URL, last size that key cosigned."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.witnesses.c.name, t.witnesses.c.vkey, t.witnesses.c.url,
                                       t.witnesses.c.size).where(t.witnesses.c.url != "")
                                .order_by(t.witnesses.c.name)).all()
        return [(str(a), str(b), str(c), int(d)) for a, b, c, d in rows]


def _use_witness_key(conn: Connection, verifier: Verifier, url: str) -> tuple[Verifier, ...]:
    """Make ``verifier`` its witness's key in use, at ``url``; returns the keys of that name it
    replaces: the one in use, else (a witness removed, then added with a new key) every key
    the name had. Keys are compared parsed, not as typed: one key has one row."""
    w = t.witnesses.c
    rows = {str(vkey): str(at) for vkey, at in conn.execute(
        select(w.vkey, w.url).where(w.name == verifier.name))}
    same = next((vkey for vkey in rows if parse_verifier_key(vkey) == verifier), None)
    in_use = [vkey for vkey, at in rows.items() if at and vkey != same]
    if in_use:  # retired first: a name has one key in use (ux_ledger_witnesses_in_use)
        conn.execute(sql_update(t.witnesses).where(w.name == verifier.name, w.vkey.in_(in_use))
                     .values(url=""))
    if same is None:
        conn.execute(insert(t.witnesses).values(name=verifier.name, vkey=verifier.vkey,
                                                url=url, size=0))
    else:
        # The size stays, a claimed one too (``witness_ahead``), whatever the address: a node
        # restored from an old copy must not have its halt lifted by adding the very witness
        # that says so again (under another spelling of its address, say), or it signs a
        # second tree of sizes already cosigned. A size said at a wrong address is corrected
        # by the witness itself, asked at the right one (``checkpoint --cosign``, or ``serve``
        # at its start): it answers its own, and the log goes on if that is not ahead of it.
        conn.execute(sql_update(t.witnesses).where(w.name == verifier.name, w.vkey == same)
                     .values(url=url))
    # a key in use replaced; else, a name added back with a key it never had replaces them all
    replaced = in_use or (list(rows) if same is None else [])
    return tuple(parse_verifier_key(vkey) for vkey in sorted(replaced))


def _insert_checkpoint(conn: Connection, size: int, note: str) -> None:
    """Store the checkpoint of ``size``, linked to the one stored before it (audit follows
    the links: one deleted from between two others is named)."""
    c = t.checkpoints.c
    prev = conn.execute(select(func.max(c.size)).where(c.size < size)).scalar()
    conn.execute(insert(t.checkpoints).values(size=size, note=note, created=int(time.time()),
                                              prev=prev))


def _seen(conn: Connection, witness: str, key_ids: set[bytes], size: int) -> None:
    """Remember that the key of ``witness`` that made these cosignatures has seen ``size``. By
    key, not by name: a cosignature from a key retired meanwhile (the witness rebuilt with
    another) says nothing of what the new one has seen."""
    w = t.witnesses.c
    keys = [str(vkey) for vkey, in conn.execute(select(w.vkey).where(w.name == witness))
            if parse_verifier_key(str(vkey)).key_id in key_ids]
    if keys:
        conn.execute(sql_update(t.witnesses).where(w.name == witness, w.vkey.in_(keys))
                     .values(size=size))


def _extend(conn: Connection, head: Head, count: int, leaf_for: Callable[[int, bytes], bytes],
            last_time: int) -> tuple[int, bytes]:
    """Write ``count`` records after ``head`` (``leaf_for(seq, prev)`` gives each record's
    bytes), the perfect-subtree hashes they complete at the stored levels, and the new head;
    returns the new size and root. The one sequencing path of appends and mirrors, under the
    head lock the caller holds. Hashing is inlined: this loop runs once per record."""
    n = head.size
    frontier = [head.frontier[i:i + 32] for i in range(0, len(head.frontier), 32)]
    stack = [(lvl, h) for (lvl, _), h in
             zip(merkle.range_nodes(0, n) if n else [], frontier, strict=True)]
    prev = head.last_hash
    rows: list[tuple[int, bytes, bytes]] = []
    node_rows: list[tuple[int, bytes]] = []
    sha = hashlib.sha256
    shift, stride = t.NODE_SHIFT, t.NODE_STRIDE
    for seq in range(n, n + count):
        leaf = leaf_for(seq, prev)
        if len(leaf) > MAX_RECORD:  # e.g. from a node a mirror copies: no page could carry it
            raise LedgerError("ledger_record_too_large", index=seq, size=len(leaf),
                              limit=MAX_RECORD)
        h = sha(b"\x00" + leaf).digest()
        rows.append((seq, leaf, h))
        prev = h
        lvl, idx = 0, seq
        while stack and stack[-1][0] == lvl:
            h = sha(b"\x01" + stack.pop()[1] + h).digest()
            lvl += 1
            idx >>= 1
            if lvl % stride == 0:
                node_rows.append((lvl << shift | idx, h))
        stack.append((lvl, h))
    size = n + count
    root = merkle.fold([h for _, h in stack])
    if rows:
        _insert_many(conn, "ledger_entries", ("seq", "leaf", "hash"), rows)
    if node_rows:
        _insert_many(conn, "ledger_nodes", ("id", "hash"), node_rows)
    conn.execute(sql_update(t.head).where(t.head.c.id == 1).values(
        size=size, root=root, last_hash=prev, last_time=last_time,
        frontier=b"".join(h for _, h in stack)))
    return size, root


def _insert_many(conn: Connection, table: str, columns: Sequence[str],
                 rows: Sequence[tuple[Any, ...]]) -> None:
    """executemany straight on the driver: bulk rows skip SQLAlchemy's per-row processing."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
           f"VALUES ({', '.join([mark] * len(columns))})")
    conn.exec_driver_sql(sql, list(rows))


def _batch_digest(batch: Sequence[Entry]) -> bytes:
    """What an idempotency key is bound to: the entries, canonically encoded."""
    return hashlib.sha256(cbor2.dumps([[e.TYPE, e.fields()] for e in batch],
                                      canonical=True)).digest()

