"""Append tokens bound to one city's office (``ledger token add --root``): real offices publish
through them over HTTP, and a token writes nothing that is another office's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import nacl.signing
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from credential.errors import LedgerError, MalformedInput, StoreError
from credential.keys import b64url, kid_for
from issuer.store import IssuerStore
from ledger import client
from ledger import schema as t
from ledger.audit import audit
from ledger.entries import KeyRegistered, entry_from_json, entry_to_json
from ledger.http import create_app
from ledger.scopes import Scope, parse_possession
from ledger.store import LedgerStore
from tests.conftest import Run
from tests.factory import EXAMPLES
from tests.issuer.conftest import keys_made_on
from tests.ledger.conftest import PASSPHRASE
from tests.ledger.helpers import commitment, schema_back_to


@pytest.fixture
def node(homes: dict[str, Path], run: Run) -> Iterator[tuple[str, Path]]:
    """A ledger node serving over HTTP in this process: its URL and home."""
    home = homes["ledger"]
    assert run("ledger", "init", "--origin", "ledger.test/log", "--home", str(home))[0] == 0
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        server = make_server("127.0.0.1", 0, create_app(store=store), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", home
        finally:
            server.shutdown()
            thread.join()


def _office(run: Run, home: Path, city: str, country: str) -> Path:
    """An office, published through a token bound to it; its root file."""
    assert run("issuer", "init", "--city", city, "--country", country, "--office", "Centro",
               "--home", str(home))[0] == 0
    keys_made_on(home)  # (so that a compromise can be dated before today)
    root = home.parent / f"{home.name}-root.json"
    assert run("issuer", "root", "--out", str(root), "--home", str(home))[0] == 0
    return root


def _token(run: Run, node_home: Path, name: str, *extra: str) -> tuple[str, str]:
    code, out, err = run("ledger", "token", "add", name, *extra, "--home", str(node_home))
    assert code == 0, err
    return out.strip(), err


def _post(url: str, token: str, entries: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    status, _, body = client.post(f"{url}/entries", json.dumps({"entries": entries}).encode(),
                                  {"Content-Type": "application/json",
                                   "Authorization": f"Bearer {token}"})
    return status, json.loads(body)


def _kid(run: Run, office: Path) -> str:
    return str(json.loads(run("issuer", "keys", "--json", "--home", str(office))[1])[0]["kid"])


def test_a_bound_token_writes_its_office_and_nothing_else(
        node: tuple[str, Path], homes: dict[str, Path], run: Run, tmp_path: Path) -> None:
    url, node_home = node
    mx, cx = tmp_path / "mx", tmp_path / "cx"
    mx_root, cx_root = _office(run, mx, "Mexicali", "MX"), _office(run, cx, "Calexico", "US")
    mx_token, said = _token(run, node_home, "oficina-mexicali", "--root", str(mx_root))
    assert "ledger_token_unbound" not in said
    cx_token, _ = _token(run, node_home, "oficina-calexico", "--root", str(cx_root))
    for office, token in ((mx, mx_token), (cx, cx_token)):
        code, _, err = run("issuer", "ledger", "--url", url, "--token", token,
                           "--home", str(office))
        assert code == 0 and "[ledger_" not in err, err

    # Everything an office does reaches the record through its own token: an issuance, a
    # revocation (its status list), a new key, the old one compromised, its bundle.
    old_kid = _kid(run, mx)
    code, cred, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                          "--paper", "--out", str(tmp_path / "c.txt"), "--home", str(mx))
    assert code == 0, err
    assert run("issuer", "revoke", cred.strip(), "--reason", "fraude", "--home", str(mx))[0] == 0
    assert run("issuer", "rotate", "--home", str(mx))[0] == 0
    assert run("issuer", "compromised", old_kid, "--since", "2025-06-01T00:00:00Z",
               "--home", str(mx))[0] == 0
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(mx))[0] == 0
    assert IssuerStore.open(mx).pending() == []  # every entry sent and taken
    with LedgerStore.open(node_home) as store:
        types = [json.loads(line)["entry"]["type"] for line in _entries(run, node_home)]
        assert {"key_registered", "key_rotated", "key_compromised", "status_changed",
                "credential_issued", "bundle_published"} <= set(types), types
        size = store.size()

    # Another office's: refused whole, 403, nothing appended.
    cx_kid = _kid(run, cx)
    foreign: list[dict[str, Any]] = [
        {"type": "key_compromised", "kid": cx_kid, "effective": "2026-01-01T00:00:00Z"},
        {"type": "key_registered", "kid": "AAAAAA", "public_key": "A" * 43, "city": "Calexico",
         "country": "US", "office": "Centro", "valid_from": "2026-01-01T00:00:00Z",
         "valid_until": "2027-01-01T00:00:00Z"},
        {"type": "bundle_published", "city": "Calexico", "version": 9, "digest": "A" * 43},
        {"type": "status_changed", "list": "USCAL.1", "index": 3, "status": "revoked",
         "reason": "unspecified"},
        {"type": "key_rotated", "kid": old_kid, "replaces": cx_kid},
    ]
    for entry in foreign:
        status, body = _post(url, mx_token, [commitment(1), entry])
        assert status == 403 and body["code"] == "ledger_token_out_of_scope", (entry, body)
        assert "entry 1" in body["message"]["en"] and "entrada 1" in body["message"]["es"]
    # nor by registering that key again under its own city in the batch, before or after:
    # the record's first registration (Calexico's) decides whose the key is
    again = {"type": "key_registered", "kid": cx_kid, "public_key": "A" * 43,
             "city": "Mexicali", "country": "MX", "office": "Centro",
             "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}
    # (over HTTP a registration the office does not show it holds is refused first, as
    # ledger_key_unproven, below; the record's owner decides all the same:
    # test_a_kid_another_city_registered_first_stays_its)
    for batch in ([foreign[0], again], [again, foreign[0]],
                  [again, {"type": "key_rotated", "kid": old_kid, "replaces": cx_kid}]):
        status, body = _post(url, mx_token, [commitment(1), *batch])
        assert status == 403 and body["code"] in (
            "ledger_token_out_of_scope", "ledger_key_unproven"), (batch, body)
    with LedgerStore.open(node_home) as store:
        assert store.size() == size
    # an unbound token (one made before binding existed) writes as it always did, and says so
    unbound, said = _token(run, node_home, "antigua")
    assert said.startswith("[ledger_token_unbound] ")
    assert _post(url, unbound, foreign[:1])[0] == 201


def _entries(run: Run, node_home: Path) -> list[str]:
    code, out, err = run("ledger", "entries", "--home", str(node_home))
    assert code == 0, err
    return out.splitlines()


def test_the_keys_already_on_the_record_are_read_once_at_upgrade(
        node: tuple[str, Path], homes: dict[str, Path], run: Run, tmp_path: Path) -> None:
    """A log older than token binding holds keys registered before: the upgrade reads them,
    so that a token bound afterwards may still rotate or mark compromised its own."""
    url, node_home = node
    mx = tmp_path / "mx"
    mx_root = _office(run, mx, "Mexicali", "MX")
    old, _ = _token(run, node_home, "oficina")
    assert run("issuer", "ledger", "--url", url, "--token", old, "--home", str(mx))[0] == 0
    kid = _kid(run, mx)
    with LedgerStore.open(node_home, passphrase=PASSPHRASE) as store:
        schema_back_to(store, "0005", then_up=True)  # 0006 reads the records
        with store.engine.connect() as conn:
            rows = conn.execute(select(t.kids.c.kid, t.kids.c.city)).all()
        assert [(str(k), str(c)) for k, c in rows] == [(kid, "Mexicali")]
    bound, _ = _token(run, node_home, "oficina", "--root", str(mx_root))
    status, body = _post(url, bound, [{"type": "key_compromised", "kid": kid,
                                       "effective": "2026-01-01T00:00:00Z"}])
    assert status == 201, body


def test_a_key_registered_under_older_rules_still_names_its_city(store: LedgerStore) -> None:
    """A record an earlier release wrote (a soft hyphen in the office's name, refused since) is
    signed history: a mirror copies it, and the upgrade reads which city registered its key,
    where both stopped at it ("Invalid field office", blaming entries nobody sent)."""
    head = store.head()
    fields = {"kid": "MXL-OLD", "public_key": bytes(32), "city": "Mexicali", "country": "MX",
              "office": "Oficina de Re\u00adgistro Civil", "valid_from": "2025-01-01T00:00:00Z",
              "valid_until": "2030-01-01T00:00:00Z"}
    old_rules = bytes(cbor2.dumps([0, head.last_hash, head.last_time + 1, "key_registered",
                                   fields], canonical=True))
    assert store.append_records([old_rules]) == 1  # copied as it is, as a mirror would
    schema_back_to(store, "0005", then_up=True)  # 0006 reads the records
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.kids.c.kid, t.kids.c.city, t.kids.c.country)).all()
    assert [tuple(map(str, r)) for r in rows] == [("MXL-OLD", "Mexicali", "MX")]


def test_token_add_brings_an_older_schema_up_to_date_first(
        homes: dict[str, Path], run: Run, tmp_path: Path) -> None:
    """On a node the previous release made (no office columns yet), ``token add`` is what the
    upgrade notes ask for first; it was "the database cannot be used ... restore it from a
    backup" for a database that only needed its schema upgraded."""
    home = homes["ledger"]
    assert run("ledger", "init", "--origin", "ledger.test/log", "--home", str(home))[0] == 0
    with LedgerStore.open(home, passphrase=PASSPHRASE) as store:
        schema_back_to(store, "0005")
    root = _office(run, tmp_path / "mx", "Mexicali", "MX")
    token, err = _token(run, home, "oficina", "--root", str(root))
    assert token.startswith("lt_") and "[" not in err, err
    with LedgerStore.open(home) as store:
        assert store.token_client(token) == ("oficina", Scope("Mexicali", "MX", "MXMEX"))


def test_a_status_list_is_its_office_s_by_its_whole_code(store: LedgerStore) -> None:
    """City codes may hold dots: the office coded ``MX`` does not own ``MX.TEC.1``, list 1 of
    the city coded ``MX.TEC``."""
    mx = ("tijuana", Scope("Tijuana", "MX", "MX"))

    def change(name: str) -> dict[str, Any]:
        return {"type": "status_changed", "list": name, "index": 7, "status": "revoked",
                "reason": "unspecified"}

    for foreign in ("MX.TEC.1", "MX.1.2", "MXTEC.1", "MX.", "MX.x"):
        with pytest.raises(LedgerError) as err:
            store.append([entry_from_json(change(foreign))], cosign=False, bound=mx)
        assert err.value.code == "ledger_token_out_of_scope", foreign
    store.append([entry_from_json(change("MX.12"))], cosign=False, bound=mx)
    assert store.size() == 1


def test_one_office_code_is_one_citys(store: LedgerStore) -> None:
    """Ciudad Juárez and Ciudad Acuña are both MXCIU by default: Acuña's token wrote a
    revocation on Juárez's list, and Juárez's office, restored, applied it."""
    juarez = Scope("Ciudad Juárez", "MX", "MXCIU")
    store.add_token("juarez", juarez)
    with pytest.raises(StoreError) as taken:
        store.add_token("acuna", Scope("Ciudad Acuña", "MX", "MXCIU"))
    assert taken.value.code == "ledger_token_code_taken"
    assert "Ciudad Juárez" in taken.value.message["en"] and "juarez" in taken.value.message["en"]
    assert "otro código" in taken.value.message["es"]
    assert not store.has_token("acuna")
    store.add_token("juarez-norte", juarez)  # another office of the same city: its code too
    store.add_token("juarez", juarez)  # a token made again replaces its own
    store.add_token("acuna", Scope("Ciudad Acuña", "MX", "MXACU"))


@pytest.mark.parametrize(("field", "value"), [("country", "MEX"), ("city", "X" * 200),
                                              ("city", "Mexi\u202ecali")])
def test_a_root_file_whose_city_no_record_can_hold_binds_no_token(
        homes: dict[str, Path], run: Run, tmp_path: Path, field: str, value: str) -> None:
    """A hand-edited root file: refused as that (exit 2), nothing written; a database server
    refused its columns with an internal error."""
    home = homes["ledger"]
    assert run("ledger", "init", "--origin", "ledger.test/log", "--home", str(home))[0] == 0
    root = _office(run, tmp_path / "mx", "Mexicali", "MX")
    doc = json.loads(root.read_text("utf-8"))
    doc.pop("kid", None)
    doc[field] = value
    root.write_text(json.dumps(doc), "utf-8")
    code, out, err = run("ledger", "token", "add", "oficina", "--root", str(root),
                         "--home", str(home))
    assert (code, out) == (2, "") and err.startswith("[root_invalid] "), err
    with LedgerStore.open(home) as store:
        assert not store.has_token("oficina")


def _office_key(store: LedgerStore, city: str, country: str, seed: int
                ) -> tuple[KeyRegistered, nacl.signing.SigningKey]:
    """A registration of a real office key, as pasaporte issuer makes one, and the key."""
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    public = bytes(key.verify_key)
    entry = entry_from_json({
        "type": "key_registered", "kid": b64url(kid_for(public)), "public_key": b64url(public),
        "city": city, "country": country, "office": "Centro",
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"})
    assert isinstance(entry, KeyRegistered)
    return entry, key


def test_a_kid_another_city_registered_first_stays_its(store: LedgerStore) -> None:
    """Registered again by another city's token (with the same key even), the kid stays the
    first city's: that token may not mark it compromised or rotate it, in whatever order the
    batch puts them, and the refusal names who registered it first."""
    cx = ("calexico", Scope("Calexico", "US", "USCAL"))
    mx = ("mexicali", Scope("Mexicali", "MX", "MXMEX"))
    theirs, _ = _office_key(store, "Calexico", "US", 1)
    store.append([theirs], cosign=False, bound=cx)
    again = KeyRegistered(**{**theirs.fields(), "city": "Mexicali", "country": "MX"})
    compromised = entry_from_json({"type": "key_compromised", "kid": theirs.kid,
                                   "effective": "2026-02-01T00:00:00Z"})
    for batch in ([again], [again, compromised], [compromised, again]):
        with pytest.raises(LedgerError) as err:
            store.append(batch, cosign=False, bound=mx)
        assert err.value.code in ("ledger_token_key_taken", "ledger_token_out_of_scope")
    with pytest.raises(LedgerError) as err:
        store.append([again], cosign=False, bound=mx)
    assert (err.value.code, err.value.detail["city"], err.value.detail["seq"]) == (
        "ledger_token_key_taken", "Calexico", 0)
    assert store.size() == 1


def test_a_bound_token_registers_only_a_key_it_shows_it_holds(
        node: tuple[str, Path], run: Run, tmp_path: Path) -> None:
    """Calexico's kid is public (its bundle, its passports' QR codes) before its office logs
    the key. Mexicali's leaked token registering that kid for Mexicali, with a made-up key or
    with Calexico's own, is refused (ledger_key_unproven): it cannot sign the registration
    with the key. Calexico's office then registers and publishes as ever."""
    url, node_home = node
    mx_root = _office(run, tmp_path / "mx", "Mexicali", "MX")
    cx = tmp_path / "cx"
    cx_root = _office(run, cx, "Calexico", "US")
    mx_token, _ = _token(run, node_home, "oficina-mexicali", "--root", str(mx_root))
    cx_token, _ = _token(run, node_home, "calexico-office", "--root", str(cx_root))
    keys = json.loads(run("issuer", "keys", "--json", "--home", str(cx))[1])
    cx_kid, cx_public = keys[0]["kid"], keys[0]["public_key"]
    for public in (b64url(bytes(range(32))), cx_public):
        squat = {"type": "key_registered", "kid": cx_kid, "public_key": public,
                 "city": "Mexicali", "country": "MX", "office": "Centro",
                 "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}
        compromise = {"type": "key_compromised", "kid": cx_kid,
                      "effective": "2026-01-01T00:00:00Z"}
        status, body = _post(url, mx_token, [squat, compromise])
        assert (status, body["code"]) == (403, "ledger_key_unproven"), body
        assert "Entry 0" in body["message"]["en"] and "Key-Possession" in body["message"]["en"]
        # with a proof the key did not sign: not the office's key, said as that
        status, _, raw = client.post(f"{url}/entries", json.dumps(
            {"entries": [squat, compromise]}).encode(), {
            "Content-Type": "application/json", "Authorization": f"Bearer {mx_token}",
            "Key-Possession": f"0={b64url(bytes(64))}"})
        assert (status, json.loads(raw)["code"]) == (403, "ledger_key_not_held"), raw
    # Calexico's office given Mexicali's token: refused as that, not saved (every entry it
    # sent would have been refused, its queue stuck behind the first)
    code, _, err = run("issuer", "ledger", "--url", url, "--token", mx_token, "--home", str(cx))
    assert code == 1 and err.startswith("[ledger_token_other_office]"), err
    assert "MXMEX" in err and "USCAL" in err
    assert IssuerStore.open(cx).ledger_url() is None
    code, _, err = run("issuer", "ledger", "--url", url, "--token", cx_token, "--home", str(cx))
    assert code == 0 and "[ledger_" not in err, err
    with LedgerStore.open(node_home) as store, store.engine.connect() as conn:
        owner = conn.execute(select(t.kids.c.city).where(t.kids.c.kid == cx_kid)).scalar()
    assert owner == "Calexico"


def test_a_possession_header_that_is_not_one_is_refused() -> None:
    proof = b64url(bytes(64))
    assert parse_possession(f"0={proof}, 3={proof}") == {0: bytes(64), 3: bytes(64)}
    assert parse_possession("") == {}
    # (the last: 86 characters whose final one sets bits 64 bytes leave over)
    for bad in (f"0={proof}, 0={proof}", f"x={proof}", "0=abc", f"0={proof};", f"-1={proof}",
                "0=" + proof[:-1] + "B"):
        with pytest.raises(MalformedInput) as err:
            parse_possession(bad)
        assert err.value.code == "ledger_bad_possession", bad


def test_records_a_mirror_drops_take_their_key_owners_with_them(store: LedgerStore) -> None:
    """A page of junk copied and then dropped (``truncate``: it did not verify): the city it
    gave a key stays no one's, and the honest copy that follows audits clean, its own record
    deciding."""
    head = store.head()
    fields = {"kid": "ZZtest", "public_key": bytes(32), "city": "Calexicx", "country": "MX",
              "office": "Oficina", "valid_from": "2026-01-01T00:00:00Z",
              "valid_until": "2027-01-01T00:00:00Z"}
    junk = bytes(cbor2.dumps([0, head.last_hash, head.last_time + 1, "key_registered", fields],
                             canonical=True))
    store.append_records([junk])
    store.truncate(0)
    with store.engine.connect() as conn:
        assert conn.execute(select(t.kids.c.kid)).all() == []
    store.append([{**entry_to_json(_office_key(store, "Mexicali", "MX", 3)[0])}], cosign=False)
    assert audit(store).ok


def test_twin_cities_of_one_name_hold_each_their_own_keys(store: LedgerStore) -> None:
    """Nogales MX and Nogales US, each through a token bound to its own root: one name, two
    countries. Neither registers, rotates or marks compromised the other's keys; a second
    registration of a key (an unbound token's, a copied record) changes no owner; a rotation
    may not name another's key as the new one."""
    mx = ("nogales-mx", Scope("Nogales", "MX", "MXNOG"))
    us = ("nogales-us", Scope("Nogales", "US", "USNOG"))
    theirs, _ = _office_key(store, "Nogales", "MX", 5)
    ours, _ = _office_key(store, "Nogales", "US", 6)
    store.append([theirs], cosign=False, bound=mx)
    store.append([ours], cosign=False, bound=us)
    # an unbound token registers the MX key again, for the US: the record's first decides
    store.append([KeyRegistered(**{**theirs.fields(), "country": "US"})], cosign=False)
    size = store.size()

    def refused(*batch: dict[str, str]) -> str:
        with pytest.raises(LedgerError) as err:
            store.append([entry_from_json(e) for e in batch], cosign=False, bound=us)
        return err.value.code

    compromise = {"type": "key_compromised", "kid": theirs.kid,
                  "effective": "2026-02-01T00:00:00Z"}
    assert refused(compromise) == "ledger_token_out_of_scope"
    assert refused({"type": "key_rotated", "kid": theirs.kid, "replaces": ours.kid}
                   ) == "ledger_token_out_of_scope"
    assert refused({"type": "key_rotated", "kid": ours.kid, "replaces": theirs.kid}
                   ) == "ledger_token_out_of_scope"
    assert refused({**entry_to_json(theirs), "country": "MX"}) == "ledger_token_out_of_scope"
    assert store.size() == size
    store.append([entry_from_json({**compromise, "kid": ours.kid})], cosign=False, bound=us)
