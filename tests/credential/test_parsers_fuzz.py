"""Every parser of untrusted input ends in a typed error: bundles, city roots, claims files."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from credential.bundle import RootKey, parse_bundle
from credential.claims import parse_claims
from credential.errors import MalformedInput, PasaporteError, Rejection, UsageError
from tests.factory import City, example_claims

_CITY = City()
_BUNDLE = _CITY.bundle()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_bundle_random_bytes(data: bytes) -> None:
    with contextlib.suppress(MalformedInput, Rejection):
        parse_bundle(data, [_CITY.root])


@settings(max_examples=200)
@given(st.data())
def test_bundle_mutations_never_pass(data: st.DataObject) -> None:
    raw = bytearray(_BUNDLE)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        parse_bundle(bytes(raw), [_CITY.root])
    except (MalformedInput, Rejection):
        return
    raise AssertionError("a modified bundle was accepted")


def test_bundle_from_another_root_is_untrusted() -> None:
    try:
        parse_bundle(_BUNDLE, [City().root])
    except Rejection as exc:
        assert exc.code == "bundle_untrusted"
    else:
        raise AssertionError("accepted")


@settings(max_examples=300)
@given(json_values)
def test_root_file_random_json(value: Any) -> None:
    try:
        RootKey.from_json(json.dumps(value))
    except MalformedInput as exc:
        assert exc.code == "root_invalid"


@settings(max_examples=500)
@given(st.data())
def test_claims_mutations(data: st.DataObject) -> None:
    doc: dict[str, Any] = example_claims()
    key = data.draw(st.sampled_from(sorted(doc)))
    if isinstance(doc[key], dict) and data.draw(st.booleans()):
        sub = data.draw(st.sampled_from(sorted(doc[key])))
        doc[key][sub] = data.draw(json_values)
    else:
        doc[key] = data.draw(json_values)
    try:
        parse_claims(doc)
    except UsageError as exc:
        assert exc.code == "claims_invalid"
        assert exc.message["es"] and exc.message["en"]


@settings(max_examples=200)
@given(json_values)
def test_claims_random_documents(value: Any) -> None:
    try:
        parse_claims(value)
    except PasaporteError as exc:
        assert exc.code == "claims_invalid"


def test_bundle_cbor_bomb_is_bounded() -> None:
    huge = cbor2.dumps([b"\x00" * (5 * 1024 * 1024)])
    try:
        parse_bundle(huge, [_CITY.root])
    except MalformedInput:
        return
    raise AssertionError("accepted")
