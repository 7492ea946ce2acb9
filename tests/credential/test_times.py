"""``credential.times``: validity days counted in the issuing office's time zone, and read back
as days by a counter that does not know the zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from credential.errors import UsageError
from credential.times import (
    check_timezone,
    day_bounds,
    first_day,
    last_day,
    parse_instant,
    rfc3339,
)


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_without_a_zone_the_days_are_utc() -> None:
    nbf, exp = day_bounds(date(2026, 11, 22), date(2029, 11, 21), None)
    assert (_utc(nbf), _utc(exp)) == ("2026-11-22T00:00:00Z", "2029-11-22T00:00:00Z")


def test_mexicali_days_end_at_midnight_in_mexicali() -> None:
    # winter (PST, UTC−8) and summer (PDT, UTC−7): the zone, not a fixed offset
    nbf, exp = day_bounds(date(2026, 11, 22), date(2027, 7, 4), "America/Tijuana")
    assert _utc(nbf) == "2026-11-22T08:00:00Z"
    assert _utc(exp) == "2027-07-05T07:00:00Z"


ZONES = ["UTC", "America/Tijuana", "America/Los_Angeles", "America/Ciudad_Juarez",
         "America/Chicago", "Pacific/Pago_Pago", "Pacific/Honolulu", "Europe/Madrid",
         "Asia/Tokyo", "Asia/Kamchatka"]  # UTC−11 … UTC+12


@pytest.mark.parametrize("zone", ZONES)
def test_a_counter_reads_the_days_back_without_knowing_the_zone(zone: str) -> None:
    day = date(2026, 1, 1)
    while day < date(2027, 1, 1):  # every day of a year: both daylight-saving changes
        nbf, exp = day_bounds(day, day + timedelta(days=364), zone)
        assert (first_day(nbf), last_day(exp)) == (day, day + timedelta(days=364)), zone
        day += timedelta(days=1)


@pytest.mark.parametrize("zone,offset", [("Pacific/Kiritimati", "UTC+14"),
                                         ("Pacific/Tongatapu", "UTC+13"),
                                         ("Pacific/Chatham", "UTC+13:45"),
                                         ("Etc/GMT+12", "UTC−12")])
def test_a_zone_a_counter_would_read_a_day_off_is_refused(zone: str, offset: str) -> None:
    with pytest.raises(UsageError) as err:
        check_timezone(zone)
    assert err.value.code == "timezone_out_of_range" and offset in err.value.message["en"]


@pytest.mark.parametrize("zone", ZONES)
def test_the_zones_a_counter_reads_exactly_are_taken(zone: str) -> None:
    assert check_timezone(zone) == zone


def test_an_unknown_zone_is_a_clear_error() -> None:
    assert check_timezone("America/Tijuana") == "America/Tijuana"
    # "Pacific" and "America" are folders of the zone database: no zone either
    # and names only this machine's files answer to, or that count leap seconds
    for bad in ("Mexicali", "America/Nowhere", "../../etc/passwd", "", "Pacific", "America",
                "Etc", "x" * 300, "localtime", "posixrules", "posix/America/Tijuana",
                "right/America/Tijuana", "../__init__.py", "a\x00b"):
        with pytest.raises(UsageError) as err:
            check_timezone(bad)
        assert err.value.code == "timezone_unknown"


def test_a_time_without_its_zone_is_refused_not_guessed() -> None:
    assert parse_instant("2026-11-23T16:50:00-08:00", "--at") == parse_instant(
        "2026-11-24T00:50:00Z", "--at")
    # RFC 3339 §5.6 allows lower case "t" and "z" (a lower-case "z" was "not ISO-8601")
    assert parse_instant("2026-11-24t00:50:00z", "--at") == parse_instant(
        "2026-11-24T00:50:00Z", "--at")
    with pytest.raises(UsageError) as err:
        parse_instant("2026-11-23T16:50", "--at")
    assert "time zone" in err.value.message["en"] and "zona horaria" in err.value.message["es"]


@pytest.mark.parametrize("day", ["2026-11-23", "2026-11-20Z", "2026-11-20-08:00",
                                 "2026-11-20+00:00", "20261120"])
def test_a_day_without_a_time_is_refused_for_the_time_it_lacks(day: str) -> None:
    """Python reads a day with an offset as that day's naive midnight: the clerk was told to add
    the zone they had given."""
    with pytest.raises(UsageError) as err:
        parse_instant(day, "--since")
    assert "time of day" in err.value.message["en"] and "hora del día" in err.value.message["es"]
    assert "needs its time zone" not in err.value.message["en"]


def test_a_time_rfc3339_cannot_spell_is_shown_at_the_end_of_its_range() -> None:
    assert rfc3339(1_795_000_000) == _utc(1_795_000_000)
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(253402300799) == "9999-12-31T23:59:59Z"
    for far in (253402300800, 1_795_000_000_000, (1 << 63) - 1):
        assert rfc3339(far) == "9999-12-31T23:59:59Z"
    assert rfc3339(-1) == "1969-12-31T23:59:59Z"  # spelled, not shown as 1970
    assert rfc3339(-2208988800) == "1900-01-01T00:00:00Z"
    assert rfc3339(-(1 << 63)) == "0001-01-01T00:00:00Z"
