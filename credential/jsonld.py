"""Offline JSON-LD: the bundled contexts, a document loader that serves only them, and strict
``expand`` / ``canonize`` wrappers around pyld.

A counter verifies without a network, and a JSON-LD processor that may fetch a context is a
processor whose result an attacker who controls DNS can change. So every pyld call in pasaporte
goes through :class:`OfflineLoader`: it serves the contexts shipped as package data under
``schemas/`` (and, for tests or interop, extra documents handed to it explicitly) by exact URL,
and refuses everything else with ``MalformedInput("jsonld_context_unknown", url=...)``.

pyld wraps a loader's exception in its own ``JsonLdError``; :func:`expand` and :func:`canonize`
unwrap it so callers only ever see ``credential.errors`` classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from pyld import jsonld  # type: ignore[import-untyped,unused-ignore]

from credential.errors import MalformedInput, PasaporteError

__all__ = [
    "CREDENTIALS_V2",
    "DATA_INTEGRITY_V2",
    "MULTIKEY_V1",
    "PASAPORTE_V1",
    "PASAPORTE_VOCAB",
    "OfflineLoader",
    "bundled_context_urls",
    "canonize",
    "default_loader",
    "expand",
]

CREDENTIALS_V2 = "https://www.w3.org/ns/credentials/v2"
DATA_INTEGRITY_V2 = "https://w3id.org/security/data-integrity/v2"
MULTIKEY_V1 = "https://w3id.org/security/multikey/v1"
PASAPORTE_V1 = "https://w3id.org/pasaporte/v1"
PASAPORTE_VOCAB = PASAPORTE_V1 + "#"

# URL -> resource path inside the ``schemas`` package. The W3C files are byte-for-byte copies of
# the published contexts; the passport context is ours and served by the issuer at PASAPORTE_V1.
_BUNDLED: Mapping[str, str] = {
    CREDENTIALS_V2: "contexts/credentials-v2.jsonld",
    DATA_INTEGRITY_V2: "contexts/data-integrity-v2.jsonld",
    MULTIKEY_V1: "contexts/multikey-v1.jsonld",
    PASAPORTE_V1: "pasaporte-v1.jsonld",
}

# Contexts are small; a generous cap still stops a hostile "extra" document from ballooning.
_MAX_CONTEXT_URLS = 16

RemoteDocument = dict[str, Any]


@cache
def _bundled_text(url: str) -> str:
    return (resources.files("schemas") / _BUNDLED[url]).read_text(encoding="utf-8")


def bundled_context_urls() -> tuple[str, ...]:
    """The context URLs pasaporte ships and serves without a network."""
    return tuple(_BUNDLED)


class OfflineLoader:
    """A pyld document loader that never touches the network.

    ``extra`` adds documents by exact URL (a test's vector contexts, a partner's vocabulary); the
    bundled contexts cannot be replaced, so nobody can swap the meaning of a passport's terms.
    """

    def __init__(self, *, extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        clash = sorted(set(extra or {}) & set(_BUNDLED))
        if clash:
            raise MalformedInput("jsonld_context_override", url=clash[0])
        # Serialized once so each load hands pyld a fresh copy: pyld rewrites contexts in place.
        self._extra = {url: json.dumps(doc) for url, doc in (extra or {}).items()}

    def __call__(self, url: str, options: Mapping[str, Any] | None = None) -> RemoteDocument:
        if url in _BUNDLED:
            text = _bundled_text(url)
        elif url in self._extra:
            text = self._extra[url]
        else:
            raise MalformedInput("jsonld_context_unknown", url=url)
        return {
            "contentType": "application/ld+json",
            "contextUrl": None,
            "documentUrl": url,
            "document": json.loads(text),
        }


@cache
def default_loader() -> OfflineLoader:
    """The loader with the bundled contexts only."""
    return OfflineLoader()


def _pasaporte_error(exc: BaseException) -> PasaporteError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, PasaporteError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _run(
    operation: Callable[[jsonld.JsonLdProcessor, dict[str, Any]], Any],
    loader: OfflineLoader | None,
    strict: bool,
) -> Any:
    loader = loader or default_loader()
    dropped: list[str | None] = []
    processor = jsonld.JsonLdProcessor(on_property_dropped=dropped.append)
    options: dict[str, Any] = {
        "documentLoader": loader,
        # A fresh resolver per call: pyld's default one shares a process-wide cache keyed by URL,
        # which would let a context loaded by some other loader answer for ours.
        "contextResolver": jsonld.ContextResolver({}, loader, _MAX_CONTEXT_URLS),
        "base": "",
    }
    try:
        result = operation(processor, options)
    except PasaporteError:
        raise
    except Exception as exc:  # pyld raises JsonLdError, but also KeyError/TypeError on junk
        inner = _pasaporte_error(exc)
        if inner is not None:
            raise inner from exc
        code = getattr(exc, "code", None) or type(exc).__name__
        raise MalformedInput("jsonld_invalid", reason=str(code)) from exc
    if strict and dropped:
        # A term the contexts do not define vanishes from the RDF and so from the signature:
        # signing it would certify less than the document shows.
        raise MalformedInput("jsonld_term_dropped", term=str(dropped[0]))
    return result


def expand(
    document: Mapping[str, Any], *, loader: OfflineLoader | None = None, strict: bool = True
) -> list[dict[str, Any]]:
    """JSON-LD expansion with the offline loader; ``strict`` refuses terms that would be dropped."""
    result: list[dict[str, Any]] = _run(lambda p, o: p.expand(dict(document), o), loader, strict)
    return result


def canonize(
    document: Mapping[str, Any], *, loader: OfflineLoader | None = None, strict: bool = True
) -> str:
    """RDF Dataset Canonicalization (RDFC-1.0, the algorithm pyld calls URDNA2015) as N-Quads."""
    options_extra = {"algorithm": "URDNA2015", "format": "application/n-quads"}
    result: str = _run(
        lambda p, o: p.normalize(dict(document), {**o, **options_extra}), loader, strict
    )
    return result
