"""Mirroring another node's log: pull, check every link, recompute the root, resume.

Each run fetches the remote checkpoint (which must carry the log's signature and, when witness
keys are given, a cosignature from one of them), checks it is consistent with what the mirror
already holds, copies the missing records page by page (each page committed, so an interrupted
run resumes where it stopped, and each record's header must continue the chain), and finally
requires the recomputed root to equal the checkpoint's. On a mismatch, or junk from the node,
the run's records are dropped again and the run fails; records an earlier run left unverified
are kept only while the node's consistency proof shows them to be in the signed tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from credential import merkle
from credential.errors import LedgerError, PasaporteError
from credential.note import Checkpoint, Note, Verifier, open_note, verify_checkpoint
from ledger import client
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
    note_text = client.get_text(f"{url}/checkpoint")
    # the log's signature and, when witnesses are named, one of their cosignatures: the
    # verifier's own policy for checkpoints (``credential.note.verify_checkpoint``)
    cp = verify_checkpoint(note_text, store.verifier, witnesses, quorum=1 if witnesses else 0)
    held = store.head().size
    if held > 0 and not _tail_holds(store, url, held, cp):
        verified = store.verified_size()
        if held == verified:
            # the verified prefix itself is not in the signed tree (no need to ask again)
            raise _diverged(cp, held)
        if held > verified:
            # Records an earlier run copied but never saw verified (it was cut short, or a
            # node fed it junk) that the log's signed tree does not contain: fetch them again
            # rather than stay stuck behind them.
            store.truncate(verified)
            held = verified
        if held > 0 and not _tail_holds(store, url, held, cp):
            raise _diverged(cp, held)
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


def _vouched(note_text: str, log: Verifier, witnesses: Sequence[Verifier]) -> str:
    """The note with only the signatures this mirror verified: the log's and its witnesses'.
    A line from a key it does not know may be anything (the node's own junk, a stranger's
    name), and what a mirror serves it vouches for."""
    note, ok = open_note(note_text, [log, *witnesses])
    known = {(v.name, v.key_id) for v in ok}
    return Note(note.text, tuple(s for s in note.signatures
                                 if (s.name, s.key_id) in known)).encode()


def _diverged(cp: Checkpoint, held: int) -> LedgerError:
    """What a checkpoint verified is never dropped: if *that* disagrees with the node's signed
    tree, the log rolled back or rewrote its history, and the copy is the evidence."""
    if cp.size < held:
        return LedgerError("ledger_witness_rollback", origin=cp.origin, size=cp.size, have=held)
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
