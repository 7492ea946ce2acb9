"""Printable paper-passport cards (``issuer.card``, ``issue --card``, ``bulk --cards``): a real
card from a real issued passport, read back by the real QR decoder, also as a printer and a
scanner would degrade it, and accepted by the real verifier; what text goes where; glyphs that
are really drawn; long and hostile names kept in their boxes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import unicodedata
from pathlib import Path
from types import MappingProxyType

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from credential import qr, transport
from credential.bundle import RootKey
from credential.claims import parse_claims
from credential.errors import PasaporteError, StoreError, UsageError, message_catalog
from credential.keys import b64url
from credential.passport import StatusRef, issue
from credential.text import NOT_TEXT
from issuer import card
from issuer.bulk import CARD_SUFFIX
from issuer.store import IssuerStore
from schemas import schema
from tests.conftest import Run
from tests.factory import EXAMPLES, NOW, City, example_claims
from verifier.engine import Verifier

SAMPLE = EXAMPLES / "residents-sample.csv"
FIELDS = ("given_name", "family_name", "residence.city", "residence.country", "valid_from",
          "valid_until", "credential_id", "issuer", "issuing_office")


def _issue_card(run: Run, office: Path, tmp_path: Path, claims: dict[str, object] | None = None,
                name: str = "p") -> tuple[str, str, bytes]:
    """A paper passport issued by the CLI with ``--card``: (its id, its text, the card PNG)."""
    claims_file = tmp_path / f"{name}.json"
    claims_file.write_text(json.dumps(claims or example_claims(), ensure_ascii=False), "utf-8")
    code, out, err = run("issuer", "issue", "--claims", str(claims_file), "--paper",
                         "--out", str(tmp_path / f"{name}.cred"),
                         "--card", str(tmp_path / f"{name}.png"), "--home", str(office))
    assert code == 0, err
    return (out.strip(), (tmp_path / f"{name}.cred").read_text().strip(),
            (tmp_path / f"{name}.png").read_bytes())


def _verifier(run: Run, office: Path, tmp_path: Path) -> Verifier:
    assert run("issuer", "root", "--out", str(tmp_path / "r.json"), "--home", str(office))[0] == 0
    assert run("issuer", "bundle", "--out", str(tmp_path / "b.cbor"),
               "--home", str(office))[0] == 0
    return Verifier(bundles=[(tmp_path / "b.cbor").read_bytes()],
                    roots=[RootKey.from_json((tmp_path / "r.json").read_text())])


def _printed(png: bytes, *, seed: int = 7) -> bytes:
    """The card as an office printer and a counter's scanner give it back: 150 dpi instead of
    300, slightly out of focus, on grey recycled paper with uneven toner, saved as a JPEG.
    Deterministic for a given seed."""
    image = Image.open(io.BytesIO(png)).convert("L")
    image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    image = image.point(lambda v: 45 + v * 170 // 255)  # black toner 45, grey paper 215
    speckle = Image.frombytes("L", image.size,
                              random.Random(seed).randbytes(image.width * image.height))
    image = Image.blend(image, speckle, 0.12)  # ±15 of uneven toner and paper fibre
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


def _disjoint(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def _check_geometry(plan: card.CardLayout) -> None:
    """Every text inside the card and its own box, no two boxes overlapping, none on the QR
    code or its quiet zone, every line no wider than its box."""
    for item in plan.items:
        left, top, right, bottom = item.box
        assert 0 <= left < right <= plan.width and 0 <= top < bottom <= plan.height, item
        assert _disjoint(item.box, plan.qr_box), item
        for line in item.lines:
            assert card.line_width(card.card_atoms(line), item.size) <= right - left, item
    for i, a in enumerate(plan.items):
        for b in plan.items[i + 1:]:
            assert _disjoint(a.box, b.box), (a, b)


def _ink_outside(png: bytes, plan: card.CardLayout, slack: int = 1) -> int:
    """Dark pixels drawn anywhere but in a text box (``slack`` pixels around it, for a glyph's
    anti-aliased edge), on the QR code, or on the cutting line."""
    image = Image.open(io.BytesIO(png)).convert("L")
    allowed = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(allowed)
    for item in plan.items:
        draw.rectangle((item.box[0] - slack, item.box[1] - slack, item.box[2] + slack,
                        item.box[3] + slack), fill=255)
    draw.rectangle(plan.qr_box, fill=255)
    # the cutting line: ID-1's rounded corners (3.18 mm), drawn 2 px wide along the edge
    corner = round(3.18 / 25.4 * 300)
    outside_cut = Image.new("L", image.size, 255)
    ImageDraw.Draw(outside_cut).rounded_rectangle(
        (4, 4, image.width - 5, image.height - 5), corner - 4, fill=0)
    allowed = ImageChops.lighter(allowed, outside_cut)
    dark = image.point(lambda v: 255 if v < 200 else 0)
    return sum(ImageChops.subtract(dark, allowed).histogram()[1:])


# -- a real card ------------------------------------------------------------------------------

def test_a_card_scans_and_verifies_also_printed_and_scanned_again(
        office: Path, run: Run, tmp_path: Path) -> None:
    cid, text, png = _issue_card(run, office, tmp_path)
    image = Image.open(io.BytesIO(png))
    # ID-1 at 300 dpi, and the file says so: printed, it comes out 85.6 × 54 mm
    assert image.size == (1011, 638)
    assert tuple(round(d) for d in image.info["dpi"]) == (300, 300)
    verifier = _verifier(run, office, tmp_path)
    for scanned in (png, _printed(png)):
        read = qr.decode_image(scanned)
        assert read == text
        for service in ("library", "clinic"):
            result = verifier.verify(read, service=service)
            assert result.accepted and result.paper and result.credential_id == cid, \
                result.to_json()


def test_the_printed_card_is_still_read_when_the_quiet_zone_is_kept(
        office: Path, run: Run, tmp_path: Path) -> None:
    """The QR code keeps its four-module quiet zone on the card: nothing is drawn on it."""
    _, text, png = _issue_card(run, office, tmp_path)
    plan = card.layout(text, card.office_of(IssuerStore.open(office)))
    image = Image.open(io.BytesIO(png)).convert("L")
    left, top, right, bottom = plan.qr_box
    zone = 4 * plan.qr_scale
    assert plan.qr_scale >= 5  # ≥ 0.42 mm modules: readable off paper by a phone or an imager
    frame = image.crop(plan.qr_box)
    code_area = Image.new("L", frame.size, 0)  # white over the code itself, to ignore it
    ImageDraw.Draw(code_area).rectangle((zone, zone, frame.width - zone - 1,
                                         frame.height - zone - 1), fill=255)
    assert ImageChops.lighter(frame, code_area).getextrema() == (255, 255)  # all white around
    assert frame.crop((zone, zone, zone + 1, zone + 1)).getextrema() == (0, 0)  # a finder
    assert right - left == bottom - top == (17 + 4 * qr.qr_version(text) + 8) * plan.qr_scale


def test_the_card_shows_what_its_qr_code_says(office: Path, run: Run, tmp_path: Path) -> None:
    cid, text, png = _issue_card(run, office, tmp_path)
    plan = card.layout(text, card.office_of(IssuerStore.open(office)))
    shown = {item.role: item for item in plan.items}
    values = {f: shown[f"value:{f}"].text for f in FIELDS}
    example = example_claims()  # its validity, as the suite's calendar has it
    assert values == {
        "given_name": "María Guadalupe", "family_name": "Hernández López",
        "residence.city": "Mexicali", "residence.country": "MX",
        "valid_from": example["valid_from"], "valid_until": example["valid_until"],
        "credential_id": cid, "issuer": "Mexicali, MX", "issuing_office": "Centro"}
    # ...which is what a counter shows for the same code (names only where a photo ID is asked)
    counter = _verifier(run, office, tmp_path).verify(text, service="clinic")
    claims = {f"{c['group']}.{c['claim']}": c["value"] for c in counter.claims}
    assert values["given_name"] == claims["names.given_name"]
    assert values["family_name"] == claims["names.family_name"]
    assert values["residence.city"] == claims["residence.city"]
    assert counter.issuer is not None and values["issuing_office"] == counter.issuer["office"]
    # labels come from schemas/, in both languages; the fixed lines from the message catalog
    spec = schema()
    expected = {"given_name": spec.group("names").fields[0].label,
                "family_name": spec.group("names").fields[1].label,
                "residence.city": spec.group("residence").fields[0].label,
                "residence.country": spec.group("residence").fields[1].label,
                **{f: spec.envelope_labels[f] for f in FIELDS[4:]}}
    for field, labels in expected.items():
        assert shown[f"label:{field}"].text == f"{labels['es']} / {labels['en']}"
    for role, code in (("title", "card_title"), ("photo_id", "card_photo_id")):
        texts = message_catalog()[code]
        assert shown[role].text == f"{texts['es']} / {texts['en']}"
    assert "identificación" in shown["photo_id"].text and "photo ID" in shown["photo_id"].text
    _check_geometry(plan)
    # The card the command drew inside the issuing transaction (the catalogue's "Mexicali"
    # not yet committed: named from the claims it was encoded from) is this very card.
    again = card.render_card(text, card.office_of(IssuerStore.open(office)))
    assert Image.open(io.BytesIO(again)).tobytes() == Image.open(io.BytesIO(png)).tobytes()
    assert _ink_outside(png, plan) == 0


# -- glyphs -----------------------------------------------------------------------------------

def _drawn(text: str, size: int = 48) -> Image.Image:
    image = Image.new("L", (size * 4, size * 2), 255)
    card.draw_line(image, (size // 2, size * 3 // 2), card.card_atoms(text), size)
    return image


@pytest.mark.parametrize(("accented", "plain"), [
    ("ñ", "n"), ("Ñ", "N"), ("é", "e"), ("É", "E"), ("á", "a"), ("í", "i"), ("ó", "o"),
    ("ú", "u"), ("ü", "u"), ("Ü", "U"), ("ç", "c"), ("à", "a"), ("ô", "o"), ("ł", "l"),
])
def test_accented_letters_are_drawn_as_their_letter(accented: str, plain: str) -> None:
    """Pillow's bundled font has no accented letter: drawn as they are, "ñ", "é" and "á" all
    come out as one same empty box, which differs from "n" just as well. So: the letter is
    drawn over its base letter's exact ink, and differs from every other accented letter."""
    image, base = _drawn(accented), _drawn(plain)
    assert image.tobytes() != base.tobytes()
    # the base letter's ink is all there (an empty box would not hold the "n")
    # (ç's comma and ł's bar cross the base's own ink; í's accent takes the place of its dot)
    assert ImageChops.lighter(image, base).tobytes() == base.tobytes() or accented in "çłí"
    others = {_drawn(c).tobytes() for c in "ñÑéÉáíóúüÜçàôł" if c != accented}
    assert image.tobytes() not in others
    box = image.point(lambda v: 255 - v).getbbox()
    base_box = base.point(lambda v: 255 - v).getbbox()
    assert box is not None and base_box is not None
    if accented not in "çł":  # the mark is above the letter, within its width or near it
        assert box[1] < base_box[1] or accented in "íi"


