"""A disk that is full or failing, for tests, without a mount: a file-size limit makes SQLite's
writes fail for real (EFBIG, reported as SQLITE_IOERR_WRITE or _SHMSIZE), and ``os.statvfs``
answers for a folder as a disk with so much room."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

_STATVFS = os.statvfs


@contextlib.contextmanager
def files_limited_to(size: int) -> Iterator[None]:
    """No file of this process grows past ``size`` bytes: a write or a truncate past it fails
    (EFBIG) as on a disk with no room left."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def disk_with(monkeypatch: pytest.MonkeyPatch, under: Path, *, free: int) -> None:
    """``os.statvfs`` says the disk holding anything under ``under`` has ``free`` bytes left."""
    def statvfs(path: str | os.PathLike[str] | int) -> os.statvfs_result:
        real = _STATVFS(path)
        if isinstance(path, int) or not Path(path).resolve().is_relative_to(under.resolve()):
            return real
        blocks = free // 4096
        return os.statvfs_result((4096, 4096, 1 << 20, blocks, blocks, real.f_files,
                                  real.f_ffree, real.f_favail, real.f_flag, real.f_namemax))

    monkeypatch.setattr(os, "statvfs", statvfs)
