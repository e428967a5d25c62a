"""Trust binding: a key may not write into another signer's stream, nor re-issue the record."""

from __future__ import annotations

import copy

from pith_graph import codes
from pith_graph.keys import REGISTRY_KEY_ID, REGISTRY_SIGNER_ID, KeyRing, TrustedKey
from pith_graph.rebuild import rebuild_state
from pith_graph.testing import History, TestKey, make_event, record_created_payload

REGISTRY = TestKey("bind-registry", signer_id="pith.science")
MALLORY = TestKey("bind-mallory")


def bound(key: TestKey) -> dict[str, object]:
    return key.entry(signer_id=key.signer_id)


def impostor_fork() -> tuple[History, list[dict[str, object]]]:
    """Mallory signs as the registry's signer_id, forking its graph stream."""
    history = History.new(REGISTRY)
    genuine = history.event("graph_snapshot", payload={"graph_snapshot": {"v": 1}})
    forged = make_event(
        MALLORY,
        subject=history.subject,
        event_type="graph_snapshot",
        payload={"graph_snapshot": {"v": "forged"}},
        created_at=history.tick(),
        extra={"signer": {**MALLORY.signer(), "signer_id": REGISTRY.signer_id}},
    )
    return history, [genuine, forged]


def test_unbound_keys_can_impersonate_a_signer_id() -> None:
    # Documented residual risk: trusting unbound keys side by side lets one write as another.
    history, events = impostor_fork()
    state = rebuild_state(history.bundle(events), trusted_keys=[REGISTRY.entry(), MALLORY.entry()])
    assert state.equivocation_count == 1


def test_bound_key_cannot_sign_as_another_signer() -> None:
    history, events = impostor_fork()
    state = rebuild_state(history.bundle(events), trusted_keys=[bound(REGISTRY), bound(MALLORY)])
    assert state.equivocation_count == 0
    assert state.invalid_events == [{"event_id": events[1]["event_id"], "reason": codes.REASON_KEY_MISMATCH}]
    assert events[0]["event_id"] in state.applied_event_ids


def test_default_ring_binds_the_registry_key_to_pith_science() -> None:
    key = KeyRing.registry().get(REGISTRY_KEY_ID)
    assert key is not None and key.signer_id == REGISTRY_SIGNER_ID == "pith.science"
    assert key.signs_as("pith.science") and not key.signs_as("someone.else")


def test_listed_copy_of_a_trusted_key_does_not_loosen_its_binding() -> None:
    pinned = KeyRing([TrustedKey.from_entry(bound(REGISTRY))])
    listed = KeyRing([TrustedKey.from_entry(REGISTRY.entry())])  # same material, no binding
    merged = pinned.union(listed)
    key = merged.get(REGISTRY.key_id)
    assert key is not None and key.signer_id == REGISTRY.signer_id


def test_only_the_receipt_key_may_create_the_record() -> None:
    history = History.new(REGISTRY)
    # Mallory re-issues the registry's record (valid receipt by the registry) under its own signature, later.
    payload = record_created_payload(history.canonical_record, REGISTRY)
    reissued = make_event(
        MALLORY,
        subject=history.subject,
        event_type="record_created",
        payload=copy.deepcopy(payload),
        created_at=history.tick(),
    )
    state = rebuild_state(history.bundle([reissued]), trusted_keys=[bound(REGISTRY), bound(MALLORY)])
    assert state.invalid_events == [{"event_id": reissued["event_id"], "reason": codes.REASON_BAD_RECORD}]
    record_created = state.to_dict()["current"]["record_created"]
    assert record_created["event_id"] == history.record_created["event_id"]


def test_a_second_trusted_key_cannot_create_the_record() -> None:
    """Issue 15 hole 5: a key bound to alice.example signs a record_created with her own receipt."""
    history = History.new(REGISTRY)
    alice = TestKey("bind-alice", signer_id="alice.example")
    created = make_event(
        alice,
        subject=history.subject,
        event_type="record_created",
        payload=record_created_payload(history.canonical_record, alice),
        created_at=history.tick(),
    )
    state = rebuild_state(history.bundle([created]), trusted_keys=[bound(REGISTRY), bound(alice)])
    assert state.invalid_events == [{"event_id": created["event_id"], "reason": codes.REASON_BAD_RECORD}]
    assert state.to_dict()["current"]["record_created"]["event_id"] == history.record_created["event_id"]


def test_a_key_a_bundle_lists_never_creates_the_record_even_bound_to_the_registry() -> None:
    """With trust_bundle_keys, a listed key (even one naming itself pith.science) signs events but
    never a record_created (merge-v1 §6 check 10)."""
    listed = TestKey("bind-listed", signer_id="pith.science")
    history = History.new(listed)
    hint = history.event("mirror_hint", payload={"url": "https://m.example"})
    bundle = history.bundle([hint])
    bundle["public_keys"] = [listed.entry(signer_id="pith.science")]
    state = rebuild_state(bundle, trust_bundle_keys=True)
    assert state.invalid_events == [
        {"event_id": history.record_created["event_id"], "reason": codes.REASON_BAD_RECORD}
    ]
    assert hint["event_id"] in state.applied_event_ids
    key = KeyRing.from_entries(bundle["public_keys"], listed=True).get(listed.key_id)
    assert key is not None and key.signs_as("pith.science") and not key.creates_records
    # The caller listing the same key itself lets it create the record.
    trusted = rebuild_state(bundle, trusted_keys=[listed.entry(signer_id="pith.science")])
    assert trusted.invalid_events == []
