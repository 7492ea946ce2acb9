"""Credential ids: the printable form of a credential's CWT ``cti``.

Base32 (RFC 4648, upper case, unpadded) of the ``cti`` bytes: no ``-`` to be mistaken for a
command-line option, no lower case to confuse, easy to read out over the phone. An office may
also assign the id itself (a ``credential_id`` in the claims file, e.g. from its case system);
``cti_from_id`` accepts only the exact form this module prints, so one credential never has two
spellings.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

__all__ = ["CTI_LEN", "ID_LEN", "credential_id", "cti_from_id"]

CTI_LEN: Final = 8  # 64 random bits: collision-free for any city's population, short to type
ID_LEN: Final = 13  # base32 characters for CTI_LEN bytes

_B32: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS: Final = tuple(a + b for a in _B32 for b in _B32)  # two base32 digits per 10 bits


def credential_id(cti: bytes) -> str:
    """The printable credential id of ``cti``.

    Computed from one integer, two digits per lookup: every accepted scan shows it, and the
    standard library's pure-Python ``b32encode`` cost as much as the rest of the result."""
    bits = len(cti) * 8
    pad = -bits % 5
    digits = (bits + pad) // 5
    value = int.from_bytes(cti, "big") << (pad + 5 * (digits & 1))
    pairs = _B32_PAIRS
    text = "".join([pairs[(value >> shift) & 1023]
                    for shift in range(10 * ((digits + 1) // 2) - 10, -1, -10)])
    return text[:digits]


def cti_from_id(text: str) -> bytes | None:
    """The ``cti`` of an office-assigned id, or ``None`` unless ``text`` is exactly how
    ``credential_id`` prints ``CTI_LEN`` bytes (upper case, unpadded, unused bits zero)."""
    if len(text) != ID_LEN or not text.isascii():
        return None
    try:
        cti = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    return cti if credential_id(cti) == text else None
