"""Recompute a ledger from its stored records and compare with everything else it stores.

Checks, in one streaming pass: every record's sequence number and previous-record hash (the
chain), every stored leaf hash, that record times never go back, every stored internal node,
the head row, and every checkpoint (signature by the log key, origin, root recomputed at its
size). Then the rows that only make sense next to the records: each cosignature row against its
checkpoint, its witness's key and the ``witness_cosignature`` record that logged it (and each
such record against a row), the checkpoints those records and idempotent answers refer to, and
the witness's own state against the cosignatures it gave. The report names the *first* bad
sequence number and what is wrong with it.

Fast by design (< 10 s per million records): rows are read in large ranges with plain tuples,
and hashing uses ``hashlib`` directly in tight loops. Memory stays flat as the log grows: the
tree is rebuilt a block of records at a time (``_Tree``).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    Connection,
    Integer,
    LargeBinary,
    String,
    false,
    func,
    inspect,
    or_,
    select,
    text,
)

from credential import merkle
from credential.errors import PasaporteError, StoreError, spanish
from credential.note import (
    Checkpoint,
    Verifier,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
)
from ledger import schema as t
from ledger.entries import (
    KeyRegistered,
    WitnessCosignature,
    decode_record,
    record_prefix,
    record_time,
    registration_of,
    type_cbor,
)
from ledger.store import ZERO, LedgerStore

__all__ = ["AuditReport", "audit"]

CHUNK = 50_000  # records read per query
# The tree is rebuilt a block of 2**BLOCK_LEVEL records at a time: only one block's nodes are
# held at once (the whole tree would take ~150 MB per million records), plus the few nodes
# above the blocks and the roots of the checkpoints' sizes.
BLOCK_LEVEL = 16

_LEAVES = text("SELECT seq, leaf, hash FROM ledger_entries WHERE seq >= :a AND seq < :b "
               "ORDER BY seq")
_NODES = text("SELECT id, hash FROM ledger_nodes WHERE id >= :a AND id < :b ORDER BY id")


@dataclass
class AuditReport:
    size: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    # a mirror's records beyond its newest verified checkpoint (a run cut short): not a fault
    unverified: int = 0
    # problems whose phrase carries another error's message: that message in each language
    inner: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)
    # The lowest index; of several problems there, the one found first: the checks run from
    # the cause outwards (a leaf that does not hash before the link it then breaks). Kept apart
    # from ``problems``, which holds only the first 1000 found: a thousand damaged hashes far
    # down the log, checked before the links and checkpoints, named those instead of a
    # rewritten record near the start.
    first: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, seq: int, what: str, inner: PasaporteError | None = None) -> None:
        lowest = self.first is None or seq < self.first[0]
        if lowest:
            self.first = (seq, what)
        kept = len(self.problems) < 1000
        if kept:
            self.problems.append((seq, what))
        if inner is not None and (lowest or kept):
            self.inner[(seq, what)] = (inner.message["en"], inner.message["es"])

    def spanish(self, seq: int, what: str) -> str:
        """``what`` in Spanish: our phrase from the reasons catalog, and the message of an
        error it carries (a note that does not verify…) in that error's own Spanish."""
        if (seq, what) not in self.inner:
            return spanish(what)
        en, es = self.inner[(seq, what)]
        return spanish(what.replace(en, "\x00")).replace("\x00", es)


def audit(store: LedgerStore, *, deep: bool = False,
          progress: Callable[[int, int], None] | None = None) -> AuditReport:
    """Audit the whole log. ``deep`` also decodes and validates every record's fields;
    ``progress(records_checked, size)`` is called after each chunk of records."""
    # Millions of short-lived row tuples would set off the cyclic collector again and again,
    # each pass walking every live container: that alone makes the cost grow faster than n.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _audit(store, deep, progress)
    finally:
        if enabled:
            gc.enable()


