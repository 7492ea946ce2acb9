"""Private keys at rest and the ledger home's settings file.

A key file holds the 32-byte Ed25519 seed sealed by ``credential.keys.seal`` (Argon2id from the
operator's passphrase, then a NaCl SecretBox), the same sealing every role uses, so a copied
disk or backup does not hand over the log's signing key. Written with ``atomic_write``.

A node seals two keys (``log.key``, ``witness.key``) under one passphrase, and changing it
(``ledger passphrase``) must never leave one under each. How that is kept, through a crash at
any point, is told at ``reseal_keys``; every reader goes through ``open_keys``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from credential import jsontext
from credential.errors import StoreError
from credential.home import atomic_write, fsync_path, held_lock
from credential.keys import seal, unseal

__all__ = ["KEY_FILES", "LOG_KEY", "WITNESS_KEY", "LedgerConfig", "OpenedKeys", "load_config",
           "open_keys", "read_secret", "reseal_keys", "save_config", "write_secret"]

CONFIG_NAME = "ledger.json"
LOG_KEY = "log.key"
WITNESS_KEY = "witness.key"
# Every file sealed under the node's passphrase; nothing else of a node is (tokens are stored
# as hashes, ledger.json holds only public keys and settings). A mirror has none of them.
KEY_FILES = (LOG_KEY, WITNESS_KEY)
PENDING = ".new"  # a key sealed under the passphrase being changed to, not yet in place
KEYS_LOCK = ".keys.lock"


def write_secret(path: Path, secret: bytes, passphrase: str) -> None:
    """Seal ``secret`` under ``passphrase`` (``credential.keys.seal``) into ``path`` (0600)."""
    if not passphrase:
        raise StoreError("ledger_passphrase_required")
    atomic_write(path, seal(secret, passphrase), mode=0o600)


def read_secret(path: Path, passphrase: str) -> bytes:
    """Open one key file as it is; a wrong passphrase raises ``StoreError('passphrase_wrong')``.
    A node's keys are opened together with ``open_keys``, which also settles a change of
    passphrase a crash interrupted."""
    return _unseal_file(path, _read_file(path), passphrase)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError("ledger_not_initialised", home=str(path.parent)) from None


def _unseal_file(path: Path, sealed: bytes, passphrase: str) -> bytes:
    try:
        return unseal(sealed, passphrase)
    except StoreError as exc:
        if exc.code == "passphrase_wrong":
            raise
        raise StoreError("ledger_bad_key_file", path=str(path)) from None


def _pending(home: Path, name: str) -> Path:
    return home / (name + PENDING)


@dataclass(frozen=True)
class OpenedKeys:
    """A node's keys opened under one passphrase (file name → secret), and the sealed bytes
    now in each file, by which ``reseal_keys`` sees that nothing changed on disk since."""

    # never in a repr: a traceback or a debug log must not show the keys
    secrets: dict[str, bytes] = field(repr=False)
    sealed: dict[str, bytes] = field(repr=False)


@contextlib.contextmanager
def _keys_lock(home: Path, *, required: bool) -> Iterator[bool]:
    """The home's key lock, held for the block; yields whether it is held. Opening the keys
    and changing their passphrase take it, so no opening ever sees a change half done and none
    settles files a change is still writing. A change holds it for a second or so (no prompt
    happens under it), so a node starting meanwhile waits rather than being refused. A home the
    process may not write (a read-only mount for a server) cannot be locked, nor settled: its
    keys are still read, correctly, by the same rule, only nothing is renamed or removed."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(held_lock(home / KEYS_LOCK))
        locked = True
    except OSError:
        if required:
            raise
        locked = False
    with stack:
        yield locked


def open_keys(home: Path, passphrase: str) -> OpenedKeys:
    """Every key file of the node at ``home`` opened under ``passphrase`` (``log.key`` must be
    there; ``witness.key`` is, on any node made by ``init``). A wrong passphrase raises
    ``passphrase_wrong`` and changes nothing; a right one first settles a change of passphrase a
    crash interrupted (see ``reseal_keys``)."""
    with _keys_lock(home, required=False) as locked:
        return _open_keys(home, passphrase, settle=locked)


def _open_keys(home: Path, passphrase: str, *, settle: bool) -> OpenedKeys:
    # The rule (why it is exactly right is told at ``reseal_keys``): each key is taken from its
    # ``.new`` file if that opens under the passphrase given, else from the file itself; the
    # node opens only if every key does. Per key, not per set, a crash after the first ``.new``
    # was written would let the new passphrase put that one key in place and then be refused
    # for the other: the node would need both passphrases from then on.
    names = [name for name in KEY_FILES if name == LOG_KEY or (home / name).exists()]
    secrets: dict[str, bytes] = {}
    sealed: dict[str, bytes] = {}
    from_pending: list[str] = []
    for name in names:
        try:
            staged = _pending(home, name).read_bytes()
        except FileNotFoundError:
            pass
        else:
            try:
                secrets[name] = unseal(staged, passphrase)
            except StoreError:  # sealed under the other passphrase of the change (or damaged)
                pass
            else:
                sealed[name] = staged
                from_pending.append(name)
                continue
        path = home / name
        sealed[name] = _read_file(path)
        secrets[name] = _unseal_file(path, sealed[name], passphrase)
    if settle:
        _settle(home, names, from_pending)
    return OpenedKeys(secrets, sealed)


