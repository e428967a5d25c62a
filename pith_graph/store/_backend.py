"""The storage interface of :class:`~pith_graph.store.EventStore`, and the signature cache kept through it.

A backend stores sets of rows, append-only, and converts its driver's errors to
:class:`~pith_graph.errors.StoreError` where they arise (house rule 3). Everything
above it (stage 1, the merge, export) is the same whatever the database:
:class:`~pith_graph.store._sqlite.SQLiteBackend` is the one shipped; another
database is one more class with these methods, run by the same contract tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Final, NamedTuple, Protocol, TypeVar

from pith_graph import codes
from pith_graph.errors import StoreError
from pith_graph.store._facts import CheckedRow, CopyRow, EventRow, FactsRow, ItemRow, KeyVerdict, Ring
from pith_graph.store._queries import CHANGED_EVENTS, CHANGED_ITEMS, NEW_RECORDS

__all__ = [
    "ADDED",
    "AUDIT_TABLES",
    "PRESENT",
    "REFUSED",
    "UNIT_STORED",
    "UNSETTLED",
    "Backend",
    "SignatureVerdict",
    "StoreChanges",
    "StoredSignatureCache",
    "Triple",
    "changes_in",
    "ordered_bodies",
    "stored_once",
    "while_busy",
]

_T = TypeVar("_T")

# What :meth:`Backend.add_checked` did with each event row.
#: Stored.
ADDED: Final = "added"
#: Not stored: this exact copy (same bytes) already is.
PRESENT: Final = "present"
#: Not stored: a copy valid under the ring, and the unit already has a stored copy valid under it
#: (docs/merge-v1.md, "A unit is stored once").
UNIT_STORED: Final = "unit_stored"
#: Not stored: a copy valid under the ring whose unit has stored copies never checked under it;
#: the caller checks them (keeping their verdicts) and tries again.
UNSETTLED: Final = "unsettled"
#: Not stored: it fails stage 1 and the caller keeps no evidence (network and sync input).
REFUSED: Final = "refused"

#: Tables :meth:`Backend.audit` reads, with the columns of each row it yields.
AUDIT_TABLES: Final = {
    "events": (
        "seq",
        "subject",
        "unit_id",
        "digest",
        "body",
        "event_type",
        "target",
        "signer_id",
        "prev_event",
        "created_at",
    ),
    "items": ("seq", "subject", "kind", "digest", "body"),
    "event_facts": (
        "seq",
        "rule",
        "reason",
        "facts",
        "signer_at",
        "signer_len",
        "signer_json",
        "payload_at",
        "payload_len",
        "payload_json",
    ),
    "key_verdicts": ("ring", "seq", "reason"),
    "key_rings": ("ring", "entries"),
    "signature_cache": ("public_key", "signature", "message", "valid"),
}

#: (public key, signature, message): what an Ed25519 verdict is a pure function of.
Triple = tuple[bytes, bytes, bytes]


class SignatureVerdict(NamedTuple):
    """One kept verdict of the pinned Ed25519 rule."""

    public_key: bytes
    signature: bytes
    message: bytes
    valid: bool


class StoreChanges(NamedTuple):
    """What was committed past a point of the store sequence (:meth:`Backend.changes`).

    ``events`` and ``items``: per subject with new rows, its largest new seq;
    ``records``: the new ``record`` items (subject, canonical body), in seq order.
    """

    events: list[tuple[str, int]]
    items: list[tuple[str, int]]
    records: list[tuple[str, bytes]]


def changes_in(
    execute: Callable[[str, tuple[int]], Iterable[Sequence[Any]]], events_after: int, items_after: int
) -> StoreChanges:
    """:meth:`Backend.changes` through one snapshot's ``execute(sql, params)`` (``?`` placeholders)."""
    events = [(str(s), int(q)) for s, q in execute(CHANGED_EVENTS, (events_after,))]
    items = [(str(s), int(q)) for s, q in execute(CHANGED_ITEMS, (items_after,))]
    records = [(str(s), bytes(b)) for s, b in execute(NEW_RECORDS, (items_after,))]
    return StoreChanges(events, items, records)


