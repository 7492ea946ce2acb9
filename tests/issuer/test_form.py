"""``pasaporte issuer issue --ask``: the bilingual form (``issuer.form``) on its own, a list of
answers in and a claims document out, then the real command fed its answers on stdin."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from credential.claims import parse_claims
from credential.errors import UsageError
from credential.passport import decode_text
from credential.times import first_day, last_day
from issuer import form
from issuer.dates import Replaced, untimely
from issuer.store import IssuerStore, catalog, credentials
from schemas import FieldSpec, schema
from tests.conftest import PASSPHRASE, ROOT, Run
from tests.factory import EXAMPLES, day, example_claims

# the example's validity and first day, as the suite's calendar has them (tests/factory.py)
FROM, UNTIL = example_claims()["valid_from"], example_claims()["valid_until"]
TODAY = date.fromisoformat(FROM)
CLAIMS = str(EXAMPLES / "claims-mexicali.json")
# tests/examples/claims-mexicali.json, answered as a clerk would, in the schema's order
EXAMPLE_ANSWERS = ("Mexicali", "MX", "2015-06-01", "sí", "Bibliotecas Públicas de Mexicali",
                   "senior", "sí", "Red Binacional de Salud Comunitaria", "María Guadalupe",
                   "Hernández López", "1987-03-14", "es", FROM, UNTIL)
# the same resident, typed with mistakes, each followed by its correction
WITH_TYPOS = ("", "  Mexicali  ",  # required
              "Mex", "mx",  # not a country code
              "01/06/2015", "2015-06-01",  # day/month or month/day: never guessed
              "quizás", "Sí",  # no flag
              "Bibliotecas Públicas de Mexicali",
              "5", "Adulto mayor",  # no such fare category; then by its Spanish label
              "1",  # yes, as a spreadsheet writes it
              "Red Binacional de Salud Comunitaria", "María Guadalupe", "Hernández López",
              "1987-02-30", "14/03/1987", "1987-03-14",  # no such day; then ambiguous
              "1",  # Español, by its number
              FROM, "")  # Enter: the default, three years
WITH_TYPOS_CODES = ["issuer_form_required", "issuer_form_country", "issuer_form_date_ambiguous",
                    "issuer_form_flag", "issuer_form_choice", "issuer_form_date_none",
                    "issuer_form_date_ambiguous"]


class Clerk:
    """The ``ask`` and ``say`` of a form: answers given in order, ``None`` once they run out
    (the end of the input), and everything asked and said kept."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.said: list[str] = []

    def ask(self, prompt: str) -> str | None:
        self.prompts.append(prompt)
        return self.answers.pop(0) if self.answers else None

    def say(self, line: str) -> None:
        self.said.append(line)

    def codes(self) -> list[str]:
        return [line[1:line.index("]")] for line in self.said if line.startswith("[")]


def _fill(clerk: Clerk, **catalogs: list[str]) -> dict[str, Any] | None:
    return form.fill(clerk.ask, clerk.say, today=TODAY, catalogs=catalogs)


def _question(key: str) -> form.Question:
    return next(q for q in form.questions() if q.key == key)


# -- questions from the schema -------------------------------------------------------------

def test_every_field_of_the_schema_is_asked_with_both_labels_in_order() -> None:
    raw = json.loads((ROOT / "schemas/claims.json").read_text(encoding="utf-8"))
    wanted = [(f"{g['name']}.{f['name']}" if g["json"] == "object" else f["name"], f["label"])
              for g in raw["groups"] for f in g["fields"]]
    wanted += [(e["name"], e["label"]) for e in raw["envelope"]
               if e["name"] in ("valid_from", "valid_until")]
    assert [(q.key, q.spec.label) for q in form.questions()] == wanted
    clerk = Clerk(*EXAMPLE_ANSWERS, "s")
    assert _fill(clerk) is not None
    assert len(clerk.prompts) == len(wanted) + 1  # one each, then the confirmation
    for asked, (_, label) in zip(clerk.prompts, wanted, strict=False):
        assert asked.startswith(f"{label['es']} / {label['en']}")
    assert clerk.prompts[8].startswith("Nombre(s) / Given names")


def test_an_answer_typed_on_a_latin1_terminal_is_named_as_such_and_asked_again() -> None:
    """"José" and "sí" from a Latin-1 terminal in a UTF-8 session (surrogate escapes) were
    "control characters … an arrow key" and "not sí": the clerk could never enter the name."""
    answers = list(EXAMPLE_ANSWERS)
    latin1 = os.fsdecode("María Guadalupe".encode("latin-1"))
    answers[8:9] = [latin1, "María Guadalupe"]
    answers[3:4] = [os.fsdecode("sí".encode("latin-1")), "sí"]
    clerk = Clerk(*answers, "s")
    assert _fill(clerk) is not None
    assert clerk.codes() == ["text_not_utf8", "text_not_utf8"]
    assert any(line.startswith("[text_not_utf8] Nombre(s) / Given names:") for line in clerk.said)


