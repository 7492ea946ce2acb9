"""Ed25519 (RFC 8032) as libsodium implements it, against every Wycheproof case.

The Wycheproof file includes RFC 8032 §7.1 tests 1–3 and 1024 among its "valid" cases. Each case
runs through pynacl's public ``VerifyKey.verify`` and through ``credential.ed25519``, the direct
libsodium call our verification engine makes: a "valid" case must verify on both, an "invalid"
one must fail on both (pynacl raises ``BadSignatureError``, or ``ValueError`` when a key or
signature has the wrong length).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from credential import ed25519

VECTORS = (
    Path(__file__).resolve().parents[1] / "vectors" / "wycheproof" / "ed25519_test.json"
)

# Cases where libsodium's answer differs from Wycheproof's, each with the reason it is acceptable.
# Only a case Wycheproof itself marks "acceptable" may be listed. With pynacl 1.6 and the libsodium
# it bundles there is none: libsodium agrees with all 151 cases (it rejects non-canonical S and R,
# small-order keys and R, and wrong lengths — all "invalid" in Wycheproof).
KNOWN_DIFFERENCES: dict[int, str] = {}

RFC8032_MESSAGES = {  # RFC 8032 §7.1 TEST 1, 2, 3 (TEST 1024 has a long message, matched below)
    "",
    "72",
    "af82",
}


def _cases() -> list[Any]:
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    return [
        pytest.param(group["publicKey"]["pk"], case, id=f"tc{case['tcId']}")
        for group in data["testGroups"]
        for case in group["tests"]
    ]


CASES = _cases()


def test_vector_file_is_complete() -> None:
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert len(CASES) == data["numberOfTests"] == 151
    results = [p.values[1]["result"] for p in CASES]
    assert results.count("valid") == 88 and results.count("invalid") == 63
    messages = {p.values[1]["msg"] for p in CASES if p.values[1]["result"] == "valid"}
    assert messages >= RFC8032_MESSAGES
    assert any(len(m) == 2046 for m in messages)  # RFC 8032 TEST 1024 (1023-byte message)


def _verifies(public_key_hex: str, case: dict[str, Any]) -> bool:
    try:
        VerifyKey(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
        )
    except BadSignatureError:
        return False
    except ValueError:  # wrong key or signature length: pynacl refuses before libsodium
        assert case["result"] == "invalid"
        return False
    return True


def _verifies_direct(public_key_hex: str, case: dict[str, Any]) -> bool:
    signature = bytes.fromhex(case["sig"])
    # The engine's COSE parser refuses any signature that is not 64 bytes before this call.
    return len(signature) == 64 and ed25519.verify_signed(
        bytes.fromhex(public_key_hex), signature + bytes.fromhex(case["msg"]))


def test_engine_uses_the_direct_libsodium_call() -> None:
    # The fallback is correct but slower; a pynacl that moved its binding should be noticed.
    assert ed25519.FAST


@pytest.mark.parametrize(("public_key_hex", "case"), CASES)
def test_wycheproof_case(public_key_hex: str, case: dict[str, Any]) -> None:
    got = _verifies(public_key_hex, case)
    assert _verifies_direct(public_key_hex, case) == got
    if case["tcId"] in KNOWN_DIFFERENCES:
        assert case["result"] == "acceptable", KNOWN_DIFFERENCES[case["tcId"]]
        return
    assert got == (case["result"] == "valid"), (case["comment"], case["flags"])
