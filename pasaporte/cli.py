"""The ``pasaporte`` console script: one entry point whose groups live in their own packages.

Errors from any group are caught here once and printed in Spanish and English with their code,
and so is an operating-system error (a full disk, a folder that cannot be written) and, as a
last resort, any other failure (``PASAPORTE_DEBUG=1`` shows its traceback instead).
Exit codes: 0 success, 1 refused/failed, 2 usage error, 130 cancelled (Ctrl-C, SIGTERM,
SIGHUP).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import sys
import threading

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


class BilingualCommand(click.Command):
    """A command whose ``--help`` option describes itself in Spanish and English too."""

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return _bilingual(super().get_help_option(ctx))


class BilingualGroup(click.Group):
    """A group whose commands and subgroups (and itself) have the bilingual ``--help``."""

    command_class = BilingualCommand
    group_class = type  # a subgroup is a BilingualGroup too

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return _bilingual(super().get_help_option(ctx))


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


class _ForgivingStdout(io.TextIOWrapper):
    """Standard output that outlives its reader (``| head -1``, a probe keeping one line, a
    script that stops reading): what is written after goes nowhere, and the command ends as it
    would have. Otherwise click turned the broken pipe into a silent exit 1, so a critical
    ``ledger status`` read as a warning and an issued passport as refused."""

    gone = False  # the reader went: a session with no one to answer ends (``verify --scan``)

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            self._to_the_void()
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            self._to_the_void()
            with contextlib.suppress(BrokenPipeError):
                super().flush()

    def _to_the_void(self) -> None:
        self.gone = True
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)


def reader_gone() -> bool:
    """Whether the program reading standard output has gone (``_ForgivingStdout``)."""
    return bool(getattr(sys.stdout, "gone", False))


def _standard_streams() -> None:
    """Standard input, output and error as every command expects them. A stream the caller
    closed (``<&-``, ``>&-``, a daemon launcher) is the null device, as ``< /dev/null`` gives
    (it was "unexpected error, report it"; and a file the command opened could have taken its
    descriptor); and output forgives its reader going away (``_ForgivingStdout``)."""
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
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115
    out = sys.stdout
    if out is sys.__stdout__ and type(out) is io.TextIOWrapper:
        sys.stdout = _ForgivingStdout(out.buffer, encoding=out.encoding, errors=out.errors,
                                      line_buffering=out.line_buffering)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
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
    except click.ClickException as exc:  # click's own usage errors (a missing option, …)
        ctx = getattr(exc, "ctx", None)  # UsageError and BadParameter know their command
        if ctx is not None:
            click.echo(ctx.get_usage(), err=True)
        click.echo(UsageError("usage_error", reason=exc.format_message()).diagnostics(),
                   err=True)
        return 2
    except UsageError as exc:
        click.echo(exc.diagnostics(), err=True)
        return 2
    except PasaporteError as exc:
        click.echo(exc.diagnostics(), err=True)
        return 1
    except OSError as exc:  # a full disk, a read-only folder, a file that vanished
        error = StoreError("file_error", path=exc.filename or "(disco / disk)",
                           reason=exc.strerror or type(exc).__name__)
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
