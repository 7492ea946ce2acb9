"""Witnessing (C2SP tlog-witness + tlog-cosignature), both sides.

* As a **witness** for another city's log: :func:`add_checkpoint` handles ``POST /add-checkpoint``
  (verify the log's signature, check the old size against the last cosigned one, verify the
  consistency proof, persist atomically, return a ``cosignature/v1`` line), and :func:`pull`
  does the same by fetching the log's checkpoint and proof itself (``ledger witness``).
* As a **log**: :func:`request_cosignatures` sends the newest checkpoint to every configured
  witness and keeps the cosignatures that verify.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, insert, select, update

from credential import merkle
from credential.errors import LedgerError, MalformedInput, PasaporteError, UsageError
from credential.note import (
    MAX_NOTE_BYTES,
    Checkpoint,
    Note,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_signature_lines,
    parse_size,
    parse_verifier_key,
)
from ledger import client
from ledger import schema as t
from ledger.entries import WitnessCosignature, decode_record, type_cbor
from ledger.store import LedgerStore, SignedCheckpoint

__all__ = ["COSIGN_WAIT", "MAX_BODY", "WITNESS_TIMEOUT", "WitnessReply", "add_checkpoint",
           "check_log", "pull", "request_cosignatures", "witness_log"]

log = logging.getLogger(__name__)
MAX_PROOF = 63
# The request: "old N", at most MAX_PROOF base64 hashes (45 bytes a line), then the note.
MAX_BODY = MAX_NOTE_BYTES + 4096
# A log's side: an append's answer waits at most COSIGN_WAIT for its cosignatures, well within
# an issuer's 15 s (ledger.client.TIMEOUT); each wait on a witness's socket is bounded too.
COSIGN_WAIT = 5.0
WITNESS_TIMEOUT = 5.0
# How far ahead of this log's clock a witness's cosignature time may be. tlog-cosignature bounds
# it only below 2^63; a clock off by hours is a misconfigured machine, but a day and more is a
# witness counting in milliseconds, and its time would stand on the public record as the
# moment the other city vouched for this tree.
MAX_COSIGNED_AHEAD = 24 * 3600
_busy: set[tuple[object, str]] = set()  # (database, witness) with a request in flight
_busy_lock = threading.Lock()


@dataclass(frozen=True)
class WitnessReply:
    """An answer to ``POST /add-checkpoint``: cosignature lines (200), the size we cosigned
    (409, ``text/x.tlog.size`` as tlog-witness says), or a refusal, which like every other
    refusal of the node's is JSON with a code and both languages (``error``)."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"
    error: PasaporteError | None = field(default=None, compare=False)


def _refuse(status: int, code: str, **detail: object) -> WitnessReply:
    error = PasaporteError(code, **detail)
    return WitnessReply(status, json.dumps(error.to_dict(), ensure_ascii=False) + "\n",
                        "application/json", error)


def _conflict(size: int) -> WitnessReply:
    return WitnessReply(409, f"{size}\n", "text/x.tlog.size")


def witness_log(store: LedgerStore, vkey: str, url: str | None = None) -> str:
    """Start (or keep) witnessing the log whose key is ``vkey``; returns its origin."""
    verifier = parse_verifier_key(vkey)
    if verifier.name == store.origin or verifier.public_key == store.verifier.public_key:
        raise UsageError("ledger_witness_is_self", name=verifier.name)  # cosigning itself
    with store.engine.begin() as conn:
        row = conn.execute(select(t.witnessed_logs.c.vkey)
                           .where(t.witnessed_logs.c.origin == verifier.name)).first()
        if row is None:
            # Not "trust on first use" again where this node's own public record shows it
            # cosigned that log before (a database restored from a mirror, which holds no
            # witness state): from that tree on, or a forked history would be vouched for.
            size, root = _given_on_record(store, conn, verifier.name) or (0, None)
            conn.execute(insert(t.witnessed_logs).values(
                origin=verifier.name, vkey=vkey, url=url, size=size, root=root, note=None,
                updated=int(time.time())))
        elif str(row[0]) != vkey:
            raise LedgerError("ledger_witness_key_changed", origin=verifier.name)
        elif url:
            conn.execute(update(t.witnessed_logs)
                         .where(t.witnessed_logs.c.origin == verifier.name).values(url=url))
    return verifier.name


_RECORD_PAGE = 10_000  # records read at a time, newest first, looking for a cosignature


