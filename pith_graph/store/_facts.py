"""What the store keeps per copy, independent of the database: rows, stage-1 facts, the warm replay's input.

A stored copy's intrinsic stage-1 outcome (``event_facts``) is a function of its
immutable body and subject, so it is computed once when the copy is stored and
read back on every replay; the key checks, which depend on the caller's trusted
keys, are kept per trusted-key ring (``key_verdicts``). docs/store.md, "Warm replay".
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec

from pith_graph import codes
from pith_graph.canonical import canonical_json, canonical_json_parsed, loads, sha256_hex
from pith_graph.documents import read_json
from pith_graph.errors import StoreError
from pith_graph.events import (
    INSPECT_REVISION,
    INTRINSIC_CHECKS,
    KEY_CHECK_REVISION,
    CheckedEvent,
    EventFacts,
    inspect_event,
    unit_id,
)
from pith_graph.keys import KeyRing, TrustedKey
from pith_graph.models import MERGE_VERSION

__all__ = [
    "FACTS_RULE",
    "ITEM_KINDS",
    "CheckedRow",
    "CopyRow",
    "EventRow",
    "FactsRow",
    "ItemRow",
    "KeyVerdict",
    "Ring",
    "StoredChecks",
    "as_is",
    "join_bodies",
    "parse_event",
    "ring_from_entries",
    "ring_id",
    "ring_row",
    "stored_checked",
]

#: Bundle-level items kept per subject, with the bundle key each comes from.
ITEM_KINDS: Final = {
    "record": "canonical_record",
    "alias": "source_aliases",
    "public_key": "public_keys",
    "mirror_hint": "mirror_hints",
    "timestamp_proof": "timestamp_proofs",
}


def _facts_rule() -> str:
    """A tag of the intrinsic stage-1 rule: what decides whether a stored facts row still applies.

    Covers the merge version, the intrinsic reasons in check order and the
    EventFacts layout (msgpack arrays are positional), plus
    :data:`pith_graph.events.INSPECT_REVISION`, bumped when
    :func:`pith_graph.events.inspect_event` changes otherwise.
    """
    described = [
        MERGE_VERSION,
        INSPECT_REVISION,
        codes.EVENT_REASONS[:INTRINSIC_CHECKS],
        EventFacts.__struct_fields__,
    ]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


#: The rule ``event_facts.rule`` rows must carry to be read by this module.
FACTS_RULE: Final = _facts_rule()
_FACTS_ENCODER: Final = msgspec.msgpack.Encoder()
_FACTS_DECODER: Final = msgspec.msgpack.Decoder(EventFacts)


def ring_id(ring: KeyRing) -> str:
    """What a key verdict depends on besides the copy: the trusted keys (material, key id,
    rotates_at, signer binding, listed or not) and the rules that read them."""
    described = [FACTS_RULE, KEY_CHECK_REVISION, ring.describe()]
    return hashlib.sha256(canonical_json(described)).hexdigest()[:32]


class Ring(NamedTuple):
    """A trusted-key ring as the store records it beside the key verdicts kept under it:
    its :func:`ring_id` and the canonical JSON of :meth:`KeyRing.describe`."""

    id: str
    entries: bytes


def ring_row(ring: KeyRing) -> Ring:
    """The :class:`Ring` row of ``ring``."""
    return Ring(ring_id(ring), canonical_json(ring.describe()))


def ring_from_entries(entries: bytes) -> KeyRing:
    """The ring a :class:`Ring` row records (``store check`` re-derives its verdicts with it)."""
    return KeyRing(TrustedKey.from_entry(entry, listed=listed) for entry, listed in loads(entries))


#: What a kept key verdict may say: a key-check reason, or None (every check passed).
_KEY_VERDICTS: Final[frozenset[str | None]] = frozenset({None, *codes.EVENT_REASONS[INTRINSIC_CHECKS:]})
#: Progress of a copy whose intrinsic reason is the key (None: every intrinsic check passed).
_PROGRESS: Final[dict[str | None, int]] = {
    None: INTRINSIC_CHECKS,
    **{reason: i for i, reason in enumerate(codes.EVENT_REASONS[:INTRINSIC_CHECKS])},
}


class ItemRow(NamedTuple):
    """One bundle-level item of a subject (``kind``: a key of :data:`ITEM_KINDS`), as canonical bytes."""

    subject: str
    kind: str
    body: bytes


class KeyVerdict(NamedTuple):
    """The stage-1 verdict of a copy (unit id, digest) under one trusted-key ring: the first failing key check, or None."""

    unit_id: str
    digest: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored copy of an event: canonical bytes plus the columns indexed beside them."""

    subject: str
    unit_id: str
    digest: str
    body: bytes
    event_type: str | None = None
    target: str | None = None
    signer_id: str | None = None
    prev_event: str | None = None
    created_at: str | None = None

    @classmethod
    def of(cls, subject: str, tree: Any) -> EventRow:
        """The row for a parsed event (a tree from :func:`~pith_graph.canonical.loads`)."""
        body = canonical_json_parsed(tree)

        def text(value: Any) -> str | None:
            return value if isinstance(value, str) else None

        fields = tree if isinstance(tree, dict) else {}
        signer = fields.get("signer")
        return cls(
            subject,
            unit_id(tree),
            sha256_hex(body),
            body,
            text(fields.get("event_type")),
            text(fields.get("target")),
            text(signer.get("signer_id")) if isinstance(signer, dict) else None,
            text(fields.get("prev_event")),
            text(fields.get("created_at")),
        )


