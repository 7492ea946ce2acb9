"""Several issuing offices in one city: one root, one bundle, each office its own key and status
lists (``issuer office add``, ``--office`` on issue, bulk and rotate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from credential.bundle import parse_bundle
from credential.keys import b64url
from issuer.store import IssuerStore
from tests.conftest import PASSPHRASE, Run
from tests.factory import EXAMPLES

CLAIMS = str(EXAMPLES / "claims-mexicali.json")


@pytest.fixture
def city(homes: dict[str, Path], passphrase: str, run: Run) -> Path:
    """Mexicali with two offices: Oficina Centro (from ``init``) and Oficina Norte."""
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
               "Oficina Centro", "--home", str(home))[0] == 0
    code, out, err = run("issuer", "office", "add", "--office", "Oficina Norte",
                         "--home", str(home))
    assert code == 0, err
    assert len(out.strip()) == 6  # the new key's kid
    return home


def _keys(run: Run, home: Path) -> list[dict[str, Any]]:
    code, out, _ = run("issuer", "keys", "--json", "--home", str(home))
    assert code == 0
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def _issue(run: Run, home: Path, out: Path, *office: str) -> str:
    code, stdout, err = run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out", str(out),
                            *office, "--home", str(home))
    assert code == 0, err
    return stdout.strip()


def _verify(run: Run, home: Path, tmp_path: Path, *credentials: Path) -> list[dict[str, Any]]:
    """Each credential as a counter with the city's root and a fresh bundle judges it."""
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    (tmp_path / "b.cbor").unlink(missing_ok=True)
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))[0] == 0
    results = []
    for credential in credentials:
        _, out, _ = run("verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
                        "--trust-root", str(tmp_path / "r.json"), "--text",
                        credential.read_text().strip(), "--json")
        results.append(json.loads(out))
    return results


def test_two_offices_issue_under_one_root_and_one_bundle(city: Path, tmp_path: Path,
                                                         run: Run) -> None:
    keys = _keys(run, city)
    assert [(k["office"], k["status"]) for k in keys] == [("Oficina Centro", "active"),
                                                          ("Oficina Norte", "active")]
    assert keys[0]["status_list"] != keys[1]["status_list"]
    centro = _issue(run, city, tmp_path / "centro.txt", "--office", "Oficina Centro")
    _issue(run, city, tmp_path / "norte.txt", "--office", "oficina norte")  # as a clerk types it

    results = _verify(run, city, tmp_path, tmp_path / "centro.txt", tmp_path / "norte.txt")
    assert [r["code"] for r in results] == ["accepted", "accepted"]
    assert [r["issuer"]["office"] for r in results] == ["Oficina Centro", "Oficina Norte"]
    assert {r["issuer"]["city"] for r in results} == {"Mexicali"}
    bundle = parse_bundle((tmp_path / "b.cbor").read_bytes(), [IssuerStore.open(city).root()])
    assert {k.office for k in bundle.keys} == {"Oficina Centro", "Oficina Norte"}
    assert {s.list_id for s in bundle.status_lists} == {k["status_list"] for k in keys}

    assert run("issuer", "revoke", centro, "--home", str(city))[0] == 0
    results = _verify(run, city, tmp_path, tmp_path / "centro.txt", tmp_path / "norte.txt")
    assert [r["code"] for r in results] == ["revoked", "accepted"]

    code, out, _ = run("issuer", "rotate", "--office", "Oficina Centro", "--home", str(city))
    assert code == 0
    keys = _keys(run, city)
    assert [(k["office"], k["status"]) for k in keys] == [
        ("Oficina Centro", "retired"), ("Oficina Norte", "active"), ("Oficina Centro", "active")]
    assert keys[2]["kid"] == out.strip()
    _issue(run, city, tmp_path / "norte2.txt", "--office", "Oficina Norte")
    _issue(run, city, tmp_path / "centro2.txt", "--office", "Oficina Centro")
    results = _verify(run, city, tmp_path, tmp_path / "norte.txt", tmp_path / "norte2.txt",
                      tmp_path / "centro2.txt")
    assert [r["code"] for r in results] == ["accepted", "accepted", "accepted"]
    assert [r["issuer"]["office"] for r in results] == ["Oficina Norte", "Oficina Norte",
                                                        "Oficina Centro"]


