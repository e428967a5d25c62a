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
  given to :class:`EventStore` as ``backend=``; :class:`SQLiteBackend`
  (standard library ``sqlite3``, WAL, ``synchronous=FULL``) is the default.

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
signature cache kept through it), ``_schema`` and ``_sqlite`` (SQLite),
``_export`` (the exported bundle).
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, Final, NamedTuple

import msgspec

from pith_graph import codes
from pith_graph._parallel.many import ordered_map
from pith_graph._parallel.pool import resolve_workers
from pith_graph.canonical import MAX_DEPTH, canonical_json_parsed, gc_paused, loads
from pith_graph.documents import (
    EVENT_DEPTH_OFFSET,
    Document,
    DocumentSource,
    load_bundle,
    source_bytes,
    split_bundle,
)
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError
from pith_graph.events import CheckedEvent, check_keys, inspect_event
from pith_graph.keys import KeyRing, TrustedKeys, coerce_ring
from pith_graph.merge import MergeResult, merge_copies
from pith_graph.state import State
from pith_graph.store._backend import Backend, SignatureVerdict, StoredSignatureCache
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
from pith_graph.store._schema import SCHEMA_VERSION
from pith_graph.store._sqlite import DEFAULT_BUSY_TIMEOUT, SQLiteBackend

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "FACTS_RULE",
    "IMPORT_BATCH",
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
    "StoredEvent",
    "StoredSignatureCache",
    "SyncResult",
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


#: Bundles per transaction of :meth:`EventStore.import_bundles` (one durable commit each):
#: large enough that the commit's fsyncs are a small share of a batch of small bundles,
#: small enough that a crash loses little (docs/performance.md, "Many small bundles").
IMPORT_BATCH: Final = 256


def _status(fresh: bool, reason: str | None) -> str:
    """An append's status: ``duplicate`` for a copy stored before, else by its stage-1 reason."""
    return codes.STORE_DUPLICATE if not fresh else codes.STORE_NEW if reason is None else codes.STORE_INVALID


#: Events of one bundle read, checked and written at a time: an import holds one chunk's
#: rows and outcomes, not the whole bundle's (peak memory; issue 18).
IMPORT_CHUNK: Final = 1000

_Chunk = tuple[list[EventRow], list[tuple[CheckedEvent, FactsRow]]]


class _Received(NamedTuple):
    """A bundle as the store takes it: its parsed shell (``events`` not to be read), its
    subject, and its events in chunks: each event's row and its intrinsic stage-1 outcome
    with the facts row. Reading a chunk may raise the bundle's InputError."""

    shell: dict[str, Any]
    subject: str
    chunks: Iterator[_Chunk]


def _received(bundle: DocumentSource | Document) -> _Received:
    """Read a bundle for the store, one event tree at a time (none is kept: peak memory).

    Bytes and paths are split (:func:`~pith_graph.documents.split_bundle`): the
    shell is parsed once and each event on its own, never the whole document
    twice. Anything irregular takes :func:`~pith_graph.documents.load_bundle`,
    which raises the error it finds, so both paths accept and refuse alike (an
    event found irregular in a later chunk raises then: the caller writes each
    bundle in a savepoint).
    """
    data = None if isinstance(bundle, Document) else source_bytes(bundle)
    split = None if data is None else split_bundle(data)
    if split is None or data is None:
        raw, model = load_bundle(bundle if data is None else data)
        return _Received(raw, model.pith_number, _chunks(model.pith_number, iter(raw["events"])))
    depth = MAX_DEPTH - EVENT_DEPTH_OFFSET
    whole = data

    def trees() -> Iterator[Any]:
        for text in split.events:
            try:
                yield loads(bytes(text), max_depth=depth)
            except InputError:
                load_bundle(whole)  # raises the error the strict parse of the whole finds
                raise

    return _Received(split.shell, split.model.pith_number, _chunks(split.model.pith_number, trees()))


