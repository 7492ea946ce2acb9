"""``python -m ledger …``: the ledger commands without the rest of pasaporte."""

from __future__ import annotations

import sys

from ledger.cli import main

sys.exit(main())
