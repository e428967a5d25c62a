"""Hypothesis strategies: realistic signed histories of one subject and their mutations.

Keys are the fixed test keys of :mod:`pith_graph.conformance` (created once at
import; every signature is real). The mutation builders live in
:mod:`pith_graph.conformance` too, because the corpus writer uses them at run time;
here they are only drawn.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from pith_graph.conformance import MUTATIONS, SIGNERS, Outcome, Scenario, StreamSpec, build_scenario

#: Stream kinds a subject's history holds: (event_type, targets it may use).
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("graph_snapshot", ("graph",)),
    ("author_attestation", ("author:1", "author:2")),
    ("citation_signature", ("citation:2601.00002", "citation:hep-th/9801199")),
    ("correction", ("claim:3", "graph")),
    ("mirror_hint", ("mirror", "mirror:eu")),
    ("timestamp_anchor", ("anchor", "graph")),
    ("storage_attestation", ("storage",)),
    ("replication_record", ("replica:1",)),
)

#: JSON scalars as payloads carry them: non-ASCII text, big and small numbers, floats.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=4)


@st.composite
def stream_specs(draw: st.DrawFn, *, min_length: int = 1, max_length: int = 4) -> StreamSpec:
    """One stream: a signer, a kind and target, a chain of payloads, times (ties allowed)."""
    event_type, targets = draw(st.sampled_from(_KINDS))
    length = draw(st.integers(min_length, max_length))
    return StreamSpec(
        signer=draw(st.integers(0, len(SIGNERS) - 1)),
        event_type=event_type,
        target=draw(st.sampled_from(targets)),
        payloads=draw(st.lists(payloads, min_size=length, max_size=length)),
        # A small pool of times makes created_at ties (broken by event_id) common.
        ticks=draw(st.lists(st.integers(1, 8), min_size=length, max_size=length)),
        supersede=draw(st.lists(st.booleans(), min_size=length, max_size=length)),
        time_style=draw(st.integers(0, 2)),
    )


@st.composite
def scenarios(draw: st.DrawFn, *, max_streams: int = 4) -> Scenario:
    """A valid history: record_created + 1..max_streams streams, the first at least 2 long."""
    first = draw(stream_specs(min_length=2))
    rest = draw(st.lists(stream_specs(), max_size=max_streams - 1))
    title = draw(st.text(min_size=1, max_size=16))
    return build_scenario([first, *rest], title=title)


@st.composite
def mutated(draw: st.DrawFn, names: Any = None) -> tuple[Scenario, str, Outcome]:
    """A scenario, the name of a mutation, and the mutation's outcome."""
    scenario = draw(scenarios())
    name = draw(st.sampled_from(sorted(names or MUTATIONS)))
    pick = draw(st.integers(0, 1000))
    return scenario, name, MUTATIONS[name](scenario, pick)


def _render(node: Any, spaced: bool, ascii_only: bool) -> str:
    """JSON text of a node: ("obj", [(key, node)...]) keeps repeated keys, ("arr", [...]) an array."""
    comma, colon = (", ", ": ") if spaced else (",", ":")
    if isinstance(node, tuple) and node[0] == "obj":
        members = (
            json.dumps(key, ensure_ascii=ascii_only) + colon + _render(value, spaced, ascii_only)
            for key, value in node[1]
        )
        return "{" + comma.join(members) + "}"
    if isinstance(node, tuple) and node[0] == "arr":
        return "[" + comma.join(_render(item, spaced, ascii_only) for item in node[1]) + "]"
    return json.dumps(node, ensure_ascii=ascii_only)


# Keys from a small alphabet, so objects often repeat one; strings full of the
# characters a structural scan must not take for structure.
_keys = st.sampled_from(["a", "b", "é", "a:b", '"', "\\", "[", "{", ""])
_tricky_scalars = (
    st.none()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.sampled_from(list('ab[]{}:,"\\é\n')), max_size=6)
)
_nodes = st.recursive(
    _tricky_scalars,
    lambda inner: (
        st.tuples(st.just("arr"), st.lists(inner, max_size=3))
        | st.tuples(st.just("obj"), st.lists(st.tuples(_keys, inner), max_size=3))
    ),
    max_leaves=10,
)


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """JSON text, compact or spaced, ASCII-escaped or not, whose objects may repeat a key."""
    return _render(draw(_nodes), draw(st.booleans()), draw(st.booleans())).encode("utf-8")
