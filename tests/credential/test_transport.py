"""The PU1: QR text envelope: round trips, caps lock, every rejection, a real zlib bomb, fuzzing."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credential import base45, cbor, transport
from credential.errors import MalformedInput, message_catalog

# Signatures and keys: incompressible. A CBOR byte string (never random: a first byte of 0x78,
# zlib's, is always compressed by design, so a random one made this test fail 1 run in 256).
SIGNED_LIKE = b"\x58\xc6" + random.Random(2026).randbytes(198)
REPETITIVE = cbor.dumps({1: ["Mexicali", "Mexicali", "Mexicali"], 2: "biblioteca " * 20})


def _code(text: str, **limits: int) -> MalformedInput:
    with pytest.raises(MalformedInput) as info:
        transport.unpack(text, **limits)
    return info.value


def test_incompressible_payload_is_not_compressed() -> None:
    text = transport.pack(SIGNED_LIKE)
    assert text == "PU1:" + base45.encode(SIGNED_LIKE)
    assert transport.unpack(text) == SIGNED_LIKE


def test_compressible_payload_is_compressed() -> None:
    text = transport.pack(REPETITIVE)
    assert len(text) < len("PU1:" + base45.encode(REPETITIVE))
    assert base45.decode(text[4:])[0] == 0x78
    assert transport.unpack(text) == REPETITIVE


def test_cbor_starting_with_zlib_byte_is_always_compressed() -> None:
    ambiguous = b"\x78\x20" + bytes(range(32))  # a CBOR text string header 0x78
    text = transport.pack(ambiguous)
    assert transport.unpack(text) == ambiguous


@pytest.mark.parametrize("window", [9, 12, 14, 15])
def test_zlib_of_any_window_is_inflated(window: int) -> None:
    """RFC 1950 allows windows of 512 B to 32 KiB; a small-memory deflater (another city's
    wallet on a phone) writes a first byte other than 0x78 (0x18, 0x48, 0x68), still zlib."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, window)
    stream = deflater.compress(REPETITIVE) + deflater.flush()
    assert transport.is_zlib(stream) and (stream[0] == 0x78) == (window == 15)
    assert transport.unpack("PU1:" + base45.encode(stream)) == REPETITIVE


def test_cbor_that_looks_like_any_zlib_header_is_compressed() -> None:
    for head in (b"\x78\x20", b"\x48\x0d", b"\x08\x1d"):  # 0x48, 0x08: FCHECK holds
        assert transport.is_zlib(head)
        payload = head + bytes(range(40))
        assert transport.unpack(transport.pack(payload)) == payload
    # no envelope of ours looks compressed: an array of 2 or 4, a COSE_Sign1 of 4
    assert not any(transport.is_zlib(bytes([b, 0x84])) for b in (0x82, 0x84))


def test_surrounding_whitespace_and_line_endings() -> None:
    text = transport.pack(SIGNED_LIKE)
    assert transport.unpack(f"  \t{text}\r\n") == SIGNED_LIKE


def test_caps_lock_lower_case_is_the_same_payload() -> None:
    for payload in (SIGNED_LIKE, REPETITIVE):
        text = transport.pack(payload)
        assert transport.unpack(text.lower()) == payload
        assert transport.unpack(text.swapcase()) == payload


def test_not_pasaporte() -> None:
    assert _code("HC1:6BFOXN*TS0BI$ZD").code == "not_pasaporte"  # an EU DCC
    assert _code("https://example.org/").code == "not_pasaporte"
    assert _code("").code == "not_pasaporte"
    assert _code("café").code == "not_pasaporte"


def test_unsupported_version() -> None:
    error = _code("PU2:BB8")
    assert error.code == "unsupported_version"
    assert error.detail == {"version": "2"}
    assert "2" in error.message["es"] and "2" in error.message["en"]
    assert _code("pu17:bb8").detail == {"version": "17"}


