"""Tampering with any stored row or field makes ``audit`` fail, naming the first bad record."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from credential.errors import LedgerError
from ledger.audit import audit
from ledger.entries import Notice, encode_record
from ledger.schema import node_id
from ledger.store import LedgerStore
from tests.ledger.conftest import PASSPHRASE, init_home, run_cli
from tests.ledger.helpers import commitment, schema_back_to, valid_entries


def _fill(store: LedgerStore) -> None:
    store.append(valid_entries())
    store.append([commitment(i) for i in range(1, 13)])
    store.append([commitment(i) for i in range(13, 26)])  # 33 records


def _leaf(conn: Connection, seq: int) -> bytes:
    return bytes(conn.execute(text("SELECT leaf FROM ledger_entries WHERE seq = :s"),
                              {"s": seq}).scalar_one())


def _set_leaf(conn: Connection, seq: int, leaf: bytes, rehash: bool) -> None:
    conn.execute(text("UPDATE ledger_entries SET leaf = :l WHERE seq = :s"), {"l": leaf, "s": seq})
    if rehash:
        h = hashlib.sha256(b"\x00" + leaf).digest()
        conn.execute(text("UPDATE ledger_entries SET hash = :h WHERE seq = :s"),
                     {"h": h, "s": seq})


def _flip_last(leaf: bytes) -> bytes:
    return leaf[:-1] + bytes([leaf[-1] ^ 1])


def change_leaf(c: Connection) -> None:
    _set_leaf(c, 13, _flip_last(_leaf(c, 13)), rehash=False)


def change_leaf_and_rehash(c: Connection) -> None:
    _set_leaf(c, 13, _flip_last(_leaf(c, 13)), rehash=True)


def change_prev_and_rehash(c: Connection) -> None:
    leaf = _leaf(c, 13)
    _set_leaf(c, 13, leaf[:4] + bytes([leaf[4] ^ 1]) + leaf[5:], rehash=True)


def change_time(c: Connection) -> None:
    leaf = _leaf(c, 13)
    i = 2 + 2 + 32  # array, seq (13 fits one byte), bytes(32) header, prev
    _set_leaf(c, 13, leaf[:i + 1] + bytes([leaf[i + 1] ^ 1]) + leaf[i + 2:], rehash=True)


def change_hash(c: Connection) -> None:
    c.execute(text("UPDATE ledger_entries SET hash = :h WHERE seq = 13"), {"h": bytes(32)})


def delete_record(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_entries WHERE seq = 13"))


def delete_last_record(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_entries WHERE seq = 32"))


def insert_record(c: Connection) -> None:
    leaf = _leaf(c, 32)
    c.execute(text("INSERT INTO ledger_entries (seq, leaf, hash) VALUES (33, :l, :h)"),
              {"l": leaf, "h": hashlib.sha256(b"\x00" + leaf).digest()})


def renumber_record(c: Connection) -> None:
    c.execute(text("UPDATE ledger_entries SET seq = 1000 WHERE seq = 13"))


def reorder_records(c: Connection) -> None:
    a, b = _leaf(c, 13), _leaf(c, 20)
    _set_leaf(c, 13, b, rehash=True)
    _set_leaf(c, 20, a, rehash=True)


def change_node(c: Connection) -> None:
    c.execute(text("UPDATE ledger_nodes SET hash = :h WHERE id = :i"),
              {"h": bytes(32), "i": node_id(4, 1)})


def delete_node(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_nodes WHERE id = :i"), {"i": node_id(4, 0)})


def insert_node(c: Connection) -> None:
    c.execute(text("INSERT INTO ledger_nodes (id, hash) VALUES (:i, :h)"),
              {"i": node_id(4, 40), "h": bytes(32)})


def change_checkpoint(c: Connection) -> None:
    note = c.execute(text("SELECT note FROM ledger_checkpoints WHERE size = 20")).scalar_one()
    lines = note.split("\n")
    lines[1] = "19"
    c.execute(text("UPDATE ledger_checkpoints SET note = :n WHERE size = 20"),
              {"n": "\n".join(lines)})


def delete_last_checkpoint(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_checkpoints WHERE size = 33"))


def delete_middle_checkpoint(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_checkpoints WHERE size = 20"))


def delete_first_checkpoint(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_checkpoints WHERE size = 0"))


def relink_checkpoint(c: Connection) -> None:
    c.execute(text("UPDATE ledger_checkpoints SET prev = 8 WHERE size = 33"))


def change_head_root(c: Connection) -> None:
    c.execute(text("UPDATE ledger_head SET root = :r"), {"r": bytes(32)})


def change_head_size(c: Connection) -> None:
    c.execute(text("UPDATE ledger_head SET size = 30"))


def change_head_frontier(c: Connection) -> None:
    c.execute(text("UPDATE ledger_head SET frontier = :f"), {"f": bytes(64)})


def change_head_time(c: Connection) -> None:
    c.execute(text("UPDATE ledger_head SET last_time = 4102444800000"))  # 2100-01-01


def change_head_time_back(c: Connection) -> None:
    c.execute(text("UPDATE ledger_head SET last_time = 1"))


def change_kid_city(c: Connection) -> None:
    c.execute(text("UPDATE ledger_kids SET city = 'Calexico', country = 'US'"))


def delete_kid(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_kids"))


def insert_kid(c: Connection) -> None:
    c.execute(text("INSERT INTO ledger_kids (kid, city, country, seq) "
                   "VALUES ('stray', 'Calexico', 'US', 20)"))


CHAIN = "record does not chain with its neighbours (previous-hash link)"
KID = "ledger_kids row of key cdmx-office-1 does not match its registration"
LEAF_HASH = "stored leaf hash does not match the record"
HEAD_TIME = "head's last time does not match the last record"

# each tampering, the first bad record audit must name, and what it must say is wrong there
CASES: list[tuple[Callable[[Connection], None], int, str]] = [
    (change_leaf, 13, LEAF_HASH),
    (change_leaf_and_rehash, 13, CHAIN),
    (change_prev_and_rehash, 13, CHAIN),
    (change_time, 13, CHAIN),
    (change_hash, 13, LEAF_HASH),
    (delete_record, 13, "record 13 is missing"),
    (delete_last_record, 32, "record 32 is missing"),
    (insert_record, 33, "record 33 lies outside the tree of size 33"),
    (renumber_record, 13, "record 13 is missing"),
    (reorder_records, 13, "record header is not this sequence number"),
    (change_node, 16, "tree node (4, 1) does not recompute"),
    (delete_node, 0, "tree node (4, 0) is missing"),
    (insert_node, 33, "unexpected tree node (4, 40) beyond the tree"),
    (change_checkpoint, 19, "checkpoint 20: The signature by ledger.test/log does not verify."),
    (delete_last_checkpoint, 32, "no checkpoint for the head size 33"),
    # one nothing else refers to (no witness, no retried append): named at its batch's end
    (delete_middle_checkpoint, 19, "checkpoint 20 is missing (checkpoint 33 follows it)"),
    (delete_first_checkpoint, 0, "checkpoint 0 is missing (checkpoint 8 follows it)"),
    (relink_checkpoint, 32, "checkpoint 33 does not follow checkpoint 20"),
    (change_head_root, 32, "head root does not match the records"),
    # the head set back to 30: its last hash is record 29's successor's no more, and the
    # records after it lie outside the tree it names
    (change_head_size, 29, CHAIN),
    (change_head_frontier, 32, "head frontier does not match the tree"),
    (change_head_time, 32, HEAD_TIME),
    (change_head_time_back, 32, HEAD_TIME),
    # whose each office key is, which a bound token's scope rests on
    (change_kid_city, 0, KID),
    (delete_kid, 0, KID),
    (insert_kid, 20, "ledger_kids row of key stray has no registration"),
]


@pytest.mark.parametrize(("tamper", "first", "why"), CASES, ids=[c[0].__name__ for c in CASES])
def test_tamper_is_caught(store: LedgerStore, home: Path, tamper: Callable[[Connection], None],
                          first: int, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(store)
    assert audit(store).ok
    with store.engine.begin() as conn:
        tamper(conn)
    report = audit(store)
    assert report.first == (first, why), report.problems
    if tamper is change_head_size:
        assert (30, "record 30 lies outside the tree of size 30") in report.problems
    capsys.readouterr()
    assert run_cli("audit", "--home", str(home)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"[ledger_audit_failed] Auditoría fallida en el registro {first}: "), err
    assert err.rstrip().endswith(f"Audit failed at record {first}: {why}"), err


@pytest.mark.postgres
def test_tamper_on_postgres(tmp_path: Path, pg_url: str) -> None:
    """Two tamperings one after the other: audit names the later one once it is the first
    bad record (an earlier index), not the one it found before."""
    init_home(tmp_path / "pg", db=pg_url)
    with LedgerStore.open(tmp_path / "pg", passphrase=PASSPHRASE) as store:
        _fill(store)
        assert audit(store).ok
        with store.engine.begin() as conn:
            change_node(conn)
        assert audit(store).first == (16, "tree node (4, 1) does not recompute")
        with store.engine.begin() as conn:
            change_leaf_and_rehash(conn)
        report = audit(store)
        assert report.first == (13, CHAIN), report.problems
        assert (16, "tree node (4, 1) does not recompute") in report.problems


def test_audit_says_why_in_each_language(store: LedgerStore, home: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint that no longer verifies: the note's own error, in Spanish in the Spanish
    half (not the English message inside a Spanish sentence)."""
    _fill(store)
    with store.engine.begin() as conn:
        change_checkpoint(conn)
    capsys.readouterr()
    assert run_cli("audit", "--home", str(home)) == 1
    err = capsys.readouterr().err
    why = LedgerError("note_bad_signature", name=store.origin).message
    assert f"registro 19: checkpoint 20: {why['es']} / " in err
    assert err.rstrip().endswith(f"record 19: checkpoint 20: {why['en']}")


