"""``issuer bulk`` on the files spreadsheets really write (Excel, LibreOffice, Numbers; Windows
and macOS; Mexican and US locales): each is read as the resident it holds, or refused with a
named error before anything is issued."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from credential.errors import PasaporteError
from issuer.bulk import MAX_BYTES, MAX_ROWS, parse_residents
from tests.conftest import Run
from tests.issuer.conftest import init_office
from tests.issuer.test_bulk import SAMPLE, _index, _issued

TEXT = SAMPLE.read_text(encoding="utf-8")
HEADER, *BODY = TEXT.splitlines()


def _lines(header: str = HEADER, body: list[str] | None = None, *, end: str = "\n") -> str:
    return end.join([header, *(BODY if body is None else body)]) + end


def _cells(line: str) -> list[str]:
    return next(csv.reader([line]))


def _reordered() -> str:
    """Columns reversed, header names in another case with spaces around, values the way people
    type them: capitalised, spaces around, every accepted spelling of a flag."""
    names = [f" {name.replace('_', ' ').title()} " for name in reversed(_cells(HEADER))]
    flags = iter(["TRUE", "Sí", "VERDADERO", "1", "yes", "falso"])  # the sample's flags, in order
    rows = []
    for line in BODY:
        cells = _cells(line)
        cells[6], cells[9] = next(flags), next(flags)  # library_eligible, clinic_eligible
        cells[8] = cells[8].title()  # fare_category: "Student"
        cells[11] = f" {cells[11].upper()} "  # preferred_language: " ES "
        cells[0] = f"  {cells[0]} "
        rows.append(",".join(f'"{c}"' for c in reversed(cells)))
    return _lines(",".join(names), rows, end="\r\n")


# (what a spreadsheet writes, the lines the sample's three rows start on)
SAVED_AS: dict[str, tuple[Callable[[], bytes], list[str]]] = {
    # Excel, "CSV UTF-8 (Comma delimited)" on Windows: a BOM and CRLF
    "excel csv utf-8": (lambda: b"\xef\xbb\xbf" + _lines(end="\r\n").encode(), ["2", "3", "4"]),
    # an old Mac's bare CR line endings, and no newline after the last row
    "bare cr": (lambda: _lines(end="\r").rstrip("\r").encode(), ["2", "3", "4"]),
    # Excel, "Unicode Text": UTF-16 with its BOM, tab-separated
    "excel unicode text": (lambda: _lines(end="\r\n").replace(",", "\t").encode("utf-16"),
                           ["2", "3", "4"]),
    # Excel set to Spain (most of Europe too): ";" between cells, VERDADERO/FALSO for booleans
    "excel es-es": (lambda: _lines(end="\r\n").replace(",", ";").replace("true", "VERDADERO")
                    .replace("false", "FALSO").encode("utf-8-sig"), ["2", "3", "4"]),
    # a wider range saved: empty columns at the end, blank rows in the middle and at the end
    "empty cells around": (lambda: _lines(HEADER + ",,,", [
        BODY[0] + ",,,", "," * 16, BODY[1] + ",,,", "", "  ,  ,", BODY[2] + ",,,", ",,,,",
    ]).encode(), ["2", "4", "7"]),
    "reordered": (lambda: _reordered().encode(), ["2", "3", "4"]),
    # "Sí" typed on a Mac arrives decomposed (i + combining acute)
    "decomposed": (lambda: unicodedata.normalize("NFD", TEXT.replace("true", "Sí")).encode(),
                   ["2", "3", "4"]),
}


@pytest.mark.parametrize("saved_as", list(SAVED_AS))
def test_spreadsheet_saves_read_as_the_same_residents(homes: dict[str, Path], passphrase: str,
                                                      run: Run, tmp_path: Path,
                                                      saved_as: str) -> None:
    """Each save issues the sample's three residents, at the lines the clerk sees them on; the
    sample itself run after it into the same folder finds them already issued: the same claims,
    to the last accent."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    make, lines = SAVED_AS[saved_as]
    saved = tmp_path / "saved.csv"
    saved.write_bytes(make())
    code, stdout, err = run("issuer", "bulk", str(saved), "--out-dir", str(out),
                            "--home", str(home))
    assert code == 0 and stdout.startswith("3 pasaportes emitidos"), err
    assert [line for line, _ in _index(out)] == lines
    code, stdout, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out),
                            "--home", str(home))
    assert code == 0 and stdout.startswith("0 pasaportes emitidos"), err
    assert "3 ya emitidos antes" in err and len(_issued(home)) == 3


