"""Crashes (SIGKILL mid-batch) and concurrent appenders (4 processes), SQLite and PostgreSQL.

Each appender is a real process appending through ``LedgerStore``. A crash test kills it while
an append is under way, and proves that it was: it kills right after the appender says it began
a batch (an append of 50-400 records takes far longer than that), and in some rounds while the
appender holds the batch's records written but not committed (it stops there, inside the
transaction, until killed). Afterwards the batch it was appending must be absent as a whole,
every other batch present as a whole, and the log must audit clean and take the next append.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.audit import audit
from ledger.entries import Notice, decode_record
from ledger.store import LedgerStore
from tests.ledger.conftest import PASSPHRASE, REPO, child_env, init_home

APPENDER = r"""
import random, sys, time
from sqlalchemy import event
from ledger.entries import Notice
from ledger.store import LedgerStore
home, tag = sys.argv[1], sys.argv[2]
batches, lo, hi = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pause_in = int(sys.argv[7])  # the batch to stop inside of, its records written (-1: none)
rng = random.Random(tag)
with LedgerStore.open(home, passphrase=sys.argv[6]) as store:
    current = [-1]

    @event.listens_for(store.engine, "after_cursor_execute")
    def _written(conn, cursor, statement, params, context, executemany):
        if current[0] == pause_in and statement.startswith("INSERT INTO ledger_entries"):
            print("inside", current[0], flush=True)  # the batch's rows are written, and
            sys.stdin.readline()  # the transaction open: wait here to be killed

    print("ready", flush=True)
    sys.stdin.readline()  # the go: all appenders of a test start together
    for b in range(batches):
        size = rng.randint(lo, hi)
        current[0] = b
        print("begin", b, time.time(), flush=True)
        store.append([Notice(text=f"{tag} {b} {i} {size}") for i in range(size)], cosign=False)
        print("end", b, time.time(), flush=True)
print("done", flush=True)
"""


def _spawn(home: Path, tag: str, batches: int, lo: int, hi: int,
           pause_in: int = -1) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(home), tag, str(batches),
                             str(lo), str(hi), PASSPHRASE, str(pause_in)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def _read_until(proc: subprocess.Popen[str], want: str) -> None:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, f"the appender ended before {want!r}: {proc.communicate()[1][-2000:]}"
        if line.split()[:2] == want.split():
            return


def _batches(store: LedgerStore) -> tuple[dict[tuple[str, int], list[int]],
                                          list[tuple[str, int]], list[int]]:
    """Each batch's record numbers as found (by tag and batch), the batches in log order, and
    the log sizes at which one batch ends and the next begins."""
    seen: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    order: list[tuple[str, int]] = []
    ends: list[int] = []
    want: dict[tuple[str, int], int] = {}
    for seq, leaf in store.entries(0, store.size()):
        entry = decode_record(leaf).entry
        assert isinstance(entry, Notice)
        tag, batch, index, size = entry.text.split()
        key = (tag, int(batch))
        if not order or order[-1] != key:
            if order:
                ends.append(seq)
            order.append(key)
        seen[key].append(int(index))
        want[key] = int(size)
    if order:
        ends.append(store.size())
    for key, indexes in seen.items():
        # no half batch: every record of it, in order, and nothing else
        assert indexes == list(range(want[key])), (key, len(indexes), want[key])
    assert len(order) == len(seen), "a batch's records are not contiguous"
    return seen, order, ends


def _check_whole(store: LedgerStore) -> dict[tuple[str, int], list[int]]:
    report = audit(store, deep=True)
    assert report.ok, report.problems[:5]
    seen, _, ends = _batches(store)
    # the checkpoints are exactly the batch boundaries (and the empty tree's)
    with store.engine.connect() as conn:
        sizes = [int(s) for s, in conn.exec_driver_sql(
            "SELECT size FROM ledger_checkpoints ORDER BY size")]
    assert sizes == [0, *ends]
    return seen


def _kill_rounds(home: Path, rounds: int, prefix: str, seed: int) -> None:
    """``rounds`` appenders, each SIGKILLed during an append: in even rounds right after it
    says it began batch ``k``, in odd rounds while it holds batch ``k``'s records written and
    uncommitted. Batch ``k`` must be wholly absent, the batches before it wholly present."""
    rng = random.Random(seed)
    landed_mid_batch = 0
    with LedgerStore.open(home) as store:
        for round_ in range(rounds):
            tag, k, pinned = f"{prefix}{round_}", rng.randint(1, 4), round_ % 2 == 1
            before = store.size()
            proc = _spawn(home, tag, 10_000, 50, 400, pause_in=k if pinned else -1)
            _go(proc)
            _read_until(proc, f"inside {k}" if pinned else f"begin {k}")
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            assert proc.returncode == -signal.SIGKILL  # killed, not ended on its own
            seen = _check_whole(store)
            mine = sorted(b for t, b in seen if t == tag)
            assert mine in (list(range(k)), list(range(k + 1))), (tag, k, mine)
            if mine == list(range(k)):
                landed_mid_batch += 1  # batch k was under way and is not there at all
            else:
                assert not pinned, "a batch killed before its commit was committed"
            assert store.size() > before  # the batches before k were committed
        # every pinned round at least (an unpinned kill usually lands mid-batch too, an
        # append taking far longer than a kill, but a loaded machine may delay the signal)
        assert landed_mid_batch >= rounds // 2, landed_mid_batch
        # the log still takes appends: the killed writer's lock went with it
        end = store.size()
    proc = _spawn(home, f"{prefix}after", 1, 3, 3)
    _go(proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.split()[-1] == "done", err
    with LedgerStore.open(home) as store:
        assert store.size() == end + 3
        _check_whole(store)


def test_sigkill_during_batched_appends(home: Path) -> None:
    _kill_rounds(home, 6, "r", 7)


@pytest.mark.postgres
def test_sigkill_postgres(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "pg"
    init_home(home, db=pg_url)
    _kill_rounds(home, 4, "p", 11)


def _concurrent(home: Path) -> None:
    """Four appenders released at once: they append at the same time (each began before any
    other ended), and the log holds every batch once, whole, in one chain that audits."""
    procs = [_spawn(home, f"w{k}", 30, 1, 9) for k in range(4)]
    for proc in procs:
        _go(proc)
    spans = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines = [line.split() for line in out.splitlines()]
        assert lines[-1] == ["done"] and len(lines) == 2 * 30 + 1, out[-500:]
        spans.append((float(lines[0][2]), float(lines[-2][2])))  # first begin, last end
    # the appenders really overlapped: all of them were appending at one moment
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    with LedgerStore.open(home) as store:
        seen = _check_whole(store)
        assert sorted(seen) == [(f"w{k}", b) for k in range(4) for b in range(30)]


def test_four_processes_sqlite(home: Path) -> None:
    _concurrent(home)


@pytest.mark.postgres
def test_four_processes_postgres(tmp_path: Path, pg_url: str) -> None:
    init_home(tmp_path / "pg", db=pg_url)
    _concurrent(tmp_path / "pg")
