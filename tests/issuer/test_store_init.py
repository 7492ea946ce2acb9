"""``IssuerStore.create`` (``issuer init``): the office folder and store it makes, and what an
init cut short leaves behind (nothing)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from credential.errors import StoreError
from issuer.store import IssuerStore
from tests.conftest import PASSPHRASE


def _create(home: Path) -> IssuerStore:
    return IssuerStore.create(home, city="Mexicali", country="MX", office="Centro",
                              code="MXMEX", passphrase=PASSPHRASE)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_folder_init_makes_is_owner_only(tmp_path: Path) -> None:
    _create(tmp_path / "new" / "issuer")
    assert _mode(tmp_path / "new" / "issuer") == 0o700


def test_an_operators_folder_keeps_its_permissions(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir()
    os.chmod(home, 0o750)
    _create(home)
    assert _mode(home) == 0o750
    # the store in it is still the office's alone, its journal files too
    stores = [p for p in home.iterdir() if p.name.startswith("issuer.db")]
    assert stores and all(_mode(p) == 0o600 for p in stores)


def test_an_init_cut_short_leaves_no_half_made_office(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "issuer"

    def interrupted(*_args: object, **_kwargs: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(IssuerStore, "_insert_office_key", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _create(home)
    assert not home.exists()  # made by this init, so taken away with it
    monkeypatch.undo()
    store = _create(home)  # not refused as an office that exists
    assert [k["status"] for k in store.office_keys()] == ["active"]


def test_an_init_cut_short_in_an_operators_folder_leaves_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "shared"
    home.mkdir()
    (home / "notes.txt").write_text("the operator's")

    def interrupted(*_args: object, **_kwargs: object) -> bytes:
        raise StoreError("store_full", what="issuer.db")

    monkeypatch.setattr(IssuerStore, "_insert_office_key", interrupted)
    with pytest.raises(StoreError) as raised:
        _create(home)
    assert raised.value.code == "store_full"  # the failure itself, not one of the clean-up
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]


def test_an_existing_store_is_never_made_again(tmp_path: Path) -> None:
    store = _create(tmp_path / "issuer")
    kids = [k["kid"] for k in store.office_keys()]
    with pytest.raises(StoreError) as refused:
        _create(tmp_path / "issuer")
    assert refused.value.code == "issuer_exists"
    assert [k["kid"] for k in IssuerStore.open(tmp_path / "issuer").office_keys()] == kids
