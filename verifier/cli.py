"""``pasaporte verify``: check a presentation offline against trust bundles and city roots.

Exit status: 0 accepted, 1 rejected, 2 usage error. ``--batch`` reads one payload per line (a
counter replaying its scanner log) and writes one JSON result per line; it exits 0 only when
there was at least one and every one was accepted. ``--scan`` is the
counter at work: a keyboard-wedge scanner types each code as a line on standard input, and each
result is shown as it comes, with the setup files (the policy file too) read again whenever they
change (a new trust bundle dropped in place takes effect at the next scan; a broken one is
refused and the last good setup kept).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import stat
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import click

from credential import jsontext
from credential.bundle import RootKey, check_lists, parse_bundle
from credential.claims import service_named
from credential.errors import PasaporteError, StoreError, UsageError, as_usage
from credential.home import CANCELLING_SIGNALS, read_bounded, uninterrupted
from credential.logproof import read_trust_files
from credential.passport import check_audience, decode_text, parse_nonce
from credential.text import WIDE_BOMS, check_utf8, escaped
from credential.times import parse_instant
from credential.transport import PADDING
from pasaporte.cli import BilingualCommand, can_show, json_text, proof_options, reader_gone
from schemas import schema
from verifier.engine import Result, Verifier
from verifier.policy import Policy, policy_overrides

MAX_LINE = 8192  # bytes: twice the longest payload the engine reads, room for any scanner
MAX_SKIP = 2**20  # bytes with no line break after which the input is not a scanner log at all


_BREAK = re.compile(rb"\r\n|\r|\n")
_CHUNK = 64 * 1024

# A log saved as UTF-16 (Windows PowerShell's ``>``, Notepad's "Unicode") or UTF-32 says so with
# its byte order mark. UTF-32's are looked for first: UTF-16LE's is the start of UTF-32LE's.
def _as_utf8(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """``read`` giving UTF-8 whatever the log's encoding: one opening with a UTF-16 or UTF-32
    byte order mark is decoded piece by piece (bounded: each piece read gives at most twice its
    size, and a unit cut between two pieces is held for the next), so its codes reach the
    counter as the same codes; units that are no text (line noise) become U+FFFD, rejecting
    their line only. Read as UTF-8, every other byte of UTF-16 a NUL, every genuine passport was
    "not an urban passport". Any other input is given on as it is."""
    head = read(_CHUNK)
    # Only what could still be the start of a mark waits for more (a live scanner on a pipe
    # is answered at once otherwise).
    while head and any(len(head) < len(bom) and bom.startswith(head) for bom, _ in WIDE_BOMS):
        more = read(_CHUNK)
        if not more:
            break
        head += more
    encoding = next((name for bom, name in WIDE_BOMS if head.startswith(bom)), None)
    pending = [head] if head else []
    if encoding is None:
        def plain(size: int) -> bytes:
            return pending.pop() if pending else read(size)
        return plain
    decoder = codecs.getincrementaldecoder(encoding)("replace")  # takes its mark off
    done = False

    def decoded(size: int) -> bytes:
        nonlocal done
        while not done:
            data = pending.pop() if pending else read(size)
            text = decoder.decode(data, final=not data)
            done = not data
            if text:
                return text.encode("utf-8", "replace")
        return b""
    return decoded


# PNG, JPEG, GIF, WebP (RIFF), TIFF and BMP files begin so; no scanner's text does.
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF",
                     b"II*\x00", b"MM\x00*", b"BM")


def _lines(stream: BinaryIO, option: str) -> Iterator[str | None]:
    """The batch's lines as text, read in bounded pieces: ``None`` for a line over ``MAX_LINE``
    (its rest is skipped, never held); bytes that are not UTF-8 (a scanner's line noise) become
    U+FFFD, so that one line is rejected, not the whole log. A "line" running past ``MAX_SKIP``
    (a device or a binary file given by mistake, which may never end) stops the batch with a
    usage error instead of reading on for ever. A byte order mark opening the log (Notepad
    saves one) is no part of its first code; a UTF-16 or UTF-32 one says how the whole log is
    read (``_as_utf8``).

    A line ends at LF, CRLF or a lone CR: scanners are commonly set to end each code with CR
    (the Enter key), and a log captured from one without a terminal in between has no LF at
    all; read on LF only, its every code would run into one rejected line."""
    # read1 returns what has arrived (at least a byte) without waiting for a whole chunk, so
    # a scan typed on a live pipe is answered at once.
    read = _as_utf8(getattr(stream, "read1", stream.read))
    pending = bytearray()  # the line being read, at most MAX_LINE bytes
    skipped = -1  # at 0 or more: how much of an overlong line was passed over
    after_cr = False  # the last line ended with CR: an LF opening the next chunk is its CRLF
    first = True

    def ended(tail: bytes) -> str | None:
        nonlocal skipped, first
        line = bytes(pending) + tail
        pending.clear()
        if first and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8):]
        first = False
        if skipped >= 0 or len(line) > MAX_LINE:
            skipped = -1
            return None
        return line.decode("utf-8", "replace")

    while chunk := read(_CHUNK):
        if first and not pending and chunk.startswith(_IMAGE_SIGNATURES):
            # a photo of the code given where its text goes: one clear refusal pointing at
            # --image, not thousands of "not a passport" lines from its bytes
            raise UsageError("scan_input_is_image", option=option)
        pos = 1 if after_cr and chunk.startswith(b"\n") else 0
        after_cr = False
        for brk in _BREAK.finditer(chunk, pos):
            piece = chunk[pos:brk.start()]
            if skipped >= 0:
                skipped += len(piece)
                piece = b""
            yield ended(piece)
            pos = brk.end()
            after_cr = brk.group() == b"\r" and pos == len(chunk)
        rest = chunk[pos:]
        if skipped < 0 and len(pending) + len(rest) > MAX_LINE:
            skipped = len(pending)
            pending.clear()
        if skipped >= 0:
            skipped += len(rest)
            if skipped > MAX_SKIP:
                raise UsageError("batch_not_lines", option=option, limit=MAX_SKIP // 2**20)
        else:
            pending += rest
    if pending or skipped >= 0:
        yield ended(b"")


def _blank(line: str) -> bool:
    """A line with no scan in it: nothing, or only what a scanner or a log puts around a code
    (spaces, Tabs, STX/ETX, NUL: ``transport.PADDING``). Skipped, with no result."""
    return not line.strip(PADDING)


def _parse_at(at: str | None) -> int | None:
    return None if at is None else parse_instant(at, "--at")


def _show(text: str) -> None:
    """A line of a result on the clerk's screen. The clerk reads its first line as the decision:
    nothing a code carries may rewrite it (see ``credential.text``)."""
    click.echo(escaped(text))


_YES = {"es": "Sí", "en": "Yes"}
_NO = {"es": "No", "en": "No"}


def _mark(accepted: bool) -> str:
    """The decision at a glance: ✔ or ✘, or, on a terminal whose character set lacks them (a
    Latin-1 one), OK or X."""
    mark = "✔" if accepted else "✘"
    if can_show(mark):
        return mark
    return "OK" if accepted else "X"


def _print(result: Result, as_json: bool) -> None:
    if as_json:
        click.echo(json_text(result.to_json()))
        return
    mark = _mark(result.accepted)
    _show(f"{mark} {result.message['es']} / {result.message['en']}  [{result.code}]")
    if result.issuer:
        i = result.issuer
        _show(f"  {i['office']} — {i['city']}, {i['country']}")
    for c in result.claims:
        v = c["value"]
        value = c.get("value_label") or (_YES if v is True else _NO if v is False
                                         else {"es": v, "en": v})
        _show(f"  {c['label']['es']} / {c['label']['en']}: "
                  f"{value['es']}" + (f" / {value['en']}" if value['en'] != value['es'] else ""))
    for w in result.warnings:
        _show(f"  ! {w['message']['es']} / {w['message']['en']}  [{w['code']}]")


class _Setup:
    """The counter's setup files (bundles, roots, proofs and the ledger keys that vouch for
    them, its policy file), loaded into a ``Verifier`` and a ``Policy``; ``changed()`` says
    whether any file changed on disk since the last ``load()`` (a trust sync or an
    administrator replaced it)."""

    def __init__(self, bundles: Sequence[str], roots: Sequence[str], proofs: Sequence[str],
                 log_keys: Sequence[str], witness_keys: Sequence[str], *, service: str,
                 counter: str | None, policy_file: str | None) -> None:
        self.bundles, self.roots, self.proofs = bundles, roots, proofs
        self.log_keys, self.witness_keys = log_keys, witness_keys
        self.service, self.counter, self.policy_file = service, counter, policy_file
        self._seen = self._stamps()

    def _stamps(self) -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        policy = () if self.policy_file is None else (self.policy_file,)
        for path in (*self.bundles, *self.roots, *self.proofs, *policy):
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)  # gone for now (being replaced): a change, read when back
            else:
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def changed(self) -> bool:
        return self._stamps() != self._seen

    def load(self) -> tuple[Verifier, Policy]:
        """A verifier and a policy for the files as they are now (raises ``PasaporteError`` for
        bad ones, ``OSError`` for one gone). Either way the files are marked as seen as read, so
        that a broken set is reported once, not at every scan, and a change made during the read
        shows at the next check."""
        self._seen = self._stamps()
        policy = Policy.for_service(self.service, counter_id=self.counter,
                                    **_policy_file(self.policy_file))
        signed, roots = read_trust_files(self.bundles, self.roots, self.proofs, self.log_keys,
                                         self.witness_keys)
        keys = []
        for name, text in zip(self.roots, roots, strict=True):
            with _naming(name):
                keys.append(RootKey.from_json(text))
        try:
            return Verifier(bundles=signed, roots=keys), policy
        except PasaporteError as exc:
            if exc.code not in ("bundle_invalid", "bundle_untrusted", "statuslist_invalid"):
                raise
            # Which file: a counter set up with several cities' bundles cannot tell which to
            # replace. Looked for only now, so a good setup parses each bundle once.
            for name, data in zip(self.bundles, signed, strict=True):
                with _naming(name):
                    check_lists(parse_bundle(data, keys))
            raise


@contextlib.contextmanager
def _naming(file: str) -> Iterator[None]:
    """A bundle or root refused inside, said with the file it came from (``file: …``)."""
    try:
        yield
    except PasaporteError as exc:
        exc.of_file(file)
        raise


def _check_not_older(newest: dict[str, tuple[str, int]], new: Verifier) -> None:
    """A counter keeps the newest bundle per city for the whole session (``newest``: city code
    → name, the highest version taken): a reload that would take a city back to an older
    version (an old copy restored, a replayed file) would bring back the passports revoked
    since, so it is refused (``bundle_rollback``) and the counter goes on as it was. So is one
    without a city it trusted (``bundle_city_dropped``: another city's bundle copied over its
    file): its residents were refused from then on, and its older bundle put back after was
    taken, the versions seen being only the setup's then in force."""
    have = {b.code: b for b in new.bundles}
    for code, (city, version) in newest.items():
        bundle = have.get(code)
        if bundle is None:
            raise UsageError("bundle_city_dropped", city=city)
        if bundle.version < version:
            raise UsageError("bundle_rollback", city=bundle.city, got=bundle.version,
                             have=version)


