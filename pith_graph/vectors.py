"""Signed histories, their mutations, and the portable conformance-vector corpus.

Three layers, all deterministic (keys come from fixed seeds, so every byte
written is reproducible):

* :func:`build_scenario` -- a valid signed history of one subject: a
  record_created with its receipt and several streams (each chained by
  ``prev_event``, optionally superseding its predecessor).
* mutations (:data:`MUTATIONS`) -- each turns a valid scenario into one
  failure and states, *independently of the merge*, what merge-v1 must report:
  the reason code of every invalid unit, the equivocations, and which streams
  may change. The property suite (``property_tests/``) draws them with
  hypothesis; the corpus uses them with fixed choices.
* the corpus (:func:`write_corpus`) -- one folder per case with
  ``bundle.json``, ``trusted_keys.json``, ``expected.json`` and
  ``description``, plus ``index.json`` (docs/conformance.md).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pith_graph import _edwards, codes
from pith_graph.canonical import canonical_json
from pith_graph.documents import read_json
from pith_graph.errors import InputError, PithGraphError
from pith_graph.identifiers import fingerprint_hex
from pith_graph.keys import KeyRing
from pith_graph.models import MERGE_VERSION
from pith_graph.rebuild import rebuild_state
from pith_graph.state import State
from pith_graph.testing import History, TestKey, make_event, record_created_payload, resign, seal

__all__ = [
    "CASE_FILES",
    "EXPECTED_KEYS",
    "FLAGS",
    "MUTATIONS",
    "Case",
    "build_corpus",
    "default_fixtures",
    "write_corpus",
    "REGISTRY",
    "SIGNERS",
    "UNTRUSTED",
    "Outcome",
    "Scenario",
    "StreamSpec",
    "build_scenario",
    "stream_of",
    "timestamp",
]

#: Deterministic test keys (private key = sha256(seed)); created once at import.
REGISTRY: Final = TestKey("conformance-registry", key_id="test-registry", signer_id="registry.example")
SIGNERS: Final = (
    REGISTRY,
    TestKey("conformance-alice", key_id="test-alice", signer_id="alice.example"),
    TestKey("conformance-bob", key_id="test-bob", signer_id="bob.example"),
    TestKey("conformance-carol", key_id="test-carol", signer_id="carol.example"),
)
#: Signs events nobody trusts.
UNTRUSTED: Final = TestKey("conformance-mallory", key_id="test-mallory", signer_id="mallory.example")

Stream = tuple[str, str]


def stream_of(event: Mapping[str, Any]) -> Stream:
    """merge-v1 section 7: an event's stream is (target, signer.signer_id)."""
    return (event["target"], event["signer"]["signer_id"])


def timestamp(tick: int, *, style: int = 0) -> str:
    """An RFC 3339 UTC time ``tick`` seconds after 2026-06-03T00:00:00Z.

    ``style`` spells the same instant differently (0: ``…:SSZ``, 1: ``…:SS.000Z``,
    2: ``…:SS.000000000Z``): merge-v1 compares instants, never text.
    """
    minutes, seconds = divmod(tick, 60)
    hours, minutes = divmod(minutes, 60)
    fraction = ("", ".000", ".000000000")[style % 3]
    return f"2026-06-03T{hours % 24:02d}:{minutes:02d}:{seconds:02d}{fraction}Z"


@dataclass(frozen=True)
class StreamSpec:
    """One stream to build: a signer (index into :data:`SIGNERS`), a type, a target.

    ``payloads`` has one payload per event of the chain; ``ticks`` (same length)
    are creation times; ``supersede[i]`` makes event ``i`` supersede event ``i-1``.
    """

    signer: int
    event_type: str
    target: str
    payloads: Sequence[Mapping[str, Any]]
    ticks: Sequence[int] = ()
    supersede: Sequence[bool] = ()
    time_style: int = 0


@dataclass
class Scenario:
    """A valid signed history: events (record_created first) and each stream's chain."""

    history: History
    events: list[dict[str, Any]]
    chains: dict[Stream, list[str]] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """The subject's Pith Number."""
        return self.history.subject

    @property
    def record_created(self) -> dict[str, Any]:
        """The record_created event."""
        return self.history.record_created

    def by_id(self) -> dict[str, dict[str, Any]]:
        """Every event by id."""
        return {e["event_id"]: e for e in self.events}

    def trusted(self) -> list[dict[str, Any]]:
        """The trusted key entries: the registry and every signer (never the untrusted key).

        Each is bound to its signer_id (merge-v1 section 4): with several keys
        trusted, an unbound key could write into another signer's streams.
        """
        return [key.entry(signer_id=key.signer_id) for key in SIGNERS]

    def bundle(self, events: Sequence[Any] | None = None) -> dict[str, Any]:
        """A bundle of ``events`` (default: the scenario's own), listed as given."""
        listed = self.events if events is None else events
        bundle = self.history.bundle((), include_record=False, public_keys=[*SIGNERS])
        # Listed as is: a mutated list may hold values that are not objects at all.
        bundle["events"] = list(listed)
        return bundle

    def tips(self) -> list[str]:
        """The last event of every stream but the record's, in stream order."""
        record = stream_of(self.record_created)
        return [chain[-1] for stream, chain in sorted(self.chains.items()) if stream != record]


def _key(signer_id: str) -> TestKey:
    for key in (*SIGNERS, UNTRUSTED):
        if key.signer_id == signer_id:
            return key
    raise KeyError(signer_id)


