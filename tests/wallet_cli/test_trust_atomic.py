"""``wallet trust`` cut short while it stores a city's root and bundle: a full disk leaves what is
trusted exactly as it was, as the refusal says; a killed process leaves the old pair or the new
one (a city trusted anew: at worst its root, named as missing its bundle, with the fix), never a
bundle called damaged that is not there; and the next trust removes the hidden files left."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from credential.home import StagedFile
from pasaporte.cli import main
from tests.factory import City
from tests.wallet_cli.conftest import Run
from wallet_cli.store import Wallet

REPO = Path(__file__).resolve().parents[2]

ENOSPC = os.strerror(errno.ENOSPC)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file in the trust folder, hidden ones too: what is trusted, byte for byte."""
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def _given(tmp_path: Path, city: City, version: int) -> list[str]:
    """The ``wallet trust`` arguments for ``city``'s bundle ``version`` and its root."""
    bundle, root = tmp_path / f"{city.code}-v{version}.cbor", tmp_path / f"{city.code}.json"
    bundle.write_bytes(city.bundle(version=version))
    root.write_text(city.root.to_json(), "utf-8")
    return ["--bundle", str(bundle), "--trust-root", str(root)]


# What is trusted before, what the command gives, and the file whose storing fails: a city
# trusted anew; a trusted city's newer bundle; and that with a second city, stored after it.
_SCENARIOS = {
    "first": ([], ["MXMEX"], "MXMEX.bundle"),
    "replace": (["MXMEX"], ["MXMEX"], "MXMEX.bundle"),
    "replace and add": (["MXMEX"], ["MXMEX", "MXTIJ"], "MXTIJ.bundle"),
}


@pytest.fixture
def cities() -> dict[str, City]:
    return {"MXMEX": City(), "MXTIJ": City(city="Tijuana", code="MXTIJ")}


@pytest.mark.parametrize("at", ["write", "rename"])
@pytest.mark.parametrize("scenario", sorted(_SCENARIOS))
def test_a_full_disk_leaves_what_is_trusted_as_it_was(
        wallet_home: Path, tmp_path: Path, cities: dict[str, City],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        scenario: str, at: str) -> None:
    """The root was stored, then the bundle's write failed (ENOSPC): the root stood without a
    bundle, later called damaged, under a refusal saying nothing was left half-written."""
    held, given, failing = _SCENARIOS[scenario]
    wallet = Wallet.open(wallet_home)
    for code in held:
        wallet.trust([cities[code].bundle()], [cities[code].root.to_json().encode()])
    trust_dir = wallet.trust_dir
    before = _files(trust_dir)
    args = [a for code in given for a in _given(tmp_path, cities[code], 2)]

    if at == "write":  # the disk fills while the file is written under its hidden name
        write = StagedFile.write

        def full(self: StagedFile, data: bytes) -> None:
            if self.target.name != failing:
                return write(self, data)
            write(self, data[:16])
            raise OSError(errno.ENOSPC, ENOSPC, str(self.target))

        monkeypatch.setattr(StagedFile, "write", full)
    else:  # or when it is renamed into place (a folder that must grow)
        replace = os.replace

        def refused(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                    **kwargs: object) -> None:
            if Path(dst).name == failing:
                raise OSError(errno.ENOSPC, ENOSPC, str(src), None, str(dst))
            replace(src, dst)

        monkeypatch.setattr(os, "replace", refused)
    capsys.readouterr()
    status = main(["wallet", "trust", *args, "--home", str(wallet_home)])
    out, err = capsys.readouterr()
    monkeypatch.undo()

    assert (status, out) == (1, ""), err
    assert "[file_error]" in err and str(trust_dir / failing) in err and ENOSPC in err, err
    assert ".tmp" not in err  # the file the resident knows, not a hidden name of ours
    # ... and true: nothing was left half-written, nothing changed
    assert "No se guardó nada a medias" in err and "Nothing was left half-written" in err
    assert _files(trust_dir) == before
    again = Wallet.open(wallet_home)
    assert again.trust_problems() == []
    assert {c: b.version for c, b in again.trusted_bundles().items()} == dict.fromkeys(held, 1)

    # Space freed, the same command stores it all.
    assert main(["wallet", "trust", *args, "--home", str(wallet_home)]) == 0
    assert {c: b.version for c, b in again.trusted_bundles().items()} == dict.fromkeys(given, 2)
    assert not [n for n in _files(trust_dir) if n.startswith(".")]


# The process kills itself when the bundle's staged file is about to be renamed into place (its
# root, for a city trusted anew, already is), or just after the rename.
_KILL_AT = {
    "before-bundle": "die()",
    "after-bundle": "replace(src, dst); die()",
}


