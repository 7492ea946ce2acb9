"""CBOR (RFC 8949) for everything pasaporte signs or parses: credentials, bundles, status lists.

``dumps`` writes the *core deterministic encoding* (RFC 8949 §4.2.1): preferred (shortest)
argument and float encodings, definite lengths, and map keys sorted by the bytewise lexicographic
order of their encodings. cbor2's ``canonical=True`` gives the first two but sorts map keys
length-first (the old RFC 7049 §3.9 rule), so maps are encoded here.

``loads`` is our own hardened decoder (cbor2 encodes; tests check ``loads`` against it). Input comes
from a QR code anyone can print, so it checks as it builds: total size, nesting depth, total item
count, every declared length against the bytes actually left (a header claiming 2⁶⁰ bytes or
elements is refused before anything is allocated), definite lengths only, only allowlisted tags,
only false/true/null/float among the simple values, valid UTF-8, unique scalar map keys (a
duplicate key lets two verifiers read different claims), and no trailing bytes. Whatever is
wrong ends as ``MalformedInput("cbor_invalid", reason=...)``. It replaced "scan, then cbor2":
one pass, and no general-purpose decoder's setup cost on each of the five small documents a
scan decodes.

Layer: ``credential.transport`` (QR text → bytes) feeds this module; COSE and the credential
format build on it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Mapping
from operator import itemgetter
from typing import Any, Final

import cbor2

from credential.errors import MalformedInput

__all__ = ["dumps", "head", "loads"]

_NO_TAGS: Final[frozenset[int]] = frozenset()
_first: Final = itemgetter(0)


_SCALAR_KEYS: Final = (int, str, bytes)


def _encode_key(key: Any) -> bytes:
    # Scalar keys (all our formats use) go straight to cbor2; a composite key may hold a map.
    if type(key) in _SCALAR_KEYS:
        data: bytes = cbor2.dumps(key, canonical=True)
        return data
    return dumps(key)


def _encode_map(encoder: Any, value: Mapping[Any, Any]) -> None:
    # Sort by the deterministic encoding of each key (RFC 8949 §4.2.1), not by length first.
    encoder.encode_length(5, len(value))
    for key_bytes, item in sorted([(_encode_key(k), v) for k, v in value.items()], key=_first):
        encoder.write(key_bytes)
        encoder.encode(item)


_ENCODERS: Final[dict[type, Callable[[Any, Any], None]]] = {dict: _encode_map}


_SMALL_HEADS: Final = tuple(tuple(bytes((major << 5 | n,)) for n in range(24))
                            for major in range(8))


def head(major: int, n: int) -> bytes:
    """The shortest head of a data item (RFC 8949 §3): major type and argument ``n``. For code
    that builds fixed CBOR shapes by concatenation on a hot path instead of calling ``dumps``."""
    if n < 24:  # most heads: one byte, straight from a table (no allocation)
        return _SMALL_HEADS[major][n]
    top = major << 5
    if n < 1 << 8:
        return bytes((top | 24, n))
    if n < 1 << 16:
        return bytes((top | 25,)) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes((top | 26,)) + n.to_bytes(4, "big")
    return bytes((top | 27,)) + n.to_bytes(8, "big")


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` in RFC 8949 §4.2.1 core deterministic encoding.

    Unencodable values raise cbor2's ``CBOREncodeError``: that is a programming error, not input.
    """
    data: bytes = cbor2.dumps(obj, canonical=True, encoders=_ENCODERS)
    return data


def _invalid(reason: str) -> MalformedInput:
    return MalformedInput("cbor_invalid", reason=reason)


_MAX_DEPTH_LIMIT: Final = 256  # the decoder recurses once per level: a hard cap on C stack use
# Not bool or float: to Python ``True`` and ``1.0`` are the key ``1``, to CBOR (and every
# other COSE/CWT reader) three different keys, so such a map would mean two things.
_KEY_TYPES: Final = (int, str, bytes)
_FLOAT_FORMATS: Final = {25: ">e", 26: ">f", 27: ">d"}


