"""Base45 (RFC 9285): the text layer of the QR envelope.

Base45 turns bytes into the 45 characters of the QR *alphanumeric* mode, which packs 5.5 bits per
character instead of byte mode's 8 — the reason our QR codes are small. ``credential.transport``
calls this module; nothing here knows about CBOR, zlib or the ``PU1:`` prefix.

Decoding sits on the counter's verification hot path, so it avoids a per-character Python loop:
``bytes.translate`` maps characters to digit values in C, and all triplets are combined at once as
lanes of one big integer (see ``decode``). Decoding is strict: every input that is not the exact
RFC 9285 encoding of some byte string raises ``MalformedInput("base45_invalid")``.
"""

from __future__ import annotations

from typing import Final

from credential.errors import MalformedInput

__all__ = ["ALPHABET", "decode", "encode"]

ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

_INVALID: Final = 0xFF
# Character code → digit value; every byte outside the alphabet maps to the 0xFF sentinel so one
# ``in`` test after ``translate`` finds any invalid character.
_DECODE_TABLE: Final = bytes(
    ALPHABET.index(chr(b)) if chr(b) in ALPHABET else _INVALID for b in range(256)
)
# The same for text that may arrive in lower case (a keyboard-wedge scanner with caps lock on):
# base45 has no lower-case letters, so folding ASCII case in the table loses nothing, and saves
# upper-casing the whole text first.
_DECODE_TABLE_ANY_CASE: Final = bytes(
    ALPHABET.index(chr(b).upper()) if b < 128 and chr(b).upper() in ALPHABET else _INVALID
    for b in range(256)
)
_ENCODE_CHARS: Final = tuple(ALPHABET)
# 0xFF in the low byte of every 24-bit lane, for inputs up to 3·_MASK_LANES characters; ``&`` with
# a longer mask costs only the length of the shorter operand, so one constant serves every size.
_MASK_LANES: Final = 4096


def _lane_mask(lanes: int) -> int:
    # Built from bytes rather than as an integer expression: a compiler that folds constants
    # (mypyc, see ``make compile``) would otherwise try to print a 29,000-digit literal.
    return int.from_bytes(b"\x00\x00\xff" * lanes, "big")


_LANE_MASK: Final = _lane_mask(_MASK_LANES)


def encode(data: bytes) -> str:
    """Encode bytes as base45 text (RFC 9285 §4)."""
    chars = _ENCODE_CHARS
    out: list[str] = []
    append = out.append
    full = len(data) - (len(data) % 2)
    for i in range(0, full, 2):
        n = (data[i] << 8) | data[i + 1]
        rest, c = divmod(n, 45)
        e, d = divmod(rest, 45)
        append(chars[c] + chars[d] + chars[e])
    if full != len(data):
        d, c = divmod(data[-1], 45)
        append(chars[c] + chars[d])
    return "".join(out)


def decode(text: object, *, any_case: bool = False) -> bytes:
    """Decode base45 text (RFC 9285 §4), strictly.

    Raises ``MalformedInput("base45_invalid", reason=...)`` for a character outside the alphabet
    (lower case included, unless ``any_case``: then a lower-case letter reads as its upper-case
    self), a length of 3k+1, a triplet worth more than 65535 or a trailing pair worth more
    than 255.
    """
    if not isinstance(text, str):
        raise MalformedInput("base45_invalid", reason="not text")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedInput("base45_invalid", reason="character outside the alphabet") from None
    digits = raw.translate(_DECODE_TABLE_ANY_CASE if any_case else _DECODE_TABLE)
    if _INVALID in digits:
        raise MalformedInput("base45_invalid", reason="character outside the alphabet")
    size = len(digits)
    tail = size % 3
    if tail == 1:
        raise MalformedInput("base45_invalid", reason="impossible length")
    full = size - tail
    k = full // 3
    out = b""
    if k:
        # One big integer holds every triplet as a 24-bit lane (c·2¹⁶ + d·2⁸ + e). Masking out the
        # three digit bytes and recombining them as c + 45·d + 2025·e computes every triplet value
        # at once, in C; a lane cannot overflow (at most 91124 < 2²⁴), so a triplet worth more
        # than 65535 shows up as a non-zero top byte in its own lane.
        mask = _LANE_MASK if k <= _MASK_LANES else _lane_mask(k)
        n = int.from_bytes(digits[:full], "big")
        value = ((n >> 16) & mask) + 45 * ((n >> 8) & mask) + 2025 * (n & mask)
        if (value >> 16) & mask:
            raise MalformedInput("base45_invalid", reason="triplet value exceeds 65535")
        lanes = bytearray(value.to_bytes(3 * k, "big"))
        del lanes[0::3]  # drop each lane's (zero) top byte: two output bytes per triplet
        out = bytes(lanes)
    if tail:
        value = digits[full] + 45 * digits[full + 1]
        if value > 0xFF:
            raise MalformedInput("base45_invalid", reason="trailing pair value exceeds 255")
        out += bytes((value,))
    return out
