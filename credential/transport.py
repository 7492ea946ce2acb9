"""The QR text envelope: ``PU1:`` + base45(zlib(CBOR) or CBOR).

This is the outermost layer of every credential and presentation. ``pack`` is used by the issuer
and the wallet; ``unpack`` is the first thing a counter runs on scanned text, before
``credential.cbor`` and COSE see any byte. ``unpack`` therefore bounds everything: the text length,
and the inflated size (a zlib bomb is refused after at most ``max_inflated + 1`` bytes of output).

Compression is applied only when it makes the payload strictly smaller (signatures, keys and
digests do not compress). The reader tells the two apart by the first byte: zlib streams start
with 0x78. A CBOR document that itself begins with 0x78 (a text string of 24–255 bytes, never one
of our formats) is compressed unconditionally so that the rule stays unambiguous.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

from credential import base45
from credential.errors import MalformedInput

__all__ = ["PREFIX", "pack", "unpack"]

PREFIX: Final = "PU1:"
_ZLIB_FIRST_BYTE: Final = 0x78  # CMF: deflate, 32 KiB window — what zlib.compress writes
_VERSIONED: Final = re.compile(r"PU(\d{1,6}):")
_STRIP: Final = " \t\r\n\v\f"


def pack(cbor_bytes: bytes) -> str:
    """Wrap CBOR bytes for a QR code: zlib (only if strictly smaller), base45, ``PU1:`` prefix."""
    body = bytes(cbor_bytes)
    compressed = zlib.compress(body, 9)
    if len(compressed) < len(body) or (body and body[0] == _ZLIB_FIRST_BYTE):
        body = compressed
    return PREFIX + base45.encode(body)


def unpack(text: object, *, max_chars: int = 4096, max_inflated: int = 8192) -> bytes:
    """Unwrap scanned QR text into CBOR bytes, or raise ``MalformedInput``.

    Codes: ``not_pasaporte`` (no ``PU<n>:`` prefix), ``unsupported_version``, ``too_large`` (text
    over ``max_chars`` or inflating over ``max_inflated``), ``base45_invalid``, ``zlib_invalid``.
    Lower-case text (a keyboard-wedge scanner with caps lock on) is the same payload: base45 has
    no lower-case letters, so upper-casing ASCII loses nothing.
    """
    if not isinstance(text, str):
        raise MalformedInput("not_pasaporte")
    # Checked before stripping so that megabytes of padding cost nothing; the slack keeps a
    # payload of exactly max_chars with a CR/LF from a scanner acceptable.
    if len(text) > max_chars + 64:
        raise MalformedInput("too_large")
    # A valid payload never ends in base45's space character (its last digit is at most 32), so
    # stripping spaces is lossless.
    text = text.strip(_STRIP)
    if len(text) > max_chars:
        raise MalformedInput("too_large")
    if not text.isascii():
        # Non-ASCII would make str.upper() lossy ("ß" → "SS"); such text is no payload of ours.
        head = text[:8].upper()
        if head.startswith(PREFIX):
            raise MalformedInput("base45_invalid", reason="character outside the alphabet")
        raise MalformedInput("not_pasaporte")
    if text[: len(PREFIX)].upper() != PREFIX:
        versioned = _VERSIONED.match(text.upper())
        if versioned:
            raise MalformedInput("unsupported_version", version=versioned.group(1))
        raise MalformedInput("not_pasaporte")
    data = base45.decode(text[len(PREFIX) :], any_case=True)
    if data and data[0] == _ZLIB_FIRST_BYTE:
        return _inflate(data, max_inflated)
    return data


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
