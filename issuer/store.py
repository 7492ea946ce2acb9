"""The city office's local store: keys sealed at rest, the credential registry, status lists,
catalogs, and trust-bundle versions, in one SQLite database (SQLAlchemy Core) in the office home.

The registry holds no personal data: a credential is its id, status-list position, status, issue
time and a salted commitment (what the ledger publishes). Each change is one transaction.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext

from credential.bundle import (
    CITY_CODE,
    OfficeKey,
    RootKey,
    StatusListInfo,
    TrustBundle,
    sign_bundle,
)
from credential.claims import Claims
from credential.cose import parse_sign1
from credential.disk import disk_trouble
from credential.errors import MalformedInput, PasaporteError, StoreError, UsageError, as_usage
from credential.home import make_folders, refuse_other_role
from credential.ids import ID_LEN, cti_from_id
from credential.keys import (
    KID_LEN,
    b64url,
    check_public_key,
    kid_for,
    new_signing_key,
    seal,
    unb64url,
    unseal,
)
from credential.passport import (
    STATUS_BOUND,
    IssuedCredential,
    StatusRef,
    credential_digest,
    issue,
)
from credential.sqlstore import sqlite_settings
from credential.statuslist import DEFAULT_SIZE, MARKS, MAX_SIZE, StatusList
from credential.text import check_not_garbled, check_utf8, escaped, folded, is_text
from credential.times import check_timezone, day_bounds, first_day, last_day, rfc3339
from issuer.dates import Replaced, office_today, replaced_too_soon, untimely
from issuer.indices import KEY_BYTES, IndexPermutation
from issuer.migrations import HEAD as MIGRATIONS_HEAD
from issuer.publish import check_access, post_entries
from ledger.client import node_url

# the public record's own vocabulary (a status change's reason as the ledger takes it)
from ledger.entries import (
    REASONS,
    STATUSES,
    KeyRegistered,
    check_key_names,
    entry_from_json,
    possession_message,
    public_reason,
)
from schemas import schema

__all__ = ["CREDENTIAL_STATUSES", "LEDGER_END", "LEDGER_TOKEN", "LIST_FLOOR", "REASONS",
           "Issuance", "IssuerStore", "check_credential_id", "check_kid", "check_list_size",
           "check_name", "normal_id", "waiting_turn"]

# W3C's minimum for herd privacy. A list takes this many credentials, to the last entry: its
# indices come from a keyed permutation (issuer.indices), unique without drawing again, so a list
# need not stay sparse for random draws to be cheap (it used to be closed at three quarters).
LIST_SIZE = DEFAULT_SIZE  # entries per status list unless the office chose (``list_size``)
KEY_YEARS = 5
ISSUE_ATTEMPTS = 5
PUBLISH_BATCH = 500
IN_FLIGHT = "ledger_in_flight"  # meta key: the outbox ids of the batch being published
# meta key, "EPOCH:FIRST,…": one more for each restore, whose outbox goes on from the backup's
# ids, as the lost office's did; batches from id FIRST on are named with EPOCH (``_batch_key``)
OUTBOX_EPOCH = "outbox_epoch"
LEDGER_END = "ledger_end"  # meta key: the ledger size just after the last batch known published
LIST_FLOOR = "list_floor"  # meta key: status list numbers the public record already uses
LEDGER_TOKEN = "ledger_token"  # meta key: the ledger's append token, sealed (base64url)
BUSY_TIMEOUT_S = 30.0  # how long a write waits for another process's before giving up
_WAIT_STEP_S = 0.25  # how long SQLite itself waits at a time (see ``IssuerStore.__init__``)
CREDENTIAL_STATUSES = STATUSES
TURNSTILE = "issuer.db-turn"  # in the office home: see ``IssuerStore.make_way``
_TURN = "pasaporte_turnstile"  # a connection's info key: its transaction's turnstile file
_TOKEN = re.compile(r"[!-~]{1,512}")  # what an HTTP Authorization header can carry as is
NAME_MAX = 128  # characters of a city or office name: what the public record takes

metadata = sa.MetaData()
meta = sa.Table("meta", metadata, sa.Column("k", sa.String, primary_key=True),
                sa.Column("v", sa.String, nullable=False))
keys = sa.Table(
    "keys", metadata,
    sa.Column("kid", sa.LargeBinary, primary_key=True),
    sa.Column("role", sa.String, nullable=False),  # root | office
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("office", sa.String, nullable=False),
    sa.Column("valid_from", sa.Integer, nullable=False),
    sa.Column("valid_until", sa.Integer, nullable=False),
    sa.Column("compromised_since", sa.Integer),
    sa.Column("status_list", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("retired_at", sa.Integer),  # when a rotation took over from it (0004)
)
credentials = sa.Table(
    "credentials", metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("kid", sa.LargeBinary, nullable=False),
    sa.Column("list_id", sa.Integer, nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("reason", sa.String),
    sa.Column("issued_at", sa.Integer, nullable=False),
    sa.Column("valid_until", sa.Integer, nullable=False),
    sa.Column("paper", sa.Boolean, nullable=False),
    sa.Column("commitment", sa.LargeBinary, nullable=False),
    sa.Column("commit_salt", sa.LargeBinary, nullable=False),
    sa.Column("valid_from", sa.Integer),  # None: issued before the store kept it (0003)
    sa.UniqueConstraint("list_id", "idx"),
)
catalog = sa.Table(
    "catalog", metadata,
    sa.Column("catalog", sa.String, primary_key=True),
    sa.Column("code", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.UniqueConstraint("catalog", "name"),
)


# Which credential each bulk row became, so that a run cut short (a crash, Ctrl-C, a power cut)
# resumes where it stopped instead of issuing the early rows twice. A row is known by a keyed
# hash of its claims (see ``issuer.bulk.fingerprints``); no claim value is kept.
bulk_fingerprints = sa.Table(
    "bulk_fingerprints", metadata,
    sa.Column("fingerprint", sa.String, primary_key=True),  # keyed hash: see issuer.bulk
    sa.Column("credential_id", sa.String, nullable=False),
)


outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("entry", sa.String, nullable=False),  # ledger JSON entry; never personal data
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("sent", sa.Integer),
)
# The queued entries only (migration 0002): the next batch is found without reading past all
# those sent before.
sa.Index("ix_outbox_unsent", outbox.c.id, sqlite_where=outbox.c.sent.is_(None))


def _batch_key(epoch: str | None, first: int, last: int) -> str:
    """The idempotency key of the outbox batch ``first..last``. A restored office numbers its
    outbox on from the backup, as the lost office did after it: a batch of the same ids would
    have had the lost one's key, and the node, which remembers keys per token for 30 days,
    refused it (422) at every try, the queue stuck behind it. From the restore on, keys carry
    the restore's epoch; batches before it (one in flight at the backup, retried) keep theirs,
    so that a batch the lost office did publish is answered, not appended twice."""
    # Each restore adds its epoch and keeps the earlier ones: a batch queued before a second
    # restore was named by the first one's, and must be again (the node may have answered it).
    named = [(int(since), name) for name, _, since in
             (part.partition(":") for part in (epoch or "").split(",") if part)]
    name = max(((since, name) for since, name in named if since <= first), default=(0, ""))[1]
    return f"outbox-{name}-{first}-{last}" if name else f"outbox-{first}-{last}"


def _no_earlier(compromised_since: int | None, valid_from: int) -> int | None:
    """A compromise time a store recorded before ``mark_compromised`` moved one earlier than
    its key to the key's first moment (a time before 1970 that no bundle can carry) goes
    into bundles as that moment: it refuses the same signatures."""
    return None if compromised_since is None else max(compromised_since, valid_from)


def _same_passphrase(db: sa.Connection, proof: bytes) -> None:
    """Inside a write transaction that seals a secret under the passphrase ``proof`` showed
    (``IssuerStore._passphrase_proof``): refused if the office's passphrase was changed since
    (``reseal``, another clerk's ``issuer passphrase``, committed while this command checked
    and waited). Sealed under the old one, the secret split the office between two
    passphrases: the new one could not issue or publish, and neither could change it again."""
    sealed = db.execute(sa.select(keys.c.sealed).where(keys.c.role == "root")).scalar()
    if sealed is None or bytes(sealed) != proof:
        raise StoreError("passphrase_changed_meanwhile")


def _signed_compromised(issued_at: int, since: int | None) -> bool:
    """Signed at or after its key's compromise time (``since``, see ``_no_earlier``): every
    counter refuses it, whatever its own status, and the office re-issues it."""
    return since is not None and issued_at >= since


# Revoked for one of these, a bulk row's passport is issued anew when its sheet is run again:
# the resident still needs one (a passport lost, a key compromised, an error in printing it;
# unspecified, as before reasons were kept). Revoked for any other (a renewal replaced it,
# fraud, a death, a move, the resident's request), it is ``withdrawn``: issued anew, a re-run
# of the day's sheet gave the resident a second passport beside the desk's renewal, or one to
# the deceased.
REISSUED_AFTER = frozenset({"device_lost", "key_compromise", "data_error", "unspecified"})


def _standing(status: str, reason: str | None, issued_at: int, compromised: int | None,
              key_from: int) -> str:
    """A credential's status as a bulk run weighs it (see ``IssuerStore.bulk_issued``): its
    status, ``withdrawn`` if revoked for a reason not in ``REISSUED_AFTER``, or
    ``key_compromised`` if it was signed at or after its key's compromise time and is not
    revoked."""
    if status == "revoked":
        return "revoked" if (reason or "unspecified") in REISSUED_AFTER else "withdrawn"
    if _signed_compromised(issued_at, _no_earlier(compromised, key_from)):
        return "key_compromised"
    return str(status)


def _compromised(kid: str, since: int) -> dict[str, Any]:
    """The public record's entry for an office key untrusted from ``since``."""
    return {"type": "key_compromised", "kid": kid, "effective": rfc3339(since)}


