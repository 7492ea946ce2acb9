"""Bundle proofs of publication: a log built here from the core's own Merkle and note code, so
the counter's check is exercised without a ledger node (the end-to-end test is in
``tests/ledger/test_bundle_proof.py``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credential import merkle
from credential.errors import PasaporteError, UsageError
from credential.logproof import (
    MAX_PROOF,
    BundleProof,
    parse_bundle_proof,
    require_logged,
    verify_bundle_proof,
)
from credential.note import COSIGNATURE_V1, Checkpoint, Signer, generate_signer, sign_note
from tests.factory import City

ORIGIN = "ledger.mexicali.example/log"
LOG = generate_signer(ORIGIN)
WITNESS = generate_signer("witness.calexico.example", COSIGNATURE_V1)
INDEX, SIZE = 5, 9


def _record(index: int, kind: str, fields: dict[str, object]) -> bytes:
    return bytes(cbor2.dumps([index, bytes(32), 1_795_000_000_000, kind, fields], canonical=True))


def _log(bundle: bytes, *, signers: Sequence[Signer] = (LOG, WITNESS),
         record: bytes | None = None) -> BundleProof:
    """A 9-record log whose record 5 publishes ``bundle``; its proof under a checkpoint."""
    digest = hashlib.sha256(bundle).digest()
    leaves = [_record(i, "credential_issued", {"commitment": bytes([i]) * 32})
              for i in range(SIZE)]
    leaves[INDEX] = record if record is not None else _record(
        INDEX, "bundle_published", {"city": "Mexicali", "version": 1, "digest": digest})
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]

    def source(refs: Sequence[merkle.NodeRef]) -> Mapping[merkle.NodeRef, bytes]:
        return {(lvl, i): merkle.root_from_leaf_hashes(hashes[i << lvl:(i + 1) << lvl])
                for lvl, i in refs}

    root = merkle.root_from_leaf_hashes(hashes)
    note = sign_note(Checkpoint(ORIGIN, SIZE, root).body(), *signers)
    proof = merkle.inclusion_proof(INDEX, SIZE, source)
    return BundleProof(INDEX, leaves[INDEX], tuple(proof), note.encode())


@pytest.fixture(scope="module")
def bundle() -> bytes:
    return City().bundle()


def test_a_published_bundle_verifies(bundle: bytes) -> None:
    proof = parse_bundle_proof(_log(bundle).to_json())  # through the file format
    checkpoint = verify_bundle_proof(bundle, proof, [LOG.verifier], [WITNESS.verifier])
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, SIZE)
    assert require_logged([bundle], [proof.to_json()], [LOG.verifier], [WITNESS.verifier])


def test_a_citys_own_witness_does_not_vouch_for_its_log(bundle: bytes) -> None:
    """A counter trusting both cities holds both witness keys. The log's own city's witness
    (named under its host) cosigning does not count: a city could fork its log, cosign the
    fork and hand out a bundle only the fork published. The other city's still does."""
    own = generate_signer("ledger.mexicali.example/log/witness", COSIGNATURE_V1)
    forked = _log(bundle, signers=(LOG, own))
    witnesses = [own.verifier, WITNESS.verifier]
    assert _code(lambda: verify_bundle_proof(bundle, forked, [LOG.verifier], witnesses)) \
        == "note_missing_cosignature"
    assert verify_bundle_proof(bundle, _log(bundle, signers=(LOG, own, WITNESS)),
                               [LOG.verifier], witnesses).size == SIZE
    # given only that own witness's key (handed out beside the log's key): said as that, not
    # "cosignatures missing", which sent the clerk for a new proof
    complete = _log(bundle, signers=(LOG, own, WITNESS))
    with pytest.raises(UsageError) as err:
        verify_bundle_proof(bundle, complete, [LOG.verifier], [own.verifier])
    assert err.value.code == "bundle_witness_is_own"
    assert "ledger.mexicali.example/log/witness" in err.value.message["en"]


def _code(call: object) -> str:
    assert callable(call)
    with pytest.raises(PasaporteError) as caught:
        call()
    assert set(caught.value.message) == {"es", "en"}
    return caught.value.code


