"""``credential.passport`` helpers that have a standard reference to compare against."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from credential.passport import credential_id


@given(st.binary(min_size=1, max_size=32))
def test_credential_id_is_unpadded_rfc4648_base32(cti: bytes) -> None:
    assert credential_id(cti) == base64.b32encode(cti).decode().rstrip("=")
