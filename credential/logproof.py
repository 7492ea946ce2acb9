"""Proof that a trust bundle is on the public ledger: what a counter checks, offline, before it
trusts a bundle's office keys.

A city signs its bundles with its root key, so a counter already knows a bundle is the city's.
What the root signature cannot show is that the bundle is the one *everyone* sees: a city (or
whoever holds its root key) could hand one counter a bundle with an extra office key and never
publish it. Certificate Transparency answers this for TLS with a proof of inclusion in a public
log; the passport does the same. The ledger node writes a *bundle proof* (``pasaporte ledger
prove-bundle``), a small JSON file that travels with the bundle:

    {"type": "pasaporte-bundle-proof/1",
     "index": 41,                      the record's position in the log
     "record": "<base64>",             the exact record bytes hashed into the tree
     "proof": ["<base64>", ...],       RFC 9162 inclusion proof of that record
     "checkpoint": "<signed note>"}    C2SP checkpoint: the log's signature and cosignatures

A counter configured with the ledgers' verifier keys and the witnesses' keys accepts a bundle only
if its proof verifies: the checkpoint is signed by the log its origin names and cosigned by a
witness (the other city: a log cannot show a counter a history its witness has not checked), the
record is included under that checkpoint's root at its index, and the record is a
``bundle_published`` entry whose digest is the SHA-256 of the bundle's exact bytes. Only the
record's outer shape is read here (the ledger's own entry types live in ``ledger``, which the core
does not depend on). Nothing is fetched: the proof is in the file.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from credential import cbor, merkle
from credential.bundle import claimed_edition
from credential.errors import MalformedInput, PasaporteError, UsageError
from credential.note import (
    Checkpoint,
    Verifier,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    verify_checkpoint,
)
from credential.text import escaped

__all__ = ["PROOF_TYPE", "BundleProof", "name_host", "parse_bundle_proof", "read_trust_files",
           "require_logged", "require_logged_with_keys", "verify_bundle_proof"]

PROOF_TYPE = "pasaporte-bundle-proof/1"
# A checkpoint (its cosignatures may be large: note.MAX_NOTE_BYTES), a record (base64 of up to
# 64 KB) and about 64 hashes; nearly always a few KB.
MAX_PROOF = 256 * 1024
MAX_HASHES = 64  # an inclusion proof in a log of 2^64 records


@dataclass(frozen=True)
class BundleProof:
    index: int
    record: bytes
    proof: tuple[bytes, ...]
    checkpoint: str

    def to_json(self) -> bytes:
        doc = {"type": PROOF_TYPE, "index": self.index,
               "record": base64.b64encode(self.record).decode(),
               "proof": [base64.b64encode(h).decode() for h in self.proof],
               "checkpoint": self.checkpoint}
        return (json.dumps(doc, indent=2) + "\n").encode()

    def digest(self) -> bytes | None:
        """The bundle digest the record names, if the record is a ``bundle_published`` one."""
        try:
            return _published_digest(cbor.loads(self.record))
        except MalformedInput:
            return None


def _published_digest(record: Any) -> bytes | None:
    """The ``digest`` of a decoded ``[seq, prev, time, "bundle_published", {…}]`` record."""
    if not (isinstance(record, list) and len(record) == 5 and record[3] == "bundle_published"
            and isinstance(record[4], dict)):
        return None
    digest = record[4].get("digest")
    return digest if isinstance(digest, bytes) and len(digest) == 32 else None


def _bad(reason: str) -> MalformedInput:
    return MalformedInput("bundle_proof_invalid", reason=reason)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise _bad(f"{what}: not base64")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character (a plain ValueError)
        raise _bad(f"{what}: not base64") from None


def parse_bundle_proof(data: bytes) -> BundleProof:
    """A bundle proof file, bounded and shape-checked (``MalformedInput`` otherwise)."""
    if len(data) > MAX_PROOF:
        raise _bad("file too large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != PROOF_TYPE:
        raise _bad("not a bundle proof")
    index, hashes, note = doc.get("index"), doc.get("proof"), doc.get("checkpoint")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise _bad("index: not a non-negative integer")
    if not isinstance(hashes, list) or len(hashes) > MAX_HASHES:
        raise _bad("proof: not a list of hashes")
    if not isinstance(note, str):
        raise _bad("checkpoint: not text")
    proof = tuple(_b64(h, "proof") for h in hashes)
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise _bad("proof: not a list of hashes")
    return BundleProof(index, _b64(doc.get("record"), "record"), proof, note)


def name_host(name: str) -> str:
    """The host a log or witness name begins with (``ledger.calexico.example/log`` →
    ``ledger.calexico.example``), as C2SP origins and key names are written."""
    return name.split("/", 1)[0].casefold()


def verify_bundle_proof(signed_bundle: bytes, proof: BundleProof, logs: Sequence[Verifier],
                        witnesses: Sequence[Verifier], quorum: int = 1) -> Checkpoint:
    """That ``signed_bundle`` is on the log ``proof`` names, under a checkpoint signed by that log
    (one of ``logs``) and cosigned by ``quorum`` of ``witnesses``. Returns the checkpoint."""
    try:
        origin = parse_checkpoint(parse_note(proof.checkpoint).text).origin
    except PasaporteError as exc:
        raise _bad(f"checkpoint: {exc.message['en']}") from None
    log = next((v for v in logs if v.name == origin), None)
    if log is None:
        raise UsageError("bundle_log_unknown", origin=origin)
    # A counter that trusts both cities' bundles is given both cities' witness keys; a city's
    # own witness (named under its log's host, as ``ledger init`` names it: ORIGIN/witness)
    # must not count for its own log, or a city could fork its log, cosign the fork itself and
    # hand a counter a bundle that only the fork ever published.
    host = name_host(log.name)
    others = [w for w in witnesses if name_host(w.name) != host]
    try:
        checkpoint = verify_checkpoint(proof.checkpoint, log, others, quorum=quorum)
    except PasaporteError as exc:
        own = [w.name for w in witnesses if name_host(w.name) == host]
        if exc.code != "note_missing_cosignature" or not own or len(others) >= quorum:
            raise
        # the counter was given that log's own witness key (handed out beside its log key):
        # said as that, not "cosignatures missing", which sent the clerk for a new proof
        raise UsageError("bundle_witness_is_own", name=own[0], origin=origin,
                         host=host) from None
    if proof.index >= checkpoint.size:
        raise _bad("index beyond the checkpoint")
    try:
        merkle.verify_inclusion(proof.index, checkpoint.size, merkle.leaf_hash(proof.record),
                                list(proof.proof), checkpoint.root)
    except PasaporteError:
        raise _bad("record not included under the checkpoint") from None
    record = cbor.loads(proof.record)  # included, so the log's own canonical bytes
    if not (isinstance(record, list) and record and record[0] == proof.index):
        raise _bad("record is not at its index")
    if _published_digest(record) != hashlib.sha256(signed_bundle).digest():
        raise _bad("record is not this bundle's publication")
    # The digest alone let one city's office publish another city's bundle on its own log
    # under its own name ("Mexicali v99" holding Calexico's digest): a bound token may write
    # only its own city's records, so the record must name the bundle's city and version.
    named = (record[4].get("city"), record[4].get("version"))
    edition = claimed_edition(signed_bundle)
    if edition is not None and named != edition:
        raise _bad(f"record names {escaped(str(named[0])[:64])} v{named[1]}, "
                   f"the bundle is {escaped(edition[0][:64])} v{edition[1]}")
    return checkpoint


def require_logged(bundles: Sequence[bytes], proofs: Sequence[bytes], logs: Sequence[Verifier],
                   witnesses: Sequence[Verifier], quorum: int = 1,
                   names: Sequence[str] = ()) -> list[Checkpoint]:
    """Every bundle with a proof that verifies (matched by the digest its record names), or the
    first bundle that has none raises ``bundle_not_logged``, naming it by its file (``names``,
    as given) or else by its place among ``bundles``."""
    parsed = [parse_bundle_proof(p) for p in proofs]
    by_digest = {p.digest(): p for p in parsed}
    out = []
    for number, signed in enumerate(bundles, start=1):
        proof = by_digest.get(hashlib.sha256(signed).digest())
        if proof is None:
            name = names[number - 1] if number <= len(names) else None
            raise UsageError("bundle_not_logged", proofs=len(proofs),
                             bundle_es=f"n.º {number}" if name is None else f"«{name}»",
                             bundle_en=f"no. {number}" if name is None else f"“{name}”")
        out.append(verify_bundle_proof(signed, proof, logs, witnesses, quorum))
    return out


def require_logged_with_keys(bundles: Sequence[bytes], proofs: Sequence[bytes],
                             log_keys: Sequence[str], witness_keys: Sequence[str],
                             names: Sequence[str] = ()) -> None:
    """``require_logged`` as a counter or a wallet is configured: C2SP verifier keys as text
    (``name+keyid+base64``), and both kinds required, the ledger's signature *and* a witness's
    cosignature."""
    if not log_keys or not witness_keys:
        raise UsageError("usage_error",
                         reason_es="las pruebas de publicación piden --log-key y --witness-key "
                                   "(la firma del registro y la cosignatura de la otra ciudad)",
                         reason_en="proofs of publication need --log-key and --witness-key (the "
                                   "ledger's signature and the other city's cosignature)")
    require_logged(bundles, proofs, [parse_verifier_key(k) for k in log_keys],
                   [parse_verifier_key(k) for k in witness_keys], names=names)


def read_trust_files(bundles: Sequence[str], roots: Sequence[str], proofs: Sequence[str] = (),
                     log_keys: Sequence[str] = (), witness_keys: Sequence[str] = ()
                     ) -> tuple[list[bytes], list[bytes]]:
    """A trust setup given as files, as a counter (``verify``) or a wallet (``wallet trust``)
    is: the bundles' and the roots' bytes, each file read once and bounded; with any of
    ``proofs``, ``log_keys``, ``witness_keys`` every bundle must be proven on a named ledger
    (``require_logged_with_keys``). The bundles themselves are checked by whoever parses them."""
    from credential.bundle import MAX_BUNDLE, MAX_ROOT
    from credential.home import read_bounded

    signed = [read_bounded(p, MAX_BUNDLE) for p in bundles]
    if proofs or log_keys or witness_keys:
        require_logged_with_keys(signed, [read_bounded(p, MAX_PROOF) for p in proofs],
                                 log_keys, witness_keys, names=bundles)
    return signed, [read_bounded(p, MAX_ROOT) for p in roots]