def _audit(store: LedgerStore, deep: bool,
           progress: Callable[[int, int], None] | None) -> AuditReport:
    report = AuditReport()
    with store.engine.connect() as conn:
        if not _check_types(conn, report):
            return report  # the recomputation below would read such a value as another
    sha = hashlib.sha256
    prev = ZERO
    leaf_bad: set[int] = set()  # stored leaf hash or header wrong for this record
    link_bad: set[int] = set()  # this record's previous-hash does not match the record before
    cosig_marker = type_cbor(WitnessCosignature.TYPE)
    logged: list[tuple[int, bytes]] = []  # records that may be witness cosignatures
    key_marker = type_cbor(KeyRegistered.TYPE)
    registered: list[tuple[int, bytes]] = []  # records that may register office keys
    before: int | None = None  # the previous record's time: times never go back
    when: int | None = None  # the last record's time, which the head must repeat
    with _snapshot(store) as conn:
        # The head and every row read next are one snapshot: read apart, a node taking appends
        # signed a checkpoint in between, "beyond the log's n records", and a sound log failed.
        head = store.head(conn)
        n = report.size = head.size
        # the checkpoints' sizes: the roots to keep while the tree is built a block at a time
        sizes = {int(size) for size, in conn.execute(select(t.checkpoints.c.size))}
        tree = _Tree(conn, n, {*sizes, n}, BLOCK_LEVEL)
        hashes: list[bytes] = []  # this block's leaf hashes
        expect = 0
        for start in range(0, n, CHUNK):
            try:
                rows = conn.execute(_LEAVES, {"a": start, "b": min(start + CHUNK, n)}).all()
            except StoreError:
                mistyped = _mistyped_record(conn, start, min(start + CHUNK, n))
                if mistyped is None:
                    raise
                field = "ledger_entries." + mistyped[1]
                report.add(mistyped[0], f"{field} holds a value of another type")
                return report
            for seq, leaf, stored in rows:
                if type(leaf) is not bytes or type(stored) is not bytes:
                    # a driver's memoryview; or on SQLite, a value rewritten as another type
                    # (the other tables are swept for that before: this one is read anyway)
                    leaf, stored = _blob(leaf), _blob(stored)
                    if leaf is None or stored is None:
                        field = "ledger_entries." + ("leaf" if leaf is None else "hash")
                        report.add(seq, f"{field} holds a value of another type")
                        return report
                if seq != expect:
                    break
                h = sha(b"\x00" + leaf).digest()
                if stored != h:
                    leaf_bad.add(seq)
                    report.add(seq, "stored leaf hash does not match the record")
                prefix = record_prefix(seq, prev)
                at = len(prefix)  # where the record's time begins
                if not leaf.startswith(prefix):
                    if leaf.startswith(record_prefix(seq, b"")):
                        link_bad.add(seq)
                    else:
                        leaf_bad.add(seq)
                        report.add(seq, "record header is not this sequence number")
                        at = 0
                # An append never stamps a record earlier than the one before (it takes the
                # head's last time if the clock went back), so a record that goes back in time
                # was written by something else. Milliseconds since 1970 take a CBOR head of
                # 8 bytes: read those here, anything else the general way.
                if at and len(leaf) > at + 8 and leaf[at] == 0x1B:
                    when = int.from_bytes(leaf[at + 1:at + 9], "big")
                else:
                    when = record_time(leaf, seq)
                if when is not None:
                    if before is not None and when < before:
                        report.add(seq, "record time is before the previous record's")
                    before = when
                if cosig_marker in leaf:  # rare, and checked against the tree below
                    logged.append((seq, leaf))
                if key_marker in leaf:  # rarer still: whose each office key is (ledger_kids)
                    registered.append((seq, leaf))
                if deep:
                    try:
                        decode_record(leaf)
                    except PasaporteError as exc:
                        report.add(seq, f"record does not decode: {exc.message['en']}",
                                   inner=exc)
                hashes.append(h)
                if len(hashes) == tree.block:
                    tree.add_block(expect + 1 - tree.block, hashes)
                    hashes = []
                prev = h
                expect += 1
            if expect != min(n, start + CHUNK):
                report.add(expect, f"record {expect} is missing")
                return report
            if progress is not None:
                progress(expect, n)
        if hashes:
            tree.add_block(n - len(hashes), hashes)
        extra = conn.execute(select(func.min(t.entries.c.seq)).where(
            (t.entries.c.seq >= n) | (t.entries.c.seq < 0))).scalar()
        if extra is not None:
            report.add(int(extra), f"record {extra} lies outside the tree of size {n}")
        last_bad = n > 0 and head.last_hash != prev
        # A broken link at k means record k-1 was rewritten (k's prev no longer matches), or
        # k's own prev was (then k's hash changed too and the link at k+1 breaks as well).
        links = link_bad | ({n} if last_bad else set())
        suspects = set(leaf_bad)
        for k in sorted(links):
            c = k if k + 1 in links else k - 1
            if 0 <= c < n:
                suspects.add(c)
                report.add(c, "record does not chain with its neighbours (previous-hash link)")

        def culprit(level: int, idx: int) -> int:
            # A node that does not recompute is blamed on the first suspect record in its
            # range, else on the range's first record.
            lo, hi = idx << level, min((idx + 1) << level, n)
            inside = [i for i in suspects if lo <= i < hi]
            return min(inside) if inside else lo

        # Internal nodes: the tree's findings, each blamed on a record (in level order, as the
        # tree is built: from the cause outwards).
        unexpected = tree.finish()
        for level, idx, missing in sorted(tree.node_problems):
            if missing:
                report.add(culprit(level, idx), f"tree node ({level}, {idx}) is missing")
            else:
                report.add(culprit(level, idx), f"tree node ({level}, {idx}) does not recompute")
        for level, idx in unexpected:
            report.add(n, f"unexpected tree node ({level}, {idx}) beyond the tree")

        # Head row.
        if head.root != tree.root(n):
            report.add(max(n - 1, 0), "head root does not match the records")
        if last_bad or (n == 0 and head.last_hash != ZERO):
            report.add(max(n - 1, 0), "head's last hash does not match the last record")
        if head.frontier != tree.frontier:
            report.add(max(n - 1, 0), "head frontier does not match the tree")
        # The next append stamps its records no earlier than the head's last time: one set in
        # the future would date every later record there. (A header too damaged to read the
        # time from is reported above.)
        if (n == 0 or when is not None) and head.last_time != (when if n else 0) and not (
                head.last_time == 0 and not _keeps_last_time(conn)):
            report.add(max(n - 1, 0), "head's last time does not match the last record")

        # Checkpoints and cosignatures: the witnesses this log asks (or asked), with every key
        # each one ever had (one removed, or rebuilt under its name with a new key, keeps the
        # old key: the cosignatures it gave stay on the record), and those a mirror requires
        # (its ledger.json: a mirror asks none). A cosignature verifies with any key of its
        # witness's name; one from a key the name never had does not.
        witness_keys: dict[str, list[Verifier]] = {}
        for name, vkey in conn.execute(select(t.witnesses.c.name, t.witnesses.c.vkey)):
            witness_keys.setdefault(str(name), []).append(parse_verifier_key(str(vkey)))
        for key in store.mirror_witnesses:
            if key not in witness_keys.setdefault(key.name, []):
                witness_keys[key.name].append(key)
        bodies: dict[int, str] = {}  # the checkpoints that verify and recompute: their text
        for size, note_text in conn.execute(select(t.checkpoints.c.size, t.checkpoints.c.note)
                                            .order_by(t.checkpoints.c.size)):
            size = int(size)
            at = _at(size, n)
            try:
                note, _ = open_note(str(note_text), [store.verifier])
                cp = parse_checkpoint(note.text)
            except PasaporteError as exc:
                report.add(at, f"checkpoint {size}: {exc.message['en']}", inner=exc)
                continue
            if cp.size != size or cp.origin != store.origin:
                report.add(at, f"checkpoint {size} names another size or origin")
            elif size > n:
                report.add(at, f"checkpoint {size} is beyond the log's {n} records")
            elif cp.root != tree.root(size):
                report.add(at, f"checkpoint {size} root does not match the records")
            else:
                bodies[size] = note.text
        about_us, given = _check_logged_cosignatures(store, logged, tree.root, witness_keys,
                                                     report)
        # A mirror logs nothing: the records it holds were logged by the log, from rows (and
        # about checkpoints) only the log has.
        mirror = store.mirror_of is not None
        _check_cosignature_rows(conn, bodies, sizes, None if mirror else about_us,
                                witness_keys, n, report)
        if not mirror:
            _check_referenced_checkpoints(conn, sizes, about_us, n, report)
        elif store.mirror_witnesses and bodies:
            _check_mirror_quorum(conn, store.mirror_witnesses, bodies, n, report)
        _check_witness_state(conn, store, given, n, report)
        _check_kids(conn, registered, n, report)
        _check_checkpoint_links(conn, n, report)
        newest = max(sizes, default=0)
        if mirror and newest < n:
            # a run cut short keeps what it copied to resume from; the next run verifies it
            report.unverified = n - newest
        elif newest != n and n > 0:
            report.add(max(n - 1, 0), f"no checkpoint for the head size {n}")
    return report


