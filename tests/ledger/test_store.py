"""LedgerStore: batches, checkpoints, proofs checked with credential.merkle, tokens, migrations."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from credential import merkle
from credential.errors import LedgerError, MalformedInput, StoreError, UsageError
from credential.note import open_note, parse_checkpoint
from ledger.audit import audit
from ledger.entries import (
    MAX_RECORD,
    CredentialIssued,
    Notice,
    decode_record,
    encode_record,
    record_prefix,
)
from ledger.schema import metadata
from ledger.store import AppendRequest, LedgerStore, database_url, make_engine
from tests.ledger.conftest import PASSPHRASE, init_home
from tests.ledger.helpers import b64u, commitment, valid_entries


def _exercise(store: LedgerStore) -> None:
    sizes = []
    roots = {}
    for batch in (valid_entries(), [commitment(i) for i in range(1, 38)], [Notice(text="x")]):
        signed = store.append(batch)
        note, _ = open_note(signed.note, [store.verifier])
        cp = parse_checkpoint(note.text)
        assert cp == signed.checkpoint and cp.origin == store.origin
        sizes.append(cp.size)
        roots[cp.size] = cp.root
        assert signed.end == cp.size and signed.start == cp.size - len(batch)
    assert sizes == [8, 45, 46]
    n = store.size()
    leaves = store.entries(0, n)
    assert [i for i, _ in leaves] == list(range(n))
    hashes = [merkle.leaf_hash(leaf) for _, leaf in leaves]
    for size, root in roots.items():
        assert merkle.root_from_leaf_hashes(hashes[:size]) == root
        for index in (0, size // 2, size - 1):
            proof = store.inclusion_proof(index, size)
            merkle.verify_inclusion(index, size, hashes[index], proof, root)
    for old in roots:
        for new in roots:
            if old <= new:
                proof = store.consistency_proof(old, new)
                merkle.verify_consistency(old, new, proof, roots[old], roots[new])
    # an idempotent retry appends nothing and answers as the first time (on every backend)
    request = AppendRequest("issuer-test", "outbox-1-2")
    once = store.append([commitment(90), commitment(91)], request=request)
    twice = store.append([commitment(90), commitment(91)], request=request)
    assert twice.replayed and (twice.start, twice.end) == (once.start, once.end)
    assert store.size() == once.end
    with pytest.raises(LedgerError) as caught:
        store.append([commitment(92)], request=request)
    assert (caught.value.code, caught.value.detail) == (
        "ledger_idempotency_mismatch", {"key": "outbox-1-2"})
    assert store.size() == once.end
    report = audit(store, deep=True)
    assert report.ok, report.problems


def test_sqlite_store(store: LedgerStore) -> None:
    _exercise(store)


@pytest.mark.postgres
def test_postgres_store(tmp_path: Path, pg_url: str) -> None:
    init_home(tmp_path / "pg", db=pg_url)
    with LedgerStore.open(tmp_path / "pg", passphrase=PASSPHRASE) as store:
        assert store.is_postgres
        _exercise(store)


def test_typed_and_raw_dicts(store: LedgerStore) -> None:
    """A typed entry, a dict with raw bytes and a JSON-style dict (base64url) are the same
    entries: each record holds the commitment given, not its base64 text or anything else."""
    store.append([CredentialIssued(commitment=bytes(32)),
                  {"type": "credential_issued", "commitment": bytes(range(32))},
                  {"type": "credential_issued", "commitment": b64u(bytes(range(1, 33)))}])
    assert [decode_record(leaf).entry for _, leaf in store.entries(0, store.size())] == [
        CredentialIssued(commitment=bytes(32)), CredentialIssued(commitment=bytes(range(32))),
        CredentialIssued(commitment=bytes(range(1, 33)))]


def test_refusals_leave_log_unchanged(store: LedgerStore) -> None:
    store.append([Notice(text="a")])
    before = (store.checkpoint().note, store.entries(0, 1), store.head())

    def refusal(call: Callable[[], object]) -> tuple[str, dict[str, object]]:
        with pytest.raises((LedgerError, MalformedInput, UsageError)) as caught:
            call()
        return caught.value.code, caught.value.detail

    # one bad entry refuses the whole batch, the good one before it too
    assert refusal(lambda: store.append([{"type": "notice", "text": "ok"},
                                         {"type": "notice", "name": "Ana"}])) == (
        "ledger_bad_entry", {"reason": "unknown fields: name"})
    assert refusal(lambda: store.append([Notice(text="x")] * 10_001)) == (
        "ledger_batch_too_large", {"size": 10_001, "limit": 10_000})
    assert refusal(lambda: store.append([]))[0] == "usage_error"
    assert refusal(lambda: store.inclusion_proof(0, 5)) == (
        "ledger_bad_size", {"size": 5, "have": 1})
    assert refusal(lambda: store.inclusion_proof(1, 1)) == (
        "ledger_bad_index", {"index": 1, "size": 1})
    assert refusal(lambda: store.consistency_proof(0, 1)) == (
        "ledger_bad_size", {"size": 0, "have": 1})
    assert (store.checkpoint().note, store.entries(0, 2), store.head()) == before


def test_consistency_refusals_name_the_log_size(store: LedgerStore) -> None:
    """The size a refusal reports is the log's, not the requested ``new``."""
    def refusal(old: int, new: int) -> tuple[str, dict[str, object]]:
        with pytest.raises((LedgerError, MalformedInput)) as caught:
            store.consistency_proof(old, new)
        return caught.value.code, caught.value.detail

    assert refusal(0, 1) == ("ledger_bad_size", {"size": 0, "have": 0})
    assert refusal(1, 0)[0] == "ledger_bad_param"
    store.append([commitment(i) for i in range(3)], cosign=False)
    assert refusal(0, 2) == ("ledger_bad_size", {"size": 0, "have": 3})
    assert refusal(2, 9) == ("ledger_bad_size", {"size": 9, "have": 3})
    assert refusal(3, 1) == ("ledger_bad_param", {"name": "old", "reason": "larger than new"})


