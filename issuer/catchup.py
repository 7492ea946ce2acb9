"""Bringing an office restored from a backup up to date from its city's public ledger.

An office publishes every change through its outbox, oldest first, and the ledger appends each
batch once and in order. So the office's own entries on the ledger are its outbox, in order, up to
wherever the lost office stopped. Reading the ledger from the end of the last batch the backup
knows was published, a restore learns

- which of the backup's queued entries the lost office published after the backup: they are
  marked sent, so the restored office does not publish them a second time (a status change
  published twice could land after a later one and contradict it on the public record);
- every status change the lost office made after the backup (for credentials in the backup):
  applied to the restored store, where the counters' next bundles come from;
- every key the backup holds that the lost office marked compromised after the backup, from the
  time it gave (a bundle from the restored office must never trust such a key again);
- the keys the lost office rotated to after the backup (a ``key_rotated`` replacing a key the
  backup holds, or one found so), and the keys of offices it added since (a ``key_registered``
  of this city for a key the backup does not hold), which the restore then marks compromised on
  the public record like the key active at the backup: the restored office cannot revoke what
  they signed;
- the highest status list number the lost office used, so that the restored office's new list
  does not take a name the record already uses for another list.

A status change for this office's lists that the backup cannot place (it appears while entries
the backup queued earlier are still missing from the ledger) means the ledger's history is not
this backup's. A ``key_compromised`` for the backup's active key from exactly its cutoff means the
backup was restored already (two offices with one root key would each sign bundles that counters
trust). Nothing is guessed in either case: the restore stops and says so. Only public entries are
read: the ledger holds no personal data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from credential.errors import LedgerError, StoreError
from credential.keys import b64url, unb64url
from credential.passport import STATUS_BOUND
from credential.times import parse_instant, rfc3339
from issuer.store import (
    LEDGER_END,
    LIST_FLOOR,
    IssuerStore,
    credentials,
    keys,
    meta,
    outbox,
    set_meta,
)
from ledger import client
from ledger.entries import (
    Entry,
    KeyCompromised,
    KeyRegistered,
    KeyRotated,
    StatusChanged,
    decode_record,
    entry_from_json,
)
from ledger.http import MAX_PAGE

__all__ = ["Walk", "catch_up", "recorded_end", "walk"]

Progress = Callable[[int, int | None], None]  # (records read, records on the ledger if known)
_CHUNK = 500  # ids per UPDATE … IN (…): under SQLite's limit on bound parameters


@dataclass
class Walk:
    """What reading the ledger found (``walk``), and once ``catch_up`` has applied it to the
    store, how many status changes took effect."""

    found: list[int] = field(default_factory=list)  # outbox ids the ledger holds, in order
    end: int = 0  # the ledger size just after the last of them
    changes: list[StatusChanged] = field(default_factory=list)  # after the backup, in order
    lost: list[str] = field(default_factory=list)  # kids made after the backup (rotate, add)
    compromised: dict[str, int] = field(default_factory=dict)  # held kid → earliest time given
    floor: int = 0  # the highest status list number of this office on the record
    read: int = 0
    applied: int = 0  # status changes that took effect in the store (``catch_up``)


def walk(records: Iterable[tuple[int, Entry]], queued: Sequence[tuple[int, Entry]], *,
         code: str, lists: Collection[str], held: Collection[str], active: str | None,
         cutoff: int, start: int = 0, url: str = "", city: tuple[str, str] | None = None
         ) -> Walk:
    """Read ``records`` (index, entry) from ``start`` on against the backup's ``queued`` outbox
    entries, this office's ``code``, status ``lists``, ``held`` office keys and ``city`` (name,
    country; the rules are in the module docstring). Raises ``restore_ledger_diverges`` /
    ``restore_already_done``."""
    out = Walk(end=start)
    prefix = f"{code}."
    known = set(held)
    # (no active key at the backup: nothing the restore marks, so nothing to recognise)
    restored_before = (None if active is None
                       else KeyCompromised(kid=active, effective=rfc3339(cutoff)))
    for index, entry in records:
        out.read += 1
        if len(out.found) < len(queued) and entry == queued[len(out.found)][1]:
            out.found.append(queued[len(out.found)][0])
            out.end = index + 1
        elif entry == restored_before:
            raise StoreError("restore_already_done", index=index, url=url)
        elif isinstance(entry, KeyCompromised) and entry.kid in held:
            since = parse_instant(entry.effective, "effective")
            out.compromised[entry.kid] = min(out.compromised.get(entry.kid, since), since)
        elif isinstance(entry, KeyRotated) and entry.replaces in known:
            if entry.kid not in known:  # its key_registered may have been read first
                known.add(entry.kid)
                out.lost.append(entry.kid)
        elif (isinstance(entry, KeyRegistered) and (entry.city, entry.country) == city
              and entry.kid not in known):  # an office the lost one added (or rotated to)
            known.add(entry.kid)
            out.lost.append(entry.kid)
        elif isinstance(entry, StatusChanged) and entry.list.startswith(prefix):
            number = entry.list[len(prefix):]
            # a number no passport can carry was no list of the lost office's (a node of an
            # earlier release took one from any token): the next list would be one as well
            if number.isascii() and number.isdigit() and int(number) < STATUS_BOUND:
                out.floor = max(out.floor, int(number))
            if entry.list in lists:
                if len(out.found) < len(queued):
                    raise StoreError("restore_ledger_diverges", index=index, url=url)
                out.changes.append(entry)
    return out


def recorded_end(value: str | None) -> int | None:
    """The ledger position a store recorded, or None when it has none it can stand by."""
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def catch_up(store: IssuerStore, url: str, *, active: str | None, cutoff: int,
             progress: Progress | None = None) -> Walk:
    """Bring ``store`` (a restored copy, before it becomes the office) up to ``url``'s ledger.
    ``active`` is the kid of an office key active at the backup (any one: a restore marks
    every office's), ``cutoff`` the backup's."""
    url = url.rstrip("/")
    with store.engine.connect() as db:
        m = {k: v for k, v in db.execute(sa.select(meta.c.k, meta.c.v))}
        # Without a recorded position (a store from before it was kept, or one an older
        # version saved unreadable, "True") the whole outbox is matched from the ledger's
        # first record: sent entries are found again on the way.
        recorded = recorded_end(m.get(LEDGER_END))
        start = recorded or 0
        query = sa.select(outbox.c.id, outbox.c.entry).order_by(outbox.c.id)
        if recorded is not None:
            query = query.where(outbox.c.sent.is_(None))
        queued = [(int(i), entry_from_json(json.loads(e))) for i, e in db.execute(query)]
        list_ids = set(db.execute(sa.select(credentials.c.list_id).distinct()).scalars())
        list_ids |= set(db.execute(sa.select(keys.c.status_list)).scalars())
        held = {b64url(k) for k in db.execute(sa.select(keys.c.kid)
                                               .where(keys.c.role == "office")).scalars()}
    names = {f"{m['code']}.{list_id}": int(list_id) for list_id in list_ids}
    total = _size(url)

    def counted() -> Iterator[tuple[int, Entry]]:
        for read, record in enumerate(_records(url, start), start=1):
            if progress is not None and read % MAX_PAGE == 0:
                progress(read, None if total is None else max(total - start, read))
            yield record

    seen = walk(counted(), queued, code=m["code"], lists=names, held=held, active=active,
                 cutoff=cutoff, start=start, url=url, city=(m["city"], m["country"]))
    if progress is not None:
        progress(seen.read, seen.read)
    with store.engine.begin() as db:
        for first in range(0, len(seen.found), _CHUNK):  # an outage may have queued thousands
            db.execute(outbox.update().where(outbox.c.id.in_(seen.found[first:first + _CHUNK]))
                       .values(sent=int(time.time())))
        if seen.found:
            set_meta(db, LEDGER_END, str(seen.end))
        # Each key the lost office made took a new list (``IssuerStore._next_list``), which
        # the record shows only once a status on it changed: one more number for each is used.
        used = max((int(i) for i in list_ids), default=0) + len(seen.lost)
        if max(seen.floor, used):
            set_meta(db, LIST_FLOOR, str(max(seen.floor, used)))
        for kid, since in seen.compromised.items():  # the earlier of the store's and the record's
            # ... but never before the key was made (an earlier release recorded "1900-01-01"
            # as typed): its first moment refuses the same (``mark_compromised``)
            earlier = sa.func.min(sa.func.coalesce(keys.c.compromised_since, since), since)
            db.execute(keys.update().where(keys.c.kid == unb64url(kid, what="kid")).values(
                compromised_since=sa.func.max(earlier, keys.c.valid_from), active=False))
        for change in seen.changes:  # in the ledger's order, which was the lost office's
            seen.applied += db.execute(
                credentials.update()
                .where(credentials.c.list_id == names[change.list],
                       credentials.c.idx == change.index)
                .values(status=change.status, reason=change.reason)).rowcount
    return seen


def _size(url: str) -> int | None:
    """The ledger's size, for progress only (unverified: the records are what is read)."""
    try:
        return client.checkpoint(url)[2].size
    except LedgerError:
        return None


def _records(url: str, start: int) -> Iterator[tuple[int, Entry]]:
    """Every record from ``start`` on, page by page, until a page comes back empty."""
    while leaves := client.entries(url, start, start + MAX_PAGE):
        for index, leaf in enumerate(leaves, start=start):
            yield index, decode_record(leaf).entry
        start += len(leaves)
