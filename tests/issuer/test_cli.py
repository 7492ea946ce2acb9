"""``pasaporte issuer`` end to end in a temporary home, verified by ``pasaporte verify``."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import nacl.signing
import pytest
import sqlalchemy as sa

from credential import transport
from credential.bundle import parse_bundle
from credential.claims import parse_claims
from credential.home import StagedFile
from credential.keys import b64url
from credential.passport import decode_text, present
from issuer.store import KEY_YEARS, IssuerStore, MadeBundle, credentials, keys
from tests.conftest import Run
from tests.factory import EXAMPLES, at, day, example_claims
from tests.issuer.conftest import after_notices, keys_made_on

KEY_SPAN = KEY_YEARS * 365 * 86400 + 86400  # an office key's whole life, and a day


@pytest.fixture
def office(homes: dict[str, Path], passphrase: str, run: Run) -> Path:
    home = homes["issuer"]
    code, out, _ = run("issuer", "init", "--city", "Mexicali", "--country", "MX",
                       "--office", "Oficina Centro", "--home", str(home))
    assert code == 0 and "MXMEX" in out
    return home


def test_an_office_made_without_a_zone_can_be_given_one(homes: dict[str, Path], passphrase: str,
                                                      tmp_path: Path, run: Run,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The notice after ``init`` pointed at ``--timezone``, which only ``init`` takes, and
    ``init`` again is refused (``issuer_exists``): an office's passports ended at 16:00 local
    for its whole life."""
    home = tmp_path / "utc"
    code, _, err = run("issuer", "init", "--city", "Tecate", "--country", "MX", "--office",
                       "Centro", "--home", str(home))
    assert code == 0 and "pasaporte issuer timezone" in err, err
    claims = str(EXAMPLES / "claims-mexicali.json")
    early = run("issuer", "issue", "--claims", claims, "--paper", "--out",
                str(tmp_path / "a.txt"), "--home", str(home))[1].strip()
    assert run("issuer", "timezone", "--home", str(home))[1] == "UTC\n"
    code, _, err = run("issuer", "timezone", "America/Mexicali", "--home", str(home))
    assert code == 2 and "[timezone_unknown]" in err
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "not the passphrase")
    code, _, err = run("issuer", "timezone", "America/Tijuana", "--home", str(home))
    assert code == 1 and "[passphrase_wrong]" in err, err
    assert run("issuer", "timezone", "--home", str(home))[1] == "UTC\n"  # nothing changed
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", passphrase)
    code, out, err = run("issuer", "timezone", "America/Tijuana", "--home", str(home))
    assert code == 0 and "UTC → America/Tijuana" in out, err
    assert run("issuer", "timezone", "--home", str(home))[1] == "America/Tijuana\n"
    later = run("issuer", "issue", "--claims", claims, "--paper", "--out",
                str(tmp_path / "b.txt"), "--home", str(home))[1].strip()
    ends = {p: decode_text((tmp_path / p).read_text().strip()).payload.exp
            for p in ("a.txt", "b.txt")}
    assert ends["b.txt"] - ends["a.txt"] == 8 * 3600  # midnight in Tecate (PST), not UTC
    store = IssuerStore.open(home)  # what was issued keeps its own last day
    assert store.credential(early)["last_day"] == store.credential(later)["last_day"]  # type: ignore[index]


def test_a_passport_is_valid_until_midnight_in_its_office_zone(homes: dict[str, Path],
                                                               passphrase: str, tmp_path: Path,
                                                               run: Run) -> None:
    home = homes["issuer"]
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--timezone", "America/Mexicali", "--home", str(home))
    assert code == 2 and "[timezone_unknown]" in err and "America/Tijuana" in err
    assert not (home / "issuer.db").exists()
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--timezone", "America/Tijuana", "--home", str(home))
    assert code == 0 and "[issuer_timezone_utc]" not in err, err
    code, _, err = run("issuer", "init", "--city", "Tecate", "--country", "MX", "--office",
                       "Centro", "--home", str(tmp_path / "utc"))
    assert code == 0 and "[issuer_timezone_utc]" in err, err  # a code, as every notice has
    cred_id = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                  "--paper", "--out", str(tmp_path / "p.txt"), "--home", str(home))[1].strip()
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))
    counter = ["verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
               "--trust-root", str(tmp_path / "r.json"), "--text",
               (tmp_path / "p.txt").read_text().strip(), "--json"]
    # the example's last day (2029-11-21 as written): all of it, in Mexicali (PST, UTC−8)
    first, last = (date.fromisoformat(example_claims()[k]) for k in ("valid_from", "valid_until"))
    code, out, _ = run(*counter, "--at", f"{last}T23:59:00-08:00")
    assert code == 0, out
    after = last + timedelta(days=1)
    code, out, _ = run(*counter, "--at", f"{after}T00:10:00-08:00")  # past the 5 min skew
    assert code == 1 and json.loads(out)["code"] == "expired"
    assert str(last) in json.loads(out)["message"]["en"]
    before = first - timedelta(days=1)
    code, out, _ = run(*counter, "--at", f"{before}T23:50:00-08:00")  # the day before
    assert json.loads(out)["code"] == "not_yet_valid"
    assert str(first) in json.loads(out)["message"]["en"]
    # the office answers a resident with the same last day, not its end's date in UTC (the next)
    code, out, _ = run("issuer", "status", cred_id, "--home", str(home))
    assert code == 0 and f"valid until: {last}\n" in out and str(after) not in out, out
    record = json.loads(run("issuer", "status", cred_id, "--json", "--home", str(home))[1])
    assert record["last_day"] == str(last) and record["valid_until"].startswith(str(after))


@pytest.mark.parametrize("zone", ["Pacific", "America", "Etc"])
def test_a_folder_of_the_zone_database_is_no_zone(homes: dict[str, Path], run: Run,
                                                   zone: str) -> None:
    home = homes["issuer"]
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--timezone", zone, "--home", str(home))
    assert code == 2 and "[timezone_unknown]" in err and "file_error" not in err, err
    assert not (home / "issuer.db").exists()


@pytest.mark.parametrize("size", ["1000", "1000004", "9000000", "many"])
def test_init_refuses_a_status_list_size_out_of_range(homes: dict[str, Path], run: Run,
                                                      size: str) -> None:
    home = homes["issuer"]
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--list-size", size, "--home", str(home))
    assert code == 2 and not (home / "issuer.db").exists()
    if size != "many":
        assert "[list_size_invalid]" in err and "131072" in err and "8388608" in err
    else:  # not a number at all: click's own usage error, naming the option
        assert "[usage_error]" in err and "--list-size" in err and "list_size_invalid" not in err


def test_a_city_of_a_million_takes_one_list_of_125000_bytes(homes: dict[str, Path],
                                                            passphrase: str, tmp_path: Path,
                                                            run: Run) -> None:
    """The issue's anchor: a million passports in at most 125 KB of revocation bits, in one
    list (more herd privacy than eight of the default size), revocation reaching the counter."""
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--list-size", "1000000", "--home", str(home))[0] == 0
    code, out, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "p.txt"), "--home", str(home))
    assert code == 0
    credential_id = out.strip().split()[-1]
    assert run("issuer", "revoke", credential_id, "--home", str(home))[0] == 0
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))
    bundle = parse_bundle((tmp_path / "b.cbor").read_bytes(), [IssuerStore.open(home).root()])
    assert {(s.purpose, s.size) for s in bundle.status_lists} == {("revocation", 1_000_000),
                                                                   ("suspension", 1_000_000)}
    revoked = next(s for s in bundle.status_lists if s.purpose == "revocation")
    assert len(zlib.decompress(revoked.data)) == 125_000
    code, out, _ = run("verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
                       "--trust-root", str(tmp_path / "r.json"), "--text",
                       (tmp_path / "p.txt").read_text().strip(), "--json")
    assert code == 1 and json.loads(out)["code"] == "revoked"


def test_init_refuses_to_overwrite(office: Path, run: Run) -> None:
    keys_before = IssuerStore.open(office).office_keys()
    code, _, err = run("issuer", "init", "--city", "Xochimilco", "--country", "MX", "--office", "Y",
                       "--home", str(office))
    assert code == 1 and err.startswith("[issuer_exists] ") and str(office) in err, err
    store = IssuerStore.open(office)  # the office there is the one it was
    assert (store.info().city, store.info().office) == ("Mexicali", "Oficina Centro")
    assert store.office_keys() == keys_before