def test_a_confirmation_typed_on_a_latin1_terminal_is_asked_again_not_declined() -> None:
    """"sí" so typed was read as a "no": a finished form thrown away as declined."""
    clerk = Clerk(*EXAMPLE_ANSWERS, os.fsdecode("sí".encode("latin-1")), "sí")
    assert _fill(clerk) is not None
    assert clerk.codes() == ["text_not_utf8"]
    assert clerk.prompts[-2:] == [form._CONFIRM_PROMPT] * 2


def test_a_field_added_to_the_schema_is_in_the_form(monkeypatch: pytest.MonkeyPatch) -> None:
    s = schema()
    floor = FieldSpec("floor", "text", {"es": "Piso", "en": "Floor"}, optional=True, max=10)
    residence = dataclasses.replace(s.groups[0], fields=(*s.groups[0].fields, floor))
    monkeypatch.setattr(form, "schema", lambda: dataclasses.replace(
        s, groups=(residence, *s.groups[1:])))
    keys = [q.key for q in form.questions()]
    assert keys[:4] == ["residence.city", "residence.country", "residence.since",
                        "residence.floor"]
    answers = list(EXAMPLE_ANSWERS)
    answers.insert(3, "")  # optional, left empty (the real validator knows no floor)
    clerk = Clerk(*answers, "s")
    assert _fill(clerk) is not None
    assert clerk.prompts[3].startswith("Piso / Floor (opcional")


def test_enum_menus_show_both_labels_and_take_the_number_the_code_or_a_label() -> None:
    clerk = Clerk(*EXAMPLE_ANSWERS, "s")
    _fill(clerk)
    assert ("  1) General / Standard  2) Estudiante / Student  3) Adulto mayor / Senior  "
            "4) Persona con discapacidad / Disability") in clerk.said
    assert "  1) Español / Spanish  2) Inglés / English" in clerk.said
    fare = _question("transit.fare_category")
    for typed in ("2", "student", " STUDENT ", "Estudiante", "estudiante"):
        assert form.answer(fare, typed) == "student"
    for typed in ("0", "5", "alumno", "²"):
        with pytest.raises(UsageError) as refused:
            form.answer(fare, typed)
        assert refused.value.code == "issuer_form_choice"
        assert "standard, student, senior, disability" in refused.value.message["en"]


# -- each kind of answer -------------------------------------------------------------------

@pytest.mark.parametrize(("key", "typed", "value"), [
    ("given_name", "  María Guadalupe ", "María Guadalupe"),
    ("given_name", "Mari\u0301a", "María"),  # decomposed, as a Mac types it: composed
    ("residence.country", " us ", "US"),
    ("birth_date", "1987-03-14", "1987-03-14"),
    ("library.eligible", "SÍ", True), ("library.eligible", "si", True),
    ("library.eligible", "Yes", True), ("library.eligible", "verdadero", True),
    ("library.eligible", "1", True), ("library.eligible", "No", False),
    ("library.eligible", "FALSO", False), ("library.eligible", "0", False),
    # the letters the form's own "[s/y/N]" teaches
    ("library.eligible", "s", True), ("library.eligible", "Y", True),
    ("library.eligible", "n", False),
    ("library.system", "", None),  # optional
    ("preferred_language", "2", "en"), ("preferred_language", "Inglés", "en"),
])
def test_answers_of_each_kind(key: str, typed: str, value: Any) -> None:
    assert form.answer(_question(key), typed) == value


@pytest.mark.parametrize(("key", "typed", "code"), [
    ("given_name", "   ", "issuer_form_required"),
    ("given_name", "x" * 101, "issuer_form_text_long"),
    ("given_name", "Mari\x1b[Da", "issuer_form_text_invisible"),  # an arrow key
    ("given_name", "Ana\u202eZ", "issuer_form_text_invisible"),  # a bidi override
    # a UTF-8 terminal on a Latin-1 host: "Núñez" right on screen, recorded as this
    ("family_name", "NÃºÃ±ez", "issuer_form_text_garbled"),
    ("residence.country", "Mexico", "issuer_form_country"),
    ("residence.country", "M1", "issuer_form_country"),
    ("birth_date", "", "issuer_form_required"),
    ("birth_date", "01/12/1999", "issuer_form_date_ambiguous"),
    ("birth_date", "1.12.99", "issuer_form_date_ambiguous"),
    ("birth_date", "12-1-1999", "issuer_form_date_ambiguous"),
    ("birth_date", "1999", "issuer_form_date"),
    ("birth_date", "1999-12-1", "issuer_form_date"),
    ("birth_date", "ayer", "issuer_form_date"),
    ("birth_date", "1999-02-29", "issuer_form_date_none"),
    ("library.eligible", "quizás", "issuer_form_flag"),
    ("library.eligible", "", "issuer_form_required"),
])
def test_wrong_answers_say_why_in_both_languages(key: str, typed: str, code: str) -> None:
    question = _question(key)
    with pytest.raises(UsageError) as refused:
        form.answer(question, typed)
    assert refused.value.code == code
    assert question.spec.label["es"] in refused.value.message["es"]
    assert question.spec.label["en"] in refused.value.message["en"]


