"""The ``pasaporte wallet`` command group."""

from __future__ import annotations

import click


@click.group()
def group() -> None:
    """wallet"""