def test_keys_json_and_root(office: Path, tmp_path: Path, run: Run) -> None:
    code, out, _ = run("issuer", "keys", "--json", "--home", str(office))
    keys = json.loads(out)
    assert code == 0 and len(keys) == 1
    assert {"kid", "public_key", "status"} <= set(keys[0]) and keys[0]["status"] == "active"
    code, _, _ = run("issuer", "root", "--out", str(tmp_path / "root.json"), "--home", str(office))
    root = json.loads((tmp_path / "root.json").read_text())
    assert code == 0 and root["city"] == "Mexicali" and len(root["public_key"]) == 43


def test_wrong_passphrase(office: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          run: Run) -> None:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "not it")
    code, _, err = run("issuer", "bundle", "--out", str(tmp_path / "b"), "--home", str(office))
    assert code == 1 and "passphrase_wrong" in err and not (tmp_path / "b").exists()


def test_issue_validates_claims(office: Path, tmp_path: Path, run: Run) -> None:
    bad = json.loads((EXAMPLES / "claims-mexicali.json").read_text())
    bad["transit"]["fare_category"] = "vip"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code, _, err = run("issuer", "issue", "--claims", str(tmp_path / "bad.json"), "--paper",
                       "--out", str(tmp_path / "c.txt"), "--home", str(office))
    assert code == 2 and "fare_category" in err and "vip" not in err.split("]")[0]
    assert "valores permitidos" in err and "allowed values" in err
    assert "student (Estudiante)" in err  # what each code means, in the Spanish half
    assert not (tmp_path / "c.txt").exists()


def test_an_office_assigned_id_is_used_once(office: Path, tmp_path: Path, run: Run) -> None:
    doc = json.loads((EXAMPLES / "claims-mexicali.json").read_text())
    doc["credential_id"] = "W4SS3SWSIMPBG"
    (tmp_path / "assigned.json").write_text(json.dumps(doc))
    args = ["issuer", "issue", "--claims", str(tmp_path / "assigned.json"), "--paper",
            "--home", str(office)]
    code, out, _ = run(*args, "--out", str(tmp_path / "first.txt"))
    assert code == 0 and out.strip() == "W4SS3SWSIMPBG"
    cose_msg, _ = cbor2.loads(transport.unpack((tmp_path / "first.txt").read_text()))
    assert cbor2.loads(cose_msg[2])[7] == base64.b32decode("W4SS3SWSIMPBG===")  # the cti

    code, _, err = run(*args, "--out", str(tmp_path / "again.txt"))
    assert code == 1 and "credential_exists" in err and "W4SS3SWSIMPBG" in err
    assert not (tmp_path / "again.txt").exists()

    doc["credential_id"] = "w4ss3swsimpbg"  # one credential, one spelling
    (tmp_path / "lower.json").write_text(json.dumps(doc))
    code, _, err = run("issuer", "issue", "--claims", str(tmp_path / "lower.json"), "--paper",
                       "--out", str(tmp_path / "lower.txt"), "--home", str(office))
    assert code == 2 and "credential_id" in err and "A–Z" in err


@pytest.mark.parametrize("key", [
    "abc",  # not 32 bytes: a malformed value, like a missing one a usage error
    "bS72_QF8gYy7vg5LB3agectCx2Nlz2N1dVH70UX85_s",  # 32 bytes, not a point on the curve
    b64url(bytes(32)),  # small order: anybody could "sign" for it
    b64url(bytes([1]) + bytes(31)),  # the identity point
])
def test_issue_refuses_a_holder_key_no_wallet_could_sign_with(office: Path, tmp_path: Path,
                                                              run: Run, key: str) -> None:
    code, _, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--holder-key", key, "--out", str(tmp_path / "c.txt"),
                       "--home", str(office))
    assert code == 2 and "[key_invalid]" in err and "--holder-key" in err
    assert key == "abc" or "no es una llave pública Ed25519" in err
    assert not (tmp_path / "c.txt").exists()


def test_issue_writes_its_qr_as_png_only(office: Path, tmp_path: Path, run: Run) -> None:
    code, _, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "c.txt"), "--qr",
                       str(tmp_path / "c.jpeg"), "--home", str(office))
    assert code == 2 and "[qr_not_png]" in err and "c.jpeg" in err
    assert not (tmp_path / "c.txt").exists() and not (tmp_path / "c.jpeg").exists()


def test_full_flow_issue_bundle_verify_revoke(office: Path, tmp_path: Path, run: Run) -> None:
    holder = nacl.signing.SigningKey.generate()
    cred_file, bundle, root = tmp_path / "cred.txt", tmp_path / "bundle.cbor", tmp_path / "r.json"
    code, out, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--holder-key", b64url(bytes(holder.verify_key)), "--out", str(cred_file),
                       "--home", str(office))
    assert code == 0
    cred_id = out.strip()
    assert run("issuer", "root", "--out", str(root), "--home", str(office))[0] == 0
    assert run("issuer", "bundle", "--out", str(bundle), "--home", str(office))[0] == 0

    obj = transport.unpack(cred_file.read_text())
    cose_msg, disclosures = cbor2.loads(obj)
    import time

    text = transport.pack(present(cose_msg, disclosures, groups=["residence", "library"],
                                  holder=holder, audience="library", now=int(time.time())))
    args = ["verify", "--service", "library", "--bundle", str(bundle), "--trust-root", str(root),
            "--text", text, "--json"]
    code, out, _ = run(*args)
    result = json.loads(out)
    assert code == 0 and result["decision"] == "accepted" and result["credential_id"] == cred_id
    assert {"decision", "code", "message", "claims", "issuer"} <= set(result)

    code, out, _ = run("issuer", "revoke", cred_id, "--reason", "holder_request",
                       "--home", str(office))
    assert code == 0 and out == f"{cred_id}: revocado / revoked (a petición / holder_request)\n"
    assert run("issuer", "bundle", "--out", str(bundle), "--home", str(office))[0] == 0
    code, out, _ = run(*args)
    assert code == 1 and json.loads(out)["code"] == "revoked"
    # Revocation is final.
    code, _, err = run("issuer", "reinstate", cred_id, "--home", str(office))
    assert code == 1 and err.startswith("[status_transition] "), err
    assert "“revoked”" in err and "“valid”" in err
    assert "de «revocado» a «vigente»" in err and "revocation is final" in err
    status = json.loads(run("issuer", "status", cred_id, "--json", "--home", str(office))[1])
    assert (status["status"], status["reason"]) == ("revoked", "holder_request")


