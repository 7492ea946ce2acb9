"""``wallet import`` of a passport's text as files reach a resident: wrapped by a mail client,
cut short by a download, two run together. Each imports, or is refused in the wallet's words
naming the file, never with a counter's "scan it again"."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from credential import cose, transport
from credential.errors import MalformedInput
from tests.factory import City
from tests.wallet_cli.conftest import Run, example_claims
from wallet_cli.store import Wallet


def _text(wallet: Wallet, city: City) -> str:
    return city.issue_text(wallet.public_key, example_claims("mexicali"))


def _wrapped(text: str, end: str) -> str:
    """As ``fold -w 76`` or a mail client leaves it: lines of 76 characters."""
    return "".join(text[i:i + 76] + end for i in range(0, len(text), 76))


def _refused(result: object, code: str, file: Path) -> dict[str, str]:
    exception = getattr(result, "exception", None)
    assert isinstance(exception, MalformedInput), exception
    assert exception.code == code and getattr(result, "stdout", None) == ""
    assert str(file) in exception.message["es"] and str(file) in exception.message["en"]
    assert "scan" not in exception.message["en"].lower()  # nothing was scanned
    assert "escan" not in exception.message["es"].lower()
    return exception.message


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_a_wrapped_passport_imports(run: Run, wallet_home: Path, mexicali: City,
                                    tmp_path: Path, end: str) -> None:
    wallet = Wallet.open(wallet_home)
    text = _text(wallet, mexicali)
    file = tmp_path / "wrapped.cred"
    file.write_bytes(_wrapped(text, end).encode())
    result = run("wallet", "import", file, "--home", wallet_home)
    assert result.exit_code == 0, result.output
    cred_id = result.stdout.strip()
    assert wallet.ids() == [cred_id]
    assert (wallet.credentials_dir / f"{cred_id}.cbor").read_bytes() == transport.unpack(text)
    pasted = run("wallet", "import", "-", "--home", wallet_home, input=_wrapped(text, end))
    assert pasted.exit_code == 0 and "Ya estaba" in pasted.stderr, pasted.output


def test_a_passport_whose_cose_sign1_is_tagged_imports_and_presents(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path) -> None:
    """Another city's office, on a COSE library that tags by default (RFC 9052 §4.2 allows
    COSE_Sign1_Tagged): its passport imports, and its presentation verifies at a counter."""
    envelope = cbor2.loads(transport.unpack(_text(Wallet.open(wallet_home), mexicali)))
    envelope[0] = cbor2.CBORTag(cose.TAG_SIGN1, envelope[0])
    file = tmp_path / "tagged.cred"
    file.write_text(transport.pack(cbor2.dumps(envelope)), "ascii")
    result = run("wallet", "import", file, "--home", wallet_home)
    assert result.exit_code == 0, result.output
    shown = run("wallet", "present", result.stdout.strip(), "--for", "library",
                "--home", wallet_home)
    assert shown.exit_code == 0, shown.output
    decision = mexicali.verifier().verify(shown.stdout.strip(), service="library")
    assert decision.accepted, decision.message


# Where a download may stop: the base45 then fails on its last characters, or it decodes and
# the CBOR inside ends before its items do (which, depends on the passport's random bytes).
@pytest.mark.parametrize("keep", [300, 301, 302])
def test_a_passport_cut_short_says_so(run: Run, wallet_home: Path, mexicali: City,
                                      tmp_path: Path, keep: int) -> None:
    file = tmp_path / "cut.cred"
    file.write_text(_text(Wallet.open(wallet_home), mexicali)[:keep], "utf-8")
    result = run("wallet", "import", file, "--home", wallet_home)
    message = _refused(result, "wallet_import_cut_short", file)
    assert "cut short" in message["en"] and "office" in message["en"]
    assert "cortado" in message["es"] and "oficina" in message["es"]
    assert "(Detail: " in message["en"]  # the underlying reason is kept
    assert "(Detalle: " in message["es"]
    assert Wallet.open(wallet_home).ids() == []


def test_an_e_mails_copy_and_a_file_of_something_else_say_what_to_import(
        run: Run, wallet_home: Path, mexicali: City, tmp_path: Path) -> None:
    """A copy with an e-mail's "=" soft line breaks was "cut short: ask the office again" (the
    same e-mail again); a root or claims file a bare "not an urban passport", no file named."""
    text = _text(Wallet.open(wallet_home), mexicali)
    mail = tmp_path / "correo.cred"
    mail.write_text("=\n".join(text[i:i + 75] for i in range(0, len(text), 75)), "utf-8")
    message = _refused(run("wallet", "import", mail, "--home", wallet_home),
                       "wallet_import_foreign_characters", mail)
    assert "nothing is missing" in message["en"] and "no le falta nada" in message["es"]
    root = tmp_path / "root.json"
    root.write_text(mexicali.root.to_json())
    message = _refused(run("wallet", "import", root, "--home", wallet_home),
                       "wallet_import_not_passport", root)
    assert "PU1:" in message["en"] and "PU1:" in message["es"]
    assert Wallet.open(wallet_home).ids() == []


def test_a_passport_whose_content_ends_early_says_so(run: Run, wallet_home: Path,
                                                     mexicali: City, tmp_path: Path) -> None:
    """Its text whole but its CBOR cut (packed again after the cut)."""
    whole = transport.unpack(_text(Wallet.open(wallet_home), mexicali))
    file = tmp_path / "cut.cred"
    file.write_text(transport.pack(whole[: len(whole) // 2]), "utf-8")
    result = run("wallet", "import", file, "--home", wallet_home)
    _refused(result, "wallet_import_cut_short", file)


@pytest.mark.parametrize("between", ["\n", ""], ids=["lines", "one-line"])
def test_two_passports_in_one_file_are_named(run: Run, wallet_home: Path, mexicali: City,
                                             tmp_path: Path, between: str) -> None:
    wallet = Wallet.open(wallet_home)
    file = tmp_path / "both.cred"
    file.write_text(_text(wallet, mexicali) + between + _text(wallet, mexicali) + "\n", "utf-8")
    result = run("wallet", "import", file, "--home", wallet_home)
    message = _refused(result, "wallet_import_several", file)
    assert "holds 2 passports" in message["en"] and "contiene 2 pasaportes" in message["es"]
    assert wallet.ids() == []


def test_a_passport_naming_no_city_code_is_refused(run: Run, wallet_home: Path,
                                                   tmp_path: Path) -> None:
    """Its issuer is unchecked when the wallet trusts no bundle of that city: a crafted one
    would reach the resident's terminal (a title change, a cleared screen) in every listing."""
    crafted = City(code="ZZ\x1b]0;OWNED\x07\x1b[2J")
    file = tmp_path / "crafted.cred"
    file.write_text(crafted.issue_text(Wallet.open(wallet_home).public_key,
                                       example_claims("mexicali")), "ascii")
    result = run("wallet", "import", file, "--home", wallet_home)
    exception = getattr(result, "exception", None)
    assert isinstance(exception, MalformedInput), result.output
    assert exception.code == "wallet_import_issuer_invalid" and result.stdout == ""
    for text in exception.message.values():
        assert "\x1b" not in text and "\\x1b]0;OWNED" in text
    assert Wallet.open(wallet_home).ids() == []
