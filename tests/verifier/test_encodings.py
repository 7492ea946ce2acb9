"""A counter whose terminal is not UTF-8 (a Latin-1 locale, PuTTY's default, ``PYTHONIOENCODING``
set to latin-1 or cp1252), and a scanner log saved as UTF-16 or UTF-32 (Windows PowerShell's
``>``, Notepad's "Unicode"): every result shown, with the right exit status, and every code in
the log read as the same code."""

from __future__ import annotations

import codecs
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from credential.times import rfc3339
from tests.conftest import Run
from tests.factory import NOW, City, example_claims
from verifier.cli import _lines

# ---------------------------------------------------------------------------------------------
# A log in UTF-16 or UTF-32


def _counter(tmp_path: Path, city: City, service: str = "library") -> list[str]:
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    return ["verify", "--service", service, "--bundle", str(tmp_path / "b.cbor"),
            "--trust-root", str(tmp_path / "r.json"), "--at", rfc3339(NOW)]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                      "utf-32-be"])
def test_a_wide_log_reads_as_the_same_codes(tmp_path: Path, run: Run, encoding: str) -> None:
    """PowerShell's ``>`` writes UTF-16 with a byte order mark: read as UTF-8, every genuine
    passport in it was "not an urban passport"."""
    city = City()
    good = city.issue_text(None, example_claims())
    text = f"{good}\r\n\r\nPU1:not a passport\r\n{good}\r\n"
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE,
           "utf-32-be": codecs.BOM_UTF32_BE}.get(encoding, b"")  # "utf-16"/"utf-32" add theirs
    (tmp_path / "scans.log").write_bytes(bom + text.encode(encoding))
    code, out, err = run(*_counter(tmp_path, city), "--json", "--batch",
                         str(tmp_path / "scans.log"))
    results = [json.loads(line) for line in out.splitlines()]
    assert [(r["line"], r["decision"]) for r in results] == [
        (1, "accepted"), (3, "rejected"), (4, "accepted")], err
    assert results[1]["code"] != "accepted" and code == 1


class _Dribble(io.RawIOBase):
    """A pipe that gives one byte at a time (a slow scanner)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        out, self.data = self.data[:1], self.data[1:]
        return out

    read = read1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig", "utf-8"])
def test_a_wide_log_read_a_byte_at_a_time(encoding: str) -> None:
    """A unit or a mark cut between two reads is put together: the lines are the same."""
    text = "PU1:ABC\rPU1:DÉF\nÑ\r\n\r\n😀\n"
    got = list(_lines(_Dribble(text.encode(encoding)), "--batch"))  # type: ignore[arg-type]
    assert got == ["PU1:ABC", "PU1:DÉF", "Ñ", "", "😀"]


def test_noise_in_a_wide_log_rejects_its_line_only() -> None:
    """A lone surrogate (line noise) and a unit cut off at the end: U+FFFD in their lines."""
    data = codecs.BOM_UTF16_LE + "PU1:A\n".encode("utf-16-le") + b"\x00\xd8" + \
        "B\nPU1:C\n".encode("utf-16-le") + b"D"
    got = list(_lines(io.BytesIO(data), "--batch"))
    assert got == ["PU1:A", "\ufffdB", "PU1:C", "\ufffd"]


def test_a_log_not_wide_is_read_as_before() -> None:
    """Bytes that only start like a mark (0xFF, 0xFE: noise) are kept for their line."""
    assert list(_lines(io.BytesIO(b"\xff\nPU1:A\n"), "--batch")) == ["\ufffd", "PU1:A"]
    assert list(_lines(io.BytesIO(b"\xfe"), "--batch")) == ["\ufffd"]
    assert list(_lines(io.BytesIO(b""), "--batch")) == []


# ---------------------------------------------------------------------------------------------
# A terminal that is not UTF-8


def _verify(tmp_path: Path, encoding: str, *args: str,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``pasaporte verify`` in its own process, its standard streams in ``encoding`` (as a
    Latin-1 locale gives them; click's test runner would not)."""
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    return subprocess.run([sys.executable, "-m", "pasaporte.cli", *args], env=env,
                          input=stdin, capture_output=True, timeout=120, check=False,
                          cwd=tmp_path)


