"""``ledger status`` and ``GET /status``: a node's health for a monitor, from real stores and
real ``ledger serve`` processes (a witness that answers, then stops; split-view evidence; a
mirror cut short; a missing database), plus the pure verdict on hand-made facts."""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, update
from sqlalchemy import text as sql

from credential.errors import StoreError
from credential.note import COSIGNATURE_V1, generate_signer
from ledger import client
from ledger import schema as t
from ledger.mirror import mirror
from ledger.status import Facts, WitnessFacts, assess, collect
from ledger.store import AppendRequest, LedgerStore, make_engine, migrate
from tests.ledger.conftest import PASSPHRASE, Server, init_home, run_cli
from tests.ledger.helpers import commitment

DAY = 86400
NOW = 1_800_000_000


def _status(capsys: pytest.CaptureFixture[str], home: Path, *extra: str
            ) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli("status", "--home", str(home), *extra)
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], home: Path, *extra: str
          ) -> tuple[int, dict[str, Any]]:
    code, out, _ = _status(capsys, home, "--json", *extra)
    doc: dict[str, Any] = json.loads(out)
    return code, doc


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def _codes(doc: dict[str, Any]) -> list[str]:
    return [p["code"] for p in doc["problems"]]


def _backdate(home: Path, seconds: int) -> None:
    """As if every checkpoint had been signed ``seconds`` earlier (time passing, in a test)."""
    with LedgerStore.open(home) as store, store.engine.begin() as conn:
        conn.execute(update(t.checkpoints).values(created=t.checkpoints.c.created - seconds))


# -- the verdict, on hand-made facts ------------------------------------------------------------

def _facts(**kw: Any) -> Facts:
    base: dict[str, Any] = {
        "origin": "ledger.x/log", "mirror_of": None, "size": 100, "checkpoint_size": 100,
        "checkpoint_at": NOW - 60,
        "witnesses": (WitnessFacts("w", 100, NOW - 60, None),)}
    return Facts(**{**base, **kw})


def test_the_verdict() -> None:
    assert assess(_facts(), now=NOW).health == "ok"
    old = assess(_facts(checkpoint_at=NOW - DAY - 1), now=NOW)
    assert (old.health, [p.code for p in old.problems]) == (
        "warning", ["ledger_status_checkpoint_old"])
    assert assess(_facts(checkpoint_at=NOW - DAY), now=NOW).health == "ok"  # exactly the limit
    # dated three hours ahead: a clock to set, not "age 0 s, ok"
    ahead = assess(_facts(checkpoint_at=NOW + 3 * 3600), now=NOW)
    assert (ahead.health, [p.code for p in ahead.problems]) == (
        "warning", ["ledger_status_checkpoint_future"])
    assert "10800 s" in ahead.problems[0].message["en"]
    assert "adelantado" in ahead.problems[0].message["es"]
    assert assess(_facts(checkpoint_at=NOW + 300), now=NOW).health == "ok"  # within 5 minutes
    assert [p.code for p in assess(_facts(witnesses=()), now=NOW).problems] == [
        "ledger_status_no_witness"]
    behind = _facts(size=20_101, checkpoint_size=20_101,
                    witnesses=(WitnessFacts("w", 100, NOW - 60, NOW - 50),))
    assert [p.code for p in assess(behind, now=NOW).problems] == ["ledger_status_witness_behind"]
    assert assess(behind, now=NOW, max_behind=20_001).health == "ok"
    # A witness last heard from a week ago (nothing to cosign since), asked a minute ago: not
    # silent. Asked more than --max-age ago and still nothing: silent.
    quiet = WitnessFacts("w", 90, NOW - 7 * DAY, NOW - 60)
    assert assess(_facts(witnesses=(quiet,)), now=NOW).health == "ok"
    silent = WitnessFacts("w", 90, NOW - 7 * DAY, NOW - DAY - 5)
    assert [p.code for p in assess(_facts(witnesses=(silent,)), now=NOW).problems] == [
        "ledger_status_witness_silent"]
    split = assess(_facts(split_views=(("ledger.y/log", 7, NOW),), split_view_count=3), now=NOW)
    assert split.health == "critical" and split.exit_code == 2
    assert "ledger.y/log" in split.problems[0].message["en"]
    mirror_facts = _facts(mirror_of="https://u:pw@m.example/x;token=s3cret?k=1", witnesses=(),
                          size=120)
    report = assess(mirror_facts, now=NOW)
    assert [p.code for p in report.problems] == ["ledger_status_mirror_unfinished"]
    doc = report.to_json()
    # no user, password, path parameters or query: it is public
    assert doc["source"] == "https://m.example/x"
    assert doc["mirror"] == {"verified": 100, "unverified": 20}
    assert "pw" not in json.dumps(doc)
    assert assess(_facts(checkpoint_size=None, checkpoint_at=None), now=NOW).health == "warning"


