"""``issuer issue --replaces ID``: a resident's new phone (or corrected data) gets a new passport
and the old one is revoked in the same transaction, never two in force and never none. Real
CLI, real store, real bundles verified by the real counter engine."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import cbor2
import nacl.signing
import pytest
import sqlalchemy as sa

from credential import transport
from credential.claims import parse_claims
from credential.errors import UsageError
from credential.home import StagedFile, read_passphrase
from credential.keys import b64url
from credential.passport import decode_text, present
from issuer.store import IssuerStore, credentials
from tests.conftest import PASSPHRASE, Run
from tests.factory import EXAMPLES
from verifier.engine import Verifier

CLAIMS = str(EXAMPLES / "claims-mexicali.json")
LIB = ["residence", "library"]


def _issue(run: Run, office: Path, out: Path, holder: nacl.signing.SigningKey,
           *extra: str) -> tuple[int, str, str]:
    code, stdout, err = run("issuer", "issue", "--claims", CLAIMS, "--holder-key",
                            b64url(bytes(holder.verify_key)), "--out", str(out), *extra,
                            "--home", str(office))
    return code, stdout.strip(), err


def _status(run: Run, office: Path, credential_id: str) -> tuple[str, str | None]:
    code, out, _ = run("issuer", "status", credential_id, "--json", "--home", str(office))
    assert code == 0
    record = json.loads(out)
    return record["status"], record["reason"]


def _counter(run: Run, office: Path, tmp_path: Path) -> Verifier:
    assert run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(office))[0] == 0
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"),
               "--home", str(office))[0] == 0
    return Verifier(bundles=[(tmp_path / "b.cbor").read_bytes()],
                    roots=[IssuerStore.open(office).root()])


def _shown(path: Path, holder: nacl.signing.SigningKey) -> str:
    """What the holder's wallet shows at a library: the file as issued, presented."""
    cose, disclosures = cbor2.loads(transport.unpack(path.read_text().strip()))
    return transport.pack(present(cose, tuple(disclosures), groups=LIB, holder=holder,
                                  audience="library", now=int(time.time())))


def _count(office: Path) -> int:
    with IssuerStore.open(office).engine.connect() as db:
        return int(db.execute(sa.select(sa.func.count()).select_from(credentials)).scalar_one())


@pytest.fixture
def old(office: Path, run: Run, tmp_path: Path) -> tuple[str, nacl.signing.SigningKey]:
    phone = nacl.signing.SigningKey.generate()
    code, credential_id, err = _issue(run, office, tmp_path / "old.cred", phone)
    assert code == 0, err
    return credential_id, phone


def test_a_new_phone_gets_a_new_passport_and_the_old_one_is_revoked(
        office: Path, run: Run, tmp_path: Path,
        old: tuple[str, nacl.signing.SigningKey]) -> None:
    old_id, old_phone = old
    new_phone = nacl.signing.SigningKey.generate()
    code, new_id, err = _issue(run, office, tmp_path / "new.cred", new_phone,
                               "--replaces", old_id.lower(), "--reason", "extraviado")
    assert code == 0, err
    assert new_id != old_id and len(new_id) == 13  # stdout: the new id alone, as ever
    assert f"{old_id}: revocado / revoked (extraviado / device_lost)" in err
    assert _status(run, office, old_id) == ("revoked", "device_lost")
    assert _status(run, office, new_id) == ("valid", None)
    # on the public record in that order: the new passport, then the old one's revocation
    types = [e["type"] for _, e in IssuerStore.open(office).pending()]
    assert types[-2:] == ["credential_issued", "status_changed"]
    counter = _counter(run, office, tmp_path)
    assert counter.verify(_shown(tmp_path / "old.cred", old_phone), service="library").code == (
        "revoked")
    assert counter.verify(_shown(tmp_path / "new.cred", new_phone), service="library").code == (
        "accepted")


def test_the_reason_is_superseded_unless_said(office: Path, run: Run, tmp_path: Path,
                                              old: tuple[str, nacl.signing.SigningKey]) -> None:
    code, _, err = _issue(run, office, tmp_path / "new.cred", nacl.signing.SigningKey.generate(),
                          "--replaces", old[0])
    assert code == 0, err
    assert _status(run, office, old[0]) == ("revoked", "superseded")


