"""``issuer issue --out`` cut short: a passport is never at --out unless the office recorded it
(a SIGKILL or a power cut before the commit left one counters accept and the office could not
revoke, its status index given again to the next resident), and an interrupt that arrives as
the record commits waits until its file is in place and its id printed."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from credential.home import StagedFile
from credential.passport import decode_text
from issuer.store import IssuerStore
from tests.conftest import Run
from tests.factory import EXAMPLES
from tests.issuer.conftest import after_notices, init_office

REPO = Path(__file__).resolve().parents[2]



def _issue_with(home: Path, out: Path, then: str, *args: str,
                setup: str = "") -> subprocess.CompletedProcess[str]:
    """``issuer issue --out`` in its own process, doing ``then`` once the files are written
    and the record is about to commit (the last step before it)."""
    script = (
        "import os, signal, sys\n"
        "from issuer.store import IssuerStore\n"
        "from pasaporte.cli import main\n"
        f"{setup}\n"
        "issue = IssuerStore.issue\n"
        "def wrapped(self, *a, before_commit, **k):\n"
        "    def hook(cred):\n"
        "        before_commit(cred)\n"
        f"        {then}\n"
        "    return issue(self, *a, before_commit=hook, **k)\n"
        "IssuerStore.issue = wrapped\n"
        "sys.exit(main(sys.argv[1:]))\n")
    return subprocess.run(
        [sys.executable, "-c", script, "issuer", "issue", "--claims",
         str(EXAMPLES / "claims-mexicali.json"), "--paper", "--out", str(out),
         "--qr", str(out.with_suffix(".png")), "--home", str(home), *args],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux's /proc)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == os.path.realpath(path) for fd in fds.iterdir())
    except OSError:  # it ended, or a descriptor closed while read
        return False


def _count(home: Path) -> int:
    with IssuerStore.open(home).engine.connect() as db:
        return int(db.exec_driver_sql("SELECT count(*) FROM credentials").scalar_one())


def test_a_kill_before_the_commit_leaves_no_passport_at_out(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    home = homes["issuer"]
    init_office(run, home)
    proc = _issue_with(home, tmp_path / "maria.cred", "os.kill(os.getpid(), signal.SIGKILL)")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "maria.cred").exists() and not (tmp_path / "maria.png").exists()
    assert _count(home) == 0
    # the next resident's passport is the only one with its status index
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                         "--paper", "--out", str(tmp_path / "maria.cred"), "--home", str(home))
    assert code == 0 and _count(home) == 1, err
    record = IssuerStore.open(home).credential(out.strip())
    assert record is not None
    payload = decode_text((tmp_path / "maria.cred").read_text()).payload
    assert payload.credential_id == out.strip()


def test_an_interrupt_as_the_record_commits_waits_for_its_file_and_id(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Ctrl-C (or SIGTERM) at the commit: recorded, so its file stays and its id is printed;
    then the command ends as cancelled (the file used to be taken back, the id never printed,
    and with --replaces the resident was left with no passport)."""
    home = homes["issuer"]
    init_office(run, home)
    for signum in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / f"{signum.name}.cred"
        proc = _issue_with(home, out, f"os.kill(os.getpid(), signal.{signum.name})")
        assert proc.returncode == 130 and "[cancelled]" in proc.stderr, proc.stderr
        issued = proc.stdout.strip()
        assert out.is_file() and out.with_suffix(".png").is_file(), proc.stderr
        assert decode_text(out.read_text()).payload.credential_id == issued
        assert IssuerStore.open(home).credential(issued) is not None
    assert _count(home) == 2


def test_a_connection_broken_by_an_interrupt_ends_without_another_error(
        homes: dict[str, Path], passphrase: str, run: Run) -> None:
    """Ctrl-C inside a statement invalidates the connection; the store's end-of-transaction
    hook read its info and raised PendingRollbackError in place of the interrupt."""
    home = homes["issuer"]
    init_office(run, home)
    store = IssuerStore.open(home)
    with store.engine.connect() as conn:
        transaction = conn.begin()
        conn.invalidate()
        with pytest.raises(sa.exc.PendingRollbackError):
            conn.info  # noqa: B018 (what the hook read)
        transaction.rollback()  # the hook runs here: no error
    code, _, err = run("issuer", "keys", "--home", str(home))
    assert code == 0, err  # and the store is not left locked


