"""The merged state document and its exact serialisation.

Two serialisations exist (FORMAT-FACTS: "The merged state"):

* :meth:`State.to_json` -- what the registry serves: compact JSON,
  ``ensure_ascii=False``, top-level and ``current`` keys in the registry's fixed
  order, each applied event as ``{event_id, target, created_at, signer,
  payload}`` with ``signer`` and ``payload`` keys sorted at every depth.
* the canonical JSON of the state without ``state_sha256``, whose sha256 is
  ``state_sha256``.

Fragments that are already canonical (payloads, signers, aliases, the canonical
record) are held as canonical bytes and spliced in with ``msgspec.Raw``, so
neither serialisation re-encodes a payload.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any, Final

import msgspec

from pith_graph.canonical import gc_paused, loads
from pith_graph.models import MERGE_VERSION, STATE_TYPE

__all__ = ["COLLECTION_ORDER", "Entry", "State"]

STATE_VERSION: Final = "1.0"
#: ``current`` collections, in the registry's key order.
COLLECTION_ORDER: Final = (
    "graph_snapshots",
    "author_attestations",
    "timestamp_anchors",
    "storage_attestations",
    "citation_signatures",
    "replication_records",
    "corrections",
    "mirror_hints",
)

_ORDERED: Final = msgspec.json.Encoder()  # dicts keep insertion order
_SORTED: Final = msgspec.json.Encoder(order="sorted")


class Entry(msgspec.Struct, frozen=True, gc=False):
    """An applied event as it appears in ``current``; fragments are canonical JSON bytes.

    A Struct, not a dataclass: a frozen dataclass's constructor costs several
    microseconds, and a rebuild makes one entry per applied event.
    """

    event_id: str
    target: str
    created_at: str
    signer: bytes
    payload: bytes

    def to_raw_dict(self) -> dict[str, Any]:
        """The entry in registry key order, fragments spliced raw."""
        return {
            "event_id": self.event_id,
            "target": self.target,
            "created_at": self.created_at,
            "signer": msgspec.Raw(self.signer),
            "payload": msgspec.Raw(self.payload),
        }


class State:
    """A merge-v1 state. Build it with :func:`pith_graph.merge.merge`, not by hand."""

    __slots__ = (
        "__dict__",
        "applied_event_ids",
        "canonical_record",
        "collections",
        "equivocations",
        "event_count",
        "invalid_event_count",
        "invalid_events",
        "pith_number",
        "record_created",
        "source_aliases",
        "valid_event_count",
    )

    def __init__(
        self,
        *,
        pith_number: str,
        valid_event_count: int,
        invalid_events: list[dict[str, str]],
        equivocations: list[dict[str, Any]],
        applied_event_ids: list[str],
        canonical_record: bytes | None,
        source_aliases: list[bytes],
        collections: dict[str, list[Entry]],
        record_created: Entry | None,
    ) -> None:
        self.pith_number = pith_number
        self.valid_event_count = valid_event_count
        self.invalid_event_count = len(invalid_events)
        self.event_count = valid_event_count + len(invalid_events)
        self.invalid_events = invalid_events
        self.equivocations = equivocations
        self.applied_event_ids = applied_event_ids
        self.canonical_record = canonical_record
        self.source_aliases = source_aliases
        self.collections = collections
        self.record_created = record_created

    @property
    def equivocation_count(self) -> int:
        """Number of forks recorded in ``equivocations``."""
        return len(self.equivocations)

    def _body(self) -> dict[str, Any]:
        """The state without ``state_sha256``, in registry key order, fragments raw."""
        current: dict[str, Any] = {
            "canonical_record": None if self.canonical_record is None else msgspec.Raw(self.canonical_record),
            "source_aliases": [msgspec.Raw(alias) for alias in self.source_aliases],
        }
        for name in COLLECTION_ORDER:
            current[name] = [entry.to_raw_dict() for entry in self.collections.get(name, ())]
        current["record_created"] = None if self.record_created is None else self.record_created.to_raw_dict()
        return {
            "state_type": STATE_TYPE,
            "state_version": STATE_VERSION,
            "pith_number": self.pith_number,
            "merge_version": MERGE_VERSION,
            "event_count": self.event_count,
            "valid_event_count": self.valid_event_count,
            "invalid_event_count": self.invalid_event_count,
            "equivocation_count": self.equivocation_count,
            "current": current,
            "equivocations": self.equivocations,
            "invalid_events": self.invalid_events,
            "applied_event_ids": self.applied_event_ids,
        }

    @cached_property
    def state_sha256(self) -> str:
        """sha256 hex of the canonical JSON of the state without ``state_sha256``."""
        # The raw fragments are canonical already; sorting the rest makes the whole canonical.
        return hashlib.sha256(_SORTED.encode(self._body())).hexdigest()

    def to_json(self) -> bytes:
        """The state as the registry serves it: compact, registry key order, byte-exact."""
        # The body is built once for both encodings, with the collector paused: its
        # dicts are acyclic, and beside a large heap (a caller holding a parsed bundle)
        # each collection walks all of it (docs/performance.md, "Many small bundles").
        with gc_paused():
            body = self._body()
            digest = hashlib.sha256(_SORTED.encode(body)).hexdigest()
            self.__dict__["state_sha256"] = digest  # the cached property, from the same body
            body["state_sha256"] = digest
            return _ORDERED.encode(body)

    def canonical_json(self) -> bytes:
        """Canonical JSON of :meth:`to_json`'s document (its fragments are canonical already)."""
        with gc_paused():
            body = self._body()
            body["state_sha256"] = self.state_sha256
            return _SORTED.encode(body)

    def to_pretty_json(self) -> bytes:
        """The same document indented for reading (not byte-comparable)."""
        return msgspec.json.format(self.to_json(), indent=2)

    def to_dict(self) -> dict[str, Any]:
        """The state as plain Python values (``loads(to_json())``)."""
        result: dict[str, Any] = loads(self.to_json())
        return result

    def __repr__(self) -> str:
        return (
            f"State({self.pith_number}, events={self.event_count}, valid={self.valid_event_count}, "
            f"invalid={self.invalid_event_count}, equivocations={self.equivocation_count}, "
            f"state_sha256={self.state_sha256[:16]}...)"
        )
