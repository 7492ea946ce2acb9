"""``wallet_cli.store``: the sealed key, checks on import, status by the clock, name resolution."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from datetime import date, timedelta
from pathlib import Path

import cbor2
import nacl.signing
import pytest

from credential import transport
from credential.errors import MalformedInput, StoreError, UsageError
from credential.keys import signing_key, unb64url, unseal
from credential.passport import decode_bytes, present
from tests.factory import City, presentation
from tests.wallet_cli.conftest import PASSPHRASE, example_claims, make_city, today
from verifier.policy import Policy
from wallet_cli import store
from wallet_cli.store import Wallet, audience_for, groups_for, shown_with


def test_public_surface() -> None:
    assert sorted(store.__all__) == store.__all__
    assert "Wallet" in store.__all__


def test_create_seals_the_key_and_keeps_the_public_key_in_clear(wallet_home: Path) -> None:
    doc = json.loads((wallet_home / "wallet.json").read_text("utf-8"))
    public = unb64url(doc["public_key"], length=32)
    seed = unseal(unb64url(doc["sealed_key"]), PASSPHRASE)
    assert bytes(signing_key(seed).verify_key) == public
    assert seed not in (wallet_home / "wallet.json").read_bytes()
    assert stat.S_IMODE(os.stat(wallet_home / "wallet.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(wallet_home).st_mode) & 0o077 == 0


def test_create_refuses_an_empty_passphrase(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        Wallet.create(tmp_path / "w", "")
    assert err.value.code == "wallet_passphrase_empty"
    assert not (tmp_path / "w" / "wallet.json").exists()


def test_create_refuses_an_existing_wallet(wallet_home: Path) -> None:
    before = (wallet_home / "wallet.json").read_bytes()
    with pytest.raises(StoreError) as err:
        Wallet.create(wallet_home, "another passphrase")
    assert err.value.code == "wallet_exists"
    assert (wallet_home / "wallet.json").read_bytes() == before


def test_wrong_passphrase_is_refused(wallet: Wallet) -> None:
    with pytest.raises(StoreError) as err:
        wallet.holder_key("not the passphrase")
    assert err.value.code == "wallet_passphrase_wrong"


def test_a_hand_edited_public_key_is_detected(wallet_home: Path) -> None:
    path = wallet_home / "wallet.json"
    doc = json.loads(path.read_text("utf-8"))
    other = Wallet.create(wallet_home.parent / "other", PASSPHRASE)
    theirs = json.loads((other.home / "wallet.json").read_text())
    doc["public_key"] = theirs["public_key"]
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(StoreError) as err:
        Wallet.open(wallet_home)  # its check no longer matches: caught on opening
    assert err.value.code == "wallet_public_key_damaged"
    # edited with its check as well, it still cannot make the wallet sign with another key
    doc["public_key_check"] = theirs["public_key_check"]
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(StoreError) as err:
        Wallet.open(wallet_home).holder_key(PASSPHRASE)
    assert err.value.code == "wallet_key_mismatch"


def test_open_without_a_wallet(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        Wallet.open(tmp_path)
    assert err.value.code == "wallet_not_initialised"


def test_import_stores_by_id_and_is_idempotent(wallet: Wallet, mexicali: City) -> None:
    text = mexicali.issue_text(wallet.public_key, example_claims("mexicali"))
    first = wallet.import_text(text)
    again = wallet.import_text(text)
    assert (first.outcome, again.outcome) == ("imported", "unchanged")
    assert first.id == again.id
    assert wallet.ids() == [first.id]
    assert (wallet.credentials_dir / f"{first.id}.cbor").read_bytes() == transport.unpack(text)


def test_reissue_under_the_same_id_replaces(wallet: Wallet, mexicali: City) -> None:
    """Only when the city's trusted bundle vouches for it: without one, a file copying the
    city's code and key id would replace the passport just as well."""
    first = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    wallet.import_text(transport.pack(first.to_cbor()))
    renewed = mexicali.issue_for(wallet.public_key,
                             example_claims("mexicali", valid_until="2030-01-01"), cti=first.cti)
    with pytest.raises(StoreError) as err:
        wallet.import_text(transport.pack(renewed.to_cbor()))
    assert err.value.code == "wallet_import_unverified_reissue"
    wallet.trust([mexicali.bundle()], [mexicali.root.to_json().encode()])
    result = wallet.import_text(transport.pack(renewed.to_cbor()))
    assert (result.id, result.outcome) == (first.credential_id, "replaced")
    [entry], _ = wallet.entries()
    assert entry.valid_until.isoformat() == "2030-01-01"


