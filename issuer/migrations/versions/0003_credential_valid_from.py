"""The first moment of each credential's validity (``valid_from``, CWT ``nbf``): ``issuer status``
told a resident "valid" for a passport every counter refused as not valid yet (an early renewal),
the office having kept only its end. Empty for credentials issued before: their start is not
known here, and they are as they were said to be.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # only where missing, as 0001 and 0002 do: a store whose version table was lost is run
    # through every revision again, over the columns it already has
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("credentials")}
    if "valid_from" not in columns:
        op.add_column("credentials", sa.Column("valid_from", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("valid_from")
