"""The ``pasaporte`` console script: one entry point whose groups live in their own packages.

Errors from any group are caught here once and printed in Spanish and English with their code,
and so is an operating-system error (a full disk, a folder that cannot be written) and, as a
last resort, any other failure (``PASAPORTE_DEBUG=1`` shows its traceback instead).
Exit codes: 0 success, 1 refused/failed, 2 usage error, 130 cancelled (Ctrl-C, SIGTERM,
SIGHUP).
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import click

from credential.errors import PasaporteError, StoreError, UsageError

# Each group is imported only when used: a counter running ``verify`` should not pay for
# loading SQLAlchemy and Alembic (most of a second) on every scan it checks from a script.
_COMMANDS = {
    "issuer": ("issuer.cli", "group"),
    "ledger": ("ledger.cli", "group"),
    "verify": ("verifier.cli", "command"),
    "wallet": ("wallet_cli.cli", "group"),
}


CANCELLED = 130

HELP_OPTION_HELP = "Muestra esta ayuda y sale / Show this message and exit."


def _bilingual(option: click.Option | None) -> click.Option | None:
    if option is not None:
        option.help = HELP_OPTION_HELP
    return option


class _BilingualFormatter(click.HelpFormatter):
    """click's help and usage lines with their headings in Spanish too: a clerk read "Usage:"
    and "Options:" above help written in both languages."""

    _HEADINGS: ClassVar[dict[str, str]] = {"Options": "Opciones / Options",
                                           "Commands": "Comandos / Commands"}

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "Uso / Usage: " if prefix is None else prefix)

    def write_heading(self, heading: str) -> None:
        super().write_heading(self._HEADINGS.get(heading, heading))


class _BilingualContext(click.Context):
    formatter_class = _BilingualFormatter


class BilingualCommand(click.Command):
    """A command whose ``--help`` option describes itself in Spanish and English too."""

    context_class = _BilingualContext

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return _bilingual(super().get_help_option(ctx))


class BilingualGroup(click.Group):
    """A group whose commands and subgroups (and itself) have the bilingual ``--help``."""

    command_class = BilingualCommand
    group_class = type  # a subgroup is a BilingualGroup too
    context_class = _BilingualContext

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return _bilingual(super().get_help_option(ctx))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's first paragraph whole, wrapped: click cuts it to the width left on one
        line, which kept the Spanish half and dropped the English one."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def proof_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that tie trusted bundles to a city's ledger (``--bundle-proof``,
    ``--log-key``, ``--witness-key``): the same words for the counter (``verify``) and the
    resident (``wallet trust``), who trust bundles the same way (``read_trust_files``)."""
    for option in reversed((
            click.option("--bundle-proof", "proofs", multiple=True,
                         type=click.Path(exists=True, dir_okay=False),
                         help="Prueba de publicación de cada paquete (de «ledger prove-bundle») "
                              "/ Each bundle's proof of publication."),
            click.option("--log-key", "log_keys", multiple=True,
                         help="Llave verificadora del registro de una ciudad: solo confía en "
                              "paquetes probados en él (repetible) / A city ledger's verifier "
                              "key: trust only bundles proven on it (repeatable)."),
            click.option("--witness-key", "witness_keys", multiple=True,
                         help="Llave de un testigo: alguno debe cosignar el checkpoint de la "
                              "prueba / A witness's verifier key: the proof's checkpoint must "
                              "be cosigned by one."))):
        command = option(command)
    return command


class _LazyGroup(BilingualGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pasaporte",
                      help="Muestra la versión y sale / Show the version and exit.")
def cli() -> None:
    """Pasaporte urbano binacional / Binational urban digital passport."""


