"""The rows beside the records are audited too: cosignatures, the checkpoints the records and
idempotent answers refer to, the witness's own state, and a mirror's head time."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from flask.testing import FlaskClient
from sqlalchemy import Connection, text

from credential.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    Signer,
    generate_signer,
    parse_note,
)
from ledger.audit import audit
from ledger.entries import record_time
from ledger.store import Head, LedgerStore, _alembic_config
from ledger.witness import add_checkpoint, witness_log
from tests.ledger.conftest import PASSPHRASE, Server, init_home, run_cli
from tests.ledger.helpers import commitment

WITNESS = "ledger.mxl.example/witness"
OTHER_LOG = "ledger.cxl.example/log"


def _cosign_latest(store: LedgerStore, signer: Signer) -> None:
    cp = store.checkpoint().checkpoint
    store.add_cosignatures(cp.size, [signer.sign(cp.body())])


@pytest.fixture
def cosigned(store: LedgerStore) -> LedgerStore:
    """Three batches, each checkpoint cosigned by a witness the log asks (its URL is never
    called): the cosignature of 3 is record 3, that of 6 record 6; that of 8 waits for the next
    batch. The second batch was sent with an idempotency key."""
    signer = generate_signer(WITNESS, COSIGNATURE_V1)
    store.add_witness("http://127.0.0.1:9", signer.verifier.vkey)
    store.append([commitment(i) for i in range(3)], cosign=False)
    _cosign_latest(store, signer)
    store.append([commitment(i) for i in range(3, 5)], cosign=False)  # records 3 to 5
    _cosign_latest(store, signer)
    store.append([commitment(9)], cosign=False)  # records 6 and 7
    _cosign_latest(store, signer)
    assert store.size() == 8 and audit(store).ok
    return store


def delete_all_cosignatures(c: Connection) -> None:
    c.execute(text("DELETE FROM ledger_cosignatures"))


def unmark_logged(c: Connection) -> None:  # the next append would log them a second time
    c.execute(text("UPDATE ledger_cosignatures SET logged = NULL"))


def move_newest_to_no_checkpoint(c: Connection) -> None:  # GET /checkpoint would lose it
    c.execute(text("UPDATE ledger_cosignatures SET size = 5 WHERE size = 8"))


def mark_logged_elsewhere(c: Connection) -> None:
    c.execute(text("UPDATE ledger_cosignatures SET logged = 1 WHERE size = 3"))


def insert_unknown_witness(c: Connection) -> None:
    note = c.execute(text("SELECT note FROM ledger_checkpoints WHERE size = 8")).scalar_one()
    stranger = generate_signer("ledger.nobody.example/witness", COSIGNATURE_V1)
    line = stranger.sign(parse_note(note).text).line
    c.execute(text("INSERT INTO ledger_cosignatures (size, witness, line) "
                   "VALUES (8, :w, :l)"), {"w": stranger.name, "l": line})


def rename_witness(c: Connection) -> None:
    c.execute(text("UPDATE ledger_cosignatures SET witness = 'someone.else/witness' "
                   "WHERE size = 8"))


def delete_middle_checkpoint(c: Connection) -> None:  # cosigned, and record 6 says so
    c.execute(text("DELETE FROM ledger_cosignatures WHERE size = 6"))
    c.execute(text("DELETE FROM ledger_checkpoints WHERE size = 6"))


def delete_first_checkpoint(c: Connection) -> None:  # only record 3 still names it
    c.execute(text("DELETE FROM ledger_cosignatures WHERE size = 3"))
    c.execute(text("DELETE FROM ledger_checkpoints WHERE size = 3"))


CASES: list[tuple[Callable[[Connection], None], tuple[int, str]]] = [
    (delete_all_cosignatures, (3, "no stored cosignature matches this record")),
    (unmark_logged, (3, "no stored cosignature matches this record")),
    (move_newest_to_no_checkpoint, (4, f"cosignature by {WITNESS} of size 5, which has no "
                                       f"checkpoint")),
    (mark_logged_elsewhere, (1, f"stored cosignature by {WITNESS} of size 3 does not match "
                                f"the record that logged it")),
    (insert_unknown_witness, (7, "checkpoint 8: cosignature by ledger.nobody.example/witness, "
                                 "a witness this log does not know")),
    (rename_witness, (7, f"checkpoint 8: cosignature by {WITNESS} stored under another "
                         f"witness's name")),
    (delete_middle_checkpoint, (5, "checkpoint 6 is missing")),
    (delete_first_checkpoint, (2, "checkpoint 3 is missing")),
]


@pytest.mark.parametrize(("tamper", "first"), CASES, ids=[c[0].__name__ for c in CASES])
def test_cosignature_rows_are_audited(cosigned: LedgerStore, home: Path,
                                      tamper: Callable[[Connection], None],
                                      first: tuple[int, str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with cosigned.engine.begin() as conn:
        tamper(conn)
    assert audit(cosigned).first == first
    capsys.readouterr()
    assert run_cli("audit", "--home", str(home)) == 1
    err = capsys.readouterr().err
    assert f"record {first[0]}: {first[1]}" in err and f"registro {first[0]}: " in err


def test_a_removed_witness_still_checks_what_it_gave(cosigned: LedgerStore) -> None:
    """Removing a witness stops asking it; its cosignature not yet logged is still its own
    (audit keeps its key), and goes on the record with the next batch."""
    assert cosigned.remove_witness(WITNESS) and cosigned.witnesses() == []
    assert not cosigned.remove_witness(WITNESS)
    assert audit(cosigned).ok
    cosigned.append([commitment(20)], cosign=False)
    assert audit(cosigned).ok


def test_a_retry_whose_checkpoint_was_deleted_is_a_typed_error(client: FlaskClient,
                                                               store: LedgerStore) -> None:
    """An idempotent retry answers with the checkpoint of its first answer; with that row gone
    (only the latest one's absence was noticed), it is a typed error, not a 500, and audit names
    the checkpoint, which the remembered answer refers to."""
    token = store.add_token("issuer")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "batch-1"}
    body = {"entries": [commitment(1), commitment(2)]}
    assert client.post("/entries", json=body, headers=headers).status_code == 201
    store.append([commitment(3)], cosign=False)
    assert audit(store).ok
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_checkpoints WHERE size = 2"))
    assert audit(store).first == (1, "checkpoint 2 is missing")
    resp = client.post("/entries", json=body, headers=headers)
    assert resp.status_code == 503
    err = resp.get_json()
    assert err["code"] == "ledger_checkpoint_missing"
    assert "2" in err["message"]["es"] and "2" in err["message"]["en"]
    assert store.size() == 3


def _other_checkpoint(log: Signer, size: int, root: bytes) -> str:
    body = Checkpoint(log.name, size, root).body()
    return Note(body, (log.sign(body),)).encode()


def test_a_witness_state_set_back_is_caught_and_cosigns_no_fork(store: LedgerStore) -> None:
    """What the witness remembers of a log it witnesses, set back to nothing: audit compares it
    with the cosignatures it gave (each on the record), and the witness goes by those, refusing
    a fork as a conflict (C2SP tlog-witness: 409 with the size it has)."""
    log = generate_signer(OTHER_LOG)
    witness_log(store, log.verifier.vkey)
    honest = _other_checkpoint(log, 5, bytes(range(32)))
    assert add_checkpoint(store, f"old 0\n\n{honest}".encode()).status == 200
    store.append([commitment(1)], cosign=False)  # record 0: the cosignature it gave
    assert audit(store).ok
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE witness_logs SET size = 0, root = NULL"))
    assert audit(store).first == (
        0, f"witness state for {OTHER_LOG} is not the newest tree it cosigned (size 5)")
    for fork in (_other_checkpoint(log, 7, bytes(range(1, 33))),
                 _other_checkpoint(log, 5, bytes(range(1, 33))),
                 _other_checkpoint(log, 3, bytes(range(1, 33)))):
        reply = add_checkpoint(store, f"old 0\n\n{fork}".encode())
        assert (reply.status, reply.body, reply.content_type) == (409, "5\n",
                                                                   "text/x.tlog.size")
    # the tree it did cosign is cosigned again, which puts its state right
    assert add_checkpoint(store, f"old 5\n\n{honest}".encode()).status == 200
    assert audit(store).ok


def test_cosignatures_the_witness_gave_are_rows_and_records(store: LedgerStore) -> None:
    log = generate_signer(OTHER_LOG)
    witness_log(store, log.verifier.vkey)
    assert add_checkpoint(store, f"old 0\n\n{_other_checkpoint(log, 5, bytes(32))}"
                          .encode()).status == 200
    store.append([commitment(1)], cosign=False)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM witness_given"))
    report = audit(store)
    assert report.first == (0, "no stored cosignature matches this record")
    assert (1, f"witness state for {OTHER_LOG} names a tree it never cosigned") \
        in report.problems  # no row says which record: the last one


def test_a_mirror_keeps_the_head_time(tmp_path: Path, serve: Callable[..., Server]) -> None:
    """A mirror's head keeps its last record's time, as the log's does, and audits clean; one
    made before (time 0) audits clean until its next run migrates it, and not after."""
    log = tmp_path / "log"
    vkey = json.loads(init_home(log, "ledger.time.example/log"))["log_vkey"]
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(j) for j in range(5)], cosign=False)
        want = store.head().last_time
    node = serve(log)
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", node.url, "--log-key", vkey, "--unwitnessed",
                   "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as copy:
        assert copy.head().last_time == want
        assert record_time(copy.entries(4, 5)[0][1], 4) == want
        assert audit(copy).ok
        with copy.engine.begin() as conn:  # as a mirror before the fix left it
            conn.execute(text("UPDATE ledger_head SET last_time = 0"))
        assert audit(copy).first == (4, "head's last time does not match the last record")
        with copy.engine.connect() as conn:  # the schema it had then
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
            conn.commit()
        assert audit(copy).ok
    assert run_cli("mirror", "--from", node.url, "--unwitnessed",
                   "--home", str(mirror_home)) == 0
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with LedgerStore.open(mirror_home) as copy, copy.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM ledger_alembic_version")
                            ).scalar() == head
        assert copy.head().last_time == want and audit(copy).ok


def test_an_audit_of_a_node_taking_appends_reads_one_snapshot(store: LedgerStore, home: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """An audit of a working node (the nightly cron) read the head, then the rows: a batch
    appended in between left a checkpoint "beyond the log's n records", and a sound log failed
    now and then. Here a batch is appended right after the audit reads the head, and again
    while it reads the records: it audits the log as it was when it began."""
    store.append([commitment(j) for j in range(5)], cosign=False)
    appended: list[int] = []

    def append() -> None:
        with LedgerStore.open(home, passphrase=PASSPHRASE) as writer:
            batch = [commitment(100 + len(appended) * 10 + j) for j in range(3)]
            appended.append(writer.append(batch, cosign=False).checkpoint.size)

    with LedgerStore.open(home) as reader:
        read_head = reader.head

        def head_then_append(conn: Connection | None = None) -> Head:
            head = read_head(conn)
            append()
            return head

        monkeypatch.setattr(reader, "head", head_then_append)
        report = audit(reader, progress=lambda _done, _size: append())
    assert appended == [8, 11]
    assert report.ok and report.size == 5, report.problems
    assert audit(store).ok
