"""merge-v1 properties (docs/merge-v1.md section 12) over realistic signed histories."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pith_graph.conformance import SIGNERS, Scenario, timestamp
from pith_graph.testing import make_event
from property_tests.helpers import applied_outside, rebuild, streams_by_id
from property_tests.strategies import mutated, scenarios


@given(data=st.data(), scenario_and_mutation=mutated())
def test_order_and_duplicates_never_change_the_state(
    data: st.DataObject, scenario_and_mutation: tuple[Any, ...]
) -> None:
    scenario, _, outcome = scenario_and_mutation
    events = outcome.events
    copies = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    reordered = data.draw(st.permutations([*events, *(copy.deepcopy(e) for e in copies)]))
    first, second = rebuild(scenario, events), rebuild(scenario, reordered)
    assert second.state_sha256 == first.state_sha256
    assert second.to_json() == first.to_json()


@given(data=st.data(), scenario_and_mutation=mutated())
def test_union_is_commutative_associative_idempotent(
    data: st.DataObject, scenario_and_mutation: tuple[Any, ...]
) -> None:
    scenario, _, outcome = scenario_and_mutation
    pool = outcome.events
    a, b, c = (data.draw(st.lists(st.sampled_from(pool), max_size=len(pool))) for _ in range(3))

    def sha(*parts: list[Any]) -> str:
        return rebuild(scenario, [e for part in parts for e in part]).state_sha256

    assert sha(a, b) == sha(b, a)
    assert sha(a + b, c) == sha(a, b + c)
    assert sha(a, a) == sha(a)


@given(data=st.data(), scenario_and_mutation=mutated())
def test_a_valid_non_forking_event_never_unapplies_another_stream(
    data: st.DataObject, scenario_and_mutation: tuple[Any, ...]
) -> None:
    scenario, _, outcome = scenario_and_mutation
    before = rebuild(scenario, outcome.events)
    key = data.draw(st.sampled_from(SIGNERS))
    # A fresh stream of that signer (no predecessor): it cannot fork another stream.
    added = make_event(
        key,
        subject=scenario.subject,
        event_type="mirror_hint",
        target="monotone",
        payload={"url": data.draw(st.text(max_size=8))},
        created_at=timestamp(data.draw(st.integers(0, 9))),
    )
    after = rebuild(scenario, [*outcome.events, added])
    assert set(before.applied_event_ids) <= set(after.applied_event_ids)
    assert added["event_id"] in after.applied_event_ids


@given(scenario_and_mutation=mutated())
def test_each_mutation_yields_exactly_its_reason_or_equivocation(
    scenario_and_mutation: tuple[Any, ...],
) -> None:
    scenario, name, outcome = scenario_and_mutation
    baseline = rebuild(scenario, scenario.events)
    assert baseline.invalid_events == [] and baseline.equivocations == []
    state = rebuild(scenario, outcome.events)
    assert {e["event_id"]: e["reason"] for e in state.invalid_events} == outcome.reasons, name
    assert state.equivocations == outcome.equivocations, name
    # Every stream the mutation did not touch keeps its applied events, in order.
    streams = streams_by_id(scenario.events)
    assert applied_outside(state, streams, outcome.touched) == applied_outside(
        baseline, streams, outcome.touched
    ), name


@given(scenario=scenarios())
def test_a_valid_history_applies_every_event_once(scenario: Scenario) -> None:
    state = rebuild(scenario, scenario.events)
    assert sorted(state.applied_event_ids) == sorted(e["event_id"] for e in scenario.events)
    assert state.applied_event_ids[0] == scenario.record_created["event_id"]
    assert state.event_count == state.valid_event_count == len(scenario.events)
