"""What the hot path's record classes share: a readable ``repr``.

The values a scan decodes (``cose.Sign1``, ``passport.Decoded`` and its parts) are plain classes
with ``__slots__`` rather than NamedTuples, for speed once compiled (see ``credential.passport``);
this gives them back the one NamedTuple nicety that matters when debugging.
"""

from __future__ import annotations

__all__ = ["record_repr"]


def record_repr(obj: object) -> str:
    """``Name(field=value, ...)`` over the class's ``__slots__``."""
    cls = type(obj)
    fields = ", ".join(f"{name}={getattr(obj, name)!r}" for name in getattr(cls, "__slots__", ()))
    return f"{cls.__name__}({fields})"
