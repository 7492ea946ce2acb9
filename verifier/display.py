"""Text fit for a counter's screen: what a scanned code says, shown, never obeyed.

A terminal acts on some characters instead of showing them: a carriage return or an escape
sequence (``ESC [2K``) can rewrite the line a clerk is reading, a bidi override reorders it.
Whatever a resident's code chooses (the audience its wallet signed, above all) goes through
``printable`` before it reaches a message or the screen.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

# The same characters ``credential.claims`` keeps out of names: controls, format characters
# (bidi overrides, invisible ones), line and paragraph separators, lone surrogates.
_NOT_TEXT = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> str:
    """``text`` with each such character written as its Python escape (``\\r``, ``\\x1b``,
    ``\\u202e``): seen, so a clerk can tell something odd was there, and inert."""
    if text.isprintable():  # the common case, and a quick one
        return text
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in _NOT_TEXT else c
                   for c in text)