def _ink_runs(image: Image.Image) -> int:
    """How many separate bands of rows hold ink, top to bottom (i: its dot, then its stem)."""
    ink = image.point(lambda v: 255 if v < 128 else 0)
    rows = [ink.crop((0, y, ink.width, y + 1)).getbbox() is not None for y in range(ink.height)]
    return sum(1 for y, row in enumerate(rows) if row and (y == 0 or not rows[y - 1]))


def test_i_and_j_lose_their_dot_under_an_accent() -> None:
    assert _ink_runs(_drawn("i")) == _ink_runs(_drawn("j")) == 2  # dot, stem
    # an acute over a dotted i would make three: acute, dot, stem
    assert _ink_runs(_drawn("í")) == _ink_runs(_drawn("ĵ")) == _ink_runs(_drawn("ï")) == 2
    assert _ink_runs(_drawn("ị")) == 3  # a dot below keeps the dot above


def test_what_the_font_cannot_draw_is_printed_as_its_escape() -> None:
    atoms = card.card_atoms("Ruiz\u202eZ \u200b陈 \x1b[2K Ana\u00a0María q\u0301")
    drawn = "".join(atoms)
    assert "\\u202e" in drawn and "\\u200b" in drawn and "\\u9648" in drawn and "\\x1b" in drawn
    assert "Ana María" in drawn and "q\u0301" in atoms  # a no-break space; a mark with no letter
    assert not any(unicodedata.category(c) in NOT_TEXT for c in drawn)


