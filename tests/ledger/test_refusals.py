"""Refusals no other test provoked: a home without its settings or with damaged, missing or
swapped keys; a log that went back to an old copy or changed its key, as a witness and a mirror
see it; a node with no checkpoint to serve; a bundle proof no witness has cosigned yet; a witness
still busy, or ahead of the log. Each through what a user runs (the CLI, a real node over HTTP,
``LedgerStore``), each with its code, and nothing changed by the refusal."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from sqlalchemy import select

from credential.errors import LedgerError, PasaporteError, StoreError
from credential.keys import b64url
from credential.note import COSIGNATURE_V1, Signer, generate_signer, open_note
from ledger import schema as t
from ledger.keys import load_config
from ledger.mirror import mirror
from ledger.store import LedgerStore
from ledger.witness import request_cosignatures, witness_log
from tests.ledger.conftest import PASSPHRASE, Server, init_home, run_cli
from tests.ledger.helpers import commitment, reply, serving


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


def _entries_file(tmp_path: Path) -> str:
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(commitment(99)) + "\n")
    return str(path)


# -- a home's settings and keys --------------------------------------------------------------


def test_a_home_that_was_never_initialised(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(nothing)
    assert caught.value.code == "ledger_not_initialised"
    assert str(nothing) in caught.value.message["es"] and "ledger init" in caught.value.message[
        "en"]
    capsys.readouterr()
    for args in (["audit"], ["append", "--file", _entries_file(tmp_path)], ["checkpoint"]):
        assert run_cli(*args, "--home", str(nothing)) == 1, args
        assert _err(capsys).startswith("[ledger_not_initialised]"), args
    assert list(nothing.iterdir()) == []  # nothing made in its place


def test_a_log_key_file_lost(home: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """The settings are there, the log's key file is not: appending says the home is not (all)
    there; reading, which needs no key, still works."""
    (home / "log.key").unlink()
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(home, passphrase=PASSPHRASE)
    assert caught.value.code == "ledger_not_initialised"
    capsys.readouterr()
    assert run_cli("append", "--file", _entries_file(tmp_path), "--home", str(home)) == 1
    assert _err(capsys).startswith("[ledger_not_initialised]")
    assert run_cli("audit", "--home", str(home)) == 0
    assert not (home / "log.key").exists()


def test_a_damaged_key_file(home: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    sealed = (home / "log.key").read_bytes()
    (home / "log.key").write_bytes(sealed[:len(sealed) // 2])  # a copy cut short
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(home, passphrase=PASSPHRASE)
    assert caught.value.code == "ledger_bad_key_file"
    assert caught.value.detail == {"path": str(home / "log.key")}
    capsys.readouterr()
    assert run_cli("append", "--file", _entries_file(tmp_path), "--home", str(home)) == 1
    assert _err(capsys).startswith(f"[ledger_bad_key_file] Archivo de llave dañado: "
                                   f"{home / 'log.key'}")
    with LedgerStore.open(home) as store:
        assert store.size() == 0


def test_another_logs_key_file(home: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """A key file from another home (sealed with the same passphrase) opens, but is not the
    key the settings name: nothing is signed with it."""
    other = tmp_path / "other"
    init_home(other, "ledger.other.example/log")
    shutil.copy(other / "log.key", home / "log.key")
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(home, passphrase=PASSPHRASE)
    assert caught.value.code == "ledger_key_mismatch"
    capsys.readouterr()
    assert run_cli("append", "--file", _entries_file(tmp_path), "--home", str(home)) == 1
    assert _err(capsys).startswith("[ledger_key_mismatch]")
    with LedgerStore.open(home) as store:
        assert store.size() == 0 and store.checkpoint().checkpoint.size == 0


def test_init_without_a_passphrase_writes_no_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(StoreError) as caught:
        LedgerStore.init(home, "ledger.test/log", "")
    assert caught.value.code == "ledger_passphrase_required"
    assert not any((home / name).exists() for name in ("log.key", "witness.key", "ledger.json"))
    with LedgerStore.init(home, "ledger.test/log", PASSPHRASE) as store:  # not stuck
        assert store.checkpoint().checkpoint.size == 0


def test_a_mirror_home_holds_no_keys_to_open(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a mirror to write (as a WSGI server given a passphrase would) is refused as a
    mirror's, not as a key file missing; ``key --witness`` says it has no witness key."""
    vkey = json.loads(init_home(tmp_path / "log"))["log_vkey"]
    copy = tmp_path / "mirror"
    assert run_cli("mirror", "--from", "http://127.0.0.1:1", "--log-key", vkey,
                   "--unwitnessed", "--home", str(copy)) == 1  # made, then out of reach
    with pytest.raises(StoreError) as caught:
        LedgerStore.open(copy, passphrase=PASSPHRASE)
    assert (caught.value.code, caught.value.detail) == (
        "ledger_is_mirror", {"home": str(copy), "url": "http://127.0.0.1:1"})
    capsys.readouterr()
    assert run_cli("key", "--witness", "--home", str(copy)) == 1
    assert _err(capsys).startswith("[ledger_no_witness_key]")


