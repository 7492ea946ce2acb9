"""QR rendering and reading: real segno → PNG → zxing-cpp round trips, phone-like photos, limits."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest
import segno
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



def test_the_image_messages_say_what_to_do_and_the_limits_in_force() -> None:
    """A photo cut short in transfer was told "use a PNG or JPEG" (it was one), and a 48 MP
    phone photo "too large" with the limit written nowhere but the code."""
    invalid = MalformedInput("image_invalid").message
    assert "dañada o incompleta" in invalid["es"] and "damaged or incomplete" in invalid["en"]
    large = MalformedInput("image_too_large").message
    for lang, word in (("es", "megapíxeles"), ("en", "megapixels")):
        assert f"{qr.MAX_PIXELS // 1_000_000} {word}" in large[lang]
        assert f"{qr.MAX_FILE_BYTES // 2**20} MB" in large[lang]
        assert f"; {qr.MAX_PNG_PIXELS // 1_000_000} " in large[lang]


def test_palette_and_bilevel_images_are_read() -> None:
    for mode in ("1", "P", "LA"):
        out = io.BytesIO()
        Image.open(io.BytesIO(qr.render_png("PU1:BB8"))).convert(mode).save(out, format="PNG")
        assert qr.decode_image(out.getvalue()) == "PU1:BB8"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + kind + body + crc


def _png_of_size(width: int, height: int) -> bytes:
    """A valid PNG claiming width × height pixels, tiny on disk (one zlib'd all-zero image)."""
    raw = zlib.compress(b"\x00" * ((width + 1) * 8), 9)  # a few rows; the header is what counts
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", raw)
            + _png_chunk(b"IEND", b""))


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


OTHER = _payload(550, 5)  # a second passport of the same size


def _grey(text: str) -> Image.Image:
    return Image.open(io.BytesIO(qr.render_png(text))).convert("L")


def _png(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return out.getvalue()


def _jpeg(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, **options)
    return out.getvalue()


def _side_by_side(*images: Image.Image) -> bytes:
    """The codes in a row, 40 px apart, as one PNG (several codes in one photo)."""
    scene = Image.new("L", (sum(i.width + 40 for i in images), max(i.height for i in images)), 255)
    x = 0
    for image in images:
        scene.paste(image, (x, 0))
        x += image.width + 40
    return _png(scene)


def _jpeg_header(frame: int, width: int, height: int) -> bytes:
    """A JPEG that is only a header: SOI, a quantisation table, a frame ``width`` × ``height``
    of type ``frame`` (0xC0 baseline, 0xC2 progressive), EOI."""
    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body
    sof = bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    return b"\xff\xd8" + segment(0xDB, bytes(65)) + segment(frame, sof) + b"\xff\xd9"


def test_jpeg_scans_are_bounded() -> None:
    """Each scan of a progressive JPEG is one more pass over every coefficient: 10,000 scans of
    a 40 MP image took 90 s. libjpeg writes 10; more than 64 is refused before decoding."""
    progressive = _jpeg(_grey(LIBRARY), progressive=True)
    assert qr.decode_image(progressive) == LIBRARY
    assert qr.decode_image(_jpeg(_grey(LIBRARY), restart_marker_rows=1)) == LIBRARY  # RSTn
    last = progressive.rindex(b"\xff\xda")  # 0xFF 0xDA is a marker only: data stuffs 0xFF 0x00
    flood = progressive[:-2] + progressive[last:-2] * 64 + b"\xff\xd9"
    assert _code(flood) == "image_too_complex"


def test_jpeg_header_segments_are_bounded() -> None:
    """Pillow parses each segment before the first scan in Python: 4.75 million empty APP15
    segments took 11 s and 692 MB. More than 256 (a phone writes a few dozen) is refused."""
    photo = _jpeg(_grey(LIBRARY))
    assert qr.decode_image(photo[:2] + b"\xff\xef\x00\x02" * 200 + photo[2:]) == LIBRARY
    assert _code(photo[:2] + b"\xff\xef\x00\x02" * 300 + photo[2:]) == "image_too_complex"
    assert _code(photo[:2] + b"\xff\xfe\x00\x02" * 300 + photo[2:]) == "image_too_complex"  # COM
    # Junk between segments: Pillow skips it a byte at a time.
    assert _code(photo[:2] + b"\xff\xef\x00\x02" + b"\x00" * 5000 + photo[2:]) == "image_invalid"
    assert _code(photo[:2] + b"\xff\xef\x01\x00") == "image_invalid"  # runs past the end


def test_a_progressive_jpeg_is_bounded_like_a_png() -> None:
    """A progressive JPEG keeps every coefficient until its last scan, scaled output or not
    (40 MP of CMYK: 385 MB): over 16 MP it is refused from the header, like a PNG."""
    assert _code(_jpeg_header(0xC2, 5000, 4000)) == "image_too_large"
    assert _code(_jpeg_header(0xC0, 5000, 4000)) == "image_invalid"  # allowed; no scan to read
    assert _code(_jpeg_header(0xC2, 4000, 4000)) == "image_invalid"


def test_an_mpo_is_read_as_the_jpeg_it_starts_with() -> None:
    """Android's Ultra HDR photos are MPO (multi-picture) files: a JPEG with more pictures
    after it. Pillow names them "MPO"; they get a JPEG's bound and scaled decoding."""
    scene = Image.new("L", (5000, 4000), 255)  # 20 MP: over the PNG bound
    scene.paste(_grey(LIBRARY).resize((1020, 1020), Image.Resampling.NEAREST), (1900, 1400))
    out = io.BytesIO()
    scene.save(out, format="MPO", save_all=True, append_images=[Image.new("L", (64, 48), 0)])
    assert Image.open(io.BytesIO(out.getvalue())).format == "MPO"
    assert qr.decode_image(out.getvalue()) == LIBRARY


def _before_idat(png: bytes, extra: bytes) -> bytes:
    at = png.index(b"IDAT") - 4
    return png[:at] + extra + png[at:]


def test_png_metadata_neither_blocks_nor_slows_decoding() -> None:
    """Only the chunks decoding needs reach Pillow: a 2 MB text chunk (Pillow refuses text over
    1 MB) or thousands of private chunks are dropped unread."""
    png = qr.render_png(LIBRARY)
    text = _png_chunk(b"iTXt", b"Comment\x00\x01\x00\x00\x00" + zlib.compress(b"A" * 2_000_000))
    assert qr.decode_image(_before_idat(png, text)) == LIBRARY
    bomb = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 20_000_000))
    assert qr.decode_image(_before_idat(png, bomb)) == LIBRARY
    many = _png_chunk(b"tEXt", b"k\x00v") * 5_000 + _png_chunk(b"prVt", b"")
    assert qr.decode_image(_before_idat(png, many) + b"trailing junk") == LIBRARY


