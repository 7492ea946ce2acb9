"""The restore's catch-up walk (``issuer.catchup.walk``) against simulated histories: an office
changing statuses and publishing its outbox in batches, other offices appending in between, a
backup taken at any moment and the office lost at the end. Whatever the interleaving, the
restored office ends with every status the public record shows, marks exactly the queued entries
the ledger holds as sent, and never mistakes an honest history for a divergent one."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credential.errors import StoreError
from issuer.catchup import recorded_end, walk
from ledger.entries import CredentialIssued, Entry, KeyCompromised, StatusChanged

CODE, LIST = "MXMEX", "MXMEX.1"
ALLOWED = {("valid", "revoked"), ("valid", "suspended"), ("suspended", "revoked"),
           ("suspended", "valid")}
ACTIVE, CUTOFF = "AAAAAA", 1_795_000_000

op = st.tuples(st.just("op"), st.integers(0, 3), st.sampled_from(["valid", "suspended",
                                                                    "revoked"]))
event = op | st.just(("pub", 0, "")) | st.just(("other", 0, ""))


@dataclass
class History:
    statuses: list[str] = field(default_factory=lambda: ["valid"] * 4)
    outbox: list[tuple[int, Entry]] = field(default_factory=list)
    ledger: list[Entry] = field(default_factory=list)
    sent: int = 0  # outbox entries published, a prefix (FIFO)
    ledger_end: int = 0  # ledger size after the last published batch

    def run(self, kind: str, index: int, new: str) -> None:
        if kind == "op" and (self.statuses[index], new) in ALLOWED:
            self.statuses[index] = new
            self.outbox.append((len(self.outbox) + 1,
                                StatusChanged(list=LIST, index=index, status=new)))
        elif kind == "pub" and self.sent < len(self.outbox):
            self.ledger.extend(e for _, e in self.outbox[self.sent:])  # one batch, in order
            self.sent = len(self.outbox)
            self.ledger_end = len(self.ledger)
        elif kind == "other":  # another office's issuance or status change
            n = len(self.ledger)
            self.ledger.append(CredentialIssued(commitment=n.to_bytes(32, "big")) if n % 2
                               else StatusChanged(list="USCXL.1", index=n % 4, status="revoked"))


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=40), st.data())
def test_any_honest_history_is_caught_up(events: list[tuple[str, int, str]],
                                         data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(events)), label="backup after event")
    office = History()
    for e in events[:at]:
        office.run(*e)
    backup_statuses, backup_ops = list(office.statuses), len(office.outbox)
    sent, start = office.sent, office.ledger_end
    queued = office.outbox[sent:]
    for e in events[at:]:
        office.run(*e)

    seen = walk(enumerate(office.ledger[start:], start=start), queued, code=CODE,
                lists={LIST}, held={ACTIVE}, active=ACTIVE, cutoff=CUTOFF, start=start)
    restored = list(backup_statuses)
    for change in seen.changes:
        restored[change.index] = change.status
    published = office.sent
    # what the record shows, or what the backup knew if it knew more
    expected = History()
    for _, entry in office.outbox[:max(backup_ops, published)]:
        assert isinstance(entry, StatusChanged)
        expected.statuses[entry.index] = entry.status
    assert restored == expected.statuses
    assert seen.found == [i for i, _ in office.outbox[sent:min(backup_ops, published)]]
    # the list numbers of this office's later changes raise the floor; other offices' never do
    assert seen.floor == (1 if seen.changes else 0)


def test_a_list_number_no_passport_carries_does_not_raise_the_floor() -> None:
    """An earlier node took "MXMEX.99999999999999999999" from a token: the restore crashed on
    it, or (at 2^32 - 1) numbered its next list where every passport is refused."""
    history = [StatusChanged(list=f"{CODE}.{n}", index=0, status="revoked")
               for n in (3, 2**32, 10**20, 2**32 - 1)]
    seen = walk(enumerate(history), [], code=CODE, lists={LIST}, held={ACTIVE},
                active=ACTIVE, cutoff=CUTOFF)
    assert seen.floor == 2**32 - 1


def test_a_status_change_the_backup_cannot_place_is_refused() -> None:
    queued = [(7, StatusChanged(list=LIST, index=0, status="revoked"))]
    other = StatusChanged(list=LIST, index=0, status="suspended")  # not from this lineage
    with pytest.raises(StoreError) as caught:
        walk([(3, other), (4, queued[0][1])], queued, code=CODE, lists={LIST}, held={ACTIVE},
             active=ACTIVE, cutoff=CUTOFF, start=3)
    assert caught.value.code == "restore_ledger_diverges" and caught.value.detail["index"] == 3


def test_a_backup_restored_before_is_refused() -> None:
    from credential.times import rfc3339

    mark = KeyCompromised(kid=ACTIVE, effective=rfc3339(CUTOFF))
    with pytest.raises(StoreError) as caught:
        walk([(0, mark)], [], code=CODE, lists={LIST}, held={ACTIVE}, active=ACTIVE,
             cutoff=CUTOFF)
    assert caught.value.code == "restore_already_done"
    # the lost office's own compromise of that key, from another time, is applied instead
    earlier = KeyCompromised(kid=ACTIVE, effective=rfc3339(CUTOFF - 86400))
    seen = walk([(0, earlier)], [], code=CODE, lists={LIST}, held={ACTIVE}, active=ACTIVE,
                cutoff=CUTOFF)
    assert seen.compromised == {ACTIVE: CUTOFF - 86400}


def test_keys_made_after_the_backup_are_lost_once_each() -> None:
    """A rotation (``key_registered`` then ``key_rotated``) and an office added after the backup
    (``key_registered`` alone): each new key of this city is lost once; another city's is not."""
    from ledger.entries import KeyRegistered, KeyRotated

    def registered(kid: str, city: str = "Mexicali") -> KeyRegistered:
        return KeyRegistered(kid=kid, public_key=bytes(32), city=city, country="MX",
                             office="Oficina Norte", valid_from="2026-01-01T00:00:00Z",
                             valid_until="2031-01-01T00:00:00Z")

    history = [registered("BBBBBB"), KeyRotated(kid="BBBBBB", replaces=ACTIVE),
               registered("CCCCCC"), registered("DDDDDD", city="Tijuana")]
    seen = walk(enumerate(history), [], code=CODE, lists={LIST}, held={ACTIVE}, active=ACTIVE,
                cutoff=CUTOFF, city=("Mexicali", "MX"))
    assert seen.lost == ["BBBBBB", "CCCCCC"]


def test_a_recorded_position_it_cannot_stand_by_is_none() -> None:
    """An older version saved JSON ``true`` as "True": the restore then matches the whole
    outbox from the ledger's start, rather than crash on it."""
    assert recorded_end("1042") == 1042 and recorded_end("0") == 0
    for junk in (None, "True", "", "-3", "1.5", "١٢"):
        assert recorded_end(junk) is None