def test_import_refuses_a_credential_for_another_wallet(wallet: Wallet, mexicali: City,
                                                       tmp_path: Path) -> None:
    other = Wallet.create(tmp_path / "other", PASSPHRASE)
    text = mexicali.issue_text(other.public_key, example_claims("mexicali"))
    with pytest.raises(StoreError) as err:
        wallet.import_text(text)
    assert err.value.code == "wallet_import_other_holder"
    assert "another wallet" in err.value.message["en"]
    assert "otra cartera" in err.value.message["es"]
    assert wallet.ids() == []


def test_import_refuses_a_paper_credential(wallet: Wallet, calexico: City) -> None:
    with pytest.raises(MalformedInput) as err:
        wallet.import_text(calexico.issue_text(None, example_claims("calexico")))
    assert err.value.code == "wallet_import_paper"


def test_import_refuses_a_presentation(wallet: Wallet, mexicali: City) -> None:
    issued = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    shown = present(issued.cose, issued.disclosures, groups=["residence"],
                    holder=wallet.holder_key(PASSPHRASE), audience="library", now=int(time.time()))
    with pytest.raises(MalformedInput) as err:
        wallet.import_text(transport.pack(shown))
    assert err.value.code == "wallet_import_presentation"


def test_import_refuses_missing_disclosures(wallet: Wallet, mexicali: City) -> None:
    issued = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    short = cbor2.dumps([issued.cose, list(issued.disclosures[:-1])])
    with pytest.raises(MalformedInput) as err:
        wallet.import_text(transport.pack(short))
    assert err.value.code == "wallet_import_incomplete"


def test_import_refuses_altered_data(wallet: Wallet, mexicali: City) -> None:
    issued = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    salt, key, value = cbor2.loads(issued.disclosures[2])  # transit: [fare category]
    altered = list(issued.disclosures)
    altered[2] = cbor2.dumps([salt, key, [0]])
    assert value != [0]
    with pytest.raises(MalformedInput) as err:
        wallet.import_text(transport.pack(cbor2.dumps([issued.cose, altered])))
    assert err.value.code == "wallet_import_digest_mismatch"


def test_import_refuses_text_that_is_no_passport(wallet: Wallet) -> None:
    with pytest.raises(MalformedInput) as err:
        wallet.import_text("HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH")
    assert err.value.code == "wallet_import_not_passport"


def test_status_by_the_local_clock(wallet: Wallet, mexicali: City) -> None:
    t, year = today(), timedelta(days=365)  # not t.replace(year=…): it fails on 29 February
    for valid_from, valid_until in ((t - 3 * year, t - year), (t + year, t + 2 * year),
                                    (t - year, t + year)):
        wallet.import_text(mexicali.issue_text(wallet.public_key, example_claims(
            "mexicali", valid_from=valid_from.isoformat(), valid_until=valid_until.isoformat())))
    entries, problems = wallet.entries()
    assert problems == []
    assert [e.status for e in entries] == ["expired", "valid", "not_yet_valid"]
    assert entries[0].valid_until == t - year
    skew = Policy.for_service("library").clock_skew_s  # a counter's default
    assert store.credential_status(1000, 2000, 1000 - skew - 1) == "not_yet_valid"
    assert store.credential_status(1000, 2000, 1000 - skew) == "valid"
    assert store.credential_status(1000, 2000, 2000 + skew - 1) == "valid"
    assert store.credential_status(1000, 2000, 2000 + skew) == "expired"


def test_status_by_the_clock_is_what_a_counter_decides_at_the_edges(mexicali: City) -> None:
    """Minutes after the last day ended (or before the first began) the wallet said "the
    counter will refuse it" while the counter, its clock skew widening both days, accepted."""
    holder = nacl.signing.SigningKey.generate()
    start = date.fromtimestamp(mexicali.now) + timedelta(days=10)  # after the bundle is made
    cred = mexicali.issue_for(bytes(holder.verify_key), example_claims(
        "mexicali", valid_from=start.isoformat(),
        valid_until=(start + timedelta(days=365)).isoformat()))
    p = decode_bytes(cred.to_cbor()).payload
    counter = mexicali.verifier()
    for at in (p.nbf - 400, p.nbf - 200, p.nbf, p.exp - 1, p.exp + 200, p.exp + 400):
        code = presentation(cred, holder, "library", ["residence", "library"], now=at)
        verdict = counter.verify(code, service="library", now=at)
        assert (store.credential_status(p.nbf, p.exp, at) == "valid") == (
            verdict.decision == "accepted"), (at - p.nbf, at - p.exp, verdict.code)