def _polish_claims() -> dict[str, Any]:
    claims = example_claims()
    claims["family_name"] = "Łukasiewicz Peña"  # Ł: not in Latin-1, nor in cp1252
    return claims


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_an_accepted_passport_on_a_latin1_terminal_is_accepted(tmp_path: Path,
                                                                encoding: str) -> None:
    """It was ``[internal_error]``, exit 1 (the ✔ could not be written): a kiosk script read
    every accepted passport as refused."""
    city = City()
    good = city.issue_text(None, example_claims())
    done = _verify(tmp_path, encoding, *_counter(tmp_path, city), "--text", good)
    out, err = done.stdout.decode(encoding), done.stderr.decode(encoding)
    assert done.returncode == 0, err
    assert out.startswith("OK Pasaporte válido. / Passport valid.  [accepted]"), out
    dash = "—" if encoding == "cp1252" else "-"  # Latin-1 has no dash: in ASCII
    assert f"Oficina Centro {dash} Mexicali, MX" in out
    assert "Derecho a biblioteca / Library eligible: Sí / Yes" in out  # Spanish as it is
    assert "internal_error" not in err and "\\u" not in out
    refused = _verify(tmp_path, encoding, *_counter(tmp_path, city), "--text", "PU1:nada")
    assert refused.returncode == 1 and refused.stdout.decode(encoding).startswith("X ")
    assert "internal_error" not in refused.stderr.decode(encoding)


@pytest.mark.parametrize("args", [
    (b"--service", b"cl\xednica"), (b"--service", b"library", b"--nonce", b"se\xf1al"),
    (b"--service", b"library", b"--counter", b"mesa-pe\xf1a")])
def test_a_choice_typed_on_a_latin1_terminal_is_named_as_such(
        tmp_path: Path, args: tuple[bytes, ...]) -> None:
    """"Unknown service: cl\\udcednica", listing Clínica as a service there is; a nonce was
    an internal error, exit 1: "rejected" to a kiosk script."""
    city = City()
    good = city.issue_text(None, example_claims())
    setup = _counter(tmp_path, city)[3:]  # (no --service)
    done = subprocess.run([sys.executable, "-m", "pasaporte", "verify", *args, *setup,
                           "--text", good], capture_output=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(b"[text_not_utf8] " + args[-2]), done.stderr


def test_a_name_outside_latin1_in_a_json_batch(tmp_path: Path) -> None:
    """``--batch --json`` died at a name with Ł, before its line and every one after: now every
    line is valid JSON in ASCII, the names exact."""
    city = City()
    lukas = city.issue_text(None, _polish_claims())
    good = city.issue_text(None, example_claims())
    (tmp_path / "scans.log").write_text(f"{lukas}\n{good}\n", encoding="utf-8")
    done = _verify(tmp_path, "latin-1", *_counter(tmp_path, city, "clinic"), "--json",
                   "--batch", "scans.log")
    assert done.returncode == 0, done.stderr.decode("latin-1")
    assert done.stdout.isascii()
    results = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    assert [(r["line"], r["decision"]) for r in results] == [(1, "accepted"), (2, "accepted")]
    names = {c["value"] for c in results[0]["claims"] if c["claim"] == "family_name"}
    assert names == {"Łukasiewicz Peña"}
    # the same on a UTF-8 terminal, readable as it is
    utf8 = _verify(tmp_path, "utf-8", *_counter(tmp_path, city, "clinic"), "--json",
                   "--batch", "scans.log")
    assert "Łukasiewicz Peña" in utf8.stdout.decode("utf-8")
    assert [json.loads(line) for line in utf8.stdout.decode("utf-8").splitlines()] == results


def test_a_name_outside_latin1_on_a_counter_screen(tmp_path: Path) -> None:
    city = City()
    lukas = city.issue_text(None, _polish_claims())
    done = _verify(tmp_path, "latin-1", *_counter(tmp_path, city, "clinic"), "--text", lukas)
    out = done.stdout.decode("latin-1")
    assert done.returncode == 0 and out.startswith("OK "), done.stderr.decode("latin-1")
    assert "\\u0141ukasiewicz Peña" in out  # seen, exact, and the ñ as it is


def test_a_scan_session_on_a_latin1_terminal_goes_on(tmp_path: Path) -> None:
    """It died after the first scan (the clerk saw no result, the second was never read)."""
    city = City()
    good = city.issue_text(None, example_claims())
    done = _verify(tmp_path, "latin-1", *_counter(tmp_path, city), "--scan",
                   stdin=f"{good}\nPU1:nada\n{good}\n".encode())
    out, err = done.stdout.decode("latin-1"), done.stderr.decode("latin-1")
    assert done.returncode == 0, err
    assert [line.split(" ", 1)[0] for line in out.splitlines()
            if line and not line.startswith(" ")] == ["OK", "X", "OK"]
    assert "Escaneos / Scans: 3 - aceptados / accepted: 2, rechazados / rejected: 1" in err
    assert "internal_error" not in err