def test_too_many_characters() -> None:
    payload = b"\x59\x0b\xb5" + os.urandom(2997)  # a CBOR byte string: never 0x78 first
    text = transport.pack(payload)  # 4,504 characters
    assert len(text) == 4504
    assert _code(text).code == "too_large"
    assert transport.unpack(text, max_chars=5000) == payload
    assert _code("PU1:" + "0" * 10_000_000).code == "too_large"


def test_base45_errors_propagate() -> None:
    assert _code("PU1:GGW").code == "base45_invalid"
    assert _code("PU1:0").code == "base45_invalid"
    assert _code("PU1:BB8ß").code == "base45_invalid"  # "ß".upper() would be "SS"


def test_zlib_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compress(b"\x00" * 10_000_000, 9)  # ≈10 KB that inflates to 10 MB
    text = "PU1:" + base45.encode(bomb)
    assert _code(text, max_chars=len(text)).code == "too_large"


def test_inflated_size_limit_is_inclusive() -> None:
    payload = b"\x00" * 8192
    text = transport.pack(payload)
    assert transport.unpack(text) == payload
    assert _code(transport.pack(payload + b"\x00")).code == "too_large"


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (zlib.compress(b"x" * 100)[:-3], "truncated stream"),
        (zlib.compress(b"x" * 100) + b"\x00", "trailing bytes"),
        (b"\x78\x9c\xff\xff\xff", "corrupt stream"),
        (b"\x78\x00", "corrupt stream"),  # bad header check bits
    ],
)
def test_zlib_invalid(stream: bytes, reason: str) -> None:
    error = _code("PU1:" + base45.encode(stream))
    assert error.code == "zlib_invalid"
    assert error.detail == {"reason": reason}


@given(st.binary(max_size=2000))
def test_round_trip(payload: bytes) -> None:
    text = transport.pack(payload)
    assert text.startswith("PU1:")
    assert transport.unpack(text) == payload
    assert transport.unpack(text.lower()) == payload


@given(st.text(max_size=300))
def test_random_text_raises_only_malformed_input(text: str) -> None:
    with contextlib.suppress(MalformedInput):
        transport.unpack(text)


# Random bytes start with zlib's 0x78 once in 256: half the bodies here do, and some are real
# zlib streams cut or extended, so the inflate path and its every refusal are reached.
_zlib_bodies = st.one_of(
    st.binary(max_size=300).map(lambda b: b"\x78" + b),
    st.tuples(st.binary(max_size=300), st.integers(0, 400), st.binary(max_size=4)).map(
        lambda t: zlib.compress(t[0])[: t[1]] + t[2]),
)


@given(st.binary(max_size=300) | _zlib_bodies)
def test_random_body_raises_only_malformed_input(body: bytes) -> None:
    try:
        data = transport.unpack("PU1:" + base45.encode(body))
    except MalformedInput as exc:
        assert exc.code in ("zlib_invalid", "too_large"), exc.code  # base45 is valid here
        assert transport.is_zlib(body)  # only an inflated body can be refused
    else:
        if transport.is_zlib(body):
            assert zlib.decompress(body) == data
        else:
            assert data == body


def test_every_code_raised_has_a_catalog_entry() -> None:
    """Each MalformedInput code in our modules has Spanish and English text, placeholders known."""
    root = Path(__file__).resolve().parents[2]
    catalog = json.loads((root / "schemas" / "messages" / "transport.json").read_text("utf-8"))
    raised: set[str] = set()
    for module in ("base45", "cbor", "transport", "qr", "statuslist"):
        source = (root / "credential" / f"{module}.py").read_text("utf-8")
        raised |= set(re.findall(r'MalformedInput\(\s*"([a-z0-9_]+)"', source))
    assert raised, "no codes found: the pattern no longer matches the sources"
    assert raised <= set(catalog), sorted(raised - set(catalog))
    assert set(catalog) <= raised, sorted(set(catalog) - raised)  # no stale entries
    for code, texts in catalog.items():
        assert set(texts) == {"es", "en"} and all(texts.values()), code
        assert set(re.findall(r"{(\w+)}", texts["es"])) == set(re.findall(r"{(\w+)}", texts["en"]))
        error = MalformedInput(code, version="9", reason="x", chars="1")
        assert "{" not in error.message["es"] + error.message["en"]
    assert message_catalog()["not_pasaporte"]["es"] == "El código no es un pasaporte urbano."


