"""``ledger passphrase``: the node's two keys sealed anew under another passphrase, through the
real CLI, and never one key under each passphrase: not after a refusal, not after a crash at any
point (each state a crash can leave is built on disk, and a real change is killed)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from credential.errors import StoreError
from credential.note import open_note, parse_verifier_key
from ledger.keys import KEY_FILES, LOG_KEY, WITNESS_KEY, open_keys, read_secret, write_secret
from ledger.store import LedgerStore
from tests.conftest import Run
from tests.ledger.conftest import PASSPHRASE, REPO, Server, child_env, init_home, run_cli
from tests.ledger.helpers import commitment

OLD = PASSPHRASE
NEW = "otra frase, más larga / another, longer passphrase"


@pytest.fixture(autouse=True)
def _no_new_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASAPORTE_NEW_PASSPHRASE", raising=False)


def _change(run: Run, monkeypatch: pytest.MonkeyPatch, home: Path, current: str = OLD,
            new: str = NEW) -> tuple[int, str, str]:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", current)
    monkeypatch.setenv("PASAPORTE_NEW_PASSPHRASE", new)
    return run("ledger", "passphrase", "--home", str(home))


def _snapshot(home: Path) -> dict[str, bytes]:
    """Every key file and pending ``.new`` file, with its bytes (the database is not touched
    by a change of passphrase, and is checked by the appends)."""
    return {p.name: p.read_bytes() for p in sorted(home.iterdir())
            if p.name.split(".new")[0].lstrip(".") in KEY_FILES}


def _opens(home: Path, passphrase: str) -> bool:
    """Whether the node opens to write with ``passphrase`` (a refusal must be the wrong
    passphrase's, nothing else)."""
    try:
        LedgerStore.open(home, passphrase=passphrase).close()
    except StoreError as exc:
        assert exc.code == "passphrase_wrong", exc.code
        return False
    return True


def _append(run: Run, monkeypatch: pytest.MonkeyPatch, home: Path, passphrase: str,
            i: int = 1) -> tuple[int, str, str]:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", passphrase)
    entries = home.parent / f"entries-{i}.jsonl"
    entries.write_text(json.dumps(commitment(i)) + "\n")
    return run("ledger", "append", "--file", str(entries), "--home", str(home))


def _size(home: Path) -> int:
    with LedgerStore.open(home) as store:
        return store.size()


# -- the change itself ------------------------------------------------------------------------


def test_the_new_passphrase_signs_and_the_old_one_is_refused(
        home: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    code, vkey, _ = run("ledger", "key", "--home", str(home))
    assert code == 0
    _, witness_vkey, _ = run("ledger", "key", "--witness", "--home", str(home))
    before = _snapshot(home)

    code, out, err = _change(run, monkeypatch, home)
    assert code == 0, err
    assert out == "ok: frase de acceso cambiada / passphrase changed\n"
    assert "Comprobando la frase actual" in err and "Checking the current passphrase" in err
    assert "Sellando de nuevo" in err and "anew" in err
    assert "[ledger_passphrase_restart]" in err and "[ledger_passphrase_backups]" in err
    assert OLD not in out + err and NEW not in out + err
    after = _snapshot(home)
    assert sorted(after) == [LOG_KEY, WITNESS_KEY]  # nothing pending left behind
    for name in KEY_FILES:
        assert after[name] != before[name]  # sealed anew …
        assert read_secret(home / name, NEW) == _sealed_under_old(before[name], home, name)
        assert (home / name).stat().st_mode & 0o777 == 0o600

    # … the same keys: the verifier keys the other city and the counters hold do not change
    assert run("ledger", "key", "--home", str(home))[1] == vkey
    assert run("ledger", "key", "--witness", "--home", str(home))[1] == witness_vkey

    code, out, err = _append(run, monkeypatch, home, OLD)
    assert (code, out) == (1, "") and err.startswith("[passphrase_wrong]")
    assert _size(home) == 0

    code, note, err = _append(run, monkeypatch, home, NEW)
    assert code == 0, err
    _, signed_by = open_note(note, [parse_verifier_key(vkey.strip())])
    assert [v.vkey for v in signed_by] == [vkey.strip()]
    assert note.splitlines()[1] == "1" and _size(home) == 1
    assert OLD not in note + err and NEW not in note + err


def _sealed_under_old(sealed: bytes, home: Path, name: str) -> bytes:
    """The secret a key file held before the change (its bytes, sealed under ``OLD``)."""
    copy = home.parent / f"before-{name}"
    copy.write_bytes(sealed)
    return read_secret(copy, OLD)


def test_the_witness_cosigns_under_the_new_passphrase(
        tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
        serve: Callable[..., Server]) -> None:
    log, witness = tmp_path / "cdmx", tmp_path / "la"
    init_home(log, "ledger.cdmx.example/log")
    init_home(witness, "ledger.la.example/log")
    log_vkey = run("ledger", "key", "--home", str(log))[1].strip()
    witness_vkey = run("ledger", "key", "--witness", "--home", str(witness))[1].strip()
    assert _change(run, monkeypatch, witness)[0] == 0
    node = serve(log)  # the log's own node, its passphrase unchanged

    args = ("ledger", "witness", "--log", node.url, "--log-key", log_vkey,
            "--home", str(witness))
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", OLD)
    code, out, err = run(*args)
    assert (code, out) == (1, "") and err.startswith("[passphrase_wrong]")

    monkeypatch.setenv("PASAPORTE_PASSPHRASE", NEW)
    code, out, err = run(*args)
    assert code == 0, err
    cosignature = out.splitlines()[1] + "\n"
    with urllib.request.urlopen(f"{node.url}/checkpoint", timeout=30) as resp:
        served = resp.read().decode()
    # the witness key, opened under the new passphrase, cosigned the log's real checkpoint
    _, ok = open_note(served + cosignature, [parse_verifier_key(log_vkey),
                                             parse_verifier_key(witness_vkey)])
    assert [v.vkey for v in ok] == [log_vkey, witness_vkey]


def test_from_a_pipe_current_then_new_twice(sqlite_home: Path) -> None:
    """A script feeding standard input: the current passphrase's line, then the new one's, twice.
    The real entry point in a process of its own, no passphrase in the environment."""
    env = child_env()
    env.pop("PASAPORTE_PASSPHRASE")

    def change(lines: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pasaporte.cli", "ledger", "passphrase",
                               "--home", str(sqlite_home)], input=lines, env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    before = _snapshot(sqlite_home)
    done = change(f"{OLD}\n{NEW}\n{NEW} \n")  # the repetition differs by a space
    assert done.returncode == 2 and done.stderr.splitlines()[-1].startswith(
        "[passphrase_mismatch]")
    assert _snapshot(sqlite_home) == before

    done = change(f"{OLD}\n{NEW}\n{NEW}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok: frase de acceso cambiada / passphrase changed\n"
    assert OLD not in done.stdout + done.stderr and NEW not in done.stdout + done.stderr
    assert not _opens(sqlite_home, OLD) and _opens(sqlite_home, NEW)


def test_a_wrong_current_passphrase_changes_nothing(
        sqlite_home: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _snapshot(sqlite_home)
    code, out, err = _change(run, monkeypatch, sqlite_home, current="not the passphrase")
    assert (code, out) == (1, "") and err.splitlines()[-1].startswith("[passphrase_wrong]")
    assert "Sellando" not in err  # refused before anything was sealed
    assert _snapshot(sqlite_home) == before
    assert _opens(sqlite_home, OLD) and not _opens(sqlite_home, NEW)


def test_a_wrong_current_passphrase_is_refused_before_the_new_one_is_asked(
        sqlite_home: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a pipe with only the current line: a wrong one is refused as wrong, not as a new
    passphrase missing; a right one goes on to ask for the new one."""
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", io.StringIO("not the passphrase\n"))
    code, _, err = run("ledger", "passphrase", "--home", str(sqlite_home))
    assert code == 1 and err.splitlines()[-1].startswith("[passphrase_wrong]")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{OLD}\n"))
    code, _, err = run("ledger", "passphrase", "--home", str(sqlite_home))
    assert code == 2 and err.splitlines()[-1].startswith("[passphrase_required]")
    assert "PASAPORTE_NEW_PASSPHRASE" in err and OLD not in err
    assert _opens(sqlite_home, OLD)


@pytest.mark.parametrize(("new", "code"), [
    ("kurz7", "passphrase_short"),
    (OLD, "passphrase_unchanged"),
])
def test_a_refused_new_passphrase_changes_nothing(
        sqlite_home: Path, run: Run, monkeypatch: pytest.MonkeyPatch, new: str,
        code: str) -> None:
    before = _snapshot(sqlite_home)
    status, out, err = _change(run, monkeypatch, sqlite_home, new=new)
    assert (status, out) == (2, "")
    last = err.splitlines()[-1]
    assert last.startswith(f"[{code}]") and " / " in last  # both languages
    assert new not in err
    assert _snapshot(sqlite_home) == before
    assert _opens(sqlite_home, OLD)
    if new != OLD:
        assert not _opens(sqlite_home, new)


def test_a_mirror_has_no_passphrase_to_change(tmp_path: Path, run: Run) -> None:
    vkey = json.loads(init_home(tmp_path / "log"))["log_vkey"]
    copy = tmp_path / "mirror"
    assert run_cli("mirror", "--from", "http://127.0.0.1:1", "--log-key", vkey,
                   "--unwitnessed", "--home", str(copy)) == 1  # made, then out of reach
    code, _, err = run("ledger", "passphrase", "--home", str(copy))
    assert code == 1 and err.startswith("[ledger_is_mirror]")
    assert not any(copy.glob("*.key*"))


# -- what a crash can leave ---------------------------------------------------------------------


def _crashed_at(home: Path, staged: tuple[str, ...], renamed: tuple[str, ...]) -> None:
    """What a change killed at some point leaves: the keys in ``staged`` sealed under ``NEW``
    beside their files as ``.new`` (as the change writes them), those in ``renamed`` moved
    over their files."""
    secrets = open_keys(home, OLD).secrets
    for name in staged:
        write_secret(home / f"{name}.new", secrets[name], NEW)
    for name in renamed:
        os.replace(home / f"{name}.new", home / name)


def _settles(home: Path, run: Run, monkeypatch: pytest.MonkeyPatch, *, opens: str,
             refused: str | None) -> None:
    """``refused`` (if any) is refused and changes nothing; ``opens`` opens the node, leaves no
    ``.new`` behind, is from then on the only passphrase that opens it, and really signs."""
    if refused is not None:
        before = _snapshot(home)
        assert not _opens(home, refused)
        assert _snapshot(home) == before
    assert _opens(home, opens)
    assert sorted(_snapshot(home)) == [LOG_KEY, WITNESS_KEY]
    other = NEW if opens == OLD else OLD
    assert not _opens(home, other)
    for name in KEY_FILES:  # each key alone, not only the pair
        assert read_secret(home / name, opens)
    size = _size(home)
    code, _, err = _append(run, monkeypatch, home, opens, i=size + 1)
    assert code == 0, err
    assert _size(home) == size + 1


def test_crash_after_one_key_was_staged(sqlite_home: Path, run: Run,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not every key staged: the change had not happened. The new passphrase opens one key's
    ``.new`` but not the other key, and must not put that one in place (the node would then
    need both passphrases); the old one opens the node and drops the leftovers, the
    temporary file of a ``.new`` killed while being written included."""
    _crashed_at(sqlite_home, (LOG_KEY,), ())
    (sqlite_home / f".{WITNESS_KEY}.new.x1y2z3.tmp").write_bytes(b"half")
    _settles(sqlite_home, run, monkeypatch, opens=OLD, refused=NEW)
    assert not list(sqlite_home.glob(".*.tmp"))


@pytest.mark.parametrize("first", [OLD, NEW], ids=["old-first", "new-first"])
def test_crash_after_every_key_was_staged(sqlite_home: Path, run: Run,
                                          monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """Every key staged, none renamed: either passphrase opens the node, and the first used
    settles which one it is from then on."""
    _crashed_at(sqlite_home, KEY_FILES, ())
    _settles(sqlite_home, run, monkeypatch, opens=first, refused=None)


@pytest.mark.parametrize("renamed", [(LOG_KEY,), (WITNESS_KEY,)])
def test_crash_between_the_renames(sqlite_home: Path, run: Run,
                                   monkeypatch: pytest.MonkeyPatch,
                                   renamed: tuple[str, ...]) -> None:
    """Past the first rename the change has happened: the old passphrase no longer opens the
    renamed key, and the new one finishes the change."""
    _crashed_at(sqlite_home, KEY_FILES, renamed)
    _settles(sqlite_home, run, monkeypatch, opens=NEW, refused=OLD)


def test_crash_after_every_rename(sqlite_home: Path, run: Run,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _crashed_at(sqlite_home, KEY_FILES, KEY_FILES)
    _settles(sqlite_home, run, monkeypatch, opens=NEW, refused=OLD)


def _start_change(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pasaporte.cli", "ledger", "passphrase", "--home", str(home)],
        env=child_env(PASAPORTE_NEW_PASSPHRASE=NEW), cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_when(proc: subprocess.Popen[bytes], moment: Callable[[], bool]) -> None:
    """Freeze ``proc`` (SIGSTOP) as soon as ``moment()`` holds, then kill it (SIGKILL): what is
    on the disk is what that instant left, as a power cut would. If it finished first, what
    a finished change left is checked instead."""
    deadline = time.monotonic() + 120
    while not moment() and proc.poll() is None:
        assert time.monotonic() < deadline, "the change never got there"
        time.sleep(0.0002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGSTOP)
        proc.kill()
    proc.wait()


def _expected(home: Path) -> tuple[str, str | None]:
    """Which passphrase must open the node in the state on disk, and which must be refused
    (``None``: either opens), read from the files themselves."""
    renamed = []
    for name in KEY_FILES:
        try:
            read_secret(home / name, NEW)
        except StoreError:
            continue
        renamed.append(name)
    staged = [n for n in KEY_FILES if (home / f"{n}.new").exists()]
    if renamed:
        return NEW, OLD
    if staged == list(KEY_FILES):
        return NEW, None
    return OLD, NEW


def _exists(path: Path) -> Callable[[], bool]:
    return path.exists


def _replaced(path: Path) -> Callable[[], bool]:
    inode = path.stat().st_ino
    return lambda: path.stat().st_ino != inode


@pytest.mark.parametrize("moment", [
    pytest.param(lambda home: _exists(home / f"{LOG_KEY}.new"), id="first-key-staged"),
    pytest.param(lambda home: _replaced(home / LOG_KEY), id="first-key-renamed"),
])
def test_a_change_killed_midway(sqlite_home: Path, run: Run,
                                monkeypatch: pytest.MonkeyPatch,
                                moment: Callable[[Path], Callable[[], bool]]) -> None:
    proc = _start_change(sqlite_home)
    _stop_when(proc, moment(sqlite_home))
    opens, refused = _expected(sqlite_home)
    _settles(sqlite_home, run, monkeypatch, opens=opens, refused=refused)


# -- a node opening while the passphrase changes -------------------------------------------------


def _waiting_on(lock: Path, pid: int) -> bool:
    """Whether process ``pid`` is blocked waiting for ``lock`` (Linux's /proc/locks lists each
    waiter after ``->``: ``1: -> FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF``)."""
    inode = lock.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and str(pid) in fields and fields[-3].endswith(f":{inode}"):
            return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_a_node_opening_meanwhile_waits_for_the_change(sqlite_home: Path,
                                                       tmp_path: Path) -> None:
    """An ``append`` started while a change is half done (one key staged) waits for the change
    to end rather than read the keys meanwhile: under the new passphrase it would be refused
    then, and under the old one, settling, it would remove what the change is writing."""
    _crashed_at(sqlite_home, (LOG_KEY,), ())  # the change, as far as it got
    entries = tmp_path / "e.jsonl"
    entries.write_text(json.dumps(commitment(1)) + "\n")
    lock = sqlite_home / ".keys.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the change in progress holds it
        proc = subprocess.Popen(
            [sys.executable, "-m", "pasaporte.cli", "ledger", "append", "--file", str(entries),
             "--home", str(sqlite_home)], env=child_env(PASAPORTE_PASSPHRASE=NEW), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not _waiting_on(lock, proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"the append did not wait: {proc.communicate()}")
            time.sleep(0.01)
        # the change goes on to its end while the append waits
        secret = read_secret(sqlite_home / WITNESS_KEY, OLD)
        write_secret(sqlite_home / f"{WITNESS_KEY}.new", secret, NEW)
        for name in KEY_FILES:
            os.replace(sqlite_home / f"{name}.new", sqlite_home / name)
    out, err = proc.communicate(timeout=120)  # the lock released by closing it
    assert proc.returncode == 0, err
    assert out.splitlines()[1] == "1" and _size(sqlite_home) == 1
    assert sorted(_snapshot(sqlite_home)) == [LOG_KEY, WITNESS_KEY]
