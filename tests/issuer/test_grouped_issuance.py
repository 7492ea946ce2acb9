"""Adversarial checks of grouped issuance (``IssuerStore.issue_many``) and of the turnstile a
bulk run makes way at (``IssuerStore.make_way``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from issuer import backup
from issuer.store import IssuerStore
from tests.conftest import PASSPHRASE
from tests.issuer.conftest import long_bulk_run


def _office(tmp_path: Path) -> Path:
    home = tmp_path / "issuer"
    IssuerStore.create(home, city="Mexicali", country="MX", office="Centro", code="MXMEX",
                       passphrase=PASSPHRASE).engine.dispose()
    return home


def test_a_backup_taken_during_a_bulk_run_is_let_in_between_groups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup waits for the store's write lock like a clerk's issuance does: a bulk run that
    begins its next group at once after each commit would starve it to ``store_busy`` unless
    the backup, too, holds the turnstile while it waits, so the run makes way for it."""
    monkeypatch.setattr("issuer.backup.BUSY_TIMEOUT_S", 3.0)
    home = _office(tmp_path)
    with long_bulk_run(home, PASSPHRASE, limit=400) as groups:
        started = time.monotonic()
        count = backup.take(IssuerStore.open(home), tmp_path / "copy.db", PASSPHRASE)
        waited = time.monotonic() - started
    # Starved, the backup gives up with store_busy after BUSY_TIMEOUT_S (3 s here), and the run
    # goes on to its 400th group; let in, it copies while the run goes on. (How long it waited
    # is printed, not asserted: timing belongs to the benchmark.)
    print(f"the backup waited {waited:.2f} s")
    assert count >= 12 and len(groups) < 400


def test_a_connection_never_closed_holds_no_turn_once_the_pool_has_it_back(
        tmp_path: Path) -> None:
    """The pool rolls back a connection nobody closed when it is collected, without the
    engine's rollback event: its turnstile must not stay held by the idle pooled connection,
    or every ``make_way`` of a bulk run waits out the whole busy_timeout."""
    import gc

    import sqlalchemy as sa

    from issuer.store import meta

    home = _office(tmp_path)
    store = IssuerStore.open(home, busy_timeout=5)
    db = store.engine.connect()
    db.execute(sa.select(meta.c.v)).all()  # a transaction begun (BEGIN IMMEDIATE)
    del db
    gc.collect()
    started = time.monotonic()
    IssuerStore.open(home, busy_timeout=5).make_way()
    assert time.monotonic() - started < 4  # held, it waits out the whole 5 s
