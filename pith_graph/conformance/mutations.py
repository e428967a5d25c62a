"""Mutations: each turns a valid scenario into one failure and states what merge-v1 must report.

What a mutation declares (the reason code of every invalid unit, the
equivocations, the streams that may change) is derived independently of the
merge. The property suite (``property_tests/``) draws mutations with
hypothesis; the corpus uses them with fixed choices.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pith_graph.canonical import canonical_json
from pith_graph.conformance.scenarios import (
    REGISTRY,
    SIGNERS,
    UNTRUSTED,
    Scenario,
    Stream,
    key_for,
    stream_of,
    timestamp,
)
from pith_graph.testing import make_event, record_created_payload, resign

__all__ = [
    "MUTATIONS",
    "Outcome",
    "bad_record",
    "break_signature",
    "change_subject",
    "cross_stream_prev",
    "drop_predecessor",
    "duplicate",
    "foreign_supersedes",
    "fork",
    "fork_record_created",
    "id_of",
    "impersonate",
    "invalid_predecessor",
    "key_mismatch",
    "malformed",
    "shuffle",
    "tamper_id",
    "tamper_payload",
    "target_mismatch",
    "unknown_event_type",
    "unsupported_signature",
    "untrusted_key",
    "without",
]


@dataclass(frozen=True)
class Outcome:
    """A mutated event list and what merge-v1 must report for it.

    ``reasons``: every invalid unit id and its reason (exactly; the scenario has
    none). ``equivocations``: the exact ``equivocations`` list. ``touched``: the
    streams whose applied events may change; every other stream's must not.
    """

    events: list[Any]
    reasons: dict[str, str] = field(default_factory=dict)
    equivocations: list[dict[str, Any]] = field(default_factory=list)
    touched: frozenset[Stream] = frozenset()
    description: str = ""


def _pick(items: Sequence[str], pick: int) -> str:
    return items[pick % len(items)]


def without(scenario: Scenario, *event_ids: str) -> list[dict[str, Any]]:
    return [e for e in scenario.events if e["event_id"] not in event_ids]


def _edited(scenario: Scenario, event_id: str) -> dict[str, Any]:
    return copy.deepcopy(scenario.by_id()[event_id])


def _replace(
    scenario: Scenario,
    event_id: str,
    edit: Callable[[dict[str, Any]], dict[str, Any]],
    reason: str,
    what: str,
) -> Outcome:
    """Replace one tip by an edited copy; the copy's unit gets ``reason``."""
    event = _edited(scenario, event_id)
    changed = edit(event)
    return Outcome(
        [*without(scenario, event_id), changed],
        {changed["event_id"]: reason},
        touched=frozenset({stream_of(scenario.by_id()[event_id])}),
        description=f"{what} ({reason})",
    )


def id_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def tamper_payload(scenario: Scenario, pick: int) -> Outcome:
    """Edit a stream tip's payload without re-sealing: ``content_hash_mismatch``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        event["payload"] = {**event["payload"], "tampered": True}
        return event

    return _replace(
        scenario, _pick(scenario.tips(), pick), edit, "content_hash_mismatch", "payload edited after signing"
    )


def tamper_id(scenario: Scenario, pick: int) -> Outcome:
    """Give a tip another well-formed event_id: ``event_id_mismatch``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        event["event_id"] = id_of("tampered " + event["event_id"])
        return event

    return _replace(scenario, _pick(scenario.tips(), pick), edit, "event_id_mismatch", "event_id replaced")


def untrusted_key(scenario: Scenario, pick: int) -> Outcome:
    """Re-sign a tip with a key nobody trusts: ``unknown_key``."""
    return _replace(
        scenario,
        _pick(scenario.tips(), pick),
        lambda e: resign(e, UNTRUSTED),
        "unknown_key",
        "re-signed by an untrusted key",
    )


def break_signature(scenario: Scenario, pick: int) -> Outcome:
    """Flip one bit of a tip's signature: ``bad_signature``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        raw = bytearray(base64.b64decode(event["signature"]["signature_b64"]))
        raw[40] ^= 1  # in S, which keeps R a valid point: the equation itself fails
        event["signature"]["signature_b64"] = base64.b64encode(bytes(raw)).decode("ascii")
        return event

    return _replace(scenario, _pick(scenario.tips(), pick), edit, "bad_signature", "signature bit flipped")


def _resigned(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(event: dict[str, Any]) -> dict[str, Any]:
        edit(event)
        return resign(event, key_for(event["signer"]["signer_id"]), update_signer=False)

    return apply


def impersonate(scenario: Scenario, pick: int) -> Outcome:
    """Sign a tip with its own key but as another signer_id (keys are bound): ``key_mismatch``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        key = key_for(event["signer"]["signer_id"])
        other = next(k for k in SIGNERS if k is not key)
        event["signer"] = {**event["signer"], "signer_id": other.signer_id}
        return resign(event, key, update_signer=False)

    return _replace(
        scenario, _pick(scenario.tips(), pick), edit, "key_mismatch", "signed as another signer_id"
    )


