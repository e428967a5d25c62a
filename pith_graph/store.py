"""A durable, append-only event store for mirrors (SQLite).

A mirror keeps every copy of every event it ever accepted, for many subjects,
and must never lose or rewrite one. :class:`EventStore` is that store:

* the pure core stays :func:`pith_graph.merge.merge_checked`: the store only
  keeps *sets* of event copies and bundle-level items per subject, and a state
  is always a merge of what is stored (so :meth:`EventStore.state` equals
  ``rebuild_state`` of :meth:`EventStore.export_bundle`, byte for byte);
* storage sits behind the small :class:`Backend` interface; :class:`SQLiteBackend`
  (standard library ``sqlite3``, WAL, ``synchronous=FULL``) is the one shipped.

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

Every ``sqlite3`` exception is converted to :class:`~pith_graph.errors.StoreError`
in one place, :func:`_converted`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn, Protocol, TypeVar

from pith_graph import codes
from pith_graph.canonical import canonical_json, canonical_json_parsed, loads, sha256_hex
from pith_graph.documents import Document, DocumentSource, load_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError
from pith_graph.events import check_event, unit_id
from pith_graph.identifiers import PITH_NUMBER_RE, pith_number, short_pith_number
from pith_graph.keys import KeyRing, coerce_ring
from pith_graph.merge import MergeResult, merge_checked
from pith_graph.models import BUNDLE_TYPE, MERGE_VERSION
from pith_graph.rebuild import TrustedKeys
from pith_graph.state import State

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "ITEM_KINDS",
    "SCHEMA_VERSION",
    "AppendResult",
    "Backend",
    "BundleSigner",
    "EventRow",
    "EventStore",
    "ImportResult",
    "SQLiteBackend",
    "SQLiteSignatureCache",
    "StoredEvent",
    "SyncResult",
]

#: Version of the SQLite schema this module writes (``pith_schema.version``).
SCHEMA_VERSION: Final = 1
#: ``PRAGMA application_id`` of a pith-graph store ("PITH").
APPLICATION_ID: Final = 0x50495448
#: Seconds a writer waits for another process's lock before giving up.
DEFAULT_BUSY_TIMEOUT: Final = 30.0
#: Bundle-level items kept per subject, with the bundle key each comes from.
ITEM_KINDS: Final = {
    "record": "canonical_record",
    "alias": "source_aliases",
    "public_key": "public_keys",
    "mirror_hint": "mirror_hints",
    "timestamp_proof": "timestamp_proofs",
}

_T = TypeVar("_T")

# One statement per line: executed in order by _SQLiteBackend._create.
_SCHEMA_V1: Final = (
    "CREATE TABLE pith_schema (version INTEGER NOT NULL)",
    f"INSERT INTO pith_schema (version) VALUES ({SCHEMA_VERSION})",
    # Every copy of every event, as canonical bytes. seq only records arrival order.
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        body BLOB NOT NULL,
        event_type TEXT,
        target TEXT,
        signer_id TEXT,
        prev_event TEXT,
        created_at TEXT
    )""",
    # Idempotence: the same copy (same bytes) under one subject is one row.
    "CREATE UNIQUE INDEX events_by_subject ON events (subject, unit_id, digest)",
    "CREATE INDEX events_by_stream ON events (subject, target, signer_id)",
    "CREATE INDEX events_by_prev ON events (prev_event)",
    # Bundle-level data (record, aliases, public keys as data, hints, proofs).
    """CREATE TABLE items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX items_by_subject ON items (subject, kind, digest)",
    # Append-only, enforced by the database, not only by this module.
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER items_no_update BEFORE UPDATE ON items BEGIN SELECT RAISE(ABORT, 'items are append-only'); END",
    "CREATE TRIGGER items_no_delete BEFORE DELETE ON items BEGIN SELECT RAISE(ABORT, 'items are append-only'); END",
    "CREATE TRIGGER schema_no_update BEFORE UPDATE ON pith_schema BEGIN SELECT RAISE(ABORT, 'schema version is fixed'); END",
    # Verdicts of the pinned Ed25519 rule: content-addressed, so safe to reuse.
    """CREATE TABLE signature_cache (
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        message BLOB NOT NULL,
        valid INTEGER NOT NULL,
        -- message first: a replay prefetches every verdict about its events' digests at once.
        PRIMARY KEY (message, public_key, signature)
    ) WITHOUT ROWID""",
    f"PRAGMA application_id = {APPLICATION_ID}",
)
#: Migrations from an older schema version to the next (none yet: v1 is the first).
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {}

# sqlite3 result-code names (``exc.sqlite_errorname``, extended codes included) by prefix.
_ERROR_CODES: Final = (
    (("SQLITE_CORRUPT", "SQLITE_NOTADB"), codes.E_STORE_CORRUPT),
    (("SQLITE_BUSY", "SQLITE_LOCKED"), codes.E_STORE_BUSY),
    (("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_FULL", "SQLITE_PERM", "SQLITE_IOERR"), codes.E_IO),
)


@contextmanager
def _converted(what: str) -> Iterator[None]:
    """The one place where ``sqlite3`` exceptions become :class:`StoreError`."""
    try:
        yield
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", None) or ""
        code = next((c for prefixes, c in _ERROR_CODES if name.startswith(prefixes)), codes.E_STORE)
        if code == codes.E_STORE_CORRUPT:
            message = f"{what}: the file is corrupted or not an SQLite database ({exc})"
        elif code == codes.E_STORE_BUSY:
            message = f"{what}: the store stayed locked by another writer ({exc})"
        else:
            message = f"{what}: {exc}"
        raise StoreError(message, code=code) from exc


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


class Backend(Protocol):
    """What :class:`EventStore` needs from storage: sets of rows, append-only."""

    def add(self, events: Sequence[EventRow], items: Sequence[tuple[str, str, bytes]]) -> list[bool]:
        """Store event rows and (subject, kind, body) items atomically; per event row, whether it was new."""

    def event_rows(self, subject: str) -> list[EventRow]:
        """Every stored copy for ``subject``, sorted by (unit id, digest)."""

    def items(self, subject: str) -> list[tuple[str, bytes]]:
        """Every stored (kind, body) item of ``subject``, sorted by (kind, body)."""

    def subjects(self) -> list[str]:
        """Every subject with at least one event or item, sorted."""


class SQLiteBackend:
    """:class:`Backend` on one SQLite database (file or ``:memory:``)."""

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, create: bool = True
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        what = f"opening {self.path}"
        if not create and self.path != ":memory:" and not os.path.exists(self.path):
            raise StoreError(f"{what}: no store there (create one with `pith-graph store init`)", code=codes.E_IO)
        with _converted(what):
            # isolation_level=None: this class issues BEGIN/COMMIT itself.
            self.conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        try:
            self._configure(what)
            self.write(self._migrate, what)
        except BaseException:
            self.conn.close()
            raise

    def _configure(self, what: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            # WAL: readers never block the writer; FULL: a returned commit survives power loss.
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("PRAGMA synchronous=FULL")

        self._retry(run, what, transaction=False)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema in an empty database, or check (and migrate) an existing one."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            for statement in _SCHEMA_V1:
                conn.execute(statement)
            return
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        versions = (
            [row[0] for row in conn.execute("SELECT version FROM pith_schema")] if "pith_schema" in tables else []
        )
        if "pith_schema" not in tables or app_id != APPLICATION_ID or len(versions) != 1:
            self._raise_mismatch(conn, f"{self.path} is an SQLite database but not a pith-graph store")
        version = versions[0]
        if not isinstance(version, int):
            self._raise_mismatch(conn, f"{self.path}: unreadable schema version {version!r}")
        if version == SCHEMA_VERSION:
            return
        if version not in _MIGRATIONS:
            raise StoreError(
                f"{self.path}: schema version {version} is not supported (this pith_graph reads {SCHEMA_VERSION})",
                code=codes.E_STORE_SCHEMA,
            )
        while version in _MIGRATIONS:  # pragma: no cover - no migration exists yet
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            version += 1

    def _raise_mismatch(self, conn: sqlite3.Connection, message: str) -> NoReturn:
        """Raise ``store_schema_mismatch``, unless the real trouble is a damaged file."""
        # Scrambled pages can read as a foreign schema; only this error path pays for the check.
        found = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if found != ["ok"]:
            raise StoreError(f"{self.path}: the database is corrupted ({found[0]})", code=codes.E_STORE_CORRUPT)
        raise StoreError(message, code=codes.E_STORE_SCHEMA)

    def _retry(self, fn: Callable[[sqlite3.Connection], _T], what: str, *, transaction: bool) -> _T:
        """Run ``fn`` (in a write transaction if asked), retrying while another process holds the lock.

        sqlite3's busy timeout already waits inside each call; retries cover the
        cases where SQLite returns BUSY at once (e.g. a WAL snapshot that went stale).
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                with _converted(what):
                    if not transaction:
                        return fn(self.conn)
                    self.conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(self.conn)
                        self.conn.execute("COMMIT")
                    except BaseException:
                        if self.conn.in_transaction:
                            self.conn.execute("ROLLBACK")
                        raise
                    return result
            except StoreError as exc:
                if exc.code != codes.E_STORE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.2)

    def write(self, fn: Callable[[sqlite3.Connection], _T], what: str = "writing to the store") -> _T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction (committed before returning)."""
        return self._retry(fn, what, transaction=True)

    def read(self, fn: Callable[[sqlite3.Connection], _T], what: str = "reading the store") -> _T:
        """Run ``fn`` against one consistent snapshot (a read transaction)."""

        def snapshot(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return self._retry(snapshot, what, transaction=False)

    def fetchall(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one read-only query."""
        return self.read(lambda conn: conn.execute(query, params).fetchall())

    def add(self, events: Sequence[EventRow], items: Sequence[tuple[str, str, bytes]]) -> list[bool]:
        """See :meth:`Backend.add`: INSERT OR IGNORE on the unique (subject, id, digest) keys."""

        def run(conn: sqlite3.Connection) -> list[bool]:
            fresh: list[bool] = []
            for row in events:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO events (subject, unit_id, digest, body, event_type, target, signer_id,"
                    " prev_event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.subject, row.unit_id, row.digest, row.body, row.event_type, row.target,
                     row.signer_id, row.prev_event, row.created_at),
                )
                fresh.append(cursor.rowcount == 1)
            conn.executemany(
                "INSERT OR IGNORE INTO items (subject, kind, digest, body) VALUES (?, ?, ?, ?)",
                [(subject, kind, sha256_hex(body), body) for subject, kind, body in items],
            )
            return fresh

        return self.write(run, "appending to the store")

    def event_rows(self, subject: str) -> list[EventRow]:
        """See :meth:`Backend.event_rows`."""
        return self._select_rows("WHERE subject = ? ORDER BY unit_id, digest", (subject,))

    def _select_rows(self, where: str, params: tuple[Any, ...]) -> list[EventRow]:
        query = (
            "SELECT subject, unit_id, digest, body, event_type, target, signer_id, prev_event, created_at"
            f" FROM events {where}"
        )
        return self.read(lambda conn: [EventRow(*row) for row in conn.execute(query, params)])

    def stream_rows(self, subject: str, target: str, signer_id: str) -> list[EventRow]:
        """The copies of one stream (target, signer_id) of ``subject`` (uses ``events_by_stream``)."""
        return self._select_rows(
            "WHERE subject = ? AND target = ? AND signer_id = ? ORDER BY unit_id, digest", (subject, target, signer_id)
        )

    def naming_rows(self, prev_event: str) -> list[EventRow]:
        """The copies whose ``prev_event`` is ``prev_event`` (uses ``events_by_prev``)."""
        return self._select_rows("WHERE prev_event = ? ORDER BY subject, unit_id, digest", (prev_event,))

    def items(self, subject: str) -> list[tuple[str, bytes]]:
        """See :meth:`Backend.items`."""
        return self.read(
            lambda conn: [
                (kind, bytes(body))
                for kind, body in conn.execute(
                    "SELECT kind, body FROM items WHERE subject = ? ORDER BY kind, body", (subject,)
                )
            ]
        )

    def subjects(self) -> list[str]:
        """See :meth:`Backend.subjects`."""
        return self.read(
            lambda conn: [
                row[0]
                for row in conn.execute("SELECT subject FROM events UNION SELECT subject FROM items ORDER BY 1")
            ]
        )

    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check`` (``["ok"]`` for a sound file)."""
        return self.read(lambda conn: [row[0] for row in conn.execute("PRAGMA integrity_check")])

    def close(self) -> None:
        """Close the connection (the last one out checkpoints the WAL)."""
        with _converted(f"closing {self.path}"):
            self.conn.close()


class SQLiteSignatureCache:
    """:class:`pith_graph.ed25519.SignatureCache` kept in the store's ``signature_cache`` table.

    A verdict is a pure function of (public key, signature, message), so reusing
    it is safe whatever the trust of the replay that looks it up. New verdicts
    are buffered and written in one transaction by :meth:`flush`: one fsync per
    replay, not one per signature. ``hits`` and ``misses`` count lookups.
    """

    #: Most parameters per prefetch query (SQLite's default limit is 32766).
    PREFETCH_CHUNK: Final = 500

    def __init__(self, backend: SQLiteBackend) -> None:
        self._backend = backend
        self._pending: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._prefetched: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.hits = 0
        self.misses = 0

    def prefetch(self, messages: Iterable[bytes]) -> None:
        """Load every stored verdict about these messages in a few queries (kept until :meth:`forget`)."""
        wanted = sorted(set(messages))
        for start in range(0, len(wanted), self.PREFETCH_CHUNK):
            chunk = wanted[start : start + self.PREFETCH_CHUNK]
            query = (
                "SELECT public_key, signature, message, valid FROM signature_cache"
                f" WHERE message IN ({','.join('?' * len(chunk))})"
            )
            rows = self._backend.fetchall(query, chunk)
            # sqlite3 returns BLOBs as bytes, so rows key the dict as lookups do.
            self._prefetched.update(((k, s, m), v == 1) for k, s, m, v in rows)

    def forget(self) -> None:
        """Drop prefetched verdicts (they stay in the database)."""
        self._prefetched.clear()

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """The remembered verdict, or None."""
        key = (public_key, signature, message)
        known = self._prefetched.get(key)
        if known is None:
            known = self._pending.get(key)
        if known is None:
            with _converted("reading the signature cache"):
                row = self._backend.conn.execute(
                    "SELECT valid FROM signature_cache WHERE public_key = ? AND signature = ? AND message = ?", key
                ).fetchone()
            known = None if row is None else bool(row[0])
        if known is None:
            self.misses += 1
        else:
            self.hits += 1
        return known

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        """Remember a verdict (written at the next :meth:`flush`)."""
        self._pending[(public_key, signature, message)] = valid

    def flush(self) -> None:
        """Write the buffered verdicts in one transaction."""
        if not self._pending:
            return
        rows = [(*key, int(valid)) for key, valid in self._pending.items()]
        self._backend.write(
            lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO signature_cache (public_key, signature, message, valid) VALUES (?, ?, ?, ?)",
                rows,
            ),
            "writing the signature cache",
        )
        self._pending.clear()


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
        return {"status": self.status, "subject": self.subject, "unit_id": self.unit_id,
                "digest": self.digest, "reason": self.reason}


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


class BundleSigner(Protocol):
    """A mirror key able to sign an exported bundle (e.g. :class:`pith_graph.testing.TestKey`)."""

    key_id: str
    fingerprint: str

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(bundle: dict[str, Any], signer: BundleSigner, signed_at: str) -> dict[str, Any]:
    """``bundle`` plus a ``bundle_signature`` over ``bundle_sha256`` (FORMAT-FACTS: "Signatures")."""
    digest = hashlib.sha256(canonical_json(bundle)).hexdigest()
    signature = signer.sign(bytes.fromhex(digest))
    return {
        **bundle,
        "bundle_signature": {
            "signature_status": "signed_v1",
            "algorithm": "ed25519",
            "key_id": signer.key_id,
            "public_key_fingerprint": signer.fingerprint,
            "signature_b64": base64.b64encode(signature).decode("ascii"),
            "signed_message": "bundle_sha256_bytes",
            "signed_at": signed_at,
            "bundle_sha256": digest,
        },
    }


def _parse_event(event: Any) -> Any:
    """A copy as a :func:`loads` tree: raw bytes/text are parsed, other values normalised."""
    if isinstance(event, (bytes, bytearray, memoryview, str)):
        return loads(bytes(event) if not isinstance(event, str) else event)
    # A value the caller built: round trip through the reference rule, so that a
    # plain float is printed as the canonical rule prints it (canonical.py).
    return loads(canonical_json(event))


def _signed_digests(trees: Iterable[Any]) -> Iterator[bytes]:
    """The messages events sign (the raw bytes of well-formed ``content_sha256`` values)."""
    for tree in trees:
        digest = tree.get("content_sha256") if isinstance(tree, dict) else None
        if isinstance(digest, str) and len(digest) == 64:
            try:
                yield bytes.fromhex(digest)
            except ValueError:
                continue


def _join(bodies: Iterable[bytes]) -> Any:
    """Parse many canonical bodies with one strict parse (a JSON array)."""
    return loads(b"[" + b",".join(bodies) + b"]")


class EventStore:
    """The event store: append-only sets of event copies per subject, merged on demand.

    Open with a path (created on first use unless ``create=False``) or ``":memory:"``; use as a context
    manager or call :meth:`close`. Raises :class:`~pith_graph.errors.StoreError`
    (``store_corrupt``, ``store_schema_mismatch``, ``store_busy``, ``io_error``)
    for an unusable database.
    """

    def __init__(
        self, path: str | os.PathLike[str] = ":memory:", *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, create: bool = True
    ) -> None:
        self.backend = SQLiteBackend(path, busy_timeout=busy_timeout, create=create)
        self.cache = SQLiteSignatureCache(self.backend)

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
        """Run ``PRAGMA integrity_check``; raise ``store_corrupt`` unless it says ok."""
        found = self.backend.integrity_check()
        if found != ["ok"]:
            raise StoreError(f"integrity check failed: {'; '.join(found[:3])}", code=codes.E_STORE_CORRUPT)

    def verifier(self) -> Verifier:
        """A :class:`Verifier` backed by this store's signature cache."""
        return Verifier(cache=self.cache)

    # --- writing ------------------------------------------------------------------

    def _status(self, row: EventRow, tree: Any, fresh: bool, ring: KeyRing, verifier: Verifier) -> AppendResult:
        reason = check_event(tree, subject=row.subject, keyring=ring, verifier=verifier, uid=row.unit_id).reason
        status = codes.STORE_DUPLICATE if not fresh else codes.STORE_NEW if reason is None else codes.STORE_INVALID
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
        tree = _parse_event(event)
        if subject is None:
            claimed = tree.get("subject_pith_number") if isinstance(tree, dict) else None
            if not isinstance(claimed, str):
                raise InputError("the event names no subject_pith_number: pass subject=", code=codes.E_USAGE)
            subject = claimed
        row = EventRow.of(subject, tree)
        (fresh,) = self.backend.add([row], [])
        verifier = self.verifier()
        try:
            return self._status(row, tree, fresh, coerce_ring(trusted_keys), verifier)
        finally:
            self.cache.flush()

    def import_bundle(
        self, bundle: DocumentSource | Document, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False
    ) -> ImportResult:
        """Store a bundle's events and bundle-level items (record, aliases, keys, hints, proofs).

        One transaction. Public keys are stored as data and never trusted by
        being stored; ``trusted_keys``/``trust_bundle_keys`` only decide the
        reported statuses, as for :meth:`append`.
        """
        raw, model = load_bundle(bundle)
        subject = model.pith_number
        rows = [EventRow.of(subject, tree) for tree in raw["events"]]
        items: list[tuple[str, str, bytes]] = []
        for kind, key in ITEM_KINDS.items():
            value = raw.get(key)
            values = [value] if kind == "record" else (value or [])
            items.extend((subject, kind, canonical_json_parsed(v)) for v in values if v is not None)
        before = self._item_count(subject)
        fresh = self.backend.add(rows, items)
        ring = self._ring(trusted_keys, trust_bundle_keys, [loads(b) for k, b in self.backend.items(subject) if k == "public_key"]
                          if trust_bundle_keys else ())
        verifier = self.verifier()
        try:
            appends = tuple(
                self._status(row, tree, new, ring, verifier)
                for row, tree, new in zip(rows, raw["events"], fresh, strict=True)
            )
        finally:
            self.cache.flush()
        return ImportResult(subject, appends, self._item_count(subject) - before)

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
            return SyncResult(result.count(codes.STORE_NEW) + result.count(codes.STORE_INVALID), result.items_added)
        rows: list[EventRow] = []
        items: list[tuple[str, str, bytes]] = []
        before = sum(len(self.backend.items(s)) for s in self.backend.subjects())
        for subject in other.subjects():
            rows.extend(other.backend.event_rows(subject))
            items.extend((subject, kind, body) for kind, body in other.backend.items(subject))
        fresh = self.backend.add(rows, items)
        after = sum(len(self.backend.items(s)) for s in self.backend.subjects())
        return SyncResult(sum(fresh), after - before)

    # --- reading ------------------------------------------------------------------

    def subjects(self) -> list[str]:
        """Every subject the store holds something for, sorted."""
        return self.backend.subjects()

    def _ring(self, trusted_keys: TrustedKeys, trust_bundle_keys: bool, stored_keys: Iterable[Mapping[str, Any]]) -> KeyRing:
        """The caller's keys (default: the registry key), plus the stored ones only on request.

        merge-v1: a bundle never vouches for itself, and neither does a store.
        """
        ring = coerce_ring(trusted_keys)
        if not trust_bundle_keys:
            return ring
        try:
            return ring.union(KeyRing.from_entries(stored_keys))
        except TrustError as exc:
            raise TrustError(f"stored public_keys: {exc.message}", code=exc.code) from exc

    def _load(self, subject: str) -> tuple[list[EventRow], dict[str, list[Any]]]:
        rows = self.backend.event_rows(subject)
        grouped: dict[str, list[Any]] = {kind: [] for kind in ITEM_KINDS}
        for kind, body in self.backend.items(subject):
            grouped.setdefault(kind, []).append(body)
        if not rows and not any(grouped.values()):
            raise StoreError(f"the store holds nothing for {subject!r}", code=codes.E_STORE_UNKNOWN_SUBJECT)
        return rows, {kind: _join(bodies) for kind, bodies in grouped.items()}

    def _replay(
        self, subject: str, trusted_keys: TrustedKeys, trust_bundle_keys: bool
    ) -> tuple[MergeResult, list[EventRow], list[Any], dict[str, list[Any]]]:
        rows, items = self._load(subject)
        trees = _join(row.body for row in rows)
        ring = self._ring(trusted_keys, trust_bundle_keys, items["public_key"])
        self.cache.prefetch(_signed_digests(trees))
        try:
            result = merge_checked(
                trees, subject=subject, aliases=items["alias"], keyring=ring, verifier=self.verifier()
            )
        finally:
            self.cache.forget()
            self.cache.flush()
        return result, rows, trees, items

    def replay(self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False) -> MergeResult:
        """Merge every stored copy of ``subject`` (merge-v1), reusing the signature cache.

        The warm path: signatures verified before (by any replay, append or import
        of this store) are not verified again. ``trusted_keys``: as for
        ``rebuild_state`` (default: the registry key); ``trust_bundle_keys`` also
        trusts the public keys stored for the subject.
        """
        return self._replay(subject, trusted_keys, trust_bundle_keys)[0]

    def state(self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False) -> State:
        """The merged state of ``subject``: byte for byte ``rebuild_state`` of :meth:`export_bundle`."""
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

    def events(self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False) -> list[StoredEvent]:
        """Every stored copy of ``subject``: applied units in apply order, then the rest by unit id."""
        result, rows, _, _ = self._replay(subject, trusted_keys, trust_bundle_keys)
        applied = set(result.state.applied_event_ids)
        return [
            StoredEvent(
                rows[i].unit_id, rows[i].digest, rows[i].body, rows[i].event_type,
                result.reasons.get(rows[i].unit_id), rows[i].unit_id in applied,
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
        result, rows, trees, items = self._replay(subject, trusted_keys, trust_bundle_keys)
        record = self._canonical_record(subject, result.state, items["record"])
        when = built_at or _utc_now()
        bundle: dict[str, Any] = {
            "bundle_type": BUNDLE_TYPE,
            "bundle_version": "1.0",
            "pith_number": subject,
        }
        if PITH_NUMBER_RE.fullmatch(subject):
            bundle["short_pith_number"] = short_pith_number(subject)
        bundle.update(
            {
                "canonical_record": record,
                "canonical_sha256": sha256_hex(canonical_json(record)),
                "source": record.get("source"),
                "source_aliases": sorted(
                    items["alias"], key=lambda a: (str(a.get("alias_kind")), str(a.get("alias_value")), canonical_json(a))
                ),
                "events": [trees[i] for i in self._ordered(result, rows)],
                "timestamp_proofs": items["timestamp_proof"],
                "mirror_hints": items["mirror_hint"],
                "public_keys": sorted(items["public_key"], key=lambda k: (str(k.get("key_id")), canonical_json(k))),
                "merge_version": MERGE_VERSION,
                "built_at": when,
                "state": result.state.to_dict(),
            }
        )
        return _signed(bundle, sign_with, when) if sign_with is not None else bundle

    @staticmethod
    def _canonical_record(subject: str, state: State, stored: list[Any]) -> dict[str, Any]:
        """The subject's canonical record: the applied record_created's, else a stored one naming the subject."""
        if state.canonical_record is not None:
            record: dict[str, Any] = loads(state.canonical_record)
            return record
        candidates = [r for r in stored if isinstance(r, dict)]
        for candidate in sorted(candidates, key=canonical_json):
            try:
                if pith_number(candidate) == subject:
                    return candidate
            except PithGraphError:
                continue
        if candidates:
            # What was received, even if it names another number: evidence, not a guess.
            return min(candidates, key=canonical_json)
        raise StoreError(f"no canonical record is known for {subject!r}", code=codes.E_STORE_UNKNOWN_SUBJECT)

