"""A full or failing disk under the log's SQLite file is said to be that, not "the database
cannot be used … if the file is damaged, restore it".

The disk fails for real, without a mount: under a file size limit (RLIMIT_FSIZE, SIGXFSZ
ignored) SQLite cannot grow the WAL's ``-shm``, the first thing a full disk refuses, and reports
it as an I/O error (SQLITE_IOERR_SHMSIZE). Whether the disk is full is read from ``os.statvfs``,
answered here for the test's folder."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from credential.errors import StoreError
from ledger.http import create_app
from ledger.store import LedgerStore
from tests.disk import disk_with, files_limited_to
from tests.ledger.conftest import PASSPHRASE, init_home, run_cli
from tests.ledger.helpers import commitment


@pytest.fixture
def moved(tmp_path: Path) -> Path:
    """A log home with three entries, as a new disk holds it (no ``-shm`` yet: the first reader
    makes one and grows it)."""
    home = tmp_path / "home"
    init_home(home)
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(3)], cosign=False)
        store.engine.dispose()
    with contextlib.closing(sqlite3.connect(home / "ledger.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(home, tmp_path / "disk" / "home",
                    ignore=shutil.ignore_patterns("*-shm", "*-wal"))
    return tmp_path / "disk" / "home"


@pytest.mark.parametrize(("free", "code"), [(8192, "store_full"), (50 << 30, "store_io_error")])
def test_a_full_or_failing_disk_is_not_called_a_damaged_database(
        free: int, code: str, moved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch, files_limited_to(16384):
        disk_with(patch, moved, free=free)
        assert run_cli("audit", "--home", str(moved)) == 1
        err = capsys.readouterr().err
        with pytest.raises(StoreError) as raised, LedgerStore.open(moved) as store:
            store.size()
    assert err.startswith(f"[{code}]"), err
    assert raised.value.code == code
    assert str(moved / "ledger.db") in err
    assert "[ledger_database_unreadable]" not in err and "if the file is damaged" not in err
    assert "restore it from a backup or a mirror" not in err
    if code == "store_full":
        assert "not damaged" in err and "Free some space" in err
    else:
        assert "disk I/O error" in err and "device" in err
        assert "does not show that the database is damaged" in err
    # with room again the same log answers: it was never damaged
    assert run_cli("audit", "--home", str(moved)) == 0


def test_a_damaged_file_is_still_unreadable(moved: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    """What is not the disk's doing keeps its message: a file that is no database."""
    (moved / "ledger.db").write_bytes(b"not a database" * 600)
    capsys.readouterr()
    assert run_cli("audit", "--home", str(moved)) == 1
    assert capsys.readouterr().err.startswith("[ledger_database_unreadable]")


@pytest.mark.parametrize(("free", "code"), [(8192, "store_full"), (50 << 30, "store_io_error")])
def test_over_http_a_full_or_failing_disk_keeps_its_code(
        free: int, code: str, moved: Path) -> None:
    """An office's append to a node whose disk is full is ``store_full`` (free space), not
    "this node cannot use its database", as docs/ledger.md says; the log is named, not the
    file's path."""
    with LedgerStore.open(moved, passphrase=PASSPHRASE) as store:
        token = store.add_token("oficina")
        client = create_app(store=store).test_client()
        with pytest.MonkeyPatch.context() as patch, files_limited_to(16384):
            disk_with(patch, moved, free=free)
            store.engine.dispose()
            resp = client.post("/entries", json={"entries": [commitment(9)]},
                               headers={"Authorization": f"Bearer {token}"})
    body = resp.get_json()
    assert (resp.status_code, body["code"]) == (503, code), body
    assert store.origin in body["message"]["en"] and str(moved) not in resp.get_data(as_text=True)
    with LedgerStore.open(moved) as store:
        assert store.size() == 3
