"""``wallet trust``: verified bundles name catalogue codes and vouch for issuers at import."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cbor2
import nacl.signing
import pytest

from credential import transport
from credential.claims import parse_claims
from credential.errors import MalformedInput, Rejection, StoreError, UsageError
from credential.passport import StatusRef, issue
from tests.factory import NOW, City, example_claims
from tests.wallet_cli.conftest import PASSPHRASE, Run
from wallet_cli.store import Wallet


def _issued_text(city: City, wallet: Wallet) -> str:
    """A credential for this wallet's key, with catalogue codes, as the office writes it."""
    return transport.pack(issue(parse_claims(example_claims()), key=city.office_key,
                                kid=city.kid, iss=city.code, holder_key=wallet.public_key,
                                status=StatusRef(1, 5), issued_at=NOW,
                                catalog=city.code_for).to_cbor())


def test_trusted_bundle_names_codes(wallet: Wallet) -> None:
    city = City()
    text = _issued_text(city, wallet)
    wallet.import_text(text)
    (entry,), _ = wallet.entries()
    assert entry.claims["residence"]["city"] == "#1"  # no bundle yet: the bare code
    kept = wallet.trust([city.bundle()], [city.root.to_json().encode()])
    assert kept == ["Mexicali (MXMEX) v1"]
    (entry,), _ = wallet.entries()
    assert entry.claims["residence"]["city"] == "Mexicali"
    assert entry.claims["library"]["system"] == "Bibliotecas Públicas de Mexicali"


def test_import_refuses_a_forged_issuer_signature(wallet: Wallet) -> None:
    city = City()
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    obj = cbor2.loads(transport.unpack(_issued_text(city, wallet)))
    obj[0][3] = bytes(64)  # a signature that is not the office's
    with pytest.raises(MalformedInput) as err:
        wallet.import_text(transport.pack(cbor2.dumps(obj)))
    assert err.value.code == "wallet_import_signature"


def test_trust_refuses_a_bundle_from_an_unknown_root(wallet: Wallet) -> None:
    with pytest.raises(Rejection) as err:
        wallet.trust([City().bundle()], [City().root.to_json().encode()])
    assert err.value.code == "wallet_trust_untrusted"
    assert "counter" not in err.value.message["en"]  # the wallet's words, not a counter's
    assert wallet.trusted_bundles() == {} and not list(wallet.trust_dir.glob("*"))


def test_another_root_for_a_trusted_code_is_refused(wallet: Wallet) -> None:
    city, impostor = City(), City()  # both MXMEX, different root keys
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    with pytest.raises(UsageError) as err:
        wallet.trust([impostor.bundle(version=9)], [impostor.root.to_json().encode()])
    assert err.value.code == "roots_conflict"
    assert wallet.trusted_bundles()["MXMEX"].version == 1


def test_older_bundle_does_not_replace_newer(wallet: Wallet) -> None:
    city = City()
    root = [city.root.to_json().encode()]
    assert wallet.trust([city.bundle(version=3)], root)
    assert wallet.trust([city.bundle(version=2)], root) == []
    assert wallet.trusted_bundles()["MXMEX"].version == 3


def test_trust_command(run: Run, wallet_home: Path, tmp_path: Path) -> None:
    city = City()
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    result = run("wallet", "trust", "--bundle", tmp_path / "b.cbor",
                 "--trust-root", tmp_path / "r.json", "--home", wallet_home)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Mexicali (MXMEX) v1\n"  # one line per bundle kept, for scripts
    kept = Wallet.open(wallet_home).trusted_bundles()
    assert list(kept) == ["MXMEX"] and kept["MXMEX"].version == 1
    assert (wallet_home / "trust" / "MXMEX.bundle").read_bytes() == city.bundle()


