"""Office error codes that no other issuer test provoked: each is brought about as a clerk (or a
script on the public API) would meet it, and the test checks the code, what the message tells,
and that nothing was changed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from credential.claims import parse_claims
from credential.errors import StoreError, UsageError
from credential.home import held_lock
from issuer.store import IssuerStore, bulk_fingerprints, credentials
from tests.conftest import Run
from tests.factory import EXAMPLES, example_claims

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _registered(home: Path) -> int:
    with IssuerStore.open(home).engine.connect() as db:
        return int(db.execute(sa.select(sa.func.count()).select_from(credentials)).scalar_one())


@pytest.mark.parametrize(("zone", "offset"), [("Pacific/Kiritimati", "UTC+14"),
                                              ("Etc/GMT-13", "UTC+13")])
def test_a_zone_beyond_twelve_hours_is_refused_at_init(homes: dict[str, Path], passphrase: str,
                                                       run: Run, zone: str, offset: str) -> None:
    """Counters read validity days without the zone: past UTC+12 they would be a day off."""
    home = homes["issuer"]
    code, out, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                         "Centro", "--timezone", zone, "--home", str(home))
    assert code == 2 and out == "" and err.startswith("[timezone_out_of_range] "), err
    assert zone in err and offset in err and "−12 h" in err and "+12 h" in err
    assert not (home / "issuer.db").exists()


@pytest.mark.parametrize("command", [["keys"], ["publish"], ["rotate"],
                                     ["status", "AAAAAAAAAAAAA"]])
def test_a_home_without_an_office_asks_for_its_folder_first(tmp_path: Path, passphrase: str,
                                                           run: Run, command: list[str]) -> None:
    home = tmp_path / "nowhere"
    code, out, err = run("issuer", *command, "--home", str(home))
    assert code == 1 and out == "" and err.startswith("[issuer_not_initialised] "), err
    # a running office that forgot --home must not be told to make a second root for its city
    assert str(home) in err and err.count("PASAPORTE_HOME") == 2
    assert err.index("--home") < err.index("pasaporte issuer init")
    assert not home.exists()  # nothing made where no office is


def test_publish_without_a_ledger_says_how_to_set_one(office: Path, run: Run) -> None:
    before = IssuerStore.open(office).pending()
    code, out, err = run("issuer", "publish", "--home", str(office))
    assert code == 1 and out == "" and err.startswith("[ledger_not_configured] "), err
    assert "pasaporte issuer ledger --url URL --token TOKEN" in err
    assert IssuerStore.open(office).pending() == before and before  # still queued, all of it


def test_a_reason_that_is_not_a_code_is_refused_by_the_store(office: Path, passphrase: str
                                                             ) -> None:
    """The CLI turns free text into ``unspecified`` (``reason_not_kept``); a script on the store
    itself is refused instead, so that no free text reaches the public record."""
    store = IssuerStore.open(office)
    cred = store.issue(parse_claims(example_claims()), holder_key=None, passphrase=passphrase)
    queued = store.pending()
    with pytest.raises(UsageError) as refused:
        store.set_status(cred.credential_id, "revoked", "died on 3 May, Juan Pérez",
                         passphrase=passphrase)
    assert refused.value.code == "reason_invalid"
    for text in refused.value.message.values():
        assert "holder_request" in text and "deceased" in text and "Juan" not in text
    assert (store.credential(cred.credential_id) or {}).get("status") == "valid"
    assert store.pending() == queued  # nothing on its way to the public record
    changed = store.set_status(cred.credential_id, "revoked", "deceased", passphrase=passphrase)
    assert (changed["status"], changed["reason"]) == ("revoked", "deceased")


def test_a_backup_whose_ledger_cannot_be_read_restores_nothing(
        office: Path, passphrase: str, run: Run, tmp_path: Path) -> None:
    """The backup names a ledger it cannot reach: the status changes made after the backup
    cannot be read, so nothing is restored, and the clerk hears of --no-ledger."""
    IssuerStore.open(office).configure_ledger(UNREACHABLE, "lt_any", passphrase, check=False)
    assert run("issuer", "backup", "--out", str(tmp_path / "o.bak"), "--home", str(office))[0] == 0
    restored = tmp_path / "restored"
    code, out, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"),
                         "--home", str(restored))
    assert code == 1 and out == "" and "[restore_ledger_unreadable]" in err, err
    assert UNREACHABLE in err and "--no-ledger" in err and "No se restauró nada" in err
    assert not restored.exists()
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"), "--no-ledger",
                       "--home", str(restored))
    assert code == 0 and "restore_ledger_unreadable" not in err, err
    assert (restored / "issuer.db").exists()


def test_a_folder_another_bulk_run_writes_to_is_refused(office: Path, run: Run,
                                                        tmp_path: Path) -> None:
    """The folder's lock is held (here by the test, as another ``issuer bulk`` holds it): the
    second run issues nothing, and runs once the first has finished."""
    out = tmp_path / "out"
    out.mkdir()
    args = ("issuer", "bulk", str(EXAMPLES / "residents-sample.csv"), "--out-dir", str(out),
            "--home", str(office))
    with held_lock(out / ".pasaporte-bulk.lock"):
        code, stdout, err = run(*args)
    assert code == 1 and stdout == "" and "[bulk_folder_busy]" in err, err
    assert str(out) in err and "wait for it to finish" in err
    assert _registered(office) == 0
    assert sorted(p.name for p in out.iterdir()) == [".pasaporte-bulk.lock"]
    code, stdout, err = run(*args)
    assert code == 0 and stdout.startswith("3 "), err
    assert _registered(office) == 3


def test_a_bulk_row_another_run_issued_meanwhile_is_not_issued_twice(office: Path,
                                                                     passphrase: str) -> None:
    """Two runs both read a row as not issued; the one that commits second is refused inside
    its own transaction, and its credential (and the file it was to write) never exists."""
    store = IssuerStore.open(office)
    claims = parse_claims(example_claims())
    first = store.issue(claims, holder_key=None, passphrase=passphrase,
                        bulk_row=("row-fingerprint", None))
    queued = store.pending()
    written: list[str] = []
    with pytest.raises(StoreError) as refused:
        store.issue(claims, holder_key=None, passphrase=passphrase,
                    bulk_row=("row-fingerprint", None),  # what its earlier read saw
                    before_commit=lambda cred: written.append(cred.credential_id))
    assert refused.value.code == "bulk_row_taken"
    assert "not issued twice" in refused.value.message["en"]
    assert written == [] and store.pending() == queued and _registered(office) == 1
    with store.engine.connect() as db:
        rows = db.execute(sa.select(bulk_fingerprints.c.fingerprint,
                                    bulk_fingerprints.c.credential_id)).all()
    assert [tuple(r) for r in rows] == [("row-fingerprint", first.credential_id)]

