"""A durable, append-only event store for mirrors (SQLite).

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
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, NoReturn, Protocol, TypeVar

import msgspec

from pith_graph import codes
from pith_graph.canonical import canonical_json, canonical_json_parsed, gc_paused, loads, sha256_hex
from pith_graph.documents import Document, DocumentSource, load_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError
from pith_graph.events import (
    INSPECT_REVISION,
    INTRINSIC_CHECKS,
    KEY_CHECK_REVISION,
    CheckedEvent,
    EventFacts,
    check_keys,
    inspect_event,
    unit_id,
)
from pith_graph.identifiers import PITH_NUMBER_RE, pith_number, short_pith_number
from pith_graph.keys import KeyRing, coerce_ring
from pith_graph.merge import MergeResult, merge_copies
from pith_graph.models import BUNDLE_TYPE, MERGE_VERSION
from pith_graph.rebuild import TrustedKeys
from pith_graph.state import State

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
    "SQLiteSignatureCache",
    "StoredEvent",
    "SyncResult",
]

#: Version of the SQLite schema this module writes (``pith_schema.version``).
SCHEMA_VERSION: Final = 2
#: ``PRAGMA application_id`` of a pith-graph store ("PITH").
APPLICATION_ID: Final = 0x50495448
#: Page cache of a connection, in KiB (SQLite's default is 2 MiB); memory is only used as pages are read.
_CACHE_KIB: Final = 64 * 1024
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

# One statement per line, executed in order by SQLiteBackend._migrate: an empty
# database gets version 1, then every migration up to SCHEMA_VERSION.
_SCHEMA_V1: Final = (
    "CREATE TABLE pith_schema (version INTEGER NOT NULL)",
    "INSERT INTO pith_schema (version) VALUES (1)",
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
#: Migrations from a schema version to the next. pith_schema refuses UPDATE, so a
#: migration INSERTs the new version and the store's version is MAX(version).
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    # v2: the intrinsic stage-1 verdict and facts of every stored copy (warm replay).
    # Derived from events.body and the subject alone; rows stored under v1 get
    # theirs on their first replay.
    1: (
        """CREATE TABLE event_facts (
            seq INTEGER NOT NULL REFERENCES events (seq),
            -- FACTS_RULE of the code that computed the row: another rule never reads it.
            rule TEXT NOT NULL,
            -- the first failing intrinsic check, NULL when all passed.
            reason TEXT,
            -- msgpack EventFacts, NULL when the copy is malformed.
            facts BLOB,
            -- the canonical signer and payload fragments: a slice of events.body
            -- (offset, length) or, when not found there, the bytes themselves.
            signer_at INTEGER,
            signer_len INTEGER,
            signer_json BLOB,
            payload_at INTEGER,
            payload_len INTEGER,
            payload_json BLOB,
            PRIMARY KEY (seq, rule)
        ) WITHOUT ROWID""",
        "CREATE TRIGGER event_facts_no_update BEFORE UPDATE ON event_facts"
        " BEGIN SELECT RAISE(ABORT, 'event facts are append-only'); END",
        "CREATE TRIGGER event_facts_no_delete BEFORE DELETE ON event_facts"
        " BEGIN SELECT RAISE(ABORT, 'event facts are append-only'); END",
        "CREATE TRIGGER schema_no_delete BEFORE DELETE ON pith_schema"
        " BEGIN SELECT RAISE(ABORT, 'schema versions are append-only'); END",
        # The final stage-1 verdict of an intrinsically valid copy under one set of
        # trusted keys (ring: _ring_id), so a warm replay under the same keys skips
        # the key checks and the signature cache entirely.
        """CREATE TABLE key_verdicts (
            ring TEXT NOT NULL,
            seq INTEGER NOT NULL REFERENCES events (seq),
            -- the first failing key check, NULL when every stage-1 check passed.
            reason TEXT,
            PRIMARY KEY (ring, seq)
        ) WITHOUT ROWID""",
        "CREATE TRIGGER key_verdicts_no_update BEFORE UPDATE ON key_verdicts"
        " BEGIN SELECT RAISE(ABORT, 'key verdicts are append-only'); END",
        "CREATE TRIGGER key_verdicts_no_delete BEFORE DELETE ON key_verdicts"
        " BEGIN SELECT RAISE(ABORT, 'key verdicts are append-only'); END",
        "INSERT INTO pith_schema (version) VALUES (2)",
    ),
}


def _facts_rule() -> str:
    """A tag of the intrinsic stage-1 rule: what decides whether a stored facts row still applies.

    Covers the merge version, the intrinsic reasons in check order and the
    EventFacts layout (msgpack arrays are positional), plus
    :data:`pith_graph.events.INSPECT_REVISION`, bumped when
    :func:`pith_graph.events.inspect_event` changes otherwise.
    """
    described = [MERGE_VERSION, INSPECT_REVISION, codes.EVENT_REASONS[:INTRINSIC_CHECKS], EventFacts.__struct_fields__]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


#: The rule ``event_facts.rule`` rows must carry to be read by this module.
FACTS_RULE: Final = _facts_rule()
_FACTS_ENCODER: Final = msgspec.msgpack.Encoder()
_FACTS_DECODER: Final = msgspec.msgpack.Decoder(EventFacts)
#: Progress of a copy whose intrinsic reason is the key (None: every intrinsic check passed).
def _ring_id(ring: KeyRing) -> str:
    """What a key verdict depends on besides the copy: the trusted keys (material, key id,
    rotates_at, signer binding) and the rules that read them."""
    described = [FACTS_RULE, KEY_CHECK_REVISION, ring.to_entries()]
    return hashlib.sha256(canonical_json(described)).hexdigest()[:32]


#: What a kept key verdict may say: a key-check reason, or None (every check passed).
_KEY_VERDICTS: Final[frozenset[str | None]] = frozenset({None, *codes.EVENT_REASONS[INTRINSIC_CHECKS:]})
_PROGRESS: Final[dict[str | None, int]] = {
    None: INTRINSIC_CHECKS,
    **{reason: i for i, reason in enumerate(codes.EVENT_REASONS[:INTRINSIC_CHECKS])},
}

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
        signer = (signer_at, len(checked.signer_json), None) if signer_at >= 0 else (None, None, checked.signer_json)
        payload = (
            (payload_at, len(checked.payload_json), None) if payload_at >= 0 else (None, None, checked.payload_json)
        )
        return cls(checked.reason, _FACTS_ENCODER.encode(checked.facts), *signer, *payload)

    @classmethod
    def inspected(cls, subject: str, row: EventRow, tree: Any = None) -> FactsRow:
        """The row for a stored copy: :func:`~pith_graph.events.inspect_event` of its tree (parsed from the body if None)."""
        checked = inspect_event(loads(row.body) if tree is None else tree, subject=subject, uid=row.unit_id)
        return cls.of(row.body, checked)


#: Columns of one stored copy as a replay reads it (see SQLiteBackend.copies): seq,
#: unit_id, digest, reason, facts, signer_json, payload_json (the fragments sliced
#: out of the body by SQLite), then the body only for a copy that lacks its facts
#: (stored under schema v1), then with ``with_body`` the EventRow columns from body on.
_COPY_COLUMNS: Final = (
    "e.seq, e.unit_id, e.digest, f.reason, f.facts,"
    " CASE WHEN f.signer_at IS NULL THEN f.signer_json ELSE substr(e.body, f.signer_at + 1, f.signer_len) END,"
    " CASE WHEN f.payload_at IS NULL THEN f.payload_json ELSE substr(e.body, f.payload_at + 1, f.payload_len) END,"
    " CASE WHEN f.rule IS NULL THEN e.body END"
)
_COPIES_FROM: Final = (
    " FROM events e LEFT JOIN event_facts f ON f.seq = e.seq AND f.rule = ?"
    " WHERE e.subject = ? ORDER BY e.unit_id, e.digest"
)
_COPIES_QUERY: Final = f"SELECT {_COPY_COLUMNS}{_COPIES_FROM}"
_COPIES_WITH_BODY_QUERY: Final = (
    f"SELECT {_COPY_COLUMNS}, e.body, e.event_type, e.target, e.signer_id, e.prev_event, e.created_at{_COPIES_FROM}"
)
_INSERT_FACTS: Final = (
    "INSERT OR IGNORE INTO event_facts (seq, rule, reason, facts, signer_at, signer_len, signer_json,"
    " payload_at, payload_len, payload_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Backend(Protocol):
    """What :class:`EventStore` needs from storage: sets of rows, append-only."""

    def add(
        self,
        events: Sequence[EventRow],
        items: Sequence[tuple[str, str, bytes]],
        facts: Sequence[FactsRow] | None = None,
    ) -> list[bool]:
        """Store event rows, their facts and (subject, kind, body) items atomically; per event row, whether it was new.

        ``facts[i]`` is :meth:`FactsRow.of` the ``i``-th row (computed from the body when not given).
        """

    def copies(self, subject: str, *, with_body: bool = False) -> tuple[list[tuple[Any, ...]], list[tuple[str, bytes]]]:
        """One snapshot of ``subject``: its copies joined with their facts (``_COPY_COLUMNS``), and its items."""

    def add_facts(self, facts: Sequence[tuple[int, FactsRow]]) -> None:
        """Store facts computed for copies that lacked them (by ``seq``); a row already there is kept."""

    def key_verdicts(self, ring: str, subject: str) -> dict[int, str | None]:
        """The stored key verdicts of ``subject``'s copies under ``ring``, by ``seq``."""

    def add_key_verdicts(self, ring: str, subject: str, verdicts: Sequence[tuple[str, str, str | None]]) -> None:
        """Store key verdicts (unit id, digest, reason) of ``subject``'s copies under ``ring``; a row already there is kept."""

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
            # A replay reads every page of a subject's copies: keep them cached between replays.
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")

        self._retry(run, what, transaction=False)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema in an empty database, or check (and migrate) an existing one."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            for statement in _SCHEMA_V1:
                conn.execute(statement)
            tables = {"pith_schema"}  # a new store is a v1 store, migrated like any other
        self._upgrade(conn, tables)

    def _upgrade(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        """Check the version of an existing store and run the migrations it lacks (same transaction)."""
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        versions = (
            [row[0] for row in conn.execute("SELECT version FROM pith_schema")] if "pith_schema" in tables else []
        )
        if "pith_schema" not in tables or app_id != APPLICATION_ID or not versions:
            self._raise_mismatch(conn, f"{self.path} is an SQLite database but not a pith-graph store")
        if not all(isinstance(v, int) for v in versions):
            self._raise_mismatch(conn, f"{self.path}: unreadable schema version {versions!r}")
        # Versions are only ever added (the table refuses UPDATE and, from v2, DELETE).
        version = max(versions)
        if version == SCHEMA_VERSION:
            return
        if version not in _MIGRATIONS:
            raise StoreError(
                f"{self.path}: schema version {version} is not supported (this pith_graph reads {SCHEMA_VERSION})",
                code=codes.E_STORE_SCHEMA,
            )
        while version in _MIGRATIONS:
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

    def add(
        self,
        events: Sequence[EventRow],
        items: Sequence[tuple[str, str, bytes]],
        facts: Sequence[FactsRow] | None = None,
    ) -> list[bool]:
        """See :meth:`Backend.add`: INSERT OR IGNORE on the unique (subject, id, digest) keys.

        A new copy's facts are written in the same transaction as the copy, so a
        stored copy lacks them only if it was stored under schema v1.
        """

        def run(conn: sqlite3.Connection) -> list[bool]:
            fresh: list[bool] = []
            for i, row in enumerate(events):
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO events (subject, unit_id, digest, body, event_type, target, signer_id,"
                    " prev_event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.subject, row.unit_id, row.digest, row.body, row.event_type, row.target,
                     row.signer_id, row.prev_event, row.created_at),
                )
                fresh.append(cursor.rowcount == 1)
                if cursor.rowcount == 1:
                    found = facts[i] if facts is not None else FactsRow.inspected(row.subject, row)
                    conn.execute(_INSERT_FACTS, (cursor.lastrowid, FACTS_RULE, *found))
            conn.executemany(
                "INSERT OR IGNORE INTO items (subject, kind, digest, body) VALUES (?, ?, ?, ?)",
                [(subject, kind, sha256_hex(body), body) for subject, kind, body in items],
            )
            return fresh

        return self.write(run, "appending to the store")

    def copies(self, subject: str, *, with_body: bool = False) -> tuple[list[tuple[Any, ...]], list[tuple[str, bytes]]]:
        """See :meth:`Backend.copies` (one read transaction, ``events_by_subject`` order)."""
        query = _COPIES_WITH_BODY_QUERY if with_body else _COPIES_QUERY

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[str, bytes]]]:
            rows = conn.execute(query, (FACTS_RULE, subject)).fetchall()
            return rows, self._items(conn, subject)

        return self.read(run)

    def key_verdicts(self, ring: str, subject: str) -> dict[int, str | None]:
        """See :meth:`Backend.key_verdicts`."""
        query = "SELECT k.seq, k.reason FROM key_verdicts k JOIN events e ON e.seq = k.seq WHERE k.ring = ? AND e.subject = ?"
        return self.read(lambda conn: dict(conn.execute(query, (ring, subject)).fetchall()))

    def add_key_verdicts(self, ring: str, subject: str, verdicts: Sequence[tuple[str, str, str | None]]) -> None:
        """See :meth:`Backend.add_key_verdicts` (INSERT OR IGNORE, as for facts)."""
        rows = [(ring, reason, subject, uid, digest) for uid, digest, reason in verdicts]
        insert = (
            "INSERT OR IGNORE INTO key_verdicts (ring, seq, reason)"
            " SELECT ?, seq, ? FROM events WHERE subject = ? AND unit_id = ? AND digest = ?"
        )
        self.write(lambda conn: conn.executemany(insert, rows), "writing key verdicts")

    def add_facts(self, facts: Sequence[tuple[int, FactsRow]]) -> None:
        """See :meth:`Backend.add_facts` (INSERT OR IGNORE: concurrent replays may race to fill a row)."""
        rows = [(seq, FACTS_RULE, *found) for seq, found in facts]
        self.write(lambda conn: conn.executemany(_INSERT_FACTS, rows), "writing event facts")

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
        return self.read(lambda conn: self._items(conn, subject))

    @staticmethod
    def _items(conn: sqlite3.Connection, subject: str) -> list[tuple[str, bytes]]:
        return [
            (kind, bytes(body))
            for kind, body in conn.execute("SELECT kind, body FROM items WHERE subject = ? ORDER BY kind, body", (subject,))
        ]

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

    #: Most parameters per prefetch query (SQLite's default limit is 32766 since 3.32).
    PREFETCH_CHUNK: Final = 30000

    def __init__(self, backend: SQLiteBackend) -> None:
        self._backend = backend
        self._pending: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._prefetched: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.hits = 0
        self.misses = 0

    def prefetch(self, messages: Iterable[bytes]) -> None:
        """Load every stored verdict about these messages in a few queries (kept until :meth:`forget`)."""
        wanted = sorted(set(messages))  # in key order: consecutive lookups share index pages
        size = self.PREFETCH_CHUNK

        def run(conn: sqlite3.Connection) -> list[Any]:
            rows: list[Any] = []
            for start in range(0, len(wanted), size):
                chunk = wanted[start : start + size]
                query = (
                    "SELECT public_key, signature, message, valid FROM signature_cache"
                    f" WHERE message IN ({','.join('?' * len(chunk))})"
                )
                rows.extend(conn.execute(query, chunk))
            return rows

        # One read transaction for every chunk; sqlite3 returns BLOBs as bytes, so
        # rows key the dict as lookups do.
        self._prefetched.update(((k, s, m), v == 1) for k, s, m, v in self._backend.read(run))

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


