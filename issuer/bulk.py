"""Bulk issuance from a residents CSV (the columns of ``tests/examples/residents-sample.csv``).

Every row is validated before anything is signed: a file with one bad row issues nothing and
names every bad row, so an office never ends up with half a batch to reconcile.

A run can still be cut short (a crash, Ctrl-C, a power cut). Running the file again resumes
it: the store records which credential each row became, in the same transaction as the
issuance, so no row is issued twice. A row is known by its *fingerprint*, a keyed hash of its
validated claims (HMAC-SHA-256 under a key derived from the office root key, so the store holds
nothing a name or birth date could be guessed back from), not by its place in the file: a file
saved again by a spreadsheet, re-sorted, or with a typo fixed in a row not issued yet resumes
just the same, and the same resident twice in one file is an error.

Rows are issued in groups (up to ``GROUP``), one transaction each: a group's credentials,
their rows' records and their ledger entries are committed together, or none of them. Each
credential file is written as ``ID.txt.partial`` *inside* that transaction (every file of the
group flushed to the disk, then the folder once, before the commit) and renamed after the
commit; a partial file left behind is finished if the store has its credential and deleted if
not (that credential was never issued: its text must not circulate). QR images and printable
cards (``issuer.card``) are drawn last, on every core, from the credential files, so a missing one
is simply drawn again.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import csv
import functools
import hashlib
import hmac
import io
import itertools
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import nacl.signing

from credential import qr, transport
from credential.claims import Claims, parse_claims
from credential.errors import PasaporteError, StoreError, UsageError
from credential.home import (
    CANCELLING_SIGNALS,
    atomic_write,
    fsync_path,
    held_lock,
    make_folders,
    uninterrupted,
)
from credential.ids import cti_from_id
from credential.passport import decode_text
from credential.text import escaped, folded, garbled, one_line, typed_forms
from issuer import card
from issuer.dates import untimely
from schemas import FieldSpec, schema

if TYPE_CHECKING:
    from credential.passport import IssuedCredential
    from issuer.store import IssuerStore

__all__ = [
    "CARD_SUFFIX",
    "COLUMNS",
    "LEFT_OUT_DIR",
    "MAX_HEADER",
    "NEW_NAMES_MAX",
    "REVOKED_DIR",
    "BulkError",
    "BulkOutcome",
    "NewNames",
    "Row",
    "expired_rows",
    "fingerprints",
    "issue_batch",
    "listed",
    "new_catalog_names",
    "new_name_rows",
    "parse_residents",
    "repeated_rows",
]

T = TypeVar("T")
# (items, how many, label) → the items, shown advancing (the CLI passes click.progressbar)
Progress = Callable[[Iterable[T], int, str], contextlib.AbstractContextManager[Iterable[T]]]
PARTIAL = ".partial"
CARD_SUFFIX = ".card.png"  # ID.card.png beside ID.txt and ID.png
_DRAWING = "Dibujando QR / Drawing QR codes"
_DRAWING_CARDS = "Dibujando tarjetas / Drawing cards"
_CHECKING = "Comprobando filas / Checking rows"
_MATCHING = "Buscando filas ya emitidas / Looking for rows issued before"
_POOL_FROM = 16  # fewer images than this are drawn in this process: no workers to start
# Rows issued in one transaction at most: its files' fsyncs and the commit's are shared by all
# of them, yet it holds the store's write lock well under a second (another clerk's ``issue``
# waits at most that long).
GROUP = 128

COLUMNS = ("given_name", "family_name", "birth_date", "residence_city", "residence_country",
           "residence_since", "library_eligible", "library_system", "fare_category",
           "clinic_eligible", "clinic_network", "preferred_language", "valid_from",
           "valid_until")
MAX_ROWS = 100_000
MAX_BYTES = 64 * 1024 * 1024
# Characters in the header (the record naming the columns), its line break included. A sheet
# names its 14 columns in a few hundred; this leaves room for long labels and many extra
# columns. A longer one is another file (one giant line, a dump), refused before it is split:
# each of its cells would be folded once per separator tried, in time and memory growing with
# the line, and a cell past the csv module's 128 KB field limit failed outside the handled
# errors (an internal error, exit 1, where the same cell in a row is a usage error).
MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Row:
    line: int  # the line of the file the row starts on (the header is line 1)
    claims: Claims


@dataclass(frozen=True)
class BulkError:
    line: int  # the line of the file the row starts on (the header is line 1)
    message: dict[str, str]
    code: str  # the catalog code of ``message``


# What a spreadsheet's "Save as CSV" gives (Excel, LibreOffice, Numbers; Windows and macOS):
# the separator is "," or, set to Spain or most of Europe, ";"; Excel's "Unicode text"
# is UTF-16 with tabs. Only the header line is looked at to tell which: the one under which
# it names the columns (their names hold none of the three).
_SEPARATORS = (",", ";", "\t")
_DATES = ("birth_date", "residence_since", "valid_from", "valid_until")
_FLAGS = ("library_eligible", "clinic_eligible")
_ENUMS = ("fare_category", "preferred_language")
_TEXTS = ("given_name", "family_name", "residence_city", "library_system", "clinic_network")
# 01/12/1999, 12/1/99, 1.12.1999, 1-12-1999: day/month or month/day, never guessed; and a bare
# number, the date as the spreadsheet counts it (days since 1900)
SPREADSHEET_DATE = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{1,4}[/.]\d{1,2}[/.]\d{1,2}"
                               r"|\d{1,6}(\.\d+)?")
# Accepted for library_eligible / clinic_eligible, in any case: what people type in either
# language and what spreadsheets write for a boolean cell (TRUE/FALSE; VERDADERO/FALSO in
# Spanish). Nothing else (not an empty cell, not "x"): a flag is never guessed either.
_YES = frozenset({"true", "verdadero", "si", "yes", "1"})  # "sí" folds to "si"
_NO = frozenset({"false", "falso", "no", "0"})


@contextlib.contextmanager
def _quiet(items: Iterable[T], _length: int, _label: str) -> Iterator[Iterable[T]]:
    yield items


def parse_flag(value: str) -> bool | str:
    low = folded(value)  # "Sí", "SÍ", and "Sí" as a Mac types it (decomposed): "si"
    if low in _YES:
        return True
    if low in _NO:
        return False
    return value  # left as text: the claims validator names the field and the problem


@functools.cache
def _enum_codes() -> dict[str, dict[str, str]]:
    """For each enumerated column, its values' codes under their folded labels in Spanish and
    English (``schemas/``): "estudiante", "adulto mayor", "espanol", "ingles"."""
    return {f.name: {form: v.name for v in f.values for form in typed_forms(v.name, v.label)}
            for g in schema().groups for f in g.fields if f.name in _ENUMS}


def row_to_claims(row: dict[str, str]) -> dict[str, Any]:
    """One CSV row in the claims-file shape (empty cells are absent values)."""
    def cell(name: str) -> str | None:
        value = (row.get(name) or "").strip()
        if name in _ENUMS:  # "Student", "ES" (a spreadsheet's autocorrect capitalises), or a
            # label in either language, as the sheet's Spanish column names invite: "Estudiante"
            value = _enum_codes()[name].get(folded(value), value.lower())
        return value or None

    return {
        "given_name": cell("given_name"), "family_name": cell("family_name"),
        "birth_date": cell("birth_date"),
        "residence": {"city": cell("residence_city"), "country": cell("residence_country"),
                      "since": cell("residence_since")},
        "library": {"eligible": parse_flag(cell("library_eligible") or ""),
                    "system": cell("library_system")},
        "transit": {"fare_category": cell("fare_category")},
        "clinic": {"eligible": parse_flag(cell("clinic_eligible") or ""),
                   "network": cell("clinic_network")},
        "preferred_language": cell("preferred_language"),
        "valid_from": cell("valid_from"), "valid_until": cell("valid_until"),
    }


def parse_residents(data: bytes, *, progress: Progress[Any] = _quiet
                    ) -> tuple[list[Row], list[BulkError]]:
    """All rows as validated claims, or every problem found (then nothing should be issued).
    Checking a row takes about 0.1 ms: ``progress`` shows a file of many thousands advance."""
    if len(data) > MAX_BYTES:
        raise UsageError("usage_error", reason_es=f"el CSV pasa de {MAX_BYTES // 2**20} MB",
                         reason_en=f"the CSV is larger than {MAX_BYTES // 2**20} MB")
    text = _decode(data)
    sep, start = _separator(text)
    _refuse_long_header(text, start, sep)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    if start:  # the ``sep=`` line
        next(reader)  # read, not dropped from the text: the lines after it keep their numbers
    try:
        return _rows(reader, progress)
    except csv.Error as exc:
        line = max(reader.line_num, 1)  # the line being read when it failed
        if "field larger than field limit" in str(exc):
            # a cell over the csv module's limit (128 KB): no resident's data is that long; an
            # unclosed quote that swallowed the rest of the file, most likely
            raise UsageError("bulk_cell_too_large", line=line,
                             limit_kb=csv.field_size_limit() // 1024) from None
        raise UsageError("usage_error", reason_es=f"CSV ilegible hacia la línea {line}",
                         reason_en=f"unreadable CSV near line {line}: {exc}") from None


def _line_of(text: str, offset: int) -> int:
    """The line ``offset`` is on, with any line ending (CRLF, LF, or a bare CR: old Mac)."""
    head = text[:offset]
    return head.count("\n") + head.count("\r") - head.count("\r\n") + 1


def _decode(data: bytes) -> str:
    """The file's text: UTF-8, with or without the BOM Excel's "CSV UTF-8" writes, or UTF-16
    with its BOM (Excel's "Unicode text"). Anything else is refused, not guessed: Excel's plain
    "CSV" is Windows-1252 on Windows and Mac Roman on a Mac, in which the same byte is a
    different letter (0x96 is "–" in one, "ñ" in the other), so a name could come out wrong."""
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    nul = -1 if utf16 else data.find(b"\x00")
    if nul >= 0:  # UTF-16 with no BOM, or not text at all: not to be read as broken UTF-8
        raise UsageError("bulk_csv_binary", line=_line_of(data[:nul].decode("latin-1"), nul))
    if utf16:
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:  # an odd length, a lone surrogate: not what it says
            raise UsageError("bulk_csv_not_utf8", line=_line_of(
                data.decode("utf-16", "replace"), exc.start // 2)) from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            # latin-1: one character a byte, only to count the lines before the bad one
            raise UsageError("bulk_csv_not_utf8",
                             line=_line_of(data.decode("latin-1"), exc.start)) from None
    nul = text.find("\x00")
    if nul >= 0:  # a NUL in UTF-16 text: UTF-32, or not text at all
        raise UsageError("bulk_csv_binary", line=_line_of(text, nul))
    return text


def _header_key(cell: str) -> str:
    # " Given Name ", "given-name", "Fecha de Nacimiento", "Nombre(s)": case, accents, blanks,
    # hyphens and brackets are not part of a column's name
    return re.sub(r"[\s_-]+", "_", re.sub(r"[()]", "", folded(cell.strip("\ufeff"))))


@functools.cache
def _column_labels() -> dict[str, dict[str, str]]:
    """Each column's labels in Spanish and English, as ``schemas/`` gives them."""
    s = schema()
    labels = {column: f.label for g in s.groups for f in g.fields
              for column in (f.name, f"{g.name}_{f.name}") if column in COLUMNS}
    return {c: (labels | s.envelope_labels)[c] for c in COLUMNS}


@functools.cache
def _column_names() -> dict[str, str]:
    """Each column under its name and under its labels (a Mexicali office's sheet may head its
    columns "Nombre(s)", "Apellido(s)", "Fecha de nacimiento")."""
    names = {_header_key(c): c for c in COLUMNS}
    for column, labels in _column_labels().items():
        names.update((_header_key(label), column) for label in labels.values())
    return names


def _column_name(cell: str) -> str:
    """A header cell as the column it names, or as itself (lower case) if it names none."""
    key = _header_key(cell)
    return _column_names().get(key, key)


# The first line a program writes so that Excel splits the file right: "sep=;"
_SEP_LINE = re.compile(r"sep=([,;\t|])[ \t]*(?:\r\n|\r|\n|$)", re.IGNORECASE)


def _separator(text: str) -> tuple[str, int]:
    """The separator, and where the header starts: after a first line only there to name it
    (``sep=;``), or at 0 and the separator under which it names the most of ``COLUMNS``."""
    # no more is looked at, nor copied (a StringIO holds four bytes a character)
    first = io.StringIO(text[:MAX_HEADER + 1], newline="").readline()
    told = _SEP_LINE.fullmatch(first)
    if told:
        return told.group(1), len(first)
    if len(first) > MAX_HEADER:
        # refused before its cells are folded: a header holds at least its first line whole,
        # under any separator
        _refuse_long_header(text, 0, ",")
    best, found = ",", 0
    for sep in _SEPARATORS:
        names = {_column_name(c) for c in next(csv.reader([first], delimiter=sep), [])}
        if len(names & set(COLUMNS)) > found:
            best, found = sep, len(names & set(COLUMNS))
    return best, 0


_LINE_END = re.compile(r"\r\n?|\n")


def _refuse_long_header(text: str, start: int, sep: str) -> None:
    """Refuse a header (the record from ``start``) longer than ``MAX_HEADER``, its line break
    included, having read no more of it than that: only the csv reader knows where it ends (a
    quoted cell may hold line breaks: "Fecha de⏎nacimiento"), so it reads it from a window one
    character longer, which a header within the limit ends inside of."""
    window = io.StringIO(text[start:start + MAX_HEADER + 1], newline="")
    with contextlib.suppress(csv.Error):  # a quote left open, say: the reader after says so
        next(csv.reader(window, delimiter=sep), None)
    read = window.tell()
    if read <= MAX_HEADER:
        return
    # its length through the line it passes the limit on (a file of one giant line: that
    # line's), found by one search, nothing copied
    end = _LINE_END.search(text, start + MAX_HEADER)
    raise UsageError("bulk_csv_header_too_long", line=_line_of(text, start),
                     size=(len(text) if end is None else end.end()) - start, limit=MAX_HEADER)


def _letter(index: int) -> str:
    """A spreadsheet's name for the column at ``index`` (0 → A, 26 → AA)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def _records(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record with the file line it starts on (a quoted cell may span lines,
    and blank lines are skipped, so a record's position is not its line)."""
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        if any(cell.strip() for cell in cells):  # a blank line, or a blank row: ",,,,"
            yield line, cells


def _rows(reader: Any, progress: Progress[Any]) -> tuple[list[Row], list[BulkError]]:
    # Any order, any case, spaces around; a column not named here is not read ("notes"), and
    # one without a name (the ",,," a spreadsheet leaves) must be empty in every row.
    cells = next(reader, None)
    if not cells or not any(c.strip() for c in cells):  # a sheet saved empty, a wrong file
        raise UsageError("bulk_csv_empty")
    header = [_column_name(c) for c in cells]
    missing = [c for c in COLUMNS if c not in header]
    if missing:  # what the line does name but we do not know: most often a misspelt column
        unknown = [one_line(c, 40) for c, name in itertools.islice(  # the first 20 alone
            ((c, name) for c, name in zip(cells, header, strict=True)
             if name and name not in COLUMNS), 20)]
        labels = _column_labels()  # a sheet may name them so: say both
        raise UsageError("bulk_csv_columns", unknown=", ".join(unknown) or "—",
                         missing=", ".join(f"{c} («{labels[c]['es']}» / “{labels[c]['en']}”)"
                                           for c in missing))
    twice = sorted({c for c in header if c in COLUMNS and header.count(c) > 1})
    if twice:  # a dict of the row would silently keep the last of them
        raise UsageError("usage_error",
                         reason_es="columnas repetidas en el CSV: " + ", ".join(twice),
                         reason_en="repeated CSV columns: " + ", ".join(twice))
    # Split first (quick), checked after: the count the progress needs, and a file past
    # the limit is refused before any row of it is checked.
    records = list(itertools.islice(_records(reader), MAX_ROWS + 1))
    if len(records) > MAX_ROWS:
        raise UsageError("usage_error", reason_es=f"más de {MAX_ROWS} filas",
                         reason_en=f"more than {MAX_ROWS} rows")
    if not records:  # the header alone: as a counter's empty --batch, not "0 issued"
        raise UsageError("bulk_csv_no_rows")
    plan = _Plan(header)
    rows: list[Row] = []
    errors: list[BulkError] = []
    with progress(records, len(records), _CHECKING) as bar:
        for line, cells in bar:
            _row(plan, line, cells, rows, errors)
    return rows, errors


class _Plan:
    """What each column of a file's header is checked for, worked out once per file."""

    def __init__(self, header: list[str]) -> None:
        self.header = header
        self.unnamed = [i for i, name in enumerate(header) if not name]

        def where(names: tuple[str, ...]) -> list[tuple[int, str, str]]:
            return [(i, name, _letter(i)) for i, name in enumerate(header) if name in names]

        self.dates, self.flags, self.texts = where(_DATES), where(_FLAGS), where(_TEXTS)


def _row(plan: _Plan, line: int, cells: list[str], rows: list[Row],
         errors: list[BulkError]) -> None:
    """Check one record: a row to ``rows``, or its first problem to ``errors``. A short row's
    missing cells are absent (empty) values."""

    def cell(index: int) -> str:
        return cells[index].strip() if index < len(cells) else ""

    try:
        beyond = range(len(plan.header), len(cells))
        # only the unnamed columns this row reaches: a header may end in thousands of empty
        # names (a sheet's used range) that each short row would otherwise look at
        reached = plan.unnamed[:bisect.bisect_left(plan.unnamed, len(cells))]
        for index in itertools.chain(reached, beyond):
            if cell(index):
                raise UsageError("bulk_cell_unnamed", column=_letter(index))
        for index, name, letter in plan.dates:
            if SPREADSHEET_DATE.fullmatch(cell(index)):
                raise UsageError("bulk_date_spreadsheet", name=name, column=letter)
        for index, name, letter in plan.flags:
            if not isinstance(parse_flag(cell(index)), bool):
                raise UsageError("bulk_flag_invalid", name=name, column=letter)
        for index, name, letter in plan.texts:
            if garbled(cell(index)):
                raise UsageError("bulk_text_garbled", name=name, column=letter)
        claims = parse_claims(row_to_claims(dict(zip(plan.header, cells, strict=False))))
        rows.append(Row(line, claims))
    except UsageError as exc:
        errors.append(BulkError(line, exc.message, exc.code))


def expired_rows(rows: Iterable[Row], today: date) -> list[BulkError]:
    """The rows ``today`` (the office's) refuses (``issuer.dates.untimely``): a validity over
    already, which every counter would refuse (a year mistyped in a whole column, a file kept
    from years ago), or a birth or residency date still to come."""
    return [BulkError(r.line, exc.message, exc.code)
            for r in rows for exc in (untimely(r.claims, today),) if exc is not None]


# A run adding more new names to one catalogue than this is more likely a column read as the
# wrong one than a city's library systems: those names would be public for good (every bundle).
NEW_NAMES_MAX = 5


@dataclass(frozen=True)
class NewNames:
    """The names some claims would add to the catalogues, as first spelt there, by catalogue:
    ``(field label, names)``, in the order met (a name typed again differently counted once)."""

    by_catalog: dict[str, tuple[dict[str, str], list[str]]]

    def __bool__(self) -> bool:
        return bool(self.by_catalog)

    def crowded(self) -> tuple[str, dict[str, str], list[str]] | None:
        """The first catalogue given more than ``NEW_NAMES_MAX`` new names, if any."""
        return next(((which, label, names) for which, (label, names) in self.by_catalog.items()
                     if len(names) > NEW_NAMES_MAX), None)

    def said(self, lang: str, limit: int = NEW_NAMES_MAX) -> str:
        """``library system: «A», «B»; clinic network: «C»`` in ``lang`` (the first ``limit`` of
        each catalogue, and how many more)."""
        return "; ".join(f"{label[lang]}: {listed(names, lang, limit)}"
                         for label, names in self.by_catalog.values())


def listed(names: list[str], lang: str, limit: int = NEW_NAMES_MAX) -> str:
    """``«A», «B» (+3)`` (``“A”, “B” (+3)`` in English): the first ``limit`` names, and how
    many more."""
    first, last = ("«", "»") if lang == "es" else ("“", "”")
    more = len(names) - limit
    return ", ".join(f"{first}{escaped(n)}{last}" for n in names[:limit]) + (
        f" (+{more})" if more > 0 else "")


def _catalog_fields() -> list[tuple[str, FieldSpec]]:
    """(group, field) for every claim whose value a catalogue holds."""
    return [(g.name, f) for g in schema().groups for f in g.fields
            if f.type == "catalog" and f.catalog]


def _unknown_names(claims: Iterable[Claims], catalogs: dict[str, dict[int, str]]
                   ) -> Iterator[tuple[int, FieldSpec, str, UsageError | None]]:
    """(which claims, field, name, why the store would refuse it or None) for every name
    ``claims`` would add to the office's ``catalogs`` (``IssuerStore.catalogs``), each new name
    once, checked as the store will (``check_catalog_name``)."""
    from issuer.store import catalog_key, check_catalog_name, holder_names  # as in _issue_batch

    known = {(which, catalog_key(name)) for which, names in catalogs.items()
             for name in names.values()}
    for i, c in enumerate(claims):
        for group, spec in _catalog_fields():
            value = c.groups.get(group, {}).get(spec.name)
            if not isinstance(value, str) or (spec.catalog, catalog_key(value)) in known:
                continue
            try:
                check_catalog_name(spec.catalog, value, holder_names(c))
            except UsageError as exc:
                yield i, spec, value, exc
            else:
                known.add((spec.catalog, catalog_key(value)))
                yield i, spec, value, None


def new_catalog_names(claims: Iterable[Claims],
                      catalogs: dict[str, dict[int, str]]) -> NewNames:
    """The names ``claims`` would add to the office's ``catalogs``; a name the store refuses
    is a ``UsageError`` now, before it is said or the passphrase asked for."""
    found: dict[str, tuple[dict[str, str], list[str]]] = {}
    for _, spec, value, error in _unknown_names(claims, catalogs):
        if error is not None:
            raise error
        found.setdefault(spec.catalog, (dict(spec.label), []))[1].append(value)
    return NewNames(found)


def new_name_rows(rows: Iterable[Row], catalogs: dict[str, dict[int, str]]) -> list[BulkError]:
    """The rows that would add a name to a catalogue (city, library system, clinic network)
    that the store refuses as it issues them (``catalog_name_short``, ``catalog_name_personal``):
    found with the other problems, before a group of rows is issued and the run stopped after
    it. One error per row."""
    rows = list(rows)
    errors: dict[int, BulkError] = {}
    for i, _, _, error in _unknown_names((r.claims for r in rows), catalogs):
        if error is not None and i not in errors:
            errors[i] = BulkError(rows[i].line, error.message, error.code)
    return list(errors.values())


@dataclass(frozen=True)
class BulkOutcome:
    issued: int  # credentials signed by this run
    resumed: int  # rows (the same claims) an earlier run had already issued
    index: tuple[tuple[int, str], ...]  # (CSV line, credential id) for every row, in order
    # Credentials the folder's earlier index listed that this file no longer has a row for
    # (a row corrected after it was issued, another file's run), and where that index went.
    left_out: tuple[str, ...] = ()
    kept_index: str | None = None
    # (CSV line, credential id) of rows whose passport the office revoked for good
    # (``issuer.store.REISSUED_AFTER``): not issued again
    withdrawn: tuple[tuple[int, str], ...] = ()


def fingerprints(root: nacl.signing.SigningKey, claims: Iterable[Claims]) -> list[str]:
    """Each row's fingerprint: HMAC-SHA-256 of its canonical claims under a key only the office
    has (derived from its root key)."""
    key = hashlib.sha256(b"pasaporte/bulk-row/v1\x00" + bytes(root)).digest()

    def canonical(c: Claims) -> bytes:
        doc = {"groups": {g: {k: v.isoformat() if isinstance(v, date) else v
                              for k, v in values.items()} for g, values in c.groups.items()},
               "valid_from": c.valid_from.isoformat(), "valid_until": c.valid_until.isoformat(),
               "credential_id": c.credential_id}
        return json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()

    return [hmac.new(key, canonical(c), hashlib.sha256).hexdigest()[:32] for c in claims]


def issue_batch(store: IssuerStore, rows: list[Row], folder: Path, *,
                passphrase: str, with_qr: bool = False, with_cards: bool = False,
                progress: Progress[Any] = _quiet, workers: int | None = None,
                office: str | None = None) -> BulkOutcome:
    """Issue a paper credential per row into ``folder`` (``ID.txt``, ``ID.png`` with
    ``with_qr``, ``ID.card.png`` with ``with_cards``, and ``index.csv``), resuming whatever an
    earlier run issued of these rows, signed by ``office``'s active key
    (``IssuerStore.resolve_office``)."""
    # made by this run, not merely missing when it looked: two runs started at once into a
    # new folder both saw it missing, and the one refused (bulk_folder_busy) removed the
    # other's lock and folder as its own
    made = make_folders(folder)
    # A run refused as busy never tidies: the folder it made may be the running one's now.
    with _folder_lock(folder):
        try:
            return _issue_batch(store, rows, folder, passphrase=passphrase, with_qr=with_qr,
                                with_cards=with_cards, progress=progress, workers=workers,
                                office=office)
        except BaseException:
            # refused before anything was written (a wrong passphrase, a repeated row): the
            # folder this run made, holding only its lock file, goes too, as when rows are
            # refused up front; while the lock is held, so no other run is using it (one
            # that made it and was refused busy removed it under the run that held the lock)
            if made and {p.name for p in folder.iterdir()} <= {".pasaporte-bulk.lock"}:
                (folder / ".pasaporte-bulk.lock").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise


def _folder_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    """One bulk run per output folder at a time: another run would finish or delete the partial
    files this one is about to rename. (Runs into different folders are kept apart per row by
    the store.)"""
    return held_lock(folder / ".pasaporte-bulk.lock",
                     busy=StoreError("bulk_folder_busy", folder=str(folder)))


def repeated_rows(rows: Iterable[Row]) -> list[BulkError]:
    """Every row that is a resident an earlier row already is: the same names and birth date,
    written otherwise or not ("luis", "  Luis ", "García  López"), whatever else differs: two
    passports for one person (``bulk_row_repeated`` when every claim is equal). Found with the
    other row problems, before the passphrase, all at once: a sheet with three pairs took three
    runs, and a wrong passphrase hid them."""
    return [BulkError(e.detail["line"], e.message, e.code) for e in _repeats(rows)]


def _name_key(name: object) -> str:
    """What makes two spellings of one name one person's, in one sheet: its letters and
    digits, without case or accents, and without the spaces and punctuation a sheet varies
    (D'Angelo / D’Angelo, autocorrect's apostrophe; Jean-Luc / Jean Luc; a stray hyphen)."""
    return "".join(c for c in folded(str(name)) if c.isalnum())


def _repeats(rows: Iterable[Row]) -> list[PasaporteError]:
    seen: dict[tuple[str, str, str], Row] = {}
    errors = []
    for row in rows:
        names = row.claims.groups.get("names", {})
        person = (_name_key(names.get("given_name", "")),
                  _name_key(names.get("family_name", "")),
                  str(row.claims.groups.get("birth_date", {}).get("birth_date")))
        first = seen.setdefault(person, row)
        if first is not row:
            code = ("bulk_row_repeated" if row.claims == first.claims
                    else "bulk_resident_repeated")
            errors.append(PasaporteError(code, line=row.line, first=first.line))
    return errors


def _issue_batch(store: IssuerStore, rows: list[Row], folder: Path, *,
                 passphrase: str, with_qr: bool, with_cards: bool, progress: Progress[Any],
                 workers: int | None, office: str | None) -> BulkOutcome:
    root = store.root_signing_key(passphrase)
    with progress(rows, len(rows), _MATCHING) as bar:  # seconds for a file of many thousands
        prints = fingerprints(root, (r.claims for r in bar))
    for repeated in _repeats(rows):  # (the command refuses these before the passphrase)
        raise repeated  # what the file holds, not how the command was typed: not a usage error
    _settle_partials(store, folder)
    earlier = store.bulk_issued(prints)
    todo: list[tuple[int, tuple[Claims, str]]] = []
    lost: list[str] = []
    withdrawn: list[tuple[int, str]] = []
    for row, fp in zip(rows, prints, strict=True):
        done = earlier.get(fp)
        if done is None:
            todo.append((row.line, (row.claims, fp)))
        elif done[1] == "withdrawn":
            # Revoked for good (a renewal at the desk replaced it, a death, fraud, a move):
            # not issued again, or the resident held two; its files leave the print folder.
            _set_aside(folder, done[0], _SET_ASIDE[done[1]])
            withdrawn.append((row.line, done[0]))
        elif done[1] in _SET_ASIDE:
            # Revoked since an earlier run issued it (lost, a data error), or signed by a key
            # compromised by then (the office re-issues what it signed after): every counter
            # refuses it, so its row is issued anew. Its files, if still here, leave the print
            # folder: counted "already issued", it went into the index and got a freshly drawn
            # card every counter refuses.
            _set_aside(folder, done[0], _SET_ASIDE[done[1]])
            todo.append((row.line, (row.claims, fp)))
        elif not (folder / f"{done[0]}.txt").exists():
            # Issued by an earlier run, but its file is not here: issuing its row again would
            # make two live credentials for one resident (revoking it first is the way).
            lost.append(done[0])
    if lost:
        raise StoreError("bulk_files_lost", count=len(lost), folder=str(folder),
                         ids=", ".join(lost[:5]) + (", …" if len(lost) > 5 else ""))
    signing = store.office_signing_key(passphrase, office=office)  # unsealed once, not per row

    # (a withdrawn row has no passport in this folder: its files went to revoked/)
    gone = {line for line, _ in withdrawn}
    index = {row.line: earlier[fp][0] for row, fp in zip(rows, prints, strict=True)
             if fp in earlier and row.line not in gone}

    from issuer.store import Issuance  # here: a QR worker imports this module, not the store

    def write_partials(creds: list[IssuedCredential]) -> None:
        for cred in creds:
            _write_partial(folder, cred)
        fsync_path(folder)  # their names too, once for the group: then the store may commit

    with progress(todo, len(todo), "Emitiendo / Issuing") as bar:
        for group in _groups(bar):
            try:
                creds = store.issue_many(
                    [Issuance(row_claims, None, (fp, earlier.get(fp, (None,))[0]))
                     for _, (row_claims, fp) in group],
                    passphrase=passphrase, signing=signing, before_commit=write_partials)
                for (number, _), cred in zip(group, creds, strict=True):
                    _finish(folder, cred.credential_id)
                    index[number] = cred.credential_id
                store.make_way()  # another clerk's issuance waiting goes before our next group
            except BaseException:  # a full disk, Ctrl-C: no uncommitted credential stays behind
                with contextlib.suppress(Exception):
                    _settle_partials(store, folder)
                raise
    ordered = tuple(sorted(index.items()))
    if with_qr or with_cards:
        # the catalogue is read after every group is committed: it names every code they used
        _draw_missing(folder, [cid for _, cid in ordered], progress, workers, qr_codes=with_qr,
                      cards=card.office_of(store) if with_cards else None)
    left_out, kept = _keep_other_index(folder, {cid for _, cid in ordered})
    # Of those, the ones every counter refuses for good (revoked since, or signed by a key
    # compromised by then, whose rows this run issued anew) need nothing more from the clerk:
    # "still valid: revoke them" was wrong for them. Their files leave the print folder.
    standing = store.standing(list(left_out))
    refused = {cid: why for cid, why in standing.items() if why in _SET_ASIDE}
    for cid, why in refused.items():
        _set_aside(folder, cid, _SET_ASIDE[why])
    # One the store does not know (a restored office's lost predecessor issued it) was set
    # aside in superseded/ already, and is refused everywhere: "still valid, revoke it" named
    # passports "issuer revoke" cannot find (1977 of them after one restore).
    left_out = tuple(cid for cid in left_out if cid in standing and cid not in refused)
    # The rest, still valid, leave the print folder too: the notice names them once, and the
    # next run's index no longer does; printed with the folder, a corrected row's old passport
    # went out beside its new one.
    for cid in left_out:
        _set_aside(folder, cid, LEFT_OUT_DIR)
    atomic_write(folder / "index.csv",
                 "".join(f"{n},{cid}\n" for n, cid in (("line", "credential_id"), *ordered))
                 .encode())
    return BulkOutcome(len(todo), len(rows) - len(todo) - len(withdrawn), ordered, left_out,
                       kept, tuple(withdrawn))


def _groups(items: Iterable[T]) -> Iterator[list[T]]:
    """``items`` in groups of 1, 2, 4, … up to ``GROUP``: the first files appear at once, and a
    large file then goes at the pace of whole groups."""
    size, group = 1, []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            size, group = min(2 * size, GROUP), []
    if group:
        yield group


def _write_partial(folder: Path, cred: IssuedCredential) -> None:
    """``ID.txt.partial``, on the disk (fsync) before its issuance commits; its name in the
    folder is flushed once for the whole group, by the caller."""
    data = transport.pack(cred.to_cbor()).encode() + b"\n"
    path = folder / f"{cred.credential_id}.txt{PARTIAL}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask: as atomic_write leaves a file
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish(folder: Path, credential_id: str) -> None:
    """A committed credential's partial file becomes ``ID.txt``."""
    os.replace(folder / f"{credential_id}.txt{PARTIAL}", folder / f"{credential_id}.txt")


def _keep_other_index(folder: Path, ids: set[str]) -> tuple[tuple[str, ...], str | None]:
    """An ``index.csv`` naming credentials this run does not (another file's run into the same
    folder, or rows corrected since they were issued) is kept under a dated name rather than
    overwritten; returns those credentials and the name it was kept under. A corrected row is
    a new passport (its claims changed), and the one issued from the row before stays valid
    until the office revokes it: the clerk must hear of it."""
    index = folder / "index.csv"
    if not index.exists():
        return (), None
    listed = {row.get("credential_id") for row in csv.DictReader(io.StringIO(
        index.read_text("utf-8", "replace")))}
    gone = tuple(sorted(cid for cid in listed - ids if cid))
    if not gone:
        return (), None
    kept = folder / f"index-{time.strftime('%Y%m%dT%H%M%S')}.csv"
    os.replace(index, kept)
    return gone, kept.name


def _settle_partials(store: IssuerStore, folder: Path) -> None:
    """Finish or remove what a run cut short left in ``folder`` (which this run has locked):
    a partial credential the store holds becomes its file, unless the file is already there;
    any other partial, and any half-written temporary file, holds the text of a credential that
    was never issued, whose signature would still verify, so it is deleted. A credential file
    the store does not know (issued by an office restored since from an older backup, so now
    refused by counters) is moved to ``superseded/``, out of the way of whoever prints the
    folder."""
    for leftover in folder.glob(".*.tmp"):  # atomic_write's temporary names
        leftover.unlink()
    partials = {p.name[: -len(f".txt{PARTIAL}")]: p for p in folder.glob(f"*.txt{PARTIAL}")}
    texts = [p for p in folder.glob("*.txt") if cti_from_id(p.stem) is not None]
    known = store.known([*partials, *(p.stem for p in texts)])
    for credential_id, partial in partials.items():
        final = folder / f"{credential_id}.txt"
        if credential_id in known and not final.exists() and _holds(partial, credential_id):
            os.replace(partial, final)
            texts.append(final)
        else:
            partial.unlink()
    for text in texts:
        if text.stem not in known:
            _set_aside(folder, text.stem, "superseded")


REVOKED_DIR = "revoked"
LEFT_OUT_DIR = "not_in_this_file"  # still valid, issued from a row this file no longer has
# Where the files of a row issued anew go, by why its earlier credential is refused everywhere.
_SET_ASIDE = {"revoked": REVOKED_DIR, "withdrawn": REVOKED_DIR,
              "key_compromised": "key_compromised"}


def _set_aside(folder: Path, credential_id: str, sub: str) -> None:
    """Move a credential's files (text, QR, card) out of the print folder into ``sub``."""
    moving = [path for path in (folder / f"{credential_id}.txt", folder / f"{credential_id}.png",
                                folder / f"{credential_id}{CARD_SUFFIX}") if path.exists()]
    if moving:  # owner-only, whatever the umask, as the print folder: these carry names too
        make_folders(folder / sub)
    for path in moving:
        os.replace(path, folder / sub / path.name)


def _holds(path: Path, credential_id: str) -> bool:
    """Whether ``path`` holds the whole credential ``credential_id``."""
    try:
        decoded = decode_text(path.read_text("ascii", "replace"))
        return decoded.payload.credential_id == credential_id
    except (PasaporteError, ValueError, TypeError):
        return False


def draw_qr(txt_path: str) -> None:
    """``ID.png`` beside ``ID.txt`` (a worker's task: a path in, a file out)."""
    path = Path(txt_path)
    atomic_write(path.with_suffix(".png"), qr.render_png(path.read_text().strip()))


def draw_card(txt_path: str, office: card.CardOffice) -> None:
    """``ID.card.png`` beside ``ID.txt``, drawn from that text alone (a worker's task)."""
    path = Path(txt_path)
    atomic_write(path.with_suffix(CARD_SUFFIX),
                 card.render_card(path.read_text().strip(), office))


def _draw_missing(folder: Path, ids: list[str], progress: Progress[Any], workers: int | None,
                  *, qr_codes: bool, cards: card.CardOffice | None) -> None:
    # A QR image costs tens of milliseconds (segno scores all eight masks in Python), several
    # times the issuance itself, and a card is one more QR and its text: on every core, it is
    # the bulk run's wall time divided.
    jobs: list[tuple[str, Callable[[str], None], list[str]]] = []
    if qr_codes:
        jobs.append((_DRAWING, draw_qr, [str(folder / f"{cid}.txt") for cid in ids
                                         if not (folder / f"{cid}.png").exists()]))
    if cards is not None:
        jobs.append((_DRAWING_CARDS, functools.partial(draw_card, office=cards),
                     [str(folder / f"{cid}.txt") for cid in ids
                      if not (folder / f"{cid}{CARD_SUFFIX}").exists()]))
    jobs = [job for job in jobs if job[2]]
    if not jobs:
        return
    count = workers or os.cpu_count() or 1
    if count == 1 or sum(len(paths) for _, _, paths in jobs) < _POOL_FROM:
        for label, task, paths in jobs:
            with progress(paths, len(paths), label) as bar:
                for path in bar:
                    task(path)
        return
    # spawn, not fork: a forked child would inherit the store's open SQLite connections.
    # multiprocessing's Pool, whose terminate() stops its workers whatever state it is in: a
    # ProcessPoolExecutor interrupted by a SIGINT sent to the run alone (a supervisor, kill
    # -INT), not to its whole process group as a terminal's Ctrl-C is, could be left waiting
    # for ever on workers it never told to stop.
    # Started with Ctrl-C, SIGHUP and SIGTERM held back (a signal mask outlives the exec): one
    # pressed while a worker's interpreter starts, before ``_start_worker`` ignores it, printed
    # that worker's KeyboardInterrupt traceback; the run itself acts on it once they are made.
    with uninterrupted():
        pool = multiprocessing.get_context("spawn").Pool(count, initializer=_start_worker,
                                                         initargs=(os.getpid(),))
    try:
        for label, task, paths in jobs:  # one pool for both: its workers start once
            with progress(pool.imap(task, paths, chunksize=4), len(paths), label) as bar:
                for _ in bar:  # results arrive in order as the workers finish: the bar advances
                    pass
    except BaseException:  # Ctrl-C, a failed image: stop at once; what is missing is redrawn
        pool.terminate()  # SIGTERM: each worker discards the image it was writing
        pool.join()
        raise
    pool.close()
    pool.join()


def _start_worker(parent: int) -> None:
    """In each drawing worker: Ctrl-C and a closed terminal are the run's to act on (it stops
    the pool), SIGTERM ends
    the worker through its ``finally`` blocks (a half-written image's staged file removed), and
    the worker ends with the run (``_end_with_parent``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal closed: as Ctrl-C, the run's
    signal.signal(signal.SIGTERM, _exit_on_term)
    # held back while it started (``_draw_missing``): acted on from here, as set just above
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CANCELLING_SIGNALS)
    _end_with_parent(parent)


def _exit_on_term(_signum: int, _frame: object) -> None:
    raise SystemExit(1)


def _end_with_parent(parent: int) -> None:
    """In each drawing worker: end when the run that started it (``parent``, its pid as the run
    saw it: a worker still starting when the run died would otherwise take its new parent for
    the run) is gone, even if it was killed outright (SIGKILL leaves no chance to stop the
    pool), instead of idling on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if sys.platform.startswith("linux"):
        # Killed with the run at once, by the kernel: a worker that noticed the run gone
        # mid-answer wrote a traceback (BrokenPipeError) on the clerk's terminal.
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # gone before that took effect
            os._exit(1)
    threading.Thread(target=watch, daemon=True).start()
