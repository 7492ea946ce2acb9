"""``python -m pasaporte``: the same entry point as the ``pasaporte`` console script."""

import sys

from pasaporte.cli import main

if __name__ == "__main__":  # not when a worker process (issuer bulk's QR drawing) imports it
    sys.exit(main())
