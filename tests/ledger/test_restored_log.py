"""A log's database restored from an old copy, and a witness's: the witness that cosigned more
stops the log from signing a second history of those sizes, and a witness that forgot what it
cosigned is named. Real nodes over HTTP, as two cities run them."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from credential.errors import LedgerError
from credential.note import COSIGNATURE_V1, generate_signer
from ledger.client import MESSAGE_MAX
from ledger.status import status as node_status
from ledger.store import LedgerStore
from tests.ledger.conftest import PASSPHRASE, Server, run_cli
from tests.ledger.helpers import commitment
from tests.ledger.test_network import _post_entries, cities

__all__ = ["cities"]  # the two-city fixture, used here too


def _copy(database: Path, to: Path) -> None:
    """A consistent copy of a live SQLite database (its online backup), as a nightly job."""
    source, target = sqlite3.connect(database), sqlite3.connect(to)
    source.backup(target)
    source.close()
    target.close()


def _restore(copy: Path, home: Path) -> None:
    """The log's database put back from ``copy``, as an operator restores a backup."""
    for suffix in ("", "-wal", "-shm"):
        (home / f"ledger.db{suffix}").unlink(missing_ok=True)
    _copy(copy, home / "ledger.db")


def _restored_from_yesterday(cities: dict[str, Any], tmp_path: Path, *,
                             since: int) -> tuple[int, int]:
    """The node of city ``a`` stopped and its database put back from a copy taken ``since``
    appends ago (today's kept as ``today.db``): the size its witness cosigned, and the
    restored database's."""
    a, sa, token = cities["a"], cities["sa"], cities["token"]
    _post_entries(sa.url, token, [commitment(i) for i in range(1, 4)])
    _copy(a / "ledger.db", tmp_path / "yesterday.db")
    _post_entries(sa.url, token, [commitment(i) for i in range(4, 4 + since)])
    cosigned = _witness_size(a)
    sa.stop()
    _copy(a / "ledger.db", tmp_path / "today.db")
    _restore(tmp_path / "yesterday.db", a)
    with LedgerStore.open(a) as store:
        return cosigned, store.size()


