"""A witness rebuilt under the same name with a new key: the log keeps every key the name ever
had, so ``audit`` still checks the cosignatures the old key gave (they are on the public
record), while one from a key the name never had is still caught. The schema change that
allows it (0005) keeps the rows of an older database."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import IntegrityError

from credential.errors import UsageError
from credential.note import COSIGNATURE_V1, Signer, generate_signer, parse_verifier_key
from ledger import schema as t
from ledger.audit import audit
from ledger.entries import WitnessCosignature, decode_record
from ledger.keys import load_config
from ledger.status import assess, collect
from ledger.store import LedgerStore, _alembic_config, make_engine
from tests.ledger.conftest import PASSPHRASE, Server, init_home, run_cli
from tests.ledger.helpers import commitment
from tests.ledger.test_network import _post_entries, cities

__all__ = ["cities"]  # the two-city fixture, used here too

WITNESS = "ledger.cxl.example/log/witness"


def _cosign_latest(store: LedgerStore, signer: Signer) -> None:
    cp = store.checkpoint().checkpoint
    store.add_cosignatures(cp.size, [signer.sign(cp.body())], witness=signer.name)


def _rows(store: LedgerStore) -> dict[str, tuple[str, int]]:
    w = t.witnesses.c
    with store.engine.connect() as conn:
        return {str(k): (str(u), int(n))
                for k, u, n in conn.execute(select(w.vkey, w.url, w.size))}


@pytest.fixture
def rekeyed(store: LedgerStore, request: pytest.FixtureRequest) -> tuple[Signer, Signer]:
    """The old key cosigns two checkpoints (the first on the record, the second waiting for the
    next batch); then the witness is rebuilt under its name with a new key, which the log is
    given (after ``remove``, or straight away), and cosigns what follows."""
    old, new = (generate_signer(WITNESS, COSIGNATURE_V1) for _ in range(2))
    assert store.add_witness("http://127.0.0.1:9", old.verifier.vkey).replaced == ()
    store.append([commitment(i) for i in range(3)], cosign=False)
    _cosign_latest(store, old)
    store.append([commitment(3)], cosign=False)
    _cosign_latest(store, old)
    assert audit(store).ok
    if getattr(request, "param", False):
        assert store.remove_witness(WITNESS)
    assert store.add_witness("http://127.0.0.1:8", new.verifier.vkey).replaced == (old.verifier,)
    assert _rows(store) == {old.verifier.vkey: ("", 5),
                            new.verifier.vkey: ("http://127.0.0.1:8", 0)}
    store.append([commitment(4)], cosign=False)  # logs the old key's second cosignature
    _cosign_latest(store, new)
    store.append([commitment(5)], cosign=False)  # logs the new key's
    return old, new


@pytest.mark.parametrize("rekeyed", [False, True], ids=["replaced", "removed-then-added"],
                         indirect=True)
def test_a_new_key_under_a_known_name_keeps_the_old_one(store: LedgerStore,
                                                        rekeyed: tuple[Signer, Signer]) -> None:
    old, new = rekeyed
    logged = [decode_record(leaf).entry for _, leaf in store.entries(0, store.size())]
    by = [e.signature[:4] for e in logged if isinstance(e, WitnessCosignature)]
    assert by == [old.verifier.key_id] * 2 + [new.verifier.key_id]
    report = audit(store, deep=True)
    assert report.ok, report.problems
    assert store.witnesses() == [(WITNESS, new.verifier.vkey, "http://127.0.0.1:8", 7)]


@pytest.mark.parametrize("rekeyed", [False], indirect=True)
def test_a_late_cosignature_of_the_old_key_is_that_keys(store: LedgerStore,
                                                        rekeyed: tuple[Signer, Signer]) -> None:
    """One asked before the change that answers after it: what it saw is the old key's, not
    the new one's (status would take the new key for further along than it is)."""
    old, new = rekeyed
    _cosign_latest(store, old)
    rows = _rows(store)
    assert rows[old.verifier.vkey] == ("", store.size())
    assert rows[new.verifier.vkey] == ("http://127.0.0.1:8", 7)
    assert audit(store).ok