def _stored_checked(
    subject: str, rows: Sequence[tuple[Any, ...]], known: Mapping[int, str | None]
) -> tuple[list[tuple[str, CheckedEvent]], list[bytes], list[tuple[int, FactsRow]], list[tuple[int, int]]]:
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
    add_copy, add_message, decode, progress_of = copies.append, messages.append, _FACTS_DECODER.decode, _PROGRESS
    malformed = codes.REASON_MALFORMED
    for row in rows:
        seq, uid, digest, reason, blob, signer, payload, body = row[:8]
        if body is None:
            try:
                progress = progress_of[reason]
                facts = None if blob is None else decode(blob)
            except (KeyError, msgspec.DecodeError) as exc:
                raise StoreError(f"event_facts row {seq} is unreadable ({exc!r})", code=codes.E_STORE_CORRUPT) from exc
            if (facts is None) != (reason == malformed):
                raise StoreError(f"event_facts row {seq} contradicts itself", code=codes.E_STORE_CORRUPT)
            checked = CheckedEvent(uid, None, reason, progress, facts, signer or b"", payload or b"", digest)
        else:
            inspected = inspect_event(loads(body), subject=subject, uid=uid)
            missing.append((seq, FactsRow.of(body, inspected)))
            reason, facts = inspected.reason, inspected.facts
            checked = CheckedEvent(
                uid, None, reason, inspected.progress, facts, inspected.signer_json, inspected.payload_json, digest
            )
        if reason is None:
            assert facts is not None  # a copy passing the intrinsic checks is well formed
            if seq in known:
                verdict = known[seq]
                if verdict not in key_verdict_reasons:
                    raise StoreError(f"key verdict of row {seq} is unreadable ({verdict!r})", code=codes.E_STORE_CORRUPT)
                checked = checked.with_reason(verdict)
            else:
                unchecked.append((len(copies), seq))
                add_message(facts.message)  # merge-v1: the 32 raw bytes of content_sha256
        add_copy((uid, checked))
    return copies, messages, missing, unchecked


