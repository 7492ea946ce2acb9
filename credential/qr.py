"""QR codes: render the ``PU1:`` text (PNG, terminal) and read it back from PNG/JPEG photos.

Rendering (wallet, issuer, paper credentials) uses segno at error-correction level M, *fixed*
(``boost_error=False``): the level is part of what the size targets promise, and the text being
pure base45 keeps segno in QR alphanumeric mode. Reading (counters that get a photo instead of a
scanner's keystrokes) uses Pillow to load the image and zxing-cpp restricted to QR codes.

``decode_image`` bounds what it will look at — file size, the file's structure and pixel count
are checked before any pixel is decoded, and what zxing-cpp is given is bounded too — and maps
every failure to ``MalformedInput``. Its cost over ``zxing_read`` (the bare decoder call, exposed
so benchmarks compare like with like) is those checks and opening the file: one pass over the
file's bytes, and one over the pixels of an image over 2 MP. The text it returns still goes
through ``credential.transport.unpack``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from typing import Final, cast

import segno
import zxingcpp
from PIL import Image, ImageChops, ImageMath

from credential.errors import MalformedInput

__all__ = [
    "DECODE_PIXELS",
    "ECC_LEVEL",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MAX_PNG_PIXELS",
    "decode_image",
    "qr_version",
    "render_png",
    "render_text",
    "zxing_read",
]

ECC_LEVEL: Final = "M"
MAX_FILE_BYTES: Final = 20 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000  # a 40 MP phone photo (JPEG); more is not a QR snapshot
# A PNG is a screenshot or a rendered code, and decodes whole: its bound is what a reader may
# allocate (16 MP of RGBA is 64 MB before zxing's own copies). A progressive JPEG gets the same
# bound: its decoder keeps every coefficient of the full-size image until the last scan, even
# when asked for a scaled-down result (40 MP of CMYK: 385 MB), and phones write baseline JPEGs.
MAX_PNG_PIXELS: Final = 16_000_000
# A larger JPEG is decoded scaled down by 1/2, 1/4 or 1/8 in the JPEG decoder itself (no
# full-size copy is ever made): a code filling a useful part of a photo that big stays many
# pixels per module, and a hostile photo of plain colour costs a tenth of its size.
DECODE_PIXELS: Final = 12_000_000
_FORMATS: Final = ("PNG", "JPEG")  # Pillow's JPEG opener also yields "MPO" (multi-picture)
_QR: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
# zxing-cpp's QR detector costs time superlinear in the finder patterns (1:1:3:1:1 squares) it
# meets, and cannot be told to stop early: 30,000 tiny codes in a 16 MP PNG took 44 s, even
# asked for one symbol. A pattern has at least 30 places where a pixel differs from its left
# neighbour (its rows cross 2, 4 or 6 edges), and zxing, thresholding 8 × 8 blocks, sees no
# edge between neighbours closer than its least contrast: so counting the neighbours that differ
# by more bounds the patterns. 500,000 allow about 16,000 patterns, under a second. A busier
# image is read resized to 2 MP, where a screen full of patterns costs about 2 s, which keeps a
# code filling a useful part of the frame several pixels per module; a clean render or
# screenshot, and a photo (its noise is mostly below that contrast), is read whole.
_BUSY_PIXELS: Final = 2_000_000
_MAX_SIDE: Final = 65_535  # the longest side zxing-cpp takes (16 MP as 1 x 16M: a PNG only)
_CALM_STEPS: Final = 500_000
_BAND_PIXELS: Final = 1_000_000  # the count works in bands of 1 MP, never on a copy of it all
_LEAST_CONTRAST: Final = 24  # zxing-cpp's HybridBinarizer: a smaller range is a plain block
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# What decoding needs. The rest (text, ICC profiles, EXIF, APNG frames, private chunks) can only
# slow Pillow down or make it refuse a good image (it caps text chunks at 1 MB inflated).
_PNG_PIXEL_CHUNKS: Final = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})
# Encoders write IDAT in 8–64 KB chunks: a 20 MB PNG has a few thousand chunks at most.
_MAX_PNG_CHUNKS: Final = 10_000
_JPEG_SIGNATURE: Final = b"\xff\xd8\xff"
# Each scan of a progressive JPEG is another pass over every coefficient (libjpeg writes 10);
# Pillow parses every segment before the first scan in Python (a phone writes a few dozen).
_MAX_JPEG_SCANS: Final = 64
_MAX_JPEG_SEGMENTS: Final = 256
# Pillow steps through junk between header segments one byte at a time.
_JPEG_JUNK: Final = 1024
# A marker: 0xFF then a code. Inside entropy-coded data an 0xFF is followed by a stuffed 0x00,
# a restart marker (RST0–7) or more 0xFF fill; the search runs in C, never a Python byte loop.
_JPEG_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_NO_LENGTH: Final = frozenset({0x01, 0xD8})  # TEM, SOI: markers without a segment
_JPEG_EOI: Final = 0xD9
_JPEG_SOS: Final = 0xDA
_JPEG_PROGRESSIVE: Final = frozenset({0xC2, 0xC6, 0xCA, 0xCE})  # SOF2, SOF6, SOF10, SOF14
# The envelope's prefix as ``transport.unpack`` reads it: any case, any version, after blanks.
_PASSPORT: Final = re.compile(r"[ \t\r\n\v\f]*PU[0-9]{1,6}:", re.IGNORECASE | re.ASCII)
# Two module rows per terminal line: (top is light, bottom is light) → character.
_HALF_BLOCKS: Final = {
    (True, True): "█",
    (True, False): "▀",
    (False, True): "▄",
    (False, False): " ",
}


def _make(text: str) -> segno.QRCode:
    try:
        return segno.make_qr(text, error=ECC_LEVEL.lower(), boost_error=False)
    except segno.DataOverflowError:  # over 3,391 characters: no QR version holds it at level M
        raise MalformedInput("qr_too_large", chars=len(text)) from None


def render_png(text: str, *, scale: int = 4, border: int = 4) -> bytes:
    """The QR code of ``text`` as PNG bytes (ECC level M, ``scale`` pixels per module)."""
    out = io.BytesIO()
    _make(text).save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


def render_text(text: str, *, border: int = 2) -> str:
    """The QR code of ``text`` for a terminal, two modules per character cell (half blocks).

    Light modules are drawn and dark ones left blank, which reads correctly on the usual dark
    terminal background (as ``qrencode -t UTF8`` does).
    """
    rows = [[not dark for dark in row] for row in _make(text).matrix_iter(border=border)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    return "\n".join(
        "".join(_HALF_BLOCKS[pair] for pair in zip(top, bottom, strict=True))
        for top, bottom in zip(rows[0::2], rows[1::2], strict=True)
    )


def qr_version(text: str) -> int:
    """The QR version (1–40) ``text`` needs at ECC level M."""
    return int(_make(text).version)


def zxing_read(image: Image.Image) -> list[str]:
    """Every QR code zxing-cpp finds in a loaded image, as text: the bare decoder call."""
    return [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=_QR)]


def _read_bytes(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            # Measured before bytes() copies anything: a view of 1.5 GB must cost nothing.
            # nbytes, as a view's len() counts items, not bytes.
            size = data.nbytes if isinstance(data, memoryview) else len(data)
            if size > MAX_FILE_BYTES:
                raise MalformedInput("image_too_large")
            return bytes(data)
        except ValueError:  # a released memoryview
            raise MalformedInput("image_invalid") from None
    if not isinstance(data, (str, os.PathLike)):  # an int would open a file descriptor
        raise MalformedInput("image_invalid")
    try:
        with open(data, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)  # never read more than the limit
    except (OSError, TypeError, ValueError):
        raise MalformedInput("image_invalid") from None
    if len(raw) > MAX_FILE_BYTES:
        raise MalformedInput("image_too_large")
    return raw


def _png_pixels_only(raw: bytes) -> bytes:
    """``raw`` with only the chunks decoding needs, each copied as it is (CRC included).

    Refuses ``image_too_complex`` over ``_MAX_PNG_CHUNKS`` chunks. A chunk cut short by the end
    of the file is kept as it is, for Pillow to refuse if it needs it.
    """
    runs: list[tuple[int, int]] = [(0, len(_PNG_SIGNATURE))]
    pos, chunks = len(_PNG_SIGNATURE), 0
    while pos < len(raw):
        chunks += 1
        if chunks > _MAX_PNG_CHUNKS:
            raise MalformedInput("image_too_complex")
        length, kind = struct.unpack_from(">I4s", raw, pos) if pos + 8 <= len(raw) else (0, b"")
        end = min(pos + 12 + length, len(raw))
        if kind in _PNG_PIXEL_CHUNKS:
            if runs[-1][1] == pos:
                runs[-1] = (runs[-1][0], end)
            else:
                runs.append((pos, end))
        pos = end
        if kind == b"IEND":
            break
    if runs == [(0, len(raw))]:
        return raw  # nothing dropped: no copy
    view = memoryview(raw)
    return b"".join(view[start:end] for start, end in runs)


def _jpeg_is_progressive(raw: bytes) -> bool:
    """Whether a JPEG's first image is progressive, from a walk over its marker segments.

    Refuses ``image_too_complex`` over ``_MAX_JPEG_SCANS`` scans or ``_MAX_JPEG_SEGMENTS``
    other segments, and ``image_invalid`` for a segment running past the end of the file or
    junk before the first scan. The walk stops at the first EOI: an MPO's other pictures follow
    it, and Pillow reads only the first.
    """
    progressive = False
    pos = len(_JPEG_SIGNATURE) - 1  # at the first segment's 0xFF
    scans = segments = 0
    while True:
        # Before the first scan the next marker must come (almost) at once; after one, the
        # entropy-coded data runs to it.
        found = _JPEG_MARKER.search(raw, pos, pos + _JPEG_JUNK + 2 if not scans else len(raw))
        if found is None:
            if scans:  # cut short inside a scan: Pillow refuses it, or reads what is there
                return progressive
            raise MalformedInput("image_invalid")
        pos = found.start()
        code = raw[pos + 1]
        if code == _JPEG_EOI:
            return progressive
        if code in _JPEG_NO_LENGTH:
            pos += 2
            continue
        if pos + 4 > len(raw):
            raise MalformedInput("image_invalid")
        end = pos + 2 + struct.unpack_from(">H", raw, pos + 2)[0]
        if end < pos + 4 or end > len(raw):
            raise MalformedInput("image_invalid")
        if code == _JPEG_SOS:
            scans += 1
            if scans > _MAX_JPEG_SCANS:
                raise MalformedInput("image_too_complex")
        else:
            segments += 1
            if segments > _MAX_JPEG_SEGMENTS:
                raise MalformedInput("image_too_complex")
            progressive = progressive or code in _JPEG_PROGRESSIVE
        pos = end


def _on_white(image: Image.Image) -> Image.Image:
    """The loaded image as 8-bit grey or RGB, any transparency composited onto white.

    A transparent background is most often transparent *black* (qrcode's ``"transparent"``):
    dropping the alpha would leave dark modules on a dark background.
    """
    transparency = image.info.get("transparency")
    if image.mode in ("I;16", "I"):  # 16-bit grey PNG: Pillow's own conversion clips, not scales
        # The high byte (0x0400, near black, is 4, not 255), unless every value fits in 8 bits:
        # Pillow writes an "L" image converted to "I;16" so, and there 255 is white.
        high = cast("tuple[int, int]", image.getextrema())[1]  # one band
        scale = 1 if high <= 255 else 1 / 256
        grey = image.point(lambda v: v * scale).convert("L")
        if not isinstance(transparency, int):
            return grey
        # The transparent grey is a 16-bit value: compared before scaling, where it is exact;
        # band by band, as 32-bit copies of a whole 16 MP image (and ImageMath's temporaries)
        # took a 37 KB file to 330 MB.
        alpha = Image.new("L", image.size)
        width, height = image.size
        rows = max(1, _BAND_PIXELS // width)
        for top in range(0, height, rows):
            band = image.crop((0, top, width, min(height, top + rows))).convert("I")
            alpha.paste(ImageMath.lambda_eval(lambda e: (e["a"] != transparency) * 255,
                                              a=band).convert("L"), (0, top))
    elif "A" in image.getbands() or transparency is not None:  # RGBA, LA; tRNS in P, L, RGB, 1
        if "A" not in image.getbands():
            image = image.convert("LA")  # applies the tRNS entry (a palette's alphas, one grey)
        grey, alpha = image.convert("L"), image.getchannel("A")
    elif image.mode in ("L", "RGB"):
        return image
    else:
        return image.convert("L")
    flat = Image.new("L", image.size, 255)
    flat.paste(grey, mask=alpha)  # straight (not premultiplied) alpha, as PNG stores it
    return flat


def _calm(image: Image.Image) -> Image.Image:
    """``image`` as zxing-cpp should get it: whole if small or calm, else grey at 2 MP."""
    width, height = image.size
    if width * height <= _BUSY_PIXELS:
        return image
    grey = image if image.mode == "L" else image.convert("L")
    rows = max(1, _BAND_PIXELS // width)
    steps = 0
    for top in range(0, height, rows):
        band = grey.crop((0, top, width, min(height, top + rows)))
        # Each pixel against its left neighbour (the first against the last: one more at most),
        # counted where they differ by zxing's least contrast: its binarizer takes a block
        # whose values span less than 24 for plain, so sensor noise and smooth shading count
        # little (a 12 MP photo of a code stays whole and sharp), a page of patterns fully.
        steps += sum(ImageChops.difference(band, ImageChops.offset(band, 1, 0))
                     .histogram()[_LEAST_CONTRAST:])
        if steps > _CALM_STEPS:
            scale = (_BUSY_PIXELS / (width * height)) ** 0.5
            size = (max(1, int(width * scale)), max(1, int(height * scale)))
            return grey.resize(size, Image.Resampling.BOX)
    return grey


def _choose(texts: list[str]) -> str:
    """The pasaporte text among the codes in view (the first code when none is ours)."""
    if not texts:
        raise MalformedInput("qr_not_found")
    ours: dict[str, str] = {}
    for text in texts:
        if _PASSPORT.match(text):
            ours.setdefault(text.strip().upper(), text)  # the same payload in either case
    if len(ours) > 1:  # which one the holder meant to show is not ours to guess
        raise MalformedInput("qr_several")
    return next(iter(ours.values()), texts[0])


def decode_image(data: object) -> str:
    """The text of the QR code in a PNG or JPEG image (bytes or a file path).

    Raises ``MalformedInput``: ``image_too_large`` (over 20 MB, a JPEG over 40 MP, or a PNG or
    progressive JPEG over 16 MP), ``image_too_complex`` (a file built to make decoding slow:
    thousands of PNG chunks, of JPEG scans or segments), ``image_invalid`` (not a readable
    PNG/JPEG), ``qr_not_found``, ``qr_several`` (two different pasaporte codes in view). With
    other QR codes in view, the pasaporte one (``PU<n>:`` prefix) wins.
    """
    raw = _read_bytes(data)
    if raw.startswith(_PNG_SIGNATURE):
        raw, jpeg, limit = _png_pixels_only(raw), False, MAX_PNG_PIXELS
    elif raw.startswith(_JPEG_SIGNATURE):
        jpeg = True
        limit = MAX_PNG_PIXELS if _jpeg_is_progressive(raw) else MAX_PIXELS
    else:
        raise MalformedInput("image_invalid")  # only PNG and JPEG are read
    try:
        # Pillow signals a decompression bomb with a warning, and only above its own global
        # limit; turning it into an exception here, scoped to this call, keeps it from leaking
        # to callers (pytest runs with warnings as errors) without touching Pillow's settings.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(raw), formats=_FORMATS)
        width, height = image.size
        pixels = width * height
        if pixels > limit:
            raise MalformedInput("image_too_large")  # from the header: no pixel decoded yet
        if max(width, height) > _MAX_SIDE:
            raise MalformedInput("image_invalid")  # zxing-cpp would refuse it once decoded
        if pixels > DECODE_PIXELS and jpeg:
            shift = 1
            while pixels >> (2 * shift) > DECODE_PIXELS and shift < 3:
                shift += 1
            image.draft("L", (-(-width >> shift), -(-height >> shift)))
        image.load()
        image = _on_white(image)  # each step lets go of the previous image before the next
        image = _calm(image)
        texts = zxing_read(image)
    except MalformedInput:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MalformedInput("image_too_large") from None
    except Exception:  # Pillow and zxing raise many types for damaged files; all mean one thing
        raise MalformedInput("image_invalid") from None
    return _choose(texts)
