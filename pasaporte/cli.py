"""The ``pasaporte`` console script: one entry point whose groups live in their own packages.

Errors from any group are caught here once and printed in Spanish and English with their code.
Exit codes: 0 success, 1 refused/failed, 2 usage error.
"""

from __future__ import annotations

import sys

import click

from credential.errors import PasaporteError, UsageError
from issuer.cli import group as issuer_group
from ledger.cli import group as ledger_group
from verifier.cli import command as verify_command
from wallet_cli.cli import group as wallet_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pasaporte")
def cli() -> None:
    """Pasaporte urbano binacional / Binational urban digital passport."""


cli.add_command(issuer_group, "issuer")
cli.add_command(wallet_group, "wallet")
cli.add_command(verify_command, "verify")
cli.add_command(ledger_group, "ledger")


def main(argv: list[str] | None = None) -> int:
    try:
        # Without standalone mode click returns a command's ctx.exit() code instead of exiting.
        rv = cli.main(args=argv, prog_name="pasaporte", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Cancelado / Cancelled", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    except UsageError as exc:
        click.echo(exc.diagnostics(), err=True)
        return 2
    except PasaporteError as exc:
        click.echo(exc.diagnostics(), err=True)
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
