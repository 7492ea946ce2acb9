"""A witness keeps every key it ever had: ``ledger_witnesses`` is keyed by name *and* key. A
witness rebuilt under the same name with a new key used to replace its row, and with it the
only key that checks the cosignatures it gave before: ``audit`` then took them for forgeries.
The key in use has the URL (one per name: ``ux_ledger_witnesses_in_use``); a retired one has
an empty URL, as a removed witness's already had. Every row is kept as it is.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_IN_USE = sa.text("url != ''")


def _table(*key: str) -> sa.Table:
    """The table as it stands, with its primary key on ``key`` under the name PostgreSQL gives
    it. Batch mode copies from this instead of reflecting: SQLite's key has no name to drop,
    and SQLite cannot change a primary key in place (PostgreSQL alters it)."""
    return sa.Table(
        "ledger_witnesses", sa.MetaData(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("vkey", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(*key, name="ledger_witnesses_pkey"),
    )


def _rekey(now: tuple[str, ...], then: tuple[str, ...]) -> None:
    with op.batch_alter_table("ledger_witnesses", copy_from=_table(*now)) as batch:
        batch.drop_constraint("ledger_witnesses_pkey", type_="primary")
        batch.create_primary_key("ledger_witnesses_pkey", list(then))


def upgrade() -> None:
    _rekey(("name",), ("name", "vkey"))
    op.create_index("ux_ledger_witnesses_in_use", "ledger_witnesses", ["name"], unique=True,
                    sqlite_where=_IN_USE, postgresql_where=_IN_USE)


def downgrade() -> None:
    # The old schema holds one key per name: the one in use, else any one. The others go, and
    # audit on the old code reports the cosignatures only they checked.
    op.execute("DELETE FROM ledger_witnesses WHERE url = '' AND EXISTS (SELECT 1 FROM "
               "ledger_witnesses AS w WHERE w.name = ledger_witnesses.name AND w.url != '')")
    op.execute("DELETE FROM ledger_witnesses WHERE vkey < (SELECT MAX(w.vkey) FROM "
               "ledger_witnesses AS w WHERE w.name = ledger_witnesses.name)")
    op.drop_index("ux_ledger_witnesses_in_use", "ledger_witnesses")
    _rekey(("name", "vkey"), ("name",))