@contextlib.contextmanager
def _snapshot(store: LedgerStore) -> Iterator[Connection]:
    """A connection whose reads all see the database as of its first: SQLite's read
    transaction does (the engine emits BEGIN); PostgreSQL's default, READ COMMITTED, takes a new
    snapshot per statement, so there the audit asks for REPEATABLE READ."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


class _Tree:
    """The Merkle tree recomputed from the records' leaf hashes, given a block at a time in
    order (``add_block``), each block's stored nodes compared with the recomputed ones as it
    comes. Keeps the roots of the ``wanted`` sizes, the frontier at ``n`` and the nodes above
    the blocks; a root asked of another size is recomputed from its block's records again."""

    def __init__(self, conn: Connection, n: int, wanted: set[int], block_level: int) -> None:
        self.conn, self.n, self.level = conn, n, block_level
        self.block = 1 << block_level
        self.wanted = sorted(size for size in wanted if 0 < size <= n)
        self.next = 0  # the first of ``wanted`` not yet reached
        self.roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
        self.frontier = b""
        self.upper: list[list[bytes]] = []  # upper[k]: the nodes of level ``level + k``
        self.node_problems: list[tuple[int, int, bool]] = []  # level, index, missing?

    def add_block(self, start: int, hashes: list[bytes]) -> None:
        """The leaf hashes of records ``start`` … (a whole block but for the last)."""
        levels = self._levels(hashes)
        for level in range(1, self.level + 1):
            if t.is_stored(level):
                self._compare(level, start >> level, levels[level])
        if len(hashes) == self.block:
            self._carry(levels[self.level][0])
        end = start + len(hashes)
        while self.next < len(self.wanted) and self.wanted[self.next] <= end:
            size = self.wanted[self.next]
            self.next += 1
            nodes = self._nodes(size, start, levels)
            self.roots[size] = merkle.fold(nodes)
            if size == self.n:
                self.frontier = b"".join(nodes)

    def root(self, size: int) -> bytes:
        """The recomputed root of the first ``size`` records (``0 <= size <= n``)."""
        got = self.roots.get(size)
        if got is None:
            start = size >> self.level << self.level
            sha = hashlib.sha256
            leaves = [sha(b"\x00" + bytes(leaf)).digest() for _, leaf, _ in
                      self.conn.execute(_LEAVES, {"a": start, "b": size})]
            got = self.roots[size] = merkle.fold(self._nodes(size, start, self._levels(leaves)))
        return got

    def finish(self) -> list[tuple[int, int]]:
        """After the last block: compares the stored nodes above the blocks (the blocks' own
        were compared as they came), and returns the node rows the tree does not have, as
        (level, index)."""
        for k, nodes in enumerate(self.upper[1:], start=1):
            if t.is_stored(self.level + k):
                self._compare(self.level + k, 0, nodes)
        key = t.nodes.c.id
        inside = [(key >= t.node_id(level, 0)) & (key < t.node_id(level, self.n >> level))
                  for level in range(1, self.n.bit_length()) if t.is_stored(level)]
        rows = self.conn.execute(select(key).where(~or_(false(), *inside)).order_by(key)
                                 .limit(1000))
        mask = (1 << t.NODE_SHIFT) - 1
        return [(int(i) >> t.NODE_SHIFT, int(i) & mask) for i, in rows]

    def _levels(self, hashes: list[bytes]) -> list[list[bytes]]:
        """Levels 0 … ``level`` of the perfect subtrees over ``hashes`` (level k: len >> k)."""
        sha = hashlib.sha256
        levels = [hashes]
        for _ in range(self.level):
            cur = levels[-1]
            levels.append([sha(b"\x01" + cur[i] + cur[i + 1]).digest()
                           for i in range(0, len(cur) - 1, 2)])
        return levels

    def _carry(self, node: bytes) -> None:
        """A whole block's root joins the nodes above the blocks, completing any it pairs."""
        for row in itertools.count():
            if row == len(self.upper):
                self.upper.append([])
            above = self.upper[row]
            above.append(node)
            if len(above) % 2:
                return
            node = hashlib.sha256(b"\x01" + above[-2] + above[-1]).digest()

    def _nodes(self, size: int, start: int, levels: list[list[bytes]]) -> list[bytes]:
        """The nodes whose fold is the root at ``size``, from the nodes above the blocks and
        ``levels``, those of the block from ``start`` that holds the records up to ``size``."""
        return [self.upper[level - self.level][i] if level >= self.level
                else levels[level][i - (start >> level)]
                for level, i in merkle.range_nodes(0, size)]

    def _compare(self, level: int, first: int, nodes: list[bytes]) -> None:
        """The stored rows of ``level`` from index ``first`` against ``nodes``."""
        base = t.node_id(level, 0)
        expect, end = first, first + len(nodes)
        for node, stored in self.conn.execute(_NODES, {"a": base + first, "b": base + end}):
            idx = int(node) - base
            self.node_problems += [(level, i, True) for i in range(expect, idx)]
            if bytes(stored) != nodes[idx - first]:
                self.node_problems.append((level, idx, False))
            expect = idx + 1
        self.node_problems += [(level, i, True) for i in range(expect, end)]