def test_which_office_signs_must_be_said_once_there_are_two(city: Path, tmp_path: Path,
                                                            run: Run) -> None:
    code, _, err = run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out",
                       str(tmp_path / "p.txt"), "--home", str(city))
    assert code == 2 and "[issuer_office_ambiguous]" in err
    assert "Oficina Centro, Oficina Norte" in err and "varias oficinas" in err
    assert not (tmp_path / "p.txt").exists()
    code, _, err = run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out",
                       str(tmp_path / "p.txt"), "--office", "Oficina Sur", "--home", str(city))
    # a name the city has no office by is refused as its state is (exit 1), as an unknown key or
    # credential is; no name where one is needed is the command's mistake (exit 2)
    assert code == 1 and "[issuer_office_unknown]" in err
    assert "Oficina Sur" in err and "Oficina Centro, Oficina Norte" in err
    assert "no tiene una oficina" in err
    code, _, err = run("issuer", "rotate", "--home", str(city))
    assert code == 2 and "[issuer_office_ambiguous]" in err
    code, _, err = run("issuer", "bulk", str(EXAMPLES / "residents-sample.csv"), "--out-dir",
                       str(tmp_path / "print"), "--home", str(city))
    assert code == 2 and "[issuer_office_ambiguous]" in err
    assert [k["status"] for k in _keys(run, city)] == ["active", "active"]  # nothing changed


def test_an_office_is_added_once(city: Path, run: Run) -> None:
    # another case, other spacing, an accent added or left out (a US keyboard): one office
    for name in ("Oficina Norte", "  oficina NORTE ", "Oficina  Nórte"):
        code, _, err = run("issuer", "office", "add", "--office", name, "--home", str(city))
        assert code == 1 and "[issuer_office_exists]" in err, err
        assert "«Oficina Norte» ya tiene llave" in err and "issuer rotate --office" in err
    code, _, err = run("issuer", "office", "add", "--office", " \t", "--home", str(city))
    assert code == 2 and "[issuer_name_invalid]" in err and "--office" in err
    assert len(_keys(run, city)) == 2


def test_a_name_typed_decomposed_is_kept_composed(tmp_path: Path, passphrase: str,
                                                  run: Run) -> None:
    """A macOS terminal types "Juárez" decomposed (NFD): the root file, every bundle and the
    public record spelled the city otherwise than the residents' claims (composed)."""
    import unicodedata

    home = tmp_path / "cj"
    city = unicodedata.normalize("NFD", "Ciudad Juárez")
    code, _, err = run("issuer", "init", "--city", city, "--country", "MX", "--office",
                       unicodedata.normalize("NFD", "Oficina Única"), "--home", str(home))
    assert code == 0, err
    assert run("issuer", "root", "--out", str(tmp_path / "root.json"), "--home", str(home))[0] == 0
    assert json.loads((tmp_path / "root.json").read_text())["city"] == "Ciudad Juárez"
    assert _keys(run, home)[0]["office"] == "Oficina Única"


def test_a_compromised_office_key_stops_only_its_office(city: Path, tmp_path: Path,
                                                        run: Run) -> None:
    norte = next(k["kid"] for k in _keys(run, city) if k["office"] == "Oficina Norte")
    assert run("issuer", "compromised", norte, "--since", "2026-01-01T00:00:00Z",
               "--home", str(city))[0] == 0
    code, _, err = run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out",
                       str(tmp_path / "n.txt"), "--office", "Oficina Norte", "--home", str(city))
    assert code == 1 and "[issuer_no_active_key]" in err
    assert "«Oficina Norte» no tiene llave activa" in err and "issuer rotate --office" in err
    # the one office left with an active key needs no --office
    _issue(run, city, tmp_path / "c.txt")
    assert _verify(run, city, tmp_path, tmp_path / "c.txt")[0]["issuer"]["office"] == (
        "Oficina Centro")
    # but rotate does: the office with an active key is not the one that needs a new one
    code, _, err = run("issuer", "rotate", "--home", str(city))
    assert code == 2 and "[issuer_office_ambiguous]" in err and "Oficina Norte" in err, err
    code, out, err = run("issuer", "rotate", "--office", "Oficina Norte", "--home", str(city))
    assert code == 0 and f"Oficina Norte: llave nueva / new key {out.strip()}" in err, err
    _issue(run, city, tmp_path / "n.txt", "--office", "Oficina Norte")
    assert [(k["office"], k["status"]) for k in _keys(run, city)] == [
        ("Oficina Centro", "active"), ("Oficina Norte", "compromised"),
        ("Oficina Norte", "active")]


