"""Status lists: one compressed bitstring per issuing office and purpose (revoked; suspended).

Semantics follow the W3C Bitstring Status List: the credential's status index names one bit, and
bit 0 is the most significant bit of the first byte; a set bit means "revoked" (or "suspended").
The issuer allocates indices at issuance and publishes the zlib-compressed list inside the city's
trust bundle; the counter checks a bit in O(1) and never goes online.

``StatusList`` is frozen at the boundary: its purpose, size and buffer identity are fixed and
validated on construction, while ``set`` flips bits in place for the issuer. ``from_compressed``
inflates at most exactly ``size / 8`` bytes (plus one, to see that there is more), so a hostile
bundle cannot make a counter allocate more than the list it claims to be.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final, Literal

from credential.errors import MalformedInput

__all__ = ["DEFAULT_SIZE", "MARKS", "MAX_SIZE", "PURPOSES", "Purpose", "StatusList"]

Purpose = Literal["revocation", "suspension"]
PURPOSES: Final[frozenset[str]] = frozenset({"revocation", "suspension"})
# The credential status each list's set bits stand for (issuers set them, counters read them).
MARKS: Final[dict[Purpose, str]] = {"revocation": "revoked", "suspension": "suspended"}
# W3C's minimum list length: with fewer entries a verifier fetching a list learns too much about
# which credential it is checking (herd privacy).
DEFAULT_SIZE: Final = 131_072
_MAX_BYTES: Final = 1 << 20  # what a counter inflates for one list and purpose at most
MAX_SIZE: Final = _MAX_BYTES * 8  # 8,388,608 credentials per list


def _invalid(reason: str) -> MalformedInput:
    return MalformedInput("statuslist_invalid", reason=reason)


def _check_size(size: object) -> None:
    if type(size) is not int or size <= 0 or size % 8:
        raise _invalid("size must be a positive multiple of 8")


@dataclass(frozen=True, slots=True)
class StatusList:
    """A bitstring of ``size`` entries for one ``purpose``; ``bits`` holds ``size // 8`` bytes."""

    purpose: Purpose
    size: int
    bits: bytearray

    def __post_init__(self) -> None:
        if self.purpose not in PURPOSES:
            raise _invalid(f"unknown purpose {self.purpose!r}")
        _check_size(self.size)
        if not isinstance(self.bits, bytearray) or len(self.bits) * 8 != self.size:
            raise _invalid("bits do not match the size")

    @classmethod
    def new(cls, purpose: Purpose, size: int = DEFAULT_SIZE) -> StatusList:
        """An all-clear list (no credential revoked or suspended)."""
        _check_size(size)  # before allocating
        return cls(purpose, size, bytearray(size // 8))

    @classmethod
    def from_compressed(
        cls, purpose: Purpose, size: int, data: bytes, *, max_inflated: int = _MAX_BYTES
    ) -> StatusList:
        """Inflate a published list; exactly ``size // 8`` bytes or ``statuslist_invalid``."""
        _check_size(size)  # before inflating
        expected = size // 8
        if expected > max_inflated:
            raise _invalid("size over the limit")
        inflater = zlib.decompressobj()
        try:
            bits = inflater.decompress(bytes(data), expected + 1)
        except (zlib.error, TypeError):
            raise _invalid("corrupt stream") from None
        if len(bits) != expected:
            raise _invalid(f"inflated to {'more' if len(bits) > expected else 'fewer'} bytes "
                           f"than the size")
        if not inflater.eof or inflater.unused_data:
            raise _invalid("truncated stream or trailing bytes")
        return cls(purpose, size, bytearray(bits))

    def compress(self) -> bytes:
        """The zlib (level 9) form published in trust bundles."""
        return zlib.compress(self.bits, 9)

    def _index(self, index: object) -> int:
        # ``object``, not ``int``: compiled (make compile), an ``int`` parameter would quietly
        # take True as 1; a bool is no index.
        if type(index) is not int or not 0 <= index < self.size:
            raise MalformedInput("statuslist_index", index=index, size=self.size)
        return index

    def get(self, index: object) -> bool:
        """Whether entry ``index`` is set (revoked or suspended, per ``purpose``)."""
        i = self._index(index)
        return bool(self.bits[i >> 3] & (0x80 >> (i & 7)))

    def set(self, index: object, value: bool = True) -> None:
        """Set or clear entry ``index`` (issuer side)."""
        i = self._index(index)
        if value:
            self.bits[i >> 3] |= 0x80 >> (i & 7)
        else:
            self.bits[i >> 3] &= ~(0x80 >> (i & 7)) & 0xFF

    def count(self) -> int:
        """How many entries are set."""
        return int.from_bytes(self.bits, "big").bit_count()
