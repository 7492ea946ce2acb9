"""A wallet home damaged on disk (a hand edit, a bad copy, a backup from another wallet): each
damage is a typed error that names the file and what to do, never an unexpected error, a
misleading piece of advice or a read without end."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import nacl.bindings
import pytest

from credential import transport
from credential.errors import StoreError
from credential.home import read_bounded
from credential.keys import b64url, unb64url
from tests.factory import City
from tests.wallet_cli.conftest import PASSPHRASE, Run, example_claims
from wallet_cli import store
from wallet_cli.store import Wallet


def _edit_sealed(home: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    path = home / store.WALLET_FILE
    doc = json.loads(path.read_text("utf-8"))
    sealed = cbor2.loads(unb64url(doc["sealed_key"]))
    edit(sealed)
    doc["sealed_key"] = b64url(cbor2.dumps(sealed))
    path.write_text(json.dumps(doc), "utf-8")


def _set(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda d: d.__setitem__(key, value)


# Each edit made the sealing library fail with an untyped error (salt, ops, mem), or gave a
# bare "problem with local storage" that named no file (a sealed key that is not a map, a salt
# that is text), or let a box too short to hold a key pass for a wrong passphrase.
@pytest.mark.parametrize("edit", [
    _set("salt", b"short"), _set("salt", "text"), _set("ops", 0), _set("ops", -5),
    _set("ops", 2**70), _set("mem", 1), _set("box", b"x"), lambda d: d.clear(),
    lambda d: d.pop("box"),
], ids=["salt-short", "salt-text", "ops-0", "ops-negative", "ops-huge", "mem-tiny",
        "box-short", "empty", "no-box"])
def test_a_damaged_sealed_key_is_named_as_such(wallet_home: Path,
                                               edit: Callable[[dict[str, Any]], object]) -> None:
    _edit_sealed(wallet_home, edit)
    with pytest.raises(StoreError) as err:
        Wallet.open(wallet_home).holder_key(PASSPHRASE)
    assert err.value.code == "wallet_key_damaged"
    assert str(wallet_home / store.WALLET_FILE) in err.value.message["es"]


@pytest.mark.parametrize("sealed", [b"", b"\x01\x02\x03", cbor2.dumps([1, 2, 3])])
def test_a_sealed_key_that_is_no_sealed_key(wallet_home: Path, sealed: bytes) -> None:
    path = wallet_home / store.WALLET_FILE
    doc = json.loads(path.read_text("utf-8"))
    doc["sealed_key"] = b64url(sealed)
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(StoreError) as err:
        Wallet.open(wallet_home).holder_key(PASSPHRASE)
    assert err.value.code == "wallet_key_damaged"


def test_present_with_a_damaged_sealed_key_exits_1_with_the_file(run: Run, wallet_home: Path,
                                                                   mexicali: City) -> None:
    wallet = Wallet.open(wallet_home)
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                     example_claims("mexicali"))).id
    _edit_sealed(wallet_home, _set("salt", b"short"))
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert isinstance(result.exception, StoreError), result.exception
    assert result.exception.code == "wallet_key_damaged" and result.stdout == ""
    # nor is the key of a wallet that cannot sign printed for an office to issue to
    key = run("wallet", "key", "--home", wallet_home)
    assert isinstance(key.exception, StoreError) and key.stdout == ""
    assert key.exception.code == "wallet_key_damaged"


def _flip_first(field: str) -> Callable[[dict[str, Any]], object]:
    return lambda d: d.__setitem__(field, bytes([d[field][0] ^ 1]) + d[field][1:])


# A bit changed by a bad sector used to read as a wrong passphrase, asked for again forever.
@pytest.mark.parametrize("field", ["salt", "box"])
def test_a_changed_byte_in_the_sealed_key_is_damage(run: Run, wallet_home: Path,
                                                     field: str) -> None:
    _edit_sealed(wallet_home, _flip_first(field))
    result = run("wallet", "present", "anything", "--for", "library", "--home", wallet_home)
    assert isinstance(result.exception, StoreError), result.exception
    assert result.exception.code == "wallet_key_damaged"


def test_the_passphrase_still_decides_on_a_whole_sealed_key(wallet: Wallet) -> None:
    with pytest.raises(StoreError) as err:
        wallet.holder_key("not the passphrase")
    assert err.value.code == "wallet_passphrase_wrong"
    wallet.holder_key(PASSPHRASE)


def test_a_passport_of_another_wallet_key_is_not_called_damaged(wallet_home: Path, tmp_path: Path,
                                                                mexicali: City) -> None:
    """A resident who lost wallet.json and ran ``init`` again holds passports for the old key:
    "damaged, import it again" would send them to an import that can only fail."""
    wallet = Wallet.open(wallet_home)
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                     example_claims("mexicali"))).id
    (wallet_home / store.WALLET_FILE).unlink()
    again = Wallet.create(wallet_home, PASSPHRASE)
    [problem] = again.entries()[1]
    assert problem.code == "wallet_credential_other_holder"
    assert cred_id in problem.message["en"] and b64url(again.public_key) in problem.message["es"]
    with pytest.raises(StoreError) as err:
        again.present(cred_id, service="library", passphrase=PASSPHRASE)
    assert err.value.code == "wallet_credential_other_holder"


def _list_capped(home: Path) -> subprocess.CompletedProcess[str]:
    """``wallet list`` in a process whose memory is capped: a read without end then ends in
    MemoryError (an "unexpected error") instead of taking the machine's memory."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE}
    env.pop("PASAPORTE_HOME", None)
    return subprocess.run([sys.executable, "-m", "pasaporte", "wallet", "list", "--home",
                           str(home)], env=env, text=True, capture_output=True, check=False,
                          preexec_fn=cap, timeout=300)


