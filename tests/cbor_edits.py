"""Structure-aware fuzzing of CBOR documents: every node of a decoded document (down into byte
strings that hold CBOR in their turn, as COSE payloads and disclosures do) can be named by a path,
replaced by another CBOR value or removed. Byte flips mostly break the CBOR itself; edits like
these reach every shape check behind it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cbor2
from hypothesis import strategies as st

__all__ = ["cbor_values", "draw_edit", "edit", "node_paths"]

Path = tuple[object, ...]

_leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                    st.binary(max_size=70), st.text(max_size=20),
                    st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 18, 24, 258]),
                              st.integers(-5, 5)))
cbor_values = st.recursive(_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5),
    st.dictionaries(st.one_of(st.integers(-30, 30), st.text(max_size=4)), inner, max_size=5)),
    max_leaves=12)


def node_paths(obj: object, prefix: Path = ()) -> Iterator[Path]:
    """Every node's path: list indices and map keys, ``"tag"`` into a tag's content, ``"cbor"``
    into a byte string that decodes as CBOR."""
    yield prefix
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from node_paths(v, (*prefix, i))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from node_paths(v, (*prefix, k))
    elif isinstance(obj, cbor2.CBORTag):
        yield from node_paths(obj.value, (*prefix, "tag"))
    elif isinstance(obj, bytes) and obj:
        try:
            inner = cbor2.loads(obj)
        except (cbor2.CBORDecodeError, ValueError):
            return
        yield from node_paths(inner, (*prefix, "cbor"))


def edit(obj: Any, path: Path, new: object, remove: bool) -> Any:
    """``obj`` with the node at ``path`` replaced by ``new`` (or removed from its container)."""
    head, rest = path[0], path[1:]
    if head == "tag":
        return cbor2.CBORTag(obj.tag, edit(obj.value, rest, new, remove) if rest else new)
    if head == "cbor":
        return cbor2.dumps(edit(cbor2.loads(obj), rest, new, remove) if rest else new)
    copy: Any = list(obj) if isinstance(obj, list) else dict(obj)
    if rest:
        copy[head] = edit(copy[head], rest, new, remove)
    elif remove:
        del copy[head]
    else:
        copy[head] = new
    return copy


def draw_edit(data: st.DataObject, obj: Any) -> tuple[Path, Any]:
    """One random edit of ``obj``: the path of a node (not the root) and ``obj`` with that node
    replaced by another CBOR value or removed from its container."""
    path = data.draw(st.sampled_from(list(node_paths(obj))[1:]))
    remove = path[-1] not in ("tag", "cbor") and data.draw(st.booleans())
    return path, edit(obj, path, None if remove else data.draw(cbor_values), remove)
