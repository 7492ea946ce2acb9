"""The W3C Verifiable Credentials 2.0 view of a passport.

The QR carries a COSE/CWT credential; this module gives the same claims as a VC 2.0 JSON-LD
document (``@context``: credentials v2 + the passport vocabulary, ``schemas/pasaporte-v1.jsonld``)
for systems that speak W3C VCs. It is a view: claims are checked against ``schemas/claims.json``,
only the disclosed groups are emitted, and every emitted term is defined by the bundled contexts
(see :mod:`credential.jsonld`), so a Data Integrity proof over the view signs everything it shows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from credential.errors import UsageError
from credential.jsonld import CREDENTIALS_V2, PASAPORTE_V1
from credential.times import DATETIME_STAMP
from schemas import FieldSpec, GroupSpec, schema

__all__ = ["CREDENTIAL_TYPE", "credential_iri", "to_vc"]

CREDENTIAL_TYPE = "UrbanPassportCredential"

_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9._~-]+$")  # RFC 3986 unreserved: safe inside a URN as is
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def credential_iri(credential_id: str) -> str:
    """The VC ``id`` for a credential id: an IRI as is, a UUID as ``urn:uuid:``, any other
    unreserved token as ``urn:pasaporte:<id>``."""
    if not isinstance(credential_id, str):
        raise UsageError("vc_iri_invalid", field="credential_id", value=repr(credential_id))
    if _IRI.match(credential_id):
        return credential_id
    try:
        as_uuid = uuid.UUID(credential_id)
    except ValueError:
        as_uuid = None
    if as_uuid is not None and str(as_uuid) == credential_id.lower():
        return as_uuid.urn
    if _TOKEN.match(credential_id):
        return f"urn:pasaporte:{credential_id}"
    raise UsageError("vc_iri_invalid", field="credential_id", value=credential_id)


def _parse_datetime(field: str, value: str) -> datetime:
    if isinstance(value, str) and DATETIME_STAMP.match(value):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    raise UsageError("vc_datetime_invalid", field=field, value=value)


def _bad(claim: str, reason: str) -> UsageError:
    return UsageError("vc_claim_invalid", claim=claim, reason=reason)


def _field_value(path: str, spec: FieldSpec, value: Any) -> Any:
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise _bad(path, "boolean expected")
        return value
    if not isinstance(value, str):
        raise _bad(path, "text expected")
    if spec.type in ("text", "catalog"):
        if (
            not value
            or len(value) > spec.max
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
        ):
            raise _bad(path, f"1 to {spec.max} printable characters expected")
    elif spec.type == "country":
        if not _COUNTRY.match(value):
            raise _bad(path, "ISO 3166-1 alpha-2 code expected")
    elif spec.type == "date":
        try:
            if not _DATE.match(value):
                raise ValueError(value)
            date.fromisoformat(value)
        except ValueError:
            raise _bad(path, "date YYYY-MM-DD expected") from None
    elif spec.type == "enum" and spec.enum_by_name(value) is None:
        raise _bad(path, "one of " + ", ".join(v.name for v in spec.values) + " expected")
    return value


def _group_values(group: GroupSpec, claims: Mapping[str, Any]) -> dict[str, Any]:
    if group.json == "object":
        node = claims.get(group.name)
        if not isinstance(node, Mapping):
            raise _bad(group.name, "object expected")
        unknown = sorted(set(node) - {f.name for f in group.fields})
        if unknown:
            # Emitting it would drop it from the RDF; ignoring it would hide a typo.
            raise _bad(f"{group.name}.{unknown[0]}", "unknown field")
        prefix = group.name + "."
    else:
        node, prefix = claims, ""
    out: dict[str, Any] = {}
    for spec in group.fields:
        if spec.name not in node:
            if spec.optional:
                continue
            raise _bad(prefix + spec.name, "missing")
        out[spec.name] = _field_value(prefix + spec.name, spec, node[spec.name])
    return {group.name: out} if group.json == "object" else out


def to_vc(
    claims: Mapping[str, Any],
    *,
    credential_id: str,
    issuer: str,
    valid_from: str,
    valid_until: str,
    disclosed: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A W3C VC 2.0 document for ``claims`` (the shape of ``claims-*.json``).

    ``disclosed`` names disclosure groups of ``schemas/claims.json`` (``None``: all of them);
    ``valid_from``/``valid_until`` are date-times with a zone (``xsd:dateTimeStamp``); ``issuer``
    is an absolute IRI (a URL or a DID). Raises ``UsageError`` (``vc_*``) for anything else.
    """
    spec = schema()
    names = spec.group_names if disclosed is None else tuple(disclosed)
    if isinstance(disclosed, str):  # "residence" would otherwise iterate as letters
        names = (disclosed,)
    for name in names:
        if name not in spec.group_names:
            raise UsageError("vc_group_unknown", group=name)
    if not isinstance(issuer, str) or not _IRI.match(issuer):
        raise UsageError("vc_iri_invalid", field="issuer", value=issuer)
    if _parse_datetime("valid_until", valid_until) <= _parse_datetime("valid_from", valid_from):
        raise UsageError("vc_validity_inverted", valid_from=valid_from, valid_until=valid_until)
    subject: dict[str, Any] = {}
    # Group order of claims.json, not caller order: the same disclosure gives the same document.
    for group in spec.groups:
        if group.name in names:
            subject.update(_group_values(group, claims))
    return {
        "@context": [CREDENTIALS_V2, PASAPORTE_V1],
        "id": credential_iri(credential_id),
        "type": ["VerifiableCredential", CREDENTIAL_TYPE],
        "issuer": issuer,
        "validFrom": valid_from,
        "validUntil": valid_until,
        "credentialSubject": subject,
    }
