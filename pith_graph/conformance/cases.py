"""The corpus's cases: each a bundle, the keys to trust, and what merge-v1 must say about it.

Built from :mod:`~pith_graph.conformance.scenarios` and
:mod:`~pith_graph.conformance.mutations` with fixed choices; the Ed25519
edge cases are in :mod:`pith_graph.conformance.ed25519_cases`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from pith_graph import codes
from pith_graph.canonical import canonical_json
from pith_graph.conformance.mutations import (
    MUTATIONS,
    Outcome,
    _replace,
    break_signature,
    duplicate,
    fork,
    fork_record_created,
    id_of,
    impersonate,
    shuffle,
    without,
)
from pith_graph.conformance.scenarios import (
    REGISTRY,
    SIGNERS,
    UNTRUSTED,
    Scenario,
    StreamSpec,
    build_scenario,
    key_for,
    stream_of,
    timestamp,
)
from pith_graph.events import MAX_EVENT_BYTES
from pith_graph.testing import make_event, record_created_payload, resign

__all__ = ["FLAGS", "Case", "generated_cases"]


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
    **{
        reason: f"an event is invalid with reason {reason!r} (docs/merge-v1.md sections 6-7)"
        for reason in codes.REASONS
    },
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
    "listed_key": "the bundle lists a key the trusted keys do not: its events are unknown_key (a bundle never vouches for itself, section 4)",
    "signature_shape": "a copy that differs only where the content hash does not reach: the signature object has exactly the v1 members, the whole event is at most 1 MiB, signature_b64 is canonical base64 (sections 3 and 6)",
    "record_creation": "only a key that may sign as the registry (pith.science) creates the record (section 6, check 10)",
    "ed25519_edge": "an edge-case key or signature under the pinned rule (section 3): ed25519-speccheck, or crafted",
}


def _declared(outcome: Outcome) -> dict[str, Any]:
    return {"reasons": outcome.reasons, "equivocations": outcome.equivocations}


def _base() -> Scenario:
    """The history most reason cases mutate: four streams of four signers."""
    return build_scenario(
        [
            StreamSpec(
                1,
                "graph_snapshot",
                "graph",
                [{"graph_snapshot": {"claims": {"count": n}, "builder_version": f"0.{n}"}} for n in range(3)],
                supersede=(False, True, True),
            ),
            StreamSpec(2, "author_attestation", "author:1", [{"statement": "I am an author of this paper"}]),
            StreamSpec(
                3,
                "citation_signature",
                "citation:2601.00002",
                [{"cites": "pith:2026:X"}, {"cites": "pith:2026:Y"}],
            ),
            StreamSpec(0, "mirror_hint", "mirror", [{"url": "https://mirror.example/p"}]),
        ],
    )


def _case(
    case_id: str,
    flags: Sequence[str],
    scenario: Scenario,
    outcome: Outcome,
    *,
    description: str | None = None,
    trusted: Sequence[Mapping[str, Any]] | None = None,
) -> Case:
    return Case(
        case_id,
        description or outcome.description,
        tuple(flags),
        scenario.bundle(outcome.events),
        trusted if trusted is not None else scenario.trusted(),
        outcome.reasons,
        outcome.equivocations,
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
    outcome = Outcome(
        [*base.events, junk], {uid: "malformed"}, description="an event that is a JSON string (malformed)"
    )
    cases.append(_case("malformed-not-an-object", ["malformed"], base, outcome))
    tip = base.by_id()[base.tips()[0]]
    offset = resign(
        {**tip, "created_at": "2026-06-03T00:00:01+00:00"},
        key_for(tip["signer"]["signer_id"]),
        update_signer=False,
    )
    outcome = Outcome(
        [*without(base, tip["event_id"]), offset],
        {offset["event_id"]: "malformed"},
        description="created_at with +00:00 instead of Z (malformed: UTC is spelt Z)",
    )
    cases.append(_case("malformed-offset-timestamp", ["malformed"], base, outcome))
    chain = base.chains[("graph", SIGNERS[1].signer_id)]
    repeated = make_event(
        SIGNERS[1],
        subject=base.subject,
        event_type="correction",
        target="claim:9",
        payload={"fix": 1},
        created_at=timestamp(50),
        supersedes=[chain[0], chain[0]],
    )
    outcome = Outcome(
        [*base.events, repeated],
        {repeated["event_id"]: "malformed"},
        description="supersedes repeats an id (malformed)",
    )
    cases.append(_case("malformed-repeated-supersedes", ["malformed"], base, outcome))
    return cases


def _history_cases() -> list[Case]:
    """Forks, supersedes, duplicates, copies, order, rotation, aliases."""
    base = _base()
    graph = base.chains[("graph", SIGNERS[1].signer_id)]
    cases = [
        Case(
            "valid-history",
            "a valid history of five streams, all applied",
            ("valid",),
            base.bundle(),
            base.trusted(),
            {},
        )
    ]
    # Forks.
    outcome = fork(
        base,
        sorted(i for s, c in base.chains.items() if s != stream_of(base.record_created) for i in c).index(
            graph[0]
        ),
    )
    cases.append(
        _case(
            "fork-stream-start",
            ["equivocation", "frozen_descendants"],
            base,
            outcome,
            description="a graph stream forks at its first event: the fork and everything after it is not applied",
        )
    )
    outcome = fork_record_created(base, 7)
    cases.append(_case("fork-record-created", ["equivocation", "record_created_fork"], base, outcome))
    tip = base.by_id()[graph[-1]]
    twins = [
        make_event(
            SIGNERS[1],
            subject=base.subject,
            event_type="graph_snapshot",
            payload={"graph_snapshot": {"twin": n}},
            created_at=tip["created_at"],
            prev_event=tip["prev_event"],
        )
        for n in (1, 2)
    ]
    equivocation = {
        "event_ids": sorted([tip["event_id"], *(t["event_id"] for t in twins)]),
        "prev_event": tip["prev_event"],
        "signer_id": SIGNERS[1].signer_id,
        "target": "graph",
    }
    outcome = Outcome(
        [*base.events, *twins], {}, [equivocation], description="a three-way fork at a stream tip"
    )
    cases.append(_case("fork-three-way", ["equivocation"], base, outcome))
    # Supersedes.
    chain = build_scenario(
        [
            StreamSpec(
                1,
                "graph_snapshot",
                "graph",
                [{"graph_snapshot": {"version": n}} for n in range(5)],
                supersede=(True,) * 5,
            )
        ]
    )
    cases.append(
        Case(
            "supersedes-chain",
            "five snapshots, each superseding the previous: only the last is current",
            ("supersedes", "valid"),
            chain.bundle(),
            chain.trusted(),
            {},
        )
    )
    record_id = base.record_created["event_id"]
    for case_id, named, what in (
        ("supersedes-record-created", record_id, "an event superseding the record_created (bad_supersedes)"),
        ("supersedes-missing", id_of("nothing"), "an event superseding an id no event has (bad_supersedes)"),
    ):
        event = make_event(
            REGISTRY,
            subject=base.subject,
            event_type="correction",
            target="claim:1",
            payload={"fix": what},
            created_at=timestamp(60),
            supersedes=[named],
        )
        outcome = Outcome([*base.events, event], {event["event_id"]: "bad_supersedes"}, description=what)
        cases.append(_case(case_id, ["bad_supersedes", "supersedes"], base, outcome))
    # Duplicates and copies.
    cases.append(_case("duplicates", ["duplicates", "valid"], base, duplicate(base, 3)))
    tampered = copy.deepcopy(tip)
    tampered["payload"] = {"graph_snapshot": {"tampered": True}}
    outcome = Outcome(
        [tampered, *base.events], description="a tampered copy next to a valid copy: the unit is valid"
    )
    cases.append(_case("copies-one-valid", ["copies_disagree", "duplicates", "valid"], base, outcome))
    broken = break_signature(base, base.tips().index(graph[-1])).events[-1]
    outcome = Outcome(
        [*without(base, graph[-1]), tampered, broken],
        {graph[-1]: "bad_signature"},
        description="two bad copies: the one failing later (bad_signature) names the reason",
    )
    cases.append(
        _case("copies-best-reason", ["copies_disagree", "duplicates", "bad_signature"], base, outcome)
    )
    # Order.
    cases.append(_case("order-shuffled", ["order", "valid"], base, shuffle(base, 11)))
    ties = build_scenario(
        [
            StreamSpec(n, kind, target, [{"n": n}], ticks=(1,), time_style=n)
            for n, (kind, target) in enumerate(
                (
                    ("mirror_hint", "mirror"),
                    ("graph_snapshot", "graph"),
                    ("correction", "claim:1"),
                    ("storage_attestation", "storage"),
                )
            )
        ]
    )
    cases.append(
        Case(
            "order-created-at-ties",
            "four events at one instant spelt three ways: applied by event_id",
            ("order", "valid"),
            ties.bundle(),
            ties.trusted(),
            {},
        )
    )
    # Key rotation: alice's key rotates between her two snapshots.
    rotated = [
        {**entry, "rotates_at": timestamp(3)} if entry["key_id"] == SIGNERS[1].key_id else entry
        for entry in base.trusted()
    ]
    timed = build_scenario([StreamSpec(1, "graph_snapshot", "graph", [{"v": 1}, {"v": 2}], ticks=(1, 5))])
    second = timed.chains[("graph", SIGNERS[1].signer_id)][1]
    cases.append(
        Case(
            "key-rotated",
            "an event created after its key's rotates_at (unknown_key)",
            ("key_rotation", "unknown_key"),
            timed.bundle(),
            rotated,
            {second: "unknown_key"},
        )
    )
    # A bound key signing as another signer (it would write into that signer's stream).
    cases.append(
        _case("key-bound-to-another-signer", ["key_binding", "key_mismatch"], base, impersonate(base, 1))
    )
    # Aliases: duplicated and unsorted in the bundle.
    aliased = dict(base.bundle())
    aliased["source_aliases"] = list(reversed(aliased["source_aliases"])) + aliased["source_aliases"][:2]
    cases.append(
        Case(
            "aliases-duplicated-unsorted",
            "bundle aliases repeated and out of order: the state lists each once, sorted",
            ("aliases", "valid"),
            aliased,
            base.trusted(),
            {},
        )
    )
    return cases


def _text_cases() -> list[Case]:
    """Non-ASCII text and numbers whose canonical form trips encoders."""
    texts = [
        "Größe",
        "证明与反驳",
        "🧪 emoji",
        "e\u0301 combining",
        "עברית",
        "\u2028 line separator",
        'quote " and \\ backslash',
    ]
    scenario = build_scenario(
        [
            StreamSpec(
                2, "author_attestation", "author:Łukasz", [{"statement": t, "name": t[:3]} for t in texts[:3]]
            ),
            StreamSpec(3, "correction", "claim:证明", [{"text": t} for t in texts[3:]]),
        ],
        arxiv_id="2601.00099",
        title="Über die Vollständigkeit — 完全性",
    )
    numbers = build_scenario(
        [
            StreamSpec(
                1,
                "graph_snapshot",
                "graph",
                [
                    {
                        "graph_snapshot": {
                            "big": 1e16,
                            "small": 1e-07,
                            "neg_zero": -0.0,
                            "tenth": 0.1,
                            "huge": 1.5e300,
                        }
                    },
                    {
                        "graph_snapshot": {
                            "int64_max": 2**63 - 1,
                            "beyond_uint64": 2**64 + 1,
                            "negative": -(2**63),
                            "float_int": 3.0,
                        }
                    },
                ],
            )
        ],
        arxiv_id="2601.00100",
    )
    return [
        Case(
            "text-non-ascii",
            "non-ASCII payloads, targets and title (canonical JSON is raw UTF-8)",
            ("non_ascii", "valid"),
            scenario.bundle(),
            scenario.trusted(),
            {},
        ),
        Case(
            "text-numbers",
            "floats (1e+16, 1e-07, -0.0) and integers beyond 64 bits in payloads",
            ("numbers", "valid"),
            numbers.bundle(),
            numbers.trusted(),
            {},
        ),
    ]


def _large_case() -> Case:
    """A 1,000-event history: the record_created and nine streams of 111 events."""
    kinds = (
        "graph_snapshot",
        "author_attestation",
        "citation_signature",
        "correction",
        "mirror_hint",
        "timestamp_anchor",
        "storage_attestation",
        "replication_record",
        "correction",
    )
    specs = [
        StreamSpec(
            n % len(SIGNERS),
            kind,
            "graph" if kind == "graph_snapshot" else f"t{n}",
            [{"i": i} for i in range(111)],
            ticks=[(i * 7 + n) % 997 for i in range(111)],
            supersede=[i % 3 == 0 for i in range(111)],
        )
        for n, kind in enumerate(kinds)
    ]
    scenario = build_scenario(specs, arxiv_id="2601.01000")
    assert len(scenario.events) == 1000
    return Case(
        "large-1000-events",
        "a history of 1,000 valid events in nine chained streams",
        ("large", "valid", "supersedes"),
        scenario.bundle(),
        scenario.trusted(),
        {},
    )


def _listed_key_cases() -> list[Case]:
    """A bundle listing a key its trusted keys do not: an implementation that trusts the
    bundle's own keys (section 4) gets these wrong."""
    base = _base()
    listed = base.bundle()
    listed["public_keys"] = [*listed["public_keys"], UNTRUSTED.entry(signer_id=UNTRUSTED.signer_id)]
    hint = make_event(
        UNTRUSTED,
        subject=base.subject,
        event_type="mirror_hint",
        target="mirror",
        payload={"url": "https://mallory.example/p"},
        created_at=timestamp(40),
    )
    record = make_event(
        UNTRUSTED,
        subject=base.subject,
        event_type="record_created",
        payload=record_created_payload(base.history.canonical_record, UNTRUSTED),
        created_at=timestamp(41),
    )
    cases = []
    for case_id, events, what in (
        (
            "listed-key-signs-event",
            [hint],
            "an event signed by a key the bundle lists but the trusted keys do not (unknown_key)",
        ),
        (
            "listed-key-creates-record",
            [record, hint],
            "a second record_created and an event, both signed by a key only the bundle lists (unknown_key)",
        ),
    ):
        bundle = dict(listed)
        bundle["events"] = [*base.events, *events]
        cases.append(
            Case(
                case_id,
                what,
                ("listed_key", "unknown_key"),
                bundle,
                base.trusted(),
                {e["event_id"]: "unknown_key" for e in events},
            )
        )
    return cases


