"""Input built to break parsers: JSON nested without end, lone surrogates, endless or huge or
non-UTF-8 files. Each is the same typed error as other bad input (CLI exit 1, HTTP 400), the log
unchanged; never a RecursionError, a UnicodeError or an unbounded read."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import cbor2
import pytest
from flask.testing import FlaskClient

from credential.errors import LedgerError, MalformedInput, StoreError
from credential.note import Checkpoint, Note, generate_signer
from ledger import cli, client
from ledger.entries import Notice, encode_record
from ledger.http import MAX_POST_ENTRIES, MAX_REQUEST
from ledger.keys import load_config
from ledger.store import MAX_BATCH, LedgerStore
from ledger.witness import MAX_BODY
from tests.ledger.conftest import REPO, Server, child_env, run_cli
from tests.ledger.helpers import commitment, reply, serving

DEEP = b"[" * 30_000 + b"]" * 30_000  # within the line bound: the parser's depth is what fails
DEEPER = b"[" * 100_000 + b"]" * 100_000
SURROGATE = b'{"type": "notice", "text": "\\ud800"}'


def _append(home: Path, path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert run_cli("append", "--file", str(path), "--home", str(home)) == 1
    err = capsys.readouterr().err
    assert err.startswith("[") and "Traceback" not in err
    return err


def _token(store: LedgerStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.add_token('issuer')}",
            "Content-Type": "application/json"}


@pytest.mark.parametrize(("body", "code"), [
    (DEEP + b"\n", "[ledger_jsonl_line_invalid] La línea 1 no se puede leer: JSON anidado"),
    (json.dumps(commitment(1)).encode() + b"\n" + DEEP + b"\n",
     "[ledger_jsonl_line_invalid] La línea 2"),
    (b'{"type": "notice", "text": "x", "text": "y"}\n',
     "[ledger_jsonl_line_invalid] La línea 1 no se puede leer: clave repetida 'text'"),
    (b'{"type": "notice", "text": "x"\n',
     "[ledger_jsonl_line_invalid] La línea 1 no se puede leer: no es JSON válido"),
    (b'{"type": "status_changed", "index": ' + b"9" * 4301 + b'}\n',
     "[ledger_jsonl_line_invalid] La línea 1 no se puede leer: número de más de 100 dígitos"),
    (DEEPER, "[ledger_jsonl_line_too_long] La línea 1 pasa de 65536"),
    (SURROGATE + b"\n", "[ledger_bad_line] Línea 1: Campo text inválido: no es texto Unicode"),
    (b'{"type": "bundle_published", "city": "\\udfff", "version": 1, "digest": "'
     + b"A" * 43 + b'"}', "[ledger_bad_line] Línea 1: Campo city inválido"),
    (b"\xc3(\n", "[ledger_jsonl_not_utf8] La línea 1 no es texto UTF-8"),
    (b"\xff\xfe\x00\xd8\n\x00", "[ledger_jsonl_not_utf8] La línea 1"),  # UTF-16, a lone half
    (b"\n" + json.dumps(commitment(1)).encode() + b"\n\xc3(\n",
     "[ledger_jsonl_not_utf8] La línea 3"),
], ids=["deep", "deep-line-2", "duplicate-key", "syntax", "long-number", "deeper-than-a-line",
        "surrogate", "surrogate-name", "not-utf8", "not-utf16", "not-utf8-line-3"])
def test_append_file_refuses_hostile_lines(body: bytes, code: str, home: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(body)
    assert _append(home, path, capsys).startswith(code)
    with LedgerStore.open(home) as store:
        assert store.size() == 0


def _limit_memory() -> None:
    # an unbounded read fails fast here instead of exhausting the machine running the tests
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_append_file_reads_dev_zero_in_bounded_memory(home: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ledger", "append", "--file", "/dev/zero",
                           "--home", str(home)], capture_output=True, text=True,
                          env=child_env(), cwd=REPO, timeout=60, preexec_fn=_limit_memory)
    assert proc.returncode == 1
    assert proc.stderr.startswith("[ledger_jsonl_line_too_long]"), proc.stderr[-500:]


def test_append_file_has_a_size_bound(home: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    line = json.dumps(commitment(1)).encode() + b"\n"
    monkeypatch.setattr(cli, "MAX_FILE", 10 * len(line))
    path = tmp_path / "big.jsonl"
    path.write_bytes(line * 11)
    err = _append(home, path, capsys)
    assert err.startswith("[ledger_jsonl_too_large]") and "line 11" in err
    path.write_bytes(line * 10)  # exactly at the bound is accepted
    assert run_cli("append", "--file", str(path), "--home", str(home)) == 0


def test_append_file_of_too_many_entries_says_more_than_not_a_count(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading stops at the entry past the batch limit (memory stays bounded): the refusal says
    "more than" and where, not that entry's number as the file's size (always 10001)."""
    monkeypatch.setattr(cli, "MAX_BATCH", 5)
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(commitment(i)) + "\n" for i in range(20)))
    err = _append(home, path, capsys)
    assert err.startswith("[ledger_jsonl_too_many]") and "more than 5 entries" in err, err
    assert "line 6" in err and "más de 5 entradas" in err
    with LedgerStore.open(home) as store:
        assert store.size() == 0


