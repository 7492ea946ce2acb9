"""Phone-like photos of QR codes, for tests and benchmarks that read images.

``phone_photo`` turns a rendered QR PNG into what a counter clerk's phone actually captures: the
code small in a larger, textured scene (a desk, a sleeve, a hand), a few degrees off axis, a little
out of focus, under different light, saved as an ordinary JPEG. Deterministic for a given seed.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

__all__ = ["phone_photo"]


def _scene(rng: random.Random, width: int, height: int) -> Image.Image:
    """A cluttered background: a colour gradient, random shapes and sensor-like noise."""
    base = tuple(rng.randrange(60, 200) for _ in range(3))
    scene = Image.new("RGB", (width, height), base)
    draw = ImageDraw.Draw(scene)
    for y in range(0, height, 8):  # vertical light falloff
        shade = int(40 * y / height)
        draw.rectangle((0, y, width, y + 8), fill=tuple(max(0, c - shade) for c in base))
    for _ in range(40):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(20, width // 3), y0 + rng.randrange(20, height // 3)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=rng.randrange(1, 12))
    noise = Image.effect_noise((width, height), rng.uniform(20, 35)).convert("RGB")
    return Image.blend(scene, noise, 0.25)


def phone_photo(
    png_bytes: bytes,
    *,
    seed: int,
    width: int = 1600,
    height: int = 1200,
    quality: int = 75,
) -> bytes:
    """A JPEG of the QR in ``png_bytes`` as a phone would photograph it.

    The code takes 30–40 % of the photo's width, is rotated by 2–6 degrees either way, blurred
    slightly (Gaussian radius 0.5–1.0 px) and lit 85–110 % as bright, at a random position.
    """
    rng = random.Random(seed)
    code = Image.open(io.BytesIO(png_bytes)).convert("L")
    side = int(width * rng.uniform(0.30, 0.40))
    code = code.resize((side, side), Image.Resampling.BICUBIC)
    angle = rng.uniform(2.0, 6.0) * rng.choice((-1, 1))
    code = code.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    # The paper or phone screen around the code stays light; only the scene around it is busy.
    mask = Image.new("L", (side, side), 255).rotate(angle, expand=True, fillcolor=0)
    scene = _scene(rng, width, height)
    x = rng.randrange(0, width - code.width)
    y = rng.randrange(0, height - code.height)
    scene.paste(code.convert("RGB"), (x, y), mask)
    scene = scene.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    scene = ImageEnhance.Brightness(scene).enhance(rng.uniform(0.85, 1.10))
    out = io.BytesIO()
    scene.save(out, format="JPEG", quality=quality)
    return out.getvalue()