def test_a_wallet_file_without_end_is_not_read_to_the_end(wallet_home: Path) -> None:
    """A wallet file replaced by a link to a device (or any huge file) is refused after a
    bounded read, not read until memory runs out."""
    path = wallet_home / store.WALLET_FILE
    path.unlink()
    path.symlink_to("/dev/zero")
    done = _list_capped(wallet_home)
    assert done.returncode == 1 and "[wallet_unreadable]" in done.stderr, done.stderr


def test_stored_files_without_end_are_not_read_to_the_end(wallet: Wallet,
                                                          mexicali: City) -> None:
    good = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                  example_claims("mexicali"))).id
    wallet.trust([mexicali.bundle()], [mexicali.root.to_json().encode()])
    bundle_file = wallet.trust_dir / f"{mexicali.code}.bundle"
    bundle_file.unlink()
    bundle_file.symlink_to("/dev/zero")
    (wallet.credentials_dir / "AAAAAAAAAAA.cbor").symlink_to("/dev/zero")
    done = _list_capped(wallet.home)
    # the damaged one is named, the good one still listed, the bundle ignored as unreadable
    assert done.returncode == 1, done.stderr
    assert "[wallet_credential_corrupt]" in done.stderr and "AAAAAAAAAAA" in done.stderr
    assert good in done.stdout and "internal_error" not in done.stderr


# -- the clear public key ---------------------------------------------------------------------

def _flip_public_key(home: Path, *, on_curve: bool) -> None:
    """One bit of ``wallet.json``'s clear public key changed, the first whose result is (or is
    not) still a curve point, as a bad sector or a careless edit would change it."""
    path = home / store.WALLET_FILE
    doc = json.loads(path.read_text("utf-8"))
    raw = unb64url(doc["public_key"])
    for bit in range(256):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        if nacl.bindings.crypto_core_ed25519_is_valid_point(bytes(flipped)) == on_curve:
            break
    doc["public_key"] = b64url(bytes(flipped))
    path.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")


