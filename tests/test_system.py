"""The system end to end across real processes: an office publishing its public record to a
city's ledger node over HTTP, surviving an outage without losing an entry, and a ledger database
that holds no personal data after real issuances."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from credential.keys import b64url
from issuer.store import IssuerStore
from ledger.entries import decode_record
from tests.conftest import PASSPHRASE, Run
from tests.factory import EXAMPLES

REPO = Path(__file__).resolve().parents[1]


class LedgerNode:
    """``pasaporte ledger serve`` in its own process, on a free port of 127.0.0.1."""

    def __init__(self, home: Path) -> None:
        env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pasaporte", "ledger", "serve", "--home", str(home),
             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("escuchando en / listening on "), line + (self.proc.stderr.read()
                                                         if self.proc.stderr else "")
        self.url = line.split()[-1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def ledger_home(homes: dict[str, Path], passphrase: str, run: Run) -> tuple[Path, str]:
    home = homes["ledger"]
    code, _, err = run("ledger", "init", "--origin", "ledger.mexicali.test/log",
                       "--home", str(home))
    assert code == 0, err
    code, out, err = run("ledger", "token", "add", "oficina-centro", "--home", str(home))
    assert code == 0, err
    return home, out.strip().splitlines()[-1]


@pytest.fixture
def node(ledger_home: tuple[Path, str]) -> Iterator[LedgerNode]:
    server = LedgerNode(ledger_home[0])
    yield server
    if server.proc.poll() is None:
        server.stop()


def _all_bytes(folder: Path) -> bytes:
    """Every byte the ledger keeps on disk, WAL included (checkpointed first)."""
    for db in folder.glob("*.db"):
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_office_publishes_to_ledger_and_nothing_personal_lands_there(
        homes: dict[str, Path], ledger_home: tuple[Path, str], node: LedgerNode, run: Run,
        tmp_path: Path) -> None:
    office = str(homes["issuer"])
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
               "Oficina Centro", "--home", office)[0] == 0
    code, _, err = run("issuer", "ledger", "--url", node.url, "--token", ledger_home[1],
                       "--home", office)
    assert code == 0, err
    holder = b64url(bytes(nacl.signing.SigningKey.generate().verify_key))
    ids = []
    for name, extra in (("mexicali", ["--holder-key", holder]), ("calexico", ["--paper"])):
        code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / f"claims-{name}.json"),
                             *extra, "--out", str(tmp_path / f"{name}.cred"), "--home", office)
        assert code == 0, err
        ids.append(out.strip())
    assert run("issuer", "suspend", ids[0], "--home", office)[0] == 0
    assert run("issuer", "revoke", ids[1], "--reason", "moved_away", "--home", office)[0] == 0
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", office)[0] == 0
    store = IssuerStore.open(homes["issuer"])
    assert store.pending() == []

    # The node's own audit recomputes everything it received.
    code, _, err = run("ledger", "audit", "--home", str(ledger_home[0]))
    assert code == 0, err
    entries = json.loads(_http_get(node.url + "/entries?start=0&end=100"))
    kinds = [decode_record(base64.b64decode(e["leaf"])).entry.TYPE for e in entries]
    assert kinds == ["key_registered", "credential_issued", "credential_issued",
                     "status_changed", "status_changed", "bundle_published"]

    # Privacy: no claim value, in any encoding we use, is anywhere in the ledger's files.
    raw = _all_bytes(ledger_home[0])
    for claims_file in ("claims-mexicali.json", "claims-calexico.json"):
        claims = json.loads((EXAMPLES / claims_file).read_text())
        values = [claims["given_name"], claims["family_name"], claims["birth_date"],
                  claims["residence"]["since"], claims["library"]["system"]]
        values += claims["given_name"].split() + claims["family_name"].replace("-", " ").split()
        for value in values:
            for encoded in (value.encode("utf-8"), value.encode("utf-16-le")):
                assert encoded not in raw, value
    # Nor in the office's own registry (it keeps commitments, not claims).
    office_raw = _all_bytes(homes["issuer"])
    assert b"Hern\xc3\xa1ndez" not in office_raw and b"1987-03-14" not in office_raw


def test_ledger_outage_loses_nothing(homes: dict[str, Path], ledger_home: tuple[Path, str],
                                     node: LedgerNode, run: Run, tmp_path: Path) -> None:
    office = str(homes["issuer"])
    run("issuer", "init", "--city", "Calexico", "--country", "US", "--office", "City Hall",
        "--home", office)
    run("issuer", "ledger", "--url", node.url, "--token", ledger_home[1], "--home", office)
    node.stop()
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-calexico.json"),
                         "--paper", "--out", str(tmp_path / "c.cred"), "--home", office)
    assert code == 0 and out.strip()  # the office keeps working
    assert "ledger_publish_unreachable" in err
    assert len(IssuerStore.open(homes["issuer"]).pending()) == 1

    again = LedgerNode(ledger_home[0])
    try:
        store = IssuerStore.open(homes["issuer"])
        store.configure_ledger(again.url, ledger_home[1], PASSPHRASE)  # the node moved ports
        code, out, _ = run("issuer", "publish", "--home", office)
        assert code == 0 and "1" in out
        assert store.pending() == []
        assert run("ledger", "audit", "--home", str(ledger_home[0]))[0] == 0
    finally:
        again.stop()


def test_a_wrong_token_is_refused_and_loses_nothing(
        homes: dict[str, Path], ledger_home: tuple[Path, str], node: LedgerNode, run: Run,
        tmp_path: Path) -> None:
    """A token mistyped at set-up: the node refuses it (HTTP 401) and the office saves nothing,
    saying so in both languages; it keeps working, and the entries wait in the queue for the
    right token. A token the node stops taking later (revoked there) is said at each change,
    which still succeeds, its entries queued."""
    office = str(homes["issuer"])
    code, _, err = run("issuer", "publish", "--home", office)
    assert code == 1 and "issuer_not_initialised" in err
    run("issuer", "init", "--city", "Calexico", "--country", "US", "--office", "City Hall",
        "--home", office)
    code, _, err = run("issuer", "publish", "--home", office)
    assert code == 1 and "[ledger_not_configured]" in err and "pasaporte issuer ledger" in err
    code, _, err = run("issuer", "ledger", "--url", node.url, "--token", "lt_mistyped",
                       "--home", office)
    assert code == 1 and "[ledger_token_refused]" in err and "401" in err
    store = IssuerStore.open(homes["issuer"])
    assert not store.ledger_configured()
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-calexico.json"),
                         "--paper", "--out", str(tmp_path / "c.cred"), "--home", office)
    assert code == 0 and out.strip()
    assert len(store.pending()) == 2  # the key and the issuance, nothing lost
    code, _, _ = run("issuer", "ledger", "--url", node.url, "--token", ledger_home[1],
                     "--home", office)
    assert code == 0 and store.pending() == []
    assert run("ledger", "token", "revoke", "oficina-centro",
               "--home", str(ledger_home[0]))[:2] == (0, "ok: oficina-centro\n")
    code, out, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-calexico.json"),
                         "--paper", "--out", str(tmp_path / "d.cred"), "--home", office)
    assert code == 0 and out.strip() and "[ledger_publish_refused]" in err and "401" in err
    assert "rechazó" in err and "refused" in err and '{"code"' not in err
    assert len(store.pending()) == 1
    assert run("ledger", "audit", "--home", str(ledger_home[0]))[0] == 0


def _http_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def test_a_lost_answer_publishes_nothing_twice(
        homes: dict[str, Path], ledger_home: tuple[Path, str], node: LedgerNode, run: Run,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger appends a batch but its answer never reaches the office (a timeout, a crash):
    the office resends that same batch under the same key, and the ledger holds it once."""
    from credential.errors import LedgerError
    from issuer.publish import post_entries as real

    office = str(homes["issuer"])
    run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
        "--home", office)
    run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"), "--paper",
        "--out", str(tmp_path / "a.cred"), "--home", office)
    store = IssuerStore.open(homes["issuer"])
    store.configure_ledger(node.url, ledger_home[1], PASSPHRASE)

    def delivered_but_answer_lost(url: str, token: str, entries: list[dict[str, Any]],
                                  idempotency_key: str | None = None,
                                  possession: dict[int, bytes] | None = None) -> dict[str, Any]:
        real(url, token, entries, idempotency_key, possession)
        raise LedgerError("ledger_publish_unreachable", url=url, reason="timed out")

    monkeypatch.setattr("issuer.store.post_entries", delivered_but_answer_lost)
    with pytest.raises(LedgerError):
        store.publish(PASSPHRASE)
    monkeypatch.setattr("issuer.store.post_entries", real)
    assert len(store.pending()) == 2  # the office cannot know the ledger has them
    # meanwhile the office goes on working: one more entry joins the queue, and the command
    # publishes again on its way out (the batch in flight first, under its first key)
    assert run("issuer", "revoke", _only_credential(homes["issuer"]), "--home", office)[0] == 0
    code, _, err = run("issuer", "publish", "--home", office)
    assert code == 0, err
    assert store.pending() == []
    entries = json.loads(_http_get(node.url + "/entries?start=0&end=100"))
    kinds = [decode_record(base64.b64decode(e["leaf"])).entry.TYPE for e in entries]
    assert kinds == ["key_registered", "credential_issued", "status_changed"]
    assert run("ledger", "audit", "--home", str(ledger_home[0]))[0] == 0