def test_suspend_and_reinstate(office: Path, tmp_path: Path, run: Run) -> None:
    code, out, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-calexico.json"),
                       "--paper", "--out", str(tmp_path / "p.txt"), "--home", str(office))
    cred_id = out.strip()

    def status() -> dict[str, Any]:
        code, out, _ = run("issuer", "status", cred_id.lower(), "--json", "--home", str(office))
        assert code == 0
        record: dict[str, Any] = json.loads(out)
        return record

    assert status()["status"] == "valid" and status()["kind"] == "paper"
    last = example_claims("calexico")["valid_until"]
    assert status()["valid_until"] == f"{last}T23:59:59Z"  # the claims file's last day
    assert run("issuer", "suspend", cred_id, "--reason", "fraud", "--home", str(office))[0] == 0
    assert (status()["status"], status()["reason"]) == ("suspended", "fraud")
    code, out, _ = run("issuer", "reinstate", cred_id, "--home", str(office))
    assert (code, out) == (0, f"{cred_id}: vigente / valid\n")  # no "(unspecified)"
    assert status()["status"] == "valid"
    code, out, _ = run("issuer", "suspend", cred_id, "--reason", "device_lost",
                       "--home", str(office))  # a resident's phone was lost
    assert code == 0 and "suspendido / suspended (extraviado / device_lost)" in out
    assert run("issuer", "reinstate", cred_id, "--home", str(office))[0] == 0
    code, out, _ = run("issuer", "suspend", cred_id, "--reason", "Device-Lost",
                       "--home", str(office))  # the code as a clerk may type it
    assert code == 0 and "/ device_lost)" in out
    assert run("issuer", "reinstate", cred_id, "--home", str(office))[0] == 0
    code, out, _ = run("issuer", "suspend", cred_id, "--reason", "Error de datos",
                       "--home", str(office))  # or say it, in Spanish
    assert code == 0 and "/ data_error)" in out
    assert run("issuer", "reinstate", cred_id, "--home", str(office))[0] == 0
    code, out, _ = run("issuer", "suspend", cred_id, "--reason", "a petición",
                       "--home", str(office))
    assert code == 0 and "/ holder_request)" in out
    assert run("issuer", "reinstate", cred_id, "--home", str(office))[0] == 0
    # Free text (the interface says --reason TEXT) is taken, but never kept: it would go on
    # the public record, and a clerk's note may name a person.
    code, out, err = run("issuer", "suspend", cred_id, "--reason", "James called, lost it",
                         "--home", str(office))
    assert code == 0 and "/ unspecified)" in out and "not kept" in err and "no se guarda" in err
    assert err.startswith("[reason_not_kept] ")  # a notice a script can tell by its code
    assert "a petición" in err and "extraviado" in err and "perdido" not in err  # in Spanish
    assert "holder_request" in err.split(" / ")[1]  # the codes in the English half
    assert status()["reason"] == "unspecified"
    assert run("issuer", "reinstate", cred_id, "--home", str(office))[0] == 0
    assert "James" not in json.dumps(status())  # the office keeps no claim values
    code, out, _ = run("issuer", "status", cred_id, "--home", str(office))
    assert code == 0 and "vigente / valid" in out
    code, out, _ = run("issuer", "suspend", cred_id, "--reason", "Robado", "--home", str(office))
    assert code == 0 and "/ device_lost)" in out  # as a clerk says it
    code, _, err = run("issuer", "revoke", "nope", "--home", str(office))
    assert code == 2 and "credential_id_invalid" in err  # no id at all: see test_cli_ids
    code, _, err = run("issuer", "status", "nope", "--home", str(office))
    assert code == 2 and "credential_id_invalid" in err
    unknown = "A" * len(cred_id)  # an id, of no credential this office issued
    code, _, err = run("issuer", "revoke", unknown, "--home", str(office))
    assert code == 1 and "credential_unknown" in err
    code, _, err = run("issuer", "status", unknown, "--home", str(office))
    assert code == 1 and "credential_unknown" in err


def test_verify_usage_errors(tmp_path: Path, run: Run) -> None:
    (tmp_path / "x").write_bytes(b"")
    code, out, err = run("verify", "--service", "library", "--bundle", str(tmp_path / "x"),
                         "--trust-root", str(tmp_path / "x"))
    assert code == 2 and out == "" and err.startswith("[usage_error] "), err
    assert "--text, --image, --batch, --scan" in err  # nothing to check was given


def test_rotate_and_compromise_reach_the_counter(office: Path, tmp_path: Path, run: Run) -> None:
    """A key marked compromised from a time on: credentials it signed earlier still pass."""
    holder = nacl.signing.SigningKey.generate()
    key_arg = ["--holder-key", b64url(bytes(holder.verify_key))]
    claims = str(EXAMPLES / "claims-mexicali.json")
    code, out, _ = run("issuer", "issue", "--claims", claims, *key_arg,
                       "--out", str(tmp_path / "old.txt"), "--home", str(office))
    old_kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    code, out, _ = run("issuer", "rotate", "--home", str(office))
    assert code == 0 and out.strip() != old_kid
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])
    assert [k["status"] for k in keys] == ["retired", "active"]
    assert [k["kid"] for k in keys] == [old_kid, out.strip()]  # it prints the new key's id
    code, _, _ = run("issuer", "compromised", old_kid, "--since", "2000-01-01T00:00:00Z",
                     "--home", str(office))
    assert code == 0
    assert json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0][
        "status"] == "compromised"
    run("issuer", "issue", "--claims", claims, *key_arg, "--out", str(tmp_path / "new.txt"),
        "--home", str(office))
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(office))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(office))
    import time

    import cbor2

    lines = []
    for name in ("old.txt", "new.txt"):
        cose_msg, disclosures = cbor2.loads(transport.unpack((tmp_path / name).read_text()))
        lines.append(transport.pack(present(cose_msg, disclosures, groups=["residence", "library"],
                                            holder=holder, audience="library",
                                            now=int(time.time()))))
    (tmp_path / "scans.log").write_text("\n".join(lines) + "\n\n")
    code, out, _ = run("verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
                       "--trust-root", str(tmp_path / "r.json"),
                       "--batch", str(tmp_path / "scans.log"))
    results = [json.loads(line) for line in out.splitlines()]
    assert code == 1  # not every line accepted
    assert [r["code"] for r in results] == ["key_compromised", "accepted"]


def test_a_rotated_key_signs_nothing_counters_take_from_then_on(
        office: Path, tmp_path: Path, run: Run, passphrase: str) -> None:
    """Rotation closes the old key's window: a copy of the store kept from before (an old
    laptop, a backup) that signs with it afterwards is refused at counters holding a bundle
    made since, while what it signed before stays good. Left open, the retired key's signatures
    were accepted for the rest of its five years."""
    import shutil

    from verifier.engine import verify

    claims = parse_claims(example_claims())
    before = IssuerStore.open(office).issue(claims, holder_key=None, passphrase=passphrase)
    shutil.copytree(office, tmp_path / "old-laptop")
    code, _, err = run("issuer", "rotate", "--home", str(office))
    assert code == 0, err
    rotated = IssuerStore.open(office)
    old = rotated.office_keys()[0]
    assert old["status"] == "retired" and old["valid_until"] <= int(time.time())
    later = int(time.time()) + 86400
    stolen = IssuerStore.open(tmp_path / "old-laptop").issue(claims, holder_key=None,
                                                             passphrase=passphrase, now=later)
    bundle = rotated.bundle(passphrase).data
    for cred, expected in ((before, "accepted"), (stolen, "key_not_valid_at_issuance")):
        r = verify(transport.pack(cred.to_cbor()), service="library", bundles=[bundle],
                   roots=[rotated.root()], now=later + 60)
        assert r.code == expected, r


def test_an_office_whose_only_key_is_compromised_is_told_to_rotate(office: Path, tmp_path: Path,
                                                                  run: Run) -> None:
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    assert run("issuer", "compromised", kid, "--since", "2026-01-01T00:00:00Z",
               "--home", str(office))[0] == 0
    issue = ["issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"), "--paper",
             "--out", str(tmp_path / "c.txt"), "--home", str(office)]
    code, _, err = run(*issue)
    assert code == 1 and "[issuer_no_active_key]" in err and "issuer rotate" in err
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    assert run(*issue)[0] == 0


def test_verify_at_a_past_time(office: Path, tmp_path: Path, run: Run) -> None:
    code, out, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "p.txt"), "--home", str(office))
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(office))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(office))
    args = ["verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
            "--trust-root", str(tmp_path / "r.json"), "--text",
            (tmp_path / "p.txt").read_text().strip(), "--json"]
    assert run(*args)[0] == 0
    code, out, _ = run(*args, "--at", day("2030-01-01T00:00:00Z"))
    assert code == 1 and json.loads(out)["code"] == "expired"
    code, out, err = run(*args, "--at", "yesterday")
    assert code == 2 and out == "" and "[usage_error]" in err
    assert "--at is not an ISO-8601 time: yesterday" in err, err


def test_broken_counter_setup_is_a_usage_error(tmp_path: Path, run: Run) -> None:
    (tmp_path / "b.cbor").write_bytes(b"garbage")
    (tmp_path / "r.json").write_text("{}")
    code, _, err = run("verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
                       "--trust-root", str(tmp_path / "r.json"), "--text", "PU1:")
    assert code == 2 and "root_invalid" in err