def test_a_node_address_that_cannot_be_used_is_refused_before_anything_is_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every option naming another node: a usage error (exit 2) as the command is read, before
    a passphrase is asked or a home made; a password in the address is not repeated."""
    config = json.loads(init_home(tmp_path / "log"))
    vkey, witness_vkey = config["log_vkey"], config["witness_vkey"]
    capsys.readouterr()
    bundle = tmp_path / "bundle.cbor"
    bundle.write_bytes(b"x")
    for address, problem in (("http://admin:s3cret@127.0.0.1:9", "user name or password"),
                             ("127.0.0.1:8700", "http:// or https://"),
                             ("http://127.0.0.1:99999", "port"),
                             ("http://127.0.0.1:9/log?x=1", "query")):
        fresh = tmp_path / "fresh"
        for args in (["mirror", "--from", address, "--log-key", vkey, "--unwitnessed"],
                     ["witness", "--log", address, "--log-key", vkey],
                     ["witnesses", "add", "--url", address, "--key", witness_vkey],
                     ["prove-bundle", "--bundle", str(bundle), "--out", str(tmp_path / "p"),
                      "--from", address]):
            assert run_cli(*args, "--home", str(fresh)) == 2, (address, args)
            err = _err(capsys)
            assert err.startswith("[ledger_url_invalid]") and problem in err, (address, args)
            assert "s3cret" not in err and not fresh.exists(), (address, args)
    assert not (tmp_path / "p").exists()


# -- a log that went back, or changed its key ----------------------------------------------


@pytest.fixture
def restored(tmp_path: Path, serve: Callable[..., Server]) -> dict[str, object]:
    """A log of 3 then 5 records (a checkpoint each), witnessed by another node and mirrored,
    both at 5; then its database restored from the copy taken at 3 and served again."""
    log, witness, copy = tmp_path / "log", tmp_path / "witness", tmp_path / "mirror"
    vkey = json.loads(init_home(log, "ledger.restored.example/log"))["log_vkey"]
    init_home(witness, "ledger.witness.example/log")
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(3)], cosign=False)
    shutil.copy(log / "ledger.db", tmp_path / "backup-3.db")  # closed: no WAL left aside
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(3, 5)], cosign=False)
    node = serve(log)
    assert run_cli("witness", "--log", node.url, "--log-key", vkey, "--home", str(witness)) == 0
    assert run_cli("mirror", "--from", node.url, "--log-key", vkey, "--unwitnessed",
                   "--home", str(copy)) == 0
    node.stop()
    for leftover in ("ledger.db-wal", "ledger.db-shm"):  # none once closed; never replayed
        (log / leftover).unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup-3.db", log / "ledger.db")
    return {"vkey": vkey, "witness": witness, "mirror": copy, "url": serve(log).url}


def test_a_witness_refuses_a_log_gone_back(restored: dict[str, object],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    witness, url = restored["witness"], str(restored["url"])
    assert isinstance(witness, Path)
    capsys.readouterr()
    assert run_cli("witness", "--log", url, "--log-key", str(restored["vkey"]),
                   "--home", str(witness)) == 1
    err = _err(capsys)
    assert err.startswith("[ledger_witness_rollback] El registro ledger.restored.example/log "
                          "retrocedió a 3 (ya se vio 5)"), err
    with LedgerStore.open(witness) as store, store.engine.connect() as conn:
        assert conn.execute(select(t.witnessed_logs.c.size)).scalar_one() == 5
        assert conn.execute(select(t.witness_given.c.size)).scalars().all() == [5]


def test_a_mirror_refuses_a_log_gone_back(restored: dict[str, object],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    copy, url = restored["mirror"], str(restored["url"])
    assert isinstance(copy, Path)
    with LedgerStore.open(copy) as store:
        held = store.entries(0, store.size())
    capsys.readouterr()
    assert run_cli("mirror", "--from", url, "--unwitnessed", "--home", str(copy)) == 1
    err = _err(capsys)
    assert err.startswith("[ledger_witness_rollback]") and "(already saw 5)" in err, err
    with LedgerStore.open(copy) as store:  # the copy is the evidence: kept as it was
        assert store.entries(0, store.size()) == held and len(held) == 5
        assert store.checkpoint().checkpoint.size == 5


def test_a_log_under_a_new_key_is_refused(tmp_path: Path, serve: Callable[..., Server],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A node now serving the same log name under another key (a rebuilt node, or an
    impostor): the witness and the mirror that know the old key say the key changed, and
    keep the key they have."""
    origin = "ledger.rekeyed.example/log"
    log, rebuilt = tmp_path / "log", tmp_path / "rebuilt"
    old_key = json.loads(init_home(log, origin))["log_vkey"]
    new_key = json.loads(init_home(rebuilt, origin))["log_vkey"]
    assert old_key != new_key
    old_node, new_node = serve(log), serve(rebuilt)
    witness, copy = tmp_path / "witness", tmp_path / "mirror"
    init_home(witness, "ledger.witness.example/log")
    assert run_cli("witness", "--log", old_node.url, "--log-key", old_key,
                   "--home", str(witness)) == 0
    assert run_cli("mirror", "--from", old_node.url, "--log-key", old_key, "--unwitnessed",
                   "--home", str(copy)) == 0
    capsys.readouterr()
    assert run_cli("witness", "--log", new_node.url, "--log-key", new_key,
                   "--home", str(witness)) == 1
    want = f"[ledger_witness_key_changed] La llave del registro {origin} cambió."
    assert _err(capsys).startswith(want)
    with LedgerStore.open(witness) as store, store.engine.connect() as conn:
        row = conn.execute(select(t.witnessed_logs.c.vkey, t.witnessed_logs.c.url)).one()
    assert tuple(row) == (old_key, old_node.url)
    assert run_cli("mirror", "--from", new_node.url, "--log-key", new_key,
                   "--home", str(copy)) == 1
    assert _err(capsys).startswith(want)
    assert load_config(copy).log_vkey == old_key
    with LedgerStore.open(witness, passphrase=PASSPHRASE) as store:  # the API says the same
        with pytest.raises(LedgerError) as caught:
            witness_log(store, new_key, new_node.url)
        assert caught.value.code == "ledger_witness_key_changed"


