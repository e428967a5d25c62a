"""merge-v1: the deterministic merge of a set of signed events into a state.

:func:`merge` is a pure function of (the set of events, the subject, the
bundle aliases, the trusted keys): input order and duplicate copies never change
its result. The rules, with their reason codes, are normative in
docs/merge-v1.md; each step below cites the section it implements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedList

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed, sha256_hex
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError
from pith_graph.events import COLLECTIONS, RECORD_CREATED, CheckedEvent, check_event, unit_id
from pith_graph.keys import KeyRing
from pith_graph.models import Event
from pith_graph.state import Entry, State

__all__ = ["MergeResult", "merge", "merge_checked"]


@dataclass(frozen=True, slots=True)
class MergeResult:
    """A state plus the per-unit verdicts that produced it (for reports and the store)."""

    state: State
    units: dict[str, CheckedEvent]
    reasons: dict[str, str]


def _best_copy(copies: list[CheckedEvent]) -> CheckedEvent:
    """merge-v1 "Units and copies": a valid copy if any, else the one that got furthest.

    Copies failing at the same check share the reason; the tie is broken by the
    canonical bytes of the copy so that the representative never depends on input order.
    """
    return max(copies, key=lambda c: (c.progress, sha256_hex(canonical_json_parsed(c.raw))))


def _check_all(
    events: Iterable[Any], subject: str, keyring: KeyRing, verifier: Verifier
) -> dict[str, CheckedEvent]:
    """Stage 1 over every copy; one representative per unit id."""
    units: dict[str, CheckedEvent] = {}
    extra: dict[str, list[CheckedEvent]] = {}
    for raw in events:
        uid = unit_id(raw)
        known = units.get(uid)
        if known is not None and known.valid:
            continue  # a valid copy already stands for the unit: later copies change nothing
        checked = check_event(raw, subject=subject, keyring=keyring, verifier=verifier, uid=uid)
        if known is None:
            units[uid] = checked
        else:
            extra.setdefault(uid, [known]).append(checked)
    for uid, copies in extra.items():
        units[uid] = _best_copy(copies)
    return units


def _resolve_history(units: dict[str, CheckedEvent]) -> dict[str, str]:
    """Stage 2 (docs/merge-v1.md "History checks"): the final reason of every invalid unit.

    Walks ``prev_event`` and ``supersedes`` edges iteratively (histories may be
    100,000 events long), so every named event is decided before its namer.
    """
    reasons: dict[str, str] = {uid: c.reason for uid, c in units.items() if c.reason is not None}
    done: set[str] = set(reasons)
    on_path: set[str] = set()

    def deps(event: Event) -> list[str]:
        named = [event.prev_event] if event.prev_event is not None else []
        return named + event.supersedes

    for start in units:
        if start in done:
            continue
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            uid, expanded = stack.pop()
            if uid in done:
                continue
            event = units[uid].event
            assert event is not None  # stage-1 valid units are well formed
            if not expanded:
                on_path.add(uid)
                stack.append((uid, True))
                for dep in deps(event):
                    # A dependency on the current path would be a hash cycle; it is
                    # left undecided here and so counts as invalid below.
                    if dep in units and dep not in done and dep not in on_path:
                        stack.append((dep, False))
                continue
            on_path.discard(uid)
            done.add(uid)
            reason = _history_reason(event, units, reasons, done)
            if reason is not None:
                reasons[uid] = reason
    return reasons


def _history_reason(
    event: Event, units: dict[str, CheckedEvent], reasons: dict[str, str], done: set[str]
) -> str | None:
    """The first failing history check of a stage-1-valid event, or None."""

    def invalid(uid: str) -> bool:
        return uid in reasons or uid not in done

    prev = event.prev_event
    if prev is not None:
        named = units.get(prev)
        if named is None:
            return codes.REASON_MISSING_PREV_EVENT
        # merge-v1: a stream is (target, signer_id); prev_event stays in its stream.
        # Only an authenticated (stage-1 valid) predecessor has a stream to compare.
        if named.valid and named.stream != (event.target, event.signer.signer_id):
            return codes.REASON_PREV_EVENT_STREAM_MISMATCH
        if invalid(prev):
            return codes.REASON_PREV_EVENT_INVALID
    for superseded in event.supersedes:
        named = units.get(superseded)
        if (
            named is None
            or invalid(superseded)
            or named.event is None
            or named.event.signer.signer_id != event.signer.signer_id
            or named.event.event_type == RECORD_CREATED
        ):
            return codes.REASON_BAD_SUPERSEDES
    return None


def _equivocations(valid: dict[str, Event]) -> tuple[list[dict[str, Any]], set[str]]:
    """merge-v1 "Equivocation": valid events of one stream naming one predecessor."""
    by_fork_point: dict[tuple[str, str, str | None], list[str]] = defaultdict(list)
    for uid, event in valid.items():
        by_fork_point[(event.target, event.signer.signer_id, event.prev_event)].append(uid)
    records: list[dict[str, Any]] = []
    frozen: set[str] = set()
    for (target, signer_id, prev), uids in by_fork_point.items():
        if len(uids) > 1:
            records.append({"event_ids": sorted(uids), "prev_event": prev, "signer_id": signer_id, "target": target})
            frozen.update(uids)
    records.sort(key=lambda r: (r["target"], r["signer_id"], r["prev_event"] or ""))
    return records, frozen


def _apply_order(valid: dict[str, Event], units: dict[str, CheckedEvent], frozen: set[str]) -> list[str]:
    """merge-v1 "Apply order": topological over prev_event and supersedes edges.

    Ready events leave in (record_created first, created_at as an instant,
    event_id) order. An event is ready once every event it names is applied, so
    nothing behind a fork (or behind anything unapplied) is ever applied.
    """
    waiting: dict[str, int] = {}
    waiters: dict[str, list[str]] = defaultdict(list)
    ready: SortedList = SortedList()

    def key(uid: str) -> tuple[int, tuple[int, int], str]:
        event = valid[uid]
        instant = units[uid].instant
        assert instant is not None
        return (0 if event.event_type == RECORD_CREATED else 1, instant, uid)

    for uid, event in valid.items():
        if uid in frozen:
            continue
        named = set(event.supersedes)
        if event.prev_event is not None:
            named.add(event.prev_event)
        waiting[uid] = len(named)
        for dep in named:
            waiters[dep].append(uid)
        if not named:
            ready.add(key(uid))
    order: list[str] = []
    while ready:
        uid = ready.pop(0)[2]
        order.append(uid)
        for waiter in waiters.get(uid, ()):
            waiting[waiter] -= 1
            if waiting[waiter] == 0:
                ready.add(key(waiter))
    return order


def _entry(uid: str, event: Event, raw: dict[str, Any]) -> Entry:
    return Entry(
        event_id=uid,
        target=event.target,
        created_at=event.created_at,
        signer=canonical_json_parsed(raw["signer"]),
        payload=canonical_json_parsed(raw["payload"]),
    )


def _aliases(aliases: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """merge-v1 "Aliases": de-duplicated, sorted by (alias_kind, alias_value), keys sorted."""
    unique: dict[bytes, tuple[str, str]] = {}
    for alias in aliases:
        if not (
            isinstance(alias, Mapping)
            and isinstance(alias.get("alias_kind"), str)
            and isinstance(alias.get("alias_value"), str)
        ):
            raise InputError("each source alias needs string alias_kind and alias_value", code=codes.E_SHAPE)
        unique[canonical_json_parsed(dict(alias))] = (alias["alias_kind"], alias["alias_value"])
    return sorted(unique, key=lambda blob: (unique[blob], blob))


def merge_checked(
    events: Iterable[Any],
    *,
    subject: str,
    aliases: Iterable[Mapping[str, Any]] = (),
    keyring: KeyRing,
    verifier: Verifier | None = None,
) -> MergeResult:
    """:func:`merge`, also returning every unit's representative copy and reason."""
    verifier = verifier or Verifier()
    units = _check_all(events, subject, keyring, verifier)
    reasons = _resolve_history(units)
    valid = {uid: c.event for uid, c in units.items() if uid not in reasons and c.event is not None}
    equivocations, frozen = _equivocations(valid)
    order = _apply_order(valid, units, frozen)

    collections: dict[str, dict[str, Entry]] = {name: {} for name in COLLECTIONS.values()}
    record_created: Entry | None = None
    canonical_record: bytes | None = None
    for uid in order:
        event, raw = valid[uid], units[uid].raw
        for superseded in event.supersedes:
            # merge-v1: supersedes removes the named events from current (they stay applied).
            for collection in collections.values():
                collection.pop(superseded, None)
        entry = _entry(uid, event, raw)
        if event.event_type == RECORD_CREATED:
            # The latest applied record_created is current.
            record_created = entry
            canonical_record = canonical_json_parsed(event.payload["canonical_record"])
        else:
            collections[COLLECTIONS[event.event_type]][uid] = entry

    state = State(
        pith_number=subject,
        valid_event_count=len(valid),
        invalid_events=[{"event_id": uid, "reason": reasons[uid]} for uid in sorted(reasons)],
        equivocations=equivocations,
        applied_event_ids=order,
        canonical_record=canonical_record,
        source_aliases=_aliases(aliases),
        collections={name: list(entries.values()) for name, entries in collections.items()},
        record_created=record_created,
    )
    return MergeResult(state, units, reasons)


def merge(
    events: Iterable[Any],
    *,
    subject: str,
    aliases: Iterable[Mapping[str, Any]] = (),
    keyring: KeyRing,
    verifier: Verifier | None = None,
) -> State:
    """Merge a set of events (parsed JSON values, as received) into a merge-v1 state.

    ``events`` must come from :func:`pith_graph.canonical.loads` (or
    :func:`pith_graph.documents.normalize`): hashes are taken over them as they are.
    """
    return merge_checked(events, subject=subject, aliases=aliases, keyring=keyring, verifier=verifier).state