def test_verify_takes_several_files_after_one_flag(office: Path, tmp_path: Path,
                                                   run: Run) -> None:
    """``--bundle FILE…`` as the interface documents it, and repeated flags, both work."""
    other = tmp_path / "other"
    assert run("issuer", "init", "--city", "Calexico", "--country", "US", "--office", "CH",
               "--home", str(other))[0] == 0
    files = {}
    for name, home in (("mx", office), ("us", other)):
        run("issuer", "root", "--out", str(tmp_path / f"{name}.json"), "--home", str(home))
        run("issuer", "bundle", "--out", str(tmp_path / f"{name}.cbor"), "--home", str(home))
        files[name] = (str(tmp_path / f"{name}.cbor"), str(tmp_path / f"{name}.json"))
    run("issuer", "issue", "--claims", str(EXAMPLES / "claims-calexico.json"), "--paper",
        "--out", str(tmp_path / "p.txt"), "--home", str(other))
    text = (tmp_path / "p.txt").read_text().strip()
    spread = ["verify", "--service", "library", "--bundle", files["mx"][0], files["us"][0],
              "--trust-root", files["mx"][1], files["us"][1], "--text", text, "--json"]
    repeated = ["verify", "--service", "library", "--bundle", files["mx"][0],
                "--bundle=" + files["us"][0], "--trust-root", files["mx"][1],
                "--trust-root", files["us"][1], "--json", "--text", text]
    for args in (spread, repeated):
        code, out, err = run(*args)
        assert code == 0, err
        assert json.loads(out)["issuer"]["city"] == "Calexico"


def test_init_refuses_what_the_ledger_would(homes: dict[str, Path], passphrase: str,
                                            run: Run) -> None:
    """A code or an office name the public record cannot take fails at once, leaving nothing
    behind, instead of later blocking every publication from the outbox."""
    home = homes["issuer"]
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX",
                       "--office", "Centro", "--code", "MX MEX", "--home", str(home))
    assert code == 2 and "--code" in err
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX",
                       "--office", "O" * 200, "--home", str(home))
    assert code == 2 and "[issuer_name_invalid]" in err and "--office" in err
    assert not (home / "issuer.db").exists()


def test_a_ledger_address_that_cannot_be_used_is_refused_before_it_is_saved(
        office: Path, tmp_path: Path, run: Run) -> None:
    for url in ("notaurl", "ftp://ledger.example", "http://[::1", "http://op:s3cret@127.0.0.1:9"):
        code, _, err = run("issuer", "ledger", "--url", url, "--token", "t0k3n",
                           "--home", str(office))
        assert code == 2 and "ledger_url_invalid" in err and "s3cret" not in err, url
    code, _, err = run("issuer", "ledger", "--url", "http://127.0.0.1:9", "--token", "a\nb",
                       "--home", str(office))
    assert code == 2 and "ledger_token_invalid" in err
    # nothing was saved: issuing still just works, with nothing to publish to
    code, _, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "p.txt"), "--home", str(office))
    assert code == 0 and err.startswith("[catalog_new_names") and err.count("\n") == 1, err


@pytest.mark.parametrize("damage", ["emptied", "overwritten", "a folder", "schema byte"])
def test_a_damaged_office_database_is_a_typed_error(office: Path, tmp_path: Path,
                                                    damage: str) -> None:
    db = office / "issuer.db"
    with contextlib.closing(sqlite3.connect(db)) as whole:  # what the WAL holds, into the file
        whole.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for extra in office.glob("issuer.db-*"):
        extra.unlink()
    if damage == "emptied":
        db.write_bytes(b"")
    elif damage == "overwritten":
        with db.open("r+b") as fh:
            fh.write(os.urandom(100))
    elif damage == "schema byte":
        # one byte of a table's CREATE text made not UTF-8: SQLite's "malformed schema" error
        # quotes that text, and its decoding failed as an "unexpected error"
        data = bytearray(db.read_bytes())
        at = data.index(b"NOT NULL", data.index(b"CREATE TABLE catalog"))
        data[at + len(b"NOT ")] = 0xCE  # "NOT \xceULL": no longer SQL
        db.write_bytes(bytes(data))
    else:
        db.unlink()
        db.mkdir()
    # A fresh process, as at the office: this one still pools connections to the old file.
    proc = subprocess.run(
        [sys.executable, "-m", "pasaporte", "issuer", "issue", "--claims",
         str(EXAMPLES / "claims-mexicali.json"), "--paper", "--out", str(tmp_path / "p.txt"),
         "--home", str(office)],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert proc.returncode == 1 and "store_damaged" in proc.stderr, proc.stderr
    assert "Restore it from a backup" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "p.txt").exists()


@pytest.mark.parametrize(("field", "value", "why"), [
    ("given_name", "Mar\ud800a", "control, format or line-break characters"),
    ("valid_from", "1969-12-31", "before 1970"),
])
def test_claims_no_counter_could_read_are_refused(office: Path, tmp_path: Path, run: Run,
                                                  field: str, value: str, why: str) -> None:
    doc = json.loads((EXAMPLES / "claims-mexicali.json").read_text())
    doc[field] = value
    (tmp_path / "c.json").write_text(json.dumps(doc))  # ensure_ascii: "\ud800" stays escaped
    code, _, err = run("issuer", "issue", "--claims", str(tmp_path / "c.json"), "--paper",
                       "--out", str(tmp_path / "p.txt"), "--home", str(office))
    assert code == 2 and "claims_invalid" in err and field in err and why in err


def test_deeply_nested_claims_are_not_json_to_us(office: Path, tmp_path: Path, run: Run) -> None:
    (tmp_path / "deep.json").write_text("[" * 30_000 + "]" * 30_000)
    code, _, err = run("issuer", "issue", "--claims", str(tmp_path / "deep.json"), "--paper",
                       "--out", str(tmp_path / "p.txt"), "--home", str(office))
    assert code == 2 and "claims_not_json" in err and "no es JSON" in err


def test_a_claim_given_twice_is_refused_not_guessed(office: Path, tmp_path: Path,
                                                   run: Run) -> None:
    text = (EXAMPLES / "claims-mexicali.json").read_text()
    twice = text.replace('"given_name"', '"given_name": "Otra Persona", "given_name"', 1)
    assert twice != text
    (tmp_path / "c.json").write_text(twice)
    code, _, err = run("issuer", "issue", "--claims", str(tmp_path / "c.json"), "--paper",
                       "--out", str(tmp_path / "p.txt"), "--home", str(office))
    assert code == 2 and "[claims_duplicate_key]" in err and "given_name" in err
    assert not (tmp_path / "p.txt").exists()


def test_a_full_disk_is_not_called_damage(office: Path, passphrase: str) -> None:
    """SQLITE_FULL (here: a page limit, as a full disk gives) says what to do: free space."""
    from sqlalchemy import event

    from credential.claims import parse_claims
    from credential.errors import StoreError
    from issuer.store import IssuerStore
    from tests.factory import example_claims

    store = IssuerStore.open(office)
    with store.engine.connect() as db:
        pages = db.exec_driver_sql("PRAGMA page_count").scalar()
    store.engine.dispose()
    event.listen(store.engine, "connect",
                 lambda conn, _: conn.execute(f"PRAGMA max_page_count = {pages}"))
    claims = parse_claims(example_claims())
    with pytest.raises(StoreError) as raised:
        for _ in range(200):
            store.issue(claims, holder_key=None, passphrase=passphrase)
    assert raised.value.code == "store_full" and "not damaged" in raised.value.message["en"]


def test_a_store_that_cannot_be_written_is_not_called_damaged(office: Path,
                                                               passphrase: str) -> None:
    """SQLITE_READONLY (here: query_only, as a read-only file or mount gives): a permission or
    a mount to fix, not a database to restore (a restore retires the office key)."""
    from sqlalchemy import event

    from credential.claims import parse_claims
    from credential.errors import StoreError
    from issuer.store import IssuerStore
    from tests.factory import example_claims

    store = IssuerStore.open(office)
    store.engine.dispose()
    event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA query_only = 1"))
    with pytest.raises(StoreError) as raised:
        store.issue(parse_claims(example_claims()), holder_key=None, passphrase=passphrase)
    assert raised.value.code == "store_not_writable", raised.value
    assert "not damaged" in raised.value.message["en"] and "no la restaure" in (
        raised.value.message["es"])


