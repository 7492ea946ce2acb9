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

import json
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
        # A reason given in one language only (a library's text, a path) serves both halves of
        # messages that take one reason per language.
        if "reason" in params:
            params.setdefault("reason_es", params["reason"])
            params.setdefault("reason_en", params["reason"])
        self.message = {lang: texts[lang].format_map(params) for lang in ("es", "en")}
        super().__init__(f"{self.code}: {self.message['en']}")

    def diagnostics(self) -> str:
        """Both languages, for a terminal or a log line."""
        return f"[{self.code}] {self.message['es']} / {self.message['en']}"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": dict(self.message)}


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
