"""``issuer bulk``: how a CSV's first line may name its columns. By name (``given_name``) or by
the label ``schemas/`` gives it in Spanish or English ("Nombre(s)", "Fecha de nacimiento"),
after the ``sep=;`` line a program may write for Excel; a header naming too little is refused
with what it lacks and what it named that we did not know."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from credential.claims import Claims
from credential.errors import UsageError
from issuer.bulk import COLUMNS, MAX_HEADER, parse_residents
from issuer.store import IssuerStore
from schemas import schema
from tests.conftest import Run
from tests.factory import day
from tests.issuer.conftest import init_office
from tests.issuer.test_bulk import SAMPLE, _index, _issued
from tests.issuer.test_bulk_spreadsheets import BODY, HEADER, _cells, _lines

# The sample's columns, in its order, as a Mexicali office's own sheet heads them
SPANISH = ["Nombre(s)", "Apellido(s)", "Fecha de nacimiento", "Ciudad de residencia",
           "País de residencia", "Residencia verificada desde", "Derecho a biblioteca",
           "Sistema de bibliotecas", "Categoría de tarifa", "Derecho a clínica",
           "Red de clínicas", "Idioma preferido", "Válido desde", "Válido hasta"]
ENGLISH = ["Given names", "Family names", "Birth date", "City of residence",
           "Country of residence", "Residency verified since", "Library eligible",
           "Home library system", "Fare category", "Clinic eligible", "Clinic network",
           "Preferred language", "Valid from", "Valid until"]


def _row(cells: str, **edits: str) -> str:
    """A sample row with some cells changed, by column name."""
    return ",".join(edits.get(name, cell)
                    for name, cell in zip(HEADER.split(","), cells.split(","), strict=True))


def _claims(data: bytes) -> list[tuple[int, Claims]]:
    rows, errors = parse_residents(data)
    assert errors == []
    return [(r.line, r.claims) for r in rows]


def test_the_labels_are_those_schemas_gives() -> None:
    """The lists above are not a second copy of the labels: each is the schema's own."""
    s = schema()
    labels = {f.label["es"]: f.label["en"] for g in s.groups for f in g.fields}
    labels |= {e["es"]: e["en"] for e in s.envelope_labels.values()}
    assert [labels[es] for es in SPANISH] == ENGLISH


@pytest.mark.parametrize("names", [
    SPANISH, ENGLISH,
    # as people retype them: no accents, another case, no brackets, underscores, spaces
    ["NOMBRES", "apellidos", "fecha_de_nacimiento", " ciudad de residencia ",
     "Pais de Residencia", "residencia-verificada-desde", "DERECHO A BIBLIOTECA",
     "Sistema  de bibliotecas", "Categoria de tarifa", "derecho a clinica", "Red de Clinicas",
     "idioma preferido", "Valido desde", "VÁLIDO HASTA"],
    # Spanish and English and the names, mixed in one line
    [*SPANISH[:5], *ENGLISH[5:10], *COLUMNS[10:]],
], ids=["spanish", "english", "retyped", "mixed"])
def test_columns_are_named_by_their_labels_in_either_language(names: list[str]) -> None:
    header = ",".join(f'"{n}"' for n in names)
    assert _claims(_lines(header).encode()) == _claims(_lines().encode())


def test_a_sheet_headed_in_spanish_may_hold_spanish_values_too() -> None:
    """Fare categories and languages by their labels in either language, in any case or
    accents: the same claims as the codes."""
    cells = [_cells(line) for line in BODY]
    for row, (fare, language) in zip(cells, [("Estudiante", "Español"), ("ADULTO MAYOR", "espanol"),
                                             ("Student", "Inglés")], strict=True):
        row[8], row[11] = fare, language
    labelled = _lines(",".join(f'"{n}"' for n in SPANISH),
                      [",".join(f'"{c}"' for c in row) for row in cells])
    assert _claims(labelled.encode()) == _claims(_lines().encode())


def test_the_sep_line_excel_reads_names_the_separator() -> None:
    """``sep=;`` first, then the header: the rows keep the lines they are on in the file."""
    semicolons = _lines(end="\r\n").replace(",", ";")
    expected = [(line + 1, claims) for line, claims in _claims(_lines().encode())]
    for first in ("sep=;\r\n", "SEP=;\n", "sep=;  \r\n"):
        assert _claims((first + semicolons).encode("utf-8-sig")) == expected
    # the line names the separator even where the header alone would not tell: one column
    tabbed = "sep=\t\n" + _lines(end="\n").replace(",", "\t").replace("\t", ",", 1)
    with pytest.raises(UsageError) as caught:
        parse_residents(tabbed.encode())
    assert caught.value.code == "bulk_csv_columns"
    assert caught.value.message["en"].startswith(
        "Columns missing from the CSV's first line: given_name («Nombre(s)» / “Given names”), "
        "family_name («Apellido(s)» / “Family names”). "
        "Columns not recognised: given_name,family_name.")


