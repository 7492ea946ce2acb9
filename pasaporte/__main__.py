import sys

from pasaporte.cli import main

sys.exit(main())
