"""Ed25519 keys as the project handles them: base64url text, short key ids, and sealing a secret
key at rest under a passphrase (Argon2id → XSalsa20-Poly1305 SecretBox, both from libsodium)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from typing import Any

import cbor2
import nacl.bindings
import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from credential.errors import MalformedInput, StoreError

__all__ = ["b64url", "check_public_key", "kid_for", "new_signing_key", "seal", "signing_key",
           "unb64url", "unseal"]

KID_LEN = 4  # short: it rides in every QR; collisions are resolved by trying each match


def check_public_key(raw: bytes, what: str = "public key") -> bytes:
    """``raw`` if it is an Ed25519 public key a signature can be checked against: a point on
    the curve, in the prime-order subgroup, not of small order (libsodium's own test). A holder
    key that fails it would give the resident a passport no wallet could ever present, and a
    small-order key is one whose "signatures" anybody can forge."""
    if len(raw) != 32 or not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        raise MalformedInput("key_invalid", reason=f"{what}: not an Ed25519 public key")
    return raw


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def unb64url(text: str, *, length: int | None = None, what: str = "base64url") -> bytes:
    """Strict base64url (RFC 4648 §5, padding optional): a character outside the alphabet or
    non-canonical trailing bits are refused, not silently dropped, so one value has one text."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text := text.strip()):
        raise MalformedInput("key_invalid", reason=f"{what}: not base64url")
    body = text.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise MalformedInput("key_invalid", reason=f"{what}: not base64url") from None
    if b64url(raw) != body:
        raise MalformedInput("key_invalid", reason=f"{what}: not base64url")
    if length is not None and len(raw) != length:
        raise MalformedInput("key_invalid", reason=f"{what}: got {len(raw)} bytes, want {length}")
    return raw


def kid_for(public_key: bytes) -> bytes:
    """COSE ``kid``: the first bytes of SHA-256 of the raw public key."""
    return hashlib.sha256(public_key).digest()[:KID_LEN]


def new_signing_key() -> nacl.signing.SigningKey:
    """A fresh key whose kid, as printed (base64url), does not begin with ``-``: a clerk types
    it as a command's argument (``issuer compromised KID``), where ``-h…`` would show the help
    and ``--…`` read as an option. One key in 64 is drawn again; none is weaker for it."""
    while True:
        key = nacl.signing.SigningKey.generate()
        if not b64url(kid_for(bytes(key.verify_key))).startswith("-"):
            return key


def signing_key(seed: bytes) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed)


# Interactive limits keep `issuer issue` responsive on a counter PC; the passphrase is the
# real defence and the file is 0600 in the role's home.
_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


def seal(secret: bytes, passphrase: str) -> bytes:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt,
                                   opslimit=_OPS, memlimit=_MEM)
    box = bytes(nacl.secret.SecretBox(key).encrypt(secret))
    return cbor2.dumps({"v": 1, "kdf": "argon2id", "ops": _OPS, "mem": _MEM, "salt": salt,
                        "box": box, "check": _check(_OPS, _MEM, salt, box)})


def _check(ops: int, mem: int, salt: bytes, box: bytes) -> bytes:
    """A digest of what a sealed key holds, kept beside it. The box's own tag cannot tell a
    damaged byte from a wrong passphrase (both fail the same way), so a resident whose file a
    bad sector or a half-finished copy changed was told to type the passphrase again, forever.
    With this, such a file is named damaged; it proves nothing against a forger, and needs
    not: whoever can rewrite the file can seal a key of their own anyway."""
    return hashlib.sha256(cbor2.dumps([ops, mem, salt, box])).digest()[:8]


# The box holds a secret behind a 24-byte nonce and a 16-byte tag; our secrets are seeds and
# tokens of a few dozen bytes.
_MAX_SEALED = 1024


def sealed_whole(blob: bytes) -> bool:
    """Whether ``blob`` has the shape ``seal`` gives it: a salt of the KDF's size, a box,
    Argon2id costs within the library's presets, and (if it was kept) a check that matches.
    A damaged one would otherwise fail inside the KDF with an error that names nothing, make
    it allocate gigabytes (a hand-edited memory cost), or pass for a wrong passphrase."""
    return _sealed_doc(blob) is not None


def _sealed_doc(blob: bytes) -> dict[str, Any] | None:
    """The fields of a whole sealed blob (see ``sealed_whole``), or ``None``."""
    if len(blob) > _MAX_SEALED:
        return None
    try:
        doc = cbor2.loads(blob)
    except Exception:  # cbor2 raises several kinds on junk; none of them is ours to pass on
        return None
    if not isinstance(doc, dict):
        return None
    salt, box, ops, mem = (doc.get(k) for k in ("salt", "box", "ops", "mem"))
    argon = nacl.pwhash.argon2id
    if not (isinstance(salt, bytes) and len(salt) == argon.SALTBYTES
            and isinstance(box, bytes) and len(box) > 24 + 16
            and type(ops) is int and argon.OPSLIMIT_MIN <= ops <= argon.OPSLIMIT_SENSITIVE
            and type(mem) is int and argon.MEMLIMIT_MIN <= mem <= argon.MEMLIMIT_SENSITIVE):
        return None
    # Keys sealed before the check was kept have none, and open as they did.
    if "check" in doc and doc["check"] != _check(ops, mem, salt, box):
        return None
    return doc


def unseal(blob: bytes, passphrase: str) -> bytes:
    """The secret ``seal`` sealed; ``StoreError`` ``sealed_key_damaged`` for a blob not of its
    shape, ``passphrase_wrong`` when the box does not open.

    Tried as typed, then with its accented letters composed, then decomposed: one keyboard
    types "ñ" as one character, another as "n" and a combining tilde, the same passphrase to
    the clerk and other bytes to Argon2id, and the key was sealed under whichever was typed
    then. Only a passphrase with such letters costs the further tries."""
    doc = _sealed_doc(blob)
    if doc is None:
        raise StoreError("sealed_key_damaged")
    forms = (passphrase,) if passphrase.isascii() else tuple(dict.fromkeys(
        (passphrase, unicodedata.normalize("NFC", passphrase),
         unicodedata.normalize("NFD", passphrase))))
    for candidate in forms:
        key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, candidate.encode(),
                                       doc["salt"], opslimit=doc["ops"], memlimit=doc["mem"])
        try:
            return bytes(nacl.secret.SecretBox(key).decrypt(doc["box"]))
        except nacl.exceptions.CryptoError:
            continue
    raise StoreError("passphrase_wrong")
