"""Ed25519 signature checks (RFC 8032) straight from the libsodium that pynacl bundles.

Every scan makes two of these, and they are most of its cost. pynacl's public
``crypto_sign_open`` wraps libsodium's function of the same name in interpreted Python that
allocates an output buffer, copies the message into it and returns it; a verifier only needs the
yes/no. libsodium accepts NULL for both output pointers (``crypto_sign_ed25519_open`` then skips
the copy), so this module calls it directly through pynacl's own cffi binding: the same
primitive, the same checks (tests run every Wycheproof case through both paths), without the
Python frames, allocations and copies around it — which, on a counter, also keeps the
interpreter's code out of the CPU caches between the two signature checks.

``nacl._sodium`` is pynacl's private binding module (every ``nacl.bindings`` function calls
through it). Should a future pynacl move it, this module falls back to the public wrapper;
``FAST`` says which path is live and a test insists it is the direct one.
"""

from __future__ import annotations

from typing import Any, Final

import nacl.exceptions
from nacl.bindings import crypto_sign_open

__all__ = ["FAST", "verify_signed"]

_lib: Any = None
_null: Any = None
try:
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _sodium

    _lib, _null = _sodium, _ffi.NULL
except ImportError:  # pragma: no cover - depends on the installed pynacl
    pass

FAST: Final = _lib is not None and hasattr(_lib, "crypto_sign_open")


def verify_signed(public_key: bytes, signed: bytes) -> bool:
    """Whether ``signed`` (a 64-byte signature followed by the message, libsodium's "signed
    message" form) carries a valid Ed25519 signature by ``public_key`` (32 raw bytes)."""
    if len(public_key) != 32 or len(signed) < 64:
        return False
    if FAST:
        rc: int = _lib.crypto_sign_open(_null, _null, signed, len(signed), public_key)
        return rc == 0
    try:
        crypto_sign_open(signed, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True