def test_the_first_problem_is_the_cause(store: LedgerStore) -> None:
    """Several problems at one record: the one the first check found, which is the cause (a
    byte changed in a record: its stored hash no longer matches, and so the link after it
    breaks), not the one whose message comes first in the alphabet."""
    _fill(store)
    with store.engine.begin() as conn:
        change_leaf(conn)
    report = audit(store)
    assert (13, "record does not chain with its neighbours (previous-hash link)") \
        in report.problems
    assert report.first == (13, "stored leaf hash does not match the record")


def test_a_thousand_decoys_further_on_do_not_hide_the_first_bad_record(
        sqlite_home: Path) -> None:
    """A record rewritten (and re-hashed) near the start, then a thousand and more stored
    hashes spoiled far down the log: found first, the decoys filled the report's list, and
    audit named one of them as the first bad record."""
    with LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(1, 1101)])
        with store.engine.begin() as conn:
            change_leaf_and_rehash(conn)
            conn.execute(text("UPDATE ledger_entries SET hash = zeroblob(32) "
                              "WHERE seq BETWEEN 60 AND 1080"))
        report = audit(store)
    assert report.first is not None and report.first[0] == 13, report.first
    assert len(report.problems) == 1000  # what is listed stays bounded


def test_a_head_time_in_the_future_is_caught_before_it_dates_records(store: LedgerStore
                                                                     ) -> None:
    """An append stamps its records no earlier than the head's last time: a head set to 2100
    would date every later record 2100, so audit holds the head to the last record's time."""
    _fill(store)
    with store.engine.begin() as conn:
        change_head_time(conn)
    assert audit(store).first == (32, "head's last time does not match the last record")


