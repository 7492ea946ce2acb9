"""Printable cards for paper passports: the QR code and, beside it, what it says, for a resident
with no phone to carry it on.

A card is drawn from the passport's text alone (the ``PU1:…`` the office writes), decoded here,
and from what the office knows that a credential names only by a code: its city's name, the
office each key belongs to, the names behind catalogue codes. So a card cannot say anything its
own QR code does not. ``layout`` decides which text goes where (pure: no I/O); ``render_card``
draws it as a PNG of an ID-1 card (85.6 × 54 mm, the size of a bank card: it fits a wallet and a
card printer, and ten fit on a letter or A4 sheet) at 300 dpi.

The QR code is ``credential.qr``'s (ECC M, its four-module quiet zone kept whole) at a whole
number of pixels per module: 6 for a usual paper passport (version 14), 0.51 mm modules that a
phone or a counter's imager reads off paper with room to spare.

Text uses the font Pillow bundles (``ImageFont.load_default(size=…)``, Aileron Regular), so no
system font is needed. That copy holds ASCII and a few signs only: every accented letter would
print as one same empty box (``ñ`` and ``é`` draw the very same bitmap as U+FFFF). Letters with
diacritics are therefore composed here as a font composes them: the base letter from the font
and the mark drawn from the font's own spacing accents and punctuation (´ ` ^ ~ . ° , - ( ),
scaled and placed above or below. Whatever still cannot be drawn — another script, and above all
a control, bidi or invisible character, which must never act on the text around it — is printed
as its escape (``\\u202e``), as ``credential.text.escaped`` shows it on a screen: seen, inert.
"""

from __future__ import annotations

import functools
import io
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from PIL import Image, ImageDraw, ImageFont

from credential import qr
from credential.claims import display_value
from credential.errors import MalformedInput, StoreError, UsageError, message_catalog
from credential.keys import b64url
from credential.passport import decode_text
from credential.text import NOT_TEXT
from credential.times import first_day, last_day
from schemas import schema

if TYPE_CHECKING:
    from credential.claims import Claims
    from issuer.store import IssuerStore

__all__ = ["CARD_DPI", "CARD_MM", "CardLayout", "CardOffice", "Placed", "card_atoms",
           "draw_line", "layout", "line_width", "office_of", "render_card"]

CARD_DPI: Final = 300
CARD_MM: Final = (85.6, 54.0)  # ISO/IEC 7810 ID-1


def _px(mm: float) -> int:
    return round(mm / 25.4 * CARD_DPI)


_WIDTH, _HEIGHT = _px(CARD_MM[0]), _px(CARD_MM[1])  # 1011 × 638
_EDGE = _px(2.0)  # text keeps this far from the card's edge: a hand-cut card loses about 1 mm
_QR_EDGE = _px(1.0)  # the QR code's own quiet zone (4 modules, 2 mm at 6 px) is margin enough
_GAP = 8
_CORNER = _px(3.18)  # ID-1's corner radius: the cutting line printed around the card
_INK, _PAPER, _RULE = 0, 255, 150
# Sizes in pixels at 300 dpi (26 px is 6.2 pt). Values shrink together, down to _MIN_SCALE of
# their size, before a long name is cut; labels stay as they are, the smallest legible.
_TITLE, _LABEL, _VALUE, _FOOTER = 26, 18, 32, 22
_MIN_SCALE = 0.5
_ELLIPSIS = "..."  # the font has "…", but three dots read the same at any size
# Room over each line for two marks stacked on a capital (Ấ, Ǘ), which rise above the font's
# ascent; more marks than that on one letter are printed as escapes.
_HEADROOM = 0.15
_MAX_ABOVE, _MAX_BELOW = 2, 1


@dataclass(frozen=True)
class CardOffice:
    """What a card needs that a credential holds only as a code: the city's name for its
    ``iss``, the office each key (``kid``, base64url) belongs to, and each catalogue's names by
    code (``catalogs[catalog][code]``, as in a trust bundle)."""

    code: str
    city: str
    country: str
    offices: Mapping[str, str]
    catalogs: Mapping[str, Mapping[int, str]]


