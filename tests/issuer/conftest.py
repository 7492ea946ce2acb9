"""Fixtures for the issuer tests (``homes``, ``run`` and ``passphrase`` come from tests/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Run


@pytest.fixture
def office(homes: dict[str, Path], passphrase: str, run: Run) -> Path:
    """An initialised office home: Mexicali, MX, office Centro."""
    home = homes["issuer"]
    assert run("issuer", "init", "--city", "Mexicali", "--country", "MX", "--office", "Centro",
               "--home", str(home))[0] == 0
    return home