# -- nothing signed yet to show ---------------------------------------------------------------


def test_a_node_with_no_checkpoint_says_so(tmp_path: Path, serve: Callable[..., Server],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror whose first run never reached the log holds no checkpoint: served, its
    ``/checkpoint`` is a 404 with the code (not a 500), and ``checkpoint`` fails."""
    vkey = json.loads(init_home(tmp_path / "log"))["log_vkey"]
    copy = tmp_path / "mirror"
    assert run_cli("mirror", "--from", "http://127.0.0.1:1", "--log-key", vkey,
                   "--unwitnessed", "--home", str(copy)) == 1
    node = serve(copy)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{node.url}/checkpoint", timeout=10)
    with caught.value as resp:
        assert resp.status == 404
        assert json.loads(resp.read()) == {"code": "ledger_no_checkpoint", "message": {
            "es": "Aún no hay checkpoint.", "en": "No checkpoint yet."}}
    capsys.readouterr()
    assert run_cli("checkpoint", "--home", str(copy)) == 1
    assert _err(capsys).startswith("[ledger_no_checkpoint]")


def _published(signed: bytes) -> dict[str, object]:
    import hashlib

    return {"type": "bundle_published", "city": "Mexicali", "version": 1,
            "digest": b64url(hashlib.sha256(signed).digest())}


def test_a_bundle_proof_no_witness_cosigned_yet_comes_with_a_warning(
        tmp_path: Path, serve: Callable[..., Server],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A log no witness cosigns: the proof is written (counters that require no cosignature
    take it), with the warning that those that do will refuse it; from the log's home and
    from its public API alike. A bundle not on the record gets no proof at all."""
    log = tmp_path / "log"
    init_home(log, "ledger.lonely.example/log")
    bundle, other = tmp_path / "b.cbor", tmp_path / "other.cbor"
    bundle.write_bytes(b"a signed bundle, as the city published it")
    other.write_bytes(b"a bundle never published")
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(1), _published(bundle.read_bytes()), commitment(2)])
    node = serve(log)
    warning = PasaporteError("ledger_proof_uncosigned").diagnostics()
    for where in (["--home", str(log)], ["--from", node.url]):
        out = tmp_path / "b.proof"
        out.unlink(missing_ok=True)
        capsys.readouterr()
        assert run_cli("prove-bundle", "--bundle", str(bundle), "--out", str(out), *where) == 0
        printed = capsys.readouterr()
        assert printed.out.startswith("ok: registro / record 1, checkpoint 3"), where
        assert warning in printed.err, where
        assert json.loads(out.read_text())["type"] == "pasaporte-bundle-proof/1"
        assert run_cli("prove-bundle", "--bundle", str(other), "--out",
                       str(tmp_path / "x.proof"), *where) == 1
        assert _err(capsys).startswith("[ledger_bundle_not_found]"), where
        assert not (tmp_path / "x.proof").exists()


