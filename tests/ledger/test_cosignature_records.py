"""Witness cosignatures go on the public record with the next batch, and ``audit`` checks them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from credential.errors import MalformedInput
from credential.note import (
    COSIGNATURE_V1,
    MAX_KEY_NAME,
    Checkpoint,
    Note,
    Signer,
    generate_signer,
    open_note,
    parse_note,
)
from ledger import schema as t
from ledger.audit import audit
from ledger.entries import WitnessCosignature, decode_record
from ledger.store import LedgerStore
from ledger.witness import add_checkpoint, witness_log
from tests.ledger.conftest import PASSPHRASE, run_cli
from tests.ledger.helpers import commitment

WITNESS = "ledger.mxl.example/witness"


def _witnessed(store: LedgerStore) -> Signer:
    """A witness this log knows (its URL is never called: cosign=False throughout)."""
    signer = generate_signer(WITNESS, COSIGNATURE_V1)
    store.add_witness("http://127.0.0.1:9", signer.verifier.vkey)
    return signer


def _cosign_latest(store: LedgerStore, signer: Signer) -> None:
    cp = store.checkpoint().checkpoint
    store.add_cosignatures(cp.size, [signer.sign(cp.body())])


def test_cosignature_logged_once_with_the_next_batch(store: LedgerStore) -> None:
    signer = _witnessed(store)
    store.append([commitment(i) for i in range(3)], cosign=False)
    _cosign_latest(store, signer)
    signed = store.append([commitment(10)], cosign=False)
    assert signed.start == 4 and signed.end == 5  # the caller's entry comes after the record
    entry = decode_record(store.entries(3, 4)[0][1]).entry
    assert isinstance(entry, WitnessCosignature)
    assert (entry.size, entry.root, entry.witness) == (3, store.root(3), WITNESS)
    # logged once: the batch after that has no second copy
    store.append([commitment(11)], cosign=False)
    types = [decode_record(leaf).entry.TYPE for _, leaf in store.entries(0, store.size())]
    assert types.count("witness_cosignature") == 1
    assert audit(store).ok


def test_audit_flags_a_forged_cosignature_record(store: LedgerStore) -> None:
    signer = _witnessed(store)
    store.append([commitment(i) for i in range(3)], cosign=False)
    real = signer.sign(store.checkpoint().checkpoint.body())
    forged_root = WitnessCosignature(origin=store.origin, size=3, root=bytes(32),
                                     witness=WITNESS, signature=real.key_id + real.signature)
    store.append([forged_root], cosign=False)
    report = audit(store)
    assert report.first == (3, "cosignature of size 3 names a root the log never had")


def test_audit_flags_a_cosignature_that_does_not_verify(store: LedgerStore) -> None:
    signer = _witnessed(store)
    store.append([commitment(i) for i in range(3)], cosign=False)
    other = generate_signer(WITNESS, COSIGNATURE_V1)  # same name, another key
    sig = other.sign(store.checkpoint().checkpoint.body())
    bad = WitnessCosignature(origin=store.origin, size=3, root=store.root(3), witness=WITNESS,
                             signature=signer.verifier.key_id + sig.signature)
    store.append([bad], cosign=False)
    assert audit(store).first == (3, f"cosignature by {WITNESS} does not verify")
    future = WitnessCosignature(origin=store.origin, size=9, root=store.root(3), witness=WITNESS,
                                signature=bytes(76))
    store.append([future], cosign=False)
    assert (4, "cosignature of size 9 logged before that size existed") in audit(store).problems


def test_cosignatures_our_witness_gave_are_logged_and_audited(store: LedgerStore) -> None:
    """What this node's witness vouched for about another city's log goes on our own record."""
    assert store.witness is not None
    other = generate_signer("ledger.cxl.example/log")
    body = Checkpoint(other.name, 5, bytes(range(32))).body()
    note = Note(body, (other.sign(body),))
    witness_log(store, other.verifier.vkey)
    reply = add_checkpoint(store, f"old 0\n\n{note.encode()}".encode())
    assert reply.status == 200
    again = add_checkpoint(store, f"old 5\n\n{note.encode()}".encode())  # asked twice
    assert again.status == 200
    store.append([commitment(1)], cosign=False)
    assert store.size() == 2  # the tree we vouched for (once), then the batch
    entry = decode_record(store.entries(0, 1)[0][1]).entry
    assert isinstance(entry, WitnessCosignature)
    assert (entry.origin, entry.size, entry.root) == (other.name, 5, bytes(range(32)))
    assert entry.witness == store.witness.name
    assert reply.body == parse_note(body + "\n" + reply.body).signatures[0].line
    assert audit(store).ok
    forged = WitnessCosignature(origin=other.name, size=6, root=bytes(32),
                                witness=store.witness.name, signature=entry.signature)
    store.append([forged], cosign=False)
    assert audit(store).first == (2, f"cosignature by {store.witness.name} does not verify")


def test_one_cosignature_per_witness_and_checkpoint(store: LedgerStore) -> None:
    signer = _witnessed(store)
    store.append([commitment(1)], cosign=False)
    body = store.checkpoint().checkpoint.body()
    store.add_cosignatures(1, [signer.sign(body, timestamp=100)])
    store.add_cosignatures(1, [signer.sign(body, timestamp=200)])  # asked again
    note = parse_note(store.checkpoint(1).note)
    assert [s.timestamp for s in note.signatures if s.name == WITNESS] == [100]
    store.append([commitment(2)], cosign=False)
    types = [decode_record(leaf).entry.TYPE for _, leaf in store.entries(0, store.size())]
    assert types.count("witness_cosignature") == 1


def test_a_witness_keeps_the_evidence_of_a_split_view(store: LedgerStore,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The log signs another tree of a size the witness already cosigned: the witness refuses
    it (409) and keeps both signed notes, the proof a city needs that the log equivocated."""
    log = generate_signer("ledger.cxl.example/log")
    notes = []
    for root in (bytes(range(32)), bytes(range(1, 33))):
        body = Checkpoint(log.name, 5, root).body()
        notes.append(Note(body, (log.sign(body),)).encode())
    witness_log(store, log.verifier.vkey)
    assert add_checkpoint(store, f"old 0\n\n{notes[0]}".encode()).status == 200
    with caplog.at_level(logging.WARNING, logger="ledger.witness"):
        for old in (5, 5, 0):  # shown again (kept once), and with another old size
            reply = add_checkpoint(store, f"old {old}\n\n{notes[1]}".encode())
            assert (reply.status, reply.body) == (409, "5\n")
    # bilingual and coded, as every other line a node logs
    assert "[ledger_witness_saw_split_view]" in caplog.text and log.name in caplog.text
    assert "Split view" in caplog.text and "Vista dividida" in caplog.text
    assert "of 5 records" in caplog.text and "de 5 registros" in caplog.text
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.split_views.c.origin, t.split_views.c.size,
                                   t.split_views.c.root, t.split_views.c.cosigned,
                                   t.split_views.c.other)).all()
    assert [tuple(r) for r in rows] == [(log.name, 5, bytes(range(1, 33)), notes[0], notes[1])]
    # both verify with the log's key: the evidence stands on its own
    for note in rows[0][3:]:
        open_note(note, [log.verifier])
    # the tree it did cosign is still cosigned when asked again
    assert add_checkpoint(store, f"old 5\n\n{notes[0]}".encode()).status == 200


