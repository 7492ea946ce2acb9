"""Standard output and error on a terminal that is not UTF-8 (``pasaporte.cli._standard_streams``):
no command fails to write its own output because of the terminal's encoding. What the encoding
lacks is written as an ASCII mark (✔ OK, — -, → ->) or as its JSON escape (``\\u0141``)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.factory import EXAMPLES

PASAPORTE = Path(sys.executable).with_name("pasaporte")

_PRINT = (
    "import sys\n"
    "from pasaporte.cli import _standard_streams\n"
    "_standard_streams()\n"
    "text = sys.argv[1]\n"
    "print(text)\n"
    "print(text, file=sys.stderr)\n"
)


def _printed(text: str, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    done = subprocess.run([sys.executable, "-c", _PRINT, text],
                          env={**os.environ, **env}, capture_output=True, timeout=60,
                          check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(("encoding", "expected"), [
    ("latin-1", "OK Peña - \\u0141ukasiewicz -> \\ud83d\\ude00 «Sí» ...\n".encode("latin-1")),
    ("cp1252", "OK Peña — \\u0141ukasiewicz -> \\ud83d\\ude00 «Sí» …\n".encode("cp1252")),
    ("utf-8", "✔ Peña — Łukasiewicz → 😀 «Sí» …\n".encode()),
])
def test_what_the_terminal_lacks_is_written_in_ascii(encoding: str, expected: bytes) -> None:
    text = "✔ Peña — Łukasiewicz → 😀 «Sí» …"
    code, out, err = _printed(text, {"PYTHONIOENCODING": encoding})
    assert (code, out, err) == (0, expected, expected)


def test_a_byte_that_is_no_text_is_written_back_or_escaped() -> None:
    """A file name's byte that is not UTF-8 (an argument decoded with surrogateescape): written
    back as its byte where Python would (a C locale), escaped on a strict stream; never an
    error."""
    name = os.fsdecode(b"Pe\xf1a.cred")
    code, out, err = _printed(name, {"PYTHONIOENCODING": "utf-8:surrogateescape"})
    assert (code, out) == (0, b"Pe\xf1a.cred\n")
    code, out, err = _printed(name, {"PYTHONIOENCODING": "utf-8:strict"})
    assert (code, out, err) == (0, b"Pe\\udcf1a.cred\n", b"Pe\\udcf1a.cred\n")


def test_a_handler_the_user_chose_stays() -> None:
    code, out, _ = _printed("✔ Ł", {"PYTHONIOENCODING": "latin-1:replace"})
    assert (code, out) == (0, b"? ?\n")


def test_bulk_issuance_on_a_latin1_terminal_ends_well(homes: dict[str, Path], passphrase: str,
                                                      run: Run, tmp_path: Path) -> None:
    """It said "unexpected error", exit 1, after issuing every passport (the → of its summary
    could not be written): a clerk would issue them again."""
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    out = tmp_path / "print"
    done = subprocess.run(
        [str(PASAPORTE), "issuer", "bulk", str(EXAMPLES / "residents-sample.csv"), "--out-dir",
         str(out), "--home", str(home)],
        env={**os.environ, "PYTHONIOENCODING": "latin-1"}, capture_output=True, timeout=300,
        check=False)
    said = done.stdout.decode("latin-1") + done.stderr.decode("latin-1")
    assert done.returncode == 0, said
    assert "internal_error" not in said
    assert "3 pasaportes emitidos / passports issued -> " in said
    assert len(list(csv.DictReader(io.StringIO((out / "index.csv").read_text())))) == 3


def test_latin1_typed_into_a_strict_utf8_session_is_named_not_an_error(
        homes: dict[str, Path], passphrase: str, run: Run) -> None:
    """A UTF-8 locale other than C.UTF-8 decodes standard input strictly: a name typed on a
    Latin-1 terminal was an unexpected error, exit 1, and the whole form lost, before the
    form's own check could name it."""
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    answers = (b"Mexicali\nMX\n2015-06-01\ns\nBibliotecas de Mexicali\nstudent\nn\n\nAna\n"
               b"N\xfa\xf1ez\n1990-01-01\nes\n\n\ns\n")
    done = subprocess.run(
        [str(PASAPORTE), "issuer", "issue", "--ask", "--paper", "--out",
         str(home.parent / "p.txt"), "--home", str(home)],
        input=answers, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
        capture_output=True, timeout=120, check=False)
    said = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "[text_not_utf8] Apellido(s) / Family names" in said, said
    assert "internal_error" not in said


def test_a_passphrase_typed_on_a_latin1_terminal_is_named_as_such(
        homes: dict[str, Path], passphrase: str, run: Run, tmp_path: Path) -> None:
    """The hidden prompt reads the terminal itself, strictly: "contraseña" from a Latin-1
    PuTTY was an unexpected error, whatever standard input's decoding."""
    import pty
    import time

    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    err = tmp_path / "err.txt"
    env = {k: v for k, v in os.environ.items() if k != "PASAPORTE_PASSPHRASE"}
    pid, main = pty.fork()
    if pid == 0:  # the office command, its terminal the pty
        try:
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
            os.execve(str(PASAPORTE), [str(PASAPORTE), "issuer", "backup", "--out",
                                       str(tmp_path / "b.bak"), "--home", str(home)], env)
        finally:
            os._exit(127)
    try:
        deadline, shown = time.monotonic() + 60, b""
        while b"Passphrase" not in shown:  # the hidden prompt is written to the terminal
            assert time.monotonic() < deadline, "never asked"
            shown += os.read(main, 4096)
        os.write(main, b"contrase\xf1a\n")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(main)
    said = err.read_text("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 2 and "[passphrase_not_utf8]" in said, said


def test_good_utf8_on_an_ascii_host_is_taken_as_typed(tmp_path: Path) -> None:
    """A C locale with UTF-8 mode off hands every non-ASCII byte over as a surrogate escape,
    good UTF-8 too: "Ciudad Juárez" and a passphrase with an "ñ" were refused as not UTF-8, an
    office locked out on such a host. Read again as UTF-8 they are what was typed: the same
    office opens with the same passphrase on a UTF-8 host."""
    ascii_host = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0",
                  "PASAPORTE_PASSPHRASE": "contraseña-ñoña"}
    home = tmp_path / "office"
    done = subprocess.run([str(PASAPORTE), "issuer", "init", "--city", "Ciudad Juárez",
                           "--country", "MX", "--office", "Oficina Núñez", "--home", str(home)],
                          env=ascii_host, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    utf8_host = {**os.environ, "PASAPORTE_PASSPHRASE": "contraseña-ñoña"}
    done = subprocess.run([str(PASAPORTE), "issuer", "root", "--out", str(tmp_path / "r.json"),
                           "--home", str(home)], env=utf8_host, capture_output=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert '"city": "Ciudad Juárez"' in (tmp_path / "r.json").read_text(encoding="utf-8")
    done = subprocess.run([str(PASAPORTE), "issuer", "issue", "--claims",
                           str(EXAMPLES / "claims-mexicali.json"), "--paper", "--out",
                           str(tmp_path / "p.txt"), "--home", str(home)],
                          env=utf8_host, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr  # the passphrase typed there unseals here
