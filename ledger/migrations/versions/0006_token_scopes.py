"""An append token may be bound to one city's office (its root file: city, country, code), and
the log keeps which city registered each office key (``ledger_kids``) to hold such a token to
what is that office's. Tokens made before stay unbound, as they were. The keys already on the
record are read into ``ledger_kids`` once, here.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_PAGE = 10_000


def upgrade() -> None:
    with op.batch_alter_table("ledger_tokens") as batch:
        batch.add_column(sa.Column("city", sa.String(128), nullable=True))
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("code", sa.String(64), nullable=True))
    op.create_table(
        "ledger_kids",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("city", sa.String(128), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    # Frozen history would not import the live code; reading records is no schema, though,
    # and the appends' own reader (first registration wins) keeps this pass in step with them.
    from ledger.scopes import register_kids_of_leaves

    conn = op.get_bind()
    entries = sa.table("ledger_entries", sa.column("seq", sa.BigInteger),
                       sa.column("leaf", sa.LargeBinary))
    start = 0
    while True:
        rows = conn.execute(sa.select(entries.c.seq, entries.c.leaf)
                            .where(entries.c.seq >= start).order_by(entries.c.seq)
                            .limit(_PAGE)).all()
        if not rows:
            break
        for seq, leaf in rows:
            register_kids_of_leaves(conn, [bytes(leaf)], seq)
        start = rows[-1][0] + 1


def downgrade() -> None:
    op.drop_table("ledger_kids")
    with op.batch_alter_table("ledger_tokens") as batch:
        batch.drop_column("code")
        batch.drop_column("country")
        batch.drop_column("city")
