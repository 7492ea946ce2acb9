"""Text that reaches a person's screen: what names, notices and other shown text may hold, and
how anything else is shown so that it is seen, not obeyed.

A terminal acts on some characters instead of showing them (a carriage return or ``ESC [2K``
rewrites the line a clerk reads; C1's U+009B starts an escape sequence too), a bidi override
reorders what follows, and a line separator splits one JSON line in two for many readers.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Mapping

__all__ = ["NOT_TEXT", "WIDE_BOMS", "check_utf8", "decode_file", "escaped", "folded", "is_text",
           "is_utf8", "one_line", "typed_forms"]

# Controls (Cc), format characters (Cf: bidi overrides, invisible joiners and spaces), lone
# surrogates (Cs: JSON "\ud800", no character at all), line and paragraph separators (Zl, Zp).
NOT_TEXT = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_text(text: str, allowed: str = "") -> bool:
    """Whether ``text`` holds none of those characters (but those in ``allowed``)."""
    if text.isprintable():  # the common case, and a quick one
        return True
    return not any(unicodedata.category(c) in NOT_TEXT and c not in allowed for c in text)


# The byte order marks of the wide Unicode encodings a Windows tool writes text in (Notepad's
# "Unicode", PowerShell's ">"), UTF-32's first: its little-endian mark starts with UTF-16's.
WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
             (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_file(raw: bytes) -> str:
    """A whole text file's bytes as text: UTF-16 or UTF-32 when it opens with that byte order
    mark, else UTF-8 with or without one (Notepad's). The mark is no part of the text.
    Raises ``UnicodeDecodeError`` for bytes that are none of these."""
    encoding = next((name for bom, name in WIDE_BOMS if raw.startswith(bom)), "utf-8-sig")
    return raw.decode(encoding)


def is_utf8(text: str) -> bool:
    """Whether UTF-8 can spell ``text``: bytes that were not UTF-8 (a Latin-1 terminal, a
    variable set from a Latin-1 file) arrive as surrogate escapes, and JSON's "\\ud800" is a
    lone surrogate; neither is a character UTF-8 holds."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def as_utf8(text: str) -> str | None:
    """``text`` as the UTF-8 it was typed in, or None if it was not UTF-8. On a host whose
    locale is ASCII (a C locale with UTF-8 mode off: an old server, a service unit) Python hands
    every non-ASCII byte over as a surrogate escape, good UTF-8 included: "a petición" typed
    right was refused as not UTF-8, a passphrase with an "ñ" locked the office out. Those
    bytes read again as UTF-8 are the text; a Latin-1 terminal's are not."""
    if is_utf8(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return None


def check_utf8(text: str, what: str) -> str:
    """``text`` as typed, if it came as UTF-8. Bytes that did not (a terminal set to Latin-1,
    PuTTY's default, inside a UTF-8 session) arrive as surrogate escapes, which every later
    check misnamed: "control characters" in a name, "not a reason code" for "a petición", then
    recorded as unspecified on the public record. Refused as what it is (``text_not_utf8``)."""
    typed = as_utf8(text)
    if typed is None:
        from credential.errors import UsageError

        raise UsageError("text_not_utf8", what=what)
    return typed


# UTF-8 read once as Windows-1252 / Latin-1 and written again: "Ã±" for "ñ", "Ã©" for "é" (a
# spreadsheet opened in the wrong encoding, a UTF-8 terminal on a Latin-1 host)
_GARBLED = re.compile("[ÂÃ][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
                      "\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030"
                      "\u2039\u203a\u20ac\u2122]")


def garbled(text: str) -> bool:
    """Whether ``text`` carries accents damaged that way (``text_garbled``)."""
    return _GARBLED.search(text) is not None


def check_not_garbled(text: str, what: str, what_es: str | None = None) -> str:
    """``text``, if its accents are not damaged (``garbled``): a name written so would be
    signed into passports, bundles and the public record as it is, and the clerk, on the very
    terminal that damaged it, would see it right. Refused naming ``what`` (``text_garbled``)."""
    if garbled(text):
        from credential.errors import UsageError

        raise UsageError("text_garbled", what=what, what_es=what_es or what)
    return text


def escaped(text: str) -> str:
    """``text`` with each of those characters written as its Python escape (``\\r``, ``\\x1b``,
    ``\\u202e``): seen, so a reader can tell something odd was there, and inert."""
    if text.isprintable():
        return text
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in NOT_TEXT else c for c in text)


def one_line(text: str, limit: int = 200) -> str:
    """Someone else's words (a remote node's answer, a library's error quoting a damaged file)
    for one line of a terminal or a log: every control, format or space character a single
    space, runs of them one, at most ``limit`` characters ("…" where cut), "—" for nothing."""
    cleaned = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text[:4 * limit])
    cleaned = " ".join(cleaned.split()) or "—"
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1] + "…"


def folded(text: str) -> str:
    """``text`` as a name typed by a person is compared: lower case, without accents or blanks
    at its ends (``" Clínica"`` and ``clinica`` are one name; so are ``Extraviado`` and
    ``extraviado``)."""
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def typed_forms(name: str, label: Mapping[str, str]) -> set[str]:
    """How a person may type what ``schemas/`` calls ``name`` and labels ``label`` (Spanish and
    English), ``folded``: a service, a group, a fare category (``Biblioteca``, ``estudiante``)."""
    return {folded(name), *(folded(text) for text in label.values())}