def _given_on_record(store: LedgerStore, conn: Connection, origin: str
                     ) -> tuple[int, bytes] | None:
    """The newest cosignature this node's witness gave ``origin`` that this node's own log
    holds (``witness_cosignature`` records), as (size, root). Read from the end, a page at a
    time: the command that asks is run once, by hand, and such records are frequent."""
    if store.witness_verifier is None:
        return None
    own = store.witness_verifier.name
    marker = type_cbor(WitnessCosignature.TYPE)
    end = store.head(conn).size
    while end > 0:
        start = max(0, end - _RECORD_PAGE)
        leaves = conn.execute(select(t.entries.c.leaf)
                              .where(t.entries.c.seq >= start, t.entries.c.seq < end)
                              .order_by(t.entries.c.seq.desc())).scalars()
        for leaf in leaves:
            data = bytes(leaf)
            if marker not in data:
                continue
            try:
                entry = decode_record(data).entry
            except PasaporteError:  # a damaged record is audit's to name
                continue
            if (isinstance(entry, WitnessCosignature) and entry.origin == origin
                    and entry.witness == own):
                return entry.size, entry.root
        end = start
    return None


def check_log(url: str, vkey: str) -> None:
    """Before witnessing the log at ``url`` under ``vkey``: the checkpoint it serves must be
    that key's log's (its origin, signed with that key). Otherwise a mistyped URL or key would
    be remembered, pairing one log's key with another's address, and every later pull would
    answer "unknown log"."""
    verifier = parse_verifier_key(vkey)
    _, note, cp = client.checkpoint(url)
    if cp.origin != verifier.name:
        try:
            open_note(note, [verifier])
        except LedgerError:
            raise LedgerError("ledger_witness_wrong_log", url=url, origin=cp.origin,
                              want=verifier.name) from None
        # Signed by that very key: the log meant, whose key is named otherwise than its origin
        # (C2SP tlog-checkpoint: SHOULD match). A witness here knows a log by that one name.
        raise LedgerError("ledger_witness_key_name", url=url, origin=cp.origin,
                          name=verifier.name)
    open_note(note, [verifier])  # note_unverified: the log's name, but not that key


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    if len(body) > MAX_BODY:
        raise MalformedInput("ledger_body_too_large", limit=MAX_BODY)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedInput("note_malformed", reason="not UTF-8") from None
    head, sep, note_text = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines[0].startswith("old "):
        raise MalformedInput("ledger_bad_witness_request", reason="expected 'old N' and a proof")
    old = parse_size(lines[0][4:])
    if old is None:
        raise MalformedInput("ledger_bad_witness_request", reason="bad old size")
    if len(lines) - 1 > MAX_PROOF:
        raise MalformedInput("ledger_bad_witness_request", reason="too many proof lines")
    proof = []
    for line in lines[1:]:
        try:
            raw = base64.b64decode(line, validate=True)
        except ValueError:
            raise MalformedInput("ledger_bad_witness_request", reason="bad proof line") from None
        if len(raw) != 32:
            raise MalformedInput("ledger_bad_witness_request", reason="bad proof hash")
        proof.append(raw)
    return old, proof, note_text


def _state(conn: Connection, origin: str, size: int, root: bytes | None
           ) -> tuple[int, bytes | None]:
    """The newest tree of ``origin`` we cosigned: what ``witness_logs`` remembers, unless the
    cosignatures we gave (``witness_given``, each also on our public record) went further. A
    state set back (an edited row) must not let us vouch for a tree that contradicts one we
    already vouched for: we answer as C2SP tlog-witness says, with a conflict at this size."""
    w = t.witness_given.c
    given = conn.execute(select(w.size, w.root).where(w.origin == origin)
                         .order_by(w.size.desc(), w.id.desc()).limit(1)).first()
    if given is None or (root is not None and size > int(given[0])):
        return size, root
    newest = (int(given[0]), bytes(given[1]))
    if newest != (size, root):
        log.warning("witness state of %s (size %d) is behind the cosignatures it gave "
                    "(size %d): going by those", origin, size, newest[0])
    return newest