def office_of(store: IssuerStore) -> CardOffice:
    """The office's ``CardOffice``, read from its store (names catalogued so far)."""
    info = store.info()
    offices = {k["kid"]: k["office"] for k in store.office_keys()}
    # plain dicts: the value travels to drawing workers, pickled
    return CardOffice(info.code, info.city, info.country, offices, store.catalogs())


# -- glyphs -----------------------------------------------------------------------------------

@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # a Pillow built without FreeType
        raise RuntimeError("Pillow has no FreeType: the card's text cannot be drawn")
    return font


def _bitmap(text: str, size: int) -> bytes:
    image = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(image).text((size // 2, size * 3 // 2), text, font=_font(size), fill=255,
                               anchor="ls")
    return image.tobytes()


@functools.lru_cache(maxsize=4096)  # keyed by whatever characters names hold: bounded
def _in_font(char: str) -> bool:
    """Whether the bundled font has a glyph for ``char`` (a missing one draws ``.notdef``, the
    glyph U+FFFF gets: the font has no such character either)."""
    return char == " " or _bitmap(char, 24) != _bitmap("\uffff", 24)


@dataclass(frozen=True)
class _Mark:
    glyph: str  # what is drawn, from the font's own glyphs; two characters: side by side
    where: str  # "above", "below", "below_right" (ogonek)
    size: tuple[float, float] | None = None  # width, height in em; None: as the font has it
    turn: Image.Transpose | None = None


_FLIP, _MIRROR = Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.FLIP_LEFT_RIGHT
# Combining marks (what NFD leaves after a base letter) drawn from ASCII and the few accents
# the font has: the letters of Spanish, Portuguese, Catalan, Czech, Polish, Romanian, Turkish
# and Hungarian names, capitals included, and of French and German names but for æ, œ and ß;
# Vietnamese but for its horned ơ and ư.
_MARKS: Final = {
    "\u0300": _Mark("`", "above"),
    "\u0301": _Mark("´", "above"),
    "\u0302": _Mark("^", "above", (0.30, 0.13)),
    "\u0303": _Mark("~", "above", (0.32, 0.10)),
    "\u0304": _Mark("-", "above", (0.30, 0.06)),
    "\u0306": _Mark("(", "above", (0.28, 0.11), Image.Transpose.ROTATE_90),  # a cup: breve
    "\u0307": _Mark(".", "above"),
    "\u0308": _Mark("..", "above"),
    "\u030a": _Mark("°", "above", (0.20, 0.20)),
    "\u030b": _Mark("´´", "above"),
    "\u030c": _Mark("^", "above", (0.30, 0.13), _FLIP),
    "\u0323": _Mark(".", "below"),
    "\u0326": _Mark(",", "below"),
    "\u0327": _Mark(",", "below"),
    "\u0328": _Mark(",", "below_right", None, _MIRROR),
    "\u0331": _Mark("-", "below", (0.30, 0.06)),
}
# Letters with no decomposition, built the same way: (the base letter, the size in em of the
# bar or slash drawn across it; None: only its dot goes).
_STROKED: Final = {
    "ł": ("l", (0.34, 0.30)), "Ł": ("L", (0.34, 0.30)),
    "ø": ("o", (0.50, 0.62)), "Ø": ("O", (0.62, 0.82)),
    "đ": ("d", (0.30, 0.06)), "Đ": ("D", (0.30, 0.06)),
    "ı": ("i", None), "ȷ": ("j", None),
}


def _parts(atom: str) -> tuple[str, tuple[str, ...], bool] | None:
    """An atom as (base letter from the font, combining marks, base drawn without its dot),
    or None if it cannot be drawn so."""
    decomposed = unicodedata.normalize("NFD", atom)
    base, marks = decomposed[0], tuple(decomposed[1:])
    if not all(m in _MARKS for m in marks):
        return None
    if base not in _STROKED and (not _in_font(base) or unicodedata.category(base)[0] not in "LN"):
        return None
    above = sum(_MARKS[m].where == "above" for m in marks)
    if above > _MAX_ABOVE or len(marks) - above > _MAX_BELOW:
        return None  # a pile of marks would cover the line above or below
    letter = _STROKED.get(base, (base, None))[0]  # what the font draws for it
    if len(marks) > above and _descends(letter):
        return None  # under a descender (ģ) a mark would fall out of the line
    # ı and ȷ have no dot; i and j lose theirs under a mark above (í, ï), as in every font
    dotless = base in "ıȷ" or (base in "ij" and above > 0)
    return base, marks, dotless


def _descends(letter: str) -> bool:
    """Whether the font's ``letter`` reaches below the baseline (g, j, p, q, y)."""
    ink, _, dy = _ink(letter, 24)
    return dy + ink.height > 1


def _escape(char: str) -> str:
    return ascii(char)[1:-1]  # "\u202e", "\x1b", "\U0001f600": as credential.text.escaped


def card_atoms(text: str) -> list[str]:
    """``text`` as the card draws it, in units never split across lines: a character (with
    its marks), a space, or the escape of a character the card will not draw as it is."""
    atoms: list[str] = []
    composed: list[bool] = []  # whether each atom is a letter marks may still join
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category.startswith("M") and composed and composed[-1] \
                and _parts(atoms[-1] + char) is not None:
            atoms[-1] += char  # a mark with no precomposed letter (q́): drawn over its base
        elif category == "Zs":  # a no-break or other-width space: a space on paper
            atoms.append(" ")
            composed.append(False)
        elif category not in NOT_TEXT and (_in_font(char) or _parts(char) is not None):
            atoms.append(char)
            composed.append(category.startswith("L"))
        else:
            atoms.append(_escape(char))
            composed.append(False)
    return atoms


def _plain(atom: str) -> bool:
    """An escape (``\\u202e``, never a composed letter's first character) or a character the
    font has."""
    return atom.startswith("\\") or (len(atom) == 1 and _in_font(atom))


def _segments(atoms: Sequence[str]) -> list[tuple[bool, str]]:
    """Runs the font draws as they are (kerned together) and single composed letters."""
    out: list[tuple[bool, str]] = []
    for atom in atoms:
        plain = _plain(atom)
        if plain and out and out[-1][0]:
            out[-1] = (True, out[-1][1] + atom)
        else:
            out.append((plain, atom))
    return out


def _advance(atom: str, size: int) -> float:
    parts = _parts(atom)
    assert parts is not None
    base = _STROKED.get(parts[0], (parts[0], None))[0]
    return _font(size).getlength(base)


def line_width(atoms: Sequence[str], size: int) -> float:
    """How wide ``atoms`` draw at ``size`` (pixels)."""
    return sum(_font(size).getlength(text) if plain else _advance(text, size)
               for plain, text in _segments(atoms))


@functools.cache
def _ink(glyph: str, size: int) -> tuple[Image.Image, int, int]:
    """A glyph's ink (255 on 0), cropped to it, and its top-left from (pen x, baseline)."""
    image = Image.new("L", (size * 3, size * 3), 0)
    ImageDraw.Draw(image).text((size, size * 2), glyph, font=_font(size), fill=255, anchor="ls")
    box = image.getbbox() or (size, size * 2, size + 1, size * 2 + 1)
    return image.crop(box), box[0] - size, box[1] - size * 2


def _scaled(glyph: str, size: int, em: tuple[float, float],
            turn: Image.Transpose | None = None) -> Image.Image:
    """A glyph's ink reshaped to ``em`` (width, height in em): drawn four times as large and
    reduced, so that its strokes keep their anti-aliasing."""
    big = _ink(glyph, size * 4)[0]
    if turn is not None:
        big = big.transpose(turn)
    return big.resize((max(2, round(em[0] * size)), max(2, round(em[1] * size))),
                      Image.Resampling.LANCZOS)


@functools.cache
def _mark_ink(mark: _Mark, size: int) -> Image.Image:
    if mark.size is not None:
        return _scaled(mark.glyph, size, mark.size, mark.turn)
    pieces = [_ink(g, size)[0] for g in mark.glyph]
    ink = pieces[0]
    if len(pieces) == 2:  # two dots, two acutes, side by side
        gap = max(2, round(size * (0.10 if mark.glyph == ".." else 0.04)))
        ink = Image.new("L", (pieces[0].width + gap + pieces[1].width,
                              max(p.height for p in pieces)), 0)
        ink.paste(pieces[0], (0, ink.height - pieces[0].height))
        ink.paste(pieces[1], (pieces[0].width + gap, ink.height - pieces[1].height))
    return ink.transpose(mark.turn) if mark.turn is not None else ink


def _dotless(ink: Image.Image) -> Image.Image:
    """i or j without its dot: what lies below the first blank row from the top."""
    for y in range(ink.height):
        if ink.crop((0, y, ink.width, y + 1)).getbbox() is None:
            return ink.crop((0, y + 1, ink.width, ink.height))
    return ink


@functools.lru_cache(maxsize=2048)  # keyed by what names hold: bounded
def _composed(atom: str, size: int) -> tuple[Image.Image, int, int]:
    """A composed letter's ink (255 on 0), and its top-left from (pen x, baseline)."""
    parts = _parts(atom)
    assert parts is not None
    letter, marks, dotless = parts
    base, stroke = _STROKED.get(letter, (letter, None))
    ink, dx, dy = _ink(base, size)
    if dotless:
        cropped = _dotless(ink)
        dy += ink.height - cropped.height
        ink = cropped
    pad = size  # room for marks on every side; the canvas is cropped to its ink afterwards
    canvas = Image.new("L", (ink.width + 2 * pad, ink.height + 2 * pad), 0)
    canvas.paste(ink, (pad, pad))
    centre = pad + ink.width / 2
    if stroke is not None:
        across = letter in "đĐ"
        bar = _scaled("-" if across else "/", size, stroke)
        if across:  # through the ascender of đ, the stem of Đ
            x = pad + ink.width - bar.width if letter == "đ" else pad - bar.width // 4
            y = pad + round(ink.height * (0.2 if letter == "đ" else 0.5)) - bar.height // 2
        else:  # across ø; through the stem of ł and Ł (where its top row of ink is)
            stem = ink.crop((0, 0, ink.width, 1)).getbbox() if letter in "łŁ" else None
            middle = pad + (stem[0] + stem[2]) / 2 if stem else centre
            x, y = round(middle - bar.width / 2), pad + (ink.height - bar.height) // 2
        canvas.paste(255, (x, y), bar)
    gap = max(1, round(size * 0.06))
    above, below = pad, pad + ink.height
    for mark in (_MARKS[m] for m in marks):
        mink = _mark_ink(mark, size)
        if mark.where == "above":  # stacked upwards (ế: circumflex, then acute)
            above -= gap + mink.height
            x, y = round(centre - mink.width / 2), above
        elif mark.where == "below_right":  # ogonek: hangs from the right foot
            x, y = pad + ink.width - mink.width, pad + ink.height - mink.height // 3
        else:
            x, y = round(centre - mink.width / 2), below + gap
            below = y + mink.height
        canvas.paste(255, (x, y), mink)
    box = canvas.getbbox() or (0, 0, 1, 1)
    return canvas.crop(box), dx - pad + box[0], dy - pad + box[1]


def draw_line(image: Image.Image, xy: tuple[int, int], atoms: Sequence[str], size: int,
              fill: int = _INK) -> None:
    """Draw ``atoms`` (``card_atoms``) at ``size`` with their baseline's left end at ``xy``."""
    draw = ImageDraw.Draw(image)
    font = _font(size)
    x, baseline = float(xy[0]), xy[1]
    for plain, text in _segments(atoms):
        if plain:
            draw.text((x, baseline), text, font=font, fill=fill, anchor="ls")
            x += font.getlength(text)
        else:
            ink, dx, dy = _composed(text, size)
            image.paste(fill, (round(x) + dx, baseline + dy), ink)
            x += _advance(text, size)


# -- layout -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Placed:
    """One piece of text on the card: what it is (``role``: ``title``, ``photo_id``,
    ``label:FIELD`` or ``value:FIELD``, with FIELD ``given_name``, ``family_name``,
    ``residence.city``, ``residence.country``, ``valid_from``, ``valid_until``,
    ``credential_id``, ``issuer`` or ``issuing_office``), the text it shows (escapes included),
    its lines as drawn (an ellipsis ends the last one where a value had to be cut), the font
    size, and the box it is drawn in (left, top, right, bottom, pixels)."""

    role: str
    text: str
    lines: tuple[str, ...]
    size: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class CardLayout:
    width: int
    height: int
    qr_box: tuple[int, int, int, int]  # the QR image, its quiet zone included
    qr_scale: int  # pixels per module
    items: tuple[Placed, ...]

    def item(self, role: str) -> Placed:
        return next(i for i in self.items if i.role == role)


def _line_height(size: int) -> int:
    ascent, descent = _font(size).getmetrics()
    return _headroom(size) + ascent + descent


def _headroom(size: int) -> int:
    return math.ceil(size * _HEADROOM)


def _words(atoms: Sequence[str]) -> list[list[str]]:
    words: list[list[str]] = [[]]
    for atom in atoms:
        if atom == " ":
            words.append([])
        else:
            words[-1].append(atom)
    return [w for w in words if w]


def _wrap(atoms: Sequence[str], size: int, width: int) -> list[list[str]]:
    """Greedy word wrap; a word wider than the line is broken between characters."""
    lines: list[list[str]] = []
    line: list[str] = []
    for word in _words(atoms):
        trial = [*line, " ", *word] if line else word
        if line_width(trial, size) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        line = []
        for atom in word:
            if line and line_width([*line, atom], size) > width:
                lines.append(line)
                line = []
            line.append(atom)
    if line or not lines:
        lines.append(line)
    return lines


def _cut(lines: list[list[str]], count: int, size: int, width: int) -> list[list[str]]:
    """The first ``count`` lines, the last ending in an ellipsis where something was left out."""
    if len(lines) <= count:
        return lines
    last = list(lines[count - 1])
    while last and line_width([*last, " ", *_ELLIPSIS], size) > width:
        last.pop()
    return [*lines[:count - 1], [*last, " ", *_ELLIPSIS] if last else list(_ELLIPSIS)]


def _label_lines(text: str, width: int) -> list[list[str]]:
    """A bilingual label on one line if it fits, else Spanish over English (each wrapped)."""
    atoms = card_atoms(text)
    if line_width(atoms, _LABEL) <= width:
        return [atoms]
    es, _, en = text.partition(" / ")
    return [*_wrap(card_atoms(es + " /"), _LABEL, width), *_wrap(card_atoms(en), _LABEL, width)]


def _bilingual(labels: Mapping[str, str]) -> str:
    return f"{labels['es']} / {labels['en']}"


def _catalogue(office: CardOffice, claims: Claims | None, cid: str, group: str, field: str,
               catalog: str, value: Any) -> str:
    if type(value) is not int:
        return str(value)  # a name the issuing office did not catalogue: carried as it is
    name = office.catalogs.get(catalog, {}).get(value)
    if name is None and claims is not None:
        # A name this very issuance catalogued: its transaction adds it, and the card is drawn
        # inside that transaction, before the commit. The office encoded exactly the claim's
        # value to this code (``passport.issue``), so it is that code's name.
        name = claims.groups[group][field]
    if name is None:
        raise StoreError("card_not_this_office", credential_id=cid, what=f"{catalog} #{value}")
    return str(name)


def _fields(text: str, office: CardOffice, claims: Claims | None) -> list[tuple[str, str, str]]:
    """(field, bilingual label, value) for every field the card shows, read from the
    credential's own text."""
    decoded = decode_text(text)
    payload = decoded.payload
    cid = payload.credential_id
    if payload.holder_key is not None:
        raise UsageError("card_not_paper")
    kid = decoded.credential.kid
    office_name = office.offices.get(b64url(kid)) if kid is not None else None
    if payload.iss != office.code:
        raise StoreError("card_not_this_office", credential_id=cid, what=payload.iss)
    if office_name is None:
        raise StoreError("card_not_this_office", credential_id=cid,
                         what=b64url(kid) if kid is not None else "kid")
    spec = schema()
    shown: list[tuple[str, str, str]] = []
    for group, field in (("names", "given_name"), ("names", "family_name"),
                         ("residence", "city"), ("residence", "country")):
        f = next(f for f in spec.group(group).fields if f.name == field)
        value = decoded.groups.get(group, {}).get(field)
        if value is None:  # a paper passport carries every group, and these are never empty
            raise MalformedInput("disclosures_incomplete")
        if f.type == "catalog":
            value = _catalogue(office, claims, cid, group, field, f.catalog, value)
        else:
            value = display_value(f.type, f.catalog, value, office.catalogs)
        shown.append((field if group == "names" else f"{group}.{field}", _bilingual(f.label),
                      str(value)))
    envelope = spec.envelope_labels
    return [*shown,
            ("valid_from", _bilingual(envelope["valid_from"]), first_day(payload.nbf).isoformat()),
            ("valid_until", _bilingual(envelope["valid_until"]),
             last_day(payload.exp).isoformat()),
            ("credential_id", _bilingual(envelope["credential_id"]), cid),
            ("issuer", _bilingual(envelope["issuer"]), f"{office.city}, {office.country}"),
            ("issuing_office", _bilingual(envelope["issuing_office"]), office_name)]


# Rows of the text column, top to bottom; two fields in a row share it half and half.
_ROWS: Final = (("given_name",), ("family_name",), ("residence.city", "residence.country"),
                ("valid_from", "valid_until"), ("credential_id",),
                ("issuer", "issuing_office"))


def _message(code: str) -> str:
    return _bilingual(message_catalog()[code])


def layout(text: str, office: CardOffice, *, claims: Claims | None = None,
           qr_modules: int | None = None) -> CardLayout:
    """Where everything goes on the card of the paper passport ``text``.

    ``claims``, when the card is drawn while its passport is being issued, names what the
    office's committed catalogue cannot yet: the catalogue codes that issuance added.
    ``qr_modules`` is the QR image's side in modules, quiet zone included (computed if not
    given). Refuses ``card_not_paper`` (a wallet passport) and ``card_not_this_office`` (a
    city code, key or catalogue code this office does not have)."""
    fields = {name: (label, value) for name, label, value in _fields(text, office, claims)}
    if qr_modules is None:
        qr_modules = 17 + 4 * qr.qr_version(text) + 8
    width, height = _WIDTH, _HEIGHT
    right = width - _EDGE
    items: list[Placed] = []

    def place(role: str, shown: str, lines: list[list[str]], size: int, x: int, y: int,
              w: int) -> int:
        """Record a block; returns its bottom."""
        bottom = y + len(lines) * _line_height(size)
        items.append(Placed(role, "".join(card_atoms(shown)),
                            tuple("".join(line) for line in lines), size, (x, y, x + w, bottom)))
        return bottom

    # Title across the top, the photo-ID line across the bottom, both one line at this size.
    title = _message("card_title")
    top = place("title", title, _wrap(card_atoms(title), _TITLE, right - _EDGE), _TITLE,
                _EDGE, _EDGE - 4, right - _EDGE) + _GAP
    photo = _message("card_photo_id")
    photo_lines = _wrap(card_atoms(photo), _FOOTER, right - _EDGE)
    bottom = height - _EDGE + 4 - len(photo_lines) * _line_height(_FOOTER)
    place("photo_id", photo, photo_lines, _FOOTER, _EDGE, bottom, right - _EDGE)
    bottom -= _GAP

    # The QR code at the left, as large as the space between allows in whole pixels per module
    # (and no more than about half the card: the text beside it must stay legible).
    room = min(bottom - top, round(width * 0.56))
    scale = max(1, room // qr_modules)
    side = qr_modules * scale
    qr_top = top + (bottom - top - side) // 2
    qr_box = (_QR_EDGE, qr_top, _QR_EDGE + side, qr_top + side)

    # The fields in the column beside it, values shrinking together until all fit, then the
    # longest cut: a name of 200 characters, or one printed as escapes, never leaves its box.
    left = qr_box[2] + _GAP
    column = right - left
    half = (column - 2 * _GAP) // 2
    cells = [(name, column if len(row) == 1 else half, i * (half + 2 * _GAP))
             for row in _ROWS for i, name in enumerate(row)]
    widths = {name: w for name, w, _ in cells}
    labels = {name: _label_lines(fields[name][0], w) for name, w, _ in cells}
    # the values of a row start on one line, under the row's tallest label
    label_height = {name: max(len(labels[n]) for n in row) * _line_height(_LABEL) + 2
                    for row in _ROWS for name in row}
    names = ("given_name", "family_name")
    limits: dict[str, int] = {}

    def fit(sizes: dict[str, int]) -> tuple[int, dict[str, list[list[str]]]]:
        """The column's height with values at ``sizes``, and each value's lines."""
        values = {}
        for name, w in widths.items():
            lines = _wrap(card_atoms(fields[name][1]), sizes[name], w)
            values[name] = _cut(lines, limits[name], sizes[name], w) if name in limits \
                else lines
        total = sum(max(label_height[n] + len(values[n]) * _line_height(sizes[n]) for n in row)
                    for row in _ROWS) + _GAP * (len(_ROWS) - 1)
        return total, values

    # What takes more than one line shrinks first (a long name, a long office name), then
    # every value, down to half its size; then the value with the most lines loses its last.
    sizes = dict.fromkeys(widths, _VALUE)
    least = round(_VALUE * _MIN_SCALE)
    total, values = fit(sizes)
    while total > bottom - top:
        shrinking = [n for n in widths if len(values[n]) > 1 and sizes[n] > least] \
            or [n for n in widths if sizes[n] > least]
        if not shrinking:
            break
        for name in shrinking:
            sizes[name] -= 1
        total, values = fit(sizes)
    while total > bottom - top:
        name = max(values, key=lambda n: (len(values[n]), n in names))
        if len(values[name]) == 1:
            break  # every value on one line: cannot happen with the labels schemas/ has
        limits[name] = len(values[name]) - 1
        total, values = fit(sizes)

    y = top
    for row in _ROWS:
        row_bottom = y
        for name, w, dx in (c for c in cells if c[0] in row):
            label, value = fields[name]
            place(f"label:{name}", label, labels[name], _LABEL, left + dx, y, w)
            row_bottom = max(row_bottom, place(f"value:{name}", value, values[name],
                                               sizes[name], left + dx, y + label_height[name],
                                               w))
        y = row_bottom + _GAP
    return CardLayout(width, height, qr_box, scale, tuple(items))


# -- drawing ----------------------------------------------------------------------------------

def _draw(image: Image.Image, item: Placed) -> None:
    ascent = _headroom(item.size) + _font(item.size).getmetrics()[0]
    step = _line_height(item.size)
    for i, line in enumerate(item.lines):
        # A drawn line's text is made of atoms already (an escape is plain ASCII, drawn the
        # same whether split or not): reading it again gives back what was measured.
        draw_line(image, (item.box[0], item.box[1] + i * step + ascent), card_atoms(line),
                  item.size)


def render_card(text: str, office: CardOffice, *, claims: Claims | None = None) -> bytes:
    """The card of the paper passport ``text`` as PNG bytes (grey, 300 dpi, ID-1 size); see
    ``layout`` for ``claims`` and for what it refuses."""
    code = Image.open(io.BytesIO(qr.render_png(text, scale=1, border=4))).convert("L")
    plan = layout(text, office, claims=claims, qr_modules=code.width)
    card = Image.new("L", (plan.width, plan.height), _PAPER)
    ImageDraw.Draw(card).rounded_rectangle((0, 0, plan.width - 1, plan.height - 1), _CORNER,
                                           outline=_RULE, width=2)  # where to cut
    side = plan.qr_box[2] - plan.qr_box[0]
    card.paste(code.resize((side, side), Image.Resampling.NEAREST), plan.qr_box[:2])
    for item in plan.items:
        _draw(card, item)
    out = io.BytesIO()
    card.save(out, format="PNG", dpi=(CARD_DPI, CARD_DPI))  # printed at its true size
    return out.getvalue()