@pytest.mark.parametrize("where", ["out", "qr"])
def test_an_output_that_cannot_be_written_issues_nothing(office: Path, tmp_path: Path, run: Run,
                                                         where: str) -> None:
    """A mistyped folder for the credential or its QR: an error naming it, and no credential on
    the record that nobody holds (nor its output files)."""
    files = tmp_path / "out"
    files.mkdir()
    (files / "a-file").write_text("")
    bad = str(files / "a-file" / "x.png")  # a folder that is a file: nothing can go there
    out = bad if where == "out" else str(files / "c.cred")
    png = bad if where == "qr" else str(files / "c.png")
    code, stdout, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                            "--paper", "--out", out, "--qr", png, "--home", str(office))
    assert code == 1 and "[file_error]" in err and "a-file" in err and stdout == ""
    assert "No se pudo" in err and "Could not" in err  # the OS's reason in each language
    issued = [e for _, e in IssuerStore.open(office).pending() if e["type"] == "credential_issued"]
    assert issued == []
    assert sorted(p.name for p in files.iterdir()) == ["a-file"]
    code, stdout, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                          "--paper", "--out", str(files / "c.cred"), "--qr",
                          str(files / "c.png"), "--home", str(office))
    assert code == 0 and (files / "c.cred").read_text().startswith("PU1:")
    assert (files / "c.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in files.iterdir()) == ["a-file", "c.cred", "c.png"]


def test_a_bundle_that_cannot_be_written_is_not_published(office: Path, tmp_path: Path,
                                                          run: Run) -> None:
    """The same for a trust bundle: no version used and no digest on its way to the public
    record for a bundle no counter can ever be given."""
    (tmp_path / "a-file").write_text("")
    code, _, err = run("issuer", "bundle", "--out", str(tmp_path / "a-file" / "b.cbor"),
                       "--home", str(office))
    assert code == 1 and "[file_error]" in err
    queued = [e for _, e in IssuerStore.open(office).pending() if e["type"] == "bundle_published"]
    assert queued == []
    code, _, _ = run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(office))
    store = IssuerStore.open(office)
    bundle = parse_bundle((tmp_path / "b.cbor").read_bytes(), [store.root()])
    assert code == 0 and bundle.version == 1
    assert [e["version"] for _, e in store.pending() if e["type"] == "bundle_published"] == [1]


def test_a_kid_that_begins_with_a_dash_is_a_kid(office: Path, run: Run) -> None:
    """Kids are base64url, and one in 64 begins with "-": it is read as the kid (here one the
    office does not have: the office's state, a refusal), not as an unknown option."""
    code, _, err = run("issuer", "compromised", "-AbCdA", "--since", "2026-01-01T00:00:00Z",
                       "--home", str(office))
    assert code == 1 and "[issuer_key_unknown]" in err and "No office key -AbCdA" in err
    assert "No such option" not in err


@pytest.mark.parametrize("kid", ["2ey78a", "-AbCdEfG", "AAAA", "kid!", ""])
def test_a_kid_that_is_no_kid_is_a_usage_error(office: Path, run: Run, kid: str) -> None:
    """Not base64url (non-canonical last bits, a "!"), or not the 4 bytes of a kid: a mistake
    in how the command was typed, told apart from a kid the office does not have."""
    code, _, err = run("issuer", "compromised", kid, "--since", "2026-01-01T00:00:00Z",
                       "--home", str(office))
    assert code == 2 and "[key_invalid]" in err and "kid" in err, err
    assert IssuerStore.open(office).pending()[-1][1]["type"] == "key_registered"


def _compromised(office: Path, run: Run, kid: str, since: str) -> tuple[int, str]:
    code, _, err = run("issuer", "compromised", kid, "--since", since, "--home", str(office))
    return code, err


def _compromise_entries(office: Path) -> list[str]:
    return [e["effective"] for _, e in IssuerStore.open(office).pending()
            if e["type"] == "key_compromised"]


def test_a_compromise_time_only_moves_earlier(office: Path, tmp_path: Path, run: Run) -> None:
    """Moved later, the next bundles would have counters accept again what the thief signed in
    between: refused, naming the time the key is compromised since. Earlier (the leak began
    sooner) is taken, and published; the same time again changes nothing."""
    kid = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"]
    keys_made_on(office, "2025-01-01")
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    assert _compromised(office, run, kid, "2026-03-01T00:00:00Z")[0] == 0

    code, err = _compromised(office, run, kid, "2026-06-01T00:00:00-07:00")
    assert code == 1 and "[issuer_compromise_later]" in err
    assert "2026-03-01T00:00:00Z" in err.split(" / ")[0] and "2026-03-01T00:00:00Z" in err
    assert "2026-06-01T07:00:00Z" in err and "earlier" in err and "adelantarse" in err
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])
    assert keys[0]["compromised_since"] == "2026-03-01T00:00:00Z"  # unchanged
    assert _compromise_entries(office) == ["2026-03-01T00:00:00Z"]  # nothing more published

    code, err = _compromised(office, run, kid, "2026-02-28T16:00:00-08:00")  # the same instant
    assert code == 0 and "[issuer_compromise_unchanged]" in err
    assert _compromise_entries(office) == ["2026-03-01T00:00:00Z"]

    code, err = _compromised(office, run, kid, "2026-01-15T00:00:00Z")  # found to be sooner
    assert code == 0 and err == ""
    assert _compromise_entries(office) == ["2026-03-01T00:00:00Z", "2026-01-15T00:00:00Z"]
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(office))[0] == 0
    store = IssuerStore.open(office)
    bundle = parse_bundle((tmp_path / "b.cbor").read_bytes(), [store.root()])
    assert [k.compromised_since for k in bundle.keys if b64url(k.kid) == kid] == [1768435200]


def test_a_compromise_time_before_the_key_is_its_first_moment(office: Path, tmp_path: Path,
                                                               run: Run) -> None:
    """"1900-01-01", typed for "from the start", went into every later bundle as a time before
    1970 that no bundle can carry: every counter refused the city's bundles from then on, and
    the time could not be moved later to mend it. It is recorded as the key's first moment,
    which refuses every signature of it all the same."""
    kid, made = (json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0][k]
                 for k in ("kid", "valid_from"))
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    code, out, err = run("issuer", "compromised", kid, "--since", "1900-01-01T00:00:00Z",
                         "--home", str(office))
    assert code == 0 and out.strip() == f"{kid}: comprometida desde / compromised since {made}"
    assert err.startswith("[issuer_compromise_from_start]") and made in err, err
    assert "1900-01-01T00:00:00Z" in err and "1970" not in err  # the time typed, said back
    assert _compromise_entries(office) == [made]
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(office))[0] == 0
    store = IssuerStore.open(office)
    bundle = parse_bundle((tmp_path / "b.cbor").read_bytes(), [store.root()])
    (key,) = [k for k in bundle.keys if b64url(k.kid) == kid]
    assert key.compromised_since == key.valid_from
    # again, and earlier still: nothing changes, and it says so
    code, _, err = run("issuer", "compromised", kid, "--since", "1969-12-31T23:00:00Z",
                       "--home", str(office))
    assert code == 0 and "[issuer_compromise_unchanged]" in err and made in err, err
    # a store that recorded such a time before this was mended still makes bundles counters read
    with store.engine.begin() as db:
        db.exec_driver_sql("UPDATE keys SET compromised_since = -2208988800 WHERE role = 'office'"
                           " AND compromised_since IS NOT NULL")
    second = tmp_path / "b2.cbor"
    assert run("issuer", "bundle", "--out", str(second), "--home", str(office))[0] == 0
    (key,) = [k for k in parse_bundle(second.read_bytes(), [store.root()]).keys
              if b64url(k.kid) == kid]
    assert key.compromised_since == key.valid_from
    # and such a time, typed again (or given by a restore's catch-up), is the same time: it
    # was "a later time", refused, and a restore of that office failed for good
    code, _, err = run("issuer", "compromised", kid, "--since", "1900-01-01T00:00:00Z",
                       "--home", str(office))
    assert code == 0 and "[issuer_compromise_unchanged]" in err and made in err, err


def _issued(home: Path) -> tuple[int, int]:
    """How many credentials the office holds, and how many issuances it queued for the ledger."""
    store = IssuerStore.open(home)
    queued = [e for _, e in store.pending() if e["type"] == "credential_issued"]
    with store.engine.connect() as db:
        count = db.execute(sa.select(sa.func.count()).select_from(credentials)).scalar_one()
    return int(count), len(queued)


