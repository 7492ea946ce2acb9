"""What a resident meets at home, or the relative or library volunteer helping them: a forgotten
or mistyped passphrase, the office's QR image instead of a text file, a paper passport, a
passport that the counter will refuse, a wrong clock, a service or claim named wrongly, a QR
that does not fit the terminal, two wallets on one computer, a USB stick pulled mid-write.
Each works, or ends in one bilingual message with its code that says what to do."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
from datetime import timedelta
from pathlib import Path

import nacl.signing
import pytest
from PIL import Image

from credential import qr, transport
from credential.errors import MalformedInput, StoreError, UsageError
from credential.keys import b64url, seal, signing_key
from tests.factory import City, presentation
from tests.wallet_cli.conftest import PASSPHRASE, Run, example_claims, make_city, today
from wallet_cli import store
from wallet_cli.store import Wallet

REPO = Path(__file__).resolve().parents[2]


def _issued(wallet: Wallet, city: City, name: str = "mexicali") -> str:
    """A passport for this wallet's key, stored in it; its id."""
    return wallet.import_text(city.issue_text(wallet.public_key, example_claims(name))).id


# -- the passphrase ---------------------------------------------------------------------------

def test_a_forgotten_passphrase_says_what_is_lost_and_how_to_start_again(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wallet = Wallet.open(wallet_home)
    cred_id = _issued(wallet, mexicali)
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "no me acuerdo")
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert isinstance(result.exception, StoreError)  # exit 1 through the console script
    assert result.exception.code == "wallet_passphrase_wrong" and result.stdout == ""
    es, en = result.exception.message["es"], result.exception.message["en"]
    assert str(wallet_home) in es and str(wallet_home) in en
    assert "distribución del teclado" in es and "keyboard layout" in en
    assert "Bloq Mayús no es la causa" in es and "Caps Lock is not the cause" in en
    assert "nadie puede recuperarla" in es and "nobody can recover it" in en
    assert "pasaporte wallet init" in es and "pasaporte wallet init" in en
    assert "emitir sus pasaportes de nuevo" in es and "issue your passports again" in en
    assert "pasaporte wallet list" in es and "nothing is deleted" in en
    # What it says to do works: the old folder set aside, a new wallet, the office re-issues.
    wallet_home.rename(tmp_path / "cartera-vieja")
    listed = run("wallet", "list", "--json", "--home", tmp_path / "cartera-vieja")
    assert listed.exit_code == 0 and [e["id"] for e in json.loads(listed.stdout)] == [cred_id]
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "una frase nueva")
    init = run("wallet", "init", "--home", wallet_home)
    assert init.exit_code == 0, init.stderr
    new = Wallet.open(wallet_home)
    assert b64url(new.public_key) == init.stdout.strip()
    again = _issued(new, mexicali)
    shown = run("wallet", "present", again, "--for", "library", "--home", wallet_home)
    assert shown.exit_code == 0, shown.stderr
    assert mexicali.verifier().verify(shown.stdout.strip(), service="library").accepted
    assert Wallet.open(tmp_path / "cartera-vieja").ids() == [cred_id]  # nothing deleted


def test_caps_lock_is_forgiven_and_said(run: Run, wallet_home: Path, mexicali: City,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE.swapcase())  # CORRECT HORSE …
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert "[wallet_passphrase_caps_lock]" in result.stderr and "Bloq Mayús" in result.stderr
    assert mexicali.verifier().verify(result.stdout.strip(), service="library").accepted
    assert Wallet.open(wallet_home).unlock(PASSPHRASE.swapcase())[1] == "caps_lock"
    # A different passphrase is no case of caps lock.
    with pytest.raises(StoreError) as err:
        Wallet.open(wallet_home).unlock(PASSPHRASE.title())
    assert err.value.code == "wallet_passphrase_wrong"


@pytest.mark.parametrize("typed", [PASSPHRASE + " ", PASSPHRASE + "\r\n", " " + PASSPHRASE,
                                   PASSPHRASE + "\t"],
                         ids=["space", "crlf", "leading", "tab"])
def test_blanks_around_a_pasted_passphrase_are_not_part_of_it(
        run: Run, wallet_home: Path, mexicali: City, monkeypatch: pytest.MonkeyPatch,
        typed: str) -> None:
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", typed)
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert "wallet_passphrase" not in result.stderr  # nothing to warn of
    # typed at the prompt, as a password manager pastes it
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    prompted = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home,
                   input=typed.rstrip("\r\n") + "\n")
    assert prompted.exit_code == 0, prompted.stderr


