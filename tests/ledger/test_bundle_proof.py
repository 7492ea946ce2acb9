"""``ledger prove-bundle`` on a real node witnessed by the other city's, and a counter
(``pasaporte verify``) that trusts only bundles proven to be on the public record."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from credential.errors import LedgerError
from credential.keys import b64url
from ledger.bundleproof import prove_bundle_remote
from ledger.http import create_app
from ledger.store import LedgerStore
from pasaporte.cli import main
from tests.factory import EXAMPLES, City, example_claims
from tests.ledger.conftest import PASSPHRASE, init_home, run_cli
from tests.ledger.helpers import commitment
from tests.ledger.test_network import _post_entries, cities

__all__ = ["cities"]  # the two-city fixture, used here too


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", "--service", "library", *args])
    out, err = capsys.readouterr()
    return code, out + err


def test_a_counter_trusts_only_bundles_on_the_record(
        cities: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    city = City()
    bundle, unpublished = tmp_path / "b.cbor", tmp_path / "other.cbor"
    bundle.write_bytes(city.bundle())
    unpublished.write_bytes(city.bundle(version=2))  # signed by the city, never logged
    (tmp_path / "r.json").write_text(city.root.to_json())
    credential = city.issue_text(None, example_claims())
    _post_entries(cities["sa"].url, cities["token"], [{
        "type": "bundle_published", "city": city.city, "version": 1,
        "digest": b64url(hashlib.sha256(bundle.read_bytes()).digest())}])

    proof = tmp_path / "b.proof"
    capsys.readouterr()
    assert run_cli("prove-bundle", "--bundle", str(bundle), "--out", str(proof),
                   "--home", str(cities["a"])) == 0
    assert "ledger_proof_uncosigned" not in capsys.readouterr().err  # the other city cosigned
    assert json.loads(proof.read_text())["type"] == "pasaporte-bundle-proof/1"
    assert proof.stat().st_mode & 0o777 == 0o644  # public, for counters, as the bundle is
    capsys.readouterr()
    assert run_cli("prove-bundle", "--bundle", str(unpublished), "--out",
                   str(tmp_path / "x.proof"), "--home", str(cities["a"])) == 1
    assert capsys.readouterr().err.startswith("[ledger_bundle_not_found]")
    assert not (tmp_path / "x.proof").exists()

    keys = ["--log-key", cities["ca"].log_vkey, "--witness-key", cities["cb"].witness_vkey]
    common = ["--trust-root", str(tmp_path / "r.json"), "--text", credential, "--json"]
    code, out = _verify(capsys, "--bundle", str(bundle), "--bundle-proof", str(proof), *keys,
                        *common)
    assert code == 0, out
    # no proof; a proof of another bundle; keys that do not match; no witness key
    code, out = _verify(capsys, "--bundle", str(bundle), *keys, *common)
    assert code == 2 and "bundle_not_logged" in out
    code, out = _verify(capsys, "--bundle", str(unpublished), "--bundle-proof", str(proof),
                        *keys, *common)
    assert code == 2 and "bundle_not_logged" in out
    assert f"«{unpublished}»" in out and f"“{unpublished}”" in out  # named by its file
    code, out = _verify(capsys, "--bundle", str(bundle), "--bundle-proof", str(proof),
                        "--log-key", cities["cb"].log_vkey, "--witness-key",
                        cities["cb"].witness_vkey, *common)
    assert code == 2 and "bundle_log_unknown" in out
    code, out = _verify(capsys, "--bundle", str(bundle), "--bundle-proof", str(proof),
                        "--log-key", cities["ca"].log_vkey, *common)
    assert code == 2 and "--witness-key" in out
    # the log's own witness key is not the other city's: said as that (it does not count for
    # its own log), not as cosignatures missing from a proof that has them
    code, out = _verify(capsys, "--bundle", str(bundle), "--bundle-proof", str(proof),
                        "--log-key", cities["ca"].log_vkey, "--witness-key",
                        cities["ca"].witness_vkey, *common)
    assert code == 2 and "[bundle_witness_is_own]" in out
    # a tampered proof file
    doc = json.loads(proof.read_text())
    doc["index"] += 1
    (tmp_path / "bad.proof").write_text(json.dumps(doc))
    code, out = _verify(capsys, "--bundle", str(bundle), "--bundle-proof",
                        str(tmp_path / "bad.proof"), *keys, *common)
    assert code == 2 and "bundle_proof_invalid" in out and "Traceback" not in out
    # the same proof put together from the node's public API, by anyone, without a mirror
    remote = tmp_path / "remote.proof"
    assert run_cli("prove-bundle", "--bundle", str(bundle), "--out", str(remote),
                   "--from", cities["sa"].url) == 0
    assert json.loads(remote.read_text())["record"] == json.loads(proof.read_text())["record"]
    code, out = _verify(capsys, "--bundle", str(bundle), "--bundle-proof", str(remote), *keys,
                        *common)
    assert code == 0, out
    capsys.readouterr()
    assert run_cli("prove-bundle", "--bundle", str(unpublished), "--out", str(tmp_path / "y"),
                   "--from", cities["sa"].url) == 1
    assert capsys.readouterr().err.startswith("[ledger_bundle_not_found]")
    assert not (tmp_path / "y").exists()
    # without --log-key the counter works as before (roots only)
    code, out = _verify(capsys, "--bundle", str(bundle), *common)
    assert code == 0, out

    # A resident's wallet can hold the same line: it trusts only the published bundle.
    wallet = ["--home", str(tmp_path / "wallet")]
    assert main(["wallet", "init", *wallet]) == 0
    trust = ["wallet", "trust", "--trust-root", str(tmp_path / "r.json"), *keys, *wallet]
    assert main([*trust, "--bundle", str(unpublished), "--bundle-proof", str(proof)]) == 2
    assert "bundle_not_logged" in capsys.readouterr().err
    assert main([*trust, "--bundle", str(bundle), "--bundle-proof", str(proof)]) == 0
    assert "v1" in capsys.readouterr().out


def test_an_office_writes_the_proof_with_its_bundle(
        cities: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    office = ["--home", str(tmp_path / "office")]
    assert main(["issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
                 *office]) == 0
    code = main(["issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--proof",
                 str(tmp_path / "b.proof"), *office])
    assert code == 2 and "--proof" in capsys.readouterr().err  # no ledger to prove it on
    assert main(["issuer", "ledger", "--url", cities["sa"].url, "--token", cities["token"],
                 *office]) == 0
    assert main(["issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                 "--paper", "--out", str(tmp_path / "p.cred"), *office]) == 0
    assert main(["issuer", "root", "--out", str(tmp_path / "r.json"), *office]) == 0
    assert main(["issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--proof",
                 str(tmp_path / "b.proof"), *office]) == 0
    assert "Warning" not in capsys.readouterr().err  # cosigned by the other city at once
    code, out = _verify(capsys, "--bundle", str(tmp_path / "b.cbor"), "--trust-root",
                        str(tmp_path / "r.json"), "--bundle-proof", str(tmp_path / "b.proof"),
                        "--log-key", cities["ca"].log_vkey, "--witness-key",
                        cities["cb"].witness_vkey, "--text",
                        (tmp_path / "p.cred").read_text().strip())
    assert code == 0, out


def test_prove_bundle_reads_a_node_that_pages_by_fewer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another node (or another version of this one) may serve fewer records per page than we
    ask for: the search reads each window whole, and finds a bundle wherever it sits."""
    home = tmp_path / "log"
    init_home(home, "ledger.pages.example/log")
    city = City()
    signed = city.bundle()
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        store.append([commitment(j) for j in range(4)])
        store.append([{"type": "bundle_published", "city": city.city, "version": 1,
                       "digest": b64url(hashlib.sha256(signed).digest())}])
        store.append([commitment(10 + j) for j in range(6)])
        monkeypatch.setattr("ledger.http.MAX_PAGE", 3)  # the node's pages; ours stay wide
        server = make_server("127.0.0.1", 0, create_app(store=store), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            proof, size, _ = prove_bundle_remote(f"http://127.0.0.1:{server.server_port}",
                                                 signed)
        finally:
            server.shutdown()
            thread.join()
        assert (proof.index, size) == (4, store.size())


def test_prove_bundle_refuses_a_node_whose_proof_does_not_verify(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node answering with a proof of another tree: the proof is not written (every counter
    would refuse it), and the error says which node."""
    home = tmp_path / "log"
    init_home(home, "ledger.liar.example/log")
    city = City()
    signed = city.bundle()
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        store.append([commitment(j) for j in range(5)])
        store.append([{"type": "bundle_published", "city": city.city, "version": 1,
                       "digest": b64url(hashlib.sha256(signed).digest())}])
        store.append([commitment(10 + j) for j in range(3)])
        honest = store.inclusion_proof
        monkeypatch.setattr(store, "inclusion_proof", lambda index, size: [
            bytes(32), *honest(index, size)[1:]])
        server = make_server("127.0.0.1", 0, create_app(store=store), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}"
        try:
            with pytest.raises(LedgerError) as caught:
                prove_bundle_remote(url, signed)
        finally:
            server.shutdown()
            thread.join()
    assert caught.value.code == "ledger_remote_error"
    assert url in caught.value.message["en"] and "bad proof" in caught.value.message["en"]


def test_a_proof_never_replaces_the_log_or_its_keys(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``--out <home>/ledger.db`` swapped a city's whole public log for a small JSON proof (and
    ``log.key`` its sealed key), and said "ok"."""
    home, elsewhere = tmp_path / "node", tmp_path / "elsewhere"
    init_home(home)
    elsewhere.mkdir()
    outside = f"sqlite:///{elsewhere / 'log.db'}"
    init_home(tmp_path / "other", db=outside)
    bundle = tmp_path / "b.cbor"
    bundle.write_bytes(City().bundle())
    before = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()}
    for name in ("ledger.db", "log.key", "new.json"):
        capsys.readouterr()
        assert run_cli("prove-bundle", "--bundle", str(bundle), "--out", str(home / name),
                       "--home", str(home)) == 2
        assert capsys.readouterr().err.startswith("[output_in_home] --out ")
    assert {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()} == before
    # the log's database where --db put it, outside the home: not replaced either
    kept = (elsewhere / "log.db").read_bytes()
    assert run_cli("prove-bundle", "--bundle", str(bundle), "--out", str(elsewhere / "log.db"),
                   "--home", str(tmp_path / "other"), "--db", outside) == 2
    assert capsys.readouterr().err.startswith("[output_same_file] --out / --db ")
    assert (elsewhere / "log.db").read_bytes() == kept