class FactsRow(NamedTuple):
    """One ``event_facts`` row: the intrinsic stage-1 outcome of a stored copy, under :data:`FACTS_RULE`.

    A fragment is either a slice of the stored body (``*_at``, ``*_len``) or,
    when its bytes do not occur there, the bytes themselves (``*_json``).
    """

    reason: str | None
    facts: bytes | None
    signer_at: int | None
    signer_len: int | None
    signer_json: bytes | None
    payload_at: int | None
    payload_len: int | None
    payload_json: bytes | None

    @classmethod
    def of(cls, body: bytes, checked: CheckedEvent) -> FactsRow:
        """The row for ``checked``, the :func:`~pith_graph.events.inspect_event` outcome of the copy stored as ``body``."""
        if checked.facts is None:  # malformed: nothing but the reason
            return cls(checked.reason, None, None, None, None, None, None, None)
        # Canonical JSON is compositional: the canonical fragments occur verbatim in
        # the canonical body, so a slice equal to them is stored instead of a copy.
        signer_at = body.find(checked.signer_json)
        payload_at = body.find(checked.payload_json)
        signer = (
            (signer_at, len(checked.signer_json), None)
            if signer_at >= 0
            else (None, None, checked.signer_json)
        )
        payload = (
            (payload_at, len(checked.payload_json), None)
            if payload_at >= 0
            else (None, None, checked.payload_json)
        )
        return cls(checked.reason, _FACTS_ENCODER.encode(checked.facts), *signer, *payload)

    @classmethod
    def inspected(cls, subject: str, row: EventRow, tree: Any = None) -> FactsRow:
        """The row for a stored copy: :func:`~pith_graph.events.inspect_event` of its tree (parsed from the body if None)."""
        checked = inspect_event(loads(row.body) if tree is None else tree, subject=subject, uid=row.unit_id)
        return cls.of(row.body, checked)


class CheckedRow(NamedTuple):
    """What :meth:`Backend.add_checked` is told of one event row: its facts row and its
    stage-1 verdict under the caller's ring (``reason`` None: valid). ``keyed``: the copy
    passed the intrinsic checks, so ``reason`` is a key verdict, kept under the ring."""

    facts: FactsRow
    reason: str | None
    keyed: bool


class CopyRow(NamedTuple):
    """One stored copy as a replay reads it: the copy joined with its facts row under :data:`FACTS_RULE`.

    ``signer_json`` and ``payload_json`` are the canonical fragments (sliced out
    of the body by the backend); ``missing_body`` is the body only for a copy that
    lacks its facts (stored under schema v1); ``row`` holds the whole copy when the
    replay asked ``with_body``.
    """

    seq: int
    unit_id: str
    digest: str
    reason: str | None
    facts: bytes | None
    signer_json: bytes | None
    payload_json: bytes | None
    missing_body: bytes | None
    row: EventRow | None = None


