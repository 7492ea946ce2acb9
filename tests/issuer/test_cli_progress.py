"""Long office commands say on stderr, in both languages, what they are doing: a backup or a
restore of a large store works for seconds inside one call, and a silent terminal reads as a
hang."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from issuer import cli
from tests.conftest import Run
from tests.issuer.conftest import init_office


def test_backup_and_restore_say_what_they_are_doing(homes: dict[str, Path], passphrase: str,
                                                     run: Run, tmp_path: Path) -> None:
    init_office(run, homes["issuer"])
    copy = tmp_path / "office.bak"
    code, out, err = run("issuer", "backup", "--out", str(copy), "--home", str(homes["issuer"]))
    assert code == 0, err
    assert "Copiando y comprobando / Copying and checking" in err
    assert "Copiando" not in out  # stdout stays the result alone, for scripts

    code, out, err = run("issuer", "restore", "--from", str(copy), "--no-ledger",
                         "--home", str(tmp_path / "restored"))
    assert code == 0, err
    assert "Copiando y comprobando la copia / Copying and checking the backup" in err
    assert "Copiando" not in out


def test_a_failed_backup_says_why_after_what_it_was_doing(homes: dict[str, Path],
                                                           passphrase: str, run: Run,
                                                           tmp_path: Path) -> None:
    init_office(run, homes["issuer"])
    copy = tmp_path / "office.bak"
    copy.write_bytes(b"another file")
    code, _, err = run("issuer", "backup", "--out", str(copy), "--home", str(homes["issuer"]))
    assert code == 2  # as every --out naming a file already there
    assert err.index("Copying and checking") < err.index("[backup_exists]")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_phase_line_is_ended_once(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with cli._phase("Comprobando / Checking") as stop:
        stop()  # a progress of its own takes the line over
        terminal.write("[ledger]")
    assert terminal.getvalue() == "Comprobando / Checking…\n[ledger]"