def test_the_bounds_fit_the_entries() -> None:
    """The file bound allows as many bytes per entry as POST /entries; the line bound holds the
    longest valid entry in its most verbose JSON form (every character escaped)."""
    assert cli.MAX_FILE == MAX_BATCH // MAX_POST_ENTRIES * MAX_REQUEST
    longest = json.dumps({"type": "notice", "text": "😀" * 2000}, ensure_ascii=True)
    assert 2000 * 12 < len(longest) < cli.MAX_LINE


def test_the_longest_valid_line_is_accepted(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"type": "notice", "text": "😀" * 2000}, ensure_ascii=True)
                    + "\r\n", encoding="ascii")
    assert run_cli("append", "--file", str(path), "--home", str(home)) == 0
    with LedgerStore.open(home) as store:
        assert store.size() == 1


def test_a_file_powershell_wrote_is_read_as_its_text(home: Path, tmp_path: Path) -> None:
    """PowerShell 5's ``>`` writes UTF-16 with its byte order mark, as claims and batch files
    may be: it was refused as "line 1 is not UTF-8"."""
    path = tmp_path / "ps.jsonl"
    lines = [{"type": "notice", "text": "Comité binacional: sesión de llaves"}, commitment(1)]
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\r\n" for x in lines),
                    encoding="utf-16")
    assert run_cli("append", "--file", str(path), "--home", str(home)) == 0
    with LedgerStore.open(home) as store:
        assert store.size() == 2


def test_append_from_stdin_refuses_non_utf8(home: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ledger", "append", "--file", "-", "--home",
                           str(home)], input=b"\xff\n", capture_output=True, env=child_env(),
                          cwd=REPO, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("[ledger_jsonl_not_utf8]"), proc.stderr


@pytest.mark.parametrize(("body", "code"), [
    (DEEP, "ledger_bad_json"), (DEEPER, "ledger_bad_json"),
    (b'{"entries": [' + SURROGATE + b"]}", "ledger_bad_field"),
    (b'{"entries": [{"type": "notice", "\\ud800": 1}]}', "ledger_bad_entry"),
    # valid JSON in another Unicode encoding, which json.loads would have taken: not UTF-8
    ('{"entries": [{"type": "notice", "text": "x"}]}'.encode("utf-16"), "ledger_bad_json"),
    ('{"entries": [{"type": "notice", "text": "x"}]}'.encode("utf-32-le"), "ledger_bad_json"),
    # valid JSON, past any field: the number named, not "the body is not valid JSON"
    (b'{"entries": [{"type": "status_changed", "index": ' + b"9" * 4301 + b"}]}",
     "ledger_bad_body"),
], ids=["deep", "deeper", "surrogate", "surrogate-key", "utf-16", "utf-32", "long-number"])
def test_post_entries_refuses_hostile_json(body: bytes, code: str, client: FlaskClient,
                                           store: LedgerStore) -> None:
    before = client.get("/checkpoint").get_data()
    resp = client.post("/entries", data=body, headers=_token(store))
    assert resp.status_code == 400, resp.data[:200]
    err = resp.get_json()
    assert err["code"] == code, err
    assert err["message"]["es"] and err["message"]["en"]
    assert store.size() == 0 and client.get("/checkpoint").get_data() == before


