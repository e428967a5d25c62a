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
  by (subject, unit id, sha256 of those bytes): the same copy twice is one row;
* a unit is stored once: a copy valid under the caller's keys is not stored when
  a valid copy of its unit already is (docs/merge-v1.md, "A unit is stored once");
* invalid copies a local user imports or appends are stored, never dropped
  (evidence); a sync stores nothing that fails stage 1;
* the database itself refuses UPDATE and DELETE of every table, caches included
  (triggers); :meth:`EventStore.fsck` re-derives every cached verdict;
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

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, Final, Literal, NamedTuple, overload

from pith_graph import codes
from pith_graph._parallel.pool import ordered_map, resolve_workers
from pith_graph._progress import advance
from pith_graph.canonical import gc_paused, loads
from pith_graph.documents import Document, DocumentSource
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError
from pith_graph.events import MAX_EVENT_BYTES, CheckedEvent, check_keys
from pith_graph.identifiers import PITH_NUMBER_RE, derived_aliases
from pith_graph.keys import KeyRing, TrustedKeys, coerce_ring
from pith_graph.merge import MergeResult, merge_copies
from pith_graph.models import detect_kind
from pith_graph.state import State
from pith_graph.store._backend import (
    PRESENT,
    REFUSED,
    UNIT_STORED,
    UNSETTLED,
    Backend,
    StoreChanges,
    StoredSignatureCache,
)
from pith_graph.store._check import CheckReport, Mismatch, check_store
from pith_graph.store._export import BundleSigner, bundle_document
from pith_graph.store._facts import (
    FACTS_RULE,
    ITEM_KINDS,
    CopyRow,
    EventRow,
    FactsRow,
    ItemRow,
    KeyVerdict,
    Ring,
    as_is,
    join_bodies,
    parse_event,
    ring_row,
    stored_checked,
)
from pith_graph.store._import import (
    IMPORT_CHUNK,
    Checked,
    Prepared,
    check_copies,
    full_error,
    prepare_bundle,
    receive,
)
from pith_graph.store._open import is_postgres_url, open_backend, redacted_url
from pith_graph.store._schema import SCHEMA_VERSION
from pith_graph.store._source import (
    SourceError,
    SourceEvent,
    SourceFile,
    SourceItem,
    check_item,
    check_subject,
)
from pith_graph.store._sqlite import DEFAULT_BUSY_TIMEOUT, SQLiteBackend

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "FACTS_RULE",
    "IMPORT_BATCH",
    "IMPORT_CHUNK",
    "ITEM_KINDS",
    "SCHEMA_VERSION",
    "AppendResult",
    "Backend",
    "BundleSigner",
    "CheckReport",
    "EventRow",
    "EventStore",
    "FactsRow",
    "ImportResult",
    "Mismatch",
    "SQLiteBackend",
    "SourceError",
    "SourceFile",
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
    (stored, fails them: ``reason`` names the first failing check), ``duplicate``
    (not stored: this exact copy already was, or it is valid and a valid copy of its
    unit already is; ``reason`` as for a new one) or ``refused`` (not stored: it fails
    stage 1 and arrived by sync). Stage-2 (history) reasons depend on other events
    and appear only in states.
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
    """What :meth:`EventStore.sync_from` did: event copies added, bundle-level items added,
    and copies refused (they fail stage 1 under this store's trusted keys: never stored)."""

    events_added: int
    items_added: int
    events_refused: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored copy as :meth:`EventStore.events` lists it.

    ``reason`` is the unit's merge-v1 reason under the trust of that call (None:
    valid); ``applied`` whether the unit is in ``applied_event_ids``;
    ``copy_reason`` this copy's own stage-1 reason (None: this copy passes stage 1),
    so a forged copy of a valid unit never reads as valid.
    """

    unit_id: str
    digest: str
    body: bytes
    event_type: str | None
    reason: str | None
    applied: bool
    copy_reason: str | None = None

    @property
    def event(self) -> Any:
        """The stored copy, parsed."""
        return loads(self.body)


#: Bundles per transaction of :meth:`EventStore.import_bundles` (one durable commit each):
#: large enough that the commit's fsyncs are a small share of a batch of small bundles,
#: small enough that a crash loses little (docs/performance.md, "Many small bundles").
IMPORT_BATCH: Final = 256


def _dumps(value: Any) -> bytes:
    """Compact JSON as ``pith-graph store export`` prints a bundle."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Replay(NamedTuple):
    """A replay's outcome: the merge result, the copy rows it read, each copy's stage-1
    outcome (same order), and the subject's parsed items by kind."""

    result: MergeResult
    rows: list[CopyRow]
    checks: list[tuple[str, CheckedEvent]]
    items: dict[str, list[Any]]


