"""``credential.claims``: what the office may put in a passport, beyond the JSON Schema's
per-field rules (relations between dates)."""

from __future__ import annotations

from typing import Any

import pytest

from credential.claims import MAX_YEARS, parse_claims
from credential.errors import UsageError
from tests.factory import example_claims


def _refused(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(UsageError) as raised:
        parse_claims(doc)
    assert raised.value.code == "claims_invalid"
    return raised.value.message


def test_residency_is_verified_before_the_passport_starts_not_after() -> None:
    doc = example_claims()
    doc["residence"]["since"] = doc["valid_from"]
    assert parse_claims(doc).groups["residence"]["since"].isoformat() == doc["valid_from"]
    doc["residence"]["since"] = "2030-01-01"
    message = _refused(doc)
    assert "residence.since" in message["en"] and "after the validity start" in message["en"]
    assert "posterior al inicio de la vigencia" in message["es"]


def test_a_birth_date_after_the_start_reads_the_same_in_both_languages() -> None:
    doc = example_claims()
    doc["birth_date"] = "2030-01-01"
    message = _refused(doc)
    assert "after the validity start (a mistyped year?)" in message["en"]
    assert "posterior al inicio de la vigencia (¿un año mal escrito?)" in message["es"]


def test_a_refused_claim_is_named_by_its_label_in_each_language() -> None:
    """The Spanish half named the JSON key alone («residence.since»): a clerk reads "Residencia
    verificada desde" on the form and the card."""
    cases = {("residence", "since"): ("Residencia verificada desde", "Residency verified since"),
             ("birth_date",): ("Fecha de nacimiento", "Birth date"),
             ("valid_until",): ("Válido hasta", "Valid until")}
    for path, (es, en) in cases.items():
        doc = example_claims()
        *outer, last = path
        (doc[outer[0]] if outer else doc)[last] = "2019-02-30"
        message = _refused(doc)
        assert f"«{'.'.join(path)}» ({es}):" in message["es"], message
        assert f"“{'.'.join(path)}” ({en}):" in message["en"], message


def test_validity_is_at_most_ten_years() -> None:
    doc = example_claims()
    doc["valid_from"], doc["valid_until"] = "2028-02-29", "2038-02-28"  # ten years, leap days
    assert parse_claims(doc).valid_until.year == 2038
    doc["valid_until"] = "2099-12-31"  # a typo that would outlive every key
    message = _refused(doc)
    assert "valid_until" in message["en"] and f"more than {MAX_YEARS} years" in message["en"]


def test_a_misspelt_field_is_named_with_the_one_it_misspells() -> None:
    doc = example_claims()
    doc["famly_name"] = doc.pop("family_name")
    with pytest.raises(UsageError) as caught:
        parse_claims(doc)
    assert "famly_name" in caught.value.message["en"] and "(family_name?)" in caught.value.message[
        "en"] and "(¿family_name?)" in caught.value.message["es"]
    doc = example_claims()
    doc["residence"] = {**doc["residence"], "sinse": doc["residence"].pop("since")}
    with pytest.raises(UsageError) as caught:
        parse_claims(doc)
    assert "residence.sinse" in caught.value.message["en"] and "(since?)" in caught.value.message[
        "en"]
    doc = {**example_claims(), "notes": "x"}  # nothing like it: unknown, no guess
    with pytest.raises(UsageError) as caught:
        parse_claims(doc)
    assert "unknown field" in caught.value.message["en"] and "?" not in caught.value.message["en"]


def test_a_credential_id_names_the_rule_for_its_last_character() -> None:
    """Thirteen letters A–Z, as the message asked, and still refused: an id is 64 bits, its
    last character carries 4 of them, and half the letters are not such a character."""
    doc = example_claims()
    doc["credential_id"] = "CASEMXLABCDEE"
    assert parse_claims(doc).credential_id == "CASEMXLABCDEE"
    doc["credential_id"] = "CASEMXLABCDEF"
    message = _refused(doc)
    assert "the last one of A C E G I K M O Q S U W Y 2 4 6" in message["en"]
    assert "el último uno de A C E G I K M O Q S U W Y 2 4 6" in message["es"]


@pytest.mark.parametrize("typed", ["1990-05-01\n", "１９９０-05-01", "1990-5-1"])
def test_a_date_not_written_yyyy_mm_dd_is_said_to_be_that(typed: str) -> None:
    """A date read with its line end, or in other digits, is a date not written YYYY-MM-DD,
    not "no such date" (which sends the clerk looking for a 31 April)."""
    doc = example_claims()
    doc["birth_date"] = typed
    message = _refused(doc)
    assert "date formatted YYYY-MM-DD" in message["en"] and "no such date" not in message["en"]