def _chunks(subject: str, trees: Iterator[Any]) -> Iterator[_Chunk]:
    """Each event's row and intrinsic outcome, :data:`IMPORT_CHUNK` events at a time; the
    outcome drops its tree (check_keys reads only the canonical fragments it keeps)."""
    while True:
        rows: list[EventRow] = []
        inspected: list[tuple[CheckedEvent, FactsRow]] = []
        with gc_paused():  # many small acyclic objects (see canonical.gc_paused)
            for tree in itertools.islice(trees, IMPORT_CHUNK):
                row = EventRow.of(subject, tree)
                checked, facts = EventStore._inspected(row, tree)
                rows.append(row)
                inspected.append((msgspec.structs.replace(checked, raw=None), facts))
        if not rows:
            return
        yield rows, inspected


def _items(shell: Mapping[str, Any], subject: str) -> list[ItemRow]:
    """The bundle-level items of a bundle's shell, as canonical bytes."""
    items: list[ItemRow] = []
    for kind, key in ITEM_KINDS.items():
        value = shell.get(key)
        values = [value] if kind == "record" else (value or [])
        items.extend(ItemRow(subject, kind, canonical_json_parsed(v)) for v in values if v is not None)
    return items


def _key_reasons(
    subject: str, inspected: Sequence[tuple[CheckedEvent, FactsRow]], ring: KeyRing, verifier: Verifier
) -> list[str | None]:
    """Each event's stage-1 reason under ``ring`` (the key checks after the intrinsic ones)."""
    return [check_keys(c, subject=subject, keyring=ring, verifier=verifier).reason for c, _ in inspected]


class _Prepared(NamedTuple):
    """A bundle read and checked by a helper process, ready to be stored (see :meth:`EventStore.import_bundles`)."""

    subject: str
    rows: list[EventRow]
    items: list[ItemRow]
    facts: list[FactsRow]
    intrinsic_ok: list[bool]
    reasons: list[str | None]
    #: Every signature verdict reached, for the store's signature cache.
    verdicts: list[SignatureVerdict]


class _Recorded:
    """A signature cache that knows nothing and keeps every verdict reached (a helper's)."""

    def __init__(self) -> None:
        self.verdicts: list[SignatureVerdict] = []

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        return None

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        self.verdicts.append(SignatureVerdict(public_key, signature, message, valid))


def _prepare_outcome(bundle: DocumentSource | Document, ring: KeyRing) -> _Prepared | PithGraphError:
    """In a helper process: a bundle read, checked under ``ring`` and ready to store, or its error."""
    try:
        received = _received(bundle)
        recorded = _Recorded()
        verifier = Verifier(cache=recorded)
        prepared = _Prepared(
            received.subject, [], _items(received.shell, received.subject), [], [], [], recorded.verdicts
        )
        for rows, inspected in received.chunks:
            prepared.rows.extend(rows)
            prepared.facts.extend(facts for _, facts in inspected)
            prepared.intrinsic_ok.extend(c.reason is None for c, _ in inspected)
            prepared.reasons.extend(_key_reasons(received.subject, inspected, ring, verifier))
        return prepared
    except PithGraphError as exc:
        return exc


