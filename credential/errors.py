"""The one exception hierarchy of pasaporte.

Every error a user can meet carries a stable machine ``code`` and a message in Spanish and
English, looked up in the catalogs under ``schemas/messages/`` so that wording lives in one place::

    PasaporteError                 code + es/en message + detail (never personal data)
     ├── Rejection                 a credential, presentation, bundle or proof is refused
     │    └── MalformedInput       bytes that do not parse (size, depth, base45, zlib, CBOR, shape)
     ├── StoreError                a local home/store problem (not initialised, wrong passphrase)
     ├── LedgerError               the transparency log refuses or detects a problem
     └── UsageError                the caller asked for something impossible (bad flag, bad claims)

Verification APIs return a result object for rejections a counter expects (expired, revoked…) and
raise only for programming errors; parsers raise ``MalformedInput`` and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "LedgerError",
    "MalformedInput",
    "PasaporteError",
    "Rejection",
    "StoreError",
    "UsageError",
    "as_usage",
    "message_catalog",
]


@cache
def message_catalog() -> dict[str, dict[str, str]]:
    """All message catalogs merged: ``{code: {"es": …, "en": …}}``."""
    merged: dict[str, dict[str, str]] = {}
    folder = resources.files("schemas") / "messages"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            for code, texts in json.loads(entry.read_text(encoding="utf-8")).items():
                if code in merged:
                    raise RuntimeError(f"message code {code!r} defined twice ({entry.name})")
                merged[code] = texts
    return merged


@cache
def _reasons_es() -> tuple[dict[str, str], tuple[tuple[re.Pattern[str], str], ...]]:
    """The Spanish for the fixed English phrases errors carry as ``reason`` (or ``status``):
    exact phrases, and templates whose ``{}`` stand for the parts that vary."""
    path = resources.files("schemas") / "messages" / "reasons" / "es.json"
    table: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    exact = {en: es for en, es in table.items() if "{}" not in en}
    # the most specific template first ("record {} is missing" before "record {} missing")
    templates = sorted((en for en in table if "{}" in en),
                       key=lambda en: len(en.replace("{}", "")), reverse=True)
    compiled = tuple(
        (re.compile("^" + "(.*?)".join(re.escape(part) for part in en.split("{}")) + "$",
                    re.DOTALL), table[en]) for en in templates)
    return exact, compiled


@cache
def _os_es() -> dict[str, str]:
    """The Spanish for the operating system's error texts, keyed by the text this system's C
    library gives for each errno (``exc.strerror``). The table names errno symbols, not numbers
    or words, so that it holds on any platform."""
    path = resources.files("schemas") / "messages" / "reasons" / "os-es.json"
    table: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return {os.strerror(getattr(errno, name)): es for name, es in table.items()
            if hasattr(errno, name)}


# "[Errno 28] No space left on device", as OSError and its kin (URLError, gaierror…) print it,
# possibly with the file name after a colon or inside another library's text.
_ERRNO_TEXT = re.compile(r"(\[Errno -?\d+\] )([^:\]>]*[^:\]>\s])")


def _os_spanish(match: re.Match[str]) -> str:
    # name resolution (getaddrinfo) texts have numbers of their own: they are in our table
    es = _os_es().get(match[2]) or _reasons_es()[0].get(match[2])
    return match[0] if es is None else match[1] + es


def spanish(reason: str) -> str:
    """``reason`` in Spanish where it is one of our phrases or an operating-system error text;
    otherwise as it is (a path, a library's own text)."""
    exact, templates = _reasons_es()
    if reason in exact:
        return exact[reason]
    if reason in _os_es():
        return _os_es()[reason]
    for pattern, es in templates:
        m = pattern.match(reason)
        if m is not None:
            pieces = es.split("{}")  # as many as the English has (checked by a test)
            # A part may be a phrase in its turn ("Invalid value for {}: {}" around "{} is not
            # one of {}."); each is shorter than the whole, so this ends.
            filled = (spanish(g) + piece for g, piece in zip(m.groups(), pieces[1:],
                                                             strict=True))
            return pieces[0] + "".join(filled)
    if "[Errno " in reason:
        return _ERRNO_TEXT.sub(_os_spanish, reason)
    # "'/tmp': Is a directory": a library naming a file, then the operating system's text
    named, colon, os_text = reason.rpartition(": ")
    if colon and os_text in _os_es():
        return named + colon + _os_es()[os_text]
    return reason


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class PasaporteError(Exception):
    """Base error: ``code`` is stable; ``message`` holds the Spanish and English text."""

    default_code = "error"

    def __init__(self, code: str | None = None, /, **detail: Any) -> None:
        self.code = code or self.default_code
        self.detail = detail
        texts = message_catalog().get(self.code)
        if texts is None:  # a missing catalog entry must never hide the real error
            texts = {"es": f"Error: {self.code}", "en": f"Error: {self.code}"}
        params = _SafeDict({k: v for k, v in detail.items()})
        # A reason given in one language (ours in English, or a library's text, a path) serves
        # both halves of messages that take one reason per language, in Spanish where we can.
        es = _SafeDict(params)
        # A nested error passes its own Spanish as ``reason_es`` / ``status_es``. ``what``
        # names a part of the input ("envelope", "kb"): in Spanish too where it is our phrase.
        for key in ("reason", "status", "what"):
            given = params.get(f"{key}_es")
            if isinstance(given, str):
                es[key] = given
            elif isinstance(params.get(key), str):
                es[key] = spanish(params[key])  # once: it also serves reason_es below
        if "reason" in params:
            es.setdefault("reason_es", es["reason"])
            params.setdefault("reason_en", params["reason"])
        self.message = {"es": texts["es"].format_map(es), "en": texts["en"].format_map(params)}
        super().__init__(f"{self.code}: {self.message['en']}")

    def diagnostics(self) -> str:
        """Both languages, for a terminal or a log line."""
        return f"[{self.code}] {self.message['es']} / {self.message['en']}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": dict(self.message)}

    def of_file(self, file: str) -> PasaporteError:
        """This error said of the file it came from (``file: …``): for a command given several
        files of a kind, where the error alone cannot tell which one to fix."""
        self.detail = {**self.detail, "file": file}
        self.message = {lang: f"{file}: {text}" for lang, text in self.message.items()}
        return self


class Rejection(PasaporteError):
    default_code = "rejected"


class MalformedInput(Rejection):
    default_code = "malformed"


class StoreError(PasaporteError):
    default_code = "store_error"


class LedgerError(PasaporteError):
    default_code = "ledger_error"


class UsageError(PasaporteError):
    default_code = "usage_error"


@contextlib.contextmanager
def as_usage(kinds: type[PasaporteError] | tuple[type[PasaporteError], ...] = MalformedInput,
             code: str | None = None) -> Iterator[None]:
    """Errors of ``kinds`` raised in the block become a ``UsageError`` (exit 2) with the same
    code and detail, or ``code``: for what the command line was given (a key typed wrong, a
    bundle file that does not parse), which is a mistake in the command, not a refusal of the
    state found. A ``StoreError`` (that state) and a ``UsageError`` pass as they are."""
    try:
        yield
    except (UsageError, StoreError):
        raise
    except kinds as exc:
        usage = UsageError(code or exc.code, **exc.detail)
        if code is None:  # the same error: its words as said (a file named before them, say)
            usage.message = exc.message
        raise usage from None
