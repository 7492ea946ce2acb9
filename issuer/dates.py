"""What the office's today says of a resident's dates, before anything is signed: a validity
already over, or a birth or a residency "since" still to come. Each is a year mistyped (2016
for 2026, 2062 for 1962) far more often than anything else, and each would be signed into a
passport that is wrong for all its life (the first one refused by every counter)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from credential.claims import Claims, invalid_claim
from credential.errors import UsageError
from schemas import schema

__all__ = ["FUTURE_DATES", "Replaced", "future_date", "office_today", "replaced_too_soon",
           "untimely"]

# (group, claim) of the dates that are facts of the past: never after the office's today
FUTURE_DATES = (("birth_date", "birth_date"), ("residence", "since"))


def office_today(timezone: str | None, *, now: float | None = None) -> date:
    """Today where the office is: in its time zone (UTC when it named none), the one its
    validity days are counted in, so a clerk in Mexicali at 17:00 does not get tomorrow."""
    zone = ZoneInfo(timezone) if timezone else UTC
    return (datetime.now(zone) if now is None else datetime.fromtimestamp(now, zone)).date()


def future_date(group: str, claim: str, value: date, today: date) -> UsageError | None:
    """``claims_date_future`` when ``value`` (the ``group.claim`` date) is after ``today``."""
    if value <= today:
        return None
    label = next(f.label for f in schema().group(group).fields if f.name == claim)
    return UsageError("claims_date_future", label_es=label["es"], label_en=label["en"],
                      value=value.isoformat(), today=today.isoformat())


def untimely(claims: Claims, today: date) -> UsageError | None:
    """The first thing ``today`` (the office's) refuses in ``claims``, or None."""
    if claims.valid_until < today:
        return UsageError("claims_expired", valid_until=str(claims.valid_until),
                          today=today.isoformat())
    for group, claim in FUTURE_DATES:
        value = claims.groups.get(group, {}).get(claim)
        if isinstance(value, date):
            refused = future_date(group, claim, value, today)
            if refused is not None:
                return refused
    # The same slip the other way (1910 for 2010): every counter would show a residency older
    # than its resident. After the dates to come: a birth mistyped into the future is that.
    birth = claims.groups.get("birth_date", {}).get("birth_date")
    since = claims.groups.get("residence", {}).get("since")
    if isinstance(birth, date) and isinstance(since, date) and since < birth:
        return invalid_claim("residence.since",
                             "anterior a la fecha de nacimiento (¿un año mal escrito?)",
                             "before the birth date (a mistyped year?)")
    return None


@dataclass(frozen=True)
class Replaced:
    """The passport a new one replaces (``issue --replaces``), as the office's record has it:
    its id and its first and last days (the first ``None`` when it was issued before the
    store kept it)."""

    credential_id: str
    first_day: date | None
    last_day: date


def replaced_too_soon(claims: Claims, replaced: Replaced, today: date) -> UsageError | None:
    """``replaces_before_start`` when a passport that replaces ``replaced`` starts after
    ``today`` while the replaced one is, or becomes, valid before it: the old one is revoked
    at once, in the issuing transaction, and the resident would hold neither until the new one's
    first day (an early renewal, say). Replacing one that is over already, or that itself
    starts no earlier (an early renewal corrected before it begins), leaves no such gap."""
    if claims.valid_from <= today or replaced.last_day < today:
        return None
    if replaced.first_day is not None and replaced.first_day >= claims.valid_from:
        return None
    return UsageError("replaces_before_start", credential_id=replaced.credential_id,
                      valid_from=claims.valid_from.isoformat())