def _drop_key_check(home: Path) -> None:
    """``wallet.json`` as wallets made before the key's check was kept have it."""
    path = home / store.WALLET_FILE
    doc = json.loads(path.read_text("utf-8"))
    del doc["public_key_check"]
    path.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")


@pytest.mark.parametrize("on_curve", [True, False], ids=["still-a-point", "no-point"])
def test_one_bit_changed_in_the_clear_public_key_is_damage(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path, on_curve: bool) -> None:
    """``wallet key`` printed the damaged key (an office then issued passports no wallet can
    present), and ``list`` called every stored passport another wallet's."""
    wallet = Wallet.open(wallet_home)
    file = tmp_path / "m.cred"
    file.write_text(mexicali.issue_text(wallet.public_key, example_claims("mexicali")), "utf-8")
    assert run("wallet", "import", file, "--home", wallet_home).exit_code == 0
    _flip_public_key(wallet_home, on_curve=on_curve)
    for command in (["key"], ["list"], ["import", str(file)]):
        result = run("wallet", *command, "--home", wallet_home)
        assert isinstance(result.exception, StoreError), (command, result.output)
        assert result.exception.code == "wallet_public_key_damaged" and result.stdout == ""
        message = result.exception.message
        assert str(wallet_home / store.WALLET_FILE) in message["es"]
        assert "backup" in message["en"] and "copia de seguridad" in message["es"]
        assert "another wallet" not in message["en"]


def test_a_wallet_made_before_the_key_check_still_opens(run: Run, wallet_home: Path) -> None:
    key = run("wallet", "key", "--home", wallet_home).stdout
    _drop_key_check(wallet_home)
    assert run("wallet", "key", "--home", wallet_home).stdout == key
    # without its check, a key that is no curve point is still known for damage
    _flip_public_key(wallet_home, on_curve=False)
    result = run("wallet", "key", "--home", wallet_home)
    assert isinstance(result.exception, StoreError) and result.stdout == ""
    assert result.exception.code == "wallet_public_key_damaged"


def test_a_new_passphrase_keeps_the_key_check(run: Run, wallet_home: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``wallet passphrase`` rewrites ``wallet.json``: the check stays, and a wallet made
    before it was kept gains it (the key was just unsealed and found to be the clear one)."""
    path = wallet_home / store.WALLET_FILE
    check = json.loads(path.read_text("utf-8"))["public_key_check"]
    _drop_key_check(wallet_home)
    monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", "otra frase / another one")
    assert run("wallet", "passphrase", "--home", wallet_home).exit_code == 0
    assert json.loads(path.read_text("utf-8"))["public_key_check"] == check
    _flip_public_key(wallet_home, on_curve=True)
    result = run("wallet", "key", "--home", wallet_home)
    assert isinstance(result.exception, StoreError)
    assert result.exception.code == "wallet_public_key_damaged"


# -- a stored passport's bytes ----------------------------------------------------------------

def _flip_signature(stored: Path) -> None:
    raw = stored.read_bytes()
    at = raw.index(cbor2.loads(raw)[0][3])  # the office's 64-byte signature
    damaged = bytearray(raw)
    damaged[at + 10] ^= 1
    stored.write_bytes(bytes(damaged))


def _imported_file(run: Run, wallet_home: Path, mexicali: City,
                   tmp_path: Path) -> tuple[Wallet, Path, str]:
    """The wallet, the office's file of a passport issued to it, and the id it imported as."""
    wallet = Wallet.open(wallet_home)
    file = tmp_path / "m.cred"
    file.write_text(mexicali.issue_text(wallet.public_key, example_claims("mexicali")), "utf-8")
    return wallet, file, run("wallet", "import", file, "--home", wallet_home).stdout.strip()


def test_a_changed_byte_in_a_stored_signature_is_damage_mended_by_importing_again(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path) -> None:
    """It listed as valid and was presented, and the counter then called it forged."""
    wallet, file, cred_id = _imported_file(run, wallet_home, mexicali, tmp_path)
    _flip_signature(wallet.credentials_dir / f"{cred_id}.cbor")
    listed = run("wallet", "list", "--home", wallet_home)
    assert listed.exit_code == 1 and cred_id not in listed.stdout
    assert "[wallet_credential_corrupt]" in listed.stderr and cred_id in listed.stderr
    assert "import it again" in listed.stderr
    shown = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert isinstance(shown.exception, StoreError) and shown.stdout == ""
    assert shown.exception.code == "wallet_credential_corrupt"
    again = run("wallet", "import", file, "--home", wallet_home)
    assert again.exit_code == 0 and "Actualizado / Updated" in again.stderr, again.output
    shown = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert mexicali.verifier().verify(shown.stdout.strip(), service="library").accepted


def test_any_changed_byte_in_a_stored_passport_is_damage(wallet: Wallet,
                                                         mexicali: City) -> None:
    """Every byte, one at a time: the signature's and some of the claims' were reported
    nowhere (and one changed the expiry shown)."""
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                     example_claims("mexicali"))).id
    stored = wallet.credentials_dir / f"{cred_id}.cbor"
    whole = stored.read_bytes()
    for at in range(len(whole)):
        damaged = bytearray(whole)
        damaged[at] ^= 1
        stored.write_bytes(bytes(damaged))
        entries, problems = wallet.entries()
        assert entries == [] and [p.code for p in problems] == ["wallet_credential_corrupt"], at
    stored.write_bytes(whole)
    assert [e.id for e in wallet.entries()[0]] == [cred_id]


