"""The ``pasaporte verify`` command."""

from __future__ import annotations

import click


@click.command()
def command() -> None:
    """Verify a presentation offline."""