def _only_credential(home: Path) -> str:
    from issuer.store import credentials

    with IssuerStore.open(home).engine.connect() as db:
        (row,) = db.execute(credentials.select()).all()
    return str(row.id)


def test_a_long_queue_goes_out_in_batches_once_each(
        homes: dict[str, Path], ledger_home: tuple[Path, str], node: LedgerNode, run: Run,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("issuer.store.PUBLISH_BATCH", 2)
    office = str(homes["issuer"])
    run("issuer", "init", "--city", "Calexico", "--country", "US", "--office", "City Hall",
        "--home", office)
    for n in range(2):
        run("issuer", "issue", "--claims", str(EXAMPLES / "claims-calexico.json"), "--paper",
            "--out", str(tmp_path / f"{n}.cred"), "--home", office)
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", office)
    store = IssuerStore.open(homes["issuer"])
    assert len(store.pending()) == 4  # key, two issuances, bundle: queued, no ledger yet
    store.configure_ledger(node.url, ledger_home[1], PASSPHRASE)
    assert store.publish(PASSPHRASE) == 4
    assert store.pending() == []
    entries = json.loads(_http_get(node.url + "/entries?start=0&end=100"))
    kinds = [decode_record(base64.b64decode(e["leaf"])).entry.TYPE for e in entries]
    assert kinds == ["key_registered", "credential_issued", "credential_issued",
                     "bundle_published"]


def _statuses(run: Run, home: str, ids: list[str]) -> list[str]:
    return [json.loads(run("issuer", "status", cid, "--json", "--home", home)[1])["status"]
            for cid in ids]


def _ledger_kinds(url: str) -> list[tuple[str, Any]]:
    entries = json.loads(_http_get(url + "/entries?start=0&end=1000"))
    out = []
    for e in entries:
        entry = decode_record(base64.b64decode(e["leaf"])).entry
        out.append((entry.TYPE, getattr(entry, "index", None)))
    return out


def test_a_restored_office_catches_up_from_the_ledger(
        homes: dict[str, Path], ledger_home: tuple[Path, str], node: LedgerNode, run: Run,
        tmp_path: Path) -> None:
    """Status changes made after the backup come back from the public ledger; what the backup
    had queued and the lost office published since is not published again; the restored
    office's bundle outranks the lost office's last one at the counter."""
    office, restored = str(homes["issuer"]), str(tmp_path / "restored")
    run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
        "--home", office)
    assert run("issuer", "ledger", "--url", node.url, "--token", ledger_home[1],
               "--home", office)[0] == 0

    def issue(name: str) -> str:
        code, out, err = run("issuer", "issue", "--claims",
                             str(EXAMPLES / "claims-mexicali.json"), "--paper",
                             "--out", str(tmp_path / f"{name}.cred"), "--home", office)
        assert code == 0, err
        return out.strip()

    z = issue("z")  # signed by the first key, which the office rotates away from
    (first_key,) = json.loads(run("issuer", "keys", "--json", "--home", office)[1])
    assert run("issuer", "rotate", "--home", office)[0] == 0
    a, b, c = issue("a"), issue("b"), issue("c")
    assert run("issuer", "suspend", a, "--home", office)[0] == 0  # published at once
    node.stop()
    assert run("issuer", "revoke", b, "--home", office)[0] == 0  # queued: the node is down
    again = LedgerNode(ledger_home[0])
    try:
        store = IssuerStore.open(homes["issuer"])
        store.configure_ledger(again.url, ledger_home[1], PASSPHRASE)
        assert len(store.pending()) == 1  # the backup holds b's revocation still queued
        assert run("issuer", "backup", "--out", str(tmp_path / "o.bak"), "--home", office)[0] == 0

        # After the backup the office goes on (publishing the queued revocation first) ...
        assert run("issuer", "compromised", first_key["kid"], "--since",
                   "2026-01-01T00:00:00Z", "--home", office)[0] == 0  # a leak found later
        assert run("issuer", "reinstate", a, "--home", office)[0] == 0
        assert run("issuer", "suspend", c, "--home", office)[0] == 0
        d = issue("d")
        assert run("issuer", "rotate", "--home", office)[0] == 0  # a key the backup never saw
        e = issue("e")
        assert run("issuer", "suspend", e, "--home", office)[0] == 0  # on the new key's list
        lost_keys = json.loads(run("issuer", "keys", "--json", "--home", office)[1])
        (lost_key,) = [k for k in lost_keys if k["status"] == "active"]
        assert run("issuer", "bundle", "--out", str(tmp_path / "lost.cbor"),
                   "--home", office)[0] == 0
        assert IssuerStore.open(homes["issuer"]).pending() == []
        # ... and is then lost. The restore reads the ledger back.
        code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"),
                           "--home", restored)
        assert code == 0, err
        assert "2 cambio(s) de estado" in err and "1 entrada(s) en cola ya publicadas" in err
        # the ledger's count (a log: no terminal) ends its line before the next message
        assert re.search(r"Public ledger: (\d+)/\1\n", err), err
        assert lost_key["kid"] in err and first_key["kid"] in err  # named as compromised too
        assert _statuses(run, restored, [a, b, c]) == ["valid", "revoked", "suspended"]
        # b's revocation is on the public record once, not twice (index None: other types)
        kinds = _ledger_kinds(again.url)
        assert [k for k, _ in kinds].count("status_changed") == 5
        assert kinds[-2:] == [("key_compromised", None)] * 2  # the backup's key, the lost one's
        entries = json.loads(_http_get(again.url + "/entries?start=0&end=1000"))
        last = decode_record(base64.b64decode(entries[-1]["leaf"])).entry
        assert getattr(last, "kid", None) == lost_key["kid"]
        # the restored office's new key takes a status list number the lost office never used
        new_keys = json.loads(run("issuer", "keys", "--json", "--home", restored)[1])
        (new_key,) = [k for k in new_keys if k["status"] == "active"]
        assert new_key["status_list"] == lost_key["status_list"] + 1
        assert run("ledger", "audit", "--home", str(ledger_home[0]))[0] == 0

        # A counter given both bundles keeps the restored office's: it knows the lost key is
        # compromised (d was signed after the backup) and that c is suspended.
        run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", restored)
        run("issuer", "bundle", "--out", str(tmp_path / "new.cbor"), "--home", restored)
        for name, expected in (("a", "accepted"), ("c", "suspended"), ("d", "key_compromised"),
                               ("e", "issuer_unknown"), ("z", "key_compromised")):
            _, result, _ = run("verify", "--service", "library", "--bundle",
                               str(tmp_path / "lost.cbor"), str(tmp_path / "new.cbor"),
                               "--trust-root", str(tmp_path / "r.json"), "--text",
                               (tmp_path / f"{name}.cred").read_text().strip(), "--json")
            assert json.loads(result)["code"] == expected, (name, result)
        assert d and e and z

        # The same backup restored a second time would make two offices with one root key.
        code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"),
                           "--home", str(tmp_path / "twice"))
        assert code == 1 and "restore_already_done" in err, err
        assert not (tmp_path / "twice").exists()
    finally:
        again.stop()