def _terminated(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


# Cleaned up like Ctrl-C: SIGTERM (a service manager, kill) and SIGHUP (the clerk closed the
# terminal window, or the remote session dropped). Left to kill the process, SIGHUP left the
# signed text of passports never recorded in staged files: valid at counters, unknown to the
# office, impossible to revoke.
_CANCELLING = (signal.SIGTERM, signal.SIGHUP)


class OutputUnwritten(OSError):
    """Standard output could not take what the command printed (``_ForgivingStdout``)."""


class _ForgivingStdout(io.TextIOWrapper):
    """Standard output that outlives its reader (``| head -1``, a probe keeping one line, a
    script that stops reading): what is written after goes nowhere, and the command ends as it
    would have. Otherwise click turned the broken pipe into a silent exit 1, so a critical
    ``ledger status`` read as a warning and an issued passport as refused. Standard error is
    one too (``fd`` 2): a log reader that died stopped a counter's session at its next notice
    (a new bundle arriving), the scans after it never answered."""

    gone = False  # the reader went: a session with no one to answer ends (``verify --scan``)
    fd = 1

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            self._to_the_void()
            return len(text)
        except OSError as exc:
            raise self._unwritten(exc) from exc

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            self._to_the_void()
            with contextlib.suppress(BrokenPipeError):
                super().flush()
        except OSError as exc:
            raise self._unwritten(exc) from exc

    def _unwritten(self, exc: OSError) -> OSError:
        # Standard output that cannot take it (a full disk, a file size limit) is said as
        # such: as any file's error, "(disk): nothing was left half-written" read as nothing
        # done, and a resident's stored import was run again.
        return OutputUnwritten(exc.errno, exc.strerror) if self.fd == 1 else exc

    def _to_the_void(self) -> None:
        self.gone = True
        _to_devnull(self.fd)


def _to_devnull(fd: int) -> None:
    """What is written to ``fd`` from now on goes nowhere (its reader gone, its disk full)."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)


class _ForgivingStderr(_ForgivingStdout):
    fd = 2


def reader_gone() -> bool:
    """Whether the program reading standard output has gone (``_ForgivingStdout``)."""
    return bool(getattr(sys.stdout, "gone", False))


# What a terminal whose character set lacks them (a Latin-1 or cp1252 one: PuTTY's default, an
# old PC's ``LANG``) shows for the program's own marks and punctuation. All ASCII, none of them
# a ``"`` or a ``\\``: written inside a JSON string they leave it valid.
ASCII_FALLBACK = {
    "✔": "OK", "✓": "OK", "✘": "X", "✗": "X", "—": "-", "–": "-", "→": "->", "←": "<-",
    "…": "...", "«": "<<", "»": ">>", "“": "'", "”": "'", "‘": "'", "’": "'", "•": "*",
    "\u00a0": " ",
}

# The error handlers of standard output and error (``_standard_streams``). With the default
# ("strict") a character the terminal's encoding lacks (a ✔ on a Latin-1 terminal, an Ł in a
# name) ended the command as an unexpected error, exit 1, after its work was done: an accepted
# passport read as refused, a scan session died at its first result. Instead the program's own
# marks become ``ASCII_FALLBACK`` and anything else its JSON escape (``\u0141``): exact for a
# reader, and valid inside a JSON string. The second handler also writes back, as its byte, a
# file name's byte that was not text (as "surrogateescape", Python's choice on a C locale).
FALLBACK = "pasaporte.fallback"
FALLBACK_KEEPING_BYTES = "pasaporte.fallback_keeping_bytes"


def _shown(text: str) -> str:
    return "".join(ASCII_FALLBACK.get(c) or json.dumps(c)[1:-1] for c in text)


def _fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return _shown(exc.object[exc.start:exc.end]), exc.end


def _fallback_keeping_bytes(exc: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for c in exc.object[exc.start:exc.end]:
        out += (bytes([ord(c) - 0xDC00]) if "\udc80" <= c <= "\udcff"
                else _shown(c).encode("ascii"))
    return bytes(out), exc.end


codecs.register_error(FALLBACK, _fallback)
codecs.register_error(FALLBACK_KEEPING_BYTES, _fallback_keeping_bytes)


def _forgiving(errors: str | None) -> str | None:
    """The error handler that replaces ``errors`` on a standard stream: the ones that raise, or
    escape the program's marks unreadably, give way to ``FALLBACK``; one a user chose
    (``PYTHONIOENCODING=latin-1:replace``) stays."""
    if errors == "surrogateescape":
        return FALLBACK_KEEPING_BYTES
    if errors in (None, "strict", "backslashreplace"):
        return FALLBACK
    return errors


def can_show(text: str, *, err: bool = False) -> bool:
    """Whether standard output (or error) can write ``text`` as it is, in its encoding: where
    not, a command gives its own ASCII form (the counter's marks, JSON with ``\\u`` escapes)
    or refuses (a QR code drawn with block characters)."""
    stream = sys.stderr if err else sys.stdout
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except UnicodeEncodeError:
        return False
    except LookupError:  # an encoding Python does not know: let the stream say
        return True
    return True


def json_text(doc: object, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """``doc`` as JSON for standard output: accented text as it is on a UTF-8 one, and in ASCII,
    every name still exact (``\\u`` escapes), on any other (a Latin-1 terminal, a cp1252 pipe):
    a program reading it as UTF-8, as JSON is read, gets the same text either way."""
    text = json.dumps(doc, ensure_ascii=False, indent=indent, sort_keys=sort_keys)
    try:
        utf8 = codecs.lookup(getattr(sys.stdout, "encoding", None) or "utf-8").name == "utf-8"
    except LookupError:
        utf8 = False
    if utf8 and can_show(text):  # a file name's byte that is no text: escaped as well
        return text
    return json.dumps(doc, ensure_ascii=True, indent=indent, sort_keys=sort_keys)


# ASCII under a name of its own. click takes a stream whose encoding is "ascii" (a C locale
# without UTF-8 mode, PYTHONIOENCODING=ascii) for a misconfigured one and writes around it, UTF-8
# straight to the descriptor: past ``_ForgivingStdout`` (a reader gone was a silent exit 1 again,
# an accepted passport read as refused) and past ``FALLBACK`` (raw UTF-8 to a terminal judged
# unable to show it). The same codec by another name, click writes through the streams as set.
_ASCII_ALIAS = "pasaporte-ascii"


def _ascii_alias(name: str) -> codecs.CodecInfo | None:
    if name.replace("-", "_") != _ASCII_ALIAS.replace("-", "_"):
        return None
    ascii_ = codecs.lookup("ascii")
    return codecs.CodecInfo(ascii_.encode, ascii_.decode, name=_ASCII_ALIAS,
                            incrementalencoder=ascii_.incrementalencoder,
                            incrementaldecoder=ascii_.incrementaldecoder,
                            streamreader=ascii_.streamreader, streamwriter=ascii_.streamwriter)


codecs.register(_ascii_alias)


def _not_ascii_by_name(encoding: str) -> str:
    return _ASCII_ALIAS if codecs.lookup(encoding).name == "ascii" else encoding


def _standard_streams() -> None:
    """Standard input, output and error as every command expects them. A stream the caller
    closed (``<&-``, ``>&-``, a daemon launcher) is the null device, as ``< /dev/null`` gives
    (it was "unexpected error, report it"; and a file the command opened could have taken its
    descriptor); output forgives its reader going away (``_ForgivingStdout``); and neither
    output nor error fails on a character the terminal's encoding lacks (``FALLBACK``)."""
    for fd, name, flags in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY),
                            (2, "stderr", os.O_WRONLY)):
        if getattr(sys, name) is None:
            try:
                os.fstat(fd)
            except OSError:  # closed: the null device takes the descriptor back
                null = os.open(os.devnull, flags)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False,  # noqa: SIM115
                                    errors=None if fd == 0 else FALLBACK))
    out = sys.stdout
    if out is sys.__stdout__ and type(out) is io.TextIOWrapper:
        sys.stdout = _ForgivingStdout(out.buffer, encoding=_not_ascii_by_name(out.encoding),
                                      errors=_forgiving(out.errors),
                                      line_buffering=out.line_buffering)
    err = sys.stderr
    if err is sys.__stderr__ and type(err) is io.TextIOWrapper:
        sys.stderr = _ForgivingStderr(err.buffer, encoding=_not_ascii_by_name(err.encoding),
                                      errors=_forgiving(err.errors), line_buffering=True,
                                      write_through=err.write_through)
    # Typed bytes that are not UTF-8 (a terminal set to Latin-1 in a UTF-8 session) reach
    # whoever reads them as surrogate escapes, as Python gives them on a C locale, to be named
    # there (``text_not_utf8``, ``passphrase_not_utf8``): with the strict decoding of every
    # other UTF-8 locale they were an unexpected error, and a whole typed-in form lost.
    inp = sys.stdin
    if inp is sys.__stdin__ and type(inp) is io.TextIOWrapper and inp.errors == "strict":
        inp.reconfigure(errors="surrogateescape")


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    # What the command printed last is still in the buffer: written now, while an error can
    # still be said and counted. Left to the interpreter's exit, a file that cannot take it
    # (a full disk, a file size limit) gave a bare traceback and exit 120, not the command's.
    try:
        sys.stdout.flush()
    except OSError as exc:
        if code == 0:
            code = _unwritten(exc)
        else:  # the command's own failure was said: the rest of its output goes nowhere
            with contextlib.suppress(OSError, ValueError):
                _to_devnull(sys.stdout.fileno())
    if argv is None and threading.current_thread() is threading.main_thread():
        # Run as the program: done and said. A Ctrl-C in the interpreter's last tenth of a
        # second (its shutdown) exited 130 with no word after the success line, and a script
        # retrying on 130 redid a restore that had worked. (In-process callers keep theirs.)
        for signum in (signal.SIGINT, *_CANCELLING):
            signal.signal(signum, signal.SIG_IGN)
    return code


