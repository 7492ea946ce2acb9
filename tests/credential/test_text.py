"""credential.text: what shown text may hold, and the rest shown escaped."""

from __future__ import annotations

import pytest

from credential.text import escaped, is_text


@pytest.mark.parametrize("bad", ["\r", "\x1b[2K", "\x9b31m", "\u202eetroN", "a\u2028b",
                                 "a\u2029b", "\u00ad", "\ud800", "\x00"])
def test_what_a_terminal_would_act_on_is_not_text(bad: str) -> None:
    assert not is_text(f"Norte{bad}")
    assert "\\" in escaped(bad) and escaped(bad).isprintable()


def test_ordinary_text_is_text_and_shown_as_it_is() -> None:
    for good in ("María José Ñúñez", "São Paulo", "Oficina Centro", "東京", "😀"):
        assert is_text(good) and escaped(good) == good
    assert is_text("línea uno\nlínea dos", allowed="\n")
    assert not is_text("línea uno\nlínea dos")


def test_folded_compares_names_as_people_type_them() -> None:
    from credential.text import folded

    assert folded(" Clínica ") == folded("CLINICA") == "clinica"
    assert folded("Si\u0301") == folded("Sí") == "si"  # decomposed, as a Mac types it
    assert folded("Extraviado") != folded("extraviada")
