"""A stateful test: events arrive one at a time (appends, duplicates, forks, junk).

After every step the merge of everything received so far (in arrival order,
through :func:`pith_graph.merge.merge`) must equal a rebuild from scratch of a
fresh bundle listing the same events in reverse (:func:`rebuild_state`), and
both must match a tiny independent model of merge-v1: an event is applied iff
neither it nor any predecessor is part of a fork.
"""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pith_graph.canonical import canonical_json, loads
from pith_graph.conformance import SIGNERS, StreamSpec, build_scenario, stream_of, timestamp
from pith_graph.keys import KeyRing
from pith_graph.merge import merge
from pith_graph.rebuild import rebuild_state
from pith_graph.testing import make_event

SCENARIO = build_scenario([StreamSpec(1, "graph_snapshot", "graph", [{"graph_snapshot": {"n": 0}}])])
RING = KeyRing.from_entries(SCENARIO.trusted())
ALIASES = SCENARIO.bundle()["source_aliases"]
TARGETS = ("graph", "claim:1", "mirror")


class ArrivingEvents(RuleBasedStateMachine):
    """Events of one subject arriving one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = [loads(canonical_json(e)) for e in SCENARIO.events]
        # The model: every valid event's (stream, prev_event); the junk units.
        self.valid: dict[str, tuple[tuple[str, str], str | None]] = {
            e["event_id"]: (stream_of(e), e["prev_event"]) for e in SCENARIO.events
        }
        self.junk: set[str] = set()
        self.counter = 0

    def _receive(self, event: dict[str, Any]) -> None:
        self.received.append(loads(canonical_json(event)))

    def _new_event(self, signer: int, target: str, prev: str | None, supersedes: list[str]) -> dict[str, Any]:
        self.counter += 1
        return make_event(
            SIGNERS[signer],
            subject=SCENARIO.subject,
            event_type="correction" if target != "graph" else "graph_snapshot",
            target=target,
            payload={"n": self.counter, "text": "ärger"},
            created_at=timestamp(self.counter % 7),
            prev_event=prev,
            supersedes=supersedes,
        )

    def _tip(self, stream: tuple[str, str]) -> str | None:
        """The last event of a stream's chain (None: the stream is empty)."""
        named = {prev for s, prev in self.valid.values() if s == stream}
        tips = sorted(uid for uid, (s, _) in self.valid.items() if s == stream and uid not in named)
        return tips[0] if tips else None

    # (``target`` is reserved by @rule, hence ``place``.)
    @rule(signer=st.integers(0, len(SIGNERS) - 1), place=st.sampled_from(TARGETS), supersede=st.booleans())
    def append(self, signer: int, place: str, supersede: bool) -> None:
        stream = (place, SIGNERS[signer].signer_id)
        prev = self._tip(stream)
        event = self._new_event(signer, place, prev, [prev] if supersede and prev else [])
        self.valid[event["event_id"]] = (stream, prev)
        self._receive(event)

    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        self.received.append(copy.deepcopy(data.draw(st.sampled_from(self.received))))

    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(sorted(self.valid)))
        (target, signer_id), prev = self.valid[uid]
        signer = next(i for i, k in enumerate(SIGNERS) if k.signer_id == signer_id)
        if target == "record":
            return  # forking record_created is covered by the mutation properties
        event = self._new_event(signer, target, prev, [])
        self.valid[event["event_id"]] = ((target, signer_id), prev)
        self._receive(event)

    @rule(n=st.integers(0, 3))
    def junk_arrives(self, n: int) -> None:
        raw = {"junk": n, "seen": len(self.received)}
        self.junk.add("sha256:" + hashlib.sha256(canonical_json(raw)).hexdigest())
        self._receive(raw)

    @invariant()
    def incremental_equals_rebuild_and_model(self) -> None:
        state = merge(self.received, subject=SCENARIO.subject, aliases=ALIASES, trusted_keys=RING)
        fresh = rebuild_state(SCENARIO.bundle(list(reversed(self.received))), trusted_keys=RING)
        assert state.to_json() == fresh.to_json()

        fork_points = Counter((s, prev) for s, prev in self.valid.values())
        forked = {uid for uid, key in self.valid.items() if fork_points[key] > 1}

        def applicable(uid: str) -> bool:
            while uid is not None:
                if uid in forked:
                    return False
                uid = self.valid[uid][1]  # type: ignore[assignment]
            return True

        assert set(state.applied_event_ids) == {uid for uid in self.valid if applicable(uid)}
        assert {uid for e in state.equivocations for uid in e["event_ids"]} == forked
        assert {e["event_id"]: e["reason"] for e in state.invalid_events} == dict.fromkeys(
            self.junk, "malformed"
        )
        assert state.valid_event_count == len(self.valid)
        position = {uid: i for i, uid in enumerate(state.applied_event_ids)}
        for uid in state.applied_event_ids:
            prev = self.valid[uid][1]
            assert prev is None or position[prev] < position[uid]


TestArrivingEvents = ArrivingEvents.TestCase