# -- real stores, real servers --------------------------------------------------------------

def test_a_healthy_node_then_its_witness_stops(pair: dict[str, Any], serve: Callable[..., Server],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair["a"], pair["b"]
    with LedgerStore.open(a, passphrase=PASSPHRASE) as store:
        signed = store.append([commitment(i) for i in range(5)])
    size = signed.checkpoint.size
    code, out, err = _status(capsys, a)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "Estado / Health: ok"
    assert f"Registros / Records: {size}" in lines
    assert any(line.startswith(f"Testigo / Witness {pair['witness']}: cosignó / cosigned {size}")
               for line in lines)

    code, doc = _json(capsys, a)
    assert code == 0
    # the documented shape: these keys, no others
    assert set(doc) == {"health", "time", "origin", "role", "source", "size", "checkpoint",
                        "witnesses", "uncosigned", "witnessing", "mirror", "split_views",
                        "problems", "limits"}
    assert (doc["health"], doc["origin"], doc["role"], doc["source"]) == (
        "ok", "ledger.a.example/log", "node", None)
    assert doc["size"] == size and doc["checkpoint"]["size"] == size
    assert 0 <= doc["checkpoint"]["age"] < 60
    [w] = doc["witnesses"]
    assert (w["name"], w["size"], w["behind"], w["waiting_since"]) == (
        pair["witness"], size, 0, None)
    assert w["time"].endswith("Z")
    assert doc["uncosigned"] == 0 and doc["problems"] == []
    assert doc["limits"] == {"max_age": DAY, "max_behind": 10_000}
    assert doc["split_views"] == {"count": 0, "first": []}
    # the witness's node: what it witnesses, and the size it cosigned
    code, other = _json(capsys, b)
    assert [(x["origin"], x["size"]) for x in other["witnessing"]] == [
        ("ledger.a.example/log", size)]

    # the witness stops answering: appends go on, its cosignatures do not
    pair["sb"].stop()
    with LedgerStore.open(a, passphrase=PASSPHRASE) as store:
        store.append([commitment(100 + i) for i in range(6)])
        now_size = store.size()
    code, doc = _json(capsys, a, "--max-behind", "5")
    assert (code, doc["health"]) == (1, "warning")
    assert _codes(doc) == ["ledger_status_witness_behind"]
    assert doc["witnesses"][0]["behind"] == now_size - size == doc["uncosigned"]
    assert doc["witnesses"][0]["waiting_since"] is not None
    # within the default limits it is still fine (a witness missing one append is not news)...
    assert _status(capsys, a)[0] == 0
    # ...until a day passes: the newest checkpoint is old, and the witness silent that long
    _backdate(a, 2 * DAY)
    _, out, _ = _status(capsys, a)
    assert code == 1
    assert out.splitlines()[0] == "Estado / Health: aviso / warning"
    assert "[ledger_status_checkpoint_old]" in out and "[ledger_status_witness_silent]" in out
    code, doc = _json(capsys, a, "--max-age", str(3 * DAY))
    assert code == 0, doc

    # GET /status on the node's own server says the same: 200 for a warning
    status, body = _get(f"{pair['sa'].url}/status")
    assert status == 200
    served = json.loads(body)
    assert served["health"] == "warning" and set(_codes(served)) == {
        "ledger_status_checkpoint_old", "ledger_status_witness_silent"}
    status, body = _get(f"{pair['sa'].url}/status?max_age={3 * DAY}")
    assert status == 200 and json.loads(body)["health"] == "ok"
    status, body = _get(f"{pair['sa'].url}/status?max_age=-1")
    assert status == 400 and json.loads(body)["code"] == "ledger_bad_param"


def test_split_view_evidence_is_critical(pair: dict[str, Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The log ``a`` shows the witness ``b`` another tree of a size it cosigned: ``b`` keeps
    the evidence, and from then on reports critical (exit 2) to its operator; to a load
    balancer it stays up (200): it is the other city's log that forked, and ``b`` still serves
    and proves its own."""
    a, sb = pair["a"], pair["sb"]
    with LedgerStore.open(a, passphrase=PASSPHRASE) as store:
        size = store.append([commitment(i) for i in range(3)]).checkpoint.size
    fork = tmp_path / "fork"
    fork.mkdir()
    for name in ("ledger.json", "log.key", "witness.key"):
        shutil.copy(a / name, fork / name)
    engine = make_engine(f"sqlite:///{fork / 'ledger.db'}")
    migrate(engine)
    engine.dispose()
    with LedgerStore.open(fork, passphrase=PASSPHRASE) as evil:
        evil.append([commitment(1000 + i) for i in range(size)], cosign=False)
        body = f"old {size}\n\n{evil.checkpoint().note}".encode()
    status, _, reply = client.post(f"{sb.url}/add-checkpoint", body)
    assert (status, reply) == (409, f"{size}\n".encode())

    code, out, _ = _status(capsys, pair["b"])
    assert code == 2
    assert out.splitlines()[0] == "Estado / Health: crítico / critical"
    assert "Vistas divididas / Split views: 1" in out
    code, doc = _json(capsys, pair["b"])
    assert (code, doc["health"]) == (2, "critical")
    assert doc["split_views"]["count"] == 1
    assert [(v["origin"], v["size"]) for v in doc["split_views"]["first"]] == [
        ("ledger.a.example/log", size)]
    assert doc["problems"][0]["code"] == "ledger_status_split_view"
    assert doc["problems"][0]["health"] == "critical"
    status, text = _get(f"{sb.url}/status")
    assert status == 200
    served = json.loads(text)
    assert served["health"] == "critical" and served["split_views"]["count"] == 1
    # the node that equivocated is not the one that knows: its own status is fine
    assert _status(capsys, a)[0] == 0


def test_a_mirror_behind_its_source(tmp_path: Path, serve: Callable[..., Server],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    vkey = json.loads(init_home(log, "ledger.src.example/log"))["log_vkey"]
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(i) for i in range(5)], cosign=False)
    node = serve(log)
    home = tmp_path / "mirror"
    assert run_cli("mirror", "--from", node.url, "--log-key", vkey, "--unwitnessed",
                   "--home", str(home)) == 0
    code, doc = _json(capsys, home)
    assert (code, doc["role"], doc["source"]) == (0, "mirror", node.url)
    assert doc["mirror"] == {"verified": 5, "unverified": 0}
    assert doc["witnesses"] == [] and doc["uncosigned"] is None  # a mirror asks nobody
    # the log moves on; a mirror run is cut short part way
    with LedgerStore.open(log, passphrase=PASSPHRASE) as store:
        store.append([commitment(100 + i) for i in range(9)], cosign=False)
    with LedgerStore.open(home) as store:
        mirror(store, node.url, page=2, limit=4)
    code, out, _ = _status(capsys, home)
    assert code == 1
    assert out.splitlines()[:3] == ["Estado / Health: aviso / warning", "Origen / Origin: "
                                    "ledger.src.example/log", "Papel / Role: réplica de / "
                                    f"mirror of {node.url}"]
    code, doc = _json(capsys, home)
    assert (code, _codes(doc)) == (1, ["ledger_status_mirror_unfinished"])
    assert doc["size"] == 9 and doc["mirror"] == {"verified": 5, "unverified": 4}
    # the next full run catches up
    assert run_cli("mirror", "--from", node.url, "--unwitnessed", "--home", str(home)) == 0
    code, doc = _json(capsys, home)
    assert (code, doc["size"], doc["mirror"]["verified"]) == (0, 14, 14)


def test_a_missing_database_is_critical(sqlite_home: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (sqlite_home / "ledger.db").unlink()
    code, out, err = _status(capsys, sqlite_home)
    assert code == 2 and out == ""
    assert err.startswith("[ledger_database_missing]")
    code, doc = _json(capsys, sqlite_home)
    assert code == 2 and doc["code"] == "ledger_database_missing"
    assert set(doc["message"]) == {"es", "en"}
    # no home at all: the same, critical
    code, _, err = _status(capsys, sqlite_home.parent / "nowhere")
    assert code == 2 and err.startswith("[ledger_not_initialised]")
    # a command the monitor got wrong is "unknown" (3), never "critical"
    code, _, err = _status(capsys, sqlite_home, "--max-age", "-1")
    assert code == 3 and "[usage_error]" in err
    assert _status(capsys, sqlite_home, "--no-such-flag")[0] == 3


def test_status_reveals_nothing_of_records_tokens_or_clients(
        pair: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    a, sa = pair["a"], pair["sa"]
    client_name = "oficina-secreta-7731"
    key = "idem-SECRETO-4711"
    notice = "ACTA-RESERVADA-90210"
    with LedgerStore.open(a, passphrase=PASSPHRASE) as store:
        token = store.add_token(client_name)
        store.append([commitment(1)], request=AppendRequest(client_name, key))
        store.append([{"type": "notice", "text": notice}])
        leaves = [leaf for _, leaf in store.entries(0, store.size())]
    # the token, the client's name, the idempotency key, a record's text and bytes, and the
    # witness's address (a URL may carry credentials)
    secrets = [token, token[3:], client_name, key, notice, pair["sb"].url.split("//")[1],
               commitment(1)["commitment"]]
    secrets += [base64.b64encode(leaf).decode() for leaf in leaves]
    status, body = _get(f"{sa.url}/status")
    assert status == 200
    assert json.loads(body)["size"] == len(leaves)
    _, out, _ = _status(capsys, a)
    _, doc = _json(capsys, a)
    for text in (body, out, json.dumps(doc)):
        for secret in secrets:
            assert secret not in text, secret
    # and the check can fail: a known public value is there
    assert "ledger.a.example/log" in body and pair["witness"] in body


def test_status_on_each_backend(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same queries on SQLite and PostgreSQL: a witness that cannot be reached."""
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        dead = generate_signer("ledger.dead.example/witness", COSIGNATURE_V1).verifier.vkey
        store.add_witness("http://127.0.0.1:9", dead)  # discard port: refused at once
        store.append([commitment(i) for i in range(4)])
        facts = collect(store)
    assert [(w.name, w.cosigned, w.cosigned_at) for w in facts.witnesses] == [
        ("ledger.dead.example/witness", 0, None)]
    assert facts.size == 4 and facts.checkpoint_size == 4
    code, doc = _json(capsys, home, "--max-behind", "3")
    assert (code, _codes(doc)) == (1, ["ledger_status_witness_behind"])


@pytest.mark.parametrize("stamp", [(1 << 63) - 1, int(time.time() * 1000)])
def test_a_cosignature_time_past_any_date_still_reports(
        sqlite_home: Path, stamp: int, capsys: pytest.CaptureFixture[str]) -> None:
    """A witness's time is its own: one in milliseconds, or 2^63-1 as tlog-cosignature allows,
    kept before the log refused such times (or by a mirror, from its source's witnesses).
    Its status report is still written (the time at the end of what RFC 3339 spells), not an
    "unexpected error" with exit 1, which a monitor reads as a warning about the node."""
    witness = generate_signer("ledger.b.example/witness", COSIGNATURE_V1)
    with LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        store.add_witness("http://127.0.0.1:9", witness.verifier.vkey)
        store.append([commitment(0)], cosign=False)
        cp = store.checkpoint().checkpoint
        store.add_cosignatures(cp.size, [witness.sign(cp.body(), timestamp=stamp)],
                               witness=witness.name)
    code, doc = _json(capsys, sqlite_home)
    assert code == 0, doc
    assert doc["witnesses"][0]["time"] == "9999-12-31T23:59:59Z"
    code, out, _ = _status(capsys, sqlite_home)
    assert code == 0 and "ledger.b.example/witness" in out


def _work_of_collect(store: LedgerStore) -> tuple[Facts, int]:
    """The facts, and how much work SQLite did for them: its virtual machine's steps (a
    count, not a time: the same on a loaded machine)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    def install(conn: Any, *_: Any) -> None:
        conn.connection.driver_connection.set_progress_handler(count, 1)

    event.listen(store.engine, "before_cursor_execute", install)
    try:
        return collect(store), steps[0]
    finally:
        event.remove(store.engine, "before_cursor_execute", install)


def test_status_does_the_same_work_on_a_large_log(sqlite_home: Path) -> None:
    """No scans: every query is a primary-key or index lookup, so a log of 300,000 records in
    300 checkpoints, with a witness behind, costs status what a log of 1,000 does."""
    with LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        w = generate_signer("ledger.slow.example/witness", COSIGNATURE_V1).verifier.vkey
        store.add_witness("http://127.0.0.1:9", w)
        store.append([commitment(i) for i in range(1000)], cosign=False)
        _, small = _work_of_collect(store)
        for batch in range(1, 300):
            store.append([commitment(batch * 1000 + i) for i in range(1000)], cosign=False)
        facts, large = _work_of_collect(store)
    assert facts.size == 300_000 and facts.witnesses[0].waiting_since is not None
    assert small > 0 and large <= 2 * small + 5, (small, large)


_SCHEMA_DAMAGE = {
    "entries dropped": ("DROP TABLE ledger_entries", "table ledger_entries missing"),
    "kids dropped": ("DROP TABLE ledger_kids", "table ledger_kids missing"),
    "revision set back": ("UPDATE ledger_alembic_version SET version_num = '0001'",
                          "is newer than schema revision 0001"),
    "revision dropped": ("DROP TABLE ledger_alembic_version", "schema revision not recorded"),
}


@pytest.mark.parametrize("damage", sorted(_SCHEMA_DAMAGE))
def test_a_schema_changed_by_hand_is_critical_not_ok(
        store: LedgerStore, client: FlaskClient, home: Path, damage: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A table dropped, or the revision set back, under a running node: /status said 200 "ok"
    (it reads only the head and checkpoints) while every read of the records failed, so a load
    balancer kept a node that could not serve; and audit passed a log no one could append to.
    Now the probe answers 503, the CLI critical, and audit names it."""
    statement, reason = _SCHEMA_DAMAGE[damage]
    store.append([commitment(1)])
    with store.engine.begin() as conn:
        conn.execute(sql(statement))
    with pytest.raises(StoreError) as err:
        collect(store)
    assert err.value.code == "ledger_database_unreadable" and reason in err.value.message["en"]
    assert err.value.message["es"].count("falta") + err.value.message["es"].count(
        "posterior") + err.value.message["es"].count("no consta") == 1
    resp = client.get("/status")
    assert resp.status_code == 503, resp.get_data(as_text=True)
    if damage == "entries dropped":  # a read of it by the running node: typed on each backend
        assert client.get("/entries?start=0&end=1").status_code == 503
        with pytest.raises(StoreError) as err:
            store.entries(0, 1)
        assert err.value.code == "ledger_database_unreadable"
    store.close()
    code, out, errtext = _status(capsys, home)
    assert (code, out) == (2, "") and errtext.startswith("[ledger_database_unreadable]"), errtext
    capsys.readouterr()
    assert run_cli("audit", "--home", str(home)) != 0
    assert "[ledger_database_unreadable]" in capsys.readouterr().err
