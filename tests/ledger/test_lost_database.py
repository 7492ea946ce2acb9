"""A lost, emptied, mistyped, damaged or unreachable database: a typed bilingual error (exit 1,
HTTP 503), never a new log under the old key and never a driver traceback."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from credential.errors import LedgerError, StoreError
from credential.note import COSIGNATURE_V1
from ledger.http import create_app
from ledger.keys import load_config
from ledger.store import LedgerStore, database_url
from tests.ledger.conftest import PASSPHRASE, REPO, child_env, init_home, run_cli
from tests.ledger.helpers import commitment


def _filled(home: Path, count: int = 3) -> None:
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(count)], cosign=False)


def _jsonl(path: Path, items: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return str(path)


def _moved(home: Path) -> list[str]:
    (home / "ledger.db").rename(home / "moved.db")
    return []


def _emptied(home: Path) -> list[str]:
    (home / "ledger.db").write_bytes(b"")  # truncate -s 0
    return []


def _mistyped(home: Path) -> list[str]:
    return ["--db", f"sqlite:///{home / 'ledgr.db'}"]


LOSSES: dict[str, Callable[[Path], list[str]]] = {
    "moved": _moved, "emptied": _emptied, "mistyped --db": _mistyped}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_a_lost_database_is_never_recreated(loss: str, sqlite_home: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    home = sqlite_home
    _filled(home)
    extra = LOSSES[loss](home)
    entries = _jsonl(tmp_path / "ok.jsonl", [commitment(9)])
    config = json.loads((home / "ledger.json").read_text())
    key = config["log_vkey"]  # well-formed keys
    commands = [["append", "--file", entries], ["audit"], ["checkpoint"], ["entries"],
                ["token", "add", "issuer"], ["witnesses", "list"],
                ["witnesses", "add", "--url", "http://127.0.0.1:1", "--key",
                 config["witness_vkey"]],
                ["witness", "--log", "http://127.0.0.1:1", "--log-key", key]]
    capsys.readouterr()
    for args in commands:
        assert run_cli(*args, "--home", str(home), *extra) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("[ledger_database_missing]"), (args, err)
        assert "--db" in err and "PASAPORTE_LEDGER_DB" in err
    db = extra[1] if extra else None
    for opener in (lambda: LedgerStore.open(home, db=db, passphrase=PASSPHRASE),
                   lambda: LedgerStore.open(home, db=db),
                   lambda: create_app({"HOME": str(home), "DB": db})):
        with pytest.raises(StoreError) as caught:
            opener()
        assert caught.value.code == "ledger_database_missing"
    # nothing was created in its place: no tables, no file where the log was looked for
    if loss == "emptied":
        assert (home / "ledger.db").stat().st_size == 0
    else:
        assert not (home / ("ledgr.db" if extra else "ledger.db")).exists()
    # put back, the log is whole and unchanged
    if loss == "moved":
        (home / "moved.db").rename(home / "ledger.db")
        with LedgerStore.open(home) as store:
            assert store.size() == 3


def test_serve_refuses_a_lost_database(sqlite_home: Path) -> None:
    home = sqlite_home
    (home / "ledger.db").unlink()
    proc = subprocess.run([sys.executable, "-m", "ledger", "serve", "--home", str(home),
                           "--port", "0"], capture_output=True, text=True, env=child_env(),
                          cwd=REPO, timeout=60)
    assert proc.returncode == 1 and "listening" not in proc.stdout
    assert proc.stderr.startswith("[ledger_database_missing]"), proc.stderr
    assert not (home / "ledger.db").exists()


def test_a_mirror_that_lost_its_database_is_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror's first run creates its database (that is its ``init``); a later run whose
    database is gone is refused like a log's."""
    vkey = json.loads(init_home(tmp_path / "origin"))["log_vkey"]
    mirror_home = tmp_path / "mirror"
    args = ["mirror", "--from", "http://127.0.0.1:1", "--unwitnessed", "--home", str(mirror_home)]
    assert run_cli(*args, "--log-key", vkey) == 1  # created, then the origin is unreachable
    assert "[ledger_unreachable]" in capsys.readouterr().err
    with LedgerStore.open(mirror_home) as store:
        assert store.size() == 0
    (mirror_home / "ledger.db").unlink()
    assert run_cli(*args) == 1
    assert capsys.readouterr().err.startswith("[ledger_database_missing]")
    assert not (mirror_home / "ledger.db").exists()