def test_a_passport_signed_outside_its_keys_window_is_said_refused(wallet: Wallet) -> None:
    """Signed by a copy of the office's store after its key was rotated away (the old laptop):
    listed "valid" and presented without a word, while every counter refuses it."""
    city = make_city("Mexicali", "MX", "mx-mxl")
    cred_id = wallet.import_text(city.issue_text(wallet.public_key, example_claims("mexicali"))
                                 ).id
    city.key_valid_until = city.now - 60  # the window the office closed before this signing
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    [entry], _ = wallet.entries()
    assert (entry.id, entry.status) == (cred_id, "key_not_valid_at_issuance")


def test_a_damaged_file_does_not_hide_the_others(wallet: Wallet, mexicali: City) -> None:
    good = wallet.import_text(mexicali.issue_text(wallet.public_key, example_claims("mexicali")))
    (wallet.credentials_dir / "AAAAAAAAAAA.cbor").write_bytes(b"\xa0 not a credential")
    entries, problems = wallet.entries()
    assert [e.id for e in entries] == [good.id]
    assert [p.code for p in problems] == ["wallet_credential_corrupt"]


def test_ids_resolve_by_unique_prefix(wallet: Wallet, mexicali: City) -> None:
    got = wallet.import_text(mexicali.issue_text(wallet.public_key, example_claims("mexicali")))
    assert wallet.resolve_id(got.id[:5]) == got.id
    with pytest.raises(StoreError) as err:
        wallet.resolve_id("../wallet")
    assert err.value.code == "wallet_credential_unknown"
    # Ids are random: import until two start alike (at most one more than the alphabet).
    first = {got.id[0]: got.id}
    while True:
        other = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                       example_claims("mexicali"))).id
        if other[0] in first:
            break
        first[other[0]] = other
    with pytest.raises(UsageError) as ambiguous:
        wallet.resolve_id(other[0])
    assert ambiguous.value.code == "wallet_credential_ambiguous"
    message = ambiguous.value.message
    assert first[other[0]] in message["es"] and other in message["en"]


@pytest.mark.parametrize(("service", "disclose", "want"), [
    ("library", None, ("residence", "library")),
    ("transit", None, ("residence", "transit")),
    ("clinic", None, ("residence", "clinic", "names", "birth_date")),
    ("library", ["names"], ("names",)),
    ("library", ["residence,library", "given_name"], ("residence", "library", "names")),
    ("transit", ["fare_category, city"], ("residence", "transit")),
    ("clinic", ["clinic.eligible", "birth_date"], ("clinic", "birth_date")),
    # as present shows them: Spanish or English labels, any case, accents or none
    ("clinic", ["Residencia", "nombre(s)", "FECHA DE NACIMIENTO", "clinica"],
     ("residence", "clinic", "names", "birth_date")),
    ("library", ["Family names, Derecho a biblioteca"], ("library", "names")),
])
def test_groups_for(service: str, disclose: list[str] | None, want: tuple[str, ...]) -> None:
    assert groups_for(service, disclose) == want


@pytest.mark.parametrize(("service", "disclose", "code"), [
    ("pool", None, "wallet_service_unknown"),
    ("library", ["shoe_size"], "wallet_disclose_unknown"),
    ("library", ["eligible"], "wallet_disclose_ambiguous"),
    ("library", [" , "], "wallet_disclose_empty"),
])
def test_groups_for_refuses(service: str, disclose: list[str] | None, code: str) -> None:
    with pytest.raises(UsageError) as err:
        groups_for(service, disclose)
    assert err.value.code == code
    # the choices a resident reading Spanish is shown are Spanish (the names still listed)
    es, en = err.value.message["es"], err.value.message["en"]
    if code == "wallet_disclose_ambiguous":
        assert "«Derecho a biblioteca» (library.eligible)" in es, es
        assert "“Library eligible” (library.eligible)" in en, en
    elif code != "wallet_service_unknown":
        assert "Residencia, Biblioteca, Transporte" in es and "birth_date" in es, es
        assert "Residence, Library, Transit" in en and "Residencia" not in en, en


@pytest.mark.parametrize(("service", "disclose", "what"), [
    (os.fsdecode(b"cl\xednica"), None, "--for"),
    ("library", [os.fsdecode(b"Direcci\xf3n")], "--disclose"),
])
def test_a_name_typed_on_a_latin1_terminal_is_named_as_such(
        service: str, disclose: list[str] | None, what: str) -> None:
    """"Unknown service: cl\\udcednica", listing Clínica as a service there is: a wrong cause."""
    with pytest.raises(UsageError) as err:
        groups_for(service, disclose)
    assert err.value.code == "text_not_utf8" and what in err.value.message["en"]


