"""``credential.jsontext``: the one JSON reader, whose every refusal is a ``ValueError``."""

from __future__ import annotations

import pytest

from credential import jsontext


def test_a_key_given_twice_is_refused_at_any_depth() -> None:
    assert jsontext.loads('{"a": 1, "b": {"a": 2}}') == {"a": 1, "b": {"a": 2}}
    for doc in ('{"a": 1, "a": 2}', '[{"x": {"k": 1, "k": 1}}]'):
        with pytest.raises(jsontext.DuplicateKey) as err:
            jsontext.loads(doc)
        assert isinstance(err.value, ValueError) and err.value.key in {"a", "k"}


def test_nesting_too_deep_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsontext.loads("[" * 100_000 + "]" * 100_000)
