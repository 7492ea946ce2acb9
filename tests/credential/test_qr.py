"""QR rendering and reading: real segno → PNG → zxing-cpp round trips, phone-like photos, limits."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from credential import qr, transport
from credential.errors import MalformedInput
from tests.credential.photos import phone_photo


def _payload(chars: int, seed: int) -> str:
    """A PU1: text of exactly ``chars`` characters (incompressible, like signed CBOR)."""
    body = random.Random(seed).randbytes((chars - 4) // 3 * 2)
    text = transport.pack(body)
    assert len(text) == chars
    return text


LIBRARY = _payload(550, 1)  # the library presentation target is ≤ 555 characters
PAPER = _payload(700, 2)  # the paper credential target is ≤ 700


def _code(data: object) -> str:
    with pytest.raises(MalformedInput) as info:
        qr.decode_image(data)
    return info.value.code


@pytest.mark.parametrize("text", [LIBRARY, PAPER], ids=["550", "700"])
def test_png_round_trip(text: str, tmp_path: Path) -> None:
    png = qr.render_png(text)
    assert png.startswith(b"\x89PNG")
    assert qr.decode_image(png) == text
    path = tmp_path / "code.png"
    path.write_bytes(png)
    assert qr.decode_image(path) == text
    assert qr.decode_image(str(path)) == text


@pytest.mark.parametrize(("text", "seed"), [(LIBRARY, 1), (LIBRARY, 2), (PAPER, 3), (PAPER, 4)])
def test_phone_photo_round_trip(text: str, seed: int) -> None:
    photo = phone_photo(qr.render_png(text), seed=seed)
    assert photo.startswith(b"\xff\xd8")  # JPEG
    assert qr.decode_image(photo) == text


def test_alphanumeric_mode_and_fixed_level() -> None:
    # Level M fixed: boosting would change the version a size target was measured at.
    assert qr.qr_version(LIBRARY) == 15
    assert qr.qr_version(PAPER) == 17
    assert qr.qr_version("PU1:BB8") == 1


def test_render_png_scale_and_border() -> None:
    image = Image.open(io.BytesIO(qr.render_png("PU1:BB8", scale=2, border=1)))
    assert image.size == ((21 + 2) * 2, (21 + 2) * 2)


def test_render_text_is_compact_half_blocks() -> None:
    art = qr.render_text("PU1:BB8", border=2)
    lines = art.splitlines()
    assert len(lines) == (21 + 4 + 1) // 2
    assert all(len(line) == 25 for line in lines)
    assert set(art) <= set("█▀▄ \n")


def test_zxing_read_is_the_bare_decoder() -> None:
    image = Image.open(io.BytesIO(qr.render_png(LIBRARY)))
    image.load()
    assert qr.zxing_read(image) == [LIBRARY]


def test_no_qr_code() -> None:
    blank = io.BytesIO()
    Image.new("L", (200, 200), 255).save(blank, format="PNG")
    assert _code(blank.getvalue()) == "qr_not_found"


def test_unreadable_images() -> None:
    assert _code(b"not an image") == "image_invalid"
    png = qr.render_png(LIBRARY)
    assert _code(png[: len(png) // 2]) == "image_invalid"  # truncated
    gif = io.BytesIO()
    Image.new("L", (10, 10)).save(gif, format="GIF")
    assert _code(gif.getvalue()) == "image_invalid"  # only PNG and JPEG are read
    assert _code("/nonexistent/code.png") == "image_invalid"
    for other in (None, 3, 1.5, ["a.png"]):  # 3 would be a file descriptor to open()
        assert _code(other) == "image_invalid"


def test_palette_and_bilevel_images_are_read() -> None:
    for mode in ("1", "P", "LA"):
        out = io.BytesIO()
        Image.open(io.BytesIO(qr.render_png("PU1:BB8"))).convert(mode).save(out, format="PNG")
        assert qr.decode_image(out.getvalue()) == "PU1:BB8"


def _png_of_size(width: int, height: int) -> bytes:
    """A valid PNG claiming width × height pixels, tiny on disk (one zlib'd all-zero image)."""
    raw = zlib.compress(b"\x00" * ((width + 1) * 8), 9)  # a few rows; the header is what counts
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_pixel_bomb_refused_before_decoding() -> None:
    assert _code(_png_of_size(8000, 6000)) == "image_too_large"  # 48 MP
    # Beyond Pillow's own limit its DecompressionBombWarning/Error must not escape either.
    assert _code(_png_of_size(10_000, 10_000)) == "image_too_large"
    assert _code(_png_of_size(20_000, 20_000)) == "image_too_large"


def test_a_png_is_bounded_lower_than_a_photo() -> None:
    """A PNG decodes whole: 6300 × 6300 (40 MP, 131 KB on disk) would cost 400 MB."""
    assert _code(_png_of_size(6300, 6300)) == "image_too_large"
    assert _code(_png_of_size(4000, 4000)) == "qr_not_found"  # 16 MP: a 5K screenshot


_PEAK = """
import resource, sys
from credential import qr
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
text = qr.decode_image(sys.argv[1])
print(text, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_big_photo_is_read_scaled_down_in_bounded_memory(tmp_path: Path) -> None:
    """A 39 MP JPEG (a phone's full resolution) is decoded by the JPEG decoder at half scale:
    the code is still read, and the reader's peak memory grows by far less than the 39 MB a
    full-size grey copy alone would take (about 125 MB grew, read whole)."""
    code = Image.open(io.BytesIO(qr.render_png(LIBRARY))).convert("L")
    scene = Image.new("L", (6900, 5700), 255)
    scene.paste(code.resize((code.width * 4, code.height * 4)), (3000, 2500))
    scene.save(tmp_path / "photo.jpg", quality=90)
    out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "photo.jpg")],
                         capture_output=True, text=True, check=True).stdout.rsplit(" ", 1)
    assert out[0] == LIBRARY
    assert int(out[1]) < 40_000  # KB


def test_file_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + os.urandom(qr.MAX_FILE_BYTES))
    assert _code(big) == "image_too_large"
    assert _code(big.read_bytes()) == "image_too_large"


def test_a_text_no_qr_version_holds_is_a_typed_error() -> None:
    with pytest.raises(MalformedInput) as raised:
        qr.render_png(transport.PREFIX + "A" * 3400)  # version 40-M holds 3,391 characters
    assert raised.value.code == "qr_too_large" and "3404" in raised.value.message["en"]
    qr.render_png(transport.PREFIX + "A" * 3387)  # the largest that fits