def test_a_file_that_cannot_go_in_place_after_the_commit_is_kept_and_said(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded, then its folder gone (removed meanwhile): the passport is left where it was
    written, and the clerk told which id and where, rather than it lost."""
    home = homes["issuer"]
    init_office(run, home)

    def refused(self: StagedFile) -> None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.target))

    monkeypatch.setattr(StagedFile, "commit", refused)
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                         "--paper", "--out", str(tmp_path / "maria.cred"), "--home", str(home))
    issued = out.strip()
    assert code == 1 and after_notices(err).startswith("[issued_file_not_placed] "), err
    assert IssuerStore.open(home).credential(issued) is not None
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith(".maria.cred.")]
    assert str(kept) in err and issued in err and str(tmp_path / "maria.cred") in err
    assert decode_text(kept.read_text()).payload.credential_id == issued


def test_an_interrupt_held_back_comes_after_all_is_said(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Ctrl-C at the commit of a --replaces whose QR cannot go in place: the id, the old
    passport's revocation and where the QR was kept are all said before the command ends as
    cancelled (it ended at the id, and "what was half done was not saved" hid the rest)."""
    home = homes["issuer"]
    init_office(run, home)
    code, old, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                         "--paper", "--out", str(tmp_path / "old.cred"), "--home", str(home))
    assert code == 0, err
    setup = ("import errno\n"
             "from credential.home import StagedFile\n"
             "commit = StagedFile.commit\n"
             "def refused(self):\n"
             "    if self.target.suffix == '.png':\n"
             "        raise PermissionError(errno.EPERM, 'Operation not permitted')\n"
             "    commit(self)\n"
             "StagedFile.commit = refused")
    proc = _issue_with(home, tmp_path / "new.cred", "os.kill(os.getpid(), signal.SIGINT)",
                       "--replaces", old.strip(), setup=setup)
    assert proc.returncode == 130, proc.stderr
    said = proc.stderr
    assert said.index(f"{old.strip()}: revocado / revoked") < said.index("[cancelled]")
    assert said.index("[issued_file_not_placed]") < said.index("[cancelled]")
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith(".new.png.")]
    assert str(kept) in said and proc.stdout.strip() in said


def test_ctrl_c_while_waiting_for_the_store_is_acted_on_while_still_waiting(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Another process holds the store's write lock (a backup, a bulk group): Ctrl-C on an
    ``issue`` waiting for it cancels it then, not once the lock is let go (up to 30 s later:
    Python runs no handler while SQLite sleeps in its busy wait)."""
    home = homes["issuer"]
    init_office(run, home)
    holder = sqlite3.connect(home / "issuer.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pasaporte.cli", "issuer", "issue", "--claims",
             str(EXAMPLES / "claims-mexicali.json"), "--paper", "--out",
             str(tmp_path / "p.cred"), "--home", str(home)],
            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        # waiting for the lock once it has the store open (a fixed pause from its start was
        # too short on a loaded machine: the signal came while it was still importing)
        deadline = time.monotonic() + 60
        while not _has_open(proc.pid, home / "issuer.db"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # from opening it to SQLite's busy wait
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        # still holding the lock: only the interrupt can end it now
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130 and "[cancelled]" in err, err
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not (tmp_path / "p.cred").exists() and _count(home) == 0


def test_another_clerks_passport_given_the_same_name_meanwhile_stays(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Two clerks, one shared folder, the same --out name: the name was free when checked, and
    the other's passport took it before this one was placed. It stays (never over a file);
    this one is recorded and kept beside it, said with where."""
    home = homes["issuer"]
    init_office(run, home)
    out = tmp_path / "ana.cred"
    proc = _issue_with(home, out, f"open({str(out)!r}, 'w').write('PU1:THE-OTHER-CLERKS')")
    assert proc.returncode == 1 and "[issued_file_not_placed]" in proc.stderr, proc.stderr
    assert out.read_text() == "PU1:THE-OTHER-CLERKS"
    issued = proc.stdout.strip()
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith(".ana.cred.")]
    assert decode_text(kept.read_text()).payload.credential_id == issued
    assert IssuerStore.open(home).credential(issued) is not None