def set_meta(db: sa.Connection, key: str, value: str) -> None:
    """Set one ``meta`` row, inside the caller's transaction."""
    db.execute(meta.delete().where(meta.c.k == key))
    db.execute(meta.insert().values(k=key, v=value))


def commitment_for(cred_digest: bytes, salt: bytes) -> bytes:
    """Salted commitment published on the ledger: links to nothing without the salt."""
    return hashlib.sha256(b"pasaporte/commitment/v1\x00" + salt + cred_digest).digest()


@dataclass(frozen=True)
class OfficeInfo:
    city: str
    country: str
    code: str
    office: str
    timezone: str | None = None  # IANA; the office's validity days are counted in it


def _checked_reason(reason: str | None) -> str:
    reason = reason or "unspecified"
    if reason not in REASONS:
        raise UsageError("reason_invalid", allowed=", ".join(REASONS))
    return reason


@contextlib.contextmanager
def waiting_turn(home: Path) -> Iterator[None]:
    """The turnstile held shared (see ``IssuerStore.make_way``) by a writer that takes the
    store's write lock outside the engine: a backup's own SQLite connection. Without it a bulk
    run never made way for a backup, which waited as SQLite has it (no turns) and, while the
    run went on, gave up with ``store_busy``."""
    fd = _turnstile(home)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # only ever waits for a run making way: a moment
        yield
    finally:
        os.close(fd)  # another file than the database: SQLite's POSIX locks are not touched