def test_a_passphrase_chosen_with_blanks_is_kept_without_them(run: Run, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    home = tmp_path / "w"
    made = run("wallet", "init", "--home", home, input="mi frase larga \nmi frase larga \n")
    assert made.exit_code == 0, made.stderr
    assert Wallet.open(home).unlock("mi frase larga")[1] == "exact"
    # Blanks do not count towards the 8 characters a new passphrase needs.
    short = run("wallet", "init", "--home", tmp_path / "s", input="corta    \ncorta    \n")
    assert isinstance(short.exception, UsageError) and short.exception.code == "passphrase_short"
    assert not (tmp_path / "s" / store.WALLET_FILE).exists()


def test_a_wallet_sealed_under_blanks_before_still_opens(tmp_path: Path) -> None:
    """A wallet made before blanks were dropped: the passphrase as typed is tried first."""
    home = tmp_path / "old"
    home.mkdir()
    seed = os.urandom(32)
    doc = {"type": store.WALLET_TYPE, "public_key": b64url(bytes(signing_key(seed).verify_key)),
           "sealed_key": b64url(seal(seed, "frase antigua "))}
    (home / store.WALLET_FILE).write_text(json.dumps(doc), "utf-8")
    assert Wallet.open(home).unlock("frase antigua ")[1] == "exact"


def test_accented_letters_typed_composed_or_not_are_one_passphrase(tmp_path: Path) -> None:
    """One keyboard types "ñ" as one character, another as "n" and a combining tilde: the
    same passphrase to the resident. A new wallet keeps the composed form; one sealed under
    either form (before) opens with the other too."""
    composed, decomposed = "Señal-Ámbar9", unicodedata.normalize("NFD", "Señal-Ámbar9")
    assert composed != decomposed
    made = Wallet.create(tmp_path / "new", decomposed)
    assert made.unlock(composed)[1] == "exact" and made.unlock(decomposed)[1] == "exact"
    assert made.unlock(decomposed.swapcase())[1] == "caps_lock"  # either form, caps lock on
    seed = os.urandom(32)
    (tmp_path / "old").mkdir()
    doc = {"type": store.WALLET_TYPE, "public_key": b64url(bytes(signing_key(seed).verify_key)),
           "sealed_key": b64url(seal(seed, decomposed))}  # as a wallet made before kept it
    (tmp_path / "old" / store.WALLET_FILE).write_text(json.dumps(doc), "utf-8")
    old = Wallet.open(tmp_path / "old")
    assert old.unlock(composed)[1] == "exact" and old.unlock(decomposed)[1] == "exact"
    with pytest.raises(StoreError) as caught:
        old.unlock("Senal-Ambar9")  # no accents at all is another passphrase
    assert caught.value.code == "wallet_passphrase_wrong"


def test_an_empty_passphrase_variable_is_named(run: Run, wallet_home: Path, mexicali: City,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "")
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home,
                 input="")
    assert isinstance(result.exception, UsageError)  # exit 2
    assert result.exception.code == "passphrase_env_empty" and result.stdout == ""
    assert "PASAPORTE_PASSPHRASE" in result.exception.message["es"]
    assert "set but empty" in result.exception.message["en"]
    # Empty, it is as if unset: a passphrase given on standard input still serves.
    piped = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home,
                input=PASSPHRASE + "\n")
    assert piped.exit_code == 0, piped.stderr
    init = run("wallet", "init", "--home", wallet_home.parent / "w2", input="")
    assert isinstance(init.exception, UsageError)
    assert init.exception.code == "passphrase_env_empty"


# -- importing ----------------------------------------------------------------------------------

