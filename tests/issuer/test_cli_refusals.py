"""Mistakes in an office command that used to be found late, or not at all: each is refused
(exit 2) before the passphrase is asked for, and nothing is signed, changed or published."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from issuer.store import IssuerStore, credentials
from tests.conftest import PASSPHRASE, Run
from tests.factory import EXAMPLES
from tests.issuer.conftest import keys_made_on

CLAIMS = str(EXAMPLES / "claims-mexicali.json")


def _no_passphrase(**_: object) -> str:
    raise AssertionError("the passphrase was asked for")


@pytest.mark.parametrize("qr", ["p.png", "./p.png", "sub/../p.png"])
def test_out_and_qr_naming_one_file_issue_nothing(office: Path, tmp_path: Path, run: Run,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  qr: str) -> None:
    """The image would replace the credential's text (what a wallet imports), and the command
    succeed all the same."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    code, out, err = run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out", "p.png",
                         "--qr", qr, "--home", str(office))
    assert code == 2 and err.startswith("[output_same_file] ") and out == "", err
    assert not (tmp_path / "p.png").exists()
    with IssuerStore.open(office).engine.connect() as db:  # no credential on the record
        assert db.execute(sa.select(sa.func.count()).select_from(credentials)).scalar_one() == 0
    assert [e["type"] for _, e in IssuerStore.open(office).pending()] == ["key_registered"]


def test_a_bundle_and_its_proof_naming_one_file_sign_nothing(office: Path, tmp_path: Path,
                                                             run: Run,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """The proof, written last, replaced the bundle just signed and published: the file handed
    to counters was a JSON proof, and the command said nothing was wrong."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    code, out, err = run("issuer", "bundle", "--out", "b.cbor", "--proof", "./b.cbor",
                         "--home", str(office))
    assert code == 2 and err.startswith("[output_same_file] --out / --proof") and out == "", err
    assert not (tmp_path / "b.cbor").exists()
    assert [e["type"] for _, e in IssuerStore.open(office).pending()] == ["key_registered"]


@pytest.mark.parametrize("code", [None, "MXMEX"])
@pytest.mark.parametrize("country", ["Mé", "ÑX", "M1", "MEX"])
def test_a_country_not_two_ascii_letters_is_named_as_the_mistake(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch, country: str,
        code: str | None) -> None:
    """A letter of another script passed ``isalpha``: without --code the made code was refused
    (the clerk told to fix a --code never given), with one the ledger's check refused it late."""
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    given = ["--code", code] if code else []
    code_, out, err = run("issuer", "init", "--city", "Mexicali", "--country", country,
                          "--office", "Centro", *given, "--home", str(tmp_path / "o"))
    assert code_ == 2 and err.startswith("[usage_error] ") and out == "", err
    assert "--country" in err and "--code" not in err, err
    assert not (tmp_path / "o").exists()


def test_text_typed_on_a_latin1_terminal_is_named_as_such(office: Path, tmp_path: Path,
                                                          run: Run,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """"a petición" from a Latin-1 terminal in a UTF-8 session (argv's byte \\xf3 as a
    surrogate escape) was "not a reason code": the passport revoked, ``unspecified`` on the
    public record for good. An office name so typed was "invalid"."""
    code, cred_id, err = run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out",
                             str(tmp_path / "p.cred"), "--home", str(office))
    assert code == 0, err
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    code, out, err = run("issuer", "revoke", cred_id.strip(), "--reason",
                         os.fsdecode(b"a petici\xf3n"), "--home", str(office))
    assert code == 2 and err.startswith("[text_not_utf8] --reason") and out == "", err
    assert "UTF-8" in err and "PuTTY" in err
    assert IssuerStore.open(office).credential(cred_id.strip())["status"] == "valid"  # type: ignore[index]
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       os.fsdecode(b"Oficina Jos\xe9"), "--home", str(tmp_path / "o2"))
    assert code == 2 and "[text_not_utf8] --office" in err, err