@given(st.text(max_size=40))
def test_any_text_draws_without_raw_controls_or_errors(text: str) -> None:
    atoms = card.card_atoms(text)
    assert not any(unicodedata.category(c) in NOT_TEXT for c in "".join(atoms))
    image = Image.new("L", (40 * 100, 80), 255)
    card.draw_line(image, (5, 60), atoms, 24)
    # what is drawn stays within the width the layout measured (boxes are sized by it)
    ink = ImageOps.invert(image).getbbox()
    assert ink is None or ink[2] <= 5 + card.line_width(atoms, 24) + 6, (ink, text)  # overhang


# -- long and hostile names -------------------------------------------------------------------

def test_very_long_names_stay_in_their_boxes(office: Path, run: Run, tmp_path: Path) -> None:
    claims = example_claims()
    given_name = ("Ñáéíóú" * 20)[:100]  # one word of 100 letters, every one composed
    family = " ".join(["Hernández-López"] * 7)[:100].strip()
    claims |= {"given_name": given_name, "family_name": family}
    _, text, png = _issue_card(run, office, tmp_path, claims)
    plan = card.layout(text, card.office_of(IssuerStore.open(office)))
    _check_geometry(plan)
    assert _ink_outside(png, plan) == 0
    shown = {item.role: item for item in plan.items}
    # wrapped, smaller, but whole: nothing of a name is left off the card
    assert "".join(shown["value:given_name"].lines) == given_name
    assert " ".join(shown["value:family_name"].lines) == family
    assert len(shown["value:given_name"].lines) > 1
    assert shown["value:given_name"].size < shown["value:credential_id"].size
    assert qr.decode_image(png) == text and qr.decode_image(_printed(png)) == text