@pytest.mark.parametrize(("data", "code", "line"), [
    # Excel's plain "CSV": Windows-1252 on Windows, Mac Roman on a Mac ("Núñez" on line 2)
    (TEXT.encode("cp1252"), "bulk_csv_not_utf8", 2),
    (TEXT.encode("mac_roman"), "bulk_csv_not_utf8", 2),
    # lines counted at a bare CR too: "Martínez" is on line 3 after a row with no accent
    (_lines(body=[BODY[1].replace("í", "i"), BODY[2]], end="\r").encode("latin-1"),
     "bulk_csv_not_utf8", 3),
    (TEXT.encode("utf-16-le"), "bulk_csv_binary", 1),  # UTF-16 without its BOM
    (TEXT.replace(",", "|").encode(), "bulk_csv_columns", None),  # not a separator we read
])
def test_files_not_to_be_guessed_are_refused(homes: dict[str, Path], passphrase: str, run: Run,
                                             tmp_path: Path, data: bytes, code: str,
                                             line: int | None) -> None:
    init_office(run, homes["issuer"])
    (tmp_path / "x.csv").write_bytes(data)
    status, _, err = run("issuer", "bulk", str(tmp_path / "x.csv"), "--out-dir",
                         str(tmp_path / "o"), "--home", str(homes["issuer"]))
    assert status == 2 and f"[{code}]" in err and "Traceback" not in err, err
    assert "No se emitió nada" in err and "Nothing was issued" in err  # both languages
    if line is not None:
        assert f"línea {line})" in err and f"line {line})" in err
    if code == "bulk_csv_not_utf8":  # how to fix it, in both languages
        assert "«CSV UTF-8 (delimitado por comas)»" in err
        assert '"CSV UTF-8 (Comma delimited)"' in err
    assert not (tmp_path / "o").exists() and _issued(homes["issuer"]) == []