def test_an_expired_office_key_issues_nothing_and_says_to_rotate(office: Path, tmp_path: Path,
                                                                 run: Run) -> None:
    """Five years on, the office key no longer signs: every counter would refuse what it did
    (``key_not_valid_at_issuance``), so the office is told to rotate instead."""
    with IssuerStore.open(office).engine.begin() as db:  # the key's five years have gone by
        db.execute(keys.update().where(keys.c.role == "office")
                   .values(valid_from=keys.c.valid_from - KEY_SPAN,
                           valid_until=keys.c.valid_until - KEY_SPAN))
    code, out, _ = run("issuer", "keys", "--json", "--home", str(office))
    assert code == 0 and [k["status"] for k in json.loads(out)] == ["expired"]
    assert "vencida / expired" in run("issuer", "keys", "--home", str(office))[1]
    issue = ["issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"), "--paper",
             "--out", str(tmp_path / "c.txt"), "--home", str(office)]
    code, out, err = run(*issue)
    assert code == 1 and out == "" and "[issuer_key_expired]" in err
    assert "issuer rotate" in err and "venció" in err and "expired" in err
    assert _issued(office) == (0, 0) and not (tmp_path / "c.txt").exists()
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    code, out, _ = run("issuer", "keys", "--json", "--home", str(office))
    assert [k["status"] for k in json.loads(out)] == ["expired", "active"]
    assert run(*issue)[0] == 0 and _issued(office) == (1, 1)


def test_a_passport_may_outlive_the_key_that_signed_it(homes: dict[str, Path], passphrase: str,
                                                      tmp_path: Path, run: Run) -> None:
    """Counters want the key valid when the passport was issued, not for all of its validity:
    issuing a day before the key ends is allowed, and the passport is accepted after it."""
    start = at(1_717_200_000)  # 2024-06-01: the key ends in 2029-05, before the example's last day
    store = IssuerStore.create(homes["issuer"], city="Mexicali", country="MX", office="Centro",
                               code="MXMEX", passphrase=passphrase, now=start)
    end = store.office_keys(now=start)[0]["valid_until"]
    cred = store.issue(parse_claims(example_claims()), holder_key=None, passphrase=passphrase,
                       now=end - 86400)
    (tmp_path / "p.txt").write_text(transport.pack(cred.to_cbor()))
    (tmp_path / "r.json").write_text(store.root().to_json())
    (tmp_path / "b.cbor").write_bytes(store.bundle(passphrase, now=end - 3600).data)
    counter = ["verify", "--service", "library", "--bundle", str(tmp_path / "b.cbor"),
               "--trust-root", str(tmp_path / "r.json"), "--text",
               (tmp_path / "p.txt").read_text().strip(), "--json"]
    code, out, _ = run(*counter, "--at", day("2029-08-01T12:00:00Z"))  # the key ended in May
    assert code == 0 and json.loads(out)["decision"] == "accepted", out


@pytest.mark.parametrize(("where", "code", "error"), [
    ("", 2, "[output_not_a_file]"),  # the current folder: only its rename would fail
    ("  ", 2, "does not name a file"),
    ("a-file/c.txt", 1, "[file_error]"),  # a folder that is a file
    ("a-file/deeper/c.txt", 1, "[file_error]"),  # a folder that does not exist, under a file
])
def test_an_out_that_cannot_take_the_credential_issues_nothing(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch, where: str,
        code: int, error: str) -> None:
    """A failed --out registers nothing and queues nothing for the public record: no
    credential on the record that nobody holds and whose id was never printed."""
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("")
    monkeypatch.chdir(tmp_path)
    got, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                        "--paper", "--out", where, "--home", str(office))
    assert (got, out) == (code, "") and error in err, err
    assert _issued(office) == (0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder", "issuer"]


@pytest.mark.parametrize("which", ["--out", "--qr"])
def test_an_existing_file_is_kept_unless_overwrite_says_so(office: Path, tmp_path: Path,
                                                           run: Run, which: str) -> None:
    """A file already there is most likely someone's passport under a reused name: kept, and
    nothing signed, unless --overwrite; then replaced."""
    out, png = tmp_path / "c.txt", tmp_path / "c.png"
    (out if which == "--out" else png).write_bytes(b"PU1:MARIA\n")
    args = ["issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"), "--paper",
            "--out", str(out), "--qr", str(png), "--home", str(office)]
    code, stdout, err = run(*args)
    assert (code, stdout) == (2, "") and "[output_exists]" in err and "--overwrite" in err
    assert _issued(office) == (0, 0)
    assert (out if which == "--out" else png).read_bytes() == b"PU1:MARIA\n"
    code, stdout, _ = run(*args, "--overwrite")
    assert code == 0 and out.read_text().startswith("PU1:") and out.read_text() != "PU1:MARIA\n"
    assert png.read_bytes().startswith(b"\x89PNG")


@contextlib.contextmanager
def _unwritable(folder: Path) -> Iterator[None]:
    """``folder`` refuses new files for the ``with`` block: by its mode for an ordinary user;
    for root (CI's user), whom modes do not stop, by the immutable attribute."""
    folder.chmod(0o500)
    try:
        if not os.access(folder, os.W_OK):
            yield
            return
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        if made.returncode != 0:  # a file system without attributes (tmpfs)
            pytest.skip(f"root writes anywhere and chattr +i failed: {made.stderr.strip()!r}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    finally:
        folder.chmod(0o700)


def test_an_out_in_a_read_only_folder_issues_nothing(office: Path, tmp_path: Path,
                                                     run: Run) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with _unwritable(folder):
        code, out, err = run("issuer", "issue", "--claims",
                             str(EXAMPLES / "claims-mexicali.json"), "--paper",
                             "--out", str(folder / "c.txt"), "--home", str(office))
    assert code == 1 and out == "" and "[file_error]" in err, err
    assert str(folder) in err
    assert _issued(office) == (0, 0) and list(folder.iterdir()) == []


@pytest.mark.parametrize("earlier", [False, True])
@pytest.mark.parametrize("failing", [".txt", ".png"])
def test_a_rename_that_fails_after_the_commit_keeps_the_file_and_says_where(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
        failing: str, earlier: bool) -> None:
    """What no check beforehand can see (a file in a shared folder owned by another user): the
    files go in place only once the issuance is recorded (a crash before that must leave no
    passport the office cannot revoke), so a rename that fails then leaves the passport
    recorded, its file kept under the name it was written to, and both said; a file it was to
    replace (``earlier``: a resident's earlier credential) is left as it was."""
    before = {"c.txt": b"PU1:EARLIER\n", "c.png": b"\x89PNG earlier"} if earlier else {}
    for name, data in before.items():
        (tmp_path / name).write_bytes(data)
    put_in_place = StagedFile.commit

    def commit(staged: StagedFile) -> None:
        if staged.target.suffix == failing:
            raise PermissionError(1, "Operation not permitted", str(staged.target))
        put_in_place(staged)

    monkeypatch.setattr(StagedFile, "commit", commit)
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                         "--paper", "--out", str(tmp_path / "c.txt"), "--qr",
                         str(tmp_path / "c.png"), "--overwrite", "--home", str(office))
    assert code == 1 and after_notices(err).startswith("[issued_file_not_placed] "), err
    issued = out.strip()
    assert _issued(office) == (1, 1) and issued in err
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith(f".c{failing}.")]
    assert str(kept) in err and str(tmp_path / f"c{failing}") in err
    # the other file is put in place all the same; the one that failed keeps what it replaced
    other = {".txt": "c.png", ".png": "c.txt"}[failing]
    assert {p.name for p in tmp_path.iterdir()} == {"issuer", kept.name, other} | set(before)
    if earlier:
        assert (tmp_path / f"c{failing}").read_bytes() == before[f"c{failing}"]
    text = kept if failing == ".txt" else tmp_path / "c.txt"
    assert decode_text(text.read_text()).payload.credential_id == issued


def test_a_backup_out_that_names_no_file_is_a_usage_error(office: Path, run: Run,
                                                          tmp_path: Path) -> None:
    code, _, err = run("issuer", "backup", "--out", "", "--home", str(office))
    assert code == 2 and "[output_not_a_file]" in err and "--out" in err  # not "exists"
    code, _, err = run("issuer", "backup", "--out", str(tmp_path), "--home", str(office))
    assert code == 2 and "es una carpeta" in err  # click's own check


