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

    Every accepted scan shows it, and the standard library's pure-Python ``b32encode`` cost as
    much as the rest of the result. Base32 works in groups of 5 bytes (8 digits): each group is
    one integer small enough for native arithmetic once compiled, read two digits per lookup."""
    pairs = _B32_PAIRS
    parts: list[str] = []
    size = len(cti)
    full = size - size % 5
    for i in range(0, full, 5):
        v = int.from_bytes(cti[i:i + 5], "big")
        parts.append(pairs[v >> 30] + pairs[(v >> 20) & 1023] + pairs[(v >> 10) & 1023]
                     + pairs[v & 1023])
    rest = size - full
    if rest:  # a last partial group: its bits, zero-padded on the right to whole digits
        digits = (8 * rest + 4) // 5
        v = int.from_bytes(cti[full:], "big") << (5 * digits - 8 * rest)
        for shift in range(5 * (digits - 1), -1, -5):
            parts.append(_B32[(v >> shift) & 31])
    return "".join(parts)


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
