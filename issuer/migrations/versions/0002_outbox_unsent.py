"""An index of the outbox's unsent entries: the outbox keeps every entry ever sent, and picking
the next batch (``sent IS NULL``, oldest first) scanned all of them, so publishing slowed with
every entry an office had ever published (a city's million made each command 50 ms slower, and
a backlog quadratic). Partial: it holds only what is queued, so it stays small.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_outbox_unsent ON outbox (id) WHERE sent IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_outbox_unsent")
