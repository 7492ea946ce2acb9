"""The bilingual form of ``pasaporte issuer issue --ask``: a resident's claims asked one by one
at the office counter, instead of a claims file written by hand.

The questions are made from ``schemas/claims.json`` (its groups' fields in their order, then
the validity window), so a field added there is asked too, with its labels. Nothing here
touches a terminal: answers come from an injected ``ask`` and everything shown goes out through
``say`` (``issuer.cli`` wires both to click), so the whole form runs in tests as a list of
lines. What it returns is a claims document, the shape of ``tests/examples/claims-*.json``,
which the command then validates with ``parse_claims`` exactly as it does a ``--claims`` file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from credential.claims import Claims, parse_claims
from credential.errors import PasaporteError, UsageError
from credential.text import check_utf8, folded, garbled, is_text, one_line, typed_forms
from issuer.bulk import SPREADSHEET_DATE, parse_flag
from issuer.dates import (
    FUTURE_DATES,
    Replaced,
    future_date,
    office_today,
    replaced_too_soon,
    untimely,
)
from issuer.store import catalog_key, check_catalog_name
from schemas import FieldSpec, Schema, schema

__all__ = ["DEFAULT_YEARS", "Ask", "Question", "Say", "answer", "default_until", "document",
           "fill", "office_today", "prompt", "questions", "shown"]

Ask = Callable[[str], str | None]
"""Shows a prompt and returns the line typed (without its line ending), or ``None`` when the
clerk ends the input (Ctrl-D, Ctrl-C, the end of a pipe)."""
Say = Callable[[str], None]
"""Shows a line (a heading, a menu, a reason to answer again, the summary)."""

# Nothing in the project set a passport's validity span before this form (the examples and the
# demo give three years); the last day is the one before the third anniversary, as theirs is.
DEFAULT_YEARS = 3
# The claims file's own dates, outside every group: the envelope's validity window. Its labels
# come from the schema's envelope; the other envelope entries are the office's, not the clerk's.
_WINDOW = ("valid_from", "valid_until")
# the questions whose dates are facts of the past (``issuer.dates.FUTURE_DATES``), by key
_PAST = {(claim if group == claim else f"{group}.{claim}"): (group, claim)
         for group, claim in FUTURE_DATES}

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SPREADSHEET_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")  # a year alone, or a date as a number
_CONFIRM = frozenset({"s", "si", "y", "yes"})  # after folding: "Sí", "SI", "Yes"
_CONFIRM_PROMPT = "¿Emitir? / Issue? [s/y/N] "
_NEW_NAME = ("  ← nombre nuevo del catálogo: irá en cada paquete de confianza, para siempre / "
             "new to the catalogue: goes into every trust bundle, for good")

_LETTER_FLAGS = {"s": True, "y": True, "n": False}
_HINTS = {
    "country": "código de 2 letras: MX, US / 2-letter code: MX, US",
    "date": "AAAA-MM-DD / YYYY-MM-DD",
    "bool": "sí/no / yes/no",
    "enum": "número o código / number or code",
}


@dataclass(frozen=True)
class Question:
    """One claim to ask for: where its answer goes in the claims document (``key``, dotted
    within a group, as ``parse_claims`` names a field it refuses), what the schema says of it,
    and the heading of the group it opens, if any."""

    key: str
    spec: FieldSpec
    heading: str | None = None

    @property
    def label(self) -> str:
        return f"{self.spec.label['es']} / {self.spec.label['en']}"


def questions(of: Schema | None = None) -> tuple[Question, ...]:
    """Every claim of the schema, in its order, then the validity window."""
    s = of or schema()
    asked: list[Question] = []
    for g in s.groups:
        # a group of one field says no more than that field's label ("Fecha de nacimiento")
        heading = f"— {g.label['es']} / {g.label['en']} —" if len(g.fields) > 1 else None
        for i, f in enumerate(g.fields):
            key = f"{g.name}.{f.name}" if g.json == "object" else f.name
            asked.append(Question(key, f, heading if i == 0 else None))
    for name in _WINDOW:
        asked.append(Question(name, FieldSpec(name, "date", s.envelope_labels[name])))
    return tuple(asked)


def default_until(start: date, years: int = DEFAULT_YEARS) -> date:
    """The last day of a validity of ``years`` from ``start``: the day before the anniversary
    (2026-11-22 → 2029-11-21); a 29 February's anniversary in a common year is 1 March."""
    try:
        anniversary = start.replace(year=start.year + years)
    except ValueError:
        anniversary = date(start.year + years, 3, 1)
    return anniversary - timedelta(days=1)