@pytest.mark.parametrize(("replaces", "status", "code"), [
    ("AAAAAAAAAAAAA", 1, "credential_unknown"),  # well formed, never issued here
    ("not-an-id", 2, "credential_id_invalid"),
])
def test_a_replaced_passport_that_is_not_there_issues_nothing(
        office: Path, run: Run, tmp_path: Path, old: tuple[str, nacl.signing.SigningKey],
        replaces: str, status: int, code: str) -> None:
    before = _count(office)
    exit_code, out, err = _issue(run, office, tmp_path / "new.cred",
                                 nacl.signing.SigningKey.generate(), "--replaces", replaces)
    assert (exit_code, out) == (status, "") and f"[{code}]" in err, err
    assert _count(office) == before and not (tmp_path / "new.cred").exists()
    assert _status(run, office, old[0]) == ("valid", None)


def test_a_passport_revoked_already_is_not_replaced_and_nothing_is_issued(
        office: Path, run: Run, tmp_path: Path, old: tuple[str, nacl.signing.SigningKey]) -> None:
    assert run("issuer", "revoke", old[0], "--reason", "fraud", "--home", str(office))[0] == 0
    before = _count(office)
    code, _, err = _issue(run, office, tmp_path / "new.cred", nacl.signing.SigningKey.generate(),
                          "--replaces", old[0])
    assert code == 1 and "[replaces_revoked]" in err and "(fraude / fraud)" in err, err
    assert _count(office) == before and not (tmp_path / "new.cred").exists()
    assert _status(run, office, old[0]) == ("revoked", "fraud")  # its reason kept


def test_a_renewal_that_starts_later_does_not_revoke_the_old_one_now(
        office: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        old: tuple[str, nacl.signing.SigningKey]) -> None:
    """An early renewal (from next month) revoked the old passport at once: the resident held
    none valid until the new one's first day, and nothing said so."""
    start = dt.date.today() + dt.timedelta(days=40)
    doc = json.loads(Path(CLAIMS).read_text("utf-8"))
    doc.update(valid_from=start.isoformat(),
               valid_until=(start + dt.timedelta(days=3 * 365)).isoformat())
    renewal = tmp_path / "renewal.json"
    renewal.write_text(json.dumps(doc), "utf-8")
    before = _count(office)
    monkeypatch.setattr("issuer.cli.read_passphrase", lambda **_: pytest.fail("asked"))
    code, out, err = run("issuer", "issue", "--claims", str(renewal), "--paper", "--out",
                         str(tmp_path / "new.cred"), "--replaces", old[0], "--home", str(office))
    assert (code, out) == (2, "") and "[replaces_before_start]" in err, err
    assert start.isoformat() in err and "sin pasaporte válido" in err, err
    with pytest.raises(UsageError) as refused:  # the store's own check, as a form's dates meet
        IssuerStore.open(office).issue(parse_claims(doc), holder_key=None, passphrase=PASSPHRASE,
                                       replaces=(old[0], "superseded"))
    assert refused.value.code == "replaces_before_start"
    assert _count(office) == before and not (tmp_path / "new.cred").exists()
    assert _status(run, office, old[0]) == ("valid", None)
    monkeypatch.setattr("issuer.cli.read_passphrase", read_passphrase)
    assert run("issuer", "issue", "--claims", str(renewal), "--paper", "--out",  # no --replaces
               str(tmp_path / "new.cred"), "--home", str(office))[0] == 0