def test_the_offices_qr_image_imports(run: Run, wallet_home: Path, mexicali: City,
                                      tmp_path: Path) -> None:
    """``issuer issue --qr`` hands out a PNG: the wallet takes it as it takes the text, and a
    photo of it (JPEG) too. The same passport imported again changes nothing."""
    wallet = Wallet.open(wallet_home)
    text = mexicali.issue_text(wallet.public_key, example_claims("mexicali"))
    png = tmp_path / "maria.png"
    png.write_bytes(qr.render_png(text))
    result = run("wallet", "import", png, "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    cred_id = result.stdout.strip()
    assert wallet.ids() == [cred_id] and "Importado / Imported" in result.stderr
    stored = (wallet.credentials_dir / f"{cred_id}.cbor").read_bytes()
    assert stored == transport.unpack(text)

    photo = tmp_path / "foto.jpg"
    buffer = io.BytesIO()
    Image.open(png).convert("L").resize((1200, 1200), Image.Resampling.NEAREST).save(
        buffer, format="JPEG", quality=90)
    photo.write_bytes(buffer.getvalue())
    for again in (photo, png):
        same = run("wallet", "import", again, "--home", wallet_home)
        assert same.exit_code == 0 and same.stdout.strip() == cred_id, same.stderr
        assert "Ya estaba / Already in the wallet" in same.stderr
    (tmp_path / "maria.pu1").write_text(text, "utf-8")
    twice = run("wallet", "import", tmp_path / "maria.pu1", "--home", wallet_home)
    assert twice.exit_code == 0 and "Ya estaba" in twice.stderr
    assert (wallet.credentials_dir / f"{cred_id}.cbor").read_bytes() == stored
    assert wallet.ids() == [cred_id]


def test_an_image_that_is_no_passport(run: Run, wallet_home: Path, mexicali: City,
                                      tmp_path: Path) -> None:
    wallet = Wallet.open(wallet_home)
    blank = tmp_path / "blanco.png"
    Image.new("L", (200, 200), 255).save(blank, format="PNG")
    result = run("wallet", "import", blank, "--home", wallet_home)
    assert isinstance(result.exception, MalformedInput)
    assert result.exception.code == "qr_not_found" and result.stdout == ""
    # A presentation's QR (what ``present --qr`` writes) is not the passport.
    cred_id = _issued(wallet, mexicali)
    shown = tmp_path / "codigo.png"
    assert run("wallet", "present", cred_id, "--for", "library", "--qr", shown,
               "--home", wallet_home).exit_code == 0
    result = run("wallet", "import", shown, "--home", wallet_home)
    assert isinstance(result.exception, MalformedInput)
    assert result.exception.code == "wallet_import_presentation"
    # An image far too large is refused after a bounded read (sparse: takes no disk).
    huge = tmp_path / "enorme.png"
    with huge.open("wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.truncate(qr.MAX_FILE_BYTES * 50)
    result = run("wallet", "import", huge, "--home", wallet_home)
    assert isinstance(result.exception, MalformedInput)
    assert result.exception.code == "image_too_large"
    # A PDF (an e-mailed document): said to be one, and what to take out of it.
    pdf = tmp_path / "pasaporte.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    result = run("wallet", "import", pdf, "--home", wallet_home)
    assert isinstance(result.exception, MalformedInput)
    assert result.exception.code == "wallet_import_unreadable"
    assert "documento PDF" in result.exception.message["es"]
    assert "PDF document" in result.exception.message["en"]
    # A photo the wallet does not read (a phone's HEIC, a WebP from a messenger): said as such,
    # not as a passport "too large" (it was taken for text, and photos are large).
    for fmt in ("WEBP", "GIF", "BMP"):
        photo = tmp_path / f"foto.{fmt.lower()}"
        Image.open(shown).convert("RGB").resize((1500, 1500)).save(photo, format=fmt)
        result = run("wallet", "import", photo, "--home", wallet_home)
        assert isinstance(result.exception, MalformedInput), fmt
        assert result.exception.code == "wallet_import_unreadable", (fmt, result.exception)
        assert "PNG o JPEG" in result.exception.message["es"] and "HEIC" in (
            result.exception.message["en"])
    heic = tmp_path / "IMG_0001.HEIC"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00" + bytes(70_000))
    result = run("wallet", "import", heic, "--home", wallet_home)
    assert getattr(result.exception, "code", None) == "wallet_import_unreadable"
    assert wallet.ids() == [cred_id]


def test_a_paper_passport_is_not_imported_and_says_why(run: Run, wallet_home: Path,
                                                       mexicali: City, tmp_path: Path) -> None:
    paper = mexicali.issue_text(None, example_claims("mexicali"))
    for name, data in (("papel.pu1", paper.encode()), ("papel.png", qr.render_png(paper))):
        (tmp_path / name).write_bytes(data)
        result = run("wallet", "import", tmp_path / name, "--home", wallet_home)
        assert isinstance(result.exception, MalformedInput), name
        assert result.exception.code == "wallet_import_paper" and result.stdout == ""
        assert "pasaporte wallet key" in result.exception.message["es"]
        assert "Show it on paper" in result.exception.message["en"]
    assert Wallet.open(wallet_home).ids() == []


def test_two_wallets_on_one_computer(run: Run, tmp_path: Path, mexicali: City,
                                     calexico: City) -> None:
    """Two residents, one computer, a ``--home`` each: each wallet takes only its own passport,
    and the refusal says where the other one goes."""
    homes = {"ana": tmp_path / "Mis documentos" / "cartera de Ana",
             "josé": tmp_path / "Mis documentos" / "cartera de José"}
    keys = {}
    for who, home in homes.items():
        init = run("wallet", "init", "--home", home)
        assert init.exit_code == 0, init.stderr
        keys[who] = Wallet.open(home).public_key
    files = {}
    for who, city in (("ana", mexicali), ("josé", calexico)):
        files[who] = tmp_path / f"{who}.pu1"
        files[who].write_text(city.issue_text(keys[who], example_claims(city.city.lower())),
                              "utf-8")
    wrong = run("wallet", "import", files["josé"], "--home", homes["ana"])
    assert isinstance(wrong.exception, StoreError)
    assert wrong.exception.code == "wallet_import_other_holder"
    assert "--home" in wrong.exception.message["es"] and "--home" in wrong.exception.message["en"]
    ids = {}
    for who in homes:
        done = run("wallet", "import", files[who], "--home", homes[who])
        assert done.exit_code == 0, done.stderr
        ids[who] = done.stdout.strip()
    for who, home in homes.items():
        listed = json.loads(run("wallet", "list", "--json", "--home", home).stdout)
        assert [e["id"] for e in listed] == [ids[who]]
    other = run("wallet", "present", ids["josé"], "--for", "library", "--home", homes["ana"])
    assert isinstance(other.exception, StoreError)
    assert other.exception.code == "wallet_credential_unknown"
    assert ids["ana"] in other.exception.message["en"]  # what this wallet does hold


# -- before walking to the counter ------------------------------------------------------------

@pytest.mark.parametrize("mark", ["revocation", "suspension"])
def test_a_revoked_or_suspended_passport_warns_before_the_counter(
        run: Run, wallet_home: Path, tmp_path: Path, mark: str) -> None:
    city = make_city("Mexicali", "MX", "mx-mxl")
    wallet = Wallet.open(wallet_home)
    cred_id = _issued(wallet, city)
    getattr(city, mark).set(city.next_index, True)
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    assert run("wallet", "trust", "--bundle", tmp_path / "b.cbor", "--trust-root",
               tmp_path / "r.json", "--home", wallet_home).exit_code == 0
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0 and result.stdout.startswith("PU1:")  # the counter decides
    state = {"revocation": ("revocado", "revoked"), "suspension": ("suspendido", "suspended")}
    es, en = state[mark]
    assert "[wallet_present_not_valid]" in result.stderr
    assert f"({es})" in result.stderr and f"({en})" in result.stderr
    assert "Pregunte a la oficina" in result.stderr and "Ask the office" in result.stderr
    # a suspension is not told it is lost for good; a revocation is not told it may be lifted
    assert ("suspensión se puede levantar" in result.stderr) == (mark == "suspension")
    verdict = city.verifier().verify(result.stdout.strip(), service="library")
    assert verdict.code == ("revoked" if mark == "revocation" else "suspended")


def test_a_passport_revoked_before_its_first_day_is_revoked_not_waited_for(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """An early renewal the office revoked before it started: the wallet said "not valid yet,
    you need no new one, show it from that date on", and every counter refuses it then."""
    city = make_city("Mexicali", "MX", "mx-mxl")
    wallet = Wallet.open(wallet_home)
    start = today() + timedelta(days=40)
    cred_id = wallet.import_text(city.issue_text(wallet.public_key, example_claims(
        "mexicali", valid_from=start.isoformat(),
        valid_until=(start + timedelta(days=365)).isoformat()))).id
    city.revocation.set(city.next_index, True)
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    assert run("wallet", "trust", "--bundle", tmp_path / "b.cbor", "--trust-root",
               tmp_path / "r.json", "--home", wallet_home).exit_code == 0
    assert [e.status for e in Wallet.open(wallet_home).entries()[0]] == ["revoked"]
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert "[wallet_present_not_valid]" in result.stderr and "(revoked)" in result.stderr
    assert "[wallet_present_not_yet_valid]" not in result.stderr
    # neither the clock (right) nor a suspension (there is none) is the resident's way forward
    assert "reloj" not in result.stderr and "hora" not in result.stderr
    assert "clock" not in result.stderr and "suspension" not in result.stderr
    assert "Ask the office that issued it why, or for a new one" in result.stderr


def test_importing_a_passport_the_city_revoked_says_so(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """The old file of a renewal, from an e-mail: "Imported" alone, though the trusted bundle
    already said every counter refuses it."""
    city = make_city("Mexicali", "MX", "mx-mxl")
    wallet = Wallet.open(wallet_home)
    (tmp_path / "old.cred").write_text(city.issue_text(wallet.public_key,
                                                       example_claims("mexicali")))
    city.revocation.set(city.next_index, True)
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    assert run("wallet", "trust", "--bundle", tmp_path / "b.cbor", "--trust-root",
               tmp_path / "r.json", "--home", wallet_home).exit_code == 0
    result = run("wallet", "import", tmp_path / "old.cred", "--home", wallet_home)
    assert result.exit_code == 0, result.output
    assert "[wallet_import_not_valid]" in result.stderr and "(revocado)" in result.stderr
    assert "(revoked)" in result.stderr and "import that one" in result.stderr


def test_a_revoked_passport_names_the_renewal_the_wallet_holds(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """The renewal revoked the old passport, and both are in the wallet: presenting the old
    one said "ask the office for a new one", for a passport the resident already held."""
    city = make_city("Mexicali", "MX", "mx-mxl")
    wallet = Wallet.open(wallet_home)
    old_id = _issued(wallet, city)
    old_index = city.next_index
    new_id = _issued(wallet, city)
    city.revocation.set(old_index, True)
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    assert run("wallet", "trust", "--bundle", tmp_path / "b.cbor", "--trust-root",
               tmp_path / "r.json", "--home", wallet_home).exit_code == 0
    result = run("wallet", "present", old_id, "--for", "library", "--home", wallet_home)
    assert "[wallet_present_not_valid]" in result.stderr
    assert "[wallet_present_other_valid]" in result.stderr, result.stderr
    assert f"wallet present {new_id} --for library" in result.stderr
    shown = run("wallet", "present", new_id, "--for", "library", "--home", wallet_home)
    assert "[wallet_present_other_valid]" not in shown.stderr  # valid: nothing to point at


def test_an_expired_passport_warning_shows_the_computers_clock(
        run: Run, wallet_home: Path, mexicali: City) -> None:
    """Years ahead, the computer calls a good passport expired: the warning shows the date it
    goes by, so whoever helps can see the clock is what is wrong."""
    wallet = Wallet.open(wallet_home)
    old = example_claims("mexicali", valid_from="2020-01-01", valid_until="2021-01-01")
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key, old)).id
    before = time.strftime("%Y-%m-%d", time.gmtime())
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    # the command reads the clock between these two: midnight may have passed in between
    days = {before, time.strftime("%Y-%m-%d", time.gmtime())}
    assert "[wallet_present_not_valid]" in result.stderr
    assert any(f"marca {d}" in result.stderr and f"says {d}" in result.stderr for d in days)


def test_the_computers_clock_is_shown_in_its_own_zone(
        run: Run, wallet_home: Path, mexicali: City, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shown in UTC, a Tijuana evening read as the next day, beside a first day that is a day
    in the office's zone: "check this computer's date" for a clock that was right."""
    wallet = Wallet.open(wallet_home)
    start = today() + timedelta(days=40)
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key, example_claims(
        "mexicali", valid_from=start.isoformat(),
        valid_until=(start + timedelta(days=365)).isoformat()))).id
    monkeypatch.setenv("TZ", "America/Tijuana")
    time.tzset()
    try:
        result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    finally:
        monkeypatch.undo()
        time.tzset()
    said = result.stderr.partition("[wallet_present_not_yet_valid]")[2]
    assert said and " UTC" not in said
    assert " PST" in said or " PDT" in said, said


def test_a_passport_not_yet_valid_says_from_when_and_needs_no_new_one(
        run: Run, wallet_home: Path, mexicali: City) -> None:
    """It was told "not currently valid … ask for a new one": a passport that starts later
    needs none, only the date it starts (as the counter's own refusal gives it)."""
    wallet = Wallet.open(wallet_home)
    start = today() + timedelta(days=40)
    later = example_claims("mexicali", valid_from=start.isoformat(),
                           valid_until=(start + timedelta(days=365)).isoformat())
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key, later)).id
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0 and result.stdout.startswith("PU1:"), result.output
    assert "[wallet_present_not_yet_valid]" in result.stderr
    assert "[wallet_present_not_valid]" not in result.stderr
    assert f"desde el {start.isoformat()}" in result.stderr
    assert f"valid from {start.isoformat()}" in result.stderr
    assert "No necesita uno nuevo" in result.stderr and "You need no new one" in result.stderr
    assert "pida uno nuevo" not in result.stderr and "for a new one" not in result.stderr
    verdict = mexicali.verifier().verify(result.stdout.strip(), service="library")
    assert verdict.code == "not_yet_valid"


