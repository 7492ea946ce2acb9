"""Privacy (no claim value ever reaches the ledger database) and the CLI as operators run it."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from flask.testing import FlaskClient

from ledger.store import LedgerStore
from pasaporte.cli import main as pasaporte_main
from tests.ledger.conftest import run_cli
from tests.ledger.helpers import b64u

CLAIMS = [
    {"given_name": "María Fernanda", "family_name": "Zapata Ortiz", "birth_date": "1990-04-12",
     "curp": "ZAOM900412MDFPRR09", "address": "Calle Durango 123, Roma Norte"},
    {"given_name": "Jonathan", "family_name": "Okafor-Brennan", "birth_date": "1985-11-30",
     "address": "4521-B Whittier Blvd, Los Angeles"},
]
# Each value and its first word are looked for in the files, whose signatures and keys are
# random bytes, hex and base64 text: a first word "4521" was in there by chance one run in 6,000.


def _commit(claims: dict[str, str]) -> bytes:
    # what an issuer logs: a salted hash of the canonical claims, never the claims
    salt = secrets.token_bytes(32)
    return hashlib.sha256(salt + cbor2.dumps(claims, canonical=True)).digest()


def test_no_claim_value_reaches_the_database(client: FlaskClient, store: LedgerStore,
                                             home: Path) -> None:
    token = store.add_token("issuer")
    auth = {"Authorization": f"Bearer {token}"}
    for i, claims in enumerate(CLAIMS):
        entries = [{"type": "credential_issued", "commitment": b64u(_commit(claims))},
                   {"type": "status_changed", "list": "cdmx-2025", "index": i,
                    "status": "valid", "reason": "unspecified"}]
        assert client.post("/entries", json={"entries": entries}, headers=auth).status_code == 201
        # attempts to smuggle claims in are refused
        for sneaky in ({"type": "credential_issued", "commitment": b64u(bytes(32)), **claims},
                       {"type": "status_changed", "list": "l", "index": 0, "status": "revoked",
                        "reason": claims["given_name"]}):
            resp = client.post("/entries", json={"entries": [sneaky]}, headers=auth)
            assert resp.status_code == 400
            assert resp.get_json()["code"] in ("ledger_bad_entry", "ledger_bad_field")
            # the refusal does not repeat the value it refused
            assert claims["given_name"] not in resp.get_data(as_text=True)
    assert store.size() == 2 * len(CLAIMS)
    store.close()
    blobs = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())
    for claims in CLAIMS:
        for value in claims.values():
            for form in (value.encode(), cbor2.dumps(value), value.split()[0].encode()):
                assert form not in blobs, value


def test_help_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--help"], ["init", "--help"], ["serve", "--help"], ["append", "--help"],
                 ["audit", "--help"], ["mirror", "--help"], ["witness", "--help"]):
        assert pasaporte_main(["ledger", *args]) == 0
    out = capsys.readouterr().out
    assert "--origin" in out and "--from" in out and "--log-key" in out


def test_mounted_in_pasaporte(capsys: pytest.CaptureFixture[str]) -> None:
    assert pasaporte_main(["ledger", "--help"]) == 0
    out = capsys.readouterr().out
    for command in ("init", "serve", "append", "audit", "mirror", "witness", "prove-bundle"):
        assert f"  {command} " in out, command


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    assert run_cli("init", "--origin", "ledger.test/cli", "--home", str(home)) == 0
    vkey = capsys.readouterr().out.strip()
    assert vkey.startswith("ledger.test/cli+")
    assert run_cli("key", "--home", str(home)) == 0
    assert capsys.readouterr().out.strip() == vkey
    assert run_cli("init", "--origin", "again", "--home", str(home)) == 1
    assert capsys.readouterr().err.startswith("[ledger_already_initialised]")
    assert run_cli("key", "--home", str(home)) == 0 and capsys.readouterr().out.strip() == vkey
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(x) for x in (
        {"type": "notice", "text": "Acta del comité conjunto 2025-01"},
        {"type": "credential_issued", "commitment": b64u(bytes(32))})) + "\n")
    assert run_cli("append", "--file", str(good), "--home", str(home)) == 0
    out = capsys.readouterr().out
    assert out.startswith("ledger.test/cli\n2\n") and "— ledger.test/cli " in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "notice", "text": "ok"}\n{"type": "notice", "name": "Ana"}\n')
    assert run_cli("append", "--file", str(bad), "--home", str(home)) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_bad_line] Línea 2: ") and "Line 2: " in err
    assert "name" in err  # the field it refused
    assert run_cli("audit", "--home", str(home)) == 0
    assert "ok: 2" in capsys.readouterr().out
    assert run_cli("token", "add", "issuer", "--home", str(home)) == 0
    first = capsys.readouterr()
    assert first.out.startswith("lt_") and first.err.startswith("[ledger_token_unbound] ")
    assert run_cli("token", "add", "issuer", "--home", str(home)) == 0  # again: a new one
    again = capsys.readouterr()
    assert again.out.startswith("lt_") and again.out != first.out
    assert again.err.startswith("[ledger_token_replaced]"), again.err
    assert "replaced issuer's previous token" in again.err and "reemplazó" in again.err
    with LedgerStore.open(home) as store:
        assert store.token_client(again.out.strip()) == ("issuer", None)
        assert store.token_client(first.out.strip()) is None
    assert run_cli("checkpoint", "--home", str(home)) == 0
    assert capsys.readouterr().out.startswith("ledger.test/cli\n2\n")


@pytest.mark.parametrize("verb", ["add", "revoke"])
def test_a_token_name_typed_on_a_latin1_terminal_is_refused_by_its_rule(
        home: Path, verb: str) -> None:
    """Its surrogate escapes reached the database driver first: an internal error. (Its own
    process: the terminal's output, not pytest's capture, has to show that name.)"""
    done = subprocess.run([sys.executable, "-m", "pasaporte", "ledger", "token", verb,
                           b"oficina-pe\xf1a", "--home", str(home)],
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(b"[ledger_bad_token_name] "), done.stderr


def test_wrong_passphrase_exits_1(home: Path, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "nope")
    f = tmp_path / "e.jsonl"
    f.write_text('{"type": "notice", "text": "x"}\n')
    assert run_cli("append", "--file", str(f), "--home", str(home)) == 1
    assert capsys.readouterr().err.startswith("[passphrase_wrong]")
    with LedgerStore.open(home) as store:
        assert store.size() == 0


def test_entries_prints_the_decoded_record(home: Path, store: LedgerStore,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tests.ledger.helpers import commitment, valid_entries

    store.append(valid_entries(), cosign=False)
    store.append([commitment(i) for i in range(1, 1 + 1500)], cosign=False)  # > one page
    capsys.readouterr()
    assert run_cli("entries", "--home", str(home)) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["index"] for x in lines] == list(range(store.size()))
    first = lines[0]["entry"]
    assert first["type"] == "key_registered" and first["city"] == "Ciudad de México"
    assert first["valid_from"] == "2025-01-01T00:00:00Z" and lines[0]["time"].endswith("Z")
    assert lines[5]["entry"] == {"type": "status_changed", "list": "cdmx-2025", "index": 17,
                                 "status": "revoked", "reason": "data_error"}
    assert run_cli("entries", "--type", "key_registered", "--type", "key_compromised",
                   "--home", str(home)) == 0
    picked = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["index"], x["entry"]["type"]) for x in picked] == [(0, "key_registered"),
                                                         (2, "key_compromised")]
    assert run_cli("entries", "--start", "1000", "--end", "1003", "--home", str(home)) == 0
    assert [json.loads(x)["index"] for x in capsys.readouterr().out.splitlines()] == [
        1000, 1001, 1002]
    size = store.size()
    assert run_cli("entries", "--start", str(size), "--home", str(home)) == 0  # nothing new
    assert capsys.readouterr() == ("", "")
    # past the end: coded and refused, as over HTTP (a log shorter than a script last saw it)
    assert run_cli("entries", "--start", str(size + 5), "--home", str(home)) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"[ledger_start_past_end] No hay registros a partir "
                                        f"de {size + 5}: el registro tiene {size}."), err
    assert run_cli("entries", "--start", "5", "--end", "2", "--home", str(home)) == 2
    assert "--start is after --end" in capsys.readouterr().err
    assert run_cli("entries", "--type", "nonsense", "--home", str(home)) == 2


@pytest.mark.parametrize(("option", "name"), [
    ("--origin", "ledger.mexicali.example/v1 "), ("--origin", "a+b"),
    ("--witness-name", "testigo de Mexicali")])
def test_init_refuses_a_name_no_key_can_have_before_anything(
        tmp_path: Path, option: str, name: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A blank pasted at an origin's end was "invalid key name", exit 1, after the passphrase
    was typed twice, and left a home with an empty database behind."""
    monkeypatch.delenv("PASAPORTE_PASSPHRASE", raising=False)  # not asked for: refused first
    names = {"--origin": "ledger.mexicali.example/v1", option: name}
    assert run_cli("init", *(x for pair in names.items() for x in pair),
                   "--home", str(tmp_path / "node")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"[ledger_bad_name] {option} «{name}» ") and "e.g. ledger." in err, err
    assert not (tmp_path / "node").exists()