def test_a_renewal_not_begun_is_replaced_by_its_correction_and_one_over_by_a_later_one(
        office: Path, run: Run, tmp_path: Path) -> None:
    """Only a passport in force (or beginning before the new one) leaves a gap when revoked at
    once: correcting an early renewal before it begins, or replacing one over already, was
    refused as if the resident were left with none."""
    start = dt.date.today() + dt.timedelta(days=40)
    doc = json.loads(Path(CLAIMS).read_text("utf-8"))
    doc.update(valid_from=start.isoformat(),
               valid_until=(start + dt.timedelta(days=3 * 365)).isoformat())
    (tmp_path / "renewal.json").write_text(json.dumps(doc), "utf-8")
    doc["family_name"] = "Hernández Lopez"
    (tmp_path / "fixed.json").write_text(json.dumps(doc), "utf-8")
    code, early, err = run("issuer", "issue", "--claims", str(tmp_path / "renewal.json"),
                           "--paper", "--out", str(tmp_path / "early.cred"),
                           "--home", str(office))
    assert code == 0, err
    code, fixed, err = run("issuer", "issue", "--claims", str(tmp_path / "fixed.json"),
                           "--paper", "--out", str(tmp_path / "fixed.cred"), "--replaces",
                           early.strip(), "--reason", "data_error", "--home", str(office))
    assert code == 0, err
    assert _status(run, office, early.strip()) == ("revoked", "data_error")
    # one over already (its record's days as an older passport's): nothing in force is lost
    store = IssuerStore.open(office)
    with store.engine.begin() as db:
        db.execute(sa.update(credentials).where(credentials.c.id == fixed.strip()).values(
            valid_from=0, valid_until=int(time.time()) - 10 * 86400))
    code, _, err = run("issuer", "issue", "--claims", str(tmp_path / "renewal.json"),
                       "--paper", "--out", str(tmp_path / "third.cred"), "--replaces",
                       fixed.strip(), "--home", str(office))
    assert code == 0, err
    assert _status(run, office, fixed.strip()) == ("revoked", "superseded")


def test_a_suspended_passport_is_replaced(office: Path, run: Run, tmp_path: Path,
                                          old: tuple[str, nacl.signing.SigningKey]) -> None:
    """The usual order at the office: the phone reported lost (suspended), then a new one."""
    assert run("issuer", "suspend", old[0], "--reason", "device_lost",
               "--home", str(office))[0] == 0
    code, _, err = _issue(run, office, tmp_path / "new.cred", nacl.signing.SigningKey.generate(),
                          "--replaces", old[0], "--reason", "device_lost")
    assert code == 0, err
    assert _status(run, office, old[0]) == ("revoked", "device_lost")


def test_a_new_passport_that_cannot_be_written_leaves_the_old_one_in_force(
        office: Path, run: Run, tmp_path: Path, old: tuple[str, nacl.signing.SigningKey],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is written inside the transaction: a write that fails there (a full disk, a
    folder gone read-only) means nothing issued and nothing revoked, not a resident left with
    no passport in force."""
    def write(staged: StagedFile, data: bytes) -> None:
        raise PermissionError(1, "Operation not permitted", str(staged.target))

    monkeypatch.setattr(StagedFile, "write", write)
    before = _count(office)
    code, out, err = _issue(run, office, tmp_path / "new.cred",
                            nacl.signing.SigningKey.generate(), "--replaces", old[0])
    assert (code, out) == (1, "") and "[file_error]" in err and "Traceback" not in err, err
    assert "revocado" not in err
    assert _count(office) == before and not (tmp_path / "new.cred").exists()
    assert _status(run, office, old[0]) == ("valid", None)


def test_a_new_passport_that_cannot_be_put_in_place_is_kept_and_the_old_one_replaced(
        office: Path, run: Run, tmp_path: Path, old: tuple[str, nacl.signing.SigningKey],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Put in place once recorded: a rename that fails then (a file there another user owns)
    leaves the new passport recorded and in force, its file kept under the name it was written
    to, and says so with the old one's revocation: one in force, and in the office's hands."""
    def commit(staged: StagedFile) -> None:
        raise PermissionError(1, "Operation not permitted", str(staged.target))

    monkeypatch.setattr(StagedFile, "commit", commit)
    code, out, err = _issue(run, office, tmp_path / "new.cred",
                            nacl.signing.SigningKey.generate(), "--replaces", old[0])
    assert code == 1 and "[issued_file_not_placed]" in err and "revocado" in err, err
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith(".new.cred.")]
    assert decode_text(kept.read_text()).payload.credential_id == out.strip()
    assert _status(run, office, out.strip())[0] == "valid"
    assert _status(run, office, old[0])[0] == "revoked"


def test_a_reason_without_replaces_is_a_usage_error(office: Path, run: Run,
                                                    tmp_path: Path) -> None:
    before = _count(office)
    code, _, err = _issue(run, office, tmp_path / "new.cred", nacl.signing.SigningKey.generate(),
                          "--reason", "device_lost")
    assert code == 2 and "--replaces" in err, err
    assert _count(office) == before