def _newest(newest: dict[str, tuple[str, int]], verifier: Verifier) -> None:
    """Take ``verifier``'s bundles into the session's newest versions."""
    for b in verifier.bundles:
        newest[b.code] = (b.city, max(b.version, newest.get(b.code, (b.city, 0))[1]))


def _versions(verifier: Verifier) -> str:
    return ", ".join(f"{b.city} v{b.version}" for b in verifier.bundles)


def _say(text: str) -> None:
    """A line for the clerk on stderr (stdout carries only results)."""
    click.echo(text, err=True)


def _setup_notices(verifier: Verifier, policy: Policy, at: int | None) -> None:
    """What the clerk can put right before the first resident arrives, said once at the start
    (each scan says it again): a clock behind the trust bundles, a city's revocation list past
    its age."""
    now = int(time.time()) if at is None else at
    behind = verifier.clock_behind(now) if at is None else None
    if behind is not None:
        _say(f"! [{behind.code}] {behind.message['es']} / {behind.message['en']}")
        return  # every scan is refused until the clock is set: the rest can wait
    for bundle in verifier.stale_bundles(policy, now):
        stale = PasaporteError("status_stale", days=policy.status_max_age_s // 86400)
        _say(f"! {bundle.city}: {stale.diagnostics()}")


class _Replays:
    """The codes answering this counter's nonce already accepted in a session, each kept as
    long as the engine could accept it again: a nonce shuts replay out only if a code counts
    once. Without it a screenshot of an accepted code, passed down the queue, was accepted at
    every scan within the window. Bounded: those that can no longer pass go first, and past
    ``MAX`` the oldest."""

    MAX = 100_000

    def __init__(self) -> None:
        # digest → (when accepted, on the monotonic clock; the code's signed iat)
        self._seen: OrderedDict[bytes, tuple[float, int]] = OrderedDict()
        self._widest = 0  # the longest freshness window a policy of this session gave

    def check(self, line: str, policy: Policy, now: int | None) -> int | None:
        """Seconds since the presentation ``line`` holds was accepted in this session, or
        ``None`` when it was not (it is then remembered as accepted now). ``now`` is the time
        the engine verified it at (``--at``; ``None``: this clock's). Only accepted
        presentations come here: a paper passport answers no nonce, and the same sheet
        scanned twice is no replay."""
        # A code passes while the verifying clock reads no later than its iat plus the
        # freshness window: forgotten only then, by that clock (under --at it never moves)
        # and the widest window in force this session (one narrowed for a while and put back
        # forgot codes the wider one still took).
        at = int(time.time()) if now is None else now
        self._widest = max(self._widest, policy.freshness_s)
        while self._seen and next(iter(self._seen.values()))[1] + self._widest < at:
            self._seen.popitem(last=False)
        kb = decode_text(line).kb
        if kb is None:  # (not a presentation: nothing it could be a replay of)
            return None
        # Keyed on the holder's signature over this answer to the nonce: one code reaches the
        # counter in many spellings, none of which it signs (caps lock, an AIM prefix,
        # padding; COSE's optional tag 18 on either Sign1), and keyed on its text or even its
        # CBOR each passed as new. Ed25519 signatures are deterministic and, with S checked
        # below the group order (libsodium does), not malleable.
        key = hashlib.sha256(kb.sign1.signature).digest()
        seen = self._seen.get(key)
        if seen is not None:
            return int(time.monotonic() - seen[0])
        self._seen[key] = (time.monotonic(), kb.iat)
        if len(self._seen) > self.MAX:
            self._seen.popitem(last=False)
        return None


def _unreplayed(line: str, result: Result, replays: _Replays | None, policy: Policy,
                now: int | None) -> Result:
    """``result``, or ``presentation_replayed`` for a presentation accepted before in this
    session (only with a nonce: ``replays``); ``now`` as the engine verified it at."""
    if replays is not None and result.accepted and not result.paper:
        ago = replays.check(line, policy, now)
        if ago is not None:
            return Result.rejection("presentation_replayed", seconds=ago)
    return result


@contextlib.contextmanager
def _session_over() -> Iterator[None]:
    """From here a signal changes nothing (the session is ending): held back, and those that
    came meanwhile dropped, so a SIGHUP that comes with the terminal's going (its EIO ended the
    loop) cannot cut the count short and turn the normal end into a cancellation (one that
    lands before they are held: ``_scan`` enters again)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, CANCELLING_SIGNALS)
    try:
        yield
    finally:
        while signal.sigtimedwait(CANCELLING_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _scan(setup: _Setup, verifier: Verifier, policy: Policy, at: int | None,
          nonce: bytes | None, as_json: bool) -> None:
    """The counter at work: one result per scanned line, shown at once."""
    counts = {"accepted": 0, "rejected": 0}
    replays = _Replays() if nonce is not None else None
    label = schema().services[policy.service].label
    _say(f"Listo para escanear {label['es']} / Ready to scan {label['en']} "
         f"({_versions(verifier)}). "
         "Ctrl-D o Ctrl-C para terminar / to finish.")
    _setup_notices(verifier, policy, at)
    newest: dict[str, tuple[str, int]] = {}
    _newest(newest, verifier)
    try:
        for line in _lines(sys.stdin.buffer, "--scan"):
            if line is not None and _blank(line):
                continue
            if setup.changed():
                try:
                    loaded, new_policy = setup.load()
                    _check_not_older(newest, loaded)
                    verifier, policy = loaded, new_policy
                    _newest(newest, verifier)
                except (PasaporteError, OSError) as exc:  # keep the last good setup: scans go on
                    error = exc if isinstance(exc, PasaporteError) else StoreError(
                        "setup_file_unreadable", path=exc.filename or "?",
                        reason=exc.strerror or str(exc))
                    _say(f"! {error.diagnostics()}")
                    _say("! Se sigue con la configuración anterior / Still using the previous "
                         f"setup ({_versions(verifier)})")
                else:
                    _say(f"Configuración actualizada / Setup updated: {_versions(verifier)}")
            result = (Result.rejection("too_large") if line is None else
                      _unreplayed(line, verifier.verify(line, service=policy, now=at,
                                                        nonce=nonce), replays, policy, at))
            # shown and counted together: an interrupt between the two counted a result
            # nobody saw (the summary one ahead of what the clerk was shown)
            with uninterrupted():
                _print(result, as_json)
                counts[result.decision] += 1
            if not as_json:
                click.echo()  # one scan, one block, on a busy counter's screen
            sys.stdout.flush()  # the clerk (or the program reading us) sees it now
            if reader_gone():  # the program reading the results went: ended, as at EOF
                # said, and this scan's answer, which reached no one, not counted: the clerk
                # saw the session stop with no reason, its last scan counted as answered
                counts[result.decision] -= 1
                _say(PasaporteError("scan_reader_gone").diagnostics())
                break
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        # The scanner's terminal went (EIO, ENXIO): the input ended, as at EOF. Any other (a
        # results file on a full disk) is the error it is: scans would go unanswered.
        if exc.errno not in (errno.EIO, errno.ENXIO):
            raise StoreError("scan_output_failed", reason=exc.strerror or str(exc),
                             count=sum(counts.values())) from None
    finally:  # an input that stops the session (batch_not_lines) still gets its count
        # A signal that lands on the way in (the SIGHUP of the scanner's terminal going) is
        # the session's end as well, not a cancellation; and a count said to a terminal gone
        # (EIO) has nobody to read it.
        said = False
        while not said:
            try:
                with _session_over(), contextlib.suppress(OSError):
                    _say(f"Escaneos / Scans: {sum(counts.values())} — aceptados / accepted: "
                         f"{counts['accepted']}, rechazados / rejected: {counts['rejected']}")
                said = True
            except KeyboardInterrupt:
                continue


MAX_POLICY = 64 * 1024


def _policy_file(path: str | None) -> dict[str, object]:
    if path is None:
        return {}
    try:
        doc = jsontext.loads(read_bounded(path, MAX_POLICY))
    except jsontext.DuplicateKey as exc:
        raise UsageError("policy_duplicate_key", key=escaped(exc.key)) from None
    except UnicodeDecodeError:
        raise UsageError("policy_invalid", reason="not UTF-8") from None
    except json.JSONDecodeError:
        raise UsageError("policy_invalid", reason="not valid JSON") from None
    except ValueError as exc:
        # valid JSON this file cannot hold: a number longer than any setting, or nesting no
        # policy has (an ASCII file was said to be "not UTF-8 JSON": an encoding to look for)
        raise UsageError("policy_invalid", reason=str(exc)) from None
    return policy_overrides(doc)


class _RepeatableFiles(BilingualCommand):
    """Accept ``--bundle a.cbor b.cbor`` as well as ``--bundle a.cbor --bundle b.cbor``.

    The documented interface writes ``--bundle FILE…``; click options take one value each, and
    ``verify`` has no positional arguments, so a bare word after one of these options' value can
    only be another file for the same option.
    """

    _MULTI = frozenset({"--bundle", "--trust-root", "--bundle-proof"})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        pending: str | None = None  # the multi-file option that bare words belong to
        i = 0
        while i < len(args):
            arg = args[i]
            name = arg.split("=", 1)[0]
            if arg == "--":
                out.extend(args[i:])
                break
            if name in self._MULTI:
                pending = name
                take = 1 if "=" in arg else 2  # "--bundle=a" or "--bundle a"
                out.extend(args[i:i + take])
                i += take
                continue
            if arg.startswith("-"):
                pending = None
            elif pending is not None:
                out.append(pending)
            out.append(arg)
            i += 1
        return super().parse_args(ctx, out)


@click.command(cls=_RepeatableFiles)
@click.option("--service", required=True,
              help="Servicio: library, transit o clinic, o su nombre en español o inglés / "
                   "Service: library, transit or clinic, or its Spanish or English name.")
@click.option("--bundle", "bundles", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Paquete de confianza (repetible) / Trust bundle (repeatable).")
@click.option("--trust-root", "roots", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Llave raíz de la ciudad (repetible) / City root key (repeatable).")
@proof_options
@click.option("--text", help="Texto del código escaneado / The scanned payload text.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False),
              help="Foto del código, PNG o JPEG de hasta 40 megapíxeles / A PNG/JPEG photo of "
                   "up to 40 megapixels.")
@click.option("--batch", type=click.File("rb"),
              help="Un código por línea (- para la entrada estándar) / One payload per line (- "
                   "for stdin).")
@click.option("--scan", is_flag=True,
              help="Lee cada código del lector (entrada estándar) hasta que termine o Ctrl-C; "
                   "relee los archivos si cambian / Read scans from the scanner (stdin) until it "
                   "ends or Ctrl-C; setup files are reread when changed.")
@click.option("--at", help="Verifica a esta hora, ISO-8601 con su zona (2026-11-23T16:50-08:00; "
                           "por omisión: ahora) / Verify as of this ISO-8601 time, with its zone "
                           "(default: now).")
@click.option("--counter", help="Id de esta ventanilla (revisa el destinatario) / This counter's "
                                "id (audience check).")
@click.option("--nonce", help="Reto que mostró esta ventanilla / The challenge this counter "
                              "displayed.")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False),
              help="Política de esta ventanilla (JSON: paper, freshness_seconds, "
                   "clock_skew_seconds, status_max_age_days, stale_status) / This counter's "
                   "policy (JSON: the same keys).")
@click.option("--json", "as_json", is_flag=True, help="Salida JSON / JSON output.")
def command(service: str, bundles: tuple[str, ...], roots: tuple[str, ...],
            proofs: tuple[str, ...], log_keys: tuple[str, ...], witness_keys: tuple[str, ...],
            text: str | None, image: str | None, batch: BinaryIO | None, scan: bool,
            at: str | None, counter: str | None, nonce: str | None, policy_file: str | None,
            as_json: bool) -> None:
    """Verifica un pasaporte sin conexión / Verify a passport offline.

    Con --log-key solo se confía en paquetes con prueba de estar en el registro público: cada
    uno llega con su --bundle-proof, cuyo checkpoint firmó el registro y cosignó un testigo de
    --witness-key / With --log-key, only bundles proven to be on the public ledger are trusted:
    each comes with its --bundle-proof, whose checkpoint the ledger signed and a --witness-key
    cosigned."""
    if sum(x is not None for x in (text, image, batch)) + scan != 1:
        raise UsageError("usage_error",
                         reason_es="indique uno solo de --text, --image, --batch, --scan",
                         reason_en="give exactly one of --text, --image, --batch, --scan")
    if image is not None and not stat.S_ISREG(os.stat(image).st_mode):
        # A pipe would block the counter until someone writes to it, and a device such as
        # /dev/zero never ends: a photo is a file.
        raise UsageError("image_not_a_file", path=image)
    # as the wallet takes it (``present --for Biblioteca``); another name is service_unknown
    service = service_named(check_utf8(service, "--service")) or service
    if counter is not None:  # held to the wallet's rule: an empty id would check no code's
        check_audience(service, check_utf8(counter, "--counter"), "counter_invalid")
    setup = _Setup(bundles, roots, proofs, log_keys, witness_keys, service=service,
                   counter=counter, policy_file=policy_file)
    # A broken bundle or root file is the counter's setup, not the resident's passport:
    # report it as a usage error (exit 2), never as a rejection (exit 1).
    with as_usage(PasaporteError):
        verifier, policy = setup.load()
    now = _parse_at(at)
    nonce_bytes = parse_nonce(nonce)
    if scan:
        _scan(setup, verifier, policy, now, nonce_bytes, as_json)
        return
    if batch is not None:
        all_ok, checked = True, 0
        # as in a --scan session: a scanner's log replayed here must not accept the code a
        # session refused as replayed
        replays = _Replays() if nonce_bytes is not None else None
        # One result per line that holds anything, refused or not, naming its line in the log
        # so that a replay can be matched with it line by line (blank lines give none); never
        # two for one line: two codes on one line are one refusal
        # (scan_several), a line too long to read is one (too_large).
        for number, line in enumerate(_lines(batch, "--batch"), 1):
            if line is None:
                result = Result.rejection("too_large")
            elif _blank(line):
                continue
            else:
                result = _unreplayed(line, verifier.verify(line, service=policy, now=now,
                                                           nonce=nonce_bytes), replays, policy,
                                     now)
            all_ok &= result.accepted
            checked += 1
            # ``| head -1``: the rest is still checked (the exit status is the whole batch's
            # decision), its lines going nowhere (``pasaporte.cli._ForgivingStdout``). Each
            # written through at once: a results file on a full disk is said by how many went
            # in, as a --scan session says it, not found at exit as "check with list".
            try:
                click.echo(json_text({**result.to_json(), "line": number}))
                sys.stdout.flush()
            except OSError as exc:
                raise StoreError("batch_output_failed", reason=exc.strerror or str(exc),
                                 count=checked - 1, line=number) from None
        if not checked:
            # Nothing was accepted either: a script must not read an empty or mistaken file
            # as "every passport in it was good".
            _say(PasaporteError("batch_empty").diagnostics())
        raise click.exceptions.Exit(0 if all_ok and checked else 1)
    if image is not None:
        result = verifier.verify_image(image, service=policy, now=now, nonce=nonce_bytes)
    else:
        result = verifier.verify(text or "", service=policy, now=now, nonce=nonce_bytes)
    _print(result, as_json)  # a reader gone meanwhile: the decision stays the exit status
    raise click.exceptions.Exit(0 if result.accepted else 1)
