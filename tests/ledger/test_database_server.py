"""The ledger on a database server (PostgreSQL) as an IT department runs it: sessions ended by
a restart or a DBA, several processes upgrading the schema at once, a role with too few
privileges, a URL with its own ``options``, a server that froze, and URLs typed wrong. Each
failure is a typed bilingual error naming the right cause; the public HTTP answers never name
the database's host, port, role or name."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from credential.errors import PasaporteError, StoreError
from credential.note import COSIGNATURE_V1, generate_signer
from ledger import schema as t
from ledger.store import LedgerStore, _alembic_config, make_engine
from tests.ledger.conftest import PASSPHRASE, REPO, Server, child_env, init_home, run_cli
from tests.ledger.helpers import commitment

# what a public answer must never carry (the text of a libpq error, a URL)
_SERVER_WORDS = ("127.0.0.1", "postgres", "psycopg", "ledger_test_")


def _sql(url: str | None, statement: str, **params: Any) -> list[Any]:
    """Run one statement (autocommit) as the test server's administrator, on the database of
    ``url`` (``None``: the administrator's own); returns its rows."""
    admin = make_url(os.environ["PASAPORTE_TEST_POSTGRES_URL"])
    if url is not None:
        admin = admin.set(database=make_url(url).database)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post_entries(url: str, token: str, n: int) -> int:
    body = json.dumps({"entries": [commitment(n)]}).encode()
    req = urllib.request.Request(f"{url}/entries", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _stopped(server: Server) -> str:
    """Stop a node and return what it wrote to its log (stderr)."""
    server.proc.terminate()
    _, err = server.proc.communicate(timeout=30)
    return err


@pytest.fixture
def pg_home(tmp_path: Path, pg_url: str) -> Path:
    home = tmp_path / "node"
    init_home(home, db=pg_url)
    return home


@pytest.mark.postgres
def test_a_database_the_server_no_longer_has_is_missing(
        pg_home: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Dropped, lost, or its name mistyped: ``ledger_database_missing`` (restore it, or point
    --db at it), as for SQLite, not "the server cannot be used ... nothing to restore"."""
    name = make_url(pg_url).database
    _sql(None, f'DROP DATABASE "{name}" WITH (FORCE)')
    capsys.readouterr()
    assert run_cli("status", "--home", str(pg_home)) == 2
    err = capsys.readouterr().err
    assert err.startswith("[ledger_database_missing]"), err
    assert "restore it from a backup or a mirror" in err


@pytest.mark.postgres
def test_init_on_a_database_not_yet_created_says_create_it(
        pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No log was ever there: create the database first (or fix its name), not "restore it
    from a backup"."""
    url = make_url(pg_url).set(database="never_created_x").render_as_string(
        hide_password=False)
    capsys.readouterr()
    assert run_cli("init", "--origin", "x.test/log", "--home", str(tmp_path / "x"),
                   "--db", url) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_database_not_created]"), err
    assert "create it first" in err and "backup" not in err
    assert not (tmp_path / "x" / "ledger.json").exists()


# -- #2: a session the server ended is replaced, not a failed request -------------------------

@pytest.mark.postgres
def test_sessions_ended_by_the_server_are_replaced_without_a_failed_request(
        pg_home: Path, pg_url: str, serve: Callable[..., Server]) -> None:
    """A PostgreSQL restart, a DBA's pg_terminate_backend or idle_session_timeout ends every
    pooled session. The liveness check on checkout replaces each dead one; no request (reads,
    an office's append) fails for it."""
    with LedgerStore.open(pg_home, passphrase=PASSPHRASE) as store:
        token = store.add_token("office1")
    node = serve(pg_home)
    with ThreadPoolExecutor(12) as pool:  # several pooled sessions at once
        assert set(pool.map(lambda _: _get(f"{node.url}/entries?start=0&end=1")[0],
                            range(30))) == {200}
    [(ended,)] = _sql(None, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = :name", name=make_url(pg_url).database)
    assert ended >= 2
    time.sleep(0.5)  # the backends are gone
    codes = [_get(f"{node.url}/checkpoint")[0] for _ in range(8)]
    assert codes == [200] * 8
    assert _post_entries(node.url, token, 1) == 201


@pytest.mark.postgres
def test_an_engine_reconnects_after_its_session_was_ended(pg_home: Path, pg_url: str) -> None:
    """The same, on one engine: a plain SQLAlchemy engine with pre-ping reconnects; ours did
    not (its error handler turned the pool's liveness check into an error)."""
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        assert _sql(None, "SELECT pg_terminate_backend(:pid)", pid=pid) == [(True,)]
        time.sleep(0.3)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()


# -- #4: several processes upgrading the schema at once ---------------------------------------

_UPGRADE = """
import sys, time
from ledger.store import make_engine, migrate
engine = make_engine(sys.argv[1])
with engine.connect():
    pass  # connected: only the upgrade is left to race
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
migrate(engine)
"""


@pytest.mark.postgres
def test_concurrent_schema_upgrades_all_succeed(pg_home: Path, pg_url: str,
                                                tmp_path: Path) -> None:
    """Six workers started together on a database an older release left at revision 0001:
    each upgrades on opening (or finds it done), none fails with a duplicate column or a
    deadlock, and the log is whole."""
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
            conn.commit()
    finally:
        engine.dispose()
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", _UPGRADE, pg_url, start], cwd=REPO,
                              env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert [err[-300:] for code, err in results if code != 0] == []
    assert run_cli("audit", "--home", str(pg_home)) == 0


# -- #5: a role with too few privileges ------------------------------------------------------

@pytest.fixture
def role_url(pg_url: str) -> Iterator[Callable[[str], str]]:
    """Makes a login role on the test's database with only the grants given (SQL after
    ``GRANT``, or none); returns its URL. Dropped at the end."""
    name = "ledger_role_" + uuid.uuid4().hex[:10]
    made = False

    def make(grant: str = "") -> str:
        nonlocal made
        _sql(None, f"CREATE ROLE {name} LOGIN PASSWORD 'rolepw'")
        made = True
        if grant:
            _sql(pg_url, f"GRANT {grant} TO {name}")
        return make_url(pg_url).set(username=name, password="rolepw").render_as_string(
            hide_password=False)

    yield make
    if made:
        _sql(None, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n",
             n=name)
        _sql(pg_url, f"DROP OWNED BY {name}")
        _sql(None, f"DROP ROLE {name}")


@pytest.mark.postgres
def test_a_role_without_privileges_is_a_typed_error(
        pg_home: Path, role_url: Callable[[str], str], tmp_path: Path,
        serve: Callable[..., Server], capsys: pytest.CaptureFixture[str]) -> None:
    """A role that may only read: an office's append is 503 (the node's state), not 500 with a
    traceback; ``status`` with a role that may not read is critical (exit 2, JSON under
    --json), not "unknown"; the cause is named: privileges, not a damaged database."""
    with LedgerStore.open(pg_home, passphrase=PASSPHRASE) as store:
        token = store.add_token("office1")
    url = role_url("SELECT ON ALL TABLES IN SCHEMA public")
    node = serve(pg_home, "--db", url)
    assert _post_entries(node.url, token, 1) == 503
    log = _stopped(node)
    assert "Traceback" not in log and "[ledger_database_denied]" in log
    _sql(url, f"REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM {make_url(url).username}")
    capsys.readouterr()
    assert run_cli("status", "--json", "--home", str(pg_home), "--db", url) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["code"] == "ledger_database_denied"
    assert err.startswith("[ledger_database_denied]") and "backup" not in err
    assert "rolepw" not in out + err


@pytest.mark.postgres
def test_the_privileges_the_refusal_asks_for_are_enough(
        pg_home: Path, role_url: Callable[[str], str]) -> None:
    """``ledger_database_denied`` says what to grant: a role given exactly that appends,
    and stores a witness's cosignature (a table with a sequence: the tables' grants alone were
    not enough, and the advice was the same again)."""
    said = PasaporteError("ledger_database_denied", db="db", reason="r").message["en"]
    assert "SELECT, INSERT, UPDATE and DELETE" in said and "sequences (USAGE and SELECT)" in said
    url = role_url("SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public")
    _sql(url, "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "
         + str(make_url(url).username))
    witness = generate_signer("ledger.b.example/witness", COSIGNATURE_V1)
    with LedgerStore.open(pg_home, db=url, passphrase=PASSPHRASE) as store:
        store.add_witness("http://127.0.0.1:9", witness.verifier.vkey)
        store.append([commitment(0)], cosign=False)
        cp = store.checkpoint().checkpoint
        store.add_cosignatures(cp.size, [witness.sign(cp.body())], witness=witness.name)
        assert witness.name in store.checkpoint().note


@pytest.mark.postgres
def test_init_as_a_role_that_may_not_create_tables_is_a_typed_error(
        pg_url: str, role_url: Callable[[str], str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL 15's default: a role that does not own the database may not create tables
    in ``public``. ``init`` says so, rather than an internal error with raw SQL."""
    url = role_url("")
    capsys.readouterr()
    assert run_cli("init", "--origin", "x.test/log", "--home", str(tmp_path / "x"),
                   "--db", url) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_database_denied]"), err
    assert "rolepw" not in err


# -- #7: the URL's own options are kept --------------------------------------------------------

@pytest.mark.postgres
def test_the_urls_own_options_are_kept(pg_url: str, tmp_path: Path) -> None:
    """A node and a mirror in two schemas of one database (``options=-csearch_path=…``): each
    log goes to its own schema, and the ledger's own lock wait still applies."""
    _sql(pg_url, "CREATE SCHEMA node")
    _sql(pg_url, "CREATE SCHEMA other")
    base = make_url(pg_url)
    node = base.update_query_dict({"options": "-csearch_path=node"}).render_as_string(
        hide_password=False)
    other = base.update_query_dict({"options": "-csearch_path=other"}).render_as_string(
        hide_password=False)
    init_home(tmp_path / "node", db=node)
    init_home(tmp_path / "other", origin="other.test/log", db=other)  # not "already exists"
    where = _sql(pg_url, "SELECT table_schema, count(*) FROM information_schema.tables "
                         "WHERE table_name = :head GROUP BY 1 ORDER BY 1", head=t.head.name)
    assert where == [("node", 1), ("other", 1)]
    engine = make_engine(node, busy_timeout=7)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW search_path")).scalar() == "node"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "7s"
    finally:
        engine.dispose()


# -- #8: a server's trouble is not a damaged file ---------------------------------------------

@pytest.mark.postgres
def test_a_server_refusing_the_login_says_check_the_server_not_restore(
        pg_home: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A role that does not exist (a typo in the URL): the server refuses the login. The
    message says to check the server and the URL, never to restore a backup. A database that
    does not exist is one missing (a typo, or lost: ``ledger_database_missing`` says both)."""
    base = make_url(pg_url)
    for url, code in ((base.set(username="no_such_role_x"), "ledger_database_unavailable"),
                      (base.set(database="no_such_db_x"), "ledger_database_missing")):
        capsys.readouterr()
        assert run_cli("checkpoint", "--home", str(pg_home), "--db",
                       url.render_as_string(hide_password=False)) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"[{code}]"), err
        if code == "ledger_database_unavailable":
            assert "backup" not in err and "copia de seguridad" not in err
        else:
            assert "name is mistyped" in err and "nombre está mal escrito" in err


@pytest.mark.postgres
def test_a_deadlock_says_try_again(pg_home: Path, pg_url: str) -> None:
    """Two transactions each waiting for the other's lock: PostgreSQL ends one. That one is a
    conflict to retry (nothing was changed), not a database to restore."""
    engines = [make_engine(pg_url), make_engine(pg_url)]
    order = [(t.head.name, t.tokens.name), (t.tokens.name, t.head.name)]
    both = threading.Barrier(2)
    caught: list[StoreError] = []

    def run(engine: Engine, tables: tuple[str, str]) -> None:
        try:
            with engine.connect() as conn, conn.begin():
                conn.exec_driver_sql(f"LOCK TABLE {tables[0]} IN ACCESS EXCLUSIVE MODE")
                both.wait(timeout=30)
                conn.exec_driver_sql(f"LOCK TABLE {tables[1]} IN ACCESS EXCLUSIVE MODE")
        except StoreError as exc:
            caught.append(exc)

    threads = [threading.Thread(target=run, args=(e, o)) for e, o in zip(engines, order,
                                                                           strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert [e.code for e in caught] == ["ledger_database_conflict"]
    assert "backup" not in caught[0].message["en"]


# -- #9, #10: a frozen server; what the public sees -------------------------------------------

class _Relay:
    """A TCP relay to the PostgreSQL server that can stop relaying without closing anything:
    to the node, the server froze (SIGSTOP, a hung storage array: the kernel still
    acknowledges every packet, nothing answers)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.frozen.is_set():
                continue  # held open, never answered
            upstream = socket.create_connection(self.target)
            self.sockets.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.frozen.clear()
        for sock in [self.listener, *self.sockets]:
            sock.close()


@pytest.fixture
def relay(pg_url: str) -> Iterator[_Relay]:
    url = make_url(pg_url)
    r = _Relay(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield r
    finally:
        r.close()


def _via(pg_url: str, relay: _Relay, **query: str) -> str:
    return make_url(pg_url).set(host="127.0.0.1", port=relay.port).update_query_dict(
        query).render_as_string(hide_password=False)


@pytest.mark.postgres
def test_status_on_a_frozen_server_answers_in_bounded_time(
        pg_home: Path, pg_url: str, relay: _Relay) -> None:
    """``ledger status`` (a monitor's check) on a server that froze: critical with a typed
    error within the default connect timeout, not a hang."""
    relay.frozen.set()
    began = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "ledger", "status", "--home", str(pg_home),
                               "--db", _via(pg_url, relay)], capture_output=True, text=True,
                              env=child_env(), cwd=REPO, timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail("ledger status hung on a frozen database server")
    assert time.monotonic() - began < 40
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("[ledger_database_unavailable]"), proc.stderr
    assert f"127.0.0.1:{relay.port}" in proc.stderr  # the operator's CLI names the server


@pytest.mark.postgres
def test_a_node_on_a_frozen_server_answers_503_naming_nothing(
        pg_home: Path, pg_url: str, relay: _Relay, serve: Callable[..., Server]) -> None:
    """A serving node whose database server froze: GET /status answers 503 (a load balancer
    takes it out) within the URL's connect_timeout and a reconnect, not never; the public
    body names neither host, port, role nor database (the node's log does); and once the
    server answers again, so does the node."""
    node = serve(pg_home, "--db", _via(pg_url, relay, connect_timeout="2"))
    assert _get(f"{node.url}/status")[0] == 200
    relay.frozen.set()
    connections = len(relay.sockets)
    began = time.monotonic()
    try:
        code, body = _get(f"{node.url}/status", timeout=40)
    except TimeoutError:
        pytest.fail("GET /status hung on a frozen database server")
    assert time.monotonic() - began < 30
    assert code == 503
    # answered once the pooled session's check ran out, without connecting anew first
    # (another full connect_timeout: twice the bound, past an office's 15 s)
    assert len(relay.sockets) == connections
    err = json.loads(body)
    assert err["code"] == "ledger_node_database_unavailable"
    shown = body.decode()
    assert not [w for w in (*_SERVER_WORDS, str(relay.port), make_url(pg_url).database or "")
                if w in shown], shown
    relay.frozen.clear()
    assert _get(f"{node.url}/status")[0] == 200
    log = _stopped(node)
    assert "[ledger_database_unavailable]" in log and str(relay.port) in log


# -- #11: URLs typed wrong --------------------------------------------------------------------

@pytest.fixture
def refused_port() -> Iterator[int]:
    with socket.socket() as sock:  # bound, never listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://ledger:pw@127.0.0.1:abc/ra",
    "postgresql+psycopg://ledger:Se@cr3tTail@127.0.0.1:5432/ra",
    "postgresql+psycopg://ledger:Se@cr:3tTail@127.0.0.1:5432/ra",
], ids=["port not a number", "@ in the password", "@ and : in the password"])
def test_a_malformed_db_url_is_a_typed_error_showing_no_password(
        url: str, sqlite_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A port that is not a number, or an ``@`` (with or without a ``:``) left unencoded in a
    password: ``ledger_bad_db_url_host``, and no part of the password is repeated."""
    capsys.readouterr()
    assert run_cli("status", "--home", str(sqlite_home), "--db", url) == 2
    assert run_cli("audit", "--home", str(sqlite_home), "--db", url) == 1
    err = capsys.readouterr().err
    assert err.count("[ledger_bad_db_url_host]") == 2, err
    assert not [s for s in ("pw@", "Se@", "cr3tTail", ":3tTail") if s in err], err


def test_a_password_in_the_urls_query_is_not_shown(sqlite_home: Path, refused_port: int,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://ledger@127.0.0.1:{refused_port}/x?password=s3cret"
    capsys.readouterr()
    assert run_cli("audit", "--home", str(sqlite_home), "--db", url) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_") and "s3cret" not in err, err



@pytest.mark.postgres
def test_tables_of_a_ledgers_names_that_are_no_log_are_refused_before_any_key(
        pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another application's ``ledger_entries`` (or a dump restored in part): init failed on
    creating it, "unexpected error" with the raw SQL, and left its keys in the home."""
    _sql(pg_url, "CREATE TABLE customers (id int, name text)")
    _sql(pg_url, "CREATE TABLE ledger_entries (x int)")
    home = tmp_path / "node"
    capsys.readouterr()
    assert run_cli("init", "--origin", "ledger.test/foreign", "--home", str(home),
                   "--db", pg_url) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_database_foreign_tables] ") and "ledger_entries" in err
    assert "CREATE TABLE" not in err
    assert not home.exists() or not any(home.iterdir())


@pytest.mark.postgres
@pytest.mark.parametrize("option", ["connect_timeout=abc", "PASSWORD=x", "sslmode=bogus"])
def test_a_connection_option_the_driver_refuses_is_a_url_to_fix(
        pg_home: Path, pg_url: str, option: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused while connecting, before any SQL: the URL is wrong (``ledger_bad_db_url``), not
    an unexpected error (exit 3) nor a server to check."""
    capsys.readouterr()
    assert run_cli("status", "--home", str(pg_home), "--db", f"{pg_url}?{option}") == 2
    err = capsys.readouterr().err
    assert err.startswith("[ledger_bad_db_url] "), err