def test_check_bundle_refuses_a_deep_trust_root(home: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "deep.json").write_bytes(DEEP)  # under the root file's size bound: depth fails
    capsys.readouterr()
    assert run_cli("check-bundle", "--bundle", str(tmp_path / "deep.json"), "--trust-root",
                   str(tmp_path / "deep.json"), "--home", str(home)) == 1
    assert capsys.readouterr().err.startswith("[root_invalid]")
    (tmp_path / "deeper.json").write_bytes(DEEPER)  # over it: not even read
    assert run_cli("check-bundle", "--bundle", str(tmp_path / "deep.json"), "--trust-root",
                   str(tmp_path / "deeper.json"), "--home", str(home)) == 2
    assert capsys.readouterr().err.startswith("[file_too_large]")


def test_deep_settings_file_is_bad_config(home: Path) -> None:
    (home / "ledger.json").write_bytes(DEEPER)
    with pytest.raises(StoreError) as caught:
        load_config(home)
    assert caught.value.code == "ledger_bad_config"


_SIGNER = generate_signer("hostile.example/log")
# A checkpoint the log key really signed, of a 3-record tree: a mirror trusts it and goes on to
# read the records, which is where the hostile answers wait.
_SIGNED_CHECKPOINT = Note(Checkpoint(_SIGNER.name, 3, bytes(32)).body(), ()).with_signatures(
    [_SIGNER.sign(Checkpoint(_SIGNER.name, 3, bytes(32)).body())]).encode().encode()