def _refused(code: str, question: Question, **detail: Any) -> UsageError:
    return UsageError(code, field_es=question.spec.label["es"],
                      field_en=question.spec.label["en"], **detail)


def _number(text: str) -> int | None:
    # ASCII only: "²".isdigit() is true and int() refuses it
    return int(text) if text.isascii() and text.isdigit() else None


def _text(question: Question, text: str) -> str:
    limit = question.spec.max
    if limit and len(text) > limit:
        raise _refused("issuer_form_text_long", question, max=limit, length=len(text))
    if not is_text(text):  # an arrow key on a terminal without line editing: "\x1b[D"
        raise _refused("issuer_form_text_invisible", question)
    if garbled(text):  # a UTF-8 terminal on a Latin-1 host: right on screen, "Ã±" recorded
        raise _refused("issuer_form_text_garbled", question)
    return text


def _date(question: Question, text: str) -> str:
    if _ISO_DATE.fullmatch(text):
        try:
            date.fromisoformat(text)
        except ValueError:
            raise _refused("issuer_form_date_none", question, answer=text) from None
        return text  # its range and its order with the others: parse_claims, on the whole
    if SPREADSHEET_DATE.fullmatch(text) and not _SPREADSHEET_NUMBER.fullmatch(text):
        # 01/12/1999 is 1 December in Mexicali and January 12 in Calexico: never guessed
        raise _refused("issuer_form_date_ambiguous", question, answer=one_line(text, 40))
    raise _refused("issuer_form_date", question, answer=one_line(text, 40))


def _enum(question: Question, text: str) -> str:
    values = question.spec.values
    number = _number(text)
    if number is not None and 1 <= number <= len(values):
        return values[number - 1].name
    typed = folded(text)  # the code or either label, in any case: "Student", "estudiante"
    for v in values:
        if typed in typed_forms(v.name, v.label):
            return v.name
    raise _refused("issuer_form_choice", question, count=len(values),
                   codes=", ".join(v.name for v in values))


def _catalog(question: Question, text: str, names: Sequence[str]) -> str:
    number = _number(text)
    if names and number is not None:
        if 1 <= number <= len(names):
            return names[number - 1]
        raise _refused("issuer_form_catalog", question, count=len(names))
    typed = _text(question, text)
    # A name the office already used, typed again without its accents or capitals, is that
    # name: a second spelling would be catalogued apart, under a code of its own.
    # (``catalog_key``: as the store matches a claims file's or a sheet's names)
    known = next((n for n in names if catalog_key(n) == catalog_key(typed)), None)
    if known is not None:
        return known
    # A new name goes into every bundle from then on: a slip ("s", a menu number with no menu
    # shown, a passphrase typed one prompt early) must not become a city or a library system.
    try:
        check_catalog_name(question.spec.catalog or question.key, typed)
    except UsageError:  # said as the form's, naming the question it re-asks
        raise _refused("issuer_form_catalog_name", question) from None
    return typed


def answer(question: Question, text: str, *, default: str | None = None,
           names: Sequence[str] = ()) -> Any:
    """The claims-file value of one answer (``names``: those the catalog of a catalog field
    already holds); a ``UsageError`` saying why in both languages if it is none. An empty
    answer takes ``default``, checked as if typed."""
    text = unicodedata.normalize("NFC", text.strip())
    if not text:
        if default is not None:
            text = default
        elif question.spec.optional:
            return None
        else:
            raise _refused("issuer_form_required", question)
    kind = question.spec.type
    if kind == "text":
        return _text(question, text)
    if kind == "catalog":
        return _catalog(question, text, names)
    if kind == "country":
        if not re.fullmatch(r"[A-Za-z]{2}", text):
            raise _refused("issuer_form_country", question)
        return text.upper()
    if kind == "date":
        return _date(question, text)
    if kind == "bool":
        # what the bulk CSV accepts (sí, si, no, true, false, yes, 1, 0…), and the letters the
        # form's own "[s/N]" teaches: s, n, y
        flag = _LETTER_FLAGS.get(folded(text), parse_flag(text))
        if not isinstance(flag, bool):
            raise _refused("issuer_form_flag", question)
        return flag
    if kind == "enum":
        return _enum(question, text)
    raise AssertionError(kind)  # schema types are closed