def _turnstile(home: Path) -> int:
    # flock: the kernel's, released when the file is closed or its process dies
    return os.open(home / TURNSTILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _release_turn(_dbapi_conn: Any, record: Any) -> None:
    """A pooled connection going back idle (or closed) holds no turnstile: see ``_begin``."""
    fd = record.info.pop(_TURN, None) if record is not None else None
    if fd is not None:
        os.close(fd)


def _typed(ctx: ExceptionContext) -> None:
    """Driver errors a person can act on, as typed bilingual errors instead of tracebacks.

    SQLite gave up waiting for another writer: ``store_busy`` (nothing was written; try again).
    The disk is full: ``store_full``; the disk could not be read or written (an I/O error, what
    a full disk also gives when SQLite grows its ``-shm`` file): ``store_io_error``. Neither
    says the store is damaged, and a restore is no fix for them (it retires the office key).
    The file is damaged, emptied or not a database at all: ``store_damaged`` (restore it from a
    backup; nothing is rebuilt over it)."""
    exc = ctx.original_exception
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        raise StoreError("store_busy", what="issuer.db") from exc
    database = ctx.engine.url.database if ctx.engine is not None else None
    disk = disk_trouble(exc, Path(database).parent if database else None)
    if disk == "full":
        raise StoreError("store_full", what="issuer.db") from exc
    if disk == "io":
        raise StoreError("store_io_error", what="issuer.db", reason=str(exc)[:200]) from exc
    name = getattr(exc, "sqlite_errorname", None)
    if name == "SQLITE_READONLY" or (name == "SQLITE_CANTOPEN" and not _replaced(ctx)):
        # The file or its folder cannot be written (permissions, a read-only mount): nothing
        # is damaged, and a restore (a new key, every passport since issued again) is no fix.
        raise StoreError("store_not_writable", what="issuer.db",
                         reason=str(exc)[:200]) from exc
    if isinstance(exc, sqlite3.DatabaseError):  # OperationalError included: no such table, …
        raise StoreError("store_damaged", what="issuer.db", reason=str(exc)[:200]) from exc


def _replaced(ctx: ExceptionContext) -> bool:
    """Whether something other than a file is where the store was (a folder): damage, where
    a store that cannot be opened is otherwise a permission or a mount to fix."""
    database = ctx.engine.url.database if ctx.engine is not None else None
    return database is not None and os.path.lexists(database) and not os.path.isfile(database)


def check_list_size(size: object) -> None:
    """A status list size an office may choose: whole bytes of bits, no fewer entries than the
    W3C minimum (herd privacy: a list hides each credential among all its entries), no more
    than a counter inflates."""
    if type(size) is not int or size % 8 or not DEFAULT_SIZE <= size <= MAX_SIZE:
        raise UsageError("list_size_invalid", size=size, min=DEFAULT_SIZE, max=MAX_SIZE)


def check_name(value: str, option: str) -> str:
    """A city or office name as counters will show it: spaces at either end dropped, and
    something visible left. A blank name would publish an office nobody can tell apart, and a
    control character would not go on the public record: refused as a usage error naming the
    option, before the passphrase is asked for or anything is written."""
    # Composed (NFC), as a resident's claims are: a macOS terminal types "Juárez" decomposed,
    # and the root file, every bundle and the public record would spell the city two ways.
    name = check_not_garbled(unicodedata.normalize("NFC", check_utf8(value, option).strip()),
                             option)
    categories = [unicodedata.category(ch) for ch in name]
    # Z*: spaces of every kind; C*: controls, invisible format marks, lone surrogates. Format
    # marks and line separators are refused as in a resident's name: a right-to-left override
    # would have counters show "\u202eetroN" as "Norte", and a soft hyphen make a second
    # "Oficina Norte" that looks like the first.
    if (len(name) > NAME_MAX or not any(c[0] not in "ZC" for c in categories)
            or not is_text(name)):
        raise UsageError("issuer_name_invalid", option=option, max=NAME_MAX)
    return name


def check_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 code as typed (``mx``), upper case. ASCII letters only: ``str.
    isalpha`` takes any script's (``Mé``), which the public record refuses later, as a ledger
    error, or which made a city code the user was then told to fix with a ``--code`` never
    given."""
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise UsageError("usage_error",
                         reason_es="--country debe ser un código ISO de dos letras",
                         reason_en="--country must be a two-letter ISO code")
    return value.upper()


def check_kid(text: str) -> bytes:
    """An office key id as typed (``issuer compromised KID``): base64url of ``KID_LEN`` bytes,
    as ``issuer keys`` prints it. Anything else is a mistake in the command (a usage error,
    before the passphrase is asked for), not a key the office lacks."""
    with as_usage(code="key_invalid"):
        return unb64url(text, length=KID_LEN, what="kid")


def normal_id(text: str) -> str:
    """A credential id as a clerk may type it (lower case, as a wallet accepts it; a space
    copied along) in the one spelling the office stores: ids are upper-case base32
    (``credential.ids``), so case never tells two of them apart."""
    return text.strip().upper()


def check_credential_id(text: str) -> str:
    """A credential id as typed (``issuer revoke ID``), in the spelling the office stores
    (``normal_id``). Every id an office issues, drawn or assigned in a claims file, is
    ``ID_LEN`` base32 characters (``credential.ids``): anything else (a 0 typed for an O, a
    character left out) can name no credential. That is a mistake in the command, said before
    the passphrase is asked for, rather than "no such passport in this office", which a clerk
    could take for a forged one."""
    credential_id = normal_id(text)
    if cti_from_id(credential_id) is None:
        # what was typed, fit for the terminal it is shown on: bounded, no control characters
        shown = escaped(text.strip()[:40])
        raise UsageError("credential_id_invalid", credential_id=shown, length=ID_LEN)
    return credential_id


class IssuerStore:
    def __init__(self, home: Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.home = home
        self.path = home / "issuer.db"
        # Each status list's index permutation, by (key, size): see ``_cursor``.
        self._permutations: dict[tuple[bytes, int], IndexPermutation] = {}
        # Wait for another process's write instead of failing at once (bulk runs, workers):
        # SQLite waits a moment at a time, ``_begin`` the whole ``busy_timeout``, so that a
        # Ctrl-C is acted on within that moment (Python runs no handler while SQLite sleeps).
        self.engine = sa.create_engine(f"sqlite:///{self.path}",
                                       connect_args={"timeout": min(busy_timeout, _WAIT_STEP_S)})
        event.listen(self.engine, "connect", sqlite_settings)
        event.listen(self.engine, "handle_error", _typed)
        self.busy_timeout = busy_timeout
        event.listen(self.engine, "begin", self._begin)
        event.listen(self.engine, "commit", self._end)
        event.listen(self.engine, "rollback", self._end)
        # A transaction can also end without those events: a Connection never closed is rolled
        # back by the pool when it is collected (reset-on-return), and its record, idle in the
        # pool, kept the turnstile held shared, so every ``make_way`` waited out busy_timeout.
        event.listen(self.engine.pool, "checkin", _release_turn)
        event.listen(self.engine.pool, "close", _release_turn)

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def open(cls, home: Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> IssuerStore:
        if not (home / "issuer.db").exists():
            raise StoreError("issuer_not_initialised", home=str(home))
        store = cls(home, busy_timeout=busy_timeout)
        store.migrate()
        return store

    def migrate(self) -> None:
        """Bring the store to the newest schema (Alembic, ``issuer/migrations``): a store made
        by an older release upgrades in place when it is first opened."""
        if _revision(self.path) == MIGRATIONS_HEAD:  # a plain read: no wait for a writer
            return
        with self.engine.begin() as db:
            _upgrade(db, new=False)

    @classmethod
    def create(cls, home: Path, *, city: str, country: str, office: str, code: str,
               passphrase: str, now: int | None = None,
               timezone: str | None = None, list_size: int | None = None) -> IssuerStore:
        if (home / "issuer.db").exists():
            raise StoreError("issuer_exists", home=str(home))
        refuse_other_role(home, "issuer")
        if timezone is not None:
            check_timezone(timezone)
        if list_size is not None:
            check_list_size(list_size)
        country = check_country(country)
        if not CITY_CODE.fullmatch(code):
            raise UsageError("usage_error",
                             reason_es="--code: de 1 a 48 de A-Z a-z 0-9 . _ : - (p. ej. MXMEX)",
                             reason_en="--code must be 1-48 of A-Z a-z 0-9 . _ : - (e.g. MXMEX)")
        city, office = check_name(city, "--city"), check_name(office, "--office")
        now = int(time.time()) if now is None else now
        _check_publishable(city, country, office)
        made_home = make_folders(home)
        database = home / "issuer.db"
        try:
            # Made here, owner-only, before SQLite opens it (its -wal and -shm files take the
            # database's permissions): in an operator's own folder, which keeps its mode, the
            # sealed keys are still no one else's to read. O_EXCL: of two inits, one makes it.
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise StoreError("issuer_exists", home=str(home)) from None
        store = cls(home)
        try:
            store._create(passphrase, city=city, country=country, office=office, code=code,
                          now=now, timezone=timezone, list_size=list_size)
        except BaseException:
            # An init cut short (Ctrl-C, a full disk) must not leave a store without its office
            # key behind: init would refuse it as existing and every other command send the
            # clerk back to init. Nothing was committed, so nothing of the office is lost.
            store.engine.dispose()
            for suffix in ("", "-wal", "-shm", "-journal", "-turn"):  # -turn: TURNSTILE
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            if made_home:
                with contextlib.suppress(OSError):
                    home.rmdir()
            raise
        return store

    def _create(self, passphrase: str, *, city: str, country: str, office: str, code: str,
                now: int, timezone: str | None, list_size: int | None) -> None:
        root = new_signing_key()
        # the schema, the office's first rows and its first key: one transaction
        with self.engine.begin() as db:
            _upgrade(db, new=True)
            db.execute(meta.insert(), [
                {"k": "city", "v": city}, {"k": "country", "v": country.upper()},
                {"k": "code", "v": code}, {"k": "office", "v": office},
                {"k": "bundle_version", "v": "0"}, {"k": "created", "v": str(now)},
                *([{"k": "timezone", "v": timezone}] if timezone is not None else []),
                *([{"k": "list_size", "v": str(list_size)}] if list_size is not None else [])])
            db.execute(keys.insert().values(
                kid=kid_for(bytes(root.verify_key)), role="root",
                public_key=bytes(root.verify_key), sealed=seal(bytes(root), passphrase),
                office=office, valid_from=now, valid_until=now + 20 * 365 * 86400,
                status_list=0, active=True))
            self._insert_office_key(db, passphrase, office, now, new=True)

    def add_office_key(self, passphrase: str, *, office: str | None = None,
                       now: int | None = None) -> bytes:
        """A new active key (with its own status list) for one office, ``office`` or the
        city's only one (``resolve_office``); that office's older keys retire, other offices'
        keys stay active."""
        proof = self._passphrase_proof(passphrase)  # before changing anything
        return self._add_office_key(passphrase, proof, office,
                                    int(time.time()) if now is None else now, new=False)

    def add_office(self, passphrase: str, office: str, *, now: int | None = None) -> bytes:
        """A new issuing office of the city: its first key (and status list), beside the other
        offices' keys, all under the one root. An office that already has a key is refused:
        a new key for it is ``add_office_key`` (``issuer rotate``)."""
        office = check_name(office, "--office")
        now = int(time.time()) if now is None else now
        info = self.info()
        _check_publishable(info.city, info.country, office)
        proof = self._passphrase_proof(passphrase)  # before changing anything
        return self._add_office_key(passphrase, proof, office, now, new=True)

    def _add_office_key(self, passphrase: str, proof: bytes, office: str | None, now: int, *,
                        new: bool) -> bytes:
        with self._sealing(proof) as db:
            return self._insert_office_key(db, passphrase, office, now, new=new)

    @contextlib.contextmanager
    def _sealing(self, proof: bytes) -> Iterator[sa.Connection]:
        """The write transaction of a command that seals a secret under the passphrase
        ``proof`` showed (``_passphrase_proof``), refused if it changed since
        (``_same_passphrase``)."""
        with self.engine.begin() as db:
            _same_passphrase(db, proof)
            yield db

    def _passphrase_proof(self, passphrase: str) -> bytes:
        """The root key's sealed bytes, once ``passphrase`` has opened them: a command that
        seals a new secret under it (a key, the ledger token) checks in its write transaction
        that they are still those (``_same_passphrase``)."""
        with self.engine.connect() as db:
            sealed = db.execute(sa.select(keys.c.sealed).where(keys.c.role == "root")).scalar()
        if sealed is None:
            raise StoreError("issuer_not_initialised", home=str(self.home))
        unseal(sealed, passphrase)
        return bytes(sealed)

    def _insert_office_key(self, db: sa.Connection, passphrase: str, office: str | None,
                           now: int, *, new: bool) -> bytes:
        """``_add_office_key`` inside the caller's transaction (``create``'s: an office is
        never made without its first key)."""
        key = new_signing_key()
        kid = kid_for(bytes(key.verify_key))
        if db.execute(sa.select(keys.c.kid).where(keys.c.kid == kid)).first() is not None:
            raise StoreError("store_error")  # a 4-byte kid collision within one office
        # Decided inside the write transaction: two clerks adding one office at once make
        # one office, not two with one name.
        if new and office is not None:
            taken = _match(office, _office_names(db))
            if taken is not None:
                raise StoreError("issuer_office_exists", office=taken)
        elif _office_names(db):
            office = _resolve_office(db, office)
        # The key this one takes over from: the office's active one, or, after ``compromised``
        # (which retires it at once), its newest: the public record must say which key replaced
        # a compromised one, the case auditors most need it for.
        previous = db.execute(sa.select(keys.c.kid).where(
            (keys.c.role == "office") & (keys.c.office == office))
            .order_by(keys.c.active.desc(), keys.c.valid_from.desc(),
                      sa.literal_column("keys.rowid").desc()).limit(1)).scalar()
        next_list = self._next_list(db)
        info = {k: v for k, v in db.execute(sa.select(meta.c.k, meta.c.v))}
        office = office or info["office"]
        # Only this office's keys retire: the city's other offices go on issuing. A retired
        # key's window closes now, in the store and so in every bundle from this one: what it
        # signed stays good, and what a copy of the store kept from before (an old laptop, a
        # backup) signs with it from now on is refused at counters (key_not_valid_at_issuance).
        # Left open, it was accepted until the key's five years were up.
        mine = (keys.c.role == "office") & (keys.c.office == office)
        # A clock behind what the office already recorded (NTP not synced yet, a restore onto
        # a PC set a month back) closed its keys' windows before the passports they signed:
        # every one refused at counters once the bundle went out, the office still calling
        # them valid. Refused instead, nothing changed.
        # (Only what its keys signed: a key made while the clock ran ahead has a first moment
        # a right clock is behind, and a rotation is what replaces it.)
        signed = db.execute(sa.select(sa.func.max(credentials.c.issued_at)).where(
            credentials.c.kid.in_(sa.select(keys.c.kid).where(mine)))).scalar()
        if not new and signed is not None and now < signed:
            raise StoreError("issuer_clock_behind_records", now=rfc3339(now),
                             latest=rfc3339(signed), office=office)
        db.execute(keys.update().where(mine & keys.c.active).values(active=False, retired_at=now))
        db.execute(keys.update().where(mine & (keys.c.valid_until > now))
                   .values(valid_until=sa.func.max(now, keys.c.valid_from)))
        db.execute(keys.insert().values(
            kid=kid, role="office", public_key=bytes(key.verify_key),
            sealed=seal(bytes(key), passphrase), office=office,
            valid_from=now, valid_until=now + KEY_YEARS * 365 * 86400,
            status_list=next_list, active=True))
        self._queue(db, now, {
            "type": "key_registered", "kid": b64url(kid),
            "public_key": b64url(bytes(key.verify_key)), "city": info["city"],
            "country": info["country"], "office": office,
            "valid_from": rfc3339(now), "valid_until": rfc3339(now + KEY_YEARS * 365 * 86400)})
        if previous is not None:
            self._queue(db, now, {"type": "key_rotated", "kid": b64url(kid),
                                  "replaces": b64url(previous)})
        return kid

    def mark_compromised(self, kid_text: str, since: int, passphrase: str) -> tuple[int, bool]:
        """Record that an office key leaked at ``since``: counters will refuse credentials it
        signed from then on (earlier ones stay valid). Rotate first so the office can go on.
        Returns the time the key is compromised since, and whether this call changed it.

        A time before the key was made is recorded as the key's first moment, which refuses
        the same (counters refuse a signature dated before its key anyway): "1900-01-01",
        typed for "from the start", went into every later bundle as a time before 1970 that no
        bundle can carry, and the city could publish no bundle again. A compromise time only
        ever moves earlier (the leak was found to have begun sooner): moved later, the next
        bundles would let counters accept again what the thief signed in between, so that is
        refused (``issuer_compromise_later``)."""
        kid = check_kid(kid_text)
        self.root_signing_key(passphrase)
        with self.engine.begin() as db:  # read and write in one locked transaction
            row = db.execute(sa.select(keys.c.compromised_since, keys.c.valid_from).where(
                (keys.c.kid == kid) & (keys.c.role == "office"))).first()
            if row is None:
                raise StoreError("issuer_key_unknown", kid=b64url(kid))
            # A stored time before the key (an earlier release kept "1900-01-01" as typed)
            # means its first moment too: compared so, it is "unchanged", not "moved later".
            current, since = _no_earlier(row[0], row[1]), max(since, row[1])
            if current is not None and since > current:
                raise StoreError("issuer_compromise_later", kid=b64url(kid),
                                 current=rfc3339(current), since=rfc3339(since))
            if current == since:
                return since, False
            db.execute(keys.update().where(keys.c.kid == kid)
                       .values(compromised_since=since, active=False))
            # the kid as the office prints it: one key, one spelling on the public record
            self._queue(db, int(time.time()), _compromised(b64url(kid), since))
        return since, True

    def mark_lost_keys_compromised(self, kids: Sequence[str], since: int,
                                   passphrase: str) -> None:
        """Put on the public record that keys this store never held are compromised from
        ``since``: keys a lost office made after the backup this store was restored from."""
        self.root_signing_key(passphrase)
        with self.engine.begin() as db:
            self._queue(db, int(time.time()), *(_compromised(kid, since) for kid in kids))

    # -- the public record -------------------------------------------------------------------
    @staticmethod
    def _queue(db: sa.Connection, now: int, *entries: dict[str, Any]) -> None:
        IssuerStore._queue_at(db, [(now, e) for e in entries])

    @staticmethod
    def _queue_at(db: sa.Connection, entries: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Queue ``(time, entry)`` pairs for the ledger, in this order. Checked against the
        ledger's own entry types here, inside the change's transaction: an entry the ledger
        would refuse must fail the change now, not block every later publication from the
        outbox."""
        for _, e in entries:
            entry_from_json(e)
        if entries:
            db.execute(outbox.insert(), [{"entry": json.dumps(e, sort_keys=True),
                                          "created": now} for now, e in entries])

    def pending(self, first: int = 0, last: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """Queued entries not yet on the ledger (ids ``first``..``last``), oldest first."""
        query = sa.select(outbox.c.id, outbox.c.entry).where(outbox.c.sent.is_(None),
                                                              outbox.c.id >= first)
        if last is not None:
            query = query.where(outbox.c.id <= last)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(outbox.c.id)).all()
        return [(row[0], json.loads(row[1])) for row in rows]

    def configure_ledger(self, url: str, token: str, passphrase: str, *,
                         check: bool = True) -> PasaporteError | None:
        """Point the office's public record at the node ``url``, appending with ``token``.
        With ``check`` the node is asked first (``issuer.publish.check_access``): a token it
        refuses is not saved (``ledger_token_refused``); one it could not be asked about is
        saved, and the warning returned (an office may be set up before its network is)."""
        # Checked before it is saved: a URL that cannot be sent to would otherwise make every
        # later change fail at its publication step, after the change itself was done.
        url = node_url(url)
        if not _TOKEN.fullmatch(token):
            raise UsageError("ledger_token_invalid")
        proof = self._passphrase_proof(passphrase)  # only the office may point its record
        # elsewhere; after the passphrase: the token goes to the node only on the office's word
        info = self.info()
        warning = check_access(url, token, (info.city, info.country, info.code)) if check else None
        with self._sealing(proof) as db:
            db.execute(meta.delete().where(meta.c.k.in_(("ledger_url", LEDGER_TOKEN))))
            db.execute(meta.insert(), [
                {"k": "ledger_url", "v": url},
                {"k": LEDGER_TOKEN, "v": b64url(seal(token.encode(), passphrase))}])
        return warning

    def queued(self) -> int:
        """How many entries wait for the ledger (one count over the unsent index)."""
        with self.engine.connect() as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(outbox)
                                  .where(outbox.c.sent.is_(None))).scalar_one())

    def publish(self, passphrase: str, *, now: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                total: int | None = None) -> int:
        """Push queued entries to the ledger in batches; returns how many were sent.
        ``progress(sent, total)`` after each batch: a backlog of a million is minutes
        (``total``: how many the caller already counted queued, else counted here)."""
        with self.engine.connect() as db:
            m = {k: v for k, v in db.execute(sa.select(meta.c.k, meta.c.v))}
        if "ledger_url" not in m:
            raise StoreError("ledger_not_configured")
        token = unseal(unb64url(m[LEDGER_TOKEN]), passphrase).decode()
        sent = 0
        if total is None:
            total = self.queued() if progress is not None else 0
        while flight := self._in_flight():
            first, last = flight
            batch = self.pending(first, last)
            end = None
            if batch:
                # The key names the batch: after a lost answer or a crash the same key goes
                # out with the same entries, and the ledger appends them once.
                # (an entry an earlier release queued with a reason the node now refuses on
                # the public record goes as the public one, as those queued since do)
                entries = [{**e, "reason": public_reason(e["reason"])}
                           if e.get("type") == "status_changed" and "reason" in e else e
                           for _, e in batch]
                answer = post_entries(m["ledger_url"], token, entries,
                                      idempotency_key=_batch_key(m.get(OUTBOX_EPOCH), first,
                                                                 last),
                                      possession=self._possession(entries, passphrase))
                end = answer.get("end")
            with self.engine.begin() as db:
                db.execute(outbox.update().where(outbox.c.id.in_([i for i, _ in batch]))
                           .values(sent=int(time.time()) if now is None else now))
                # Where a restore reads the ledger on from. Only a whole number counts:
                # ``isinstance`` would take JSON ``true`` (saved as "True", which a restore's
                # catch-up cannot read) and a negative one is no ledger position.
                if type(end) is int and end >= 0:
                    set_meta(db, LEDGER_END, str(end))
                # only our batch's record: another publisher may have recorded the next one
                db.execute(meta.delete().where(meta.c.k == IN_FLIGHT,
                                               meta.c.v == f"{first}-{last}"))
            sent += len(batch)
            if progress is not None:  # others may queue meanwhile: never more sent than all
                total = max(total, sent)
                progress(sent, total)
        return sent

    def _possession(self, entries: list[dict[str, Any]], passphrase: str) -> dict[int, bytes]:
        """Each key registration in ``entries`` signed by the key it registers: a node holds a
        token bound to this office to registering only keys the office shows it holds. Signed
        when sent, not when queued: what an earlier release queued is proven too. (Ed25519 is
        deterministic: a batch sent again carries the same proofs.)"""
        proofs: dict[int, bytes] = {}
        for index, item in enumerate(entries):
            if item.get("type") != "key_registered":
                continue
            entry = entry_from_json(item)
            assert isinstance(entry, KeyRegistered)
            kid = unb64url(entry.kid)
            with self.engine.connect() as db:
                held = db.execute(sa.select(keys.c.kid).where(keys.c.kid == kid)).first()
            if held is not None:  # (a key not this store's has no proof to give)
                key = self._unsealed(keys.c.kid == kid, passphrase)[1]
                proofs[index] = key.sign(possession_message(entry)).signature
        return proofs

    def _in_flight(self) -> tuple[int, int] | None:
        """The batch being published (ids first..last): the one recorded by an earlier run that
        did not finish, else the next queued entries, recorded now. ``None`` when all is sent."""
        with self.engine.begin() as db:  # BEGIN IMMEDIATE: one publisher picks a batch
            row = db.execute(sa.select(meta.c.v).where(meta.c.k == IN_FLIGHT)).first()
            if row is not None:
                first, _, last = str(row[0]).partition("-")
                return int(first), int(last)
            ids = db.execute(sa.select(outbox.c.id).where(outbox.c.sent.is_(None))
                             .order_by(outbox.c.id).limit(PUBLISH_BATCH)).scalars().all()
            if not ids:
                return None
            db.execute(meta.insert().values(k=IN_FLIGHT, v=f"{ids[0]}-{ids[-1]}"))
            return ids[0], ids[-1]

    def ledger_configured(self) -> bool:
        return self.ledger_url() is not None

    def ledger_url(self) -> str | None:
        with self.engine.connect() as db:
            url = db.execute(sa.select(meta.c.v).where(meta.c.k == "ledger_url")).scalar()
        return None if url is None else str(url)

    # -- reads -------------------------------------------------------------------------------
    def info(self) -> OfficeInfo:
        with self.engine.connect() as db:
            m = {k: v for k, v in db.execute(sa.select(meta.c.k, meta.c.v))}
        return OfficeInfo(m["city"], m["country"], m["code"], m["office"], m.get("timezone"))

    def root(self) -> RootKey:
        info = self.info()
        with self.engine.connect() as db:
            pub = db.execute(sa.select(keys.c.public_key).where(keys.c.role == "root")).scalar_one()
        return RootKey(info.city, info.country, info.code, pub)

    def office_keys(self, *, now: int | None = None) -> list[dict[str, Any]]:
        """The office keys, oldest first, each with its status at ``now``: a key past its
        ``valid_until`` is ``expired`` even while still the active one (it signs nothing more:
        see ``_issue_once``), and one before its ``valid_from`` (the clock went back) is
        ``not_yet_valid``."""
        now = int(time.time()) if now is None else now
        with self.engine.connect() as db:
            # Keys made in one second (``init`` then ``office add``) in the order they were
            # made: SQLite's rowid, which SQL would not promise for ties otherwise.
            rows = db.execute(sa.select(keys).where(keys.c.role == "office")
                              .order_by(keys.c.valid_from, sa.literal_column("keys.rowid"))
                              ).mappings().all()
        out = []
        for r in rows:
            # A key rotated away had its window closed then (``_add_office_key``): retired,
            # not "expired" a second later. One whose five years ran out first stays expired.
            # (Retired with the clock ahead, past the window's end, then the clock set right:
            # retired still, not "active".)
            ran_out = (r["retired_at"] is not None and r["retired_at"] > r["valid_until"]
                       and now > r["valid_until"])
            status = ("compromised" if r["compromised_since"] is not None
                      else "retired" if not r["active"] and not ran_out
                      else "expired" if now > r["valid_until"]
                      else "not_yet_valid" if now < r["valid_from"]
                      else "active")
            out.append({"kid": b64url(r["kid"]), "public_key": b64url(r["public_key"]),
                        "office": r["office"], "status": status, "status_list": r["status_list"],
                        "valid_from": r["valid_from"], "valid_until": r["valid_until"],
                        # as bundles carry it (an earlier release kept "1900-01-01" as typed)
                        "compromised_since": _no_earlier(r["compromised_since"],
                                                         r["valid_from"])})
        return out

    def _unsealed(self, where: Any, passphrase: str) -> tuple[bytes, nacl.signing.SigningKey]:
        """The key matching ``where``: its kid and the unsealed signing key."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(keys.c.kid, keys.c.sealed).where(where)).first()
        if row is None:
            raise StoreError("issuer_not_initialised", home=str(self.home))
        return row[0], nacl.signing.SigningKey(unseal(row[1], passphrase))

    def set_timezone(self, timezone: str, passphrase: str) -> str | None:
        """Count the validity days of what is issued from now on in ``timezone``; returns the
        zone before (None: UTC). What was issued keeps its days: each passport carries its own
        first and last instants, and counters read its days from those alone. The passphrase
        (the root key's) is what says this is the office's own clerk."""
        check_timezone(timezone)
        self.root_signing_key(passphrase)
        with self.engine.begin() as db:
            before = db.execute(sa.select(meta.c.v).where(meta.c.k == "timezone")).scalar()
            set_meta(db, "timezone", timezone)
        return None if before is None else str(before)

    def root_signing_key(self, passphrase: str) -> nacl.signing.SigningKey:
        return self._unsealed(keys.c.role == "root", passphrase)[1]

    def catalogs(self) -> dict[str, dict[int, str]]:
        """The names the office has catalogued (city, library system, clinic network): each
        catalogue's names by code, in the order the office first used them."""
        found: dict[str, dict[int, str]] = {}
        with self.engine.connect() as db:
            for which, code, name in db.execute(sa.select(
                    catalog.c.catalog, catalog.c.code, catalog.c.name).order_by(catalog.c.code)):
                found.setdefault(str(which), {})[int(code)] = str(name)
        return found

    def offices(self) -> list[str]:
        """The city's issuing offices (those with a key), in the order they were made."""
        with self.engine.connect() as db:
            return _office_names(db)

    def resolve_office(self, office: str | None) -> str:
        """The office a command acts for: ``office`` as the store spells it, or, when none is
        given, the city's one office with an active key (or its one office at all). Several
        without a name is a usage error (``--office`` is missing); a name the city has no office
        by is refused (``StoreError``, as an unknown key or credential is); both list the
        offices."""
        with self.engine.connect() as db:
            if not _office_names(db):
                raise StoreError("issuer_not_initialised", home=str(self.home))
            return _resolve_office(db, office)

    def office_signing_key(self, passphrase: str, *, office: str | None = None
                           ) -> tuple[bytes, nacl.signing.SigningKey]:
        """The active key of ``office`` (``resolve_office``): its kid and signing key."""
        with self.engine.connect() as db:
            if not _office_names(db):
                raise StoreError("issuer_not_initialised", home=str(self.home))
            name = _resolve_office(db, office)
            if db.execute(sa.select(keys.c.kid).where(
                    (keys.c.role == "office") & keys.c.active & (keys.c.office == name))
                          ).first() is None:
                # the office's last key was marked compromised: it needs a new one, not init
                raise StoreError("issuer_no_active_key", office=name)
        return self._unsealed((keys.c.role == "office") & keys.c.active & (keys.c.office == name),
                              passphrase)

    # -- issuance ----------------------------------------------------------------------------
    def issue(self, claims: Claims, *, holder_key: bytes | None, passphrase: str,
              now: int | None = None, signing: tuple[bytes, nacl.signing.SigningKey]
              | None = None, bulk_row: tuple[str, str | None] | None = None,
              before_commit: Callable[[IssuedCredential], None] | None = None,
              office: str | None = None, replaces: tuple[str, str] | None = None
              ) -> IssuedCredential:
        """Sign and register one credential (its salted commitment queued for the ledger),
        with the active key of ``office`` (``resolve_office``) unless ``signing`` is given.

        ``bulk_row`` (the row's fingerprint, the credential it replaces or None) records which
        bulk row the credential is, exactly once: another run that got there first is refused
        here, inside the serialized transaction, not by an earlier read; ``before_commit`` runs
        inside the transaction (a bulk run writes the credential file there): if it
        raises, nothing is issued. A key whose ``valid_until`` is before ``now`` signs nothing
        (``issuer_key_expired``), nor one whose ``valid_from`` is after it
        (``issuer_key_not_yet_valid``): counters would refuse it all.

        ``replaces`` (a credential id, a reason) revokes that credential in the same
        transaction: a resident's new phone, corrected data. Either the new one is issued and
        the old one revoked, or neither: never two in force, never none.

        One credential is ``issue_many`` of one: the same transaction, checks and records."""
        def then(creds: list[IssuedCredential]) -> None:
            if before_commit is not None:
                before_commit(creds[0])

        return self.issue_many([Issuance(claims, holder_key, bulk_row)], passphrase=passphrase,
                               now=now, signing=signing, before_commit=then, office=office,
                               replaces=replaces)[0]

    def issue_many(self, items: Sequence[Issuance], *, passphrase: str, now: int | None = None,
                   signing: tuple[bytes, nacl.signing.SigningKey] | None = None,
                   before_commit: Callable[[list[IssuedCredential]], None] | None = None,
                   office: str | None = None, replaces: tuple[str, str] | None = None
                   ) -> list[IssuedCredential]:
        """``issue`` for several credentials in one transaction: all of them are issued, or,
        if any check refuses one or ``before_commit`` (run inside the transaction with them
        all, in order) raises, none. Each is stamped, placed and recorded as ``issue`` would
        have done them one after another, and the ledger entries queued are the same, in the
        same order. The store's write lock is held throughout: a bulk run keeps its groups to
        a fraction of a second, so another clerk's ``issue`` never waits long. ``replaces``: see
        ``issue``."""
        if not items:
            return []
        if replaces is not None:  # before any key is unsealed: a usage error, said at once
            replaces = (check_credential_id(replaces[0]), _checked_reason(replaces[1]))
        for item in items:
            if item.holder_key is not None:
                check_public_key(item.holder_key, "holder key")
        kid, key = signing or self.office_signing_key(passphrase, office=office)
        # Should two workers take the same index or add the same catalogue name at once, the
        # loser's transaction rolls back whole and simply tries again, reading the other's
        # counters.
        for attempt in range(ISSUE_ATTEMPTS):
            try:
                return self._issue_group(items, now, kid, key, before_commit, replaces)
            except sa.exc.IntegrityError:
                if attempt == ISSUE_ATTEMPTS - 1:
                    raise StoreError("store_error") from None
        raise AssertionError("unreachable")

    def make_way(self) -> None:
        """Between the transactions of a long run (a bulk run's groups): let whoever waits for
        the store's write lock go first. SQLite gives no turns: a waiting writer tries again
        every 100 ms or so, and a run that begins its next transaction at once after each
        commit keeps taking the lock before it, for minutes, up to its ``store_busy``. Every
        transaction holds the turnstile shared from before it waits for the lock to its end
        (``_begin``): taking it exclusive waits for them all (for a ``busy_timeout`` at most,
        then the run goes on, waiting as SQLite has it)."""
        deadline = time.monotonic() + self.busy_timeout
        fd = _turnstile(self.home)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:  # someone's turn: theirs first
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.005)
        finally:
            os.close(fd)


    def _begin(self, conn: sa.Connection) -> None:
        """Take the write lock when a transaction starts, not at its first write: a worker then
        never reads a snapshot that another worker's commit has made stale. Waiting for it, and
        holding it, the turnstile is held shared (see ``make_way``)."""
        self._end(conn)  # (had a transaction ended unseen, its file would be held for good)
        fd = _turnstile(self.home)
        conn.info[_TURN] = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # only ever waits for a run making way: a moment
            deadline = time.monotonic() + self.busy_timeout
            while True:
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    break
                except StoreError as exc:  # store_busy after one step: again, till the deadline
                    if exc.code != "store_busy" or time.monotonic() >= deadline:
                        raise
        except BaseException:
            self._end(conn)
            raise

    @staticmethod
    def _end(conn: sa.Connection) -> None:
        try:
            info = conn.info
        except sa.exc.PendingRollbackError:
            # Invalidated by an interrupt inside a statement (Ctrl-C): reading its info raised
            # this in place of the KeyboardInterrupt ("unexpected error", exit 1). The pool's
            # checkin or close releases the turnstile of such a one (``_release_turn``).
            return
        fd = info.pop(_TURN, None)
        if fd is not None:
            os.close(fd)

    @staticmethod
    def _replaced(db: sa.Connection, credential_id: str) -> Replaced | None:
        """The record's days of a credential being replaced (``None``: not on record, which
        the revocation that follows refuses)."""
        row = db.execute(sa.select(credentials.c.valid_from, credentials.c.valid_until)
                         .where(credentials.c.id == credential_id)).first()
        if row is None:
            return None
        return Replaced(credential_id, None if row[0] is None else first_day(row[0]),
                        last_day(row[1]))

    def _issue_group(self, items: Sequence[Issuance], now: int | None, kid: bytes,
                     key: nacl.signing.SigningKey,
                     before_commit: Callable[[list[IssuedCredential]], None] | None,
                     replacing: tuple[str, str] | None = None) -> list[IssuedCredential]:
        with self.engine.begin() as db:  # BEGIN IMMEDIATE: the store's write lock from here
            # Read once for the whole group: no other writer changes them while this
            # transaction holds the lock.
            settings = {str(k): str(v) for k, v in db.execute(
                sa.select(meta.c.k, meta.c.v).where(meta.c.k.in_(("code", "timezone"))))}
            code, zone = settings["code"], settings.get("timezone")
            size = self._list_size(db)
            list_id, valid_from, valid_until, active, compromised = db.execute(
                sa.select(keys.c.status_list, keys.c.valid_from, keys.c.valid_until,
                          keys.c.active, keys.c.compromised_since)
                .where(keys.c.kid == kid)).one()
            # A key unsealed earlier (a bulk run's, for all its rows) may have been rotated
            # away or marked compromised since: what it signs now would be refused at
            # counters, or is no longer the office's to sign. The run stops; run again, it
            # resumes with the key in force.
            if compromised is not None or not active:
                raise StoreError("issuer_key_retired", kid=b64url(kid))
            list_id = int(list_id)
            codes = _CatalogCodes(db)
            cursors: dict[int, _ListCursor] = {}
            claimed = self._bulk_claims(db, [i.bulk_row[0] for i in items
                                             if i.bulk_row is not None])
            assigned: set[str] = set()
            creds: list[IssuedCredential] = []
            registry: list[dict[str, Any]] = []
            entries: list[tuple[int, dict[str, Any]]] = []
            rows: list[dict[str, str]] = []
            replaced = None if replacing is None else self._replaced(db, replacing[0])
            for number, item in enumerate(items):
                # The issuance time is read holding the lock: a backup holds it while it copies
                # and until its cutoff second has passed, so a credential stamped before the
                # cutoff is always in the copy (read earlier, one could wait out the backup and
                # commit afterwards with an earlier time, in neither the copy nor its aftermath).
                stamp = int(time.time()) if now is None else now
                # A counter accepts a credential only if its key was valid when it was issued
                # (verifier.engine: valid_from <= iat <= valid_until), and then for the
                # credential's whole validity, even past the key's end. So only the key's window
                # at issuance matters: one signed outside it would be refused at every counter.
                # Before the key's start means this computer's clock went back (a dead CMOS
                # battery, a restore onto a machine set wrong) after the key was made.
                if stamp > valid_until:
                    raise StoreError("issuer_key_expired", kid=b64url(kid),
                                     valid_until=rfc3339(valid_until))
                if stamp < valid_from:
                    raise StoreError("issuer_key_not_yet_valid", kid=b64url(kid),
                                     valid_from=rfc3339(valid_from), now=rfc3339(stamp))
                cursor = cursors.get(list_id)
                if cursor is None:
                    cursor = cursors[list_id] = self._cursor(db, list_id, size)
                if cursor.used >= size:  # every index taken
                    # A full list rolls over to a new one for the same key: a city of a million
                    # residents needs several lists, and that is no reason to rotate its key.
                    # The older lists stay in every bundle (see ``bundle``).
                    list_id = self._next_list(db)
                    db.execute(keys.update().where(keys.c.kid == kid)
                               .values(status_list=list_id))
                    cursor = cursors[list_id] = self._cursor(db, list_id, size)
                claims = item.claims
                since, until = day_bounds(claims.valid_from, claims.valid_until, zone)  # as
                # stored; by the office's own day: a year mistyped (2016 for 2026, a birth in 2062)
                today = office_today(zone, now=stamp)
                refused = untimely(claims, today) or (
                    None if replaced is None else replaced_too_soon(claims, replaced, today))
                if refused is not None:
                    raise refused
                index = cursor.take(db, len(items) - number)
                cti = None
                if claims.credential_id is not None:  # assigned by the office: must be new
                    if claims.credential_id in assigned or db.execute(
                            sa.select(credentials.c.id).where(
                                credentials.c.id == claims.credential_id)).first() is not None:
                        raise StoreError("credential_exists",
                                         credential_id=claims.credential_id)
                    assigned.add(claims.credential_id)
                    cti = cti_from_id(claims.credential_id)
                cred = issue(claims, key=key, kid=kid, iss=code, holder_key=item.holder_key,
                             status=StatusRef(list_id, index), issued_at=stamp, cti=cti,
                             catalog=codes.of(claims), timezone=zone)
                salt = os.urandom(32)
                commitment = commitment_for(credential_digest(parse_sign1(cred.cose)), salt)
                registry.append(dict(
                    id=cred.credential_id, kid=kid, list_id=list_id, idx=index, status="valid",
                    reason=None, issued_at=stamp, valid_from=since, valid_until=until,
                    paper=item.holder_key is None, commitment=commitment, commit_salt=salt))
                entries.append((stamp, {"type": "credential_issued",
                                        "commitment": b64url(commitment)}))
                if item.bulk_row is not None:  # a row issued again (its first one revoked) moves
                    fingerprint, replaces = item.bulk_row
                    if claimed.get(fingerprint) != replaces:
                        raise StoreError("bulk_row_taken")
                    claimed[fingerprint] = cred.credential_id
                    rows.append({"fingerprint": fingerprint,
                                 "credential_id": cred.credential_id})
                creds.append(cred)
            for cursor in cursors.values():
                cursor.save(db)
            db.execute(credentials.insert(), registry)
            self._queue_at(db, entries)
            if replacing is not None:  # its ledger entry after the new credential's
                self._change_status(db, replacing[0], "revoked", replacing[1], entries[-1][0])
            if rows:
                prints = [r["fingerprint"] for r in rows]
                for start in range(0, len(prints), 500):
                    db.execute(bulk_fingerprints.delete().where(
                        bulk_fingerprints.c.fingerprint.in_(prints[start:start + 500])))
                db.execute(bulk_fingerprints.insert(), rows)
            if before_commit is not None:
                before_commit(creds)
        return creds

    @staticmethod
    def _bulk_claims(db: sa.Connection, prints: list[str]) -> dict[str, str]:
        """Which credential each of these bulk rows is recorded as now, read inside the
        issuance transaction."""
        found: dict[str, str] = {}
        for start in range(0, len(prints), 500):
            found.update((str(fp), str(cid)) for fp, cid in db.execute(
                sa.select(bulk_fingerprints.c.fingerprint, bulk_fingerprints.c.credential_id)
                .where(bulk_fingerprints.c.fingerprint.in_(prints[start:start + 500]))))
        return found

    def _cursor(self, db: sa.Connection, list_id: int, size: int) -> _ListCursor:
        """Where list ``list_id``'s next credentials go (its index key made if it has none).
        A list's permutation is kept for the store's life: its key and size never change, and
        its round tables, filled as it is used, make each further index cheaper."""
        list_key = self._list_key(db, list_id)
        permutation = self._permutations.get((list_key, size))
        if permutation is None:
            permutation = self._permutations[list_key, size] = IndexPermutation(list_key, size)
        return _ListCursor(db, list_id, permutation)

    def bulk_issued(self, fingerprints: list[str]) -> dict[str, tuple[str, str]]:
        """Bulk rows already issued, by fingerprint: (credential id, its status now), the
        status ``key_compromised`` for one signed at or after its key's compromise time (every
        counter refuses it, as ``credential`` says)."""
        query = (sa.select(bulk_fingerprints.c.fingerprint, credentials.c.id,
                           credentials.c.status, credentials.c.reason, credentials.c.issued_at,
                           keys.c.compromised_since, keys.c.valid_from)
                 .join(credentials, credentials.c.id == bulk_fingerprints.c.credential_id)
                 .join(keys, keys.c.kid == credentials.c.kid, isouter=True))
        return {str(fp): (str(cid), _standing(status, reason, issued_at, compromised, key_from))
                for fp, cid, status, reason, issued_at, compromised, key_from
                in self._in_chunks(query, bulk_fingerprints.c.fingerprint, fingerprints)}

    def standing(self, credential_ids: list[str]) -> dict[str, str]:
        """Each of these credentials' status now, by id, as ``bulk_issued`` gives it (one
        query per 500 ids)."""
        query = (sa.select(credentials.c.id, credentials.c.status, credentials.c.reason,
                           credentials.c.issued_at, keys.c.compromised_since, keys.c.valid_from)
                 .join(keys, keys.c.kid == credentials.c.kid, isouter=True))
        return {str(cid): _standing(status, reason, issued_at, compromised, key_from)
                for cid, status, reason, issued_at, compromised, key_from in self._in_chunks(
                    query, credentials.c.id, credential_ids)}

    def known(self, credential_ids: list[str]) -> set[str]:
        """Which of these ids this office issued (one query per 500, not one per id)."""
        return {str(cid) for (cid,) in self._in_chunks(
            sa.select(credentials.c.id), credentials.c.id, credential_ids)}

    def _in_chunks(self, query: Any, column: Any, values: list[str]) -> list[Any]:
        """``query`` restricted to ``column IN values``, 500 values at a time (SQLite's limit on
        bound parameters)."""
        with self.engine.connect() as db:
            return [row for start in range(0, len(values), 500)
                    for row in db.execute(query.where(column.in_(values[start:start + 500])))]

    def credential(self, credential_id: str, *, now: int | None = None
                   ) -> dict[str, Any] | None:
        """What the office knows of one credential (never a claim value: it keeps none), and
        whether every counter refuses it ``now`` whatever its status: its key compromised when
        it was signed, its validity over or not begun (``validity``)."""
        credential_id = normal_id(credential_id)
        with self.engine.connect() as db:
            row = db.execute(sa.select(credentials).where(credentials.c.id == credential_id)
                             ).mappings().first()
            if row is None:
                return None
            key = db.execute(sa.select(keys.c.compromised_since, keys.c.valid_from)
                             .where(keys.c.kid == row["kid"])).first()
            since = None if key is None else _no_earlier(key[0], key[1])
        # The resident asking at the office must hear so (and be re-issued).
        refused = _signed_compromised(row["issued_at"], since)
        now = int(time.time()) if now is None else now
        start = row["valid_from"]
        # A credential issued before the store kept its start (0003) may not have begun (an
        # early renewal): "unknown" rather than a "current" nobody can stand by.
        validity = ("expired" if now >= row["valid_until"] else "unknown" if start is None
                    else "not_yet_valid" if now < start else "current")
        return {"id": row["id"], "status": row["status"], "reason": row["reason"],
                "kind": "paper" if row["paper"] else "wallet", "kid": b64url(row["kid"]),
                "status_list": row["list_id"], "status_index": row["idx"],
                "issued_at": rfc3339(row["issued_at"]),
                "valid_from": None if start is None else rfc3339(start),
                "first_day": None if start is None else first_day(start).isoformat(),
                "valid_until": rfc3339(row["valid_until"] - 1),
                # the day the passport, its card and every counter name (the instant above is
                # that day's end in the office's zone, in UTC: the next date in Mexicali)
                "last_day": last_day(row["valid_until"]).isoformat(),
                "validity": validity,
                "key_compromised_since": None if since is None else rfc3339(since),
                # None: not known (its first day is not on record, and it may not have begun).
                # Revoked or suspended: refused by every counter holding a bundle made since.
                "refused_by_counters": (True if refused or validity in ("expired", "not_yet_valid")
                                        or row["status"] in ("revoked", "suspended")
                                        else None if validity == "unknown" else False)}

    @staticmethod
    def _list_used(db: sa.Connection, list_id: int) -> int:
        """Indices taken in a status list: a counter kept beside the issuance (counting the
        list's credentials on every issuance made a bulk run slow down as the list filled);
        seeded by one count on stores made before it existed."""
        key = f"list_used:{list_id}"
        value = db.execute(sa.select(meta.c.v).where(meta.c.k == key)).scalar()
        if value is not None:
            return int(value)
        used = int(db.execute(sa.select(sa.func.count()).select_from(credentials).where(
            credentials.c.list_id == list_id)).scalar_one())
        db.execute(meta.insert().values(k=key, v=str(used)))
        return used

    @staticmethod
    def _list_size(db: sa.Connection) -> int:
        """Entries per status list: chosen at ``issuer init`` (``--list-size``), else
        ``LIST_SIZE``. Fixed for the office's life: the index permutation of a list is over its
        size, so a list never changes size once it holds a credential."""
        value = db.execute(sa.select(meta.c.v).where(meta.c.k == "list_size")).scalar()
        return LIST_SIZE if value is None else int(value)

    @staticmethod
    def _next_list(db: sa.Connection) -> int:
        """A new status list id, its index key made with it. Every list was some key's current
        list when it was made, and a key's list only ever moves to a new maximum, so the keys'
        maximum is the overall one; a restored office also skips the lists its lost predecessor
        used (``LIST_FLOOR``)."""
        floor = db.execute(sa.select(meta.c.v).where(meta.c.k == LIST_FLOOR)).scalar()
        used = int(db.execute(sa.select(sa.func.max(keys.c.status_list))).scalar() or 0)
        list_id = max(used, int(floor or 0)) + 1
        if list_id >= STATUS_BOUND:  # every passport on it would be refused as malformed
            raise StoreError("issuer_status_lists_exhausted", last=list_id - 1)
        IssuerStore._list_key(db, list_id)
        return list_id

    @staticmethod
    def _list_key(db: sa.Connection, list_id: int) -> bytes:
        """The secret key of a list's index permutation (``issuer.indices``), made on first need
        for a list from before lists had one. It never leaves the office store (a backup is the
        store): whoever holds it can tell in which order the list's credentials were issued."""
        name = f"list_key:{list_id}"
        value = db.execute(sa.select(meta.c.v).where(meta.c.k == name)).scalar()
        if value is not None:
            return bytes.fromhex(value)
        key = secrets.token_bytes(KEY_BYTES)
        db.execute(meta.insert().values(k=name, v=key.hex()))
        return key

    def set_status(self, credential_id: str, new: str, reason: str | None = None, *,
                   passphrase: str) -> dict[str, Any]:
        """Revoke, suspend or reinstate; like every change, only with the office passphrase."""
        credential_id = check_credential_id(credential_id)
        reason = _checked_reason(reason)
        self.root_signing_key(passphrase)  # proves the passphrase before changing anything
        with self.engine.begin() as db:
            return self._change_status(db, credential_id, new, reason, int(time.time()))

    def _change_status(self, db: sa.Connection, credential_id: str, new: str, reason: str,
                       now: int) -> dict[str, Any]:
        """One status change, and its ledger entry queued, inside the caller's transaction."""
        row = db.execute(sa.select(credentials).where(
            credentials.c.id == credential_id)).mappings().first()
        if row is None:
            raise StoreError("credential_unknown", credential_id=credential_id)
        old = row["status"]
        # Revocation is final; suspension is the reversible state.
        allowed = {("valid", "revoked"), ("valid", "suspended"), ("suspended", "revoked"),
                   ("suspended", "valid")}
        if (old, new) not in allowed:
            spanish = {"valid": "vigente", "suspended": "suspendido", "revoked": "revocado"}
            raise StoreError("status_transition", old=old, new=new, old_es=spanish[old],
                             new_es=spanish[new])
        db.execute(credentials.update().where(credentials.c.id == credential_id)
                   .values(status=new, reason=reason))
        code = db.execute(sa.select(meta.c.v).where(meta.c.k == "code")).scalar_one()
        change = {"type": "status_changed", "list": f"{code}.{row['list_id']}",
                  "index": row["idx"], "status": new, "reason": reason}
        # The office keeps the reason given; the public record, only one that says nothing of
        # the resident's life (ledger.entries.PUBLIC_REASONS).
        self._queue(db, now, {**change, "reason": public_reason(reason)})
        return change

    # -- trust bundle ------------------------------------------------------------------------
    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """The store's write lock, held: no other command of this office writes meanwhile. For
        a step outside the store that must keep the order of the writes (a bundle file put in
        place after its version was committed)."""
        with self.engine.begin():
            yield

    def bundle(self, passphrase: str, *, now: int | None = None,
               before_commit: Callable[[bytes], None] | None = None) -> MadeBundle:
        """Sign the next trust bundle and queue its digest for the ledger. ``before_commit``
        runs inside the transaction with the signed bytes (the CLI writes the file there): if
        it raises, the version is not used and nothing is published."""
        now = int(time.time()) if now is None else now
        root_key = self.root_signing_key(passphrase)
        info = self.info()
        with self.engine.begin() as db:
            version = int(db.execute(sa.select(meta.c.v).where(meta.c.k == "bundle_version"))
                          .scalar_one()) + 1
            db.execute(meta.update().where(meta.c.k == "bundle_version").values(v=str(version)))
            office_rows = db.execute(sa.select(keys).where(keys.c.role == "office")
                                     ).mappings().all()
            marked: dict[tuple[int, str], list[int]] = {}  # one read of every set bit
            for list_id, idx, status in db.execute(
                    sa.select(credentials.c.list_id, credentials.c.idx, credentials.c.status)
                    .where(credentials.c.status != "valid")):
                marked.setdefault((list_id, status), []).append(idx)
            # Every list that holds a credential (a key's full lists too) and each key's
            # current one, even while still empty.
            list_ids = {r["status_list"] for r in office_rows} | set(db.execute(
                sa.select(credentials.c.list_id).distinct()).scalars())
            lists: list[StatusListInfo] = []
            size = self._list_size(db)
            for list_id in sorted(list_ids):
                for purpose, status in MARKS.items():
                    lst = StatusList.new(purpose, size)
                    for idx in marked.get((list_id, status), ()):
                        lst.set(idx, True)
                    lists.append(StatusListInfo(list_id, purpose, size, lst.compress(), now))
            cats: dict[str, dict[int, str]] = {}
            for name, code, value in db.execute(sa.select(catalog.c.catalog, catalog.c.code,
                                                          catalog.c.name)):
                cats.setdefault(name, {})[code] = value
            office_keys = tuple(
                OfficeKey(r["kid"], r["public_key"], r["office"], r["valid_from"],
                          r["valid_until"], _no_earlier(r["compromised_since"], r["valid_from"]),
                          r["status_list"])
                for r in office_rows)
            bundle = TrustBundle(info.city, info.country, info.code, version, now, office_keys,
                                 tuple(lists), cats)
            signed = sign_bundle(bundle, root_key)
            # Same transaction as the version bump: a bundle version is never used unlogged.
            self._queue(db, now, {"type": "bundle_published", "city": info.city,
                                  "version": version,
                                  "digest": b64url(hashlib.sha256(signed).digest())})
            if before_commit is not None:
                before_commit(signed)
        return MadeBundle(signed, version)