def test_read_only_without_passphrase(home: Path) -> None:
    with LedgerStore.open(home) as ro:
        with pytest.raises(StoreError) as caught:
            ro.append([Notice(text="x")])
        assert caught.value.code == "ledger_read_only"
        assert ro.size() == 0 and ro.checkpoint().checkpoint.size == 0


def test_wrong_passphrase(home: Path) -> None:
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(home, passphrase="wrong passphrase")
    assert caught.value.code == "passphrase_wrong"


def test_key_file_is_encrypted(home: Path, store: LedgerStore) -> None:
    assert store.signer is not None
    raw = (home / "log.key").read_bytes()
    assert store.signer.seed not in raw and store.signer.seed.hex().encode() not in raw


def test_tokens_store_only_a_hash(store: LedgerStore) -> None:
    token = store.add_token("issuer-cdmx")
    assert store.token_client(token) == ("issuer-cdmx", None)
    assert store.token_client(token + "x") is None
    with store.engine.connect() as conn:
        dump = repr(conn.exec_driver_sql("SELECT * FROM ledger_tokens").all())
    assert token not in dump
    assert store.revoke_token("issuer-cdmx") and store.token_client(token) is None


def test_migrations_match_the_schema(store: LedgerStore) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "ledger_alembic_version"})
        diff = compare_metadata(ctx, metadata)
    assert [d for d in diff if not (d[0] == "remove_table"
                                    and d[1].name == "ledger_alembic_version")] == []


def test_a_database_of_a_newer_release_is_said_so_and_left_as_it_is(home: Path) -> None:
    """Opened by an older release (a rollback), a schema it does not know is a typed refusal
    naming the revision, not Alembic's "can't locate revision" as an unexpected error."""
    with LedgerStore.open(home) as store, store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE ledger_alembic_version SET version_num = '0099'")
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(home, passphrase=PASSPHRASE)
    assert caught.value.code == "store_newer_release" and "0099" in caught.value.message["en"]
    with LedgerStore.open(home) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM ledger_alembic_version"
                                    ).scalar() == "0099"


def test_migrations_ship_as_package_data() -> None:
    import ledger

    folder = Path(ledger.__file__).parent / "migrations"
    assert (folder / "env.py").is_file() and (folder / "script.py.mako").is_file()
    assert list((folder / "versions").glob("0001_*.py"))


def test_sqlite_is_wal(sqlite_home: Path) -> None:
    engine = make_engine(database_url(sqlite_home))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_upgrade_from_the_first_schema_keeps_everything(tmp_path: Path) -> None:
    """A node created before cosignatures were logged upgrades in place (``migrate`` on open)."""
    from alembic import command

    from ledger.store import _alembic_config

    home = tmp_path / "old"
    init_home(home)
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(3)], cosign=False)
        url = str(store.engine.url)
    engine = make_engine(url)
    with engine.connect() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
        conn.commit()
        columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(ledger_cosignatures)")]
        assert "logged" not in columns
    engine.dispose()
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:  # upgrades to head
        assert store.size() == 3 and audit(store).ok
        store.append([commitment(9)], cosign=False)
        assert audit(store, deep=True).ok