# What SQLite's typeof() says of a value each column type stores.
_STORED = ((Integer, "integer"), (LargeBinary, "blob"), (String, "text"))


def _check_types(conn: Connection, report: AuditReport) -> bool:
    """Whether every stored value has its column's type. SQLite keeps whatever a value was
    written as, whatever the column declares: a size rewritten as 20.5 would read back as 20
    and pass, a hash rewritten as text would stop the audit with an internal error instead of
    a finding. (PostgreSQL enforces column types itself.) Each table is one scan, but the
    records' (``_audit`` reads every one anyway); a problem is reported at the record its row
    names, when the row names one."""
    if conn.dialect.name != "sqlite":
        return True
    last = conn.execute(text("SELECT max(seq) FROM ledger_entries")).scalar()
    end = 0 if last is None else int(last) + 1
    at = {t.nodes.name: "id", t.checkpoints.name: "size", t.cosignatures.name: "size"}
    ok = True
    # The SQL below is put together from our own schema's table and column names only, those
    # the database has: one an older release made, read without upgrading it, lacks the rest.
    held = {name: {c["name"] for c in inspect(conn).get_columns(name)}
            for name in inspect(conn).get_table_names()}
    for table in t.metadata.sorted_tables:
        if table is t.entries or table.name not in held:
            continue
        cases = []
        for col in (c for c in table.columns if c.name in held[table.name]):
            kind = next(name for base, name in _STORED if isinstance(col.type, base))
            allowed = f"'{kind}'" + (", 'null'" if col.nullable else "")
            cases.append((col.name, f'typeof("{col.name}") NOT IN ({allowed})'))
        which = " ".join(f"WHEN {test} THEN '{name}'" for name, test in cases)
        where = " OR ".join(test for _, test in cases)
        key = at.get(table.name)
        # the row's record, only where that column itself holds an integer
        locate = f'CASE WHEN typeof("{key}") = \'integer\' THEN "{key}" END' if key else "NULL"
        for column, ref in conn.execute(text(
                f"SELECT CASE {which} END, {locate} FROM {table.name} WHERE {where} "
                f"ORDER BY rowid LIMIT 1")):
            ok = False
            if ref is not None and table is t.nodes:
                ref = (ref & ((1 << t.NODE_SHIFT) - 1)) << (ref >> t.NODE_SHIFT)
            elif ref is not None:
                ref -= 1  # a size: its last record
            field = f"{table.name}.{column}"
            report.add(_clip(end - 1 if ref is None else int(ref), end),
                       f"{field} holds a value of another type")
    return ok


