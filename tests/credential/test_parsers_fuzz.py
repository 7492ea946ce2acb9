"""Every parser of untrusted input ends in a typed error: bundles, city roots, claims files."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credential import cose, transport
from credential.bundle import RootKey, parse_bundle
from credential.claims import parse_claims
from credential.errors import (
    MalformedInput,
    Rejection,
    UsageError,
    message_catalog,
)
from credential.keys import kid_for
from tests.cbor_edits import draw_edit
from tests.factory import NOW, City, example_claims, presentation
from verifier.engine import Verifier

_CITY = City()
_BUNDLE = _CITY.bundle()
_HOLDER = nacl.signing.SigningKey.generate()
_PRESENTATION = presentation(_CITY.issue(holder=_HOLDER), _HOLDER, "library",
                             ["residence", "library"])
_PAPER = transport.pack(_CITY.issue().to_cbor())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(st.binary(max_size=400) | st.binary(max_size=400).map(lambda b: _BUNDLE[:40] + b))
def test_bundle_random_bytes(data: bytes) -> None:
    # Random bytes (some behind a real bundle's first bytes) are never a bundle the root
    # signed: always refused, and only with the bundle's own codes.
    with pytest.raises((MalformedInput, Rejection)) as caught:
        parse_bundle(data, [_CITY.root])
    assert caught.value.code in ("bundle_invalid", "bundle_untrusted")


@settings(max_examples=200)
@given(st.data())
def test_bundle_mutations_never_pass(data: st.DataObject) -> None:
    raw = bytearray(_BUNDLE)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises((MalformedInput, Rejection)) as caught:
        parse_bundle(bytes(raw), [_CITY.root])
    assert caught.value.code in ("bundle_invalid", "bundle_untrusted")


_PAYLOAD = cbor2.loads(cbor2.loads(_BUNDLE)[2])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_root_signing_an_odd_bundle_breaks_no_counter(data: st.DataObject) -> None:
    """A bundle the root did sign, with any node of its contents changed (a faulty release of
    the office software, a hand-made bundle): a typed error, or a bundle a counter loads and
    then verifies with as usual; never a crash at every counter of the city."""
    _, edited = draw_edit(data, _PAYLOAD)
    root = _CITY.root_key
    signed = cbor2.dumps(cose.sign1(root, cbor2.dumps(edited), kid=kid_for(bytes(root.verify_key))))
    try:
        counter = Verifier(bundles=[signed], roots=[_CITY.root])
    except (MalformedInput, Rejection):
        return
    for text in (_PRESENTATION, _PAPER):
        result = counter.verify(text, service="library", now=NOW)
        assert result.accepted or result.code in message_catalog()


def test_bundle_from_another_root_is_untrusted() -> None:
    with pytest.raises(Rejection) as caught:
        parse_bundle(_BUNDLE, [City().root])
    assert caught.value.code == "bundle_untrusted"


@settings(max_examples=300)
@given(json_values)
def test_root_file_random_json(value: Any) -> None:
    # No random JSON has a 32-byte base64url public key: every one is refused, as a root file.
    with pytest.raises(MalformedInput) as caught:
        RootKey.from_json(json.dumps(value))
    assert caught.value.code == "root_invalid"


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
    # Random JSON never holds every required claim: always refused, as claims.
    with pytest.raises(UsageError) as caught:
        parse_claims(value)
    assert caught.value.code == "claims_invalid"


def test_bundle_cbor_bomb_is_bounded() -> None:
    huge = cbor2.dumps([b"\x00" * (5 * 1024 * 1024)])
    with pytest.raises(MalformedInput) as caught:
        parse_bundle(huge, [_CITY.root])
    assert caught.value.code == "bundle_invalid"
    assert caught.value.detail == {"reason": "not CBOR"}  # refused by size, before any parse
