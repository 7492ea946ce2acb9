"""Passport claims as typed values, validated against ``schemas/claims.json``.

Converts between three forms of the same data:
- the claims file an issuer accepts (the shape of ``tests/examples/claims-*.json``);
- ``Claims``: validated, typed Python values per disclosure group;
- the compact CBOR array of each group that goes inside a disclosure.
All conversions are driven by the schema, so adding a claim is a change to ``claims.json``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any

from credential.errors import MalformedInput, UsageError
from credential.ids import ID_LEN, cti_from_id
from credential.text import folded, is_text, typed_forms
from schemas import FieldSpec, GroupSpec, schema

__all__ = [
    "Claims",
    "date_from_days",
    "days_from_date",
    "decode_group",
    "display_value",
    "encode_group",
    "invalid_claim",
    "parse_claims",
    "service_named",
    "services_listed",
]


def service_named(name: str) -> str | None:
    """The service ``name`` stands for, as a resident or a clerk types it: its own name or its
    Spanish or English label, in any case, with or without accents (``library``,
    ``Biblioteca``, ``clinica``); ``None`` for no service."""
    wanted = folded(name)
    for key, spec in schema().services.items():
        if wanted in typed_forms(key, spec.label):
            return key
    return None


def services_listed() -> dict[str, str]:
    """The services, for a refusal of an unknown one: in Spanish by their Spanish names, with
    the code beside (``Biblioteca (library)``), in English by their codes (``library
    (Library)``)."""
    services = schema().services.items()
    return {"es": ", ".join(f"{spec.label['es']} ({key})" for key, spec in services),
            "en": ", ".join(f"{key} ({spec.label['en']})" for key, spec in services)}


_EPOCH = date(1970, 1, 1)
MAX_YEARS = 10  # the longest validity a passport may be given
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII, whole (fullmatch: "$" passes "\n")
_EPOCH_ORDINAL = _EPOCH.toordinal()
_MIN_DAY = (date(1900, 1, 1) - _EPOCH).days
_MAX_DAY = (date(2200, 1, 1) - _EPOCH).days


def days_from_date(d: date) -> int:
    return (d - _EPOCH).days


def date_from_days(days: int) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + days)


_AFTER_START_ES = "posterior al inicio de la vigencia (¿un año mal escrito?)"
_AFTER_START_EN = "after the validity start (a mistyped year?)"


def _bad(field: str, es: str, en: str) -> UsageError:
    return invalid_claim(field, es, en)


def invalid_claim(field: str, es: str, en: str) -> UsageError:
    """``claims_invalid`` for the claim at ``field`` (``residence.since``, ``birth_date``):
    named as the file spells it, and as a clerk reads it on the form and the card, in each
    language (a Spanish reader was left with the JSON key alone)."""
    group, _, name = field.partition(".")
    labels = schema().envelope_labels.get(field)
    for g in schema().groups:
        if g.name == group:
            found = [f.label for f in g.fields if f.name == (name or group)]
            labels = found[0] if found else (g.label if not name else None)
    return UsageError("claims_invalid", field=field,
                      label_es=f" ({labels['es']})" if labels else "",
                      label_en=f" ({labels['en']})" if labels else "",
                      reason_es=es, reason_en=en)


# What a name may not hold is ``credential.text.NOT_TEXT`` (a name over two lines on a
# counter's screen, reordered by a bidi override…). claims.schema.json's text pattern lists the
# same characters (in the BMP).


def _text(value: Any, spec: FieldSpec, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(where, "debe ser texto", "must be text")
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise _bad(where, "no puede estar vacío", "must not be empty")
    if spec.max and len(text) > spec.max:
        raise _bad(where, f"más de {spec.max} caracteres", f"longer than {spec.max} characters")
    if not is_text(text):
        raise _bad(where, "contiene caracteres de control, de formato o saltos de línea",
                   "contains control, format or line-break characters")
    return text


def _parse_date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _bad(where, "fecha con formato AAAA-MM-DD", "date formatted YYYY-MM-DD")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise _bad(where, "fecha inexistente", "no such date") from None
    if not _MIN_DAY <= days_from_date(parsed) < _MAX_DAY:
        raise _bad(where, "fecha fuera de rango", "date out of range")
    return parsed


def _parse_field(value: Any, spec: FieldSpec, where: str) -> Any:
    if value is None:
        if spec.optional:
            return None
        raise _bad(where, "falta este dato", "this value is missing")
    if spec.type in ("text", "catalog"):
        return _text(value, spec, where)
    if spec.type == "country":
        if not isinstance(value, str) or not _COUNTRY.match(value.strip().upper()):
            raise _bad(where, "código de país ISO de dos letras", "two-letter ISO country code")
        return value.strip().upper()
    if spec.type == "date":
        return _parse_date(value, where)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise _bad(where, "debe ser true o false", "must be true or false")
        return value
    if spec.type == "enum":
        if not isinstance(value, str) or spec.enum_by_name(value) is None:
            allowed = ", ".join(v.name for v in spec.values)
            # the codes are what a file holds; a Spanish label names what each one means
            said = ", ".join(f"{v.name} ({v.label['es']})" for v in spec.values)
            raise _bad(where, f"valores permitidos: {said}", f"allowed values: {allowed}")
        return value
    raise AssertionError(spec.type)  # schema types are closed


@dataclass(frozen=True)
class Claims:
    """Validated claims: ``groups[group][field]`` plus the validity window (dates)."""

    groups: Mapping[str, Mapping[str, Any]]
    valid_from: date
    valid_until: date
    credential_id: str | None = None


_TOP_LEVEL = {"valid_from", "valid_until", "credential_id"}


def parse_claims(doc: Any) -> Claims:
    """Validate a claims document; every problem is a ``UsageError('claims_invalid')``."""
    if not isinstance(doc, dict):
        raise _bad("$", "debe ser un objeto JSON", "must be a JSON object")
    known = set(_TOP_LEVEL)
    for g in schema().groups:
        known.update([g.name] if g.json == "object" else [f.name for f in g.fields])
    # Before what is missing: a misspelt name ("famly_name") is the field it should have been,
    # and "family_name is missing" alone would leave the clerk looking at a name that is there.
    extra = sorted(k for k in doc if k not in known)
    if extra:
        raise _unknown(extra[0], known)
    groups: dict[str, Mapping[str, Any]] = {}
    for g in schema().groups:
        if g.json == "object":
            raw = doc.get(g.name)
            if not isinstance(raw, dict):
                raise _bad(g.name, "debe ser un objeto", "must be an object")
            fields = {f.name for f in g.fields}
            inner = sorted(k for k in raw if k not in fields)
            if inner:
                raise _unknown(inner[0], fields, within=g.name)
            values = {f.name: _parse_field(raw.get(f.name), f, f"{g.name}.{f.name}")
                      for f in g.fields}
        else:
            values = {f.name: _parse_field(doc.get(f.name), f, f.name) for f in g.fields}
        groups[g.name] = MappingProxyType(values)
    valid_from = _parse_date(doc.get("valid_from"), "valid_from")
    valid_until = _parse_date(doc.get("valid_until"), "valid_until")
    if valid_from < _EPOCH:  # CWT times (nbf, exp) count seconds from 1970 and are never negative
        raise _bad("valid_from", "anterior a 1970", "before 1970")
    if valid_until <= valid_from:
        raise _bad("valid_until", "debe ser posterior a valid_from", "must be after valid_from")
    if (valid_until - valid_from).days >= MAX_YEARS * 365 + 3:  # ten years and their leap days
        # a typo such as 2099 would outlive every key and every rule that vouched for it
        raise _bad("valid_until", f"más de {MAX_YEARS} años de vigencia",
                   f"more than {MAX_YEARS} years of validity")
    # Either is most often a year mistyped (2062 for 1962): the office's today, which would
    # name it so (``claims_date_future``), is not known here, so the hint goes with it.
    birth = groups.get("birth_date", {}).get("birth_date")
    if isinstance(birth, date) and birth > valid_from:
        raise _bad("birth_date", _AFTER_START_ES, _AFTER_START_EN)
    since = groups.get("residence", {}).get("since")
    if isinstance(since, date) and since > valid_from:
        # residency is verified before the passport says so, never in its future
        raise _bad("residence.since", _AFTER_START_ES, _AFTER_START_EN)
    cred_id = doc.get("credential_id")
    if cred_id is not None and (not isinstance(cred_id, str) or cti_from_id(cred_id) is None):
        raise _bad("credential_id", f"debe ser un id de {ID_LEN} caracteres A–Z y 2–7, el último "
                   "uno de A C E G I K M O Q S U W Y 2 4 6",
                   f"must be an id of {ID_LEN} characters A–Z and 2–7, the last one of "
                   "A C E G I K M O Q S U W Y 2 4 6")
    return Claims(MappingProxyType(groups), valid_from, valid_until, cred_id)


def _unknown(name: Any, known: set[str], within: str | None = None) -> UsageError:
    """An unknown field, with the known one it most likely misspells."""
    where = str(name) if within is None else f"{within}.{name}"
    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.75)
    if not close:
        return _bad(where, "dato desconocido", "unknown field")
    return _bad(where, f"dato desconocido (¿{close[0]}?)", f"unknown field ({close[0]}?)")


CatalogCoder = Callable[[str, str], int | str]
"""(catalog name, display name) → compact code (int) or the name itself when not catalogued."""


def encode_group(group: GroupSpec, values: Mapping[str, Any],
                 catalog: CatalogCoder | None = None) -> list[Any]:
    """The compact CBOR array of a group: values in field order, enums as codes, dates as days."""
    out: list[Any] = []
    for f in group.fields:
        v = values.get(f.name)
        if v is None:
            out.append(None)
        elif f.type == "date":
            out.append(days_from_date(v))
        elif f.type == "enum":
            ev = f.enum_by_name(v)
            assert ev is not None
            out.append(ev.code)
        elif f.type == "catalog" and catalog is not None:
            out.append(catalog(f.catalog, v))
        else:
            out.append(v)
    # Trailing optional Nones carry no information: drop them to keep the QR small.
    while out and out[-1] is None:
        out.pop()
    return out


# How a field's compact value is checked and decoded (``_Rule.kind``).
_KIND_TEXT, _KIND_CATALOG, _KIND_DATE, _KIND_BOOL, _KIND_ENUM = range(5)


class _Rule:
    """One field's validation, precomputed from the schema (a plain class: see ``decode_group``).
    """

    __slots__ = ("kind", "limit", "name", "names", "optional", "where")

    def __init__(self, group: GroupSpec, f: FieldSpec) -> None:
        self.name = f.name
        self.optional = f.optional
        self.where = f"{group.name}.{f.name}"
        self.names: dict[int, str] = {v.code: v.name for v in f.values}
        self.limit = f.max or 80
        if f.type in ("text", "country"):
            self.kind = _KIND_TEXT
        elif f.type == "catalog":
            self.kind, self.limit = _KIND_CATALOG, f.max
        elif f.type == "date":
            self.kind = _KIND_DATE
        elif f.type == "bool":
            self.kind = _KIND_BOOL
        else:
            self.kind = _KIND_ENUM


_RULES: dict[str, tuple[_Rule, ...]] = {}


def decode_group(group: GroupSpec, value: Any) -> dict[str, Any]:
    """Inverse of ``encode_group`` for untrusted input; dates become ``date``, catalog codes stay
    ints (the verifier resolves them against the signed bundle).

    This runs for every disclosure of every scan, so the rules are built once per group and
    applied by one loop branching on a small integer: compiled (make compile), that is a few
    machine instructions per field instead of a call through a closure.
    """
    rules = _RULES.get(group.name)
    if rules is None:
        rules = _RULES[group.name] = tuple(_Rule(group, f) for f in group.fields)
    if type(value) is not list or len(value) > len(rules):
        raise MalformedInput("shape_invalid", what=group.name)
    out: dict[str, Any] = {}
    n = len(value)
    for i, rule in enumerate(rules):
        v = value[i] if i < n else None
        if v is None:
            if not rule.optional:
                raise MalformedInput("shape_invalid", what=rule.where)
            out[rule.name] = None
            continue
        kind = rule.kind
        if kind == _KIND_TEXT:
            ok = type(v) is str and 0 < len(v) <= rule.limit
        elif kind == _KIND_CATALOG:
            ok = (0 <= v < 2**32) if type(v) is int else (
                type(v) is str and 0 < len(v) <= rule.limit)
        elif kind == _KIND_DATE:
            ok = type(v) is int and _MIN_DAY <= v < _MAX_DAY
            if ok:
                v = date_from_days(v)
        elif kind == _KIND_BOOL:
            ok = type(v) is bool
        else:
            ok = type(v) is int and v in rule.names
            if ok:
                v = rule.names[v]
        if not ok:
            raise MalformedInput("shape_invalid", what=rule.where)
        out[rule.name] = v
    return out


def display_value(kind: str, catalog: str | None, value: Any,
                  catalogs: Mapping[str, Mapping[int, str]]) -> Any:
    """A decoded claim value as people see it (counter screen, wallet list): dates in ISO 8601,
    catalogued codes by the name the issuing city's bundle gives them (``#code`` when it has
    none), anything else as it is."""
    if kind == "date":
        return value.isoformat()
    if kind == "catalog" and type(value) is int:
        return catalogs.get(catalog or "", {}).get(value, f"#{value}")
    return value
