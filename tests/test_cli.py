"""``pasaporte`` itself: every failure ends as a bilingual line and an exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from pasaporte.cli import main
from tests.conftest import Run


def _boom(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("something nobody foresaw")


def test_an_unforeseen_failure_is_a_bilingual_line_not_a_traceback(
        homes: dict[str, Path], passphrase: str, run: Run,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("issuer.store.IssuerStore.create", _boom)
    code, _, err = run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office",
                       "Centro", "--home", str(homes["issuer"]))
    assert code == 1 and "[internal_error]" in err and "RuntimeError" in err
    assert "Error inesperado" in err and "PASAPORTE_DEBUG=1" in err
    monkeypatch.setenv("PASAPORTE_DEBUG", "1")
    with pytest.raises(RuntimeError):  # the traceback, for whoever investigates
        main(["issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
              "--home", str(homes["issuer"])])


def test_a_new_passphrase_must_be_long_enough(homes: dict[str, Path], run: Run,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", "corta")
    for role, args in (("issuer", ["issuer", "init", "--city", "Mexicali", "--country", "MX",
                                   "--office", "Centro"]),
                       ("wallet", ["wallet", "init"])):
        code, _, err = run(*args, "--home", str(homes[role]))
        assert code == 2 and "passphrase_short" in err and "8" in err, role
        assert not homes[role].exists() or not any(homes[role].iterdir())


def test_a_city_name_without_latin_letters_needs_a_code(homes: dict[str, Path], passphrase: str,
                                                        run: Run) -> None:
    args = ["issuer", "init", "--city", "東京", "--country", "JP", "--office", "本庁",
            "--home", str(homes["issuer"])]
    code, _, err = run(*args)
    assert code == 2 and "--code" in err
    code, out, _ = run(*args, "--code", "JPTYO")
    assert code == 0 and "JPTYO" in out