def _as_is(uid: str, checked: CheckedEvent) -> CheckedEvent:
    """The ``inspect`` of :func:`~pith_graph.merge.merge_copies` for outcomes read from the store."""
    return checked


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

    @staticmethod
    def _inspected(row: EventRow, tree: Any) -> tuple[CheckedEvent, FactsRow]:
        """The intrinsic stage-1 outcome of a received copy, and the facts row stored with it."""
        checked = inspect_event(tree, subject=row.subject, uid=row.unit_id)
        return checked, FactsRow.of(row.body, checked)

    def _status(self, row: EventRow, checked: CheckedEvent, fresh: bool, ring: KeyRing, verifier: Verifier) -> AppendResult:
        reason = check_keys(checked, subject=row.subject, keyring=ring, verifier=verifier).reason
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
        checked, facts = self._inspected(row, tree)
        (fresh,) = self.backend.add([row], [], [facts])
        verifier = self.verifier()
        try:
            return self._status(row, checked, fresh, coerce_ring(trusted_keys), verifier)
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
        inspected = [self._inspected(row, tree) for row, tree in zip(rows, raw["events"], strict=True)]
        items: list[tuple[str, str, bytes]] = []
        for kind, key in ITEM_KINDS.items():
            value = raw.get(key)
            values = [value] if kind == "record" else (value or [])
            items.extend((subject, kind, canonical_json_parsed(v)) for v in values if v is not None)
        before = self._item_count(subject)
        fresh = self.backend.add(rows, items, [facts for _, facts in inspected])
        ring = self._ring(trusted_keys, trust_bundle_keys, [loads(b) for k, b in self.backend.items(subject) if k == "public_key"]
                          if trust_bundle_keys else ())
        verifier = self.verifier()
        try:
            appends = tuple(
                self._status(row, checked, new, ring, verifier)
                for row, (checked, _), new in zip(rows, inspected, fresh, strict=True)
            )
        finally:
            self.cache.flush()
        self._keep_verdicts(ring, subject, [(a, c) for a, (c, _) in zip(appends, inspected, strict=True)])
        return ImportResult(subject, appends, self._item_count(subject) - before)

    def _keep_verdicts(self, ring: KeyRing, subject: str, outcomes: Sequence[tuple[AppendResult, CheckedEvent]]) -> None:
        """Keep the key verdicts an append or import just reached, so the next replay under
        the same keys starts warm (only for copies that passed the intrinsic checks)."""
        verdicts = [(a.unit_id, a.digest, a.reason) for a, inspected in outcomes if inspected.reason is None]
        if verdicts:
            self.backend.add_key_verdicts(_ring_id(ring), subject, verdicts)

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

    def _replay(
        self, subject: str, trusted_keys: TrustedKeys, trust_bundle_keys: bool, *, with_body: bool = False
    ) -> tuple[MergeResult, list[tuple[Any, ...]], dict[str, list[Any]]]:
        """Merge the stored copies of ``subject`` from their stored facts (docs/store.md, "Warm replay").

        No copy is parsed: each copy's intrinsic stage-1 outcome comes from
        ``event_facts`` (computed once, from the immutable body, when the copy was
        stored); the key checks run here against the caller's trusted keys, and
        signatures go through the content-addressed signature cache. Returns the
        result, the copy rows (``_COPY_COLUMNS``) and the parsed items.
        """
        rows, item_rows = self.backend.copies(subject, with_body=with_body)
        grouped: dict[str, list[bytes]] = {kind: [] for kind in ITEM_KINDS}
        for kind, body in item_rows:
            grouped.setdefault(kind, []).append(body)
        if not rows and not any(grouped.values()):
            raise StoreError(f"the store holds nothing for {subject!r}", code=codes.E_STORE_UNKNOWN_SUBJECT)
        items = {kind: _join(bodies) for kind, bodies in grouped.items()}
        ring = self._ring(trusted_keys, trust_bundle_keys, items["public_key"])
        ring_id = _ring_id(ring)
        try:
            with gc_paused():  # thousands of small acyclic objects (see canonical.gc_paused)
                copies, messages, missing, unchecked = _stored_checked(
                    subject, rows, self.backend.key_verdicts(ring_id, subject)
                )
                if missing:
                    self.backend.add_facts(missing)
                if unchecked:
                    # The key checks of copies never replayed under these keys; their
                    # verdicts are kept for the next replay.
                    self.cache.prefetch(messages)
                    verifier = self.verifier()
                    verdicts: list[tuple[str, str, str | None]] = []
                    for index, _seq in unchecked:
                        uid, intrinsic = copies[index]
                        checked = check_keys(intrinsic, subject=subject, keyring=ring, verifier=verifier)
                        copies[index] = (uid, checked)
                        verdicts.append((uid, rows[index][2], checked.reason))
                    self.backend.add_key_verdicts(ring_id, subject, verdicts)
                result = merge_copies(
                    copies, _as_is, subject=subject, aliases=items["alias"], keyring=ring, verifier=self.verifier()
                )
        finally:
            self.cache.forget()
            self.cache.flush()
        return result, rows, items

    def replay(self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False) -> MergeResult:
        """Merge every stored copy of ``subject`` (merge-v1), reusing the signature cache.

        The warm path: no copy is parsed (stage-1 facts come from ``event_facts``),
        and signatures verified before (by any replay, append or import of this
        store) are not verified again. ``trusted_keys``: as for
        ``rebuild_state`` (default: the registry key); ``trust_bundle_keys`` also
        trusts the public keys stored for the subject.
        """
        return self._replay(subject, trusted_keys, trust_bundle_keys)[0]

    @staticmethod
    def _event_rows(subject: str, rows: list[tuple[Any, ...]]) -> list[EventRow]:
        """EventRows of copy rows read ``with_body``."""
        return [EventRow(subject, row[1], row[2], *row[8:]) for row in rows]

    def state(self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False) -> State:
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

    def events(self, subject: str, *, trusted_keys: TrustedKeys = None, trust_bundle_keys: bool = False) -> list[StoredEvent]:
        """Every stored copy of ``subject``: applied units in apply order, then the rest by unit id."""
        result, copy_rows, _ = self._replay(subject, trusted_keys, trust_bundle_keys, with_body=True)
        rows = self._event_rows(subject, copy_rows)
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
        result, copy_rows, items = self._replay(subject, trusted_keys, trust_bundle_keys, with_body=True)
        rows = self._event_rows(subject, copy_rows)
        trees = _join(row.body for row in rows)  # export needs the trees; a state never does
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

