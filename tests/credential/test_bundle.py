"""``credential.bundle``: every way a trust bundle or a city root file is refused, each with its
code and reason, from bundles really signed by a city root."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import cbor2
import pytest

from credential import cose
from credential.bundle import MAX_LIST_BYTES, RootKey, check_roots, parse_bundle
from credential.errors import MalformedInput, Rejection, UsageError
from credential.keys import b64url, kid_for
from credential.statuslist import MAX_SIZE
from tests.factory import City

_CITY = City()
_BUNDLE = _CITY.bundle()
_PAYLOAD: dict[str, Any] = cbor2.loads(cbor2.loads(_BUNDLE)[2])


def _signed(payload: object, *, raw: bytes | None = None) -> bytes:
    """A bundle whose contents the city's root really signed."""
    root = _CITY.root_key
    body = cbor2.dumps(payload) if raw is None else raw
    return cbor2.dumps(cose.sign1(root, body, kid=kid_for(bytes(root.verify_key))))


def _with(**changes: object) -> bytes:
    return _signed({**_PAYLOAD, **changes})


def _refused(data: bytes) -> str:
    with pytest.raises(MalformedInput) as caught:
        parse_bundle(data, [_CITY.root])
    assert caught.value.code == "bundle_invalid"
    assert set(caught.value.message) == {"es", "en"}
    reason: str = caught.value.detail["reason"]
    assert reason in caught.value.message["en"]
    return reason


def test_the_untouched_bundle_parses() -> None:
    bundle = parse_bundle(_BUNDLE, [_CITY.root])
    assert (bundle.city, bundle.code, bundle.version) == ("Mexicali", "MXMEX", 1)
    assert parse_bundle(_signed(_PAYLOAD), [_CITY.root]) == bundle


_KEY = _PAYLOAD["keys"][0]
_LIST = _PAYLOAD["status_lists"][0]

CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "not CBOR": (lambda: b"\xff junk", "not CBOR"),
    "not COSE": (lambda: cbor2.dumps([1, 2, 3]), "not a COSE_Sign1 signed by a city root"),
    "contents not CBOR": (lambda: _signed(None, raw=b"\xff"), "contents not CBOR"),
    "wrong type": (lambda: _with(type="something-else/1"), "not a trust bundle"),
    "not a map": (lambda: _signed([1, 2]), "not a trust bundle"),
    "no keys": (lambda: _with(keys=None), "missing sections"),
    "catalogs a list": (lambda: _with(catalogs=[]), "missing sections"),
    "short office key": (lambda: _with(keys=[[*_KEY[:1], b"x" * 31, *_KEY[2:]]]),
                         "office key"),
    "office key of 6": (lambda: _with(keys=[_KEY[:6]]), "office key"),
    "negative validity": (lambda: _with(keys=[[*_KEY[:3], -1, *_KEY[4:]]]),
                          "integer expected"),
    "empty office name": (lambda: _with(keys=[[*_KEY[:2], "", *_KEY[3:]]]), "text expected"),
    "unknown purpose": (lambda: _with(status_lists=[[_LIST[0], "expiry", *_LIST[2:]]]),
                        "status list"),
    "unhashable purpose": (lambda: _with(status_lists=[[_LIST[0], ["x"], *_LIST[2:]]]),
                           "status list"),
    # one office's revocation list twice: a counter would keep one, a wallet read the other
    "list repeated": (lambda: _with(status_lists=[_LIST, _LIST]), "status list repeated"),
    # each within a list's own bound, thousands of them (1 MB of zeros deflates to 1 KB)
    "lists inflate past the bound": (
        lambda: _with(status_lists=[[n, _LIST[1], MAX_SIZE, _LIST[3], _LIST[4]]
                                    for n in range(MAX_LIST_BYTES * 8 // MAX_SIZE + 1)]),
        "status lists too large in all"),
    "catalog not a map": (lambda: _with(catalogs={"library": [1]}), "catalog"),
    "catalog name empty": (lambda: _with(catalogs={"library": {1: ""}}), "text expected"),
    "version as text": (lambda: _with(version="2"), "integer expected"),
    "country of 3": (lambda: _with(country="MEX"), "text expected"),
    "another city": (lambda: _with(city="Tijuana"),
                     "bundle's city, country or city code differs from its root's"),
    "another code": (lambda: _with(code="MXTIJ"),
                     "bundle's city, country or city code differs from its root's"),
    # a wallet names its files by code: a path in it wrote outside its trust folder
    "code a path": (lambda: _with(code="../trust/MXMEX"), "code is not a city code"),
    "code absolute": (lambda: _with(code="/tmp/x"), "code is not a city code"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bundle_invalid(case: str) -> None:
    build, reason = CASES[case]
    assert _refused(build()) == reason


def test_bundle_untrusted() -> None:
    other = City()
    with pytest.raises(Rejection) as caught:
        parse_bundle(_BUNDLE, [other.root])
    assert caught.value.code == "bundle_untrusted"
    # which city's root is missing: the one the bundle says it is of (several cities' files)
    assert "Mexicali (MXMEX)" in caught.value.message["en"]
    assert "Mexicali (MXMEX)" in caught.value.message["es"]
    # a root with the same kid but another key is not fooled either
    forged = cbor2.loads(_BUNDLE)
    forged[3] = bytes(64)
    with pytest.raises(Rejection) as caught:
        parse_bundle(cbor2.dumps(forged), [_CITY.root])
    assert caught.value.code == "bundle_untrusted"


def test_root_invalid() -> None:
    good = json.loads(_CITY.root.to_json())
    assert RootKey.from_json(json.dumps(good)) == _CITY.root
    # a kid not the key's (a fixed one, say four zero bytes, would be 1 time in 2**32)
    other_kid = bytes([_CITY.root.kid[0] ^ 1]) + _CITY.root.kid[1:]
    for doc, reason in [
        ("not json", "not a city root file"),
        (json.dumps([good]), "not a city root file"),
        (json.dumps({k: v for k, v in good.items() if k != "code"}), "not a city root file"),
        (json.dumps({**good, "kid": b64url(other_kid)}), "kid does not match the key"),
        (json.dumps({**good, "code": "../trust/MXMEX"}),
         "code is not a city code (letters, digits and . _ : -, at most 48)"),
        (json.dumps({**good, "code": ""}),
         "code is not a city code (letters, digits and . _ : -, at most 48)"),
    ]:
        with pytest.raises(MalformedInput) as caught:
            RootKey.from_json(doc)
        assert caught.value.code == "root_invalid" and caught.value.detail == {"reason": reason}


@pytest.mark.parametrize("public_key", ["AAAA", "not base64url!", ""])
def test_a_root_file_with_a_damaged_public_key_is_root_invalid(public_key: str) -> None:
    doc = {**json.loads(_CITY.root.to_json()), "public_key": public_key}
    doc.pop("kid")
    with pytest.raises(MalformedInput) as caught:
        RootKey.from_json(json.dumps(doc))
    assert caught.value.code == "root_invalid"
    assert caught.value.detail == {"reason": "public_key is not 32 bytes of base64url"}


def test_roots_conflict() -> None:
    a, b = City(code="MXCIU"), City(city="Ciudad Acuña", code="MXCIU")
    check_roots([a.root, a.root])  # the same root twice is harmless
    with pytest.raises(UsageError) as caught:
        check_roots([a.root, b.root])
    assert caught.value.code == "roots_conflict"
    assert "MXCIU" in caught.value.message["es"] and "MXCIU" in caught.value.message["en"]
