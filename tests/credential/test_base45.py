"""RFC 9285 base45: published vectors, a naive reference decoder, and property tests."""

from __future__ import annotations

import json
from pathlib import Path
from random import Random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credential import base45
from credential.errors import MalformedInput

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "base45" / "rfc9285.json"


def _vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def _naive_decode(text: str) -> bytes | None:
    """RFC 9285 §4.2 as written, one triplet at a time; None where the RFC says invalid."""
    if len(text) % 3 == 1 or any(ch not in base45.ALPHABET for ch in text):
        return None
    out = bytearray()
    for i in range(0, len(text), 3):
        chunk = [base45.ALPHABET.index(ch) for ch in text[i : i + 3]]
        value = sum(v * 45**j for j, v in enumerate(chunk))
        width = 2 if len(chunk) == 3 else 1
        if value >= 256**width:
            return None
        out += value.to_bytes(width, "big")
    return bytes(out)


@pytest.mark.parametrize("case", _vectors()["valid"], ids=lambda c: c["desc"])
def test_valid_vectors(case: dict[str, str]) -> None:
    data = bytes.fromhex(case["bytes_hex"])
    assert base45.encode(data) == case["base45"]
    assert base45.decode(case["base45"]) == data


@pytest.mark.parametrize("case", _vectors()["invalid"], ids=lambda c: c["desc"])
def test_invalid_vectors(case: dict[str, str]) -> None:
    with pytest.raises(MalformedInput) as info:
        base45.decode(case["base45"])
    assert info.value.code == "base45_invalid"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0", "impossible length"),
        ("0000", "impossible length"),
        ("GGW", "triplet value exceeds 65535"),
        ("000GGW", "triplet value exceeds 65535"),
        ("::", "trailing pair value exceeds 255"),
        ("000::", "trailing pair value exceeds 255"),
        ("BB8é", "character outside the alphabet"),
        ("bb8", "character outside the alphabet"),
    ],
)
def test_each_rejection_reason(text: str, reason: str) -> None:
    with pytest.raises(MalformedInput) as info:
        base45.decode(text)
    assert info.value.detail == {"reason": reason}


def test_boundaries() -> None:
    assert base45.decode("FGW") == b"\xff\xff"  # 65535, the largest triplet
    assert base45.decode("U5") == b"\xff"  # 255, the largest pair
    assert base45.encode(b"\xff") == "U5"


def test_long_input_beyond_precomputed_mask() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes → 15,360 characters
    assert base45.decode(base45.encode(data)) == data


@given(st.binary(max_size=1200))
def test_round_trip(data: bytes) -> None:
    text = base45.encode(data)
    assert set(text) <= set(base45.ALPHABET)
    assert base45.decode(text) == data


@given(st.text(alphabet=base45.ALPHABET, max_size=60))
def test_matches_naive_reference(text: str) -> None:
    expected = _naive_decode(text)
    if expected is None:
        with pytest.raises(MalformedInput):
            base45.decode(text)
    else:
        assert base45.decode(text) == expected


@given(st.text(max_size=200))
def test_random_text_raises_only_malformed_input(text: str) -> None:
    try:
        data = base45.decode(text)
    except MalformedInput as exc:
        assert exc.code == "base45_invalid"
    else:
        assert base45.encode(data) == text  # accepted text is the one canonical encoding


@given(st.binary(max_size=300), st.randoms(use_true_random=False))
def test_any_case_reads_lower_case_letters_as_upper(data: bytes, rnd: Random) -> None:
    text = base45.encode(data)
    mixed = "".join(c.lower() if rnd.random() < 0.5 else c for c in text)
    assert base45.decode(mixed, any_case=True) == data
    if mixed != text:  # strict decoding refuses lower case
        with pytest.raises(MalformedInput):
            base45.decode(mixed)


@given(st.text(max_size=200))
def test_any_case_accepts_exactly_the_upper_cased_ascii(text: str) -> None:
    try:
        data = base45.decode(text, any_case=True)
    except MalformedInput:
        if text.isascii():
            with pytest.raises(MalformedInput):
                base45.decode(text.upper())
    else:
        assert text.isascii() and base45.decode(text.upper()) == data