@dataclass(frozen=True)
class MadeBundle:
    """A trust bundle just signed: its bytes and its version (the caller need not parse its own
    bundle back to learn the number)."""

    data: bytes
    version: int


@dataclass(frozen=True)
class Issuance:
    """One credential for ``IssuerStore.issue_many``: its claims, the holder's key (None: a paper
    credential) and, for a bulk row, its fingerprint and the credential it replaces (see
    ``IssuerStore.issue``)."""

    claims: Claims
    holder_key: bytes | None = None
    bulk_row: tuple[str, str | None] | None = None


class _CatalogCodes:
    """The catalog's codes within one issuance transaction: read once (a few dozen rows), not
    once per claim; a name not catalogued yet is added under its catalog's next code, as it is
    met, so the codes are those issuing one credential after another gave."""

    def __init__(self, db: sa.Connection) -> None:
        self.db = db
        self.codes: dict[tuple[str, str], int] = {}  # by catalogue and name as spelt
        self.top: dict[str, int] = {}
        for name, code, value in db.execute(sa.select(catalog.c.catalog, catalog.c.code,
                                                      catalog.c.name).order_by(catalog.c.code)):
            self.codes.setdefault((str(name), catalog_key(str(value))), int(code))
            self.top[str(name)] = max(self.top.get(str(name), 0), int(code))

    def __call__(self, name: str, value: str, holder: Sequence[str] = ()) -> int:
        # As the --ask form takes a name: one the office already used, typed again without
        # its accents, capitals or spacing ("MEXICALI", a sheet's "Bibliotecas Publicas"), is
        # that name, never a second entry under a code of its own in every bundle
        code = self.codes.get((name, catalog_key(value)))
        if code is None:
            check_catalog_name(name, value, holder)
            code = self.top.get(name, 0) + 1
            self.db.execute(catalog.insert().values(catalog=name, code=code, name=value))
            self.codes[name, catalog_key(value)] = self.top[name] = code
        return code

    def of(self, claims: Claims) -> Callable[[str, str], int]:
        """The codes as one credential takes them: a new name checked against its holder's."""
        holder = holder_names(claims)
        return lambda name, value: self(name, value, holder)


