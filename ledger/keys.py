"""Private keys at rest and the ledger home's settings file.

A key file holds the 32-byte Ed25519 seed sealed by ``credential.keys.seal`` (Argon2id from the
operator's passphrase, then a NaCl SecretBox), the same sealing every role uses, so a copied
disk or backup does not hand over the log's signing key. Written with ``atomic_write``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from credential import jsontext
from credential.errors import StoreError
from credential.home import atomic_write
from credential.keys import seal, unseal

__all__ = ["LedgerConfig", "load_config", "read_secret", "save_config", "write_secret"]

CONFIG_NAME = "ledger.json"


def write_secret(path: Path, secret: bytes, passphrase: str) -> None:
    """Seal ``secret`` under ``passphrase`` (``credential.keys.seal``) into ``path`` (0600)."""
    if not passphrase:
        raise StoreError("ledger_passphrase_required")
    atomic_write(path, seal(secret, passphrase), mode=0o600)


def read_secret(path: Path, passphrase: str) -> bytes:
    """Open a key file; a wrong passphrase raises ``StoreError('passphrase_wrong')``."""
    try:
        sealed = path.read_bytes()
    except FileNotFoundError:
        raise StoreError("ledger_not_initialised", home=str(path.parent)) from None
    try:
        return unseal(sealed, passphrase)
    except StoreError as exc:
        if exc.code == "passphrase_wrong":
            raise
        raise StoreError("ledger_bad_key_file", path=str(path)) from None


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

