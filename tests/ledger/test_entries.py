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


ENTRY, FIELD, TEXT = "ledger_bad_entry", "ledger_bad_field", "ledger_bad_text"
# why, the entry, then what must be refused: the code and what the error names (the field, or
# the reason for an entry-level refusal)
BAD: list[tuple[str, dict[str, Any], str, dict[str, str]]] = [
    ("unknown type", {"type": "person", "name": "Ana"}, ENTRY,
     {"reason": "unknown type 'person'"}),
    ("no type", {"commitment": b64u(bytes(32))}, ENTRY, {"reason": "missing type"}),
    ("personal field", {"type": "credential_issued", "commitment": b64u(bytes(32)),
                        "name": "Ana López"}, ENTRY, {"reason": "unknown fields: name"}),
    ("birth date", {"type": "notice", "text": "x", "birth_date": "1990-01-01"}, ENTRY,
     {"reason": "unknown fields: birth_date"}),
    ("short commitment", {"type": "credential_issued", "commitment": b64u(bytes(31))}, FIELD,
     {"field": "commitment", "reason": "length 31"}),
    ("commitment not base64url", {"type": "credential_issued", "commitment": "++//" * 11},
     FIELD, {"field": "commitment", "reason": "expected base64url"}),
    ("commitment as int", {"type": "credential_issued", "commitment": 7}, FIELD,
     {"field": "commitment", "reason": "expected base64url"}),
    ("missing field", {"type": "key_rotated", "kid": "a"}, ENTRY,
     {"reason": "missing fields: replaces"}),
    ("bad status", {"type": "status_changed", "list": "l", "index": 1, "status": "gone",
                    "reason": "fraud"}, FIELD, {"field": "status"}),
    ("free-text reason", {"type": "status_changed", "list": "l", "index": 1,
                          "status": "revoked", "reason": "Juan Pérez moved"}, FIELD,
     {"field": "reason"}),
    ("negative index", {"type": "status_changed", "list": "l", "index": -1,
                        "status": "revoked", "reason": "fraud"}, FIELD, {"field": "index"}),
    ("bool index", {"type": "status_changed", "list": "l", "index": True,
                    "status": "revoked", "reason": "fraud"}, FIELD, {"field": "index"}),
    ("huge index", {"type": "status_changed", "list": "l", "index": 2**64,
                    "status": "revoked", "reason": "fraud"}, FIELD, {"field": "index"}),
    ("bad time", {"type": "key_compromised", "kid": "k", "effective": "yesterday"}, FIELD,
     {"field": "effective"}),
    ("impossible date", {"type": "key_compromised", "kid": "k",
                         "effective": "2025-02-30T00:00:00Z"}, FIELD, {"field": "effective"}),
    ("full-width digits", {"type": "key_compromised", "kid": "k",
                           "effective": "２０２５-01-01T00:00:00Z"}, FIELD,
     {"field": "effective"}),
    ("bad country", {**valid_entries()[0], "country": "Mexico"}, FIELD, {"field": "country"}),
    ("until before from", {**valid_entries()[0], "valid_until": "2024-01-01T00:00:00Z"},
     FIELD, {"field": "valid_until", "reason": "must be after valid_from"}),
    ("kid with spaces", {"type": "key_rotated", "kid": "a b", "replaces": "c"}, FIELD,
     {"field": "kid"}),
    ("empty notice", {"type": "notice", "text": ""}, FIELD, {"field": "text"}),
    ("huge notice", {"type": "notice", "text": "x" * 2001}, FIELD, {"field": "text"}),
    ("control chars", {"type": "notice", "text": "a\x00b"}, TEXT, {"field": "text"}),
    ("lone surrogate", {"type": "notice", "text": "a\ud800b"}, FIELD,
     {"field": "text", "reason": "not valid Unicode text (a lone surrogate)"}),
    ("lone surrogate in a name", {**valid_entries()[0], "office": "\udfff"}, FIELD,
     {"field": "office", "reason": "not valid Unicode text (a lone surrogate)"}),
    ("short cosignature", {**valid_entries()[6], "signature": b64u(bytes(64))}, FIELD,
     {"field": "signature", "reason": "length 64"}),
    ("not an object", ["notice"], ENTRY,  # type: ignore[list-item]
     {"reason": "an entry is a JSON object"}),
]