class _ListCursor:
    """Where one status list's next credentials go, within one issuance transaction.

    A credential's index is ``P(n)``, ``n`` the list's next position to try (``list_next:{id}``;
    not ``list_used``, the indices taken, though on a list made since they are equal and ``P(n)``
    is always free). A list from before held indices drawn at random, so ``P(n)`` may be taken:
    ``n`` steps on until it is not. While the list is not full a free one lies ahead, as every
    position behind ``n`` maps to a taken index and ``P`` is a bijection; over the list's life
    each position is looked at once.

    The positions a group of credentials needs are looked at together (one query for which of
    their indices are taken, not one per position). That gives the indices looking at them one at
    a time would: the group's own credentials take the indices of positions behind, which ``P``,
    a bijection, gives no position ahead. The counters are written once, by ``save``."""

    LOOK_AHEAD = 256  # positions looked at in one query at most

    def __init__(self, db: sa.Connection, list_id: int, permutation: IndexPermutation) -> None:
        self.list_id, self.permutation = list_id, permutation
        self.used = IssuerStore._list_used(db, list_id)
        self.position = int(db.execute(sa.select(meta.c.v).where(
            meta.c.k == f"list_next:{list_id}")).scalar() or 0)
        self.looked = self.position  # every position before this one is looked at
        self.free: collections.deque[tuple[int, int]] = collections.deque()  # (position, index)
        self.moved = False

    def take(self, db: sa.Connection, wanted: int) -> int:
        """The next free index (``wanted``: how many the group still needs, this one included)."""
        size = self.permutation.size
        while not self.free:
            if self.looked >= size:  # only if the counters were changed by hand
                raise StoreError("store_damaged", what="issuer.db",
                                 reason=f"status list {self.list_id}: counters past its "
                                        "credentials")
            end = min(size, self.looked + max(1, min(wanted, self.LOOK_AHEAD)))
            ahead = {self.permutation(n): n for n in range(self.looked, end)}
            taken = set(db.execute(sa.select(credentials.c.idx).where(
                (credentials.c.list_id == self.list_id)
                & credentials.c.idx.in_(list(ahead)))).scalars())
            self.free.extend((n, index) for index, n in ahead.items() if index not in taken)
            self.looked = end
        position, index = self.free.popleft()
        self.position, self.used, self.moved = position + 1, self.used + 1, True
        return index

    def save(self, db: sa.Connection) -> None:
        """The list's counters, as the credentials taken from it leave them."""
        if self.moved:
            db.execute(meta.update().where(meta.c.k == f"list_used:{self.list_id}")
                       .values(v=str(self.used)))
            set_meta(db, f"list_next:{self.list_id}", str(self.position))


