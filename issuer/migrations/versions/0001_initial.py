"""Initial office store: meta, keys, credentials, catalog, bulk fingerprints, outbox.

Stores made before migrations existed already hold some of these tables (``bulk_fingerprints``
came later than the rest), so each table is created only where it is missing; the revision then
stamps such a store like a new one.

The tables are spelled out here rather than taken from ``issuer.store.metadata`` on purpose: a
revision is frozen history, and must create the same tables after the live schema has moved on.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[tuple[str, list[Any]]]:  # columns and constraints
    return [
        ("meta", [sa.Column("k", sa.String, primary_key=True),
                  sa.Column("v", sa.String, nullable=False)]),
        ("keys", [
            sa.Column("kid", sa.LargeBinary, primary_key=True),
            sa.Column("role", sa.String, nullable=False),
            sa.Column("public_key", sa.LargeBinary, nullable=False),
            sa.Column("sealed", sa.LargeBinary, nullable=False),
            sa.Column("office", sa.String, nullable=False),
            sa.Column("valid_from", sa.Integer, nullable=False),
            sa.Column("valid_until", sa.Integer, nullable=False),
            sa.Column("compromised_since", sa.Integer),
            sa.Column("status_list", sa.Integer, nullable=False),
            sa.Column("active", sa.Boolean, nullable=False),
        ]),
        ("credentials", [
            sa.Column("id", sa.String, primary_key=True),
            sa.Column("kid", sa.LargeBinary, nullable=False),
            sa.Column("list_id", sa.Integer, nullable=False),
            sa.Column("idx", sa.Integer, nullable=False),
            sa.Column("status", sa.String, nullable=False),
            sa.Column("reason", sa.String),
            sa.Column("issued_at", sa.Integer, nullable=False),
            sa.Column("valid_until", sa.Integer, nullable=False),
            sa.Column("paper", sa.Boolean, nullable=False),
            sa.Column("commitment", sa.LargeBinary, nullable=False),
            sa.Column("commit_salt", sa.LargeBinary, nullable=False),
            sa.UniqueConstraint("list_id", "idx"),
        ]),
        ("catalog", [
            sa.Column("catalog", sa.String, primary_key=True),
            sa.Column("code", sa.Integer, primary_key=True),
            sa.Column("name", sa.String, nullable=False),
            sa.UniqueConstraint("catalog", "name"),
        ]),
        ("bulk_fingerprints", [
            sa.Column("fingerprint", sa.String, primary_key=True),
            sa.Column("credential_id", sa.String, nullable=False),
        ]),
        ("outbox", [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("entry", sa.String, nullable=False),
            sa.Column("created", sa.Integer, nullable=False),
            sa.Column("sent", sa.Integer),
        ]),
    ]


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for name, items in _tables():
        if name not in present:
            op.create_table(name, *items)


def downgrade() -> None:
    for name, _ in reversed(_tables()):
        op.drop_table(name)