def test_an_ambiguous_date_is_never_guessed_and_says_why() -> None:
    with pytest.raises(UsageError) as refused:
        form.answer(_question("birth_date"), "01/12/1999")
    assert "1 de diciembre" in refused.value.message["es"]
    assert "January 12" in refused.value.message["en"]
    assert "YYYY-MM-DD" in refused.value.message["en"]


def test_catalog_fields_offer_the_names_the_office_used_and_take_new_ones() -> None:
    system = _question("library.system")
    used = ["Bibliotecas Públicas de Mexicali", "Biblioteca de Calexico"]
    assert form.answer(system, "2", names=used) == "Biblioteca de Calexico"
    # a name used before, typed without its accents or capitals: that name, not a second one
    assert form.answer(system, "bibliotecas publicas de MEXICALI ",
                       names=used) == "Bibliotecas Públicas de Mexicali"
    assert form.answer(system, "Biblioteca del Valle", names=used) == "Biblioteca del Valle"
    with pytest.raises(UsageError) as refused:
        form.answer(system, "3", names=used)
    assert refused.value.code == "issuer_form_catalog" and "1 a 2" in refused.value.message["es"]
    # a slip is not a new name that would go into every bundle: a number with no list, a letter
    for slip in ("3", "s", "n°1"):
        with pytest.raises(UsageError) as refused:
            form.answer(system, slip)
        assert refused.value.code == "issuer_form_catalog_name"
    assert form.answer(system, "Red 7") == "Red 7"  # three letters: a name

    answers = list(EXAMPLE_ANSWERS)
    answers[4] = "1"
    clerk = Clerk(*answers, "s")
    doc = form.fill(clerk.ask, clerk.say, today=TODAY,
                    catalogs={"library": ["Bibliotecas Públicas de Mexicali"]})
    assert doc == example_claims()
    assert "  1) Bibliotecas Públicas de Mexicali" in clerk.said
    assert "número o nombre" in clerk.prompts[4] and "1) " not in clerk.said[-1]


# -- defaults --------------------------------------------------------------------------------

def test_the_validity_defaults_to_today_and_three_years() -> None:
    answers = [*EXAMPLE_ANSWERS[:-2], "", ""]  # Enter, Enter
    clerk = Clerk(*answers, "s")
    doc = _fill(clerk)
    assert doc is not None and doc == example_claims()
    assert clerk.prompts[-3].endswith(f" [{FROM}]: ")
    assert "3 años / default 3 years" in clerk.prompts[-2]
    assert clerk.prompts[-2].endswith(f" [{UNTIL}]: ")
    # valid_until's default follows the start as answered
    start = day("2027-01-10")
    clerk = Clerk(*EXAMPLE_ANSWERS[:-2], start, "", "s")
    doc = _fill(clerk)
    end = form.default_until(date.fromisoformat(start)).isoformat()  # 2030-01-09, unmoved
    assert doc is not None and doc["valid_until"] == end
    assert clerk.prompts[-2].endswith(f" [{end}]: ")


def test_no_other_question_has_a_default() -> None:
    for q in form.questions():
        text = form.prompt(q)
        assert "[" not in text, text


def test_default_until() -> None:
    assert form.DEFAULT_YEARS == 3
    assert form.default_until(date(2026, 11, 22)) == date(2029, 11, 21)
    assert form.default_until(date(2028, 2, 29)) == date(2031, 2, 28)
    assert form.default_until(date(2027, 3, 1)) == date(2030, 2, 28)


def test_today_is_the_offices_day() -> None:
    evening = 1_795_410_000  # 2026-11-23 05:00 UTC: still the 22nd in Mexicali
    assert form.office_today("America/Tijuana", now=evening) == date(2026, 11, 22)
    assert form.office_today(None, now=evening) == date(2026, 11, 23)
    assert form.office_today("Asia/Tokyo", now=evening) == date(2026, 11, 23)


# -- the whole form ----------------------------------------------------------------------------