def _check_publishable(city: str, country: str, office: str) -> None:
    """What the office will publish about a key must be publishable: checked before anything is
    written, so a name the ledger would refuse leaves no half-made office behind. The names are
    the only part the caller chose: a refusal is theirs to fix (a usage error)."""
    try:
        check_key_names(city, country, office)
    except MalformedInput as exc:
        field = exc.detail.get("field")
        if field not in ("city", "office"):
            raise
        raise UsageError("issuer_name_invalid", option=f"--{field}", max=NAME_MAX) from None


def catalog_key(value: str) -> str:
    """What makes two catalogue names one: the letters, without case, accents or spacing."""
    return " ".join(folded(value).split())


def _letters(value: str) -> float:
    """How many letters ``value`` has, as a slip guard counts them: a Han ideograph, a Hangul
    syllable or a kana (a wide letter) counts one and a half, as most Chinese, Japanese and
    Korean city names are two of them (東京, 서울), refused for "fewer than three letters"."""
    return sum((1.5 if unicodedata.east_asian_width(c) in "WF" else 1) for c in value
               if c.isalpha())


def check_catalog_name(catalogue: str, value: str, holder: Sequence[str] = ()) -> None:
    """A name new to a catalogue goes into every bundle from then on, which every counter and
    wallet holds, and no later bundle takes it back: one with fewer than three letters is a
    slip or an abbreviation ("Mx", "BP"), refused as the form refuses it; one that is the
    holder's own name (``holder``: their given and family names) is a resident's name where a
    place or an institution belongs (a sheet's columns swapped), refused without repeating it."""
    # the catalogue as the form and the notices name it ("Sistema de bibliotecas"), each half
    # in its language, not the schema's "library" in the Spanish one
    label = next((f.label for g in schema().groups for f in g.fields if f.catalog == catalogue),
                 {"es": catalogue, "en": catalogue})
    said = {"catalog": catalogue, "catalog_es": label["es"], "catalog_en": label["en"]}
    if _letters(value) < 3:
        raise UsageError("catalog_name_short", name=escaped(value[:80]), **said)
    names = [n for n in holder if n]
    if catalog_key(value) in {catalog_key(n) for n in (*names, " ".join(names))}:
        raise UsageError("catalog_name_personal", **said)


