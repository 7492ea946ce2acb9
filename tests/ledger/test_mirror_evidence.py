"""What a mirror does when its log goes back, rewrites its history or is not its log at all, and
what ``ledger status`` then says: on a mirror holding the log's contradicting note, and on a log
whose database holds less than its witness already cosigned. Real ``ledger serve`` processes
and real databases, as the operators of two cities meet it."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from credential.note import (
    COSIGNATURE_V1,
    generate_signer,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
)
from ledger import schema as t
from ledger.audit import audit
from ledger.keys import load_config
from ledger.mirror import mirror
from ledger.status import Facts, WitnessFacts, assess
from ledger.store import LedgerStore
from tests.ledger.conftest import PASSPHRASE, Server, init_home, run_cli
from tests.ledger.helpers import commitment, reply, serving

NOW = 1_800_000_000


def _append(home: Path, first: int, count: int, *, cosign: bool = True) -> int:
    """Append ``count`` records to the log at ``home`` (asking its witness unless told not
    to); returns the new size, after checking the witness cosigned it when asked."""
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        signed = store.append([commitment(first + i) for i in range(count)], cosign=cosign)
    if cosign:
        assert len(open_note(signed.note, [store.verifier])[0].signatures) == 2, signed.note
    return signed.checkpoint.size


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(*args)
    out, err = capsys.readouterr()
    return code, out, err


def _status(capsys: pytest.CaptureFixture[str], home: Path) -> tuple[int, str, dict[str, Any]]:
    code, out, _ = _run(capsys, "status", "--home", str(home))
    json_code, doc_text, _ = _run(capsys, "status", "--json", "--home", str(home))
    assert json_code == code
    doc: dict[str, Any] = json.loads(doc_text)
    return code, out, doc


def _evidence(home: Path) -> list[tuple[str, int, str, str]]:
    """The mirror's kept notes: (origin, size, the note it had verified, the log's other)."""
    with LedgerStore.open(home) as store, store.engine.connect() as conn:
        s = t.split_views.c
        return [(str(o), int(n), str(kept), str(other)) for o, n, kept, other in conn.execute(
            select(s.origin, s.size, s.cosigned, s.other).order_by(s.id))]


def _mirrored(tmp_path: Path, serve: Callable[..., Server], origin: str, records: int
              ) -> tuple[Path, str, Server, Path]:
    """A log of ``records`` records, served, and an unwitnessed mirror of it: the log's
    home, its key, its node and the mirror's home."""
    log = tmp_path / "log"
    vkey = json.loads(init_home(log, origin))["log_vkey"]
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(j) for j in range(records)])
    node = serve(log)
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", node.url, "--log-key", vkey, "--unwitnessed",
                   "--home", str(mirror_home)) == 0
    return log, vkey, node, mirror_home