def test_typos_are_asked_again_with_their_reason_and_the_result_is_the_example() -> None:
    clerk = Clerk(*WITH_TYPOS, "sí")
    assert _fill(clerk) == example_claims()
    assert clerk.codes() == WITH_TYPOS_CODES
    assert len(clerk.prompts) == len(WITH_TYPOS) + 1
    # each mistake is followed by the same question again, and only a mistake
    mistakes = [0, 2, 4, 6, 9, 15, 16]
    again = [i for i in range(len(WITH_TYPOS)) if clerk.prompts[i + 1] == clerk.prompts[i]]
    assert again == mistakes


def test_answers_checked_together_re_ask_the_field_named() -> None:
    # a birth date after the validity's start (one begun a month ago) passes alone, past as it
    # is, not with the others
    answers = list(EXAMPLE_ANSWERS)
    started = (TODAY - timedelta(days=30)).isoformat()
    answers[10], answers[12] = (TODAY - timedelta(days=10)).isoformat(), started
    clerk = Clerk(*answers, "1987-03-14", "s")
    assert _fill(clerk) == {**example_claims(), "valid_from": started}
    assert clerk.codes() == ["claims_invalid"]
    assert clerk.prompts[-2].startswith("Fecha de nacimiento / Birth date")
    # an end before the start (a start to come): either may be the one mistyped, both again
    answers = [*EXAMPLE_ANSWERS[:-2], day("2026-12-01"), day("2026-11-25")]
    clerk = Clerk(*answers, day("2026-12-01"), day("2029-11-30"), "s")
    assert _fill(clerk) == {**example_claims(), "valid_from": day("2026-12-01"),
                            "valid_until": day("2029-11-30")}
    assert clerk.codes() == ["claims_invalid"]
    assert clerk.prompts[-3].startswith("Válido desde / Valid from")
    assert clerk.prompts[-2].startswith("Válido hasta / Valid until")
    # an end before today (and so before the start): both again
    answers = [*EXAMPLE_ANSWERS[:-1], day("2026-11-01")]
    clerk = Clerk(*answers, FROM, UNTIL, "s")
    assert _fill(clerk) == example_claims()
    assert clerk.codes() == ["claims_expired"]
    assert clerk.prompts[-3].startswith("Válido desde / Valid from")


def test_the_summary_shows_every_answer_in_both_languages() -> None:
    clerk = Clerk(*EXAMPLE_ANSWERS, "s")
    _fill(clerk)
    summary = clerk.said[clerk.said.index("Resumen / Summary:") + 1:]
    assert len(summary) == len(form.questions())
    assert "  Nombre(s) / Given names: María Guadalupe" in summary
    assert "  Categoría de tarifa / Fare category: Adulto mayor / Senior" in summary
    assert "  Derecho a biblioteca / Library eligible: sí / yes" in summary
    assert f"  Válido hasta / Valid until: {UNTIL}" in summary
    assert clerk.prompts[-1] == "¿Emitir? / Issue? [s/y/N] "
    # a name new to its catalogue is marked before the confirmation, where the clerk can still
    # say no (the notice after it came with the passport on its way): here, every one is new
    marked = [line.split(":")[0] for line in summary if "new to the catalogue" in line]
    assert marked == ["  Ciudad de residencia / City of residence",
                      "  Sistema de bibliotecas / Home library system",
                      "  Red de clínicas / Clinic network"], marked
    known = Clerk(*EXAMPLE_ANSWERS, "s")
    _fill(known, city=["  MEXICALI "])
    summary = known.said[known.said.index("Resumen / Summary:") + 1:]
    assert not any("Ciudad de residencia" in line and "new to" in line for line in summary)


@pytest.mark.parametrize("reply", ["s", "sí", "SI", "y", "Yes", " s "])
def test_only_yes_issues(reply: str) -> None:
    assert _fill(Clerk(*EXAMPLE_ANSWERS, reply)) == example_claims()


@pytest.mark.parametrize("reply", ["n", "no", "", "x", "sip", "ok"])
def test_anything_else_issues_nothing(reply: str) -> None:
    clerk = Clerk(*EXAMPLE_ANSWERS, reply)
    assert _fill(clerk) is None
    assert clerk.codes() == ["issuer_form_declined"]


def test_the_end_of_the_input_cancels_naming_the_question() -> None:
    clerk = Clerk(*EXAMPLE_ANSWERS[:9])  # the family names never come
    assert _fill(clerk) is None
    assert clerk.codes() == ["issuer_form_cancelled"]
    assert "«Apellido(s)»" in clerk.said[-1] and "“Family names”" in clerk.said[-1]
    assert "no se emitió nada" in clerk.said[-1] and "nothing was issued" in clerk.said[-1]
    clerk = Clerk(*EXAMPLE_ANSWERS)  # at the confirmation
    assert _fill(clerk) is None and clerk.codes() == ["issuer_form_cancelled"]


# -- the command -----------------------------------------------------------------------------