def test_a_clock_days_behind_is_caught(run: Run, wallet_home: Path) -> None:
    """The passport was signed two days from now by this computer's clock: one of the two
    clocks is wrong, and without a bundle the wallet cannot tell which (counters do not hold
    a passport's signing to their clock): the resident hears so first, and to compare with a
    clock they trust. Behind the trusted bundle's making by more than a day, the counter will
    refuse the code whichever clock is wrong, and the resident hears that."""
    city = City(city="Mexicali", country="MX", code="mx-mxl", now=int(time.time()) + 2 * 86400,
                catalogued=False)
    wallet = Wallet.open(wallet_home)
    cred_id = _issued(wallet, city)
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert "[wallet_clock_differs]" in result.stderr
    assert "[wallet_clock_behind]" not in result.stderr
    assert "Compare la hora de esta computadora" in result.stderr
    assert "Compare this computer's time" in result.stderr
    # (this clock is the wrong one here: a counter with the right one refuses the code as old)
    assert not city.verifier().verify(result.stdout.strip(), service="library",
                                      now=city.now).accepted
    # by the store: the trusted bundle's making is a time that has passed too
    now = int(time.time())
    later = make_city("Mexicali", "MX", "mx-mxl")
    behind = Wallet.open(wallet_home)
    behind.trust([later.bundle(made_at=now + 86400 * 400)], [later.root.to_json().encode()])
    cred = _issued(behind, later)
    shown = behind.present(cred, service="library", passphrase=PASSPHRASE, now=now)
    assert shown.clock_behind == now + 86400 * 400
    on_time = behind.present(cred, service="library", passphrase=PASSPHRASE,
                             now=now + 86400 * 400)
    assert on_time.clock_behind is None


