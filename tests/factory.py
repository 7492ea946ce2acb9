"""Test helpers: a real city (root key, office key, trust bundle) built in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing

from credential import transport
from credential.bundle import OfficeKey, RootKey, StatusListInfo, TrustBundle, sign_bundle
from credential.claims import parse_claims
from credential.keys import kid_for
from credential.passport import IssuedCredential, StatusRef, issue, present
from credential.statuslist import StatusList
from verifier.engine import Verifier

EXAMPLES = Path(__file__).resolve().parent / "examples"  # copies of ../shared/examples
VECTORS = Path(__file__).resolve().parent / "vectors"  # copies of ../shared/vectors
NOW = 1_795_446_000  # 2026-11-23 15:00 UTC, inside the examples' validity windows


def example_claims(city: str = "mexicali") -> dict[str, Any]:
    result: dict[str, Any] = json.loads((EXAMPLES / f"claims-{city}.json").read_text("utf-8"))
    return result


@dataclass
class City:
    city: str = "Mexicali"
    country: str = "MX"
    code: str = "MXMEX"
    root_key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    office_key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    now: int = NOW  # issue and bundle times; the wallet tests use the real clock
    catalogued: bool = True  # compact catalogue codes for city, library system, clinic network
    key_valid_from: int = 0  # default: a year before ``now``
    key_valid_until: int = 0  # default: five years after ``now``
    compromised_since: int | None = None
    revocation: StatusList = field(default_factory=lambda: StatusList.new("revocation"))
    suspension: StatusList = field(default_factory=lambda: StatusList.new("suspension"))
    catalog: dict[str, dict[str, int]] = field(default_factory=dict)
    next_index: int = 0

    def __post_init__(self) -> None:
        self.key_valid_from = self.key_valid_from or self.now - 86400 * 365
        self.key_valid_until = self.key_valid_until or self.now + 86400 * 365 * 5

    @property
    def kid(self) -> bytes:
        return kid_for(bytes(self.office_key.verify_key))

    @property
    def root(self) -> RootKey:
        return RootKey(self.city, self.country, self.code, bytes(self.root_key.verify_key))

    def code_for(self, catalog: str, name: str) -> int:
        entries = self.catalog.setdefault(catalog, {})
        return entries.setdefault(name, len(entries) + 1)

    def issue(self, claims: dict[str, Any] | None = None, *,
              holder: nacl.signing.SigningKey | None = None, issued_at: int | None = None,
              key: nacl.signing.SigningKey | None = None) -> IssuedCredential:
        return self.issue_for(bytes(holder.verify_key) if holder else None,
                              claims or example_claims(), issued_at=issued_at, key=key)

    def issue_for(self, holder_key: bytes | None, claims: dict[str, Any], *,
                  issued_at: int | None = None, key: nacl.signing.SigningKey | None = None,
                  cti: bytes | None = None) -> IssuedCredential:
        """A credential bound to ``holder_key`` (a wallet's public key), or paper if None."""
        self.next_index += 1
        return issue(parse_claims(claims), key=key or self.office_key, kid=self.kid,
                     iss=self.code, holder_key=holder_key,
                     status=StatusRef(1, self.next_index),
                     issued_at=self.now if issued_at is None else issued_at,
                     catalog=self.code_for if self.catalogued else None, cti=cti)

    def issue_text(self, holder_key: bytes | None, claims: dict[str, Any]) -> str:
        """What ``issuer issue --out`` writes."""
        return transport.pack(self.issue_for(holder_key, claims).to_cbor())

    def verifier(self) -> Verifier:
        return Verifier(bundles=[self.bundle()], roots=[self.root])

    def bundle(self, *, made_at: int | None = None, version: int = 1) -> bytes:
        made_at = self.now if made_at is None else made_at
        b = TrustBundle(
            self.city, self.country, self.code, version, made_at,
            (OfficeKey(self.kid, bytes(self.office_key.verify_key), "Oficina Centro",
                       self.key_valid_from, self.key_valid_until, self.compromised_since, 1),),
            (StatusListInfo(1, "revocation", self.revocation.size, self.revocation.compress(),
                            made_at),
             StatusListInfo(1, "suspension", self.suspension.size, self.suspension.compress(),
                            made_at)),
            {name: {code: value for value, code in entries.items()}
             for name, entries in self.catalog.items()})
        return sign_bundle(b, self.root_key)


def presentation(cred: IssuedCredential, holder: nacl.signing.SigningKey, service: str,
                 groups: list[str], *, now: int = NOW, audience: str | None = None,
                 nonce: bytes | None = None) -> str:
    return transport.pack(present(cred.cose, cred.disclosures, groups=groups, holder=holder,
                                  audience=audience or service, now=now, nonce=nonce))