def build_scenario(
    streams: Sequence[StreamSpec], *, arxiv_id: str = "2601.00001", title: str = "A test paper"
) -> Scenario:
    """Build a valid history: the record_created, then each stream's chain.

    A spec naming a stream already built is skipped (one chain per stream keeps
    the history fork-free).
    """
    history = History.new(REGISTRY, arxiv_id=arxiv_id, title=title, created_at=timestamp(0))
    created = history.record_created
    scenario = Scenario(history, [created], {stream_of(created): [created["event_id"]]})
    for spec in streams:
        key = SIGNERS[spec.signer % len(SIGNERS)]
        stream = (spec.target, key.signer_id)
        if stream in scenario.chains or not spec.payloads:
            continue
        chain: list[str] = []
        for index, payload in enumerate(spec.payloads):
            tick = spec.ticks[index] if index < len(spec.ticks) else len(scenario.events)
            supersede = bool(chain) and index < len(spec.supersede) and spec.supersede[index]
            event = make_event(
                key,
                subject=history.subject,
                event_type=spec.event_type,
                target=spec.target,
                payload=payload,
                created_at=timestamp(tick, style=spec.time_style),
                prev_event=chain[-1] if chain else None,
                supersedes=[chain[-1]] if supersede else [],
            )
            chain.append(event["event_id"])
            scenario.events.append(event)
        scenario.chains[stream] = chain
    return scenario


# --- mutations --------------------------------------------------------------------------


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


def _without(scenario: Scenario, *event_ids: str) -> list[dict[str, Any]]:
    return [e for e in scenario.events if e["event_id"] not in event_ids]


def _edited(scenario: Scenario, event_id: str) -> dict[str, Any]:
    return copy.deepcopy(scenario.by_id()[event_id])


def _replace(scenario: Scenario, event_id: str, edit: Callable[[dict[str, Any]], dict[str, Any]], reason: str, what: str) -> Outcome:
    """Replace one tip by an edited copy; the copy's unit gets ``reason``."""
    event = _edited(scenario, event_id)
    changed = edit(event)
    return Outcome(
        [*_without(scenario, event_id), changed],
        {changed["event_id"]: reason},
        touched=frozenset({stream_of(scenario.by_id()[event_id])}),
        description=f"{what} ({reason})",
    )


def _id_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def tamper_payload(scenario: Scenario, pick: int) -> Outcome:
    """Edit a stream tip's payload without re-sealing: ``content_hash_mismatch``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        event["payload"] = {**event["payload"], "tampered": True}
        return event

    return _replace(scenario, _pick(scenario.tips(), pick), edit, "content_hash_mismatch", "payload edited after signing")


def tamper_id(scenario: Scenario, pick: int) -> Outcome:
    """Give a tip another well-formed event_id: ``event_id_mismatch``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        event["event_id"] = _id_of("tampered " + event["event_id"])
        return event

    return _replace(scenario, _pick(scenario.tips(), pick), edit, "event_id_mismatch", "event_id replaced")


