"""The VC 2.0 view: shape, disclosure, offline JSON-LD expansion with no term dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import schemas
from credential import jsonld
from credential.errors import MalformedInput, UsageError
from credential.vc import credential_iri, to_vc

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("claims-*.json"))
VC_BASE = "https://www.w3.org/2018/credentials#"

ISSUER = "https://mexicali.gob.mx/pasaporte"
WINDOW = {"valid_from": "2026-11-22T00:00:00Z", "valid_until": "2029-11-21T23:59:59Z"}


pytestmark = pytest.mark.usefixtures("no_network")  # the JSON-LD path must be offline


def _claims(path: Path = EXAMPLES / "claims-mexicali.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _vc(claims: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"credential_id": "MXL-2026-000123", "issuer": ISSUER, **WINDOW, **kw}
    return to_vc(claims if claims is not None else _claims(), **args)


def _keys(node: Any) -> list[str]:
    """Every JSON key of a compact document except ``@context``, recursively."""
    if isinstance(node, dict):
        out = []
        for k, v in node.items():
            if k != "@context":
                out.append(k)
                out.extend(_keys(v))
        return out
    if isinstance(node, list):
        return [k for item in node for k in _keys(item)]
    return []


def _expanded_properties(node: Any) -> list[str]:
    """Every property IRI (plus @id/@type) of an expanded document's nodes; values (literals and
    IRI references such as the issuer or an enumerated value) are not keys of the compact form."""
    if isinstance(node, list):
        return [k for item in node for k in _expanded_properties(item)]
    if isinstance(node, dict) and "@value" not in node and set(node) != {"@id"}:
        out = []
        for k, v in node.items():
            out.append(k)
            out.extend(_expanded_properties(v))
        return out
    return []


def test_shape() -> None:
    vc = _vc()
    assert vc["@context"] == [jsonld.CREDENTIALS_V2, jsonld.PASAPORTE_V1]
    assert vc["type"] == ["VerifiableCredential", "UrbanPassportCredential"]
    assert vc["id"] == "urn:pasaporte:MXL-2026-000123"
    assert vc["issuer"] == ISSUER
    assert (vc["validFrom"], vc["validUntil"]) == (WINDOW["valid_from"], WINDOW["valid_until"])
    subject = vc["credentialSubject"]
    assert subject["residence"] == {"city": "Mexicali", "country": "MX", "since": "2015-06-01"}
    assert subject["given_name"] == "María Guadalupe"
    assert subject["transit"] == {"fare_category": "senior"}
    assert "valid_from" not in subject


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_expands_offline_with_every_term_an_absolute_iri(path: Path) -> None:
    vc = _vc(_claims(path))
    expanded = jsonld.expand(vc)
    assert len(expanded) == 1
    props = _expanded_properties(expanded)
    # Same number of keys before and after: JSON-LD drops undefined terms silently, this doesn't.
    assert len(props) == len(_keys(vc))
    for iri in props:
        assert iri in ("@id", "@type") or iri.startswith((VC_BASE, jsonld.PASAPORTE_VOCAB)), iri
    subject = expanded[0][VC_BASE + "credentialSubject"][0]
    voc = jsonld.PASAPORTE_VOCAB
    # Enumerated values become vocabulary IRIs, dates typed literals.
    fare = subject[voc + "transit"][0][voc + "fare_category"]
    assert fare == [
        {"@id": f"{voc}FareCategory/{vc['credentialSubject']['transit']['fare_category']}"}
    ]
    assert subject[voc + "birth_date"][0]["@type"] == "http://www.w3.org/2001/XMLSchema#date"
    assert subject[voc + "preferred_language"][0]["@id"].startswith(voc + "PreferredLanguage/")


@pytest.mark.parametrize("service", sorted(schemas.schema().services))
def test_disclosure_per_service(service: str) -> None:
    groups = schemas.schema().services[service].discloses
    vc = _vc(disclosed=groups)
    subject = vc["credentialSubject"]
    expected: set[str] = set()
    for g in schemas.schema().groups:
        if g.name in groups:
            expected |= {g.name} if g.json == "object" else {f.name for f in g.fields}
    assert set(subject) == expected
    assert len(_expanded_properties(jsonld.expand(vc))) == len(_keys(vc))


def test_disclosure_order_does_not_change_the_document() -> None:
    assert _vc(disclosed=["library", "residence"]) == _vc(disclosed=("residence", "library"))
    assert _vc(disclosed="residence")["credentialSubject"].keys() == {"residence"}


def test_optional_fields_are_omitted() -> None:
    claims = _claims(EXAMPLES / "claims-calexico.json")
    assert _vc(claims)["credentialSubject"]["clinic"] == {"eligible": False}


def test_canonical_nquads_cover_every_claim() -> None:
    nquads = jsonld.canonize(_vc())
    assert '"María Guadalupe"' in nquads
    assert "<https://w3id.org/pasaporte/v1#FareCategory/senior>" in nquads
    assert "issuer> <https://mexicali.gob.mx/pasaporte>" in nquads


def test_expand_refuses_unknown_context() -> None:
    vc = _vc()
    vc["@context"] = [*vc["@context"], "https://example.org/evil-context"]
    with pytest.raises(MalformedInput) as info:
        jsonld.expand(vc)
    assert info.value.code == "jsonld_context_unknown"
    assert info.value.detail == {"url": "https://example.org/evil-context"}
    with pytest.raises(MalformedInput) as info:
        jsonld.canonize(vc)
    assert info.value.code == "jsonld_context_unknown"


def test_strict_expand_refuses_undefined_terms() -> None:
    vc = _vc()
    vc["credentialSubject"]["nickname"] = "Lupita"
    with pytest.raises(MalformedInput) as info:
        jsonld.expand(vc)
    assert info.value.code == "jsonld_term_dropped"
    assert info.value.detail == {"term": "nickname"}
    expanded = jsonld.expand(vc, strict=False)  # pyld's own behaviour: silently gone
    assert len(_expanded_properties(expanded)) == len(_keys(vc)) - 1


def test_protected_terms_cannot_be_redefined() -> None:
    vc = _vc()
    vc["@context"] = [*vc["@context"], {"city": "https://evil.example/city"}]
    with pytest.raises(MalformedInput) as info:
        jsonld.expand(vc)
    assert info.value.code == "jsonld_invalid"


def test_junk_is_a_typed_rejection() -> None:
    for junk, reason in (({"@context": 5}, "invalid local context"),
                         ({"@context": [jsonld.CREDENTIALS_V2], "@id": 5}, "invalid @id value")):
        with pytest.raises(MalformedInput) as info:
            jsonld.expand(junk)
        assert info.value.code == "jsonld_invalid" and info.value.detail == {"reason": reason}


@pytest.mark.parametrize(
    ("value", "iri"),
    [
        ("58172aac-d8ba-11ed-83dd-0b3aef56cc33", "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33"),
        (
            "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
            "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
        ),
        ("https://mexicali.gob.mx/c/1", "https://mexicali.gob.mx/c/1"),
        ("AbC_12-x", "urn:pasaporte:AbC_12-x"),
    ],
)
def test_credential_iri(value: str, iri: str) -> None:
    assert credential_iri(value) == iri


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"disclosed": ["residence", "passport_photo"]}, "vc_group_unknown"),
        ({"issuer": "Mexicali"}, "vc_iri_invalid"),
        ({"credential_id": "a b"}, "vc_iri_invalid"),
        ({"valid_from": "2026-11-22"}, "vc_datetime_invalid"),
        ({"valid_until": "2029-11-21T00:00:00"}, "vc_datetime_invalid"),
        ({"valid_until": "2029-13-21T00:00:00Z"}, "vc_datetime_invalid"),
        ({"valid_until": "2026-11-21T00:00:00Z"}, "vc_validity_inverted"),
    ],
)
def test_bad_arguments(change: dict[str, Any], code: str) -> None:
    with pytest.raises(UsageError) as info:
        _vc(**change)
    assert info.value.code == code
    assert "{" not in info.value.message["es"] + info.value.message["en"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("residence", "Mexicali"),
        ("residence.country", "Mexico"),
        ("residence.since", "2015-02-30"),
        ("residence.street", "Calle 1"),
        ("library.eligible", "yes"),
        ("library.system", "x" * 121),
        ("transit.fare_category", "vip"),
        ("given_name", ""),
        ("given_name", None),
        ("preferred_language", "fr"),
        ("birth_date", "14/03/1987"),
    ],
)
def test_bad_claims(path: str, value: Any) -> None:
    claims = _claims()
    *parents, last = path.split(".")
    node = claims
    for p in parents:
        node = node[p]
    node[last] = value
    with pytest.raises(UsageError) as info:
        _vc(claims)
    assert info.value.code == "vc_claim_invalid"
    assert info.value.detail["claim"] == path


def test_missing_group_is_only_an_error_when_disclosed() -> None:
    claims = _claims()
    del claims["clinic"]
    _vc(claims, disclosed=["residence", "library"])
    with pytest.raises(UsageError) as info:
        _vc(claims)
    assert info.value.detail["claim"] == "clinic"
