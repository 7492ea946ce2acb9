"""credential.note: signed notes, verifier keys, checkpoints and cosignatures."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credential import note
from credential.errors import LedgerError, MalformedInput

SEED = bytes(range(32))


def _checkpoint(size: int = 7) -> note.Checkpoint:
    return note.Checkpoint("example.org/log", size, hashlib.sha256(b"r").digest())


def test_key_id_and_vkey_format() -> None:
    signer = note.Signer("example.org/log", SEED)
    v = signer.verifier
    want = hashlib.sha256(b"example.org/log\n\x01" + v.public_key).digest()[:4]
    assert v.key_id == want
    name, kid, b64 = v.vkey.split("+", 2)
    assert (name, kid) == ("example.org/log", want.hex())
    assert base64.b64decode(b64) == b"\x01" + v.public_key
    assert note.parse_verifier_key(v.vkey) == v


def test_known_go_vkey_parses() -> None:
    # The example verifier key from golang.org/x/mod/sumdb/note's documentation.
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    v = note.parse_verifier_key(vkey)
    assert v.name == "PeterNeumann" and v.key_id.hex() == "c74f20a3"


def test_sign_and_open_round_trip() -> None:
    signer = note.generate_signer("example.org/log")
    body = _checkpoint().body()
    text = note.sign_note(body, signer).encode()
    assert text.startswith(body + "\n— example.org/log ")
    parsed, ok = note.open_note(text, [signer.verifier])
    assert ok == [signer.verifier]
    assert note.parse_checkpoint(parsed.text) == _checkpoint()


def test_cosignature_round_trip_and_timestamp() -> None:
    log = note.generate_signer("example.org/log")
    witness = note.generate_signer("example.org/witness", note.COSIGNATURE_V1)
    # (its key as a plain note key, below, has another key id but for 1 key in 2**32)
    while note.key_id(witness.name, note.ED25519, witness.verifier.public_key) == (
            witness.verifier.key_id):
        witness = note.generate_signer("example.org/witness", note.COSIGNATURE_V1)
    body = _checkpoint().body()
    signed = note.sign_note(body, log)
    cosig = witness.sign(body, timestamp=1_700_000_000)
    assert cosig.timestamp == 1_700_000_000
    assert len(cosig.key_id + cosig.signature) == 76
    want_id = hashlib.sha256(b"example.org/witness\n\x04" + witness.verifier.public_key).digest()
    assert cosig.key_id == want_id[:4]
    full = signed.with_signatures([cosig]).encode()
    _, ok = note.open_note(full, [log.verifier, witness.verifier])
    assert ok == [log.verifier, witness.verifier]
    # the witness key as a plain Ed25519 note key must not verify a cosignature (domain separation)
    plain = note.Verifier(witness.name, witness.verifier.public_key, note.ED25519)
    with pytest.raises(LedgerError) as err:
        note.open_note(signed.with_signatures([cosig]).encode(), [plain])
    assert err.value.code == "note_unverified"


def test_cosignature_binds_time() -> None:
    witness = note.generate_signer("w", note.COSIGNATURE_V1)
    body = _checkpoint().body()
    cosig = witness.sign(body, timestamp=5)
    forged = note.NoteSignature(cosig.name, cosig.key_id,
                                (6).to_bytes(8, "big") + cosig.signature[8:])
    assert witness.verifier.verify(body, cosig.signature)
    assert not witness.verifier.verify(body, forged.signature)


def test_tampered_text_fails() -> None:
    signer = note.generate_signer("example.org/log")
    text = note.sign_note(_checkpoint(7).body(), signer).encode()
    bad = text.replace("\n7\n", "\n8\n", 1)
    with pytest.raises(LedgerError) as err:
        note.open_note(bad, [signer.verifier])
    assert err.value.code == "note_bad_signature"


def test_unknown_key_only_is_unverified() -> None:
    a, b = note.generate_signer("a"), note.generate_signer("b")
    text = note.sign_note(_checkpoint().body(), a).encode()
    with pytest.raises(LedgerError) as err:
        note.open_note(text, [b.verifier])
    assert err.value.code == "note_unverified"


_SIG = " AAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.mark.parametrize(
    ("text", "code", "detail"),
    [
        ("no signature block\n", "note_malformed", "no signature block"),
        ("a\n\n", "note_malformed", "no signatures"),
        ("a\n\n— name\n", "note_malformed", "signature line without a signature"),
        ("a\n\n- name AAAAAAAA\n", "note_malformed", "signature line must start with —"),
        ("a\n\n— name AAAA!AAA\n", "note_bad_base64", "signature"),
        ("a\n\n— name AAAA\n", "note_malformed", "signature too short"),
        ("a\n\n— na+me" + _SIG + "\n", "note_bad_name", "na+me"),
        ("a\x01\n\n— name" + _SIG + "\n", "note_malformed",
         "text must be lines ending in newline"),
        ("a\n\n— name" + _SIG, "note_malformed", "signature block must end in newline"),
        # a lone surrogate: no UTF-8
        ("a\ud800\n\n— name" + _SIG + "\n", "note_malformed", "not UTF-8"),
    ],
)
def test_malformed_notes(text: str, code: str, detail: str) -> None:
    with pytest.raises(MalformedInput) as err:
        note.parse_note(text)
    assert err.value.code == code and list(err.value.detail.values()) == [detail]


def test_malformed_bytes() -> None:
    with pytest.raises(MalformedInput) as err:
        note.parse_note(b"\xff\n\n")
    assert err.value.code == "note_malformed" and err.value.detail == {"reason": "not UTF-8"}
    with pytest.raises(MalformedInput) as err:
        note.parse_note(b"a" * (note.MAX_NOTE_BYTES + 1))
    assert err.value.code == "note_malformed" and err.value.detail == {"reason": "note too large"}


@pytest.mark.parametrize("text", ["a\n\nb\n", "a\n\n", "\nb\n", "del \x7f\n"])
def test_a_note_text_may_hold_what_signed_note_allows(text: str) -> None:
    """signed-note: the text "MAY contain empty lines" and only ASCII controls below U+0020
    (newline apart) are forbidden; the last blank line is the one that ends the text."""
    signer = note.generate_signer("example.com/log")
    signed = note.sign_note(text, signer)
    opened, ok = note.open_note(signed.encode(), [signer.verifier])
    assert opened.text == text and ok == [signer.verifier]


def test_sixteen_post_quantum_sized_signatures_fit() -> None:
    """Verifiers "MUST accept at least up to 16 signatures", which may be nearly 5 kB each:
    unknown ones are skipped, the known one still verifies."""
    signer = note.generate_signer("example.com/log")
    signed = note.sign_note("example.com/log\n1\n" + "A" * 43 + "=\n", signer)
    big = "".join(f"— pq{i} {base64.b64encode(bytes(4 + 4900)).decode()}\n" for i in range(15))
    text = signed.encode() + big
    assert len(text.encode()) > 64 * 1024
    opened, ok = note.open_note(text, [signer.verifier])
    assert len(opened.signatures) == 16 and ok == [signer.verifier]


@pytest.mark.parametrize(
    ("body", "reason"),
    [("o\n7\n", "needs origin, size and root"), ("o\n07\nAAAA\n", "bad size line"),
     ("o\n-1\nAAAA\n", "bad size line"), ("\n1\n" + "A" * 43 + "=\n", "bad origin line"),
     ("o\n1\n" + "A" * 42 + "==\n", "root must be 32 bytes"),
     ("o\n1\n" + "A" * 43 + "=\n\n", "bad extension line"),
     ("o\n1\n" + "A" * 43 + "=", "must end in newline")],
)
def test_malformed_checkpoints(body: str, reason: str) -> None:
    with pytest.raises(MalformedInput) as err:
        note.parse_checkpoint(body)
    assert err.value.code == "note_bad_checkpoint" and err.value.detail == {"reason": reason}


_KEY = base64.b64encode(b"\x01" + bytes(32)).decode()


@pytest.mark.parametrize(
    ("vkey", "code", "detail"),
    [("a+b", "note_bad_key", "expected name+keyid+base64"),
     ("a+0000000+AQ==", "note_bad_key", "expected name+keyid+base64"),
     ("a+00000000+AQ==", "note_bad_key", "key size 0"),
     ("a+00000000+" + "A" * 44, "note_bad_key", "unknown key type 0"),
     ("a b+00000000+" + _KEY, "note_bad_name", "a b"),
     ("a+00000000+" + _KEY, "note_bad_key", "key id does not match the key")],
)
def test_bad_verifier_keys(vkey: str, code: str, detail: str) -> None:
    with pytest.raises(MalformedInput) as err:
        note.parse_verifier_key(vkey)
    assert err.value.code == code and list(err.value.detail.values()) == [detail]


@given(st.text(st.characters(min_codepoint=0x20, exclude_characters="\n+ \x7f\u2028\u2029\x85"
                             "\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                             "\u2009\u200a\u202f\u205f\u3000"),
               min_size=1, max_size=20),
       st.integers(0, 2**63 - 1), st.binary(min_size=32, max_size=32))
def test_checkpoint_round_trip(origin: str, size: int, root: bytes) -> None:
    cp = note.Checkpoint(origin, size, root)
    assert note.parse_checkpoint(cp.body()) == cp


@given(st.binary(max_size=300))
def test_parse_note_never_crashes(data: bytes) -> None:
    with contextlib.suppress(MalformedInput):
        note.parse_note(data)


def test_verify_checkpoint_needs_log_and_witness() -> None:
    log = note.generate_signer("example.org/log")
    witness = note.generate_signer("example.org/witness", note.COSIGNATURE_V1)
    body = _checkpoint().body()
    signed = note.sign_note(body, log)
    with pytest.raises(LedgerError) as err:
        note.verify_checkpoint(signed.encode(), log.verifier, [witness.verifier])
    assert err.value.code == "note_missing_cosignature"
    full = signed.with_signatures([witness.sign(body)]).encode()
    assert note.verify_checkpoint(full, log.verifier, [witness.verifier]) == _checkpoint()
    with pytest.raises(LedgerError) as err:
        note.verify_checkpoint(full, log.verifier)  # quorum 1 but no witness configured
    assert err.value.code == "note_missing_cosignature"
    second = note.generate_signer("example.org/witness2", note.COSIGNATURE_V1)
    with pytest.raises(LedgerError) as err:  # "at least quorum": one of two is not two
        note.verify_checkpoint(full, log.verifier, [witness.verifier, second.verifier],
                               quorum=2)
    assert err.value.code == "note_missing_cosignature"
    with pytest.raises(LedgerError) as err:  # nor is one known witness, for a quorum of two
        note.verify_checkpoint(full, log.verifier, [witness.verifier], quorum=2)
    assert err.value.code == "note_missing_cosignature"
    both = signed.with_signatures([witness.sign(body), second.sign(body)]).encode()
    assert note.verify_checkpoint(both, log.verifier, [witness.verifier, second.verifier],
                                  quorum=2) == _checkpoint()
    other = note.generate_signer("example.org/log")
    while other.verifier.key_id == log.verifier.key_id:  # 1 in 2**32: note_bad_signature then
        other = note.generate_signer("example.org/log")
    with pytest.raises(LedgerError) as err:
        note.verify_checkpoint(full, other.verifier, [witness.verifier])
    assert err.value.code == "note_unverified"


def test_a_checkpoint_of_another_log_is_note_wrong_origin() -> None:
    """A log's key signing a checkpoint that names another origin (a node misconfigured, or a
    history of one log passed off as another's) is refused even with every signature good."""
    log = note.generate_signer("example.org/log")
    witness = note.generate_signer("example.org/witness", note.COSIGNATURE_V1)
    body = note.Checkpoint("example.org/other-log", 7, hashlib.sha256(b"r").digest()).body()
    text = note.sign_note(body, log).with_signatures([witness.sign(body)]).encode()
    with pytest.raises(LedgerError) as err:
        note.verify_checkpoint(text, log.verifier, [witness.verifier])
    assert err.value.code == "note_wrong_origin"
    assert "example.org/other-log" in err.value.message["en"]


