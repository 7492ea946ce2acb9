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
    key_valid_from: int = NOW - 86400 * 365
    key_valid_until: int = NOW + 86400 * 365 * 5
    compromised_since: int | None = None
    revocation: StatusList = field(default_factory=lambda: StatusList.new("revocation"))
    suspension: StatusList = field(default_factory=lambda: StatusList.new("suspension"))
    catalog: dict[str, dict[str, int]] = field(default_factory=dict)
    next_index: int = 0

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
              holder: nacl.signing.SigningKey | None = None, issued_at: int = NOW,
              key: nacl.signing.SigningKey | None = None) -> IssuedCredential:
        self.next_index += 1
        return issue(parse_claims(claims or example_claims()), key=key or self.office_key,
                     kid=self.kid, iss=self.code,
                     holder_key=bytes(holder.verify_key) if holder else None,
                     status=StatusRef(1, self.next_index), issued_at=issued_at,
                     catalog=self.code_for)

    def bundle(self, *, made_at: int = NOW, version: int = 1) -> bytes:
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