# A payload whose text holds every base45 character a Spanish layout changes, and a space.
_ALL_SYMBOLS = next(p for p in (random.Random(i).randbytes(300) for i in range(100))
                    if set(" *+-/") <= set(base45.encode(p)) and not transport.is_zlib(p))


@pytest.mark.parametrize("layout", [
    {"*": "(", "+": "¡", "-": "'", "/": "-", ":": "Ñ"},  # Spanish (Latin America)
    {"*": "(", "+": "¿", "-": "'", "/": "-", ":": "Ñ"},  # Spanish (Spain)
], ids=["es-LA", "es-ES"])
def test_a_us_scanner_on_a_spanish_computer_is_read_back(layout: dict[str, str | int | None]
                                                         ) -> None:
    typed = transport.pack(_ALL_SYMBOLS).translate(str.maketrans(layout))
    assert typed.startswith("PU1Ñ")
    assert transport.unpack(typed) == _ALL_SYMBOLS
    assert transport.unpack(typed.lower()) == _ALL_SYMBOLS  # and caps lock on


def test_an_aim_symbology_identifier_is_no_part_of_the_code() -> None:
    text = transport.pack(SIGNED_LIKE)
    assert transport.unpack("]Q1" + text) == SIGNED_LIKE
    assert transport.unpack("]q1" + text.lower()) == SIGNED_LIKE
    assert _code("]Q1HC1:6BFOXN").code == "not_pasaporte"


def test_scanner_framing_and_padding_are_no_part_of_the_code() -> None:
    text = transport.pack(SIGNED_LIKE)
    for framed in (f"\x02{text}\x03", f"\0{text}\0\0", f"\ufeff\xa0{text}\u202f\t\r\n"):
        assert transport.unpack(framed) == SIGNED_LIKE


@pytest.mark.parametrize("typed", ["PU1Ö6BF", "PU1>6BF", "PU1\ufffd6BF", "PU&M6BF", "pu1;6bf"])
def test_a_prefix_typed_in_another_keyboard_language_is_refused(typed: str) -> None:
    assert _code(typed).code == "keyboard_layout"


def test_diagnose_names_what_happened_at_the_scanner() -> None:
    text = transport.pack(SIGNED_LIKE)
    some = MalformedInput("base45_invalid", reason="character outside the alphabet")
    assert transport.diagnose(text + "\t" + text.lower(), some).code == "scan_several"
    cut = MalformedInput("cbor_invalid", reason="length exceeds input")
    assert transport.diagnose(text[:40], cut).code == "scan_incomplete"
    assert transport.diagnose(text[:40], some) is some
    other = MalformedInput("cbor_invalid", reason="decode: duplicate map key")
    assert transport.diagnose(text, other) is other
    assert transport.diagnose(b"PU1:PU1:", some) is some


def test_a_prefix_by_chance_inside_one_code_is_not_several_codes() -> None:
    """"PU1:" is four base45 characters, which occur inside a code about once in 8,000: a code
    cut short that holds them was called two codes read as one line (it struck CI once)."""
    text = transport.pack(SIGNED_LIKE)
    chance = text[:100] + "PU1:" + text[104:150]  # one code, cut, with the four inside it
    cut = MalformedInput("cbor_invalid", reason="length exceeds input")
    assert transport.diagnose(chance, cut).code == "scan_incomplete"
    some = MalformedInput("base45_invalid", reason="character outside the alphabet")
    assert transport.diagnose(chance, some) is some
    assert transport.diagnose(text + "\n" + text[:150], some).code == "scan_several"
