"""Entry validation: only known types and fields, types checked, records canonical."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credential.errors import MalformedInput
from ledger.entries import (
    CredentialIssued,
    Notice,
    decode_record,
    encode_record,
    entry_from_json,
    entry_to_json,
)
from tests.cbor_edits import draw_edit
from tests.ledger.helpers import b64u, valid_entries


@pytest.mark.parametrize("item", valid_entries(), ids=lambda e: e["type"])
def test_every_type_round_trips(item: dict[str, Any]) -> None:
    entry = entry_from_json(item)
    assert entry_to_json(entry) == item
    leaf = encode_record(5, bytes(32), 1234, entry)
    record = decode_record(leaf)
    assert (record.seq, record.time_ms, record.entry) == (5, 1234, entry)


BAD: list[tuple[str, dict[str, Any]]] = [
    ("unknown type", {"type": "person", "name": "Ana"}),
    ("no type", {"commitment": b64u(bytes(32))}),
    ("personal field", {"type": "credential_issued", "commitment": b64u(bytes(32)),
                        "name": "Ana López"}),
    ("birth date", {"type": "notice", "text": "x", "birth_date": "1990-01-01"}),
    ("short commitment", {"type": "credential_issued", "commitment": b64u(bytes(31))}),
    ("commitment not base64url", {"type": "credential_issued", "commitment": "++//" * 11}),
    ("commitment as int", {"type": "credential_issued", "commitment": 7}),
    ("missing field", {"type": "key_rotated", "kid": "a"}),
    ("bad status", {"type": "status_changed", "list": "l", "index": 1, "status": "gone",
                    "reason": "fraud"}),
    ("free-text reason", {"type": "status_changed", "list": "l", "index": 1,
                          "status": "revoked", "reason": "Juan Pérez moved"}),
    ("negative index", {"type": "status_changed", "list": "l", "index": -1,
                        "status": "revoked", "reason": "fraud"}),
    ("bool index", {"type": "status_changed", "list": "l", "index": True,
                    "status": "revoked", "reason": "fraud"}),
    ("huge index", {"type": "status_changed", "list": "l", "index": 2**64,
                    "status": "revoked", "reason": "fraud"}),
    ("bad time", {"type": "key_compromised", "kid": "k", "effective": "yesterday"}),
    ("impossible date", {"type": "key_compromised", "kid": "k",
                         "effective": "2025-02-30T00:00:00Z"}),
    ("full-width digits", {"type": "key_compromised", "kid": "k",
                           "effective": "２０２５-01-01T00:00:00Z"}),
    ("bad country", {**valid_entries()[0], "country": "Mexico"}),
    ("until before from", {**valid_entries()[0], "valid_until": "2024-01-01T00:00:00Z"}),
    ("kid with spaces", {"type": "key_rotated", "kid": "a b", "replaces": "c"}),
    ("empty notice", {"type": "notice", "text": ""}),
    ("huge notice", {"type": "notice", "text": "x" * 2001}),
    ("control chars", {"type": "notice", "text": "a\x00b"}),
    ("lone surrogate", {"type": "notice", "text": "a\ud800b"}),
    ("lone surrogate in a name", {**valid_entries()[0], "office": "\udfff"}),
    ("short cosignature", {**valid_entries()[6], "signature": b64u(bytes(64))}),
    ("not an object", ["notice"]),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("why", "item"), BAD, ids=[b[0] for b in BAD])
def test_bad_entries_are_refused(why: str, item: dict[str, Any]) -> None:
    with pytest.raises(MalformedInput):
        entry_from_json(item)


def test_typed_entries_validate_on_construction() -> None:
    with pytest.raises(MalformedInput):
        CredentialIssued(commitment=b"short")
    with pytest.raises(MalformedInput):
        Notice(text=123)  # type: ignore[arg-type]
    assert CredentialIssued(commitment=hashlib.sha256(b"x").digest()).TYPE == "credential_issued"


def test_record_must_be_canonical() -> None:
    entry = Notice(text="hola")
    leaf = encode_record(0, bytes(32), 1, entry)
    noncanon = cbor2.dumps([0, bytes(32), 1, "notice", {"text": "hola"}], canonical=False)
    assert decode_record(leaf).entry == entry
    swapped = cbor2.dumps([0, bytes(32), 1, "notice", {"text": "hola"}])
    assert decode_record(swapped).entry == entry or swapped != noncanon
    with pytest.raises(MalformedInput):
        decode_record(b"\xff\x00")
    with pytest.raises(MalformedInput):
        decode_record(cbor2.dumps([0, bytes(32), 1, "notice", {"text": "hola", "x": 1}]))
    # a non-shortest integer encoding of seq is refused as non-canonical
    with pytest.raises(MalformedInput):
        decode_record(b"\x85\x18\x00" + leaf[2:])


_LEAVES = [encode_record(7, bytes(range(32)), 1_700_000_000_000, entry_from_json(item))
           for item in valid_entries()]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_node_of_a_record_edited_is_a_typed_error(data: st.DataObject) -> None:
    """A mirror reads records from another city's node, which it does not trust: a record with
    any node replaced or removed (a map with number keys, a list where text was) is a
    ``ledger_bad_record``, ``_entry``, ``_field`` or ``_text``, never an exception the mirror
    does not expect."""
    leaf = data.draw(st.sampled_from(_LEAVES))
    record = cbor2.loads(leaf)
    edited = cbor2.dumps(draw_edit(data, record)[1])
    try:
        decoded = decode_record(edited)
    except MalformedInput as exc:
        assert exc.code in ("ledger_bad_record", "ledger_bad_entry", "ledger_bad_field",
                            "ledger_bad_text")
        return
    assert encode_record(decoded.seq, decoded.prev, decoded.time_ms, decoded.entry) == edited
