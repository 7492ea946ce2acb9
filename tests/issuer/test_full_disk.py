"""A full or failing disk, under the office store or under a backup's destination, is said to be
that: never "the store is damaged, restore it" (a restore retires the office key and every
passport issued since must be issued again), nor "the backup is not an intact copy" of a file
that was only read.

The disk is made to fail for real, without a mount: under a file size limit (RLIMIT_FSIZE, with
SIGXFSZ ignored) the kernel refuses to grow a file past it, and SQLite meets that as it meets a
full disk's first refusal, an I/O error (growing a WAL's ``-shm``: SQLITE_IOERR_SHMSIZE; writing
a page: SQLITE_IOERR_WRITE). Whether the disk is full is read from ``os.statvfs``, answered here
for the test's folders. One test also runs on a real full tmpfs where it can be mounted."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from credential.errors import StoreError
from issuer import backup
from tests.conftest import Run
from tests.disk import disk_with, files_limited_to
from tests.factory import EXAMPLES
from tests.issuer.conftest import init_office, issue_paper


def _moved(office: Path, to: Path) -> Path:
    """The office store as a new disk holds it (copied there, no ``-shm`` yet: the first reader
    makes one and grows it, as after a reboot or on another machine)."""
    with contextlib.closing(sqlite3.connect(office / "issuer.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    to.mkdir(mode=0o700)
    shutil.copy2(office / "issuer.db", to / "issuer.db")
    return to


def _not_damage(err: str) -> None:
    assert "[store_damaged]" not in err and "[backup_unreadable]" not in err, err
    assert "Restore it from a backup;" not in err and "Restáurela" not in err, err


@pytest.mark.parametrize("command", ["status", "issue"])
def test_a_full_disk_under_the_store_is_store_full_even_for_a_read(
        command: str, homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path
        ) -> None:
    """With WAL, the first thing to fail on a full disk is growing ``-shm`` (SQLITE_IOERR_SHMSIZE,
    "disk I/O error"), even for ``issuer status``: that reads as the full disk it is."""
    init_office(run, homes["issuer"])
    credential = issue_paper(run, homes["issuer"], tmp_path / "m.txt")
    home = _moved(homes["issuer"], tmp_path / "disk")
    args = {"status": ("issuer", "status", credential),
            "issue": ("issuer", "issue", "--claims", str(EXAMPLES / "claims-calexico.json"),
                      "--paper", "--out", str(tmp_path / "j.txt"))}[command]
    with pytest.MonkeyPatch.context() as patch, files_limited_to(16384):
        disk_with(patch, tmp_path / "disk", free=8192)
        code, _, err = run(*args, "--home", str(home))
    assert code == 1 and err.startswith("[store_full]"), err
    assert "not damaged" in err and "Libere espacio" in err
    _not_damage(err)
    assert not (tmp_path / "j.txt").exists()
    # room again: the same store answers, it was never damaged
    code, out, err = run("issuer", "status", credential, "--home", str(home))
    assert code == 0 and "valid" in out, err


def test_an_io_error_on_a_disk_with_room_is_not_called_damage(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """The same I/O error where the disk has room: the disk or device failed. Said as that,
    with what to check, and that the database is not known to be damaged."""
    init_office(run, homes["issuer"])
    credential = issue_paper(run, homes["issuer"], tmp_path / "m.txt")
    home = _moved(homes["issuer"], tmp_path / "disk")
    with pytest.MonkeyPatch.context() as patch, files_limited_to(16384):
        disk_with(patch, tmp_path / "disk", free=50 << 30)
        code, _, err = run("issuer", "status", credential, "--home", str(home))
    assert code == 1 and err.startswith("[store_io_error]"), err
    assert "disk I/O error" in err and "device" in err and "dispositivo" in err
    assert "does not show that the database is damaged" in err
    _not_damage(err)


def test_a_damaged_store_is_still_called_damaged(homes: dict[str, Path], passphrase: str,
                                                 run: Run, tmp_path: Path) -> None:
    """What is not the disk's doing keeps its name: a store that is no database."""
    init_office(run, homes["issuer"])
    store = homes["issuer"] / "issuer.db"
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.write_bytes(b"not a database" * 600)
    code, _, err = run("issuer", "status", "A" * 13, "--home", str(homes["issuer"]))
    assert code == 1 and err.startswith("[store_damaged]"), err