def _mistyped_record(conn: Connection, start: int, end: int) -> tuple[int, str] | None:
    """The first record in ``[start, end)`` whose leaf or hash SQLite holds as another type
    than a blob, and which column. Text that is not UTF-8 (``leaf || x'00'`` makes text of
    a blob) cannot even be read: the driver fails the whole page, the audit with it, and the
    record was not named."""
    if conn.dialect.name != "sqlite":
        return None
    row = conn.execute(text(
        "SELECT seq, CASE WHEN typeof(leaf) != 'blob' THEN 'leaf' ELSE 'hash' END "
        "FROM ledger_entries WHERE seq >= :a AND seq < :b "
        "AND (typeof(leaf) != 'blob' OR typeof(hash) != 'blob') ORDER BY seq LIMIT 1"),
        {"a": start, "b": end}).first()
    return None if row is None else (int(row[0]), str(row[1]))


def _blob(value: object) -> bytes | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None


def _at(size: int, n: int) -> int:
    """The record a problem with the checkpoint of ``size`` is reported at: its last one."""
    return max(min(size, n) - 1, 0)


def _clip(seq: int, n: int) -> int:
    """A record index a row names, within the log (a problem is always at some record)."""
    return min(max(seq, 0), max(n - 1, 0))


def _keeps_last_time(conn: Connection) -> bool:
    """Whether the schema is at revision 0004 or later. Before it a mirror never set the head's
    last time (it stayed 0); the next mirror run, or opening the node to write, migrates it."""
    version = conn.execute(text("SELECT version_num FROM ledger_alembic_version")).scalar()
    return str(version) >= "0004"


