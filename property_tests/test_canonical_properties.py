"""``loads`` against the standard library on JSON text that may repeat keys or nest deeply.

:func:`pith_graph.canonical.loads` decides duplicate keys and depth with a cheap
sufficient test for compact text and a structural scan otherwise; both must give
exactly what a plain reading of the text gives, whichever path a text takes.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pith_graph import codes
from pith_graph.canonical import canonical_json, canonical_lines, loads
from pith_graph.errors import InputError
from property_tests.strategies import json_texts, json_values


def _pairs(pairs: list[tuple[str, Any]]) -> tuple[str, list[tuple[str, Any]]]:
    return ("obj", pairs)


def _depth(node: Any) -> int:
    if isinstance(node, tuple):  # an object, as its list of pairs
        return 1 + max((_depth(value) for _, value in node[1]), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(item) for item in node), default=0)
    return 0


def _repeats(node: Any) -> bool:
    if isinstance(node, tuple):
        keys = [key for key, _ in node[1]]
        return len(set(keys)) != len(keys) or any(_repeats(value) for _, value in node[1])
    if isinstance(node, list):
        return any(_repeats(item) for item in node)
    return False


def _expected(text: bytes, max_depth: int) -> str | None:
    """The error code a strict reading gives (depth is checked first), or None."""
    tree = json.loads(text, object_pairs_hook=_pairs)
    if _depth(tree) > max_depth:
        return codes.E_TOO_DEEP
    return codes.E_DUPLICATE_KEY if _repeats(tree) else None


@given(text=json_texts(), max_depth=st.integers(min_value=1, max_value=8))
def test_loads_rejects_exactly_repeated_keys_and_excess_depth(text: bytes, max_depth: int) -> None:
    expected = _expected(text, max_depth)
    try:
        value = loads(text, max_depth=max_depth)
    except InputError as exc:
        assert exc.code == expected, text
    else:
        assert expected is None, text
        assert value == json.loads(text)


@given(values=st.lists(json_values, max_size=6))
def test_canonical_lines_are_each_trees_canonical_json(values: list[Any]) -> None:
    """One encoding call for several trees, split at newlines: exactly each tree's encoding
    (strings holding a newline included; a float sends them all to the reference rule)."""
    trees = [loads(json.dumps(value, ensure_ascii=False)) for value in values]
    assert canonical_lines(trees) == [canonical_json(tree) for tree in trees]