def test_every_way_a_proof_fails(bundle: bytes) -> None:
    good = _log(bundle)
    logs, witnesses = [LOG.verifier], [WITNESS.verifier]

    def check(signed: bytes, proof: BundleProof) -> str:
        return _code(lambda: verify_bundle_proof(signed, proof, logs, witnesses))

    other = City().bundle()  # another bundle: signed by its city, never published
    assert check(other, good) == "bundle_proof_invalid"
    flipped = (bytes([good.proof[0][0] ^ 1]) + good.proof[0][1:], *good.proof[1:])
    assert check(bundle, BundleProof(INDEX, good.record, flipped, good.checkpoint)) \
        == "bundle_proof_invalid"
    assert check(bundle, BundleProof(INDEX + 1, good.record, good.proof, good.checkpoint)) \
        == "bundle_proof_invalid"
    assert check(bundle, BundleProof(SIZE, good.record, good.proof, good.checkpoint)) \
        == "bundle_proof_invalid"
    notice = _record(INDEX, "notice", {"text": "x"})  # included, but not a publication
    assert check(bundle, _log(bundle, record=notice)) == "bundle_proof_invalid"
    moved = _record(INDEX + 1, "bundle_published",  # names another position than its own
                    {"city": "Mexicali", "version": 1, "digest": hashlib.sha256(bundle).digest()})
    assert check(bundle, _log(bundle, record=moved)) == "bundle_proof_invalid"
    # the digest right, but the record names another city or version: one city's office
    # publishing another city's bundle on its own log, under its own name
    for city, version in (("Calexico", 1), ("Mexicali", 99)):
        relabelled = _record(INDEX, "bundle_published", {
            "city": city, "version": version, "digest": hashlib.sha256(bundle).digest()})
        with pytest.raises(PasaporteError) as caught:
            verify_bundle_proof(bundle, _log(bundle, record=relabelled), logs, witnesses)
        assert caught.value.code == "bundle_proof_invalid"
        assert f"record names {city} v{version}, the bundle is Mexicali v1" in \
            caught.value.message["en"]
        assert "el paquete es Mexicali v1" in caught.value.message["es"]
    # the log's signature alone, or the witness's alone, is not enough
    assert check(bundle, _log(bundle, signers=[LOG])) == "note_missing_cosignature"
    assert check(bundle, _log(bundle, signers=[WITNESS])) == "note_unverified"
    impostor = generate_signer(ORIGIN)  # the same name, another key
    while impostor.verifier.key_id == LOG.verifier.key_id:  # 1 in 2**32: note_bad_signature
        impostor = generate_signer(ORIGIN)
    assert check(bundle, _log(bundle, signers=[impostor, WITNESS])) == "note_unverified"
    assert _code(lambda: verify_bundle_proof(
        bundle, good, [generate_signer("ledger.tijuana.example/log").verifier], witnesses)) \
        == "bundle_log_unknown"
    assert _code(lambda: require_logged([bundle, other], [good.to_json()], logs, witnesses)) \
        == "bundle_not_logged"
    with pytest.raises(PasaporteError) as caught:  # by its place, or by the name it was given
        require_logged([bundle, other], [good.to_json()], logs, witnesses)
    assert "no. 2 " in caught.value.message["en"] and "n.º 2 " in caught.value.message["es"]
    with pytest.raises(PasaporteError) as caught:
        require_logged([bundle, other], [good.to_json()], logs, witnesses,
                       names=["a.cbor", "b.cbor"])
    assert "“b.cbor”" in caught.value.message["en"] and "«b.cbor»" in caught.value.message["es"]


@pytest.mark.parametrize("data", [
    b"", b"\xff\xfe", b"[]", b'{"type": "x"}', b"{" * 10_000, b" " * (MAX_PROOF + 1),
    json.dumps({"type": "pasaporte-bundle-proof/1", "index": -1, "record": "", "proof": [],
                "checkpoint": ""}).encode(),
    json.dumps({"type": "pasaporte-bundle-proof/1", "index": 0, "record": "!", "proof": [],
                "checkpoint": ""}).encode(),
    json.dumps({"type": "pasaporte-bundle-proof/1", "index": 0, "record": "", "proof": ["AA=="],
                "checkpoint": ""}).encode(),
    json.dumps({"type": "pasaporte-bundle-proof/1", "index": True, "record": "", "proof": [],
                "checkpoint": ""}).encode(),
])
def test_malformed_proof_files_are_typed_errors(data: bytes) -> None:
    assert _code(lambda: parse_bundle_proof(data)) == "bundle_proof_invalid"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20).map(lambda v: json.dumps(v).encode()))
def test_the_parser_and_check_never_raise_anything_else(data: bytes) -> None:
    try:
        proof = parse_bundle_proof(data)
        verify_bundle_proof(b"bundle", proof, [LOG.verifier], [WITNESS.verifier])
    except PasaporteError:
        pass


# Random bytes and random JSON never parse into a proof, so the test above never reaches the
# check itself; a real proof with one field replaced does, down to the Merkle path and the note.
_BUNDLE = City().bundle()
_GOOD: dict[str, object] = json.loads(_log(_BUNDLE).to_json())
_text = st.text(max_size=60)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 2**64) | _text,
    lambda inner: st.lists(inner, max_size=4), max_leaves=10)
_VALUES = list(_GOOD.values())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(_GOOD)), st.data())
def test_a_real_proof_with_one_field_replaced_is_refused(field: str, data: st.DataObject
                                                         ) -> None:
    good = _GOOD[field]
    replaced: object
    if isinstance(good, list) and good and data.draw(st.booleans()):
        # one hash of the path replaced, dropped or added
        i = data.draw(st.integers(0, len(good)))
        replaced = good[:i] + data.draw(st.lists(st.sampled_from(good) | _text,
                                                 max_size=2)) + good[i + 1:]
    else:
        replaced = data.draw(_json_values | st.sampled_from(_VALUES))
    if replaced == good:
        return
    doc = json.dumps({**_GOOD, field: replaced}).encode()
    codes = {"bundle_proof_invalid", "note_unverified", "note_missing_cosignature",
             "note_malformed", "note_bad_checkpoint", "bundle_log_unknown"}
    with pytest.raises(PasaporteError) as caught:
        verify_bundle_proof(_BUNDLE, parse_bundle_proof(doc), [LOG.verifier],
                            [WITNESS.verifier])
    assert caught.value.code in codes, caught.value.code


def test_the_untouched_proof_file_verifies() -> None:
    proof = parse_bundle_proof(json.dumps(_GOOD).encode())
    assert verify_bundle_proof(_BUNDLE, proof, [LOG.verifier], [WITNESS.verifier]).size == SIZE


@pytest.mark.parametrize("field", ["record", "proof"])
def test_a_proof_file_with_non_text_base64_is_bundle_proof_invalid(field: str) -> None:
    doc = {**_GOOD, field: "é" if field == "record" else ["é"]}
    with pytest.raises(PasaporteError) as caught:
        parse_bundle_proof(json.dumps(doc).encode())
    assert caught.value.code == "bundle_proof_invalid"
