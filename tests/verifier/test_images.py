"""Real QR images: rendered PNG and a phone-like photo → zxing-cpp → verified."""

from __future__ import annotations

import nacl.signing
import pytest

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
    import io

    from PIL import Image

    v, _, _ = setup
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), "white").save(buf, "PNG")
    r = v.verify_image(buf.getvalue(), service="library", now=NOW)
    assert r.code == "qr_not_found"
    assert v.verify_image(b"not an image", service="library", now=NOW).code == "image_invalid"
