"""Credential ids as a clerk types them into ``revoke``, ``suspend``, ``reinstate`` and
``status``: any case and spaces around name the credential; what cannot be an id at all is a
mistake in the command (exit 2), found before the passphrase is asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from credential.errors import UsageError
from tests.conftest import Run
from tests.factory import EXAMPLES


@pytest.fixture
def issued(homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path
           ) -> tuple[Path, str]:
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                         "--paper", "--out", str(tmp_path / "p.txt"), "--home", str(home))
    assert code == 0, err
    return home, out.strip()


def _no_passphrase() -> str:
    raise AssertionError("the passphrase was asked for")


@pytest.mark.parametrize("command", ["revoke", "suspend", "reinstate", "status"])
@pytest.mark.parametrize("typed", [
    lambda i: "", lambda i: "   ",
    lambda i: i[:-1],  # a character left out
    lambda i: i + "A",  # one too many
    lambda i: "0" + i[1:],  # a 0 for an O: an id has no digit 0
    lambda i: i[:-1] + "1",
    lambda i: "AB\x1b[31mC" + "D" * 9,  # a terminal escape: shown defanged
    lambda i: "A" * 10_000,
])
def test_what_cannot_be_an_id_is_a_usage_error_before_the_passphrase(
        issued: tuple[Path, str], run: Run, monkeypatch: pytest.MonkeyPatch, command: str,
        typed: Callable[[str], str]) -> None:
    home, cred_id = issued
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    code, out, err = run("issuer", command, typed(cred_id), "--home", str(home))
    assert code == 2 and err.startswith("[credential_id_invalid] "), err
    assert "2–7" in err and "\x1b" not in err and len(err) < 1000
    assert out == ""
    code, out, _ = run("issuer", "status", cred_id, "--home", str(home))
    assert code == 0 and "vigente / valid" in out  # nothing changed


def test_the_store_refuses_what_cannot_be_an_id_too(issued: tuple[Path, str]) -> None:
    from issuer.store import IssuerStore
    from tests.conftest import PASSPHRASE

    home, cred_id = issued
    with pytest.raises(UsageError) as refused:
        IssuerStore.open(home).set_status(cred_id[:-1], "revoked", passphrase=PASSPHRASE)
    assert refused.value.code == "credential_id_invalid"