def test_records_never_go_back_in_time(store: LedgerStore) -> None:
    """Records that chain, but whose times go back: no append writes that."""
    store.append([commitment(i) for i in range(3)], cosign=False)
    head = store.head()
    leaf = encode_record(3, head.last_hash, head.last_time - 1, Notice(text="earlier"))
    store.append_records([leaf])
    assert store.head().last_time == head.last_time - 1  # the head follows its last record
    assert audit(store).first == (3, "record time is before the previous record's")


def _every_table_filled(home: Path) -> None:
    """A SQLite log with a row in every table: records, nodes, checkpoints, a witness it asks
    and its cosignature, a token, an idempotent append, and this node's witness state for
    another log with the cosignature it gave and a split view it kept."""
    from credential.note import COSIGNATURE_V1, Checkpoint, Note, generate_signer
    from ledger.store import AppendRequest
    from ledger.witness import add_checkpoint, witness_log

    init_home(home)
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        _fill(store)
        witness = generate_signer("ledger.mxl.example/witness", COSIGNATURE_V1)
        store.add_witness("http://127.0.0.1:9", witness.verifier.vkey)
        cp = store.checkpoint().checkpoint
        store.add_cosignatures(cp.size, [witness.sign(cp.body())])
        store.add_token("issuer-mxl")
        log = generate_signer("ledger.cxl.example/log")
        witness_log(store, log.verifier.vkey)
        for root in (bytes(32), bytes(range(32))):  # the second is a split view
            body = Checkpoint(log.name, 5, root).body()
            add_checkpoint(store, f"old 0\n\n{Note(body, (log.sign(body),)).encode()}".encode())
        store.append([commitment(40)], cosign=False,
                     request=AppendRequest("issuer-mxl", "k-1"))
        assert audit(store).ok
        with store.engine.connect() as conn:
            from ledger import schema as t
            for table in t.metadata.sorted_tables:
                assert conn.execute(text(f"SELECT count(*) FROM {table.name}")).scalar(), table


