"""Fixtures for the wallet tests: a real issuing city (root key, office key, signed trust bundle,
status lists), a counter ``Verifier`` trusting it, and a temporary wallet home.

Nothing is mocked: credentials are signed with ``credential.passport.issue`` from the shared
example claims, and presentations are checked by ``verifier.engine.Verifier``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pasaporte.cli import cli
from tests.factory import EXAMPLES, City
from wallet_cli.store import Wallet

PASSPHRASE = "correct horse battery staple"


# One date for the whole run: a test comparing a claims file with one made earlier (a passport's
# last day) must not see them a day apart because midnight passed in between.
_TODAY = datetime.now(UTC).date()


def example_claims(city: str, **overrides: Any) -> dict[str, Any]:
    """An example claims file, its validity moved around today so the tests do not age."""
    doc: dict[str, Any] = json.loads((EXAMPLES / f"claims-{city}.json").read_text("utf-8"))
    doc["valid_from"] = (_TODAY - timedelta(days=30)).isoformat()
    doc["valid_until"] = (_TODAY + timedelta(days=365)).isoformat()
    doc.update(overrides)
    return doc


def make_city(city: str, country: str, code: str) -> City:
    """A city issuing on the real clock, with names in clear (no catalogue codes): the wallet
    reads its own claims back without a trust bundle."""
    return City(city=city, country=country, code=code, now=int(time.time()) - 60,
                catalogued=False)


@pytest.fixture(scope="session")
def mexicali() -> City:
    return make_city("Mexicali", "MX", "mx-mxl")


@pytest.fixture(scope="session")
def calexico() -> City:
    return make_city("Calexico", "US", "us-cxl")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The passphrase comes from the environment; no stray home leaks in from the machine."""
    monkeypatch.setenv("PASAPORTE_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("PASAPORTE_HOME", raising=False)


@pytest.fixture
def wallet_home(tmp_path: Path, env: None) -> Path:
    """A temporary, initialised wallet home."""
    home = tmp_path / "wallet"
    Wallet.create(home, PASSPHRASE)
    return home


@pytest.fixture
def wallet(wallet_home: Path) -> Wallet:
    return Wallet.open(wallet_home)


Run = Callable[..., Result]


@pytest.fixture
def run(env: None) -> Iterator[Run]:
    """``pasaporte …`` through click's test runner, stdout and stderr kept apart."""
    runner = CliRunner()

    def invoke(*args: str | Path, input: str | None = None) -> Result:
        return runner.invoke(cli, [str(a) for a in args], input=input)

    yield invoke


def today() -> date:
    return datetime.now(UTC).date()
