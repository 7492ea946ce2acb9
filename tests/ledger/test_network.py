"""Two real ``ledger serve`` processes witnessing each other, split views refused, mirrors,
and a log's witnesses (one that hangs does not hold an append's answer)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import stat
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from credential import merkle
from credential.errors import LedgerError
from credential.keys import b64url
from credential.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    generate_signer,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
)
from ledger import client
from ledger import schema as t
from ledger.crosscheck import read_public_record
from ledger.entries import (
    Notice,
    WitnessCosignature,
    decode_record,
    encode_record,
    entry_from_json,
)
from ledger.http import MAX_PAGE
from ledger.keys import load_config
from ledger.mirror import mirror
from ledger.store import LedgerStore, make_engine, migrate
from ledger.witness import COSIGN_WAIT
from tests.ledger.conftest import PASSPHRASE, Server, init_home, run_cli
from tests.ledger.helpers import commitment, http_entries


def _post_entries(url: str, token: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    req = urllib.request.Request(f"{url}/entries", data=json.dumps({"entries": entries}).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201
        body: dict[str, Any] = json.loads(resp.read())
        return body


def _witness_body(old: int, proof: list[bytes], note: str) -> bytes:
    lines = "".join(base64.b64encode(p).decode() + "\n" for p in proof)
    return f"old {old}\n{lines}\n{note}".encode()


@pytest.fixture
def cities(tmp_path: Path, serve: Callable[..., Server]) -> dict[str, Any]:
    a, b = tmp_path / "cdmx", tmp_path / "la"
    init_home(a, "ledger.cdmx.example/log")
    init_home(b, "ledger.la.example/log")
    ca, cb = load_config(a), load_config(b)
    sa, sb = serve(a), serve(b)
    # each city witnesses the other, and each log asks the other city's witness
    assert run_cli("witness", "--log", sa.url, "--log-key", ca.log_vkey, "--home", str(b)) == 0
    assert run_cli("witness", "--log", sb.url, "--log-key", cb.log_vkey, "--home", str(a)) == 0
    assert cb.witness_vkey and ca.witness_vkey
    assert run_cli("witnesses", "add", "--url", sb.url, "--key", cb.witness_vkey,
                   "--home", str(a)) == 0
    assert run_cli("witnesses", "add", "--url", sa.url, "--key", ca.witness_vkey,
                   "--home", str(b)) == 0
    with LedgerStore.open(a) as store:
        token = store.add_token("issuer-cdmx")
    return {"a": a, "b": b, "ca": ca, "cb": cb, "sa": sa, "sb": sb, "token": token}


def test_cosigned_checkpoints_and_split_view(cities: dict[str, Any], tmp_path: Path) -> None:
    sa, sb, ca, cb = cities["sa"], cities["sb"], cities["ca"], cities["cb"]
    log_key = parse_verifier_key(ca.log_vkey)
    witness_key = parse_verifier_key(cb.witness_vkey)
    for batch in (http_entries(), [commitment(i) for i in range(1, 6)]):
        body = _post_entries(sa.url, cities["token"], batch)
        _, ok = open_note(body["checkpoint"], [log_key, witness_key])
        assert ok == [log_key, witness_key]  # the log's signature and the other city's
    served = client.get_text(f"{sa.url}/checkpoint")
    note, ok = open_note(served, [log_key, witness_key])
    assert witness_key in ok
    cp = parse_checkpoint(note.text)
    # On the public record, each at the head of the next batch: the cosignature our own witness
    # gave the other city's log when it started witnessing it, then the 6 entries; then the
    # cosignature the other city's witness gave that first checkpoint, then 5 more.
    assert cp.size == 1 + 6 + 1 + 5
    with LedgerStore.open(cities["a"], passphrase=PASSPHRASE) as store:
        given, received = (decode_record(store.entries(i, i + 1)[0][1]).entry for i in (0, 7))
        first = store.checkpoint(7).checkpoint
    assert isinstance(received, WitnessCosignature) and isinstance(given, WitnessCosignature)
    assert (received.origin, received.size, received.root) == (first.origin, 7, first.root)
    assert received.witness == witness_key.name
    assert received.signature[:4] == witness_key.key_id
    assert witness_key.verify(first.body(), received.signature[4:])
    own_witness = parse_verifier_key(ca.witness_vkey)
    assert given.origin == parse_verifier_key(cb.log_vkey).name and given.size == 0
    assert given.witness == own_witness.name
    assert own_witness.verify(Checkpoint(given.origin, 0, given.root).body(),
                              given.signature[4:])
    size = cp.size

    # A fork: the same log key, another history. The witness must refuse it.
    fork = tmp_path / "fork"
    fork.mkdir()
    for name in ("ledger.json", "log.key", "witness.key"):
        shutil.copy(cities["a"] / name, fork / name)
    engine = make_engine(f"sqlite:///{fork / 'ledger.db'}")
    migrate(engine)
    engine.dispose()
    with LedgerStore.open(fork, passphrase=PASSPHRASE) as evil:
        evil.append([commitment(100 + i) for i in range(size)], cosign=False)
        same_size = evil.checkpoint().note
        status, ctype, reply = client.post(f"{sb.url}/add-checkpoint",
                                           _witness_body(size, [], same_size))
        assert (status, reply) == (409, f"{size}\n".encode())  # a split view
        assert ctype.startswith("text/x.tlog.size")
        evil.append([commitment(200)], cosign=False)
        bigger = evil.checkpoint().note
        proof = evil.consistency_proof(size, size + 1)
        status, _, reply = client.post(f"{sb.url}/add-checkpoint",
                                       _witness_body(size, proof, bigger))
        assert (status, json.loads(reply)["code"]) == (422, "ledger_witness_inconsistent")
        status, ctype, reply = client.post(f"{sb.url}/add-checkpoint",
                                           _witness_body(5, [], bigger))
        assert status == 409 and ctype.startswith("text/x.tlog.size")
        assert reply == f"{size}\n".encode()
        status, _, reply = client.post(f"{sb.url}/add-checkpoint", _witness_body(99, [], bigger))
        assert (status, json.loads(reply)["code"]) == (400, "ledger_witness_old_too_large")
    with LedgerStore.open(cities["b"]) as other, other.engine.connect() as conn:
        # the witness kept the fork's note as evidence, and still holds the honest tree
        kept = conn.execute(select(t.split_views.c.size, t.split_views.c.other)).all()
        assert [(int(n), str(note)) for n, note in kept] == [(size, same_size)]
        state = conn.execute(select(t.witnessed_logs.c.size, t.witnessed_logs.c.root).where(
            t.witnessed_logs.c.origin == cp.origin)).one()
        assert (int(state[0]), bytes(state[1])) == (size, cp.root)
        own = other.checkpoint().note
    # the name of a log it witnesses, signed with another key: 403
    impostor = generate_signer(parse_verifier_key(cb.log_vkey).name)
    forged = Checkpoint(impostor.name, 1, merkle.leaf_hash(b"x")).body()
    status, _, reply = client.post(f"{sa.url}/add-checkpoint", _witness_body(
        0, [], Note(forged, (impostor.sign(forged),)).encode()))
    assert (status, json.loads(reply)["code"]) == (403, "ledger_witness_not_signed")
    # a log it does not witness: 404
    status, _, reply = client.post(f"{sa.url}/add-checkpoint",
                                   _witness_body(0, [], own.replace("la.example", "xx.example")))
    assert (status, json.loads(reply)["code"]) == (404, "ledger_unknown_log")

    # the honest log still gets cosigned afterwards
    body = _post_entries(sa.url, cities["token"], [commitment(300)])
    _, ok = open_note(body["checkpoint"], [log_key, witness_key])
    assert witness_key in ok
    assert run_cli("audit", "--home", str(cities["a"])) == 0


def test_mirror_with_resume(cities: dict[str, Any], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    sa, ca, cb = cities["sa"], cities["ca"], cities["cb"]
    for i in range(3):
        _post_entries(sa.url, cities["token"], [commitment(10 * i + j) for j in range(7)])
    mirror_home = tmp_path / "mirror"
    monkeypatch.setattr("ledger.cli._interactive", lambda: True)  # progress as at a terminal
    # first run creates the mirror home; then interrupt a run part way, and resume it
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    assert "Copiando / Copying" in capsys.readouterr().err  # progress on stderr
    _post_entries(sa.url, cities["token"], [commitment(100 + j) for j in range(9)])
    # our witness's cosignature of the other log, then 3 batches of 7, each after the first
    # preceded by the cosignature of the checkpoint before it
    first = 1 + 3 * 7 + 2
    with LedgerStore.open(mirror_home) as store:
        assert store.size() == first
        seen: list[tuple[int, int]] = []
        mirror(store, sa.url, [parse_verifier_key(cb.witness_vkey)], page=2, limit=4,
               progress=lambda done, total: seen.append((done, total)))
        assert store.size() == first + 4  # interrupted: part of the new records only
        assert seen == [(2, 10), (4, 10)]
    # the witness key given on the first run is remembered: no flag needed any more
    assert load_config(mirror_home).mirror_witnesses == (cb.witness_vkey,)
    assert run_cli("mirror", "--from", sa.url, "--home", str(mirror_home)) == 0
    total = first + 1 + 9
    with LedgerStore.open(mirror_home) as store, LedgerStore.open(cities["a"]) as origin:
        assert store.size() == origin.size() == total
        assert store.entries(0, total) == origin.entries(0, total)
        assert store.root(total) == origin.root(total)
    assert run_cli("audit", "--home", str(mirror_home)) == 0
    # a mirror refuses a checkpoint without the required cosignature, and keeps its copy
    _post_entries(sa.url, cities["token"], [commitment(200)])
    with LedgerStore.open(mirror_home) as store:
        with pytest.raises(LedgerError) as caught:
            mirror(store, sa.url, [parse_verifier_key(ca.witness_vkey or "")])
        assert caught.value.code == "note_missing_cosignature", caught.value
        assert store.size() == total and store.checkpoint().checkpoint.size == total


def test_a_mirror_drops_an_unverified_tail_the_log_does_not_hold(cities: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    """Records a run copied but never saw verified, that are not the log's (a node fed them,
    a run died before the root check): the next run finds them outside the signed tree by the
    node's consistency proof, drops them and copies the log's own. What was verified stays."""
    sa, ca, cb = cities["sa"], cities["ca"], cities["cb"]
    _post_entries(sa.url, cities["token"], [commitment(j) for j in range(5)])
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as store:
        verified = store.size()
        head = store.head()
        fake = [encode_record(verified, head.last_hash, head.last_time + 1,
                              Notice(text="not the log's"))]
        assert store.append_records(fake) == verified + 1  # it chains: only the tree tells
    _post_entries(sa.url, cities["token"], [commitment(100 + j) for j in range(3)])
    assert run_cli("mirror", "--from", sa.url, "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as store, LedgerStore.open(cities["a"]) as origin:
        total = origin.size()
        assert total > verified + 1 and store.size() == total
        assert store.entries(0, total) == origin.entries(0, total)
    assert run_cli("audit", "--home", str(mirror_home)) == 0


def test_a_mirror_shows_only_what_it_verified(cities: dict[str, Any], tmp_path: Path,
                                               serve: Callable[..., Server],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A node can send records that chain well and then answer 503: the run stops and keeps
    them to resume from. Until a checkpoint vouches for them, the mirror's readers (``entries``,
    ``check-bundle``'s public record, ``GET /entries``, proofs) stop at what it verified: else
    a mirror would vouch for an office key the log never registered."""
    sa, ca, cb = cities["sa"], cities["ca"], cities["cb"]
    _post_entries(sa.url, cities["token"], [commitment(j) for j in range(3)])
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    forged_kid = b64url(bytes(4))
    with LedgerStore.open(mirror_home) as store:
        verified = store.size()
        head = store.head()
        forged = entry_from_json({
            "type": "key_registered", "kid": forged_kid, "public_key": b64url(bytes(32)),
            "city": "Mexicali", "country": "MX", "office": "Fantasma",
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"})
        tail = [encode_record(verified, head.last_hash, head.last_time + 1, forged)]
        assert store.append_records(tail) == verified + 1  # as a run cut short leaves it
        assert store.public_size() == verified and store.entries(0, verified + 1) == \
            store.entries(0, verified)
        assert forged_kid not in read_public_record(store).registered
        with pytest.raises(LedgerError) as caught:
            store.inclusion_proof(verified, verified + 1)
        assert caught.value.code == "ledger_bad_size"
    capsys.readouterr()
    # a run cut short is not a failed audit: the tail's chain is checked, and it is named
    assert run_cli("audit", "--home", str(mirror_home)) == 0
    said = capsys.readouterr()
    assert said.out == f"ok: {verified} records / registros\n"
    assert said.err.startswith("[ledger_audit_mirror_unverified]") and " 1 " in said.err
    assert run_cli("entries", "--home", str(mirror_home)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == verified and "Fantasma" not in "".join(printed)
    served = serve(mirror_home)
    assert client.get_json(f"{served.url}/entries?start={verified}&end={verified + 5}") == []
    assert len(client.get_json(f"{served.url}/entries?start=0&end={verified + 5}")) == verified
    with pytest.raises(LedgerError) as caught:
        client.inclusion_proof(served.url, 0, verified + 1)
    assert caught.value.code == "ledger_remote_error"
    # the next whole run drops the forged record and verifies the log's own
    assert run_cli("mirror", "--from", sa.url, "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as store, LedgerStore.open(cities["a"]) as origin:
        assert store.public_size() == store.size() == origin.size()
        assert forged_kid not in read_public_record(store).registered


def test_proofs_over_http(cities: dict[str, Any]) -> None:
    sa = cities["sa"]
    _post_entries(sa.url, cities["token"], [commitment(j) for j in range(11)])
    items = client.get_json(f"{sa.url}/entries?start=0&end=11")
    hashes = [merkle.leaf_hash(base64.b64decode(i["leaf"])) for i in items]
    got = client.get_json(f"{sa.url}/proof/inclusion?index=7&size=11")
    merkle.verify_inclusion(7, 11, hashes[7], [base64.b64decode(p) for p in got["proof"]],
                            merkle.root_from_leaf_hashes(hashes))


def test_a_mirror_must_name_a_witness(cities: dict[str, Any], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Without the other city's witness a mirror could be shown a split view: it must be given
    one, or be told explicitly to do without."""
    sa, ca = cities["sa"], cities["ca"]
    _post_entries(sa.url, cities["token"], [commitment(1)])
    home = tmp_path / "m"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--home", str(home)) == 2
    err = capsys.readouterr().err
    assert err.startswith("[ledger_mirror_needs_witness]"), err
    assert "--witness-key" in err and "testigo" in err
    assert not (home / "ledger.json").exists()  # nothing half-made
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", "not a key", "--home", str(home)) == 2
    assert not (home / "ledger.json").exists()
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey, "--unwitnessed",
                   "--home", str(home)) == 0
    capsys.readouterr()
    assert run_cli("mirror", "--from", sa.url, "--home", str(home)) == 2  # still explicit
    assert capsys.readouterr().err.startswith("[ledger_mirror_needs_witness]")


def test_a_mirror_serves_its_copy_and_appends_nothing(
        cities: dict[str, Any], tmp_path: Path, serve: Callable[..., Server],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone may serve a mirror, read-only: the same checkpoint and proofs as the log. What
    needs the log's keys (append, checkpoint, tokens, witnesses) is refused as a mirror's, before
    a passphrase is asked for, and a POST of entries is a 403 naming the log's address."""
    sa, ca, cb = cities["sa"], cities["ca"], cities["cb"]
    _post_entries(sa.url, cities["token"], [commitment(j) for j in range(5)])
    home = tmp_path / "m"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(home)) == 0
    copy = serve(home)
    assert client.get_text(f"{copy.url}/checkpoint") == client.get_text(f"{sa.url}/checkpoint")
    size = parse_checkpoint(client.checkpoint(copy.url)[1].text).size
    assert client.inclusion_proof(copy.url, 2, size) == client.inclusion_proof(sa.url, 2, size)
    status, _, body = client.post(f"{copy.url}/entries", b'{"entries": []}',
                                  {"Content-Type": "application/json",
                                   "Authorization": f"Bearer {cities['token']}"})
    assert status == 403 and json.loads(body)["code"] == "ledger_is_mirror"
    assert sa.url in json.loads(body)["message"]["en"]
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")  # never asked for: nothing to open with it
    entries = tmp_path / "e.jsonl"
    entries.write_text('{"type": "notice", "text": "hola"}\n')
    capsys.readouterr()
    for args in (["append", "--file", str(entries)], ["checkpoint", "--cosign"],
                 ["token", "add", "issuer"], ["token", "revoke", "issuer"],
                 ["witnesses", "remove", "someone"],
                 ["witnesses", "add", "--url", sa.url, "--key", cb.witness_vkey or ""]):
        assert run_cli(*args, "--home", str(home)) == 1, args
        err = capsys.readouterr().err
        assert "[ledger_is_mirror]" in err and "réplica" in err, args
    assert run_cli("audit", "--home", str(home)) == 0
    # its witnesses are the keys it holds the log to, not "none configured"
    capsys.readouterr()
    assert run_cli("witnesses", "list", "--home", str(home)) == 0
    out, err = capsys.readouterr()
    assert out.split("\t")[1:] == ["-", "-", f"{cb.witness_vkey}\n"], out  # no URL: never called
    assert "no witnesses configured" not in err and "ledger mirror --witness-key" in err


def test_an_unwitnessed_mirror_says_it_requires_no_cosignature(
        tmp_path: Path, serve: Callable[..., Server], capsys: pytest.CaptureFixture[str]) -> None:
    """``--unwitnessed``: no witness listed, and not "it requires a cosignature by these keys"
    over an empty list."""
    log = tmp_path / "log"
    vkey = json.loads(init_home(log, "ledger.u.example/log"))["log_vkey"]
    node = serve(log)
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", node.url, "--log-key", vkey, "--unwitnessed",
                   "--home", str(mirror_home)) == 0
    capsys.readouterr()
    assert run_cli("witnesses", "list", "--home", str(mirror_home)) == 0
    out, err = capsys.readouterr()
    assert out == "" and "it requires no cosignature" in err and "these keys" not in err, err


def test_a_log_of_large_records_is_mirrored(tmp_path: Path, serve: Callable[..., Server]) -> None:
    """A page of 1000 of the largest records (notices of 2000 emoji, ~8 KB each) is ~10.7 MB of
    JSON, more than a mirror reads of one answer (8 MiB): such a log could never be copied.
    The node cuts its pages by bytes too; the mirror takes the shorter pages."""
    log = tmp_path / "log"
    vkey = json.loads(init_home(log, "ledger.notices.example/log"))["log_vkey"]
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([Notice(text=f"{i:04d}" + "😀" * 1996) for i in range(MAX_PAGE)],
                     cosign=False)
    node = serve(log)
    page = client.entries(node.url, 0, MAX_PAGE)
    assert 0 < len(page) < MAX_PAGE
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", node.url, "--log-key", vkey, "--unwitnessed",
                   "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as copy, LedgerStore.open(log) as origin:
        assert copy.size() == MAX_PAGE
        assert copy.root(MAX_PAGE) == origin.root(MAX_PAGE)


def test_audit_of_a_mirror_checks_the_cosignatures(cities: dict[str, Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror asks no witness itself: the witness keys it requires are in its ledger.json,
    and its audit holds the stored cosignatures to them."""
    sa, ca, cb = cities["sa"], cities["ca"], cities["cb"]
    _post_entries(sa.url, cities["token"], [commitment(j) for j in range(3)])
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    assert stat.S_IMODE((mirror_home / "ledger.json").stat().st_mode) == 0o600
    assert run_cli("audit", "--home", str(mirror_home)) == 0
    witness = parse_verifier_key(cb.witness_vkey).name
    with LedgerStore.open(mirror_home) as store, store.engine.begin() as conn:
        row_id, line = conn.execute(select(t.cosignatures.c.id, t.cosignatures.c.line)
                                    .where(t.cosignatures.c.witness == witness)).one()
        head, _, sig = line.rstrip("\n").rpartition(" ")
        raw = bytearray(base64.b64decode(sig))
        raw[-1] ^= 1  # the signature's last byte: the key id still names the witness's key
        conn.execute(update(t.cosignatures).where(t.cosignatures.c.id == row_id)
                     .values(line=f"{head} {base64.b64encode(raw).decode()}\n"))
    capsys.readouterr()
    assert run_cli("audit", "--home", str(mirror_home)) == 1
    err = capsys.readouterr().err
    assert f"cosignature by {witness} is bad" in err
    assert f"la cosignatura de {witness} no es válida" in err


def test_a_mirror_serves_only_the_signatures_it_verified(cities: dict[str, Any],
                                                        tmp_path: Path) -> None:
    """A line on the node's checkpoint from a key the mirror does not know may be anything;
    the mirror serves (and so vouches for) the log's signature and its witnesses' only."""
    sa, ca, cb = cities["sa"], cities["ca"], cities["cb"]
    _post_entries(sa.url, cities["token"], [commitment(j) for j in range(3)])
    stranger = generate_signer("ledger.nobody.example/witness", COSIGNATURE_V1)
    with LedgerStore.open(cities["a"]) as log:
        cp = log.checkpoint().checkpoint
        log.add_cosignatures(cp.size, [stranger.sign(cp.body())])
    served = client.get_text(f"{sa.url}/checkpoint")
    assert stranger.name in served
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", sa.url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as store:
        kept = store.checkpoint().note
    witness = parse_verifier_key(cb.witness_vkey)
    assert stranger.name not in kept
    _, ok = open_note(kept, [parse_verifier_key(ca.log_vkey), witness])
    assert len(ok) == 2  # the log's and the witness's, both still there
    assert run_cli("audit", "--home", str(mirror_home)) == 0


HUNG = "ledger.hung.example/witness"


@pytest.fixture
def hung_url() -> Iterator[str]:
    """A witness that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_hung_witness_does_not_hold_the_append(cities: dict[str, Any], hung_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An issuer waits 15 s for its append's answer, then calls the node unreachable and sends
    the batch again: a witness that never answers must not make the log look down. The other
    witness still cosigns the answer's checkpoint; then the hung one is removed."""
    a, sa = cities["a"], cities["sa"]
    log_key, la_witness = parse_verifier_key(cities["ca"].log_vkey), \
        parse_verifier_key(cities["cb"].witness_vkey)
    hung_key = generate_signer(HUNG, COSIGNATURE_V1).verifier.vkey
    assert run_cli("witnesses", "add", "--url", hung_url, "--key", hung_key,
                   "--home", str(a)) == 0
    capsys.readouterr()
    assert run_cli("witnesses", "list", "--home", str(a)) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(row[0], row[1], row[3]) for row in listed] == [
        (HUNG, hung_url, hung_key), (la_witness.name, cities["sb"].url, cities["cb"].witness_vkey)]

    started = time.monotonic()
    body = _post_entries(cities["sa"].url, cities["token"], [commitment(1)])
    took = time.monotonic() - started
    assert took < client.TIMEOUT - 5, took  # well within the issuer's patience
    _, ok = open_note(body["checkpoint"], [log_key, la_witness])
    assert ok == [log_key, la_witness]

    assert run_cli("witnesses", "remove", HUNG, "--home", str(a)) == 0
    capsys.readouterr()
    assert run_cli("witnesses", "list", "--home", str(a)) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [
        la_witness.name]
    assert run_cli("witnesses", "remove", HUNG, "--home", str(a)) == 2
    assert "no witness named" in capsys.readouterr().err
    started = time.monotonic()
    _post_entries(sa.url, cities["token"], [commitment(2)])
    assert time.monotonic() - started < COSIGN_WAIT  # nobody left to wait for
    assert run_cli("witnesses", "remove", la_witness.name, "--home", str(a)) == 0
    capsys.readouterr()
    assert run_cli("witnesses", "list", "--home", str(a)) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no witnesses configured" in out.err
    assert run_cli("audit", "--home", str(a)) == 0


def test_witnessing_a_url_that_serves_another_log_saves_nothing(
        cities: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``witness --log URL_A --log-key KEY_B``: the URL serves another origin than the key
    names (or the right origin, not signed with that key). Said so, and nothing remembered."""
    home = tmp_path / "third"
    init_home(home, "ledger.tij.example/log")
    sa, cb = cities["sa"], cities["cb"]
    impostor = generate_signer(parse_verifier_key(cities["ca"].log_vkey).name).verifier.vkey
    capsys.readouterr()
    assert run_cli("witness", "--log", sa.url, "--log-key", cb.log_vkey, "--home", str(home)) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_witness_wrong_log]") and sa.url in err
    assert "ledger.cdmx.example/log" in err and "ledger.la.example/log" in err
    assert run_cli("witness", "--log", sa.url, "--log-key", impostor, "--home", str(home)) == 1
    assert capsys.readouterr().err.startswith("[note_unverified]")
    with LedgerStore.open(home) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.witnessed_logs)).scalar() == 0
    # the right pair is accepted, and the other city's existing row is left as it was
    assert run_cli("witness", "--log", sa.url, "--log-key", cities["ca"].log_vkey,
                   "--home", str(home)) == 0
    assert run_cli("witness", "--log", sa.url, "--log-key", cb.log_vkey,
                   "--home", str(cities["a"])) == 1
    with LedgerStore.open(cities["a"]) as store, store.engine.connect() as conn:
        url = conn.execute(select(t.witnessed_logs.c.url).where(
            t.witnessed_logs.c.origin == "ledger.la.example/log")).scalar_one()
    assert url == cities["sb"].url
