"""C2SP tlog-witness and tlog-cosignature, both ways, against independent code: our witness as
any log sees it over HTTP (statuses, content types, the cosignature/v1 bytes checked with
PyNaCl alone), our log asking a witness written here from the spec, and what the operator reads
when a witness refuses (Spanish in the Spanish half, English in the English one)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import nacl.signing
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from credential import merkle
from credential.errors import LedgerError, PasaporteError, message_catalog
from credential.note import COSIGNATURE_V1, Checkpoint, Note, Signer, generate_signer
from ledger import client
from ledger import schema as t
from ledger.http import create_app
from ledger.store import LedgerStore
from ledger.witness import check_log, pull, request_cosignatures, witness_log
from tests.ledger.conftest import PASSPHRASE, init_home
from tests.ledger.helpers import commitment, reply, serving

LOG = generate_signer("ledger.cxl.example/log")


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(b"%d" % i) for i in range(n)]


def _root(n: int) -> bytes:
    return merkle.root_from_leaf_hashes(_leaves(n)) if n else merkle.EMPTY_ROOT


def _proof(old: int, new: int) -> list[bytes]:
    leaves = _leaves(new)

    def source(refs: Sequence[merkle.NodeRef]) -> dict[merkle.NodeRef, bytes]:
        return {(level, i): merkle.root_from_leaf_hashes(leaves[i << level:(i + 1) << level])
                for level, i in refs}
    return merkle.consistency_proof(old, new, source)


def _note(size: int, root: bytes | None = None, signer: Signer = LOG,
          extra: str = "") -> str:
    body = Checkpoint(signer.name, size, _root(size) if root is None else root).body()
    return Note(body, (signer.sign(body),)).encode() + extra


def _request(old: int, proof: list[bytes], note: str) -> bytes:
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n{note}".encode()


@pytest.fixture
def witness(store: LedgerStore) -> FlaskClient:
    """This node as the witness of LOG."""
    witness_log(store, LOG.verifier.vkey)
    return create_app({"TESTING": True}, store=store).test_client()


def _refused(resp: TestResponse, status: int, code: str) -> dict[str, str]:
    assert resp.status_code == status, resp.get_data()
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["code"] == code
    assert body["message"]["es"] and body["message"]["en"]
    assert body["message"]["es"] != body["message"]["en"]
    message: dict[str, str] = body["message"]
    return message


def test_each_refusal_has_the_status_tlog_witness_names(witness: FlaskClient,
                                                         store: LedgerStore) -> None:
    post = witness.post
    _refused(post("/add-checkpoint", data=_request(0, [], _note(
        1, signer=generate_signer("ledger.nobody.example/log")))), 404, "ledger_unknown_log")
    impostor = Signer(LOG.name, bytes(32))  # the log's name, another key
    _refused(post("/add-checkpoint", data=_request(0, [], _note(1, signer=impostor))), 403,
             "ledger_witness_not_signed")
    message = _refused(post("/add-checkpoint", data=_request(3, [], _note(2))), 400,
                       "ledger_witness_old_too_large")
    assert "(3)" in message["es"] and "(2)" in message["en"]

    def state() -> tuple[int, list[int]]:
        with store.engine.connect() as conn:
            return (conn.execute(select(t.witnessed_logs.c.size)).scalar_one(),
                    list(conn.execute(select(t.witness_given.c.size)).scalars()))

    assert state() == (0, [])  # nothing refused was cosigned or remembered
    assert post("/add-checkpoint", data=_request(0, [], _note(4))).status_code == 200
    assert state() == (4, [4])

    # old size not the latest cosigned: 409, its body that size, the content type exact
    for old in (0, 2):
        resp = post("/add-checkpoint", data=_request(old, [], _note(7)))
        assert resp.status_code == 409
        assert resp.headers["Content-Type"] == "text/x.tlog.size"
        assert resp.get_data() == b"4\n"
    # the same size with another root: 409 too (a split view, kept as evidence)
    resp = post("/add-checkpoint", data=_request(4, [], _note(4, root=b"\x01" * 32)))
    assert (resp.status_code, resp.get_data()) == (409, b"4\n")
    assert resp.headers["Content-Type"] == "text/x.tlog.size"
    # a proof that does not verify: 422, and nothing cosigned
    bad = _proof(4, 7)
    bad[0] = bytes(32)
    _refused(post("/add-checkpoint", data=_request(4, bad, _note(7))), 422,
             "ledger_witness_inconsistent")
    assert state() == (4, [4])  # neither the 409s nor the 422 moved it
    resp = post("/add-checkpoint",
                data=_request(4, _proof(4, 7), _note(7)))
    assert resp.status_code == 200
    assert state() == (7, [4, 7])


def test_the_cosignature_is_a_timestamped_cosignature_v1(witness: FlaskClient,
                                                         store: LedgerStore) -> None:
    """Checked byte by byte from tlog-cosignature with PyNaCl alone: key ID
    SHA-256(name ‖ 0x0A ‖ 0x04 ‖ key)[:4], a big-endian u64 POSIX time, then Ed25519 over
    "cosignature/v1\\ntime T\\n" and the whole checkpoint body, extension lines included.
    Signatures from keys the witness does not know are ignored, whatever their size (an
    ML-DSA-44 cosignature is 2420 bytes), as the spec says."""
    assert store.witness is not None
    name = store.witness.name
    public = bytes(nacl.signing.SigningKey(store.witness.seed).verify_key)
    body = Checkpoint(LOG.name, 3, _root(3), ("extension line",)).body()
    unknown = (f"— other.example/witness {base64.b64encode(bytes(4 + 72)).decode()}\n"
               f"— pq.example/witness {base64.b64encode(bytes(4 + 2420)).decode()}\n")
    note = Note(body, (LOG.sign(body),)).encode() + unknown
    before = int(time.time())
    resp = witness.post("/add-checkpoint", data=_request(0, [], note))
    after = int(time.time())
    assert resp.status_code == 200
    lines = resp.get_data(as_text=True).split("\n")
    assert lines[-1] == "" and lines[:-1]
    for line in lines[:-1]:
        dash, line_name, b64 = line.split(" ")
        assert (dash, line_name) == ("—", name)
        raw = base64.b64decode(b64, validate=True)
        assert len(raw) == 4 + 8 + 64
        assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
        stamp = int.from_bytes(raw[4:12], "big")
        assert before <= stamp <= after
        message = b"cosignature/v1\ntime %d\n" % stamp + body.encode()
        nacl.signing.VerifyKey(public).verify(message, raw[12:])


@dataclass
class _Witness:
    """A witness written from tlog-witness alone: it answers each request with the next of
    ``answers`` (status, content type, body), or by cosigning when that is ``None``."""

    signer: Signer
    answers: list[tuple[int, str, bytes] | None] = field(default_factory=list)
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    url: str = ""
    clock: Callable[[], int] = lambda: int(time.time())

    def cosign(self, note_text: str) -> bytes:
        key = nacl.signing.SigningKey(self.signer.seed)
        stamp = self.clock()
        sig = key.sign(b"cosignature/v1\ntime %d\n" % stamp + note_text.encode()).signature
        key_id = hashlib.sha256(self.signer.name.encode() + b"\n\x04"
                                + bytes(key.verify_key)).digest()[:4]
        raw = key_id + stamp.to_bytes(8, "big") + sig
        return f"— {self.signer.name} {base64.b64encode(raw).decode()}\n".encode()

    def answer(self, ctype: str, body: bytes) -> tuple[int, str, bytes]:
        self.requests.append((ctype, body))
        planned = self.answers.pop(0) if self.answers else None
        if planned is not None:
            return planned
        _, _, note = body.decode().partition("\n\n")
        text = note[: note.rindex("\n\n") + 1]
        return 200, "text/plain", self.cosign(text)


@contextlib.contextmanager
def _serve(handler: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server calls it by this name
            handler(self)

        def do_GET(self) -> None:  # http.server calls it by this name
            handler(self)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url


def _handler(fake: _Witness) -> Callable[[BaseHTTPRequestHandler], None]:
    def handle(h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        assert h.command == "POST" and h.path == "/add-checkpoint"
        reply(h, *fake.answer(h.headers.get("Content-Type", ""), body))

    return handle


@pytest.fixture
def spec_witness() -> Iterator[_Witness]:
    fake = _Witness(generate_signer("witness.example/w1", COSIGNATURE_V1))
    with _serve(_handler(fake)) as url:
        fake.url = url
        yield fake


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """The request as tlog-witness spells it: every line ends in a newline."""
    text = body.decode()
    head, sep, note = text.partition("\n\n")
    assert sep and note.endswith("\n")
    first, *proof = head.split("\n")
    assert first.startswith("old ") and str(int(first[4:])) == first[4:]
    assert len(proof) <= 63
    return int(first[4:]), [base64.b64decode(p, validate=True) for p in proof], note


def test_our_log_talks_to_a_witness_written_from_the_spec(
        store: LedgerStore, spec_witness: _Witness) -> None:
    """The log sends "old N", the proof, a blank line and its checkpoint (its own signature
    only); learns the witness's size from a 409 (``text/x.tlog.size``, media types being
    case-insensitive and taking parameters) and sends again with a proof from there."""
    store.add_witness(spec_witness.url, spec_witness.signer.verifier.vkey)
    store.append([commitment(i) for i in range(3)], cosign=False)
    assert request_cosignatures(store) == 1
    old, proof, note = _parse_request(spec_witness.requests[-1][1])
    assert (old, proof) == (0, [])
    assert [line.split(" ")[1] for line in note.split("\n\n", 1)[1].splitlines()] == [
        store.origin]

    store.append([commitment(i) for i in range(3, 8)], cosign=False)
    spec_witness.answers = [(409, "Text/X.TLOG.Size; charset=utf-8", b"3\n")]
    assert request_cosignatures(store) == 1
    old, proof, note = _parse_request(spec_witness.requests[-1][1])
    assert old == 3
    size = store.size()
    merkle.verify_consistency(3, size, proof, store.root(3), store.root(size))
    signed = store.checkpoint()
    assert spec_witness.signer.name in signed.note


@pytest.mark.parametrize(("clock", "kept"), [
    (lambda: int(time.time() * 1000), False),  # milliseconds, not seconds
    (lambda: (1 << 63) - 1, False),  # the most tlog-cosignature allows
    (lambda: int(time.time()) + 3 * 3600, True),  # a clock hours off: still kept
])
def test_a_cosignature_time_far_ahead_is_not_kept(
        store: LedgerStore, spec_witness: _Witness, clock: Callable[[], int], kept: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    """A witness counting in milliseconds: its cosignature verifies, but its time would stand
    on the public record (and in every status report) as when the other city vouched; the log
    says why it did not keep it and goes on appending."""
    store.add_witness(spec_witness.url, spec_witness.signer.verifier.vkey)
    store.append([commitment(0)], cosign=False)
    spec_witness.clock = clock
    with caplog.at_level(logging.WARNING, logger="ledger.witness"):
        assert request_cosignatures(store) == int(kept)
    assert (spec_witness.signer.name in store.checkpoint().note) == kept
    assert ("[ledger_witness_time_ahead]" in caplog.text) != kept
    spec_witness.clock = lambda: int(time.time())
    store.append([commitment(1)], cosign=False)  # nothing stuck
    assert request_cosignatures(store) == 1


def test_a_size_said_at_a_wrong_address_is_forgotten_once_it_is_corrected(
        store: LedgerStore, spec_witness: _Witness, caplog: pytest.LogCaptureFixture) -> None:
    """A 409's size is not signed: whatever answers at the witness's address (a wrong port,
    another service) can say any. It halts the log (a restored database would fork). The
    operator corrects the address (``witnesses add`` again), which alone lifts nothing (a
    restored node must not be let go by re-adding its witness); the witness, asked at its
    right address (``checkpoint --cosign``), answers its own, and the log goes on."""
    vkey = spec_witness.signer.verifier.vkey
    store.add_witness(spec_witness.url, vkey)
    store.append([commitment(0)], cosign=False)
    assert request_cosignatures(store) == 1
    spec_witness.answers = [(409, "text/x.tlog.size", b"1000000\n")]
    store.append([commitment(1)], cosign=False)
    assert request_cosignatures(store) == 0
    with pytest.raises(LedgerError) as err:
        store.append([commitment(2)], cosign=False)
    assert err.value.code == "ledger_behind_witness" and "says it" in err.value.message["en"]
    with _serve(_handler(spec_witness)) as right:  # the witness, at its right address
        store.add_witness(right, vkey)
        with pytest.raises(LedgerError):
            store.append([commitment(2)], cosign=False)
        # it says its own size first (it cosigned 1), then cosigns: no alarm that its
        # database went back, for a size only said for it elsewhere
        spec_witness.answers = [(409, "text/x.tlog.size", b"1\n")]
        with caplog.at_level(logging.WARNING, logger="ledger.witness"):
            assert request_cosignatures(store) == 1
        assert "ledger_witness_went_back" not in caplog.text, caplog.text
        assert store.witnesses()[0][3] == store.size()  # what it cosigned, not what was said
        store.append([commitment(2)], cosign=False)
        assert request_cosignatures(store) == 1


REMOTE = "unknown log \x1b[31mledger.cxl.example/log\x1b[0m"


def _halves(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    out = []
    for record in caplog.records:
        text = record.getMessage()
        assert "\x1b" not in text  # an escape sequence never reaches the terminal
        _, _, message = text.partition("] ")
        es, sep, en = message.partition(" / ")
        assert sep, text
        out.append((es, en))
    return out


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 500])
def test_a_refusal_in_english_is_not_shown_in_the_spanish_half(
        store: LedgerStore, spec_witness: _Witness, status: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """Another implementation's reason is English (or anything): the Spanish half says what
    tlog-witness makes the status mean, in Spanish; its own words go in the English half."""
    store.add_witness(spec_witness.url, spec_witness.signer.verifier.vkey)
    store.append([commitment(0)], cosign=False)
    spec_witness.answers = [(status, "text/plain", REMOTE.encode())]
    with caplog.at_level(logging.WARNING, logger="ledger.witness"):
        assert request_cosignatures(store) == 0
    [(es, en)] = _halves(caplog)
    assert es.startswith("El testigo rechazó el checkpoint") and "unknown" not in es
    assert en.startswith("The witness refused the checkpoint") and "unknown log" in en
    # what tlog-witness makes this status mean, in each language (its own words in English)
    meaning = PasaporteError(f"ledger_witness_said_{status}" if status != 500
                             else "ledger_witness_said_other", said=client.shown(REMOTE))
    refused = LedgerError("ledger_witness_refused", status=status,
                          reason_es=meaning.message["es"], reason_en=meaning.message["en"])
    assert caplog.records[0].getMessage() == (
        f"testigo / witness {spec_witness.signer.name}: {refused.diagnostics()}")
    assert f"({status} en tlog-witness)" in es or status == 500
    assert len(spec_witness.requests) == 1  # a refusal is not sent again


@pytest.mark.parametrize(("status", "ctype", "body", "code"), [
    (409, "text/x.tlog.size", "١\n".encode(), "ledger_witness_refused"),  # not ASCII decimal
    (409, "text/x.tlog.size", b"many\n", "ledger_witness_refused"),
    (200, "text/plain", b"junk", "ledger_witness_no_cosignature"),
    (200, "text/plain", None, "ledger_witness_no_cosignature"),  # another key's cosignature
])
def test_a_witness_that_does_not_cosign_is_always_named(
        store: LedgerStore, spec_witness: _Witness, status: int, ctype: str,
        body: bytes | None, code: str, caplog: pytest.LogCaptureFixture) -> None:
    """``checkpoint --cosign`` says "above, why not the others": a witness that answered
    something other than a cosignature that verifies must be among those named."""
    store.add_witness(spec_witness.url, spec_witness.signer.verifier.vkey)
    store.append([commitment(0)], cosign=False)
    if body is None:
        other = _Witness(generate_signer(spec_witness.signer.name, COSIGNATURE_V1))
        body = other.cosign(store.checkpoint().checkpoint.body())
    spec_witness.answers = [(status, ctype, body)]
    with caplog.at_level(logging.WARNING, logger="ledger.witness"):
        assert request_cosignatures(store) == 0
    assert len(spec_witness.requests) == 1
    [(es, en)] = _halves(caplog)
    assert f"[{code}]" in caplog.records[0].getMessage()
    assert es != en


@pytest.fixture
def live_witness(tmp_path: Path) -> Iterator[tuple[LedgerStore, str]]:
    """Another node (its own database and witness key), served over HTTP, witnessing nobody."""
    home = tmp_path / "other"
    init_home(home, "ledger.other.example/log")
    with LedgerStore.open(home, passphrase=PASSPHRASE) as other:
        server = make_server("127.0.0.1", 0, create_app({"TESTING": True}, store=other),
                             threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield other, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()


def test_our_witness_says_why_in_both_languages(
        store: LedgerStore, live_witness: tuple[LedgerStore, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A witness of ours refuses in JSON with each language's message: both reach the
    operator, each in its half."""
    other, url = live_witness
    assert other.witness is not None
    store.add_witness(url, other.witness.verifier.vkey)
    store.append([commitment(0)], cosign=False)
    with caplog.at_level(logging.WARNING, logger="ledger.witness"):
        assert request_cosignatures(store) == 0
    [(es, en)] = _halves(caplog)
    texts = message_catalog()["ledger_unknown_log"]
    assert es.endswith(texts["es"].format(origin=store.origin))
    assert en.endswith(texts["en"].format(origin=store.origin))


