"""Fixtures for the wallet tests: a real issuing city (root key, office key, signed trust bundle,
status lists), a counter ``Verifier`` trusting it, and a temporary wallet home.

Nothing is mocked: credentials are signed with ``credential.passport.issue`` from the shared
example claims, and presentations are checked by ``verifier.engine.Verifier``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from click.testing import CliRunner, Result

from credential import transport
from credential.bundle import OfficeKey, RootKey, StatusListInfo, TrustBundle, sign_bundle
from credential.claims import parse_claims
from credential.keys import kid_for
from credential.passport import IssuedCredential, StatusRef, issue
from credential.statuslist import StatusList
from pasaporte.cli import cli
from verifier.engine import Verifier
from wallet_cli.store import Wallet

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"  # copies of ../shared/examples
PASSPHRASE = "correct horse battery staple"
LIST_SIZE = 1024


def example_claims(city: str, **overrides: Any) -> dict[str, Any]:
    """An example claims file, its validity moved around today so the tests do not age."""
    doc: dict[str, Any] = json.loads((EXAMPLES / f"claims-{city}.json").read_text("utf-8"))
    today = datetime.now(UTC).date()
    doc["valid_from"] = (today - timedelta(days=30)).isoformat()
    doc["valid_until"] = (today + timedelta(days=365)).isoformat()
    doc.update(overrides)
    return doc


@dataclass
class City:
    """One issuing city with one office, as a counter's trust state sees it."""

    code: str
    root: nacl.signing.SigningKey
    office: nacl.signing.SigningKey
    bundle: bytes
    root_key: RootKey
    next_index: int = 0

    def issue(self, holder_key: bytes | None, claims: dict[str, Any],
              cti: bytes | None = None) -> IssuedCredential:
        index = self.next_index
        self.next_index += 1
        return issue(parse_claims(claims), key=self.office,
                     kid=kid_for(bytes(self.office.verify_key)), iss=self.code,
                     holder_key=holder_key, status=StatusRef(0, index),
                     issued_at=int(time.time()) - 60, cti=cti)

    def issue_text(self, holder_key: bytes | None, claims: dict[str, Any]) -> str:
        """What ``issuer issue --out`` writes."""
        return transport.pack(self.issue(holder_key, claims).to_cbor())

    def verifier(self) -> Verifier:
        return Verifier(bundles=[self.bundle], roots=[self.root_key])


def make_city(city: str, country: str, code: str) -> City:
    root = nacl.signing.SigningKey.generate()
    office = nacl.signing.SigningKey.generate()
    now = int(time.time())
    office_pub = bytes(office.verify_key)
    lists = tuple(
        StatusListInfo(0, purpose, LIST_SIZE, StatusList.new(purpose, LIST_SIZE).compress(), now)
        for purpose in ("revocation", "suspension"))
    bundle = TrustBundle(
        city=city, country=country, code=code, version=1, made_at=now,
        keys=(OfficeKey(kid_for(office_pub), office_pub, "Oficina Central",
                        now - 86400, now + 5 * 365 * 86400),),
        status_lists=lists)
    root_key = RootKey(city, country, code, bytes(root.verify_key))
    return City(code, root, office, sign_bundle(bundle, root), root_key)


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