def _killed_trust(home: Path, args: list[str], at: str) -> None:
    script = (
        "import os, signal, sys\n"
        "from pasaporte.cli import main\n"
        "replace = os.replace\n"
        "def die(): os.kill(os.getpid(), signal.SIGKILL)\n"
        "def dying(src, dst, *args, **kwargs):\n"
        "    if str(dst).endswith('.bundle'):\n"
        f"        {_KILL_AT[at]}\n"
        "    return replace(src, dst, *args, **kwargs)\n"
        "os.replace = dying\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PASAPORTE_HOME", None)
    proc = subprocess.run([sys.executable, "-c", script, "wallet", "trust", *args,
                           "--home", str(home)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # it did die mid-trust


@pytest.mark.parametrize("at", sorted(_KILL_AT))
@pytest.mark.parametrize("scenario", ["first", "replace"])
def test_a_killed_trust_leaves_a_pair_and_is_completed_by_the_next(
        run: Run, wallet_home: Path, tmp_path: Path, cities: dict[str, City],
        scenario: str, at: str) -> None:
    wallet = Wallet.open(wallet_home)
    city = cities["MXMEX"]
    if scenario == "replace":
        wallet.trust([city.bundle()], [city.root.to_json().encode()])
    args = _given(tmp_path, city, 2)

    _killed_trust(wallet_home, args, at)

    bundle = wallet.trust_dir / "MXMEX.bundle"
    listed = run("wallet", "list", "--json", "--home", wallet_home)
    assert listed.exit_code == 0, listed.output
    assert "[wallet_trust_damaged]" not in listed.stderr, listed.stderr  # nothing is
    if scenario == "first" and at == "before-bundle":
        # The one state between two files: the city's root, its bundle named as missing
        # (not damaged: it is not there), with what mends it.
        assert not bundle.exists() and (wallet.trust_dir / "MXMEX.root.json").exists()
        assert [p.code for p in wallet.trust_problems()] == ["wallet_trust_bundle_missing"]
        assert "[wallet_trust_bundle_missing]" in listed.stderr and str(bundle) in listed.stderr
        assert "Mexicali (MXMEX)" in listed.stderr
        assert "pasaporte wallet trust" in listed.stderr and "bundle and root" in listed.stderr
        assert wallet.trusted_bundles() == {}
    else:  # the old pair or the new one, whole
        assert listed.stderr == "" and wallet.trust_problems() == []
        want = 1 if at == "before-bundle" else 2
        assert wallet.trusted_bundles()["MXMEX"].version == want
    if at == "before-bundle":  # the staged bundle, never put in place, is left over
        assert [n for n in os.listdir(wallet.trust_dir) if n.endswith(".tmp")]

    again = run("wallet", "trust", *args, "--home", wallet_home)
    assert again.exit_code == 0 and again.stdout == "Mexicali (MXMEX) v2\n", again.output
    assert wallet.trusted_bundles()["MXMEX"].version == 2 and wallet.trust_problems() == []
    assert sorted(os.listdir(wallet.trust_dir)) == ["MXMEX.bundle", "MXMEX.root.json"]


def test_the_next_trust_removes_only_the_hidden_files_a_killed_one_left(
        run: Run, wallet_home: Path, tmp_path: Path) -> None:
    city = City()
    assert run("wallet", "trust", *_given(tmp_path, city, 2),
               "--home", wallet_home).exit_code == 0
    trust_dir = Wallet.open(wallet_home).trust_dir
    ours = [".MXMEX.bundle.k2j4_x9a.tmp", ".MXMEX.root.json.abcd1234.tmp",
            ".MXTIJ.bundle.zz99aa11.prev"]  # the file a replacement kept for an undo
    others = ["notas.txt", ".MXMEX.bundle.tmp", "MXMEX.bundle.abcd1234.tmp",
              ".MXMEX.cbor.abcd1234.tmp", ".lista.tmp"]  # not names StagedFile gives
    for name in ours + others:
        (trust_dir / name).write_bytes(b"left over")
    kept = _files(trust_dir)

    # An older bundle, not kept: the folder is tidied all the same.
    older = run("wallet", "trust", *_given(tmp_path, city, 1), "--home", wallet_home)
    assert older.exit_code == 0 and "[wallet_trust_older]" in older.stderr, older.output
    assert sorted(_files(trust_dir)) == sorted(
        ["MXMEX.bundle", "MXMEX.root.json", *others])
    assert all(_files(trust_dir)[n] == kept[n] for n in others)
    assert Wallet.open(wallet_home).trusted_bundles()["MXMEX"].version == 2