def test_no_bundle_proof_from_records_beyond_the_last_verified_checkpoint(
        tmp_path: Path, serve: Callable[..., Server],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror run cut short holds the bundle's record but no checkpoint it verified that
    covers it: no proof (nothing signed says the record is in the log; to the mirror's readers
    the record is not there yet), until a run ends."""
    log, copy = tmp_path / "log", tmp_path / "mirror"
    vkey = json.loads(init_home(log, "ledger.cut.example/log"))["log_vkey"]
    signed = b"a signed bundle"
    (tmp_path / "b.cbor").write_bytes(signed)
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(1), commitment(2)])
    node = serve(log)
    assert run_cli("mirror", "--from", node.url, "--log-key", vkey, "--unwitnessed",
                   "--home", str(copy)) == 0
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([_published(signed), commitment(3), commitment(4)])
    with LedgerStore.open(copy) as store:
        mirror(store, node.url, page=1, limit=2)  # records 2 and 3, then cut short
        assert store.size() == 4 and store.checkpoint().checkpoint.size == 2
    args = ["prove-bundle", "--bundle", str(tmp_path / "b.cbor"), "--out",
            str(tmp_path / "b.proof"), "--home", str(copy)]
    capsys.readouterr()
    assert run_cli(*args) == 1
    assert _err(capsys).startswith("[ledger_bundle_not_found]")
    assert not (tmp_path / "b.proof").exists()
    assert run_cli("mirror", "--from", node.url, "--unwitnessed", "--home", str(copy)) == 0
    assert run_cli(*args) == 0


# -- a witness busy, or ahead ----------------------------------------------------------------


class _Witness:
    """A witness on a real socket: the first request waits for ``release`` (a slow witness),
    then every request is answered with ``answer`` or, when that is None, cosigned."""

    def __init__(self, answer: tuple[int, str, bytes] | None = None) -> None:
        self.signer: Signer = generate_signer("witness.example/slow", COSIGNATURE_V1)
        self.answer = answer
        self.release = threading.Event()
        self.requests = 0

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)).decode()
        self.requests += 1
        self.release.wait(30)
        if self.answer is not None:
            status, ctype, answer = self.answer
        else:
            note = body.partition("\n\n")[2]
            status, ctype = 200, "text/plain"
            answer = self.signer.sign(note[:note.rindex("\n\n") + 1]).line.encode()
        reply(h, status, ctype, answer)


@pytest.fixture
def slow_witness(store: LedgerStore) -> Iterator[_Witness]:
    witness = _Witness()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server calls it by this name
            witness.handle(self)

        def log_message(self, *_args: object) -> None:
            pass

    with serving(Handler) as url:
        store.add_witness(url, witness.signer.verifier.vkey)
        try:
            yield witness
        finally:
            witness.release.set()


def test_a_witness_still_busy_is_not_asked_again(store: LedgerStore, slow_witness: _Witness,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A witness still working on an earlier checkpoint is not sent another request: the log
    says so and goes on; once it answers, it is asked for the newest checkpoint, with no other
    append to prompt it, and its cosignature kept."""
    store.append([commitment(1)], cosign=False)
    with caplog.at_level(logging.WARNING, logger="ledger.witness"):
        assert request_cosignatures(store, wait=0.2) == 0  # left waiting in the background
        store.append([commitment(2)], cosign=False)
        assert request_cosignatures(store, wait=0.2) == 0
    busy = PasaporteError("ledger_witness_busy").diagnostics()
    assert f"testigo / witness {slow_witness.signer.name}: {busy}" in caplog.text
    # the first request was sent in the background: on a loaded machine it may not be there yet
    deadline = time.monotonic() + 30
    while slow_witness.requests < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow_witness.requests == 1
    slow_witness.release.set()
    keys = [store.verifier, slow_witness.signer.verifier]
    deadline = time.monotonic() + 30
    while (len(open_note(store.checkpoint(2).note, keys)[1]) < 2
           and time.monotonic() < deadline):
        time.sleep(0.02)
    assert len(open_note(store.checkpoint(2).note, keys)[1]) == 2  # the newest, cosigned
    assert len(open_note(store.checkpoint(1).note, keys)[1]) == 2
    assert slow_witness.requests == 2


def test_a_witness_ahead_of_the_log_is_named(store: LedgerStore, slow_witness: _Witness,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A witness that says it cosigned a larger tree than the log has (this database restored
    from an old copy, or another history shown to it): said so, not asked again with a proof
    it could never accept."""
    slow_witness.release.set()
    slow_witness.answer = (409, "text/x.tlog.size", b"99\n")
    store.append([commitment(1)], cosign=False)
    with caplog.at_level(logging.WARNING, logger="ledger.witness"):
        assert request_cosignatures(store, wait=10) == 0
    ahead = PasaporteError("ledger_witness_ahead", size=99, ours=1).diagnostics()
    assert f"testigo / witness {slow_witness.signer.name}: {ahead}" in caplog.text
    assert slow_witness.requests == 1
    assert store.checkpoint().note.count("\u2014 ") == 1  # the log's own signature only


def test_a_log_is_not_its_own_witness(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its own log key or its own witness key given as a witness's, or its own log given to
    witness: refused (exit 2), nothing saved. Its cosignature proves nothing, and counters and
    mirrors, which require the other city's, would wait for it for ever."""
    home = tmp_path / "log"
    config = json.loads(init_home(home, "ledger.self.example/log"))
    capsys.readouterr()
    # (its log key is no witness's key at all: refused as such)
    for key, code in ((config["log_vkey"], "ledger_witness_key_not_cosigning"),
                      (config["witness_vkey"], "ledger_witness_is_self")):
        assert run_cli("witnesses", "add", "--url", "http://127.0.0.1:9", "--key", key,
                       "--home", str(home)) == 2
        assert _err(capsys).startswith(f"[{code}]")
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        assert store.witnesses() == []
        with pytest.raises(PasaporteError) as caught:
            witness_log(store, config["log_vkey"], "http://127.0.0.1:9")
        assert caught.value.code == "ledger_witness_is_self"
        with store.engine.connect() as conn:
            assert conn.execute(select(t.witnessed_logs)).first() is None


def test_a_first_mirror_run_that_copied_nothing_is_set_right_by_running_it_again(
        tmp_path: Path, serve: Callable[..., Server], capsys: pytest.CaptureFixture[str]) -> None:
    """The node out of reach and the key mistyped (another log's) on a first run: the home is
    made, holding nothing; run again with the right key and address, it copies that log, and
    keeps where it now copies from. Once it holds a copy, another log's key is refused."""
    right = json.loads(init_home(tmp_path / "log", "ledger.right.example/log"))["log_vkey"]
    wrong = json.loads(init_home(tmp_path / "other", "ledger.other.example/log"))["log_vkey"]
    with LedgerStore.open(tmp_path / "log", passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(3)], cosign=False)
    copy = tmp_path / "mirror"
    assert run_cli("mirror", "--from", "http://127.0.0.1:1", "--log-key", wrong,
                   "--unwitnessed", "--home", str(copy)) == 1
    assert _err(capsys).startswith("[ledger_unreachable]")
    node = serve(tmp_path / "log")
    assert run_cli("mirror", "--from", node.url, "--log-key", right, "--unwitnessed",
                   "--home", str(copy)) == 0
    config = load_config(copy)
    assert (config.origin, config.log_vkey, config.mirror_of) == (
        "ledger.right.example/log", right, node.url)
    with LedgerStore.open(copy) as store:
        assert store.size() == 3
    capsys.readouterr()
    assert run_cli("mirror", "--from", node.url, "--log-key", wrong, "--unwitnessed",
                   "--home", str(copy)) == 1
    err = _err(capsys)
    assert err.startswith("[ledger_mirror_key_changed]")
    # the key given is named as another log's, not as this log's key changed
    assert "the --log-key given is another log's, ledger.other.example/log" in err, err
    assert load_config(copy).log_vkey == right
