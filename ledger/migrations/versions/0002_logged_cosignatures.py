"""Cosignatures go on the public record: those our log received (``ledger_cosignatures.logged``)
and those our witness gave to other logs (``witness_given``), each with the record that logged it;
and idempotent appends (``ledger_requests``).

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
    # one cosignature per witness and checkpoint from now on: keep the first of any repeats
    op.execute("DELETE FROM ledger_cosignatures WHERE id NOT IN "
               "(SELECT MIN(id) FROM ledger_cosignatures GROUP BY size, witness)")
    with op.batch_alter_table("ledger_cosignatures") as batch:
        batch.add_column(sa.Column("logged", sa.BigInteger, nullable=True))
        batch.create_index("ix_ledger_cosignatures_logged", ["logged"])
        batch.create_index("ux_ledger_cosignatures_size_witness", ["size", "witness"],
                           unique=True)
    op.create_table(
        "witness_given",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("witness", sa.String(200), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("logged", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_witness_given_logged", "witness_given", ["logged"])
    op.create_index("ux_witness_given_tree", "witness_given", ["origin", "size", "root"],
                    unique=True)
    op.create_table(
        "ledger_requests",
        sa.Column("client", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("end", sa.BigInteger, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ledger_requests_created", "ledger_requests", ["created"])


def downgrade() -> None:
    op.drop_index("ix_ledger_requests_created", "ledger_requests")
    op.drop_table("ledger_requests")
    op.drop_index("ux_witness_given_tree", "witness_given")
    op.drop_index("ix_witness_given_logged", "witness_given")
    op.drop_table("witness_given")
    with op.batch_alter_table("ledger_cosignatures") as batch:
        batch.drop_index("ux_ledger_cosignatures_size_witness")
        batch.drop_index("ix_ledger_cosignatures_logged")
        batch.drop_column("logged")
