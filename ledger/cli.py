"""The ``pasaporte ledger`` command group."""

from __future__ import annotations

import click


@click.group()
def group() -> None:
    """ledger"""