def test_init_refuses_a_database_that_holds_a_log(home: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A second ``init`` pointed at an existing log must not adopt it under new keys."""
    _filled(home)
    other = tmp_path / "other"
    assert run_cli("init", "--origin", "other.test/log", "--home", str(other),
                   "--db", database_url(home, config=load_config(home))) == 1
    assert capsys.readouterr().err.startswith("[ledger_already_initialised]")
    assert not any(other.iterdir())  # no key was written
    with LedgerStore.open(home) as store:
        assert store.size() == 3 and store.checkpoint().checkpoint.size == 3


def _killed_before_settings(home: Path) -> None:
    """What ``init`` (or a mirror's first run) killed between creating the database and saving
    ``ledger.json`` leaves: the home's SQLite file, migrated, and nothing else."""
    from ledger.store import make_engine, migrate

    home.mkdir()
    engine = make_engine(f"sqlite:///{home / 'ledger.db'}")
    try:
        migrate(engine)
    finally:
        engine.dispose()


def test_a_home_left_by_a_killed_init_or_first_mirror_run_is_not_stuck(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The blank log (no record, no signed checkpoint) in the home's own file is taken over;
    one in a database elsewhere, which may be another home's, is still refused."""
    _killed_before_settings(tmp_path / "log")
    init_home(tmp_path / "log")
    with LedgerStore.open(tmp_path / "log") as store:
        assert store.checkpoint().checkpoint.size == 0
    vkey = json.loads(init_home(tmp_path / "origin"))["log_vkey"]
    _killed_before_settings(tmp_path / "mirror")
    assert run_cli("mirror", "--from", "http://127.0.0.1:1", "--unwitnessed", "--log-key", vkey,
                   "--home", str(tmp_path / "mirror")) == 1  # made, then out of reach
    assert "[ledger_unreachable]" in capsys.readouterr().err
    assert load_config(tmp_path / "mirror").mirror_of == "http://127.0.0.1:1"
    _killed_before_settings(tmp_path / "elsewhere")
    assert run_cli("init", "--origin", "other.test/log", "--home", str(tmp_path / "other"),
                   "--db", f"sqlite:///{tmp_path / 'elsewhere' / 'ledger.db'}") == 1
    assert capsys.readouterr().err.startswith("[ledger_already_initialised]")


def _half(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[:len(data) // 2])


def _header(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(b"X" * 16 + data[16:])


@pytest.mark.parametrize(("damage", "why"), [(_half, "malformed"), (_header, "not a database")],
                         ids=["half-truncated", "header"])
def test_a_damaged_database_is_a_typed_error(damage: Callable[[Path], None], why: str,
                                             sqlite_home: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    home = sqlite_home
    _filled(home, 600)  # enough pages that half the file loses records
    damage(home / "ledger.db")
    entries = _jsonl(tmp_path / "ok.jsonl", [commitment(9)])
    capsys.readouterr()
    for args in (["audit", "--deep"], ["append", "--file", entries], ["checkpoint"]):
        assert run_cli(*args, "--home", str(home)) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("[ledger_database_unreadable]"), (args, err)
        assert str(home / "ledger.db") in err
    # the whole CLI, as an operator runs it: one line, no traceback
    proc = subprocess.run([sys.executable, "-m", "ledger", "audit", "--deep", "--home",
                           str(home)], capture_output=True, text=True, env=child_env(),
                          cwd=REPO, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("[ledger_database_unreadable]") and why in proc.stderr


@pytest.fixture
def refused_port() -> Iterator[int]:
    with socket.socket() as sock:  # bound, never listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]  # held to the end: closed, any program could listen there


@pytest.mark.parametrize(("url", "code"), [
    ("garbage://", "ledger_bad_db_url"),
    ("garbage", "ledger_bad_db_url"),
    ("sqlite:////nonexistent/dir/x.db", "ledger_database_missing"),
    ("postgresql+psycopg://ledger:s3cret@127.0.0.1:{port}/x", "ledger_database_unavailable"),
])
def test_an_unusable_db_url_is_a_typed_error(url: str, code: str, home: Path, tmp_path: Path,
                                             refused_port: int,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = url.format(port=refused_port)
    entries = _jsonl(tmp_path / "ok.jsonl", [commitment(9)])
    capsys.readouterr()
    for args in (["audit"], ["append", "--file", entries]):
        assert run_cli(*args, "--home", str(home), "--db", url) == 1, args
        err = capsys.readouterr().err
        assert err.startswith(f"[{code}]"), (args, err)
        assert "s3cret" not in err  # a password never reaches a terminal or a log
    with LedgerStore.open(home) as store:  # the home's own log is untouched
        assert store.size() == 0


def test_init_on_an_unreachable_database_writes_no_key(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    new = tmp_path / "new"
    assert run_cli("init", "--origin", "x.test/log", "--home", str(new),
                   "--db", "sqlite:////nonexistent/dir/x.db") == 1
    assert capsys.readouterr().err.startswith("[ledger_database_cannot_create]")  # no restore
    assert not (new / "log.key").exists() and not (new / "ledger.json").exists()
    # and then pointed at a usable place, init works
    assert run_cli("init", "--origin", "x.test/log", "--home", str(new)) == 0


@pytest.mark.postgres
def test_an_empty_postgres_database_is_not_a_log(sqlite_home: Path, tmp_path: Path,
                                                 pg_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped database name on a server that has it empty: refused, no table created;
    ``init`` there works, and a second ``init`` on it is refused."""
    from sqlalchemy import create_engine, inspect

    entries = _jsonl(tmp_path / "ok.jsonl", [commitment(9)])
    capsys.readouterr()
    assert run_cli("append", "--file", entries, "--home", str(sqlite_home), "--db", pg_url) == 1
    assert capsys.readouterr().err.startswith("[ledger_database_missing]")
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    init_home(tmp_path / "pg", db=pg_url)
    assert run_cli("init", "--origin", "o.test/log", "--home", str(tmp_path / "again"),
                   "--db", pg_url) == 1
    assert capsys.readouterr().err.startswith("[ledger_already_initialised]")


@pytest.mark.parametrize("where", ["port in use", "no such host", "not this machine's"])
def test_serve_that_cannot_listen_says_why_in_both_languages(sqlite_home: Path,
                                                              where: str) -> None:
    """Werkzeug would print the OS's English text and exit; the node says what went wrong
    and what to do, in Spanish and English, with its code, and serves nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        host, port = {"port in use": ("127.0.0.1", taken.getsockname()[1]),
                      "no such host": ("nosuchhost.invalid", 0),
                      "not this machine's": ("192.0.2.1", 0)}[where]  # TEST-NET-1
        proc = subprocess.run([sys.executable, "-m", "ledger", "serve", "--home",
                               str(sqlite_home), "--host", host, "--port", str(port)],
                              capture_output=True, text=True, env=child_env(), cwd=REPO,
                              timeout=60)
    assert proc.returncode == 1 and "listening" not in proc.stdout
    assert proc.stderr.startswith("[ledger_serve_failed] No se pudo escuchar en "), proc.stderr
    assert f"Could not listen on {host}:{port}" in proc.stderr


def test_checkpoint_cosign_without_its_witness_says_so_and_fails(
        sqlite_home: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """``checkpoint --cosign`` with the other city's witness down: the checkpoint is still
    printed, each witness that did not cosign is named with its reason in both languages, and
    the command fails (a script must not take it for cosigned)."""
    from credential.note import generate_signer

    with LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        store.append([commitment(1)], cosign=False)
        witness = generate_signer("ledger.other.example/witness", COSIGNATURE_V1)
        store.add_witness("http://127.0.0.1:1", witness.verifier.vkey)  # nobody listens
    assert run_cli("checkpoint", "--cosign", "--home", str(sqlite_home)) == 1
    out, err = capsys.readouterr()
    assert out.startswith("ledger.test/log\n1\n")
    why = caplog.text  # on stderr at the command line (logging's last resort)
    assert "testigo / witness ledger.other.example/witness: [ledger_unreachable]" in why
    assert "No se pudo contactar" in why and "Could not reach" in why
    assert "[ledger_cosign_missing] Cosignaron 0 de 1 testigos" in err
    assert run_cli("checkpoint", "--home", str(sqlite_home)) == 0  # not asked: not missing


def test_two_mirror_runs_on_one_home_do_not_overlap(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A second mirror run while one holds the home is refused at once, the copy untouched:
    working from a stale view it would cut off the first run's verified records."""
    import fcntl

    from credential.note import generate_signer

    home = tmp_path / "mirror"
    home.mkdir()
    with open(home / ".mirror.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running mirror holds it
        code = run_cli("mirror", "--from", "http://127.0.0.1:1", "--unwitnessed", "--log-key",
                       generate_signer("ledger.test/log").verifier.vkey, "--home", str(home))
    assert code == 1 and "[ledger_mirror_busy]" in capsys.readouterr().err
    assert sorted(p.name for p in home.iterdir()) == [".mirror.lock"]


@contextlib.contextmanager
def _witness_answering(answer: Callable[[bytes], tuple[int, str, bytes]]) -> Iterator[str]:
    """A witness at the URL yielded that answers each ``add-checkpoint`` body with
    ``answer(body)``: (status, content type, body)."""
    import http.server
    import threading

    class Witness(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status, ctype, reply = answer(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Witness)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_witness_that_conflicts_twice_is_named_with_why(
        sqlite_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A witness answering 409 again at the size it named holds another tree: the node says
    so (both languages, a code) rather than leave "0 of 1 cosigned" unexplained."""
    from credential.note import generate_signer
    from ledger.witness import request_cosignatures

    asked: list[bytes] = []

    def conflict(body: bytes) -> tuple[int, str, bytes]:
        asked.append(body)
        return 409, "text/x.tlog.size", b"0\n"

    with _witness_answering(conflict) as url, \
            LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        store.append([commitment(1)], cosign=False)
        witness = generate_signer("ledger.other.example/witness", COSIGNATURE_V1)
        store.add_witness(url, witness.verifier.vkey)
        assert request_cosignatures(store, wait=10) == 0
    conflict_said = LedgerError("ledger_witness_conflict", size=0, ours=1).diagnostics()
    assert f"testigo / witness ledger.other.example/witness: {conflict_said}" in caplog.text
    # asked once, then again from the size it named; not a third time
    assert [body.split(b"\n", 1)[0] for body in asked] == [b"old 0", b"old 0"]


def test_a_witness_reached_by_another_appender_meanwhile_is_no_conflict(
        sqlite_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Several appenders on one log: the witness names an older size, then (another
    appender's checkpoint having reached it in between) this one's own. That is progress, not
    "another tree of this size … Check before going on"; asked from it, it cosigns."""
    from credential.note import generate_signer
    from ledger.witness import request_cosignatures

    witness = generate_signer("ledger.other.example/witness", COSIGNATURE_V1)
    asked: list[bytes] = []

    def busy(body: bytes) -> tuple[int, str, bytes]:
        asked.append(body.split(b"\n", 1)[0])
        if len(asked) < 3:  # an older size, then the size just cosigned for another
            return 409, "text/x.tlog.size", b"1\n" if len(asked) == 1 else b"3\n"
        text = body.decode().split("\n\n", 1)[1].split("\n\n", 1)[0] + "\n"
        return 200, "text/plain", witness.sign(text).line.encode()

    with _witness_answering(busy) as url, \
            LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        store.append([commitment(n) for n in range(3)], cosign=False)
        store.add_witness(url, witness.verifier.vkey)
        assert request_cosignatures(store, wait=10) == 1
    assert "ledger_witness_conflict" not in caplog.text
    assert asked == [b"old 0", b"old 1", b"old 3"]


def test_another_logs_database_is_neither_used_nor_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --db, or PASAPORTE_LEDGER_DB left set in the shell (it overrides the home's
    settings): the node appended to the other city's log, breaking it for good, and its own
    key signed a second tree of those sizes."""
    ours, theirs = tmp_path / "mx", tmp_path / "cx"
    init_home(ours, "ledger.mx.example/log")
    init_home(theirs, "ledger.cx.example/log")
    _filled(theirs)
    other = f"sqlite:///{theirs / 'ledger.db'}"
    before = (theirs / "ledger.db").read_bytes()
    entries = tmp_path / "e.jsonl"
    _jsonl(entries, [{"type": "notice", "text": "acta"}])
    capsys.readouterr()
    assert run_cli("append", "--file", str(entries), "--home", str(ours), "--db", other) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_database_other_log] ") and "ledger.cx.example/log" in err
    monkeypatch.setenv("PASAPORTE_LEDGER_DB", other)
    assert run_cli("status", "--home", str(ours)) == 2
    assert "[ledger_database_other_log]" in capsys.readouterr().err
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(ours)
    assert caught.value.code == "ledger_database_other_log"
    assert "PASAPORTE_LEDGER_DB" in caught.value.message["en"]
    assert (theirs / "ledger.db").read_bytes() == before
    monkeypatch.delenv("PASAPORTE_LEDGER_DB")
    with LedgerStore.open(theirs) as store:  # its own home reads it as ever
        assert store.size() == 3


def test_the_init_that_lost_a_race_for_one_database_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two inits at once on one empty PostgreSQL database: both passed the "no log here"
    check before either wrote, and both said they had made the log (two logs under two keys
    in one database). The check is skipped here to stand for that window."""
    import ledger.store

    first = tmp_path / "first"
    init_home(first, "ledger.x.example/log")
    _filled(first)
    shared = f"sqlite:///{first / 'ledger.db'}"
    before = (first / "ledger.db").read_bytes()
    monkeypatch.setattr(ledger.store, "_refuse_existing_log", lambda *_: None)
    with pytest.raises(StoreError) as caught:
        LedgerStore.init(tmp_path / "second", "ledger.y.example/log", PASSPHRASE, db=shared)
    assert caught.value.code == "ledger_database_other_log"
    assert (first / "ledger.db").read_bytes() == before


def test_a_log_on_a_read_only_disk_is_not_called_damaged(sqlite_home: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """A read-only mount (here the immutable attribute: root writes through modes): the log
    is healthy, but "unreadable… restore it from a backup or a mirror" sent the operator to
    bring back an older copy of it."""
    home = sqlite_home
    _filled(home, 3)
    files = [home, *home.glob("ledger.db*")]
    made = subprocess.run(["chattr", "+i", *map(str, files)], capture_output=True, check=False)
    if made.returncode != 0:  # a file system without attributes (tmpfs)
        pytest.skip(f"chattr +i failed: {made.stderr!r}")
    try:
        capsys.readouterr()
        code = run_cli("append", "--file", _jsonl(tmp_path / "ok.jsonl", [commitment(9)]),
                       "--home", str(home))
        err = capsys.readouterr().err
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    assert code == 1 and err.startswith("[store_not_writable]"), err
    assert "do not restore it" in err and "no la restaure" in err
    with LedgerStore.open(home) as store:
        assert store.size() == 3


def test_a_damaged_newest_checkpoint_is_audits_to_name_and_a_same_named_log_says_its_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The newest checkpoint's row changed by hand: every command said the database "holds
    another log (X), not X", sending the DBA to check --db, and audit never ran. It is this
    log's, damaged: audit names it at its record. A log another init made under the same name
    is refused naming both key ids."""
    import sqlite3

    ours = tmp_path / "mx"
    init_home(ours, "ledger.mx.example/log")
    _filled(ours)
    with contextlib.closing(sqlite3.connect(ours / "ledger.db")) as db, db:
        db.execute("UPDATE ledger_checkpoints SET note = replace(note, char(10) || '3' || "
                   "char(10), char(10) || '4' || char(10)) WHERE size = 3")
    capsys.readouterr()
    assert run_cli("audit", "--home", str(ours)) == 1
    out = capsys.readouterr()
    assert "[ledger_database_other" not in out.err
    assert "checkpoint 3" in out.out + out.err
    twin = tmp_path / "mx-again"
    init_home(twin, "ledger.mx.example/log")
    assert run_cli("status", "--home", str(twin), "--db",
                   f"sqlite:///{ours / 'ledger.db'}") == 2
    err = capsys.readouterr().err
    assert err.startswith("[ledger_database_other_key] ") and "ledger.mx.example/log" in err
