"""Reading JSON from files, requests and other nodes: one parser whose every failure is a
``ValueError``.

CPython's ``json`` parser recurses once per nesting level, so ``[[[[…]]]]`` a few thousand deep
raises ``RecursionError`` instead of the ``ValueError`` of any other malformed document. Every
reader calls this one function, so each catches only ``ValueError`` (``UnicodeDecodeError`` is
one too).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DuplicateKey", "loads"]


class DuplicateKey(ValueError):
    """An object names one key twice. Which of the two values a parser keeps differs between
    parsers (Python keeps the last, others the first or refuse), so the sender and the reader
    could act on two different documents from the same bytes: refused (RFC 8259 §4 says names
    SHOULD be unique; I-JSON, RFC 7493, says MUST)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key[:40]!r}")
        self.key = key[:40]


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


MAX_DIGITS = 100  # every integer we read fits in 64 bits (20 digits)


class NumberTooLong(ValueError):
    """An integer of more digits than any field holds: valid JSON, but past Python's limit
    on converting digits (4300) it was a bare ``ValueError``, said as "not valid JSON"."""

    def __init__(self) -> None:
        super().__init__(f"number of more than {MAX_DIGITS} digits")


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise NumberTooLong
    return int(digits)


def loads(data: str | bytes) -> Any:
    """``json.loads`` refusing duplicate keys (``DuplicateKey``) and integers longer than any
    field (``NumberTooLong``: both say what is wrong with a document that is valid JSON); a
    document nested too deep is a ``ValueError`` like any other bad one."""
    try:
        return json.loads(data, object_pairs_hook=_unique, parse_int=_int)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