def untrusted_key(scenario: Scenario, pick: int) -> Outcome:
    """Re-sign a tip with a key nobody trusts: ``unknown_key``."""
    return _replace(
        scenario, _pick(scenario.tips(), pick), lambda e: resign(e, UNTRUSTED), "unknown_key", "re-signed by an untrusted key"
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
        return resign(event, _key(event["signer"]["signer_id"]), update_signer=False)

    return apply


def impersonate(scenario: Scenario, pick: int) -> Outcome:
    """Sign a tip with its own key but as another signer_id (keys are bound): ``key_mismatch``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        key = _key(event["signer"]["signer_id"])
        other = next(k for k in SIGNERS if k is not key)
        event["signer"] = {**event["signer"], "signer_id": other.signer_id}
        return resign(event, key, update_signer=False)

    return _replace(scenario, _pick(scenario.tips(), pick), edit, "key_mismatch", "signed as another signer_id")


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

    return _replace(scenario, _pick(scenario.tips(), pick), _resigned(edit), "target_mismatch", "graph_snapshot off target")


def unsupported_signature(scenario: Scenario, pick: int) -> Outcome:
    """Name another algorithm (the signature is not hashed, the id stays): ``unsupported_signature``."""

    def edit(event: dict[str, Any]) -> dict[str, Any]:
        event["signature"]["algorithm"] = "ecdsa-p256"
        return event

    return _replace(scenario, _pick(scenario.tips(), pick), edit, "unsupported_signature", "signature algorithm not ed25519")


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

    return _replace(scenario, scenario.record_created["event_id"], _resigned(edit), "bad_record", "receipt signature broken")


def drop_predecessor(scenario: Scenario, pick: int) -> Outcome:
    """Remove the predecessor of a tip: the tip is ``missing_prev_event``."""
    tips = [chain[-1] for chain in scenario.chains.values() if len(chain) >= 2]
    tip = _pick(sorted(tips), pick)
    prev = scenario.by_id()[tip]["prev_event"]
    return Outcome(
        _without(scenario, prev),
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
        key, subject=scenario.subject, event_type="correction", target="cross-stream",
        payload={"correction": "points into another stream"}, created_at=timestamp(9000), prev_event=named["event_id"],
    )
    return Outcome(
        [*scenario.events, event], {event["event_id"]: "prev_event_stream_mismatch"}, description="prev_event in another stream"
    )


def foreign_supersedes(scenario: Scenario, pick: int) -> Outcome:
    """A new event superseding another signer's event: ``bad_supersedes``."""
    named = scenario.by_id()[_pick([e["event_id"] for e in scenario.events], pick)]
    key = next(k for k in SIGNERS[1:] if k.signer_id != named["signer"]["signer_id"])
    event = make_event(
        key, subject=scenario.subject, event_type="correction", target="foreign-supersedes",
        payload={"correction": "supersedes what it may not"}, created_at=timestamp(9001), supersedes=[named["event_id"]],
    )
    return Outcome(
        [*scenario.events, event], {event["event_id"]: "bad_supersedes"}, description="supersedes another signer's event"
    )


def malformed(scenario: Scenario, pick: int) -> Outcome:
    """Add an object that is no event (no event_id): ``malformed`` under the hash of its canonical JSON."""
    raw = {"event_type": "graph_snapshot", "malformed": pick, "text": "not an event, ünïcödé"}
    uid = "sha256:" + hashlib.sha256(canonical_json(raw)).hexdigest()
    return Outcome([*scenario.events, raw], {uid: "malformed"}, description="an object that is not an event (malformed)")


def fork(scenario: Scenario, pick: int) -> Outcome:
    """A second event of a stream naming the same prev_event: an equivocation.

    Both stay valid; neither, nor anything after them in the stream, is applied.
    """
    record = stream_of(scenario.record_created)
    candidates = sorted(i for stream, chain in scenario.chains.items() if stream != record for i in chain)
    original = scenario.by_id()[_pick(candidates, pick)]
    key = _key(original["signer"]["signer_id"])
    twin = make_event(
        key, subject=scenario.subject, event_type=original["event_type"], target=original["target"],
        payload={**original["payload"], "fork": pick}, created_at=original["created_at"],
        prev_event=original["prev_event"], supersedes=original["supersedes"],
    )
    return _forked(scenario, original, twin, "stream forked")


def fork_record_created(scenario: Scenario, pick: int) -> Outcome:
    """A second valid record_created (same record, another time): the record stream forks."""
    original = scenario.record_created
    twin = make_event(
        REGISTRY, subject=scenario.subject, event_type="record_created",
        payload=record_created_payload(scenario.history.canonical_record, REGISTRY, signed_at=timestamp(pick % 50 + 1)),
        created_at=timestamp(pick % 50 + 1), signer_type="pith_registry",
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
    return Outcome([*scenario.events, twin], {}, [equivocation], frozenset({(target, signer_id)}), what + " (equivocation)")


def duplicate(scenario: Scenario, pick: int) -> Outcome:
    """Add copies of some events: nothing changes."""
    rng = random.Random(pick)
    copies = [copy.deepcopy(e) for e in scenario.events if rng.random() < 0.5] or [copy.deepcopy(scenario.events[-1])]
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


# --- the corpus --------------------------------------------------------------------------

#: Name and version of the corpus format (docs/conformance.md).
CORPUS_NAME: Final = "pith-graph-conformance"
CORPUS_VERSION: Final = "1"
#: Files of one case folder.
CASE_FILES: Final = ("bundle.json", "trusted_keys.json", "expected.json", "description")
#: What ``expected.json`` holds, in this key order (all from the merged state).
EXPECTED_KEYS: Final = (
    "state_sha256",
    "event_count",
    "valid_event_count",
    "invalid_event_count",
    "equivocation_count",
    "applied_event_ids",
    "invalid_events",
    "equivocations",
)


@dataclass(frozen=True)
class Case:
    """One conformance case: a bundle, the keys to trust, and what merge-v1 must say.

    ``reasons`` and ``equivocations`` are declared by whoever builds the case,
    independently of the merge; :func:`build_corpus` refuses a case whose merge
    disagrees (so the corpus can never silently encode a merge bug as expected).
    ``reasons`` None means "not declared" (only for the registry's own bundle,
    whose expected state is the one it embeds).
    """

    id: str
    description: str
    flags: tuple[str, ...]
    bundle: Mapping[str, Any]
    trusted_keys: Sequence[Mapping[str, Any]]
    reasons: Mapping[str, str] | None = None
    equivocations: Sequence[Mapping[str, Any]] = ()
    expected_state_sha256: str | None = None


#: Every flag a case may carry, and what it exercises (written into index.json).
FLAGS: Final = {
    **{reason: f"an event is invalid with reason {reason!r} (docs/merge-v1.md sections 6-7)" for reason in codes.REASONS},
    "valid": "every event is valid and applied",
    "equivocation": "a stream forks: the conflicting events stay valid, none is applied (section 8)",
    "record_created_fork": "two valid record_created events: the record stream itself forks",
    "frozen_descendants": "events after a fork are valid but never applied",
    "supersedes": "supersedes removes events from current, never from applied_event_ids (section 9)",
    "duplicates": "several copies of one unit count once (section 5)",
    "copies_disagree": "copies of one unit differ; the best copy decides (section 5)",
    "order": "input order, created_at ties (broken by event_id) and timestamp spellings (section 9)",
    "large": "a long history (1,000 events)",
    "non_ascii": "non-ASCII text in payloads, targets and the record (canonical JSON is UTF-8, not escaped)",
    "numbers": "floats and big integers in payloads (canonical JSON prints floats as Python's repr)",
    "aliases": "bundle aliases are de-duplicated and sorted (section 10)",
    "key_rotation": "a trusted key signs nothing created at or after its rotates_at (section 4)",
    "key_binding": "a key bound to a signer_id signs only as that signer (section 4)",
    "registry": "the registry's own published bundle, trusting only the registry key",
    "ed25519_edge": "an edge-case key or signature under the pinned rule (section 3): ed25519-speccheck, or crafted",
}


def _declared(outcome: Outcome) -> dict[str, Any]:
    return {"reasons": outcome.reasons, "equivocations": outcome.equivocations}


def _base() -> Scenario:
    """The history most reason cases mutate: four streams of four signers."""
    return build_scenario(
        [
            StreamSpec(
                1, "graph_snapshot", "graph",
                [{"graph_snapshot": {"claims": {"count": n}, "builder_version": f"0.{n}"}} for n in range(3)],
                supersede=(False, True, True),
            ),
            StreamSpec(2, "author_attestation", "author:1", [{"statement": "I am an author of this paper"}]),
            StreamSpec(3, "citation_signature", "citation:2601.00002", [{"cites": "pith:2026:X"}, {"cites": "pith:2026:Y"}]),
            StreamSpec(0, "mirror_hint", "mirror", [{"url": "https://mirror.example/p"}]),
        ],
    )


def _case(
    case_id: str, flags: Sequence[str], scenario: Scenario, outcome: Outcome, *, description: str | None = None,
    trusted: Sequence[Mapping[str, Any]] | None = None,
) -> Case:
    return Case(
        case_id, description or outcome.description, tuple(flags), scenario.bundle(outcome.events),
        trusted if trusted is not None else scenario.trusted(), outcome.reasons, outcome.equivocations,
    )


def _reason_cases() -> list[Case]:
    """At least one case per reason code (each mutation of the base history)."""
    base = _base()
    plan = (
        ("malformed", "malformed"),
        ("tamper_id", "event_id_mismatch"),
        ("tamper_payload", "content_hash_mismatch"),
        ("change_subject", "subject_mismatch"),
        ("unknown_event_type", "unknown_event_type"),
        ("target_mismatch", "target_mismatch"),
        ("unsupported_signature", "unsupported_signature"),
        ("untrusted_key", "unknown_key"),
        ("key_mismatch", "key_mismatch"),
        ("break_signature", "bad_signature"),
        ("bad_record", "bad_record"),
        ("drop_predecessor", "missing_prev_event"),
        ("cross_stream_prev", "prev_event_stream_mismatch"),
        ("invalid_predecessor", "prev_event_invalid"),
        ("foreign_supersedes", "bad_supersedes"),
    )
    cases = []
    for mutation, reason in plan:
        outcome = MUTATIONS[mutation](base, 0)
        flags = sorted(set(outcome.reasons.values()))
        cases.append(_case(f"reason-{reason.replace('_', '-')}", flags, base, outcome))
    return cases


def _malformed_cases() -> list[Case]:
    """More ways to be malformed: not an object, an offset timestamp, a repeated supersedes id."""
    base = _base()
    cases = []
    junk = "not an event"
    uid = "sha256:" + hashlib.sha256(canonical_json(junk)).hexdigest()
    outcome = Outcome([*base.events, junk], {uid: "malformed"}, description="an event that is a JSON string (malformed)")
    cases.append(_case("malformed-not-an-object", ["malformed"], base, outcome))
    tip = base.by_id()[base.tips()[0]]
    offset = resign({**tip, "created_at": "2026-06-03T00:00:01+00:00"}, _key(tip["signer"]["signer_id"]), update_signer=False)
    outcome = Outcome(
        [*_without(base, tip["event_id"]), offset], {offset["event_id"]: "malformed"},
        description="created_at with +00:00 instead of Z (malformed: UTC is spelt Z)",
    )
    cases.append(_case("malformed-offset-timestamp", ["malformed"], base, outcome))
    chain = base.chains[("graph", SIGNERS[1].signer_id)]
    repeated = make_event(
        SIGNERS[1], subject=base.subject, event_type="correction", target="claim:9", payload={"fix": 1},
        created_at=timestamp(50), supersedes=[chain[0], chain[0]],
    )
    outcome = Outcome([*base.events, repeated], {repeated["event_id"]: "malformed"}, description="supersedes repeats an id (malformed)")
    cases.append(_case("malformed-repeated-supersedes", ["malformed"], base, outcome))
    return cases


def _history_cases() -> list[Case]:
    """Forks, supersedes, duplicates, copies, order, rotation, aliases."""
    base = _base()
    graph = base.chains[("graph", SIGNERS[1].signer_id)]
    cases = [Case("valid-history", "a valid history of five streams, all applied", ("valid",), base.bundle(), base.trusted(), {})]
    # Forks.
    outcome = fork(base, sorted(i for s, c in base.chains.items() if s != stream_of(base.record_created) for i in c).index(graph[0]))
    cases.append(_case("fork-stream-start", ["equivocation", "frozen_descendants"], base, outcome,
                       description="a graph stream forks at its first event: the fork and everything after it is not applied"))
    outcome = fork_record_created(base, 7)
    cases.append(_case("fork-record-created", ["equivocation", "record_created_fork"], base, outcome))
    tip = base.by_id()[graph[-1]]
    twins = [
        make_event(SIGNERS[1], subject=base.subject, event_type="graph_snapshot", payload={"graph_snapshot": {"twin": n}},
                   created_at=tip["created_at"], prev_event=tip["prev_event"])
        for n in (1, 2)
    ]
    equivocation = {"event_ids": sorted([tip["event_id"], *(t["event_id"] for t in twins)]), "prev_event": tip["prev_event"],
                    "signer_id": SIGNERS[1].signer_id, "target": "graph"}
    outcome = Outcome([*base.events, *twins], {}, [equivocation], description="a three-way fork at a stream tip")
    cases.append(_case("fork-three-way", ["equivocation"], base, outcome))
    # Supersedes.
    chain = build_scenario(
        [StreamSpec(1, "graph_snapshot", "graph", [{"graph_snapshot": {"version": n}} for n in range(5)], supersede=(True,) * 5)]
    )
    cases.append(Case("supersedes-chain", "five snapshots, each superseding the previous: only the last is current",
                      ("supersedes", "valid"), chain.bundle(), chain.trusted(), {}))
    record_id = base.record_created["event_id"]
    for case_id, named, what in (
        ("supersedes-record-created", record_id, "an event superseding the record_created (bad_supersedes)"),
        ("supersedes-missing", _id_of("nothing"), "an event superseding an id no event has (bad_supersedes)"),
    ):
        event = make_event(REGISTRY, subject=base.subject, event_type="correction", target="claim:1",
                           payload={"fix": what}, created_at=timestamp(60), supersedes=[named])
        outcome = Outcome([*base.events, event], {event["event_id"]: "bad_supersedes"}, description=what)
        cases.append(_case(case_id, ["bad_supersedes", "supersedes"], base, outcome))
    # Duplicates and copies.
    cases.append(_case("duplicates", ["duplicates", "valid"], base, duplicate(base, 3)))
    tampered = copy.deepcopy(tip)
    tampered["payload"] = {"graph_snapshot": {"tampered": True}}
    outcome = Outcome([tampered, *base.events], description="a tampered copy next to a valid copy: the unit is valid")
    cases.append(_case("copies-one-valid", ["copies_disagree", "duplicates", "valid"], base, outcome))
    broken = break_signature(base, base.tips().index(graph[-1])).events[-1]
    outcome = Outcome([*_without(base, graph[-1]), tampered, broken], {graph[-1]: "bad_signature"},
                      description="two bad copies: the one failing later (bad_signature) names the reason")
    cases.append(_case("copies-best-reason", ["copies_disagree", "duplicates", "bad_signature"], base, outcome))
    # Order.
    cases.append(_case("order-shuffled", ["order", "valid"], base, shuffle(base, 11)))
    ties = build_scenario([
        StreamSpec(n, kind, target, [{"n": n}], ticks=(1,), time_style=n)
        for n, (kind, target) in enumerate((("mirror_hint", "mirror"), ("graph_snapshot", "graph"),
                                            ("correction", "claim:1"), ("storage_attestation", "storage")))
    ])
    cases.append(Case("order-created-at-ties", "four events at one instant spelt three ways: applied by event_id",
                      ("order", "valid"), ties.bundle(), ties.trusted(), {}))
    # Key rotation: alice's key rotates between her two snapshots.
    rotated = [{**entry, "rotates_at": timestamp(3)} if entry["key_id"] == SIGNERS[1].key_id else entry for entry in base.trusted()]
    timed = build_scenario([StreamSpec(1, "graph_snapshot", "graph", [{"v": 1}, {"v": 2}], ticks=(1, 5))])
    second = timed.chains[("graph", SIGNERS[1].signer_id)][1]
    cases.append(Case("key-rotated", "an event created after its key's rotates_at (unknown_key)", ("key_rotation", "unknown_key"),
                      timed.bundle(), rotated, {second: "unknown_key"}))
    # A bound key signing as another signer (it would write into that signer's stream).
    cases.append(_case("key-bound-to-another-signer", ["key_binding", "key_mismatch"], base, impersonate(base, 1)))
    # Aliases: duplicated and unsorted in the bundle.
    aliased = dict(base.bundle())
    aliased["source_aliases"] = list(reversed(aliased["source_aliases"])) + aliased["source_aliases"][:2]
    cases.append(Case("aliases-duplicated-unsorted", "bundle aliases repeated and out of order: the state lists each once, sorted",
                      ("aliases", "valid"), aliased, base.trusted(), {}))
    return cases


def _text_cases() -> list[Case]:
    """Non-ASCII text and numbers whose canonical form trips encoders."""
    texts = ["Größe", "证明与反驳", "🧪 emoji", "e\u0301 combining", "עברית", "\u2028 line separator", "quote \" and \\ backslash"]
    scenario = build_scenario(
        [
            StreamSpec(2, "author_attestation", "author:Łukasz", [{"statement": t, "name": t[:3]} for t in texts[:3]]),
            StreamSpec(3, "correction", "claim:证明", [{"text": t} for t in texts[3:]]),
        ],
        arxiv_id="2601.00099", title="Über die Vollständigkeit — 完全性",
    )
    numbers = build_scenario(
        [StreamSpec(1, "graph_snapshot", "graph", [
            {"graph_snapshot": {"big": 1e16, "small": 1e-07, "neg_zero": -0.0, "tenth": 0.1, "huge": 1.5e300}},
            {"graph_snapshot": {"int64_max": 2**63 - 1, "beyond_uint64": 2**64 + 1, "negative": -(2**63), "float_int": 3.0}},
        ])],
        arxiv_id="2601.00100",
    )
    return [
        Case("text-non-ascii", "non-ASCII payloads, targets and title (canonical JSON is raw UTF-8)", ("non_ascii", "valid"),
             scenario.bundle(), scenario.trusted(), {}),
        Case("text-numbers", "floats (1e+16, 1e-07, -0.0) and integers beyond 64 bits in payloads", ("numbers", "valid"),
             numbers.bundle(), numbers.trusted(), {}),
    ]


def _large_case() -> Case:
    """A 1,000-event history: the record_created and nine streams of 111 events."""
    kinds = ("graph_snapshot", "author_attestation", "citation_signature", "correction", "mirror_hint",
             "timestamp_anchor", "storage_attestation", "replication_record", "correction")
    specs = [
        StreamSpec(n % len(SIGNERS), kind, "graph" if kind == "graph_snapshot" else f"t{n}",
                   [{"i": i} for i in range(111)], ticks=[(i * 7 + n) % 997 for i in range(111)],
                   supersede=[i % 3 == 0 for i in range(111)])
        for n, kind in enumerate(kinds)
    ]
    scenario = build_scenario(specs, arxiv_id="2601.01000")
    assert len(scenario.events) == 1000
    return Case("large-1000-events", "a history of 1,000 valid events in nine chained streams", ("large", "valid", "supersedes"),
                scenario.bundle(), scenario.trusted(), {})


#: ed25519-speccheck cases 0-9 (tests/test_ed25519.py): what each exercises.
SPECCHECK_NOTES: Final = (
    "small-order A and R, S = 0",
    "small-order A, mixed-order R",
    "mixed-order A, small-order R",
    "mixed-order A and R, passing both equations",
    "passes only the cofactored equation",
    "passes only the cofactored equation",
    "S >= L",
    "S >= L",
    "non-canonical R (y = p)",
    "non-canonical R (y = p)",
)
_EDGE_SIGNER: Final = "speccheck.example"


def _edge_entry(key_id: str, public_key: bytes) -> dict[str, Any]:
    """A trusted-key entry for an edge-case key (small-order, mixed-order, non-canonical keys load too)."""
    return {"key_id": key_id, "algorithm": "ed25519", "format": "raw", "public_key_hex": public_key.hex(),
            "fingerprint_sha256_hex": fingerprint_hex(public_key), "rotates_at": None, "signer_id": _EDGE_SIGNER}


def _edge_event(
    scenario: Scenario, key_id: str, public_key: bytes, payload: Mapping[str, Any], wanted: Callable[[bytes], bool]
) -> dict[str, Any]:
    """An honest unsigned mirror_hint by ``key_id``, its content ground (a ``grind`` counter in
    the payload) until ``wanted(message)`` holds for its signed message, the 32 content-hash bytes."""
    fingerprint = fingerprint_hex(public_key)
    grind = 0
    while True:
        event = seal({
            "event_type": "mirror_hint", "subject_pith_number": scenario.subject, "target": "mirror",
            "payload": {**payload, "grind": grind},
            "signer": {"signer_id": _EDGE_SIGNER, "signer_type": "test_signer", "key_id": key_id,
                       "public_key_fingerprint": fingerprint},
            "created_at": timestamp(1), "supersedes": [], "prev_event": None, "schema_version": "1.0",
        }, None)
        if wanted(bytes.fromhex(event["content_sha256"])):
            return event
        grind += 1


def _edge_case(
    scenario: Scenario, case_id: str, description: str, key_id: str, public_key: bytes, event: dict[str, Any],
    signature: bytes, reason: str | None,
) -> Case:
    """The case of ``event`` signed with ``signature``: ``reason`` None means it must be valid."""
    event["signature"] = {
        "signature_status": "signed_v1", "algorithm": "ed25519", "key_id": key_id,
        "public_key_fingerprint": fingerprint_hex(public_key),
        "signature_b64": base64.b64encode(signature).decode("ascii"),
        "signed_message": "open_graph_event_sha256_bytes", "signed_at": timestamp(1),
    }
    return Case(
        case_id, description, ("ed25519_edge", reason or "valid"), scenario.bundle([*scenario.events, event]),
        [*scenario.trusted(), _edge_entry(key_id, public_key)], {} if reason is None else {event["event_id"]: reason},
    )


def _speccheck_cases(vectors: Sequence[Mapping[str, str]]) -> list[Case]:
    """Events carrying each speccheck key and signature; all must be ``bad_signature``.

    An event's signed message is the sha256 of its own content, so no event can
    sign a speccheck message (that would need a sha256 preimage): each vector's
    key and signature are carried by an event whose content is otherwise
    honest. The key entry (small-order and mixed-order keys included) must load
    as a trusted key, and the pinned rule must reject the signature. Case 0 is
    the one where libraries really disagree for *any* message: A is small
    order, R = -A and S = 0, so the cofactorless equation reads
    [k-1]A = 0, true for one message in eight; its content is ground until
    k = SHA-512(R || A || M) mod L is 1 mod 8, so that OpenSSL alone (without
    the pinned small-order check) accepts the event. The crafted cases
    (:func:`_crafted_cases`) cover the other disagreements over an event's own message.
    """
    scenario = build_scenario([])
    cases = []
    for index, vector in enumerate(vectors):
        public_key = bytes.fromhex(vector["pub_key"])
        signature = bytes.fromhex(vector["signature"])
        key_id = f"speccheck-{index}"

        def wanted(message: bytes, index: int = index, public_key: bytes = public_key, signature: bytes = signature) -> bool:
            return index != 0 or _edwards.challenge(signature[:32], public_key, message) % 8 == 1

        event = _edge_event(scenario, key_id, public_key, {"speccheck_case": index, "note": SPECCHECK_NOTES[index]}, wanted)
        cases.append(_edge_case(
            scenario, f"ed25519-speccheck-{index}",
            f"ed25519-speccheck case {index} ({SPECCHECK_NOTES[index]}) as an event: bad_signature"
            + (" (OpenSSL alone accepts this event; the pinned rule must not)" if index == 0 else ""),
            key_id, public_key, event, signature, codes.REASON_BAD_SIGNATURE,
        ))
    return cases


def _scalar(label: str) -> int:
    """A fixed secret scalar for the crafted cases (reproducible from its label)."""
    return int.from_bytes(hashlib.sha512(f"pith_graph corpus: {label}".encode()).digest(), "little") % _edwards.L


def _crafted(
    case_id: str, description: str, public_key: bytes, sign: Callable[[bytes], bytes],
    wanted: Callable[[bytes], bool] = lambda message: True, reason: str | None = codes.REASON_BAD_SIGNATURE,
) -> Case:
    scenario = build_scenario([])
    key_id = case_id
    event = _edge_event(scenario, key_id, public_key, {"crafted": case_id}, wanted)
    signature = sign(bytes.fromhex(event["content_sha256"]))
    return _edge_case(scenario, case_id, description, key_id, public_key, event, signature, reason)


def _crafted_cases() -> list[Case]:
    """Edge cases of the pinned rule over each event's *own* message, where the speccheck
    vectors (made for other messages) cannot reach: each one passes or fails the
    equations on purpose, so an implementation that differs from the pinned rule
    in that one respect fails that case (tests/test_ed25519.py checks each claim
    against OpenSSL, libsodium and the curve).
    """
    ed, base = _edwards, _edwards.BASE
    torsion = ed.order_8_point()
    honest = _scalar("honest key")
    honest_key = ed.encode(ed.point_mul(honest, base))

    def signature(r_point: bytes, s: int) -> bytes:
        return r_point + s.to_bytes(32, "little")

    def standard(secret: int, public_key: bytes, nonce: str) -> Callable[[bytes], bytes]:
        """Sign as RFC 8032 does, with R = [r]B, S = r + k*secret (mod L)."""
        r = _scalar(nonce)
        r_point = ed.encode(ed.point_mul(r, base))
        return lambda message: signature(r_point, (r + ed.challenge(r_point, public_key, message) * secret) % ed.L)

    # R = the identity (small order), S = k*a: [S]B = [k]A = R + [k]A for every message.
    identity = ed.encode(ed.IDENTITY)
    small_r = _crafted(
        "ed25519-crafted-identity-r",
        "an honest key, R = the identity point (small order), S = k*a: the cofactorless equation holds for "
        "this message, so OpenSSL alone accepts it; the pinned rule (3) must not: bad_signature",
        honest_key, lambda message: signature(identity, ed.challenge(identity, honest_key, message) * honest % ed.L),
    )
    # A = [a]B + T (T of order 8): [S]B = R + [k]A exactly when [k]T = 0, i.e. k = 0 mod 8.
    mixed_secret = _scalar("mixed-order key")
    mixed_key = ed.encode(ed.point_add(ed.point_mul(mixed_secret, base), torsion))
    mixed_sign = standard(mixed_secret, mixed_key, "mixed-order nonce")
    mixed = _crafted(
        "ed25519-crafted-mixed-order-key",
        "a mixed-order key (a prime-order point plus one of order 8) whose signature passes the cofactorless "
        "equation (the content is ground until k = 0 mod 8): the pinned rule accepts it, as OpenSSL and "
        "libsodium do; an implementation that demands a prime-order key must not reject it: valid",
        mixed_key, mixed_sign, lambda message: ed.challenge(mixed_sign(message)[:32], mixed_key, message) % 8 == 0,
        reason=None,
    )
    # R = [r]B + T: R + [k]A is off by T from [S]B, and [8]T = 0.
    r = _scalar("cofactored nonce")
    shifted_r = ed.encode(ed.point_add(ed.point_mul(r, base), torsion))
    cofactored = _crafted(
        "ed25519-crafted-cofactored-only",
        "an honest key and R = [r]B + T (T of order 8), S = r + k*a: only the cofactored equation "
        "[8][S]B = [8](R + [k]A) holds; the pinned rule (5) is cofactorless: bad_signature",
        honest_key, lambda message: signature(shifted_r, (r + ed.challenge(shifted_r, honest_key, message) * honest) % ed.L),
    )
    honest_sign = standard(honest, honest_key, "honest nonce")

    def plus_l(message: bytes) -> bytes:
        valid = honest_sign(message)
        return signature(valid[:32], int.from_bytes(valid[32:], "little") + ed.L)

    unreduced = _crafted(
        "ed25519-crafted-s-plus-l",
        "a valid signature by an honest key with S replaced by S + L: the equation holds for S mod L, "
        "but the pinned rule (4) requires S < L: bad_signature",
        honest_key, plus_l,
    )
    # A spelled y = p + 1: the identity, non-canonically. R = [s]B, S = s: [S]B = R + [k]O.
    s = _scalar("non-canonical key")
    spelled = ed.encode_y(ed.P + 1)
    non_canonical = _crafted(
        "ed25519-crafted-non-canonical-key",
        "the key y = p + 1 (the identity point, spelled non-canonically), R = [s]B and S = s, so "
        "[S]B = R + [k]A for a reader that reduces y mod p; the pinned rule (2) refuses the "
        "encoding: bad_signature",
        spelled, lambda message: signature(ed.encode(ed.point_mul(s, base)), s),
    )
    return [small_r, mixed, cofactored, unreduced, non_canonical]


def default_fixtures() -> Path:
    """Where the corpus's outside inputs live in a checkout: ``tests/fixtures``."""
    return Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def _registry_case(fixtures: Path) -> Case:
    """The registry's own bundle, byte for byte, trusting only the registry key.

    Its expected ``state_sha256`` is the one the registry published in the
    bundle's embedded state: an outside fact, not our merge's output.
    """
    data = _read(fixtures / REGISTRY_BUNDLE)
    embedded = read_json(data).get("state") or {}
    return Case(
        "registry-bundle-AG3PAJ22", "the registry's published bundle (2 events), trusting only the pinned registry key",
        ("registry", "valid"), {}, KeyRing.registry().to_entries(), None, (), embedded.get("state_sha256"),
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read corpus input {path}: {exc.strerror or exc}", code=codes.E_IO) from exc


#: The corpus's outside inputs, inside the fixtures directory.
REGISTRY_BUNDLE: Final = "bundle-AG3PAJ22.json"
SPECCHECK_CASES: Final = "ed25519-speccheck-cases.json"


def build_corpus(fixtures: Path | None = None) -> list[Case]:
    """Every case of the corpus, in index order (``fixtures``: see :func:`default_fixtures`)."""
    fixtures = fixtures or default_fixtures()
    speccheck = read_json(_read(fixtures / SPECCHECK_CASES))
    return [
        *_reason_cases(),
        *_malformed_cases(),
        *_history_cases(),
        *_text_cases(),
        _large_case(),
        _registry_case(fixtures),
        *_speccheck_cases(speccheck),
        *_crafted_cases(),
    ]


def _json_bytes(value: Any, *, indent: int | None = None) -> bytes:
    """Deterministic file bytes: keys in the order built, raw UTF-8, newline at the end."""
    separators = (",", ":") if indent is None else (",", ": ")
    return (json.dumps(value, ensure_ascii=False, indent=indent, separators=separators) + "\n").encode("utf-8")


def _expected(state: State) -> dict[str, Any]:
    document = state.to_dict()
    return {name: document[name] for name in EXPECTED_KEYS}


def _check_declared(case: Case, state: State) -> None:
    """Refuse to write a case whose merge disagrees with what the case declares."""
    found = {e["event_id"]: e["reason"] for e in state.invalid_events}
    problems = []
    if case.reasons is not None and found != dict(case.reasons):
        problems.append(f"invalid events {found} != declared {dict(case.reasons)}")
    if case.reasons is not None and state.equivocations != list(case.equivocations):
        problems.append(f"equivocations {state.equivocations} != declared {list(case.equivocations)}")
    if case.expected_state_sha256 is not None and state.state_sha256 != case.expected_state_sha256:
        problems.append(f"state_sha256 {state.state_sha256} != declared {case.expected_state_sha256}")
    if problems:
        raise PithGraphError(f"vector {case.id}: " + "; ".join(problems), code=codes.E_INTERNAL)


def _result(expected: Mapping[str, Any]) -> str:
    if expected["invalid_event_count"]:
        return "invalid"
    return "equivocation" if expected["equivocation_count"] else "valid"


def write_corpus(directory: str | os.PathLike[str], *, fixtures: Path | None = None) -> list[dict[str, Any]]:
    """Write the corpus into ``directory`` (created if needed); return the index's case list.

    Byte-deterministic: the same pith_graph writes the same bytes. Existing
    files of the same names are overwritten; nothing else is touched.
    """
    fixtures = fixtures or default_fixtures()
    root = Path(directory)
    entries = []
    for case in build_corpus(fixtures):
        bundle = _read(fixtures / REGISTRY_BUNDLE) if "registry" in case.flags else _json_bytes(case.bundle)
        state = rebuild_state(bundle, trusted_keys=case.trusted_keys)
        _check_declared(case, state)
        expected = _expected(state)
        files = {
            "bundle.json": bundle,
            "trusted_keys.json": _json_bytes(list(case.trusted_keys), indent=2),
            "expected.json": _json_bytes(expected, indent=2),
            "description": (case.description + "\n").encode("utf-8"),
        }
        _write_files(root / case.id, files)
        entries.append({
            "id": case.id,
            "path": case.id,
            "description": case.description,
            "flags": sorted(case.flags),
            "result": _result(expected),
            "reasons": sorted({e["reason"] for e in expected["invalid_events"]}),
            "state_sha256": expected["state_sha256"],
        })
    index = {
        "corpus": CORPUS_NAME,
        "corpus_version": CORPUS_VERSION,
        "merge_version": MERGE_VERSION,
        "case_count": len(entries),
        "protocol": "run IMPL TRUSTED_KEYS_PATH BUNDLE_PATH; it prints the merged state JSON on stdout (docs/conformance.md)",
        "flags": dict(sorted(FLAGS.items())),
        "cases": entries,
    }
    _write_files(root, {"index.json": _json_bytes(index, indent=2)})
    return entries


def _write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {folder}: {exc.strerror or exc}", code=codes.E_IO) from exc