def test_png_chunk_count_is_bounded() -> None:
    """19 MB of empty chunks took 8 s and 240 MB, IDAT in 1-byte chunks 6.6 s. Encoders write
    8–64 KB chunks: more than 10,000 chunks is refused before Pillow parses one."""
    png = qr.render_png(LIBRARY)
    assert _code(_before_idat(png, _png_chunk(b"prVt", b"") * 10_000)) == "image_too_complex"
    at = png.index(b"IDAT") - 4
    end = at + 12 + int.from_bytes(png[at : at + 4], "big")
    data = png[at + 8 : end - 4]
    split = b"".join(_png_chunk(b"IDAT", data[i : i + 1]) for i in range(len(data)))
    assert len(data) < 9_000
    assert qr.decode_image(png[:at] + split + png[end:]) == LIBRARY
    padded = split + _png_chunk(b"IDAT", b"") * (10_000 - len(data))
    assert _code(png[:at] + padded + png[end:]) == "image_too_complex"


def _tiled(tile: Image.Image, width: int, height: int) -> Image.Image:
    """``tile`` repeated edge to edge over width × height (grey)."""
    rows = [tile.tobytes()[y * tile.width : (y + 1) * tile.width] * (width // tile.width)
            for y in range(tile.height)]
    band = b"".join(rows)
    size = (width // tile.width * tile.width, height // tile.height * tile.height)
    return Image.frombytes("L", size, band * (height // tile.height))


def test_a_busy_image_reaches_zxing_at_2_mp(monkeypatch: pytest.MonkeyPatch) -> None:
    """zxing-cpp's QR detector costs time superlinear in the finder patterns it meets and cannot
    be told to stop: a 4000 × 4000 PNG of 30,000 version-1 codes at 1 px per module took 44 s.
    An image with that many edges is handed over at 2 MP; a calm one (a render, a screenshot)
    whole, its small code still readable."""
    seen: list[tuple[int, int]] = []

    def spy(image: Image.Image) -> list[str]:
        seen.append(image.size)
        return zxing_read(image)

    zxing_read = qr.zxing_read
    monkeypatch.setattr(qr, "zxing_read", spy)
    tiny = segno.make_qr("PU", error="l", version=1, boost_error=False)
    out = io.BytesIO()
    tiny.save(out, kind="png", scale=1, border=1)
    grid = _tiled(Image.open(out).convert("L"), 2300, 1840)  # 8,000 codes, 4.2 MP
    assert _code(_png(grid, compress_level=1)) == "qr_not_found"
    assert seen[-1][0] * seen[-1][1] <= 2_000_000
    scene = Image.new("L", (2400, 1800), 255)  # 4.3 MP, the code 1.5 px per module
    scene.paste(_grey(LIBRARY).resize((135, 135), Image.Resampling.BOX), (1000, 800))
    assert qr.decode_image(_png(scene)) == LIBRARY
    assert seen[-1] == (2400, 1800)


def test_transparent_backgrounds_are_read_on_white() -> None:
    """qrcode's back_color="transparent" writes transparent *black* around opaque black
    modules: read without the alpha, the image is all black."""
    code = _grey(LIBRARY)
    black = Image.new("L", code.size, 0)
    opaque_dark = code.point(lambda v: 255 - v)
    assert qr.decode_image(_png(Image.merge("RGBA", (black, black, black, opaque_dark)))) == LIBRARY
    assert qr.decode_image(_png(Image.merge("LA", (black, opaque_dark)))) == LIBRARY
    # One grey or one palette entry named transparent (tRNS): 0 around modules of 1.
    dark_on_zero = code.point(lambda v: 0 if v else 1)
    assert qr.decode_image(_png(dark_on_zero, transparency=0)) == LIBRARY
    palette = dark_on_zero.convert("P")
    palette.putpalette([0, 0, 0] * 2)
    assert qr.decode_image(_png(palette, transparency=0)) == LIBRARY


def _sixteen_bit(code: Image.Image, dark: int, light: int) -> Image.Image:
    pixels = code.tobytes()
    wide = bytearray(2 * len(pixels))
    wide[0::2] = pixels.translate(bytes([dark & 0xFF] * 128 + [light & 0xFF] * 128))
    wide[1::2] = pixels.translate(bytes([dark >> 8] * 128 + [light >> 8] * 128))
    return Image.frombytes("I;16", code.size, bytes(wide))


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    """Pillow's own I;16 → L conversion clips: near-black 0x0400 became white."""
    code = _grey(LIBRARY)
    assert qr.decode_image(_png(_sixteen_bit(code, 0x0400, 0xFFFF))) == LIBRARY
    assert qr.decode_image(_png(code.convert("I;16"))) == LIBRARY  # 8-bit values in 16 bits
    # Transparent black around near-black modules: compared as the 16-bit value it is.
    assert qr.decode_image(_png(_sixteen_bit(code, 0x0400, 0), transparency=0)) == LIBRARY


def test_a_sixteen_bit_grey_with_a_transparent_value_is_read_in_bounded_memory(
        tmp_path: Path) -> None:
    """Its transparency mask was made from 32-bit copies of the whole image: a 37 KB file of
    16 MP grew the reader by 150 to 280 MB (by some 75 read now, as without tRNS)."""
    code = _grey(LIBRARY)
    scene = Image.new("L", (4000, 4000), 255)
    scene.paste(code.resize((code.width * 4, code.height * 4)), (1500, 1500))
    (tmp_path / "wide.png").write_bytes(_png(_sixteen_bit(scene, 0x0400, 0), transparency=0))
    out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "wide.png")],
                         capture_output=True, text=True, check=True).stdout.rsplit(" ", 1)
    assert out[0] == LIBRARY
    assert int(out[1]) < 110_000, out  # KB


def test_a_decoy_code_does_not_win() -> None:
    """Only a ``PU<n>:`` prefix marks a pasaporte code: "PUSH" beside one does not win."""
    decoy = _grey("PUSH")
    assert qr.decode_image(_side_by_side(decoy, _grey(LIBRARY))) == LIBRARY
    assert qr.decode_image(_side_by_side(_grey(LIBRARY), decoy)) == LIBRARY
    assert qr.decode_image(_side_by_side(decoy)) == "PUSH"  # not ours: unpack says so
    lower = _grey(LIBRARY.lower())  # a version prefix in any case is still a passport
    assert qr.decode_image(_side_by_side(decoy, lower)) == LIBRARY.lower()


def test_two_different_passports_are_refused() -> None:
    """Which one the holder meant to show is not ours to guess; the same one twice is fine."""
    assert _code(_side_by_side(_grey(LIBRARY), _grey(OTHER))) == "qr_several"
    assert qr.decode_image(_side_by_side(_grey(LIBRARY), _grey(LIBRARY))) == LIBRARY


def test_a_huge_buffer_is_refused_before_any_copy() -> None:
    """decode_image(memoryview(bytearray(1_500_000_000))) copied it all (3 GB at peak) before
    checking its size. The size of a view counts bytes, not items."""
    buffer = bytearray(3 * qr.MAX_FILE_BYTES)
    tracemalloc.start()
    try:
        assert _code(memoryview(buffer)) == "image_too_large"
        assert _code(memoryview(buffer).cast("I")) == "image_too_large"  # len() is a quarter
        assert _code(buffer) == "image_too_large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    released = memoryview(b"\x89PNG")
    released.release()
    assert _code(released) == "image_invalid"
