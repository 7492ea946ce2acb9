"""The verification engine: every decision code, from real signatures over real credentials."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from typing import Any

import cbor2
import nacl.signing
import pytest

from credential import base45, cose, transport
from credential.errors import UsageError, message_catalog
from credential.keys import b64url
from credential.passport import audience, present
from tests.factory import NOW, City, day, example_claims, presentation
from verifier.engine import CLOCK_BEHIND_S, Result, Verifier
from verifier.policy import Policy

LIB = ["residence", "library"]
CLINIC = ["names", "birth_date", "residence", "clinic"]


@pytest.fixture
def city() -> City:
    return City()


@pytest.fixture
def holder() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey.generate()


def verifier_for(*cities: City, **kw: int) -> Verifier:
    return Verifier(bundles=[c.bundle(**kw) for c in cities], roots=[c.root for c in cities])


def stranger(city: City) -> City:
    """Another city whose office kid is not ``city``'s (kids are 4 bytes: 1 pair in 2**32 share
    one, and a kid the counter knows is signature_invalid, not issuer_unknown)."""
    other = City()
    while other.kid == city.kid:
        other = City()
    return other


def test_library_presentation_accepted_with_labels(city: City, holder: nacl.signing.SigningKey
                                                   ) -> None:
    cred = city.issue(holder=holder)
    v = verifier_for(city)
    r = v.verify(presentation(cred, holder, "library", LIB), service="library", now=NOW + 5)
    assert r.accepted, r
    assert r.code == "accepted" and r.message["es"] and r.message["en"]
    shown = {c["claim"]: c["value"] for c in r.claims}
    assert shown == {"city": "Mexicali", "country": "MX", "since": "2015-06-01",
                     "eligible": True, "system": "Bibliotecas Públicas de Mexicali"}
    assert all(c["label"]["es"] and c["label"]["en"] for c in r.claims)
    assert r.issuer == {"city": "Mexicali", "country": "MX", "office": "Oficina Centro",
                        "kid": b64url(city.kid), "code": "MXMEX"}
    assert r.credential_id == cred.credential_id


def test_counter_sees_only_what_was_disclosed(city: City, holder: nacl.signing.SigningKey
                                              ) -> None:
    secrets = ("María", "Hernández", "1987", "senior", "Red Binacional")
    while any(s in b64url(city.kid) for s in secrets):  # shown: 1 kid in 8 million spells 1987
        city.office_key = nacl.signing.SigningKey.generate()
    cred = city.issue(holder=holder)
    r = verifier_for(city).verify(presentation(cred, holder, "library", LIB), service="library",
                                  now=NOW)
    text = str(r.to_json())
    for secret in secrets:
        assert secret not in text


def test_clinic_presentation_shows_names_and_enum_labels(city: City,
                                                         holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    r = verifier_for(city).verify(presentation(cred, holder, "clinic", CLINIC),
                                  service="clinic", now=NOW)
    assert r.accepted
    assert {c["claim"] for c in r.claims} >= {"given_name", "family_name", "birth_date",
                                              "network"}
    transit = city.issue(holder=holder)
    r = verifier_for(city).verify(
        presentation(transit, holder, "transit", ["residence", "transit"]), service="transit",
        now=NOW)
    fare = next(c for c in r.claims if c["claim"] == "fare_category")
    assert fare["value"] == "senior" and fare["value_label"] == {"es": "Adulto mayor",
                                                                 "en": "Senior"}


def test_two_cities_verify_at_one_counter(holder: nacl.signing.SigningKey) -> None:
    mx, us = City(), City(city="Calexico", country="US", code="USCAL")
    v = verifier_for(mx, us)
    cred = us.issue(example_claims("calexico"), holder=holder)
    r = v.verify(presentation(cred, holder, "library", LIB), service="library", now=NOW)
    assert r.accepted and r.issuer and r.issuer["city"] == "Calexico"


def test_two_roots_with_one_code_are_refused(holder: nacl.signing.SigningKey) -> None:
    # "Ciudad Juárez" and "Ciudad Acuña" both default to MXCIU: one city's bundle must not
    # silently hide the other's at a counter that trusts both.
    juarez, acuna = (City(city="Ciudad Juárez", code="MXCIU"),
                     City(city="Ciudad Acuña", code="MXCIU"))
    with pytest.raises(UsageError) as caught:
        verifier_for(juarez, acuna)
    assert caught.value.code == "roots_conflict"
    assert "Ciudad Juárez MX, Ciudad Acuña MX" in caught.value.message["en"]
    same = Verifier(bundles=[juarez.bundle()], roots=[juarez.root, juarez.root])
    cred = juarez.issue(holder=holder)
    assert same.verify(presentation(cred, holder, "library", LIB), service="library",
                       now=NOW).accepted


def test_a_name_missing_from_the_bundle_is_shown_by_code_with_a_warning(
        city: City, holder: nacl.signing.SigningKey) -> None:
    old = city.verifier()  # made before the city's first library system was catalogued
    cred = city.issue(holder=holder)
    r = old.verify(presentation(cred, holder, "library", LIB), service="library", now=NOW)
    assert r.accepted
    assert {c["claim"]: c["value"] for c in r.claims}["system"].startswith("#")
    assert [w["code"] for w in r.warnings] == ["catalog_unknown"]
    current = city.verifier().verify(presentation(cred, holder, "library", LIB),
                                     service="library", now=NOW)
    assert current.accepted and current.warnings == ()


def test_caps_lock_scanner(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", LIB).lower()
    assert verifier_for(city).verify(text, service="library", now=NOW).accepted


def reject(v: Verifier, text: str, code: str, service: str | Policy = "library",
           now: int = NOW, nonce: bytes | None = None) -> Result:
    r = v.verify(text, service=service, now=now, nonce=nonce)
    assert r.decision == "rejected"
    assert r.code == code, r
    assert r.message == {k: r.message[k] for k in ("es", "en")} and all(r.message.values())
    return r


def test_issuer_unknown(city: City, holder: nacl.signing.SigningKey) -> None:
    """An office key the counter's bundle of that city lacks (update the bundle), told apart
    from a city the counter holds no bundle of (add that city's bundle and root)."""
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", LIB)
    r = verifier_for(stranger(city)).verify(text, service="library", now=NOW)
    assert r.code == "issuer_unknown" and r.issuer is None, r
    assert "Mexicali (MXMEX)" in r.message["en"] and "update that bundle" in r.message["en"]
    calexico = stranger(city)
    calexico.city, calexico.country, calexico.code = "Calexico", "US", "USCAL"
    r = verifier_for(calexico).verify(text, service="library", now=NOW)
    assert r.code == "issuer_unknown" and r.issuer is None, r
    assert "no trust bundle of the city that issued the passport (MXMEX)" in r.message["en"]
    assert "--trust-root" in r.message["es"] and "MXMEX" in r.message["es"]


def test_signature_invalid(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder, key=nacl.signing.SigningKey.generate())  # kid lies
    reject(verifier_for(city), presentation(cred, holder, "library", LIB), "signature_invalid")


def test_issuer_mismatch(city: City, holder: nacl.signing.SigningKey) -> None:
    other = City(code="MXTIJ", office_key=city.office_key)
    cred = other.issue(holder=holder)
    reject(verifier_for(city), presentation(cred, holder, "library", LIB), "issuer_mismatch")


def test_key_not_valid_at_issuance(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder, issued_at=city.key_valid_from - 10)
    reject(verifier_for(city), presentation(cred, holder, "library", LIB),
           "key_not_valid_at_issuance")


def test_key_compromised(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    city.compromised_since = NOW - 100
    reject(verifier_for(city), presentation(cred, holder, "library", LIB), "key_compromised")


def test_issued_before_compromise_still_valid(city: City, holder: nacl.signing.SigningKey
                                              ) -> None:
    cred = city.issue(holder=holder, issued_at=NOW - 1000)
    city.compromised_since = NOW - 100
    assert verifier_for(city).verify(presentation(cred, holder, "library", LIB),
                                     service="library", now=NOW).accepted


def test_not_yet_valid_and_expired(city: City, holder: nacl.signing.SigningKey) -> None:
    claims = example_claims()
    claims["valid_from"], claims["valid_until"] = day("2027-01-01"), day("2027-12-31")
    cred = city.issue(claims, holder=holder)
    reject(verifier_for(city), presentation(cred, holder, "library", LIB), "not_yet_valid")
    claims["valid_from"], claims["valid_until"] = "2025-01-01", "2026-01-01"
    cred = city.issue(claims, holder=holder)
    reject(verifier_for(city), presentation(cred, holder, "library", LIB), "expired")


def test_a_counter_clock_years_ahead_is_named_not_only_the_passport_expired(
        city: City, holder: nacl.signing.SigningKey) -> None:
    """A counter whose clock was set years ahead told every resident "your passport expired",
    nothing pointing at the clock, though the phone signed the code while it was valid."""
    cred = city.issue(holder=holder)
    years = NOW + 4 * 365 * 86400  # past the example's valid_until
    v = verifier_for(city)
    r = reject(v, presentation(cred, holder, "library", LIB, now=NOW), "expired", now=years)
    assert "reloj de esta ventanilla" in r.message["es"]
    assert time.strftime("%Y-%m-%d", time.gmtime(NOW)) in r.message["en"]  # when it was made
    assert "If this counter's date is wrong, correct it" in r.message["en"]
    # made when the phone's clock too was past the end: the passport's, with the counter's date
    late = reject(v, presentation(cred, holder, "library", LIB, now=years), "expired", now=years)
    assert "reloj" not in late.message["es"]
    assert time.strftime("%Y-%m-%d", time.localtime(years)) in late.message["en"]
    # a paper passport carries no phone's time: the counter's date alone
    paper = reject(v, city.issue_text(None, example_claims()), "expired", now=years)
    assert f"this counter's date is {time.strftime('%Y-%m-%d', time.localtime(years))}" in (
        paper.message["en"])


def test_clock_skew_is_configurable(city: City, holder: nacl.signing.SigningKey) -> None:
    claims = example_claims()
    claims["valid_from"] = day("2026-11-24")  # the day after NOW
    cred = city.issue(claims, holder=holder)
    start = (NOW // 86400 + 1) * 86400
    text = presentation(cred, holder, "library", LIB, now=start - 60)
    v = verifier_for(city)
    assert v.verify(text, service="library", now=start - 60).accepted  # default skew 300 s
    reject(v, text, "not_yet_valid", Policy.for_service("library", clock_skew_s=0), start - 60)


def test_disclosure_mismatch(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    other = city.issue(holder=holder)  # same person, different salts
    mixed = present(cred.cose, other.disclosures, groups=LIB, holder=holder,
                    audience="library", now=NOW)
    reject(verifier_for(city), transport.pack(mixed), "disclosure_mismatch")


def test_disclosure_duplicate(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    obj = cbor2.loads(transport.unpack(presentation(cred, holder, "library", LIB)))
    obj[1] = [obj[1][0], obj[1][0]]
    reject(verifier_for(city), transport.pack(cbor2.dumps(obj)), "disclosure_duplicate")
    # the group by its label, each half in its own language (not the schema's "residence")
    r = verifier_for(city).verify(transport.pack(cbor2.dumps(obj)), service="library", now=NOW)
    assert "(Residencia)" in r.message["es"] and "(Residence)" in r.message["en"], r.message


def test_disclosures_come_in_the_schemas_order(city: City,
                                               holder: nacl.signing.SigningKey) -> None:
    """The holder signs the shown digests in the order shown; another city's wallet listing
    them in one order and signing them in another was refused as "not from this phone". One
    order, ascending group key, and any other is refused as such."""
    cred = city.issue(holder=holder)
    obj = cbor2.loads(transport.unpack(presentation(cred, holder, "library", LIB)))
    obj[1] = obj[1][::-1]
    r = reject(verifier_for(city), transport.pack(cbor2.dumps(obj)), "disclosure_order")
    assert "orden" in r.message["es"] and "order" in r.message["en"]
    paper = cbor2.loads(city.issue().to_cbor())
    paper[1] = [paper[1][1], paper[1][0], *paper[1][2:]]
    reject(verifier_for(city), transport.pack(cbor2.dumps(paper)), "disclosure_order")


def test_paper_credential_policies(city: City) -> None:
    paper = city.issue()  # no holder key
    text = transport.pack(paper.to_cbor())
    v = verifier_for(city)
    r = v.verify(text, service="library", now=NOW)
    assert r.accepted and r.paper and not r.warnings
    r = v.verify(text, service="clinic", now=NOW)
    assert r.accepted and [w["code"] for w in r.warnings] == ["paper_check_id"]
    reject(v, text, "paper_not_accepted", Policy.for_service("library", paper="reject"))
    # a refusal says it was paper too, whatever refused it; a wallet's presentation is not
    refused = v.verify(text, service=Policy.for_service("library", paper="reject"), now=NOW)
    assert refused.paper and refused.to_json()["paper"] is True
    assert v.verify(text, service="library", now=NOW + 10 * 365 * 86400).paper  # expired
    assert not v.verify("PU1:", service="library", now=NOW).paper  # nothing decoded


def test_a_paper_passport_shows_the_counter_only_what_its_service_needs(city: City) -> None:
    """Paper carries every claim (no wallet to choose with): the library sees residence and
    library, not a birth date or a clinic network; where a photo ID is to be checked, the
    names too."""
    text = transport.pack(city.issue().to_cbor())
    v = verifier_for(city)

    def groups(policy: Policy) -> set[str]:
        r = v.verify(text, service=policy, now=NOW)
        assert r.accepted
        return {c["group"] for c in r.claims}

    assert groups(Policy.for_service("library")) == {"residence", "library"}
    assert groups(Policy.for_service("library", paper="accept_with_id")) == {
        "names", "residence", "library"}
    assert groups(Policy.for_service("transit")) == {"names", "residence", "transit"}
    assert groups(Policy.for_service("clinic")) == {"names", "birth_date", "residence", "clinic"}


def test_disclosures_incomplete(city: City) -> None:
    paper = city.issue()
    text = transport.pack(cbor2.dumps([paper.cose, list(paper.disclosures[:-1])]))
    reject(verifier_for(city), text, "disclosures_incomplete")


def test_holder_binding_missing(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)  # the wallet file shown as if it were paper
    reject(verifier_for(city), transport.pack(cred.to_cbor()), "holder_binding_missing")


def test_holder_signature_invalid(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    thief = nacl.signing.SigningKey.generate()
    reject(verifier_for(city), presentation(cred, thief, "library", LIB),
           "holder_signature_invalid")


def test_kb_bound_to_disclosures(city: City, holder: nacl.signing.SigningKey) -> None:
    """Dropping a disclosure from a presentation breaks the holder's signature."""
    cred = city.issue(holder=holder)
    obj = cbor2.loads(transport.unpack(presentation(cred, holder, "clinic", CLINIC)))
    obj[1] = obj[1][1:]
    reject(verifier_for(city), transport.pack(cbor2.dumps(obj)), "disclosure_mismatch")


def test_wrong_audience(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "clinic", [*LIB, "names", "birth_date", "clinic"])
    r = reject(verifier_for(city), text, "wrong_audience", "library")
    # the service by its label in each language, not the schema's "clinic" in the Spanish half
    assert "generado para Clínica, no para" in r.message["es"], r.message
    assert "made for Clinic, not for" in r.message["en"], r.message
    desk = presentation(cred, holder, "library", LIB, audience="library:desk-2")
    v = verifier_for(city)
    r = reject(v, desk, "wrong_audience", Policy.for_service("clinic", counter_id="desk-2"))
    assert "Biblioteca, ventanilla «desk-2»" in r.message["es"], r.message
    assert "Library, counter “desk-2”" in r.message["en"], r.message
    assert v.verify(desk, service=Policy.for_service("library", counter_id="desk-2"),
                    now=NOW).accepted
    reject(v, desk, "wrong_audience", Policy.for_service("library", counter_id="desk-9"))
    assert v.verify(desk, service=Policy.for_service("library", counter_id="Desk-2"),
                    now=NOW).accepted  # a name typed two ways is the same counter


def test_a_counter_id_signed_as_typed_or_percent_encoded_matches(
        city: City, holder: nacl.signing.SigningKey) -> None:
    """Our wallets sign the id as typed (every counter release compares it so); another city's
    StringOrURI-strict wallet percent-encodes it (RFC 3986): a counter reads either, any case."""
    cred = city.issue(holder=holder)
    v = verifier_for(city)
    assert audience("clinic", "Clínica Norte") == "clinic:Clínica Norte"
    for signed in ("clinic:Clínica Norte", "clinic:Cl%C3%ADnica%20Norte", "clinic:a%2Fb"):
        text = presentation(cred, holder, "clinic", CLINIC, audience=signed)
        typed = "a/b" if signed.endswith("a%2Fb") else "clínica norte"
        counters = [typed, "a%2Fb"] if typed == "a/b" else [typed, "Clínica Norte"]
        for counter in counters:  # as signed, or what it stands for
            r = v.verify(text, service=Policy.for_service("clinic", counter_id=counter), now=NOW)
            assert r.accepted, (signed, counter, r)
        r = v.verify(text, service=Policy.for_service("clinic", counter_id="Norte"), now=NOW)
        assert r.code == "wrong_audience" and signed[7:] in r.message["en"], r
    # an id as people type it: the other spelling of "í" (NFD), no accent, blanks around it
    text = presentation(cred, holder, "clinic", CLINIC, audience="clinic:Clínica  Norte ")
    for typed in (unicodedata.normalize("NFD", "Clínica Norte"), "Clinica Norte",
                  " clinica norte"):
        r = v.verify(text, service=Policy.for_service("clinic", counter_id=typed), now=NOW)
        assert r.accepted, (typed, r)
    # escapes that are no UTF-8 (whoever made the code chose them): a decision, no exception
    text = presentation(cred, holder, "clinic", CLINIC, audience="clinic:%FF%FE")
    r = v.verify(text, service=Policy.for_service("clinic", counter_id="ÿþ"), now=NOW)
    assert r.code == "wrong_audience", r


def test_replayed_screenshot_is_stale(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", LIB, now=NOW)
    v = verifier_for(city)
    assert v.verify(text, service="library", now=NOW + 119).accepted
    reject(v, text, "presentation_stale", now=NOW + 121)
    reject(v, text, "presentation_stale", Policy.for_service("library", freshness_s=30),
           now=NOW + 31)


def test_presentation_from_the_future(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    reject(verifier_for(city), presentation(cred, holder, "library", LIB, now=NOW + 3600),
           "presentation_future")


def test_nonce(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", LIB, nonce=b"8F3K")
    v = verifier_for(city)
    assert v.verify(text, service="library", now=NOW, nonce=b"8F3K").accepted
    reject(v, text, "nonce_mismatch", nonce=b"XXXX")


def test_revoked_and_suspended(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    index = city.next_index
    text = presentation(cred, holder, "library", LIB)
    city.suspension.set(index, True)
    reject(verifier_for(city), text, "suspended")
    city.revocation.set(index, True)
    reject(verifier_for(city), text, "revoked")


def test_stale_status_list_warns_or_rejects(city: City, holder: nacl.signing.SigningKey
                                            ) -> None:
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", LIB)
    v = verifier_for(city, made_at=NOW - 30 * 86400)
    r = v.verify(text, service="library", now=NOW)
    assert r.accepted and [w["code"] for w in r.warnings] == ["status_stale"]
    reject(v, text, "status_stale", Policy.for_service("library", stale_status="reject"))


def test_claims_missing_and_not_eligible(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    shown = presentation(cred, holder, "library", ["residence"])
    reject(verifier_for(city), shown, "claims_missing")
    message = verifier_for(city).verify(shown, service="library", now=NOW).message
    assert message == {  # what is missing, named in each language
        "es": "Faltan datos que este servicio necesita: Biblioteca. Pida al titular que los "
              "muestre desde su cartera.",
        "en": "Missing data this service needs: Library. Ask the holder to show them from "
              "their wallet."}
    claims = example_claims("calexico")  # clinic: not eligible
    cred = city.issue(claims, holder=holder)
    reject(verifier_for(city), presentation(cred, holder, "clinic", CLINIC), "not_eligible",
           "clinic")
    r = verifier_for(city).verify(presentation(cred, holder, "clinic", CLINIC), service="clinic",
                                  now=NOW)
    assert "(Clínica)" in r.message["es"] and "(Clinic)" in r.message["en"]  # each language


def test_service_unknown(city: City) -> None:
    reject(verifier_for(city), "PU1:", "service_unknown", "casino")
    message = verifier_for(city).verify("PU1:", service="casino").message
    assert "casino" in message["es"] and "casino" in message["en"]
    assert "Biblioteca (library), Transporte (transit), Clínica (clinic)" in message["es"]
    assert "library (Library), transit (Transit), clinic (Clinic)" in message["en"]


@pytest.mark.parametrize("text,code", [
    ("", "not_pasaporte"),
    ("HC1:6BFOXN*TS0BI$ZD", "not_pasaporte"),
    ("PU9:ABC", "unsupported_version"),
    ("PU1:A", "base45_invalid"),
    ("PU1:" + "0" * 5000, "too_large"),
])
def test_malformed_transport(city: City, text: str, code: str) -> None:
    reject(verifier_for(city), text, code)


@pytest.mark.parametrize("scanned", [b"PU1:ABC", None, 12, ["PU1:"]])
def test_what_is_not_text_is_rejected_not_raised(city: City, scanned: object) -> None:
    """The public API types what it is handed as ``object``: compiled, a narrower annotation
    raised TypeError before any check (a caller passing the scanner's bytes, or None)."""
    v = verifier_for(city)
    assert v.verify(scanned, service="library", now=NOW).code == "not_pasaporte"
    assert v.verify_image(scanned, service="library", now=NOW).code == "image_invalid"


def test_bad_shapes(city: City, holder: nacl.signing.SigningKey) -> None:
    """Each broken outline is refused with the code (and the part) that says what is wrong."""
    cred = city.issue(holder=holder)
    good = cbor2.loads(transport.unpack(presentation(cred, holder, "library", LIB)))
    v = verifier_for(city)
    variants: list[tuple[object, str, str | None]] = [
        ([good[0]], "shape_invalid", "envelope"),
        ([good[0], good[1], good[2]], "shape_invalid", "envelope"),
        ([[b"", {}, b"", b""], good[1]], "cose_invalid", None),
        ([good[0], "x"], "shape_invalid", "disclosures"),
        ([good[0], good[1], ["short"], good[3]], "shape_invalid", "proof"),
        ([good[0], good[1], good[2], [b"\xa1\x01\x26", {}, b"", b"0" * 64]], "cose_invalid",
         None),
        ({"a": 1}, "shape_invalid", "envelope"),
        (12, "shape_invalid", "envelope"),
    ]
    for obj, code, what in variants:
        r = v.verify(transport.pack(cbor2.dumps(obj)), service="library", now=NOW)
        assert (r.decision, r.code) == ("rejected", code), (obj, r)
        if what is not None:
            assert f"({what})" in r.message["en"], (obj, r)
            assert f"({what})" not in r.message["es"], (obj, r)  # the part named in Spanish


def test_cose_alg_must_be_eddsa(city: City, holder: nacl.signing.SigningKey) -> None:
    cred = city.issue(holder=holder)
    obj = cbor2.loads(transport.unpack(presentation(cred, holder, "library", LIB)))
    obj[0][0] = cbor2.dumps({1: -7, 4: city.kid})  # ES256 header on an EdDSA signature
    reject(verifier_for(city), transport.pack(cbor2.dumps(obj)), "cose_invalid")


def test_every_decision_code_has_a_catalog_entry() -> None:
    import re
    from pathlib import Path

    import verifier.engine

    # The source, not ``__file__``: compiled (make compile), that is the extension module.
    source = Path(verifier.engine.__file__).with_name("engine.py").read_text(encoding="utf-8")
    codes = set(re.findall(r'_(?:reject|msg)\(\s*"([a-z_]+)"', source))
    assert len(codes) > 15
    catalog = message_catalog()
    assert not codes - set(catalog)
    assert all(catalog[c]["es"] and catalog[c]["en"] for c in codes)


def test_cose_message_is_standard(city: City) -> None:
    cred = city.issue()
    parsed = cose.parse_sign1(cred.cose)
    assert parsed.kid == city.kid and parsed.verify(bytes(city.office_key.verify_key))


def test_status_unknown(city: City, holder: nacl.signing.SigningKey) -> None:
    from credential.claims import parse_claims
    from credential.passport import StatusRef, issue

    cred = issue(parse_claims(example_claims()), key=city.office_key, kid=city.kid,
                 iss=city.code, holder_key=bytes(holder.verify_key),
                 status=StatusRef(9, 1), issued_at=NOW)  # a list this bundle does not carry
    reject(verifier_for(city), presentation(cred, holder, "library", LIB), "status_unknown")


# -- one provocation per rejection code ----------------------------------------------------
# Each entry builds, through the public API and with real signatures, one scan that the engine
# must refuse with exactly that code. ``test_every_rejection_code_is_provoked`` checks that the
# table covers every code the engine (and the parsers it runs) can return, so a new code without
# a test fails here, not in the field.

Scan = tuple[Verifier, object, str | Policy, int | None, bytes | None]  # None: the clock
Build = Callable[[City, nacl.signing.SigningKey], Scan]


def _shown(city: City, holder: nacl.signing.SigningKey, *, now: int = NOW,
           audience: str | None = None, nonce: bytes | None = None) -> str:
    return presentation(city.issue(holder=holder), holder, "library", LIB, now=now,
                        audience=audience, nonce=nonce)


def _claims(valid_from: str, valid_until: str) -> dict[str, object]:
    claims = example_claims()
    claims["valid_from"], claims["valid_until"] = valid_from, valid_until
    return claims


def _status_beyond_the_list(city: City, holder: nacl.signing.SigningKey) -> Scan:
    from credential.claims import parse_claims
    from credential.passport import StatusRef, issue

    cred = issue(parse_claims(example_claims()), key=city.office_key, kid=city.kid,
                 iss=city.code, holder_key=bytes(holder.verify_key),
                 status=StatusRef(1, city.revocation.size), issued_at=NOW)  # one past the end
    return verifier_for(city), presentation(cred, holder, "library", LIB), "library", NOW, None


def _revoked(purpose: str) -> Build:
    def build(city: City, holder: nacl.signing.SigningKey) -> Scan:
        text = _shown(city, holder)
        getattr(city, purpose).set(city.next_index, True)
        return verifier_for(city), text, "library", NOW, None
    return build


def _paper_with_a_key_binding(city: City, holder: nacl.signing.SigningKey) -> Scan:
    """A paper credential (no holder key) dressed as a presentation: nobody's key to check
    the key-binding signature against."""
    paper = city.issue()
    text = transport.pack(present(paper.cose, paper.disclosures, groups=LIB, holder=holder,
                                  audience="library", now=NOW))
    return verifier_for(city), text, "library", NOW, None


def _mixed_disclosures(city: City, holder: nacl.signing.SigningKey) -> Scan:
    cred, other = city.issue(holder=holder), city.issue(holder=holder)
    text = transport.pack(present(cred.cose, other.disclosures, groups=LIB, holder=holder,
                                  audience="library", now=NOW))
    return verifier_for(city), text, "library", NOW, None


def _edited(edit: Callable[[list[Any]], None]) -> Build:
    def build(city: City, holder: nacl.signing.SigningKey) -> Scan:
        obj = cbor2.loads(transport.unpack(_shown(city, holder)))
        edit(obj)
        return verifier_for(city), transport.pack(cbor2.dumps(obj)), "library", NOW, None
    return build


def _dup(obj: list[Any]) -> None:
    obj[1] = [obj[1][0], obj[1][0]]


def _reversed(obj: list[Any]) -> None:
    obj[1] = obj[1][::-1]


def _es256(obj: list[Any]) -> None:
    obj[0][0] = cbor2.dumps({1: -7})


def _simple(text: object, service: str | Policy = "library") -> Build:
    def build(city: City, holder: nacl.signing.SigningKey) -> Scan:
        return verifier_for(city), text, service, NOW, None
    return build


PROVOKE: dict[str, Build] = {
    # the envelope: transport, CBOR, COSE and shape checks
    "not_pasaporte": _simple("HC1:6BFOXN*TS0BI$ZD"),
    "unsupported_version": _simple("PU9:ABC"),
    "too_large": _simple("PU1:" + "0" * 5000),
    "base45_invalid": _simple("PU1:A"),
    "zlib_invalid": _simple("PU1:" + base45.encode(b"\x78\x9c\xff\xff\xff")),
    "cbor_invalid": _simple(transport.pack(b"\xa2\x01\x00\x01\x00")),  # a duplicate key
    # what a scanner does to a code (more in test_scanner.py)
    "keyboard_layout": _simple("PU1Ö6BF"),  # a US scanner on a German computer
    "scan_several": lambda c, h: (verifier_for(c), _shown(c, h) + _shown(c, h), "library", NOW,
                                  None),
    "scan_incomplete": lambda c, h: (verifier_for(c), transport.pack(c.issue().to_cbor()[:-40]),
                                     "library", NOW, None),
    "cose_invalid": _edited(_es256),
    "shape_invalid": _paper_with_a_key_binding,
    "disclosure_duplicate": _edited(_dup),
    "disclosure_order": _edited(_reversed),
    "service_unknown": _simple("PU1:", "casino"),
    # the engine's decisions, in its order
    "issuer_unknown": lambda c, h: (verifier_for(stranger(c)), _shown(c, h), "library", NOW,
                                    None),
    "signature_invalid": lambda c, h: (
        verifier_for(c), presentation(c.issue(holder=h, key=nacl.signing.SigningKey.generate()),
                                      h, "library", LIB), "library", NOW, None),
    "issuer_mismatch": lambda c, h: (
        verifier_for(c), _shown(City(code="MXTIJ", office_key=c.office_key), h), "library",
        NOW, None),
    "key_not_valid_at_issuance": lambda c, h: (
        verifier_for(c), presentation(c.issue(holder=h, issued_at=c.key_valid_from - 10), h,
                                      "library", LIB), "library", NOW, None),
    "key_compromised": lambda c, h: (
        verifier_for(City(root_key=c.root_key, office_key=c.office_key,
                          compromised_since=NOW - 100)),
        _shown(c, h), "library", NOW, None),
    "not_yet_valid": lambda c, h: (
        verifier_for(c),
        presentation(c.issue(_claims(day("2027-01-01"), day("2027-12-31")), holder=h), h,
                     "library", LIB), "library", NOW, None),
    "expired": lambda c, h: (
        verifier_for(c), presentation(c.issue(_claims("2025-01-01", "2026-01-01"), holder=h), h,
                                      "library", LIB), "library", NOW, None),
    "disclosures_incomplete": lambda c, h: (
        verifier_for(c), transport.pack(cbor2.dumps([(p := c.issue()).cose,
                                                     list(p.disclosures[:-1])])),
        "library", NOW, None),
    "disclosure_mismatch": _mixed_disclosures,
    "paper_not_accepted": lambda c, h: (
        verifier_for(c), transport.pack(c.issue().to_cbor()),
        Policy.for_service("library", paper="reject"), NOW, None),
    "holder_binding_missing": lambda c, h: (
        verifier_for(c), transport.pack(c.issue(holder=h).to_cbor()), "library", NOW, None),
    "holder_signature_invalid": lambda c, h: (
        verifier_for(c), presentation(c.issue(holder=h), nacl.signing.SigningKey.generate(),
                                      "library", LIB), "library", NOW, None),
    "wrong_audience": lambda c, h: (
        verifier_for(c), _shown(c, h, audience="transit"), "library", NOW, None),
    "presentation_future": lambda c, h: (
        verifier_for(c), _shown(c, h, now=NOW + 3600), "library", NOW, None),
    "presentation_stale": lambda c, h: (
        verifier_for(c), _shown(c, h, now=NOW - 121), "library", NOW, None),
    "nonce_mismatch": lambda c, h: (
        verifier_for(c), _shown(c, h, nonce=b"8F3K"), "library", NOW, b"XXXX"),
    "status_unknown": _status_beyond_the_list,
    "suspended": _revoked("suspension"),
    "revoked": _revoked("revocation"),
    "status_stale": lambda c, h: (
        verifier_for(c, made_at=NOW - 30 * 86400), _shown(c, h),
        Policy.for_service("library", stale_status="reject"), NOW, None),
    "claims_missing": lambda c, h: (
        verifier_for(c), presentation(c.issue(holder=h), h, "library", ["residence"]),
        "library", NOW, None),
    "not_eligible": lambda c, h: (
        verifier_for(c), presentation(c.issue(example_claims("calexico"), holder=h), h,
                                      "clinic", CLINIC), "clinic", NOW, None),
    # the counter's own clock two days behind its bundle (more in test_counter_clock.py)
    "counter_clock_behind": lambda c, h: (
        verifier_for(c, made_at=int(time.time()) + 2 * CLOCK_BEHIND_S), _shown(c, h),
        "library", None, None),
}


@pytest.mark.parametrize("code", sorted(PROVOKE))
def test_each_rejection_code_is_provoked(code: str, city: City,
                                         holder: nacl.signing.SigningKey) -> None:
    v, text, service, now, nonce = PROVOKE[code](city, holder)
    r = v.verify(text, service=service, now=now, nonce=nonce)
    assert (r.decision, r.code) == ("rejected", code), r
    # the catalog's message for the code, in both languages, every placeholder filled in
    assert set(r.message) == {"es", "en"} and all(r.message.values())
    assert "{" not in r.message["es"] + r.message["en"], r.message
    if code == "shape_invalid":  # the engine's own check, not one of the parser's
        assert "(kb)" in r.message["en"], r.message


def test_every_rejection_code_is_provoked() -> None:
    """Every code the engine can return, and every code of the parsers it runs on a scan, has
    an entry in ``PROVOKE`` (which the test above runs): codes named in the engine's source,
    the status-list marks, and the codes of transport, CBOR, COSE and the envelope."""
    import re
    from pathlib import Path

    from credential.statuslist import MARKS

    root = Path(__file__).resolve().parents[2]

    def source(module: str) -> str:
        # The source file, not the module's ``__file__``: compiled (make compile), that is the
        # extension module.
        return (root / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")

    catalog = message_catalog()
    engine = {c for c in re.findall(r'"([a-z_]+)"', source("verifier.engine")) if c in catalog}
    # decisions and warnings (asserted in the tests above), not rejection codes
    not_rejections = {"accepted", "rejected", "paper_check_id", "catalog_unknown",
                      # messages of issuer_unknown and expired (tested where they are said)
                      "issuer_unknown_city", "expired_counter_clock_ahead"}
    parsers = set(re.findall(r'MalformedInput\(\s*"([a-z_]+)"', source("credential.transport")
                             + source("credential.passport")))
    parsers -= {"key_invalid"}  # raised by ``issue``, never on a scan
    codes = (engine - not_rejections) | set(MARKS.values()) | parsers | {
        "cbor_invalid", "cose_invalid", "service_unknown"}
    assert {"issuer_unknown", "signature_invalid", "revoked", "shape_invalid"} <= codes
    assert sorted(codes - set(PROVOKE)) == []


def test_one_shot_verify_function(city: City, holder: nacl.signing.SigningKey) -> None:
    from verifier.engine import verify

    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", LIB)
    r = verify(text, service="library", bundles=[city.bundle()], roots=[city.root], now=NOW)
    assert r.accepted and r.to_json()["decision"] == "accepted"


def _tagged(text: str, *positions: int, tag: int = cose.TAG_SIGN1) -> str:
    """``text`` with the COSE_Sign1s at ``positions`` of its envelope under ``tag``, as COSE
    libraries that tag by default write them (the bytes inside unchanged)."""
    envelope = cbor2.loads(transport.unpack(text))
    for i in positions:
        envelope[i] = cbor2.CBORTag(tag, envelope[i])
    return transport.pack(cbor2.dumps(envelope))


def test_a_code_whose_cose_sign1s_are_tagged_18_verifies(city: City,
                                                          holder: nacl.signing.SigningKey) -> None:
    """RFC 9052 §4.2: COSE_Sign1_Tagged or not, the same message (the tag is not signed)."""
    v = verifier_for(city)
    text = presentation(city.issue(holder=holder), holder, "library", LIB)
    for positions in ((0,), (3,), (0, 3)):
        r = v.verify(_tagged(text, *positions), service="library", now=NOW + 5)
        assert r.accepted, (positions, r)
    paper = transport.pack(city.issue().to_cbor())
    assert v.verify(_tagged(paper, 0), service="library", now=NOW + 5).accepted
    # two of them read as one line are told as such, as untagged ones are
    tagged = _tagged(text, 0, 3)
    r = v.verify(tagged + tagged, service="library", now=NOW + 5)
    assert r.code == "scan_several", r
    # RFC 8392 §6: the CWT tag (61) before the COSE one
    assert v.verify(_tagged(_tagged(text, 0), 0, tag=cose.TAG_CWT), service="library",
                    now=NOW + 5).accepted
    r = v.verify(_tagged(text, 0, tag=cose.TAG_CWT), service="library", now=NOW + 5)
    assert r.code == "cose_invalid", r  # 61 alone: what is under it says no COSE message
    # any other tag is no COSE_Sign1: refused, as before
    for tag in (17, 98):
        r = v.verify(_tagged(text, 0, tag=tag), service="library", now=NOW + 5)
        assert not r.accepted and r.code in ("cose_invalid", "cbor_invalid"), r


def test_a_time_with_a_fraction_is_refused_naming_the_times(
        city: City, holder: nacl.signing.SigningKey) -> None:
    """RFC 8392 allows a NumericDate with a fraction; this profile keeps one encoding of each
    passport, and an independent wallet writing ``iat`` as a float heard only "not the
    structure of a passport (kb)"."""
    envelope = cbor2.loads(city.issue_for(None, example_claims()).to_cbor())
    payload = cbor2.loads(envelope[0][2])
    payload[4] = float(payload[4])  # exp
    envelope[0] = cose.sign1(city.office_key, cbor2.dumps(payload), kid=city.kid)
    r = reject(verifier_for(city), transport.pack(cbor2.dumps(envelope)), "shape_invalid")
    assert "(iat, nbf, exp) in whole seconds" in r.message["en"], r.message
    assert "en segundos enteros" in r.message["es"] and "seconds" not in r.message["es"]
    shown = cbor2.loads(transport.unpack(presentation(city.issue(holder=holder), holder,
                                                      "library", LIB)))
    kb = cose.parse_sign1(shown[3])
    claims = cbor2.loads(kb.payload)
    claims[6] = NOW + 0.5
    shown[3] = [kb.protected, {}, cbor2.dumps(claims), kb.signature]
    r = reject(verifier_for(city), transport.pack(cbor2.dumps(shown)), "shape_invalid")
    assert "times (iat) in whole seconds" in r.message["en"], r.message


@pytest.mark.parametrize(("nbf", "code"), [(253402257599, "not_yet_valid"),
                                            (253402257600, "shape_invalid"),
                                            (2**40 - 1, "shape_invalid")])
def test_a_signed_time_past_any_calendar_is_refused_not_raised(city: City, nbf: int,
                                                                 code: str) -> None:
    """A signed ``nbf`` past year 9999 passed every shape check and raised on the way to "not
    valid until …": an internal error that ended a --scan session and a --batch replay."""
    envelope = cbor2.loads(city.issue_for(None, example_claims()).to_cbor())
    payload = cbor2.loads(envelope[0][2])
    payload[5] = nbf  # nbf
    envelope[0] = cose.sign1(city.office_key, cbor2.dumps(payload), kid=city.kid)
    result = verifier_for(city).verify(transport.pack(cbor2.dumps(envelope)), service="library",
                                       now=NOW)
    assert result.code == code, result
    if code == "not_yet_valid":
        assert "9999-12-31" in result.message["en"]


def test_a_forged_code_names_no_passport(city: City) -> None:
    """A refusal before any signature verified named the credential id (and paper) the
    payload claimed: a forger copying a resident's id had the counter's log name her."""
    envelope = cbor2.loads(city.issue_for(None, example_claims()).to_cbor())
    envelope[0][3] = bytes(64)  # a signature that is none
    result = verifier_for(city).verify(transport.pack(cbor2.dumps(envelope)), service="library",
                                       now=NOW)
    assert result.code == "signature_invalid" and result.credential_id is None
    assert result.paper is False


def test_a_key_two_cities_list_answers_for_the_city_the_passport_names(
        city: City, holder: nacl.signing.SigningKey) -> None:
    """Listed by another city's bundle too (by mistake, or by that city's root), an office
    key's genuine passports were refused as "another city than its key's" whenever that
    bundle was given first."""
    other = City(city="Calexico", country="US", code="USCAL", office_key=city.office_key)
    text = presentation(city.issue(holder=holder), holder, "library", LIB)
    for bundles, roots in (([other.bundle(), city.bundle()], [other.root, city.root]),
                           ([city.bundle(), other.bundle()], [city.root, other.root])):
        result = Verifier(bundles=bundles, roots=roots).verify(text, service="library", now=NOW)
        assert result.accepted, result
        assert result.issuer is not None and "Mexicali" in str(result.issuer)


# -- boundaries each check holds (every one a mutant the suite once let through) ---------------

def test_a_key_signs_only_within_its_validity(city: City, holder: nacl.signing.SigningKey
                                              ) -> None:
    """Both ends: a retired key's new signatures (issued after its valid_until) are refused,
    as are ones from before it was made."""
    city.key_valid_until = NOW - 86400
    for issued_at, code in ((NOW - 3600, "key_not_valid_at_issuance"),
                            (NOW - 86400, "accepted")):
        text = presentation(city.issue(holder=holder, issued_at=issued_at), holder, "library",
                            LIB)
        assert verifier_for(city).verify(text, service="library", now=NOW).code == code


def test_a_status_list_just_past_its_age_limit_is_stale(
        city: City, holder: nacl.signing.SigningKey) -> None:
    """Past the limit by a second, not by twice it: a counter set to refuse stale lists took
    passports revoked meanwhile."""
    text = presentation(city.issue(holder=holder), holder, "library", LIB)
    limit = Policy.for_service("library", stale_status="reject")
    for age, code in ((limit.status_max_age_s, "accepted"),
                      (limit.status_max_age_s + 1, "status_stale")):
        v = verifier_for(city, made_at=NOW - age)
        assert v.verify(text, service=limit, now=NOW).code == code, age


def test_a_passport_expires_at_its_exp_second(city: City) -> None:
    """``exp`` is exclusive: at that very second the passport is expired."""
    cred = city.issue_for(None, example_claims())
    exp = cbor2.loads(cbor2.loads(cred.to_cbor())[0][2])[4]
    text = transport.pack(cred.to_cbor())
    exact = Policy.for_service("library", clock_skew_s=0)
    assert verifier_for(city).verify(text, service=exact, now=exp - 1).accepted
    reject(verifier_for(city), text, "expired", exact, now=exp)


def test_a_counter_id_that_another_begins_with_is_another_counter(
        city: City, holder: nacl.signing.SigningKey) -> None:
    """A code made for desk-30 is not desk-3's, nor the reverse."""
    cred = city.issue(holder=holder)
    for signed, counter in (("desk-30", "desk-3"), ("desk-3", "desk-30")):
        text = presentation(cred, holder, "library", LIB, audience=audience("library", signed))
        reject(verifier_for(city), text, "wrong_audience",
               Policy.for_service("library", counter_id=counter))


def test_of_two_bundles_of_a_city_the_newest_counts_in_any_order(
        city: City, holder: nacl.signing.SigningKey) -> None:
    """A counter given --bundle v2 --bundle v1 (a glob, a restored folder) kept the last one:
    a passport revoked in v2 was accepted."""
    cred = city.issue(holder=holder)
    text = presentation(cred, holder, "library", LIB)
    old = city.bundle(version=1)
    city.revocation.set(city.next_index, True)
    new = city.bundle(version=2)
    for bundles in ([new, old], [old, new]):
        reject(Verifier(bundles=bundles, roots=[city.root]), text, "revoked")