def _stdin(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    """The lines as a pipe gives them (a script)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in lines)))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _typed(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    """The lines as a clerk types them at a terminal, where a refused answer is asked again."""
    monkeypatch.setattr(sys, "stdin", _Terminal("".join(f"{line}\n" for line in lines)))


def _claims_of(path: Path, home: Path) -> dict[str, Any]:
    """A written credential's claims, decoded (catalog codes named by the office's catalog)."""
    decoded = decode_text(path.read_text().strip())
    with IssuerStore.open(home).engine.connect() as db:
        names = {(c, code): name for c, code, name in db.execute(
            sa.select(catalog.c.catalog, catalog.c.code, catalog.c.name))}
    doc: dict[str, Any] = {"valid_from": first_day(decoded.payload.nbf).isoformat(),
                           "valid_until": last_day(decoded.payload.exp).isoformat()}
    for group in schema().groups:
        for f in group.fields:
            value = decoded.groups[group.name][f.name]
            if f.type == "catalog" and isinstance(value, int):
                value = names[f.catalog, value]
            elif isinstance(value, date):
                value = value.isoformat()
            if group.json == "object":
                doc.setdefault(group.name, {})[f.name] = value
            else:
                doc[f.name] = value
    return doc


def _issued(home: Path) -> int:
    with IssuerStore.open(home).engine.connect() as db:
        return int(db.execute(sa.select(sa.func.count()).select_from(credentials)).scalar_one())


def test_the_command_issues_what_the_form_was_answered(office: Path, tmp_path: Path, run: Run,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _typed(monkeypatch, *WITH_TYPOS, "sí")
    out = tmp_path / "maria.cred"
    code, stdout, err = run("issuer", "issue", "--ask", "--paper", "--out", str(out),
                            "--home", str(office))
    assert code == 0, err
    assert stdout.strip() == decode_text(out.read_text().strip()).payload.credential_id
    assert "Nombre(s) / Given names" in err and "Traceback" not in err
    for reason in WITH_TYPOS_CODES:
        assert f"[{reason}]" in err
    assert _claims_of(out, office) == example_claims()


def test_from_a_pipe_a_refused_answer_stops_the_form(office: Path, tmp_path: Path, run: Run,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A script's lines cannot change: asking again read its next line, at worst the
    passphrase after the form, and showed it in the next refusal. The first refusal stops it,
    nothing issued, and the rest is never read."""
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    answers = list(EXAMPLE_ANSWERS)
    answers[1] = "Mexico"  # not a country code
    _stdin(monkeypatch, *answers[:-1], "s", PASSPHRASE)  # one short: the rest moves up a line
    code, stdout, err = run("issuer", "issue", "--ask", "--paper", "--out",
                            str(tmp_path / "p.cred"), "--home", str(office))
    assert (code, stdout) == (2, "") and "[issuer_form_country]" in err, err
    assert PASSPHRASE not in err and not (tmp_path / "p.cred").exists()


