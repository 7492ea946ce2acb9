"""``credential.ids``: printable credential ids, against the standard library's base32."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credential.ids import CTI_LEN, ID_LEN, credential_id, cti_from_id


@given(st.binary(min_size=1, max_size=32))
def test_credential_id_is_unpadded_rfc4648_base32(cti: bytes) -> None:
    assert credential_id(cti) == base64.b32encode(cti).decode().rstrip("=")


@given(st.binary(min_size=CTI_LEN, max_size=CTI_LEN))
def test_an_issued_id_reads_back_to_its_cti(cti: bytes) -> None:
    text = credential_id(cti)
    assert len(text) == ID_LEN
    assert cti_from_id(text) == cti


@pytest.mark.parametrize("text", [
    "",
    "W4SS3SWSIMPBG".lower(),  # one credential, one spelling
    "W4SS3SWSIMPB",  # too short
    "W4SS3SWSIMPBGA",  # too long
    "W4SS3SWSIMPB1",  # 1 is not a base32 digit
    "W4SS3SWSIMPBH",  # the unused low bit set: decodes, but is not how the id prints
    "W4SS3SWSIMPB=",
    "W4SS3SWSIMPBÉ",
])
def test_only_the_printed_form_is_an_id(text: str) -> None:
    assert cti_from_id("W4SS3SWSIMPBG") is not None
    assert cti_from_id(text) is None
