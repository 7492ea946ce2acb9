"""Mirroring another node's log: pull, check every link, recompute the root, resume.

Each run fetches the remote checkpoint (which must carry the log's signature and, when witness
keys are given, a cosignature from one of them), checks it is consistent with what the mirror
already holds, copies the missing records page by page (each page committed, so an interrupted
run resumes where it stopped, and each record's header must continue the chain), and finally
requires the recomputed root to equal the checkpoint's. On a mismatch the unverified records are
dropped again and the run fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from credential import merkle
from credential.errors import LedgerError
from credential.note import Checkpoint, Verifier, verify_checkpoint
from ledger import client
from ledger.http import MAX_PAGE
from ledger.store import LedgerStore

__all__ = ["mirror"]


def mirror(store: LedgerStore, url: str, witnesses: Sequence[Verifier] = (),
           page: int = MAX_PAGE, limit: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> Checkpoint:
    """Bring ``store`` up to ``url``'s checkpoint; ``limit`` stops early (to test resuming).
    ``progress(copied, to_copy)`` is called after each committed page (a first copy of a
    million-record log takes minutes)."""
    url = url.rstrip("/")
    note_text = client.get_text(f"{url}/checkpoint")
    # the log's signature and, when witnesses are named, one of their cosignatures: the
    # verifier's own policy for checkpoints (``credential.note.verify_checkpoint``)
    cp = verify_checkpoint(note_text, store.verifier, witnesses, quorum=1 if witnesses else 0)
    head = store.head()
    held = head.size
    if cp.size < held:
        raise LedgerError("ledger_witness_rollback", origin=cp.origin, size=cp.size, have=held)
    if held == cp.size:
        if head.root != cp.root:
            raise LedgerError("ledger_mirror_mismatch", size=held)
    elif held > 0:
        proof = client.consistency_proof(url, held, cp.size)
        merkle.verify_consistency(held, cp.size, proof, head.root, cp.root)
    size = held
    fetched = 0
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
    if store.root(cp.size) != cp.root:
        store.truncate(held)
        raise LedgerError("ledger_mirror_mismatch", size=cp.size)
    store.store_checkpoint(note_text)
    return cp