def test_spreadsheet_cells_are_refused_by_line_and_column(homes: dict[str, Path],
                                                          passphrase: str, run: Run,
                                                          tmp_path: Path) -> None:
    """Every bad row is named with its line, its column's name and its letter in the sheet,
    and nothing is issued: a date is never guessed (day/month in Mexicali, month/day in
    Calexico), nor a flag, nor text garbled by a wrong encoding, nor a cell outside the
    columns."""
    home = homes["issuer"]
    init_office(run, home)

    def bad(column: int, value: str, row: int = 0) -> str:
        cells = _cells(BODY[row])
        cells[column] = value
        return ",".join(f'"{c}"' for c in cells)

    body = [
        bad(2, "01/12/1999"),  # line 2: birth_date, column C: 1 December or January 12?
        bad(5, "5/20/1985", 1),  # line 3: residence_since (F), unambiguous: not guessed either
        bad(13, "47078"),  # line 4: valid_until (N), a date cell saved as its serial number
        bad(6, "x"),  # line 5: library_eligible (G)
        bad(9, ""),  # line 6: clinic_eligible (J), empty: never taken for "no"
        bad(1, "NÃºÃ±ez Peña"),  # line 7: family_name (B), UTF-8 once read as Windows-1252
        BODY[1] + ",,note",  # line 8: a cell in column P, which has no name
        BODY[2],  # line 9: good
    ]
    (tmp_path / "x.csv").write_text(_lines(HEADER + ",,", body), encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "x.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(home))
    assert code == 2 and "7 invalid row(s); nothing issued" in err, err
    expected = {2: ("bulk_date_spreadsheet", "birth_date (column C)"),
                3: ("bulk_date_spreadsheet", "residence_since (column F)"),
                4: ("bulk_date_spreadsheet", "valid_until (column N)"),
                5: ("bulk_flag_invalid", "library_eligible (column G)"),
                6: ("bulk_flag_invalid", "clinic_eligible (column J)"),
                7: ("bulk_text_garbled", "family_name (column B)"),
                8: ("bulk_cell_unnamed", "column P")}
    said = {int(line.split(":")[0].split()[-1]): line for line in err.splitlines()
            if line.startswith("línea/line ")}
    assert sorted(said) == sorted(expected)
    for line, (error, where) in expected.items():
        assert f"[{error}]" in said[line] and where in said[line], said[line]
    assert "(columna C)" in said[2] and "nunca se adivina" in said[2]  # the Spanish half too
    for held in ("5/20/1985", "47078", "NÃºÃ±ez", "note"):  # names the cell, not what it holds
        assert held not in err
    assert not (tmp_path / "o").exists() and _issued(home) == []


@pytest.mark.parametrize(("value", "code"), [
    ("01/12/1999", "bulk_date_spreadsheet"), ("12/1/1999", "bulk_date_spreadsheet"),
    ("1/12/99", "bulk_date_spreadsheet"), ("25/12/1999", "bulk_date_spreadsheet"),
    ("01.12.1999", "bulk_date_spreadsheet"), ("01-12-1999", "bulk_date_spreadsheet"),
    ("1999/12/01", "bulk_date_spreadsheet"), ("36495", "bulk_date_spreadsheet"),
    ("36495.0", "bulk_date_spreadsheet"),
    ("1999-12-01 00:00:00", "claims_invalid"), ("1 dic 1999", "claims_invalid"),
    (" 1999-12-01 ", None),  # spaces around are dropped
])
def test_dates_are_read_only_as_yyyy_mm_dd(value: str, code: str | None) -> None:
    rows, errors = parse_residents(_lines(body=[BODY[0].replace("1999-12-01", value)]).encode())
    assert [e.code for e in errors] == ([code] if code else [])
    assert [str(r.claims.groups["birth_date"]["birth_date"]) for r in rows] == (
        [] if code else ["1999-12-01"])


@pytest.mark.parametrize(("value", "flag"), [
    *((v, True) for v in ("true", "TRUE", "True", "Sí", "SÍ", "si", "Si", "yes", "YES", "1",
                          "VERDADERO", "verdadero", " true ")),
    *((v, False) for v in ("false", "FALSE", "No", "NO", "0", "FALSO", "falso")),
    *((v, None) for v in ("", "x", "y", "n", "S", "2", "1.0", "-1", "verdad", "nope")),
])
def test_flags_accepted_are_explicit(value: str, flag: bool | None) -> None:
    cells = _cells(BODY[0])
    cells[6] = value  # library_eligible
    rows, errors = parse_residents(_lines(body=[",".join(cells)]).encode())
    if flag is None:
        assert [e.code for e in errors] == ["bulk_flag_invalid"] and rows == []
    else:
        assert errors == [] and rows[0].claims.groups["library"]["eligible"] is flag


def test_a_formula_in_a_cell_is_a_name_and_nothing_written_is_a_formula(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A cell that looks like a formula is text: the passport carries it as written, nothing
    evaluates it, and what the run writes for the office to open in a spreadsheet (index.csv)
    holds only line numbers and credential ids, never a cell of the input."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    formula = '=HYPERLINK("http://example.invalid/?x","Ana")'
    cells = _cells(BODY[0])
    cells[0], cells[1] = formula, "+cmd|' /C calc'!A0"
    quoted = ",".join('"' + c.replace('"', '""') + '"' for c in cells)
    (tmp_path / "x.csv").write_text(_lines(body=[quoted, *BODY[1:]]), encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "x.csv"), "--out-dir", str(out),
                       "--home", str(home))
    assert code == 0, err
    index = (out / "index.csv").read_text()
    for row in csv.reader(io.StringIO(index)):
        for cell in row:
            assert cell and cell[0] not in "=+-@\t\r", cell
    assert "HYPERLINK" not in index and "cmd" not in index
    run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(home))
    run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"), "--home", str(home))
    first = _index(out)[0][1]
    code, result, err = run("verify", "--service", "transit", "--bundle",
                            str(tmp_path / "b.cbor"), "--trust-root", str(tmp_path / "r.json"),
                            "--text", (out / f"{first}.txt").read_text().strip(), "--json")
    assert code == 0, err
    shown = {c["claim"]: c["value"] for c in json.loads(result)["claims"]}
    assert (shown["given_name"], shown["family_name"]) == (formula, "+cmd|' /C calc'!A0")


