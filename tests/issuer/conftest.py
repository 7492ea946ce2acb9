"""Fixtures for the issuer tests (``homes``, ``run`` and ``passphrase`` come from tests/)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from credential.claims import parse_claims
from issuer.store import Issuance, IssuerStore
from tests.conftest import Run
from tests.factory import EXAMPLES, example_claims


def init_office(run: Run, home: Path) -> None:
    """Make ``home`` an office: Mexicali, MX, office Centro."""
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--home", str(home))
    assert code == 0, err


def issue_paper(run: Run, home: Path, out: Path) -> str:
    """Issue the example Mexicali claims as a paper passport at ``out``; its credential id."""
    code, stdout, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                            "--paper", "--out", str(out), "--home", str(home))
    assert code == 0, err
    return stdout.strip()


@pytest.fixture
def office(homes: dict[str, Path], passphrase: str, run: Run) -> Path:
    """An initialised office home: Mexicali, MX, office Centro."""
    init_office(run, homes["issuer"])
    return homes["issuer"]


def keys_made_on(home: Path, day: str = "2025-01-01") -> None:
    """Date the office's keys as made on ``day``: a test's keys are seconds old, and a
    compromise time earlier than its key is recorded as the key's first moment."""
    when = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())
    with IssuerStore.open(home).engine.begin() as db:
        db.exec_driver_sql("UPDATE keys SET valid_from = ? WHERE role = 'office'", (when,))


@contextlib.contextmanager
def long_bulk_run(home: Path, passphrase: str, limit: int) -> Iterator[list[float]]:
    """A bulk run's loop in a thread: groups of 4 credentials, each holding the store's write
    lock 50 ms, one right after the other with ``make_way`` between them, until the block ends
    or ``limit`` groups are done. Yields the list of group end times as it grows, once three
    groups are done (the run under way)."""
    bulk = IssuerStore.open(home)
    claims = parse_claims(example_claims())
    signing = bulk.office_signing_key(passphrase)
    groups: list[float] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set() and len(groups) < limit:
            bulk.issue_many([Issuance(claims)] * 4, passphrase=passphrase, signing=signing,
                            before_commit=lambda _creds: time.sleep(0.05))
            groups.append(time.monotonic())
            bulk.make_way()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        while len(groups) < 3 and worker.is_alive():
            time.sleep(0.01)
        yield groups
    finally:
        stop.set()
        worker.join(timeout=60)


def after_notices(err: str) -> str:
    """``err`` without the notice of a first passport's new catalogue names before it."""
    return "".join(line for line in err.splitlines(keepends=True)
                   if not line.startswith("[catalog_new_names"))
