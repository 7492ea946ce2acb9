"""Where a status list puts its n-th credential: a keyed pseudo-random permutation of the list.

Pure logic, no I/O: the store (``issuer.store``) keeps each list's key and a counter ``n`` and
asks ``IndexPermutation(key, size)(n)`` for the index. Why a permutation rather than drawing a
random index and trying again while it is taken:

- the indices it gives are unique by construction, so issuance never retries, and
- every entry of the list can be used: drawing at random only stays cheap while the list is
  sparse, which left a quarter of every list empty (a million credentials took 11 lists, not 8);
- yet the order stays hidden from anyone without the list's key: an index says nothing about
  when its credential was issued, or which index the next one will get (a counter fetching a
  list learns no more than with random indices, and the list's herd privacy is kept).

The permutation is a balanced Feistel network over the smallest even number of bits that
covers ``size`` (its round function HMAC-SHA-256 under the key, truncated to a half), with
cycle-walking to stay inside ``range(size)``: a value that falls outside is enciphered again
until it falls inside, which is still a bijection of ``range(size)``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Final

__all__ = ["KEY_BYTES", "MAX_SIZE", "ROUNDS", "IndexPermutation"]

KEY_BYTES: Final = 32
# Luby–Rackoff's four rounds are proven enough for wide halves; these are tiny (9 bits for a
# W3C-sized list), where that proof leaves little margin, so as many rounds as the standards for
# such small domains use (NIST's FF3-1: 8); each costs one HMAC per issuance, about 2 µs.
ROUNDS: Final = 8
MAX_SIZE: Final = (1 << 64) - 1  # the size is bound into every round as 8 bytes
_DOMAIN: Final = b"pasaporte/status-index/v1\x00"


@dataclass(frozen=True)
class IndexPermutation:
    """``P(n)``: the index of a list's ``n``-th credential, for ``n`` in ``range(size)``.

    Deterministic for one key and size; different keys give unrelated orders. The size is part
    of every round's input, so one key used with two sizes gives two unrelated permutations."""

    key: bytes = field(repr=False)  # never in a log or a traceback
    size: int
    # Each round's function only ever sees ``2 ** half`` inputs: remembered per object, so a
    # walk over many positions (or the whole list) costs at most ROUNDS * 2 ** half HMACs.
    _rounds: tuple[dict[int, int], ...] = field(init=False, repr=False, compare=False)
    _half: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_BYTES:
            got = len(self.key) if isinstance(self.key, bytes) else type(self.key).__name__
            raise ValueError(f"key: got {got} bytes, want {KEY_BYTES}")
        if type(self.size) is not int or not 2 <= self.size <= MAX_SIZE:
            raise ValueError(f"size: got {self.size!r}, want 2..{MAX_SIZE}")
        bits = (self.size - 1).bit_length()
        object.__setattr__(self, "_half", (bits + 1) // 2)  # the even width's half, >= 1
        object.__setattr__(self, "_rounds", tuple({} for _ in range(ROUNDS)))

    def __call__(self, n: int) -> int:
        if type(n) is not int or not 0 <= n < self.size:
            raise ValueError(f"position: got {n!r}, want 0..{self.size - 1}")
        x = self._encipher(n)
        while x >= self.size:  # cycle-walking: n's cycle comes back inside within the domain
            x = self._encipher(x)
        return x

    def _encipher(self, x: int) -> int:
        half = self._half
        mask = (1 << half) - 1
        left, right = x >> half, x & mask
        for i, table in enumerate(self._rounds):
            f = table.get(right)
            if f is None:
                f = table[right] = self._round(i, right)
            left, right = right, left ^ f
        return (left << half) | right

    def _round(self, i: int, right: int) -> int:
        message = (_DOMAIN + self.size.to_bytes(8, "big") + bytes([i])
                   + right.to_bytes((self._half + 7) // 8, "big"))
        digest = hmac.digest(self.key, message, hashlib.sha256)
        return int.from_bytes(digest, "big") >> (256 - self._half)
