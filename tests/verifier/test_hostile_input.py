"""A counter facing junk and tricks: a scanner log ended by lone CRs, a code whose signed
audience tries to rewrite the clerk's screen, policy files that say one thing twice or ask for
a zero window, and a scan session cut short by input that is no lines at all."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import BinaryIO, cast

import nacl.signing
import pytest

from credential.errors import UsageError
from credential.text import escaped as printable
from credential.times import rfc3339
from tests.conftest import Run
from tests.factory import NOW, City, example_claims, presentation
from verifier.cli import MAX_LINE, MAX_SKIP, _lines

# What the clerk would read as the first line of the result, written over the refusal.
FORGED = "x\r\x1b[2K✔ Pasaporte válido. / Passport valid. [accepted]\n"


def _counter(tmp_path: Path, city: City, service: str = "library") -> list[str]:
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    return ["verify", "--service", service, "--bundle", str(tmp_path / "b.cbor"),
            "--trust-root", str(tmp_path / "r.json"), "--at", rfc3339(NOW)]


class _Trickle(io.RawIOBase):
    """A pipe that hands over one byte per read: every line break, CRLF and byte order mark
    falls across a read boundary somewhere."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        head, self._data = self._data[:1], self._data[1:]
        return head


def test_a_log_ended_by_lone_crs_keeps_every_code(tmp_path: Path, run: Run) -> None:
    """A scanner set to end each code with CR (the Enter key), logged without a terminal in
    between: no LF at all. Each code is still its own line, not one rejected run-on."""
    city = City()
    good = city.issue_text(None, example_claims())
    (tmp_path / "scans.log").write_bytes(f"{good}\r{good}\r\r{good}\r".encode())
    code, out, err = run(*_counter(tmp_path, city), "--json", "--batch",
                         str(tmp_path / "scans.log"))
    results = [json.loads(line) for line in out.splitlines()]
    assert [(r["line"], r["code"]) for r in results] == [(1, "accepted"), (2, "accepted"),
                                                          (4, "accepted")], err
    assert code == 0


@pytest.mark.parametrize("trickle", [False, True])
def test_line_ends_and_bounds_whatever_the_reads(trickle: bool) -> None:
    data = b"".join([
        b"\xef\xbb\xbfA\r\n",  # Notepad: BOM, CRLF
        b"B\rC\n",  # a lone CR, then LF
        b"\r\n",  # blank
        b"D" * (MAX_LINE + 1) + b"\r",  # too long, ended by CR: the next line is whole
        b"E\r\n",
        b"F",  # no line end at all
    ])
    stream = cast(BinaryIO, _Trickle(data)) if trickle else io.BytesIO(data)
    lines = list(_lines(stream, "--batch"))
    assert lines == ["A", "B", "C", "", None, "E", "F"]


def test_a_run_on_line_is_still_cut_off_with_crs_about() -> None:
    endless = io.BytesIO(b"A\r" + b"\0" * (2 * MAX_SKIP) + b"\rB\n")
    lines = _lines(endless, "--scan")
    assert next(lines) == "A"
    with pytest.raises(UsageError) as err:
        next(lines)
    assert err.value.code == "batch_not_lines" and "--scan" in err.value.message["en"]


def test_a_crafted_audience_cannot_rewrite_the_clerks_screen(tmp_path: Path, run: Run) -> None:
    """The audience is what the holder's key signed, so anyone with a passport (one revoked,
    say) can put a CR and escape sequences in it: the code is refused for its audience, and
    the refusal must stay what the clerk reads, on screen and in JSON."""
    city = City()
    holder = nacl.signing.SigningKey.generate()
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", ["residence", "library"], audience=FORGED)
    code, out, _ = run(*_counter(tmp_path, city), "--text", text)
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("✘ ") and first.endswith("[wrong_audience]")
    assert not any(unicodedata.category(c) == "Cc" for c in out.replace("\n", ""))
    assert "\\r\\x1b[2K" in first  # shown, inert, so the clerk sees something odd was there
    code, out, _ = run(*_counter(tmp_path, city), "--json", "--text", text)
    message = json.loads(out)["message"]
    assert code == 1 and all(m.isprintable() for m in message.values())


@pytest.mark.parametrize(("text", "shown"), [
    ("library:desk-3", "library:desk-3"),
    ("María José Núñez", "María José Núñez"),
    ("a\u202eb\u2028c\x9bd", "a\\u202eb\\u2028c\\x9bd"),  # bidi override, line sep., C1 CSI
])
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize(("doc", "said"), [
    ('{"freshness_seconds": 0}', "freshness_seconds: a whole number of seconds, from 1 to "),
    ('{"status_max_age_days": 0}', "status_max_age_days: a whole number of days, from 1 to 366"),
    ('{"paper": "reject", "paper": "accept"}', 'gives the key "paper" twice'),
    # ASCII files: not "not UTF-8 JSON", an encoding to look for that is not there
    ('{"paper": ' + "[" * 5000 + "]" * 5000 + "}", "JSON nested too deeply"),
    ('{"freshness_seconds": 1' + "0" * 200 + "}", "number of more than 100 digits"),
    ('{"paper": "reject",}', "not valid JSON"),
])
def test_a_policy_file_mistake_is_named_as_it_is(tmp_path: Path, run: Run, doc: str,
                                                  said: str) -> None:
    """Refused for what is wrong with it: not "0 to a year" and then 0 refused for another
    reason, not "not UTF-8 JSON" for a key given twice."""
    city = City()
    (tmp_path / "policy.json").write_text(doc)
    code, _, err = run(*_counter(tmp_path, city), "--policy", str(tmp_path / "policy.json"),
                       "--text", "PU1:")
    assert code == 2 and said in err, err
    es = err.split(" / This")[0]
    assert "whole number" not in es and "twice" not in es


def test_a_zero_clock_skew_is_allowed(tmp_path: Path, run: Run) -> None:
    city = City()
    (tmp_path / "policy.json").write_text('{"clock_skew_seconds": 0}')
    code, _, err = run(*_counter(tmp_path, city), "--policy", str(tmp_path / "policy.json"),
                       "--text", city.issue_text(None, example_claims()))
    assert code == 0, err


def test_a_scan_session_stopped_by_its_input_still_counts(tmp_path: Path) -> None:
    """Input that is no lines (a device piped in by mistake) ends the session with a usage
    error that names --scan, after the count of what was scanned."""
    city = City()
    (tmp_path / "b.cbor").write_bytes(city.bundle())
    (tmp_path / "r.json").write_text(city.root.to_json())
    good = city.issue_text(None, example_claims()).encode()
    proc = subprocess.run(
        [sys.executable, "-m", "pasaporte.cli", "verify", "--service", "library", "--bundle",
         str(tmp_path / "b.cbor"), "--trust-root", str(tmp_path / "r.json"), "--at",
         rfc3339(NOW), "--scan", "--json"],
        input=good + b"\n" + bytes(2 * MAX_SKIP), capture_output=True, timeout=120, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert [json.loads(line)["code"] for line in proc.stdout.splitlines()] == ["accepted"]
    assert "Escaneos / Scans: 1" in err and "[batch_not_lines]" in err
    assert "La entrada de --scan" in err and "The --scan input" in err
