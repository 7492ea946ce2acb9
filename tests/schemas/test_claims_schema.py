"""The claims JSON Schema agrees with claims.json and accepts exactly the issuer's input shape."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import (  # type: ignore[import-untyped,unused-ignore]
    Draft202012Validator,
    FormatChecker,
)

import schemas
from credential.claims import parse_claims
from credential.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("claims-*.json"))

Claims = dict[str, Any]


def _validator() -> Draft202012Validator:
    doc = schemas.json_schema()
    Draft202012Validator.check_schema(doc)
    # Formats are annotations by default in 2020-12; the issuer asserts them, so the test does too.
    return Draft202012Validator(doc, format_checker=FormatChecker())


def _example(name: str = "claims-mexicali.json") -> Claims:
    data: Claims = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def _field_schema(doc: dict[str, Any], group: schemas.GroupSpec, field: str) -> dict[str, Any]:
    if group.json == "object":
        sub: dict[str, Any] = doc["properties"][group.name]["properties"][field]
        return sub
    flat: dict[str, Any] = doc["properties"][field]
    return flat


def test_schema_is_valid_2020_12() -> None:
    doc = schemas.json_schema()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)


def test_every_claim_of_claims_json_is_in_the_schema() -> None:
    doc = schemas.json_schema()
    spec = schemas.schema()
    for group in spec.groups:
        if group.json == "object":
            node = doc["properties"][group.name]
            assert node["type"] == "object"
            assert node["additionalProperties"] is False
            assert set(node["properties"]) == {f.name for f in group.fields}
            assert set(node["required"]) == {f.name for f in group.fields if not f.optional}
            assert node["title"] == f"{group.label['es']} / {group.label['en']}"
        for field in group.fields:
            sub = _field_schema(doc, group, field.name)
            assert sub["title"] == f"{field.label['es']} / {field.label['en']}", field.name
            if field.values:
                assert sub["enum"] == [v.name for v in field.values], field.name
            else:
                assert "enum" not in sub
            if field.max:
                assert sub["maxLength"] == field.max, field.name
            expected_type = {"bool": "boolean"}.get(field.type, "string")
            assert sub["type"] == expected_type, field.name
            if field.type == "date":
                assert sub["format"] == "date"
            if field.type == "country":
                assert sub["pattern"] == "^[A-Z]{2}$"
            if group.json == "flat":
                assert (field.name in doc["required"]) is not field.optional


def test_top_level_is_exactly_claims_plus_envelope_dates_and_optional_id() -> None:
    doc = schemas.json_schema()
    spec = schemas.schema()
    expected = {g.name for g in spec.groups if g.json == "object"}
    expected |= {f.name for g in spec.groups if g.json == "flat" for f in g.fields}
    expected |= {"valid_from", "valid_until", "credential_id"}
    assert set(doc["properties"]) == expected
    assert doc["additionalProperties"] is False
    assert "credential_id" not in doc["required"]
    for name in ("valid_from", "valid_until", "credential_id"):
        label = spec.envelope_labels[name]
        assert doc["properties"][name]["title"] == f"{label['es']} / {label['en']}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_examples_are_accepted(path: Path) -> None:
    assert len(EXAMPLE_FILES) >= 2
    _validator().validate(json.loads(path.read_text(encoding="utf-8")))


def test_optional_fields() -> None:
    v = _validator()
    claims = _example()
    claims["credential_id"] = "W4SS3SWSIMPBG"
    del claims["library"]["system"]
    del claims["clinic"]["network"]
    v.validate(claims)
    claims["residence"]["city"] = "x" * 80
    claims["given_name"] = "Ñ" * 100
    v.validate(claims)


def _set(path: str, value: Any) -> Callable[[Claims], None]:
    def mutate(claims: Claims) -> None:
        *parents, last = path.split(".")
        node = claims
        for p in parents:
            node = node[p]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Claims], None]:
    def mutate(claims: Claims) -> None:
        *parents, last = path.split(".")
        node = claims
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


BROKEN: dict[str, Callable[[Claims], None]] = {
    "unknown top-level field": _set("nickname", "Lupita"),
    "unknown nested field": _set("residence.street", "Calle 1"),
    "missing given_name": _drop("given_name"),
    "missing residence.since": _drop("residence.since"),
    "missing valid_until": _drop("valid_until"),
    "city too long": _set("residence.city", "x" * 81),
    "family_name too long": _set("family_name", "x" * 101),
    "library system too long": _set("library.system", "x" * 121),
    "empty given_name": _set("given_name", ""),
    "only spaces in given_name": _set("given_name", "   "),
    "only spaces in city": _set("residence.city", " \u00a0 "),
    "control character in name": _set("given_name", "María\nGuadalupe"),
    "country lower case": _set("residence.country", "mx"),
    "country alpha-3": _set("residence.country", "MEX"),
    "fare category not in enum": _set("transit.fare_category", "vip"),
    "language not in enum": _set("preferred_language", "fr"),
    "eligible as string": _set("library.eligible", "true"),
    "birth date with slashes": _set("birth_date", "1987/03/14"),
    "birth date day 32": _set("birth_date", "1987-03-32"),
    "impossible date (format)": _set("valid_from", "2026-02-30"),
    "valid_until with time": _set("valid_until", "2029-11-21T00:00:00Z"),
    "residence as string": _set("residence", "Mexicali, MX"),
    "credential_id with space": _set("credential_id", "MXL 1"),
    "credential_id empty": _set("credential_id", ""),
    "credential_id as a free-form folio": _set("credential_id", "MXL-2026-000123"),
    "credential_id lower case": _set("credential_id", "w4ss3swsimpbg"),
    "credential_id with its unused bit set": _set("credential_id", "W4SS3SWSIMPBH"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_variants_are_rejected(case: str) -> None:
    claims = copy.deepcopy(_example())
    BROKEN[case](claims)
    errors = list(_validator().iter_errors(claims))
    assert errors, case


# What the issuer deliberately normalises instead of refusing (the schema states the clean form).
NORMALISED = {"country lower case"}


@pytest.mark.parametrize("case", sorted(set(BROKEN) - NORMALISED))
def test_the_issuer_refuses_what_the_schema_refuses(case: str) -> None:
    claims = copy.deepcopy(_example())
    BROKEN[case](claims)
    with pytest.raises(UsageError) as raised:
        parse_claims(claims)
    assert raised.value.code == "claims_invalid"


def test_the_issuer_accepts_what_the_schema_accepts() -> None:
    claims = _example()
    claims["credential_id"] = "W4SS3SWSIMPBG"
    assert parse_claims(claims).credential_id == "W4SS3SWSIMPBG"


def test_schema_and_issuer_agree_on_every_character_of_a_name() -> None:
    """For every character of the Basic Multilingual Plane, in a given name: the schema's
    pattern and the issuer refuse the same ones (controls, format characters such as a bidi
    override, line separators) and take the rest (accents, ñ, CJK, Arabic, emoji halves aside).
    Surrogates are left out: in JSON they are only ever halves of a pair."""
    import re
    import unicodedata

    pattern = re.compile(schemas.json_schema()["properties"]["given_name"]["pattern"])
    base = _example()
    disagree = []
    for code in range(0x10000):
        c = chr(code)
        if unicodedata.category(c) == "Cs":
            continue
        name = f"Ana{c}Luz"
        by_schema = pattern.search(name) is not None
        try:
            parse_claims({**base, "given_name": name})
        except UsageError:
            by_issuer = False
        else:
            by_issuer = True
        if by_schema != by_issuer:
            disagree.append(f"U+{code:04X}")
    assert disagree == []
    for sneaky in ("\u202eAna", "Ana\u2028Luz", "A\u200dna", "Ana\u00adLuz"):
        assert not pattern.search(sneaky)


def test_each_service_eligibility_is_a_boolean_claim_it_discloses() -> None:
    """Counters refuse on it and wallets warn on it: it must name a claim that exists, is a
    yes/no and is shown to that service by default (or no default code could pass)."""
    for spec in schemas.schema().services.values():
        if spec.eligibility is None:
            continue
        group, field = spec.eligibility
        assert group in spec.discloses, spec.name
        fields = schemas.schema().group(group).fields
        assert next(f for f in fields if f.name == field).type == "bool", spec.name
