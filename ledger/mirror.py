"""Mirroring another node's log: pull, check every link, recompute the root, resume.

Each run fetches the remote checkpoint (which must carry the log's signature and, when witness
keys are given, a cosignature from one of them), checks it is consistent with what the mirror
already holds, copies the missing records page by page (each page committed, so an interrupted
run resumes where it stopped, and each record's header must continue the chain), and finally
requires the recomputed root to equal the checkpoint's. On a mismatch, or junk from the node,
the run's records are dropped again and the run fails; records an earlier run left unverified
are kept only while the node's consistency proof shows them to be in the signed tree.

A checkpoint the log signed that contradicts what the mirror verified (the log went back to
another history, or rewrote it) is refused whether or not a witness cosigned it, and kept in
``witness_split_views`` with the verified note it contradicts: the proof of the log's
misbehaviour, which ``ledger status`` reports as critical.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from credential import merkle
from credential.errors import LedgerError, PasaporteError
from credential.note import (
    Checkpoint,
    Note,
    Verifier,
    open_note,
    parse_checkpoint,
    parse_note,
    verify_checkpoint,
)
from ledger import client
from ledger import schema as t
from ledger.http import MAX_PAGE
from ledger.store import LedgerStore, migrate

__all__ = ["mirror"]


def mirror(store: LedgerStore, url: str, witnesses: Sequence[Verifier] = (),
           page: int = MAX_PAGE, limit: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> Checkpoint:
    """Bring ``store`` up to ``url``'s checkpoint; ``limit`` stops early (to test resuming).
    ``progress(copied, to_copy)`` is called after each committed page (a first copy of a
    million-record log takes minutes)."""
    url = url.rstrip("/")
    # A mirror writes without keys, so no open brought an older schema up to date (a writer's
    # does): this run does, before writing (a no-op at the newest revision).
    migrate(store.engine)
    note_text = _checkpoint_text(url, store.verifier, witnesses)
    _check_origin(store.verifier, url, note_text)
    # The log's own signature first, without the cosignature: a tree the log signed that
    # contradicts what this mirror verified is the log going back or rewriting its history,
    # cosigned or not (its witness refuses to cosign exactly such a tree), and must be named
    # as that, not as a cosignature missing.
    cp = verify_checkpoint(note_text, store.verifier, witnesses, quorum=0)
    held = store.head().size
    verified = store.verified_size()
    tail_holds = held == 0 or _tail_holds(store, url, held, cp)
    # the verified prefix itself not in the signed tree (held == verified: no need to ask again)
    if not tail_holds and verified > 0 and (
            held == verified or not _tail_holds(store, url, verified, cp)):
        rewritten = _contradicts(store, cp, verified) or (
            cp.size > verified and _proven_rewrite(store, url, cp, verified))
        if rewritten:
            _keep_evidence(store, cp, _vouched(note_text, store.verifier, witnesses), verified)
        raise _diverged(cp, verified, rewritten)
    if witnesses:
        # the verifier's own policy for checkpoints (``credential.note.verify_checkpoint``):
        # nothing is copied on the log's word alone
        verify_checkpoint(note_text, store.verifier, witnesses, quorum=1)
    if not tail_holds:
        # Records an earlier run copied but never saw verified (it was cut short, or a node fed
        # it junk) that the log's signed tree does not contain: fetch them again rather than
        # stay stuck behind them.
        store.truncate(verified)
        held = verified
    size = held
    fetched = 0
    try:
        while size < cp.size:
            if limit is not None and fetched >= limit:
                return cp
            end = min(size + page, cp.size)
            leaves = client.entries(url, size, end)
            if not leaves:
                raise LedgerError("ledger_remote_error", url=url, status="empty page")
            size = store.append_records(leaves)
            fetched += len(leaves)
            if progress is not None:
                progress(size - held, cp.size - held)
    except PasaporteError as exc:
        # Junk from the node (a malformed page, a record that does not chain): this run's
        # records are dropped with it. A node out of reach, or answering with an HTTP error
        # status (restarting, overloaded), keeps them: the next run resumes from there.
        unavailable = exc.code == "ledger_unreachable" or (
            exc.code == "ledger_remote_error" and isinstance(exc.detail.get("status"), int))
        if not unavailable:
            store.truncate(held)
        raise
    if store.root(cp.size) != cp.root:
        store.truncate(held)
        raise LedgerError("ledger_mirror_mismatch", size=cp.size)
    store.store_checkpoint(_vouched(note_text, store.verifier, witnesses))
    return cp


# A log's newest checkpoint waits for its witnesses' cosignatures for a few seconds after an
# append (``ledger.witness.COSIGN_WAIT``): a mirror run that fetched it then failed, "missing
# cosignature", at random on a busy log. Fetched again this many times, this far apart.
_COSIGNED_TRIES, _COSIGNED_PAUSE_S = 4, 2.0


def _checkpoint_text(url: str, log: Verifier, witnesses: Sequence[Verifier]) -> str:
    """The node's newest checkpoint, fetched again while it still lacks the cosignature
    this mirror requires (whatever else is wrong with it is for ``mirror`` to say)."""
    note_text = client.get_text(f"{url}/checkpoint")
    for _ in range(_COSIGNED_TRIES - 1):
        if not witnesses or not _awaits_cosignature(note_text, log, witnesses):
            break
        time.sleep(_COSIGNED_PAUSE_S)
        note_text = client.get_text(f"{url}/checkpoint")
    return note_text


def _awaits_cosignature(note_text: str, log: Verifier, witnesses: Sequence[Verifier]) -> bool:
    try:
        verify_checkpoint(note_text, log, witnesses, quorum=1)
    except LedgerError as exc:
        return exc.code == "note_missing_cosignature"
    return False


def _vouched(note_text: str, log: Verifier, witnesses: Sequence[Verifier]) -> str:
    """The note with only the signatures this mirror verified: the log's and its witnesses'.
    A line from a key it does not know may be anything (the node's own junk, a stranger's
    name), and what a mirror serves it vouches for."""
    note, ok = open_note(note_text, [log, *witnesses])
    known = {(v.name, v.key_id) for v in ok}
    return Note(note.text, tuple(s for s in note.signatures
                                 if (s.name, s.key_id) in known)).encode()


def _check_origin(log: Verifier, url: str, note_text: str) -> None:
    """The checkpoint must name the log this mirror copies. A ``--from`` pointing at another
    log's node would otherwise be refused only as "no trusted key signed the note", which
    reads as this log's key changed or its node compromised. A note that does not even parse
    is left to ``verify_checkpoint`` to name."""
    try:
        note = parse_note(note_text)
        origin = parse_checkpoint(note.text).origin
    except PasaporteError:
        return
    if origin == log.name:
        return
    try:
        open_note(note, [log])
    except LedgerError:
        raise LedgerError("ledger_mirror_wrong_log", url=client.public_url(url),
                          origin=client.shown(origin), want=log.name) from None
    # Signed by this log's key under another name: ``verify_checkpoint`` says so
    # (``note_wrong_origin``) rather than call it another log.


def _contradicts(store: LedgerStore, cp: Checkpoint, verified: int) -> bool:
    """Whether ``cp`` (not consistent with the ``verified`` records) shows, by the two signed
    notes alone, that the log signed two histories: another root at the verified size, or at
    a smaller size another root than the mirror's own there. A smaller tree with the mirror's
    root is an older state (a node restored from a backup, a stale cache, a note replayed):
    refused as going back, but not kept as evidence against the log."""
    if cp.size > verified:
        return False  # (``_proven_rewrite``)
    return store.root(cp.size) != cp.root


def _proven_rewrite(store: LedgerStore, url: str, cp: Checkpoint, verified: int) -> bool:
    """Whether the larger tree ``cp`` holds, at the last verified index, another record than
    the mirror's, shown by an inclusion proof in its signed root. A consistency proof that
    failed proves nothing by itself: it came from whatever answered (a proxy, a cache), and
    anyone on the way could spoil it. A record proven in the signed tree cannot be forged,
    and records chain: any record rewritten before it changes that one too."""
    index = verified - 1
    leaves = client.entries(url, index, index + 1)
    if len(leaves) != 1:
        return False
    proof = client.inclusion_proof(url, index, cp.size)
    try:
        merkle.verify_inclusion(index, cp.size, merkle.leaf_hash(leaves[0]), proof, cp.root)
    except LedgerError as exc:
        if not exc.code.startswith("merkle_"):
            raise
        return False
    return leaves[0] != store.entries(index, index + 1)[0][1]


def _keep_evidence(store: LedgerStore, cp: Checkpoint, note: str, verified: int) -> None:
    """Keep the log's signed note that contradicts the verified checkpoint, with that one: the
    only proof of the log's misbehaviour once its node stops serving it. The witness's table
    of split views holds exactly such pairs (a mirror witnesses nothing, so on a mirror every
    row is this); one row per contradicting tree, however many runs see it."""
    kept = store.checkpoint(verified).note
    with store.engine.begin() as conn:
        t.insert_new(conn, t.split_views, origin=cp.origin, size=cp.size, root=cp.root,
                     cosigned=kept, other=note, seen=int(time.time()))


def _diverged(cp: Checkpoint, held: int, proven: bool) -> LedgerError:
    """What a checkpoint verified is never dropped: if *that* disagrees with the node's signed
    tree, the log rolled back or rewrote its history, and the copy is the evidence. A larger
    tree not ``proven`` another history is named as what failed: the node's proof."""
    if cp.size < held:
        return LedgerError("ledger_witness_rollback", origin=cp.origin, size=cp.size, have=held)
    if cp.size > held and not proven:
        return LedgerError("ledger_mirror_proof_failed", size=cp.size, held=held)
    return LedgerError("ledger_history_rewritten", size=cp.size, held=held)


def _tail_holds(store: LedgerStore, url: str, held: int, cp: Checkpoint) -> bool:
    """Whether the ``held`` records (beyond the last verified checkpoint) are a prefix of the
    tree ``cp`` signs. The node's consistency proof decides; a node out of reach raises."""
    if held > cp.size:
        return False
    if held == cp.size:
        return store.root(held) == cp.root
    proof = client.consistency_proof(url, held, cp.size)
    try:
        merkle.verify_consistency(held, cp.size, proof, store.root(held), cp.root)
    except LedgerError as exc:
        if not exc.code.startswith("merkle_"):
            raise
        return False
    return True
