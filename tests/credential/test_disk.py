"""``credential.disk``: a SQLite error read as the disk's (full, failing) or not, with the disk's
free space telling a full disk's I/O error (growing a WAL's ``-shm``) from a failing device's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from credential.disk import disk_trouble
from tests.disk import disk_with


def _error(cls: type[sqlite3.DatabaseError], text: str, code: int | None) -> sqlite3.Error:
    exc = cls(text)
    if code is not None:
        exc.sqlite_errorcode = code
    return exc




@pytest.mark.parametrize(("free", "code", "text", "said"), [
    (1 << 30, 13, "database or disk is full", "full"),  # SQLITE_FULL, whatever the room
    (1 << 30, None, "database or disk is full", "full"),  # an older sqlite3: by its text
    (0, 4874, "disk I/O error", "full"),  # SQLITE_IOERR_SHMSIZE on a full disk
    (1 << 30, 4874, "disk I/O error", "io"),  # the same with room: the device failed
    (1 << 30, 778, "disk I/O error", "io"),  # SQLITE_IOERR_WRITE
    (0, 14, "unable to open database file", "full"),  # no room for a journal
    (1 << 30, 14, "unable to open database file", None),  # permissions: not the disk's
    (0, 11, "database disk image is malformed", None),  # damage stays damage, room or not
])
def test_an_error_is_the_disks_only_when_it_says_so_or_the_disk_is_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, code: int | None,
        text: str, said: str | None) -> None:
    disk_with(monkeypatch, tmp_path, free=free)
    assert disk_trouble(_error(sqlite3.OperationalError, text, code), tmp_path) == said


def test_what_is_not_a_sqlite_error_is_never_the_disks(tmp_path: Path) -> None:
    assert disk_trouble(OSError(28, "No space left on device"), tmp_path) is None
    assert disk_trouble(_error(sqlite3.OperationalError, "disk I/O error", 10), None) == "io"
