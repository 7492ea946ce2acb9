"""A trust bundle's proof of publication, written by a ledger node (or any mirror of one), or
put together from a node's public HTTP API, for counters to check offline: the
``bundle_published`` record, its inclusion proof and a cosigned checkpoint (the format and the
check are in ``credential.logproof``). Nothing here is trusted: the counter checks it all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy import select

from credential import merkle
from credential.errors import LedgerError, PasaporteError
from credential.logproof import BundleProof
from ledger import client
from ledger import schema as t
from ledger.crosscheck import read_public_record
from ledger.entries import BundlePublished, decode_record, type_cbor
from ledger.http import MAX_PAGE
from ledger.store import LedgerStore

__all__ = ["prove_bundle", "prove_bundle_remote", "uncosigned_warning"]


def prove_bundle(store: LedgerStore, signed_bundle: bytes,
                 progress: Callable[[int, int], None] | None = None
                 ) -> tuple[BundleProof, int, bool]:
    """The proof for ``signed_bundle`` under the newest checkpoint that covers its record and
    carries a witness's cosignature, that checkpoint's size, and whether it is cosigned (if none
    is, the newest checkpoint is used, and counters that require a cosignature will refuse the
    proof until the witness has cosigned a newer one)."""
    digest = hashlib.sha256(signed_bundle).digest()
    index = read_public_record(store, progress).published.get(digest)
    if index is None:
        raise LedgerError("ledger_bundle_not_found", digest=digest.hex()[:16])
    with store.engine.connect() as conn:
        cosigned = conn.execute(select(t.cosignatures.c.size)
                                .where(t.cosignatures.c.size > index)
                                .order_by(t.cosignatures.c.size.desc()).limit(1)).scalar()
    signed = store.checkpoint(None if cosigned is None else int(cosigned))
    size = signed.checkpoint.size
    if size <= index:  # records appended after the newest checkpoint: none covers this one yet
        raise LedgerError("ledger_no_checkpoint")
    ((_, leaf),) = store.entries(index, index + 1)
    proof = BundleProof(index, leaf, tuple(store.inclusion_proof(index, size)), signed.note)
    return proof, size, cosigned is not None


def prove_bundle_remote(url: str, signed_bundle: bytes,
                        progress: Callable[[int, int], None] | None = None
                        ) -> tuple[BundleProof, int, bool]:
    """The same proof from a node's public API (``GET /checkpoint``, ``/entries`` and
    ``/proof/inclusion``), under the checkpoint it serves now. The record is looked for from the
    newest page back: a bundle is normally among the latest records."""
    url = url.rstrip("/")
    note_text, note, cp = client.checkpoint(url)
    digest = hashlib.sha256(signed_bundle).digest()
    marker = type_cbor(BundlePublished.TYPE)
    found: tuple[int, bytes] | None = None
    end = cp.size
    while end > 0 and found is None:
        start = max(0, end - MAX_PAGE)
        for index, leaf in enumerate(client.all_entries(url, start, end), start=start):
            if digest in leaf and marker in leaf:
                entry = decode_record(leaf).entry
                if isinstance(entry, BundlePublished) and entry.digest == digest:
                    found = (index, leaf)
        if progress is not None:
            progress(cp.size - start, cp.size)
        end = start
    if found is None:
        raise LedgerError("ledger_bundle_not_found", digest=digest.hex()[:16])
    index, leaf = found
    hashes = tuple(client.inclusion_proof(url, index, cp.size))
    try:
        # A node that answers with a proof of another tree (or junk) would have us hand
        # counters a file that every one of them refuses: check it here, where it can be asked
        # again. (The signatures are the counters' to check, with the keys they trust.)
        merkle.verify_inclusion(index, cp.size, merkle.leaf_hash(leaf), hashes, cp.root)
    except LedgerError as exc:
        if not exc.code.startswith("merkle_"):
            raise
        raise LedgerError("ledger_remote_error", url=url, status="bad proof") from None
    return BundleProof(index, leaf, hashes, note_text), cp.size, len(note.signatures) > 1


def uncosigned_warning() -> str:
    """What to tell whoever wrote a proof whose checkpoint no witness has cosigned yet."""
    return PasaporteError("ledger_proof_uncosigned").diagnostics()