def test_a_slower_clerks_bundle_never_lands_over_a_newer_one(
        office: Path, tmp_path: Path, run: Run, passphrase: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clerks writing one bundle file: the one who made hers first but renamed last left
    the older version in place, without the revocation the newer one carried. The newer stays,
    and the slower clerk is told which version the file holds."""
    out = tmp_path / "bundle.cbor"
    made = IssuerStore.bundle

    def other_clerk_finishes_first(self: IssuerStore, *args: Any, **kw: Any) -> MadeBundle:
        ours = made(self, *args, **kw)
        out.write_bytes(made(self, passphrase).data)  # the other clerk's, newer, already in place
        return ours

    monkeypatch.setattr(IssuerStore, "bundle", other_clerk_finishes_first)
    code, stdout, err = run("issuer", "bundle", "--out", str(out), "--home", str(office))
    assert code == 0 and stdout.strip() == str(out), err
    assert "[bundle_newer_in_place]" in err and "version 1 was made" in err, err
    assert "ya tiene la versión 2" in err
    root = IssuerStore.open(office).root()
    assert parse_bundle(out.read_bytes(), [root]).version == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(IssuerStore, "bundle", made)  # no race: the newest goes in place
    assert run("issuer", "bundle", "--out", str(out), "--home", str(office))[0] == 0
    assert parse_bundle(out.read_bytes(), [root]).version == 3


def test_a_bundle_out_that_names_no_file_signs_nothing(office: Path, run: Run) -> None:
    code, _, err = run("issuer", "bundle", "--out", "", "--home", str(office))
    assert code == 2 and "[output_not_a_file]" in err and "--out" in err
    assert [e for _, e in IssuerStore.open(office).pending()
            if e["type"] == "bundle_published"] == []


@pytest.mark.parametrize(("option", "value"), [
    ("--office", "  "), ("--office", "\t"), ("--city", " "), ("--office", "\u200b"),
    ("--office", "Centro\x07"), ("--city", "Mexicali\n"  "Centro"), ("--city", "M" * 129),
    ("--office", "\u202eetroN"), ("--office", "Ofi\u00adcina Norte"),  # look like others
    ("--city", "Mexicali\u2028Centro"),
])
def test_init_refuses_a_blank_or_unprintable_name(homes: dict[str, Path], passphrase: str,
                                                  run: Run, option: str, value: str) -> None:
    """Counters show the city and office names: a blank one is a usage error naming the option,
    before anything is written."""
    home = homes["issuer"]
    names = {"--city": "Mexicali", "--office": "Centro", option: value}
    code, _, err = run("issuer", "init", "--city", names["--city"], "--country", "MX",
                       "--office", names["--office"], "--code", "MXMEX", "--home", str(home))
    assert code == 2 and "[issuer_name_invalid]" in err and option in err
    assert "no solo espacios" in err and "not only spaces" in err
    assert not (home / "issuer.db").exists()


def test_init_drops_spaces_around_the_names(homes: dict[str, Path], passphrase: str,
                                            run: Run) -> None:
    home = homes["issuer"]
    code, out, _ = run("issuer", "init", "--city", " Mexicali ", "--country", "MX",
                       "--office", "  Oficina Centro\t", "--home", str(home))
    assert code == 0 and "Oficina Centro, Mexicali MX [MXMEX]" in out
    info = IssuerStore.open(home).info()
    assert (info.city, info.office) == ("Mexicali", "Oficina Centro")
    registered = [e for _, e in IssuerStore.open(home).pending()
                  if e["type"] == "key_registered"]
    assert [(e["city"], e["office"]) for e in registered] == [("Mexicali", "Oficina Centro")]


@pytest.mark.parametrize("typed", [str.lower, lambda i: f" {i.lower()} ", str.title])
def test_status_changes_take_the_id_in_any_case(office: Path, tmp_path: Path, run: Run,
                                                typed: Callable[[str], str]) -> None:
    """A clerk may type the id in lower case, as a wallet takes it: it names the same
    credential, and the answer prints it as the office does."""
    # Ids are random: one in 5,700 has no two letters in a row, which str.title leaves as it
    # is (one in 3 billion has no letter, for str.lower): issued again until typing changes it.
    for n in range(10):
        code, out, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                           "--paper", "--out", str(tmp_path / f"c{n}.txt"),
                           "--home", str(office))
        cred_id = out.strip()
        if code != 0 or typed(cred_id) != cred_id:
            break
    assert code == 0 and typed(cred_id) != cred_id
    for command, label in (("suspend", "suspendido"), ("reinstate", "vigente"),
                           ("revoke", "revocado")):
        code, out, err = run("issuer", command, typed(cred_id), "--home", str(office))
        assert code == 0, err
        assert out.startswith(f"{cred_id}: {label}")
    code, out, _ = run("issuer", "status", typed(cred_id), "--json", "--home", str(office))
    assert code == 0 and json.loads(out)["status"] == "revoked"
    code, _, err = run("issuer", "revoke", "aaaaaaaaaaaaa", "--home", str(office))
    assert code == 1 and "[credential_unknown]" in err and "AAAAAAAAAAAAA" in err


def test_a_passport_expired_already_is_not_issued(office: Path, tmp_path: Path,
                                                  run: Run) -> None:
    """A year mistyped in a claims file ("2016" for 2026): every counter would refuse it."""
    doc = {**json.loads((EXAMPLES / "claims-mexicali.json").read_text()),
           "valid_from": "2016-11-22", "valid_until": "2019-11-21"}
    (tmp_path / "old.json").write_text(json.dumps(doc))
    code, out, err = run("issuer", "issue", "--claims", str(tmp_path / "old.json"), "--paper",
                         "--out", str(tmp_path / "p.txt"), "--home", str(office))
    assert (code, out) == (2, "") and "[claims_expired]" in err and "2019-11-21" in err, err
    assert "vencido" in err and _issued(office) == (0, 0)
    assert not (tmp_path / "p.txt").exists()
    # what "today" is, by this computer: the clue when its clock is what is wrong
    today = datetime.now(UTC).date()
    assert any(str(today + timedelta(days=d)) in err.partition(" / ")[2] for d in (-1, 0)), err


def test_a_birth_or_residency_date_to_come_is_refused(office: Path, tmp_path: Path,
                                                      run: Run) -> None:
    """Dated after the office's today, with a validity starting later still (so the claims
    alone are in order): a year mistyped, wrong for all the passport's life. Nothing issued."""
    soon = date.today() + timedelta(days=20)
    for field in ("birth_date", "since"):
        doc = example_claims()
        doc["valid_from"] = (soon + timedelta(days=10)).isoformat()
        doc["valid_until"] = (soon + timedelta(days=400)).isoformat()
        if field == "birth_date":
            doc["birth_date"] = soon.isoformat()
        else:
            doc["residence"] = {**doc["residence"], "since": soon.isoformat()}
        (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
        code, out, err = run("issuer", "issue", "--claims", str(tmp_path / "c.json"), "--paper",
                             "--out", str(tmp_path / "p.cred"), "--home", str(office))
        assert (code, out) == (2, ""), err
        assert "[claims_date_future]" in err and soon.isoformat() in err, err
        assert not (tmp_path / "p.cred").exists()
    with IssuerStore.open(office).engine.connect() as db:
        assert db.execute(credentials.select()).first() is None


def test_residency_since_before_birth_is_a_mistyped_year(office: Path, tmp_path: Path,
                                                         run: Run) -> None:
    """1910 for 2010: signed, every counter showed a residency older than its resident."""
    doc = example_claims()
    doc["residence"] = {**doc["residence"], "since": "1915-06-01"}  # born 1987
    (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run("issuer", "issue", "--claims", str(tmp_path / "c.json"), "--paper",
                         "--out", str(tmp_path / "p.cred"), "--home", str(office))
    assert (code, out) == (2, "") and "[claims_invalid]" in err, err
    assert "residence.since" in err and "before the birth date" in err
    assert "anterior a la fecha de nacimiento" in err
    assert not (tmp_path / "p.cred").exists()


def test_names_with_damaged_accents_are_refused_before_anything_is_signed(
        office: Path, tmp_path: Path, run: Run) -> None:
    """"JuÃ¡rez" for "Juárez" (a file or a terminal that went through Latin-1): only bulk
    refused it; a city, an office or a claims file took it into the root file, every bundle,
    the public record and the passports, for good."""
    code, _, err = run("issuer", "init", "--city", "Ciudad JuÃ¡rez", "--country", "MX",
                       "--office", "Centro", "--home", str(tmp_path / "new"))
    assert code == 2 and "[text_garbled]" in err and "--city" in err, err
    assert not (tmp_path / "new" / "issuer.db").exists()
    doc = {**example_claims(), "family_name": "HernÃ¡ndez LÃ³pez"}
    (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run("issuer", "issue", "--claims", str(tmp_path / "c.json"), "--paper",
                         "--out", str(tmp_path / "p.txt"), "--home", str(office))
    assert (code, out) == (2, "") and "[text_garbled]" in err, err
    assert "Apellido(s) tiene acentos estropeados" in err and "Family names has damaged" in err
    assert _issued(office) == (0, 0) and not (tmp_path / "p.txt").exists()


def test_a_claims_file_names_a_catalogued_place_in_any_case(office: Path, tmp_path: Path,
                                                           run: Run) -> None:
    issue = ["issuer", "issue", "--claims", str(tmp_path / "c.json"), "--paper", "--out",
             str(tmp_path / "p.cred"), "--overwrite", "--home", str(office)]
    doc = example_claims()
    (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
    assert run(*issue)[0] == 0
    before = IssuerStore.open(office).catalogs()
    doc["residence"] = {**doc["residence"], "city": "  MEXICALI "}
    (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
    assert run(*issue)[0] == 0
    assert IssuerStore.open(office).catalogs() == before  # the same city, not a second
    doc["residence"] = {**doc["residence"], "city": "Mx"}
    (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run(*issue)
    assert (code, out) == (2, "") and "[catalog_name_short]" in err, err
    assert IssuerStore.open(office).catalogs() == before
    doc["residence"] = {**doc["residence"], "city": "Ensenada"}
    (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
    code, _, err = run(*issue)
    assert code == 0 and "[catalog_new_names_added]" in err and "«Ensenada»" in err, err
    assert "Ciudad de residencia: «Ensenada»" in err and "City of residence: “Ensenada”" in err
    code, _, err = run(*issue)
    assert code == 0 and "catalog_new_names" not in err, err  # known now: nothing to say
    doc["clinic"] = {**doc["clinic"], "network": f"{doc['given_name']} {doc['family_name']}"}
    (tmp_path / "c.json").write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run(*issue)
    assert (code, out) == (2, "") and "[catalog_name_personal]" in err, err
    assert doc["family_name"] not in err


def test_status_says_when_every_counter_refuses_a_passport_for_its_key(
        office: Path, tmp_path: Path, run: Run) -> None:
    """Valid on the office's books, signed after its key's compromise time: the resident
    asking at the office hears that every counter refuses it, and what to do."""
    code, out, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "p.cred"), "--home", str(office))
    cred_id = out.strip()
    record = json.loads(run("issuer", "status", cred_id, "--json", "--home", str(office))[1])
    assert (record["refused_by_counters"], record["key_compromised_since"]) == (False, None)
    assert run("issuer", "rotate", "--home", str(office))[0] == 0
    keys_made_on(office, "2025-01-01")  # a minute before the issuance is before the key, else
    issued = datetime.fromisoformat(record["issued_at"].replace("Z", "+00:00"))
    since = (issued - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run("issuer", "compromised", record["kid"], "--since", since,
               "--home", str(office))[0] == 0
    code, out, _ = run("issuer", "status", cred_id, "--home", str(office))
    assert code == 0 and "[credential_key_compromised]" in out and "--replaces" in out, out
    record = json.loads(run("issuer", "status", cred_id, "--json", "--home", str(office))[1])
    assert (record["status"], record["refused_by_counters"]) == ("valid", True)
    assert record["key_compromised_since"] == since


def test_status_says_when_every_counter_refuses_a_passport_for_its_days(
        office: Path, tmp_path: Path, run: Run) -> None:
    """A passport valid on the office's books that has not begun (an early renewal) or is over:
    the office said "vigente / valid" and ``refused_by_counters: false`` while every counter
    refused it."""
    start = date.today() + timedelta(days=40)
    doc = json.loads((EXAMPLES / "claims-mexicali.json").read_text("utf-8"))
    doc.update(valid_from=start.isoformat(),
               valid_until=(start + timedelta(days=365)).isoformat())
    (tmp_path / "later.json").write_text(json.dumps(doc), "utf-8")
    code, out, err = run("issuer", "issue", "--claims", str(tmp_path / "later.json"), "--paper",
                         "--out", str(tmp_path / "p.cred"), "--home", str(office))
    assert code == 0, err
    cred_id = out.strip()
    code, out, _ = run("issuer", "status", cred_id, "--home", str(office))
    assert code == 0 and out.startswith(f"{cred_id}: aún no vigente / not yet valid\n"), out
    assert f"vigente desde / valid from: {start.isoformat()}" in out
    assert "[credential_key_compromised]" not in out
    record = json.loads(run("issuer", "status", cred_id, "--json", "--home", str(office))[1])
    assert (record["status"], record["validity"], record["refused_by_counters"]) == (
        "valid", "not_yet_valid", True)
    assert record["first_day"] == start.isoformat()
    store = IssuerStore.open(office)
    later = int(datetime(start.year + 2, 1, 1, tzinfo=UTC).timestamp())
    assert store.credential(cred_id, now=later)["validity"] == "expired"  # type: ignore[index]
    during = int(datetime.combine(start + timedelta(days=2), datetime.min.time(), UTC).timestamp())
    now_valid = store.credential(cred_id, now=during)
    assert now_valid is not None and (now_valid["validity"], now_valid["refused_by_counters"]) == (
        "current", False)
    # issued by a release that did not keep the start (migration 0003 leaves it empty): it
    # may not have begun, and "current" was said of one every counter refused
    with store.engine.begin() as db:
        db.execute(sa.update(credentials).values(valid_from=None))
    record = json.loads(run("issuer", "status", cred_id, "--json", "--home", str(office))[1])
    assert (record["validity"], record["first_day"], record["refused_by_counters"]) == (
        "unknown", None, None)  # not known, rather than a "false" counters may belie
    code, out, _ = run("issuer", "status", cred_id, "--home", str(office))
    assert code == 0 and "valid from: ¿? (no consta / not on record)" in out, out
    assert store.credential(cred_id, now=later)["validity"] == "expired"  # type: ignore[index]


def test_an_out_that_is_a_device_or_pipe_is_never_replaced(office: Path, tmp_path: Path,
                                                            run: Run) -> None:
    """Even with --overwrite: the final rename would put a regular file in its place (as
    root, a system's own /dev/full)."""
    pipe = tmp_path / "a-pipe"
    os.mkfifo(pipe)
    for extra in ([], ["--overwrite"]):
        code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                             "--paper", "--out", str(pipe), *extra, "--home", str(office))
        # named for what it is: "empty or a folder" was the wrong cause
        assert (code, out) == (2, "") and "[output_not_regular]" in err, err
        assert "not a regular file" in err
        assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert _issued(office) == (0, 0)


def test_an_id_that_cannot_be_printed_does_not_read_as_nothing_issued(
        office: Path, tmp_path: Path) -> None:
    """Standard output on a full disk (here /dev/full): the passport was issued, recorded and
    written, and the command said "nothing was left half-written" with exit 1, so the clerk
    issued again and the resident held two passports."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "pasaporte", "issuer", "issue", "--claims",
             str(EXAMPLES / "claims-mexicali.json"), "--paper", "--out", str(tmp_path / "p.txt"),
             "--home", str(office)],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert proc.returncode == 0, proc.stderr
    assert "[issuer_issued_not_printed]" in proc.stderr and "do not issue it again" in proc.stderr
    assert "no lo emita de nuevo" in proc.stderr and "Nothing was left" not in proc.stderr
    [record] = IssuerStore.open(office).engine.connect().execute(credentials.select()).all()
    assert record.id in proc.stderr and (tmp_path / "p.txt").exists()
