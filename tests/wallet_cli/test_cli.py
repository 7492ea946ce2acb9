"""``pasaporte wallet …`` end to end: what a resident types, checked by a real counter verifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from credential.errors import MalformedInput, PasaporteError, StoreError, UsageError
from tests.factory import City
from tests.wallet_cli.conftest import PASSPHRASE, Run, example_claims
from verifier.policy import Policy
from wallet_cli.store import Wallet

PASAPORTE = Path(sys.executable).with_name("pasaporte")


def _import(run: Run, home: Path, city: City, name: str, tmp_path: Path) -> str:
    """Issue a credential for this wallet's key, write it like ``issuer issue --out``, import."""
    key = run("wallet", "key", "--home", home)
    assert key.exit_code == 0, key.output
    from credential.keys import unb64url

    file = tmp_path / f"{name}.pu1"
    file.write_text(city.issue_text(unb64url(key.stdout.strip(), length=32),
                                    example_claims(name)), "utf-8")
    result = run("wallet", "import", file, "--home", home)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def _claims(result_claims: Sequence[Mapping[str, object]]) -> set[str]:
    return {f"{c['group']}.{c['claim']}" for c in result_claims}


def test_init_prints_the_key_that_key_prints(run: Run, tmp_path: Path) -> None:
    home = tmp_path / "w"
    init = run("wallet", "init", "--home", home)
    assert init.exit_code == 0, init.stderr
    key = run("wallet", "key", "--home", home)
    assert key.stdout == init.stdout
    assert len(key.stdout.strip()) == 43  # base64url of 32 bytes, unpadded
    assert "Wallet created" in init.stderr


def test_init_refuses_to_overwrite(run: Run, wallet_home: Path) -> None:
    before = (wallet_home / "wallet.json").read_bytes()
    result = run("wallet", "init", "--home", wallet_home)
    assert isinstance(result.exception, StoreError)
    assert result.exception.code == "wallet_exists"
    assert "Ya existe una cartera" in result.exception.diagnostics()
    assert "A wallet already exists" in result.exception.diagnostics()
    assert (wallet_home / "wallet.json").read_bytes() == before