@pytest.mark.parametrize(("free", "expected"), [(8192, "backup_target_full"),
                                                (50 << 30, "backup_target_io_error")])
def test_a_backup_onto_a_full_or_failing_disk_names_that_disk_not_the_office(
        free: int, expected: str, homes: dict[str, Path], passphrase: str, run: Run,
        tmp_path: Path) -> None:
    """A USB stick that fills or fails while the copy is written: the stick's, not "the office
    store is not an intact copy"; nothing is left on it, and with room the backup is taken."""
    office, stick = homes["issuer"], tmp_path / "stick"
    init_office(run, office)
    issue_paper(run, office, tmp_path / "m.txt")
    stick.mkdir()
    target = stick / "office.bak"
    # the office store's -shm (32 KiB) fits; the copy does not
    with pytest.MonkeyPatch.context() as patch, files_limited_to(40960):
        disk_with(patch, stick, free=free)
        code, _, err = run("issuer", "backup", "--out", str(target), "--home", str(office))
    assert code == 1 and err.splitlines()[-1].startswith(f"[{expected}]"), err
    assert str(target) in err and str(office / "issuer.db") in err
    assert "was only read, and the fault is not in it" in err
    _not_damage(err)
    assert list(stick.iterdir()) == []  # no partial copy, nor its -journal, -wal or -shm
    code, out, err = run("issuer", "backup", "--out", str(target), "--home", str(office))
    assert code == 0 and "1 pasaportes" in out, err


@pytest.mark.parametrize(("free", "expected"), [(8192, "backup_target_full"),
                                                (50 << 30, "backup_target_io_error")])
def test_a_restore_onto_a_full_or_failing_disk_does_not_blame_the_backup(
        free: int, expected: str, homes: dict[str, Path], passphrase: str, run: Run,
        tmp_path: Path) -> None:
    """During a disaster recovery the backup may be the only one: a full disk under the new
    office must not have it called "not an intact copy", nor the new office "damaged, restore
    it from a backup"."""
    office, copy, disk = homes["issuer"], tmp_path / "good.bak", tmp_path / "disk"
    init_office(run, office)
    issue_paper(run, office, tmp_path / "m.txt")
    assert run("issuer", "backup", "--out", str(copy), "--home", str(office))[0] == 0
    disk.mkdir()
    new = disk / "new"
    with pytest.MonkeyPatch.context() as patch, files_limited_to(40960):
        disk_with(patch, disk, free=free)
        code, _, err = run("issuer", "restore", "--from", str(copy), "--home", str(new),
                           "--no-ledger")
    assert code == 1 and err.splitlines()[-1].startswith(f"[{expected}]"), err
    assert f"{new} " in err and f"{copy} was only read" in err
    _not_damage(err)
    assert list(disk.iterdir()) == []  # no office half made
    code, out, err = run("issuer", "restore", "--from", str(copy), "--home", str(new),
                         "--no-ledger")
    assert code == 0 and "1 pasaportes" in out, err


def _ioerr(name: str, code: int) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorcode, exc.sqlite_errorname = code, name
    return exc