def test_a_header_naming_too_little_says_what_it_lacks_and_what_it_did_not_know() -> None:
    cells = _cells(HEADER)
    cells[2] = "Fecha de nacimento"  # misspelt
    cells[8] = "tarifa"  # not a label
    with pytest.raises(UsageError) as caught:
        parse_residents(_lines(",".join([*cells, "notas"])).encode())
    err = caught.value
    assert err.code == "bulk_csv_columns"
    # each by its name and its labels, as a sheet may name it
    assert ("birth_date («Fecha de nacimiento» / “Birth date”), fare_category («Categoría de "
            "tarifa» / “Fare category”)") in err.message["en"]
    assert "Faltan columnas en la primera línea del CSV: birth_date («Fecha de nacimiento»" in (
        err.message["es"])
    # as the sheet names them: the clerk looks for them there
    assert "Columns not recognised: Fecha de nacimento, tarifa, notas." in err.message["en"]
    assert "Columnas que no se reconocen: Fecha de nacimento, tarifa, notas." in err.message["es"]
    # a header with every column but one, and nothing else: nothing unknown to name
    with pytest.raises(UsageError) as caught:
        parse_residents(_lines(HEADER.replace("birth_date", "")).encode())
    assert "Columns not recognised: —." in caught.value.message["en"]