def prompt(question: Question, *, default: str | None = None,
           names: Sequence[str] = ()) -> str:
    """What the clerk reads before typing: both labels, how to answer, and the default that
    Enter takes, in brackets."""
    spec = question.spec
    hints = [_HINTS[spec.type]] if spec.type in _HINTS else []
    if spec.type == "catalog" and names:
        hints.append("número o nombre, uno nuevo también / number or name, a new one too")
    if spec.optional:
        hints.append("opcional: Enter lo deja vacío / optional: Enter leaves it empty")
    if question.key == "valid_until" and default is not None:
        hints.append(f"por omisión {DEFAULT_YEARS} años / default {DEFAULT_YEARS} years")
    text = question.label + (f" ({'; '.join(hints)})" if hints else "")
    return text + (f" [{default}]" if default is not None else "") + ": "


def _menu(question: Question, names: Sequence[str]) -> str | None:
    if question.spec.type == "enum":
        return "  " + "  ".join(f"{i}) {v.label['es']} / {v.label['en']}"
                                for i, v in enumerate(question.spec.values, 1))
    if question.spec.type == "catalog" and names:
        return "\n".join(f"  {i}) {n}" for i, n in enumerate(names, 1))
    return None


def shown(question: Question, value: Any) -> str:
    """An answer as the summary shows it, in both languages where it has words."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "sí / yes" if value else "no / no"
    if question.spec.type == "enum":
        v = question.spec.enum_by_name(value)
        return f"{v.label['es']} / {v.label['en']}" if v is not None else str(value)
    return str(value)


def document(asked: Sequence[Question], answers: Mapping[str, Any]) -> dict[str, Any]:
    """The answers as a claims document; an empty optional answer is left out, as a claims
    file leaves it."""
    doc: dict[str, Any] = {}
    for q in asked:
        group, dot, name = q.key.rpartition(".")
        into = doc.setdefault(group, {}) if dot else doc
        if answers.get(q.key) is not None:
            into[name] = answers[q.key]
    return doc


class _Cancelled(Exception):
    """The input ended (Ctrl-D, Ctrl-C, the end of a pipe) at ``where``: nothing to issue."""

    def __init__(self, where: Mapping[str, str]) -> None:
        super().__init__(where["en"])
        self.where = where


def fill(ask: Ask, say: Say, *, today: date,
         catalogs: Mapping[str, Sequence[str]] | None = None,
         again: bool = True, replaces: Replaced | None = None) -> dict[str, Any] | None:
    """Ask every claim, each again until its answer is valid, then check them together as the
    store will when issuing (``parse_claims``, then the office's today: a validity over
    already, a span of more than ten years, an end before the start re-ask both dates; a birth
    date after the validity start re-asks the birth date), again after every answer given
    again, and only then show a summary and ask to confirm. Returns the claims document, or
    ``None`` when there is nothing to issue (the input ended, or the answer to the
    confirmation was not yes), having said why. A refusal no question can mend is raised as
    it is.

    ``today``: the office's (``office_today``), for the validity's defaults and checks;
    ``catalogs``: the names each catalog already holds, in the order the office first used
    them; ``replaces``: the passport this one replaces (``issue --replaces``), which the new
    validity must not leave a gap after (``issuer.dates.replaced_too_soon``). Without
    ``again`` (answers from a pipe: a script's lines cannot change), a refused answer is raised,
    not asked again: asking again read the script's next line, at worst the passphrase that
    follows the form, and showed it in the next refusal."""
    asked = questions()
    by_key = {q.key: q for q in asked}
    window = tuple(by_key[key] for key in _WINDOW)
    answers: dict[str, Any] = {}

    def defaults(q: Question) -> str | None:
        if q.key == "valid_from":
            return today.isoformat()
        if q.key == "valid_until":  # from the start as answered
            start = answers.get("valid_from")
            return default_until(date.fromisoformat(start) if start else today).isoformat()
        return None

    def ask_until_valid(q: Question) -> None:
        names = tuple((catalogs or {}).get(q.spec.catalog, ())) if q.spec.catalog else ()
        default = defaults(q)
        # A start mistyped into the past ("2016" for 2026) makes three years from it over
        # already: such a default is not offered, but Enter still means it, and the validity
        # it makes is refused for what it is (over: a year mistyped), both dates asked again;
        # "type it" sent the clerk to the end date, and the start was never named.
        offered = (None if default is not None and q.key == "valid_until"
                   and date.fromisoformat(default) < today else default)
        menu = _menu(q, names)
        while True:
            if menu is not None:
                say(menu)
            typed = ask(prompt(q, default=offered, names=names))
            if typed is None:
                raise _Cancelled(q.spec.label)
            try:
                value = answer(q, check_utf8(typed, q.label), default=default, names=names)
                if q.key in _PAST:  # a birth to come: a year mistyped, asked again at once
                    refused = future_date(*_PAST[q.key], date.fromisoformat(value), today)
                    if refused is not None:
                        raise refused
                answers[q.key] = value
                return
            except UsageError as exc:
                if not again:
                    raise
                say(exc.diagnostics())

    def refusal() -> tuple[UsageError, tuple[Question, ...]] | None:
        """What issuing the answers would be refused for, as the store refuses it
        (``parse_claims``; then by the office's today, ``issuer.dates``), and the questions to
        ask again for it: both dates for the validity's, else the question named (none: one
        the form cannot mend). Run again after every answer given again, which may bring a
        refusal of its own (a span mended into a validity over), until none is left."""
        start, end = (date.fromisoformat(answers[key]) for key in _WINDOW)
        # The validity's first: one over already is a year mistyped in it (2016 for 2026, in
        # the start most often), not the birth date "after the start" parse_claims would blame.
        dates = Claims({}, start, end)
        timely = untimely(dates, today) or (
            None if replaces is None else replaced_too_soon(dates, replaces, today))
        if timely is not None:
            return timely, window
        try:
            claims = parse_claims(document(asked, answers))
        except UsageError as exc:
            field = str(exc.detail.get("field"))
            # a span of more than ten years, an end before the start, a start before 1970:
            # either date may be the one mistyped, so both, each with its default again
            if field in _WINDOW:
                return exc, window
            return exc, (by_key[field],) if field in by_key else ()
        timely = untimely(claims, today)
        if timely is None:
            return None
        # A birth or a "since" to come was asked again as it was answered; past that, only a
        # rule of ``untimely`` the form does not know, raised as it is if it names no date.
        future = []
        for key, (group, claim) in _PAST.items():
            value = claims.groups.get(group, {}).get(claim)
            if isinstance(value, date) and future_date(group, claim, value, today) is not None:
                future.append(by_key[key])
        return timely, tuple(future)

    say("Datos del residente; Ctrl-C o Ctrl-D cancela sin emitir nada / The resident's data; "
        "Ctrl-C or Ctrl-D cancels, nothing is issued")
    try:
        for q in asked:
            if q.heading is not None:
                say(q.heading)
            ask_until_valid(q)
        while (refused := refusal()) is not None:
            exc, again_asked = refused
            if not again_asked or not again:  # none can mend it, or answers from a pipe
                raise exc
            say(exc.diagnostics())
            was = {q.key: answers[q.key] for q in again_asked}
            for q in again_asked:
                ask_until_valid(q)
            if (exc.code == "claims_invalid" and was.keys() <= _PAST.keys()
                    and all(answers[key] == value for key, value in was.items())):
                # A birth date (or a "since") after the start, confirmed as it was: it is the
                # start that is mistyped (2016 for 2026, a child born in 2020), and the birth
                # date asked again and again would never mend it. Both dates again.
                say(exc.diagnostics())
                for q in window:
                    ask_until_valid(q)
        say("Resumen / Summary:")
        for q in asked:
            value = answers.get(q.key)
            # Marked before the confirmation, where the clerk can still say no: a name new to
            # its catalogue goes into every trust bundle for good (said after it, the notice
            # came with the passport already on its way).
            new = (bool(q.spec.catalog) and isinstance(value, str)
                   and catalog_key(value) not in {catalog_key(n) for n in
                                                  (catalogs or {}).get(q.spec.catalog, ())})
            say(f"  {q.label}: {shown(q, value)}{_NEW_NAME if new else ''}")
        while True:
            reply = ask(_CONFIRM_PROMPT)
            if reply is None:
                raise _Cancelled({"es": "¿Emitir?", "en": "Issue?"})
            try:  # "sí" from a Latin-1 terminal is no "no": a finished form was thrown away
                check_utf8(reply, "¿Emitir? / Issue?")
                break
            except UsageError as exc:
                if not again:
                    raise
                say(exc.diagnostics())
    except _Cancelled as cancelled:
        say(PasaporteError("issuer_form_cancelled", field_es=cancelled.where["es"],
                           field_en=cancelled.where["en"]).diagnostics())
        return None
    if folded(reply) not in _CONFIRM:
        say(PasaporteError("issuer_form_declined").diagnostics())
        return None
    return document(asked, answers)
