"""The one exception hierarchy: every phrase our code gives an error as its ``reason`` (or
``status``) reads in Spanish in the Spanish half of the message."""

from __future__ import annotations

import ast
import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from credential.errors import LedgerError, MalformedInput, message_catalog, spanish

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "credential", "ledger", "issuer", "verifier", "wallet_cli", "pasaporte")
ERRORS = {"PasaporteError", "Rejection", "MalformedInput", "StoreError", "LedgerError",
          "UsageError"}
TABLE = json.loads((ROOT / "schemas/messages/reasons/es.json").read_text(encoding="utf-8"))


def _template(node: ast.expr) -> str | None:
    """The phrase a reason expression makes, with ``{}`` where it varies; ``None`` when it is
    not a phrase of ours (a variable: an exception's text, a path)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        return (left or "{}") + (right or "{}") if left or right else None
    if isinstance(node, ast.Subscript):  # "…"[:200]
        return _template(node.value)
    return None


def _phrases() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "claims.py":  # its _bad takes a Spanish and an English text
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                exprs: list[ast.expr] = []
                if name in ERRORS:
                    exprs = [k.value for k in node.keywords if k.arg in ("reason", "status")]
                elif name == "_bad" and node.args:
                    exprs = [node.args[-1]]
                elif name == "add" and path.name == "audit.py" and len(node.args) == 2:
                    exprs = [node.args[1]]
                for expr in exprs:
                    phrase = _template(expr)
                    if phrase is not None and phrase.strip("{}"):
                        yield where, phrase


def test_every_reason_of_ours_has_spanish() -> None:
    phrases = list(_phrases())
    assert len(phrases) > 100  # the scan finds what it is meant to
    missing = sorted({f"{where}: {phrase!r}" for where, phrase in phrases if phrase not in TABLE})
    assert missing == []


def test_templates_keep_their_parts() -> None:
    for en, es in TABLE.items():
        assert en.count("{}") == es.count("{}"), en
        assert es != en or en in ("NaN or Infinity", "checkpoint {}: {}", "checkpoint: {}"), en


@pytest.mark.parametrize(("en", "es"), [
    ("not CBOR", "no es CBOR"),
    ("record 12 is missing", "falta el registro 12"),  # not "record {} missing" with "12 is"
    ("checkpoint 7: malformed cosignature", "checkpoint 7: cosignatura mal formada"),
    ("checkpoint 7: not UTF-8", "checkpoint 7: no es UTF-8"),  # the inner phrase as well
    ("[Errno 28] No space left on device: '/datos/x'",
     "[Errno 28] no queda espacio en el dispositivo: '/datos/x'"),
    ("<urlopen error [Errno 111] Connection refused>",
     "<error de conexión: [Errno 111] conexión rechazada>"),
    ("<urlopen error timed out>", "<error de conexión: se agotó el tiempo de espera>"),
    ("[Errno -2] Name or service not known", "[Errno -2] nombre o servicio desconocido"),
    ("Invalid value for '--batch': '/tmp': Is a directory",
     "valor no válido para '--batch': '/tmp': es un directorio"),
    # SQLite's own words for a file that is no store (a wrong file given to restore --from)
    ("file is not a database", "el archivo no es una base de datos"),
    ("[Errno 99] Cannot assign requested address",  # serve --host not this machine's
     "[Errno 99] la dirección no es de esta máquina"),
    ("[Errno 9999] Something new", "[Errno 9999] Something new"),  # unknown: kept as it is
    ("/tmp/[Errno 13] not the OS's", "/tmp/[Errno 13] not the OS's"),  # only the OS's texts
])
def test_spanish(en: str, es: str) -> None:
    assert spanish(en) == es


@pytest.mark.parametrize("name", ["ENOENT", "EACCES", "ENOSPC", "EROFS", "EISDIR", "ENOTDIR",
                                  "EEXIST", "EDQUOT", "EIO", "ECONNREFUSED"])
def test_the_operating_systems_texts_read_in_spanish(name: str) -> None:
    """What a clerk meets most (a full disk, a read-only folder, a node that is down) reads in
    Spanish in the Spanish half, as ``exc.strerror`` and as ``str(exc)`` give it."""
    number = getattr(errno, name)
    text = os.strerror(number)
    assert spanish(text) not in (text, "")
    assert spanish(str(OSError(number, text, "/x"))) == f"[Errno {number}] {spanish(text)}: '/x'"


def test_messages_read_in_one_language_each() -> None:
    err = LedgerError("ledger_bad_param", name="end", reason="end is before start")
    assert err.message == {"es": "Parámetro end inválido: end es anterior a start.",
                           "en": "Invalid parameter end: end is before start."}
    bad = MalformedInput("ledger_bad_entry", reason="unknown fields: colour")
    assert "campos desconocidos: colour" in bad.message["es"]
    assert "unknown fields: colour" in bad.message["en"]


def test_every_message_code_is_used() -> None:
    """A catalog entry that no code raises is a message no one will ever read: a code renamed
    in one place and not the other."""
    source = "\n".join(path.read_text(encoding="utf-8") for package in PACKAGES
                       for path in (ROOT / package).rglob("*.py"))
    words = set(re.findall(r"\w+", source))
    unused = sorted(code for code in message_catalog() if code not in words)
    assert unused == []
