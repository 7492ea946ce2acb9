"""Shared fixtures: a CLI runner on the real ``pasaporte`` entry point, temporary role homes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline: CI machines are shared and noisy, and timing targets belong in
# `make bench`, never in a unit test. Property tests check behaviour only.
settings.register_profile("pasaporte", deadline=None)
settings.load_profile("pasaporte")

PASSPHRASE = "frase de prueba / test passphrase"


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("PASAPORTE_HOME", raising=False)
    yield PASSPHRASE


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, Path]:
    return {role: tmp_path / role for role in ("issuer", "wallet", "counter", "ledger")}


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Call the real ``pasaporte`` entry point in-process: (exit code, stdout, stderr)."""
    from pasaporte.cli import main

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call