def test_answers_saved_by_notepad_begin_with_a_bom_that_is_no_answer(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A UTF-8 file from Notepad starts with a BOM: the first answer was refused as holding
    control or format characters."""
    _stdin(monkeypatch, "\ufeff" + EXAMPLE_ANSWERS[0], *EXAMPLE_ANSWERS[1:], "s")
    code, stdout, err = run("issuer", "issue", "--ask", "--paper", "--out",
                            str(tmp_path / "p.cred"), "--home", str(office))
    assert code == 0 and stdout.strip(), err
    assert _claims_of(tmp_path / "p.cred", office) == example_claims()


def test_the_form_of_a_replacing_passport_asks_again_a_start_after_today(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """``issue --ask --replaces``: a start after today (the old one would be revoked at once)
    was refused by the store only after the summary was confirmed, the form lost."""
    assert run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out",
               str(tmp_path / "old.cred"), "--home", str(office))[0] == 0
    old = decode_text((tmp_path / "old.cred").read_text().strip()).payload.credential_id
    later = date.today() + timedelta(days=30)
    answers = [*EXAMPLE_ANSWERS[:-2], later.isoformat(), (later + timedelta(days=700)).isoformat(),
               date.today().isoformat(), "", "s"]
    _typed(monkeypatch, *answers)
    code, _, err = run("issuer", "issue", "--ask", "--paper", "--replaces", old, "--out",
                            str(tmp_path / "new.cred"), "--home", str(office))
    assert code == 0, err
    assert err.index("[replaces_before_start]") < err.index("Resumen / Summary"), err
    assert IssuerStore.open(office).credential(old)["status"] == "revoked"  # type: ignore[index]


def test_from_a_pipe_enter_after_a_start_mistyped_names_the_validity_over(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A script's empty end (the default) after a start mistyped into the past was refused as
    "not optional: type it", and the start never named."""
    _stdin(monkeypatch, *EXAMPLE_ANSWERS[:-2], "2016-11-24", "", "s")
    code, stdout, err = run("issuer", "issue", "--ask", "--paper", "--out",
                            str(tmp_path / "p.cred"), "--home", str(office))
    assert (code, stdout) == (2, "") and "[claims_expired]" in err, err
    assert "2019-11-23" in err and "[issuer_form_required]" not in err


def test_names_the_office_used_are_offered_by_number(office: Path, tmp_path: Path, run: Run,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The same resident issued from the file and then through the form, taking the city, the
    library system and the clinic network from the office's catalog: the same claims."""
    assert run("issuer", "issue", "--claims", CLAIMS, "--paper", "--out",
               str(tmp_path / "file.cred"), "--home", str(office))[0] == 0
    answers = list(EXAMPLE_ANSWERS)
    answers[0] = answers[4] = answers[7] = "1"
    _stdin(monkeypatch, *answers, "s")
    code, _, err = run("issuer", "issue", "--ask", "--paper", "--out",
                       str(tmp_path / "form.cred"), "--home", str(office))
    assert code == 0, err
    assert "  1) Red Binacional de Salud Comunitaria" in err
    by_file = decode_text((tmp_path / "file.cred").read_text().strip())
    by_form = decode_text((tmp_path / "form.cred").read_text().strip())
    assert by_form.groups == by_file.groups  # the same catalog codes: no name catalogued twice
    assert (by_form.payload.nbf, by_form.payload.exp) == (by_file.payload.nbf,
                                                          by_file.payload.exp)
    assert _claims_of(tmp_path / "form.cred", office) == example_claims()


def test_the_passphrase_line_comes_after_the_form(office: Path, tmp_path: Path, run: Run,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASAPORTE_PASSPHRASE")
    _stdin(monkeypatch, *EXAMPLE_ANSWERS, "s", PASSPHRASE)
    code, _, err = run("issuer", "issue", "--ask", "--paper", "--out",
                       str(tmp_path / "p.cred"), "--home", str(office))
    assert code == 0, err
    assert _claims_of(tmp_path / "p.cred", office) == example_claims()


def test_a_wrong_passphrase_in_the_variable_is_refused_before_the_form(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable still holding the passphrase from before ``issuer passphrase``: refused
    before the first question, not after a whole form is typed in."""
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "not the office passphrase")
    _stdin(monkeypatch, *EXAMPLE_ANSWERS, "s")
    code, _, err = run("issuer", "issue", "--ask", "--paper", "--out",
                       str(tmp_path / "p.cred"), "--home", str(office))
    assert code == 1 and "[passphrase_wrong]" in err, err
    assert "Nombre(s) / Given names" not in err and _issued(office) == 0


def test_no_at_the_confirmation_issues_nothing(office: Path, tmp_path: Path, run: Run,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    before = (_issued(office), IssuerStore.open(office).pending())
    _stdin(monkeypatch, *EXAMPLE_ANSWERS, "n")
    out = tmp_path / "p.cred"
    code, stdout, err = run("issuer", "issue", "--ask", "--paper", "--out", str(out),
                            "--home", str(office))
    assert code == 130 and stdout == ""
    assert "[issuer_form_declined]" in err and "Nothing was issued" in err
    assert not out.exists() and list(tmp_path.glob("p.cred*")) == []
    assert (_issued(office), IssuerStore.open(office).pending()) == before


def test_the_end_of_the_input_mid_form_issues_nothing(office: Path, tmp_path: Path, run: Run,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    before = (_issued(office), IssuerStore.open(office).pending())
    _stdin(monkeypatch, *EXAMPLE_ANSWERS[:5])
    out = tmp_path / "p.cred"
    code, stdout, err = run("issuer", "issue", "--ask", "--paper", "--out", str(out),
                            "--home", str(office))
    assert code == 130 and stdout == ""
    assert "[issuer_form_cancelled]" in err and "«Categoría de tarifa»" in err
    assert "nothing was issued" in err and "Traceback" not in err
    assert not out.exists()
    assert (_issued(office), IssuerStore.open(office).pending()) == before


@pytest.mark.parametrize("given", [["--ask", "--claims", CLAIMS], []])
def test_exactly_one_of_ask_and_claims(office: Path, tmp_path: Path, run: Run,
                                       monkeypatch: pytest.MonkeyPatch, given: list[str]) -> None:
    _stdin(monkeypatch, *EXAMPLE_ANSWERS, "s")
    code, _, err = run("issuer", "issue", *given, "--paper", "--out", str(tmp_path / "p.cred"),
                       "--home", str(office))
    assert code == 2 and "[usage_error]" in err and "--claims" in err and "--ask" in err
    assert "Nombre(s)" not in err  # refused before any question
    assert not (tmp_path / "p.cred").exists() and _issued(office) == 0


def test_a_mistyped_option_is_said_before_the_form(office: Path, tmp_path: Path, run: Run,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.cred").write_text("another resident's passport\n")
    _stdin(monkeypatch, *EXAMPLE_ANSWERS, "s")
    code, _, err = run("issuer", "issue", "--ask", "--paper", "--out", str(tmp_path / "p.cred"),
                       "--home", str(office))
    assert code == 2 and "[output_exists]" in err and "Nombre(s)" not in err


def test_help_says_what_a_pipe_gives_and_in_which_order(run: Run) -> None:
    code, out, _ = run("issuer", "issue", "--help")
    assert code == 0 and "--ask" in out
    text = " ".join(out.split())
    assert "then the passphrase" in text and "después la frase de acceso" in text


def test_a_validity_already_over_is_asked_again() -> None:
    """A year mistyped at the start ("2016" for 2026) would issue a passport every counter
    refuses: three years from it are not offered as the end; Enter there (as from a script
    that takes the default) is refused for what it makes, a validity over already, and both
    dates are asked again, saying why ("not optional: type it" named neither)."""
    mistyped = day("2016-11-22")
    over = form.default_until(date.fromisoformat(mistyped)).isoformat()  # 2019-11-21
    clerk = Clerk(*EXAMPLE_ANSWERS[:-2], mistyped, "", FROM, "", "s")  # both again
    doc = form.fill(clerk.ask, clerk.say, today=TODAY)
    assert doc is not None and (doc["valid_from"], doc["valid_until"]) == (FROM, UNTIL)
    assert clerk.codes() == ["claims_expired"]
    refused = [line for line in clerk.said if "[claims_expired]" in line]
    assert len(refused) == 1 and over in refused[0]
    until = [p for p in clerk.prompts if p.startswith("Válido hasta / Valid until")]
    assert "[" not in until[0] and "3 años" not in until[0]  # nothing to take with Enter
    assert until[-1].endswith(f" [{UNTIL}]: ")


# -- every date the store would refuse is asked again before the summary -------------------

def _offered(clerk: Clerk) -> list[date]:
    """The dates the form offered as defaults (what Enter takes), in its prompts."""
    return [date.fromisoformat(p[p.rindex("[") + 1:-3]) for p in clerk.prompts
            if p.startswith(("Válido desde", "Válido hasta")) and p.endswith("]: ")]


def _issuable(doc: dict[str, Any] | None, today: date = TODAY) -> dict[str, Any]:
    """``doc``, having checked that the store would issue it (``parse_claims``, then by the
    office's today: ``issuer.dates.untimely``)."""
    assert doc is not None
    assert untimely(parse_claims(doc), today) is None
    return doc


@pytest.mark.parametrize(("typed", "codes"), [
    # the reviewer's: the start's year mistyped, the end typed; both again, Enter, Enter
    ((day("2016-11-24"), UNTIL, "", ""), ["claims_invalid"]),
    # the start mistyped again with them, and an end within ten years of it, over already
    ((day("2016-11-24"), UNTIL, day("2016-11-24"), day("2019-11-23"), "", ""),
     ["claims_invalid", "claims_expired"]),
    # an end before the start, mended into one over already
    ((FROM, day("2026-11-01"), day("2016-11-24"), "", "", ""),
     ["claims_expired", "claims_expired"]),
    # an end ten years and more away, mended into one before the start
    ((FROM, day("2039-11-21"), FROM, day("2026-11-01"), "", ""),
     ["claims_invalid", "claims_expired"]),
    # a start before 1970 (2062 for 1962 the other way round), the end typed right
    ((day("1962-11-22"), UNTIL, "", ""), ["claims_invalid"]),
])
def test_the_summary_comes_only_with_dates_the_store_issues(typed: tuple[str, ...],
                                                             codes: list[str]) -> None:
    """Each refusal of the validity asks both dates again, saying why, and the answers given
    again are checked as the first ones were: a span mended into a validity over already is
    not taken to the summary (issued, the store refused it: everything typed lost)."""
    clerk = Clerk(*EXAMPLE_ANSWERS[:-2], *typed, "s")
    assert _issuable(_fill(clerk)) == example_claims()
    assert clerk.codes() == codes
    assert all(offered >= TODAY for offered in _offered(clerk)), _offered(clerk)
    # each refusal of the validity asks the start again (and then the end)
    starts = [p for p in clerk.prompts if p.startswith("Válido desde / Valid from")]
    assert len(starts) == 1 + sum(code.startswith("claims_") for code in codes)


def test_a_start_mistyped_ten_years_back_is_asked_again_not_only_the_end() -> None:
    """valid_from 2016 for 2026 and the end typed right: "more than ten years" is the start's
    mistake as much as the end's. Asked again, the start is offered as today and the end as
    three years from it, never the end three years from 2016, over already."""
    clerk = Clerk(*EXAMPLE_ANSWERS[:-2], day("2016-11-24"), UNTIL, "", "", "s")
    assert _fill(clerk) == example_claims()
    assert clerk.codes() == ["claims_invalid"]
    assert clerk.prompts[-3].startswith("Válido desde / Valid from")
    assert clerk.prompts[-3].endswith(f" [{FROM}]: ")
    assert clerk.prompts[-2].endswith(f" [{UNTIL}]: ")


def test_a_birth_date_after_a_mistyped_start_confirmed_asks_both_dates() -> None:
    """A child born in 2020 and a start mistyped as 2016: the birth date is asked again, and
    typed again as it was, it is the start that is wrong: both dates again, not the birth
    date for ever."""
    answers = list(EXAMPLE_ANSWERS[:-2])
    child = day("2020-01-01")
    birth = answers.index("1987-03-14")
    answers[birth] = child
    answers[answers.index("2015-06-01")] = child  # resident since birth
    # (an end within ten years of that start, not over: the store finds no fault in the span)
    clerk = Clerk(*answers, day("2016-11-30"), day("2026-11-29"), child, "", "", "s")
    claims = example_claims()
    assert _issuable(_fill(clerk)) == {**claims, "birth_date": child,
                                       "residence": {**claims["residence"], "since": child}}
    assert clerk.codes() == ["claims_invalid", "claims_invalid"]
    assert clerk.prompts[-4].startswith("Fecha de nacimiento / Birth date")
    assert clerk.prompts[-3].startswith("Válido desde / Valid from")


def test_a_replacing_passport_starting_after_today_asks_both_dates_again() -> None:
    """With ``issue --replaces``, the store refuses a new passport that starts after today
    (``replaces_before_start``): said by the form, both dates again, before the summary."""
    clerk = Clerk(*EXAMPLE_ANSWERS[:-2], day("2026-12-01"), "", "", "", "s")
    in_force = Replaced("ABCDEFGHIJKLM", TODAY - timedelta(days=700), TODAY + timedelta(days=30))
    doc = form.fill(clerk.ask, clerk.say, today=TODAY, replaces=in_force)
    assert doc == example_claims()
    assert clerk.codes() == ["replaces_before_start"]
    assert clerk.prompts[-3].endswith(f" [{FROM}]: ")
    # without --replaces, a start to come is the office's to choose
    clerk = Clerk(*EXAMPLE_ANSWERS[:-2], day("2026-12-01"), "", "s")
    assert _issuable(_fill(clerk))["valid_from"] == day("2026-12-01")
    assert clerk.codes() == []


@pytest.mark.parametrize(("typed", "code"), [
    ((day("2016-11-24"), UNTIL), "claims_invalid"),
    ((day("2016-11-24"), day("2019-11-23")), "claims_expired"),
])
def test_from_a_pipe_a_refused_validity_stops_the_form(typed: tuple[str, ...],
                                                       code: str) -> None:
    clerk = Clerk(*EXAMPLE_ANSWERS[:-2], *typed, "s")
    with pytest.raises(UsageError) as refused:
        form.fill(clerk.ask, clerk.say, today=TODAY, again=False)
    assert refused.value.code == code
    assert not any(line.startswith("Resumen") for line in clerk.said)


def test_the_command_asks_both_dates_again_for_a_start_mistyped(
        office: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewer's run at a terminal: the start's year mistyped, the end typed, then Enter
    for the dates asked again: issued, from the office's today for three years (it refused
    ``claims_expired`` after the confirmation, everything typed lost)."""
    _typed(monkeypatch, *EXAMPLE_ANSWERS[:-2], day("2016-11-24"), UNTIL, "", "", "s")
    out = tmp_path / "maria.cred"
    code, _, err = run("issuer", "issue", "--ask", "--paper", "--out", str(out),
                       "--home", str(office))
    assert code == 0, err
    assert "[claims_invalid]" in err and "[claims_expired]" not in err
    today = form.office_today(None)  # the office's zone: none given, UTC
    assert _claims_of(out, office) == {**example_claims(), "valid_from": today.isoformat(),
                                       "valid_until": form.default_until(today).isoformat()}


def test_a_birth_date_to_come_is_asked_again_at_once() -> None:
    """A year mistyped forward (2062 for 1962): said and asked again as the answer is given,
    not left for the checks between answers to name."""
    answers = list(EXAMPLE_ANSWERS)
    birth = answers.index("1987-03-14")
    to_come = (TODAY + timedelta(days=30)).isoformat()
    clerk = Clerk(*answers[:birth], to_come, *answers[birth:], "s")
    assert _fill(clerk) == example_claims()
    assert clerk.codes() == ["claims_date_future"]
    assert clerk.prompts[birth] == clerk.prompts[birth + 1]  # the same question again