def test_init_prompts_twice_without_the_environment(run: Run, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    mismatch = run("wallet", "init", "--home", tmp_path / "a",
                   input="uno dos tres\ncuatro cinco\n")
    assert isinstance(mismatch.exception, UsageError)
    assert mismatch.exception.code == "passphrase_mismatch"
    assert not (tmp_path / "a" / "wallet.json").exists()
    short = run("wallet", "init", "--home", tmp_path / "a", input="secreto\nsecreto\n")
    assert isinstance(short.exception, UsageError) and short.exception.code == "passphrase_short"
    assert not (tmp_path / "a" / "wallet.json").exists()
    ok = run("wallet", "init", "--home", tmp_path / "b", input="mi secreto\nmi secreto\n")
    assert ok.exit_code == 0, ok.stderr
    Wallet.open(tmp_path / "b").holder_key("mi secreto")


def test_home_from_the_environment(run: Run, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASAPORTE_HOME", str(tmp_path / "env-home"))
    assert run("wallet", "init").exit_code == 0
    assert (tmp_path / "env-home" / "wallet.json").exists()


def test_key_needs_no_passphrase(run: Run, wallet_home: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    result = run("wallet", "key", "--home", wallet_home, input="")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    from credential.keys import b64url

    assert result.stdout == b64url(Wallet.open(wallet_home).public_key) + "\n"


def test_commands_on_a_missing_wallet(run: Run, tmp_path: Path) -> None:
    result = run("wallet", "list", "--home", tmp_path / "nothing")
    assert isinstance(result.exception, StoreError)
    assert result.exception.code == "wallet_not_initialised" and result.stdout == ""
    assert str(tmp_path / "nothing") in result.exception.message["en"]
    for text in result.exception.message.values():  # a lost folder first, a new key last
        assert text.index("PASAPORTE_HOME") < text.index("pasaporte wallet init")
    assert not (tmp_path / "nothing").exists()  # nothing made where no wallet is


def test_import_list_and_present_for_each_service(run: Run, wallet_home: Path, mexicali: City,
                                                  tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    again = run("wallet", "import", tmp_path / "mexicali.pu1", "--home", wallet_home)
    assert again.stdout.strip() == cred_id
    assert "Already in the wallet" in again.stderr

    listed = run("wallet", "list", "--json", "--home", wallet_home)
    [entry] = json.loads(listed.stdout)
    assert {"id", "issuer", "valid_until", "status"} <= set(entry)
    assert (entry["id"], entry["issuer"], entry["status"]) == (cred_id, "mx-mxl", "valid")
    assert entry["valid_until"] == example_claims("mexicali")["valid_until"]
    assert entry["claims"]["given_name"] == "María Guadalupe"
    assert entry["claims"]["residence"]["city"] == "Mexicali"

    verifier = mexicali.verifier()
    for service, shown in (("library", {"residence.city", "library.eligible"}),
                           ("transit", {"residence.city", "transit.fare_category"}),
                           ("clinic", {"names.given_name", "birth_date.birth_date",
                                       "clinic.eligible"})):
        result = run("wallet", "present", cred_id, "--for", service, "--home", wallet_home)
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("PU1:")  # the payload and nothing else
        decision = verifier.verify(lines[0], service=service)
        assert decision.accepted, decision.message
        assert decision.credential_id == cred_id
        assert shown <= _claims(decision.claims)
        groups = {c["group"] for c in decision.claims}
        assert groups == set(Policy.for_service(service).requires)


def test_disclose_changes_what_the_counter_sees(run: Run, wallet_home: Path, mexicali: City,
                                               tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    verifier = mexicali.verifier()

    def shown(*disclose: str) -> tuple[str, set[str]]:
        args = [a for d in disclose for a in ("--disclose", d)]
        result = run("wallet", "present", cred_id, "--for", "library", *args,
                     "--home", wallet_home)
        assert result.exit_code == 0, result.stderr
        decision = verifier.verify(result.stdout.strip(), service="library")
        return decision.code, _claims(decision.claims)

    code, default = shown()
    assert code == "accepted" and "names.given_name" not in default
    # More than the defaults: the counter sees the names too (claim names map to their group).
    code, more = shown("residence,library", "given_name")
    assert code == "accepted"
    assert more == default | {"names.given_name", "names.family_name"}
    # Less than the service needs: signed and genuine, but the policy refuses it.
    code, _ = shown("city")
    assert code == "claims_missing"
    # A claim name stands for its whole group: the resident is told exactly what is shown.
    lines = run("wallet", "present", cred_id, "--for", "library", "--disclose", "given_name",
                "--home", wallet_home).stderr.splitlines()
    said = lines[0]
    assert "Se muestra: Nombre (Nombre(s), Apellido(s))" in said and "Shown: Name (" in said
    assert "Family names" in said and "Residence" not in said
    # ... and, having named one claim, that the others of its group go with it
    assert lines[1].startswith("[wallet_disclose_whole_group]") and "given_name" in lines[1]
    assert "Apellido(s)" in lines[1] and "cannot be separated" in lines[1]
    several = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home
                  ).stderr.splitlines()[0]
    assert several.startswith("Se muestran: Residencia (") and "; Biblioteca (" in several


def test_present_unknown_disclosure_is_a_usage_error(run: Run, wallet_home: Path,
                                                     mexicali: City, tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    result = run("wallet", "present", cred_id, "--for", "library", "--disclose", "shoe_size",
                 "--home", wallet_home)
    assert isinstance(result.exception, UsageError)
    assert result.exception.code == "wallet_disclose_unknown"
    assert "residence" in result.exception.message["es"]
    assert result.stdout == ""


def test_audience_and_nonce_bind_the_presentation(run: Run, wallet_home: Path, mexicali: City,
                                                  tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    verifier = mexicali.verifier()
    result = run("wallet", "present", cred_id[:6], "--for", "transit", "--audience", "bus-12",
                 "--nonce", "hex:c0ffee", "--home", wallet_home)
    payload = result.stdout.strip()
    desk = Policy.for_service("transit", counter_id="bus-12")
    assert verifier.verify(payload, service=desk, nonce=b"\xc0\xff\xee").accepted
    assert verifier.verify(payload, service=desk, nonce=b"other").code == "nonce_mismatch"
    other_bus = Policy.for_service("transit", counter_id="bus-13")
    assert verifier.verify(payload, service=other_bus).code == "wrong_audience"
    assert verifier.verify(payload, service="library").code == "wrong_audience"


def test_a_challenge_typed_in_lower_case_is_the_counters(run: Run, wallet_home: Path,
                                                         mexicali: City, tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    result = run("wallet", "present", cred_id, "--for", "library", "--nonce", "8f3k",
                 "--home", wallet_home)
    (tmp_path / "b.cbor").write_bytes(mexicali.bundle())
    (tmp_path / "r.json").write_text(mexicali.root.to_json())
    counter = ["verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
               "--trust-root", str(tmp_path / "r.json"), "--text", result.stdout.strip()]
    assert run(*counter, "--nonce", "8F3K").exit_code == 0
    assert run(*counter, "--nonce", "8F3L").exit_code == 1


def test_wrong_passphrase_makes_no_presentation(run: Run, wallet_home: Path, mexicali: City,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "wrong")
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert isinstance(result.exception, StoreError)
    assert result.exception.code == "wallet_passphrase_wrong"
    assert result.stdout == ""
    # Prompted instead of taken from the environment: the same refusal.
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home,
                 input="nope\n")
    assert isinstance(result.exception, StoreError)
    assert result.exception.code == "wallet_passphrase_wrong" and result.stdout == ""
    ok = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home,
             input=PASSPHRASE + "\n")
    assert ok.exit_code == 0 and ok.stdout.startswith("PU1:")


def test_import_refuses_another_wallets_credential(run: Run, wallet_home: Path, calexico: City,
                                                   tmp_path: Path) -> None:
    other = Wallet.create(tmp_path / "other", PASSPHRASE)
    file = tmp_path / "theirs.pu1"
    file.write_text(calexico.issue_text(other.public_key, example_claims("calexico")), "utf-8")
    result = run("wallet", "import", file, "--home", wallet_home)
    assert isinstance(result.exception, StoreError)
    assert result.exception.code == "wallet_import_other_holder"
    assert json.loads(run("wallet", "list", "--json", "--home", wallet_home).stdout) == []


def test_import_refuses_binary_junk(run: Run, wallet_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "junk.bin"
    file.write_bytes(b"\xff\xfe\x00garbage")
    result = run("wallet", "import", file, "--home", wallet_home)
    assert isinstance(result.exception, MalformedInput)
    assert result.exception.code == "wallet_import_unreadable" and result.stdout == ""
    assert str(file) in result.exception.message["en"]
    assert "nor a PNG or JPEG image of its QR code" in result.exception.message["en"]
    assert "ni una imagen PNG o JPEG" in result.exception.message["es"]
    assert Wallet.open(wallet_home).ids() == []


def test_list_table_has_bilingual_headers(run: Run, wallet_home: Path, mexicali: City,
                                          calexico: City, tmp_path: Path) -> None:
    empty = run("wallet", "list", "--home", wallet_home)
    assert empty.stdout == "" and "empty" in empty.stderr
    ids = [_import(run, wallet_home, mexicali, "mexicali", tmp_path),
           _import(run, wallet_home, calexico, "calexico", tmp_path)]
    table = run("wallet", "list", "--home", wallet_home).stdout.splitlines()
    for header in ("Folio / ID", "Emisor / Issuer", "Válido hasta / Valid until",
                   "Estado / Status"):
        assert header in table[0]
    assert len(table) == 4
    assert all(any(i in row for row in table[2:]) for i in ids)
    assert all("vigente / valid" in row for row in table[2:])


def test_qr_png_is_written_and_scans(run: Run, wallet_home: Path, mexicali: City,
                                     tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    png = tmp_path / "library.png"
    result = run("wallet", "present", cred_id, "--for", "library", "--qr", png,
                 "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    decision = mexicali.verifier().verify_image(png.read_bytes(), service="library")
    assert decision.accepted, decision.message
    # made at home and printed for later, it is refused: said when it is written
    assert "[wallet_qr_short_lived]" in result.stderr and "120 segundos" in result.stderr
    # an earlier code is replaced by the next
    again = run("wallet", "present", cred_id, "--for", "library", "--qr", png,
                "--home", wallet_home)
    assert again.exit_code == 0, again.output
    assert mexicali.verifier().verify_image(png.read_bytes(), service="library").accepted


def test_qr_never_replaces_a_file_that_is_no_earlier_code(run: Run, wallet_home: Path,
                                                          mexicali: City, tmp_path: Path) -> None:
    """``--qr pasaporte.png`` replaced the passport image the office handed out (or a family
    photo) with a code good for two minutes."""
    from credential import qr

    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    office = tmp_path / "pasaporte.png"
    office.write_bytes(qr.render_png(mexicali.issue_text(None, example_claims("mexicali"))))
    photo = tmp_path / "familia.png"
    photo.write_bytes(qr.render_png("https://example.org")[:-12])  # and damaged, too
    for path in (office, photo):
        kept = path.read_bytes()
        result = run("wallet", "present", cred_id, "--for", "library", "--qr", path,
                     "--home", wallet_home)
        assert result.exit_code != 0 and result.stdout == "", result.output
        assert isinstance(result.exception, UsageError)  # (exit 2 through pasaporte's main)
        assert result.exception.code == "wallet_qr_exists"
        assert "otro nombre" in result.exception.message["es"]
        assert path.read_bytes() == kept


def test_two_presentations_racing_to_one_new_qr_file_both_succeed(
        wallet_home: Path, mexicali: City, tmp_path: Path) -> None:
    """A shortcut clicked twice: both saw no file, the first put its code there, and the other
    failed naming a hidden temporary file "already exists", with no code. The later replaces
    the earlier, as over a code made before; anything else that appears stays."""
    wallet = Wallet.open(wallet_home)
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                     example_claims("mexicali"))).id
    env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE}
    target = tmp_path / "same.png"
    procs = [subprocess.Popen([str(PASAPORTE), "wallet", "present", cred_id, "--for", "library",
                               "--qr", str(target), "--home", str(wallet_home)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    for (out, err), code in results:
        assert code == 0 and out.startswith("PU1:"), err
        assert ".tmp" not in err, err
    from credential import qr

    assert qr.decode_image(str(target)) in {out.strip() for (out, _), _ in results}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_terminal_qr_goes_to_stderr(run: Run, wallet_home: Path, mexicali: City,
                                    tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    result = run("wallet", "present", cred_id, "--for", "library", "--terminal",
                 "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("PU1:") and len(result.stdout.splitlines()) == 1
    assert "█" in result.stderr or "▀" in result.stderr or "▄" in result.stderr


def test_real_subprocess(wallet_home: Path, mexicali: City, tmp_path: Path) -> None:
    """The installed console script, as a resident runs it (one presentation, one refusal)."""
    env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE}

    def pasaporte(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PASAPORTE), "wallet", *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    home = tmp_path / "resident"
    init = pasaporte("init", "--home", home)
    assert init.returncode == 0, init.stderr
    from credential.keys import unb64url

    file = tmp_path / "cred.pu1"
    file.write_text(mexicali.issue_text(unb64url(init.stdout.strip(), length=32),
                                        example_claims("mexicali")), "utf-8")
    cred_id = pasaporte("import", file, "--home", home).stdout.strip()
    shown = pasaporte("present", cred_id, "--for", "clinic", "--home", home)
    assert shown.returncode == 0, shown.stderr
    assert mexicali.verifier().verify(shown.stdout.strip(), service="clinic").accepted

    again = pasaporte("init", "--home", home)
    assert again.returncode == 1
    assert "[wallet_exists]" in again.stderr and "already exists" in again.stderr
    usage = pasaporte("present", cred_id, "--for", "pool", "--home", home)
    assert usage.returncode == 2 and usage.stderr.startswith("[wallet_service_unknown] ")
    assert "Servicio desconocido" in usage.stderr and "Unknown service" in usage.stderr
    assert usage.stdout == ""


def test_expired_credential_warns_and_the_counter_refuses(run: Run, wallet_home: Path,
                                                          mexicali: City, tmp_path: Path) -> None:
    wallet = Wallet.open(wallet_home)
    old = example_claims("mexicali", valid_from="2020-01-01", valid_until="2021-01-01")
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key, old)).id
    result = run("wallet", "present", cred_id, "--for", "library", "--home", wallet_home)
    assert result.exit_code == 0
    assert "[wallet_present_not_valid]" in result.stderr
    # each language's half in its own language
    es, _, en = result.stderr.partition("[wallet_present_not_valid]")[2].partition(" / ")
    assert "(vencido)" in es and "expired" not in es and "(expired)" in en
    assert "revise la fecha y hora" in es and "check this computer's date" in en
    assert "suspensión" not in es and "suspension" not in en
    assert mexicali.verifier().verify(result.stdout.strip(), service="library").code == "expired"
    [entry] = json.loads(run("wallet", "list", "--json", "--home", wallet_home).stdout)
    assert (entry["status"], entry["valid_until"]) == ("expired", "2021-01-01")


def test_import_from_stdin_and_a_damaged_file_in_list(run: Run, wallet_home: Path,
                                                      mexicali: City) -> None:
    wallet = Wallet.open(wallet_home)
    text = mexicali.issue_text(wallet.public_key, example_claims("mexicali"))
    result = run("wallet", "import", "-", "--home", wallet_home, input=text + "\n")
    assert result.exit_code == 0, result.stderr
    (wallet.credentials_dir / "AAAAAAAAAAA.cbor").write_bytes(b"damaged")
    listed = run("wallet", "list", "--json", "--home", wallet_home)
    assert listed.exit_code == 1  # the good one is listed; the damaged one is a failure
    assert [e["id"] for e in json.loads(listed.stdout)] == [result.stdout.strip()]
    assert "[wallet_credential_corrupt]" in listed.stderr
    (wallet.credentials_dir / f"{result.stdout.strip()}.cbor").write_bytes(b"damaged too")
    listed = run("wallet", "list", "--home", wallet_home)
    assert listed.exit_code == 1 and "empty" not in listed.stderr


def test_a_qr_file_is_named_png(run: Run, wallet_home: Path, mexicali: City,
                                tmp_path: Path) -> None:
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    result = run("wallet", "present", cred_id, "--for", "library", "--qr",
                 str(tmp_path / "code.jpg"), "--home", wallet_home)
    assert isinstance(result.exception, UsageError)
    assert result.exception.code == "qr_not_png" and result.stdout == ""
    assert not (tmp_path / "code.jpg").exists()
    result = run("wallet", "present", cred_id, "--for", "library", "--qr",
                 str(tmp_path / "code.PNG"), "--home", wallet_home)
    assert result.exit_code == 0 and (tmp_path / "code.PNG").read_bytes()[:4] == b"\x89PNG"
    # nor among the wallet's own files, where nothing but the wallet writes
    result = run("wallet", "present", cred_id, "--for", "library", "--qr",
                 str(wallet_home / "code.png"), "--home", wallet_home)
    assert isinstance(result.exception, UsageError)
    assert result.exception.code == "output_in_home" and result.stdout == ""
    assert not (wallet_home / "code.png").exists()


def test_another_city_cannot_replace_a_passport_under_its_id(run: Run, wallet_home: Path,
                                                             mexicali: City, calexico: City,
                                                             tmp_path: Path) -> None:
    """An office chooses the credential id (``credential_id`` in the claims): a file from
    another city under the id of the resident's passport must not erase it."""
    from credential import transport

    wallet = Wallet.open(wallet_home)
    mine = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    (tmp_path / "mine.pu1").write_text(transport.pack(mine.to_cbor()), "utf-8")
    assert run("wallet", "import", tmp_path / "mine.pu1", "--home", wallet_home).exit_code == 0
    stored = (wallet.credentials_dir / f"{mine.credential_id}.cbor").read_bytes()
    theirs = calexico.issue_for(wallet.public_key, example_claims("calexico"), cti=mine.cti)
    (tmp_path / "theirs.pu1").write_text(transport.pack(theirs.to_cbor()), "utf-8")
    result = run("wallet", "import", tmp_path / "theirs.pu1", "--home", wallet_home)
    assert isinstance(result.exception, StoreError)  # exit 1 through the console script
    assert result.exception.code == "wallet_import_other_issuer"
    assert "us-cxl" in result.exception.message["es"] and "mx-mxl" in result.exception.message["en"]
    assert "no se modificó" in result.exception.message["es"]
    assert result.stdout == ""
    assert (wallet.credentials_dir / f"{mine.credential_id}.cbor").read_bytes() == stored
    [entry] = json.loads(run("wallet", "list", "--json", "--home", wallet_home).stdout)
    assert (entry["id"], entry["issuer"]) == (mine.credential_id, "mx-mxl")


def test_a_large_file_is_named_as_no_passport(run: Run, wallet_home: Path,
                                              tmp_path: Path) -> None:
    """The bounded read may end inside a character: the size is the answer, not "not UTF-8";
    and the file is named, as no passport's ("the code holds too much data" named neither the
    document or archive picked by mistake nor what to import instead)."""
    file = tmp_path / "u.txt"
    file.write_text("ñ" * 40_000 + "\n", "utf-8")  # 80 KB of two-byte characters
    archive = tmp_path / "fotos.zip"
    archive.write_bytes(b"PK\x03\x04" + os.urandom(100_000))
    for given in (file, archive):
        result = run("wallet", "import", given, "--home", wallet_home)
        assert isinstance(result.exception, MalformedInput)
        assert result.exception.code == "wallet_import_unreadable"
        assert str(given) in result.exception.message["en"]
        assert "far too large for a passport's text" in result.exception.message["en"]
        assert "demasiado grande" in result.exception.message["es"]
    assert Wallet.open(wallet_home).ids() == []


def test_a_passport_pasted_at_the_terminal_is_imported_at_enter(wallet_home: Path,
                                                                mexicali: City) -> None:
    """Read to the end of input, as a pipe is, the pasted passport waited after Enter, with no
    prompt and no word of Ctrl-D: the resident took the command for hung. Wrapped over two
    lines (a mail client), the paste goes on to the line that completes it."""
    import pty

    text = mexicali.issue_text(Wallet.open(wallet_home).public_key, example_claims("mexicali"))
    for paste in (f"{text}\r", f"{text[:40]}\r{text[40:]}\r"):
        main, side = pty.openpty()
        proc = subprocess.Popen([str(PASAPORTE), "wallet", "import", "-", "--home",
                                 str(wallet_home)], stdin=side, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        os.close(side)
        try:
            os.write(main, paste.encode())  # and nothing more: no Ctrl-D
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(main)
        assert proc.returncode == 0, err
        assert "Pegue el texto del pasaporte" in err and "Paste the passport's text" in err
        assert out.strip() in Wallet.open(wallet_home).ids()


def test_typed_text_is_said_escaped(wallet_home: Path, mexicali: City) -> None:
    """An id, a --disclose name or a file name pasted from a message, control sequences and
    all, was echoed raw: it could set the window's title or clear the screen."""
    wallet = Wallet.open(wallet_home)
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                     example_claims("mexicali"))).id
    odd = "X\x1b]0;HACKED\x07"
    env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE}
    for args in (("present", cred_id[:3] + odd, "--for", "library"),
                 ("present", cred_id, "--for", "library", "--disclose", odd),
                 ("import", odd)):
        done = subprocess.run([str(PASAPORTE), "wallet", *args, "--home", str(wallet_home)],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode in (1, 2) and done.stdout == "", done.stderr
        assert "\x1b" not in done.stderr and "\x07" not in done.stderr, done.stderr
        assert "\\x1b]0;HACKED\\x07" in done.stderr, done.stderr


def test_an_import_whose_id_cannot_be_printed_says_it_was_stored(wallet_home: Path,
                                                                  mexicali: City,
                                                                  tmp_path: Path) -> None:
    """Standard output on a full disk: the passport was stored, and "nothing was left
    half-written" read as nothing done."""
    file = tmp_path / "p.txt"
    file.write_text(mexicali.issue_text(Wallet.open(wallet_home).public_key,
                                        example_claims("mexicali")))
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(PASAPORTE), "wallet", "import", str(file), "--home",
                               str(wallet_home)], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)
    assert done.returncode == 1 and "[output_unwritten]" in done.stderr, done.stderr
    assert "queda hecho" in done.stderr and "stays done" in done.stderr
    assert "Nothing was left" not in done.stderr
    assert len(Wallet.open(wallet_home).ids()) == 1


def test_nothing_pasted_is_said_as_standard_input(run: Run, wallet_home: Path) -> None:
    result = run("wallet", "import", "-", "--home", wallet_home, input="")
    assert isinstance(result.exception, PasaporteError)
    assert "<stdin>" not in result.exception.message["es"]
    assert "entrada estándar" in result.exception.message["es"]
    assert "standard input" in result.exception.message["en"]


def test_concurrent_inits_make_one_wallet(tmp_path: Path) -> None:
    """Four ``wallet init`` at once on one home: one wallet, one key printed, three refusals;
    never a key printed that the wallet does not hold."""
    env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE}
    env.pop("PASAPORTE_HOME", None)
    home = tmp_path / "wi"
    procs = [subprocess.Popen([sys.executable, "-m", "pasaporte", "wallet", "init",
                               "--home", str(home)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]  # every one ended before any check
    done = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    winners = [out for rc, out, _ in done if rc == 0]
    assert len(winners) == 1, done
    assert all(rc == 1 and "[wallet_exists]" in err for rc, _, err in done if rc != 0), done
    from credential.keys import b64url

    assert winners[0].strip() == b64url(Wallet.open(home).public_key)
    Wallet.open(home).holder_key(PASSPHRASE)
    assert [p.name for p in home.iterdir() if p.name.startswith(".wallet.json")] == []


def test_showing_less_than_the_service_asks_warns(run: Run, wallet_home: Path, mexicali: City,
                                                  tmp_path: Path) -> None:
    """A code the counter's default policy is sure to refuse is still made (a counter may ask
    for less), but the resident hears so before queueing, as for an expired passport."""
    cred_id = _import(run, wallet_home, mexicali, "mexicali", tmp_path)
    result = run("wallet", "present", cred_id, "--for", "library", "--disclose", "clinic",
                 "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert "[wallet_present_missing]" in result.stderr
    assert "Residencia, Biblioteca" in result.stderr and "Residence, Library" in result.stderr
    assert mexicali.verifier().verify(result.stdout.strip(),
                                      service="library").code == "claims_missing"
    for enough in (["--disclose", "residence,library"], ["--disclose", "library,given_name,city"],
                   []):
        said = run("wallet", "present", cred_id, "--for", "library", *enough,
                   "--home", wallet_home)
        assert said.exit_code == 0 and "wallet_present_missing" not in said.stderr, said.stderr


@pytest.mark.parametrize("service", ["library", "clinic"])
def test_a_passport_not_entitled_to_the_service_warns(run: Run, wallet_home: Path,
                                                      mexicali: City, service: str) -> None:
    """Eligibility false for the service asked for: the counter is sure to refuse it
    (``not_eligible``), so the resident hears so before queueing; another service is silent."""
    wallet = Wallet.open(wallet_home)
    claims = example_claims("mexicali")
    claims[service] = {**claims[service], "eligible": False}
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key, claims)).id
    result = run("wallet", "present", cred_id, "--for", service, "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    es, _, en = result.stderr.partition("[wallet_present_not_eligible]")[2].partition(" / ")
    label = {"library": ("Biblioteca", "Library"), "clinic": ("Clínica", "Clinic")}[service]
    assert label[0] in es and "entitled" not in es and label[1] in en, result.stderr
    assert mexicali.verifier().verify(result.stdout.strip(),
                                      service=service).code == "not_eligible"
    other = run("wallet", "present", cred_id, "--for", "transit", "--home", wallet_home)
    assert other.exit_code == 0 and "not_eligible" not in other.stderr, other.stderr


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_import_a_file_saved_with_a_byte_order_mark(run: Run, wallet_home: Path,
                                                    mexicali: City, tmp_path: Path,
                                                    encoding: str) -> None:
    """Windows Notepad saves UTF-8 with a BOM in front, or UTF-16 ("Unicode"), as PowerShell's
    ">" does: the passport is still the passport (UTF-16 was "neither a passport's text nor an
    image")."""
    wallet = Wallet.open(wallet_home)
    text = mexicali.issue_text(wallet.public_key, example_claims("mexicali"))
    file = tmp_path / "notepad.txt"
    mark = "\ufeff" if encoding == "utf-16-be" else ""  # (the others write their own)
    file.write_bytes((mark + text + "\r\n").encode(encoding))
    result = run("wallet", "import", file, "--home", wallet_home)
    assert result.exit_code == 0, result.stderr
    assert Wallet.open(wallet_home).ids() == [result.stdout.strip()]


def test_a_qr_place_that_cannot_be_written_fails_before_the_passphrase(
        wallet_home: Path, mexicali: City, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from pasaporte.cli import main

    wallet = Wallet.open(wallet_home)
    cred_id = wallet.import_text(mexicali.issue_text(wallet.public_key,
                                                     example_claims("mexicali"))).id
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")  # it would be asked for, and fail, if reached
    code = main(["wallet", "present", cred_id, "--for", "library", "--qr", "/proc/qr.png",
                 "--home", str(wallet_home)])
    err = capsys.readouterr().err
    assert code == 1 and "[file_error]" in err and "/proc/qr.png" in err, err
    assert "passphrase_required" not in err
