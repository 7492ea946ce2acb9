"""What ``Wallet.unlock`` forgives (blanks, caps lock) and what it must not: another passphrase.

Caps lock inverts the case of each letter key, one character for one; ``str.swapcase`` does
more than that for a few letters (``ß`` becomes ``SS``), which made a passphrase that is no
caps-lock typing of the real one open the wallet, and left a caps-lock typing of a passphrase
with such a letter unforgiven. Real wallets on disk, real signed passports, the real command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from credential.errors import StoreError, UsageError
from tests.factory import City
from tests.wallet_cli.conftest import Run, example_claims
from wallet_cli.store import Wallet


def _wallet_with_passport(home: Path, passphrase: str, city: City) -> str:
    wallet = Wallet.create(home, passphrase)
    return wallet.import_text(city.issue_text(wallet.public_key, example_claims("mexicali"))).id


def test_a_sharp_s_is_no_caps_lock_typing_of_two_capital_s(
        run: Run, tmp_path: Path, mexicali: City, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "w"
    cred_id = _wallet_with_passport(home, "SStrasse 1234", mexicali)
    # "ßTRASSE 1234" is not what caps lock makes of "SStrasse 1234" ("ssTRASSE 1234" is), yet
    # "ß".swapcase() == "SS" opened the wallet with it.
    with pytest.raises(StoreError) as err:
        Wallet.open(home).unlock("ßTRASSE 1234")
    assert err.value.code == "wallet_passphrase_wrong"
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "ßTRASSE 1234")
    result = run("wallet", "present", cred_id, "--for", "library", "--home", home)
    assert isinstance(result.exception, StoreError), result.stderr
    assert result.exception.code == "wallet_passphrase_wrong" and result.stdout == ""
    # The caps-lock typing of it still opens, and is said.
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "ssTRASSE 1234")
    shown = run("wallet", "present", cred_id, "--for", "library", "--home", home)
    assert shown.exit_code == 0, shown.stderr
    assert "[wallet_passphrase_caps_lock]" in shown.stderr


@pytest.mark.parametrize(("real", "typed"), [("Straße 1234", "sTRAßE 1234"),
                                             ("Piña colada 7", "pIÑA COLADA 7")],
                         ids=["sharp_s", "enye"])
def test_caps_lock_is_forgiven_letter_for_letter(tmp_path: Path, real: str, typed: str) -> None:
    """Caps lock leaves a key without a capital (ß) as it is: still forgiven."""
    Wallet.create(tmp_path / "w", real)
    assert Wallet.open(tmp_path / "w").unlock(typed)[1] == "caps_lock"


def test_letters_that_are_no_case_pair_are_not_swapped(tmp_path: Path) -> None:
    """A dotless i (ı) swaps to I, but I swaps back to i: no key's two cases. A wallet sealed
    with "I" does not open with "ı"."""
    Wallet.create(tmp_path / "w", "Iglesia vieja 9")
    with pytest.raises(StoreError) as err:
        Wallet.open(tmp_path / "w").unlock("ıGLESIA VIEJA 9")
    assert err.value.code == "wallet_passphrase_wrong"


def test_a_passphrase_that_is_not_utf8_is_refused_without_showing_it(
        run: Run, wallet_home: Path, tmp_path: Path, mexicali: City,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PASAPORTE_PASSPHRASE set from bytes that are no UTF-8 (a script's Latin-1 file): Python
    holds the byte as a surrogate, which cannot be encoded for Argon2id. It was an internal
    error whose text quoted the passphrase's character and its position."""
    cred_id = Wallet.open(wallet_home).import_text(
        mexicali.issue_text(Wallet.open(wallet_home).public_key, example_claims("mexicali"))).id
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "contrase\udcf1a larga")  # "ñ" in Latin-1
    for args in (("wallet", "present", cred_id, "--for", "library", "--home", wallet_home),
                 ("wallet", "init", "--home", tmp_path / "nueva")):
        result = run(*args)
        assert isinstance(result.exception, UsageError), (args, result.exception)
        assert result.exception.code == "passphrase_not_utf8" and result.stdout == ""
        es, en = result.exception.message["es"], result.exception.message["en"]
        assert "UTF-8" in es and "UTF-8" in en
        assert "\udcf1" not in es + en + result.stderr and "position" not in en
    assert not (tmp_path / "nueva").exists()
