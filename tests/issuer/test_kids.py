"""Office key ids as a clerk types them: a kid is base64url, so one drawn at random begins with
"-" once in 64, where a command line would read it as an option (``-h…``: the help)."""

from __future__ import annotations

import json
from pathlib import Path

import nacl.signing
import pytest

from credential.keys import b64url, kid_for, new_signing_key
from tests.conftest import Run


def _kid(seed: int) -> str:
    key = nacl.signing.SigningKey(seed.to_bytes(32, "big"))
    return b64url(kid_for(bytes(key.verify_key)))


def test_a_new_key_never_has_a_kid_that_reads_as_an_option(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the generator's draws made known: the first two give kids starting with "-"
    dashed = [s for s in range(1, 2000) if _kid(s).startswith("-")][:2]
    plain = next(s for s in range(1, 2000) if not _kid(s).startswith("-"))
    draws = iter([*dashed, plain])
    monkeypatch.setattr(nacl.signing.SigningKey, "generate",
                        classmethod(lambda cls: cls(next(draws).to_bytes(32, "big"))))
    key = new_signing_key()
    assert b64url(kid_for(bytes(key.verify_key))) == _kid(plain)
    assert next(draws, None) is None  # the two drawn again, the third kept


def test_a_kid_beginning_with_dash_h_is_the_kid_not_the_help(office: Path, run: Run) -> None:
    """Kids made before they were drawn not to begin with "-" are still typed as they are."""
    kid = b64url(bytes([0xFA, 0x1A, 0, 0]))
    assert kid.startswith("-h")
    code, out, err = run("issuer", "compromised", kid, "--since", "2026-01-01T00:00:00Z",
                         "--home", str(office))
    assert code == 1 and out == "" and err.startswith("[issuer_key_unknown]"), (out, err)
    assert kid in err
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])
    assert [k["status"] for k in keys] == ["active"]
    assert not keys[0]["kid"].startswith("-")
    for asked in ("--help", "-h"):  # "-h" alone is no kid: help, as in every command
        code, out, _ = run("issuer", "compromised", asked)
        assert code == 0 and "KID" in out, asked