def _columns() -> list[tuple[str, str, str]]:
    from sqlalchemy import Integer, LargeBinary, String

    from ledger import schema as t
    kinds = ((Integer, "integer"), (LargeBinary, "blob"), (String, "text"))  # typeof()
    return [(table.name, col.name,
             next(kind for base, kind in kinds if isinstance(col.type, base)))
            for table in t.metadata.sorted_tables for col in table.columns]


@pytest.fixture(scope="module")
def every_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("every") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE)
        _every_table_filled(home)
    return home


@pytest.mark.parametrize(("table", "column", "kind"), _columns(), ids=lambda v: str(v))
def test_a_value_rewritten_as_another_type_is_caught(every_table: Path, tmp_path: Path,
                                                    table: str, column: str,
                                                    kind: str) -> None:
    """SQLite stores whatever type a value is written as: a size nudged to a real number would
    read back as the same integer, and text in a hash column would crash the recomputation.
    Each is a finding (at a record's own seq for a record's field), never an internal error."""
    tried = 0
    # the last: text that is not UTF-8 (what ``leaf || x'00'`` makes), which no driver reads
    for n, value in enumerate((f'"{column}" + 0.5', "x'00'", "'7'", "CAST(x'ff00' AS TEXT)")):
        home = tmp_path / f"h{n}"
        shutil.copytree(every_table, home)
        where = ("WHERE seq = 13" if table == "ledger_entries"
                 else f"WHERE rowid = (SELECT max(rowid) FROM {table})")
        with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
            try:
                with store.engine.begin() as conn:
                    conn.execute(text(f'UPDATE {table} SET "{column}" = {value} {where}'))
                    stored = conn.execute(text(f'SELECT typeof("{column}") FROM {table} '
                                               f'{where}')).scalar_one()
            except IntegrityError:
                continue  # a rowid key or a constraint: SQLite refuses it itself
            if stored in (kind, "null"):  # NULL + 0.5 is NULL, in a column that may be
                continue  # or affinity turned it back into the column's own type
            tried += 1
            report = audit(store)
        assert report.first is not None, (value, report.problems)
        if table == "ledger_entries":
            assert report.first[0] == 13, report.problems
        assert report.first[1] == f"{table}.{column} holds a value of another type"
    assert tried or column in ("id", "seq"), "no rewrite changed the stored type"


def test_a_checkpoint_the_log_signed_over_another_tree_is_caught(store: LedgerStore) -> None:
    """Signed with the log's own key, so every signature check passes: a tree of 20 records
    that is not these (a split view, a rewritten history) is what the audit is for."""
    from credential.note import Checkpoint, Note

    _fill(store)
    assert store.signer is not None
    body = Checkpoint(store.origin, 20, hashlib.sha256(b"another history").digest()).body()
    other = Note(body, (store.signer.sign(body),)).encode()
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_checkpoints SET note = :n WHERE size = 20"),
                     {"n": other})
    assert audit(store).first == (19, "checkpoint 20 root does not match the records")


def test_the_checkpoints_already_stored_are_linked_at_upgrade(store: LedgerStore) -> None:
    """Migration 0007 links the rows a log already holds, in size order: such a log audits
    clean, and a checkpoint deleted from it afterwards is named."""
    _fill(store)
    schema_back_to(store, "0006", then_up=True)
    with store.engine.connect() as conn:
        links = conn.execute(text("SELECT size, prev FROM ledger_checkpoints ORDER BY size"))
        assert [tuple(row) for row in links] == [(0, None), (8, 0), (20, 8), (33, 20)]
    assert audit(store).ok
    # a server of the earlier release still running (a rolling restart) writes rows with no
    # link: nothing to follow, no alarm
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_checkpoints SET prev = NULL WHERE size = 33"))
    assert audit(store).ok
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE ledger_checkpoints SET prev = 20 WHERE size = 33"))
        delete_middle_checkpoint(conn)
    assert audit(store).first == (19, "checkpoint 20 is missing (checkpoint 33 follows it)")