def test_the_log_is_no_witness_of_itself() -> None:
    """The log's key given as a witness key (under either type) would let the log's own
    signature stand for the other city's cosignature."""
    log = note.generate_signer("example.org/log")
    body = _checkpoint().body()
    signed = note.sign_note(body, log).encode()
    as_cosigner = note.Verifier(log.name, log.verifier.public_key, note.COSIGNATURE_V1)
    renamed = note.Verifier("example.org/witness", log.verifier.public_key)
    for posing in (log.verifier, as_cosigner, renamed):
        with pytest.raises(LedgerError) as err:
            note.verify_checkpoint(signed, log.verifier, [posing])
        assert err.value.code == "note_witness_is_log"


def test_a_signature_in_another_base64_spelling_is_refused() -> None:
    """One spelling per value: base64 whose unused last bits are set decodes to the same
    bytes, and a note that could be written two ways cannot be compared as text (witnesses
    and mirrors compare notes)."""
    signer = note.generate_signer("example.org/log")
    text = note.sign_note(_checkpoint().body(), signer).encode()
    line = text.rstrip("\n").rsplit("\n", 1)[1]
    encoded = line.rsplit(" ", 1)[1]
    assert encoded.endswith("=") and not encoded.endswith("==")  # 68 bytes: 2 bits unused
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = encoded[-2]
    other = alphabet[alphabet.index(last) ^ 1]  # a low bit base64 does not use here
    respelled = encoded[:-2] + other + "="
    assert base64.b64decode(respelled) == base64.b64decode(encoded)
    with pytest.raises(MalformedInput) as caught:
        note.parse_note(text.replace(encoded, respelled))
    assert caught.value.code == "note_bad_base64"


def test_a_key_name_longer_than_the_ledger_records_hold_is_refused() -> None:
    """``witnesses add --key``, ``witness --log-key``: a peer named past ``MAX_KEY_NAME`` is
    refused where it is typed (``check_own_name``), not once its cosignature record stops every
    append. A key read back (a home an earlier release made) and a note's signature lines
    from others' keys are still read, however long their names."""
    seed = bytes(range(32))
    name = "w" * note.MAX_KEY_NAME
    note.check_own_name(name)
    longer = name + "w"
    with pytest.raises(MalformedInput) as err:
        note.check_own_name(longer)
    assert err.value.code == "note_name_too_long"
    vkey = note.Signer(longer, seed, note.COSIGNATURE_V1).verifier.vkey
    assert note.parse_verifier_key(vkey).name == longer
    signed = note.sign_note("log.example/l\n1\n" + "A" * 43 + "=\n",
                            note.Signer("log.example/l", seed))
    stranger = base64.b64encode(bytes(4 + 64)).decode()
    text = signed.encode() + f"— {longer} {stranger}\n"
    assert [s.name for s in note.parse_note(text).signatures] == ["log.example/l", longer]