class StoredChecks(NamedTuple):
    """What :func:`stored_checked` makes of a subject's copy rows (see there)."""

    copies: list[tuple[str, CheckedEvent]]
    messages: list[bytes]
    missing: list[tuple[int, FactsRow]]
    unchecked: list[tuple[int, int]]


def parse_event(event: Any) -> Any:
    """A copy as a :func:`loads` tree: bytes, JSON text or a path are read by the rule of
    :func:`~pith_graph.documents.read_json`, other values normalised."""
    if isinstance(event, (bytes, bytearray, memoryview, str, os.PathLike)):
        return read_json(event)
    # A value the caller built: round trip through the reference rule, so that a
    # plain float is printed as the canonical rule prints it (canonical.py).
    return loads(canonical_json(event))


def stored_checked(subject: str, rows: Sequence[CopyRow], known: Mapping[int, str | None]) -> StoredChecks:
    """The stage-1 outcome of every stored copy, from its facts row (never parsing the copy).

    Returns (unit id, outcome) pairs for :func:`~pith_graph.merge.merge_copies`:
    final where the intrinsic checks failed or ``known`` holds the copy's key
    verdict under the caller's keys, intrinsic otherwise. Also the messages those
    remaining copies sign (to prefetch their signature verdicts), the facts
    computed for copies that lacked them (stored under schema v1), to be written
    back, and the (index, seq) of the copies whose key checks remain.
    """
    # The hot loop of a warm replay: locals only, one decode and one CheckedEvent per copy.
    copies: list[tuple[str, CheckedEvent]] = []
    messages: list[bytes] = []
    missing: list[tuple[int, FactsRow]] = []
    unchecked: list[tuple[int, int]] = []
    key_verdict_reasons = _KEY_VERDICTS
    add_copy, add_message, decode, progress_of = (
        copies.append,
        messages.append,
        _FACTS_DECODER.decode,
        _PROGRESS,
    )
    malformed = codes.REASON_MALFORMED
    for seq, uid, digest, reason, blob, signer, payload, body, _row in rows:
        if body is None:
            try:
                progress = progress_of[reason]
                facts = None if blob is None else decode(blob)
            except (KeyError, msgspec.DecodeError) as exc:
                raise StoreError(
                    f"event_facts row {seq} is unreadable ({exc!r})", code=codes.E_STORE_CORRUPT
                ) from exc
            if (facts is None) != (reason == malformed):
                raise StoreError(f"event_facts row {seq} contradicts itself", code=codes.E_STORE_CORRUPT)
            checked = CheckedEvent(uid, None, reason, progress, facts, signer or b"", payload or b"", digest)
        else:
            inspected = inspect_event(loads(body), subject=subject, uid=uid)
            missing.append((seq, FactsRow.of(body, inspected)))
            reason, facts = inspected.reason, inspected.facts
            checked = CheckedEvent(
                uid,
                None,
                reason,
                inspected.progress,
                facts,
                inspected.signer_json,
                inspected.payload_json,
                digest,
            )
        if reason is None:
            assert facts is not None  # a copy passing the intrinsic checks is well formed
            if seq in known:
                verdict = known[seq]
                if verdict not in key_verdict_reasons:
                    raise StoreError(
                        f"key verdict of row {seq} is unreadable ({verdict!r})", code=codes.E_STORE_CORRUPT
                    )
                checked = checked.with_reason(verdict)
            else:
                unchecked.append((len(copies), seq))
                add_message(facts.message)  # merge-v1 §3: the 32 raw bytes of content_sha256
        add_copy((uid, checked))
    return StoredChecks(copies, messages, missing, unchecked)


def as_is(uid: str, checked: CheckedEvent) -> CheckedEvent:
    """The ``inspect`` of :func:`~pith_graph.merge.merge_copies` for outcomes read from the store."""
    return checked


def join_bodies(bodies: Iterable[bytes]) -> Any:
    """Parse many canonical bodies with one strict parse (a JSON array)."""
    return loads(b"[" + b",".join(bodies) + b"]")