def check_claims_text(claims: Claims) -> None:
    """Every name in ``claims`` (the resident's, a place's, an institution's) with its accents
    whole (``check_not_garbled``), named by its label: the bulk sheet's check, for a claims file
    and the form too."""
    for group in schema().groups:
        for field in group.fields:
            value = claims.groups.get(group.name, {}).get(field.name)
            if isinstance(value, str) and field.type in ("text", "catalog"):
                check_not_garbled(value, field.label["en"], field.label["es"])


def holder_names(claims: Claims) -> tuple[str, ...]:
    """The holder's given and family names, as ``check_catalog_name`` compares with them."""
    shown = claims.groups.get("names", {})
    return tuple(v for v in (shown.get("given_name"), shown.get("family_name"))
                 if isinstance(v, str))


def _fold(name: str) -> str:
    # "Oficina Norte", "oficina norte" and "Oficina  Nörte" would read as one office at a
    # counter; and a clerk on a US keyboard types "Atencion" for "Atención" (as catalogue
    # names are matched)
    return catalog_key(name)


def _match(name: str, offices: Sequence[str]) -> str | None:
    """The office among ``offices`` that ``name`` names, as the store spells it."""
    return next((o for o in offices if _fold(o) == _fold(name)), None)


def _office_names(db: sa.Connection) -> list[str]:
    """Every office with a key, in the order their first keys were made."""
    first = sa.func.min(keys.c.valid_from)
    return [str(o) for o in db.execute(
        sa.select(keys.c.office).where(keys.c.role == "office").group_by(keys.c.office)
        .order_by(first, sa.func.min(sa.literal_column("keys.rowid")))).scalars()]


