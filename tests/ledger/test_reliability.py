"""Crashes (SIGKILL mid-batch) and concurrent appenders (4 processes), SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.audit import audit
from ledger.entries import Notice, decode_record
from ledger.store import LedgerStore
from tests.ledger.conftest import PASSPHRASE, REPO, child_env, init_home

APPENDER = r"""
import random, sys
from ledger.entries import Notice
from ledger.store import LedgerStore
home, tag = sys.argv[1], sys.argv[2]
batches, lo, hi = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(tag)
with LedgerStore.open(home, passphrase=sys.argv[6]) as store:
    print("ready", flush=True)
    for b in range(batches):
        size = rng.randint(lo, hi)
        store.append([Notice(text=f"{tag} {b} {i} {size}") for i in range(size)], cosign=False)
print("done", flush=True)
"""


def _spawn(home: Path, tag: str, batches: int, lo: int, hi: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", APPENDER, str(home), tag, str(batches),
                             str(lo), str(hi), PASSPHRASE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)


def _batches(store: LedgerStore) -> dict[tuple[str, int], list[int]]:
    seen: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    for _, leaf in store.entries(0, store.size()):
        entry = decode_record(leaf).entry
        assert isinstance(entry, Notice)
        tag, batch, index, size = entry.text.split()
        seen[(tag, int(batch))].append(int(index))
        assert int(size) > int(index)
    return seen


def _check_whole(store: LedgerStore) -> None:
    report = audit(store, deep=True)
    assert report.ok, report.problems[:5]
    for key, indexes in _batches(store).items():
        size = len(indexes)
        assert indexes == list(range(size)), key  # no half batch, in order


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    return out, err


def test_sigkill_during_batched_appends(home: Path) -> None:
    rng = random.Random(7)
    with LedgerStore.open(home) as store:
        for round_ in range(8):
            proc = _spawn(home, f"r{round_}", 10_000, 50, 400)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            _finish(proc)
            _check_whole(store)
            # the checkpoints are exactly the batch boundaries
            with store.engine.connect() as conn:
                count = conn.exec_driver_sql("SELECT count(*) FROM ledger_checkpoints").scalar()
            assert count == len(_batches(store)) + 1
        assert store.size() > 0


def _concurrent(home: Path) -> None:
    procs = [_spawn(home, f"w{k}", 12, 1, 9) for k in range(4)]
    for proc in procs:
        out, err = _finish(proc)
        assert proc.returncode == 0, err
        assert out.split() == ["ready", "done"]
    with LedgerStore.open(home) as store:
        _check_whole(store)
        batches = _batches(store)
        assert sorted({tag for tag, _ in batches}) == ["w0", "w1", "w2", "w3"]
        assert all(len([b for t, b in batches if t == f"w{k}"]) == 12 for k in range(4))


def test_four_processes_sqlite(home: Path) -> None:
    _concurrent(home)


@pytest.mark.postgres
def test_four_processes_postgres(tmp_path: Path, pg_url: str) -> None:
    init_home(tmp_path / "pg", db=pg_url)
    _concurrent(tmp_path / "pg")


@pytest.mark.postgres
def test_sigkill_postgres(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "pg"
    init_home(home, db=pg_url)
    with LedgerStore.open(home) as store:
        for round_ in range(3):
            proc = _spawn(home, f"p{round_}", 10_000, 50, 400)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.1 + 0.15 * round_)
            proc.send_signal(signal.SIGKILL)
            _finish(proc)
            _check_whole(store)