#: :meth:`Backend.add_checked` outcomes as the statuses an append reports (ADDED depends on the verdict).
_NOT_STORED: Final = {
    PRESENT: codes.STORE_DUPLICATE,
    UNIT_STORED: codes.STORE_DUPLICATE,
    REFUSED: codes.STORE_REFUSED,
}
#: Times an append retries rows whose unit had copies not yet checked under its keys.
_SETTLE_ROUNDS: Final = 3
#: Events between two progress reports of a replay's key checks (pith_graph._progress).
_PROGRESS_STEP: Final = 256
#: Stored bodies :meth:`EventStore.write_bundle` reads and writes at a time.
_EXPORT_CHUNK: Final = 256
#: Event copies (and items) a sync stores per transaction.
_SYNC_BATCH: Final = 2000


def _source_rows(
    other: EventStore | SourceFile,
) -> tuple[Callable[[], Iterator[SourceEvent]], Callable[[], Iterator[SourceItem]]]:
    """How to read a sync source's event and item rows (each call reads them again, in batches)."""
    if isinstance(other, SourceFile):
        return other.events, other.items

    def events() -> Iterator[SourceEvent]:
        for subject in other.subjects():  # one subject at a time, never the whole store
            check_subject(subject, "sync source")
            for row in other.backend.event_rows(subject):
                yield SourceEvent(
                    subject,
                    row.body if len(row.body) <= MAX_EVENT_BYTES else None,
                    f"sync source: an event of {subject}",
                )

    def items() -> Iterator[SourceItem]:
        for subject in other.subjects():
            for kind, body in other.backend.items(subject):
                yield check_item(subject, kind, body, f"sync source: {subject} item")

    return events, items