def _check_logged_cosignatures(store: LedgerStore, logged: list[tuple[int, bytes]],
                               root_at: Callable[[int], bytes],
                               witness_keys: dict[str, list[Verifier]], report: AuditReport
                               ) -> tuple[dict[int, WitnessCosignature],
                                          dict[int, WitnessCosignature]]:
    """A ``witness_cosignature`` record about this log must name a tree that the log really had
    (root recomputed from the records before it) and, when the witness is known, verify. One
    about another log, given by this node's own witness, must verify with that witness's key.
    Returns both kinds by index: those about this log, and those this node's witness gave."""
    own = store.witness_verifier
    about_us: dict[int, WitnessCosignature] = {}
    given: dict[int, WitnessCosignature] = {}
    for seq, leaf in logged:
        try:
            entry = decode_record(leaf).entry
        except PasaporteError:
            continue  # not a record of this type after all (or damaged: the chain says so)
        if not isinstance(entry, WitnessCosignature):
            continue
        if entry.origin != store.origin:
            if own is not None and entry.witness == own.name:
                given[seq] = entry
                if not _cosigned(own, entry):
                    report.add(seq, f"cosignature by {entry.witness} does not verify")
            continue
        about_us[seq] = entry
        if entry.size > seq:
            report.add(seq, f"cosignature of size {entry.size} logged before that size existed")
        elif entry.root != root_at(entry.size):
            report.add(seq, f"cosignature of size {entry.size} names a root the log never had")
        else:
            keys = witness_keys.get(entry.witness)
            if keys and not any(key.key_id == entry.signature[:4] for key in keys):
                report.add(seq, _unheld(entry.witness, entry.signature[:4],
                                        mirror=store.mirror_of is not None))
            elif keys and not any(_cosigned(key, entry) for key in keys):
                report.add(seq, f"cosignature by {entry.witness} does not verify")
    return about_us, given


def _unheld(witness: str, key_id: bytes, *, mirror: bool) -> str:
    """A cosignature by a key of ``witness`` the log does not hold: unverifiable, not proven
    bad. On a node, most likely a key an earlier release dropped when the witness, rebuilt under
    its name, was added again (it kept one key per name): add that key back. On a mirror, the
    witness's earlier key it was never given (``witnesses add`` is refused there)."""
    if mirror:
        return (f"cosignature by {witness} with key {key_id.hex()}, which this mirror was not "
                "given (if it is the witness's earlier key, give it: ledger mirror --from URL "
                "--witness-key KEY; if not, it is not the witness's)")
    return (f"cosignature by {witness} with key {key_id.hex()}, which this log does not hold "
            "(if the witness really had it, an earlier release dropped it: add it back with "
            "ledger witnesses add; if not, it is not the witness's)")


def _check_mirror_quorum(conn: Connection, required: Sequence[Verifier],
                         bodies: dict[int, str], n: int, report: AuditReport) -> None:
    """A mirror that requires a witness (``mirror --witness-key``) stored its newest checkpoint
    only with a cosignature of one: that row deleted, it served the log's signature alone, and
    every counter given a proof from it failed with nothing on the mirror saying why."""
    newest = max(bodies)
    c = t.cosignatures.c
    for (line,) in conn.execute(select(c.line).where(c.size == newest)):
        try:
            sig = parse_note(bodies[newest] + "\n" + str(line)).signatures[0]
        except PasaporteError:
            continue  # reported with the rows
        if any(key.name == sig.name and key.key_id == sig.key_id
               and key.verify(bodies[newest], sig.signature) for key in required):
            return
    report.add(_at(newest, n), f"checkpoint {newest}: no cosignature by a witness this mirror "
                               "requires")


