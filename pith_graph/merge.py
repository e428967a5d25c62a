"""merge-v1: the deterministic merge of a set of signed events into a state.

:func:`merge` is a pure function of (the set of events, the subject, the
bundle aliases, the trusted keys): input order and duplicate copies never change
its result. The rules, with their reason codes, are normative in
docs/merge-v1.md; each step below cites the section it implements.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pith_graph import codes
from pith_graph.canonical import canonical_lines
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError
from pith_graph.events import (
    COLLECTIONS,
    RECORD_CREATED,
    CheckedEvent,
    EventFacts,
    check_keys,
    inspect_event,
    unit_id,
)
from pith_graph.keys import KeyRing, TrustedKeys, coerce_ring
from pith_graph.state import Entry, State

_C = TypeVar("_C")

__all__ = ["MergeResult", "merge", "merge_checked", "merge_copies"]


@dataclass(frozen=True, slots=True)
class MergeResult:
    """A state plus the per-unit verdicts that produced it (for reports and the store)."""

    state: State
    units: dict[str, CheckedEvent]
    reasons: dict[str, str]


def _best_copy(copies: list[CheckedEvent]) -> CheckedEvent:
    """merge-v1 §5: a valid copy if any, else the one that got furthest.

    Copies failing at the same check share the reason; the tie is broken by the
    canonical bytes of the copy so that the representative never depends on input order.
    """
    return max(copies, key=lambda c: (c.progress, c.canonical_digest()))


def _check_all(
    copies: Iterable[tuple[str, _C]],
    inspect: Callable[[str, _C], CheckedEvent],
    subject: str,
    keyring: KeyRing,
    verifier: Verifier,
) -> dict[str, CheckedEvent]:
    """Stage 1 over every copy; one representative per unit id."""
    units: dict[str, CheckedEvent] = {}
    extra: dict[str, list[CheckedEvent]] = {}
    for uid, copy in copies:
        known = units.get(uid)
        if known is not None and known.valid:
            continue  # a valid copy already stands for the unit: later copies change nothing
        checked = check_keys(inspect(uid, copy), subject=subject, keyring=keyring, verifier=verifier)
        if known is None:
            units[uid] = checked
        else:
            extra.setdefault(uid, [known]).append(checked)
    for uid, copies_of_unit in extra.items():
        units[uid] = _best_copy(copies_of_unit)
    return units


def _visiting(units: dict[str, CheckedEvent], order: Iterable[str]) -> Iterator[tuple[str, CheckedEvent]]:
    """Each item of ``units`` once: those ``order`` names first, then the rest in their own order.

    Once each matters: a unit visited again while it waits would wait twice.
    """
    seen: set[str] = set()
    for uid in order:
        checked = units.get(uid)
        if checked is not None and uid not in seen:
            seen.add(uid)
            yield uid, checked
    if len(seen) < len(units):
        for uid, checked in units.items():
            if uid not in seen:
                yield uid, checked


def _resolve_history(units: dict[str, CheckedEvent], order: Iterable[str] | None = None) -> dict[str, str]:
    """merge-v1 §7 (stage 2): the final reason of every invalid unit.

    Every named event is decided before its namer, whatever the order of
    ``units``: a unit whose named events are all decided is decided at once,
    and so then is every unit that was waiting for it (histories may be 100,000
    events long, so no recursion); other units wait. What still waits at the end
    names a hash cycle, or an event behind one.

    ``order`` (unit ids) is visited first when given: a hint, never a change of
    result. Visited in the bundle's order, a stream's events are decided as they
    come; out of order, most of them wait for their predecessor first, which
    costs more (docs/performance.md, "Figures behind the code").
    """
    reasons: dict[str, str] = {uid: c.reason for uid, c in units.items() if c.reason is not None}
    done: set[str] = set(reasons)
    # Units waiting for an undecided unit: the one unit naming it as its only named
    # event (the usual case, the next event of a stream: no list, no count), and the
    # others, with how many undecided units each still waits for (none kept: one).
    follower: dict[str, str] = {}
    waiters: dict[str, list[str]] = {}
    undecided: dict[str, int] = {}

    def decide(uid: str) -> None:
        done.add(uid)
        facts = units[uid].facts
        assert facts is not None  # stage-1 valid units are well formed
        reason = _history_reason(facts, units, reasons, done)
        if reason is not None:
            reasons[uid] = reason

    def release(decided: str) -> None:
        """Decide every unit that was waiting only for ``decided``, and so on."""
        stack = [decided]
        while stack:
            uid = stack.pop()
            after = follower.pop(uid, None)
            if after is not None:
                decide(after)
                stack.append(after)
            for waiter in waiters.pop(uid, ()):
                left = undecided.pop(waiter, 1) - 1
                if left:
                    undecided[waiter] = left
                    continue
                decide(waiter)
                stack.append(waiter)

    for uid, checked in units.items() if order is None else _visiting(units, order):
        if uid in done:
            continue  # decided already, as a waiter
        facts = checked.facts
        assert facts is not None
        prev = facts.prev_event
        if not facts.supersedes:
            if prev is not None and prev not in done and prev in units:
                if follower.setdefault(prev, uid) is not uid:  # a fork: two wait for prev
                    waiters.setdefault(prev, []).append(uid)
                continue
        else:
            named = {dep for dep in _named(facts) if dep in units and dep not in done}
            if named:
                for dep in named:
                    waiters.setdefault(dep, []).append(uid)
                if len(named) > 1:
                    undecided[uid] = len(named)
                continue
        done.add(uid)  # decide(uid), written out: this is the usual path
        reason = _history_reason(facts, units, reasons, done)
        if reason is not None:
            reasons[uid] = reason
        if uid in follower or uid in waiters:
            release(uid)

    # merge-v1 §7: a unit on a cycle (or behind one) is invalid with the reason of its first
    # check naming an undecided event; all are judged before any counts as decided.
    cyclic = {uid: checked.facts for uid, checked in units.items() if uid not in done}
    found = {
        uid: _history_reason(facts, units, reasons, done)
        for uid, facts in cyclic.items()
        if facts is not None
    }
    for uid, reason in found.items():
        assert reason is not None  # each names an undecided unit
        reasons[uid] = reason
    done.update(found)
    return reasons


def _named(facts: EventFacts) -> tuple[str, ...]:
    """The events an event names: its ``prev_event`` and its ``supersedes``."""
    return facts.supersedes if facts.prev_event is None else (facts.prev_event, *facts.supersedes)


def _history_reason(
    facts: EventFacts, units: dict[str, CheckedEvent], reasons: dict[str, str], done: set[str]
) -> str | None:
    """The first failing history check of a stage-1-valid event, or None.

    A named event is invalid when it has a reason or is not decided yet (it
    is on a cycle). Written out inline: this runs once per event.
    """
    prev = facts.prev_event
    if prev is not None:
        named = units.get(prev)
        if named is None:
            return codes.REASON_MISSING_PREV_EVENT
        # merge-v1 §7: a stream is (target, signer_id); prev_event stays in its stream.
        # Only an authenticated (stage-1 valid) predecessor has a stream to compare.
        named_facts = named.facts
        if (
            named.valid
            and named_facts is not None
            and (named_facts.target != facts.target or named_facts.signer_id != facts.signer_id)
        ):
            return codes.REASON_PREV_EVENT_STREAM_MISMATCH
        if prev in reasons or prev not in done:
            return codes.REASON_PREV_EVENT_INVALID
    for superseded in facts.supersedes:
        named = units.get(superseded)
        if (
            named is None
            or superseded in reasons
            or superseded not in done
            or named.facts is None
            or named.facts.signer_id != facts.signer_id
            or named.facts.event_type == RECORD_CREATED
        ):
            return codes.REASON_BAD_SUPERSEDES
    return None


def _equivocations(valid: dict[str, EventFacts]) -> tuple[list[dict[str, Any]], set[str]]:
    """merge-v1 §8: valid events of one stream naming one predecessor.

    Grouped by ``prev_event`` alone (roots by their stream): after stage 2 a valid
    event's predecessor is valid and of its own stream, so events naming one
    predecessor are of one stream already, and a string key is far cheaper than a
    (target, signer_id, prev_event) tuple.
    """
    first: dict[str | tuple[str, str], str] = {}
    forks: dict[str | tuple[str, str], list[str]] = {}
    for uid, facts in valid.items():
        prev = facts.prev_event
        point = prev if prev is not None else (facts.target, facts.signer_id)
        other = first.setdefault(point, uid)
        if other is not uid:
            forks.setdefault(point, [other]).append(uid)
    records: list[dict[str, Any]] = []
    frozen: set[str] = set()
    for uids in forks.values():
        facts = valid[uids[0]]
        records.append(
            {
                "event_ids": sorted(uids),
                "prev_event": facts.prev_event,
                "signer_id": facts.signer_id,
                "target": facts.target,
            }
        )
        frozen.update(uids)
    records.sort(key=lambda r: (r["target"], r["signer_id"], r["prev_event"] or ""))
    return records, frozen


#: An event's place in the apply order: (0 for record_created else 1, seconds, nanoseconds, event_id).
_ApplyKey = tuple[int, int, int, str]


def _apply_order(valid: dict[str, EventFacts], frozen: set[str]) -> list[str]:
    """merge-v1 §9: topological over prev_event and supersedes edges.

    Ready events leave in (record_created first, created_at as an instant,
    event_id) order. An event is ready once every event it names is applied, so
    nothing behind a fork (or behind anything unapplied) is ever applied. The
    keys are unique (they end with the event id), so a binary heap pops exactly
    the sorted order.
    """
    waiting: dict[str, int] = {}
    # The key of the one event naming an event as its only predecessor (the usual case:
    # the next event of a stream; two would be a fork, and frozen), made while its facts
    # are at hand; then every other namer.
    follower: dict[str, _ApplyKey] = {}
    waiters: dict[str, list[str]] = defaultdict(list)
    ready: list[_ApplyKey] = []

    def key(uid: str) -> _ApplyKey:
        # Flat (not nested) tuples: the heap compares them often.
        facts = valid[uid]
        seconds, nanos = facts.instant
        return (0 if facts.event_type == RECORD_CREATED else 1, seconds, nanos, uid)

    for uid, facts in valid.items():
        if uid in frozen:
            continue
        if not facts.supersedes:
            seconds, nanos = facts.instant
            item = (0 if facts.event_type == RECORD_CREATED else 1, seconds, nanos, uid)  # key(uid), inline
            prev = facts.prev_event
            if prev is None:
                ready.append(item)
            elif follower.setdefault(prev, item) is not item:  # ready once prev is applied (no count kept)
                waiters[prev].append(uid)
            continue
        named = set(_named(facts))
        waiting[uid] = len(named)
        for dep in named:
            waiters[dep].append(uid)
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        uid = ready[0][3]  # the least ready key: this event is applied next
        order.append(uid)
        after = follower.get(uid)
        spent = after is None  # ready[0] is still uid's key
        if after is not None:  # one sift, not a pop and a push
            heapq.heapreplace(ready, after)
        for waiter in waiters.get(uid, ()):
            left = waiting.get(waiter, 1) - 1
            if left:
                waiting[waiter] = left
            elif spent:
                heapq.heapreplace(ready, key(waiter))
                spent = False
            else:
                heapq.heappush(ready, key(waiter))
        if spent:
            heapq.heappop(ready)
    return order


def _aliases(aliases: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """merge-v1 §10: de-duplicated, sorted by (alias_kind, alias_value), keys sorted."""
    items: list[dict[str, Any]] = []
    for alias in aliases:
        if not (
            (type(alias) is dict or isinstance(alias, Mapping))
            and isinstance(alias.get("alias_kind"), str)
            and isinstance(alias.get("alias_value"), str)
        ):
            raise InputError("each source alias needs string alias_kind and alias_value", code=codes.E_SHAPE)
        items.append(alias if type(alias) is dict else dict(alias))
    # Encoded in one call (a bundle lists about six).
    unique = dict(
        zip(canonical_lines(items), [(a["alias_kind"], a["alias_value"]) for a in items], strict=True)
    )
    return sorted(unique, key=lambda blob: (unique[blob], blob))


def merge_copies(
    copies: Iterable[tuple[str, _C]],
    inspect: Callable[[str, _C], CheckedEvent],
    *,
    subject: str,
    aliases: Iterable[Mapping[str, Any]] = (),
    trusted_keys: TrustedKeys = None,
    verifier: Verifier | None = None,
    bundle_order: Iterable[str] | None = None,
) -> MergeResult:
    """The merge over copies in any form: ``inspect(unit_id, copy)`` runs the
    intrinsic stage-1 checks of a copy (:func:`pith_graph.events.inspect_event`,
    or the event store's stored facts); the key checks and stages 2-4 run here.

    ``bundle_order``: unit ids in the order the copies appear in their bundle, when
    ``copies`` come in another order (read only after ``copies``). A hint for
    speed: the result is the same with any order, or none. ``trusted_keys``: as for
    :func:`merge`.
    """
    verifier = verifier or Verifier()
    units = _check_all(copies, inspect, subject, coerce_ring(trusted_keys), verifier)
    reasons = _resolve_history(units, bundle_order)
    valid = {uid: c.facts for uid, c in units.items() if uid not in reasons and c.facts is not None}
    equivocations, frozen = _equivocations(valid)
    order = _apply_order(valid, frozen)

    collections: dict[str, dict[str, Entry]] = {name: {} for name in COLLECTIONS.values()}
    record_created: Entry | None = None
    creator: CheckedEvent | None = None
    for uid in order:
        checked = units[uid]
        facts = checked.facts
        assert facts is not None  # valid[uid], without a second lookup
        for superseded in facts.supersedes:
            # merge-v1 §9: supersedes removes the named events from current (they stay applied).
            for collection in collections.values():
                collection.pop(superseded, None)
        entry = Entry(uid, facts.target, facts.created_at, checked.signer_json, checked.payload_json)
        if facts.event_type == RECORD_CREATED:
            # The latest applied record_created is current.
            record_created, creator = entry, checked
        else:
            collections[COLLECTIONS[facts.event_type]][uid] = entry

    state = State(
        pith_number=subject,
        valid_event_count=len(valid),
        invalid_events=[{"event_id": uid, "reason": reasons[uid]} for uid in sorted(reasons)],
        equivocations=equivocations,
        applied_event_ids=order,
        canonical_record=None if creator is None else creator.canonical_record_json(),
        source_aliases=_aliases(aliases),
        collections={name: list(entries.values()) for name, entries in collections.items()},
        record_created=record_created,
    )
    return MergeResult(state, units, reasons)


def _inspector(subject: str) -> Callable[[str, Any], CheckedEvent]:
    def inspect(uid: str, raw: Any) -> CheckedEvent:
        return inspect_event(raw, subject=subject, uid=uid)

    return inspect


def merge_checked(
    events: Iterable[Any],
    *,
    subject: str,
    aliases: Iterable[Mapping[str, Any]] = (),
    trusted_keys: TrustedKeys = None,
    verifier: Verifier | None = None,
) -> MergeResult:
    """:func:`merge`, also returning every unit's representative copy and reason."""
    return merge_copies(
        ((unit_id(raw), raw) for raw in events),
        _inspector(subject),
        subject=subject,
        aliases=aliases,
        trusted_keys=trusted_keys,
        verifier=verifier,
    )


def merge(
    events: Iterable[Any],
    *,
    subject: str,
    aliases: Iterable[Mapping[str, Any]] = (),
    trusted_keys: TrustedKeys = None,
    verifier: Verifier | None = None,
) -> State:
    """Merge a set of events (parsed JSON values, as received) into a merge-v1 state.

    ``events`` must come from :func:`pith_graph.canonical.loads` (or
    :func:`pith_graph.documents.normalize`): hashes are taken over them as they are.
    ``trusted_keys``: a :class:`~pith_graph.keys.KeyRing` or key entries (default:
    the registry key alone), as for :func:`pith_graph.rebuild_state`.
    """
    return merge_checked(
        events, subject=subject, aliases=aliases, trusted_keys=trusted_keys, verifier=verifier
    ).state
