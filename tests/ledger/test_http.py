"""The HTTP API through Flask's test client: reads, authenticated appends, and bad input."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from credential import merkle
from credential.errors import StoreError, UsageError
from credential.note import open_note, parse_checkpoint
from ledger import schema as t
from ledger.audit import audit
from ledger.http import create_app
from ledger.store import LedgerStore
from ledger.witness import MAX_BODY
from tests.ledger.conftest import PASSPHRASE, init_home, run_cli
from tests.ledger.helpers import b64u, commitment, http_entries, valid_entries


@pytest.fixture
def token(store: LedgerStore) -> str:
    return store.add_token("issuer")


@pytest.fixture
def filled(store: LedgerStore) -> LedgerStore:
    store.append(valid_entries())
    store.append([commitment(i) for i in range(1, 13)])
    return store


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reads(client: FlaskClient, filled: LedgerStore) -> None:
    resp = client.get("/checkpoint")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    assert "public" in resp.headers["Cache-Control"]
    note, _ = open_note(resp.get_data(as_text=True), [filled.verifier])
    cp = parse_checkpoint(note.text)
    assert cp.size == 20
    items = client.get("/entries?start=0&end=20").get_json()
    assert [i["index"] for i in items] == list(range(20))
    hashes = [merkle.leaf_hash(base64.b64decode(i["leaf"])) for i in items]
    assert merkle.root_from_leaf_hashes(hashes) == cp.root
    got = client.get("/proof/inclusion?index=3&size=20").get_json()
    merkle.verify_inclusion(3, 20, hashes[3], [base64.b64decode(p) for p in got["proof"]],
                            cp.root)
    got = client.get("/proof/consistency?old=8&new=20").get_json()
    merkle.verify_consistency(8, 20, [base64.b64decode(p) for p in got["proof"]],
                              merkle.root_from_leaf_hashes(hashes[:8]), cp.root)
    assert client.get("/entries?start=15&end=999999").get_json()[-1]["index"] == 19
    assert client.get("/entries?start=20&end=30").get_json() == []  # at the end: nothing yet


def test_entries_past_the_end_are_not_found(client: FlaskClient, filled: LedgerStore) -> None:
    """A start beyond the log's size names records that do not exist: 404, as a proof of a
    size the log lacks, not an empty page a client would take for "nothing new"."""
    for start, end in ((100000000, 100000001), (21, 30), (21, 21)):
        resp = client.get(f"/entries?start={start}&end={end}")
        assert resp.status_code == 404, start
        assert resp.get_json() == {"code": "ledger_start_past_end", "message": {
            "es": f"No hay registros a partir de {start}: el registro tiene 20.",
            "en": f"There are no records from {start} on: the log has 20."}}


def test_post_entries(client: FlaskClient, store: LedgerStore, token: str) -> None:
    resp = client.post("/entries", json={"entries": http_entries()}, headers=_auth(token))
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert (body["start"], body["end"]) == (0, 6)
    assert store.size() == 6
    # the scheme's name in any case (RFC 9110 §11.1), as another HTTP library may write it
    for scheme in ("bearer", "BEARER"):
        resp = client.post("/entries", json={"entries": [commitment(100)]},
                           headers={"Authorization": f"{scheme} {token}"})
        assert resp.status_code == 201, resp.get_json()


def test_a_list_number_no_passport_carries_and_a_key_replacing_itself_are_refused(
        client: FlaskClient, store: LedgerStore, token: str) -> None:
    """One "MXMEX.4294967295" record left a restored office numbering its next list 2^32, every
    passport it signed then refused by counters; a key "rotated" into itself is no history."""
    change = {"type": "status_changed", "list": "MXMEX.1", "index": 7, "status": "revoked"}
    for field, bad in (("list", {**change, "list": "MXMEX.4294967296"}),
                       ("list", {**change, "list": "MXMEX.99999999999999999999"}),
                       ("index", {**change, "index": 2**32}),
                       ("replaces", {"type": "key_rotated", "kid": "AbCdEf",
                                     "replaces": "AbCdEf"})):
        resp = client.post("/entries", json={"entries": [commitment(1), bad]},
                           headers=_auth(token))
        assert resp.status_code == 400, resp.get_json()
        err = resp.get_json()
        assert err["code"] == "ledger_bad_field", err
        assert f"entries[1].{field}" in err["message"]["en"], err
        assert "2^32" in err["message"]["es"] or "sí misma" in err["message"]["es"], err
    assert store.size() == 0  # nor the batch's other entry
    for good in ({**change, "list": "MXMEX.4294967295", "index": 2**32 - 1},
                 {"type": "key_rotated", "kid": "AbCdEf", "replaces": "GhIjKl"}):
        resp = client.post("/entries", json={"entries": [good]}, headers=_auth(token))
        assert resp.status_code == 201, resp.get_json()


def test_a_reason_not_for_the_public_record_is_refused(client: FlaskClient, store: LedgerStore,
                                                      token: str) -> None:
    """Any token put "fraud" or "deceased" on the public record for good, cosigned, beside the
    list index every code of the resident carries: only the office software kept it off."""
    change = {"type": "status_changed", "list": "MXMEX.1", "index": 1001, "status": "revoked"}
    for reason in ("deceased", "fraud", "moved_away", "holder_request", "device_lost"):
        resp = client.post("/entries", json={"entries": [commitment(1), {**change,
                                                                         "reason": reason}]},
                           headers=_auth(token))
        assert resp.status_code == 400, resp.get_json()
        err = resp.get_json()
        assert err["code"] == "ledger_reason_not_public" and "entries[1]" in err["message"]["en"]
        assert reason in err["message"]["es"] and "unspecified" in err["message"]["es"]
    assert store.size() == 0  # nor the batch's other entry
    for reason in ("unspecified", "data_error", "key_compromise", "superseded"):
        resp = client.post("/entries", json={"entries": [{**change, "reason": reason}]},
                           headers=_auth(token))
        assert resp.status_code == 201, resp.get_json()


def _bad_requests(token: str) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """Each bad request, with the status and machine code it must get (the witness endpoint's
    plain-text refusals are named by their text instead, as C2SP tlog-witness answers)."""
    big = "1" * 25
    auth = _auth(token)
    entries_json = {"headers": {**auth, "Content-Type": "application/json"}}
    one = {"json": {"entries": [commitment(0)]}}
    one_json = json.dumps(commitment(0))
    bad_param, bad_entry, bad_witness = "ledger_bad_param", "ledger_bad_entry", \
        "ledger_bad_witness_request"
    return [
        ("GET", "/entries", {}, 400, bad_param),
        ("GET", "/entries?start=-1&end=3", {}, 400, bad_param),
        ("GET", "/entries?start=a&end=3", {}, 400, bad_param),
        ("GET", f"/entries?start=0&end={big}", {}, 400, bad_param),
        ("GET", "/entries?start=5&end=2", {}, 400, bad_param),
        ("GET", "/entries?start=１&end=2", {}, 400, bad_param),
        ("GET", "/entries?start=²&end=2", {}, 400, bad_param),
        ("GET", "/entries?start=00&end=2", {}, 400, bad_param),
        ("GET", "/entries?start=9223372036854775808&end=2", {}, 400, bad_param),
        ("GET", "/entries?start=100000000&end=100000001", {}, 404, "ledger_start_past_end"),
        ("GET", "/proof/inclusion?index=0", {}, 400, bad_param),
        ("GET", "/proof/inclusion?index=-1&size=3", {}, 400, bad_param),
        ("GET", "/proof/inclusion?index=5&size=3", {}, 400, "ledger_bad_index"),
        ("GET", "/proof/inclusion?index=0&size=999999", {}, 404, "ledger_bad_size"),
        ("GET", f"/proof/inclusion?index={big}&size=3", {}, 400, bad_param),
        ("GET", "/proof/inclusion?index=0&size=0", {}, 400, "ledger_bad_index"),
        ("GET", "/proof/consistency?old=0&new=3", {}, 400, bad_param),  # RFC 9162: old ≥ 1
        ("GET", "/proof/consistency?old=4&new=3", {}, 400, bad_param),
        ("GET", "/proof/consistency?old=1&new=99999", {}, 404, "ledger_bad_size"),
        ("GET", "/proof/consistency?old=x&new=3", {}, 400, bad_param),
        ("GET", "/nope", {}, 404, "ledger_not_found"),
        ("DELETE", "/entries", {}, 405, "ledger_method_not_allowed"),
        ("POST", "/entries", one, 401, "ledger_unauthorized"),
        ("POST", "/entries", {**one, "headers": {"Authorization": "Bearer wrong"}}, 401,
         "ledger_unauthorized"),
        ("POST", "/entries", {**one, "headers": {"Authorization": "Basic " + token}}, 401,
         "ledger_unauthorized"),
        ("POST", "/entries", {"data": "{not json", **entries_json}, 400, "ledger_bad_json"),
        # JSON, but not said to be: the body is read as what the request says it is
        ("POST", "/entries", {"data": json.dumps({"entries": [commitment(0)]}),
                              "headers": auth}, 415, "ledger_not_json"),
        ("POST", "/entries", {"data": json.dumps({"entries": [commitment(0)]}),
                              "headers": {**auth, "Content-Type": "text/plain"}}, 415,
         "ledger_not_json"),
        ("POST", "/entries", {"data": b"\xff\xfe", **entries_json}, 400, "ledger_bad_json"),
        ("POST", "/entries", {"json": {"entries": []}, "headers": auth}, 400, bad_entry),
        ("POST", "/entries", {"json": {"entries": "x"}, "headers": auth}, 400, bad_entry),
        ("POST", "/entries", {"json": 5, "headers": auth}, 400, "ledger_bad_body"),
        # exactly {"entries": [...]}: not a bare list, no other field, no key twice
        ("POST", "/entries", {"json": [commitment(0)], "headers": auth}, 400, "ledger_bad_body"),
        ("POST", "/entries", {"json": {"entries": [commitment(0)], "colour": "red"},
                              "headers": auth}, 400, "ledger_bad_body"),
        ("POST", "/entries", {"data": '{"entries": [], "entries": [' + one_json + "]}",
                              **entries_json}, 400, "ledger_bad_body"),
        ("POST", "/entries", {"data": '{"entries": [{"type": "notice", ' + one_json[1:] + "]}",
                              **entries_json}, 400, "ledger_bad_body"),  # "type" twice
        ("POST", "/entries", {"json": {"entries": [{"type": "notice"}]}, "headers": auth}, 400,
         bad_entry),
        ("POST", "/entries", {"json": {"entries": [{"type": "notice", "text": 5}]},
                              "headers": auth}, 400, "ledger_bad_field"),
        ("POST", "/entries", {"json": {"entries": [commitment(0), {"type": "person",
                                                                   "name": "Ana"}]},
                              "headers": auth}, 400, bad_entry),
        ("POST", "/entries", {"json": {"entries": [commitment(i) for i in range(1001)]},
                              "headers": auth}, 400, "ledger_batch_too_large"),
        ("POST", "/entries", {"data": "x" * (1024 * 1024 + 1), **entries_json}, 413,
         "ledger_body_too_large"),
        # a body shorter than its Content-Length (the client went away part way): werkzeug's
        # own 400, named as such in the node's JSON form, whichever endpoint reads it
        ("POST", "/entries", {"data": b'{"entries": [', **entries_json,
                              "environ_overrides": {"CONTENT_LENGTH": "100"}}, 400,
         "ledger_body_incomplete"),
        ("POST", "/add-checkpoint", {"data": b"old 0\n", "environ_overrides": {
            "CONTENT_LENGTH": "100"}}, 400, "ledger_body_incomplete"),
        ("POST", "/add-checkpoint", {"data": ""}, 400, bad_witness),
        ("POST", "/add-checkpoint", {"data": "old x\n\nfoo\n"}, 400, bad_witness),
        ("POST", "/add-checkpoint", {"data": "old 01\n\norigin\n1\n" + "A" * 43 + "=\n"}, 400,
         bad_witness),
        ("POST", "/add-checkpoint", {"data": "old 0\nnot base64!\n\no\n1\nAAAA\n\n— a AAAA\n"},
         400, bad_witness),
        ("POST", "/add-checkpoint", {"data": "old 0\n" + "A" * 43 + "=\n" * 64 + "\n"}, 400,
         bad_witness),
        ("POST", "/add-checkpoint", {"data": b"old 0\n\n\xff\n"}, 400, "note_malformed"),
        ("POST", "/add-checkpoint", {"data": "old ²3\n\no\n"}, 400, bad_witness),
        ("POST", "/add-checkpoint", {"data": "old ١\n\no\n"}, 400, bad_witness),
        ("POST", "/add-checkpoint", {"data": "old 0\n\n" + "x" * MAX_BODY}, 413,
         "ledger_body_too_large"),
        ("POST", "/add-checkpoint", {"data": "old 0\n\nno.such/log\n1\n" + "A" * 43
                                     + "=\n\n— no.such/log AAAAAAAAAAAA\n"}, 404,
         "ledger_unknown_log"),
        # a parameter given twice: which value counts differs between servers and caches
        ("GET", "/entries?start=0&start=5&end=6", {}, 400, "ledger_param_repeated"),
        ("GET", "/entries?start=0&end=1&end=9", {}, 400, "ledger_param_repeated"),
        ("GET", "/proof/inclusion?index=0&size=3&index=1", {}, 400, "ledger_param_repeated"),
        ("GET", "/proof/consistency?old=1&new=3&old=1", {}, 400, "ledger_param_repeated"),
        # a parameter the address does not take: endless cache keys for one cached answer, or
        # a typo passed over
        ("GET", "/entries?start=0&end=1&v=2", {}, 400, "ledger_param_unknown"),
        ("GET", "/entries?strat=0&end=1", {}, 400, "ledger_param_unknown"),
        ("GET", "/proof/inclusion?index=0&size=3&x=", {}, 400, "ledger_param_unknown"),
        ("GET", "/proof/consistency?old=1&new=3&cb=9", {}, 400, "ledger_param_unknown"),
        ("GET", "/checkpoint?now=1", {}, 400, "ledger_param_unknown"),
        ("GET", "/status?max_age=5&verbose=1", {}, 400, "ledger_param_unknown"),
    ]


def test_bad_input_on_every_endpoint(client: FlaskClient, filled: LedgerStore,
                                     token: str) -> None:
    before = (filled.size(), client.get("/checkpoint").get_data())
    for method, url, kwargs, status, code in _bad_requests(token):
        resp = client.open(url, method=method, **kwargs)
        assert resp.status_code == status, (method, url, resp.status_code)
        if resp.mimetype == "application/json":
            body = resp.get_json()
            assert set(body) == {"code", "message"}, body
            assert body["code"] == code, (method, url, body)
            assert body["message"]["es"] and body["message"]["en"]
        else:
            raise AssertionError((method, url, resp.mimetype, resp.data[:100]))
    assert (filled.size(), client.get("/checkpoint").get_data()) == before


def test_json_errors_name_the_problem(client: FlaskClient, filled: LedgerStore) -> None:
    resp = client.get("/proof/inclusion?index=0&size=999")
    assert resp.status_code == 404
    assert resp.get_json() == {"code": "ledger_bad_size", "message": {
        "es": "Tamaño 999 no disponible (el registro tiene 20).",
        "en": "Size 999 is not available (the log has 20)."}}


def test_consistency_refusals_give_the_log_size(client: FlaskClient) -> None:
    """On an empty log: 404 saying the log has 0 entries; ``old=0`` is a bad parameter
    whatever the log holds (RFC 9162 §2.1.4: old is at least 1), not a size it lacks."""
    resp = client.get("/proof/consistency?old=1&new=1")
    assert resp.status_code == 404
    body = resp.get_json()
    assert body["code"] == "ledger_bad_size"
    assert body["message"]["en"] == "Size 1 is not available (the log has 0)."
    assert body["message"]["es"] == "Tamaño 1 no disponible (el registro tiene 0)."
    resp = client.get("/proof/consistency?old=0&new=1")
    assert resp.status_code == 400
    body = resp.get_json()
    assert (body["code"], body["message"]["en"]) == (
        "ledger_bad_param", "Invalid parameter old: must be at least 1.")
    assert body["message"]["es"] == "Parámetro old inválido: debe ser al menos 1."
    resp = client.get("/proof/consistency?old=1&new=0")
    assert resp.status_code == 400 and resp.get_json()["code"] == "ledger_bad_param"
    # a number refused says why: not "not a non-negative integer" for one that is
    for query, why, porque in (("start=00&end=1", "written with leading zeros",
                                "escrito con ceros a la izquierda"),
                               ("start=0&end=9223372036854775808",
                                "larger than 9223372036854775807",
                                "mayor que 9223372036854775807"),
                               ("start=0&end=100000000000000000000",  # (no size line's)
                                "larger than 9223372036854775807",
                                "mayor que 9223372036854775807"),
                               ("start=x&end=1", "not a non-negative integer", None)):
        body = client.get(f"/entries?{query}").get_json()
        assert body["code"] == "ledger_bad_param" and why in body["message"]["en"], body
        if porque is not None:
            assert porque in body["message"]["es"], body


def test_a_log_held_too_long_answers_503_and_loses_nothing(sqlite_home: Path) -> None:
    """Another process keeps the write lock past our wait: 503 with the bilingual ``store_busy``
    error, the log unchanged, and the same request accepted once the lock is released. (On
    PostgreSQL: tests/ledger/test_store.py, the writer held too long.)"""
    import sqlite3

    from ledger.store import make_engine

    with LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        token = store.add_token("issuer")
        client = create_app({"TESTING": True}, store=store).test_client()
        store.engine.dispose()
        store.engine = make_engine(str(store.engine.url), busy_timeout=0.2)
        before = store.size()
        holder = sqlite3.connect(str(store.engine.url.database), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        body = {"entries": [commitment(1)]}
        try:
            resp = client.post("/entries", json=body, headers=_auth(token))
            assert resp.status_code == 503
            err = resp.get_json()
            assert err["code"] == "store_busy" and "ledger.db" in err["message"]["en"]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.size() == before
        assert client.post("/entries", json=body, headers=_auth(token)).status_code == 201
        assert store.size() == before + 1


def test_a_retried_batch_is_appended_once(client: FlaskClient, store: LedgerStore,
                                          token: str) -> None:
    """``Idempotency-Key``: an issuer that lost the answer and sends the batch again gets the
    first answer back, and the log holds the batch once."""
    body = {"entries": [commitment(1), commitment(2)]}
    headers = {**_auth(token), "Idempotency-Key": "outbox-1-2"}
    first = client.post("/entries", json=body, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    size = store.size()
    again = client.post("/entries", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert (again.get_json()["start"], again.get_json()["end"]) == (
        first.get_json()["start"], first.get_json()["end"])
    assert store.size() == size
    # the same key for another batch is refused, and changes nothing
    other = client.post("/entries", json={"entries": [commitment(3)]}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["code"] == "ledger_idempotency_mismatch"
    assert store.size() == size
    # keys belong to their client: another office may use the same one
    second_token = store.add_token("other-office")
    resp = client.post("/entries", json=body,
                       headers={**_auth(second_token), "Idempotency-Key": "outbox-1-2"})
    assert resp.status_code == 201 and store.size() == size + 2
    for bad in ("", "x" * 129, "has space", "ñ"):
        resp = client.post("/entries", json=body, headers={**_auth(token),
                                                            "Idempotency-Key": bad})
        assert resp.status_code == 400, bad
        assert resp.get_json()["code"] == "ledger_bad_idempotency_key"
    assert store.size() == size + 2
    assert audit(store).ok


def test_create_app_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """How a WSGI server starts a node (``ledger.http:create_app()``): settings from the same
    environment variables the CLI reads; no passphrase means a read-only node."""
    from ledger.http import create_app

    monkeypatch.setenv("PASAPORTE_LEDGER_HOME", str(home))
    with LedgerStore.open(home) as admin:
        token = admin.add_token("issuer")
    app = create_app()
    client = app.test_client()
    resp = client.post("/entries", json={"entries": [commitment(1)]}, headers=_auth(token))
    assert resp.status_code == 201
    assert client.get("/checkpoint").status_code == 200
    app.extensions["ledger"].close()

    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    caplog.clear()
    read_only = create_app()
    # said at start, where the operator looks, and to each office with what to do
    assert "[ledger_serving_read_only]" in caplog.text and "PASSPHRASE" in caplog.text
    resp = read_only.test_client().post("/entries", json={"entries": [commitment(2)]},
                                        headers=_auth(token))
    assert resp.status_code == 503 and resp.get_json()["code"] == "ledger_read_only"
    said = resp.get_json()["message"]
    assert "PASAPORTE_LEDGER_PASSPHRASE" in said["es"] and "sends them later" in said["en"]
    read_only.extensions["ledger"].close()

    # set but empty ("export PASAPORTE_LEDGER_PASSPHRASE=$PASS", PASS unset): named, not a node
    # that starts read-only while its operator believes it signs
    for variable in ("PASAPORTE_LEDGER_PASSPHRASE", "PASAPORTE_PASSPHRASE"):
        monkeypatch.setenv(variable, "")
        with pytest.raises(UsageError) as caught:
            create_app()
        assert caught.value.code == "passphrase_env_empty"
        assert variable in caught.value.message["en"]
        monkeypatch.delenv(variable)
    # a wrong one: refused, and said in both languages before the WSGI server's traceback
    monkeypatch.setenv("PASAPORTE_LEDGER_PASSPHRASE", "not the passphrase")
    with caplog.at_level(logging.ERROR, logger="ledger.http"), \
            pytest.raises(StoreError) as refused:
        create_app()
    assert refused.value.code == "passphrase_wrong"
    assert "[passphrase_wrong]" in caplog.text and " / " in caplog.text


def test_only_the_node_writes_cosignatures_and_notices(client: FlaskClient, store: LedgerStore,
                                                        token: str, home: Path,
                                                        tmp_path: Path) -> None:
    """A token holder cannot put a witness cosignature on the record (audit holds every one to
    the log's real tree and the witness's key, and the log is append-only: one forged record
    would fail every audit from then on), nor a joint committee notice. The node's operator
    still appends both locally."""
    assert client.post("/entries", json={"entries": [commitment(1)]},
                       headers=_auth(token)).status_code == 201
    before = (store.size(), client.get("/checkpoint").get_data())
    forged = {"type": "witness_cosignature", "origin": store.origin, "size": 1,
              "root": b64u(bytes(32)), "witness": "ledger.la.example/log/witness",
              "signature": b64u(bytes(76))}
    notice = {"type": "notice", "text": "Acta del comité conjunto (falsa) / forged minutes"}
    for entry in (forged, notice):
        resp = client.post("/entries", json={"entries": [commitment(2), entry]},
                           headers=_auth(token))
        assert resp.status_code == 403, resp.get_json()
        body = resp.get_json()
        assert body["code"] == "ledger_entry_type_local_only"
        for text in body["message"].values():
            assert entry["type"] in text and "entries[1]" in text
    assert (store.size(), client.get("/checkpoint").get_data()) == before
    assert audit(store).ok
    lines = tmp_path / "acta.jsonl"
    lines.write_text(json.dumps(notice) + "\n")
    assert run_cli("append", "--file", str(lines), "--home", str(home)) == 0
    assert store.size() == before[0] + 1
    assert audit(store).ok


def test_create_app_takes_the_passphrase_as_written(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Flask's ``from_prefixed_env`` reads values as JSON: ``1.500000`` would become 1.5, and
    the node would not open with its own passphrase."""
    home = tmp_path / "home"
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "1.500000")
    init_home(home)
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    monkeypatch.setenv("PASAPORTE_LEDGER_HOME", str(home))
    monkeypatch.setenv("PASAPORTE_LEDGER_PASSPHRASE", "1.500000")
    app = create_app()
    try:
        assert app.extensions["ledger"].signer is not None  # opened to append, not read-only
    finally:
        app.extensions["ledger"].close()


