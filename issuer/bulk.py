"""Bulk issuance from a residents CSV (the columns of ``examples/residents-sample.csv``).

Every row is validated before anything is signed: a file with one bad row issues nothing and
names every bad row, so an office never ends up with half a batch to reconcile.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from credential.claims import Claims, parse_claims
from credential.errors import UsageError

__all__ = ["COLUMNS", "BulkError", "parse_residents"]

COLUMNS = ("given_name", "family_name", "birth_date", "residence_city", "residence_country",
           "residence_since", "library_eligible", "library_system", "fare_category",
           "clinic_eligible", "clinic_network", "preferred_language", "valid_from",
           "valid_until")
MAX_ROWS = 100_000
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class BulkError:
    row: int  # 1-based line number in the file, header included
    message: dict[str, str]


def _flag(value: str) -> bool | str:
    low = value.strip().lower()
    if low in ("true", "sí", "si", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    return value  # left as text: the claims validator names the field and the problem


def row_to_claims(row: dict[str, str]) -> dict[str, Any]:
    """One CSV row in the claims-file shape (empty cells are absent values)."""
    def cell(name: str) -> str | None:
        value = (row.get(name) or "").strip()
        return value or None

    return {
        "given_name": cell("given_name"), "family_name": cell("family_name"),
        "birth_date": cell("birth_date"),
        "residence": {"city": cell("residence_city"), "country": cell("residence_country"),
                      "since": cell("residence_since")},
        "library": {"eligible": _flag(cell("library_eligible") or ""),
                    "system": cell("library_system")},
        "transit": {"fare_category": cell("fare_category")},
        "clinic": {"eligible": _flag(cell("clinic_eligible") or ""),
                   "network": cell("clinic_network")},
        "preferred_language": cell("preferred_language"),
        "valid_from": cell("valid_from"), "valid_until": cell("valid_until"),
    }


def parse_residents(data: bytes) -> tuple[list[Claims], list[BulkError]]:
    """All rows as validated claims, or every problem found (then nothing should be issued)."""
    if len(data) > MAX_BYTES:
        raise UsageError("usage_error", reason=f"CSV larger than {MAX_BYTES // 2**20} MB")
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often add a BOM
    except UnicodeDecodeError:
        raise UsageError("usage_error", reason="the CSV is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise UsageError("usage_error", reason="missing CSV columns: " + ", ".join(missing))
    claims: list[Claims] = []
    errors: list[BulkError] = []
    for number, row in enumerate(reader, start=2):
        if number - 1 > MAX_ROWS:
            raise UsageError("usage_error", reason=f"more than {MAX_ROWS} rows")
        try:
            claims.append(parse_claims(row_to_claims(row)))
        except UsageError as exc:
            errors.append(BulkError(number, exc.message))
    return claims, errors