def _contents(db: Path) -> list[str]:
    """Every row of the store, as SQL (the file it is in must still be a database)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.iterdump())


@pytest.mark.parametrize("command", [
    ["bundle", "--out", "{home}/issuer.db"],
    ["issue", "--claims", CLAIMS, "--paper", "--overwrite", "--out", "{home}/issuer.db"],
    ["root", "--out", "{home}/../{name}/issuer.db-turn"],
    ["backup", "--out", "{home}/office.bak"],
])
def test_no_output_goes_into_the_office_folder(office: Path, run: Run,
                                               monkeypatch: pytest.MonkeyPatch,
                                               command: list[str]) -> None:
    """``bundle --out <home>/issuer.db`` replaced the store, its sealed root key and every
    record with a bundle, exit 0."""
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    before = _contents(office / "issuer.db")
    args = [a.format(home=office, name=office.name) for a in command]
    code, out, err = run("issuer", *args, "--home", str(office))
    assert code == 2 and err.startswith("[output_in_office_home] --out") and out == "", err
    # compared as rows, not bytes: SQLite folds its write-ahead log into the file whenever the
    # last connection closes (the fixture's, at some garbage collection), the rows the same
    assert _contents(office / "issuer.db") == before
    assert {p.name for p in office.iterdir()} <= {"issuer.db", "issuer.db-turn",
                                                  "issuer.db-wal", "issuer.db-shm"}


@pytest.mark.parametrize("command", [["root", "--out", "loop"],
                                     ["backup", "--out", "loop"],
                                     ["bundle", "--out", "b.cbor", "--proof", "loop"]])
def test_an_output_that_is_a_symlink_loop_is_refused_as_such(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    """Path.resolve raises on a loop: an "unexpected error" where a usage error was due."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to("loop")
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    code, _, err = run("issuer", *command, "--home", str(office))
    assert code == 2 and "internal_error" not in err, err


def test_a_compromise_cannot_begin_in_the_future(office: Path, run: Run,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Until a future ``--since``, counters would go on accepting what the thief signs."""
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    code, _, err = run("issuer", "compromised", kid, "--since", "2099-01-01T00:00:00Z",
                       "--home", str(office))
    assert code == 2 and err.startswith("[issuer_compromise_future] "), err
    assert "2099-01-01T00:00:00Z" in err and "futuro" in err
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])
    assert [k["status"] for k in keys] == ["active"]
    monkeypatch.undo()
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE)
    keys_made_on(office, "2025-01-01")
    assert run("issuer", "compromised", kid, "--since", "2026-01-01T00:00:00Z",
               "--home", str(office))[0] == 0  # a time past is taken
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])
    assert [(k["status"], k["compromised_since"]) for k in keys] == [("compromised",
                                                                      "2026-01-01T00:00:00Z")]


def test_a_bundle_proof_that_cannot_be_had_is_refused_before_anything(
        office: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """``--proof`` without a ledger, or naming no file, is the command's mistake: said before
    the passphrase is asked for and before a bundle version is signed and queued for the
    public record (the proof is written last, after both)."""
    home = office
    monkeypatch.setattr("issuer.cli.read_passphrase", _no_passphrase)
    out = tmp_path / "b.cbor"
    code, _, err = run("issuer", "bundle", "--out", str(out), "--proof", str(tmp_path / "p.json"),
                       "--home", str(home))
    assert code == 2 and err.startswith("[usage_error] ") and "--proof" in err, err
    assert "registro público" in err and not out.exists()
    store = IssuerStore.open(home)
    assert [e["type"] for _, e in store.pending()] == ["key_registered"]  # no bundle queued
    store.configure_ledger("http://127.0.0.1:9", "t", PASSPHRASE, check=False)
    queued = len(store.pending())
    code, _, err = run("issuer", "bundle", "--out", str(out), "--proof", "",
                       "--home", str(home))
    assert code == 2 and "[output_not_a_file]" in err and "--proof" in err, err
    assert not out.exists() and len(store.pending()) == queued


def test_a_status_or_key_change_needs_the_office_passphrase(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Revoking (final), suspending, reinstating (a stolen phone's passport valid again) and
    marking the office key compromised each prove the passphrase before changing anything:
    the check could be removed with no test noticing."""
    keys_made_on(office)
    code, cred, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                          "--paper", "--out", str(tmp_path / "c.txt"), "--home", str(office))
    assert code == 0, err
    cred = cred.strip()
    assert run("issuer", "suspend", cred, "--home", str(office))[0] == 0
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "not the office passphrase")
    for args in (["revoke", cred], ["suspend", cred], ["reinstate", cred],
                 ["compromised", kid, "--since", "2025-06-01T00:00:00Z"]):
        code, out, err = run("issuer", *args, "--home", str(office))
        assert code == 1 and err.startswith("[passphrase_wrong]") and out == "", (args, err)
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE)
    code, out, _ = run("issuer", "status", cred, "--json", "--home", str(office))
    assert json.loads(out)["status"] == "suspended"  # as it was
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])
    assert keys[0]["compromised_since"] is None, keys