def test_a_clock_hours_behind_the_office_blames_neither(run: Run, wallet_home: Path) -> None:
    """The passport was signed five hours from now by this computer's clock: this clock is
    behind, or the office's was ahead (counters take an office's clock up to a day ahead). It
    was told the counter will refuse and to set the clock: a right clock set so makes every
    counter refuse. Both are named, and what follows from each."""
    city = City(city="Mexicali", country="MX", code="mx-mxl", now=int(time.time()) + 5 * 3600,
                catalogued=False)
    wallet = Wallet.open(wallet_home)
    cred_id = _issued(wallet, city)
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert "[wallet_clock_differs]" in result.stderr
    assert "[wallet_clock_behind]" not in result.stderr
    assert "o el de la oficina estaba adelantado" in result.stderr
    assert "or the office's clock was ahead" in result.stderr
    assert "Si es correcta, no la cambie" in result.stderr
    assert "If it is right, do not change it" in result.stderr
    code = result.stdout.strip()
    # this clock right (the office's ahead): a counter with the right time accepts the code
    assert city.verifier().verify(code, service="library").accepted
    # this clock behind (the office's right): a counter with the right time finds it old
    assert city.verifier().verify(code, service="library", now=city.now).code == (
        "presentation_stale")


def test_a_code_is_signed_when_it_is_made_not_when_present_started(
        wallet_home: Path, mexicali: City, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two minutes looking up the passphrase in a queue: the code's time is after the unlock,
    so it has the counter's whole freshness window (it was refused as a screenshot)."""
    from credential.passport import decode_text

    wallet = Wallet.open(wallet_home)
    cred_id = _issued(wallet, mexicali)
    clock = [time.time()]
    monkeypatch.setattr("wallet_cli.store.time.time", lambda: clock[0])

    def typed_slowly() -> str:
        clock[0] += 125
        return PASSPHRASE

    shown = wallet.present(cred_id, service="library", passphrase=typed_slowly)
    kb = decode_text(shown.text).kb
    assert kb is not None and kb.iat == int(clock[0])
    assert mexicali.verifier().verify(shown.text, service="library", now=int(clock[0]) + 60
                                      ).accepted


def test_services_by_their_spanish_or_english_names(run: Run, wallet_home: Path,
                                                    mexicali: City) -> None:
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    verifier = mexicali.verifier()
    for typed, service in (("Biblioteca", "library"), ("clínica", "clinic"),
                           ("CLINICA", "clinic"), ("Transporte", "transit"),
                           (" Library ", "library")):
        result = run("wallet", "present", cred_id, "--for", typed, "--home", wallet_home)
        assert result.exit_code == 0, (typed, result.stderr)
        assert verifier.verify(result.stdout.strip(), service=service).accepted, typed
    unknown = run("wallet", "present", cred_id, "--for", "alberca", "--home", wallet_home)
    assert isinstance(unknown.exception, UsageError)
    assert unknown.exception.code == "wallet_service_unknown" and unknown.stdout == ""
    assert "Biblioteca (library), Transporte (transit), Clínica (clinic)" in (
        unknown.exception.message["es"])
    assert "library (Library), transit (Transit), clinic (Clinic)" in (
        unknown.exception.message["en"])


def test_an_unknown_claim_lists_the_valid_names_in_both_languages(
        run: Run, wallet_home: Path, mexicali: City) -> None:
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    result = run("wallet", "present", cred_id, "--for", "clinic", "--disclose", "curp",
                 "--home", wallet_home)
    assert isinstance(result.exception, UsageError)
    assert result.exception.code == "wallet_disclose_unknown" and result.stdout == ""
    es, en = result.exception.message["es"], result.exception.message["en"]
    assert "«curp»" in es and "“curp”" in en
    for name in ("names", "birth_date", "residence", "clinic", "given_name"):
        assert name in es and name in en


def test_an_id_pasted_with_blanks_around_it(run: Run, wallet_home: Path,
                                            mexicali: City) -> None:
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    result = run("wallet", "present", f" {cred_id}\n", "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0, result.stderr


# -- the QR code --------------------------------------------------------------------------------

def test_a_qr_too_wide_for_the_terminal_is_not_drawn(run: Run, wallet_home: Path,
                                                     mexicali: City,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a library code (version 15, 77 modules and a border) is wider than 80 columns:
    drawn there it would wrap and never scan, so the resident is pointed to ``--qr``."""
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = run("wallet", "present", cred_id, "--for", "library", "--terminal",
                 "--home", wallet_home)
    assert narrow.exit_code == 0, narrow.stderr
    assert narrow.stdout.startswith("PU1:") and len(narrow.stdout.splitlines()) == 1
    assert "[wallet_qr_too_wide]" in narrow.stderr and "--qr" in narrow.stderr
    assert "columns=80" not in narrow.stderr and "terminal 80" in narrow.stderr
    assert "█" not in narrow.stderr
    width = len(qr.render_text(narrow.stdout.strip()).splitlines()[0])
    assert width > 80
    monkeypatch.setenv("COLUMNS", str(width))
    wide = run("wallet", "present", cred_id, "--for", "library", "--terminal",
               "--home", wallet_home)
    assert wide.exit_code == 0 and "█" in wide.stderr and "wallet_qr_too_wide" not in wide.stderr


def test_qr_files_in_awkward_places(run: Run, wallet_home: Path, mexicali: City,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pasaporte.cli import main

    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    # A folder that does not exist yet is made.
    png = tmp_path / "no existe" / "todavía" / "código.png"
    made = run("wallet", "present", cred_id, "--for", "library", "--qr", png,
               "--home", wallet_home)
    assert made.exit_code == 0, made.stderr
    assert mexicali.verifier().verify_image(png.read_bytes(), service="library").accepted
    # A folder given where the file goes: a usage error naming it, in both languages.
    capsys.readouterr()
    code = main(["wallet", "present", cred_id, "--for", "library", "--qr", str(tmp_path),
                 "--home", str(wallet_home)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "[usage_error]" in err and "es una carpeta" in err and "is a directory" in err
    # A file where a folder should be: exit 1, the path named, nothing printed to show.
    (tmp_path / "archivo").write_text("x")
    code = main(["wallet", "present", cred_id, "--for", "library", "--qr",
                 str(tmp_path / "archivo" / "c.png"), "--home", str(wallet_home)])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "[file_error]" in err and "archivo" in err
    # A name without .png
    named = run("wallet", "present", cred_id, "--for", "library", "--qr", tmp_path / "codigo",
                "--home", wallet_home)
    assert isinstance(named.exception, UsageError) and named.exception.code == "qr_not_png"


# -- where the wallet lives ---------------------------------------------------------------------

def test_the_default_home(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "maria"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    made = run("wallet", "init")
    assert made.exit_code == 0, made.stderr
    where = tmp_path / "maria" / ".local" / "share" / "pasaporte" / "wallet"
    assert (where / store.WALLET_FILE).is_file() and str(where) in made.stderr
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "datos"))
    assert run("wallet", "init").exit_code == 0
    assert (tmp_path / "datos" / "pasaporte" / "wallet" / store.WALLET_FILE).is_file()
    # ``~`` in --home is the resident's home, as a shell would have it
    assert run("wallet", "init", "--home", "~/Mi cartera").exit_code == 0
    assert (tmp_path / "maria" / "Mi cartera" / store.WALLET_FILE).is_file()


def _unplugged(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """``pasaporte wallet …`` on a USB stick pulled out while a file is written: from the
    moment a wallet file is flushed, every write, flush and removal there fails with EIO, as
    on a device that is gone."""
    script = (
        "import errno, os, sys\n"
        "from pasaporte.cli import main\n"
        "fsync, unlink, gone = os.fsync, os.unlink, []\n"
        "def eio(*a): raise OSError(errno.EIO, os.strerror(errno.EIO))\n"
        "def flush(fd):\n"
        "    if gone or os.path.basename(os.readlink(f'/proc/self/fd/{fd}')).startswith('.'):\n"
        "        gone.append(1); eio()\n"
        "    return fsync(fd)\n"
        "def remove(path, *a, **k):\n"
        "    return eio() if gone else unlink(path, *a, **k)\n"
        "os.fsync, os.unlink = flush, remove\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PASAPORTE_PASSPHRASE": PASSPHRASE}
    env.pop("PASAPORTE_HOME", None)
    return subprocess.run([sys.executable, "-c", script, "wallet", *args, "--home", str(home)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_usb_stick_pulled_mid_import(run: Run, wallet_home: Path, mexicali: City,
                                       tmp_path: Path) -> None:
    wallet = Wallet.open(wallet_home)
    cred_id = _issued(wallet, mexicali)
    stored = (wallet.credentials_dir / f"{cred_id}.cbor").read_bytes()
    file = tmp_path / "otro.pu1"
    file.write_text(mexicali.issue_text(wallet.public_key, example_claims("calexico")), "utf-8")
    done = _unplugged(["import", str(file)], wallet_home)
    assert done.returncode == 1 and "[file_error]" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert "No se guardó nada a medias" in done.stderr
    # Plugged in again: the half-written file (if any) is left over, never listed or damaged.
    assert wallet.ids() == [cred_id]
    assert (wallet.credentials_dir / f"{cred_id}.cbor").read_bytes() == stored
    listed = run("wallet", "list", "--json", "--home", wallet_home)
    assert listed.exit_code == 0 and listed.stderr == "", listed.output
    again = run("wallet", "import", file, "--home", wallet_home)
    assert again.exit_code == 0 and "Importado / Imported" in again.stderr, again.stderr
    assert len(Wallet.open(wallet_home).ids()) == 2


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_usb_stick_pulled_mid_init(run: Run, tmp_path: Path) -> None:
    home = tmp_path / "usb" / "cartera"
    done = _unplugged(["init"], home)
    assert done.returncode == 1 and "[file_error]" in done.stderr, done.stderr
    assert done.stdout == ""  # no key printed for a wallet that was not written
    assert not (home / store.WALLET_FILE).exists()
    made = run("wallet", "init", "--home", home)
    assert made.exit_code == 0, made.stderr
    assert made.stdout.strip() == b64url(Wallet.open(home).public_key)


def test_a_killed_present_leaves_no_half_qr(wallet_home: Path, mexicali: City,
                                            tmp_path: Path) -> None:
    """The QR image replaces an older one whole, or not at all."""
    cred_id = _issued(Wallet.open(wallet_home), mexicali)
    png = tmp_path / "codigo.png"
    holder = nacl.signing.SigningKey.generate()  # an earlier code, which a new one replaces
    earlier = mexicali.issue_for(bytes(holder.verify_key), example_claims("mexicali"))
    older = qr.render_png(presentation(earlier, holder, "library", ["residence", "library"]))
    png.write_bytes(older)
    script = (
        "import os, signal, sys\n"
        "from pasaporte.cli import main\n"
        "replace = os.replace\n"
        "def dying(src, dst, *a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.replace = dying\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PASAPORTE_PASSPHRASE": PASSPHRASE}
    proc = subprocess.run([sys.executable, "-c", script, "wallet", "present", cred_id, "--for",
                           "library", "--qr", str(png), "--home", str(wallet_home)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert png.read_bytes() == older
