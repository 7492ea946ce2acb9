"""Alembic environment for the ledger: always run on a connection handed in by the store."""

from __future__ import annotations

from alembic import context

from ledger.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the store always passes one
    raise RuntimeError("run ledger migrations through ledger.store.migrate()")
context.configure(connection=connection, target_metadata=metadata,
                  version_table="ledger_alembic_version")
with context.begin_transaction():
    context.run_migrations()
