"""C2SP signed notes, checkpoints and cosignatures: the text formats transparency logs share.

* ``signed-note`` — a UTF-8 text, a blank line, then signature lines
  ``— <name> base64(key id ‖ signature)``; verifier keys are
  ``name+hex(key id)+base64(type ‖ key)``.
  Ed25519 (type 0x01) key id = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4].
* ``tlog-checkpoint`` — the note body ``origin\\nsize\\nbase64(root)\\n[extension lines]``.
* ``tlog-cosignature`` — ``cosignature/v1`` Ed25519 cosignatures (type 0x04) over a checkpoint:
  the signature is ``u64 timestamp ‖ Ed25519(sig)`` over
  ``cosignature/v1\\ntime <t>\\n<checkpoint body>``.

Pure (stdlib + pynacl), reused by the offline verifier and the wallet. Parse errors raise
:class:`~credential.errors.MalformedInput` (``note_*`` codes); a note no trusted key signed, or a
trusted key's signature that does not verify, raises :class:`~credential.errors.LedgerError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from credential.errors import LedgerError, MalformedInput
from credential.text import is_utf8

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "MAX_KEY_NAME",
    "MAX_SIGNATURES",
    "Checkpoint",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "check_own_name",
    "cosignature_message",
    "generate_signer",
    "is_key_name",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "parse_size",
    "parse_verifier_key",
    "sign_note",
    "verify_checkpoint",
]

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100
# signed-note: verifiers "MUST accept at least up to 16 signatures", and post-quantum ones run
# to nearly 5 KB each (base64, about 6.6 KB a line): 16 of those and a checkpoint fit.
MAX_NOTE_BYTES = 128 * 1024
# The longest name this system gives a key of its own or of a peer it is set up with
# (``check_own_name``); every name in use is a host name and a path, a few dozen characters.
MAX_KEY_NAME = 128
_DASH = "— "  # U+2014 then a space opens every signature line
_NAME_RE = re.compile(r"[^\s+]+")
_CTRL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
# What signed-note forbids in a note's text: ASCII controls other than the newline (U+007F and
# blank lines are allowed there; checkpoints, names and keys keep to the stricter _CTRL_RE).
_TEXT_CTRL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedInput("note_bad_base64", what=what) from None
    if base64.b64encode(raw).decode("ascii") != text:  # one spelling per value
        raise MalformedInput("note_bad_base64", what=what)
    return raw


def is_key_name(name: str) -> bool:
    """Whether ``name`` may name a key (a log's origin, a witness): signed-note's key names are
    non-empty, without spaces or "+" (which separates the name from the key id)."""
    # fullmatch: ``$`` matches before a final newline, and a name pasted with its line end
    # passed (a node made with a witness key whose name spans two lines)
    return (bool(name) and _NAME_RE.fullmatch(name) is not None
            and _CTRL_RE.search(name) is None and is_utf8(name))


def _check_name(name: str) -> None:
    if not is_key_name(name):
        raise MalformedInput("note_bad_name", name=name[:80])


def check_own_name(name: str) -> None:
    """A name typed for a key this system is to use (a log's origin, a witness it asks or is):
    also at most ``MAX_KEY_NAME`` characters. Signed-note sets no bound, but the ledger's own
    records (``witness_cosignature``) hold such names, bounded like every field: a longer one,
    accepted when configured, had every later append refused over a record nobody sent.
    Checked where typed, not where a key is read back: a home an earlier release made with a
    longer name is still read (audited, served)."""
    _check_name(name)
    if len(name) > MAX_KEY_NAME:
        raise MalformedInput("note_name_too_long", name=name[:80] + "…", max=MAX_KEY_NAME)


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """SHA-256(name ‖ 0x0A ‖ alg ‖ public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def cosignature_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header, time line, then the checkpoint body."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode()


@dataclass(frozen=True)
class Verifier:
    """A public key that can check one name's signatures (Ed25519 or cosignature/v1)."""

    name: str
    public_key: bytes
    alg: int = ED25519

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.alg not in (ED25519, COSIGNATURE_V1):
            raise MalformedInput("note_bad_key", reason=f"unknown key type {self.alg}")
        if len(self.public_key) != 32:
            raise MalformedInput("note_bad_key", reason=f"key size {len(self.public_key)}")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public_key)

    @property
    def vkey(self) -> str:
        """The C2SP verifier key string ``name+keyid+base64``."""
        raw = base64.b64encode(bytes([self.alg]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{raw}"

    def verify(self, body: str, sig: bytes) -> bool:
        """Whether ``sig`` (without the key id) signs ``body``."""
        if self.alg == COSIGNATURE_V1:
            if len(sig) != 72:
                return False
            ts = int.from_bytes(sig[:8], "big")
            if ts >= 1 << 63:
                return False
            message, sig = cosignature_message(body, ts), sig[8:]
        else:
            if len(sig) != 64:
                return False
            message = body.encode()
        try:
            nacl.signing.VerifyKey(self.public_key).verify(message, sig)
        except nacl.exceptions.BadSignatureError:
            return False
        return True


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse ``name+keyid+base64(type ‖ key)`` and check the key id matches."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise MalformedInput("note_bad_key", reason="expected name+keyid+base64")
    raw = _b64decode(parts[2], "key")
    if len(raw) != 33:
        raise MalformedInput("note_bad_key", reason=f"key size {len(raw) - 1}")
    verifier = Verifier(parts[0], raw[1:], raw[0])
    if verifier.key_id.hex() != parts[1]:
        raise MalformedInput("note_bad_key", reason="key id does not match the key")
    return verifier


@dataclass(frozen=True)
class Signer:
    """A private Ed25519 key under a name; ``alg`` picks a note signature or a cosignature."""

    name: str
    seed: bytes = field(repr=False)
    alg: int = ED25519

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.seed) != 32:
            raise MalformedInput("note_bad_key", reason="seed must be 32 bytes")

    @property
    def verifier(self) -> Verifier:
        pub = bytes(nacl.signing.SigningKey(self.seed).verify_key)
        return Verifier(self.name, pub, self.alg)

    def sign(self, body: str, timestamp: int | None = None) -> NoteSignature:
        """A signature line for ``body`` (cosignatures are stamped now unless told)."""
        key = nacl.signing.SigningKey(self.seed)
        if self.alg == COSIGNATURE_V1:
            ts = int(time.time()) if timestamp is None else timestamp
            raw = ts.to_bytes(8, "big") + key.sign(cosignature_message(body, ts)).signature
        else:
            raw = key.sign(body.encode()).signature
        return NoteSignature(self.name, self.verifier.key_id, raw)


def generate_signer(name: str, alg: int = ED25519) -> Signer:
    """A fresh random key."""
    return Signer(name, bytes(nacl.signing.SigningKey.generate()), alg)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"

    @property
    def timestamp(self) -> int | None:
        """The cosignature time, when this is a 72-byte cosignature."""
        return int.from_bytes(self.signature[:8], "big") if len(self.signature) == 72 else None


def _check_text(text: str) -> None:
    # signed-note: a non-empty UTF-8 text ending in a newline, without ASCII controls other
    # than the newline; it MAY contain blank lines (the last blank line ends it).
    if not text.endswith("\n") or _TEXT_CTRL_RE.search(text):
        raise MalformedInput("note_malformed", reason="text must be lines ending in newline")
    _check_utf8(text)


def _check_utf8(text: str) -> None:
    # Notes "MUST be valid UTF-8": a str from elsewhere than bytes may not be.
    if not is_utf8(text):
        raise MalformedInput("note_malformed", reason="not UTF-8")


@dataclass(frozen=True)
class Note:
    """A note text (ending in a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def __post_init__(self) -> None:
        _check_text(self.text)

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line for s in self.signatures)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """This note plus ``extra`` signature lines not already present."""
        have = list(self.signatures)
        for sig in extra:
            if sig not in have:
                have.append(sig)
        return Note(self.text, tuple(have))


def parse_signature_lines(block: str) -> list[NoteSignature]:
    """Parse ``— name base64`` lines (each ending in a newline)."""
    if block and not block.endswith("\n"):
        raise MalformedInput("note_malformed", reason="signature block must end in newline")
    sigs: list[NoteSignature] = []
    for line in block.split("\n")[:-1]:
        if not line.startswith(_DASH):
            raise MalformedInput("note_malformed", reason="signature line must start with —")
        name, sep, b64 = line[len(_DASH):].partition(" ")
        if not sep:
            raise MalformedInput("note_malformed", reason="signature line without a signature")
        _check_name(name)
        raw = _b64decode(b64, "signature")
        if len(raw) < 5:
            raise MalformedInput("note_malformed", reason="signature too short")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
        if len(sigs) > MAX_SIGNATURES:
            raise MalformedInput("note_malformed", reason="too many signatures")
    return sigs


def parse_note(data: bytes | str) -> Note:
    """Split a signed note into its text and signatures (nothing is verified here)."""
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_BYTES:
            raise MalformedInput("note_malformed", reason="note too large")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedInput("note_malformed", reason="not UTF-8") from None
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedInput("note_malformed", reason="note too large")
    _check_utf8(data)
    cut = data.rfind("\n\n")
    if cut < 0:
        raise MalformedInput("note_malformed", reason="no signature block")
    text, block = data[: cut + 1], data[cut + 2 :]
    sigs = parse_signature_lines(block)
    if not sigs:
        raise MalformedInput("note_malformed", reason="no signatures")
    return Note(text, tuple(sigs))


def sign_note(text: str, *signers: Signer) -> Note:
    """The note ``text`` signed by every signer."""
    return Note(text, tuple(s.sign(text) for s in signers))


def open_note(
    data: bytes | str | Note, verifiers: Sequence[Verifier]
) -> tuple[Note, list[Verifier]]:
    """Parse and verify a note: which of ``verifiers`` signed it.

    Signatures from unknown keys are ignored (kept in the returned note). A signature that claims
    a known key but does not verify, or a note that no known key signed, raises.
    """
    note = data if isinstance(data, Note) else parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    ok: list[Verifier] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(note.text, sig.signature):
            raise LedgerError("note_bad_signature", name=sig.name)
        if verifier not in ok:
            ok.append(verifier)
    if not ok:
        raise LedgerError("note_unverified")
    return note, ok


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, size, root hash and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or _CTRL_RE.search(self.origin) or "\n" in self.origin:
            raise MalformedInput("note_bad_checkpoint", reason="bad origin line")
        if not 0 <= self.size < 1 << 63:
            raise MalformedInput("note_bad_checkpoint", reason="bad size")
        if len(self.root) != 32:
            raise MalformedInput("note_bad_checkpoint", reason="root must be 32 bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext or _CTRL_RE.search(ext):
                raise MalformedInput("note_bad_checkpoint", reason="bad extension line")

    def body(self) -> str:
        root = base64.b64encode(self.root).decode()
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note body (the text, not the signatures)."""
    if not text.endswith("\n"):
        raise MalformedInput("note_bad_checkpoint", reason="must end in newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedInput("note_bad_checkpoint", reason="needs origin, size and root")
    origin, size_s, root_s, *ext = lines
    size = parse_size(size_s)
    if size is None:
        raise MalformedInput("note_bad_checkpoint", reason="bad size line")
    return Checkpoint(origin, size, _b64decode(root_s, "root"), tuple(ext))


_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,18}")


def parse_size(text: str) -> int | None:
    """A tree size as the C2SP formats write it (a checkpoint's size line, tlog-witness's
    ``old N``): ASCII decimal without leading zeros, under 10^19; ``None`` for anything else.
    (``str.isdigit`` would also take "²", which ``int`` refuses, and "١", which it reads as 1.)"""
    return int(text) if _SIZE_RE.fullmatch(text) else None


def verify_checkpoint(data: bytes | str, log: Verifier, witnesses: Sequence[Verifier] = (),
                      quorum: int = 1) -> Checkpoint:
    """A checkpoint signed by ``log`` and cosigned by at least ``quorum`` of ``witnesses``.

    This is the verifier's policy for the binational ledger: the operating city's signature
    *and* the other city's cosignature, so nobody can be shown a history the witness has not
    checked for consistency.
    """
    for witness in witnesses:
        # The log's own key given as a witness's (a paste into the wrong option) would count
        # the log's signature as its cosignature: the check that someone else saw this
        # history would pass with nobody else involved.
        if witness.public_key == log.public_key or witness.name == log.name:
            raise LedgerError("note_witness_is_log", name=witness.name)
    note, ok = open_note(data, [log, *witnesses])
    if log not in ok:
        raise LedgerError("note_unverified")
    cosigned = sum(1 for w in witnesses if w in ok)
    if cosigned < quorum:
        raise LedgerError("note_missing_cosignature", got=cosigned, want=quorum)
    checkpoint = parse_checkpoint(note.text)
    if checkpoint.origin != log.name:
        raise LedgerError("note_wrong_origin", origin=checkpoint.origin, want=log.name)
    return checkpoint