def test_a_node_without_a_witness_key_is_unavailable_as_a_witness(home: Path) -> None:
    """No witness key is the node's state, not a fault of the request: 503 (the log asking may
    try another witness, or this one later), never 400."""
    from credential.note import Checkpoint, Note, generate_signer

    (home / "witness.key").unlink()
    log = generate_signer("ledger.cxl.example/log")
    body = Checkpoint(log.name, 1, bytes(32)).body()
    request = f"old 0\n\n{Note(body, (log.sign(body),)).encode()}"
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        assert store.witness is None
        resp = create_app({"TESTING": True}, store=store).test_client().post(
            "/add-checkpoint", data=request)
    assert resp.status_code == 503
    err = resp.get_json()
    assert err["code"] == "ledger_no_witness_key" and err["message"]["es"]


def test_a_wrong_method_is_told_the_methods_there_are(client: FlaskClient) -> None:
    """RFC 9110 §15.5.6: a 405 MUST carry an Allow header."""
    resp = client.post("/checkpoint")
    assert resp.status_code == 405 and "GET" in resp.headers["Allow"].split(", ")
    assert resp.get_json()["code"] == "ledger_method_not_allowed"
    resp = client.get("/add-checkpoint")
    assert resp.status_code == 405 and "POST" in resp.headers["Allow"].split(", ")
    assert resp.get_json()["code"] == "ledger_method_not_allowed"


