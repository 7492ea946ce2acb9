"""CBOR (RFC 8949) for everything pasaporte signs or parses: credentials, bundles, status lists.

``dumps`` writes the *core deterministic encoding* (RFC 8949 §4.2.1): preferred (shortest)
argument and float encodings, definite lengths, and map keys sorted by the bytewise lexicographic
order of their encodings. cbor2's ``canonical=True`` gives the first two but sorts map keys
length-first (the old RFC 7049 §3.9 rule), so maps are encoded here.

``loads`` is the hardened parser in front of cbor2. Input comes from a QR code anyone can print,
so before cbor2 allocates anything a small iterative scanner walks the raw bytes and checks that
the item is well-formed and small: total size, nesting depth, total item count, every declared
length against the bytes actually left (a header claiming 2⁶⁰ bytes or elements is refused
before anything is allocated), definite lengths only, only allowlisted tags, only
false/true/null/float among the simple values, and no trailing bytes. cbor2 then decodes with
duplicate map keys refused. Whatever is wrong ends as ``MalformedInput("cbor_invalid",
reason=...)``; no cbor2 exception escapes.

Layer: ``credential.transport`` (QR text → bytes) feeds this module; COSE and the credential
format build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from operator import itemgetter
from typing import Any, Final

import cbor2

from credential.errors import MalformedInput

__all__ = ["dumps", "head", "loads"]

_NO_TAGS: Final[frozenset[int]] = frozenset()
# Major type 7 additional-information values we accept: false, true, null, half/single/double
# float. ``undefined`` and the unassigned simple values have no meaning in our formats.
_SIMPLE_OK: Final = frozenset({20, 21, 22, 25, 26, 27})
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


def _leaf_sizes() -> bytes:
    """For each initial byte, the bytes that follow it if it starts a complete leaf item, else 0xFF.

    Leaves are integers, short strings (length in the initial byte), false/true/null and floats:
    nearly every item in our documents, so one table lookup replaces the general decoding.
    """
    sizes = bytearray(b"\xff" * 256)
    for major in (0, 1):
        for info in range(24):
            sizes[major << 5 | info] = 0
        for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
            sizes[major << 5 | info] = width
    for major in (2, 3):
        for info in range(24):
            sizes[major << 5 | info] = info
    for info, width in ((20, 0), (21, 0), (22, 0), (25, 2), (26, 4), (27, 8)):
        sizes[7 << 5 | info] = width
    return bytes(sizes)


_LEAF_SIZE: Final = _leaf_sizes()


def _scan(data: bytes, max_depth: int, max_items: int, tags: Collection[int]) -> None:
    """Walk one CBOR data item without building it; raise if it is not acceptable.

    Iterative on purpose: a recursive walker is itself a stack-exhaustion target. ``remaining``
    counts the items still due in the innermost open container; ``stack`` holds the counts of the
    enclosing ones, so ``len(stack)`` is the nesting depth.
    """
    leaf_size = _LEAF_SIZE
    size = len(data)
    pos = 0
    items = 1
    remaining = 1
    stack: list[int] = []
    push = stack.append
    pop = stack.pop
    try:
        while True:
            if not remaining:
                if not stack:
                    break
                remaining = pop()
                continue
            remaining -= 1
            initial = data[pos]
            pos += 1
            skip = leaf_size[initial]
            if skip != 0xFF:  # a leaf: step over it (overshooting the end is caught below)
                pos += skip
                continue
            if initial == 0x58:  # bstr with a one-byte length: signatures, payloads, salts
                pos += 1 + data[pos]
                continue
            major = initial >> 5
            info = initial & 0x1F
            if info < 24:
                arg = info
            elif info == 24:
                arg = data[pos]
                pos += 1
            elif info == 25:
                arg = (data[pos] << 8) | data[pos + 1]
                pos += 2
            elif info in (26, 27):
                width = 4 if info == 26 else 8
                if pos + width > size:
                    raise _invalid("truncated")
                arg = int.from_bytes(data[pos : pos + width], "big")
                pos += width
            elif info == 31:
                raise _invalid("indefinite length")
            else:
                raise _invalid("reserved additional information")
            if major in (2, 3):  # long byte or text string: is the content really there?
                if arg > size - pos:
                    raise _invalid("length exceeds input")
                pos += arg
            elif major in (4, 5):  # array or map: every element needs at least one byte
                if major == 5:
                    arg *= 2
                if len(stack) >= max_depth:
                    raise _invalid("nesting too deep")
                if arg:
                    if arg > size - pos:
                        raise _invalid("length exceeds input")
                    items += arg
                    if items > max_items:
                        raise _invalid("too many items")
                    push(remaining)
                    remaining = arg
            elif major == 6:
                if arg not in tags:
                    raise _invalid("tag not allowed")
                if len(stack) >= max_depth:
                    raise _invalid("nesting too deep")
                items += 1
                if items > max_items:
                    raise _invalid("too many items")
                push(remaining)
                remaining = 1
            else:  # major 7 outside the leaf table: undefined, unassigned simple value
                raise _invalid("simple value not allowed")
    except IndexError:
        raise _invalid("truncated") from None
    if pos > size:
        raise _invalid("truncated")
    if pos < size:
        raise _invalid("trailing bytes")


def loads(
    data: object,
    *,
    max_size: int = 16384,
    max_depth: int = 16,
    max_items: int = 2048,
    allowed_tags: Collection[int] = _NO_TAGS,
) -> Any:
    """Decode one CBOR data item from untrusted bytes, or raise ``MalformedInput("cbor_invalid")``.

    Limits: ``max_size`` bytes, ``max_depth`` nested arrays/maps/tags, ``max_items`` data items in
    all (map keys and values count separately). Tags outside ``allowed_tags`` are refused, so a
    caller opts in to each tag its format uses (e.g. 18 for COSE_Sign1).

    ``data`` is typed ``object`` because this is a trust boundary: compiled (``make compile``),
    a declared ``bytes`` would be enforced with a bare TypeError before the check below could
    turn a wrong type into the typed rejection.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _invalid("not bytes")
    raw = bytes(data)
    if len(raw) > max_size:
        raise _invalid("too large")
    if not raw:
        raise _invalid("empty")
    _scan(raw, max_depth, max_items, allowed_tags)
    try:
        # The scanner already bounded depth, size and lengths; cbor2 adds UTF-8 validity and
        # duplicate-key detection (a duplicate key lets two verifiers read different claims).
        return cbor2.loads(raw, allow_indefinite=False, allow_duplicate_keys=False)
    except Exception as exc:  # any cbor2 failure, whatever its class, is malformed input
        raise _invalid(f"decode: {type(exc).__name__}") from None
