"""The head's last time is the last record's on mirrors too: a mirror used to leave it at 0
(audit now compares the two). A head behind its last record takes that record's time; one ahead
of it is left for audit to report (no append ever writes that).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import cbor2
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    head = conn.execute(sa.text("SELECT size, last_time FROM ledger_head WHERE id = 1")).first()
    if head is None or not head[0]:  # a new database (the head row comes after), or empty
        return
    leaf = conn.execute(sa.text("SELECT leaf FROM ledger_entries WHERE seq = :s"),
                        {"s": int(head[0]) - 1}).scalar()
    if leaf is None:
        return  # a missing record: audit says so, there is no time to take
    try:
        when = cbor2.loads(bytes(leaf))[2]  # [seq, prev, time_ms, type, {fields}]
    except (TypeError, ValueError, IndexError, KeyError):
        return  # a damaged record: the same
    if type(when) is int and int(head[1]) < when < 1 << 63:
        conn.execute(sa.text("UPDATE ledger_head SET last_time = :t WHERE id = 1"), {"t": when})


def downgrade() -> None:
    pass  # the time stays right: older code only ever reads it