def test_bulk_signs_with_the_office_named(city: Path, tmp_path: Path, run: Run) -> None:
    code, _, err = run("issuer", "bulk", str(EXAMPLES / "residents-sample.csv"), "--out-dir",
                       str(tmp_path / "print"), "--office", "Oficina Norte",
                       "--home", str(city))
    assert code == 0, err
    norte = next(k["kid"] for k in _keys(run, city) if k["office"] == "Oficina Norte")
    store = IssuerStore.open(city)
    ids = [line.split(",")[1] for line in
           (tmp_path / "print" / "index.csv").read_text().splitlines()[1:]]
    assert ids and all((store.credential(i) or {}).get("kid") == norte for i in ids)


def test_the_public_record_gets_each_office_key(city: Path, run: Run) -> None:
    """A new office registers its key and replaces none; a rotation replaces only its own."""
    store = IssuerStore.open(city)
    centro, norte = (k["kid"] for k in _keys(run, city))
    entries = [e for _, e in store.pending()]
    registered = [e for e in entries if e["type"] == "key_registered"]
    assert [(e["kid"], e["office"]) for e in registered] == [(centro, "Oficina Centro"),
                                                             (norte, "Oficina Norte")]
    assert not any(e["type"] == "key_rotated" for e in entries)
    new = store.add_office_key(PASSPHRASE, office="Oficina Norte")
    rotated = [e for _, e in store.pending() if e["type"] == "key_rotated"]
    assert [e["replaces"] for e in rotated] == [norte]
    assert store.offices() == ["Oficina Centro", "Oficina Norte"]
    assert store.office_signing_key(PASSPHRASE, office="Oficina Norte")[0] == new
    # compromised first (which retires it at once), then rotated: the record still says which
    # key took over from the compromised one
    code, _, err = run("issuer", "compromised", b64url(new), "--since", "2000-01-01T00:00:00Z",
                       "--home", str(city))
    assert code == 0, err
    newer = store.add_office_key(PASSPHRASE, office="Oficina Norte")
    rotated = [e for _, e in store.pending() if e["type"] == "key_rotated"]
    assert [(e["kid"], e["replaces"]) for e in rotated][-1] == (b64url(newer), b64url(new))


def test_a_restore_gives_every_office_a_new_key(city: Path, tmp_path: Path, run: Run) -> None:
    copy, restored = tmp_path / "city.bak", tmp_path / "restored"
    _issue(run, city, tmp_path / "centro.txt", "--office", "Oficina Centro")
    assert run("issuer", "backup", "--out", str(copy), "--home", str(city))[0] == 0
    before = {k["office"]: k["kid"] for k in _keys(run, city)}
    _issue(run, city, tmp_path / "norte.txt", "--office", "Oficina Norte")  # lost with it

    code, _, err = run("issuer", "restore", "--from", str(copy), "--home", str(restored))
    assert code == 0, err
    assert all(f"Key {kid} is marked compromised" in err for kid in before.values())
    keys = _keys(run, restored)
    assert sorted((k["office"], k["status"]) for k in keys) == [
        ("Oficina Centro", "active"), ("Oficina Centro", "compromised"),
        ("Oficina Norte", "active"), ("Oficina Norte", "compromised")]
    assert {k["kid"] for k in keys if k["status"] == "compromised"} == set(before.values())
    results = _verify(run, restored, tmp_path, tmp_path / "centro.txt", tmp_path / "norte.txt")
    assert [r["code"] for r in results] == ["accepted", "key_compromised"]
    _issue(run, restored, tmp_path / "again.txt", "--office", "Oficina Norte")
    results = _verify(run, restored, tmp_path, tmp_path / "again.txt")
    assert results[0]["code"] == "accepted"
    assert results[0]["issuer"]["office"] == "Oficina Norte"


@pytest.mark.parametrize("command", [["rotate"], ["issue", "--claims", CLAIMS, "--paper",
                                                  "--out", "{tmp}/p.txt"],
                                     ["bulk", str(EXAMPLES / "residents-sample.csv"),
                                      "--out-dir", "{tmp}/print"]])
def test_an_office_the_city_lacks_is_refused_as_its_state(city: Path, tmp_path: Path, run: Run,
                                                          command: list[str]) -> None:
    """Like an unknown key or credential: the store has no such office (exit 1, a
    ``StoreError``), not a command typed wrong; and nothing is changed."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    code, _, err = run("issuer", *args, "--office", "Oficina Sur", "--home", str(city))
    assert code == 1 and "[issuer_office_unknown]" in err, err
    assert [k["status"] for k in _keys(run, city)] == ["active", "active"]
    assert not (tmp_path / "p.txt").exists() and not (tmp_path / "print").exists()