@pytest.mark.parametrize("broken", ["root", "bundle"])
def test_a_broken_file_to_trust_is_a_usage_error_as_at_a_counter(
        run: Run, wallet_home: Path, tmp_path: Path, broken: str) -> None:
    """A root or bundle file that is not one is a mistake in what was given (exit 2), as
    ``verify`` says of the same files, and nothing is trusted."""
    city = City()
    (tmp_path / "r.json").write_text("{}" if broken == "root" else city.root.to_json())
    (tmp_path / "b.cbor").write_bytes(b"\xa0" if broken == "bundle" else city.bundle())
    result = run("wallet", "trust", "--bundle", tmp_path / "b.cbor",
                 "--trust-root", tmp_path / "r.json", "--home", wallet_home)
    assert isinstance(result.exception, UsageError), result.exception
    assert result.exception.code == f"wallet_trust_{broken}_invalid"
    named = tmp_path / ("r.json" if broken == "root" else "b.cbor")
    assert str(named) in result.exception.message["es"]  # which file it was, and why
    assert ("not a city root file" if broken == "root" else "not a COSE_Sign1") in str(
        result.exception)
    assert Wallet.open(wallet_home).trusted_bundles() == {}


def test_trust_does_not_read_an_oversized_file(run: Run, wallet_home: Path,
                                               tmp_path: Path) -> None:
    """A resident pointing at the wrong file (a video, a disk image): a clear error naming it,
    nothing read beyond the limit (the file is sparse: 1 GB that takes no disk), nothing trusted."""
    city = City()
    (tmp_path / "r.json").write_text(city.root.to_json())
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as fh:
        fh.truncate(2**30)
    result = run("wallet", "trust", "--bundle", huge, "--trust-root", tmp_path / "r.json",
                 "--home", wallet_home)
    assert isinstance(result.exception, UsageError)  # exit 2 through the console script
    assert result.exception.code == "file_too_large" and "huge.bin" in str(result.exception)
    assert Wallet.open(wallet_home).trusted_bundles() == {}


def test_a_trusted_bundle_tells_the_resident_of_a_revocation_or_suspension(
        wallet: Wallet) -> None:
    city = City()
    root = [city.root.to_json().encode()]
    wallet.import_text(_issued_text(city, wallet))  # status list 1, index 5
    wallet.trust([city.bundle()], root)
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "valid"
    city.suspension.set(5, True)
    wallet.trust([city.bundle(version=2)], root)
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "suspended"
    city.revocation.set(5, True)
    wallet.trust([city.bundle(version=3)], root)
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "revoked"
    shown = wallet.present(entry.id.lower(), service="library", passphrase=PASSPHRASE, now=NOW)
    assert shown.status == "revoked"  # made all the same (the CLI warns): the counter decides


def test_a_trusted_bundle_tells_the_resident_of_a_compromised_office_key(
        wallet: Wallet) -> None:
    """A passport signed at or after its office key's compromise time is refused at every
    counter: the wallet says so too, rather than "valid"."""
    city = City()
    root = [city.root.to_json().encode()]
    wallet.import_text(_issued_text(city, wallet))  # signed at NOW
    city.compromised_since = NOW + 1  # the leak began after it was signed: still good
    wallet.trust([city.bundle()], root)
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "valid"
    city.compromised_since = NOW
    wallet.trust([city.bundle(version=2)], root)
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "key_compromised"
    shown = wallet.present(entry.id, service="library", passphrase=PASSPHRASE, now=NOW)
    assert shown.status == "key_compromised"
    verdict = city.verifier().verify(shown.text, service="library", now=NOW)
    assert verdict.code == "key_compromised"  # as the counter decides


def test_trusting_an_older_bundle_says_so(run: Run, wallet_home: Path, tmp_path: Path) -> None:
    city = City()
    (tmp_path / "r.json").write_text(city.root.to_json())
    for version in (3, 2):
        (tmp_path / f"v{version}.cbor").write_bytes(city.bundle(version=version))
    newer = run("wallet", "trust", "--bundle", tmp_path / "v3.cbor",
                "--trust-root", tmp_path / "r.json", "--home", wallet_home)
    assert newer.exit_code == 0 and "[wallet_trust_older]" not in newer.stderr
    older = run("wallet", "trust", "--bundle", tmp_path / "v2.cbor",
                "--trust-root", tmp_path / "r.json", "--home", wallet_home)
    assert older.exit_code == 0 and older.stdout == ""
    assert "[wallet_trust_older]" in older.stderr
    assert "v3" in older.stderr and "v2" in older.stderr
    assert "se conserva" in older.stderr.lower() and "kept" in older.stderr.lower()
    assert Wallet.open(wallet_home).trusted_bundles()["MXMEX"].version == 3