def test_a_rolled_back_log_is_named_and_its_note_kept(
        pair: dict[str, Any], tmp_path: Path, serve: Callable[..., Server],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The log's node is restored from an old backup. Serving its old (genuine) checkpoint it
    is refused as gone back, and nothing is kept: an older state proves nothing. Once it signs
    a new, smaller tree of another history (its witness refuses to cosign it), the mirror names
    the rollback, not a cosignature missing, copies nothing, keeps that signed note beside the
    one it verified, and ``status`` on the mirror is critical from then on."""
    a, ca, cb = pair["a"], pair["ca"], pair["cb"]
    old_size = _append(a, 0, 3)
    backup = tmp_path / "backup.db"
    with sqlite3.connect(a / "ledger.db") as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # "yesterday's backup", taken the consistent way
    src.close()
    dst.close()
    size = _append(a, 100, 6)
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", pair["sa"].url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as store:
        copy = store.entries(0, size)
        verified_note = store.checkpoint(size).note
    # the witness is out of the way, so the restored log learns nothing from it
    pair["sb"].stop()
    pair["sa"].stop()
    for suffix in ("-wal", "-shm"):
        (a / f"ledger.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, a / "ledger.db")
    restored = serve(a)

    code, _, err = _run(capsys, "mirror", "--from", restored.url, "--home", str(mirror_home))
    assert code == 1 and err.startswith("[ledger_witness_rollback]"), err
    assert _evidence(mirror_home) == []
    assert _status(capsys, mirror_home)[0] == 0

    fork_size = _append(a, 200, 1, cosign=False)  # a new tree; no witness cosigned it
    assert old_size < fork_size < size
    for _ in range(2):  # asked again: the same refusal, the evidence kept once
        code, _, err = _run(capsys, "mirror", "--from", restored.url, "--home", str(mirror_home))
        assert code == 1 and err.startswith("[ledger_witness_rollback]"), err
        assert f"{fork_size} " in err and f" {size})" in err
    [(origin, kept_size, kept, other)] = _evidence(mirror_home)
    assert (origin, kept_size, kept) == ("ledger.a.example/log", fork_size, verified_note)
    note, ok = open_note(other, [parse_verifier_key(ca.log_vkey)])
    assert ok[0].name == origin and parse_checkpoint(note.text).size == fork_size
    with LedgerStore.open(mirror_home) as store:  # nothing of the fork copied
        assert store.size() == store.verified_size() == size
        assert store.entries(0, size) == copy

    code, out, doc = _status(capsys, mirror_home)
    assert code == 2
    assert out.splitlines()[0] == "Estado / Health: crítico / critical"
    assert "[ledger_status_mirror_evidence]" in out
    assert (doc["health"], doc["role"]) == ("critical", "mirror")
    [problem] = doc["problems"]
    assert (problem["code"], problem["health"]) == ("ledger_status_mirror_evidence", "critical")
    for half in ("es", "en"):
        assert "ledger.a.example/log" in problem["message"][half]
        assert str(fork_size) in problem["message"][half]
    assert doc["split_views"]["count"] == 1


def test_a_rewritten_history_is_kept_as_evidence(
        tmp_path: Path, serve: Callable[..., Server],
        capsys: pytest.CaptureFixture[str]) -> None:
    """The log (its key, a copy of its database) rewrites records the mirror verified and
    signs a larger tree: refused as rewritten, the verified copy kept as it was, and the
    signed note of the rewritten tree kept too, so a probe that runs only ``status`` sees it
    after the node stops serving it."""
    log, vkey, honest, mirror_home = _mirrored(tmp_path, serve, "ledger.rewrite.example/log", 5)
    honest.stop()
    with LedgerStore.open(mirror_home) as store:
        verified = store.entries(0, store.size())
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:  # same key, another history
        store.truncate(3)
        forked_size = store.append([commitment(100 + j) for j in range(4)]).checkpoint.size
        forked_note = store.checkpoint().note
    forked = serve(log)
    code, _, err = _run(capsys, "mirror", "--from", forked.url, "--unwitnessed",
                        "--home", str(mirror_home))
    assert code == 1 and err.startswith("[ledger_history_rewritten]"), err
    forked.stop()  # the node no longer shows the fork: the mirror still holds it
    with LedgerStore.open(mirror_home) as store:  # its verified copy, untouched
        assert store.entries(0, store.size()) == verified
    [(origin, size, kept, other)] = _evidence(mirror_home)
    assert (origin, size, other) == ("ledger.rewrite.example/log", forked_size, forked_note)
    assert parse_checkpoint(open_note(kept, [parse_verifier_key(vkey)])[0].text).size == 5
    code, _, doc = _status(capsys, mirror_home)
    assert (code, doc["health"]) == (2, "critical")
    assert [p["code"] for p in doc["problems"]] == ["ledger_status_mirror_evidence"]


def test_a_rewrite_after_a_run_cut_short_is_kept_as_evidence(
        tmp_path: Path, serve: Callable[..., Server],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A run cut short (Ctrl-C, a timeout) leaves records copied but not verified; then the
    log rewrites what the mirror had verified. Named as the rewrite, its note kept, not "the
    chain breaks" with nothing kept."""
    log, _, honest, mirror_home = _mirrored(tmp_path, serve, "ledger.rewrite.example/log", 5)
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(10 + j) for j in range(3)])
    with LedgerStore.open(mirror_home) as store:  # cut short: copied, not yet verified
        mirror(store, honest.url, page=1, limit=1)
        assert store.size() > store.verified_size() == 5
    honest.stop()
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:  # same key, another history
        store.truncate(3)
        store.append([commitment(100 + j) for j in range(6)])
    forked = serve(log)
    code, _, err = _run(capsys, "mirror", "--from", forked.url, "--unwitnessed",
                        "--home", str(mirror_home))
    assert code == 1 and err.startswith("[ledger_history_rewritten]"), err
    assert len(_evidence(mirror_home)) == 1
    assert _status(capsys, mirror_home)[0] == 2


