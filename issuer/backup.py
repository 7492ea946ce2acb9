"""Backing up an office store and making an office again from a backup.

A backup is SQLite's online backup of ``issuer.db``, taken while other processes keep working:
for the copy (milliseconds) it holds the store's write lock, and it keeps holding it until the
clock has passed the second the copy was taken, so every credential in the copy was issued
before its *cutoff* second and every later one at or after it (issuance times are whole
seconds). The copy is written under a unique name beside its target, checked (it opens, passes
SQLite's integrity check, the digest of its contents that the root key signed into it matches,
and its root key unseals with the office passphrase), and only then linked into place, never
over an existing file: the target is the whole backup or absent. A backup killed on the way
(power cut, SIGKILL) leaves its unique file behind; the next backup into the same folder removes
it, knowing it dead because no process holds its lock (a live backup holds its own). Keys stay
sealed inside it, as in the store.

A restore makes a new office home, never over an existing one. Whatever the office signed after
the backup is unknown to the copy: it could neither revoke those credentials nor keep their
status indices from being drawn again. So, in the copy and before it becomes the office store,
the key active at the backup is marked compromised from the cutoff (counters refuse what it
signed later; those residents are issued again) and a new key takes over, both queued for the
public record (in a city of several offices, for each office's active key). A restore cut
short leaves no office behind, and running it again finishes it.
Status changes made after the backup are not in it, but they are on the city's public ledger:
when the backup names a ledger, the restore reads it and applies them (``issuer.catchup``), and
entries the backup still had queued that the lost office published since are not published a
second time; keys the lost office rotated to since are marked compromised as well, and keys it
marked compromised since stay so. A backup restored once already is refused. Without a ledger
(or with ``ledger=False``) ``restore`` says what it could not know.
The restored office's next trust bundle outranks every bundle the lost office made (its version
jumps to the restore's second in Unix time, past any count of bundles an office makes), so counters
take its compromised key and new key at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing
import sqlalchemy as sa

from credential.disk import SQLITE_IOERR, disk_is_full, disk_trouble, sqlite_primary_code
from credential.errors import LedgerError, MalformedInput, StoreError, UsageError
from credential.home import fsync_path, make_folders, name_start
from credential.keys import b64url, unb64url, unseal
from credential.text import one_line
from issuer.catchup import Progress, Walk, catch_up
from issuer.store import (
    BUSY_TIMEOUT_S,
    OUTBOX_EPOCH,
    IssuerStore,
    keys,
    meta,
    outbox,
    set_meta,
    waiting_turn,
)

__all__ = ["Restored", "restore", "take"]

_CUTOFF = "backup_cutoff"  # meta: the first second not in the backup
_SIGNATURE = "backup_signature"  # meta: the root key's signature over the contents' digest
_WORK = ".restoring"  # where a restore prepares the store, inside the new home
# A backup being written: ``.{name}.{mkstemp's characters}.pasaporte-partial``, a suffix no
# other program's files are taken for when a later backup removes the dead ones.
_PARTIAL = ".pasaporte-partial"
# The files SQLite keeps beside a database: a rollback journal, or a WAL and its shared memory
# (a copy is in WAL mode, as the store is, until it is switched to one file).
_SIDE_FILES = ("-journal", "-wal", "-shm")


def take(store: IssuerStore, target: Path, passphrase: str) -> int:
    """Write a backup of ``store`` to ``target``; returns how many credentials it holds."""
    root = store.root_signing_key(passphrase)  # only the office takes a copy of its store
    make_folders(target.parent)  # owner-only (0700) whatever the umask, as every output folder
    # Even when the target is refused: a daily backup names each day's file anew, and what a
    # killed one left would otherwise stay for good.
    _sweep(target.parent)
    if target.exists():
        raise UsageError("backup_exists", path=str(target))
    partial, held = _partial(target)
    try:
        cutoff = _copy_live(store.path, partial, written=target)
        try:
            with contextlib.closing(sqlite3.connect(partial)) as db, db:
                db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                           (_CUTOFF, str(cutoff)))
                db.execute("DELETE FROM meta WHERE k = ?", (_SIGNATURE,))
                signature = root.sign(_digest(db)).signature
                db.execute("INSERT INTO meta (k, v) VALUES (?, ?)",
                           (_SIGNATURE, b64url(signature)))
        except sqlite3.DatabaseError as exc:
            if disk_trouble(exc, partial.parent) is None:
                raise
            raise _not_written(exc, partial, written=target, source=store.path) from None
        fsync_path(partial)
        count = _checked(partial, passphrase, shown=target, written=target, source=store.path)
        try:
            os.link(partial, target)  # unlike a rename, never replaces a file that appeared
        except FileExistsError:
            raise UsageError("backup_exists", path=str(target)) from None
    finally:
        partial.unlink(missing_ok=True)
        for suffix in _SIDE_FILES:  # a copy cut short in WAL mode leaves its -wal and -shm
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        # Last, after every SQLite connection to the file is closed: closing a descriptor of a
        # file drops every POSIX lock this process holds on it, SQLite's included.
        os.close(held)
    fsync_path(target.parent)
    return count


def _partial(target: Path) -> tuple[Path, int]:
    """A new, unique file beside ``target`` to write the backup into, and a descriptor holding
    its lock (flock: the kernel drops it when the process dies, however it dies)."""
    import fcntl

    stem = name_start(target.name)
    while True:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{stem}.", suffix=_PARTIAL)
        # Waits only for a sweep that took the lock in the instant before ours, and then
        # removed the file: the name no longer leads to this file, and another is made.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(name)):
                return Path(name), fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _sweep(folder: Path) -> None:
    """Remove what backups left in ``folder`` when they died: their files that no process holds
    the lock of, and SQLite journals, WALs and shared memory without their file."""
    import fcntl

    pattern = ".*" + _PARTIAL
    # (Closing ``fd`` would drop this process's SQLite locks on the file: one backup per process
    # into a folder, as the command runs, never sweeps a file it writes itself.)
    for path in folder.glob(pattern):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                path.unlink()
        except (BlockingIOError, FileNotFoundError):  # a backup writing it; one swept already
            pass
        finally:
            os.close(fd)
    for suffix in _SIDE_FILES:
        for side in folder.glob(pattern + suffix):
            if not side.with_name(side.name.removesuffix(suffix)).exists():
                side.unlink(missing_ok=True)


@dataclass(frozen=True)
class Restored:
    count: int  # credentials in the backup
    retired: tuple[str, ...]  # the kids marked compromised from the cutoff, one per office
    ledger: Walk | None  # what the public ledger added, if it was read


def restore(source: Path, home: Path, passphrase: str, *, ledger: bool = True,
            progress: Progress | None = None) -> Restored:
    """Make ``home`` an office from the backup ``source``, brought up to date from the public
    ledger the backup names (unless ``ledger`` is false)."""
    if (home / "issuer.db").exists():
        raise StoreError("issuer_exists", home=str(home))
    if not source.exists():  # a mistyped --from: the caller's to correct (exit 2), as a
        # missing input file is for every other command, not a damaged backup
        raise UsageError("backup_not_found", path=str(source))
    if not source.is_file():
        raise StoreError("backup_unreadable", path=str(source), reason="not a file")
    made_home = make_folders(home)
    work = home / _WORK
    try:
        shutil.rmtree(work, ignore_errors=True)  # what an earlier, cut-short restore left
        work.mkdir(mode=0o700)
        os.chmod(work, 0o700)
        # A disk that fails or fills is the new home's, not the backup's (only read).
        _copy(source, work / "issuer.db", shown=source, written=home, live=False)
        count = _checked(work / "issuer.db", passphrase, shown=source, written=home,
                         source=source)
        caught, retired = _prepare(work, passphrase, ledger, progress)
        fsync_path(work / "issuer.db")
        os.replace(work / "issuer.db", home / "issuer.db")  # the office exists from here on
        fsync_path(home)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if made_home and not any(home.iterdir()):
            home.rmdir()
        raise
    shutil.rmtree(work, ignore_errors=True)
    return Restored(count, retired, caught)


def _prepare(work: Path, passphrase: str, ledger: bool, progress: Progress | None
             ) -> tuple[Walk | None, tuple[str, ...]]:
    """The copy in ``work`` at the current schema, caught up from the ledger, every office's
    active key retired."""
    prepared = IssuerStore(work)
    try:
        prepared.migrate()  # a backup from an older release
        with prepared.engine.connect() as db:
            cutoff = int(db.execute(sa.select(meta.c.v).where(meta.c.k == _CUTOFF)).scalar_one())
            # Each office signed on after the backup with its own key: every one is retired.
            active = [(b64url(kid), str(office)) for kid, office in db.execute(
                sa.select(keys.c.kid, keys.c.office).where(
                    (keys.c.role == "office") & keys.c.active).order_by(keys.c.kid))]
        # A restore done before marked all of them from this cutoff: one of them tells.
        caught = (_catch_up(prepared, active[0][0] if active else None, cutoff, progress)
                  if ledger else None)
        with prepared.engine.begin() as db:  # before the restore queues entries of its own
            following = int(db.execute(sa.select(sa.func.max(outbox.c.id))).scalar() or 0) + 1
            earlier = db.execute(sa.select(meta.c.v).where(meta.c.k == OUTBOX_EPOCH)).scalar()
            epoch = f"{secrets.token_hex(6)}:{following}"  # after those of earlier restores
            set_meta(db, OUTBOX_EPOCH, f"{earlier},{epoch}" if earlier else epoch)
        _retire(prepared, active, cutoff, passphrase)
        if caught is not None and caught.lost:
            prepared.mark_lost_keys_compromised(caught.lost, cutoff, passphrase)
    finally:
        prepared.engine.dispose()
    with contextlib.closing(sqlite3.connect(work / "issuer.db", isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file before it is moved
    return caught, tuple(kid for kid, _ in active)


def _catch_up(prepared: IssuerStore, active: str | None, cutoff: int,
              progress: Progress | None) -> Walk | None:
    """Read the ledger the backup names, before the restore adds entries of its own."""
    url = prepared.ledger_url()
    if url is None:
        return None
    try:
        return catch_up(prepared, url, active=active, cutoff=cutoff, progress=progress)
    except (LedgerError, MalformedInput) as exc:  # nothing is restored: say how to go on
        raise LedgerError("restore_ledger_unreadable", url=url, reason=exc.message["en"],
                          reason_es=exc.message["es"]) from None


def _retire(prepared: IssuerStore, active: list[tuple[str, str]], cutoff: int,
            passphrase: str) -> None:
    """For each office, a new key takes over, and its key active at the backup is compromised
    from the cutoff (or from the earlier time the lost office gave, read back from the
    ledger)."""
    for kid, office in active:
        with prepared.engine.connect() as db:
            earlier = db.execute(sa.select(keys.c.compromised_since)
                                 .where(keys.c.kid == unb64url(kid, what="kid"))).scalar()
        prepared.add_office_key(passphrase, office=office)
        prepared.mark_compromised(kid, cutoff if earlier is None else min(earlier, cutoff),
                                  passphrase)
    with prepared.engine.begin() as db:
        db.execute(meta.delete().where(meta.c.k.in_((_CUTOFF, _SIGNATURE))))
        # Counters keep the highest version: they would ignore the restored office's bundles
        # (its compromised key and new key with them) if the lost office had made more since
        # the backup. From the restore's second on, versions count past any it could have.
        version = int(db.execute(sa.select(meta.c.v).where(meta.c.k == "bundle_version"))
                      .scalar_one())
        db.execute(meta.update().where(meta.c.k == "bundle_version")
                   .values(v=str(max(version, int(time.time())))))


def _copy_live(live: Path, target: Path, *, written: Path) -> int:
    """Copy the live store under its write lock, kept past the copy's second; returns the
    cutoff (the first second not in the copy). ``written``: the backup as the clerk named it."""
    try:
        lock = sqlite3.connect(live, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise _unread(exc, live, shown=live, live=True) from None
    # Waiting for the lock, and holding it, with the turnstile held shared as every store
    # transaction does: a bulk run then makes way for the backup between its groups instead of
    # starving it to ``store_busy`` (``IssuerStore.make_way``).
    with contextlib.closing(lock), waiting_turn(live.parent):
        try:
            lock.execute("BEGIN IMMEDIATE")  # no issuance while the copy is taken ...
        except sqlite3.OperationalError as exc:
            if disk_trouble(exc, live.parent) is not None:  # its disk full or failing: not busy
                raise _unread(exc, live, shown=live, live=True) from None
            raise StoreError("store_busy", what="issuer.db") from None
        try:
            _copy(live, target, shown=live, written=written, live=True)
            cutoff = int(time.time()) + 1
            while time.time() < cutoff:  # ... nor in the rest of its second
                time.sleep(cutoff - time.time())
        finally:
            lock.execute("ROLLBACK")
    return cutoff


def _copy(source: Path, target: Path, *, shown: Path, written: Path, live: bool) -> None:
    """SQLite's online backup into a one-file (rollback journal) database.

    What fails reading ``source`` is the source's (``shown``: the live store when ``live``, else
    a backup); what fails writing ``target`` is the destination's (``written``: the backup being
    taken, or the office being restored), never said of the source: a full USB stick is not a
    damaged office store, nor a full disk a damaged backup."""
    try:
        _copy_sides(source, target, shown=shown, written=written, live=live)
    except UnicodeDecodeError:  # SQLite's error quoting a damaged schema text (of the source's)
        raise StoreError("backup_unreadable", path=str(shown), reason="not UTF-8 text") from None
    fsync_path(target)
    os.chmod(target, 0o600)


def _copy_sides(source: Path, target: Path, *, shown: Path, written: Path, live: bool) -> None:
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.DatabaseError as exc:
        raise _unread(exc, source, shown=shown, live=live) from None
    with contextlib.closing(src):
        try:
            dst = sqlite3.connect(target, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise _not_written(exc, target, written=written, source=shown) from None
        with contextlib.closing(dst):
            try:
                src.backup(dst)
            except sqlite3.DatabaseError as exc:
                if _destinations(exc, target):
                    raise _not_written(exc, target, written=written, source=shown) from None
                raise _unread(exc, source, shown=shown, live=live) from None
            try:
                dst.execute("PRAGMA journal_mode=DELETE")  # the copy only: its disk's errors
            except sqlite3.DatabaseError as exc:
                if disk_trouble(exc, target.parent) is None:  # what the copy holds: the source's
                    raise StoreError("backup_unreadable", path=str(shown),
                                     reason=_shown(exc)) from None
                raise _not_written(exc, target, written=written, source=shown) from None


# SQLite's online backup reports an error of either side through the destination's connection:
# which side failed is read from the error. These I/O errors are reading (the file, or a WAL's
# shared memory, which only the source has: the copy is written with a rollback journal).
_READING = frozenset({"SQLITE_IOERR_READ", "SQLITE_IOERR_SHORT_READ", "SQLITE_IOERR_SHMOPEN",
                      "SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_SHMLOCK", "SQLITE_IOERR_SHMMAP",
                      "SQLITE_IOERR_MMAP"})


def _destinations(exc: sqlite3.DatabaseError, target: Path) -> bool:
    """Whether an error of the online backup into ``target`` (a new file) is the destination's:
    a full disk (only writing fills one, and the source is opened read-only), an I/O error on
    a disk with next to no room, or one that is not a read. Anything else (a damaged page, a
    file that is no database) is what the source holds."""
    disk = disk_trouble(exc, target.parent)
    if disk == "full":
        return True
    if disk == "io" or sqlite_primary_code(exc) == SQLITE_IOERR:
        return getattr(exc, "sqlite_errorname", None) not in _READING
    return False


def _unread(exc: sqlite3.DatabaseError, source: Path, *, shown: Path, live: bool
            ) -> StoreError:
    """An error reading the copy's source: the live office store (its disk full or failing,
    as the store itself says it, ``issuer.store``), or a backup being restored (a device that
    could not read it; otherwise it is not an intact copy)."""
    if live:
        disk = disk_trouble(exc, source.parent)
        if disk == "full":
            return StoreError("store_full", what="issuer.db")
        if disk == "io":
            return StoreError("store_io_error", what="issuer.db", reason=_shown(exc)[:200])
    elif sqlite_primary_code(exc) == SQLITE_IOERR:
        return StoreError("backup_source_io_error", path=str(shown), reason=_shown(exc)[:200])
    return StoreError("backup_unreadable", path=str(shown), reason=_shown(exc))


def _not_written(exc: sqlite3.DatabaseError, target: Path, *, written: Path, source: Path
                 ) -> StoreError:
    """An error writing (or reading back) the copy at ``target``: the destination's disk is
    full, or it failed; ``written`` is the destination as the clerk named it, ``source`` what
    was only read."""
    if disk_trouble(exc, target.parent) == "full" or disk_is_full(target.parent):
        return StoreError("backup_target_full", path=str(written), source=str(source))
    return StoreError("backup_target_io_error", path=str(written), source=str(source),
                      reason=_shown(exc)[:200])


def _shown(exc: Exception) -> str:
    """SQLite's complaint, fit for the clerk's terminal: it quotes what it found in the file
    (a schema's text, a column's bytes), and a crafted backup's escape sequences must not
    reach the terminal."""
    return one_line(str(exc))


def _digest(db: sqlite3.Connection) -> bytes:
    """SHA-256 over the schema (every table, index, trigger and view as SQLite keeps it) and
    every row of every table, in a fixed order (the signature row left out). The schema counts
    as much as the rows: a trigger slipped into a copy (one that quietly undoes revocations)
    or a column's type changed would otherwise restore as the office's own."""
    h = hashlib.sha256(b"pasaporte/issuer-backup/v2\x00")
    for row in db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                          "ORDER BY type, name"):
        h.update(repr(row).encode() + b"\x00")
    tables = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    for table in tables:
        h.update(table.encode() + b"\x00")
        quoted = '"' + table.replace('"', '""') + '"'
        width = len(db.execute(f"PRAGMA table_info({quoted})").fetchall())
        order = ", ".join(str(i) for i in range(1, width + 1))
        for row in db.execute(f"SELECT * FROM {quoted} ORDER BY {order}"):
            if table == "meta" and row[0] == _SIGNATURE:
                continue
            h.update(repr(row).encode() + b"\x00")
    return h.digest()


def _checked(path: Path, passphrase: str, *, shown: Path, written: Path, source: Path) -> int:
    """That a copy is whole and the office's own: SQLite's integrity check, the root key's
    signature over the contents' digest verifies, and the root key unseals. Returns its number
    of credentials. Damage is ``shown``'s (the backup taken, or the one restored from); a disk
    that fails reading the copy back is its destination's (``written``; ``source`` was only
    read)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                # one line: SQLite's verdict spans several ("*** in database main ***\n…")
                raise StoreError("backup_unreadable", path=str(shown), reason=one_line(verdict))
            root_key = db.execute("SELECT public_key, sealed FROM keys WHERE role = 'root'"
                                  ).fetchone()
            signature = db.execute("SELECT v FROM meta WHERE k = ?", (_SIGNATURE,)).fetchone()
            count = int(db.execute("SELECT count(*) FROM credentials").fetchone()[0])
            digest = _digest(db)
    except sqlite3.DatabaseError as exc:
        if disk_trouble(exc, path.parent) is not None:
            raise _not_written(exc, path, written=written, source=source) from None
        raise StoreError("backup_unreadable", path=str(shown), reason=_shown(exc)) from None
    except UnicodeDecodeError:  # a damaged text, or SQLite's error quoting one
        raise StoreError("backup_unreadable", path=str(shown), reason="not UTF-8 text") from None
    if root_key is None or signature is None:
        raise StoreError("backup_unreadable", path=str(shown), reason="not a pasaporte backup")
    public, sealed = root_key
    changed = StoreError("backup_unreadable", path=str(shown),
                         reason="contents changed since the backup was signed")
    # The signature is checked with the public key the copy names before the sealed key is
    # opened: a damaged copy (a flipped bit in the sealed key) would otherwise read as a wrong
    # passphrase, and the operator would go on trying passphrases on it.
    try:
        nacl.signing.VerifyKey(bytes(public)).verify(
            digest, unb64url(str(signature[0]), what="signature"))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError,
            MalformedInput):  # a key or signature of the wrong length or type: damage too
        raise changed from None
    try:
        root = nacl.signing.SigningKey(unseal(sealed, passphrase))
    except StoreError as exc:
        if exc.code != "passphrase_wrong":
            raise
        # "not correct" alone: the clerk tried today's passphrase on a copy made before it
        # was changed, and had no way forward
        raise StoreError("backup_passphrase_wrong", path=str(shown)) from None
    if bytes(root.verify_key) != bytes(public):  # a copy re-signed by another key
        raise changed
    return count
