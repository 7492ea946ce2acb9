"""Every module's ``__all__`` names what it really defines (a stale export is a broken promise
to the code that imports it) and lists it once."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("schemas", "credential", "ledger", "issuer", "verifier", "wallet_cli", "pasaporte")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if ".migrations" not in info.name and not info.name.endswith("__main__"):
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_all_names_exist_once(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    assert len(set(exported)) == len(exported), name
    assert [n for n in exported if not hasattr(module, n)] == [], name
