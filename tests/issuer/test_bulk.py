"""``issuer bulk``: the residents CSV shape, all-or-nothing validation, verified output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from issuer.store import IssuerStore
from tests.conftest import Run
from tests.factory import EXAMPLES

SAMPLE = EXAMPLES / "residents-sample.csv"


def _init(run: Run, home: Path) -> None:
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0


def test_sample_csv_issues_verifiable_paper_passports(homes: dict[str, Path], passphrase: str,
                                                      run: Run, tmp_path: Path) -> None:
    home = homes["issuer"]
    _init(run, home)
    out = tmp_path / "out"
    code, out_text, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--qr",
                            "--home", str(home))
    assert code == 0 and "3" in out_text, err
    index = list(csv.DictReader(io.StringIO((out / "index.csv").read_text())))
    assert [r["row"] for r in index] == ["2", "3", "4"]
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))
    for r in index:
        code, result, _ = run("verify", "--service", "library", "--bundle",
                              str(tmp_path / "b.cbor"), "--trust-root", str(tmp_path / "r.json"),
                              "--image", str(out / f"{r['credential_id']}.png"), "--json")
        assert code == 0 and json.loads(result)["paper"] is True
    names = {c["value"] for c in json.loads(result)["claims"] if c["claim"] == "given_name"}
    assert names == {"Chen"}  # accents and two family names survive the CSV path too


def test_one_bad_row_issues_nothing(homes: dict[str, Path], passphrase: str, run: Run,
                                    tmp_path: Path) -> None:
    home = homes["issuer"]
    _init(run, home)
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("1950-07-19", "1950-13-45")
    lines[3] = lines[3].replace("student", "vip")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(bad), "--out-dir", str(tmp_path / "o"),
                       "--home", str(home))
    assert code == 2 and "row 3" in err and "birth_date" in err  # every bad row is named
    assert "row 4" in err and "fare_category" in err and "row 2" not in err
    assert not (tmp_path / "o").exists()
    with IssuerStore.open(home).engine.connect() as db:
        from issuer.store import credentials

        assert db.execute(credentials.select()).first() is None


def test_missing_columns(homes: dict[str, Path], passphrase: str, run: Run,
                         tmp_path: Path) -> None:
    _init(run, homes["issuer"])
    (tmp_path / "x.csv").write_text("given_name,family_name\nA,B\n")
    code, _, err = run("issuer", "bulk", str(tmp_path / "x.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(homes["issuer"]))
    assert code == 2 and "birth_date" in err


def test_a_batch_larger_than_the_status_list_issues_nothing(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The room left in the status list is checked once, before the first row is signed."""
    home = homes["issuer"]
    _init(run, home)
    monkeypatch.setattr("issuer.store.LIST_CAPACITY", 2)  # the sample has 3 rows
    code, _, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(tmp_path / "out"),
                       "--home", str(home))
    assert code == 1 and "status_list_full" in err
    store = IssuerStore.open(home)
    assert [e["type"] for _, e in store.pending()] == ["key_registered"]  # no issuance
    assert not (tmp_path / "out" / "index.csv").exists()
