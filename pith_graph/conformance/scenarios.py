"""Valid signed histories of one subject, built from fixed seeds (every byte reproducible).

:func:`build_scenario` makes a record_created with its receipt and several
streams (each chained by ``prev_event``, optionally superseding its predecessor);
:mod:`pith_graph.conformance.mutations` turns one into a failure, and
:mod:`pith_graph.conformance.corpus` writes the portable corpus from both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pith_graph.testing import History, TestKey, make_event

__all__ = [
    "REGISTRY",
    "SIGNERS",
    "UNTRUSTED",
    "Scenario",
    "Stream",
    "StreamSpec",
    "build_scenario",
    "key_for",
    "stream_of",
    "timestamp",
]

#: Deterministic test keys (private key = sha256(seed)); created once at import.
REGISTRY: Final = TestKey("conformance-registry", key_id="test-registry", signer_id="pith.science")
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
    """merge-v1 §7: an event's stream is (target, signer.signer_id)."""
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

        Each is bound to its signer_id (merge-v1 §4): with several keys
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


def key_for(signer_id: str) -> TestKey:
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