def _hostile_text(given_name: str, family_name: str) -> tuple[str, card.CardOffice]:
    """A paper passport whose names hold what the issuer's own checks refuse (made with the
    signing function directly): a card must still never draw it as it is."""
    city = City()
    parsed = parse_claims(example_claims())
    groups = dict(parsed.groups)
    groups["names"] = MappingProxyType({"given_name": given_name, "family_name": family_name})
    claims = dataclasses.replace(parsed, groups=MappingProxyType(groups))
    cred = issue(claims, key=city.office_key, kid=city.kid, iss=city.code, holder_key=None,
                 status=StatusRef(1, 1), issued_at=NOW)
    office = card.CardOffice(city.code, city.city, city.country, {b64url(city.kid): "Centro"},
                             {})
    return transport.pack(cred.to_cbor()), office


def test_bidi_and_control_characters_are_not_drawn_raw() -> None:
    text, office = _hostile_text("Ana\u202eZ\u200d", "Ruiz\x1b[2K\r\u2028Peña")
    plan = card.layout(text, office)
    shown = {item.role: item for item in plan.items}
    assert shown["value:given_name"].text == "Ana\\u202eZ\\u200d"
    assert shown["value:family_name"].text == "Ruiz\\x1b[2K\\r\\u2028Peña"
    _check_geometry(plan)
    for item in plan.items:
        assert not any(unicodedata.category(c) in NOT_TEXT for c in "".join(item.lines)), item
    png = card.render_card(text, office)
    assert qr.decode_image(png) == text
    assert _ink_outside(png, plan) == 0


def test_a_name_too_long_to_fit_is_cut_visibly_never_off_the_card() -> None:
    # 100 characters the font has no glyph for print as 600 characters of escapes each
    text, office = _hostile_text("陈" * 100, "\u0416" * 100)
    plan = card.layout(text, office)
    _check_geometry(plan)
    shown = {item.role: item for item in plan.items}
    assert shown["value:given_name"].lines[-1].endswith("...")
    assert shown["value:credential_id"].lines  # everything else is still there
    assert _ink_outside(card.render_card(text, office), plan) == 0


def test_piled_marks_stay_on_their_line() -> None:
    """Two marks over a capital (Vietnamese Ấ) fit over the line; a pile of them (Z\u0301\u0301…,
    which the issuer's checks let through: they are letters' marks) is printed as escapes."""
    text, office = _hostile_text("ẤǗ Ệ ģ", "Z" + "\u0301" * 6 + "a\u0308\u0301\u0300")
    plan = card.layout(text, office)
    shown = {item.role: item for item in plan.items}
    assert shown["value:given_name"].text == "ẤǗ Ệ \\u0123"  # a comma under g's descender: no
    assert shown["value:family_name"].text.count("\\u0301") == 4  # two drawn over the Z
    _check_geometry(plan)
    assert _ink_outside(card.render_card(text, office), plan) == 0


def test_a_card_is_drawn_only_for_this_offices_paper_passports() -> None:
    text, office = _hostile_text("Ana", "Ruiz")
    with pytest.raises(StoreError) as other_city:
        card.layout(text, dataclasses.replace(office, code="USCAL"))
    assert other_city.value.code == "card_not_this_office"
    with pytest.raises(StoreError) as other_key:
        card.layout(text, dataclasses.replace(office, offices={}))
    assert other_key.value.code == "card_not_this_office"
    city = City()
    wallet = nacl.signing.SigningKey.generate()
    bound = city.issue_text(bytes(wallet.verify_key), example_claims())
    with pytest.raises(UsageError) as not_paper:
        card.layout(bound, card.CardOffice(city.code, city.city, city.country,
                                           {b64url(city.kid): "Centro"}, {}))
    assert not_paper.value.code == "card_not_paper"


# -- the command line -------------------------------------------------------------------------