def test_a_ledger_history_the_backup_cannot_place_restores_nothing(
        homes: dict[str, Path], ledger_home: tuple[Path, str], node: LedgerNode, run: Run,
        tmp_path: Path) -> None:
    office, restored = str(homes["issuer"]), tmp_path / "restored"
    run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
        "--home", office)
    run("issuer", "ledger", "--url", node.url, "--token", ledger_home[1], "--home", office)
    code, cid, _ = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "a.cred"), "--home", office)
    store = IssuerStore.open(homes["issuer"])
    store.configure_ledger("http://127.0.0.1:9/", ledger_home[1], PASSPHRASE)  # unreachable
    assert run("issuer", "revoke", cid.strip(), "--home", office)[0] == 0  # stays queued
    store.configure_ledger(node.url, ledger_home[1], PASSPHRASE)
    assert run("issuer", "backup", "--out", str(tmp_path / "o.bak"), "--home", office)[0] == 0
    node.stop()
    code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o.bak"),
                       "--home", str(restored))
    assert code == 1 and "restore_ledger_unreadable" in err and "--no-ledger" in err, err
    assert not restored.exists()
    again = LedgerNode(ledger_home[0])  # back, on another port
    try:
        store.configure_ledger(again.url, ledger_home[1], PASSPHRASE)
        assert run("issuer", "backup", "--out", str(tmp_path / "o2.bak"),
                   "--home", office)[0] == 0
        # someone else's status change for this office's list reaches the ledger first
        from issuer.publish import post_entries

        (queued,) = [e for _, e in store.pending()]
        post_entries(again.url, ledger_home[1], [{**queued, "status": "suspended"}])
        code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o2.bak"),
                           "--home", str(restored))
        assert code == 1 and "restore_ledger_diverges" in err, err
        assert not restored.exists()
        code, _, err = run("issuer", "restore", "--from", str(tmp_path / "o2.bak"),
                           "--no-ledger", "--home", str(restored))
        assert code == 0 and "no public ledger was read" in err
    finally:
        again.stop()
