"""A ``wallet import`` killed (SIGKILL, a phone's battery gone) while it replaces a stored
passport: the wallet holds the old passport or the new one, whole, never a mix and never
neither; it lists and presents at once, and the same import run again completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from credential import transport
from tests.factory import City
from tests.wallet_cli.conftest import PASSPHRASE, Run, example_claims
from wallet_cli.store import Wallet

REPO = Path(__file__).resolve().parents[2]

# The process kills itself when the credential's staged file is about to be renamed over the
# stored one, or just after the rename (before the folder is flushed and the command ends).
_KILL_AT = {
    "before-rename": "die()",
    "after-rename": "replace(src, dst); die()",
}


def _killed_import(home: Path, file: Path, at: str) -> None:
    script = (
        "import os, signal, sys\n"
        "from pasaporte.cli import main\n"
        "replace = os.replace\n"
        "def die(): os.kill(os.getpid(), signal.SIGKILL)\n"
        "def dying(src, dst, *args, **kwargs):\n"
        "    if str(dst).endswith('.cbor'):\n"
        f"        {_KILL_AT[at]}\n"
        "    return replace(src, dst, *args, **kwargs)\n"
        "os.replace = dying\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PASAPORTE_HOME", None)
    proc = subprocess.run([sys.executable, "-c", script, "wallet", "import", str(file),
                           "--home", str(home)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # it did die mid-import


@pytest.mark.parametrize("at", sorted(_KILL_AT))
def test_a_killed_import_leaves_the_old_passport_or_the_new_one_whole(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path, at: str) -> None:
    wallet = Wallet.open(wallet_home)
    first = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    assert wallet.import_text(transport.pack(first.to_cbor())).outcome == "imported"
    # the city's bundle vouches for a re-issue, which then replaces the stored passport
    wallet.trust([mexicali.bundle()], [mexicali.root.to_json().encode()])
    renewed = mexicali.issue_for(wallet.public_key,
                                 example_claims("mexicali", valid_until="2030-01-01"),
                                 cti=first.cti)
    file = tmp_path / "renewed.pu1"
    file.write_text(transport.pack(renewed.to_cbor()), "utf-8")
    stored = wallet.credentials_dir / f"{first.credential_id}.cbor"
    old, new = stored.read_bytes(), transport.unpack(file.read_text("utf-8"))
    assert old != new

    _killed_import(wallet_home, file, at)

    assert stored.read_bytes() == (old if at == "before-rename" else new)  # whole, one of two
    assert Wallet.open(wallet_home).ids() == [first.credential_id]  # leftovers are not listed
    listed = run("wallet", "list", "--json", "--home", wallet_home)
    assert listed.exit_code == 0 and listed.stderr == "", listed.output  # nothing damaged
    [entry], problems = Wallet.open(wallet_home).entries()
    assert problems == []
    want = example_claims("mexicali")["valid_until"] if at == "before-rename" else "2030-01-01"
    assert entry.valid_until == date.fromisoformat(want)

    again = run("wallet", "import", file, "--home", wallet_home)
    assert again.exit_code == 0, again.output
    said = "Actualizado / Updated" if at == "before-rename" else "Ya estaba / Already"
    assert again.stdout == f"{first.credential_id}\n" and said in again.stderr
    assert stored.read_bytes() == new
    shown = Wallet.open(wallet_home).present(first.credential_id, service="library",
                                             passphrase=PASSPHRASE)
    assert mexicali.verifier().verify(shown.text, service="library").accepted


def test_what_a_killed_import_left_staged_goes_at_the_next_command_that_writes(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path) -> None:
    """A staged credential is a whole copy of a passport (names, birth date), and a staged
    ``wallet.json`` a key sealed under a passphrase that never took effect: hidden files the
    resident never sees, copied with every backup. The next command that takes the lock removes
    them, and only names the wallet gives its own staged files."""
    wallet = Wallet.open(wallet_home)
    first = mexicali.issue_for(wallet.public_key, example_claims("mexicali"))
    file = tmp_path / "first.pu1"
    file.write_text(transport.pack(first.to_cbor()), "utf-8")
    _killed_import(wallet_home, file, "before-rename")
    staged = [n for n in os.listdir(wallet.credentials_dir) if n.startswith(".")]
    assert any(n.startswith(f".{first.credential_id}.cbor.") for n in staged), staged
    (wallet_home / ".wallet.json.k2j4_x9a.tmp").write_bytes(b"a sealed key")
    others = ["notas.txt", ".wallet.json.tmp", ".lista.abcd1234.tmp"]
    for name in others:
        (wallet.credentials_dir / name).write_bytes(b"the resident's")

    again = run("wallet", "import", file, "--home", wallet_home)
    assert again.exit_code == 0, again.output
    assert sorted(os.listdir(wallet.credentials_dir)) == sorted(
        [f"{first.credential_id}.cbor", f"{first.credential_id}.sha256", *others])
    assert not (wallet_home / ".wallet.json.k2j4_x9a.tmp").exists()