def test_a_bad_row_near_the_end_of_a_large_file_is_named_before_anything_is_issued(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """All 90,000 rows are checked, with progress, before the passphrase is even needed; row
    90,000 (line 90,001: the sheet's own row number) is named and nothing is issued."""
    home = homes["issuer"]
    init_office(run, home)
    # each row a resident of its own (the same one twice is a problem named too)
    body = [f"Residente {i}" + BODY[i % 3][BODY[i % 3].index(","):] for i in range(90_000)]
    body[-1] = body[-1].replace(body[-1].split(",")[2], "7/19/1950")
    (tmp_path / "big.csv").write_text(_lines(body=body, end="\r\n"), encoding="utf-8-sig")
    code, _, err = run("issuer", "bulk", str(tmp_path / "big.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(home))
    assert code == 2 and "Comprobando filas / Checking rows" in err, err
    named = [line for line in err.splitlines() if line.startswith("línea/line ")]
    assert named == [named[0]] and named[0].startswith(
        "línea/line 90001: [bulk_date_spreadsheet]")
    assert "1 invalid row(s); nothing issued" in err
    assert not (tmp_path / "o").exists() and _issued(home) == []


def test_one_column_wrong_in_every_row_is_said_once_and_counted(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A date column saved as a spreadsheet writes it, in all 2,000 rows: the error on its first
    rows, then a count, and the summary stays on screen (it was 2,000 identical lines)."""
    home = homes["issuer"]
    init_office(run, home)
    def us_date(row: str) -> str:  # birth_date as a US spreadsheet writes it: 7/19/1950
        cells = row.split(",")
        year, month, day = cells[2].split("-")
        cells[2] = f"{int(month)}/{int(day)}/{year}"
        return ",".join(cells)
    body = [us_date(BODY[i % 3]) for i in range(2000)]
    (tmp_path / "dates.csv").write_text(_lines(body=body), encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(tmp_path / "dates.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(home))
    assert code == 2 and "2000 invalid row(s); nothing issued" in err, err
    named = [line for line in err.splitlines() if line.startswith("línea/line ")]
    assert len(named) == 3 and named[0].startswith("línea/line 2: [bulk_date_spreadsheet]")
    assert "… y 1997 fila(s) más con el mismo error (hasta la línea 2001)" in err
    assert "… and 1997 more row(s) with the same error (up to line 2001)" in err
    assert len(err.splitlines()) < 10 and _issued(home) == []


def test_files_past_the_limits_are_refused_before_any_row_is_checked(tmp_path: Path) -> None:
    too_many = _lines(body=[BODY[0]] * (MAX_ROWS + 1)).encode()
    with pytest.raises(PasaporteError, match=f"more than {MAX_ROWS} rows"):
        parse_residents(too_many)
    with pytest.raises(PasaporteError, match="larger than 64 MB"):
        parse_residents(b"x" * (MAX_BYTES + 1))


def test_the_cli_reads_no_more_than_the_limit(homes: dict[str, Path], passphrase: str,
                                              run: Run, tmp_path: Path) -> None:
    init_office(run, homes["issuer"])
    with (tmp_path / "huge.csv").open("wb") as huge:
        huge.write(TEXT.encode())
        huge.truncate(MAX_BYTES + 1024)  # zeros past the sample: only the size is looked at
    code, _, err = run("issuer", "bulk", str(tmp_path / "huge.csv"), "--out-dir",
                       str(tmp_path / "o"), "--home", str(homes["issuer"]))
    assert code == 2 and "larger than 64 MB" in err and _issued(homes["issuer"]) == []


@pytest.mark.parametrize(("text", "code"), [
    ("", "bulk_csv_empty"), ("\n\n", "bulk_csv_empty"), (" , ,\n", "bulk_csv_empty"),
    (HEADER + "\n", "bulk_csv_no_rows"), (HEADER + "\n\n\n", "bulk_csv_no_rows"),
])
def test_a_file_with_no_resident_is_said_so_and_makes_nothing(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path, text: str,
        code: str) -> None:
    """Not "0 issued" and an empty folder (nor, for an empty file, every column "missing"):
    what is wrong, exit 2, no output folder."""
    home = homes["issuer"]
    init_office(run, home)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(text, encoding="utf-8")
    got, out, err = run("issuer", "bulk", str(sheet), "--out-dir", str(tmp_path / "o"),
                        "--home", str(home))
    assert (got, out) == (2, ""), err
    assert f"[{code}]" in err and "othing was issued" in err, err
    assert not (tmp_path / "o").exists()
