"""``issuer backup`` cut short: a backup process killed at any point (SIGKILL, a power cut) leaves
either the whole backup at its target or nothing there, and the next backup into the folder
removes the files it left, never those of a backup still being written."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from issuer import backup
from issuer.store import IssuerStore
from tests.conftest import Run
from tests.factory import EXAMPLES
from tests.issuer.conftest import init_office

REPO = Path(__file__).resolve().parents[2]

# The process kills itself at one point of ``take``: while the copy is inside a SQLite
# transaction (its journal beside it), once the copy is written and signed but not yet linked
# into place, and once it is linked but its temporary name is not yet removed.
_KILL_AT = {
    "mid-transaction": "backup._digest = die",
    "before-link": "backup._checked = die",
    "after-link": "backup.os.link = lambda a, b: (link(a, b), die())",
}



def _killed_backup(home: Path, target: Path, at: str) -> None:
    script = (
        "import os, signal, sys\n"
        "from issuer import backup\n"
        "from pasaporte.cli import main\n"
        "link = os.link\n"
        "def die(*_a, **_k): os.kill(os.getpid(), signal.SIGKILL)\n"
        f"{_KILL_AT[at]}\n"
        "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run(
        [sys.executable, "-c", script, "issuer", "backup", "--out", str(target),
         "--home", str(home)],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize("at", sorted(_KILL_AT))
def test_a_killed_backup_leaves_the_whole_file_or_none_and_is_swept(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path, at: str) -> None:
    office, folder = homes["issuer"], tmp_path / "backups"
    init_office(run, office)
    code, issued, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                            "--paper", "--out", str(tmp_path / "p.txt"), "--home", str(office))
    assert code == 0, err
    before = IssuerStore.open(office).pending()
    _killed_backup(office, folder / "monday.bak", at)
    if at == "after-link":  # it got as far as the target: the file there is whole
        restored = backup.restore(folder / "monday.bak", tmp_path / "r", passphrase,
                                  ledger=False)
        assert restored.count == 1
        assert (IssuerStore.open(tmp_path / "r").credential(issued.strip()) or {}).get(
            "status") == "valid"
    else:
        assert not (folder / "monday.bak").exists()
    assert any(p.name.startswith(".monday.bak.") for p in folder.iterdir())  # what it left
    # the office itself lost nothing to the kill, and is not left locked
    assert IssuerStore.open(office).pending() == before
    assert (IssuerStore.open(office).credential(issued.strip()) or {}).get("status") == "valid"

    # The next day's backup, under its own name, clears what the killed one left.
    code, _, err = run("issuer", "backup", "--out", str(folder / "tuesday.bak"),
                       "--home", str(office))
    assert code == 0, err
    kept = {"tuesday.bak"} | ({"monday.bak"} if at == "after-link" else set())
    assert {p.name for p in folder.iterdir()} == kept


def test_a_refused_backup_still_clears_what_a_killed_one_left(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    office, folder = homes["issuer"], tmp_path / "backups"
    init_office(run, office)
    _killed_backup(office, folder / "b.bak", "after-link")
    code, _, err = run("issuer", "backup", "--out", str(folder / "b.bak"), "--home", str(office))
    assert code == 2 and "backup_exists" in err
    assert [p.name for p in folder.iterdir()] == ["b.bak"]


def test_the_sweep_spares_a_backup_being_written(homes: dict[str, Path], passphrase: str,
                                                 run: Run, tmp_path: Path) -> None:
    """A file whose lock a process holds is a backup in progress (here, the test holds it)."""
    office, folder = homes["issuer"], tmp_path / "backups"
    init_office(run, office)
    folder.mkdir()
    live = folder / ".other.bak.abcd1234.pasaporte-partial"
    dead = folder / ".old.bak.efgh5678.pasaporte-partial"
    for path in (live, dead, Path(f"{live}-journal"), Path(f"{dead}-journal")):
        path.write_bytes(b"x")
    unrelated = folder / ".notes.partial"  # another program's file: not ours to remove
    unrelated.write_bytes(b"x")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, _, err = run("issuer", "backup", "--out", str(folder / "b.bak"),
                           "--home", str(office))
        assert code == 0, err
    finally:
        os.close(fd)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["b.bak", live.name, f"{live.name}-journal", unrelated.name])


def test_a_long_target_name_is_backed_up(homes: dict[str, Path], passphrase: str, run: Run,
                                         tmp_path: Path) -> None:
    """A name the file system takes (under 255 bytes) must not fail on the temporary name's
    additions, after the store was locked and copied."""
    office = homes["issuer"]
    init_office(run, office)
    target = tmp_path / ("copia-" + "x" * 240 + ".bak")
    code, _, err = run("issuer", "backup", "--out", str(target), "--home", str(office))
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".bak")] == [target.name]
