"""Real QR images: rendered PNG and a phone-like photo → zxing-cpp → verified."""

from __future__ import annotations

import io

import nacl.signing
import pytest
from PIL import Image

from credential import qr, transport
from tests.credential.photos import phone_photo
from tests.factory import NOW, City, presentation
from verifier.engine import Verifier


@pytest.fixture(scope="module")
def setup() -> tuple[Verifier, str, str]:
    city, holder = City(), nacl.signing.SigningKey.generate()
    cred = city.issue(holder=holder)
    pres = presentation(cred, holder, "library", ["residence", "library"])
    paper = transport.pack(city.issue().to_cbor())
    return Verifier(bundles=[city.bundle()], roots=[city.root]), pres, paper


def test_png_round_trip(setup: tuple[Verifier, str, str]) -> None:
    v, pres, paper = setup
    r = v.verify_image(qr.render_png(pres), service="library", now=NOW)
    assert r.accepted, r
    r = v.verify_image(qr.render_png(paper), service="clinic", now=NOW)
    assert r.accepted and r.paper


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_phone_photo(setup: tuple[Verifier, str, str], seed: int) -> None:
    v, pres, _ = setup
    photo = phone_photo(qr.render_png(pres), seed=seed)
    assert photo[:2] == b"\xff\xd8"  # a JPEG, as a phone saves it
    r = v.verify_image(photo, service="library", now=NOW)
    assert r.accepted, r


def test_image_without_qr(setup: tuple[Verifier, str, str]) -> None:
    v, _, _ = setup
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(buf, "PNG")
    r = v.verify_image(buf.getvalue(), service="library", now=NOW)
    assert r.code == "qr_not_found"
    assert v.verify_image(b"not an image", service="library", now=NOW).code == "image_invalid"


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _grey(text: str) -> Image.Image:
    return Image.open(io.BytesIO(qr.render_png(text))).convert("L")


def test_several_codes_in_view(setup: tuple[Verifier, str, str]) -> None:
    """A decoy beside the passport does not win; two different passports are refused with a
    code the clerk can act on, in both languages."""
    v, pres, paper = setup
    codes = [_grey(text) for text in ("PUSH", pres, paper)]
    scene = Image.new("L", (sum(c.width + 40 for c in codes), max(c.height for c in codes)), 255)
    x = 0
    for code in codes:
        scene.paste(code, (x, 0))
        x += code.width + 40
    r = v.verify_image(_png(scene), service="library", now=NOW)
    assert r.code == "qr_several" and r.message["es"] != r.message["en"]
    decoy_and_passport = scene.crop((0, 0, codes[0].width + codes[1].width + 80, scene.height))
    assert v.verify_image(_png(decoy_and_passport), service="library", now=NOW).accepted


def test_transparent_background(setup: tuple[Verifier, str, str]) -> None:
    """A code saved on a transparent black background, as qrcode's "transparent" writes it."""
    v, pres, _ = setup
    code = _grey(pres)
    black = Image.new("L", code.size, 0)
    rgba = Image.merge("RGBA", (black, black, black, code.point(lambda p: 255 - p)))
    assert v.verify_image(_png(rgba), service="library", now=NOW).accepted
