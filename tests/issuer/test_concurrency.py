"""Several processes issuing from one office store at once: every credential lands, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from credential.claims import parse_claims
from issuer.store import IssuerStore, credentials
from tests.conftest import PASSPHRASE, Run
from tests.factory import EXAMPLES, day, example_claims
from tests.issuer.conftest import long_bulk_run

REPO = Path(__file__).resolve().parents[2]


def test_parallel_issuers_share_one_store(homes: dict[str, Path], passphrase: str, run: Run,
                                          tmp_path: Path) -> None:
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    env = {"PASAPORTE_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
           # a suite run on a clock moved by libfaketime (tests/test_demo.py) moves theirs too
           **{k: v for k, v in os.environ.items() if k == "LD_PRELOAD" or k.startswith("FAKETIME")}}
    procs = []
    sample = (EXAMPLES / "residents-sample.csv").read_text(encoding="utf-8")
    start = example_claims()["valid_from"]
    assert sample.count(f",{start},") == 3  # every row's valid_from
    for worker in range(4):
        out = tmp_path / f"w{worker}"
        # Each worker its own file: the same file run twice at once is one bulk run, resumed
        # (see test_bulk), not two.
        csv_file = tmp_path / f"residents-{worker}.csv"
        csv_file.write_text(sample.replace(f",{start},", f",{day(f'2026-11-1{worker}')},"),
                            encoding="utf-8")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pasaporte", "issuer", "bulk",
             str(csv_file), "--out-dir", str(out), "--home", str(home)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    store = IssuerStore.open(home)
    with store.engine.connect() as db:
        rows = db.execute(credentials.select()).all()
    assert len(rows) == 12 and len({r.id for r in rows}) == 12
    assert len({(r.list_id, r.idx) for r in rows}) == 12
    issued = [e for _, e in store.pending() if e["type"] == "credential_issued"]
    assert len(issued) == 12
    codes = json.dumps([e for _, e in store.pending()], ensure_ascii=False)
    assert "Mexicali" in codes  # the office key entry names the city, never a resident
    # (names with a space or an accent: no base64 commitment can hold one by chance)
    for resident in ("Ana Sofía", "Núñez Peña", "García", "Wu Martínez", "1999-12-01",
                     "1950-07-19", "2011-02-28"):
        assert resident not in codes, resident


def test_a_store_held_too_long_gives_a_typed_error_and_loses_nothing(
        homes: dict[str, Path], passphrase: str, run: Run) -> None:
    """Another process keeps the write lock past our wait: a bilingual ``store_busy`` error, and
    the database is exactly as before (the same call succeeds once the lock is released)."""
    import sqlite3

    import pytest

    from credential.errors import StoreError

    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    before = IssuerStore.open(home).pending()
    holder = sqlite3.connect(home / "issuer.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    store = IssuerStore.open(home, busy_timeout=0.2)
    claims = parse_claims(example_claims())
    try:
        with pytest.raises(StoreError) as caught:
            store.issue(claims, holder_key=None, passphrase=passphrase)
        assert caught.value.code == "store_busy"
        assert "issuer.db" in caught.value.message["es"]
        assert "issuer.db" in caught.value.message["en"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.pending() == before
    store.issue(claims, holder_key=None, passphrase=passphrase)
    assert len(store.pending()) == len(before) + 1


def test_a_long_run_makes_way_for_a_clerks_issuance(homes: dict[str, Path], passphrase: str,
                                                     run: Run) -> None:
    """A bulk run begins its next group at once after each commit; SQLite gives no turns, so a
    clerk's ``issue`` waiting for the lock could wait out the whole run. Between groups the run
    makes way (``IssuerStore.make_way``): the clerk's issuance lands while the run goes on."""
    import time

    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    clerk = IssuerStore.open(home)
    with long_bulk_run(home, passphrase, limit=100) as groups:
        started = time.monotonic()
        clerk.issue(parse_claims(example_claims()), holder_key=None, passphrase=passphrase)
        waited = time.monotonic() - started
    # In before the run ended: without making way, the clerk waits out all 100 groups. (How
    # long it waited is printed, not asserted: timing belongs to the benchmark.)
    print(f"the clerk waited {waited:.2f} s")
    assert len(groups) < 100
    assert len(clerk.pending()) == 1 + 1 + 4 * len(groups)  # key, the clerk's, the run's


def test_making_way_waits_for_whoever_waits_for_the_lock(office: Path) -> None:
    import fcntl
    import os
    import threading
    import time

    from issuer.store import TURNSTILE

    store = IssuerStore.open(office, busy_timeout=10)
    started = time.monotonic()
    store.make_way()  # nobody waiting: at once
    assert time.monotonic() - started < 1
    fd = os.open(office / TURNSTILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_SH)  # as a transaction waiting for the lock holds it
    worker = threading.Thread(target=store.make_way)
    worker.start()
    time.sleep(0.3)
    assert worker.is_alive()  # still making way
    os.close(fd)
    worker.join(timeout=5)
    assert not worker.is_alive()
    fd = os.open(office / TURNSTILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        started = time.monotonic()
        IssuerStore.open(office, busy_timeout=0.2).make_way()  # not for longer than this
        assert time.monotonic() - started < 2
    finally:
        os.close(fd)
