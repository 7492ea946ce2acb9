"""Reading JSON from files, requests and other nodes: one parser whose every failure is a
``ValueError``.

CPython's ``json`` parser recurses once per nesting level, so ``[[[[…]]]]`` a few thousand deep
raises ``RecursionError`` instead of the ``ValueError`` of any other malformed document. Every
reader calls this one function, so each catches only ``ValueError`` (``UnicodeDecodeError`` is
one too).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes) -> Any:
    """``json.loads``; a document nested too deep is a ``ValueError`` like any other bad one."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