def _forge_row(store: LedgerStore, size: int) -> Signer:
    """A cosignature row under the witness's name by a key the log never had."""
    stranger = generate_signer(WITNESS, COSIGNATURE_V1)
    line = stranger.sign(store.checkpoint(size).checkpoint.body()).line
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_cosignatures WHERE size = :s"), {"s": size})
        conn.execute(text("INSERT INTO ledger_cosignatures (size, witness, line) "
                          "VALUES (:s, :w, :l)"), {"s": size, "w": WITNESS, "l": line})
    return stranger


@pytest.mark.parametrize("rekeyed", [False], indirect=True)
def test_a_key_the_name_never_had_still_fails(store: LedgerStore,
                                              rekeyed: tuple[Signer, Signer]) -> None:
    """Keeping the old keys is not taking any key: a row (not yet on the record) and then the
    record that logs it, by a third key under the witness's name, are both named."""
    size = store.size()
    stranger = _forge_row(store, size).verifier.key_id.hex()
    unheld = f"cosignature by {WITNESS} with key {stranger}, which this log does not hold"
    first = audit(store).first
    assert first is not None and first[0] == size - 1
    assert first[1].startswith(f"checkpoint {size}: {unheld}") and "not the witness's" in first[1]
    store.append([commitment(6)], cosign=False)  # puts the forged row on the record
    problems = audit(store).problems
    assert any(at == size and what.startswith(unheld) for at, what in problems), problems
    assert any(at == size - 1 and what.startswith(f"checkpoint {size}: {unheld}")
               for at, what in problems), problems