def _cosign(store: LedgerStore, note: Note, old: int, proof: list[bytes]) -> WitnessReply:
    """Check ``note`` against the stored state and cosign it (atomically)."""
    if store.witness is None:
        raise LedgerError("ledger_no_witness_key")
    cp = parse_checkpoint(note.text)
    with store.engine.connect().execution_options(ledger_write=True) as conn, conn.begin():
        query = select(t.witnessed_logs.c.vkey, t.witnessed_logs.c.size,
                       t.witnessed_logs.c.root, t.witnessed_logs.c.note
                       ).where(t.witnessed_logs.c.origin == cp.origin)
        if store.is_postgres:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return _refuse(404, "ledger_unknown_log", origin=cp.origin)
        try:
            open_note(note, [parse_verifier_key(str(row[0]))])
        except LedgerError:
            return _refuse(403, "ledger_witness_not_signed", origin=cp.origin)
        if cp.size == 0 and cp.root != merkle.EMPTY_ROOT:
            # RFC 9162 fixes the empty tree's root: any other is a tree that cannot exist, and
            # vouching for it would then refuse the log's honest empty checkpoint (409).
            return _refuse(422, "ledger_witness_bad_empty_tree")
        kept = (int(row[1]), bytes(row[2]) if row[2] is not None else None)
        have_size, have_root = _state(conn, cp.origin, *kept)
        cosigned = str(row[3] or "") if (have_size, have_root) == kept else ""
        if cp.size == have_size and have_root is not None and cp.root != have_root:
            # The log signed two trees of one size: a split view. Both signed notes are the
            # proof; keep them (the refusal still commits this transaction).
            log.warning("%s", PasaporteError("ledger_witness_saw_split_view", origin=cp.origin,
                                             size=cp.size).diagnostics())
            t.insert_new(conn, t.split_views, origin=cp.origin, size=cp.size, root=cp.root,
                         cosigned=cosigned, other=note.encode(), seen=int(time.time()))
            return _conflict(have_size)
        if old > cp.size:
            return _refuse(400, "ledger_witness_old_too_large", old=old, size=cp.size)
        if old != have_size:
            return _conflict(have_size)
        if old == cp.size or old == 0:
            # The tree we cosigned asked again (another root at this size is refused above), or
            # a first tree: either way the consistency proof is empty, and tlog-witness asks a
            # witness to refuse a proof that is not the proof (422) rather than ignore it.
            if proof:
                return _refuse(422, "ledger_witness_proof_not_empty", old=old, size=cp.size)
        else:
            assert have_root is not None
            try:
                merkle.verify_consistency(old, cp.size, proof, have_root, cp.root)
            except LedgerError as exc:
                # (said, not kept as evidence: the proof is the sender's, unsigned, and anyone
                # may send a genuine note with a wrong one)
                log.warning("%s", PasaporteError("ledger_witness_saw_inconsistent",
                                                 origin=cp.origin, old=old, size=cp.size,
                                                 reason=str(exc.detail.get("reason", exc.code))
                                                 ).diagnostics())
                return _refuse(422, "ledger_witness_inconsistent", old=old, size=cp.size)
        conn.execute(update(t.witnessed_logs).where(t.witnessed_logs.c.origin == cp.origin)
                     .values(size=cp.size, root=cp.root, note=note.encode(),
                             updated=int(time.time())))
        cosig = store.witness.sign(note.text)
        # Same transaction: a tree we vouch for is always one we will publish (once: asked
        # again for the same tree, we sign again but the record already says so).
        t.insert_new(conn, t.witness_given, origin=cp.origin, size=cp.size, root=cp.root,
                     witness=cosig.name, signature=cosig.key_id + cosig.signature)
    return WitnessReply(200, cosig.line)


def add_checkpoint(store: LedgerStore, body: bytes) -> WitnessReply:
    """The ``POST /add-checkpoint`` handler (bad requests raise ``MalformedInput``)."""
    old, proof, note_text = _parse_request(body)
    return _cosign(store, parse_note(note_text), old, proof)


def pull(store: LedgerStore, origin: str) -> tuple[Checkpoint, str]:
    """Fetch the log's checkpoint, check it against our state, cosign it; returns the line.

    Everything from the network is fetched before the write transaction (a slow log must not
    hold our database); if our state moves meanwhile, ``_cosign`` answers 409 as it would to
    the log itself."""
    with store.engine.connect() as conn:
        row = conn.execute(select(t.witnessed_logs.c.url, t.witnessed_logs.c.size,
                                  t.witnessed_logs.c.root)
                           .where(t.witnessed_logs.c.origin == origin)).first()
        if row is None or not row[0]:
            raise LedgerError("ledger_unknown_log", origin=origin)
        url = str(row[0])
        old = _state(conn, origin, int(row[1]), None if row[2] is None else bytes(row[2]))[0]
    _, note, cp = client.checkpoint(url)
    if cp.origin != origin:
        # the address now serves another log (check_log saw this one's): nothing to cosign
        raise LedgerError("ledger_witness_wrong_log", url=url, origin=cp.origin, want=origin)
    if cp.size < old:
        raise LedgerError("ledger_witness_rollback", origin=cp.origin, size=cp.size, have=old)
    proof = client.consistency_proof(url, old, cp.size) if 0 < old < cp.size else []
    reply = _cosign(store, note, old, proof)
    if reply.status != 200:
        raise _refusal(reply.status, reply.content_type, reply.body.encode(), reply.error)
    return cp, reply.body


