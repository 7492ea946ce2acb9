"""The office store's schema under Alembic: new stores at head, older stores upgraded in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from credential.errors import StoreError
from issuer.migrations import HEAD
from issuer.store import IssuerStore, metadata
from tests.conftest import Run
from tests.factory import EXAMPLES


def _init(run: Run, home: Path) -> str:
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                         "--paper", "--out", str(home.parent / "p.txt"), "--home", str(home))
    assert code == 0, err
    return out.strip()


def test_a_new_store_is_at_head_and_matches_the_schema(homes: dict[str, Path], passphrase: str,
                                                       run: Run) -> None:
    _init(run, homes["issuer"])
    store = IssuerStore.open(homes["issuer"])
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "issuer_alembic_version"})
        assert ctx.get_current_revision() == HEAD
        diff = compare_metadata(ctx, metadata)
    assert [d for d in diff if not (d[0] == "remove_table"
                                    and d[1].name == "issuer_alembic_version")] == []


def test_head_is_the_newest_revision() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import issuer

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(issuer.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


def test_a_store_from_before_migrations_upgrades_in_place(homes: dict[str, Path],
                                                          passphrase: str, run: Run) -> None:
    """A store made before the schema was versioned (and before bulk runs could resume): its
    first open adds what is missing and keeps everything it held."""
    home = homes["issuer"]
    cid = _init(run, home)
    with sqlite3.connect(home / "issuer.db") as db:
        db.execute("DROP TABLE issuer_alembic_version")
        db.execute("DROP TABLE bulk_fingerprints")
    db.close()
    code, out, err = run("issuer", "status", cid, "--home", str(home))
    assert code == 0 and "valid" in out, err
    with sqlite3.connect(home / "issuer.db") as db:
        assert db.execute("SELECT version_num FROM issuer_alembic_version").fetchone() == (HEAD,)
        assert db.execute("SELECT count(*) FROM bulk_fingerprints").fetchone() == (0,)
    db.close()
    code, _, err = run("issuer", "bulk", str(EXAMPLES / "residents-sample.csv"), "--out-dir",
                       str(home.parent / "print"), "--home", str(home))
    assert code == 0, err


def test_a_store_without_its_tables_is_damaged_not_made_anew(homes: dict[str, Path],
                                                             passphrase: str, run: Run) -> None:
    home = homes["issuer"]
    _init(run, home)
    with sqlite3.connect(home / "issuer.db") as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            db.execute(f'DROP TABLE "{name}"')
    db.close()
    with pytest.raises(StoreError) as caught:
        IssuerStore.open(home)
    assert caught.value.code == "store_damaged"
    with sqlite3.connect(home / "issuer.db") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    db.close()


def test_a_store_of_a_newer_release_is_said_so_and_left_as_it_is(homes: dict[str, Path],
                                                                  passphrase: str,
                                                                  run: Run) -> None:
    """Opened by an older release (a rollback), a schema it does not know is a typed refusal
    naming the revision, not Alembic's "can't locate revision" as an unexpected error."""
    home = homes["issuer"]
    _init(run, home)
    with sqlite3.connect(home / "issuer.db") as db:
        db.execute("UPDATE issuer_alembic_version SET version_num = '0099'")
    db.close()
    code, out, err = run("issuer", "keys", "--home", str(home))
    assert code == 1 and out == "" and err.startswith("[store_newer_release] "), err
    assert "0099" in err and "issuer.db" in err
    with sqlite3.connect(home / "issuer.db") as db:
        assert db.execute("SELECT version_num FROM issuer_alembic_version").fetchone() == ("0099",)
    db.close()


def test_the_next_batch_to_publish_is_found_without_reading_those_sent(
        homes: dict[str, Path], passphrase: str, run: Run) -> None:
    """Migration 0002: a store from 0001 gains the index of unsent entries, and SQLite picks the
    next batch through it (a city's million sent entries made every command slower)."""
    home = homes["issuer"]
    _init(run, home)
    with sqlite3.connect(home / "issuer.db") as db:
        db.execute("DROP INDEX ix_outbox_unsent")
        db.execute("UPDATE issuer_alembic_version SET version_num = '0001'")
    db.close()
    IssuerStore.open(home)
    with sqlite3.connect(home / "issuer.db") as db:
        assert db.execute("SELECT version_num FROM issuer_alembic_version").fetchone() == (HEAD,)
        plan = db.execute("EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE sent IS NULL "
                          "ORDER BY id LIMIT 500").fetchall()
    db.close()
    assert "USING INDEX ix_outbox_unsent" in repr(plan), plan  # partial: the unsent rows only


def test_keys_rotated_before_0004_are_retired_and_the_active_one_alone_active(
        homes: dict[str, Path], passphrase: str, run: Run) -> None:
    """Migration 0004: an office key rotated away by an older release (its five years left
    open, no ``retired_at``) is "retired" from when its successor was made, beside the one
    active key; a key that simply ran out stays "expired"."""
    home = homes["issuer"]
    _init(run, home)
    assert run("issuer", "rotate", "--home", str(home))[0] == 0
    with sqlite3.connect(home / "issuer.db") as db:
        old, new = db.execute("SELECT kid, valid_from FROM keys WHERE role = 'office' "
                              "ORDER BY valid_from, rowid").fetchall()
        # as an older release left it: the window open, no retired_at column
        db.execute("UPDATE keys SET valid_until = valid_from + 5 * 365 * 86400 WHERE kid = ?",
                   (old[0],))
        db.execute("ALTER TABLE keys DROP COLUMN retired_at")
        db.execute("UPDATE issuer_alembic_version SET version_num = '0003'")
    db.close()
    store = IssuerStore.open(home)
    assert [k["status"] for k in store.office_keys()] == ["retired", "active"]
    with sqlite3.connect(home / "issuer.db") as db:
        assert db.execute("SELECT retired_at FROM keys WHERE kid = ?", (old[0],)).fetchone() == (
            new[1],)
        assert db.execute("SELECT retired_at FROM keys WHERE kid = ?", (new[0],)).fetchone() == (
            None,)
    db.close()
    # its window ran out before any rotation: expired, not retired
    later = new[1] + 6 * 365 * 86400
    assert [k["status"] for k in store.office_keys(now=later)] == ["retired", "expired"]


def test_migrations_ship_as_package_data() -> None:
    import issuer

    folder = Path(issuer.__file__).parent / "migrations"
    assert (folder / "env.py").is_file() and (folder / "script.py.mako").is_file()
    assert list((folder / "versions").glob(f"{HEAD}_*.py"))
