"""The QR text envelope: ``PU1:`` + base45(zlib(CBOR) or CBOR).

This is the outermost layer of every credential and presentation. ``pack`` is used by the issuer
and the wallet; ``unpack`` is the first thing a counter runs on scanned text, before
``credential.cbor`` and COSE see any byte. ``unpack`` therefore bounds everything: the text length,
and the inflated size (a zlib bomb is refused after at most ``max_inflated + 1`` bytes of output).

Compression is applied only when it makes the payload strictly smaller (signatures, keys and
digests do not compress). The reader tells the two apart by the first bytes: a zlib stream
(RFC 1950) starts with 0x78 (what ``zlib.compress`` writes: a 32 KiB window) or with any other
valid header (a smaller window, as small-memory deflaters write: 0x08–0x68 and a check byte), and
none of our formats' CBOR does (an envelope starts 0x82 or 0x84). A CBOR document that itself
looks like one (a text string of 24–255 bytes, say) is compressed unconditionally, so the rule
stays unambiguous.

What a keyboard-wedge scanner or its log may add or change is undone here when that is lossless,
and refused with its own code when not (``unpack``, ``diagnose``); the signature still decides
every acceptance, so nothing undone here can let a code through that its issuer did not sign.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

from credential import base45
from credential.errors import MalformedInput

__all__ = ["PADDING", "PREFIX", "diagnose", "is_zlib", "pack", "unpack"]

PREFIX: Final = "PU1:"
_ZLIB_FIRST_BYTE: Final = 0x78  # CMF: deflate, 32 KiB window — what zlib.compress writes
_VERSIONED: Final = re.compile(r"PU(\d{1,6}):")
# What a scanner or a log may put around a code: ASCII controls (the Enter, Tab or LF suffix; a
# configured STX/ETX frame; NUL padding), spaces of every kind, C1 controls, byte order marks
# and zero-width characters. None is a base45 character but the space, and a payload never ends
# in a space (see ``unpack``), so stripping them from both ends is lossless.
PADDING: Final = ("".join(map(chr, range(0x21))) + "".join(map(chr, range(0x7F, 0xA1)))
                  + "\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                  "\u2009\u200a\u200b\u2028\u2029\u202f\u205f\u2060\u3000\ufeff")
# Inside a code, a non-breaking space (a word processor's or a web page's) stands for a space.
_SPACES: Final = {0xA0: " ", 0x2007: " ", 0x202F: " "}

# The keyboard language (see README, "At the counter itself"). A keyboard-wedge scanner sends
# key positions, and the computer reads them in its own layout. With the scanner set to US
# English and the computer to Spanish (Latin America, es-LA, or Spain, es-ES), the base45
# alphabet comes out the same (digits, letters, space, ``$ % .``) except five characters:
#
#     US   *  +           -  /  :          (typed as)
#     es   (  ¡ (LA), ¿ (ES)  '  -  Ñ (ñ with caps lock on)
#
# The prefix's ``:`` always shows which happened ("PU1Ñ"), and inside such a code the mapping
# back is one to one: ``-`` there can only be a ``/`` (a US ``-`` comes out ``'``), and no other
# character is ambiguous. So such a code is read back exactly as the scanner meant it, and it
# passes only if its signatures hold, as any other. Any other mismatch (a colon that comes out as
# another symbol or as a character the log could not keep: a German, French or Portuguese
# computer, a Spanish scanner on a US computer, a log saved in Latin-1) changes letters or
# characters we cannot map back with certainty, and is refused (``keyboard_layout``), telling
# the clerk to set the scanner's keyboard language to the computer's.
_FROM_SPANISH_LAYOUT: Final = {ord("Ñ"): ":", ord("ñ"): ":", ord("("): "*", ord("¡"): "+",
                               ord("¿"): "+", ord("'"): "-", ord("-"): "/"}
# An AIM symbology identifier ("]Q1" for a QR code), which scanners can be set to send before
# each code; on a Spanish computer a US scanner's "]" comes out as "+".
_HEAD: Final = re.compile(r"(?:\][A-Za-z][0-9A-Za-z]|(\+)[A-Za-z][0-9A-Za-z])?[Pp][Uu]1([:Ññ])")
_OTHER_LAYOUT: Final = re.compile(r"(?:[\]+][A-Za-z][0-9A-Za-z])?[Pp][Uu]1?[^0-9A-Za-z:\s]")
# Where one more code starts: in a line holding several, there is more than one.
_ANY_PREFIX: Final = re.compile(r"[Pp][Uu]1[:Ññ]")
_DIAGNOSED_CHARS: Final = 16384  # a prefix beyond this in a refused text is not looked for
# The CBOR reasons that say the bytes ended before the item did: a code read only in part.
_ENDED_EARLY: Final = frozenset({"truncated", "length exceeds input", "empty"})


def pack(cbor_bytes: bytes) -> str:
    """Wrap CBOR bytes for a QR code: zlib (only if strictly smaller), base45, ``PU1:`` prefix."""
    body = bytes(cbor_bytes)
    compressed = zlib.compress(body, 9)
    if len(compressed) < len(body) or is_zlib(body):
        body = compressed
    return PREFIX + base45.encode(body)


def is_zlib(data: bytes) -> bool:
    """Whether ``data`` is read as a zlib stream: first byte 0x78 (always so, as before any
    other header was), or an RFC 1950 header of deflate (CM 8) with a window of at most 32 KiB
    (CINFO ≤ 7) whose two bytes pass the FCHECK (a multiple of 31)."""
    if not data:
        return False
    first = data[0]
    if first == _ZLIB_FIRST_BYTE:
        return True
    return (len(data) >= 2 and first & 0x0F == 8 and first >> 4 <= 7
            and ((first << 8) | data[1]) % 31 == 0)


def unpack(text: object, *, max_chars: int = 4096, max_inflated: int = 8192) -> bytes:
    """Unwrap scanned QR text into CBOR bytes, or raise ``MalformedInput``.

    Codes: ``not_pasaporte`` (no ``PU<n>:`` prefix), ``unsupported_version``, ``too_large`` (text
    over ``max_chars`` or inflating over ``max_inflated``), ``keyboard_layout`` (a prefix typed
    by a scanner set to another keyboard language than the computer's), ``base45_invalid``,
    ``zlib_invalid``.

    Read as the same payload: lower-case text (a keyboard-wedge scanner with caps lock on: base45
    has no lower-case letters, so upper-casing ASCII loses nothing); ``PADDING`` around it
    (suffix and prefix keys, STX/ETX, spaces, NUL, a byte order mark); a non-breaking space for
    a space inside it; an AIM symbology identifier (``]Q1``) before it; and the text a US
    scanner types on a Spanish computer (see ``_FROM_SPANISH_LAYOUT``). Only text that is none of
    these takes more than the one quick check below (``_body``).
    """
    if not isinstance(text, str):
        raise MalformedInput("not_pasaporte")
    # Checked before stripping so that megabytes of padding cost nothing; the slack keeps a
    # payload of exactly max_chars with a CR/LF from a scanner acceptable.
    if len(text) > max_chars + 64:
        raise MalformedInput("too_large")
    # A valid payload never ends in base45's space character (its last digit is at most 32), and
    # the prefix comes first, so stripping spaces is lossless; the rest of PADDING is not base45.
    text = text.strip(PADDING)
    if len(text) > max_chars:
        raise MalformedInput("too_large")
    if text.isascii() and text[: len(PREFIX)].upper() == PREFIX:
        body = text[len(PREFIX) :]  # the scan as it should be: no more work than this
    else:
        body = _body(text)
    data = base45.decode(body, any_case=True)
    if is_zlib(data):
        return _inflate(data, max_inflated)
    return data


def _body(text: str) -> str:
    """The base45 of text that does not start plainly with ``PU1:`` (see ``unpack``), or the
    refusal that says why it is no payload."""
    if not text.isascii():
        text = text.translate(_SPACES)
    head = _HEAD.match(text)
    if head is not None:
        body = text[head.end() :]
        if head.group(2) != ":":  # a US scanner, a Spanish computer: typed back as meant
            return body.translate(_FROM_SPANISH_LAYOUT)
        if head.group(1) is None:  # (a "+" before the identifier is the Spanish layout's "]")
            # Anything not ASCII left in it is refused by base45 ("ß".upper() would be "SS").
            return body
    upper = text[:16].upper()
    versioned = _VERSIONED.match(upper)
    if versioned:
        raise MalformedInput("unsupported_version", version=versioned.group(1))
    if head is not None or _OTHER_LAYOUT.match(text):
        raise MalformedInput("keyboard_layout")
    raise MalformedInput("not_pasaporte")


def diagnose(text: object, error: MalformedInput) -> MalformedInput:
    """The refusal to show for ``text`` that failed to decode with ``error``, worded for what
    happened at the scanner where the text shows it: several codes read as one line (a scanner
    that ends codes with no Enter, or a Tab; two scans in a row), ``scan_several``; a code whose
    bytes end before its content does (moved away from the scanner too soon),
    ``scan_incomplete``. Otherwise ``error`` itself. Only ever called for a refused text, so it
    costs an accepted scan nothing."""
    if not isinstance(text, str):
        return error
    starts = [m.start() for m in _ANY_PREFIX.finditer(text, 0, _DIAGNOSED_CHARS)]
    # A prefix's four characters also occur by chance inside a code's base45 (about one code
    # in 8,000): two prefixes are several codes only if one of the pieces is a whole code.
    ends = [*starts[1:], None]
    if len(starts) > 1 and any(_whole(text[a:b]) for a, b in zip(starts, ends, strict=True)):
        return MalformedInput("scan_several")
    if error.code == "cbor_invalid" and error.detail.get("reason") in _ENDED_EARLY:
        return MalformedInput("scan_incomplete")
    return error


def _whole(piece: str) -> bool:
    """Whether ``piece`` unpacks into one whole CBOR item of a code's size (hundreds of bytes;
    the tail after a chance prefix is random bytes, which next to never are exactly one item)."""
    # only for a refused scan: the hot path does not import them here
    from credential import cbor, cose

    try:
        data = unpack(piece.strip())
        cbor.loads(data, allowed_tags=(cose.TAG_SIGN1,))  # may be tagged, as decode_bytes takes
    except MalformedInput:
        return False
    return len(data) >= 64


def _inflate(data: bytes, max_inflated: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # One byte over the cap is enough to know the stream is too large, and it is all we
        # ever allocate: a 10 MB bomb stops here.
        out = inflater.decompress(data, max_inflated + 1)
    except zlib.error:
        raise MalformedInput("zlib_invalid", reason="corrupt stream") from None
    if len(out) > max_inflated:
        raise MalformedInput("too_large")
    if not inflater.eof:
        raise MalformedInput("zlib_invalid", reason="truncated stream")
    if inflater.unused_data:
        raise MalformedInput("zlib_invalid", reason="trailing bytes")
    return out