def _post(url: str, token: str, entries: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{url}/entries", data=json.dumps({"entries": entries}).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _witness_size(home: Path) -> int:
    with LedgerStore.open(home) as store:
        return max(size for _, _, _, size in store.witnesses())


def test_a_log_restored_from_an_old_copy_appends_nothing_its_witness_saw_past(
        cities: dict[str, Any], tmp_path: Path, serve: Callable[..., Server]) -> None:
    """It took appends and signed checkpoints over a shorter history: revocations published
    since the copy were gone for good, the offices told nothing, and once it grew to the size
    the witness had cosigned it had signed two trees of one size."""
    a, token = cities["a"], cities["token"]
    cosigned, restored = _restored_from_yesterday(cities, tmp_path, since=5)
    assert restored < cosigned
    # Started again, it shows its newest checkpoint to the witnesses: told at once
    again = serve(a)
    deadline = time.monotonic() + 30
    while _witness_size(a) <= restored and time.monotonic() < deadline:
        time.sleep(0.1)
    status, body = _post(again.url, token, [commitment(99)])
    # what an office is told (the operator's longer advice is for the operator): in the 200
    # characters an office shows of a node's words, and that its entries stay queued
    assert status == 503 and body["code"] == "ledger_node_behind_witness", body
    assert f"({cosigned})" in body["message"]["en"] and "stays queued" in body["message"]["en"]
    assert "sigue en cola" in body["message"]["es"]
    assert all(len(half) <= MESSAGE_MAX for half in body["message"].values())
    with LedgerStore.open(a) as store:
        assert store.size() == restored  # nothing appended, nothing signed
    # adding the very witness that says so again (as the message's other cause suggests)
    # does not lift it: the next append would sign a second tree of sizes it cosigned
    with LedgerStore.open(a) as store:
        [(_, vkey, url, _)] = store.witnesses()
    for spelled in (url, url.replace("127.0.0.1", "localhost")):  # nor another spelling
        assert run_cli("witnesses", "add", "--url", spelled, "--key", vkey,
                       "--home", str(a)) == 0
        status, body = _post(again.url, token, [commitment(99)])
        assert status == 503 and body["code"] == "ledger_node_behind_witness", body
    # and at the command line, before the passphrase is of any use
    entries = tmp_path / "e.jsonl"
    entries.write_text('{"type": "notice", "text": "acta"}\n')
    assert run_cli("append", "--file", str(entries), "--home", str(a)) == 1
    # a copy holding every record the witness cosigned lets it go on
    again.stop()
    _restore(tmp_path / "today.db", a)
    assert _post(serve(a).url, token, [commitment(99)])[0] == 201


def test_a_restored_log_appended_to_at_the_command_line_asks_its_witness_first(
        cities: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Restored, not served, and given a batch larger than the records it lost: the append
    signed a tree past the size its witness cosigned, a second history, and "ok" (the guard
    knew only the witness's size the old copy remembered)."""
    a = cities["a"]
    cosigned, restored = _restored_from_yesterday(cities, tmp_path, since=2)
    entries = tmp_path / "e.jsonl"
    entries.write_text("".join(f'{{"type": "notice", "text": "acta {i}"}}\n'
                               for i in range(2 * (cosigned - restored) + 3)))
    with caplog.at_level(logging.WARNING):
        assert run_cli("append", "--file", str(entries), "--home", str(a)) == 1
    with LedgerStore.open(a) as store:
        assert store.size() == restored  # nothing appended, nothing signed
        report = node_status(store, now=int(time.time()))
    assert report.health == "critical", report.problems
    assert "ledger_behind_witness" in [p.code for p in report.problems]


def test_a_cosignature_record_is_the_nodes_to_write(home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """One pasted back from "ledger entries" was appended (exit 0), and with no kept
    cosignature beside it every audit after failed, for good."""
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        store.append([commitment(0)], cosign=False)
        n = store.size()
        root = store.checkpoint().checkpoint.root
        origin = store.origin
    line = {"type": "witness_cosignature", "origin": origin, "size": n,
            "root": base64.urlsafe_b64encode(root).decode().rstrip("="),
            "witness": "ledger.b.example/witness",
            "signature": base64.urlsafe_b64encode(bytes(76)).decode().rstrip("=")}
    entries = tmp_path / "wc.jsonl"
    entries.write_text(json.dumps(line) + "\n")
    assert run_cli("append", "--file", str(entries), "--home", str(home)) == 2
    err = capsys.readouterr().err
    assert "[ledger_entry_type_node_only]" in err and "Line 1" in err and "Línea 1" in err
    with LedgerStore.open(home) as again:
        assert again.size() == n
    assert run_cli("audit", "--home", str(home)) == 0


def test_one_record_behind_its_witness_is_halted_and_remove_lets_it_go_on(
        store: LedgerStore) -> None:
    """The common restore: last night's copy, then one revocation. One record behind what the
    witness cosigned is already a second tree of that size: nothing appended, status critical
    (every office's append is refused meanwhile). ``witnesses remove``, once the other city
    says its witness is wrong, lets it go on."""
    witness = generate_signer("ledger.b.example/witness", COSIGNATURE_V1)
    store.add_witness("http://127.0.0.1:9", witness.verifier.vkey)
    store.append([commitment(0)], cosign=False)
    n = store.size()
    store.witness_ahead(witness.name, witness.verifier.vkey, n + 1)
    with pytest.raises(LedgerError) as err:
        store.append([commitment(1)], cosign=False)
    assert err.value.code == "ledger_behind_witness" and store.size() == n
    report = node_status(store, now=int(time.time()))
    assert report.health == "critical", report.problems
    assert [p.code for p in report.problems] == ["ledger_behind_witness"]
    assert store.remove_witness(witness.name)
    store.append([commitment(1)], cosign=False)
    assert store.size() == n + 1


def test_a_witness_that_forgot_what_it_cosigned_is_named(
        cities: dict[str, Any], tmp_path: Path, serve: Callable[..., Server],
        caplog: pytest.LogCaptureFixture) -> None:
    """The other city's witness restored from an old copy: the log fed it again from its
    older size, and neither node said anything, though it no longer guards those sizes."""
    a, b, sa, sb = cities["a"], cities["b"], cities["sa"], cities["sb"]
    _post_entries(sa.url, cities["token"], [commitment(1)])
    _copy(b / "ledger.db", tmp_path / "witness-yesterday.db")
    for i in range(2, 5):
        _post_entries(sa.url, cities["token"], [commitment(i)])
    known = _witness_size(a)
    sb.stop()
    for suffix in ("", "-wal", "-shm"):
        (b / f"ledger.db{suffix}").unlink(missing_ok=True)
    _copy(tmp_path / "witness-yesterday.db", b / "ledger.db")
    restarted = serve(b)
    with LedgerStore.open(a) as store:  # the witness's address after its restart
        store.add_witness(restarted.url, cities["cb"].witness_vkey)
    with caplog.at_level(logging.WARNING), LedgerStore.open(a, passphrase=PASSPHRASE) as store:
        store.append([commitment(5)])
    said = [r.getMessage() for r in caplog.records if "ledger_witness_went_back" in r.getMessage()]
    assert said and f"{known}" in said[0] and "forgot cosignatures" in said[0], caplog.text
    assert _witness_size(a) > known  # and it cosigned again


def test_an_older_checkpoint_of_the_same_database_is_no_alarm(
        cities: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """Two processes serving one database: one's checkpoint reaches the witness after the
    other's newer one, and the witness answers that it cosigned more. That was taken for a
    database restored from an old copy (now: appends stopped)."""
    from ledger.witness import request_cosignatures

    a, sa, token = cities["a"], cities["sa"], cities["token"]
    first = _post_entries(sa.url, token, [commitment(1)])["end"]
    _post_entries(sa.url, token, [commitment(2), commitment(3)])
    with caplog.at_level(logging.WARNING), LedgerStore.open(a, passphrase=PASSPHRASE) as store:
        request_cosignatures(store, store.checkpoint(first), wait=30)
        assert "ledger_witness_ahead" not in caplog.text
        store.append([commitment(4)], cosign=False)  # not stopped
