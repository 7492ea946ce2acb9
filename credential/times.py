"""Instants as the project writes and reads them: Unix seconds inside, RFC 3339 UTC outside."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from credential.claims import date_from_days, days_from_date  # the day numbers of CBOR dates
from credential.errors import UsageError

__all__ = ["COUNTER_CLOCK_SKEW_S", "COUNTER_FRESHNESS_S", "DATETIME_STAMP", "OFFICE_CLOCK_AHEAD_S",
           "check_timezone", "day_bounds", "first_day", "last_day", "parse_instant", "rfc3339",
           "utc_date"]

# xsd:dateTimeStamp, as VC 2.0 and Data Integrity write times: an instant without its zone would
# mean a different one on each side of the border.
DATETIME_STAMP = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)

_DAY = 86400
_HALF_DAY = 43200
# How far ahead of a right clock an issuing office's may run when it makes a bundle: a counter
# whose clock reads further behind a bundle's making refuses every scan (``counter_clock_behind``),
# and a wallet tells its resident so (``wallet_clock_behind``) only past this; less far, it
# blames no clock. (A passport's signing time is not held to the counter's clock.)
OFFICE_CLOCK_AHEAD_S = _DAY
# How far a counter's clock may be off from the passport's (a counter policy's default
# ``clock_skew_seconds``): it widens a passport's first and last day at every counter, so a
# wallet says "the counter will refuse it" only past it.
COUNTER_CLOCK_SKEW_S = 300
# How long after a phone makes a code a counter takes it (a counter policy's default
# ``freshness_seconds``): a wallet says so of a code it saves as an image.
COUNTER_FRESHNESS_S = 120


def utc_date(ts: int) -> date:
    """The UTC calendar day of a Unix time."""
    return datetime.fromtimestamp(ts, UTC).date()


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone (``America/Tijuana``) this machine knows."""
    from importlib import resources
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    # A name of the IANA database itself, as the bundled copy (tzdata) has it: this machine's
    # files also answer to names no other machine need have ("localtime", "posixrules",
    # "posix/…"), which a restored office's next machine then could not read, and to
    # "right/…" zones, which count leap seconds and put every validity's ends seconds off.
    try:
        known = resources.files("tzdata.zoneinfo").joinpath(name).is_file()
    except (ValueError, OSError):  # a name that is no path (NUL, too long)
        known = False
    if not known or name.startswith(("posix/", "right/")) or name in ("posixrules", "localtime"):
        raise UsageError("timezone_unknown", timezone=name[:80])
    try:
        zone = ZoneInfo(name)
    # OSError: a name that is a folder of the zone database ("Pacific", "America"), or one
    # the file system refuses (too long, unreadable), is still not a zone the clerk can use
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError("timezone_unknown", timezone=name[:80]) from None
    # A counter reads the validity days back without knowing the zone (``first_day``), which
    # is exact for offsets over −12 h and up to +12 h; a zone beyond (Kiritimati, +14; Tonga,
    # +13) would have every counter show its days off by one. Its offsets are checked month
    # by month over the years passports issued now can be valid in (a zone's past, such as
    # Kamchatka's +13 summers until 2011, does not matter).
    this_year = datetime.now(UTC).year
    for year in range(this_year, this_year + 31):
        for month in range(1, 13):
            offset = datetime(year, month, 1, tzinfo=zone).utcoffset()
            if offset is not None and not -_HALF_DAY < offset.total_seconds() <= _HALF_DAY:
                raise UsageError("timezone_out_of_range", timezone=name[:80],
                                 offset=_offset_text(int(offset.total_seconds())))
    return name


def _offset_text(seconds: int) -> str:
    sign = "−" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    return f"UTC{sign}{hours}" + (f":{rest // 60:02d}" if rest else "")


def day_bounds(first: date, last: date, timezone: str | None) -> tuple[int, int]:
    """A credential's validity, whole days from ``first`` to ``last``, as CWT ``nbf`` and
    ``exp``: the first second of ``first`` and the first second after ``last``, both counted in
    the issuing office's time zone (UTC when it names none). A passport "valid until 21
    November" in Mexicali is so until midnight there, not until 16:00 (midnight UTC)."""
    if timezone is None:
        return days_from_date(first) * _DAY, (days_from_date(last) + 1) * _DAY
    from datetime import time, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone)
    return int(start.timestamp()), int(end.timestamp())


def first_day(nbf: int) -> date:
    """The local day a validity starting at ``nbf`` begins, for a counter that does not know
    the issuing office's zone: ``nbf`` is a local midnight, and for any zone from UTC−11:59 to
    UTC+12 the nearest half-day rounding gives that day back (every city that can share a
    counter with Mexicali, Tijuana or Juárez)."""
    return date_from_days((nbf + _HALF_DAY) // _DAY)


def last_day(exp: int) -> date:
    """The last local day of a validity ending at ``exp`` (the midnight after it); see
    ``first_day``."""
    return date_from_days((exp + _HALF_DAY) // _DAY - 1)



# RFC 3339 spells years 0000-9999; Python's datetime starts at year 1.
_LATEST = 253402300799  # 9999-12-31T23:59:59Z
_EARLIEST = -62135596800  # 0001-01-01T00:00:00Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(ts: int) -> str:
    """``ts`` (Unix seconds) as RFC 3339 UTC. A time outside what it can spell (a witness whose
    clock sends milliseconds, tlog-cosignature's 2^63-1) is shown at the nearest end of its
    range rather than failing a whole report (``ledger status``) over one stranger's number.
    Before 1970 is spelled too: ``compromised --since 1900-01-01T00:00:00Z`` was said back to
    the clerk as 1970."""
    moment = _EPOCH + timedelta(seconds=min(max(ts, _EARLIEST), _LATEST))
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"  # 4-digit years


def parse_instant(text: str, option: str) -> int:
    """An ISO-8601 time given on the command line, with its zone (``Z`` or an offset). A time
    without one is refused rather than guessed: read as UTC it is eight hours off for a clerk
    in Mexicali, and a key's compromise time (``--since``) set hours late leaves valid what
    the thief signed in between."""
    try:
        # RFC 3339 §5.6: "t" and "z" may be lower case (Python takes the first only)
        parsed = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", text))
    except ValueError:
        raise UsageError("usage_error",
                         reason_es=f"{option} no es una fecha y hora ISO-8601: {text}",
                         reason_en=f"{option} is not an ISO-8601 time: {text}") from None
    if not re.search(r"[Tt ][0-9]", text):
        # A day alone, with or without a zone: Python 3.11 reads "2026-11-20-08:00" as that
        # day's midnight and drops the offset, so "needs its time zone" would send a clerk
        # to add what they gave; the time of day is what is missing.
        raise UsageError("usage_error",
                         reason_es=f"{option} {text} necesita la hora del día y su zona, p. ej. "
                                   "2026-11-23T16:50-08:00 (Pacífico) o 2026-11-24T00:50Z (UTC)",
                         reason_en=f"{option} {text} needs a time of day and its zone, e.g. "
                                   "2026-11-23T16:50-08:00 (Pacific) or 2026-11-24T00:50Z (UTC)")
    if parsed.tzinfo is None:
        raise UsageError("usage_error",
                         reason_es=f"{option} {text} necesita su zona horaria, p. ej. "
                                   "2026-11-23T16:50-08:00 (Pacífico) o 2026-11-24T00:50Z (UTC)",
                         reason_en=f"{option} {text} needs its time zone, e.g. "
                                   "2026-11-23T16:50-08:00 (Pacific) or 2026-11-24T00:50Z (UTC)")
    return int(parsed.timestamp())
