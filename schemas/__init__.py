"""What a passport says: claims, disclosure groups, labels, services — loaded from package data.

``claims.json`` is the single source of truth; this module turns it into typed, frozen specs that
the credential core, the issuer and the verifier share. Nothing here does I/O beyond reading the
bundled files, and nothing is ever fetched from the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any, Literal

__all__ = [
    "EnumValue",
    "FieldSpec",
    "GroupSpec",
    "Schema",
    "ServiceSpec",
    "json_schema",
    "jsonld_context",
    "schema",
]

Labels = dict[str, str]
FieldType = Literal["text", "country", "date", "bool", "enum", "catalog"]


@dataclass(frozen=True)
class EnumValue:
    name: str
    code: int
    label: Labels


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    label: Labels
    optional: bool = False
    max: int = 0
    values: tuple[EnumValue, ...] = ()
    catalog: str = ""

    def enum_by_name(self, name: str) -> EnumValue | None:
        return next((v for v in self.values if v.name == name), None)


@dataclass(frozen=True)
class GroupSpec:
    """A selective-disclosure unit: claims that are always shown together."""

    name: str
    key: int
    index: int  # leaf position in the disclosure Merkle tree
    label: Labels
    fields: tuple[FieldSpec, ...]
    json: Literal["object", "flat"]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    label: Labels
    discloses: tuple[str, ...]
    # The boolean claim (group, field) that says the holder may use the service; None: everyone
    # may. Read by counters (``not_eligible``) and by the wallet, which warns before the queue.
    eligibility: tuple[str, str] | None = None


def not_eligible(eligibility: tuple[str, str] | None,
                 shown: Mapping[str, Mapping[str, Any]]) -> bool:
    """The claims ``shown`` (group → its claims) say the holder may not use the service whose
    ``eligibility`` this is: its claim is shown and is not true. One rule for the counter that
    refuses (``not_eligible``) and the wallet that warns before the queue; a group not shown
    is another refusal (``claims_missing``), not this one."""
    if eligibility is None or eligibility[0] not in shown:
        return False
    group, field = eligibility
    return shown[group].get(field) is not True


@dataclass(frozen=True, eq=False)
class Schema:
    version: int
    groups: tuple[GroupSpec, ...]
    services: dict[str, ServiceSpec]
    envelope_labels: dict[str, Labels]

    def group(self, name: str) -> GroupSpec:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @cached_property
    def groups_by_key(self) -> dict[int, GroupSpec]:
        """Each group under its CBOR key. A plain dict, so that compiled callers on the
        verification hot path look a key up without a call into interpreted code."""
        return {g.key: g for g in self.groups}

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)


def _read(name: str) -> Any:
    return json.loads((resources.files("schemas") / name).read_text(encoding="utf-8"))


def _eligibility(service: dict[str, Any]) -> tuple[str, str] | None:
    """``"group.field"`` of a service in ``claims.json``, as (group, field)."""
    if "eligibility" not in service:
        return None
    group, field = str(service["eligibility"]).split(".", 1)
    return group, field


@cache
def schema() -> Schema:
    raw = _read("claims.json")
    groups = []
    for index, g in enumerate(raw["groups"]):
        fields = tuple(
            FieldSpec(
                name=f["name"],
                type=f["type"],
                label=f["label"],
                optional=bool(f.get("optional", False)),
                max=int(f.get("max", 0)),
                values=tuple(EnumValue(v["name"], v["code"], v["label"])
                             for v in f.get("values", ())),
                catalog=f.get("catalog", ""),
            )
            for f in g["fields"]
        )
        groups.append(GroupSpec(g["name"], g["key"], index, g["label"], fields, g["json"]))
    services = {
        name: ServiceSpec(name, s["label"], tuple(s["discloses"]), _eligibility(s))
        for name, s in raw["services"].items()
    }
    envelope = {e["name"]: e["label"] for e in raw["envelope"]}
    return Schema(raw["version"], tuple(groups), services, envelope)


@cache
def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the claims an issuer accepts."""
    result: dict[str, Any] = _read("claims.schema.json")
    return result


@cache
def jsonld_context() -> dict[str, Any]:
    """The JSON-LD context of the passport vocabulary (served by the issuer, bundled here)."""
    result: dict[str, Any] = _read("pasaporte-v1.jsonld")
    return result
