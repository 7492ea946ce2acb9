"""The offline verification engine: scanned text (or a photo) in, a decision out.

No network, ever; bundles and roots come in as bytes and keys (the CLI reads their files, once).
``Verifier`` holds the warm trust state (verified bundles, decompressed status lists, keys by
kid) so that a scan costs two signature checks plus parsing, hashing, status, policy and labels
(about 0.2 ms in all on one core; see ``make bench``).

Every outcome is a ``Result``; malformed input never raises out of ``verify``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from credential import sd, transport
from credential.bundle import OfficeKey, RootKey, TrustBundle, check_roots, parse_bundle
from credential.claims import display_value
from credential.errors import MalformedInput, PasaporteError
from credential.keys import b64url
from credential.passport import (
    Decoded,
    audience_matches,
    audience_parts,
    credential_digest,
    decode_text,
    kb_aad,
)
from credential.records import record_repr
from credential.statuslist import MARKS, StatusList
from credential.text import escaped
from credential.times import OFFICE_CLOCK_AHEAD_S, first_day, last_day
from schemas import not_eligible, schema
from verifier.policy import Policy

__all__ = ["Result", "Verifier", "verify"]


class Result:
    """The outcome of one scan. Nothing assigns to it after construction. A plain slotted class
    (see ``credential.records``): compiled, building one is a C struct fill, where a NamedTuple's
    ``__new__`` is interpreted Python that one scan would run for this alone."""

    __slots__ = ("claims", "code", "credential_id", "decision", "issuer", "message", "paper",
                 "warnings")

    decision: str  # "accepted" | "rejected"
    code: str
    message: dict[str, str]
    claims: tuple[dict[str, Any], ...]
    issuer: dict[str, str] | None
    credential_id: str | None
    paper: bool
    warnings: tuple[dict[str, Any], ...]

    def __init__(self, decision: str, code: str, message: dict[str, str],
                 claims: tuple[dict[str, Any], ...] = (), issuer: dict[str, str] | None = None,
                 credential_id: str | None = None, paper: bool = False,
                 warnings: tuple[dict[str, Any], ...] = ()) -> None:
        self.decision, self.code, self.message, self.claims = decision, code, message, claims
        self.issuer, self.credential_id, self.paper, self.warnings = (
            issuer, credential_id, paper, warnings)

    def __repr__(self) -> str:
        return record_repr(self)

    @property
    def accepted(self) -> bool:
        return self.decision == "accepted"

    @classmethod
    def rejection(cls, code: str, **params: Any) -> Result:
        """A rejection decided before the engine saw the payload (e.g. a line too long to read)."""
        return cls("rejected", code, _msg(code, **params))

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "code": self.code, "message": self.message,
                "claims": list(self.claims), "issuer": self.issuer,
                "credential_id": self.credential_id, "paper": self.paper,
                "warnings": list(self.warnings)}


def _msg(code: str, **params: Any) -> dict[str, str]:
    return PasaporteError(code, **params).message


def _audience_said(audience: str) -> dict[str, str]:
    """The audience a code was made for, as a clerk reads it in each language: the service by
    its label, the counter id as signed (escaped: it is whatever the wallet wrote)."""
    service, colon, counter = audience.partition(":")
    spec = schema().services.get(service)
    if spec is None:
        return {"audience_es": f"«{escaped(audience)}»", "audience_en": f"“{escaped(audience)}”"}
    es, en = spec.label["es"], spec.label["en"]
    if colon:
        es += f", ventanilla «{escaped(counter)}»"
        en += f", counter “{escaped(counter)}”"
    return {"audience_es": es, "audience_en": en}


def _reject(code: str, decoded: Decoded | None = None, issuer: dict[str, str] | None = None,
            *, said: str | None = None, **params: Any) -> Result:
    """A refusal; ``said`` names the message when one code has several causes to tell apart."""
    # once decoded, whether it is paper is known: a counter's log and screen say so for a
    # refusal too (a paper passport refused at a counter that takes none, or expired)
    return Result("rejected", code, _msg(said or code, **params), issuer=issuer,
                  credential_id=decoded.payload.credential_id if decoded else None,
                  paper=decoded is not None and decoded.payload.holder_key is None)


def _minute(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


# A counter whose clock reads more than this before its trust bundles were made refuses
# every scan (``counter_clock_behind``): a PC whose clock was reset (a flat CMOS battery: the
# year 2000) or never synchronised would otherwise take expired passports and old screenshots
# for current ones, and tell residents their new passport is "not valid yet". A day, not the
# policy's few minutes of skew, so that an office's clock a little ahead, stamped into the
# bundle it signed, never stops its counters. Only the counter's own clock is checked: a time
# given to ``verify`` (``verify --at``: a replay, a test) is taken as given.
CLOCK_BEHIND_S = OFFICE_CLOCK_AHEAD_S
_PURPOSES = tuple(MARKS.items())  # (list purpose, the rejection code its set bit means)


@dataclass(frozen=True)
class _Trusted:
    key: OfficeKey
    bundle: TrustBundle
    issuer: dict[str, str]


@dataclass(frozen=True)
class _Shown:
    """How to display one claim: precomputed once, since labels never change."""

    group: str
    claim: str
    label: dict[str, str]
    kind: str
    catalog: str
    enum_labels: dict[str, dict[str, str]]


def _display_plan() -> tuple[tuple[str, tuple[_Shown, ...]], ...]:
    return tuple(
        (g.name, tuple(_Shown(g.name, f.name, f.label, f.type, f.catalog,
                              {v.name: v.label for v in f.values}) for f in g.fields))
        for g in schema().groups)


class Verifier:
    """Warm verification state for one counter."""

    def __init__(self, *, bundles: Iterable[bytes], roots: Sequence[RootKey]) -> None:
        check_roots(roots)
        newest: dict[str, TrustBundle] = {}
        for data in bundles:
            b = parse_bundle(data, roots)
            if b.code not in newest or newest[b.code].version < b.version:
                newest[b.code] = b
        self.bundles = tuple(newest.values())
        self._by_code = newest
        self._keys: dict[bytes, list[_Trusted]] = {}
        # (city code, list id) → {purpose: (list, updated)}: one lookup per scan.
        self._lists: dict[tuple[str, int], dict[str, tuple[StatusList, int]]] = {}
        for b in self.bundles:
            for k in b.keys:
                issuer = {"city": b.city, "country": b.country, "office": k.office,
                          "kid": b64url(k.kid), "code": b.code}
                self._keys.setdefault(k.kid, []).append(_Trusted(k, b, issuer))
            for s in b.status_lists:
                lst = StatusList.from_compressed(s.purpose, s.size, s.data)
                self._lists.setdefault((b.code, s.list_id), {})[s.purpose] = (lst, s.updated)
        self._policies: dict[str, Policy] = {}
        # The counter's clock cannot be right and read before this (see ``verify``): each
        # city's bundle was made by then. The earliest of them, so that one office whose clock
        # ran ahead when it made its bundle does not stop the counter for every city.
        self._made_at = min((b.made_at for b in self.bundles), default=0)
        self._plan = _display_plan()
        self._groups = len(schema().groups)
        self._accepted = _msg("accepted")

    # -- the hot path -----------------------------------------------------------------------
    # ``scanned`` and ``image`` are ``object``: whatever a caller hands over is untrusted, and
    # compiled (make compile) a narrower annotation would raise TypeError before any check
    # instead of rejecting it.
    def verify(self, scanned: object, *, service: str | Policy, now: int | None = None,
               nonce: bytes | None = None) -> Result:
        try:
            if isinstance(service, Policy):
                policy = service
            else:
                policy = self._policies.get(service) or self._policies.setdefault(
                    service, Policy.for_service(service))
            if now is None:
                now = int(time.time())
                behind = self.clock_behind(now)
                if behind is not None:
                    return behind
            return self._verify(scanned, policy, now, nonce)
        except MalformedInput as malformed:  # (its own name: compiled, a name has one type)
            # Text that does not decode: said as what happened at the scanner where the text
            # shows it (two codes on one line, a code read in part). Refusals only: no cost to
            # an accepted scan.
            shown = transport.diagnose(scanned, malformed)
            return Result("rejected", shown.code, shown.message)
        except PasaporteError as exc:
            return Result("rejected", exc.code, exc.message)

    def clock_behind(self, now: int) -> Result | None:
        """The ``counter_clock_behind`` refusal if ``now``, read from this counter's clock, is
        more than ``CLOCK_BEHIND_S`` before its bundles were made (see ``verify``)."""
        if now + CLOCK_BEHIND_S < self._made_at:
            return _reject("counter_clock_behind", now=_minute(now), made=_minute(self._made_at))
        return None

    def stale_bundles(self, policy: Policy, now: int) -> list[TrustBundle]:
        """The bundles whose revocation lists are older than ``policy`` allows at ``now``: each
        scan of their passports is warned (or refused) ``status_stale`` until one is updated."""
        return [b for b in self.bundles
                if now - max((s.updated for s in b.status_lists if s.purpose == "revocation"),
                             default=now) > policy.status_max_age_s]

    def verify_image(self, image: object, *, service: str | Policy, now: int | None = None,
                     nonce: bytes | None = None) -> Result:
        from credential import qr

        try:
            text = qr.decode_image(image)
        except PasaporteError as exc:
            return Result("rejected", exc.code, exc.message)
        return self.verify(text, service=service, now=now, nonce=nonce)

    def _verify(self, scanned: object, policy: Policy, now: int, nonce: bytes | None) -> Result:
        d = decode_text(scanned)
        p = d.payload
        c = d.credential
        kb = d.kb

        # Every bit of Python work that does not depend on a decision runs first, and the two
        # signature checks then run back to back; the decisions below still come in their fixed
        # order. Why: right after a signature check, the CPU's caches and branch predictors hold
        # the signature code, and Python work there runs about half again slower than the same
        # work run on its own (measured in place, compiled); fewer switches, faster scans.
        leaves = [sd.leaf_digest(x) for x in d.disclosures]
        root = d.computed_root(leaves)
        aad = kb_aad(credential_digest(c), leaves) if kb is not None else b""
        candidates = self._keys.get(c.kid or b"", ())
        if len(candidates) > 1:
            # A key listed by two cities' bundles (by mistake, or by one city's root): the city
            # the passport names is tried first, so that the result does not hang on the order
            # the bundles were given in (the other city's listing made its genuine passports
            # "another city than its key's"). Its signature still decides.
            candidates = sorted(candidates, key=lambda x: x.bundle.code != p.iss)
        # Labels depend on the signing city's catalogs; nearly always only one key has this kid.
        early_bundle = candidates[0].bundle if len(candidates) == 1 else None
        early = (self._labelled(d, early_bundle) if early_bundle is not None and kb is not None
                 else None)

        trusted = None
        for candidate in candidates:  # kids are short: may collide
            if c.verify(candidate.key.public_key):
                trusted = candidate
                break
        # Nothing the payload says is known yet: a refusal here names no credential id, nor
        # paper (a forged code copied a resident's id, and the log named that passport)
        if trusted is None:
            if c.kid in self._keys:
                return _reject("signature_invalid")
            # Which fix the clerk's IT needs: another city's bundle and root, or this city's
            # newer bundle (an office key made since). The code it names is not signed yet:
            # shown escaped, as said, to tell the cases apart and no more.
            bundle_of = self._by_code.get(p.iss)
            if bundle_of is None:
                return _reject("issuer_unknown", said="issuer_unknown_city",
                               city_code=escaped(p.iss))
            return _reject("issuer_unknown", city=bundle_of.city, city_code=bundle_of.code)
        holder_signed = (kb is not None and p.holder_key is not None
                         and kb.sign1.verify(p.holder_key, aad))

        key, bundle = trusted.key, trusted.bundle
        issuer = dict(trusted.issuer)
        if p.iss != bundle.code:
            return _reject("issuer_mismatch", d, issuer)
        if not key.valid_from <= p.iat <= key.valid_until:
            return _reject("key_not_valid_at_issuance", d, issuer)
        if key.compromised_since is not None and p.iat >= key.compromised_since:
            return _reject("key_compromised", d, issuer)
        skew = policy.clock_skew_s
        if now + skew < p.nbf:
            return _reject("not_yet_valid", d, issuer, valid_from=first_day(p.nbf).isoformat())
        if now - skew >= p.exp:
            if (holder_signed and kb is not None and kb.iat < p.exp
                    and now - kb.iat > policy.freshness_s + skew):
                # The phone made the code while the passport was good, long before this
                # clock's "now": a counter clock set years ahead (a mistyped year) told every
                # resident "expired", and nothing pointed at the clock.
                return _reject("expired", d, issuer, said="expired_counter_clock_ahead",
                               valid_until=last_day(p.exp).isoformat(), now=_minute(now),
                               made=_minute(kb.iat))
            return _reject("expired", d, issuer, valid_until=last_day(p.exp).isoformat(),
                           today=time.strftime("%Y-%m-%d", time.localtime(now)))  # its zone

        # Every shown disclosure must hash into the signed root.
        if kb is None and len(leaves) != self._groups:
            return _reject("disclosures_incomplete", d, issuer)
        if root != p.sd_root:
            return _reject("disclosure_mismatch", d, issuer)

        warnings: list[dict[str, Any]] = []
        paper = p.holder_key is None
        if p.holder_key is None:
            if kb is not None:
                return _reject("shape_invalid", d, issuer, what="kb")
            if policy.paper == "reject":
                return _reject("paper_not_accepted", d, issuer)
            if policy.paper == "accept_with_id":
                warnings.append({"code": "paper_check_id", "message": _msg("paper_check_id")})
        else:
            if kb is None:
                return _reject("holder_binding_missing", d, issuer)
            if not holder_signed:
                return _reject("holder_signature_invalid", d, issuer)
            aud_service, aud_counter = audience_parts(kb.audience)
            # Counter ids are names people type (desk-3, Desk-3): case does not tell counters
            # apart, as it does not for nonces.
            if aud_service != policy.service or (
                    aud_counter and policy.counter_id
                    and not audience_matches(aud_counter, policy.counter_id)):
                # The audience is whatever the holder's wallet signed: a crafted one (a CR, an
                # escape sequence) could make a clerk's screen read "valid" over this refusal.
                return _reject("wrong_audience", d, issuer, **_audience_said(kb.audience))
            if kb.iat > now + skew:
                return _reject("presentation_future", d, issuer)
            if now - kb.iat > policy.freshness_s:
                return _reject("presentation_stale", d, issuer, seconds=policy.freshness_s)
            if nonce is not None and kb.nonce != nonce:
                return _reject("nonce_mismatch", d, issuer)

        status = p.status
        lists = self._lists.get((bundle.code, status.list_id), {})
        for purpose, code in _PURPOSES:
            entry = lists.get(purpose)
            if entry is None:
                if purpose == "revocation":
                    return _reject("status_unknown", d, issuer)
                continue
            lst, updated = entry
            if status.idx >= lst.size:
                return _reject("status_unknown", d, issuer)
            if lst.get(status.idx):
                return _reject(code, d, issuer)
            if purpose == "revocation" and now - updated > policy.status_max_age_s:
                days = policy.status_max_age_s // 86400
                if policy.stale_status == "reject":
                    return _reject("status_stale", d, issuer, days=days)
                warnings.append({"code": "status_stale", "message": _msg("status_stale",
                                                                          days=days)})

        missing = [g for g in policy.requires if g not in d.groups]
        if missing:
            labels = [schema().group(g).label for g in missing]
            return _reject("claims_missing", d, issuer, groups=", ".join(missing),
                           groups_es=", ".join(x["es"] for x in labels),
                           groups_en=", ".join(x["en"] for x in labels))
        if not_eligible(policy.eligibility, d.groups):
            label = schema().services[policy.service].label
            return _reject("not_eligible", d, issuer, service_es=label["es"],
                           service_en=label["en"])

        if paper:
            # Paper discloses everything (no wallet to choose with): the counter shows what
            # the service needs, and the names where a photo ID is to be compared with them,
            # not a birth date or a clinic network at the library.
            claims, unknown = self._labelled(d, bundle, frozenset(policy.requires) | (
                _ID_GROUPS if policy.paper == "accept_with_id" else frozenset()))
        elif early is not None and bundle is early_bundle:
            claims, unknown = early
        else:
            claims, unknown = self._labelled(d, bundle)
        if unknown:
            # A city added a library system or a clinic network after this counter's bundle:
            # the passport is still good, but the clerk cannot read the name.
            warnings.append({"code": "catalog_unknown", "message": _msg("catalog_unknown")})
        return Result("accepted", "accepted", dict(self._accepted), claims=claims, issuer=issuer,
                      credential_id=p.credential_id, paper=paper, warnings=tuple(warnings))

    def _labelled(self, d: Decoded, bundle: TrustBundle, only: frozenset[str] | None = None
                  ) -> tuple[tuple[dict[str, Any], ...], bool]:
        """Disclosed claims (of the groups ``only`` names, if given) with their Spanish/English
        labels, in schema order, and whether a catalogued code among them has no name in the
        bundle (shown as ``#code``)."""
        out: list[dict[str, Any]] = []
        unknown = False
        for group, shown in self._plan:
            values = d.groups.get(group)
            if values is None or (only is not None and group not in only):
                continue
            for s in shown:
                v = values.get(s.claim)
                if v is None:
                    continue
                value_label = s.enum_labels.get(v) if s.kind == "enum" else None
                if s.kind == "catalog" and type(v) is int:
                    value: Any = bundle.catalogs.get(s.catalog, _NO_NAMES).get(v)
                    if value is None:
                        unknown, value = True, f"#{v}"
                else:
                    value = display_value(s.kind, s.catalog, v, bundle.catalogs)
                item: dict[str, Any] = {"group": group, "claim": s.claim, "label": s.label,
                                        "value": value}
                if s.kind == "enum":
                    item["value_label"] = value_label
                out.append(item)
        return tuple(out), unknown


_NO_NAMES: dict[int, str] = {}
_ID_GROUPS = frozenset({"names"})  # what a clerk compares with a photo ID


def verify(scanned: object, *, service: str, bundles: Iterable[bytes], roots: Sequence[RootKey],
           now: int | None = None, nonce: bytes | None = None) -> Result:
    """One-shot convenience; counters keep a ``Verifier`` instead."""
    return Verifier(bundles=bundles, roots=roots).verify(scanned, service=service, now=now,
                                                         nonce=nonce)