@pytest.mark.parametrize(("names", "option"), [
    (["--origin", "ledger.mexicali.example/" + "x" * 105], "--origin"),
    # the witness's default name, the origin and "/witness", would be too long
    (["--origin", "ledger.mexicali.example/" + "x" * 100], "--witness-name"),
    (["--origin", "ledger.mexicali.example/v1", "--witness-name", "w" * 129], "--witness-name")])
def test_init_refuses_a_name_longer_than_the_records_hold(
        tmp_path: Path, names: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Signed-note sets no length, but a witness_cosignature record holds the log's and the
    witness's names: one accepted longer had every append refused once it was cosigned."""
    assert run_cli("init", *names, "--home", str(tmp_path / "node")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"[ledger_name_too_long] {option} «") and "128" in err, err
    assert not (tmp_path / "node").exists()


@pytest.mark.parametrize("option", ["--origin", "--witness-name"])
def test_init_refuses_a_name_pasted_with_its_line_end(
        tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A regular expression's ``$`` matches before a final newline: a name read with its line
    end passed the check, asked for the passphrase and left a database behind (an origin), or
    made a node whose witness key's name spans two lines (a witness name)."""
    names = {"--origin": "ledger.mexicali.example/v1"}
    names[option] = names.get(option, "ledger.mexicali.example/witness") + "\n"
    assert run_cli("init", *(x for pair in names.items() for x in pair),
                   "--home", str(tmp_path / "node")) == 2
    assert capsys.readouterr().err.startswith(f"[ledger_bad_name] {option} ")
    assert not (tmp_path / "node").exists()


def test_init_where_no_database_can_be_made_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its database file cannot be made (here a folder stands where it would go): a new node
    has nothing to restore, so not "if the file is damaged, restore it"."""
    (tmp_path / "node" / "ledger.db").mkdir(parents=True, mode=0o700)
    capsys.readouterr()
    assert run_cli("init", "--origin", "ledger.mexicali.example/v1",
                   "--home", str(tmp_path / "node")) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_database_cannot_create]"), err
    assert "restore" not in err and not (tmp_path / "node" / "ledger.json").exists()


def test_append_refusals_name_the_line_an_editor_shows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Blank lines counted: a reason not for the public record, a list number no passport can
    carry and a node-only type are each named by the file's line, not the entry's place."""
    home = tmp_path / "h"
    assert run_cli("init", "--origin", "ledger.test/lines", "--home", str(home)) == 0
    capsys.readouterr()
    notice = '{"type": "notice", "text": "uno"}\n\n'
    cases = {
        '{"type": "status_changed", "list": "MXMEX.1", "index": 5, "status": "revoked",'
        ' "reason": "deceased"}': "[ledger_reason_not_public] Línea 3: ",
        '{"type": "status_changed", "list": "MXMEX.4294967296", "index": 5,'
        ' "status": "revoked", "reason": "unspecified"}': "[ledger_bad_line] Línea 3: ",
        '{"type": "witness_cosignature", "origin": "o", "size": 1, "signature": "x"}':
            "[ledger_", }
    for line, start in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(notice + line + "\n")
        assert run_cli("append", "--file", str(bad), "--home", str(home)) == 1
        err = capsys.readouterr().err
        assert err.startswith(start) and "Line 3" in err and "entries[" not in err, err
    assert run_cli("audit", "--home", str(home)) == 0
    assert "ok: 0" in capsys.readouterr().out
