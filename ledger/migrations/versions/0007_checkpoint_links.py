"""Each checkpoint row names the one stored before it (``prev``): audit then tells a checkpoint
deleted from the middle of the log, which nothing else refers to, from one never signed. Rows
already there are linked in size order, as they were signed.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_checkpoints") as batch:
        batch.add_column(sa.Column("prev", sa.BigInteger, nullable=True))
    # one statement, each row a primary-key probe: a log of many batches upgrades in seconds
    op.execute("UPDATE ledger_checkpoints SET prev = (SELECT max(c.size) FROM "
               "ledger_checkpoints c WHERE c.size < ledger_checkpoints.size)")


def downgrade() -> None:
    with op.batch_alter_table("ledger_checkpoints") as batch:
        batch.drop_column("prev")