def _signature_shape_cases() -> list[Case]:
    """Copies that differ only in the signature object, which the content hash does not cover."""
    base = _base()
    tip_id = base.tips()[0]
    # The last base64 character before "==" carries 4 unused bits: set one (same 64 bytes).
    text = base.by_id()[tip_id]["signature"]["signature_b64"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    respelt = text[:-3] + alphabet[alphabet.index(text[-3]) | 1] + text[-2:]
    assert respelt != text and base64.b64decode(respelt) == base64.b64decode(text)

    loose = _replace(
        base,
        tip_id,
        partial(_with_signature, {"signature_b64": respelt}),
        "bad_signature",
        "signature_b64 with a unused bit set: the same 64 bytes, not their canonical base64",
    )
    padded = _replace(
        base,
        tip_id,
        partial(_with_signature, {"pad": "x" * 64}),
        "malformed",
        "a signature object with a member v1 does not have",
    )
    huge = _replace(
        base,
        tip_id,
        partial(_with_signature, {"signature_b64": "A" * MAX_EVENT_BYTES}),
        "malformed",
        "a signature member so large that the whole event exceeds 1 MiB",
    )
    both = Outcome(
        [*base.events, padded.events[-1], loose.events[-1]],
        {},
        description="a valid copy beside a padded and a re-spelt copy: the unit is valid",
    )
    return [
        _case("signature-non-canonical-base64", ["signature_shape", "bad_signature"], base, loose),
        _case("signature-extra-member", ["signature_shape", "malformed"], base, padded),
        _case("signature-oversized-member", ["signature_shape", "malformed"], base, huge),
        _case(
            "signature-copies-one-valid",
            ["signature_shape", "duplicates", "copies_disagree", "valid"],
            base,
            both,
        ),
    ]


def _with_signature(members: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with ``members`` set in its signature object (the rest of it kept, in order)."""
    return {**event, "signature": {**event["signature"], **members}}


def _record_creation_cases() -> list[Case]:
    """A second trusted key, bound to its own signer, creating the record with its own receipt."""
    base = _base()
    alice = SIGNERS[1]
    record = make_event(
        alice,
        subject=base.subject,
        event_type="record_created",
        payload=record_created_payload(base.history.canonical_record, alice),
        created_at=timestamp(42),
    )
    outcome = Outcome(
        [*base.events, record],
        {record["event_id"]: "bad_record"},
        description="a record_created and its receipt signed by a trusted key bound to alice.example, not the registry (bad_record)",
    )
    return [_case("record-created-by-second-trusted-key", ["record_creation", "bad_record"], base, outcome)]


def generated_cases() -> list[Case]:
    """The cases built from scenarios and mutations, in index order (before the registry's bundle)."""
    return [
        *_reason_cases(),
        *_malformed_cases(),
        *_history_cases(),
        *_text_cases(),
        _large_case(),
        *_listed_key_cases(),
        *_signature_shape_cases(),
        *_record_creation_cases(),
    ]