def _settle(home: Path, names: list[str], from_pending: list[str]) -> None:
    """After the node opened: put the ``.new`` files it opened from in place (finishing the
    change that wrote them) and remove every other (the leftovers of a change that never reached
    its first rename, now given up: the passphrase that opened the node is the one). Afterwards
    no ``.new`` is left, and exactly the passphrase just used opens the node. Should a rename
    or removal fail here, what is left is still one of the states ``reseal_keys`` describes,
    opened by this same passphrase, and the next opening tries again: not worth refusing a node
    that did open."""
    changed = False
    with contextlib.suppress(OSError):
        for name in names:
            staged = _pending(home, name)
            try:
                if name in from_pending:
                    os.replace(staged, home / name)
                else:
                    os.unlink(staged)
                changed = True
            except FileNotFoundError:
                pass
            # what ``atomic_write`` leaves of a ``.new`` when killed while writing it
            for leftover in home.glob(f".{staged.name}.*"):
                leftover.unlink()
        if changed:
            fsync_path(home)


def reseal_keys(home: Path, opened: OpenedKeys, current: str, new: str) -> list[str]:
    """Seal every key of ``opened`` (from ``open_keys(home, current)``) under ``new`` instead;
    returns the key files' names.

    A crash must never leave one key under each passphrase, and two files cannot be replaced
    in one atomic step. So each key is first written whole, sealed under ``new``, beside its
    file as ``<name>.new`` (atomically and fsynced, the folder too); only when all are on the
    disk is each renamed over its file, and the folder fsynced. The first rename is the point
    of no return. ``open_keys`` takes each key from its ``.new`` when that opens under the
    passphrase given, else from the file, and opens the node only if every key opens. So after
    a crash at any point:

    - some ``.new`` written, none renamed: only the old passphrase opens the node (the key
      without a ``.new`` is still under it); its opening removes the ``.new`` files;
    - every ``.new`` written, none renamed: either opens it, and the first to do so settles it
      (the new one renames the ``.new`` files into place, the old one removes them);
    - some renamed: only the new passphrase opens it (a renamed key is under it alone; the rest
      are in their ``.new``), and its opening renames the rest;
    - all renamed: the new passphrase, as after a change that finished.

    Never both passphrases needed, never a key lost. The key lock (``_keys_lock``) is held from
    the check below to the last rename, so a node opening meanwhile (``serve``, ``append``)
    waits for the change to end instead of seeing it half done, and settles nothing under it.
    """
    if not new:
        raise StoreError("ledger_passphrase_required")
    with _keys_lock(home, required=True):
        names = [name for name in KEY_FILES if (home / name).exists()]
        unchanged = (names == list(opened.sealed)
                     and all(not _pending(home, n).exists() for n in names)
                     and all((home / n).read_bytes() == opened.sealed[n] for n in names))
        if not unchanged:
            # another change, or a crash's leftovers, between the check and now: the current
            # passphrase must open what is there now (refused otherwise, nothing written)
            opened = _open_keys(home, current, settle=True)
        staged: list[Path] = []
        try:
            for name, secret in opened.secrets.items():
                staged.append(_pending(home, name))
                write_secret(staged[-1], secret, new)  # atomic: fsyncs the file and the folder
        except BaseException:
            # a full disk, Ctrl-C during the slow sealing: nothing was renamed, so the change
            # is undone by removing what was staged, and the old passphrase holds as before
            for path in staged:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        for name in opened.secrets:
            os.replace(_pending(home, name), home / name)
        fsync_path(home)
    return list(opened.secrets)


@dataclass(frozen=True)
class LedgerConfig:
    """What ``ledger init`` records in ``ledger.json``."""

    origin: str
    log_vkey: str
    witness_vkey: str | None = None
    db: str | None = None
    mirror_of: str | None = None
    # A mirror's witnesses: every later run requires a cosignature from one of them.
    mirror_witnesses: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()
                if v is not None and v != ()}


def load_config(home: Path) -> LedgerConfig:
    try:
        doc = jsontext.loads((home / CONFIG_NAME).read_text())
        return LedgerConfig(**{**doc, "mirror_witnesses": tuple(doc.get("mirror_witnesses", ()))})
    except FileNotFoundError:
        raise StoreError("ledger_not_initialised", home=str(home)) from None
    except (ValueError, TypeError):
        raise StoreError("ledger_bad_config", home=str(home)) from None


def save_config(home: Path, config: LedgerConfig) -> None:
    # 0600: ``db`` may be a URL with the database's password in it (``init --db``). To keep the
    # password out of the file altogether, give the URL in PASAPORTE_LEDGER_DB instead.
    atomic_write(home / CONFIG_NAME, json.dumps(config.to_json(), indent=2).encode(), mode=0o600)

