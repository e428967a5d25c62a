"""Shared helpers of the property suite: rebuild through the real entry point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pith_graph.conformance import Scenario, stream_of
from pith_graph.rebuild import rebuild_state
from pith_graph.state import State


def rebuild(scenario: Scenario, events: Sequence[Any]) -> State:
    """The state of a bundle listing ``events`` (as given), trusting the scenario's keys."""
    return rebuild_state(scenario.bundle(list(events)), trusted_keys=scenario.trusted())


def streams_by_id(events: Sequence[Any]) -> dict[str, tuple[str, str]]:
    """Stream of every well-formed signed event, by event_id."""
    found: dict[str, tuple[str, str]] = {}
    for event in events:
        try:
            found[event["event_id"]] = stream_of(event)
        except (KeyError, TypeError):
            continue
    return found


def applied_outside(
    state: State, streams: dict[str, tuple[str, str]], excluded: frozenset[tuple[str, str]]
) -> list[str]:
    """The applied ids, in apply order, of every stream not in ``excluded``."""
    return [uid for uid in state.applied_event_ids if streams.get(uid) not in excluded]
