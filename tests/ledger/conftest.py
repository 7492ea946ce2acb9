"""Fixtures for the ledger tests: homes, stores, the Flask app and client, live servers, PostgreSQL.

Everything is real: ``serve`` starts ``python -m ledger serve`` on a free port of 127.0.0.1, and
``pg_url`` creates a fresh PostgreSQL database per test (skipped without
``PASAPORTE_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ledger.http import create_app
from ledger.keys import load_config
from ledger.store import LedgerStore
from pasaporte.cli import main as pasaporte_main

PASSPHRASE = "correct horse battery staple"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("PASAPORTE_LEDGER_DB", raising=False)


def run_cli(*args: str) -> int:
    return pasaporte_main(["ledger", *args])


def init_home(home: Path, origin: str = "ledger.test/log", db: str | None = None) -> str:
    """``ledger init`` in-process; returns the log's verifier key."""
    args = ["init", "--origin", origin, "--home", str(home)]
    if db:
        args += ["--db", db]
    assert run_cli(*args) == 0
    return (home / "ledger.json").read_text()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """An initialised log home, once on each backend: SQLite in the home, and a fresh
    PostgreSQL database (skipped without PASAPORTE_TEST_POSTGRES_URL, which ``.ci/run`` sets).
    Every test built on it (``store``, ``app``, ``client``) runs against both."""
    path = tmp_path / "home"
    init_home(path, db=request.getfixturevalue("pg_url") if request.param == "postgres" else None)
    return path


@pytest.fixture
def sqlite_home(tmp_path: Path) -> Path:
    """A log home on SQLite only, for what only a database file has: WAL, a file damaged,
    emptied or moved, a lock held by another connection."""
    path = tmp_path / "home"
    init_home(path)
    return path


@pytest.fixture
def store(home: Path) -> Iterator[LedgerStore]:
    with LedgerStore.open(home, passphrase=PASSPHRASE) as s:
        yield s


@pytest.fixture
def app(store: LedgerStore) -> Flask:
    return create_app({"TESTING": True}, store=store)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _pg_admin_url() -> str | None:
    return os.environ.get("PASAPORTE_TEST_POSTGRES_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin_url()
    if not admin:
        pytest.skip("PASAPORTE_TEST_POSTGRES_URL is not set")
    name = "ledger_test_" + uuid.uuid4().hex[:12]
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PASAPORTE_PASSPHRASE"] = PASSPHRASE
    env["PYTHONPATH"] = str(REPO)
    env.pop("PASAPORTE_LEDGER_DB", None)
    env.update(extra)
    return env


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start ``ledger serve`` processes on free ports; all are stopped at the end."""
    servers: list[Server] = []

    def start(home: Path, *extra: str) -> Server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledger", "serve", "--home", str(home), "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
            cwd=REPO)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("escuchando en / listening on "):
            proc.kill()
            proc.wait()
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"server did not start: {line!r} {err}")
        server = Server(proc, line.split()[-1])
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def pair(tmp_path: Path, serve: Callable[..., Server]) -> dict[str, Any]:
    """A node (``a``) whose log the other city's node (``b``) witnesses: both served."""
    a, b = tmp_path / "a", tmp_path / "b"
    init_home(a, "ledger.a.example/log")
    init_home(b, "ledger.b.example/log")
    ca, cb = load_config(a), load_config(b)
    sa, sb = serve(a), serve(b)
    assert run_cli("witness", "--log", sa.url, "--log-key", ca.log_vkey, "--home", str(b)) == 0
    assert cb.witness_vkey
    assert run_cli("witnesses", "add", "--url", sb.url, "--key", cb.witness_vkey,
                   "--home", str(a)) == 0
    return {"a": a, "b": b, "ca": ca, "cb": cb, "sa": sa, "sb": sb,
            "witness": cb.witness_vkey.split("+")[0]}
