"""The ledger's tables (SQLAlchemy Core), shared by the store, the audit and the migrations.

``ledger_head`` is a single row (id 1): the tree size, root, last record hash and time, and the
*frontier* — the hashes of the perfect subtrees that make up the current tree — so an append
never reads old nodes. Locking that row (``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE`` on
PostgreSQL) is what serializes sequencing across processes.

``ledger_nodes`` stores the perfect subtree hashes at every ``NODE_STRIDE``-th level (4, 8, 12 …)
under ``id = level << 48 | index``; level-0 hashes live next to their record in
``ledger_entries.hash``. A node in between is rebuilt from at most 2^(stride-1)·2 stored hashes,
so a proof never rehashes the log, while an append writes one node row per 16 records instead
of one per record.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = ["NODE_SHIFT", "NODE_STRIDE", "insert_new", "is_stored", "metadata", "node_id"]

NODE_SHIFT = 48
NODE_STRIDE = 4
# SQLite stores an INTEGER PRIMARY KEY as the row id itself (one b-tree, not a table plus an
# index), which halves the cost of every append; PostgreSQL keeps BIGINT.
_KEY = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()

head = Table(
    "ledger_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("last_hash", LargeBinary, nullable=False),
    Column("last_time", BigInteger, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
)

entries = Table(
    "ledger_entries", metadata,
    Column("seq", _KEY, primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("hash", LargeBinary, nullable=False),
)

nodes = Table(
    "ledger_nodes", metadata,
    Column("id", _KEY, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

checkpoints = Table(
    "ledger_checkpoints", metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    # the size of the checkpoint stored before this one (NULL: the first), so that audit
    # tells one deleted from the middle: nothing else need refer to it (migration 0007)
    Column("prev", BigInteger, nullable=True),
)

cosignatures = Table(
    "ledger_cosignatures", metadata,
    Column("id", Integer, primary_key=True),
    Column("size", BigInteger, nullable=False, index=True),
    Column("witness", String(200), nullable=False),
    Column("line", Text, nullable=False),
    # The sequence number of the ``witness_cosignature`` record that put this cosignature on
    # the public record; NULL until the next append logs it.
    Column("logged", BigInteger, nullable=True, index=True),
    UniqueConstraint("size", "line"),
    # One per witness and checkpoint: asked again, a witness re-signs with a new timestamp,
    # which says nothing new (``insert_new`` keeps the first).
    Index("ux_ledger_cosignatures_size_witness", "size", "witness", unique=True),
)

# Cosignatures this node's witness gave to *other* logs, put on our own public record with our
# next batch: a witness that ever vouched for two different histories is then caught by anyone
# who reads both logs.
witness_given = Table(
    "witness_given", metadata,
    Column("id", Integer, primary_key=True),
    Column("origin", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("witness", String(200), nullable=False),
    Column("signature", LargeBinary, nullable=False),  # key id ‖ timestamp ‖ Ed25519 signature
    Column("logged", BigInteger, nullable=True, index=True),
    Index("ux_witness_given_tree", "origin", "size", "root", unique=True),  # vouched once
)

# Idempotent appends (``Idempotency-Key`` on ``POST /entries``): a client that retries a batch
# after a lost answer gets the first answer back instead of appending the batch twice.
requests = Table(
    "ledger_requests", metadata,
    Column("client", String(100), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("digest", LargeBinary, nullable=False),  # SHA-256 of the batch: same key, same batch
    Column("start", BigInteger, nullable=False),
    Column("end", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False, index=True),
)

# An append client's token (its SHA-256) and, when bound to one city's office (``token add
# --root``), that office's city, country and code: it then writes only what is that office's.
tokens = Table(
    "ledger_tokens", metadata,
    Column("name", String(100), primary_key=True),
    Column("digest", LargeBinary, nullable=False, unique=True),
    Column("created", BigInteger, nullable=False),
    Column("city", String(128), nullable=True),
    Column("country", String(2), nullable=True),
    Column("code", String(64), nullable=True),
)

# Which city registered each office key (its first ``key_registered``), written with the record:
# a bound token may rotate or mark compromised only its own city's keys.
kids = Table(
    "ledger_kids", metadata,
    Column("kid", String(64), primary_key=True),
    Column("city", String(128), nullable=False),
    Column("country", String(2), nullable=False),
    Column("seq", BigInteger, nullable=False),
)

# The witnesses this log asks, with every key each one ever had: one row per name and key. The
# key in use has the witness's URL; a key retired (its witness removed, or rebuilt under the same
# name with a new key) keeps its row with an empty URL, because it still checks the cosignatures
# it gave. A name has at most one key in use: it is asked once per checkpoint, and ``status``
# reports it once.
witnesses = Table(
    "ledger_witnesses", metadata,
    Column("name", String(200), primary_key=True),
    Column("vkey", Text, primary_key=True),
    Column("url", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Index("ux_ledger_witnesses_in_use", "name", unique=True,
          sqlite_where=text("url != ''"), postgresql_where=text("url != ''")),
)

witnessed_logs = Table(
    "witness_logs", metadata,
    Column("origin", String(200), primary_key=True),
    Column("vkey", Text, nullable=False),
    Column("url", Text),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary),
    Column("note", Text),
    Column("updated", BigInteger, nullable=False),
)


# What a witness keeps when a log it witnesses shows it a checkpoint for a size it already
# cosigned, with another root: both notes, each signed by the log — the proof of a split view
# (equivocation) that the other city needs. One row per conflicting tree.
split_views = Table(
    "witness_split_views", metadata,
    Column("id", Integer, primary_key=True),
    Column("origin", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),  # the other checkpoint's
    Column("cosigned", Text, nullable=False),  # the note we cosigned at that size
    Column("other", Text, nullable=False),  # the note with the other root
    Column("seen", BigInteger, nullable=False),
    Index("ux_witness_split_views_tree", "origin", "size", "root", unique=True),
)


def node_id(level: int, index: int) -> int:
    return level << NODE_SHIFT | index


def is_stored(level: int) -> bool:
    """Whether nodes of ``level`` have rows in ``ledger_nodes``."""
    return level > 0 and level % NODE_STRIDE == 0


def insert_new(conn: Connection, table: Table, **values: object) -> None:
    """Insert a row unless a unique key already has one (the first wins; no read-then-insert
    race between two writers). SQLite and PostgreSQL spell it the same way."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing())