def _dumps(value: Any) -> bytes:
    """Compact JSON as ``pith-graph store export`` prints a bundle."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Replay(NamedTuple):
    """A replay's outcome: the merge result, the copy rows it read, and the subject's parsed items by kind."""

    result: MergeResult
    rows: list[CopyRow]
    items: dict[str, list[Any]]


class EventStore:
    """The event store: append-only sets of event copies per subject, merged on demand.

    Open with a path to an SQLite file (created on first use unless ``create=False``)
    or ``":memory:"``, or pass any other storage as ``backend=`` (then ``path``,
    ``busy_timeout`` and ``create`` are not used); use as a context manager or call
    :meth:`close`. Raises :class:`~pith_graph.errors.StoreError` (``store_corrupt``,
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
            backend if backend is not None else SQLiteBackend(path, busy_timeout=busy_timeout, create=create)
        )
        self.cache = StoredSignatureCache(self.backend)
        self._last_ring: tuple[KeyRing, str] | None = None

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
        return AppendResult(_status(fresh, reason), row.subject, row.unit_id, row.digest, reason)

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
        (result,) = self.import_bundles(
            [bundle], trusted_keys=trusted_keys, trust_bundle_keys=trust_bundle_keys
        )
        return result

    def import_bundles(
        self,
        bundles: Iterable[DocumentSource | Document],
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
        batch_size: int = IMPORT_BATCH,
        workers: int | None = 1,
    ) -> Iterator[ImportResult]:
        """Import many bundles, one transaction per ``batch_size`` of them, reading one at a time.

        Yields each bundle's :class:`ImportResult` once the transaction holding it
        is committed: whatever was yielded survives a crash, and a crash loses at
        most the bundles read since the last result (one batch). A bundle that
        cannot be read raises its :class:`~pith_graph.errors.InputError` after
        the bundles before it are committed and yielded. The trusted keys are
        resolved once for all bundles; as for :meth:`import_bundle` otherwise.

        ``workers`` (default 1: this process only; None or 0 as for
        ``rebuild_state``): processes that read and check bundles (parse, stage
        1, signatures), in order, while this one writes them; with
        ``trust_bundle_keys`` (which reads the keys already stored) this process
        does everything. The results are the same either way.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be positive, not {batch_size}", code=codes.E_USAGE)
        count = 1 if trust_bundle_keys else resolve_workers(workers)
        ring = coerce_ring(trusted_keys)
        verifier = self.verifier()
        prepared = ordered_map(_prepare_outcome, bundles, count, ring) if count > 1 else None
        if prepared is not None:
            steps: Iterator[Callable[[], ImportResult]] = (
                partial(self._store_prepared, p, ring) for p in prepared
            )
        else:
            steps = (partial(self._import, b, ring, trust_bundle_keys, verifier) for b in bundles)
        try:
            while True:
                batch: list[ImportResult] = []
                failed: PithGraphError | None = None
                with self.backend.transaction():
                    for step in steps:
                        try:
                            batch.append(step())
                        except StoreError:
                            raise  # the transaction itself is in doubt: roll the batch back
                        except PithGraphError as exc:
                            failed = exc  # this bundle is unusable: keep the ones before it
                            break
                        if len(batch) == batch_size:
                            break
                    self.cache.flush()  # the batch's signature verdicts, in its transaction
                yield from batch
                if failed is not None:
                    raise failed
                if len(batch) < batch_size:
                    return
        finally:
            self.cache.flush()
            if prepared is not None:
                prepared.close()  # stops the helpers of an import left early

    def _import(
        self, bundle: DocumentSource | Document, ring: KeyRing, trust_bundle_keys: bool, verifier: Verifier
    ) -> ImportResult:
        """Store one bundle (inside the caller's transaction, all or nothing) and report each event's status.

        Written a chunk of events at a time (:data:`IMPORT_CHUNK`), in a savepoint of
        the caller's transaction: an event found unusable in a later chunk undoes the
        earlier ones.
        """
        with self.backend.transaction():
            received = _received(bundle)
            subject = received.subject
            before = self._item_count(subject)
            self.backend.add([], _items(received.shell, subject))
            if trust_bundle_keys:
                # The keys stored for the subject, this bundle's included (as data: trusted only on request).
                stored = [loads(b) for k, b in self.backend.items(subject) if k == "public_key"]
                ring = self._ring(ring, True, stored)
            # ring_id costs more than a small bundle's checks: once per call, unless the bundle's keys join the ring.
            ring_key = ring_id(ring) if trust_bundle_keys else self._ring_key(ring)
            appends: list[AppendResult] = []
            for rows, inspected in received.chunks:
                fresh = self.backend.add(rows, [], [facts for _, facts in inspected])
                # One query for the verdicts this store already has about the chunk's signatures, not one each.
                self.cache.prefetch(
                    c.facts.message for c, _ in inspected if c.reason is None and c.facts is not None
                )
                try:
                    reasons = _key_reasons(subject, inspected, ring, verifier)
                finally:
                    self.cache.forget()
                intrinsic_ok = [c.reason is None for c, _ in inspected]
                appends += self._appends(subject, rows, intrinsic_ok, reasons, fresh, ring_key)
            return ImportResult(subject, tuple(appends), self._item_count(subject) - before)

    def _store_prepared(self, prepared: _Prepared | PithGraphError, ring: KeyRing) -> ImportResult:
        """Store a bundle a helper read and checked (:func:`_prepare_outcome`), inside the caller's transaction."""
        if isinstance(prepared, PithGraphError):
            raise prepared
        before = self._item_count(prepared.subject)
        fresh = self.backend.add(prepared.rows, prepared.items, prepared.facts)
        for verdict in prepared.verdicts:
            self.cache.record(*verdict)
        appends = self._appends(
            prepared.subject,
            prepared.rows,
            prepared.intrinsic_ok,
            prepared.reasons,
            fresh,
            self._ring_key(ring),
        )
        return ImportResult(prepared.subject, tuple(appends), self._item_count(prepared.subject) - before)

    def _appends(
        self,
        subject: str,
        rows: Sequence[EventRow],
        intrinsic_ok: Sequence[bool],
        reasons: Sequence[str | None],
        fresh: Sequence[bool],
        ring_key: str,
    ) -> list[AppendResult]:
        """The events' statuses, and the key verdicts kept for the next replay under the same keys
        (only for copies that passed the intrinsic checks)."""
        appends = [
            AppendResult(_status(new, reason), subject, row.unit_id, row.digest, reason)
            for row, reason, new in zip(rows, reasons, fresh, strict=True)
        ]
        verdicts = [
            KeyVerdict(a.unit_id, a.digest, a.reason)
            for a, ok in zip(appends, intrinsic_ok, strict=True)
            if ok
        ]
        if verdicts:
            self.backend.add_key_verdicts(ring_key, subject, verdicts)
        return appends

    def _ring_key(self, ring: KeyRing) -> str:
        """:func:`ring_id` of ``ring``, remembered for the last ring asked about (rings are immutable)."""
        if self._last_ring is None or self._last_ring[0] is not ring:
            self._last_ring = (ring, ring_id(ring))
        return self._last_ring[1]

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

    def write_bundle(
        self,
        subject: str,
        out: BinaryIO,
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
        built_at: str | None = None,
    ) -> None:
        """Write :meth:`export_bundle` of ``subject`` to ``out`` as compact JSON (UTF-8, key
        order kept: ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``), without
        building its tree.

        The stored copies are written as their stored canonical bytes and the state as
        :meth:`State.to_json`, which are exactly what the dump of their parsed trees
        gives (tests/store/test_store_batches.py compares both): the export holds the
        copies' bytes once, not every event's tree and the whole text beside it.
        """
        result, copy_rows, items = self._replay(subject, trusted_keys, trust_bundle_keys, with_body=True)
        rows = self._event_rows(copy_rows)
        order = self._ordered(result, rows)
        # Placeholders that no stored item can hold by chance, replaced by the bytes.
        token = f"\x00pith-graph-export-{uuid.uuid4().hex}"
        shell = bundle_document(
            subject,
            result.state,
            token + "e",
            items,
            sign_with=None,
            built_at=built_at,
            embedded_state=token + "s",
        )
        text = _dumps(shell)
        head, rest = text.split(_dumps(token + "e"))
        middle, tail = rest.split(_dumps(token + "s"))
        out.write(head + b"[")
        for index, row in enumerate(order):
            out.write(b"," + rows[row].body if index else rows[row].body)
        out.write(b"]" + middle)
        out.write(result.state.to_json())
        out.write(tail)
