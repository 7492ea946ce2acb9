"""Shared fixtures: a CLI runner on the real ``pasaporte`` entry point, temporary role homes."""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline: CI machines are shared and noisy, and timing targets belong in
# `make bench`, never in a unit test. Property tests check behaviour only.
settings.register_profile("pasaporte", deadline=None)
settings.load_profile("pasaporte")

PASSPHRASE = "frase de prueba / test passphrase"
ROOT = Path(__file__).resolve().parents[1]

# A suite started in the background by a shell without job control (``make test &`` in a
# script, ``nohup``) inherits Ctrl-C ignored, and so would every program a test starts and then
# interrupts: the tests of what Ctrl-C does would see it do nothing. Set here (a handler, which
# a program started from this one gets back as the default), the inherited "ignored" stops
# with the test run; the programs themselves keep honouring it, as they should under nohup.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a stale compiled hot path (see setup.py): an extension built before its
    source was edited would shadow the edit and test old code. ``make test`` recompiles first and
    also asks (PASAPORTE_EXPECT_COMPILED=1) that the compiled modules be the ones under test."""
    # Each compiled module is a small shim; the code of all of them is in one shared library.
    library = max((p.stat().st_mtime for p in ROOT.glob("credential/_hotpath__mypyc*.so")),
                  default=0.0)
    for ext in [*ROOT.glob("credential/*.so"), *ROOT.glob("verifier/*.so")]:
        source = ext.with_name(ext.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > library:
            pytest.exit(f"the compiled {source.name} is older than its source: run "
                        "`make compile` (make test does it)", returncode=2)
    if os.environ.get("PASAPORTE_EXPECT_COMPILED") == "1":
        for name in ("verifier.engine", "credential.passport", "credential.cbor"):
            spec = importlib.util.find_spec(name)
            if spec is None or not (spec.origin or "").endswith(".so"):
                pytest.exit(f"{name} is not compiled: run `make compile`", returncode=2)


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
