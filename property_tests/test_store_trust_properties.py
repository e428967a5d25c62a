"""Issue 15, fuzzed on real stores: whatever copies arrive, in any order, a store keeps at most one
valid copy per unit, a sync stores nothing that fails stage 1, and `store check` finds nothing."""

from __future__ import annotations

import base64
import copy
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

REGISTRY = TestKey("trust-props-registry", signer_id="pith.science")
ALICE = TestKey("trust-props-alice", signer_id="alice.example")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _history() -> tuple[History, list[dict[str, Any]], list[dict[str, Any]]]:
    history = History.new(REGISTRY)
    first = history.event("graph_snapshot", key=ALICE, payload={"graph_snapshot": {"v": 1}})
    second = history.event(
        "graph_snapshot", key=ALICE, payload={"graph_snapshot": {"v": 2}}, prev_event=first["event_id"]
    )
    hint = history.event("mirror_hint", payload={"url": "https://m.example"})
    trusted = [REGISTRY.entry(signer_id="pith.science"), ALICE.entry(signer_id="alice.example")]
    return history, [history.record_created, first, second, hint], trusted


HISTORY, EVENTS, TRUSTED = _history()


def variant(event: dict[str, Any], kind: int, n: int) -> dict[str, Any]:
    """A copy of ``event``: 0 itself, 1 another signed_at (valid), 2 an extra signature member,
    3 the signature re-spelt in base64, 4 the payload tampered with."""
    copied = copy.deepcopy(event)
    signature = copied["signature"]
    if kind == 1:
        signature["signed_at"] = f"2026-07-01T00:00:{n % 60:02d}Z"
    elif kind == 2:
        signature["pad"] = "x" * (n + 1)
    elif kind == 3:
        text = signature["signature_b64"]
        signature["signature_b64"] = (
            text[:-3] + _ALPHABET[_ALPHABET.index(text[-3]) | (1 + n % 15)] + text[-2:]
        )
    elif kind == 4:
        copied["payload"] = {"tampered": n}
    return copied


operations = st.lists(
    st.tuples(st.integers(0, len(EVENTS) - 1), st.integers(0, 4), st.integers(0, 59)), min_size=1, max_size=10
)


@settings(max_examples=min(settings().max_examples, 25))
@given(ops=operations)
def test_copies_never_grow_a_store_past_one_valid_copy_per_unit(ops: list[tuple[int, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        local, peer = Path(directory) / "local.sqlite", Path(directory) / "peer.sqlite"
        with EventStore(local) as a, EventStore(peer) as b:
            for index, kind, n in ops:
                a.append(variant(EVENTS[index], kind, n), trusted_keys=TRUSTED)
            b.sync_from(a, trusted_keys=TRUSTED)
            b.sync_from(a, trusted_keys=TRUSTED)  # again: nothing new
            for store, synced in ((a, False), (b, True)):
                if not store.subjects():
                    continue
                copies = store.events(HISTORY.subject, trusted_keys=TRUSTED)
                valid = Counter(c.unit_id for c in copies if c.copy_reason is None)
                assert all(count == 1 for count in valid.values())
                if synced:
                    assert all(c.copy_reason is None for c in copies)  # nothing failing stage 1 crossed
                assert store.fsck().ok
            if b.subjects():
                state_a = a.state(HISTORY.subject, trusted_keys=TRUSTED)
                state_b = b.state(HISTORY.subject, trusted_keys=TRUSTED)
                assert state_a.applied_event_ids == state_b.applied_event_ids
                assert state_a.equivocations == state_b.equivocations


def test_the_variants_are_what_they_claim() -> None:
    event = EVENTS[1]
    assert base64.b64decode(variant(event, 3, 0)["signature"]["signature_b64"]) == base64.b64decode(
        event["signature"]["signature_b64"]
    )
    with EventStore(":memory:") as store:
        reasons = [store.append(variant(event, kind, 0), trusted_keys=TRUSTED).reason for kind in range(5)]
    assert reasons == [None, None, "malformed", "bad_signature", "content_hash_mismatch"]