def request_cosignatures(store: LedgerStore, signed: SignedCheckpoint | None = None, *,
                         wait: float = COSIGN_WAIT) -> int:
    """Ask every configured witness, all at once, to cosign ``signed`` (default: the newest
    checkpoint); returns how many did within ``wait`` seconds.

    An append's answer waits for this, and an issuer gives up on its append after 15 s
    (``ledger.client.TIMEOUT``) and sends it again: one witness that hangs must not make the
    log look down. So each witness is asked in a thread of its own, each wait on its socket is
    bounded (``WITNESS_TIMEOUT``), and whoever has not answered within ``wait`` is left to
    finish in the background (its cosignature is stored when it comes, and the next read of the
    checkpoint carries it). A witness still busy with an earlier checkpoint is not asked again
    meanwhile: once it has cosigned that one, the same thread asks it for the newest."""
    witnesses = store.witnesses()
    if not witnesses:
        return 0
    signed = signed or store.checkpoint()
    cosigned: list[str] = []
    threads = []
    for witness in witnesses:
        busy = (store.engine.url, witness[0])
        with _busy_lock:
            if busy in _busy:
                _warn(witness[0], PasaporteError("ledger_witness_busy"))
                continue
            _busy.add(busy)
        thread = threading.Thread(target=_ask_in_background, name=f"cosign {witness[0]}",
                                  args=(store, witness, signed, cosigned, busy), daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + wait
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return len(cosigned)


def _ask_in_background(store: LedgerStore, witness: tuple[str, str, str, int],
                       signed: SignedCheckpoint, cosigned: list[str],
                       busy: tuple[object, str]) -> None:
    try:
        # Checkpoints signed while this witness was busy were not sent to it: after a burst of
        # appends the newest would otherwise wait, uncosigned, for an append that may not come
        # (and mirrors and counters refuse a checkpoint without the other city's cosignature).
        # Asked until it has the newest or fails (then the next append asks again).
        while _ask(store, witness, signed):
            if witness[0] not in cosigned:  # counted once, however many it cosigned
                cosigned.append(witness[0])
            newest = store.checkpoint()
            if newest.checkpoint.size <= signed.checkpoint.size:
                break
            witness = (*witness[:3], signed.checkpoint.size)
            signed = newest
    except PasaporteError as exc:  # typed (the database refused to store it): said as such
        _warn(witness[0], exc)
    except Exception:  # a thread's error would otherwise only reach stderr, unlogged
        log.exception("witness %s: cosigning failed", witness[0])
    finally:
        with _busy_lock:
            _busy.discard(busy)


def _media_type(ctype: str) -> str:
    # RFC 9110 §8.3.1: the type is case-insensitive and may carry parameters
    return ctype.partition(";")[0].strip().lower()


# What tlog-witness makes each refusal mean, for a witness that says it in words we cannot
# show in both languages (another implementation's English, a proxy's page).
_MEANING = {400: "ledger_witness_said_400", 403: "ledger_witness_said_403",
            404: "ledger_witness_said_404", 409: "ledger_witness_said_409",
            422: "ledger_witness_said_422"}


def _refusal(status: int, ctype: str, body: bytes,
             error: PasaporteError | None = None) -> LedgerError:
    """A witness's refusal as the operator reads it: Spanish in the Spanish half, English in
    the English one. Our own witness says why in both (its JSON); another's reason is its
    status's meaning in tlog-witness, its own words shown in the English half only."""
    halves = (error.message["es"], error.message["en"]) if error is not None else None
    if halves is None and _media_type(ctype) == "application/json":
        halves = client.remote_message(body)
    if halves is None:
        said = client.shown(body.decode("utf-8", "replace"))
        meaning = PasaporteError(_MEANING.get(status, "ledger_witness_said_other"), said=said)
        halves = meaning.message["es"], meaning.message["en"]
    return LedgerError("ledger_witness_refused", status=status, reason_es=halves[0],
                       reason_en=halves[1])


def _warn(witness: str, error: PasaporteError) -> None:
    """A witness that did not cosign, in both languages with its code: at the command line
    (``append``, ``checkpoint --cosign``) an administrator reads it, and a node's log too."""
    log.warning("testigo / witness %s: %s", witness, error.diagnostics())


def _ask(store: LedgerStore, witness: tuple[str, str, str, int],
         signed: SignedCheckpoint) -> bool:
    """Send ``signed`` to one witness (with a consistency proof from the size it last
    cosigned, learning that size from a 409 once) and keep its cosignature if it verifies."""
    name, vkey, url, known = witness
    cp = signed.checkpoint
    base = parse_note(signed.note)
    own = Note(base.text, tuple(s for s in base.signatures if s.name == store.origin))
    verifier = parse_verifier_key(vkey)
    old = known if known <= cp.size else 0
    said_before: int | None = None
    # A size named again after it was sent as ``old`` is a conflict; a new one is progress
    # (another appender's checkpoint reached the witness in between: a busy log with several
    # appenders, which was alarmed as a split view)
    for _attempt in range(4):
        try:
            proof = store.consistency_proof(old, cp.size) if 0 < old < cp.size else []
            body = (f"old {old}\n" + "".join(base64.b64encode(p).decode() + "\n"
                                              for p in proof) + "\n" + own.encode())
            status, ctype, reply = client.post(f"{url}/add-checkpoint", body.encode(),
                                               {"Content-Type": "text/plain"},
                                               timeout=WITNESS_TIMEOUT)
        except PasaporteError as exc:
            _warn(name, exc)
            return False
        if status == 409 and _media_type(ctype) == "text/x.tlog.size":
            said = parse_size(reply.decode("ascii", "replace").removesuffix("\n"))
            if said is None:
                _warn(name, _refusal(status, ctype, reply))
                return False
            if said > cp.size:
                if store.size() >= said:
                    # A newer checkpoint of this log already reached it (another process
                    # serving the same database, a burst of appends): nothing is wrong.
                    return False
                # kept: the log appends nothing more until it holds as many records again
                store.witness_ahead(name, vkey, said)
                _warn(name, PasaporteError("ledger_witness_ahead", size=said, ours=cp.size))
                return False
            if said < known and said < (held := store.cosigned_by(verifier)):
                # its own database went back: it forgot cosignatures it gave, and no longer
                # guards those sizes against a fork; the log can tell, so it says so. (Below a
                # size only said for it, at an address since corrected, it forgot nothing.)
                _warn(name, PasaporteError("ledger_witness_went_back", size=said, known=held))
            if said == said_before:
                break
            said_before = old = said
            continue
        if status != 200:
            if status == 422 and old > 0:
                # It cosigned a tree of ``old`` records and refuses our proof from it: ours at
                # that size is another (a database restored from an old copy that appended
                # since, before any witness was asked). Said as the fork it likely is.
                _warn(name, LedgerError("ledger_witness_fork", witness=name, size=old,
                                        ours=cp.size))
            _warn(name, _refusal(status, ctype, reply))
            return False
        try:
            sigs = [s for s in parse_signature_lines(reply.decode())
                    if s.name == verifier.name and s.key_id == verifier.key_id
                    and verifier.verify(base.text, s.signature)]
        except (PasaporteError, UnicodeDecodeError):
            sigs = []
        if not sigs:
            # tlog-witness: the client ignores cosignatures from keys it does not know, and a
            # witness whose every line is one of those has not cosigned (a key mistyped with
            # "witnesses add", or a witness that rotated its key): say so, or nobody will know
            _warn(name, LedgerError("ledger_witness_no_cosignature", key=vkey))
            return False
        ahead = max(s.timestamp or 0 for s in sigs) - int(time.time())
        if ahead > MAX_COSIGNED_AHEAD:
            _warn(name, LedgerError("ledger_witness_time_ahead", ahead=ahead))
            return False
        store.add_cosignatures(cp.size, sigs, witness=name)
        return True
    else:
        return False  # still moving under other appenders: a later checkpoint will reach it
    # A conflict again with the size it named: it holds another tree of that size (a split
    # view, this database restored from an old copy), never to be cosigned on its own.
    _warn(name, LedgerError("ledger_witness_conflict", size=old, ours=cp.size))
    return False