def _unwritten(exc: OSError) -> int:
    """Say once that standard output could not take the command's output (exit 1)."""
    with contextlib.suppress(OSError, ValueError):  # the rest of it: nowhere
        _to_devnull(sys.stdout.fileno())
    with contextlib.suppress(OSError):
        click.echo(StoreError("output_unwritten", reason=exc.strerror or type(exc).__name__)
                   .diagnostics(), err=True)
    return 1


# click 8.2 and later raise it for a group given no command (earlier ones print the help)
_NO_COMMAND: type[click.ClickException] = getattr(
    click.exceptions, "NoArgsIsHelpError", type("_NoSuchError", (click.ClickException,), {}))


def _main(argv: list[str] | None) -> int:
    if threading.current_thread() is threading.main_thread():
        from pasaporte import _cancelled_while_starting

        if signal.getsignal(signal.SIGINT) is _cancelled_while_starting:  # loaded: as usual
            signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in _CANCELLING:
            if signal.getsignal(signum) is signal.SIG_DFL:  # nohup's SIG_IGN stays
                signal.signal(signum, _terminated)
    _standard_streams()
    try:
        # Without standalone mode click returns a command's ctx.exit() code instead of exiting.
        rv = cli.main(args=argv, prog_name="pasaporte", standalone_mode=False)
    except click.exceptions.Abort:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone (EIO)
            click.echo(PasaporteError("cancelled").diagnostics(), err=True)
        # 128 + SIGINT, as a shell reports it: not 1, which a script reads as "refused"
        return CANCELLED
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except _NO_COMMAND as exc:
        # a bare group (``pasaporte``, ``pasaporte wallet``): its help once, as click shows it;
        # as a usage error's reason, that page stood in both halves of the message
        click.echo(exc.format_message(), err=True)
        return 2
    except click.ClickException as exc:  # click's own usage errors (a missing option, …)
        ctx = getattr(exc, "ctx", None)  # UsageError and BadParameter know their command
        if ctx is not None:
            click.echo(ctx.get_usage(), err=True)
        # escaped: click quotes what was typed ("no such file 'X\x1b]0;…'"), and text pasted
        # from a message can hold a terminal's control sequences (imported here: not at
        # every start-up)
        from credential.text import escaped

        click.echo(UsageError("usage_error", reason=escaped(exc.format_message())
                              ).diagnostics(), err=True)
        return 2
    except UsageError as exc:
        click.echo(exc.diagnostics(), err=True)
        return 2
    except PasaporteError as exc:
        click.echo(exc.diagnostics(), err=True)
        return 1
    except OutputUnwritten as exc:
        return _unwritten(exc)
    except OSError as exc:  # a full disk, a read-only folder, a file that vanished
        error = StoreError("file_error", path=exc.filename or "(disco / disk)",
                           reason=exc.strerror or type(exc).__name__)
        with contextlib.suppress(OSError):  # to a terminal gone (EIO): nobody to tell
            click.echo(error.diagnostics(), err=True)
        return 1
    except Exception as exc:  # a failure nothing above names: still no bare traceback
        if os.environ.get("PASAPORTE_DEBUG"):
            raise
        unexpected = PasaporteError("internal_error", kind=type(exc).__name__,
                                    reason=str(exc)[:200])
        click.echo(unexpected.diagnostics(), err=True)
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