def test_a_refusal_when_pulling_reads_in_each_language(store: LedgerStore) -> None:
    """``ledger witness``: the log's proof does not verify; the operator reads why in
    Spanish and in English (it used to be the English reply in both halves)."""
    witness_log(store, LOG.verifier.vkey)
    answers = {"/checkpoint": _note(2).encode(),
               "/proof/consistency": b'{"old": 1, "new": 2, "proof": ["'
               + base64.b64encode(bytes(32)) + b'"]}'}

    def handle(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, "text/plain", answers[h.path.split("?")[0]])

    with _serve(handle) as url:
        witness_log(store, LOG.verifier.vkey, url)
        cp, _ = pull(store, LOG.name)  # the first tree: nothing to prove
        assert cp.size == 2
        answers["/checkpoint"] = _note(3).encode()
        answers["/proof/consistency"] = (b'{"old": 2, "new": 3, "proof": ["'
                                         + base64.b64encode(bytes(32)) + b'"]}')
        with pytest.raises(LedgerError) as caught:
            pull(store, LOG.name)
        assert caught.value.code == "ledger_witness_refused"
        inconsistent = message_catalog()["ledger_witness_inconsistent"]
        assert caught.value.message["es"].endswith(inconsistent["es"].format(old=2, size=3))
        assert caught.value.message["en"].endswith(inconsistent["en"].format(old=2, size=3))

        # the address now serves another log: said so, nothing cosigned
        answers["/checkpoint"] = _note(3, signer=generate_signer("ledger.other/log")).encode()
        with pytest.raises(LedgerError) as caught:
            pull(store, LOG.name)
        assert caught.value.code == "ledger_witness_wrong_log"


