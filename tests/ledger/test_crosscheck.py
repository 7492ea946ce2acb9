"""``ledger check-bundle``: a city's trust bundle against the public record, from a real office."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from credential.bundle import RootKey, parse_bundle
from credential.keys import b64url
from issuer.store import IssuerStore
from ledger.crosscheck import check_bundle, read_public_record
from ledger.store import LedgerStore
from tests.conftest import Run
from tests.issuer.conftest import keys_made_on


@pytest.fixture
def office(homes: dict[str, Path], run: Run, tmp_path: Path) -> Path:
    """A real office (the ledger tests' passphrase is in the environment for both roles)."""
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    assert run("issuer", "root", "--out", str(tmp_path / "root.json"), "--home", str(home))[0] == 0
    return home


def _publish_queue(office: Path, store: LedgerStore) -> None:
    """What ``issuer publish`` sends over HTTP, appended directly."""
    issuer = IssuerStore.open(office)
    store.append([entry for _, entry in issuer.pending()], cosign=False)
    with issuer.engine.begin() as db:
        db.exec_driver_sql("UPDATE outbox SET sent = 1")


def _bundle(run: Run, office: Path, out: Path) -> Path:
    assert run("issuer", "bundle", "--out", str(out), "--home", str(office))[0] == 0
    return out


def test_bundle_matches_the_record_until_it_does_not(
        office: Path, home: Path, store: LedgerStore, run: Run, tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    first = _bundle(run, office, tmp_path / "b1.cbor")
    _publish_queue(office, store)
    code, out, _ = run("ledger", "check-bundle", "--bundle", str(first), "--trust-root",
                       str(root), "--home", str(home))
    assert code == 0 and out.startswith("ok: Mexicali v1: 1 llave(s)")

    # A new office key in a new bundle, neither yet on the record: both are named.
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    second = _bundle(run, office, tmp_path / "b2.cbor")
    roots = [RootKey.from_json(root.read_bytes())]
    bundle = parse_bundle(second.read_bytes(), roots)
    new_kid = b64url(bundle.keys[-1].kid)
    findings = check_bundle(bundle, second.read_bytes(), read_public_record(store))
    assert [f.code for f in findings] == ["ledger_bundle_unpublished",
                                          "ledger_bundle_key_unregistered"]
    assert findings[1].params["kid"] == new_kid
    code, out, err = run("ledger", "check-bundle", "--bundle", str(second), "--trust-root",
                         str(root), "--home", str(home))
    assert code == 1 and new_kid in out and "not registered" in out and "no está" in out
    assert err.startswith("[ledger_bundle_mismatch] 2 discrepancia(s)") and "2 discrepanc" in err

    _publish_queue(office, store)  # the office publishes: now it matches
    assert check_bundle(bundle, second.read_bytes(), read_public_record(store)) == []

    # The record says the key is compromised; a bundle that still trusts it is caught.
    store.append([{"type": "key_compromised", "kid": new_kid,
                   "effective": "2026-01-01T00:00:00Z"}], cosign=False)
    # And a second registration of the first kid under another public key.
    old_kid = b64url(bundle.keys[0].kid)
    store.append([{"type": "key_registered", "kid": old_kid, "public_key": b64url(bytes(32)),
                   "city": "Mexicali", "country": "MX", "office": "Intruso",
                   "valid_from": "2026-01-01T00:00:00Z",
                   "valid_until": "2027-01-01T00:00:00Z"}], cosign=False)
    findings = check_bundle(bundle, second.read_bytes(), read_public_record(store))
    assert sorted(f.code for f in findings) == ["ledger_bundle_compromise_ignored",
                                                "ledger_bundle_key_mismatch"]
    assert all(f.message["es"] and f.message["en"] for f in findings)


def test_a_bundle_from_an_untrusted_root_is_refused(
        office: Path, home: Path, run: Run, tmp_path: Path) -> None:
    bundle = _bundle(run, office, tmp_path / "b.cbor")
    other = tmp_path / "other-office"
    assert run("issuer", "init", "--city", "Calexico", "--country", "US", "--office", "Hall",
               "--home", str(other))[0] == 0
    assert run("issuer", "root", "--out", str(tmp_path / "other.json"),
               "--home", str(other))[0] == 0
    code, out, err = run("ledger", "check-bundle", "--bundle", str(bundle), "--trust-root",
                         str(tmp_path / "other.json"), "--home", str(home))
    assert code == 1 and err.startswith("[bundle_untrusted]"), err
    assert "ok:" not in out


def test_a_record_of_a_compromise_before_the_key_is_its_first_moment(
        office: Path, home: Path, store: LedgerStore, run: Run, tmp_path: Path) -> None:
    """An earlier release published "1900-01-01" as typed; bundles now carry the key's first
    moment for it, which refuses the same signatures: no finding (it was "the bundle does not
    mark the compromised key", for every bundle the city made from then on)."""
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    assert run("issuer", "compromised", kid, "--since", "1900-01-01T00:00:00Z",
               "--home", str(office))[0] == 0
    signed = _bundle(run, office, tmp_path / "b.cbor").read_bytes()
    _publish_queue(office, store)
    store.append([{"type": "key_compromised", "kid": kid,
                   "effective": "1900-01-01T00:00:00Z"}], cosign=False)
    bundle = parse_bundle(signed, [RootKey.from_json((tmp_path / "root.json").read_bytes())])
    assert check_bundle(bundle, signed, read_public_record(store)) == []


def test_the_earliest_compromise_on_the_record_counts(
        office: Path, home: Path, store: LedgerStore, run: Run, tmp_path: Path) -> None:
    """An office that learns later that its key leaked earlier publishes a second record with
    an earlier time: a bundle still carrying the first time passed (only the first record per
    key was read), and its counters accepted what was signed in between."""
    keys_made_on(office, "2025-01-01")
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    late, early = "2026-06-01T00:00:00Z", "2026-01-01T00:00:00Z"
    store.append([{"type": "key_compromised", "kid": kid, "effective": late}], cosign=False)
    store.append([{"type": "key_compromised", "kid": kid, "effective": early}], cosign=False)
    roots = [RootKey.from_json((tmp_path / "root.json").read_bytes())]
    for since, findings in ((late, ["ledger_bundle_compromise_ignored"]), (early, [])):
        assert run("issuer", "compromised", kid, "--since", since, "--home", str(office))[0] == 0
        signed = _bundle(run, office, tmp_path / f"b-{since[:7]}.cbor").read_bytes()
        _publish_queue(office, store)
        bundle = parse_bundle(signed, roots)
        found = check_bundle(bundle, signed, read_public_record(store))
        assert [f.code for f in found] == findings, since
        if found:
            assert found[0].params["index"] == read_public_record(store).compromised[kid][0]