def test_a_claim_named_that_brings_others_is_said() -> None:
    assert shown_with(["given_name", "residence", "Ciudad de residencia", "birth_date",
                       "library.system"]) == [("given_name", "names"),
                                              ("Ciudad de residencia", "residence"),
                                              ("library.system", "library")]


def test_unknown_claim_lists_the_valid_names() -> None:
    with pytest.raises(UsageError) as err:
        groups_for("library", ["shoe_size"])
    for name in ("residence", "library", "given_name", "library.eligible", "network"):
        assert name in err.value.message["en"]


def test_audience() -> None:
    assert audience_for("library") == "library"
    assert audience_for("library", "desk-3") == "library:desk-3"
    # as typed: counters of every release compare it so; 64 characters, accents or not
    assert audience_for("clinic", "mesa 3") == "clinic:mesa 3"
    assert audience_for("clinic", "é" * 57) == "clinic:" + "é" * 57
    for bad in ("", "x" * 60, "a\nb"):
        with pytest.raises(UsageError) as err:
            audience_for("library", bad)
        assert err.value.code == "wallet_audience_invalid"
    with pytest.raises(UsageError) as err:
        audience_for("library", "\x1b[31mred")
    assert "\x1b" not in err.value.message["es"] + err.value.message["en"]
    assert "\\x1b[31mred" in err.value.message["en"]  # shown escaped, not acted on


@pytest.mark.parametrize("content", [b"", b"\xff\xfe", b"[" * 30_000 + b"]" * 30_000, b"[]"])
def test_a_damaged_wallet_file_is_a_typed_error(wallet_home: Path, content: bytes) -> None:
    assert Wallet.open(wallet_home)  # the fixture's wallet, whole
    (wallet_home / store.WALLET_FILE).write_bytes(content)
    with pytest.raises(StoreError) as raised:
        Wallet.open(wallet_home)
    assert raised.value.code == "wallet_unreadable"


def test_same_id_under_another_office_key_needs_the_citys_bundle(wallet: Wallet,
                                                                  mexicali: City) -> None:
    """Same city code, another key: a new office key after a rotation, or anyone who named
    their office after the city. Only the city's trusted bundle can tell them apart."""
    first = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    wallet.import_text(transport.pack(first.to_cbor()))
    rotated = dataclasses.replace(mexicali, office_key=nacl.signing.SigningKey.generate())
    again = rotated.issue_for(wallet.public_key,
                              example_claims("mexicali", valid_until="2031-01-01"), cti=first.cti)
    with pytest.raises(StoreError) as err:
        wallet.import_text(transport.pack(again.to_cbor()))
    assert err.value.code == "wallet_import_unverified_reissue"
    assert "wallet trust" in err.value.message["en"] and "wallet trust" in err.value.message["es"]
    # still the first one, to its last day ("not 2031-01-01" would fail when run on 2030-01-01)
    [entry], _ = wallet.entries()
    assert entry.valid_until == date.fromisoformat(example_claims("mexicali")["valid_until"])
    wallet.trust([rotated.bundle()], [rotated.root.to_json().encode()])
    result = wallet.import_text(transport.pack(again.to_cbor()))
    assert (result.id, result.outcome) == (first.credential_id, "replaced")
    [entry], _ = wallet.entries()
    assert entry.valid_until == date(2031, 1, 1)


def test_a_wallet_file_cut_short_is_named_damaged_not_another_file(wallet_home: Path) -> None:
    """A disk that filled, a copy interrupted: the file still names itself a wallet, and
    "not a pasaporte wallet file" sent the resident looking for another one, not a backup."""
    path = wallet_home / store.WALLET_FILE
    path.write_bytes(path.read_bytes()[:120])
    with pytest.raises(StoreError) as raised:
        Wallet.open(wallet_home)
    assert raised.value.code == "wallet_unreadable"
    assert "restore it from a backup" in raised.value.message["en"]
    assert "restáurelo de una copia" in raised.value.message["es"]


def test_a_counter_id_typed_on_a_latin1_terminal_is_named_as_such() -> None:
    """``present --audience``: as ``verify --counter`` says it, not "not printable text"."""
    with pytest.raises(UsageError) as err:
        audience_for("library", os.fsdecode(b"Cl\xednica"))
    assert err.value.code == "text_not_utf8" and "--audience" in err.value.message["en"]
    assert audience_for("library", "Clínica") == "library:Clínica"