def test_a_log_whose_key_is_named_otherwise_than_its_origin_is_told_so() -> None:
    """C2SP tlog-checkpoint: the key name SHOULD match the origin. A witness here knows a log by
    that one name, so it refuses one that differs, saying so, not "another log"."""
    signer = generate_signer("indep-log-key")
    body = Checkpoint("indep.example/log", 2, _root(2)).body()
    answers = {"/checkpoint": Note(body, (signer.sign(body),)).encode().encode()}

    def handle(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, "text/plain", answers[h.path.split("?")[0]])

    with _serve(handle) as url:
        with pytest.raises(LedgerError) as caught:
            check_log(url, signer.verifier.vkey)
        assert caught.value.code == "ledger_witness_key_name"
        for text in caught.value.message.values():
            assert "indep.example/log" in text and "indep-log-key" in text
        # a key of that name that did not sign it: another log at that address, as before
        with pytest.raises(LedgerError) as caught:
            check_log(url, generate_signer("indep-log-key").verifier.vkey)
        assert caught.value.code == "ledger_witness_wrong_log"


def test_a_witness_set_up_again_resumes_from_the_cosignatures_on_its_record(
        witness: FlaskClient, store: LedgerStore) -> None:
    """A node restored from a mirror's database holds no witness state; ``ledger witness``
    run again started the other city's log at 0, trusting on first use whatever it was shown
    next. Its own public record says what it cosigned: it goes on from there."""
    from sqlalchemy import delete

    assert witness.post("/add-checkpoint", data=_request(0, [], _note(4))).status_code == 200
    assert witness.post("/add-checkpoint",
                        data=_request(4, _proof(4, 7), _note(7))).status_code == 200
    store.append([commitment(0)], cosign=False)  # the cosignatures given go on the record
    with store.engine.begin() as conn:  # what a mirror's database does not hold
        conn.execute(delete(t.witnessed_logs))
        conn.execute(delete(t.witness_given))
    witness_log(store, LOG.verifier.vkey)
    with store.engine.connect() as conn:
        assert conn.execute(select(t.witnessed_logs.c.size)).scalar_one() == 7
    # a first tree is no longer taken: the log is told the size it was cosigned at
    resp = witness.post("/add-checkpoint", data=_request(0, [], _note(9, root=b"\x02" * 32)))
    assert (resp.status_code, resp.get_data()) == (409, b"7\n")
    resp = witness.post("/add-checkpoint", data=_request(7, _proof(7, 9), _note(9)))
    assert resp.status_code == 200