def test_the_witness_vouches_only_for_trees_that_can_be(home: Path) -> None:
    """A size-0 checkpoint must carry the empty tree's root (RFC 9162), and where the
    consistency proof must be empty (from size 0, or between equal sizes) a proof that is not
    is refused (tlog-witness: 422), not ignored; the honest requests still get cosigned."""
    from credential.note import Checkpoint, Note, generate_signer
    from ledger.witness import witness_log

    log = generate_signer("ledger.cxl.example/log")

    def request(old: int, proof: list[bytes], size: int, root: bytes) -> str:
        body = Checkpoint(log.name, size, root).body()
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        return f"old {old}\n{lines}\n{Note(body, (log.sign(body),)).encode()}"

    root_1 = merkle.leaf_hash(b"one")
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        witness_log(store, log.verifier.vkey)
        witness = create_app({"TESTING": True}, store=store).test_client()

        def post(text: str) -> tuple[int, str]:
            resp = witness.post("/add-checkpoint", data=text)
            if resp.mimetype == "application/json":
                return resp.status_code, resp.get_json()["code"]
            return resp.status_code, resp.get_data(as_text=True)

        assert post(request(0, [], 0, b"\x11" * 32)) == (422, "ledger_witness_bad_empty_tree")
        assert post(request(0, [], 0, merkle.EMPTY_ROOT))[0] == 200
        assert post(request(0, [b"\x22" * 32], 1, root_1)) == (
            422, "ledger_witness_proof_not_empty")
        assert post(request(0, [], 1, root_1))[0] == 200
        assert post(request(1, [b"\x22" * 32], 1, root_1)) == (
            422, "ledger_witness_proof_not_empty")
        status, line = post(request(1, [], 1, root_1))
        assert status == 200 and line.startswith("— ")
        # each refusal above left the witness's state where the last cosignature put it
        with store.engine.connect() as conn:
            state = conn.execute(select(t.witnessed_logs.c.size, t.witnessed_logs.c.root)
                                 ).one()
        assert tuple(state) == (1, root_1)


def test_a_damaged_database_is_a_public_503_naming_no_file(sqlite_home: Path) -> None:
    """What anyone may read of the node's trouble names no database: not the file's path here
    (nor, on a server, its host, port, role and name); the node's log says which it is."""
    with LedgerStore.open(sqlite_home, passphrase=PASSPHRASE) as store:
        store.append([commitment(0)], cosign=False)
        client = create_app(store=store).test_client()
        store.engine.dispose()
        for suffix in ("-wal", "-shm"):
            (sqlite_home / f"ledger.db{suffix}").unlink(missing_ok=True)
        (sqlite_home / "ledger.db").write_bytes(b"not a database, a damaged disk" * 200)
        resp = client.get("/checkpoint")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 503 and resp.get_json()["code"] == (
        "ledger_node_database_unavailable"), body
    assert str(sqlite_home) not in body and "ledger.db" not in body