def change_subject(scenario: Scenario, pick: int) -> Outcome:
    """Re-sign a tip about another subject: ``subject_mismatch``."""
    other = "pith:2026:AAAAAAAAAAAAAAAAAAAAAAAAAA"
    return _replace(
        scenario,
        _pick(scenario.tips(), pick),
        _resigned(lambda e: e.__setitem__("subject_pith_number", other)),
        "subject_mismatch",
        "signed for another subject",
    )


def unknown_event_type(scenario: Scenario, pick: int) -> Outcome:
    """Re-sign a tip with a type merge-v1 does not know: ``unknown_event_type``."""
    return _replace(
        scenario,
        _pick(scenario.tips(), pick),
        _resigned(lambda e: e.__setitem__("event_type", "review_comment")),
        "unknown_event_type",
        "unknown event_type",
    )


def target_mismatch(scenario: Scenario, pick: int) -> Outcome:
    """Re-sign a tip as a graph_snapshot not targeting ``graph``: ``target_mismatch``."""

    def edit(event: dict[str, Any]) -> None:
        event["event_type"] = "graph_snapshot"
        event["target"] = "graph-elsewhere"

    return _replace(
        scenario,
        _pick(scenario.tips(), pick),
        _resigned(edit),
        "target_mismatch",
        "graph_snapshot off target",
    )


def unsupported_signature(scenario: Scenario, pick: int) -> Outcome:
    """Name another algorithm (the signature is not hashed, the id stays): ``unsupported_signature``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        event["signature"]["algorithm"] = "ecdsa-p256"
        return event

    return _replace(
        scenario,
        _pick(scenario.tips(), pick),
        edit,
        "unsupported_signature",
        "signature algorithm not ed25519",
    )


def key_mismatch(scenario: Scenario, pick: int) -> Outcome:
    """State a wrong key fingerprint in the signature: ``key_mismatch``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        event["signature"]["public_key_fingerprint"] = "0" * 32
        return event

    return _replace(scenario, _pick(scenario.tips(), pick), edit, "key_mismatch", "wrong key fingerprint")


def bad_record(scenario: Scenario, pick: int) -> Outcome:
    """Replace the record_created by one whose receipt signature is broken: ``bad_record``."""

    def edit(event: dict[str, Any]) -> None:
        receipt = event["payload"]["receipt"]
        raw = bytearray(base64.b64decode(receipt["signature_b64"]))
        raw[40 + pick % 20] ^= 1
        receipt["signature_b64"] = base64.b64encode(bytes(raw)).decode("ascii")

    return _replace(
        scenario,
        scenario.record_created["event_id"],
        _resigned(edit),
        "bad_record",
        "receipt signature broken",
    )


def drop_predecessor(scenario: Scenario, pick: int) -> Outcome:
    """Remove the predecessor of a tip: the tip is ``missing_prev_event``."""
    tips = [chain[-1] for chain in scenario.chains.values() if len(chain) >= 2]
    tip = _pick(sorted(tips), pick)
    prev = scenario.by_id()[tip]["prev_event"]
    return Outcome(
        without(scenario, prev),
        {tip: "missing_prev_event"},
        touched=frozenset({stream_of(scenario.by_id()[tip])}),
        description="predecessor left out (missing_prev_event)",
    )


def invalid_predecessor(scenario: Scenario, pick: int) -> Outcome:
    """Tamper the predecessor of a tip: it is ``content_hash_mismatch``, the tip ``prev_event_invalid``."""
    tips = sorted(chain[-1] for chain in scenario.chains.values() if len(chain) >= 2)
    tip = _pick(tips, pick)
    prev = scenario.by_id()[tip]["prev_event"]
    edited = _edited(scenario, prev)
    edited["payload"] = {**edited["payload"], "tampered": True}
    events = [edited if e["event_id"] == prev else e for e in scenario.events]
    return Outcome(
        events,
        {prev: "content_hash_mismatch", tip: "prev_event_invalid"},
        touched=frozenset({stream_of(edited)}),
        description="predecessor tampered (prev_event_invalid cascades)",
    )


def cross_stream_prev(scenario: Scenario, pick: int) -> Outcome:
    """A new event whose prev_event is in another stream: ``prev_event_stream_mismatch``."""
    named = scenario.by_id()[_pick([e["event_id"] for e in scenario.events], pick)]
    key = SIGNERS[(pick + 1) % len(SIGNERS)]
    event = make_event(
        key,
        subject=scenario.subject,
        event_type="correction",
        target="cross-stream",
        payload={"correction": "points into another stream"},
        created_at=timestamp(9000),
        prev_event=named["event_id"],
    )
    return Outcome(
        [*scenario.events, event],
        {event["event_id"]: "prev_event_stream_mismatch"},
        description="prev_event in another stream",
    )


