"""Private keys at rest and the ledger home's settings file.

A key file is JSON holding the 32-byte Ed25519 seed sealed with a NaCl SecretBox under a key
derived from the operator's passphrase with Argon2id (``PASAPORTE_PASSPHRASE`` or a prompt), so a
copied disk or backup does not hand over the log's signing key. Written with ``atomic_write``.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from credential.errors import StoreError
from credential.home import atomic_write

__all__ = ["LedgerConfig", "load_config", "read_secret", "save_config", "write_secret"]

CONFIG_NAME = "ledger.json"
_KDF = nacl.pwhash.argon2id


def write_secret(path: Path, secret: bytes, passphrase: str) -> None:
    """Seal ``secret`` under ``passphrase`` into ``path`` (0600)."""
    if not passphrase:
        raise StoreError("ledger_passphrase_required")
    salt = nacl.utils.random(_KDF.SALTBYTES)
    ops, mem = _KDF.OPSLIMIT_INTERACTIVE, _KDF.MEMLIMIT_INTERACTIVE
    key = _KDF.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, ops, mem)
    box = nacl.secret.SecretBox(key).encrypt(secret)
    doc = {"v": 1, "kdf": "argon2id", "ops": ops, "mem": mem,
           "salt": base64.b64encode(salt).decode(), "box": base64.b64encode(bytes(box)).decode()}
    atomic_write(path, json.dumps(doc).encode(), mode=0o600)


def read_secret(path: Path, passphrase: str) -> bytes:
    """Open a key file; a wrong passphrase raises ``StoreError('ledger_wrong_passphrase')``."""
    try:
        doc = json.loads(path.read_text())
        salt, box = base64.b64decode(doc["salt"]), base64.b64decode(doc["box"])
        ops, mem = int(doc["ops"]), int(doc["mem"])
    except FileNotFoundError:
        raise StoreError("ledger_not_initialised", home=str(path.parent)) from None
    except (ValueError, KeyError, TypeError):
        raise StoreError("ledger_bad_key_file", path=str(path)) from None
    key = _KDF.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, ops, mem)
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(box))
    except nacl.exceptions.CryptoError:
        raise StoreError("ledger_wrong_passphrase") from None


@dataclass(frozen=True)
class LedgerConfig:
    """What ``ledger init`` records in ``ledger.json``."""

    origin: str
    log_vkey: str
    witness_vkey: str | None = None
    db: str | None = None
    mirror_of: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def load_config(home: Path) -> LedgerConfig:
    try:
        doc = json.loads((home / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise StoreError("ledger_not_initialised", home=str(home)) from None
    except ValueError:
        raise StoreError("ledger_bad_config", home=str(home)) from None
    return LedgerConfig(**doc)


def save_config(home: Path, config: LedgerConfig) -> None:
    atomic_write(home / CONFIG_NAME, json.dumps(config.to_json(), indent=2).encode(), mode=0o644)


def passphrase_from_env() -> str | None:
    return os.environ.get("PASAPORTE_PASSPHRASE") or None