def _check_cosignature_rows(conn: Connection, bodies: dict[int, str], sizes: set[int],
                            records: dict[int, WitnessCosignature] | None,
                            witness_keys: dict[str, list[Verifier]], n: int,
                            report: AuditReport) -> None:
    """Each stored cosignature (what ``GET /checkpoint`` serves) is of a checkpoint the log has
    and verifies with its witness's key when that witness is known. On a log (``records``: the
    ``witness_cosignature`` records about it, by index) a row marked as logged at index k is that
    record, and every such record is some row's: a row deleted, moved or unmarked would be
    served without it or logged twice. A row still to be logged is from a witness the log asks
    (or asked). A mirror (``records`` None) logs nothing, so none of its rows is marked."""
    c = t.cosignatures.c
    claimed: set[int] = set()
    for size, witness, line, logged in conn.execute(
            select(c.size, c.witness, c.line, c.logged).order_by(c.id)):
        size, witness = int(size), str(witness)
        at = _at(size, n)
        if size not in sizes:
            report.add(at, f"cosignature by {witness} of size {size}, which has no checkpoint")
            continue
        body = bodies.get(size)
        if body is None:
            continue  # the checkpoint itself is reported
        try:
            sig = parse_note(body + "\n" + str(line)).signatures[0]
        except PasaporteError:
            report.add(at, f"checkpoint {size}: malformed cosignature")
            continue
        keys = witness_keys.get(sig.name)
        if keys and not any(key.key_id == sig.key_id for key in keys):
            unheld = _unheld(sig.name, sig.key_id, mirror=records is None)
            report.add(at, f"checkpoint {size}: {unheld}")
        elif keys and not any(key.key_id == sig.key_id and key.verify(body, sig.signature)
                              for key in keys):
            report.add(at, f"checkpoint {size}: cosignature by {sig.name} is bad")
        if sig.name != witness:
            report.add(at, f"checkpoint {size}: cosignature by {sig.name} stored under "
                           f"another witness's name")
        if records is None:
            if logged is not None:
                report.add(at, f"checkpoint {size}: cosignature by {witness} is marked as "
                               f"logged on a mirror")
            continue
        state = None if logged is None else int(logged)
        if state is not None and state >= 0:
            entry = records.get(state)
            if entry is None or (entry.size, entry.witness, entry.signature) != (
                    size, sig.name, sig.key_id + sig.signature):
                report.add(_clip(state, n), f"stored cosignature by {witness} of size {size} "
                                            f"does not match the record that logged it")
            else:
                claimed.add(state)
            continue
        # -1: a plain note signature, which a record has no room for (never to be logged)
        if state is not None and (state != -1 or sig.timestamp is not None):
            report.add(at, f"checkpoint {size}: cosignature by {witness} is marked as never "
                           f"to be logged")
        elif state is None and not keys:  # the next append would put it on the record
            report.add(at, f"checkpoint {size}: cosignature by {sig.name}, a witness this log "
                           f"does not know")
    for seq in sorted(set(records or ()) - claimed):
        report.add(seq, "no stored cosignature matches this record")


def _check_referenced_checkpoints(conn: Connection, sizes: set[int],
                                  records: dict[int, WitnessCosignature], n: int,
                                  report: AuditReport) -> None:
    """A log signs a checkpoint for every batch and keeps them all; the cosignature records and
    the remembered answers to idempotent appends name some of their sizes, so one of those
    deleted is seen (a retry would otherwise find no answer to give)."""
    missing = {entry.size for seq, entry in records.items()
               if entry.size <= seq and entry.size not in sizes}
    r = t.requests.c
    for key, start, end in conn.execute(select(r.key, r.start, r.end).order_by(r.created)):
        start, end = int(start), int(end)
        if not 0 <= start <= end <= n:
            report.add(_clip(end - 1, n),
                       f"idempotency key {key} answers with records the log does not have")
        elif end not in sizes:
            missing.add(end)
    for size in sorted(missing):
        report.add(_at(size, n), f"checkpoint {size} is missing")


def _check_witness_state(conn: Connection, store: LedgerStore,
                         records: dict[int, WitnessCosignature], n: int,
                         report: AuditReport) -> None:
    """This node as a witness. Each cosignature it gave (``witness_given``) verifies with its
    key and is the record that logged it, and each such record is some row's. What it
    remembers of each log it witnesses (``witness_logs``) is the newest tree it cosigned: a
    state set back would let it cosign a history contradicting one it already vouched for."""
    own = store.witness_verifier
    w = t.witness_given.c
    newest: dict[str, tuple[int, bytes, int]] = {}  # origin: size, root, where to report
    claimed: set[int] = set()
    for origin, size, root, witness, signature, logged in conn.execute(
            select(w.origin, w.size, w.root, w.witness, w.signature, w.logged).order_by(w.id)):
        row = (str(origin), int(size), bytes(root), str(witness), bytes(signature))
        origin, size = row[0], row[1]
        where = max(n - 1, 0) if logged is None else _clip(int(logged), n)
        if own is not None and (row[3] != own.name or not _gave(own, *row[:3], row[4])):
            report.add(where, f"cosignature our witness gave {origin} of size {size} does not "
                              f"verify")
        if logged is not None:
            entry = records.get(int(logged))
            if entry is None or (entry.origin, entry.size, entry.root, entry.witness,
                                 entry.signature) != row:
                report.add(where, f"cosignature our witness gave {origin} of size {size} does "
                                  f"not match the record that logged it")
            else:
                claimed.add(int(logged))
        if origin not in newest or size >= newest[origin][0]:
            newest[origin] = (size, row[2], where)
    for seq in sorted(set(records) - claimed):
        report.add(seq, "no stored cosignature matches this record")
    s = t.witnessed_logs.c
    for origin, vkey, size, root, note in conn.execute(
            select(s.origin, s.vkey, s.size, s.root, s.note).order_by(s.origin)):
        origin = str(origin)
        want = newest.pop(origin, None)
        have = (int(size), None if root is None else bytes(root))
        if want is None:
            if have != (0, None) or note is not None:
                report.add(max(n - 1, 0), f"witness state for {origin} names a tree it never "
                                          f"cosigned")
        elif have != want[:2]:
            report.add(want[2], f"witness state for {origin} is not the newest tree it "
                                f"cosigned (size {want[0]})")
        elif note is None or not _names(str(note), str(vkey), origin, want[0], want[1]):
            report.add(want[2], f"witness state for {origin}: its checkpoint note does not "
                                f"match")
    for origin, (size, _, where) in sorted(newest.items()):
        report.add(where, f"witness state for {origin} is not the newest tree it cosigned "
                          f"(size {size})")


