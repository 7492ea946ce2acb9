"""Alembic environment for the office store: always run on a connection handed in by the store."""

from __future__ import annotations

from alembic import context

from issuer.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the store always passes one
    raise RuntimeError("run office store migrations through issuer.store.migrate()")
context.configure(connection=connection, target_metadata=metadata,
                  version_table="issuer_alembic_version", render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
