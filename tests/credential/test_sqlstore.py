"""The SQL-store plumbing the office store and the ledger share."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import pytest
from alembic.config import Config

import issuer.migrations
import ledger.migrations
from credential.errors import StoreError
from credential.sqlstore import refuse_newer_release, sqlite_settings


@pytest.mark.parametrize("package", [issuer.migrations, ledger.migrations])
def test_only_a_revision_these_migrations_do_not_know_is_refused(package: ModuleType) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(str(package.__file__)).parent))
    refuse_newer_release(cfg, None, what="x.db")  # a store not yet migrated
    refuse_newer_release(cfg, "0001", what="x.db")
    with pytest.raises(StoreError) as caught:
        refuse_newer_release(cfg, "0099", what="x.db")
    assert caught.value.code == "store_newer_release"
    assert "0099" in caught.value.message["en"] and "0099" in caught.value.message["es"]


def test_a_connection_is_set_for_durability(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db")
    sqlite_settings(db, None)
    assert db.isolation_level is None
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()