def test_a_proof_spoiled_on_the_way_is_no_evidence_against_the_log(
        tmp_path: Path, serve: Callable[..., Server],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A relay (a proxy, a cache) passes the log's genuine notes and records but damages its
    consistency proofs: the run is refused as that proof failing, and nothing is kept against
    the honest log (status stays ok); from the node itself the same tree copies."""
    log, _, node, mirror_home = _mirrored(tmp_path, serve, "ledger.relay.example/log", 3)
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(10 + j) for j in range(4)])

    class Relay(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls it by this name
            with urllib.request.urlopen(node.url + self.path) as resp:
                ctype, body = resp.headers["Content-Type"], resp.read()
            if self.path.startswith("/proof/consistency"):
                doc = json.loads(body)
                first = bytearray(base64.b64decode(doc["proof"][0]))
                first[0] ^= 1
                doc["proof"][0] = base64.b64encode(bytes(first)).decode()
                body = json.dumps(doc).encode()
            reply(self, 200, ctype, body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Relay) as relay:
        code, _, err = _run(capsys, "mirror", "--from", relay, "--unwitnessed",
                            "--home", str(mirror_home))
    assert code == 1 and err.startswith("[ledger_mirror_proof_failed]"), err
    assert _evidence(mirror_home) == []
    assert _status(capsys, mirror_home)[0] == 0
    assert run_cli("mirror", "--from", node.url, "--unwitnessed",
                   "--home", str(mirror_home)) == 0
    assert _status(capsys, mirror_home)[0] == 0


def test_a_mirror_pointed_at_another_log_says_so(
        pair: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--from`` the other city's node: the run names the log that address serves and the one
    this mirror copies, instead of "no trusted key signed the note" (which reads as this log's
    key changed), and touches nothing."""
    a, ca, cb = pair["a"], pair["ca"], pair["cb"]
    size = _append(a, 0, 2)
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", pair["sa"].url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    wrong = pair["sb"].url
    code, _, err = _run(capsys, "mirror", "--from", wrong, "--home", str(mirror_home))
    assert code == 1 and err.startswith("[ledger_mirror_wrong_log]"), err
    for half in err.split(" / ", 1):
        assert wrong in half and "ledger.b.example/log" in half and "ledger.a.example/log" in half
    assert load_config(mirror_home).mirror_of == pair["sa"].url  # the address not remembered
    with LedgerStore.open(mirror_home) as store:
        assert store.size() == store.verified_size() == size
    assert _evidence(mirror_home) == []


def test_a_checkpoint_still_awaiting_its_cosignature_is_fetched_again(
        pair: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's newest checkpoint waits a few seconds for its witness after an append: a
    mirror run that fetched it then failed "missing cosignature", at random on a busy log."""
    import threading

    import ledger.mirror

    a, ca, cb = pair["a"], pair["ca"], pair["cb"]
    _append(a, 0, 2)
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", pair["sa"].url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    size = _append(a, 10, 3, cosign=False)  # its witness not asked yet
    monkeypatch.setattr(ledger.mirror, "_COSIGNED_PAUSE_S", 0.5)
    monkeypatch.setattr(ledger.mirror, "_COSIGNED_TRIES", 40)
    asked: list[int] = []
    later = threading.Timer(1.0, lambda: asked.append(
        run_cli("checkpoint", "--cosign", "--home", str(a))))
    later.start()
    try:
        with LedgerStore.open(mirror_home) as store:
            cp = mirror(store, pair["sa"].url, [parse_verifier_key(cb.witness_vkey)])
            assert cp.size == size and store.verified_size() == size
    finally:
        later.join()
    assert asked == [0]


def test_a_refused_first_run_leaves_no_witness_key_behind(
        pair: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A first run at the wrong log, refused ("nothing was copied"), kept its --witness-key:
    here the wrong log's own witness, so that log's operator alone satisfied the mirror."""
    a, ca, cb = pair["a"], pair["ca"], pair["cb"]
    _append(a, 0, 2)
    mirror_home = tmp_path / "mirror"
    code, _, err = _run(capsys, "mirror", "--from", pair["sb"].url, "--log-key", ca.log_vkey,
                        "--witness-key", ca.witness_vkey, "--home", str(mirror_home))
    assert code == 1 and err.startswith("[ledger_mirror_wrong_log]"), err
    assert run_cli("mirror", "--from", pair["sa"].url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    assert load_config(mirror_home).mirror_witnesses == (cb.witness_vkey,)
    # once it holds a copy, a key given is added to those it has
    other = generate_signer("ledger.c.example/witness", COSIGNATURE_V1).verifier.vkey
    assert run_cli("mirror", "--from", pair["sa"].url, "--witness-key", other,
                   "--home", str(mirror_home)) == 0
    assert load_config(mirror_home).mirror_witnesses == (cb.witness_vkey, other)


def test_a_log_behind_its_witness_is_critical(pair: dict[str, Any],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The witness has cosigned a larger tree of this log than its database holds: the database
    was restored from an old copy, and appending would fork the public history. ``status`` says
    so as critical (exit 2), naming the witness and both sizes."""
    a = pair["a"]
    size = _append(a, 0, 4)
    assert _status(capsys, a)[0] == 0
    name = parse_verifier_key(pair["cb"].witness_vkey).name
    with LedgerStore.open(a) as store, store.engine.begin() as conn:
        conn.execute(update(t.witnesses).where(t.witnesses.c.name == name)
                     .values(size=size + 7))
    code, out, doc = _status(capsys, a)
    assert code == 2
    assert out.splitlines()[0] == "Estado / Health: crítico / critical"
    assert "[ledger_behind_witness]" in out
    assert doc["health"] == "critical"
    [problem] = [p for p in doc["problems"] if p["code"] == "ledger_behind_witness"]
    assert problem["health"] == "critical"
    for half in ("es", "en"):
        text = problem["message"][half]
        assert name in text and str(size + 7) in text and str(size) in text
    # the verdict on hand-made facts agrees
    facts = Facts(origin="ledger.x/log", mirror_of=None, size=100, checkpoint_size=100,
                  checkpoint_at=NOW - 60, witnesses=(WitnessFacts("w", 120, NOW - 60, None),))
    report = assess(facts, now=NOW)
    assert (report.health, report.exit_code) == ("critical", 2)
    assert [(p.code, p.detail) for p in report.problems] == [
        ("ledger_behind_witness", {"witness": "w", "size": 120, "have": 100})]


def test_a_mirror_whose_required_cosignature_was_deleted_fails_audit(
        pair: dict[str, Any], tmp_path: Path) -> None:
    """A mirror that requires a witness keeps its newest checkpoint only with that witness's
    cosignature: the row deleted, it served the log's signature alone (every counter given a
    proof from it failed) while its audit said ok."""
    a, ca, cb = pair["a"], pair["ca"], pair["cb"]
    size = _append(a, 0, 4)
    mirror_home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", pair["sa"].url, "--log-key", ca.log_vkey,
                   "--witness-key", cb.witness_vkey, "--home", str(mirror_home)) == 0
    with LedgerStore.open(mirror_home) as store:
        assert audit(store).ok
        with store.engine.begin() as conn:
            conn.execute(t.cosignatures.delete())
        report = audit(store)
    assert report.first == (size - 1, f"checkpoint {size}: no cosignature by a witness this "
                                      "mirror requires"), report.problems
