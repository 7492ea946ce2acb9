"""Public text that cannot act on a terminal: names and notices refuse controls, format
characters and line separators; error messages and ``entries`` show nothing a terminal obeys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest

from credential.errors import MalformedInput
from ledger import cli
from ledger.entries import entry_from_json, record_prefix
from ledger.store import LedgerStore
from tests.ledger.conftest import run_cli
from tests.ledger.helpers import valid_entries

KEY, NOTICE = valid_entries()[0], valid_entries()[7]
HOSTILE = {"C1 CSI": "a\x9b2Jb", "NEL": "a\x85b", "DEL": "a\x7fb", "ESC": "a\x1b[31mb",
           "RLO": "\u202eetroN", "isolate": "a\u2066b\u2069", "zero width": "a\u200bb",
           "BOM": "\ufeffa", "line separator": "a\u2028b", "paragraph": "a\u2029b",
           "tag": "a\U000e0041b", "CR": "a\rb", "tab": "a\tb"}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize(("base", "field"), [(NOTICE, "text"), (KEY, "city"), (KEY, "office"),
                                             (valid_entries()[6], "witness")],
                         ids=["notice", "city", "office", "witness"])
def test_hostile_text_is_refused(base: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(MalformedInput) as caught:
        entry_from_json({**base, field: text})
    assert caught.value.code == "ledger_bad_text" and field in caught.value.message["en"]
    assert caught.value.message["es"] != caught.value.message["en"]


@pytest.mark.parametrize("text", ["Acta 2025-03\nAcuerdo: rotar la llave", "Ciudad de México",
                                  "😀 ñ ü 中文 العربية", "a\u00a0b"])
def test_ordinary_text_is_accepted(text: str) -> None:
    assert entry_from_json({**NOTICE, "text": text}).fields()["text"] == text


def test_a_name_keeps_no_line_break() -> None:
    with pytest.raises(MalformedInput) as caught:
        entry_from_json({**KEY, "office": "Oficina\nCentro"})
    assert (caught.value.code, caught.value.detail) == ("ledger_bad_text", {"field": "office"})


def test_unknown_field_names_are_shown_inert() -> None:
    with pytest.raises(MalformedInput) as caught:
        entry_from_json({**NOTICE, "\x1b]0;owned\x07": 1, "\u202egiven_name": 2})
    for text in caught.value.message.values():
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "\\x1b]0;owned\\x07" in text and "\\u202egiven_name" in text


def test_append_refuses_a_hostile_notice_naming_the_line(home: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(NOTICE) + "\n" + json.dumps({**NOTICE, "text": "x\x9b2J"}) + "\n")
    capsys.readouterr()
    assert run_cli("append", "--file", str(path), "--home", str(home)) == 1
    err = capsys.readouterr().err
    assert err.startswith("[ledger_bad_line] Línea 2: Campo text inválido") and "Line 2" in err
    assert "\x9b" not in err
    with LedgerStore.open(home) as store:
        assert store.size() == 0
    assert run_cli("audit", "--home", str(home)) == 0


def test_entries_lines_are_inert() -> None:
    """Whatever a field lets through, ``entries`` writes nothing a terminal acts on, nothing a
    JSON Lines reader splits at, and the line still reads back as the same JSON."""
    value = {"text": "é\x9b2J\u202e\u2028\x1b😀"}
    line = cli._inert_line(json.dumps(value, ensure_ascii=False))
    assert json.loads(line) == value
    assert len(line.splitlines()) == 1 and "é" in line and "😀" in line
    assert not any(c in line for c in "\x9b\u202e\u2028\x1b")


def test_entries_names_an_unreadable_record(home: Path, store: LedgerStore,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror's copy of a log that wrote a record under older rules (here a notice with a
    control character, which today's rules refuse): the record chains, so a mirror copies it
    verbatim; ``entries`` names which record it cannot show, and why, in each language."""
    store.append(valid_entries(), cosign=False)
    head = store.head()
    old_rules = (record_prefix(8, head.last_hash) + cbor2.dumps(head.last_time + 1)
                 + cbor2.dumps("notice") + cbor2.dumps({"text": "a\x1b[2Jb"}))
    assert store.append_records([old_rules]) == 9  # copied as it is, as a mirror would
    capsys.readouterr()
    assert run_cli("entries", "--start", "3", "--home", str(home)) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["index"] for line in out.splitlines()] == [3, 4, 5, 6, 7]
    why = MalformedInput("ledger_bad_text", field="text").message
    assert err.startswith("[ledger_record_unreadable] El registro 8 ") and "Record 8 " in err
    assert why["es"] in err and why["en"] in err
    assert "\x1b" not in err