def test_a_passport_imported_before_digests_were_kept_still_lists(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path) -> None:
    wallet, file, cred_id = _imported_file(run, wallet_home, mexicali, tmp_path)
    record = wallet.credentials_dir / f"{cred_id}{store.DIGESTS}"
    kept = record.read_bytes()
    record.unlink()
    listed = run("wallet", "list", "--home", wallet_home)
    assert listed.exit_code == 0 and cred_id in listed.stdout, listed.output
    # importing it again (unchanged) records its digest; so it does for a damaged record
    for before in (None, b"not a digest\n"):
        if before is not None:
            record.write_bytes(before)
            assert run("wallet", "list", "--home", wallet_home).exit_code == 1
        again = run("wallet", "import", file, "--home", wallet_home)
        assert again.exit_code == 0 and "Ya estaba" in again.stderr, again.output
        assert record.read_bytes() == kept


def test_a_passport_read_while_an_import_replaces_it_is_not_called_damaged(
        wallet: Wallet, mexicali: City, monkeypatch: pytest.MonkeyPatch) -> None:
    """``present`` reads without the wallet's lock. Its bytes read just before an import
    replaced them, and the digests just after (the new one's alone): a whole passport was
    reported damaged. The import here is the real one, run at that moment."""
    wallet.trust([mexicali.bundle()], [mexicali.root.to_json().encode()])  # a re-issue checks
    first = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    cred_id = wallet.import_text(transport.pack(first.to_cbor())).id
    newer = transport.pack(mexicali.issue_for(wallet.public_key, example_claims("mexicali"),
                                              cti=first.cti).to_cbor())  # re-issued
    real_read = read_bounded

    def read_then_replaced(path: Any, limit: int) -> bytes:
        data = real_read(path, limit)
        if str(path).endswith(store.SUFFIX):
            monkeypatch.setattr(store, "read_bounded", real_read)
            assert wallet.import_text(newer).outcome == "replaced"
        return data

    monkeypatch.setattr(store, "read_bounded", read_then_replaced)
    assert wallet.load(cred_id).payload.credential_id == cred_id  # the old bytes, whole
    assert wallet.load(cred_id).payload.credential_id == cred_id  # and the new ones
