"""``python -m ledger …``: the same as ``pasaporte ledger …`` (one error handler for both)."""

from __future__ import annotations

import sys

from pasaporte.cli import main

sys.exit(main(["ledger", *sys.argv[1:]]))