@pytest.fixture
def hostile_node() -> Iterator[tuple[str, dict[str, bytes]]]:
    """Another "node" on 127.0.0.1 answering each path with what the test puts in its dict
    (``""`` for every other path): JSON nested past any parser's depth, bytes that are not
    UTF-8, the right shapes with the wrong types inside."""
    answers: dict[str, bytes] = {"": DEEPER}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reply(self, 200, "application/json", answers.get(self.path.split("?")[0], answers[""]))

        def log_message(self, *_args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, answers


def _page(leaf: bytes) -> bytes:
    """An ``/entries`` page of one record, well formed but for what the record holds."""
    return json.dumps([{"index": 0, "leaf": base64.b64encode(leaf).decode()}]).encode()


def _chain(count: int) -> bytes:
    """An ``/entries`` page of ``count`` well-formed records that chain, of another tree than
    the one the checkpoint signs."""
    leaves, prev = [], bytes(32)
    for i in range(count):
        leaf = encode_record(i, prev, 1_700_000_000_000 + i, Notice(text=f"n{i}"))
        leaves.append({"index": i, "leaf": base64.b64encode(leaf).decode()})
        prev = hashlib.sha256(b"\x00" + leaf).digest()
    return json.dumps(leaves).encode()


REMOTE, CHAIN = "ledger_remote_error", "ledger_chain_broken"
# Each answer, and the error a mirror reading it as its records must stop with.
_HOSTILE: list[tuple[bytes, str]] = [
    (DEEPER, REMOTE),
    (b"\xff\xfe not UTF-8 \xc3(", REMOTE),
    (b"null", REMOTE),
    (b'"a string"', REMOTE),
    (b'{"proof": [1, 2]}', REMOTE),
    (b'{"proof": "AAAA"}', REMOTE),
    (b'{"proof": ["not base64!"]}', REMOTE),
    (b'[{"index": 0, "leaf": 5}]', REMOTE),
    (b'[{"index": 1, "leaf": "AAAA"}]', REMOTE),
    (b'[{"index": 0, "leaf": "!!"}]', REMOTE),
    (b'[{"index": 0, "leaf": "AAAA"}, {"index": 1, "leaf": "2Q=="}, {"index": 2}]', REMOTE),
    (b"[7]", REMOTE),
    (b'[{"index": 0, "leaf": "AAAA"}, {"index": 1, "leaf": "AAAA"}]', CHAIN),  # more than asked
    # well-formed pages of one record, the record junk (it chains: then record 1 is missing)
    (_page(cbor2.dumps([0, bytes(32), 1, "notice", {0: None}])), REMOTE),  # a number key
    (_page(cbor2.dumps([False, bytes(32), 1, "notice", {"text": "x"}])), CHAIN),  # seq: false
    (_page(cbor2.dumps([2**64, bytes(32), 1, "notice", {"text": "x"}])), CHAIN),  # a bignum
    (("origin\n1\n" + "A" * 43 + "=\n\n\u2014 origin AAAA\n").encode(), REMOTE),
    (b"\n\n\n", REMOTE),
    # three records that chain, of another tree than the signed one
    (_chain(3), "ledger_mirror_mismatch"),
]
_HOSTILE_ANSWERS = [answer for answer, _ in _HOSTILE]
# the answers that are well-formed ``/entries`` pages of one record (its bytes unchecked there)
_ONE_RECORD_PAGES = {13, 14, 15}


@pytest.mark.parametrize("number", range(len(_HOSTILE)))
def test_whatever_another_node_answers_is_a_remote_error(
        hostile_node: tuple[str, dict[str, bytes]], number: int) -> None:
    """A mirror, a witness or prove-bundle reads another city's node, which it does not trust:
    whatever comes back is a typed remote error, never an exception nobody expects. None of
    these answers is a proof or a checkpoint; only JSON reads as JSON, and only a page of one
    record with its index and base64 leaf reads as that page."""
    url, answers = hostile_node
    answer = _HOSTILE_ANSWERS[number]
    answers[""] = answer

    def remote_error(call: Callable[[], object]) -> str:
        with pytest.raises(LedgerError) as caught:
            call()
        assert caught.value.code == "ledger_remote_error", caught.value
        assert url in caught.value.message["en"] and url in caught.value.message["es"]
        return str(caught.value.detail["status"])

    try:
        parsed = json.loads(answer)
    except (ValueError, RecursionError):  # not JSON, or deeper than a parser goes
        assert remote_error(lambda: client.get_json(f"{url}/entries?start=0&end=1")) == \
            "bad JSON"
    else:
        assert client.get_json(f"{url}/entries?start=0&end=1") == parsed
    if number in _ONE_RECORD_PAGES:
        assert client.entries(url, 0, 1) == [base64.b64decode(json.loads(answer)[0]["leaf"])]
    else:
        remote_error(lambda: client.entries(url, 0, 1))
    remote_error(lambda: client.consistency_proof(url, 1, 2))
    remote_error(lambda: client.inclusion_proof(url, 0, 2))
    remote_error(lambda: client.checkpoint(url))


@pytest.mark.parametrize(("answer", "code"), _HOSTILE, ids=range(len(_HOSTILE)))
def test_mirroring_a_hostile_node_is_a_typed_error(hostile_node: tuple[str, dict[str, bytes]],
                                                   answer: bytes, code: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The checkpoint checks out; the records behind it are junk: the mirror stops with a typed
    error and keeps nothing it could not check."""
    url, answers = hostile_node
    answers["/checkpoint"], answers[""] = _SIGNED_CHECKPOINT, answer
    mirror_home = tmp_path / "mirror"
    capsys.readouterr()
    assert run_cli("mirror", "--from", url, "--log-key", _SIGNER.verifier.vkey, "--unwitnessed",
                   "--home", str(mirror_home)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"[{code}]"), err
    with LedgerStore.open(mirror_home) as store:
        assert store.size() == 0
        with pytest.raises(LedgerError) as caught:  # nothing verified: no checkpoint kept
            store.checkpoint()
        assert caught.value.code == "ledger_no_checkpoint"


def test_surrogates_never_reach_the_store(store: LedgerStore) -> None:
    with pytest.raises(MalformedInput) as caught:
        store.append([{"type": "notice", "text": "a\udc80b"}])
    assert caught.value.code == "ledger_bad_field"
    assert store.size() == 0


@pytest.mark.parametrize("url", ["notaurl", "http://[::1"])
def test_an_address_that_is_no_url_is_unreachable_not_a_traceback(url: str) -> None:
    with pytest.raises(LedgerError) as raised:
        client.post(url, b"{}")
    assert raised.value.code == "ledger_unreachable"
    with pytest.raises(LedgerError) as raised:
        client.get_text(url)
    assert raised.value.code == "ledger_unreachable"


def _post_chunked(url: str, token: str, chunks: Iterator[bytes]) -> tuple[int, dict[str, Any]]:
    """``POST /entries`` with ``Transfer-Encoding: chunked`` (no Content-Length: nothing to
    check before reading), as a real client on a real socket sends it."""
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=30)
    try:
        # the node may answer and close before reading all of a body it refuses
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("POST", "/entries", body=chunks, encode_chunked=True, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_a_chunked_body_over_the_limit_is_refused_not_cut(
        sqlite_home: Path, serve: Callable[..., Server]) -> None:
    """A chunked body stops at the app's limit as if it ended there: valid JSON followed by
    padding past 1 MiB must be refused whole (413), not cut to its first MiB and appended."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("issuer")
    node = serve(sqlite_home)
    body = json.dumps({"entries": [commitment(1)]}).encode()

    def padded() -> Iterator[bytes]:
        yield body
        for _ in range(MAX_REQUEST // 65536 + 1):
            yield b" " * 65536

    status, err = _post_chunked(node.url, token, padded())
    assert status == 413 and err["code"] == "ledger_body_too_large", err
    assert err["message"]["es"] and err["message"]["en"]
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 0
    status, answer = _post_chunked(node.url, token, iter([body, b" " * 1000]))  # within it
    assert status == 201 and answer["end"] == 1, answer


def test_append_file_saved_with_a_byte_order_mark(home: Path, tmp_path: Path) -> None:
    """An editor on Windows starts the file with a BOM: no part of the first entry."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(commitment(1)).encode() + b"\r\n")
    assert run_cli("append", "--file", str(path), "--home", str(home)) == 0
    with LedgerStore.open(home) as store:
        assert store.size() == 1


def test_a_client_that_goes_silent_is_let_go(sqlite_home: Path,
                                             serve: Callable[..., Server]) -> None:
    """Half a request, then nothing: ``serve`` closes the connection after --client-timeout
    seconds instead of holding a thread and a file descriptor for it for ever, and answers
    the next client as ever."""
    node = serve(sqlite_home, "--client-timeout", "1")
    parts = urllib.parse.urlsplit(node.url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as silent:
        silent.sendall(b"GET /checkpoint HTTP/1.1\r\n")  # no headers, no end: then silence
        assert silent.recv(1024) == b""  # closed by the node, long before our 30 s
    with urllib.request.urlopen(f"{node.url}/checkpoint", timeout=30) as answer:
        assert answer.status == 200


def test_a_body_cut_short_by_silence_is_named_and_logs_no_traceback(
        sqlite_home: Path, serve: Callable[..., Server]) -> None:
    """Headers promising 100 bytes, 6 of them, then silence: the answer named no cause
    ("Request refused (400)"), and werkzeug, draining the socket after it, wrote a traceback
    into the node's log for every such client."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("oficina")
    node = serve(sqlite_home, "--client-timeout", "1")
    parts = urllib.parse.urlsplit(node.url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(b"POST /entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\nAuthorization: Bearer " + token.encode()
                     + b"\r\n\r\n{\"entr")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    error = json.loads(body)
    assert error["code"] == "ledger_body_incomplete" and "Content-Length" in error["message"]["en"]
    with urllib.request.urlopen(f"{node.url}/checkpoint", timeout=30) as served:
        assert served.status == 200
    node.proc.terminate()
    node.proc.wait(timeout=30)
    assert node.proc.stderr is not None
    log = node.proc.stderr.read()
    assert "Traceback" not in log and "Error on request" not in log, log
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 0


def _chunked(url: str, path: str, token: str, framing: bytes) -> tuple[int, dict[str, Any],
                                                                        float]:
    """``framing`` as a chunked body sent on a raw socket, which then stays open and silent (a
    client awaiting its answer); the status, the JSON error and the seconds until it came. The
    answer is read to its Content-Length, not to the connection's end."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as conn:
        started = time.monotonic()
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .encode() + framing)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := conn.recv(65536)):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(body) < length and (chunk := conn.recv(65536)):
            body += chunk
        return int(head.split(b" ")[1]), json.loads(body), time.monotonic() - started


ENTRY = json.dumps({"entries": [commitment(1)]}).encode()


@pytest.mark.parametrize("framing", [
    b"ZZ\r\n{}\r\n0\r\n\r\n",  # a size that is no number
    b"-5\r\n{}\r\n0\r\n\r\n",  # nor negative
    b"0x2\r\n{}\r\n0\r\n\r\n",  # nor a number as Python writes it (int(…, 16) takes these)
    b"+2\r\n{}\r\n0\r\n\r\n",
    b"1_0\r\n{}\r\n0\r\n\r\n",
    b"\r\n{}\r\n0\r\n\r\n",  # nor nothing
    b"2\r\n{}XX\r\n0\r\n\r\n",  # a chunk longer than it says
    b"5" * 5000 + b"\r\n",  # a size line no client writes, not waited on to its end
    b"%x\r\n%s\r\n0\r\nno colon\r\n\r\n" % (len(ENTRY), ENTRY),  # a trailer no field
], ids=["letters", "negative", "0x", "plus", "underscore", "empty", "overlong-chunk",
        "endless-size", "bad-trailer"])
def test_a_malformed_chunked_body_is_named_not_taken_for_one_cut_short(
        sqlite_home: Path, serve: Callable[..., Server], framing: bytes) -> None:
    """Framing that is not chunked encoding was answered ``ledger_body_incomplete`` (the
    client "stopped sending before its Content-Length… send it again"): it has no
    Content-Length, did not stop, and sending it again fails again. Its own refusal, at once."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("oficina")
    node = serve(sqlite_home, "--client-timeout", "10")
    status, error, seconds = _chunked(node.url, "/entries", token, framing)
    assert (status, error["code"]) == (400, "ledger_body_chunked_invalid"), error
    assert "chunked" in error["message"]["es"] and "chunked" in error["message"]["en"]
    assert seconds < 5  # not the client's 10 s of grace: nothing more was awaited
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 0


@pytest.mark.parametrize(("path", "declared"), [
    ("/entries", b"F" * 20),  # 2⁸⁰ − 1 bytes
    ("/entries", b"%x" % (MAX_REQUEST + 1)),
    ("/entries", b"%x\r\n%s\r\n%x" % (len(ENTRY), ENTRY, MAX_REQUEST)),  # with the first
    ("/add-checkpoint", b"%x" % (MAX_BODY + 1)),  # the endpoint's own limit
], ids=["huge", "one-past", "second-chunk", "add-checkpoint"])
def test_a_chunk_declaring_more_than_the_limit_is_refused_at_once(
        sqlite_home: Path, serve: Callable[..., Server], path: str, declared: bytes) -> None:
    """A chunk's size line says how much is coming: past the body limit it is 413 then, not a
    wait for bytes the node would refuse anyway (the client's whole timeout, then
    ``ledger_body_incomplete``)."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("oficina")
    node = serve(sqlite_home, "--client-timeout", "10")
    status, error, seconds = _chunked(node.url, path, token, declared + b"\r\n{}")
    assert (status, error["code"]) == (413, "ledger_body_too_large"), error
    limit = MAX_BODY if path == "/add-checkpoint" else MAX_REQUEST
    assert f"{limit}" in error["message"]["en"], error
    assert seconds < 5
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 0


def test_chunked_bodies_are_read_as_the_standard_writes_them(
        sqlite_home: Path, serve: Callable[..., Server]) -> None:
    """Reading the framing here takes all RFC 9112 allows: chunk extensions, a bare LF, hex in
    either case with leading zeros, trailer fields; and a chunked body cut short by the client's
    silence is still ``ledger_body_incomplete``."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("oficina")
    node = serve(sqlite_home, "--client-timeout", "1")
    first, rest = ENTRY[:10], ENTRY[10:]
    framing = (b"%x;name=value ; other\r\n%s\r\n00%X\n%s\n000\r\nX-Sum: 1\r\n\r\n"
               % (len(first), first, len(rest), rest))
    status, answer, _ = _chunked(node.url, "/entries", token, framing)
    assert (status, answer.get("end")) == (201, 1), answer
    status, error, _ = _chunked(node.url, "/entries", token, b"%x\r\n%s" % (100, ENTRY[:10]))
    assert (status, error["code"]) == (400, "ledger_body_incomplete"), error
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 1
    node.proc.terminate()
    node.proc.wait(timeout=30)
    assert node.proc.stderr is not None
    log = node.proc.stderr.read()
    assert "Traceback" not in log and "Error on request" not in log, log


def test_what_the_http_layer_refuses_is_the_apis_json_error(sqlite_home: Path,
                                                            serve: Callable[..., Server]) -> None:
    """A request line or headers too long, or no HTTP at all, are refused before the API sees
    them: still its JSON error, with a code and both languages, not an English HTML page."""
    node = serve(sqlite_home)
    parts = urllib.parse.urlsplit(node.url)
    assert parts.hostname is not None and parts.port is not None
    requests = {414: b"GET /entries?start=0&end=1&x=" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
                431: b"GET /checkpoint HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
                400: b"GET /checkpoint HTTP/7\r\n\r\n",
                505: b"GET /checkpoint HTTP/2.0\r\n\r\n"}
    for status, request in requests.items():
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
            conn.sendall(request)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        # a version it does not know (400, 505) was answered as to HTTP/0.9, a body alone,
        # which clients took for no HTTP at all: a status line and headers, as for the others
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 ") and head.split(b" ")[1] == str(status).encode(), head
        assert b"Content-Type: application/json" in head, head
        error = json.loads(body)
        assert error["code"] == "ledger_http_unreadable", error
        assert f"({status}: " in error["message"]["es"], error
        assert f"({status}: " in error["message"]["en"], error
        if status == 414:
            assert "demasiado larga" in error["message"]["es"], error
    # (a parameter /checkpoint does not take: refused, and logged as inertly as any request)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{node.url}/checkpoint?\x1b[31m=1".replace("\x1b", "%1B"),
                               timeout=30)
    assert refused.value.code == 400
    refused.value.close()
    node.proc.terminate()
    node.proc.wait(timeout=30)
    assert node.proc.stderr is not None
    log = node.proc.stderr.read()  # written to a pipe, as to a file or a service's journal
    assert '"GET /checkpoint?%1B[31m=1 HTTP/1.1" 400' in log, log
    assert "\x1b" not in log, log  # no colours, and nothing a client sent acts on a terminal


@pytest.mark.parametrize("headers", [
    b"Content-Length: 5\r\nContent-Length: %d\r\n",  # a proxy reading the first sees 5 bytes
    b"Content-Length: %d\r\nContent-Length: 5\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: abc\r\n",
    b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n",
], ids=["two-last-right", "two-first-right", "negative", "letters", "with-chunked"])
def test_a_body_length_said_twice_or_wrong_is_refused_and_appends_nothing(
        sqlite_home: Path, serve: Callable[..., Server], headers: bytes) -> None:
    """Two Content-Length values, the node read the last and appended (201): a proxy in front
    reading the first would see another request in the same bytes (request smuggling)."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("oficina")
    node = serve(sqlite_home)
    parts = urllib.parse.urlsplit(node.url)
    assert parts.hostname is not None and parts.port is not None
    framing = headers.replace(b"%d", str(len(ENTRY)).encode())
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(b"POST /entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + framing + b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
                     + ENTRY)
        answer = b""
        while chunk := conn.recv(65536):  # read to the end: the node closes the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    error = json.loads(body)
    assert error["code"] == "ledger_http_unreadable", error
    assert "Content-Length" in error["message"]["en"] and "contradictorio" in error["message"]["es"]
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 0


@pytest.mark.parametrize(("coding", "status"), [
    (b"chunked, gzip", 400), (b"gzip, chunked", 501), (b"chunked, identity", 400),
    (b"chunked\r\nTransfer-Encoding: gzip", 400)])
def test_a_transfer_coding_other_than_chunked_alone_is_refused(
        sqlite_home: Path, serve: Callable[..., Server], coding: bytes, status: int) -> None:
    """``chunked, gzip`` was dechunked and the rest ignored (RFC 9112 §6.3 says 400: a proxy in
    front that follows it reads another body in the same bytes); an unknown coding is 501."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("oficina")
    node = serve(sqlite_home)
    parts = urllib.parse.urlsplit(node.url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as conn:
        conn.sendall(b"POST /entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\nTransfer-Encoding: "
                     + coding + b"\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(ENTRY), ENTRY))
        answer = b""
        while chunk := conn.recv(65536):  # and the connection is closed after the answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert int(head.split(b" ")[1]) == status, head
    assert json.loads(body)["code"] == "ledger_http_unreadable"
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 0


def test_a_token_in_the_query_is_refused_and_never_logged(
        sqlite_home: Path, serve: Callable[..., Server]) -> None:
    """``POST /entries?token=…`` went through in silence, and the node's log kept the token in
    plain text (journald, log shippers), on a 201 or a 401 alike."""
    with LedgerStore.open(sqlite_home) as store:
        token = store.add_token("oficina")
    node = serve(sqlite_home)
    for auth in ({"Authorization": f"Bearer {token}"}, {}):
        request = urllib.request.Request(f"{node.url}/entries?token={token}", data=ENTRY,
                                         headers={"Content-Type": "application/json", **auth})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        with refused.value:  # its connection closed now, not whenever it is collected
            assert refused.value.code in (400, 401)
            if auth:
                assert json.loads(refused.value.read())["code"] == "ledger_param_unknown"
    node.proc.terminate()
    node.proc.wait(timeout=30)
    assert node.proc.stderr is not None
    log = node.proc.stderr.read()
    assert "POST /entries?token=[…]" in log and token not in log and token[3:] not in log, log
    with LedgerStore.open(sqlite_home) as store:
        assert store.size() == 0
