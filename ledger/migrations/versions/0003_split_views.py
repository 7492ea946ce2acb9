"""A witness keeps the evidence of a split view (``witness_split_views``): two checkpoints the
same log signed for the same size with different roots.

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
    op.create_table(
        "witness_split_views",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("cosigned", sa.Text, nullable=False),
        sa.Column("other", sa.Text, nullable=False),
        sa.Column("seen", sa.BigInteger, nullable=False),
    )
    op.create_index("ux_witness_split_views_tree", "witness_split_views",
                    ["origin", "size", "root"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_witness_split_views_tree", "witness_split_views")
    op.drop_table("witness_split_views")
