"""Instants as the project writes and reads them: Unix seconds inside, RFC 3339 UTC outside."""

from __future__ import annotations

from datetime import UTC, date, datetime

from credential.errors import UsageError

__all__ = ["parse_instant", "rfc3339", "utc_date"]


def utc_date(ts: int) -> date:
    """The UTC calendar day of a Unix time (credential validity is whole days)."""
    return datetime.fromtimestamp(ts, UTC).date()


def rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str, option: str) -> int:
    """An ISO-8601 time given on the command line (UTC when no zone is given)."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("usage_error",
                         reason_es=f"{option} no es una fecha y hora ISO-8601: {text}",
                         reason_en=f"{option} is not an ISO-8601 time: {text}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())