class _Reader:
    """One pass over one CBOR data item that checks and builds at once.

    Every declared length is checked against the bytes actually left *before* anything is
    allocated for it (a header claiming 2⁶⁰ bytes or elements is refused on the spot, and each
    element needs at least one byte), every container counts against ``max_items`` when its
    header is read, and depth is checked before descending, so recursion never goes deeper than
    ``max_depth`` (itself capped) levels. Compiled (``make compile``), this runs several times
    faster than a general-purpose decoder for the small documents a counter scans.
    """

    __slots__ = ("data", "items", "max_depth", "max_items", "pos", "tags")

    data: bytes
    pos: int
    items: int
    max_depth: int
    max_items: int
    tags: Collection[int]

    def __init__(self, data: bytes, max_depth: int, max_items: int,
                 tags: Collection[int]) -> None:
        self.data, self.pos, self.items = data, 0, 1
        self.max_depth, self.max_items, self.tags = max_depth, max_items, tags

    def _advance(self, width: int) -> int:
        """Step over ``width`` bytes that must be there; returns where they start."""
        pos = self.pos
        if pos + width > len(self.data):
            raise _invalid("truncated")
        self.pos = pos + width
        return pos

    def _argument(self, info: int) -> int:
        """The argument that follows an initial byte with additional information ``info``."""
        if info < 24:
            return info
        if info == 31:
            raise _invalid("indefinite length")
        if info > 27:
            raise _invalid("reserved additional information")
        width = 1 << (info - 24)  # 24..27: 1, 2, 4 or 8 bytes
        pos = self._advance(width)
        data = self.data
        if width == 1:
            return data[pos]
        if width == 2:  # byte arithmetic compiles to native integer code; from_bytes is a call
            return data[pos] << 8 | data[pos + 1]
        if width == 4:
            return (data[pos] << 24 | data[pos + 1] << 16 | data[pos + 2] << 8
                    | data[pos + 3])
        return int.from_bytes(data[pos:pos + 8], "big")

    def _count(self, n: int, depth: int) -> None:
        """Admit a container (or tag) of ``n`` data items at nesting ``depth``."""
        if depth >= self.max_depth:
            raise _invalid("nesting too deep")
        if n:
            if n > len(self.data) - self.pos:
                raise _invalid("length exceeds input")
            self.items += n
            if self.items > self.max_items:
                raise _invalid("too many items")

    def item(self, depth: int) -> Any:
        """The data item at the current position; ``depth`` containers enclose it."""
        data = self.data
        pos = self.pos
        if pos >= len(data):
            raise _invalid("truncated")
        initial = data[pos]
        self.pos = pos + 1
        major = initial >> 5
        info = initial & 0x1F
        if major == 7:
            return self._simple(info)
        arg = self._argument(info)
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2 or major == 3:
            start = self.pos
            if arg > len(data) - start:
                raise _invalid("truncated" if info < 24 else "length exceeds input")
            end = start + arg
            self.pos = end
            if major == 2:
                return data[start:end]
            try:
                return data[start:end].decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid("decode: invalid UTF-8") from None
        if major == 4:
            self._count(arg, depth)
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            self._count(2 * arg, depth)
            out: dict[Any, Any] = {}
            for i in range(arg):
                key = self.item(depth + 1)
                if not (type(key) in _KEY_TYPES or key is None):
                    raise _invalid("decode: map key not allowed")
                out[key] = self.item(depth + 1)
                if len(out) <= i:  # the key was already there
                    raise _invalid("decode: duplicate map key")
            return out
        # major 6: a tag
        if arg not in self.tags:
            raise _invalid("tag not allowed")
        self._count(1, depth)
        return cbor2.CBORTag(arg, self.item(depth + 1))

    def _simple(self, info: int) -> Any:
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        fmt = _FLOAT_FORMATS.get(info)
        if fmt is None:  # undefined, the simple values, or a malformed initial byte
            self._argument(info)  # reports truncation, reserved or indefinite first
            raise _invalid("simple value not allowed")
        width = 1 << (info - 24)  # 25..27: half, single, double
        pos = self._advance(width)
        value: float = struct.unpack(fmt, self.data[pos:pos + width])[0]
        return value


def loads(
    data: object,
    *,
    max_size: int = 16384,
    max_depth: int = 16,
    max_items: int = 2048,
    allowed_tags: Collection[int] = _NO_TAGS,
) -> Any:
    """Decode one CBOR data item from untrusted bytes, or raise ``MalformedInput("cbor_invalid")``.

    Limits: ``max_size`` bytes, ``max_depth`` nested arrays/maps/tags (at most 256), ``max_items``
    data items in all (map keys and values count separately). Tags outside ``allowed_tags`` are
    refused, so a caller opts in to each tag its format uses (e.g. 18 for COSE_Sign1); an allowed
    tag comes back as a ``cbor2.CBORTag``. Map keys must be scalars and unique; text must be
    valid UTF-8; only definite lengths; no trailing bytes.

    ``data`` is typed ``object`` because this is a trust boundary: compiled (``make compile``),
    a declared ``bytes`` would be enforced with a bare TypeError before the check below could
    turn a wrong type into the typed rejection.
    """
    if max_depth > _MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth above {_MAX_DEPTH_LIMIT}")  # a programming error
    if type(data) is bytes:
        raw = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise _invalid("not bytes")
    if len(raw) > max_size:
        raise _invalid("too large")
    if not raw:
        raise _invalid("empty")
    reader = _Reader(raw, max_depth, max_items, allowed_tags)
    value = reader.item(0)
    if reader.pos < len(raw):
        raise _invalid("trailing bytes")
    return value