def test_audit_reports_progress(store: LedgerStore, home: Path,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from tests.ledger.conftest import run_cli

    monkeypatch.setattr("ledger.audit.CHUNK", 10)
    monkeypatch.setattr("ledger.cli._interactive", lambda: True)  # as if at a terminal
    store.append([commitment(i) for i in range(25)], cosign=False)
    seen: list[tuple[int, int]] = []
    assert audit(store, progress=lambda done, total: seen.append((done, total))).ok
    assert seen == [(10, 25), (20, 25), (25, 25)]
    assert run_cli("audit", "--home", str(home)) == 0
    captured = capsys.readouterr()
    assert "ok: 25" in captured.out and "Auditando / Auditing" in captured.err


@pytest.mark.postgres
def test_postgres_writer_held_too_long_is_store_busy(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL waits for another writer's row lock only ``busy_timeout`` (lock_timeout), then
    gives the same typed ``store_busy`` as SQLite; the log is unchanged."""
    from credential.errors import StoreError

    init_home(tmp_path / "pg", db=pg_url)
    with LedgerStore.open(tmp_path / "pg", passphrase=PASSPHRASE) as store:
        store.append([commitment(1)], cosign=False)
        store.engine.dispose()
        store.engine = make_engine(pg_url, busy_timeout=0.2)
        holder = make_engine(pg_url)
        try:
            with holder.connect() as conn, conn.begin():
                conn.exec_driver_sql("SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE")
                with pytest.raises(StoreError) as caught:
                    store.append([commitment(2)], cosign=False)
                assert caught.value.code == "store_busy"
        finally:
            holder.dispose()
        assert store.size() == 1
        store.append([commitment(2)], cosign=False)
        assert store.size() == 2


@pytest.mark.parametrize("name", ["", "two words", "x" * 65, "línea"])
def test_an_append_client_needs_a_plain_name(tmp_path: Path, name: str) -> None:
    from credential.errors import UsageError

    init_home(tmp_path / "home")
    with LedgerStore.open(tmp_path / "home", passphrase=PASSPHRASE) as store:
        with pytest.raises(UsageError) as raised:
            store.add_token(name)
        assert raised.value.code == "ledger_bad_token_name"
        assert store.add_token("oficina-centro.2").startswith("lt_")


def test_the_settings_file_is_private(home: Path) -> None:
    """``ledger.json`` holds the ``--db`` URL given to ``init``, with any database password in
    it: only the node's own user may read it, as its key files."""
    assert stat.S_IMODE((home / "ledger.json").stat().st_mode) == 0o600


def test_no_record_is_larger_than_a_page_can_carry(store: LedgerStore) -> None:
    """A mirror copies records verbatim: one larger than ``MAX_RECORD`` (from a node of another
    make, or hostile) is refused, so every record it holds fits a page it serves in turn."""
    head = store.head()
    huge = record_prefix(0, head.last_hash) + bytes(MAX_RECORD)
    with pytest.raises(LedgerError) as refused:
        store.append_records([huge])
    assert refused.value.code == "ledger_record_too_large"
    assert str(MAX_RECORD) in refused.value.message["es"]
    assert store.size() == 0
    largest = Notice(text="😀" * 2000)  # the largest valid entry is far below the bound
    store.append([largest], cosign=False)
    assert len(store.entries(0, 1)[0][1]) < MAX_RECORD // 4


def test_copied_records_must_continue_the_chain(store: LedgerStore) -> None:
    """A mirror's copy takes records verbatim only where each one's header continues the
    chain (its number, the previous record's hash): a page that does not is refused whole,
    naming the first record that breaks it."""
    store.append([commitment(i) for i in range(3)], cosign=False)
    head = store.head()
    good = encode_record(3, head.last_hash, head.last_time, Notice(text="next"))
    after_good = hashlib.sha256(b"\x00" + good).digest()
    for page, index in (
            ([encode_record(3, bytes(32), head.last_time, Notice(text="x"))], 3),  # prev
            ([encode_record(4, head.last_hash, head.last_time, Notice(text="x"))], 3),  # seq
            ([good, encode_record(4, head.last_hash, head.last_time, Notice(text="y"))], 4)):
        with pytest.raises(LedgerError) as caught:
            store.append_records(page)
        assert (caught.value.code, caught.value.detail) == ("ledger_chain_broken",
                                                            {"index": index})
        assert store.head() == head  # not even the good record before it
    assert store.append_records(
        [good, encode_record(4, after_good, head.last_time, Notice(text="y"))]) == 5


def test_a_full_disk_is_store_full_and_loses_nothing(tmp_path: Path) -> None:
    """SQLITE_FULL (a page limit here, as a full disk gives): ``store_full``, which says to free
    space, not that the database is damaged; the batch is not there at all, and the log, with
    room again, takes it."""
    from sqlalchemy import event

    init_home(tmp_path / "home")
    with LedgerStore.open(tmp_path / "home", passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(3)], cosign=False)
        with store.engine.connect() as conn:
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
        store.engine.dispose()
        limit = [pages]
        event.listen(store.engine, "connect",
                     lambda conn, _: conn.execute(f"PRAGMA max_page_count = {limit[0]}"))
        big = [commitment(i) for i in range(3, 3003)]
        with pytest.raises(StoreError) as raised:
            store.append(big, cosign=False)
        assert raised.value.code == "store_full"
        assert "not damaged" in raised.value.message["en"]
        assert "ledger.db" in raised.value.message["es"]
        assert store.size() == 3 and audit(store).ok
        limit[0] = 1 << 30
        store.engine.dispose()
        store.append(big, cosign=False)
        assert store.size() == 3003 and audit(store).ok


def test_the_same_witness_added_again_keeps_what_it_cosigned(store: LedgerStore) -> None:
    """``witnesses add`` again for a witness already asked (its address corrected, or added back
    after ``remove``) keeps the size it last cosigned; another key under its name starts over,
    and the key it replaces stays, without its URL (audit checks what it cosigned)."""
    from sqlalchemy import select

    from credential.note import COSIGNATURE_V1, generate_signer
    from ledger import schema as t

    signer = generate_signer("witness.example/w", COSIGNATURE_V1)
    assert store.add_witness("http://127.0.0.1:9", signer.verifier.vkey).replaced == ()
    store.append([commitment(i) for i in range(7)], cosign=False)
    cp = store.checkpoint().checkpoint  # its cosignature of the 7-record tree
    store.add_cosignatures(7, [signer.sign(cp.body())], witness=signer.verifier.name)

    def rows() -> dict[str, tuple[str, int]]:
        w = t.witnesses.c
        with store.engine.connect() as conn:
            return {str(k): (str(u), int(n))
                    for k, u, n in conn.execute(select(w.vkey, w.url, w.size))}

    old = signer.verifier.vkey
    assert store.add_witness("https://witness.example/", old).replaced == ()
    assert rows() == {old: ("https://witness.example", 7)}
    assert store.remove_witness(signer.verifier.name)
    assert store.add_witness("http://127.0.0.1:9", old).replaced == ()
    assert rows() == {old: ("http://127.0.0.1:9", 7)}
    other = generate_signer("witness.example/w", COSIGNATURE_V1)  # a new key, the same name
    new = other.verifier.vkey
    assert store.add_witness("http://127.0.0.1:9", new).replaced == (signer.verifier,)
    assert rows() == {old: ("", 7), new: ("http://127.0.0.1:9", 0)}
    assert store.witnesses() == [(other.verifier.name, new, "http://127.0.0.1:9", 0)]
    # the old key back (the rebuild undone) keeps what it cosigned, and retires the new one
    assert store.add_witness("http://127.0.0.1:8", old).replaced == (other.verifier,)
    assert rows() == {old: ("http://127.0.0.1:8", 7), new: ("", 0)}
    # the same key typed with spaces around it: the same row, no notice
    assert store.add_witness("http://127.0.0.1:8", f" {old}\n").replaced == ()
    assert len(rows()) == 2


def test_a_new_home_is_its_owners_alone_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 000 ``ledger init`` made the home 0777: any local user could swap in a
    database holding a token of their own, and the node signed checkpoints over it."""
    old = os.umask(0)
    try:
        init_home(tmp_path / "node", "ledger.umask.example/log")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "node").stat().st_mode) == 0o700


# -- the cutoff of a frozen database server's socket ------------------------------------------

def test_the_cutoff_shuts_a_late_socket_and_never_an_ended_one() -> None:
    """One watching thread for every pooled session: a socket whose watch ran out is shut
    (its peer reads the end), one whose watch ended in time is left alone, however the two
    interleave."""
    import socket
    import time

    from ledger.store import _Cutoff

    cutoff = _Cutoff()
    late, late_peer = socket.socketpair()
    kept, kept_peer = socket.socketpair()
    with late, late_peer, kept, kept_peer:
        ended = cutoff.watch(kept.fileno(), 0.2)
        cut = cutoff.watch(late.fileno(), 0.05)  # sooner than the one already waited on
        assert not cutoff.end(ended)
        late_peer.settimeout(5)
        assert late_peer.recv(1) == b""  # shut: reads as closed
        time.sleep(0.3)  # past the ended watch's deadline
        kept.sendall(b"x")
        assert kept_peer.recv(1) == b"x"
        assert cutoff.end(cut)  # it was cut: said so


def test_the_init_that_loses_a_race_for_one_database_leaves_no_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two inits at once on one empty database both pass the check for a log already there
    (on PostgreSQL it is not one transaction with the schema); the one whose checkpoint is not
    there lost. Its new keys and settings named a log that never was: every command there was
    refused, "init" again too. The race is reproduced by letting the second pass the check
    after the first has finished."""
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    LedgerStore.init(tmp_path / "first", "ledger.first.example/log", PASSPHRASE,
                     db=shared).close()
    monkeypatch.setattr("ledger.store._refuse_existing_log", lambda engine, root: None)
    with pytest.raises(StoreError) as err:
        LedgerStore.init(tmp_path / "second", "ledger.second.example/log", PASSPHRASE,
                         db=shared)
    assert err.value.code == "ledger_database_other_log"
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == []
    monkeypatch.undo()
    LedgerStore.init(tmp_path / "second", "ledger.second.example/log", PASSPHRASE).close()
    with LedgerStore.open(tmp_path / "first") as store:  # the winner's log, untouched
        assert store.origin == "ledger.first.example/log" and audit(store).ok


def test_two_inits_of_one_home_at_once_do_not_both_write_it(tmp_path: Path) -> None:
    """A provisioning script started twice: the second waits for nothing and says another init
    is making the log (they wrote over each other's keys, and the loser removed the winner's);
    once the first is done, the home is its, and init again says it exists."""
    import fcntl

    home = tmp_path / "node"
    home.mkdir(mode=0o700)
    first = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(first, fcntl.LOCK_EX)  # the first, still at work
        with pytest.raises(StoreError) as err:
            LedgerStore.init(home, "ledger.second.example/log", PASSPHRASE)
        assert err.value.code == "ledger_init_busy"
    finally:
        os.close(first)
    assert not (home / "ledger.json").exists()
    LedgerStore.init(home, "ledger.first.example/log", PASSPHRASE).close()
    with pytest.raises(StoreError) as err:
        LedgerStore.init(home, "ledger.second.example/log", PASSPHRASE)
    assert err.value.code == "ledger_already_initialised"


def _session(store: LedgerStore) -> tuple[int, int]:
    """Which connection a checkout gives: the driver object's identity (in a forked child, an
    inherited one has the parent's) and, on PostgreSQL, the server's backend process."""
    with store.engine.connect() as conn:
        backend = (conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                   if store.is_postgres else 0)
        return id(conn.connection.dbapi_connection), int(backend or 0)


def test_a_forked_worker_opens_its_own_connections(store: LedgerStore) -> None:
    """A WSGI server that loads the app and then forks its workers: each worker must talk to
    the database over a session of its own, never over the one pooled in the parent (four
    workers on one PostgreSQL backend read each other's results), and the parent's session
    must survive the child."""
    store.append([commitment(0)], cosign=False)
    parent = _session(store)
    assert _session(store) == parent  # pooled: the same one again in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(read)
            child = _session(store)
            os.write(write, f"{child[0]} {child[1]} {store.size()}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as answer:
        said = answer.read().split()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and len(said) == 3
    assert said[2] == "1"  # it read the log
    assert int(said[0]) != parent[0]
    if store.is_postgres:
        assert int(said[1]) != parent[1]
    assert _session(store) == parent and store.size() == 1  # the parent's session lives on


def test_an_append_from_python_is_held_to_what_a_node_takes(store: LedgerStore) -> None:
    """``LedgerStore.append`` (the issuer's own way in, docs/ledger.md's example) refuses what
    ``POST /entries`` and ``ledger append`` refuse: a reason not for the public record went on
    it for good, cosigned, beside the index every code of the resident carries."""
    from ledger.entries import StatusChanged

    for entry, code in (
            (StatusChanged(list="MXMEX.1", index=17, status="revoked", reason="deceased"),
             "ledger_reason_not_public"),
            (StatusChanged(list="MXMEX.4294967296", index=1, status="revoked",
                           reason="unspecified"), "ledger_bad_field")):
        with pytest.raises(MalformedInput) as caught:
            store.append([commitment(0), entry], cosign=False)
        assert caught.value.code == code and "entries[1]" in caught.value.message["en"]
    assert store.size() == 0
    store.append([StatusChanged(list="MXMEX.1", index=17, status="revoked",
                                reason="unspecified")], cosign=False)
    assert store.size() == 1
