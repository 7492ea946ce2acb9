"""What a SQLite error says of the disk under a database: full, failing, or not the disk's doing.

A full disk, and a disk or device that fails to read or write, are no damage to the database: a
message that says "damaged, restore it from a backup" sends an office to a restore, which
retires its key and has every passport since issued again. With WAL the first thing to fail on
a full disk is growing the ``-shm`` file, which SQLite reports as an I/O error, not as
SQLITE_FULL: the disk's free space tells the two apart. Shared by the office store and the
ledger, which read SQLite's errors the same way.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal

__all__ = ["SQLITE_IOERR", "disk_is_full", "disk_trouble", "sqlite_primary_code"]

# SQLite's primary result codes: the low byte of the extended code sqlite3 gives an error
# (``sqlite_errorcode``: SQLITE_IOERR_SHMSIZE is 4874, its low byte SQLITE_IOERR).
_SQLITE_CANTOPEN = 14
_SQLITE_FULL = 13
SQLITE_IOERR = 10
# Free space under which a disk is taken for full when SQLite's error does not say so itself:
# SQLite grows a WAL's ``-shm`` 32 KiB at a time, and writes a page (4 KiB) or a journal at
# once; an I/O error on a disk this close to full is that disk's lack of room.
_NEARLY_FULL = 1 << 20


def sqlite_primary_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of a driver error, if sqlite3 gave one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def disk_is_full(folder: Path | None) -> bool:
    """Whether the file system holding ``folder`` has (nearly) no room left for a file to grow
    or be made: under ``_NEARLY_FULL`` bytes free, or no free inode."""
    if folder is None:
        return False
    try:
        st = os.statvfs(folder)
    except (OSError, ValueError):  # gone, or a name the system cannot take: not known full
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL or (st.f_files > 0 and st.f_favail == 0)


def disk_trouble(exc: BaseException, folder: Path | None) -> Literal["full", "io"] | None:
    """What a SQLite error says of the disk holding ``folder`` (a database's folder): ``"full"``
    (SQLITE_FULL, or an I/O error or a file that cannot be made there while the disk is
    nearly full), ``"io"`` (any other I/O error: the disk or device failed to read or write;
    nothing shows the database is damaged), or ``None`` (not the disk's doing)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code, text = sqlite_primary_code(exc), str(exc)
    if code == _SQLITE_FULL or (code is None and isinstance(exc, sqlite3.OperationalError)
                                and "full" in text):
        return "full"
    if code == SQLITE_IOERR or (code is None and "disk I/O error" in text):
        return "full" if disk_is_full(folder) else "io"
    if code == _SQLITE_CANTOPEN and disk_is_full(folder):  # no room (or inode) for a journal
        return "full"
    return None