def test_a_sheet_headed_in_spanish_issues_and_resumes_as_the_sample(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """The command line, end to end: the sheet with Spanish labels and Excel's ``sep=;`` line
    issues the sample's three residents; the sample after it finds them issued already (the
    same claims)."""
    home, out = homes["issuer"], tmp_path / "out"
    init_office(run, home)
    sheet = tmp_path / "residentes.csv"
    header = ";".join(SPANISH)
    sheet.write_bytes(("sep=;\r\n" + _lines(header, [b.replace(",", ";") for b in BODY],
                                            end="\r\n")).encode("utf-8-sig"))
    code, stdout, err = run("issuer", "bulk", str(sheet), "--out-dir", str(out),
                            "--home", str(home))
    assert code == 0 and stdout.startswith("3 pasaportes emitidos"), err
    assert [line for line, _ in _index(out)] == ["3", "4", "5"]
    code, stdout, err = run("issuer", "bulk", str(SAMPLE), "--out-dir", str(out),
                            "--home", str(home))
    assert code == 0 and stdout.startswith("0 pasaportes emitidos"), err
    assert len(_issued(home)) == 3


def test_rows_expired_already_are_refused_before_anything_is_issued(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A row whose validity is over (a year mistyped, an old file) would stop a run midway,
    after the rows before it were issued: found with the other problems, nothing issued."""
    home = homes["issuer"]
    init_office(run, home)
    start, end = BODY[1].split(",")[-2:]
    old = BODY[1].replace(f",{start},{end}", f",{day('2016-11-22')},{day('2019-11-21')}")
    assert old != BODY[1]
    sheet = tmp_path / "old.csv"
    sheet.write_text(_lines(body=[BODY[0], old, BODY[2]]), encoding="utf-8")
    code, out, err = run("issuer", "bulk", str(sheet), "--out-dir", str(tmp_path / "o"),
                         "--home", str(home))
    assert (code, out) == (2, ""), err
    assert "línea/line 3: [claims_expired]" in err and day("2019-11-21") in err
    assert "1 invalid row(s); nothing issued" in err
    assert _issued(home) == [] and not (tmp_path / "o").exists()


def test_rows_born_or_resident_in_the_future_are_refused_before_anything_is_issued(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A birth date or a residency "since" after the office's today (2062 for 1962): wrong
    for all the passport's life, so refused with the other problems, nothing issued."""
    home = homes["issuer"]
    init_office(run, home)
    # after today, and before a validity to come (or the rows fail on that order instead)
    future, start, end = ((date.today() + timedelta(days=n)).isoformat() for n in (400, 410, 700))
    born = _row(BODY[0], birth_date=future, valid_from=start, valid_until=end)
    since = _row(BODY[2], residence_since=future, valid_from=start, valid_until=end)
    sheet = tmp_path / "future.csv"
    sheet.write_text(_lines(body=[born, BODY[1], since]), encoding="utf-8")
    code, out, err = run("issuer", "bulk", str(sheet), "--out-dir", str(tmp_path / "o"),
                         "--home", str(home))
    assert (code, out) == (2, ""), err
    assert "línea/line 2: [claims_date_future]" in err
    assert "línea/line 4: [claims_date_future]" in err
    assert "Fecha de nacimiento" in err and "Residencia verificada desde" in err and future in err
    assert _issued(home) == [] and not (tmp_path / "o").exists()


def test_catalogue_names_are_one_whatever_their_case_accents_or_spacing(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A sheet typing "MEXICALI" or "Bibliotecas Publicas de  Mexicali" names what the office
    already catalogued, not a second entry in every bundle; a new name too short to be one
    ("BP") is refused up front, nothing issued."""
    home = homes["issuer"]
    init_office(run, home)
    assert run("issuer", "bulk", str(SAMPLE), "--out-dir", str(tmp_path / "a"),
               "--home", str(home))[0] == 0
    before = IssuerStore.open(home).catalogs()
    shouted = _row(BODY[0], given_name="Otra", residence_city="MEXICALI",
                  library_system="bibliotecas publicas de  mexicali")
    sheet = tmp_path / "again.csv"
    sheet.write_text(_lines(body=[shouted]), encoding="utf-8")
    code, _, err = run("issuer", "bulk", str(sheet), "--out-dir", str(tmp_path / "b"),
                       "--home", str(home))
    assert code == 0, err
    assert IssuerStore.open(home).catalogs() == before
    short = _row(BODY[0], given_name="Una más", library_system="BP")
    sheet.write_text(_lines(body=[short]), encoding="utf-8")
    code, out, err = run("issuer", "bulk", str(sheet), "--out-dir", str(tmp_path / "c"),
                         "--home", str(home))
    assert (code, out) == (2, ""), err
    assert "línea/line 2: [catalog_name_short]" in err and "BP" in err
    assert "catálogo «Sistema de bibliotecas»" in err and "“Home library system” catalogue" in err
    assert IssuerStore.open(home).catalogs() == before and not (tmp_path / "c").exists()


def test_a_run_adding_many_catalogue_names_is_stopped_until_they_are_confirmed(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Catalogue names are published in every bundle for good: a run that would add more than
    a few to one catalogue (a column of family names read as the clinic network) stops before
    anything is issued, listing them, until the clerk confirms them (``--new-names``); a
    resident's own name as a catalogue value is refused, without repeating it; and the names
    a run does add are said before the passphrase."""
    home = homes["issuer"]
    init_office(run, home)
    sheet = tmp_path / "slip.csv"
    slip = [_row(BODY[0], given_name=f"Ana {n}", clinic_network=f"Apellido{n}") for n in "ABCDEFG"]
    sheet.write_text(_lines(body=slip), encoding="utf-8")
    bulk = ["issuer", "bulk", str(sheet), "--out-dir", str(tmp_path / "o"), "--home", str(home)]
    code, out, err = run(*bulk)
    assert (code, out) == (2, ""), err
    assert "[bulk_new_names_many]" in err
    assert "añadiría 7 nombres nuevos" in err and "would add 7 new names" in err
    assert "«ApellidoA»" in err and "“ApellidoA”" in err and "(+2)" in err and "--new-names" in err
    assert _issued(home) == [] and IssuerStore.open(home).catalogs() == {}
    code, _, err = run(*bulk, "--new-names")
    assert code == 0, err
    assert "[catalog_new_names" in err and "«ApellidoE» (+2)" in err and "Red de clínicas" in err
    assert len(IssuerStore.open(home).catalogs()["clinic"]) == 7
    copied = _row(BODY[0], given_name="Rosa", family_name="Quintero Luna",
                 clinic_network="quintero  LUNA")
    sheet.write_text(_lines(body=[copied]), encoding="utf-8")
    code, out, err = run(*bulk[:4], str(tmp_path / "p"), *bulk[5:])
    assert (code, out) == (2, ""), err
    assert "línea/line 2: [catalog_name_personal]" in err and "uintero" not in err


@pytest.mark.parametrize(("text", "line", "size"), [
    ("A" * 200_000 + "\n", 1, 200_001),  # one cell past the csv module's field limit
    # a separator of every kind, many times: each of them tried on the line, cell by cell
    ("a,b;c\td|" * 700_000 + "\n" + BODY[0] + "\n", 1, 5_600_001),
    ("sep=;\r\n" + "x;" * 40_000 + "\r\n", 2, 80_002),  # the header after Excel's line
    # a quoted cell may go on to the next lines: the header's length is the record's
    ('"Nombre(s)\n' + "a" * 10 + '",' + "b," * 40_000 + "\n", 1, 80_024),
], ids=["one-cell", "separators", "after-sep-line", "quoted-newline"])
def test_a_first_line_too_long_to_be_a_header_is_refused_at_once(text: str, line: int,
                                                                  size: int) -> None:
    """A residents sheet names its columns in a few hundred characters: a header past
    ``MAX_HEADER`` (its line break included, as in the size told) is some other file, refused
    before it is split into cells (no csv field limit met outside the handled errors, no time
    and memory growing with the line)."""
    started = time.monotonic()
    with pytest.raises(UsageError) as caught:
        parse_residents(text.encode())
    assert time.monotonic() - started < 5  # 85 s for a 59 MB line when every cell was read
    err = caught.value
    assert err.code == "bulk_csv_header_too_long"
    for words in err.message.values():
        assert f"{size}" in words and f"{MAX_HEADER}" in words and f" {line} " in words


def test_a_header_within_the_bound_is_read_as_ever() -> None:
    """An unknown column with a long name (ignored, as "notes" is) up to the bound."""
    long = HEADER + ',"' + "n" * (MAX_HEADER - len(HEADER) - 4) + '"'
    assert len(long + "\n") == MAX_HEADER  # as _lines ends it
    assert _claims(_lines(long).encode()) == _claims(_lines().encode())
    with pytest.raises(UsageError) as caught:
        parse_residents(_lines(long + "n").encode())
    assert caught.value.code == "bulk_csv_header_too_long"


def test_the_command_refuses_a_file_of_one_huge_line_as_a_usage_error(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """Exit 2 and the typed refusal, not ``internal_error`` (exit 1) from the csv module."""
    home = homes["issuer"]
    init_office(run, home)
    wide = tmp_path / "wide.csv"
    wide.write_text("A" * 200_000 + "\n", encoding="utf-8")
    code, out, err = run("issuer", "bulk", str(wide), "--out-dir", str(tmp_path / "o"),
                         "--home", str(home))
    assert (code, out) == (2, ""), err
    assert err.startswith("[bulk_csv_header_too_long] ") and "200001" in err, err
    assert "Traceback" not in err and not (tmp_path / "o").exists() and _issued(home) == []


def test_every_kind_of_problem_is_named_in_one_run(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """A row's own mistake (a flag that is neither yes nor no) hid the sheet's other problems
    (a catalogue name too short, a resident twice): the clerk fixed one row, ran the sheet
    again, and only then heard of the rest, and the count was of one row when three were bad."""
    home = homes["issuer"]
    init_office(run, home)
    sheet = tmp_path / "mixed.csv"
    body = [_row(BODY[0], given_name="Ana", library_eligible="quizás"),
            _row(BODY[0], given_name="Bea", library_system="Ca"),
            _row(BODY[0], given_name="Tita"), _row(BODY[0], given_name="tita")]
    sheet.write_text(_lines(body=body), encoding="utf-8")
    code, out, err = run("issuer", "bulk", str(sheet), "--out-dir", str(tmp_path / "o"),
                         "--home", str(home))
    assert (code, out) == (2, ""), err
    assert "línea/line 2: [bulk_flag_invalid]" in err
    assert "línea/line 3: [catalog_name_short]" in err
    assert "línea/line 5: [bulk_resident_repeated]" in err
    assert "3 fila(s) no válida(s)" in err and "3 invalid row(s)" in err
    assert _issued(home) == [] and not (tmp_path / "o").exists()


def test_a_cell_past_the_csv_field_limit_below_the_header_is_named_by_its_line() -> None:
    """An unclosed quote swallowing the rest of the file (or a 200 KB cell): its own code, the
    line named in both languages, not the generic ``usage_error`` with Python's words in the
    English half only."""
    with pytest.raises(UsageError) as caught:
        parse_residents(_lines(body=[BODY[0], '"Luis' + "s" * 200_000]).encode())
    err = caught.value
    assert err.code == "bulk_cell_too_large", err.message
    assert "Línea 3 del CSV" in err.message["es"] and "CSV line 3" in err.message["en"]
    assert "128 KB" in err.message["es"] and "field limit" not in err.message["en"]
