"""When each office key was retired (rotated away): ``issuer keys`` told "retired" from
"expired" by how long the key's window was, a guess that called a key kept from an older
release (rotated with its five years left open) "active" beside the office's real one.
Filled for the keys retired before: the moment their office's next key was made, or, for
one with no successor, the end of its window.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # only where missing, as the revisions before: a store whose version table was lost is run
    # through every revision again
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("keys")}
    if "retired_at" in columns:
        return
    op.add_column("keys", sa.Column("retired_at", sa.Integer, nullable=True))
    # Compromised keys say so whatever else: only the healthy ones an office rotated away.
    op.execute("""
        UPDATE keys SET retired_at = coalesce(
            (SELECT min(later.valid_from) FROM keys AS later
              WHERE later.role = 'office' AND later.office = keys.office
                AND later.valid_from >= keys.valid_from AND later.kid != keys.kid
                AND (later.valid_from > keys.valid_from OR later.rowid > keys.rowid)),
            valid_until)
         WHERE role = 'office' AND NOT active AND compromised_since IS NULL""")


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("retired_at")
