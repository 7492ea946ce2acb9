"""The wallet on a terminal that is not UTF-8 (a Latin-1 locale, PuTTY's default): a QR code it
cannot draw is refused with the way out (``--qr``), never printed as ``\\u2588`` escapes; JSON
stays exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factory import City
from wallet_cli.store import Wallet

from .conftest import PASSPHRASE, example_claims

PASAPORTE = Path(sys.executable).with_name("pasaporte")


def _wallet(encoding: str, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """The installed console script, its standard streams in ``encoding``; a terminal wide
    enough for any QR code."""
    env = {**os.environ, "PASAPORTE_PASSPHRASE": PASSPHRASE, "PYTHONIOENCODING": encoding,
           "COLUMNS": "400"}
    return subprocess.run([str(PASAPORTE), "wallet", *map(str, args)], env=env,
                          capture_output=True, timeout=120, check=False)


def _issued(home: Path, city: City, **claims: str) -> str:
    wallet = Wallet.open(home)
    return wallet.import_text(city.issue_text(wallet.public_key,
                                              example_claims("mexicali", **claims))).id


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_qr_the_terminal_cannot_draw_is_refused(wallet_home: Path, mexicali: City,
                                                  encoding: str) -> None:
    """Its block characters were written as ``\\u2588\\u2588…``: six characters of no code per
    module, with exit 0 and nothing said."""
    cred_id = _issued(wallet_home, mexicali)
    done = _wallet(encoding, "present", cred_id, "--for", "library", "--terminal",
                   "--home", wallet_home)
    err = done.stderr.decode(encoding)
    assert done.returncode == 0, err
    assert done.stdout.decode(encoding).startswith("PU1:")  # the code itself, for a script
    assert "[wallet_qr_terminal_charset]" in err and "--qr" in err
    assert "Guárdelo como imagen" in err and "Save it as an image" in err
    assert "\\u2588" not in err and "\\u2580" not in err and "\\u2584" not in err
    drawn = _wallet("utf-8", "present", cred_id, "--for", "library", "--terminal",
                    "--home", wallet_home)
    assert drawn.returncode == 0 and "█" in drawn.stderr.decode("utf-8")
    assert b"wallet_qr_terminal_charset" not in drawn.stderr


def test_the_list_as_json_on_a_latin1_terminal(wallet_home: Path, calexico: City) -> None:
    """Valid JSON in ASCII, the same document as on a UTF-8 terminal (a name with Ł, which
    Latin-1 lacks, ended the listing as an unexpected error)."""
    _issued(wallet_home, calexico, family_name="Łukasiewicz Peña")
    latin = _wallet("latin-1", "list", "--json", "--home", wallet_home)
    utf8 = _wallet("utf-8", "list", "--json", "--home", wallet_home)
    assert latin.returncode == 0 == utf8.returncode, latin.stderr
    assert latin.stdout.isascii()
    doc = json.loads(latin.stdout.decode("ascii"))
    assert doc == json.loads(utf8.stdout.decode("utf-8"))
    assert "Łukasiewicz Peña" in json.dumps(doc, ensure_ascii=False)
