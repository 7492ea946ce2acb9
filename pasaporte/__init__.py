"""The ``pasaporte`` console script (``pasaporte.cli``) and the demo of ``make run``."""

from __future__ import annotations

import os
import signal
import sys
import threading


def _cancelled_while_starting(_signum: int, _frame: object) -> None:
    """Ctrl-C while the program is still loading (its first tenth of a second or so, before
    ``pasaporte.cli`` handles interrupts): nothing has been done yet, and it is said as every
    cancel is, not as the traceback of an import cut short."""
    try:
        from credential.errors import PasaporteError

        line = PasaporteError("cancelled").diagnostics()
    except BaseException:  # (loading that very module may be what was interrupted)
        line = "[cancelled] Cancelado / Cancelled"
    os.write(2, (line + "\n").encode("utf-8", "replace"))
    os._exit(130)  # 128 + SIGINT, as a shell reports it


# Only as the installed program: a test runner or a program importing the package keeps its own.
if (sys.argv and os.path.basename(sys.argv[0]) == "pasaporte"
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
    signal.signal(signal.SIGINT, _cancelled_while_starting)
