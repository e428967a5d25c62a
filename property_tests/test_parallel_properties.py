"""The helpers' path gives the full strict path's state, whatever the history and its defects.

Each example runs ``rebuild_state``'s streaming path with a real helper process
(stage 1 on chunks of two events, from both ends) on a mutated signed history,
shuffled and with duplicate copies, and compares it byte for byte with
``rebuild(..., workers=1)``: one strict parse, everything in this process.
"""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pith_graph.documents import split_bundle
from pith_graph.rebuild import rebuild
from property_tests.strategies import mutated

_rebuild = importlib.import_module("pith_graph.rebuild")  # the package exports a function of that name


@given(data=st.data(), scenario_and_mutation=mutated())
def test_helpers_give_the_serial_state(data: st.DataObject, scenario_and_mutation: tuple[Any, ...]) -> None:
    scenario, _, outcome = scenario_and_mutation
    events = outcome.events
    copies = data.draw(st.lists(st.sampled_from(events), max_size=4))
    shuffled = data.draw(st.permutations([*events, *(copy.deepcopy(e) for e in copies)]))
    text = json.dumps(scenario.bundle(list(shuffled))).encode()
    serial = rebuild(text, trusted_keys=scenario.trusted(), workers=1)[0].state
    assert split_bundle(text) is not None  # so the helpers' path, not the full one, is under test
    helped = _rebuild._rebuild_bytes(
        text, scenario.trusted(), False, 2, min_events=0, min_bytes=0, chunk_size=2
    )
    assert helped.to_json() == serial.to_json()
