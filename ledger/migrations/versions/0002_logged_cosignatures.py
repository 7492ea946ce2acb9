"""Cosignatures go on the public record: remember which record logged each one.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table in place beyond adding plain columns, and the
    # index keeps "which cosignatures are still to be logged" cheap on a long-lived log.
    with op.batch_alter_table("ledger_cosignatures") as batch:
        batch.add_column(sa.Column("logged", sa.BigInteger, nullable=True))
        batch.create_index("ix_ledger_cosignatures_logged", ["logged"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_cosignatures") as batch:
        batch.drop_index("ix_ledger_cosignatures_logged")
        batch.drop_column("logged")
