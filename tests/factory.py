"""Test helpers: a real city (root key, office key, trust bundle) built in memory."""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing

from credential import transport
from credential.bundle import (
    OfficeKey,
    RootKey,
    StatusListInfo,
    TrustBundle,
    parse_bundle,
    sign_bundle,
)
from credential.claims import parse_claims
from credential.keys import kid_for
from credential.passport import IssuedCredential, StatusRef, issue, present
from credential.statuslist import StatusList
from verifier.engine import Verifier

VECTORS = Path(__file__).resolve().parent / "vectors"  # copies of ../shared/vectors

# -- the tests' calendar ---------------------------------------------------------------------
# The examples (tests/examples, copies of ../shared/examples) carry the dates they were written
# with: valid from 2026-11-22 for one year or three. Much of what the tests run reads the real
# clock (an office refuses to issue a passport its clock says has expired; a wallet presents at
# the time it is), so, for the suite to pass in any year, its calendar is the examples' moved
# forward by whole days until the real day is the one they were written on (2026-11-23, UTC):
# the examples' copies under EXAMPLES, NOW, and every date or instant a test writes down
# (``day``, ``at``). Days, not years, so that the real day stands where it stood, one day into
# a one-year validity; but a validity of whole years stays one of whole years (its last day
# moves with the calendar, not by the same days: a span may gain or lose a 29 February), so a
# test that names an example's last day takes it from the example.
WRITTEN = datetime.date(2026, 11, 23)
SHIFT_DAYS = max(0, (datetime.datetime.now(datetime.UTC).date() - WRITTEN).days)


def at(seconds: int) -> int:
    """An instant of the examples' calendar, as the suite's calendar has it."""
    return seconds + SHIFT_DAYS * 86400


def day(text: str) -> str:
    """A date of the examples' calendar (``YYYY-MM-DD``, alone or opening an RFC 3339 time),
    as the suite's calendar has it."""
    moved = datetime.date.fromisoformat(text[:10]) + datetime.timedelta(SHIFT_DAYS)
    return moved.isoformat() + text[10:]


def last_day(start: datetime.date, years: int) -> datetime.date:
    """The last day of a validity of ``years`` from ``start``, as an office counts it (the day
    before the anniversary, which for a 29 February in a common year is 1 March)."""
    try:
        anniversary = start.replace(year=start.year + years)
    except ValueError:
        anniversary = datetime.date(start.year + years, 3, 1)
    return anniversary - datetime.timedelta(1)


def moved_window(valid_from: str, valid_until: str) -> tuple[str, str]:
    """An example's validity, as the suite's calendar has it: the first day moved by
    ``SHIFT_DAYS``; the last day a whole number of years after it, less a day, as it was."""
    start, end = (datetime.date.fromisoformat(d) for d in (valid_from, valid_until))
    moved = start + datetime.timedelta(SHIFT_DAYS)
    for years in range(1, 11):
        if last_day(start, years) == end:
            return moved.isoformat(), last_day(moved, years).isoformat()
    return moved.isoformat(), day(valid_until)


NOW = at(1_795_446_000)  # 2026-11-23 15:00 UTC, inside the examples' validity windows


def _moved_examples(source: Path) -> Path:
    """``source`` itself when the calendar has not moved; otherwise a copy (removed at exit)
    whose validity dates are moved (``moved_window``), every other byte as it is."""
    if not SHIFT_DAYS:
        return source
    target = Path(tempfile.mkdtemp(prefix="pasaporte-examples-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    for path in sorted(source.iterdir()):
        text = path.read_bytes().decode("utf-8")
        if path.suffix == ".json":
            window = re.compile(r'("valid_from"\s*:\s*")([-\d]{10})(".*?"valid_until"\s*:\s*")'
                                r'([-\d]{10})', re.DOTALL)
            text = window.sub(lambda m: m[1] + moved_window(m[2], m[4])[0] + m[3]
                              + moved_window(m[2], m[4])[1], text)
        elif path.suffix == ".csv":
            assert '"' not in text, path  # plain cells: a comma always separates two
            lines = text.split("\n")
            header = lines[0].split(",")
            start, end = header.index("valid_from"), header.index("valid_until")
            for n, line in enumerate(lines[1:], start=1):
                if line:
                    cells = line.split(",")
                    cells[start], cells[end] = moved_window(cells[start], cells[end])
                    lines[n] = ",".join(cells)
            text = "\n".join(lines)
        (target / path.name).write_bytes(text.encode("utf-8"))
    return target


EXAMPLES = _moved_examples(Path(__file__).resolve().parent / "examples")


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

    def bundle_with_damaged_list(self) -> bytes:
        """The city's bundle, signed, with a byte after its revocation list's data (what a city
        whose software got the format wrong would sign)."""
        good = parse_bundle(self.bundle(), [self.root])
        first, *rest = good.status_lists
        damaged = dataclasses.replace(first, data=first.data + b"\x00")
        return sign_bundle(dataclasses.replace(good, status_lists=(damaged, *rest)),
                           self.root_key)

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