def _resolve_office(db: sa.Connection, office: str | None) -> str:
    """See ``IssuerStore.resolve_office``. Without a name, a city of one office (every store
    made before there could be several) needs none: its scripts keep working."""
    offices = _office_names(db)
    listed = ", ".join(offices)
    if office is not None:
        found = _match(office, offices)
        if found is None:  # a name the store lacks, as for a key or a credential: its state
            raise StoreError("issuer_office_unknown", office=office.strip(), offices=listed)
        return found
    active = [str(o) for o in db.execute(sa.select(keys.c.office).distinct().where(
        (keys.c.role == "office") & keys.c.active)).scalars()]
    if len(active) == 1:
        return active[0]
    if not active and len(offices) == 1:  # its key compromised: ``rotate`` still needs no name
        return offices[0]
    raise UsageError("issuer_office_ambiguous", offices=listed)


def _revision(path: Path) -> str | None:
    """The store's schema revision, read without taking the write lock (``None`` when it has
    none or cannot be read: the locked path then finds out why, with a typed error)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT version_num FROM issuer_alembic_version").fetchone()
    except (sqlite3.Error, UnicodeDecodeError):  # (see ``credential.sqlstore``)
        return None
    return None if row is None else str(row[0])


def _upgrade(db: sa.Connection, *, new: bool) -> None:
    """Run the pending migrations inside ``db``'s transaction (SQLite's DDL is transactional,
    and the transaction holds the write lock, so two processes never migrate at once). Only a
    ``new`` store starts from nothing: an existing one without its tables is damaged, and is
    reported as such rather than quietly made into an empty office."""
    tables = set(db.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
                 .scalars())
    current = (db.exec_driver_sql("SELECT version_num FROM issuer_alembic_version").scalar()
               if "issuer_alembic_version" in tables else None)
    if current == MIGRATIONS_HEAD:
        return  # the common case, without loading Alembic
    if not new and not {"meta", "keys"} <= tables:
        raise StoreError("store_damaged", what="issuer.db", reason="not an office store")
    from alembic import command
    from alembic.config import Config

    from credential.sqlstore import refuse_newer_release

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = db
    refuse_newer_release(cfg, None if current is None else str(current), what="issuer.db")
    command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # pysqlite would defer BEGIN; the "begin" hook emits it
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
