"""QR codes: render the ``PU1:`` text (PNG, terminal) and read it back from PNG/JPEG photos.

Rendering (wallet, issuer, paper credentials) uses segno at error-correction level M, *fixed*
(``boost_error=False``): the level is part of what the size targets promise, and the text being
pure base45 keeps segno in QR alphanumeric mode. Reading (counters that get a photo instead of a
scanner's keystrokes) uses Pillow to load the image and zxing-cpp restricted to QR codes.

``decode_image`` bounds what it will look at — file size and pixel count are checked from the
header, before any pixel is decoded — and maps every failure to ``MalformedInput``. Its cost over
``zxing_read`` (the bare decoder call, exposed so benchmarks compare like with like) is those
checks and opening the file, nothing else. The text it returns still goes through
``credential.transport.unpack``.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Final

import segno
import zxingcpp
from PIL import Image

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
# allocate (16 MP of RGBA is 64 MB before zxing's own copies).
MAX_PNG_PIXELS: Final = 16_000_000
# A larger JPEG is decoded scaled down by 1/2, 1/4 or 1/8 in the JPEG decoder itself (no
# full-size copy is ever made): a code filling a useful part of a photo that big stays many
# pixels per module, and a hostile photo of plain colour costs a tenth of its size.
DECODE_PIXELS: Final = 12_000_000
_FORMATS: Final = ("PNG", "JPEG")
_QR: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
_MODES_FOR_ZXING: Final = frozenset({"L", "RGB", "RGBA"})
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
        raw = bytes(data)
    elif not isinstance(data, (str, os.PathLike)):  # an int would open a file descriptor
        raise MalformedInput("image_invalid")
    else:
        try:
            with open(data, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)  # never read more than the limit
        except (OSError, TypeError, ValueError):
            raise MalformedInput("image_invalid") from None
    if len(raw) > MAX_FILE_BYTES:
        raise MalformedInput("image_too_large")
    return raw


def decode_image(data: object) -> str:
    """The text of the QR code in a PNG or JPEG image (bytes or a file path).

    Raises ``MalformedInput``: ``image_too_large`` (over 20 MB, a JPEG over 40 MP or a PNG
    over 16 MP), ``image_invalid`` (not
    a readable PNG/JPEG), ``qr_not_found``. With several QR codes in view, a pasaporte one
    (``PU`` prefix) wins.
    """
    raw = _read_bytes(data)
    try:
        # Pillow signals a decompression bomb with a warning, and only above its own global
        # limit; turning it into an exception here, scoped to this call, keeps it from leaking
        # to callers (pytest runs with warnings as errors) without touching Pillow's settings.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(raw), formats=_FORMATS)
        width, height = image.size
        pixels = width * height
        if pixels > (MAX_PIXELS if image.format == "JPEG" else MAX_PNG_PIXELS):
            raise MalformedInput("image_too_large")  # from the header: no pixel decoded yet
        if pixels > DECODE_PIXELS and image.format == "JPEG":
            shift = 1
            while pixels >> (2 * shift) > DECODE_PIXELS and shift < 3:
                shift += 1
            image.draft("L", (-(-width >> shift), -(-height >> shift)))
        image.load()
        if image.mode not in _MODES_FOR_ZXING or (pixels > DECODE_PIXELS and image.mode != "L"):
            image = image.convert("L")  # a big colour PNG: zxing's copies are a third the size
        texts = zxing_read(image)
    except MalformedInput:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MalformedInput("image_too_large") from None
    except Exception:  # Pillow and zxing raise many types for damaged files; all mean one thing
        raise MalformedInput("image_invalid") from None
    if not texts:
        raise MalformedInput("qr_not_found")
    for text in texts:
        if text[:2].upper() == "PU":
            return text
    return texts[0]
