"""The PostgreSQL backend of the event store (psycopg 3; ``psycopg_pool`` for servers).

Selected by a URL wherever a store is named (``--db postgresql://user@host:port/db``,
:func:`pith_graph.store.open_backend`). The same rows as the SQLite backend, so the
same states, bundles and logs byte for byte (schema: :mod:`._postgres_schema`).

Concurrency (docs/store.md, "Several servers, one database"):

* every transaction that adds events or items first takes the store's write lock
  (a transaction-level advisory lock), so writers commit one at a time, as in
  SQLite: ``events.seq`` and ``items.seq`` then grow in commit order, and
  :meth:`PostgresBackend.store_sequence` is a change counter any process may
  read to learn that something was committed, and what (:meth:`changes`);
* reads run in ``REPEATABLE READ READ ONLY`` transactions: one snapshot, never
  waiting for a writer;
* cache writes (facts, key verdicts, signature verdicts) take no lock: they are
  ``INSERT ... ON CONFLICT DO NOTHING`` of values that are functions of what
  they key, so racing writers insert the same row and the first one stays.

Every psycopg exception becomes :class:`~pith_graph.errors.StoreError` in one
place, :func:`_converted`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Final, Literal, TypeVar

import psycopg
import psycopg_pool
from psycopg import pq

from pith_graph import codes
from pith_graph.canonical import sha256_hex
from pith_graph.errors import StoreError
from pith_graph.store._backend import (
    ADDED,
    AUDIT_TABLES,
    PRESENT,
    SignatureVerdict,
    StoreChanges,
    changes_in,
    ordered_bodies,
    stored_once,
    while_busy,
)
from pith_graph.store._facts import (
    FACTS_RULE,
    CheckedRow,
    CopyRow,
    EventRow,
    FactsRow,
    ItemRow,
    KeyVerdict,
    Ring,
)
from pith_graph.store._open import redacted_url
from pith_graph.store._postgres_schema import (
    APPEND_ONLY_TABLES,
    APPLICATION,
    MIGRATIONS,
    SCHEMA_V1,
    SCHEMA_VERSION,
)
from pith_graph.store._queries import STORE_SEQUENCE
from pith_graph.store._sqlite import DEFAULT_BUSY_TIMEOUT

__all__ = ["PostgresBackend", "postgres_pool"]

#: Seconds to wait for the server to answer a connection.
CONNECT_TIMEOUT: Final = 10
#: First key of the store's advisory locks ("PITH"); the second is the store's schema.
_LOCK_CLASS: Final = 0x50495448
#: Rows per INSERT ... SELECT FROM unnest(...) statement, and messages per cache query.
_CHUNK: Final = 5000

_T = TypeVar("_T")
#: read: a snapshot; write: holding the write lock; cache: a cache INSERT; plain: no transaction.
_Mode = Literal["read", "write", "cache", "plain"]

# SQLSTATE classes and codes by error code (docs: PostgreSQL appendix A).
_BUSY_STATES: Final = frozenset({"40001", "40P01", "55P03", "57014"})
_IO_CLASSES: Final = ("08", "53", "57P", "58", "3D", "28", "42501")
_CORRUPT_STATES: Final = frozenset({"XX001", "XX002"})


@contextmanager
def _converted(what: str) -> Iterator[None]:
    """The one place where psycopg exceptions become :class:`StoreError`."""
    try:
        yield
    except psycopg.Error as exc:
        state = exc.sqlstate or ""
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, psycopg_pool.PoolTimeout) or state in _BUSY_STATES:
            code, message = codes.E_STORE_BUSY, f"{what}: the store stayed locked by other writers ({detail})"
        elif state in _CORRUPT_STATES:
            code, message = codes.E_STORE_CORRUPT, f"{what}: the database reports corruption ({detail})"
        elif state.startswith(_IO_CLASSES) or (not state and isinstance(exc, psycopg.OperationalError)):
            # An operational error without SQLSTATE: the server could not be reached or the connection broke.
            code, message = codes.E_IO, f"{what}: {detail}"
        else:
            code, message = codes.E_STORE, f"{what}: {detail}"
        raise StoreError(message, code=code) from exc


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """Whether ``exc`` says the connection itself is gone (server restart, terminated, network)."""
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


def _configure(conn: psycopg.Connection[Any], busy_timeout: float) -> None:
    """Session settings of every connection: bounded lock waits (then ``store_busy``, retried)."""
    conn.execute(f"SET lock_timeout = {max(1, int(busy_timeout * 1000))}")


def postgres_pool(
    url: str, *, max_size: int = 8, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> psycopg_pool.ConnectionPool:
    """A connection pool for :class:`PostgresBackend` objects shared by a server's threads.

    Connections are in autocommit mode (the backend issues BEGIN/COMMIT itself)
    and wait at most ``busy_timeout`` seconds for a lock.
    """
    with _converted(f"connecting to {redacted_url(url)}"):
        pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            configure=lambda conn: _configure(conn, busy_timeout),
            open=False,
        )
        pool.open(wait=True, timeout=busy_timeout)
    return pool


def _text(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8")


def _str(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).decode("utf-8")


_INSERT_EVENTS: Final = (
    "INSERT INTO events (subject, unit_id, digest, body, event_type, target, signer_id, prev_event, created_at)"
    " SELECT s, u, d, b, et, t, si, pe, ca FROM unnest(%s::text[], %s::text[], %s::text[], %b::bytea[],"
    " %b::bytea[], %b::bytea[], %b::bytea[], %b::bytea[], %b::bytea[])"
    " WITH ORDINALITY AS r (s, u, d, b, et, t, si, pe, ca, n) ORDER BY n"
    " ON CONFLICT ON CONSTRAINT events_by_subject DO NOTHING RETURNING seq, subject, unit_id, digest"
)
_INSERT_FACTS: Final = (
    "INSERT INTO event_facts (seq, rule, reason, facts, signer_at, signer_len, signer_json,"
    " payload_at, payload_len, payload_json)"
    " SELECT seq, %s, reason, facts, sa, sl, sj, pa, pl, pj FROM unnest(%s::bigint[], %s::text[], %b::bytea[],"
    " %s::int[], %s::int[], %b::bytea[], %s::int[], %s::int[], %b::bytea[])"
    " AS r (seq, reason, facts, sa, sl, sj, pa, pl, pj)"
    " ON CONFLICT DO NOTHING"
)
_INSERT_ITEMS: Final = (
    "INSERT INTO items (subject, kind, digest, body)"
    " SELECT s, k, d, b FROM unnest(%s::text[], %s::text[], %s::text[], %b::bytea[])"
    " WITH ORDINALITY AS r (s, k, d, b, n) ORDER BY n"
    " ON CONFLICT ON CONSTRAINT items_by_subject DO NOTHING"
)
#: A stored copy as a replay reads it: see :data:`pith_graph.store._sqlite._COPY_COLUMNS`
#: (substring on bytea counts bytes from 1, as SQLite's substr on a BLOB).
_COPY_COLUMNS: Final = (
    "e.seq, e.unit_id, e.digest, f.reason, f.facts,"
    " CASE WHEN f.signer_at IS NULL THEN f.signer_json"
    " ELSE substring(e.body FROM f.signer_at + 1 FOR f.signer_len) END,"
    " CASE WHEN f.payload_at IS NULL THEN f.payload_json"
    " ELSE substring(e.body FROM f.payload_at + 1 FOR f.payload_len) END,"
    " CASE WHEN f.rule IS NULL THEN e.body END"
)
_COPIES_FROM: Final = (
    " FROM events e LEFT JOIN event_facts f ON f.seq = e.seq AND f.rule = %s"
    " WHERE e.subject = %s ORDER BY e.unit_id, e.digest"
)
_ROW_COLUMNS: Final = "subject, unit_id, digest, body, event_type, target, signer_id, prev_event, created_at"


def _event_row(row: Sequence[Any]) -> EventRow:
    """An :class:`EventRow` from its nine columns as read (the copied-out fields are UTF-8 bytea)."""
    subject, uid, digest, body, *fields = row
    return EventRow(subject, uid, digest, bytes(body), *map(_str, fields))


def _execute(conn: psycopg.Connection[Any], query: str, params: Sequence[Any]) -> list[Any]:
    """Every row of a query written for both backends (``?`` placeholders, :mod:`._queries`), in binary."""
    return conn.execute(query.replace("?", "%s"), params, binary=True).fetchall()


_INSERT_RING: Final = "INSERT INTO key_rings (ring, entries) VALUES (%s, %b) ON CONFLICT DO NOTHING"
_INSERT_KEY_VERDICTS: Final = (
    "INSERT INTO key_verdicts (ring, seq, reason)"
    " SELECT %s, e.seq, v.reason FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
    " AS v (subject, unit_id, digest, reason)"
    " JOIN events e ON e.subject = v.subject AND e.unit_id = v.unit_id AND e.digest = v.digest"
    " ON CONFLICT DO NOTHING"
)
#: Each stored copy of the given units: whether it has a kept verdict None under a ring, and
#: whether it could be valid (passed the intrinsic checks, or lacks facts) but has no verdict under it.
_COPIES_UNDER_RING: Final = (
    "SELECT e.subject, e.unit_id, e.digest, k.seq IS NOT NULL AND k.reason IS NULL,"
    " k.seq IS NULL AND (f.seq IS NULL OR f.reason IS NULL)"
    " FROM unnest(%s::text[], %s::text[]) AS u (subject, unit_id)"
    " JOIN events e ON e.subject = u.subject AND e.unit_id = u.unit_id"
    " LEFT JOIN event_facts f ON f.seq = e.seq AND f.rule = %s"
    " LEFT JOIN key_verdicts k ON k.seq = e.seq AND k.ring = %s"
)


def _record_ring(conn: psycopg.Connection[Any], ring: Ring) -> None:
    """Record ``ring`` before keeping verdicts under it (same transaction), as the SQLite backend does.

    This code records a ring before its first verdict, so verdicts already under a ring
    seen for the first time were planted by someone who wrote the tables: refused.
    """
    if (
        conn.execute(_INSERT_RING, (ring.id, ring.entries)).rowcount == 1
        and conn.execute("SELECT 1 FROM key_verdicts WHERE ring = %s LIMIT 1", (ring.id,)).fetchone()
    ):
        raise StoreError(
            f"key verdicts under ring {ring.id} were kept before the ring was recorded: the tables were "
            "written by other code (run `pith-graph store check`)",
            code=codes.E_STORE_CORRUPT,
        )


def _insert_key_verdicts(
    conn: psycopg.Connection[Any], ring: str, rows: Sequence[tuple[str, str, str, str | None]]
) -> None:
    """Keep (subject, unit id, digest, reason) verdicts under ``ring`` (a row already there is kept)."""
    if rows:
        columns = [list(c) for c in zip(*rows, strict=True)]
        conn.execute(_INSERT_KEY_VERDICTS, (ring, *columns))


def _held_copies(
    conn: psycopg.Connection[Any], ring: str, units: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str, bool, bool]]:
    """The stored copies of ``units`` as :func:`~pith_graph.store._backend.stored_once` reads them, in one query."""
    params = ([s for s, _ in units], [u for _, u in units], FACTS_RULE, ring)
    return [(s, u, d, bool(v), bool(n)) for s, u, d, v, n in conn.execute(_COPIES_UNDER_RING, params)]


def _event_audit_row(row: Sequence[Any]) -> tuple[Any, ...]:
    """An ``events`` row of :meth:`PostgresBackend.audit` with the copied-out fields as text."""
    seq, subject, uid, digest, body, *fields = row
    return (seq, subject, uid, digest, bytes(body), *map(_str, fields))


def _chunks(count: int) -> Iterator[range]:
    for start in range(0, count, _CHUNK):
        yield range(start, min(start + _CHUNK, count))


class PostgresBackend:
    """:class:`~pith_graph.store._backend.Backend` on one PostgreSQL database (the URL's, in its first schema).

    With ``pool`` (see :func:`postgres_pool`), each call borrows a connection from
    it, so one backend may serve many threads; otherwise it holds one connection
    and, like an sqlite3 connection, serves one thread at a time.
    """

    schema_version: Final = SCHEMA_VERSION

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        pool: psycopg_pool.ConnectionPool | None = None,
        read_only: bool | None = False,
    ) -> None:
        self.url = url
        self.read_only = False
        self.where = redacted_url(url)
        self.busy_timeout = busy_timeout
        self._pool = pool
        self._conn: psycopg.Connection[Any] | None = None
        # transaction(): per thread (a pooled backend serves many), the connection held and the nesting.
        self._joined = threading.local()
        what = f"opening {self.where}"
        if pool is None:
            with _converted(what):
                self._conn = self._connect()
        try:
            if read_only is None:
                read_only = not self._run(self._may_write, what, "plain")
            outdated = self._run(self._outdated, what, "read")
            self.read_only = bool(read_only)
            if outdated and self.read_only:
                raise StoreError(
                    f"{what}: the store is missing or older than this pith_graph and cannot be written here",
                    code=codes.E_STORE_SCHEMA,
                )
            if outdated:
                if not create:
                    raise StoreError(
                        f"{what}: no store there (create one with `pith-graph store init --db URL`)",
                        code=codes.E_IO,
                    )
                self._run(self._migrate, what, "write")
        except BaseException:
            self.close()
            raise

    # --- transactions ---------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        try:
            _configure(conn, self.busy_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one call: the pool's, or this backend's own (opened again if it was lost)."""
        if self._pool is not None:
            with self._pool.connection(timeout=self.busy_timeout) as conn:
                yield conn
            return
        if self._conn is None or self._conn.broken or self._conn.closed:
            # A server restart or a dropped connection: a long-running server carries on.
            self._conn = self._connect()
        yield self._conn

    def _run(self, fn: Callable[[psycopg.Connection[Any]], _T], what: str, mode: _Mode) -> _T:
        """Run ``fn`` in a read snapshot, a write transaction holding the store's write lock, or as is.

        Retried while the lock or a conflict keeps it from finishing (``store_busy``),
        for at most ``busy_timeout`` seconds.
        """
        if self.read_only and mode in ("write", "cache"):
            mode = "read"  # docs/store.md, "Reads never write": the server refuses what would
        joined: psycopg.Connection[Any] | None = getattr(self._joined, "conn", None)
        if joined is not None:
            # Inside transaction(): the write lock is held and every call joins it (no retry:
            # one error loses the whole batch, as on SQLite).
            with _converted(what):
                return fn(joined)
        reconnected = False

        def attempt() -> _T:
            nonlocal reconnected
            while True:
                committing: list[bool] = []
                with _converted(what):
                    try:
                        with self._session() as conn:
                            return self._transaction(conn, fn, mode, committing)
                    except psycopg.OperationalError as exc:
                        # A connection lost before COMMIT was sent changed nothing: run it
                        # once more on a new one. Lost during COMMIT, the outcome is unknown.
                        if reconnected or committing or not _connection_lost(exc):
                            raise
                reconnected = True

        return while_busy(attempt, self.busy_timeout)

    @staticmethod
    def _transaction(
        conn: psycopg.Connection[Any],
        fn: Callable[[psycopg.Connection[Any]], _T],
        mode: _Mode,
        committing: list[bool],
    ) -> _T:
        if mode == "plain":
            return fn(conn)
        if mode == "read":
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            # READ COMMITTED: each statement sees what committed before it, so an
            # INSERT ... ON CONFLICT after the lock sees every earlier writer's rows.
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        try:
            if mode == "cache":
                # A cache row is derived from stored rows: one lost in a crash is computed
                # again, so its commit need not wait for the WAL flush.
                conn.execute("SET LOCAL synchronous_commit = off")
            if mode == "write":
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK_CLASS,))
            result = fn(conn)
            committing.append(True)
            conn.execute("COMMIT")
        except BaseException:
            if conn.info.transaction_status != pq.TransactionStatus.IDLE and not conn.closed:
                with contextlib.suppress(psycopg.Error):  # the connection is gone: the server rolls back
                    conn.execute("ROLLBACK")
            raise
        return result

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the calls made inside as one transaction holding the write lock, committed on a normal exit.

        Calls inside join it (reads see its writes); an exception loses everything
        written inside; nested use is a savepoint of the outer one (an exception inside
        undoes only what was written inside). For batches: one commit for many bundles,
        each bundle all or nothing.
        """
        joined = getattr(self._joined, "conn", None)
        if joined is not None:
            # Nested: a savepoint, so that an error inside undoes only what was written inside
            # (a bundle of a batch, all or nothing).
            name = f"pith_{self._joined.depth}"
            with _converted("starting a savepoint"):
                joined.execute(f"SAVEPOINT {name}")
            self._joined.depth += 1
            try:
                yield
            except BaseException:
                if not joined.closed:
                    with _converted("rolling back to a savepoint"):
                        joined.execute(f"ROLLBACK TO SAVEPOINT {name}")
                        joined.execute(f"RELEASE SAVEPOINT {name}")
                raise
            finally:
                self._joined.depth -= 1
            with _converted("releasing a savepoint"):
                joined.execute(f"RELEASE SAVEPOINT {name}")
            return
        with contextlib.ExitStack() as stack:
            conn = self._begin_locked(stack)
            self._joined.conn, self._joined.depth = conn, 1
            try:
                yield
            except BaseException:
                self._joined.conn = None
                if not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
            self._joined.conn = None
            with _converted("committing to the store"):
                conn.execute("COMMIT")

    def _begin_locked(self, stack: contextlib.ExitStack) -> psycopg.Connection[Any]:
        """A connection (kept by ``stack``) in a transaction holding the write lock, waiting as writes do."""

        def attempt() -> psycopg.Connection[Any]:
            with _converted("starting a transaction"):
                conn = stack.enter_context(self._session())
                conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                try:
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK_CLASS,)
                    )
                except BaseException:
                    if not conn.closed:
                        with contextlib.suppress(psycopg.Error):
                            conn.execute("ROLLBACK")
                    raise
                return conn

        return while_busy(attempt, self.busy_timeout)

    def read(self, fn: Callable[[psycopg.Connection[Any]], _T], what: str = "reading the store") -> _T:
        """Run ``fn`` against one consistent snapshot (``REPEATABLE READ READ ONLY``)."""
        return self._run(fn, what, "read")

    def write(self, fn: Callable[[psycopg.Connection[Any]], _T], what: str = "writing to the store") -> _T:
        """Run ``fn`` in one transaction holding the store's write lock (committed before returning)."""
        return self._run(fn, what, "write")

    def _cache_write(self, query: str, params: Sequence[Any], what: str) -> None:
        """One cache INSERT ... ON CONFLICT DO NOTHING, without the write lock (see the module's notes)."""
        self._run(lambda conn: conn.execute(query, params), what, "cache")

    # --- schema -----------------------------------------------------------------------

    def _tables(self, conn: psycopg.Connection[Any]) -> dict[str, str]:
        """The relations of the store's schema by name, with their kind (``r`` for a table)."""
        (schema,) = conn.execute("SELECT current_schema()").fetchone() or (None,)
        if schema is None:
            raise StoreError(
                f"{self.where}: the search_path names no existing schema to keep the store in",
                code=codes.E_IO,
            )
        found = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        ).fetchall()
        return {str(name): str(kind) for name, kind in found}

    def _version(self, conn: psycopg.Connection[Any], tables: dict[str, str]) -> int:
        """The version of an existing store; ``store_schema_mismatch`` for anything else."""
        foreign = f"{self.where} holds tables that are not a pith-graph store"
        if tables.get("pith_schema") != "r":
            raise StoreError(foreign, code=codes.E_STORE_SCHEMA)
        rows = conn.execute("SELECT application, version FROM pith_schema").fetchall()
        if not rows or any(application != APPLICATION for application, _ in rows):
            raise StoreError(foreign, code=codes.E_STORE_SCHEMA)
        version = max(int(v) for _, v in rows)
        if version != SCHEMA_VERSION and version not in MIGRATIONS:
            raise StoreError(
                f"{self.where}: schema version {version} is not supported (this pith_graph reads {SCHEMA_VERSION})",
                code=codes.E_STORE_SCHEMA,
            )
        missing = [t for t in APPEND_ONLY_TABLES if tables.get(t) != "r"]
        if version == SCHEMA_VERSION and missing:
            raise StoreError(f"{self.where}: not a table: {', '.join(missing)}", code=codes.E_STORE_SCHEMA)
        return version

    @staticmethod
    def _may_write(conn: psycopg.Connection[Any]) -> bool:
        """Whether this role may write the store here (not a hot standby; INSERT on it, or CREATE for a new one)."""
        row = conn.execute(
            "SELECT NOT pg_is_in_recovery() AND CASE WHEN to_regclass('events') IS NULL"
            " THEN has_schema_privilege(current_schema(), 'CREATE')"
            " ELSE has_table_privilege('events', 'INSERT') END"
        ).fetchone()
        return bool(row and row[0])

    def _outdated(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the schema must be created or migrated (checked without the write lock)."""
        tables = self._tables(conn)
        return not tables or self._version(conn, tables) != SCHEMA_VERSION

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Create the schema in an empty schema, or run the migrations an existing store lacks.

        Under the write lock, so processes opening a new store at once create it once.
        """
        tables = self._tables(conn)
        if not tables:
            for statement in SCHEMA_V1:
                conn.execute(statement)
            tables = self._tables(conn)
        version = self._version(conn, tables)
        while version in MIGRATIONS:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1

    # --- writing -----------------------------------------------------------------------

    def add(
        self,
        events: Sequence[EventRow],
        items: Sequence[ItemRow],
        facts: Sequence[FactsRow] | None = None,
    ) -> list[bool]:
        """See :meth:`Backend.add`: INSERT ... ON CONFLICT DO NOTHING on the unique keys, under the write lock.

        A new copy's facts are written in the same transaction as the copy.
        """

        def run(conn: psycopg.Connection[Any]) -> list[bool]:
            fresh = self._insert_events(conn, events, facts)
            self._insert_items(conn, items)
            return fresh

        return self.write(run, "appending to the store")

    def _insert_events(
        self, conn: psycopg.Connection[Any], events: Sequence[EventRow], facts: Sequence[FactsRow] | None
    ) -> list[bool]:
        """Insert event rows and the facts of the new ones; per row, whether it was new (a repeat in ``events`` is not)."""
        first: dict[tuple[str, str, str], int] = {}
        for i, row in enumerate(events):
            first.setdefault((row.subject, row.unit_id, row.digest), i)
        seqs: list[int | None] = [None] * len(events)
        for chunk in _chunks(len(events)):
            rows = [events[i] for i in chunk]
            inserted = conn.execute(
                _INSERT_EVENTS,
                (
                    [r.subject for r in rows],
                    [r.unit_id for r in rows],
                    [r.digest for r in rows],
                    [r.body for r in rows],
                    [_text(r.event_type) for r in rows],
                    [_text(r.target) for r in rows],
                    [_text(r.signer_id) for r in rows],
                    [_text(r.prev_event) for r in rows],
                    [_text(r.created_at) for r in rows],
                ),
            ).fetchall()
            for seq, subject, uid, digest in inserted:
                seqs[first[(subject, uid, digest)]] = seq
        found = [
            (seq, facts[i] if facts is not None else FactsRow.inspected(events[i].subject, events[i]))
            for i, seq in enumerate(seqs)
            if seq is not None
        ]
        self._insert_facts(conn, found)
        return [seq is not None for seq in seqs]

    def add_items(self, items: Sequence[ItemRow]) -> int:
        """See :meth:`Backend.add_items` (under the write lock, as every write of items)."""
        return self.write(lambda conn: self._insert_items(conn, items), "appending to the store")

    @staticmethod
    def _insert_items(conn: psycopg.Connection[Any], items: Sequence[ItemRow]) -> int:
        added = 0
        for chunk in _chunks(len(items)):
            rows = [items[i] for i in chunk]
            added += conn.execute(
                _INSERT_ITEMS,
                (
                    [r.subject for r in rows],
                    [r.kind for r in rows],
                    [sha256_hex(r.body) for r in rows],
                    [r.body for r in rows],
                ),
            ).rowcount
        return added

    def add_checked(
        self,
        events: Sequence[EventRow],
        items: Sequence[ItemRow],
        checked: Sequence[CheckedRow],
        ring: Ring,
        *,
        keep_invalid: bool,
    ) -> list[str]:
        """See :meth:`Backend.add_checked`: one transaction under the write lock, so writers on
        other machines each see the copies the others stored (a unit is stored once).

        The units' stored copies are read once, in bulk; the rows are then decided in
        order (a valid copy stored by this call counts for the rows after it) and
        stored with one statement per table.
        """

        def run(conn: psycopg.Connection[Any]) -> list[str]:
            _record_ring(conn, ring)
            decided = stored_once(
                events, checked, partial(_held_copies, conn, ring.id), keep_invalid=keep_invalid
            )
            storing = [i for i, outcome in enumerate(decided) if outcome is None]
            fresh = self._insert_events(
                conn, [events[i] for i in storing], [checked[i].facts for i in storing]
            )
            for i, new in zip(storing, fresh, strict=True):
                decided[i] = ADDED if new else PRESENT
            _insert_key_verdicts(
                conn,
                ring.id,
                [
                    (events[i].subject, events[i].unit_id, events[i].digest, checked[i].reason)
                    for i in storing
                    if checked[i].keyed
                ],
            )
            self._insert_items(conn, items)
            return [outcome or PRESENT for outcome in decided]

        return self.write(run, "appending to the store")

    @staticmethod
    def _facts_params(found: Sequence[tuple[int, FactsRow]]) -> tuple[Any, ...]:
        columns: list[list[Any]] = [list(c) for c in zip(*(row for _, row in found), strict=True)]
        return (FACTS_RULE, [seq for seq, _ in found], *(columns or [[]] * len(FactsRow._fields)))

    def _insert_facts(self, conn: psycopg.Connection[Any], found: Sequence[tuple[int, FactsRow]]) -> None:
        for chunk in _chunks(len(found)):
            conn.execute(_INSERT_FACTS, self._facts_params([found[i] for i in chunk]))

    def add_facts(self, facts: Sequence[tuple[int, FactsRow]]) -> None:
        """See :meth:`Backend.add_facts` (concurrent replays may race to fill a row: the first stays)."""
        if facts:
            self._cache_write(_INSERT_FACTS, self._facts_params(facts), "writing event facts")

    def add_key_verdicts(self, ring: Ring, subject: str, verdicts: Sequence[KeyVerdict]) -> None:
        """See :meth:`Backend.add_key_verdicts` (the ring recorded first, in the same transaction)."""
        rows = [(subject, uid, digest, reason) for uid, digest, reason in verdicts]

        def run(conn: psycopg.Connection[Any]) -> None:
            _record_ring(conn, ring)
            _insert_key_verdicts(conn, ring.id, rows)

        self._run(run, "writing key verdicts", "cache")

    def add_signature_verdicts(self, verdicts: Sequence[SignatureVerdict]) -> None:
        """See :meth:`Backend.add_signature_verdicts`."""
        if not verdicts:
            return
        query = (
            "INSERT INTO signature_cache (public_key, signature, message, valid)"
            " SELECT * FROM unnest(%b::bytea[], %b::bytea[], %b::bytea[], %s::boolean[]) ON CONFLICT DO NOTHING"
        )
        keys, signatures, messages, valid = (list(c) for c in zip(*verdicts, strict=True))
        self._cache_write(query, (keys, signatures, messages, valid), "writing the signature cache")

    # --- reading -----------------------------------------------------------------------

    def copies(
        self, subject: str, *, with_body: bool = False
    ) -> tuple[list[CopyRow], list[tuple[str, bytes]]]:
        """See :meth:`Backend.copies` (one snapshot)."""

        def run(conn: psycopg.Connection[Any]) -> tuple[list[CopyRow], list[tuple[str, bytes]]]:
            if with_body:
                query = f"SELECT {_COPY_COLUMNS}, e.body, e.event_type, e.target, e.signer_id, e.prev_event, e.created_at{_COPIES_FROM}"
                found = conn.execute(query, (FACTS_RULE, subject), binary=True).fetchall()
                rows = [CopyRow._make((*r[:8], _event_row((subject, r[1], r[2], *r[8:])))) for r in found]
            else:
                query = f"SELECT {_COPY_COLUMNS}, NULL::bytea{_COPIES_FROM}"
                rows = [CopyRow._make(r) for r in conn.execute(query, (FACTS_RULE, subject), binary=True)]
            return rows, self._items(conn, subject)

        return self.read(run)

    def key_verdicts(self, ring: str, subject: str) -> dict[int, str | None]:
        """See :meth:`Backend.key_verdicts` (only under a ring recorded in ``key_rings``)."""
        query = (
            "SELECT k.seq, k.reason FROM key_verdicts k JOIN events e ON e.seq = k.seq"
            " WHERE k.ring = %s AND e.subject = %s AND EXISTS (SELECT 1 FROM key_rings r WHERE r.ring = k.ring)"
        )
        return self.read(lambda conn: dict(conn.execute(query, (ring, subject), binary=True).fetchall()))

    def _select_rows(self, where: str, params: tuple[Any, ...]) -> list[EventRow]:
        query = f"SELECT {_ROW_COLUMNS} FROM events {where}"
        return self.read(lambda conn: [_event_row(row) for row in conn.execute(query, params, binary=True)])

    def event_rows(self, subject: str) -> list[EventRow]:
        """See :meth:`Backend.event_rows`."""
        return self._select_rows("WHERE subject = %s ORDER BY unit_id, digest", (subject,))

    def bodies(self, seqs: Sequence[int]) -> list[bytes]:
        """See :meth:`Backend.bodies` (one query)."""
        query = "SELECT seq, body FROM events WHERE seq = ANY(%s::bigint[])"
        found = self.read(
            lambda conn: {int(q): bytes(b) for q, b in conn.execute(query, (list(seqs),), binary=True)}
        )
        return ordered_bodies(seqs, found)

    def stream_rows(self, subject: str, target: str, signer_id: str) -> list[EventRow]:
        """The copies of one stream (target, signer_id) of ``subject`` (uses ``events_by_stream``)."""
        return self._select_rows(
            "WHERE subject = %s AND target = %s AND signer_id = %s ORDER BY unit_id, digest",
            (subject, _text(target), _text(signer_id)),
        )

    def naming_rows(self, prev_event: str) -> list[EventRow]:
        """The copies whose ``prev_event`` is ``prev_event`` (uses ``events_by_prev``)."""
        return self._select_rows(
            "WHERE prev_event = %s ORDER BY subject, unit_id, digest", (_text(prev_event),)
        )

    def items(self, subject: str) -> list[tuple[str, bytes]]:
        """See :meth:`Backend.items`."""
        return self.read(lambda conn: self._items(conn, subject))

    @staticmethod
    def _items(conn: psycopg.Connection[Any], subject: str) -> list[tuple[str, bytes]]:
        query = "SELECT kind, body FROM items WHERE subject = %s ORDER BY kind, body"
        return [(kind, bytes(body)) for kind, body in conn.execute(query, (subject,), binary=True)]

    def subjects(self) -> list[str]:
        """See :meth:`Backend.subjects`."""
        query = "SELECT subject FROM events UNION SELECT subject FROM items ORDER BY 1"
        return self.read(lambda conn: [row[0] for row in conn.execute(query)])

    def signature_verdicts(self, messages: Sequence[bytes]) -> list[SignatureVerdict]:
        """See :meth:`Backend.signature_verdicts` (one snapshot, a query per chunk of messages)."""
        query = "SELECT public_key, signature, message, valid FROM signature_cache WHERE message = ANY(%b::bytea[])"

        def run(conn: psycopg.Connection[Any]) -> list[SignatureVerdict]:
            rows: list[SignatureVerdict] = []
            for chunk in _chunks(len(messages)):
                found = conn.execute(query, (list(messages[chunk.start : chunk.stop]),), binary=True)
                rows.extend(SignatureVerdict(bytes(k), bytes(s), bytes(m), bool(v)) for k, s, m, v in found)
            return rows

        return self.read(run)

    def signature_verdict(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """See :meth:`Backend.signature_verdict` (one indexed read, outside a transaction)."""
        query = "SELECT valid FROM signature_cache WHERE public_key = %b AND signature = %b AND message = %b"
        row = self._run(
            lambda conn: conn.execute(query, (public_key, signature, message)).fetchone(),
            "reading the signature cache",
            "plain",
        )
        return None if row is None else bool(row[0])

    def store_sequence(self) -> tuple[int, int]:
        """See :meth:`Backend.store_sequence` (two index-only lookups of the largest seq, no transaction)."""
        row = self._run(
            lambda conn: conn.execute(STORE_SEQUENCE).fetchone(), "reading the store sequence", "plain"
        )
        assert row is not None
        return int(row[0]), int(row[1])

    def changes(self, events_after: int, items_after: int) -> StoreChanges:
        """See :meth:`Backend.changes` (one snapshot)."""
        return self.read(
            lambda conn: changes_in(partial(_execute, conn), events_after, items_after),
            "reading the store's changes",
        )

    def audit(self, table: str) -> Iterator[tuple[Any, ...]]:
        """See :meth:`Backend.audit`: one snapshot, read through a server-side cursor in batches.

        Rows come as the SQLite backend gives them: the copied-out event fields as text.
        """
        columns = AUDIT_TABLES[table]  # a KeyError for any other name: never SQL from outside
        what = f"reading {table}"
        with _converted(what), self._session() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            try:
                with conn.cursor(name="pith_graph_audit", binary=True) as cursor:
                    cursor.execute(f"SELECT {', '.join(columns)} FROM {table}")
                    while batch := cursor.fetchmany(1000):
                        for row in batch:
                            yield _event_audit_row(row) if table == "events" else tuple(row)
            finally:
                if not conn.closed:
                    conn.execute("ROLLBACK")

    def integrity_check(self) -> list[str]:
        """What keeps the store append-only: every table's two refusing triggers, present and enabled.

        PostgreSQL checks its own pages as it reads them (a damaged page is an
        error, ``store_corrupt``); what it cannot know is whether someone with
        the owner's rights dropped or disabled a trigger.
        """
        query = (
            "SELECT t.name || '_' || k.suffix FROM unnest(%s::text[]) AS t (name)"
            " CROSS JOIN (VALUES ('append_only'), ('no_truncate')) AS k (suffix)"
            " WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = t.name"
            " AND g.tgname = t.name || '_' || k.suffix AND g.tgenabled IN ('O', 'A'))"
            " ORDER BY 1"
        )
        missing = self.read(lambda conn: [row[0] for row in conn.execute(query, (list(APPEND_ONLY_TABLES),))])
        return [f"trigger {name} is missing or disabled" for name in missing] or ["ok"]

    def close(self) -> None:
        """Close the connection (a pool given by the caller stays open)."""
        if self._conn is not None:
            with _converted(f"closing {self.where}"):
                self._conn.close()
