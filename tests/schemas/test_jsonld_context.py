"""The passport JSON-LD context covers claims.json; the bundled W3C contexts are exact copies."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import schemas
from credential import jsonld
from credential.errors import MalformedInput

PUBLISHED = Path(__file__).resolve().parents[1] / "vectors" / "jsonld-contexts"
COPIES = {
    "credentials-v2.jsonld": jsonld.CREDENTIALS_V2,
    "data-integrity-v2.jsonld": jsonld.DATA_INTEGRITY_V2,
    "multikey-v1.jsonld": jsonld.MULTIKEY_V1,
}


def _ctx() -> dict[str, Any]:
    ctx: dict[str, Any] = schemas.jsonld_context()["@context"]
    return ctx


def _iri(definition: str | dict[str, Any]) -> str:
    return definition if isinstance(definition, str) else str(definition["@id"])


def test_context_is_protected_json_ld_1_1() -> None:
    ctx = _ctx()
    assert ctx["@protected"] is True
    assert ctx["@version"] == 1.1
    assert ctx["id"] == "@id" and ctx["type"] == "@type"


def test_every_term_is_under_the_stable_base_iri() -> None:
    for term, definition in _ctx().items():
        if term.startswith("@") or term in ("id", "type"):
            continue
        assert _iri(definition).startswith(jsonld.PASAPORTE_VOCAB), term
        scoped = definition.get("@context", {}) if isinstance(definition, dict) else {}
        for inner, iri in scoped.items():
            if not inner.startswith("@"):
                assert iri.startswith(jsonld.PASAPORTE_VOCAB), (term, inner)


def test_one_term_per_claim_group_enum_and_service() -> None:
    ctx = _ctx()
    spec = schemas.schema()
    assert ctx["UrbanPassportCredential"] == jsonld.PASAPORTE_VOCAB + "UrbanPassportCredential"
    for group in spec.groups:
        assert _iri(ctx[group.name]) == jsonld.PASAPORTE_VOCAB + group.name
        for field in group.fields:
            definition = ctx[field.name]
            assert _iri(definition) == jsonld.PASAPORTE_VOCAB + field.name
            if field.type == "date":
                assert definition["@type"] == "http://www.w3.org/2001/XMLSchema#date"
            if field.values:
                enum_class = "".join(p.capitalize() for p in field.name.split("_"))
                assert ctx[enum_class] == jsonld.PASAPORTE_VOCAB + enum_class
                assert definition["@type"] == "@vocab"
                values = {k: v for k, v in definition["@context"].items() if not k.startswith("@")}
                assert values == {
                    v.name: f"{jsonld.PASAPORTE_VOCAB}{enum_class}/{v.name}" for v in field.values
                }
    services = {k: v for k, v in ctx["service"]["@context"].items() if not k.startswith("@")}
    assert services == {s: f"{jsonld.PASAPORTE_VOCAB}Service/{s}" for s in spec.services}


def test_terms_do_not_collide_with_credentials_v2() -> None:
    # A protected term redefined differently makes every VC using both contexts fail to expand.
    v2 = jsonld.default_loader()(jsonld.CREDENTIALS_V2)["document"]["@context"]
    vc_scoped = v2["VerifiableCredential"]["@context"]
    for term, definition in _ctx().items():
        if term.startswith("@"):
            continue
        for other in (v2, vc_scoped):
            assert term not in other or other[term] == definition, term


@pytest.mark.parametrize("name", sorted(COPIES))
def test_bundled_w3c_contexts_are_exact_copies(name: str) -> None:
    bundled = (resources.files("schemas") / "contexts" / name).read_bytes()
    assert bundled == (PUBLISHED / name).read_bytes()


def test_loader_serves_every_bundled_url() -> None:
    loader = jsonld.default_loader()
    assert set(jsonld.bundled_context_urls()) == {*COPIES.values(), jsonld.PASAPORTE_V1}
    for url in jsonld.bundled_context_urls():
        remote = loader(url)
        assert remote["documentUrl"] == url
        assert "@context" in remote["document"]
    assert loader(jsonld.PASAPORTE_V1)["document"] == schemas.jsonld_context()


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/context",
        "https://www.w3.org/ns/credentials/v2/",  # near misses are not the bundled document
        "http://www.w3.org/ns/credentials/v2",
        "https://w3id.org/pasaporte/v2",
        "file:///etc/passwd",
    ],
)
def test_loader_refuses_unknown_urls(url: str) -> None:
    with pytest.raises(MalformedInput) as info:
        jsonld.default_loader()(url)
    assert info.value.code == "jsonld_context_unknown"
    assert info.value.detail == {"url": url}
    assert url in info.value.message["es"] and url in info.value.message["en"]


def test_bundled_contexts_cannot_be_replaced() -> None:
    with pytest.raises(MalformedInput) as info:
        jsonld.OfflineLoader(extra={jsonld.PASAPORTE_V1: {"@context": {}}})
    assert info.value.code == "jsonld_context_override"


def test_loader_hands_out_fresh_copies() -> None:
    loader = jsonld.default_loader()
    first = loader(jsonld.PASAPORTE_V1)["document"]
    first["@context"]["city"] = "https://evil.example/city"
    assert loader(jsonld.PASAPORTE_V1)["document"] == schemas.jsonld_context()