@pytest.mark.parametrize(("why", "item", "code", "names"), BAD, ids=[b[0] for b in BAD])
def test_bad_entries_are_refused(why: str, item: dict[str, Any], code: str,
                                 names: dict[str, str]) -> None:
    """Each is refused for its own reason: the code and what it names (a test that only asked
    for *some* refusal would pass on an entry refused for another reason than its case's)."""
    with pytest.raises(MalformedInput) as caught:
        entry_from_json(item)
    assert caught.value.code == code, (why, caught.value.code, caught.value.detail)
    for key, value in names.items():
        assert caught.value.detail.get(key) == value, (why, caught.value.detail)
    assert caught.value.message["es"] != caught.value.message["en"]


def test_typed_entries_validate_on_construction() -> None:
    with pytest.raises(MalformedInput) as caught:
        CredentialIssued(commitment=b"short")
    assert (caught.value.code, caught.value.detail) == (
        "ledger_bad_field", {"field": "commitment", "reason": "length 5"})
    with pytest.raises(MalformedInput) as caught:
        Notice(text=123)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.detail) == (
        "ledger_bad_field", {"field": "text", "reason": "expected a string"})
    assert CredentialIssued(commitment=hashlib.sha256(b"x").digest()).TYPE == "credential_issued"


def _refusal(leaf: bytes) -> tuple[str, object]:
    with pytest.raises(MalformedInput) as caught:
        decode_record(leaf)
    return caught.value.code, caught.value.detail.get("reason")


def test_record_must_be_canonical() -> None:
    """Only the one canonical encoding of a record is a record: the same values encoded
    another way (map keys in another order, an integer in more bytes than it needs) would hash
    to another leaf, so two nodes could hold "the same" record under two hashes."""
    entry = Notice(text="hola")
    leaf = encode_record(0, bytes(32), 1, entry)
    assert decode_record(leaf).entry == entry
    assert leaf == cbor2.dumps([0, bytes(32), 1, "notice", {"text": "hola"}], canonical=True)
    status = {"list": "l", "index": 1, "reason": "fraud", "status": "revoked"}
    canonical = cbor2.dumps([3, bytes(32), 9, "status_changed", status], canonical=True)
    assert decode_record(canonical).entry.fields() == status
    # the same fields, keys in insertion order (not length-then-bytes): not canonical
    shuffled = cbor2.dumps([3, bytes(32), 9, "status_changed",
                            dict(sorted(status.items(), reverse=True))], canonical=False)
    assert shuffled != canonical and cbor2.loads(shuffled) == cbor2.loads(canonical)
    assert _refusal(shuffled) == ("ledger_bad_record", "not canonical")
    # a non-shortest integer encoding of seq (0 in a one-byte argument)
    assert _refusal(b"\x85\x18\x00" + leaf[2:]) == ("ledger_bad_record", "not canonical")
    assert _refusal(b"\xff\x00") == ("ledger_bad_record", "not CBOR")
    assert _refusal(cbor2.dumps([0, bytes(32), 1, "notice"])) == (
        "ledger_bad_record", "not a 5-item record")
    assert _refusal(cbor2.dumps([0, bytes(31), 1, "notice", {"text": "hola"}])) == (
        "ledger_bad_record", "bad header")
    assert _refusal(cbor2.dumps([0, bytes(32), 1, "notice", {"text": "hola", "x": 1}])) == (
        "ledger_bad_entry", "unknown fields: x")


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