def _source_tree(found: SourceEvent) -> Any:
    """The parsed body of a source's event row (None: too large to be valid); a body that is
    not strict JSON makes the whole source bad (:class:`SourceError`)."""
    if found.body is None:
        return None
    try:
        return loads(found.body)
    except InputError as exc:
        raise SourceError(
            f"{found.where}: body is not JSON ({exc.message})", code=codes.E_STORE_CORRUPT
        ) from exc


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
        read_only: bool | None = False,
    ) -> None:
        self.backend: Backend = (
            backend
            if backend is not None
            else open_backend(path, busy_timeout=busy_timeout, create=create, read_only=read_only)
        )
        self.cache = StoredSignatureCache(self.backend)
        self._last_ring: tuple[KeyRing, Ring] | None = None
        self._batching = False  # inside import_bundles' batch: one signature-cache write per batch

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

    @property
    def read_only(self) -> bool:
        """Whether the store was opened read-only: reads work, caching is skipped, writes fail."""
        return self.backend.read_only

    def check(self) -> None:
        """Run the database's integrity check; raise ``store_corrupt`` unless it says ok."""
        found = self.backend.integrity_check()
        if found != ["ok"]:
            raise StoreError(f"integrity check failed: {'; '.join(found[:3])}", code=codes.E_STORE_CORRUPT)

    def fsck(self) -> CheckReport:
        """Re-derive every cached verdict and indexed column from the stored bodies, ignoring
        the caches, and return each disagreement (empty: the caches say what the bodies do).

        What someone who can write the file could forge and this finds: docs/store.md, "Tampering".
        """
        return check_store(self.backend)

    def verifier(self) -> Verifier:
        """A :class:`Verifier` backed by this store's signature cache."""
        return Verifier(cache=self.cache)

    # --- writing ------------------------------------------------------------------

    def resolve_subject(self, subject: str) -> str:
        """The full Pith Number ``subject`` names: itself, or the one stored subject that a
        short form or a derived alias designates (:meth:`resolve`). Anything else is ``bad_subject``."""
        if not isinstance(subject, str):
            raise InputError(
                f"a subject must be a Pith Number, not {type(subject).__name__}", code=codes.E_BAD_SUBJECT
            )
        if PITH_NUMBER_RE.fullmatch(subject):
            return subject
        try:
            return self.resolve(subject)
        except StoreError as exc:
            raise InputError(
                f"subject {subject!r} is not a Pith Number (pith:YEAR: + 26 base32 characters) "
                f"nor names exactly one stored subject: {exc.message}",
                code=codes.E_BAD_SUBJECT,
            ) from exc

    def add_copies(
        self,
        copies: Sequence[tuple[str, Any]],
        *,
        trusted_keys: TrustedKeys = None,
        keep_invalid: bool = True,
        items: Sequence[ItemRow] = (),
        checked: Sequence[CheckedEvent | None] | None = None,
    ) -> list[AppendResult]:
        """Store received (subject, parsed event) copies and ``items`` by the store's rule
        (docs/merge-v1.md, "A unit is stored once"), one :class:`AppendResult` per copy.

        What :meth:`append` and :meth:`import_bundle` do, for many copies of many
        subjects in one transaction (a mirror's group commit, a peer's bundle): a copy
        valid under ``trusted_keys`` is stored unless its unit has a stored copy valid
        under them (earlier copies of the call included): ``duplicate``; an invalid one
        only with ``keep_invalid`` (else ``refused``). Each subject must be a full Pith
        Number. ``checked[i]``, when given and valid, is copy ``i``'s stage-1 outcome
        under the same keys (``check_event``), so its signature is not checked again.
        """
        for subject, _ in copies:
            if not isinstance(subject, str) or not PITH_NUMBER_RE.fullmatch(subject):
                raise InputError(f"subject {subject!r} is not a Pith Number", code=codes.E_BAD_SUBJECT)
        return self._store_copies(
            copies, coerce_ring(trusted_keys), keep_invalid=keep_invalid, items=items, known=checked
        )

    def _store_copies(
        self,
        copies: Iterable[tuple[str, Any]],
        ring: KeyRing,
        *,
        keep_invalid: bool,
        items: Sequence[ItemRow] = (),
        known: Sequence[CheckedEvent | None] | None = None,
        verifier: Verifier | None = None,
    ) -> list[AppendResult]:
        """Run stage 1 on received (subject, tree) copies under ``ring`` and store them
        (docs/merge-v1.md, "A unit is stored once").

        A valid copy is stored unless its unit already has a stored copy valid under
        ``ring``; an invalid one only with ``keep_invalid`` (a local user's evidence).
        Stored copies of a unit never checked under ``ring`` are checked first (their
        verdicts kept), so the rule holds whatever keys stored them. ``known[i]``, when
        valid, is copy ``i``'s stage-1 outcome under ``ring``, used instead of checking it.
        """
        verifier = verifier or self.verifier()
        try:
            with self.cache.prefetched_only():
                checked = check_copies(copies, ring, verifier, known, prefetch=self._prefetch)
        finally:
            self.cache.forget()
        return self._store_checked(checked, ring, keep_invalid=keep_invalid, items=items)

    def _prefetch(self, messages: list[bytes]) -> None:
        """Load the kept signature verdicts about ``messages`` in one query (none for no message)."""
        if messages:
            self.cache.prefetch(messages)

    def _ring_row(self, ring: KeyRing) -> Ring:
        """:func:`ring_row` of ``ring``, remembered for the last ring asked about: hashing a ring
        costs more than checking a small bundle (rings are not changed once built)."""
        if self._last_ring is None or self._last_ring[0] is not ring:
            self._last_ring = (ring, ring_row(ring))
        return self._last_ring[1]

    def _store_checked(
        self, found: Checked, ring: KeyRing, *, keep_invalid: bool, items: Sequence[ItemRow] = ()
    ) -> list[AppendResult]:
        """Store copies checked under ``ring`` (:func:`check_copies`) by the rule of
        :meth:`Backend.add_checked`, settling stored copies of their units never checked under it."""
        rows, checked = found
        try:
            ring_key = self._ring_row(ring)
            outcomes = self.backend.add_checked(rows, items, checked, ring_key, keep_invalid=keep_invalid)
            for _ in range(_SETTLE_ROUNDS):
                again = [i for i, outcome in enumerate(outcomes) if outcome == UNSETTLED]
                if not again:
                    break
                for subject in sorted({rows[i].subject for i in again}):
                    self._settle(subject, ring)
                retried = self.backend.add_checked(
                    [rows[i] for i in again],
                    [],
                    [checked[i] for i in again],
                    ring_key,
                    keep_invalid=keep_invalid,
                )
                for i, outcome in zip(again, retried, strict=True):
                    outcomes[i] = outcome
            unsettled = sorted({row.subject for row, o in zip(rows, outcomes, strict=True) if o == UNSETTLED})
            if unsettled:
                raise StoreError(
                    f"stored copies of {', '.join(unsettled)} stay unchecked under these keys",
                    code=codes.E_INTERNAL,
                )
        finally:
            if not self._batching:  # a batch writes its verdicts once, at its end
                self.cache.flush()
        return [
            AppendResult(
                _NOT_STORED.get(outcome)
                or (codes.STORE_NEW if check.reason is None else codes.STORE_INVALID),
                row.subject,
                row.unit_id,
                row.digest,
                check.reason,
            )
            for row, check, outcome in zip(rows, checked, outcomes, strict=True)
        ]

    def append(
        self,
        event: Any,
        *,
        subject: str | None = None,
        trusted_keys: TrustedKeys = None,
        keep_invalid: bool = True,
    ) -> AppendResult:
        """Store one copy of an event exactly as received and say what happened.

        ``event``: raw bytes/text of one event, or a parsed value (never a bundle: see
        :meth:`import_bundle`). ``subject``: the Pith Number it was received for (a
        short form resolves to the stored full number); by default the event's
        ``subject_pith_number``. Anything but a Pith Number is ``bad_subject`` and
        nothing is stored. An explicit subject wins, so a copy claiming another
        subject is kept as evidence (``subject_mismatch``). ``trusted_keys`` decide
        the stage-1 verdict, and with it whether a valid copy is a ``duplicate`` of
        a stored valid copy of its unit (not stored). ``keep_invalid=False`` (input
        from the network: a mirror's clients and peers) stores a copy that fails
        stage 1 nowhere and reports it ``refused``. Committed before returning.
        """
        tree = parse_event(event)
        kind = detect_kind(tree)
        if kind == "bundle":
            raise InputError(
                "this is a bundle, not an event: store it with `store import`", code=codes.E_USAGE
            )
        if kind is not None:
            raise InputError(f"this is a {kind.replace('_', ' ')} document, not an event", code=codes.E_USAGE)
        if subject is None:
            claimed = tree.get("subject_pith_number") if isinstance(tree, dict) else None
            if not isinstance(claimed, str):
                raise InputError("the event names no subject_pith_number: pass subject=", code=codes.E_USAGE)
            subject = claimed
        subject = self.resolve_subject(subject)
        [result] = self._store_copies([(subject, tree)], coerce_ring(trusted_keys), keep_invalid=keep_invalid)
        return result

    def import_bundle(
        self,
        bundle: DocumentSource | Document,
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
        keep_invalid: bool = True,
    ) -> ImportResult:
        """Store a bundle's events and bundle-level items (record, aliases, keys, hints, proofs).

        One transaction. Public keys are stored as data and never trusted by
        being stored; ``trusted_keys``/``trust_bundle_keys`` decide the stage-1
        verdicts, as for :meth:`append`. Invalid copies are kept (evidence) unless
        ``keep_invalid=False`` (network input: then they are ``refused``).
        """
        return self._import(
            bundle, trusted_keys=trusted_keys, trust_bundle_keys=trust_bundle_keys, keep_invalid=keep_invalid
        )

    def _import(
        self,
        bundle: DocumentSource | Document | PithGraphError,
        *,
        trusted_keys: TrustedKeys,
        trust_bundle_keys: bool,
        keep_invalid: bool,
        verifier: Verifier | None = None,
        nested: bool = False,
    ) -> ImportResult:
        """Store one bundle in one transaction (a savepoint inside the caller's, ``nested``), a
        chunk of events at a time (:data:`~pith_graph.store._import.IMPORT_CHUNK`): all or nothing."""
        received = receive(bundle)
        subject = received.subject
        ring = coerce_ring(trusted_keys)
        if trust_bundle_keys:
            listed = [loads(b) for k, b in self.backend.items(subject) if k == "public_key"]
            ring = self._ring(ring, True, listed + received.public_keys)
        verifier = verifier or self.verifier()
        # A savepoint makes the bundle all or nothing; inside a batch, a bundle of one chunk
        # needs none (its only writes are one add_checked, and a failure there ends the batch).
        alone = not nested or received.several
        try:
            with self.backend.transaction() if alone else contextlib.nullcontext():
                appends: list[AppendResult] = []
                for trees in received.chunks:
                    # A chunk's events are all read (an unreadable one raises) before it writes.
                    appends += self._store_copies(
                        ((subject, tree) for tree in trees),
                        ring,
                        keep_invalid=keep_invalid,
                        verifier=verifier,
                    )
                    if received.several:
                        advance(len(appends), received.events)
                added = self.backend.add_items(received.items)
        except InputError as exc:
            # An event the streamed path could not read: the full parse names what is wrong.
            raise full_error(bundle, exc) from None
        return ImportResult(subject, tuple(appends), added)

    def _store_prepared(self, prepared: Prepared, ring: KeyRing, *, keep_invalid: bool) -> ImportResult:
        """Store a bundle a helper read and checked (:func:`prepare_bundle`), inside the caller's
        transaction (a savepoint only for a bundle of several chunks, as in :meth:`_import`)."""
        several = len(prepared.chunks) > 1
        with self.backend.transaction() if several else contextlib.nullcontext():
            added = self.backend.add_items(prepared.items)
            appends: list[AppendResult] = []
            for chunk in prepared.chunks:
                appends += self._store_checked(chunk, ring, keep_invalid=keep_invalid)
                if several:
                    advance(len(appends), prepared.events)
        return ImportResult(prepared.subject, tuple(appends), added)

    @overload
    def import_bundles(
        self,
        bundles: Iterable[DocumentSource | Document | PithGraphError],
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
        keep_invalid: bool = True,
        batch_size: int = IMPORT_BATCH,
        workers: int | None = 1,
        keep_going: Literal[False] = False,
    ) -> Iterator[ImportResult]: ...

    @overload
    def import_bundles(
        self,
        bundles: Iterable[DocumentSource | Document | PithGraphError],
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
        keep_invalid: bool = True,
        batch_size: int = IMPORT_BATCH,
        workers: int | None = 1,
        keep_going: Literal[True],
    ) -> Iterator[ImportResult | PithGraphError]: ...

    def import_bundles(
        self,
        bundles: Iterable[DocumentSource | Document | PithGraphError],
        *,
        trusted_keys: TrustedKeys = None,
        trust_bundle_keys: bool = False,
        keep_invalid: bool = True,
        batch_size: int = IMPORT_BATCH,
        workers: int | None = 1,
        keep_going: bool = False,
    ) -> Iterator[ImportResult | PithGraphError]:
        """Import many bundles, one transaction per ``batch_size`` of them, reading one at a time.

        Yields each bundle's :class:`ImportResult` once the transaction holding it
        is committed: whatever was yielded survives a crash, and a crash loses at
        most the bundles read since the last result (one batch). Each bundle is
        all or nothing (a savepoint of the batch). A bundle that cannot be read
        raises its error after the bundles before it are committed and yielded;
        with ``keep_going`` its error is yielded in its place instead, and the
        import goes on. An error given in place of a bundle (a caller that could
        not read one, e.g. a directory without bundles) is that bundle's error. The trusted keys are resolved once for all bundles; as
        for :meth:`import_bundle` otherwise.

        ``workers`` (default 1: this process only; None or 0 as for
        ``rebuild_state``): above 1, that many helper processes read and check
        bundles (parse, stage 1, signatures), a chunk of bundles each, in order,
        while this one writes them;
        with ``trust_bundle_keys`` (the ring then depends on the keys already stored)
        this process does everything. The results are the same either way.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be positive, not {batch_size}", code=codes.E_USAGE)
        ring = coerce_ring(trusted_keys)
        count = 1 if trust_bundle_keys else resolve_workers(workers)
        verifier = self.verifier()
        steps: Iterator[Callable[[], ImportResult]]
        helpers: Generator[Prepared | PithGraphError, None, None] | None = None
        if count > 1:
            helpers = ordered_map(prepare_bundle, bundles, count, ring)
            steps = (partial(self._prepared_step, p, ring, keep_invalid) for p in helpers)
        else:
            steps = (
                partial(
                    self._import,
                    bundle,
                    trusted_keys=ring,
                    trust_bundle_keys=trust_bundle_keys,
                    keep_invalid=keep_invalid,
                    verifier=verifier,
                    nested=True,
                )
                for bundle in bundles
            )
        try:
            while True:
                batch: list[ImportResult | PithGraphError] = []
                failed: PithGraphError | None = None
                ended = False
                with self.backend.transaction(), self._batch():
                    while len(batch) < batch_size:
                        try:
                            step = next(steps)
                        except StopIteration:
                            ended = True
                            break
                        except PithGraphError as exc:
                            # The caller's iterator failed (a directory without bundles): it is
                            # over; what came before it is committed first.
                            failed, ended = exc, True
                            break
                        try:
                            batch.append(step())
                        except StoreError:
                            raise  # the transaction itself is in doubt: roll the batch back
                        except PithGraphError as exc:
                            if not keep_going:
                                failed = exc  # this bundle is unusable: keep the ones before it
                                break
                            batch.append(exc)
                    self.cache.flush()  # the batch's signature verdicts, in its transaction
                yield from batch
                if failed is not None:
                    raise failed
                if ended:
                    return
        finally:
            if helpers is not None:
                helpers.close()  # stops the helpers of an import left early

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Inside: the signature verdicts of stored copies are written at the end, in one statement."""
        self._batching = True
        try:
            yield
        finally:
            self._batching = False

    def _prepared_step(
        self, prepared: Prepared | PithGraphError, ring: KeyRing, keep_invalid: bool
    ) -> ImportResult:
        if isinstance(prepared, PithGraphError):
            raise prepared
        return self._store_prepared(prepared, ring, keep_invalid=keep_invalid)

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
        gives (tests/store/test_store_export_stream.py compares both): the export holds
        the copies' bytes once, not every event's tree and the whole text beside it.
        """
        replay = self._replay(subject, trusted_keys, trust_bundle_keys)
        result, copy_rows, items = replay.result, replay.rows, replay.items
        del replay  # its per-copy outcomes too
        order = [copy_rows[i].seq for i in self._ordered(result, copy_rows)]
        state = result.state
        # Placeholders that no stored item can hold by chance, replaced by the bytes.
        token = f"\x00pith-graph-export-{uuid.uuid4().hex}"
        shell = bundle_document(
            subject,
            state,
            token + "e",
            items,
            sign_with=None,
            built_at=built_at,
            embedded_state=token + "s",
        )
        # The replay's per-copy records go before the bodies come: only the state stays.
        del result, copy_rows, items
        head, rest = _dumps(shell).split(_dumps(token + "e"))
        middle, tail = rest.split(_dumps(token + "s"))
        out.write(head + b"[")
        for start in range(0, len(order), _EXPORT_CHUNK):
            # The stored bodies a chunk at a time, never all at once.
            for index, body in enumerate(self.backend.bodies(order[start : start + _EXPORT_CHUNK]), start):
                out.write(b"," + body if index else body)
            advance(min(start + _EXPORT_CHUNK, len(order)), len(order))
        out.write(b"]" + middle)
        out.write(state.to_json())
        out.write(tail)

    def sync_from(
        self, other: EventStore | SourceFile | DocumentSource | Document, *, trusted_keys: TrustedKeys = None
    ) -> SyncResult:
        """Add what another store (a :class:`SourceFile` or an open :class:`EventStore`), or a bundle, holds.

        Everything from there is untrusted input (docs/store.md, "Sync"): unit ids and
        digests are recomputed from each body, every body and item is checked, and only
        copies that pass stage 1 under ``trusted_keys`` (default: the registry key) are
        stored, once per unit; the rest are counted as refused. The whole source is
        checked before anything is stored: a bad one raises
        :class:`~pith_graph.store.SourceError` and nothing of it is kept. Read in
        batches, never whole. Signature-cache verdicts are not copied.
        """
        ring = coerce_ring(trusted_keys)
        if not isinstance(other, (EventStore, SourceFile)):
            result = self._import(other, trusted_keys=ring, trust_bundle_keys=False, keep_invalid=False)
            return SyncResult(
                result.count(codes.STORE_NEW), result.items_added, result.count(codes.STORE_REFUSED)
            )
        events, items = _source_rows(other)
        # First pass: the whole source is checked before anything of it is stored.
        for found in events():
            _source_tree(found)
        added = refused = 0
        batch: list[tuple[str, Any]] = []

        def flush() -> None:
            nonlocal added, refused
            if not batch:
                return
            for result in self._store_copies(batch, ring, keep_invalid=False):
                added += result.status == codes.STORE_NEW
                refused += result.status == codes.STORE_REFUSED
            batch.clear()

        for found in events():
            tree = _source_tree(found)
            if tree is None:
                refused += 1
                continue
            batch.append((found.subject, tree))
            if len(batch) >= _SYNC_BATCH:
                flush()
        flush()
        items_added = 0
        chunk: list[ItemRow] = []
        for item in items():
            chunk.append(ItemRow(*item))
            if len(chunk) >= _SYNC_BATCH:
                items_added += self.backend.add_items(chunk)
                chunk = []
        if chunk:
            items_added += self.backend.add_items(chunk)
        return SyncResult(added, items_added, refused)

    # --- reading ------------------------------------------------------------------

    def subjects(self) -> list[str]:
        """Every subject the store holds something for, sorted."""
        return self.backend.subjects()

    def resolve(self, name: str) -> str:
        """The stored subject ``name`` designates: its Pith Number, the short form
        (``pith:`` and the first 8, 12 or 16 characters of the code, ``pith:`` optional),
        or an alias derived from its stored record (arXiv id, with version, DOI).

        Aliases are derived from the stored ``canonical_record`` (never taken from
        the aliases a bundle lists). Raises :class:`StoreError`
        (``store_unknown_subject``) when no subject, or more than one, matches.
        """
        subjects = self.subjects()
        if name in subjects:
            return name
        wanted = name.strip()
        code = wanted.upper().removeprefix("PITH:")
        found = []
        for subject in subjects:
            match = PITH_NUMBER_RE.fullmatch(subject)
            short = match is not None and len(code) in (8, 12, 16) and match.group(2).startswith(code)
            if short or wanted.lower() in self._derived_names(subject):
                found.append(subject)
        if len(found) == 1:
            return found[0]
        if not found:
            raise StoreError(f"the store holds nothing for {name!r}", code=codes.E_STORE_UNKNOWN_SUBJECT)
        raise StoreError(
            f"{name!r} names {len(found)} stored subjects ({', '.join(found[:3])}): give the full Pith Number",
            code=codes.E_STORE_UNKNOWN_SUBJECT,
        )

    def _derived_names(self, subject: str) -> set[str]:
        """The arXiv aliases of a stored record, lower case (none when it has no usable record)."""
        for kind, body in self.backend.items(subject):
            if kind == "record":
                try:
                    aliases = derived_aliases(loads(body))
                except InputError:
                    return set()
                return {
                    value.lower() for alias_kind, value in aliases if not alias_kind.startswith("pith_short")
                }
        return set()

    def _ring(
        self, trusted_keys: TrustedKeys, trust_bundle_keys: bool, stored_keys: Iterable[Mapping[str, Any]]
    ) -> KeyRing:
        """The caller's keys (default: the registry key), plus the stored ones only on request.

        merge-v1 §4: a bundle never vouches for itself, and neither does a store; a stored
        key trusted on request is ``listed`` (it never creates records).
        """
        ring = coerce_ring(trusted_keys)
        if not trust_bundle_keys:
            return ring
        try:
            return ring.union(KeyRing.from_entries(stored_keys, listed=True))
        except TrustError as exc:
            raise TrustError(f"stored public_keys: {exc.message}", code=exc.code) from exc

    def _stage1(self, subject: str, rows: list[CopyRow], ring: KeyRing) -> list[tuple[str, CheckedEvent]]:
        """The stage-1 outcome of every stored copy under ``ring``, from stored facts and kept
        verdicts; the key checks of copies never checked under ``ring`` run here and their
        verdicts are kept (unless the store is read-only: reads never write)."""
        ring_key = ring_row(ring)
        copies, messages, missing, unchecked = stored_checked(
            subject, rows, self.backend.key_verdicts(ring_key.id, subject)
        )
        if missing and not self.read_only:
            self.backend.add_facts(missing)
        if unchecked:
            # The key checks of copies never replayed under these keys; their
            # verdicts are kept for the next replay.
            self.cache.prefetch(messages)
            verifier = self.verifier()
            verdicts: list[KeyVerdict] = []
            for done, (index, _seq) in enumerate(unchecked):
                if not done % _PROGRESS_STEP:
                    advance(done, len(unchecked))
                uid, intrinsic = copies[index]
                checked = check_keys(intrinsic, subject=subject, keyring=ring, verifier=verifier)
                copies[index] = (uid, checked)
                verdicts.append(KeyVerdict(uid, rows[index].digest, checked.reason))
            advance(len(unchecked), len(unchecked))
            if not self.read_only:
                self.backend.add_key_verdicts(ring_key, subject, verdicts)
        return copies

    def _settle(self, subject: str, ring: KeyRing) -> None:
        """Keep the key verdicts under ``ring`` of every stored copy of ``subject``."""
        rows, _ = self.backend.copies(subject)
        try:
            with gc_paused():
                self._stage1(subject, rows, ring)
        finally:
            self.cache.forget()
            self.cache.flush()

    def _replay(
        self, subject: str, trusted_keys: TrustedKeys, trust_bundle_keys: bool, *, with_body: bool = False
    ) -> _Replay:
        """Merge the stored copies of ``subject`` from their stored facts (docs/store.md, "Warm replay").

        No copy is parsed: each copy's intrinsic stage-1 outcome comes from
        ``event_facts`` (computed once, from the immutable body, when the copy was
        stored); the key checks run here against the caller's trusted keys, and
        signatures go through the content-addressed signature cache. Returns the
        result, the copy rows, their outcomes and the parsed items.
        """
        rows, item_rows = self.backend.copies(subject, with_body=with_body)
        grouped: dict[str, list[bytes]] = {kind: [] for kind in ITEM_KINDS}
        for kind, body in item_rows:
            grouped.setdefault(kind, []).append(body)
        if not rows and not any(grouped.values()):
            raise StoreError(f"the store holds nothing for {subject!r}", code=codes.E_STORE_UNKNOWN_SUBJECT)
        items = {kind: join_bodies(bodies) for kind, bodies in grouped.items()}
        ring = self._ring(trusted_keys, trust_bundle_keys, items["public_key"])
        try:
            with gc_paused():  # thousands of small acyclic objects (see canonical.gc_paused)
                copies = self._stage1(subject, rows, ring)
                result = merge_copies(
                    list(copies),
                    as_is,
                    subject=subject,
                    aliases=items["alias"],
                    trusted_keys=ring,
                    verifier=self.verifier(),
                )
        finally:
            self.cache.forget()
            self.cache.flush()
        return _Replay(result, rows, copies, items)

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
    def _ordered(result: MergeResult, rows: Sequence[EventRow | CopyRow]) -> list[int]:
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
        result, copy_rows, checks, _ = self._replay(subject, trusted_keys, trust_bundle_keys, with_body=True)
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
                checks[i][1].reason,
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
        result, copy_rows, _, items = self._replay(subject, trusted_keys, trust_bundle_keys, with_body=True)
        rows = self._event_rows(copy_rows)
        trees = join_bodies(row.body for row in rows)  # export needs the trees; a state never does
        events = [trees[i] for i in self._ordered(result, rows)]
        return bundle_document(subject, result.state, events, items, sign_with=sign_with, built_at=built_at)