def test_card_with_a_holder_key_is_a_usage_error(office: Path, run: Run, tmp_path: Path) -> None:
    key = b64url(bytes(nacl.signing.SigningKey.generate().verify_key))
    code, _, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--holder-key", key, "--out", str(tmp_path / "w.cred"),
                       "--card", str(tmp_path / "w.png"), "--home", str(office))
    assert code == 2 and "[card_not_paper]" in err
    assert "pasaporte en papel" in err and "paper passport" in err  # both languages
    assert not (tmp_path / "w.cred").exists() and not (tmp_path / "w.png").exists()
    assert run("issuer", "status", "AAAAAAAAAAAAA", "--home", str(office))[0] == 1
    code, _, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "w.cred"),
                       "--card", str(tmp_path / "w.jpg"), "--home", str(office))
    assert code == 2 and "[qr_not_png]" in err and "--card is written as a PNG" in err
    code, _, err = run("issuer", "issue", "--claims", str(EXAMPLES / "claims-mexicali.json"),
                       "--paper", "--out", str(tmp_path / "w.png"),
                       "--card", str(tmp_path / "w.png"), "--home", str(office))
    assert code == 2 and "[output_same_file] --out / --card" in err, err
    with IssuerStore.open(office).engine.connect() as db:
        from issuer.store import credentials

        assert db.execute(credentials.select()).first() is None  # nothing was issued


def _index(out: Path) -> list[tuple[str, str]]:
    return [(r["line"], r["credential_id"])
            for r in csv.DictReader(io.StringIO((out / "index.csv").read_text()))]


def test_bulk_draws_a_card_per_row_and_redraws_a_missing_one(
        office: Path, run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("issuer", "bulk", str(SAMPLE), "--out-dir", str(out), "--cards",
            "--home", str(office))
    code, stdout, err = run(*args)
    assert code == 0 and stdout.startswith("3 ") and "Dibujando tarjetas / Drawing cards" in err
    index = _index(out)
    store_office = card.office_of(IssuerStore.open(office))
    names = []
    for _, cid in index:
        text = (out / f"{cid}.txt").read_text().strip()
        png = (out / f"{cid}{CARD_SUFFIX}").read_bytes()
        assert qr.decode_image(png) == text
        shown = {i.role: i.text for i in card.layout(text, store_office).items}
        names.append((shown["value:given_name"], shown["value:family_name"]))
        assert shown["value:credential_id"] == cid
        assert not (out / f"{cid}.png").exists()  # cards instead of bare QR images
    assert names == [("Ana Sofía", "Núñez Peña"), ("Luis", "García"), ("Chen", "Wu Martínez")]
    lost = out / f"{index[1][1]}{CARD_SUFFIX}"
    before = lost.read_bytes()
    lost.unlink()
    code, stdout, _ = run(*args)  # resumed: nothing issued again, the card drawn again
    assert code == 0 and stdout.startswith("0 ") and lost.read_bytes() == before
    assert _index(out) == index


def test_bulk_cards_and_qr_codes_on_every_core(office: Path, run: Run, tmp_path: Path) -> None:
    header, *body = SAMPLE.read_text(encoding="utf-8").splitlines()
    rows = [header]
    for i in range(20):  # more than the drawing workers start for
        cells = body[i % len(body)].split(",")
        cells[2] = f"19{50 + i}-01-01"
        rows.append(",".join(cells))
    (tmp_path / "many.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ("issuer", "bulk", str(tmp_path / "many.csv"), "--out-dir", str(out), "--qr",
            "--cards", "--home", str(office))
    assert run(*args)[0] == 0
    index = _index(out)
    assert len(index) == 20
    for _, cid in index:
        text = (out / f"{cid}.txt").read_text().strip()
        assert qr.decode_image((out / f"{cid}.png").read_bytes()) == text
        assert qr.decode_image((out / f"{cid}{CARD_SUFFIX}").read_bytes()) == text
    (out / f"{index[3][1]}{CARD_SUFFIX}").unlink()
    (out / f"{index[4][1]}.png").unlink()
    code, stdout, _ = run(*args)
    assert code == 0 and stdout.startswith("0 ")
    assert (out / f"{index[3][1]}{CARD_SUFFIX}").exists() and (out / f"{index[4][1]}.png").exists()


def test_messages_of_the_card_exist_in_both_languages() -> None:
    for code in ("card_title", "card_photo_id", "card_not_paper", "card_not_this_office"):
        texts = message_catalog()[code]
        assert texts["es"] and texts["en"] and texts["es"] != texts["en"]
    error = PasaporteError("card_not_this_office", credential_id="X", what="USCAL")
    assert "USCAL" in error.message["es"] and "USCAL" in error.message["en"]