def test_two_versions_of_one_city_in_one_call_list_the_kept_one_only(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """v1 then v3 given together: both were listed as trusted, though only v3 was stored."""
    city = City()
    (tmp_path / "r.json").write_text(city.root.to_json())
    for version in (1, 3):
        (tmp_path / f"v{version}.cbor").write_bytes(city.bundle(version=version))
    both = run("wallet", "trust", "--bundle", tmp_path / "v1.cbor", "--bundle",
               tmp_path / "v3.cbor", "--trust-root", tmp_path / "r.json", "--home", wallet_home)
    assert both.exit_code == 0, both.output
    assert both.stdout.splitlines() == [line for line in both.stdout.splitlines() if "v3" in line]
    assert len(both.stdout.splitlines()) == 1 and "[wallet_trust_older]" in both.stderr
    assert Wallet.open(wallet_home).trusted_bundles()["MXMEX"].version == 3


def test_concurrent_trusts_keep_the_newest(wallet_home: Path, tmp_path: Path) -> None:
    """One ``wallet trust`` storing a long run of versions while another stores a newer one:
    whatever the interleaving, the newest version is the one kept."""
    city = City()
    (tmp_path / "r.json").write_text(city.root.to_json())
    many = []
    for version in range(1, 151):
        many += ["--bundle", str(tmp_path / f"v{version}.cbor")]
        (tmp_path / f"v{version}.cbor").write_bytes(city.bundle(version=version))
    (tmp_path / "newest.cbor").write_bytes(city.bundle(version=1000))
    env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE}
    common = ["--trust-root", str(tmp_path / "r.json"), "--home", str(wallet_home)]
    for _ in range(3):  # an interleaving that loses the newest need not happen every time
        shutil.rmtree(wallet_home / "trust", ignore_errors=True)
        procs = [subprocess.Popen([sys.executable, "-m", "pasaporte", "wallet", "trust", *args,
                                   *common], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
                 for args in (many, ["--bundle", str(tmp_path / "newest.cbor")])]
        errors = [p.communicate(timeout=120)[1] for p in procs]  # both ended before any check
        assert [p.returncode for p in procs] == [0, 0], errors
        assert Wallet.open(wallet_home).trusted_bundles()["MXMEX"].version == 1000


def test_a_passport_imported_before_its_city_was_trusted_is_checked_once_it_is(
        wallet: Wallet) -> None:
    """Imported with nothing to check its signature against (as documented), a forged one
    shows as the counter would answer once the city is trusted: not valid."""
    city = City()
    obj = cbor2.loads(transport.unpack(_issued_text(city, wallet)))
    obj[0][3] = bytes(64)  # a signature that is not the office's
    wallet.import_text(transport.pack(cbor2.dumps(obj)))
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "valid"  # nothing to say otherwise yet
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "signature_invalid"
    shown = wallet.present(entry.id, service="library", passphrase=PASSPHRASE, now=NOW)
    assert shown.status == "signature_invalid"


def test_a_passport_by_a_key_the_trusted_bundle_does_not_list_is_not_called_valid(
        wallet: Wallet) -> None:
    """Anyone can make an office under a city's code: its passport, imported before the city
    was trusted, is by a key the city's bundle does not list, and every counter holding that
    bundle refuses it (issuer_unknown). Once the city is trusted, the wallet says so."""
    city, forger = City(), City()  # both MXMEX, different keys
    wallet.import_text(_issued_text(forger, wallet))
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    (entry,), _ = wallet.entries(now=NOW)
    assert entry.status == "key_unknown"
    shown = wallet.present(entry.id, service="library", passphrase=PASSPHRASE, now=NOW)
    assert shown.status == "key_unknown"


@pytest.mark.parametrize("damage", ["truncated bundle", "another city's root", "no bundle",
                                    "no root", "a status list damaged"])
def test_a_damaged_trust_file_is_named_not_taken_for_no_news(
        run: Run, wallet_home: Path, tmp_path: Path, damage: str) -> None:
    """A trusted bundle cut short, or a root swapped: that city's revocations no longer
    show; ``list`` and ``present`` say which file and what to do, not "valid" in silence. A
    root whose bundle is not there (a ``trust`` interrupted between the two) is said as that:
    a bundle missing, not a file "damaged" that the resident cannot find."""
    wallet = Wallet.open(wallet_home)
    city = City()
    wallet.import_text(_issued_text(city, wallet))
    city.revocation.set(5, True)
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    assert wallet.entries(now=NOW)[0][0].status == "revoked" and wallet.trust_problems() == []
    bundle, root = wallet.trust_dir / "MXMEX.bundle", wallet.trust_dir / "MXMEX.root.json"
    if damage == "truncated bundle":
        bundle.write_bytes(bundle.read_bytes()[:50])
    elif damage == "another city's root":
        root.write_text(City().root.to_json())
    elif damage == "no bundle":
        bundle.unlink()
    elif damage == "a status list damaged":  # kept by a release that did not inflate lists
        bundle.write_bytes(city.bundle_with_damaged_list())
    else:  # a partial copy of the folder: the bundle alone was ignored, revocations and all
        root.unlink()
    said = "wallet_trust_bundle_missing" if damage == "no bundle" else "wallet_trust_damaged"
    assert [p.code for p in wallet.trust_problems()] == [said]
    listed = run("wallet", "list", "--home", wallet_home)
    assert listed.exit_code == 0, listed.output
    assert f"[{said}]" in listed.stderr and "wallet trust" in listed.stderr
    assert "MXMEX." in listed.stderr
    shown = run("wallet", "present", wallet.ids()[0], "--for", "library", "--home", wallet_home)
    assert shown.exit_code == 0 and f"[{said}]" in shown.stderr, shown.output


def test_a_bundle_whose_status_list_is_damaged_is_not_trusted(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """Signed as it is by a city whose software got the format wrong: taken (exit 0), then
    every "wallet list" failed, the resident's other cities' passports hidden too. A counter
    refuses it as it loads it; the wallet now refuses it as it is given, naming the file."""
    city = City()
    (tmp_path / "b.cbor").write_bytes(city.bundle_with_damaged_list())
    (tmp_path / "r.json").write_text(city.root.to_json())
    result = run("wallet", "trust", "--bundle", tmp_path / "b.cbor", "--trust-root",
                 tmp_path / "r.json", "--home", wallet_home)
    assert isinstance(result.exception, UsageError), result.output
    assert result.exception.code == "wallet_trust_bundle_invalid"
    assert "b.cbor" in result.exception.message["es"]
    assert "b.cbor" in result.exception.message["en"]
    assert not Wallet.open(wallet_home).trust_dir.exists() or not any(
        Wallet.open(wallet_home).trust_dir.iterdir())


def test_a_trust_folder_that_is_a_file_is_named(run: Run, wallet_home: Path) -> None:
    wallet = Wallet.open(wallet_home)
    city = City()
    wallet.import_text(_issued_text(city, wallet))
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    shutil.rmtree(wallet.trust_dir)
    wallet.trust_dir.write_bytes(b"")
    [problem] = wallet.trust_problems()
    assert problem.code == "wallet_trust_damaged"
    assert str(wallet.trust_dir) in problem.message["en"]
    listed = run("wallet", "list", "--home", wallet_home)
    assert listed.exit_code == 0 and "[wallet_trust_damaged]" in listed.stderr, listed.output


def test_a_signature_that_does_not_verify_says_the_copy_may_be_damaged(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """What mends a damaged copy is the office's file imported again; "ask for a new one"
    alone sent the resident to the office for nothing."""
    wallet = Wallet.open(wallet_home)
    city = City()
    obj = cbor2.loads(transport.unpack(_issued_text(city, wallet)))
    obj[0][3] = bytes(64)
    wallet.import_text(transport.pack(cbor2.dumps(obj)))  # before the city was trusted
    wallet.trust([city.bundle()], [city.root.to_json().encode()])
    listed = run("wallet", "list", "--home", wallet_home)
    assert listed.exit_code == 0, listed.output
    assert "la copia guardada puede estar dañada" in listed.stdout
    assert "importe de nuevo el archivo que le dio la oficina" in listed.stdout
    assert "the stored copy may be damaged" in listed.stdout
    assert "import again the file the office gave you" in listed.stdout


def test_a_key_newer_than_the_trusted_bundle_is_not_called_a_bad_signature(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """After the city renewed its office key (or added an office), a genuine passport was
    refused as "the issuing office's signature is not valid" by a wallet holding the city's
    older bundle; a newer bundle is what it needs."""
    wallet = Wallet.open(wallet_home)
    city = City()
    root = [city.root.to_json().encode()]
    wallet.trust([city.bundle()], root)
    rotated = dataclasses.replace(city, office_key=nacl.signing.SigningKey.generate())
    file = tmp_path / "m.cred"
    file.write_text(_issued_text(rotated, wallet), "utf-8")
    refused = run("wallet", "import", file, "--home", wallet_home)
    assert isinstance(refused.exception, StoreError), refused.output
    assert refused.exception.code == "wallet_import_key_unknown" and refused.stdout == ""
    message = refused.exception.message
    assert "Mexicali" in message["en"] and "version 1" in message["en"]
    assert "versión 1" in message["es"]
    assert "pasaporte wallet trust" in message["en"] and "pasaporte wallet trust" in message["es"]
    assert "not valid" not in message["en"] and wallet.ids() == []
    wallet.trust([rotated.bundle(version=2)], root)  # the city's current bundle
    imported = run("wallet", "import", file, "--home", wallet_home)
    assert imported.exit_code == 0 and "Importado / Imported" in imported.stderr


def test_one_bad_bundle_among_several_stores_none_and_is_named(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    """The first bundle was stored, then the second refused, and the command said it failed
    (exit 2): a state neither run claimed. The refusal names the bundle, in the wallet's words."""
    cities = {"mxl": City(), "tij": City(city="Tijuana", code="MXTIJ"),
              "cxl": City(city="Calexico", country="US", code="USCXL")}
    for name, city in cities.items():
        (tmp_path / f"b-{name}.cbor").write_bytes(city.bundle())
        (tmp_path / f"r-{name}.json").write_text(city.root.to_json())
    result = run("wallet", "trust", "--bundle", tmp_path / "b-mxl.cbor",
                 "--bundle", tmp_path / "b-tij.cbor", "--bundle", tmp_path / "b-cxl.cbor",
                 "--trust-root", tmp_path / "r-mxl.json", "--trust-root", tmp_path / "r-cxl.json",
                 "--home", wallet_home)  # no root for Tijuana
    assert isinstance(result.exception, UsageError), result.output
    assert result.exception.code == "wallet_trust_untrusted" and result.stdout == ""
    message = result.exception.message
    assert str(tmp_path / "b-tij.cbor") in message["es"] and "--trust-root" in message["en"]
    assert "counter" not in message["en"] and "ventanilla" not in message["es"]
    assert Wallet.open(wallet_home).trusted_bundles() == {}
    assert not (wallet_home / "trust").exists() or not list((wallet_home / "trust").iterdir())
    # given its root, all three are stored
    done = run("wallet", "trust", "--bundle", tmp_path / "b-mxl.cbor",
               "--bundle", tmp_path / "b-tij.cbor", "--bundle", tmp_path / "b-cxl.cbor",
               *(a for n in cities for a in ("--trust-root", str(tmp_path / f"r-{n}.json"))),
               "--home", wallet_home)
    assert done.exit_code == 0, done.output
    assert sorted(Wallet.open(wallet_home).trusted_bundles()) == ["MXMEX", "MXTIJ", "USCXL"]