def foreign_supersedes(scenario: Scenario, pick: int) -> Outcome:
    """A new event superseding another signer's event: ``bad_supersedes``."""
    named = scenario.by_id()[_pick([e["event_id"] for e in scenario.events], pick)]
    key = next(k for k in SIGNERS[1:] if k.signer_id != named["signer"]["signer_id"])
    event = make_event(
        key,
        subject=scenario.subject,
        event_type="correction",
        target="foreign-supersedes",
        payload={"correction": "supersedes what it may not"},
        created_at=timestamp(9001),
        supersedes=[named["event_id"]],
    )
    return Outcome(
        [*scenario.events, event],
        {event["event_id"]: "bad_supersedes"},
        description="supersedes another signer's event",
    )


def malformed(scenario: Scenario, pick: int) -> Outcome:
    """Add an object that is no event (no event_id): ``malformed`` under the hash of its canonical JSON."""
    raw = {"event_type": "graph_snapshot", "malformed": pick, "text": "not an event, ünïcödé"}
    uid = "sha256:" + hashlib.sha256(canonical_json(raw)).hexdigest()
    return Outcome(
        [*scenario.events, raw], {uid: "malformed"}, description="an object that is not an event (malformed)"
    )


def fork(scenario: Scenario, pick: int) -> Outcome:
    """A second event of a stream naming the same prev_event: an equivocation.

    Both stay valid; neither, nor anything after them in the stream, is applied.
    """
    record = stream_of(scenario.record_created)
    candidates = sorted(i for stream, chain in scenario.chains.items() if stream != record for i in chain)
    original = scenario.by_id()[_pick(candidates, pick)]
    key = key_for(original["signer"]["signer_id"])
    twin = make_event(
        key,
        subject=scenario.subject,
        event_type=original["event_type"],
        target=original["target"],
        payload={**original["payload"], "fork": pick},
        created_at=original["created_at"],
        prev_event=original["prev_event"],
        supersedes=original["supersedes"],
    )
    return _forked(scenario, original, twin, "stream forked")


def fork_record_created(scenario: Scenario, pick: int) -> Outcome:
    """A second valid record_created (same record, another time): the record stream forks."""
    original = scenario.record_created
    twin = make_event(
        REGISTRY,
        subject=scenario.subject,
        event_type="record_created",
        payload=record_created_payload(
            scenario.history.canonical_record, REGISTRY, signed_at=timestamp(pick % 50 + 1)
        ),
        created_at=timestamp(pick % 50 + 1),
        signer_type="pith_registry",
    )
    return _forked(scenario, original, twin, "record_created forked")


def _forked(scenario: Scenario, original: Mapping[str, Any], twin: dict[str, Any], what: str) -> Outcome:
    target, signer_id = stream_of(original)
    equivocation = {
        "event_ids": sorted([original["event_id"], twin["event_id"]]),
        "prev_event": original["prev_event"],
        "signer_id": signer_id,
        "target": target,
    }
    return Outcome(
        [*scenario.events, twin],
        {},
        [equivocation],
        frozenset({(target, signer_id)}),
        what + " (equivocation)",
    )


def duplicate(scenario: Scenario, pick: int) -> Outcome:
    """Add copies of some events: nothing changes."""
    rng = random.Random(pick)
    copies = [copy.deepcopy(e) for e in scenario.events if rng.random() < 0.5] or [
        copy.deepcopy(scenario.events[-1])
    ]
    return Outcome([*scenario.events, *copies], description="duplicate copies (no change)")


def shuffle(scenario: Scenario, pick: int) -> Outcome:
    """List the events in another order: nothing changes."""
    events = list(scenario.events)
    random.Random(pick).shuffle(events)
    return Outcome(events, description="shuffled (no change)")


#: Every mutation by name (name -> function(scenario, pick) -> Outcome).
MUTATIONS: Final[dict[str, Callable[[Scenario, int], Outcome]]] = {
    "tamper_payload": tamper_payload,
    "tamper_id": tamper_id,
    "untrusted_key": untrusted_key,
    "break_signature": break_signature,
    "change_subject": change_subject,
    "unknown_event_type": unknown_event_type,
    "target_mismatch": target_mismatch,
    "unsupported_signature": unsupported_signature,
    "key_mismatch": key_mismatch,
    "impersonate": impersonate,
    "bad_record": bad_record,
    "drop_predecessor": drop_predecessor,
    "invalid_predecessor": invalid_predecessor,
    "cross_stream_prev": cross_stream_prev,
    "foreign_supersedes": foreign_supersedes,
    "malformed": malformed,
    "fork": fork,
    "fork_record_created": fork_record_created,
    "duplicate": duplicate,
    "shuffle": shuffle,
}
