"""A node's (or a mirror's) health at a glance: ``ledger status`` and ``GET /status``.

Two steps, so the judgement is testable without a database and both front ends say the same:
``collect`` reads what the store already holds (a handful of primary-key and index lookups,
never a scan: it costs the same on a log of ten records as on one of millions), and ``assess``
is a pure function of those facts, the clock and the limits. ``status`` is the two together.

Only public facts are read: sizes, times, origins and key names. Never a record, a token, a
client's name, an idempotency key or a witness's URL (it could carry credentials) — the report
is served without authentication.

Health, most severe first: ``critical`` (this node holds split-view evidence: a log it
witnesses signed two histories; a mirror holds a note its log signed that contradicts what the
mirror verified; a witness has cosigned more of this log than its database holds), ``warning``
(see ``assess``), ``ok``. The CLI exits 0/1/2 for them and 3 when it cannot tell (a usage
error), as a Nagios plugin does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, inspect, select

from credential.errors import MalformedInput, PasaporteError
from credential.logproof import name_host
from credential.note import parse_signature_lines, parse_verifier_key
from credential.times import rfc3339
from ledger import schema as t
from ledger.client import public_url
from ledger.store import MAX_BATCH, LedgerStore

__all__ = ["CRITICAL", "DEFAULT_MAX_AGE", "DEFAULT_MAX_BEHIND", "EXIT", "OK", "UNKNOWN_EXIT",
           "WARNING", "Facts", "Report", "WitnessFacts", "assess", "collect", "status"]

OK, WARNING, CRITICAL = "ok", "warning", "critical"
# Nagios plugin convention, which every monitor understands; 3 (unknown) is what the CLI
# answers when it could not check at all (a usage error), so it never reads as "critical".
EXIT = {OK: 0, WARNING: 1, CRITICAL: 2}
UNKNOWN_EXIT = 3
# A log signs a checkpoint only when something is appended, so the newest one's age is the
# time since the last append. The offices append every day they issue or revoke; a node whose
# appends silently stopped (a broken proxy, a revoked token) should be noticed the next
# morning, not after a long weekend. A quiet log (a weekend) warns too — a warning, not an
# alarm — and an operator of such a log passes a longer --max-age.
DEFAULT_MAX_AGE = 86400
# One append may carry MAX_BATCH records, and a witness that answers cosigns it within seconds:
# behind by more than one whole batch is a witness that missed more than one append, however
# large. (Missing a single one is caught by --max-age.)
DEFAULT_MAX_BEHIND = MAX_BATCH
# A checkpoint dated further ahead of this clock than this is a clock to set (the node's, or
# the probe's): five minutes, the leeway counters give a phone's clock.
CLOCK_AHEAD_S = 300
_SPLIT_VIEWS_SHOWN = 20  # evidence rows listed; all are counted

_ORDER = {OK: 0, WARNING: 1, CRITICAL: 2}


@dataclass(frozen=True)
class WitnessFacts:
    name: str
    cosigned: int  # the size it last cosigned
    cosigned_at: int | None  # that cosignature's timestamp (None: never cosigned one)
    waiting_since: int | None  # when the first checkpoint it has not cosigned was signed


@dataclass(frozen=True)
class Facts:
    """What the store holds that the report needs (times in seconds since the epoch)."""

    origin: str
    mirror_of: str | None
    size: int  # records held
    checkpoint_size: int | None  # the newest signed (or, on a mirror, verified) checkpoint
    checkpoint_at: int | None  # when it was stored
    witnesses: tuple[WitnessFacts, ...] = ()
    witnessing: tuple[tuple[str, int, int], ...] = ()  # (origin, size cosigned, when)
    split_views: tuple[tuple[str, int, int], ...] = ()  # (origin, size, when seen), the first
    split_view_count: int = 0


@dataclass(frozen=True)
class Report:
    """The verdict and what it is made of; ``to_json`` is the documented shape."""

    health: str
    facts: Facts
    now: int
    max_age: int
    max_behind: int
    problems: tuple[PasaporteError, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        return EXIT[self.health]

    def to_json(self) -> dict[str, Any]:
        f = self.facts
        checkpoint = None if f.checkpoint_size is None or f.checkpoint_at is None else {
            "size": f.checkpoint_size, "time": rfc3339(f.checkpoint_at),
            "age": max(0, self.now - f.checkpoint_at)}
        cosigned = [w.cosigned for w in f.witnesses]
        return {
            "health": self.health,
            "time": rfc3339(self.now),
            "origin": f.origin,
            "role": "node" if f.mirror_of is None else "mirror",
            "source": _public_url(f.mirror_of),
            "size": f.size,
            "checkpoint": checkpoint,
            "witnesses": [{
                "name": w.name, "size": w.cosigned,
                "time": None if w.cosigned_at is None else rfc3339(w.cosigned_at),
                "behind": max(0, f.size - w.cosigned),
                "waiting_since": None if w.waiting_since is None else rfc3339(w.waiting_since),
            } for w in f.witnesses],
            # records no witness has vouched for yet (None: nobody is asked)
            "uncosigned": max(0, f.size - max(cosigned)) if cosigned else None,
            "witnessing": [{"origin": o, "size": s, "time": rfc3339(w)}
                           for o, s, w in f.witnessing],
            "mirror": None if f.mirror_of is None else {
                "verified": f.checkpoint_size or 0,
                "unverified": max(0, f.size - (f.checkpoint_size or 0))},
            "split_views": {"count": f.split_view_count, "first": [
                {"origin": o, "size": s, "time": rfc3339(w)} for o, s, w in f.split_views]},
            "problems": [{"code": p.code, "health": _severity(p.code), "message": p.message}
                         for p in self.problems],
            "limits": {"max_age": self.max_age, "max_behind": self.max_behind},
        }

    def lines(self) -> list[str]:
        """The human report: the health first, then one bilingual line per item."""
        doc = self.to_json()
        out = [f"Estado / Health: {_HEALTH_WORDS[self.health]}",
               f"Origen / Origin: {doc['origin']}",
               "Papel / Role: " + ("nodo / node" if doc["role"] == "node"
                                   else f"réplica de / mirror of {doc['source']}"),
               f"Registros / Records: {doc['size']}"]
        cp = doc["checkpoint"]
        out.append("Último checkpoint / Newest checkpoint: " + (
            "ninguno / none" if cp is None else
            f"{cp['size']} @ {cp['time']} (hace / age {cp['age']} s)"))
        for w in doc["witnesses"]:
            out.append(f"Testigo / Witness {w['name']}: cosignó / cosigned {w['size']} @ "
                       f"{w['time'] or '-'}, atrás / behind {w['behind']}")
        if doc["uncosigned"] is not None:
            out.append(f"Sin cosignar / Uncosigned records: {doc['uncosigned']}")
        for w in doc["witnessing"]:
            out.append(f"Atestigua / Witnessing {w['origin']}: {w['size']} @ {w['time']}")
        if doc["mirror"] is not None:
            m = doc["mirror"]
            out.append(f"Réplica / Mirror: verificado / verified {m['verified']}, "
                       f"sin verificar / unverified {m['unverified']}")
        out.append(f"Vistas divididas / Split views: {doc['split_views']['count']}")
        out.extend(f"{_HEALTH_WORDS[p['health']]}: [{p['code']}] {p['message']['es']} / "
                   f"{p['message']['en']}" for p in doc["problems"])
        return out


# How the human report says each health; the JSON keeps the English words, for programs
_HEALTH_WORDS = {OK: "ok", WARNING: "aviso / warning", CRITICAL: "crítico / critical"}


def _public_url(url: str | None) -> str | None:
    """The report is public: a source address as ``ledger.client.public_url`` shows it (a
    mirror made before addresses were checked may hold a password in its settings)."""
    return None if url is None else public_url(url)


# What a probe must not read as a mere warning: evidence that a log signed two histories, and a
# log whose database went back behind what its witness cosigned (appending would fork it).
_CRITICAL_CODES = frozenset({"ledger_status_split_view", "ledger_status_mirror_evidence",
                             "ledger_behind_witness"})


def _severity(code: str) -> str:
    return CRITICAL if code in _CRITICAL_CODES else WARNING


def collect(store: LedgerStore) -> Facts:
    """Read the facts, in one read transaction (the head and the checkpoints agree). Every
    query is by primary key or index, or reads a table of a few rows (witnesses, logs
    witnessed, split-view evidence)."""
    with store.engine.connect() as conn, conn.begin():
        # a table dropped under a running node: every read of it fails, so the probe must not
        # read "ok" (a load balancer would keep a node that cannot serve a record)
        store.check_schema(conn)
        size = int(conn.execute(select(t.head.c.size).where(t.head.c.id == 1)).scalar() or 0)
        c = t.checkpoints.c
        newest = conn.execute(select(c.size, c.created).order_by(c.size.desc()).limit(1)).first()
        witnesses: tuple[WitnessFacts, ...] = ()
        witnessing: tuple[tuple[str, int, int], ...] = ()
        if store.mirror_of is None:  # a mirror asks no witness and witnesses nothing
            # each witness's key in use (one per name), not the keys it had before
            wk = t.witnesses.c
            witnesses = tuple(_witness(conn, str(name), str(vkey), int(cosigned), size)
                              for name, vkey, cosigned in conn.execute(
                                  select(wk.name, wk.vkey, wk.size).where(wk.url != "")
                                  .order_by(wk.name)))
            w = t.witnessed_logs.c
            witnessing = tuple((str(o), int(s), int(u)) for o, s, u in conn.execute(
                select(w.origin, w.size, w.updated).order_by(w.origin)))
        views: tuple[tuple[str, int, int], ...] = ()
        count = 0
        # a schema older than 0003 (a node upgraded, not yet reopened to write) has no such
        # table, and no evidence either: read-only opens do not migrate
        if inspect(conn).has_table(t.split_views.name):
            s = t.split_views.c
            count = int(conn.execute(select(func.count()).select_from(t.split_views)).scalar()
                        or 0)
            views = tuple((str(o), int(n), int(seen)) for o, n, seen in conn.execute(
                select(s.origin, s.size, s.seen).order_by(s.id).limit(_SPLIT_VIEWS_SHOWN)))
    return Facts(origin=store.origin, mirror_of=store.mirror_of, size=size,
                 checkpoint_size=None if newest is None else int(newest[0]),
                 checkpoint_at=None if newest is None else int(newest[1]),
                 witnesses=witnesses, witnessing=witnessing, split_views=views,
                 split_view_count=count)


def _witness(conn: Connection, name: str, vkey: str, cosigned: int, size: int) -> WitnessFacts:
    co, cp = t.cosignatures.c, t.checkpoints.c
    # the unique (size, witness) index: one probe
    line = conn.execute(select(co.line).where(co.size == cosigned, co.witness == name)).scalar()
    at = None
    if line is not None:
        try:
            sig = parse_signature_lines(str(line))[0]
            # a key new under this name has cosigned nothing yet: that row is an old key's
            at = sig.timestamp if sig.key_id == parse_verifier_key(vkey).key_id else None
        except (MalformedInput, IndexError):
            at = None  # a damaged row is audit's to name; here it is only "when unknown"
    waiting = None
    if cosigned < size:
        # the first checkpoint it has not cosigned: how long it has been asked in vain
        waiting = conn.execute(select(cp.created).where(cp.size > cosigned)
                               .order_by(cp.size).limit(1)).scalar()
    return WitnessFacts(name, cosigned, at, None if waiting is None else int(waiting))


def assess(facts: Facts, *, now: int, max_age: int = DEFAULT_MAX_AGE,
           max_behind: int = DEFAULT_MAX_BEHIND) -> Report:
    """The verdict. ``critical``: split-view evidence held (on a mirror: a note its log signed
    that contradicts what it verified); a witness that cosigned a larger tree of this log than
    the database holds (restored from an old copy). ``warning``: no checkpoint yet; the
    newest older than ``max_age`` seconds; a node that asks no witness (verifiers require a
    cosignature); a witness more than ``max_behind`` records behind, or that has left a
    checkpoint uncosigned for more than ``max_age`` (timed from that checkpoint, not from the
    witness's last cosignature: after a quiet week, a witness asked a minute ago is not
    silent); a mirror holding records its last verified checkpoint does not cover (a run cut
    short: the source is ahead of what the mirror could check)."""
    if max_age < 0 or max_behind < 0:
        raise ValueError("limits must not be negative")
    problems: list[PasaporteError] = []
    if facts.split_view_count:
        for origin, size, _seen in facts.split_views[:1]:
            # a mirror witnesses nothing: its rows are its own log's contradicting notes
            # (``ledger.mirror``), which the witness's words would misname
            code = ("ledger_status_mirror_evidence" if facts.mirror_of is not None
                    else "ledger_status_split_view")
            problems.append(PasaporteError(code, origin=origin, size=size,
                                           count=facts.split_view_count))
    if facts.checkpoint_size is None or facts.checkpoint_at is None:
        problems.append(PasaporteError("ledger_status_no_checkpoint"))
    elif now - facts.checkpoint_at > max_age:
        problems.append(PasaporteError("ledger_status_checkpoint_old",
                                       size=facts.checkpoint_size,
                                       age=now - facts.checkpoint_at, max_age=max_age))
    elif facts.checkpoint_at - now > CLOCK_AHEAD_S:
        # dated ahead of this clock: "age 0 s, ok" hid a node whose clock runs fast (its
        # checkpoints and records carry its times) or a probe whose clock is slow
        problems.append(PasaporteError("ledger_status_checkpoint_future",
                                       size=facts.checkpoint_size,
                                       ahead=facts.checkpoint_at - now,
                                       time=rfc3339(facts.checkpoint_at), now=rfc3339(now)))
    if facts.mirror_of is None and not facts.witnesses:
        problems.append(PasaporteError("ledger_status_no_witness"))
    for w in facts.witnesses:
        if name_host(w.name) == name_host(facts.origin):
            # its cosignatures count at no counter (``bundle_witness_is_own``): found here,
            # not as every bundle refused once the city is live
            problems.append(PasaporteError("ledger_witness_same_host", witness=w.name,
                                           origin=facts.origin, host=name_host(w.name)))
        behind = facts.size - w.cosigned
        if behind < 0:
            # It vouched for a tree this database does not hold: restored from an old copy.
            # The log refuses appends in this state (they would fork its public history).
            problems.append(PasaporteError("ledger_behind_witness", witness=w.name,
                                           size=w.cosigned, have=facts.size))
        elif behind > max_behind:
            problems.append(PasaporteError("ledger_status_witness_behind", witness=w.name,
                                           cosigned=w.cosigned, size=facts.size, behind=behind,
                                           max_behind=max_behind))
        elif (behind > 0 and w.waiting_since is not None
              and now - w.waiting_since > max_age):
            problems.append(PasaporteError("ledger_status_witness_silent", witness=w.name,
                                           cosigned=w.cosigned, age=now - w.waiting_since,
                                           max_age=max_age))
    if facts.mirror_of is not None and facts.checkpoint_size is not None \
            and facts.size != facts.checkpoint_size:
        problems.append(PasaporteError("ledger_status_mirror_unfinished", size=facts.size,
                                       verified=facts.checkpoint_size,
                                       source=_public_url(facts.mirror_of)))
    health = max((_severity(p.code) for p in problems), key=_ORDER.__getitem__, default=OK)
    return Report(health, facts, now, max_age, max_behind, tuple(problems))


def status(store: LedgerStore, *, now: int, max_age: int = DEFAULT_MAX_AGE,
           max_behind: int = DEFAULT_MAX_BEHIND) -> Report:
    """``assess(collect(store))``: what ``ledger status`` and ``GET /status`` both report."""
    return assess(collect(store), now=now, max_age=max_age, max_behind=max_behind)