@pytest.mark.parametrize(("exc", "room", "destination"), [
    (_ioerr("SQLITE_IOERR_WRITE", 778), True, True),  # only the copy is written
    (_ioerr("SQLITE_IOERR_FSYNC", 1034), True, True),
    (_ioerr("SQLITE_IOERR_SHMSIZE", 4874), True, False),  # only the (WAL) source has a -shm
    (_ioerr("SQLITE_IOERR_READ", 266), True, False),
    (_ioerr("SQLITE_IOERR_SHMSIZE", 4874), False, True),  # the copy's disk is the full one
    (sqlite3.DatabaseError("file is not a database"), False, False),  # what the source holds
], ids=["write", "fsync", "shm-room", "read", "shm-full", "not-a-database"])
def test_the_side_of_an_online_backup_error(exc: sqlite3.DatabaseError, room: bool,
                                            destination: bool, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's online backup reports either side's error through the destination connection:
    which side failed is read from the error and the destination disk's free space."""
    disk_with(monkeypatch, tmp_path, free=(50 << 30) if room else 4096)
    assert backup._destinations(exc, tmp_path / "copy.bak") is destination


def test_a_read_error_on_the_live_store_is_the_store_s(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the office store fails during a backup: said as the store itself says it."""
    live = tmp_path / "office" / "issuer.db"
    live.parent.mkdir()
    disk_with(monkeypatch, live.parent, free=4096)
    error = backup._unread(_ioerr("SQLITE_IOERR_SHMSIZE", 4874), live, shown=live, live=True)
    assert error.code == "store_full"
    disk_with(monkeypatch, live.parent, free=50 << 30)
    error = backup._unread(_ioerr("SQLITE_IOERR_READ", 266), live, shown=live, live=True)
    assert error.code == "store_io_error"
    shown = tmp_path / "usb" / "good.bak"  # a backup being restored, on a failing stick
    error = backup._unread(_ioerr("SQLITE_IOERR_READ", 266), shown, shown=shown, live=False)
    assert error.code == "backup_source_io_error" and "does not show" in error.message["en"]


def test_the_folder_a_backup_makes_is_owner_only(homes: dict[str, Path], passphrase: str,
                                                 run: Run, tmp_path: Path) -> None:
    """As every folder the tools make for outputs: 0700 whatever the umask (others could
    otherwise remove or replace the office's only backup)."""
    office = homes["issuer"]
    init_office(run, office)
    old = os.umask(0o002)
    try:
        code, _, err = run("issuer", "backup", "--out", str(tmp_path / "b" / "daily" / "x.bak"),
                           "--home", str(office))
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "b" / "daily").stat().st_mode & 0o777 == 0o700
    given = tmp_path / "given"
    given.mkdir(mode=0o755)
    os.chmod(given, 0o755)  # a folder already there is the operator's: left as it is
    assert run("issuer", "backup", "--out", str(given / "x.bak"), "--home", str(office))[0] == 0
    assert given.stat().st_mode & 0o777 == 0o755


def test_the_sweep_removes_what_a_copy_cut_short_in_wal_mode_left(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A copy is in WAL mode (as the store) until it is made one file: one cut short there
    leaves its -wal and -shm, which go with it."""
    office, folder = homes["issuer"], tmp_path / "backups"
    init_office(run, office)
    folder.mkdir()
    left = [folder / f".old.bak.abc123.pasaporte-partial{suffix}"
            for suffix in ("-wal", "-shm", "-journal")]
    for path in left:
        path.write_bytes(b"x")
    assert run("issuer", "backup", "--out", str(folder / "new.bak"), "--home", str(office))[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["new.bak"]


def _can_mount(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
                          capture_output=True, timeout=30)
    return done.returncode == 0


def test_on_a_real_full_tmpfs(homes: dict[str, Path], passphrase: str, run: Run,
                              tmp_path: Path) -> None:
    """The reviewer's case on a real full disk (root, where ``mount`` works; skipped elsewhere):
    ``status`` says the disk is full, and a backup onto the full disk names it."""
    disk = tmp_path / "disk"
    if not _can_mount(disk):
        pytest.skip("no tmpfs can be mounted here (not root, or no mount)")
    try:
        office = homes["issuer"]
        init_office(run, office)
        credential = issue_paper(run, office, tmp_path / "m.txt")
        home = _moved(office, disk / "off")
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 1024)
        code, _, err = run("issuer", "status", credential, "--home", str(home))
        assert code == 1 and err.startswith("[store_full]"), err
        code, _, err = run("issuer", "backup", "--out", str(disk / "o.bak"), "--home", str(office))
        assert code == 1 and "[backup_target_full]" in err, err
        _not_damage(err)
        filler.unlink()
        assert run("issuer", "status", credential, "--home", str(home))[0] == 0
    finally:
        gc.collect()  # the stores' pooled connections keep files on the disk open
        if subprocess.run(["umount", str(disk)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def test_the_store_error_is_a_store_error() -> None:
    """The codes the classification gives are the typed errors the CLI shows (exit 1)."""
    for code in ("store_io_error", "backup_target_full", "backup_target_io_error",
                 "backup_source_io_error"):
        err = StoreError(code, what="issuer.db", path="x", source="y", reason="disk I/O error")
        assert "Error: " not in err.message["en"] and "{" not in err.message["es"], code