@pytest.mark.parametrize("backend", ["sqlite",
                                     pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_old_database_keeps_its_witnesses(backend: str, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    """A database at revision 0004 (one key per name: one witness asked, one removed) upgrades
    to 0005 with the same rows; a name then holds several keys, one of them in use. Going back
    to 0004 keeps one key per name: the one in use, else one of the others."""
    url = (str(request.getfixturevalue("pg_url")) if backend == "postgres"
           else f"sqlite:///{tmp_path / 'old.db'}")
    asked, removed = (generate_signer(f"ledger.{c}.example/witness", COSIGNATURE_V1)
                      for c in ("cxl", "tij"))
    _migrate(url, "0004")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert _key_columns(conn) == ["name"]
            conn.execute(text("INSERT INTO ledger_witnesses (name, vkey, url, size) VALUES "
                              "(:a, :ka, 'https://cxl.example', 12), (:b, :kb, '', 3)"),
                         {"a": asked.name, "ka": asked.verifier.vkey,
                          "b": removed.name, "kb": removed.verifier.vkey})
        _migrate(url, "head")
        with engine.connect() as conn:
            assert str(conn.execute(text("SELECT version_num FROM ledger_alembic_version"))
                       .scalar()) >= "0005"  # (and any revision since)
            assert _key_columns(conn) == ["name", "vkey"]
            assert _all_rows(conn) == [
                (asked.name, asked.verifier.vkey, "https://cxl.example", 12),
                (removed.name, removed.verifier.vkey, "", 3)]
        # a second key in use under one name is refused; retired ones are kept beside it
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert(conn, asked.name, "k0", "https://x.example")
        with engine.begin() as conn:
            for name, vkey in ((asked.name, "k1"), (removed.name, "k1"), (removed.name, "k2")):
                _insert(conn, name, vkey, "")
        _migrate(url, "0004", down=True)
        with engine.connect() as conn:
            assert _key_columns(conn) == ["name"]
            rows = _all_rows(conn)
            assert rows[0] == (asked.name, asked.verifier.vkey, "https://cxl.example", 12)
            assert [row[0] for row in rows[1:]] == [removed.name]
    finally:
        engine.dispose()


def _migrate(url: str, revision: str, down: bool = False) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
            conn.commit()
    finally:
        engine.dispose()


def _key_columns(conn: Connection) -> list[str]:
    return list(inspect(conn).get_pk_constraint("ledger_witnesses")["constrained_columns"])


def _all_rows(conn: Connection) -> list[tuple[str, str, str, int]]:
    w = t.witnesses.c
    return [(str(a), str(b), str(c), int(d)) for a, b, c, d in
            conn.execute(select(w.name, w.vkey, w.url, w.size).order_by(w.name, w.vkey))]


def _insert(conn: Connection, name: str, vkey: str, url: str) -> None:
    conn.execute(text("INSERT INTO ledger_witnesses (name, vkey, url, size) "
                      "VALUES (:n, :k, :u, 0)"), {"n": name, "k": vkey, "u": url})


def test_a_witness_rebuilt_with_a_new_key(cities: dict[str, Any], tmp_path: Path,
                                          serve: Callable[..., Server],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """With real nodes: B's witness cosigns A's checkpoints; B is rebuilt
    (its disk lost) under the same origin, with new keys; A's operator gives A the new key
    and is told the old one is kept; A appends again, and its audit passes. A mirror that
    held the old key and is given the new one audits clean too."""
    sa, ca, cb = cities["sa"], cities["ca"], cities["cb"]
    for i in range(2):
        _post_entries(sa.url, cities["token"], [commitment(10 * i + j) for j in range(3)])
    assert run_cli("audit", "--home", str(cities["a"])) == 0
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    cities["sb"].stop()
    b2 = tmp_path / "la-rebuilt"
    init_home(b2, parse_verifier_key(cb.log_vkey).name)
    cb2 = load_config(b2)
    assert cb2.witness_vkey and cb.witness_vkey
    old, new = parse_verifier_key(cb.witness_vkey), parse_verifier_key(cb2.witness_vkey)
    assert old.name == new.name and old != new
    sb2 = serve(b2)
    assert run_cli("witness", "--log", sa.url, "--log-key", ca.log_vkey, "--home", str(b2)) == 0
    capsys.readouterr()
    assert run_cli("witnesses", "add", "--url", sb2.url, "--key", cb2.witness_vkey,
                   "--home", str(cities["a"])) == 0
    out, err = capsys.readouterr()
    assert out == f"ok: {new.name}\n"
    assert err.startswith("[ledger_witness_key_replaced] Aviso: el testigo")
    assert f"{new.key_id.hex()}, que reemplaza a la anterior ({old.key_id.hex()})" in err
    assert f"now has the key {new.key_id.hex()}, which replaces the one before " \
           f"({old.key_id.hex()})" in err
    _post_entries(sa.url, cities["token"], [commitment(100)])
    body = _post_entries(sa.url, cities["token"], [commitment(101)])
    assert f"— {new.name} " in body["checkpoint"]  # the rebuilt witness cosigns
    with LedgerStore.open(cities["a"]) as store:
        size = store.size()
        kinds = [e.signature[:4] for _, leaf in store.entries(0, size)
                 if isinstance(e := decode_record(leaf).entry, WitnessCosignature)
                 and e.witness == old.name]
    assert old.key_id in kinds and new.key_id in kinds  # both keys' cosignatures on record
    assert run_cli("audit", "--home", str(cities["a"])) == 0
    capsys.readouterr()
    assert run_cli("witnesses", "list", "--home", str(cities["a"])) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0::3] for line in listed] == [[new.name, cb2.witness_vkey]]
    assert run_cli("mirror", "--from", sa.url, "--witness-key", cb2.witness_vkey,
                   "--home", str(mirror_home)) == 0
    assert run_cli("audit", "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as copy:
        assert copy.size() == size
    # A mirror made after the change, given the new key only: its audit names the old key's
    # cosignatures with the mirror's remedy (witnesses add is refused on a mirror)
    late = tmp_path / "late-mirror"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb2.witness_vkey, "--home", str(late)) == 0
    capsys.readouterr()
    assert run_cli("audit", "--home", str(late)) == 1
    said = capsys.readouterr()
    report = said.out + said.err
    assert "which this mirror was not given" in report and "--witness-key KEY" in report
    assert "que no se le dio a esta réplica" in report and "witnesses add" not in report
    assert run_cli("mirror", "--from", sa.url, "--witness-key", cb.witness_vkey,
                   "--home", str(late)) == 0
    assert run_cli("audit", "--home", str(late)) == 0


def test_a_node_not_yet_upgraded_takes_the_new_key(home: Path, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    """``witnesses add`` needs no passphrase, so no open has upgraded a node still at 0004
    (one key per name): it upgrades it itself, and the old key stays. Going back to 0004 keeps
    the key in use."""
    old, new = (generate_signer(WITNESS, COSIGNATURE_V1) for _ in range(2))
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        store.add_witness("http://127.0.0.1:9", old.verifier.vkey)
        store.append([commitment(i) for i in range(3)], cosign=False)
        _cosign_latest(store, old)
        store.append([commitment(3)], cosign=False)
        url = str(store.engine.url.render_as_string(hide_password=False))
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                cfg = _alembic_config()
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "0004")
                conn.commit()
                assert inspect(conn).get_pk_constraint("ledger_witnesses")[
                    "constrained_columns"] == ["name"]
        finally:
            engine.dispose()
        assert _rows(store) == {old.verifier.vkey: ("http://127.0.0.1:9", 3)}
    capsys.readouterr()
    assert run_cli("witnesses", "add", "--url", "http://127.0.0.1:8", "--key", new.verifier.vkey,
                   "--home", str(home)) == 0
    assert "[ledger_witness_key_replaced]" in capsys.readouterr().err
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        assert _rows(store) == {old.verifier.vkey: ("", 3),
                                new.verifier.vkey: ("http://127.0.0.1:8", 0)}
        _cosign_latest(store, new)
        store.append([commitment(4)], cosign=False)
        assert audit(store).ok


def test_status_shows_what_the_new_key_cosigned(store: LedgerStore) -> None:
    """A new key has cosigned nothing: the old key's cosignature of the empty tree is not its
    (status would give that time for the new key's last cosignature)."""
    old, new = (generate_signer(WITNESS, COSIGNATURE_V1) for _ in range(2))
    store.add_witness("http://127.0.0.1:9", old.verifier.vkey)
    store.sign_initial_checkpoint()
    _cosign_latest(store, old)
    assert [(w.name, w.cosigned, w.cosigned_at is not None) for w in collect(store).witnesses] \
        == [(WITNESS, 0, True)]
    store.add_witness("http://127.0.0.1:8", new.verifier.vkey)
    assert [(w.name, w.cosigned, w.cosigned_at) for w in collect(store).witnesses] == [
        (WITNESS, 0, None)]


@pytest.mark.parametrize("rekeyed", [False], indirect=True)
def test_a_key_an_earlier_release_dropped_is_named_with_the_remedy(
        store: LedgerStore, rekeyed: tuple[Signer, Signer]) -> None:
    """Before 0005, adding the rebuilt witness deleted its old key: the log migrates holding
    the new one only, and its old cosignatures read as "bad", like forgeries. They are named
    as made by a key the log does not hold, with the remedy, which works."""
    old, new = rekeyed
    with store.engine.begin() as conn:  # what the earlier release did
        conn.execute(t.witnesses.delete().where(t.witnesses.c.vkey == old.verifier.vkey))
    report = audit(store)
    assert not report.ok
    first = report.first
    assert first is not None and f"key {old.verifier.key_id.hex()}" in first[1], report.problems
    assert "does not hold" in first[1] and "ledger witnesses add" in first[1]
    assert "no tiene" in report.spanish(*first), report.spanish(*first)
    store.add_witness("http://127.0.0.1:8", old.verifier.vkey)  # the remedy: back, then the new
    store.add_witness("http://127.0.0.1:8", new.verifier.vkey)
    assert audit(store).ok


def test_a_witness_asked_somewhere_else_from_now_on_is_said(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``witnesses add`` with a working witness's key and another address (this node's own,
    by mistake) replaced it in silence: found only as every cosignature failing."""
    key = generate_signer(WITNESS, COSIGNATURE_V1).verifier.vkey
    for url, said in (("http://127.0.0.1:9", False), ("http://127.0.0.1:9", False),
                      ("http://127.0.0.1:8", True)):
        capsys.readouterr()
        assert run_cli("witnesses", "add", "--url", url, "--key", key, "--home", str(home)) == 0
        err = capsys.readouterr().err
        assert ("[ledger_witness_url_changed]" in err) == said, err
    assert "http://127.0.0.1:9" in err and "from now on, at http://127.0.0.1:8" in err


def test_another_citys_witness_on_this_logs_host_is_said_at_once(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two cities serving their logs from one host (``ledgers.example/a``, ``…/b``): no
    counter counts a witness named under this log's host (``bundle_witness_is_own``), and
    ``witnesses add`` and ``status`` said "ok" until every bundle was refused in production."""
    shared = generate_signer("ledger.test/other-city/witness", COSIGNATURE_V1).verifier.vkey
    elsewhere = generate_signer(WITNESS, COSIGNATURE_V1).verifier.vkey
    capsys.readouterr()
    assert run_cli("witnesses", "add", "--url", "http://127.0.0.1:9", "--key", elsewhere,
                   "--home", str(home)) == 0
    assert "[ledger_witness_same_host]" not in capsys.readouterr().err
    assert run_cli("witnesses", "add", "--url", "http://127.0.0.1:8", "--key", shared,
                   "--home", str(home)) == 0
    err = capsys.readouterr().err
    assert err.startswith("[ledger_witness_same_host] Aviso: el testigo "
                          "ledger.test/other-city/witness"), err
    assert "host (ledger.test)" in err and "ledger init --witness-name" in err
    with LedgerStore.open(home) as store:
        facts = collect(store)
    problems = assess(facts, now=int(time.time())).problems
    assert [p.code for p in problems if p.code == "ledger_witness_same_host"] == [
        "ledger_witness_same_host"]


def test_a_log_key_given_for_a_witness_is_refused_before_anything_is_kept(
        home: Path, store: LedgerStore, capsys: pytest.CaptureFixture[str]) -> None:
    """The other city's log key (printed by ``ledger key``, beside ``key --witness``) was taken
    as a witness key, found wrong only at the next cosigning, and kept for good among the
    witness's keys. Refused at once by ``witnesses add`` and ``mirror --witness-key``."""
    log_key = generate_signer("ledger.cxl.example/log").verifier.vkey
    with pytest.raises(UsageError) as caught:
        store.add_witness("http://127.0.0.1:9", log_key)
    assert caught.value.code == "ledger_witness_key_not_cosigning"
    assert "ledger key --witness" in caught.value.message["es"]
    assert store.witnesses() == []
    capsys.readouterr()
    assert run_cli("witnesses", "add", "--url", "http://127.0.0.1:9", "--key", log_key,
                   "--home", str(home)) == 2
    err = capsys.readouterr().err
    assert err.startswith("[ledger_witness_key_not_cosigning] ") and "type 0x01" in err
    mirror_home = home.parent / "mirror"
    assert run_cli("mirror", "--from", "http://127.0.0.1:9", "--witness-key", log_key,
                   "--home", str(mirror_home)) == 2
    assert "[ledger_witness_key_not_cosigning]" in capsys.readouterr().err
    assert not mirror_home.exists()


def test_a_witness_key_given_for_a_log_is_named_as_such(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The other way round: ``--log-key`` given the other city's witness key. The URL was said
    to serve "another log", and a mirror told to check --from and use another --home (after
    saving the witness key in its settings)."""
    witness_vkey = generate_signer(WITNESS, COSIGNATURE_V1).verifier.vkey
    mirror_home = home.parent / "mirror"
    for args, where in ((["witness", "--log", "http://127.0.0.1:9", "--home", str(home)], home),
                        (["mirror", "--from", "http://127.0.0.1:9", "--unwitnessed",
                          "--home", str(mirror_home)], mirror_home)):
        before = sorted(p.name for p in where.iterdir()) if where.exists() else []
        capsys.readouterr()
        assert run_cli(*args, "--log-key", witness_vkey) == 2
        err = capsys.readouterr().err
        assert err.startswith("[ledger_log_key_is_witness_key] --log-key: "), err
        assert "pasaporte ledger key" in err and "without --witness" in err
        assert (sorted(p.name for p in where.iterdir()) if where.exists() else []) == before
