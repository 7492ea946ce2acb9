"""``issuer.store``: where issuance puts credentials in status lists. Every entry of a list is
used, in the list's keyed order (``issuer.indices``), lists from before that included."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import sqlalchemy as sa

from credential.claims import parse_claims
from credential.errors import MalformedInput, StoreError, UsageError
from credential.keys import b64url
from credential.times import parse_instant
from issuer.indices import KEY_BYTES, IndexPermutation
from issuer.store import KEY_YEARS, Issuance, IssuerStore, catalog, credentials, keys, meta
from tests.conftest import PASSPHRASE
from tests.factory import example_claims

SIZE = 16  # lists this small fill in a few issuances


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IssuerStore:
    monkeypatch.setattr("issuer.store.LIST_SIZE", SIZE)
    return IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX",
                              office="Centro", code="MXMEX", passphrase=PASSPHRASE)


def _issue(store: IssuerStore, count: int) -> list[tuple[int, int]]:
    """Issue ``count`` credentials: their (status list, index), in issuance order."""
    signing = store.office_signing_key(PASSPHRASE)  # unsealed once, not per credential
    claims = parse_claims(example_claims())
    placed = []
    for _ in range(count):
        cred = store.issue(claims, holder_key=None, passphrase=PASSPHRASE, signing=signing)
        found = store.credential(cred.credential_id)
        assert found is not None
        placed.append((found["status_list"], found["status_index"]))
    return placed


def _meta(store: IssuerStore, key: str) -> str | None:
    with store.engine.connect() as db:
        value = db.execute(sa.select(meta.c.v).where(meta.c.k == key)).scalar()
    return None if value is None else str(value)


def _list_key(store: IssuerStore, list_id: int) -> bytes:
    value = _meta(store, f"list_key:{list_id}")
    assert value is not None
    return bytes.fromhex(value)


def _as_before(store: IssuerStore, taken: Iterable[int], *, counted: bool,
               key: bytes | None = None) -> None:
    """Make list 1 what an earlier release left: credentials at indices drawn at random, no
    index key or position counter (and the taken-indices counter only if ``counted``)."""
    taken = list(taken)
    with store.engine.begin() as db:
        kid = db.execute(sa.select(keys.c.kid).where(keys.c.role == "office")).scalar_one()
        db.execute(meta.delete().where(meta.c.k.in_(["list_key:1", "list_next:1",
                                                     "list_used:1"])))
        db.execute(credentials.insert(), [
            {"id": f"OLD{idx}", "kid": kid, "list_id": 1, "idx": idx, "status": "valid",
             "reason": None, "issued_at": 0, "valid_until": 1, "paper": True,
             "commitment": bytes(32), "commit_salt": bytes(32)} for idx in taken])
        if counted:
            db.execute(meta.insert().values(k="list_used:1", v=str(len(taken))))
        if key is not None:
            db.execute(meta.insert().values(k="list_key:1", v=key.hex()))


def test_a_list_is_filled_to_its_last_entry_then_a_new_one_starts(store: IssuerStore) -> None:
    assert len(_list_key(store, 1)) == KEY_BYTES  # made with the list, before any issuance
    placed = _issue(store, SIZE + 1)
    assert [list_id for list_id, _ in placed] == [1] * SIZE + [2]
    assert sorted(idx for _, idx in placed[:SIZE]) == list(range(SIZE))  # each index once
    assert _meta(store, "list_used:1") == str(SIZE)
    assert _list_key(store, 2) != _list_key(store, 1)  # each list its own key
    assert [k["status_list"] for k in store.office_keys()] == [2]  # the same key, rolled over


def test_no_list_is_opened_past_the_last_number_a_passport_carries(store: IssuerStore) -> None:
    """A list numbered 2^32 signed passports every counter refuses as malformed: the office
    says it cannot open one, and the credential that needed it is not issued."""
    from issuer.store import LIST_FLOOR

    with store.engine.begin() as db:
        db.execute(meta.insert().values(k=LIST_FLOOR, v=str(2**32 - 1)))
    placed = _issue(store, SIZE)  # list 1 fills; the floor is only read for the next one
    with pytest.raises(StoreError) as caught:
        _issue(store, 1)
    assert caught.value.code == "issuer_status_lists_exhausted"
    assert caught.value.detail["last"] == 2**32 - 1
    with store.engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(credentials)).scalar() == len(
            placed)


def test_indices_follow_the_lists_keyed_order(store: IssuerStore,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Not issuance order: an index tells nothing of when its credential was issued without
    the list's key, and that key is never put on the public record."""
    monkeypatch.setattr("issuer.store.LIST_SIZE", 64)
    order = [idx for _, idx in _issue(store, 64)]
    p = IndexPermutation(_list_key(store, 1), 64)
    assert order == [p(n) for n in range(64)]
    assert order != sorted(order)
    assert _list_key(store, 1).hex() not in json.dumps(store.pending())


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("counted", [True, False])
def test_a_list_from_before_is_completed_without_collisions(
        store: IssuerStore, monkeypatch: pytest.MonkeyPatch, seed: int, counted: bool) -> None:
    """Three quarters drawn at random by an earlier release: issuance takes exactly the quarter
    left, never an index already taken (a collision would fail here, not be retried), and the
    list then rolls over as a full one does."""
    monkeypatch.setattr("issuer.store.ISSUE_ATTEMPTS", 1)
    taken = random.Random(seed).sample(range(SIZE), SIZE * 3 // 4)
    _as_before(store, taken, counted=counted)
    placed = _issue(store, SIZE // 4 + 1)
    assert [list_id for list_id, _ in placed] == [1] * (SIZE // 4) + [2]
    assert sorted(taken + [idx for _, idx in placed[:-1]]) == list(range(SIZE))
    assert len(_list_key(store, 1)) == KEY_BYTES  # made when first needed
    assert _meta(store, "list_used:1") == str(SIZE)


def test_taken_positions_of_a_list_from_before_are_stepped_over(
        store: IssuerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("issuer.store.ISSUE_ATTEMPTS", 1)
    key = bytes(range(KEY_BYTES))
    p = IndexPermutation(key, SIZE)
    _as_before(store, [p(0), p(2), p(3)], counted=True, key=key)
    assert [idx for _, idx in _issue(store, 3)] == [p(1), p(4), p(5)]
    assert _meta(store, "list_next:1") == "6"  # the next position to try
    assert _meta(store, "list_used:1") == "6"  # the indices taken


def test_a_group_is_placed_and_queued_as_one_by_one_issuance_would(
        store: IssuerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """One transaction for many credentials (a bulk run's group): the indices a list from before
    leaves free, in its keyed order, then the next list; the counters; and one ledger entry per
    credential, in issuance order, each the commitment the registry keeps."""
    monkeypatch.setattr("issuer.store.ISSUE_ATTEMPTS", 1)  # a collision would fail, not retry
    key = bytes(range(KEY_BYTES))
    p = IndexPermutation(key, SIZE)
    _as_before(store, [p(0), p(2), p(3)], counted=True, key=key)
    queued = len(store.pending())
    claims = parse_claims(example_claims())
    creds = store.issue_many([Issuance(claims)] * (SIZE - 3 + 2), passphrase=PASSPHRASE)
    placed = [(found["status_list"], found["status_index"]) for found in
              (store.credential(c.credential_id) for c in creds) if found is not None]
    second = IndexPermutation(_list_key(store, 2), SIZE)
    assert placed == [(1, p(n)) for n in [1, *range(4, SIZE)]] + [(2, second(0)),
                                                                    (2, second(1))]
    assert _meta(store, "list_next:1") == str(SIZE) and _meta(store, "list_used:1") == str(SIZE)
    assert _meta(store, "list_next:2") == "2" and _meta(store, "list_used:2") == "2"
    assert [k["status_list"] for k in store.office_keys()] == [2]
    with store.engine.connect() as db:
        kept = dict(db.execute(sa.select(credentials.c.id, credentials.c.commitment)).all())
        names = db.execute(sa.select(catalog.c.catalog, catalog.c.name)).all()
    entries = store.pending()[queued:]
    assert entries == [(entries[0][0] + n, {"type": "credential_issued",
                                            "commitment": b64url(kept[c.credential_id])})
                       for n, c in enumerate(creds)]
    assert len(names) == len(set(names)) > 0  # each catalogued name once, shared by all


def test_a_group_with_one_refused_credential_issues_none(store: IssuerStore) -> None:
    """A bulk row another run took, in the middle of a group: nothing of the group is issued,
    queued or counted, and its files are never asked for."""
    claims = parse_claims(example_claims())
    taken = store.issue(claims, holder_key=None, passphrase=PASSPHRASE,
                        bulk_row=("row-3", None))
    before = (_registered(store), store.pending(), _meta(store, "list_next:1"))
    asked: list[int] = []
    group = [Issuance(claims, None, (f"row-{n}", None)) for n in range(1, 6)]
    with pytest.raises(StoreError) as refused:
        store.issue_many(group, passphrase=PASSPHRASE,
                         before_commit=lambda creds: asked.append(len(creds)))
    assert refused.value.code == "bulk_row_taken" and asked == []
    assert (_registered(store), store.pending(), _meta(store, "list_next:1")) == before
    assert store.bulk_issued([f"row-{n}" for n in range(1, 6)]) == {
        "row-3": (taken.credential_id, "valid")}


def _registered(store: IssuerStore) -> tuple[int, int]:
    """Credentials in the registry, and issuances queued for the public record."""
    with store.engine.connect() as db:
        count = db.execute(sa.select(sa.func.count()).select_from(credentials)).scalar_one()
    return int(count), sum(e["type"] == "credential_issued" for _, e in store.pending())


def test_an_office_key_signs_to_its_last_second_and_not_after(tmp_path: Path) -> None:
    """A counter accepts a key's signature made up to its ``valid_until`` (inclusive), so the
    office signs until then and refuses after, told to rotate; the refusal holds for a key
    unsealed once beforehand, as a bulk run does."""
    start = 1_800_000_000
    store = IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX",
                               office="Centro", code="MXMEX", passphrase=PASSPHRASE, now=start)
    end = start + KEY_YEARS * 365 * 86400
    # valid when the key ends (an expired passport is refused for that reason first)
    claims = parse_claims({**example_claims(), "valid_from": "2031-01-01",
                           "valid_until": "2033-12-31"})
    signing = store.office_signing_key(PASSPHRASE)
    store.issue(claims, holder_key=None, passphrase=PASSPHRASE, now=end)
    assert [k["status"] for k in store.office_keys(now=end)] == ["active"]
    assert [k["status"] for k in store.office_keys(now=end + 1)] == ["expired"]
    for given in (None, signing):
        with pytest.raises(StoreError) as refused:
            store.issue(claims, holder_key=None, passphrase=PASSPHRASE, now=end + 1,
                        signing=given)
        assert refused.value.code == "issuer_key_expired"
        assert "issuer rotate" in refused.value.message["en"]
        assert "issuer rotate" in refused.value.message["es"]
        assert _registered(store) == (1, 1)
    store.add_office_key(PASSPHRASE, now=end + 1)
    store.issue(claims, holder_key=None, passphrase=PASSPHRASE, now=end + 1)
    assert _registered(store) == (2, 2)
    assert [k["status"] for k in store.office_keys(now=end + 1)] == ["expired", "active"]


def test_a_clock_set_back_before_the_key_was_made_signs_nothing(tmp_path: Path) -> None:
    """Counters accept a credential only if its key was valid when it was issued; a computer
    whose clock went back (a dead CMOS battery) would sign what every counter refuses."""
    start = 1_800_000_000
    store = IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX",
                               office="Centro", code="MXMEX", passphrase=PASSPHRASE, now=start)
    claims = parse_claims(example_claims())
    assert [k["status"] for k in store.office_keys(now=start - 1)] == ["not_yet_valid"]
    with pytest.raises(StoreError) as refused:
        store.issue(claims, holder_key=None, passphrase=PASSPHRASE, now=start - 60)
    assert refused.value.code == "issuer_key_not_yet_valid"
    assert "clock" in refused.value.message["en"] and "reloj" in refused.value.message["es"]
    assert _registered(store) == (0, 0)
    store.issue(claims, holder_key=None, passphrase=PASSPHRASE, now=start)
    assert _registered(store) == (1, 1)


def test_names_are_kept_without_the_spaces_around_them(tmp_path: Path) -> None:
    store = IssuerStore.create(tmp_path / "issuer", city="\u00a0Mexicali ", country="MX",
                               office=" Oficina  Centro\n", code="MXMEX",
                               passphrase=PASSPHRASE)
    info = store.info()
    assert (info.city, info.office) == ("Mexicali", "Oficina  Centro")
    assert {k["office"] for k in store.office_keys()} == {"Oficina  Centro"}
    with pytest.raises(UsageError) as refused:
        IssuerStore.create(tmp_path / "other", city="Mexicali", country="MX", office=" \u3000 ",
                           code="MXMEX", passphrase=PASSPHRASE)
    assert refused.value.code == "issuer_name_invalid" and "--office" in str(refused.value)
    assert not (tmp_path / "other").exists()


def test_a_name_the_public_record_refuses_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the ledger's rule for names grow stricter than ours, the office is still told
    which option to fix, as a usage error, not a ledger field error."""
    def stricter(city: str, country: str, office: str = "") -> None:
        raise MalformedInput("ledger_bad_field", field="city", reason="1-128 printable characters")

    monkeypatch.setattr("issuer.store.check_key_names", stricter)
    with pytest.raises(UsageError) as refused:
        IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX", office="Centro",
                           code="MXMEX", passphrase=PASSPHRASE)
    assert refused.value.code == "issuer_name_invalid" and "--city" in str(refused.value)
    assert not (tmp_path / "issuer").exists()


def test_a_status_change_takes_the_id_in_any_case(store: IssuerStore) -> None:
    cred = store.issue(parse_claims(example_claims()), holder_key=None, passphrase=PASSPHRASE)
    typed = f" {cred.credential_id.lower()}"
    assert store.set_status(typed, "suspended", passphrase=PASSPHRASE)["status"] == "suspended"
    found = store.credential(typed)
    assert found is not None and found["id"] == cred.credential_id
    assert found["status"] == "suspended"


def test_a_key_rotated_away_or_compromised_mid_run_signs_no_more(tmp_path: Path) -> None:
    """A bulk run unseals its key once; rotated or marked compromised while it runs, the key
    signs nothing more (counters would refuse it, or it is no longer the office's)."""
    store = IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX",
                               office="Centro", code="MXMEX", passphrase=PASSPHRASE)
    claims = parse_claims(example_claims())
    signing = store.office_signing_key(PASSPHRASE)
    store.issue(claims, holder_key=None, passphrase=PASSPHRASE, signing=signing)
    store.add_office_key(PASSPHRASE)  # issuer rotate, from another terminal
    with pytest.raises(StoreError) as refused:
        store.issue(claims, holder_key=None, passphrase=PASSPHRASE, signing=signing)
    assert refused.value.code == "issuer_key_retired"
    assert "rotate" in refused.value.message["en"] and "rotate" in refused.value.message["es"]
    assert _registered(store) == (1, 1)
    fresh = store.office_signing_key(PASSPHRASE)
    store.issue(claims, holder_key=None, passphrase=PASSPHRASE, signing=fresh)
    store.mark_compromised(b64url(fresh[0]), int(time.time()), PASSPHRASE)
    with pytest.raises(StoreError) as refused:
        store.issue(claims, holder_key=None, passphrase=PASSPHRASE, signing=fresh)
    assert refused.value.code == "issuer_key_retired"
    assert _registered(store) == (2, 2)


def test_a_rotation_with_the_clock_behind_the_records_changes_nothing(tmp_path: Path) -> None:
    """``rotate`` an hour behind (NTP not synced yet; a restore onto a PC set a month back)
    closed the old key's window before passports it had signed: every one refused at counters
    once the bundle went out, while the office called them valid."""
    store = IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX",
                               office="Centro", code="MXMEX", passphrase=PASSPHRASE)
    cred = store.issue(parse_claims(example_claims()), holder_key=None, passphrase=PASSPHRASE)
    found = store.credential(cred.credential_id)
    assert found is not None
    signed = parse_instant(found["issued_at"], "issued_at")
    before = store.office_keys()
    with pytest.raises(StoreError) as refused:
        store.add_office_key(PASSPHRASE, now=signed - 3600)
    assert refused.value.code == "issuer_clock_behind_records"
    assert "Ponga el reloj en hora" in refused.value.message["es"]
    assert "Nothing was changed" in refused.value.message["en"]
    assert store.office_keys() == before
    store.add_office_key(PASSPHRASE, now=signed)  # the clock right: rotated
    old = store.office_keys()[0]
    assert old["status"] == "retired" and old["valid_until"] >= signed


def test_a_rotation_with_the_clock_years_ahead_is_mended_by_rotating_again(
        tmp_path: Path) -> None:
    """Rotated with the clock in 2032, past the old key's five years, then the clock set right:
    the key rotated away showed "active", and the new key (made "in 2032") signs nothing
    counters take; another rotation, with the right clock, is the remedy and is allowed."""
    store = IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX",
                               office="Centro", code="MXMEX", passphrase=PASSPHRASE)
    store.issue(parse_claims(example_claims()), holder_key=None, passphrase=PASSPHRASE)
    now = int(time.time())
    store.add_office_key(PASSPHRASE, now=now + 6 * 365 * 86400)
    assert [k["status"] for k in store.office_keys(now=now)] == ["retired", "not_yet_valid"]
    with pytest.raises(StoreError) as refused:
        store.issue(parse_claims(example_claims()), holder_key=None, passphrase=PASSPHRASE)
    assert "issuer rotate" in refused.value.message["en"], refused.value
    made = store.add_office_key(PASSPHRASE, now=now)
    assert {k["kid"]: k["status"] for k in store.office_keys(now=now)}[b64url(made)] == "active"
    assert sorted(k["status"] for k in store.office_keys(now=now)) == [
        "active", "retired", "retired"]


def test_the_issuance_time_is_read_holding_the_write_lock(tmp_path: Path) -> None:
    """A backup holds the store's write lock past its cutoff second: an issuance waiting on
    the lock must be stamped after it gets the lock, or it would be stamped before the cutoff
    and yet be missing from the copy."""
    store = IssuerStore.create(tmp_path / "issuer", city="Mexicali", country="MX",
                               office="Centro", code="MXMEX", passphrase=PASSPHRASE)
    claims = parse_claims(example_claims())
    # unsealed beforehand, as a bulk run does: the worker goes straight to the lock, and its
    # wait is the lock's, not the passphrase's
    signing = store.office_signing_key(PASSPHRASE)
    lock = sqlite3.connect(tmp_path / "issuer" / "issuer.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # as issuer.backup does while it copies
    issued: list[str] = []
    worker = threading.Thread(target=lambda: issued.append(store.issue(
        claims, holder_key=None, passphrase=PASSPHRASE, signing=signing).credential_id))
    worker.start()
    time.sleep(1.5)  # the worker is waiting on the lock by now
    # still waiting: otherwise this test would not tell a stamp taken before the wait
    assert worker.is_alive() and issued == []
    released = int(time.time())
    lock.execute("ROLLBACK")
    lock.close()
    worker.join(timeout=30)
    assert issued
    with store.engine.connect() as db:
        stamped = db.execute(sa.select(credentials.c.issued_at)
                             .where(credentials.c.id == issued[0])).scalar_one()
    assert stamped >= released


@pytest.mark.parametrize("end", [True, False, -1, 2.0, "7", None, [3]])
def test_only_a_whole_ledger_position_is_kept_from_the_nodes_answer(
        store: IssuerStore, monkeypatch: pytest.MonkeyPatch, end: object) -> None:
    """A node's answer is not trusted to be well formed: JSON ``true`` is an ``int`` to
    ``isinstance``, and kept as "True" it would break a later restore's catch-up."""
    store.configure_ledger("http://ledger.test", "t", PASSPHRASE, check=False)
    monkeypatch.setattr("issuer.store.post_entries",
                        lambda *_args, **_kwargs: {"end": end})
    assert store.publish(PASSPHRASE) > 0
    assert store.pending() == []  # appended all the same: only the position is not kept
    with store.engine.connect() as db:
        assert db.execute(sa.select(meta.c.v).where(meta.c.k == "ledger_end")).scalar() is None


def test_a_whole_ledger_position_is_kept(store: IssuerStore,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store.configure_ledger("http://ledger.test", "t", PASSPHRASE, check=False)
    monkeypatch.setattr("issuer.store.post_entries", lambda *_args, **_kwargs: {"end": 0})
    store.publish(PASSPHRASE)
    with store.engine.connect() as db:
        assert db.execute(sa.select(meta.c.v).where(meta.c.k == "ledger_end")).scalar() == "0"


def test_a_reason_about_the_residents_life_goes_public_as_unspecified(
        store: IssuerStore) -> None:
    """A status change names the list index every code the resident shows carries: "fraud" or
    "deceased" on the public record could be read off it by any counter that once saw the
    code. The office keeps the reason given; the record says what the office or a key did."""
    claims = parse_claims(example_claims())
    published: dict[str, str] = {}
    for reason in ("fraud", "deceased", "moved_away", "holder_request", "device_lost",
                   "data_error", "superseded", "key_compromise", "unspecified"):
        cred = store.issue(claims, holder_key=None, passphrase=PASSPHRASE)
        change = store.set_status(cred.credential_id, "revoked", reason, passphrase=PASSPHRASE)
        assert change["reason"] == reason  # as the clerk is told
        kept = store.credential(cred.credential_id)
        assert kept is not None and kept["reason"] == reason  # as the office keeps it
        (entry,) = [e for _, e in store.pending() if e["type"] == "status_changed"
                    and e["index"] == change["index"]]
        published[reason] = entry["reason"]
    assert published == {"fraud": "unspecified", "deceased": "unspecified",
                         "moved_away": "unspecified", "holder_request": "unspecified",
                         "device_lost": "unspecified", "data_error": "data_error",
                         "superseded": "superseded", "key_compromise": "key_compromise",
                         "unspecified": "unspecified"}


def test_a_two_character_chinese_japanese_or_korean_name_is_no_slip() -> None:
    """Most of their city names are two characters (東京, 서울, 北京): refused as "fewer than
    three letters", a city could not put its own name, which init took, in a passport."""
    from issuer.store import check_catalog_name

    for name in ("東京", "서울", "北京", "大阪", "Mexicali", "Ixtepec"):
        check_catalog_name("city", name)
    for slip in ("Mx", "BP", "東", "서", "東x", "--"):
        with pytest.raises(UsageError) as caught:
            check_catalog_name("city", slip)
        assert caught.value.code == "catalog_name_short", slip