def stored_once(
    events: Sequence[EventRow],
    checked: Sequence[CheckedRow],
    held: Callable[[list[tuple[str, str]]], Iterable[tuple[str, str, str, bool, bool]]],
    *,
    keep_invalid: bool,
) -> list[str | None]:
    """The rule of :meth:`Backend.add_checked` (docs/merge-v1.md, "A unit is stored once"), the same for
    every backend: per event row, in order, why it is not stored, or None to store it.

    ``held(units)``: each stored copy of these (subject, unit id) pairs, as (subject, unit id,
    digest, valid, unsettled), read by the backend in its write transaction: ``valid``, its key
    verdict kept under the ring is None; ``unsettled``, it has none there but passed the
    intrinsic checks (or lacks facts). A row sees the rows stored before it.
    """
    valid: set[tuple[str, str]] = set()
    unsettled: dict[tuple[str, str], set[str]] = {}
    units = sorted(
        {(row.subject, row.unit_id) for row, c in zip(events, checked, strict=True) if c.reason is None}
    )
    for subject, uid, digest, is_valid, is_unsettled in held(units) if units else ():
        if is_valid:
            valid.add((subject, uid))
        if is_unsettled:
            unsettled.setdefault((subject, uid), set()).add(digest)
    decided: list[str | None] = []
    for row, (_, reason, keyed) in zip(events, checked, strict=True):
        unit = (row.subject, row.unit_id)
        if reason is not None and not keep_invalid:
            decided.append(REFUSED)
        elif reason is None and unit in valid:
            decided.append(UNIT_STORED)
        elif reason is None and unsettled.get(unit):
            decided.append(UNSETTLED)
        else:
            decided.append(None)
            # A stored keyed row has its verdict kept under the ring, so the copy is settled. A row
            # not keyed failed the intrinsic checks: it is never unsettled, whatever it stores.
            if keyed:
                unsettled.get(unit, set()).discard(row.digest)
                if reason is None:
                    valid.add(unit)
    return decided


def ordered_bodies(seqs: Sequence[int], found: dict[int, bytes]) -> list[bytes]:
    """:meth:`Backend.bodies` from what a backend read (``seq`` to body): in the order of ``seqs``."""
    try:
        return [found[seq] for seq in seqs]
    except KeyError as exc:
        raise StoreError(f"no stored copy has seq {exc.args[0]}", code=codes.E_STORE_CORRUPT) from None


