"""The state document's own invariants, and the canonical JSON fast path."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pith_graph.canonical import canonical_json, canonical_json_parsed, compact_json_parsed, loads
from property_tests.helpers import rebuild
from property_tests.strategies import mutated


def reference(value: Any) -> bytes:
    """The registry's rule itself (FORMAT-FACTS "Canonical JSON"), with the stdlib."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@given(scenario_and_mutation=mutated())
def test_state_sha256_is_the_hash_of_the_canonical_state(scenario_and_mutation: tuple[Any, ...]) -> None:
    scenario, _, outcome = scenario_and_mutation
    state = rebuild(scenario, outcome.events)
    document = json.loads(state.to_json())
    claimed = document.pop("state_sha256")
    assert claimed == state.state_sha256 == hashlib.sha256(reference(document)).hexdigest()
    # Counts agree with the lists they count.
    assert document["invalid_event_count"] == len(document["invalid_events"])
    assert document["equivocation_count"] == len(document["equivocations"])
    assert document["event_count"] == document["valid_event_count"] + document["invalid_event_count"]


@given(scenario_and_mutation=mutated())
def test_to_json_reparses_to_to_dict(scenario_and_mutation: tuple[Any, ...]) -> None:
    scenario, _, outcome = scenario_and_mutation
    state = rebuild(scenario, outcome.events)
    assert json.loads(state.to_json()) == state.to_dict()
    assert list(state.to_dict()) == [
        "state_type",
        "state_version",
        "pith_number",
        "merge_version",
        "event_count",
        "valid_event_count",
        "invalid_event_count",
        "equivocation_count",
        "current",
        "equivocations",
        "invalid_events",
        "applied_event_ids",
        "state_sha256",
    ]


# JSON text without lone surrogates (canonical JSON is UTF-8; loads rejects them).
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=25,
)


@given(value=_json)
def test_fast_canonical_encoder_equals_the_reference_rule(value: Any) -> None:
    parsed = loads(json.dumps(value))
    assert canonical_json_parsed(parsed) == canonical_json(value) == reference(value)
    # And the registry's serialisation (key order kept), which verification compares states by.
    assert compact_json_parsed(parsed) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


@given(value=st.floats(allow_nan=False, allow_infinity=False) | st.integers())
def test_numbers_print_as_python_prints_them(value: float) -> None:
    assert canonical_json_parsed(loads(json.dumps([value]))) == reference([value])