def test_the_longest_names_a_key_may_have_fit_the_record(tmp_path: Path) -> None:
    """A log and a witness named with ``MAX_KEY_NAME`` characters (every name a key may be
    given: ``Signer``, ``Verifier``): their cosignature record goes on the log, and the next
    batch too. Longer names were accepted when set up, and then every append was refused over
    a record nobody sent; now they are refused where they are typed."""
    origin = "ledger.mexicali.example/" + "x" * (MAX_KEY_NAME - 24)
    assert run_cli("init", "--origin", origin, "--witness-name", "w.example/" + "w" * 118,
                   "--home", str(tmp_path / "node")) == 0
    with LedgerStore.open(tmp_path / "node", passphrase=PASSPHRASE) as store:
        signer = generate_signer("w" * MAX_KEY_NAME, COSIGNATURE_V1)
        store.add_witness("http://127.0.0.1:9", signer.verifier.vkey)
        store.append([commitment(0)], cosign=False)
        _cosign_latest(store, signer)
        store.append([commitment(1)], cosign=False)
        assert audit(store).ok
    longer = generate_signer("w" * (MAX_KEY_NAME + 1), COSIGNATURE_V1).verifier.vkey
    with LedgerStore.open(tmp_path / "node") as store, pytest.raises(MalformedInput) as err:
        store.add_witness("http://127.0.0.1:9", longer)
    assert err.value.code == "note_name_too_long"
    assert run_cli("witnesses", "add", "--url", "http://127.0.0.1:9", "--key", longer,
                   "--home", str(tmp_path / "node")) == 2
    # a home an earlier release made with a longer name (its witness key's, by default the
    # origin and "/witness") is still read: audited, its status told
    old = tmp_path / "old"
    LedgerStore.init(old, "ledger." + "a" * 107 + ".example/v1", PASSPHRASE).close()
    assert run_cli("audit", "--home", str(old)) == 0
    assert run_cli("status", "--home", str(old)) in (0, 1)