def while_busy(attempt: Callable[[], _T], timeout: float) -> _T:
    """``attempt()``, tried again after a growing, jittered pause while it raises ``store_busy``
    (another writer holds the lock), for at most ``timeout`` seconds; then its last error."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return attempt()
        except StoreError as exc:
            if exc.code != codes.E_STORE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay * (1 + random.random()))
        delay = min(delay * 2, 0.2)


class Backend(Protocol):
    """What :class:`~pith_graph.store.EventStore` needs from storage: sets of rows, append-only.

    Every method is atomic (one transaction, or part of the enclosing
    :meth:`transaction`) and raises only
    :class:`~pith_graph.errors.StoreError` for storage failures. ``read_only``: the
    database was opened read-only; the store then calls no method that writes.

    Writers of events and items commit one at a time, and ``events.seq`` and
    ``items.seq`` grow in commit order: the pair of largest seqs is the **store
    sequence**, a change counter that any process sharing the database reads to
    learn that something was committed (:meth:`store_sequence`) and what
    (:meth:`changes`). A mirror's caches are invalidated by it across processes
    and machines (docs/store.md, "Several servers, one database").
    """

    read_only: bool

    def transaction(self) -> AbstractContextManager[None]:
        """Run the calls made inside as one durable transaction, committed on a normal exit.

        Every method called inside joins it instead of committing on its own, and
        reads inside see the writes made before them; an exception (or a crash)
        loses everything written inside, nothing written before. Nested use is a
        savepoint of the outer transaction: an exception inside undoes only what
        was written inside it. For batches: one commit for many bundles, each
        bundle all or nothing.
        """

    @property
    def schema_version(self) -> int:
        """The version of the backend's own schema (each backend numbers its own)."""

    def add(
        self, events: Sequence[EventRow], items: Sequence[ItemRow], facts: Sequence[FactsRow] | None = None
    ) -> list[bool]:
        """Store event rows, their facts and items atomically; per event row, whether it was new.

        ``facts[i]`` is :meth:`FactsRow.of` the ``i``-th row (computed from the body when not given).
        """

    def add_checked(
        self,
        events: Sequence[EventRow],
        items: Sequence[ItemRow],
        checked: Sequence[CheckedRow],
        ring: Ring,
        *,
        keep_invalid: bool,
    ) -> list[str]:
        """Store event rows checked under ``ring``, with their facts, key verdicts and items, atomically.

        Per event row, in order (so a row sees the rows before it), as :func:`stored_once`
        decides: a row valid under
        the ring (``reason`` None) is :data:`UNIT_STORED` when a stored copy of its
        (subject, unit id) has a kept verdict None under the ring, :data:`UNSETTLED`
        when one passed the intrinsic checks (or lacks facts) but has no verdict kept
        under the ring, else stored; an invalid row is stored only with ``keep_invalid``
        (else :data:`REFUSED`). A stored row is :data:`ADDED` (:data:`PRESENT` when the
        same bytes were there). The ring is recorded, and the key verdict of every
        ``keyed`` row added or present is kept under it.
        """

    def add_items(self, items: Sequence[ItemRow]) -> int:
        """Store bundle-level items (a row already there is kept); how many were new."""

    def copies(
        self, subject: str, *, with_body: bool = False
    ) -> tuple[list[CopyRow], list[tuple[str, bytes]]]:
        """One snapshot of ``subject``: its copies joined with their facts (sorted by unit id, digest), and its items."""

    def add_facts(self, facts: Sequence[tuple[int, FactsRow]]) -> None:
        """Store facts computed for copies that lacked them (by ``seq``); a row already there is kept."""

    def key_verdicts(self, ring: str, subject: str) -> dict[int, str | None]:
        """The stored key verdicts of ``subject``'s copies under ``ring``, by ``seq``
        (none unless the ring is recorded: a verdict no one can re-derive is never read)."""

    def add_key_verdicts(self, ring: Ring, subject: str, verdicts: Sequence[KeyVerdict]) -> None:
        """Record ``ring`` and store key verdicts of ``subject``'s copies under it; a row already there is kept."""

    def event_rows(self, subject: str) -> list[EventRow]:
        """Every stored copy for ``subject``, sorted by (unit id, digest)."""

    def bodies(self, seqs: Sequence[int]) -> list[bytes]:
        """The stored bodies of the copies with these ``seq`` values, in the order given (for a
        streamed export, a chunk at a time); a seq no copy has is ``store_corrupt``."""

    def items(self, subject: str) -> list[tuple[str, bytes]]:
        """Every stored (kind, body) item of ``subject``, sorted by (kind, body)."""

    def subjects(self) -> list[str]:
        """Every subject with at least one event or item, sorted."""

    def signature_verdicts(self, messages: Sequence[bytes]) -> list[SignatureVerdict]:
        """Every kept signature verdict about one of ``messages`` (sorted, distinct)."""

    def signature_verdict(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """The kept verdict about one triple, or None."""

    def add_signature_verdicts(self, verdicts: Sequence[SignatureVerdict]) -> None:
        """Keep signature verdicts; a triple already kept is left as it is."""

    def store_sequence(self) -> tuple[int, int]:
        """(largest ``events.seq``, largest ``items.seq``): grows with every commit that stored something, by anyone."""

    def changes(self, events_after: int, items_after: int) -> StoreChanges:
        """In one snapshot, what was stored after the given store sequence."""

    def audit(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of one of the :data:`AUDIT_TABLES`, with its columns (for ``store check``)."""

    def integrity_check(self) -> list[str]:
        """The database's own consistency check: ``["ok"]`` when sound, else what it found."""

    def close(self) -> None:
        """Release the connection."""


class StoredSignatureCache:
    """:class:`pith_graph.ed25519.SignatureCache` kept in a store's backend.

    A verdict is a pure function of (public key, signature, message), so reusing
    it is safe whatever the trust of the replay that looks it up. New verdicts
    are buffered and written in one transaction by :meth:`flush` (one durable
    write per replay, not one per signature). ``hits`` and ``misses`` count lookups.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._pending: dict[Triple, bool] = {}
        self._prefetched: dict[Triple, bool] = {}
        #: Messages whose every kept verdict is in _prefetched: a miss there needs no query.
        self._complete: set[bytes] = set()
        #: Only prefetched verdicts are looked up (see :meth:`prefetched_only`).
        self._only_prefetched = False
        self.hits = 0
        self.misses = 0

    def prefetch(self, messages: Iterable[bytes]) -> None:
        """Load every stored verdict about these messages at once (kept until :meth:`forget`)."""
        # In key order: consecutive lookups share index pages.
        wanted = sorted(set(messages))
        found = self._backend.signature_verdicts(wanted)
        self._prefetched.update(((k, s, m), v) for k, s, m, v in found)
        self._complete.update(wanted)

    def forget(self) -> None:
        """Drop prefetched verdicts (they stay in the database)."""
        self._prefetched.clear()
        self._complete.clear()

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """The remembered verdict, or None."""
        key = (public_key, signature, message)
        known = self._prefetched.get(key)
        if known is None:
            known = self._pending.get(key)
        # A message prefetched without this triple has no kept verdict for it (a verdict
        # kept since by another process is only a lost saving: verifying is pure).
        if known is None and message not in self._complete and not self._only_prefetched:
            known = self._backend.signature_verdict(public_key, signature, message)
        if known is None:
            self.misses += 1
        else:
            self.hits += 1
        return known

    @contextmanager
    def prefetched_only(self) -> Iterator[None]:
        """Inside, a lookup not prefetched is a miss without a query (an import, whose few
        other signatures, such as a receipt's, cost about what a query would: verifying is pure)."""
        self._only_prefetched = True
        try:
            yield
        finally:
            self._only_prefetched = False

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        """Remember a verdict (written at the next :meth:`flush`)."""
        self._pending[(public_key, signature, message)] = valid

    def flush(self) -> None:
        """Write the buffered verdicts in one transaction (on a read-only store: drop them)."""
        if not self._pending:
            return
        if self._backend.read_only:  # docs/store.md: reads never write; caching is skipped
            self._pending.clear()
            return
        self._backend.add_signature_verdicts(
            [SignatureVerdict(*key, valid) for key, valid in self._pending.items()]
        )
        self._pending.clear()
