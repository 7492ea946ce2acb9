"""``audit`` rebuilds the tree a block of records at a time (``ledger.audit.BLOCK_LEVEL``), to
keep its memory flat as the log grows. Real logs have blocks of 65,536 records, so here the
blocks are made tiny: every tampering is found and named as with one block, and every root the
tree gives (kept for a checkpoint, or recomputed from its block) is the log's own."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from ledger import audit as audit_module
from ledger.audit import audit
from ledger.store import LedgerStore
from tests.ledger.conftest import PASSPHRASE, init_home
from tests.ledger.helpers import commitment
from tests.ledger.test_tamper import CASES, _fill

# blocks of 2, 4 and 32 records: the 33-record log ends in a part block, a whole one, and
# (with 32) has one whole block and a stored level (4) inside each block
BLOCK_LEVELS = [1, 2, 5]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    """SQLite only: what is under test is the blocks, not the SQL (``test_tamper`` runs the
    same cases on PostgreSQL with real-sized blocks)."""
    init_home(tmp_path / "home")
    with LedgerStore.open(tmp_path / "home", passphrase=PASSPHRASE) as s:
        yield s


@pytest.mark.parametrize("block_level", BLOCK_LEVELS)
@pytest.mark.parametrize(("tamper", "first", "why"), CASES, ids=[c[0].__name__ for c in CASES])
def test_tamper_is_caught_block_by_block(store: LedgerStore, monkeypatch: pytest.MonkeyPatch,
                                         block_level: int,
                                         tamper: Callable[[Connection], None], first: int,
                                         why: str) -> None:
    monkeypatch.setattr(audit_module, "BLOCK_LEVEL", block_level)
    monkeypatch.setattr(audit_module, "CHUNK", 3)  # reads that do not line up with blocks
    _fill(store)
    assert audit(store).ok
    with store.engine.begin() as conn:
        tamper(conn)
    report = audit(store)
    assert report.first == (first, why), report.problems


@pytest.mark.parametrize("block_level", BLOCK_LEVELS)
def test_every_root_is_the_logs(store: LedgerStore, block_level: int) -> None:
    """The roots kept (the checkpoints' sizes and the head's) and those recomputed for any
    other size from the records of its block, against the store's own proofs' roots."""
    for start, count in [(0, 5), (5, 1), (6, 26), (32, 1), (33, 8)]:
        store.append([commitment(i) for i in range(start, start + count)], cosign=False)
    n = store.size()
    with store.engine.connect() as conn:
        tree = audit_module._Tree(conn, n, {5, 32, n}, block_level)
        rows = conn.execute(text("SELECT leaf FROM ledger_entries ORDER BY seq")).all()
        hashes = [hashlib.sha256(b"\x00" + bytes(leaf)).digest() for leaf, in rows]
        for start in range(0, n, tree.block):
            tree.add_block(start, hashes[start:start + tree.block])
        assert sorted(tree.roots) == [0, 5, 32, n]
        assert [tree.root(size) for size in range(n + 1)] == [
            tree.roots[0], *(store.root(size) for size in range(1, n + 1))]
        assert tree.finish() == [] and tree.node_problems == []
        assert len(tree.frontier) % 32 == 0 and tree.frontier
    assert tree.frontier == store.head().frontier


def test_a_node_row_above_the_blocks_is_compared(store: LedgerStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With blocks of 2 records, level 4 lies above the blocks: its nodes are checked at the
    end, against the tree built from the blocks' roots."""
    monkeypatch.setattr(audit_module, "BLOCK_LEVEL", 1)
    _fill(store)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_nodes SET hash = :h WHERE id = :i"),
                     {"h": bytes(32), "i": (4 << 48) | 1})
    assert audit(store).first == (16, "tree node (4, 1) does not recompute")
