"""A durable, append-only event store for mirrors.

A mirror keeps every copy of every event it ever accepted, for many subjects,
and must never lose or rewrite one. :class:`EventStore` is that store:

* the pure core stays :mod:`pith_graph.merge`: the store only keeps *sets* of
  event copies and bundle-level items per subject, and a state is always a
  merge of what is stored (so :meth:`EventStore.state` equals
  ``rebuild_state`` of :meth:`EventStore.export_bundle`, byte for byte);
* the warm replay never parses an event: each stored copy keeps its intrinsic
  stage-1 verdict and facts (``event_facts``, a function of the immutable body
  and the subject), the key checks re-run against the caller's keys, and
  signatures go through the content-addressed signature cache
  (docs/store.md, "Warm replay");
* storage sits behind the :class:`~pith_graph.store._backend.Backend` interface,
  selected by the store's name (:func:`open_backend`) or given as ``backend=``:
  :class:`SQLiteBackend` (standard library ``sqlite3``, WAL, ``synchronous=FULL``)
  for a path, :class:`~pith_graph.store._postgres.PostgresBackend` (psycopg 3)
  for a ``postgresql://`` URL.

Guarantees (docs/store.md):

* each copy is stored as the canonical JSON bytes of the event as received, keyed
  by (subject, unit id, sha256 of those bytes): the same copy twice is one row,
  distinct copies under one claimed id are all kept (evidence);
* invalid events are stored, never dropped;
* the database itself refuses UPDATE and DELETE of stored rows (triggers);
* an append that returned is committed (``synchronous=FULL``), so a crash after
  it loses nothing; concurrent writers in other processes wait (busy timeout)
  and retry, and lose nothing;
* trust never comes from the store: public keys are stored as data, and every
  replay takes its trusted keys from the caller (default: the registry key).

Layout: ``_facts`` (rows and stage-1 facts), ``_backend`` (the interface and the
signature cache kept through it), ``_open`` (a name to a backend), ``_schema``
and ``_sqlite`` (SQLite), ``_postgres_schema`` and ``_postgres`` (PostgreSQL),
``_export`` (the exported bundle).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed, gc_paused, loads
from pith_graph.documents import Document, DocumentSource, load_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, StoreError, TrustError
from pith_graph.events import CheckedEvent, check_keys, inspect_event
from pith_graph.keys import KeyRing, TrustedKeys, coerce_ring
from pith_graph.merge import MergeResult, merge_copies
from pith_graph.state import State
from pith_graph.store._backend import Backend, StoreChanges, StoredSignatureCache
from pith_graph.store._export import BundleSigner, bundle_document
from pith_graph.store._facts import (
    FACTS_RULE,
    ITEM_KINDS,
    CopyRow,
    EventRow,
    FactsRow,
    ItemRow,
    KeyVerdict,
    as_is,
    join_bodies,
    parse_event,
    ring_id,
    stored_checked,
)
from pith_graph.store._open import is_postgres_url, open_backend, redacted_url
from pith_graph.store._schema import SCHEMA_VERSION
from pith_graph.store._sqlite import DEFAULT_BUSY_TIMEOUT, SQLiteBackend

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "FACTS_RULE",
    "ITEM_KINDS",
    "SCHEMA_VERSION",
    "AppendResult",
    "Backend",
    "BundleSigner",
    "EventRow",
    "EventStore",
    "FactsRow",
    "ImportResult",
    "SQLiteBackend",
    "StoreChanges",
    "StoredEvent",
    "StoredSignatureCache",
    "SyncResult",
    "is_postgres_url",
    "open_backend",
    "redacted_url",
]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What :meth:`EventStore.append` did with one copy.

    ``status``: ``new`` (stored, passes the stage-1 checks), ``stored_invalid``
    (stored, fails them: ``reason`` names the first failing check) or
    ``duplicate`` (this exact copy was already stored; ``reason`` as for a new one).
    Stage-2 (history) reasons depend on other events and appear only in states.
    """

    status: str
    subject: str
    unit_id: str
    digest: str
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return {
            "status": self.status,
            "subject": self.subject,
            "unit_id": self.unit_id,
            "digest": self.digest,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What :meth:`EventStore.import_bundle` did: one :class:`AppendResult` per event."""

    subject: str
    appends: tuple[AppendResult, ...]
    items_added: int

    def count(self, status: str) -> int:
        """How many events got ``status``."""
        return sum(1 for a in self.appends if a.status == status)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What :meth:`EventStore.sync_from` added: new event copies and new bundle-level items."""

    events_added: int
    items_added: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored copy as :meth:`EventStore.events` lists it.

    ``reason`` is the unit's merge-v1 reason under the trust of that call (None:
    valid); ``applied`` whether the unit is in ``applied_event_ids``.
    """

    unit_id: str
    digest: str
    body: bytes
    event_type: str | None
    reason: str | None
    applied: bool

    @property
    def event(self) -> Any:
        """The stored copy, parsed."""
        return loads(self.body)


class _Replay(NamedTuple):
    """A replay's outcome: the merge result, the copy rows it read, and the subject's parsed items by kind."""

    result: MergeResult
    rows: list[CopyRow]
    items: dict[str, list[Any]]


class EventStore:
    """The event store: append-only sets of event copies per subject, merged on demand.

    Open with a path to an SQLite file (created on first use unless ``create=False``),
    ``":memory:"``, or a ``postgresql://`` URL (:func:`open_backend`), or pass any
    other storage as ``backend=`` (then ``path``, ``busy_timeout`` and ``create`` are
    not used); use as a context manager or call :meth:`close`. Raises :class:`~pith_graph.errors.StoreError` (``store_corrupt``,
    ``store_schema_mismatch``, ``store_busy``, ``io_error``) for an unusable database.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        backend: Backend | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
    ) -> None:
        self.backend: Backend = (
            backend if backend is not None else open_backend(path, busy_timeout=busy_timeout, create=create)
        )
        self.cache = StoredSignatureCache(self.backend)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush the signature cache and close the database."""
        try:
            self.cache.flush()
        finally:
            self.backend.close()

    def check(self) -> None:
        """Run the database's integrity check; raise ``store_corrupt`` unless it says ok."""
        found = self.backend.integrity_check()
        if found != ["ok"]:
            raise StoreError(f"integrity check failed: {'; '.join(found[:3])}", code=codes.E_STORE_CORRUPT)

    def verifier(self) -> Verifier:
        """A :class:`Verifier` backed by this store's signature cache."""
        return Verifier(cache=self.cache)

    # --- writing ------------------------------------------------------------------

    @staticmethod
    def _inspected(row: EventRow, tree: Any) -> tuple[CheckedEvent, FactsRow]:
        """The intrinsic stage-1 outcome of a received copy, and the facts row stored with it."""
        checked = inspect_event(tree, subject=row.subject, uid=row.unit_id)
        return checked, FactsRow.of(row.body, checked)

    def _status(
        self, row: EventRow, checked: CheckedEvent, fresh: bool, ring: KeyRing, verifier: Verifier
    ) -> AppendResult:
        reason = check_keys(checked, subject=row.subject, keyring=ring, verifier=verifier).reason
        status = (
            codes.STORE_DUPLICATE if not fresh else codes.STORE_NEW if reason is None else codes.STORE_INVALID
        )
        return AppendResult(status, row.subject, row.unit_id, row.digest, reason)

    def append(
        self, event: Any, *, subject: str | None = None, trusted_keys: TrustedKeys = None
    ) -> AppendResult:
        """Store one copy of an event exactly as received and say what happened.

        ``event``: raw bytes/text of one event, or a parsed value. ``subject``: the
        record it was received for; by default the event's ``subject_pith_number``
        (required when that is not a string). An explicit subject wins, so a copy
        claiming another subject is kept as evidence (``subject_mismatch``).
        ``trusted_keys`` only decides the reported status (stage-1 checks); what
        is stored never depends on it. Committed before returning.
        """
        tree = parse_event(event)
        if subject is None:
            claimed = tree.get("subject_pith_number") if isinstance(tree, dict) else None
            if not isinstance(claimed, str):
                raise InputError("the event names no subject_pith_number: pass subject=", code=codes.E_USAGE)
            subject = claimed
        row = EventRow.of(subject, tree)
        checked, facts = self._inspected(row, tree)
        (fresh,) = self.backend.add([row], [], [facts])
        verifier = self.verifier()
        try:
            return self._status(row, checked, fresh, coerce_ring(trusted_keys), verifier)
        finally:
            self.cache.flush()

    def import_bundle(
        self,
        bundle: DocumentSource | Document,
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
    ) -> ImportResult:
        """Store a bundle's events and bundle-level items (record, aliases, keys, hints, proofs).

        One transaction. Public keys are stored as data and never trusted by
        being stored; ``trusted_keys``/``trust_bundle_keys`` only decide the
        reported statuses, as for :meth:`append`.
        """
        raw, model = load_bundle(bundle)
        subject = model.pith_number
        rows = [EventRow.of(subject, tree) for tree in raw["events"]]
        inspected = [self._inspected(row, tree) for row, tree in zip(rows, raw["events"], strict=True)]
        items: list[ItemRow] = []
        for kind, key in ITEM_KINDS.items():
            value = raw.get(key)
            values = [value] if kind == "record" else (value or [])
            items.extend(ItemRow(subject, kind, canonical_json_parsed(v)) for v in values if v is not None)
        before = self._item_count(subject)
        fresh = self.backend.add(rows, items, [facts for _, facts in inspected])
        ring = self._ring(
            trusted_keys,
            trust_bundle_keys,
            [loads(b) for k, b in self.backend.items(subject) if k == "public_key"]
            if trust_bundle_keys
            else (),
        )
        # One query for every kept verdict about these events, not one per signature.
        self.cache.prefetch(checked.facts.message for checked, _ in inspected if checked.facts is not None)
        verifier = self.verifier()
        try:
            appends = tuple(
                self._status(row, checked, new, ring, verifier)
                for row, (checked, _), new in zip(rows, inspected, fresh, strict=True)
            )
        finally:
            self.cache.forget()
            self.cache.flush()
        self._keep_verdicts(ring, subject, [(a, c) for a, (c, _) in zip(appends, inspected, strict=True)])
        return ImportResult(subject, appends, self._item_count(subject) - before)

    def _keep_verdicts(
        self, ring: KeyRing, subject: str, outcomes: Sequence[tuple[AppendResult, CheckedEvent]]
    ) -> None:
        """Keep the key verdicts an append or import just reached, so the next replay under
        the same keys starts warm (only for copies that passed the intrinsic checks)."""
        verdicts = [
            KeyVerdict(a.unit_id, a.digest, a.reason) for a, inspected in outcomes if inspected.reason is None
        ]
        if verdicts:
            self.backend.add_key_verdicts(ring_id(ring), subject, verdicts)

    def _item_count(self, subject: str) -> int:
        return len(self.backend.items(subject))

    def sync_from(self, other: EventStore | DocumentSource | Document) -> SyncResult:
        """Add every event copy and item of another store (or of a bundle) to this one.

        A union of sets: syncing replicas in any order, any number of times, gives
        the same stored sets and therefore the same states. Signature-cache
        verdicts are not copied: this store re-verifies what it did not check itself.
        """
        if not isinstance(other, EventStore):
            result = self.import_bundle(other)
            return SyncResult(
                result.count(codes.STORE_NEW) + result.count(codes.STORE_INVALID), result.items_added
            )
        rows: list[EventRow] = []
        items: list[ItemRow] = []
        before = sum(len(self.backend.items(s)) for s in self.backend.subjects())
        for subject in other.subjects():
            rows.extend(other.backend.event_rows(subject))
            items.extend(ItemRow(subject, kind, body) for kind, body in other.backend.items(subject))
        fresh = self.backend.add(rows, items)
        after = sum(len(self.backend.items(s)) for s in self.backend.subjects())
        return SyncResult(sum(fresh), after - before)

    # --- reading ------------------------------------------------------------------

    def subjects(self) -> list[str]:
        """Every subject the store holds something for, sorted."""
        return self.backend.subjects()

    def _ring(
        self, trusted_keys: TrustedKeys, trust_bundle_keys: bool, stored_keys: Iterable[Mapping[str, Any]]
    ) -> KeyRing:
        """The caller's keys (default: the registry key), plus the stored ones only on request.

        merge-v1 §4: a bundle never vouches for itself, and neither does a store.
        """
        ring = coerce_ring(trusted_keys)
        if not trust_bundle_keys:
            return ring
        try:
            return ring.union(KeyRing.from_entries(stored_keys))
        except TrustError as exc:
            raise TrustError(f"stored public_keys: {exc.message}", code=exc.code) from exc

    def _replay(
        self, subject: str, trusted_keys: TrustedKeys, trust_bundle_keys: bool, *, with_body: bool = False
    ) -> _Replay:
        """Merge the stored copies of ``subject`` from their stored facts (docs/store.md, "Warm replay").

        No copy is parsed: each copy's intrinsic stage-1 outcome comes from
        ``event_facts`` (computed once, from the immutable body, when the copy was
        stored); the key checks run here against the caller's trusted keys, and
        signatures go through the content-addressed signature cache. Returns the
        result, the copy rows and the parsed items.
        """
        rows, item_rows = self.backend.copies(subject, with_body=with_body)
        grouped: dict[str, list[bytes]] = {kind: [] for kind in ITEM_KINDS}
        for kind, body in item_rows:
            grouped.setdefault(kind, []).append(body)
        if not rows and not any(grouped.values()):
            raise StoreError(f"the store holds nothing for {subject!r}", code=codes.E_STORE_UNKNOWN_SUBJECT)
        items = {kind: join_bodies(bodies) for kind, bodies in grouped.items()}
        ring = self._ring(trusted_keys, trust_bundle_keys, items["public_key"])
        ring_key = ring_id(ring)
        try:
            with gc_paused():  # thousands of small acyclic objects (see canonical.gc_paused)
                copies, messages, missing, unchecked = stored_checked(
                    subject, rows, self.backend.key_verdicts(ring_key, subject)
                )
                if missing:
                    self.backend.add_facts(missing)
                if unchecked:
                    # The key checks of copies never replayed under these keys; their
                    # verdicts are kept for the next replay.
                    self.cache.prefetch(messages)
                    verifier = self.verifier()
                    verdicts: list[KeyVerdict] = []
                    for index, _seq in unchecked:
                        uid, intrinsic = copies[index]
                        checked = check_keys(intrinsic, subject=subject, keyring=ring, verifier=verifier)
                        copies[index] = (uid, checked)
                        verdicts.append(KeyVerdict(uid, rows[index].digest, checked.reason))
                    self.backend.add_key_verdicts(ring_key, subject, verdicts)
                result = merge_copies(
                    copies,
                    as_is,
                    subject=subject,
                    aliases=items["alias"],
                    trusted_keys=ring,
                    verifier=self.verifier(),
                )
        finally:
            self.cache.forget()
            self.cache.flush()
        return _Replay(result, rows, items)

    def replay(
        self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False
    ) -> MergeResult:
        """Merge every stored copy of ``subject`` (merge-v1), reusing the signature cache.

        The warm path: no copy is parsed (stage-1 facts come from ``event_facts``),
        and signatures verified before (by any replay, append or import of this
        store) are not verified again. ``trusted_keys``: as for
        ``rebuild_state`` (default: the registry key); ``trust_bundle_keys`` also
        trusts the public keys stored for the subject.
        """
        return self._replay(subject, trusted_keys, trust_bundle_keys).result

    @staticmethod
    def _event_rows(rows: list[CopyRow]) -> list[EventRow]:
        """The whole copies of copy rows read ``with_body``."""
        whole = [row.row for row in rows if row.row is not None]
        if len(whole) != len(rows):
            raise StoreError("copy rows were read without their bodies", code=codes.E_INTERNAL)
        return whole

    def state(
        self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False
    ) -> State:
        """The merged state of ``subject``: byte for byte ``rebuild_state`` of :meth:`export_bundle`."""
        # The replay's per-copy objects die inside the pause, so the collection that
        # follows it only walks what the state keeps (see canonical.gc_paused).
        with gc_paused():
            return self.replay(subject, trusted_keys=trusted_keys, trust_bundle_keys=trust_bundle_keys).state

    @staticmethod
    def _ordered(result: MergeResult, rows: list[EventRow]) -> list[int]:
        """Row indexes in apply order, then the rest by unit id; a unit's representative copy first."""
        position = {uid: i for i, uid in enumerate(result.state.applied_event_ids)}
        representative = {uid: result.units[uid].canonical_digest() for uid in position}

        def key(i: int) -> tuple[int, int, str, bool, str]:
            row = rows[i]
            applied = position.get(row.unit_id)
            return (
                0 if applied is not None else 1,
                applied or 0,
                row.unit_id,
                representative.get(row.unit_id) != row.digest,
                row.digest,
            )

        return sorted(range(len(rows)), key=key)

    def events(
        self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False
    ) -> list[StoredEvent]:
        """Every stored copy of ``subject``: applied units in apply order, then the rest by unit id."""
        result, copy_rows, _ = self._replay(subject, trusted_keys, trust_bundle_keys, with_body=True)
        rows = self._event_rows(copy_rows)
        applied = set(result.state.applied_event_ids)
        return [
            StoredEvent(
                rows[i].unit_id,
                rows[i].digest,
                rows[i].body,
                rows[i].event_type,
                result.reasons.get(rows[i].unit_id),
                rows[i].unit_id in applied,
            )
            for i in self._ordered(result, rows)
        ]

    def export_bundle(
        self,
        subject: str,
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
        sign_with: BundleSigner | None = None,
        built_at: str | None = None,
    ) -> dict[str, Any]:
        """A bundle in the registry's shape holding every stored copy and item of ``subject``.

        The embedded ``state`` is :meth:`state` under the same trust. With
        ``sign_with`` (a mirror key), a ``bundle_signature`` over ``bundle_sha256``
        is added; listing that key does not make anyone trust it.
        """
        result, copy_rows, items = self._replay(subject, trusted_keys, trust_bundle_keys, with_body=True)
        rows = self._event_rows(copy_rows)
        trees = join_bodies(row.body for row in rows)  # export needs the trees; a state never does
        events = [trees[i] for i in self._ordered(result, rows)]
        return bundle_document(subject, result.state, events, items, sign_with=sign_with, built_at=built_at)