def _check_checkpoint_links(conn: Connection, n: int, report: AuditReport) -> None:
    """Each checkpoint row names the one stored before it: one deleted from between two
    others (nothing else need refer to it: no cosignature, no retried append) is named at
    the last record of its batch."""
    if "prev" not in {col["name"] for col in inspect(conn).get_columns(t.checkpoints.name)}:
        return  # a schema older than 0007, not yet upgraded
    c = t.checkpoints.c
    before: int | None = None
    for size, prev in conn.execute(select(c.size, c.prev).order_by(c.size)):
        size, prev = int(size), None if prev is None else int(prev)
        # NULL: a row with no link, as a server of an earlier release still running while
        # another upgraded the database writes them (it knows no such column): nothing to follow
        if prev is not None and prev != before:
            if before is None or prev > before:
                report.add(_at(prev, n), f"checkpoint {prev} is missing (checkpoint {size} "
                                         "follows it)")
            else:
                report.add(_at(size, n), f"checkpoint {size} does not follow checkpoint "
                                         f"{before}")
        before = size


def _check_kids(conn: Connection, registered: list[tuple[int, bytes]], n: int,
                report: AuditReport) -> None:
    """``ledger_kids`` (which city first registered each office key) against the records it is
    kept from: a bound token's scope rests on it, and a row edited to another city let that
    city's token mark this one's key compromised, on the record for good."""
    if not inspect(conn).has_table(t.kids.name):  # a schema older than 0006, not yet upgraded
        return
    first: dict[str, tuple[str, str, int]] = {}
    for seq, leaf in registered:
        found = registration_of(leaf)
        if found is not None and found[0] not in first:
            first[found[0]] = (found[1], found[2], seq)
    k = t.kids.c
    held = {str(kid): (str(city), str(country), int(seq)) for kid, city, country, seq
            in conn.execute(select(k.kid, k.city, k.country, k.seq))}
    for kid, (city, country, seq) in first.items():
        if held.pop(kid, None) != (city, country, seq):
            report.add(seq, f"ledger_kids row of key {kid} does not match its registration")
    for kid, (_, _, seq) in held.items():
        report.add(_clip(seq, n), f"ledger_kids row of key {kid} has no registration")


def _names(note_text: str, vkey: str, origin: str, size: int, root: bytes) -> bool:
    """Whether ``note_text`` is the log's signed checkpoint of that tree."""
    try:
        note, _ = open_note(note_text, [parse_verifier_key(vkey)])
        cp = parse_checkpoint(note.text)
    except PasaporteError:
        return False
    return (cp.origin, cp.size, cp.root) == (origin, size, root)


def _cosigned(key: Verifier, entry: WitnessCosignature) -> bool:
    return _gave(key, entry.origin, entry.size, entry.root, entry.signature)


def _gave(key: Verifier, origin: str, size: int, root: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (key id ‖ timestamp ‖ Ed25519) is ``key``'s cosignature of the
    tree ``origin``, ``size``, ``root``."""
    try:
        body = Checkpoint(origin, size, root).body()
    except PasaporteError:  # a row whose fields no checkpoint can have
        return False
    return key.key_id == signature[:4] and key.verify(body, signature[4:])

