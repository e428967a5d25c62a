"""The SQLite backend of the event store (standard library ``sqlite3``, WAL, ``synchronous=FULL``).

Every ``sqlite3`` exception is converted to :class:`~pith_graph.errors.StoreError`
in one place, :func:`_converted`.
"""

from __future__ import annotations

import operator
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, NoReturn, TypeVar

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
from pith_graph.store._queries import STORE_SEQUENCE
from pith_graph.store._schema import APPLICATION_ID, MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SQLiteBackend", "is_writable", "read_only_uri"]

#: Seconds a writer waits for another process's lock before giving up.
DEFAULT_BUSY_TIMEOUT: Final = 30.0
#: Page cache of a connection, in KiB (SQLite's default is 2 MiB); memory is only used as pages are read.
_CACHE_KIB: Final = 16 * 1024
#: Most parameters per signature-verdict query (SQLite's default limit is 32766 since 3.32).
_PREFETCH_CHUNK: Final = 30000

_T = TypeVar("_T")

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


#: Columns of one stored copy as a replay reads it: :class:`CopyRow` without its
#: ``row`` (the canonical fragments sliced out of the body by SQLite; the body only
#: for a copy that lacks its facts), then with ``with_body`` the EventRow columns from body on.
_COPY_COLUMNS: Final = (
    "e.seq, e.unit_id, e.digest, f.reason, f.facts,"
    " CASE WHEN f.signer_at IS NULL THEN f.signer_json ELSE substr(e.body, f.signer_at + 1, f.signer_len) END,"
    " CASE WHEN f.payload_at IS NULL THEN f.payload_json ELSE substr(e.body, f.payload_at + 1, f.payload_len) END,"
    " CASE WHEN f.rule IS NULL THEN e.body END"
)
#: The subject's rows are read in seq order (the subject's seqs from the covering index,
#: then each row by its rowid: the table's pages in file order) and put in
#: ``events_by_subject`` order by :func:`_by_unit`. Read in that index's order, each
#: row was a jump across the table (a page and its overflow chain per event): at 100k
#: events the query took 14-18x its 10k time, in seq order 9.8x and half the time.
_COPIES_FROM: Final = (
    " FROM events e LEFT JOIN event_facts f ON f.seq = e.seq AND f.rule = ?"
    " WHERE e.seq IN (SELECT seq FROM events WHERE subject = ?) ORDER BY e.seq"
)
_COPIES_QUERY: Final = f"SELECT {_COPY_COLUMNS}, NULL{_COPIES_FROM}"
_COPIES_WITH_BODY_QUERY: Final = f"SELECT {_COPY_COLUMNS}, e.body, e.event_type, e.target, e.signer_id, e.prev_event, e.created_at{_COPIES_FROM}"
_INSERT_EVENT: Final = (
    "INSERT OR IGNORE INTO events (subject, unit_id, digest, body, event_type, target, signer_id,"
    " prev_event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ITEMS: Final = "INSERT OR IGNORE INTO items (subject, kind, digest, body) VALUES (?, ?, ?, ?)"
#: Each stored copy of a unit: its digest, whether it has a kept verdict None under a ring, and
#: whether it could be valid (it passed the intrinsic checks, or lacks facts) but has no verdict under it.
_COPIES_OF_UNITS: Final = (
    "SELECT e.unit_id, e.digest, k.seq IS NOT NULL AND k.reason IS NULL,"
    " k.seq IS NULL AND (f.seq IS NULL OR f.reason IS NULL)"
    " FROM events e LEFT JOIN event_facts f ON f.seq = e.seq AND f.rule = ?"
    " LEFT JOIN key_verdicts k ON k.seq = e.seq AND k.ring = ?"
    " WHERE e.subject = ? AND e.unit_id IN"
)
#: The facts of a copy just stored, found by its unique key.
_INSERT_FACTS_BY_KEY: Final = (
    "INSERT OR IGNORE INTO event_facts (seq, rule, reason, facts, signer_at, signer_len, signer_json,"
    " payload_at, payload_len, payload_json) SELECT seq, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM events"
    " WHERE subject = ? AND unit_id = ? AND digest = ?"
)
_INSERT_KEY_VERDICT: Final = (
    "INSERT OR IGNORE INTO key_verdicts (ring, seq, reason)"
    " SELECT ?, seq, ? FROM events WHERE subject = ? AND unit_id = ? AND digest = ?"
)
_INSERT_RING: Final = "INSERT OR IGNORE INTO key_rings (ring, entries) VALUES (?, ?)"


def _record_ring(conn: sqlite3.Connection, ring: Ring) -> None:
    """Record ``ring`` before keeping verdicts under it (in the same transaction).

    This code records a ring before its first verdict, so verdicts already under a ring
    seen for the first time were planted by someone who wrote the file: refused.
    """
    if (
        conn.execute(_INSERT_RING, ring).rowcount == 1
        and conn.execute("SELECT 1 FROM key_verdicts WHERE ring = ? LIMIT 1", (ring.id,)).fetchone()
    ):
        raise StoreError(
            f"key verdicts under ring {ring.id} were kept before the ring was recorded: the file was "
            "written by other code (run `pith-graph store check`)",
            code=codes.E_STORE_CORRUPT,
        )


_INSERT_FACTS: Final = (
    "INSERT OR IGNORE INTO event_facts (seq, rule, reason, facts, signer_at, signer_len, signer_json,"
    " payload_at, payload_len, payload_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def is_writable(path: str | os.PathLike[str]) -> bool:
    """Whether this process may write the store file at ``path`` and create files beside it
    (SQLite's WAL and shared-memory files)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(directory, os.W_OK)


def read_only_uri(path: str, *, immutable: bool = False) -> str:
    """The ``file:`` URI that opens ``path`` read-only (``immutable``: without locks or WAL files)."""
    quoted = urllib.parse.quote(os.path.abspath(path))
    return f"file:{quoted}?{'immutable=1' if immutable else 'mode=ro'}"


def connect_read_only(path: str, timeout: float) -> sqlite3.Connection:
    """Open ``path`` read-only, never writing to it or beside it where that can be avoided.

    ``mode=ro`` still needs the shared-memory file of a WAL database, which a read-only
    directory cannot hold; a file with no WAL beside it (closed cleanly) is then opened
    ``immutable``. The schema is never trusted (``trusted_schema=OFF``) and nothing is written
    (``query_only``).
    """
    wal = path + "-wal"
    immutable = not is_writable(path) and not (os.path.exists(wal) and os.path.getsize(wal) > 0)
    conn = sqlite3.connect(
        read_only_uri(path, immutable=immutable), uri=True, timeout=timeout, isolation_level=None
    )
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteBackend:
    """:class:`~pith_graph.store._backend.Backend` on one SQLite database (file or ``:memory:``).

    ``read_only``: open the file read-only and never write (docs/store.md, "Reads never
    write"); None: read-only exactly when this process cannot write the file or its directory.
    A read-only store must already have the current schema (it cannot be migrated).
    """

    schema_version: Final = SCHEMA_VERSION

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        read_only: bool | None = False,
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._depth = 0  # nesting of transaction(): inside it, methods join instead of committing
        what = f"opening {self.path}"
        if not create and self.path != ":memory:" and not os.path.exists(self.path):
            raise StoreError(
                f"{what}: no store there (create one with `pith-graph store init`)", code=codes.E_IO
            )
        if read_only is None:
            read_only = self.path != ":memory:" and os.path.exists(self.path) and not is_writable(self.path)
        self.read_only = read_only and self.path != ":memory:"
        with _converted(what):
            if self.read_only:
                self.conn = connect_read_only(self.path, busy_timeout)
            else:
                # isolation_level=None: this class issues BEGIN/COMMIT itself.
                self.conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        try:
            if self.read_only:
                self.read(self._check_version, what)
            else:
                self._configure(what)
                self.write(self._migrate, what)
        except BaseException:
            self.conn.close()
            raise

    def _check_version(self, conn: sqlite3.Connection) -> None:
        """A read-only store is read as it is: it must already have this code's schema."""
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            self._raise_mismatch(conn, f"{self.path} is an empty database, not a pith-graph store")
        version = self._version(conn, tables)
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} and the file is read-only; open it once where it can be "
                f"written to upgrade it to version {SCHEMA_VERSION}",
                code=codes.E_STORE_SCHEMA,
            )

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
            for statement in SCHEMA_V1:
                conn.execute(statement)
            tables = {"pith_schema"}  # a new store is a v1 store, migrated like any other
        self._upgrade(conn, tables)

    def _upgrade(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        """Check the version of an existing store and run the migrations it lacks (same transaction)."""
        version = self._version(conn, tables)
        if version == SCHEMA_VERSION:
            return
        if version not in MIGRATIONS:
            raise StoreError(
                f"{self.path}: schema version {version} is not supported (this pith_graph reads {SCHEMA_VERSION})",
                code=codes.E_STORE_SCHEMA,
            )
        while version in MIGRATIONS:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1

    def _version(self, conn: sqlite3.Connection, tables: set[str]) -> int:
        """The schema version of a pith-graph store (``store_schema_mismatch`` for any other database)."""
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        versions = (
            [row[0] for row in conn.execute("SELECT version FROM pith_schema")]
            if "pith_schema" in tables
            else []
        )
        if "pith_schema" not in tables or app_id != APPLICATION_ID or not versions:
            self._raise_mismatch(conn, f"{self.path} is an SQLite database but not a pith-graph store")
        if not all(isinstance(v, int) for v in versions):
            self._raise_mismatch(conn, f"{self.path}: unreadable schema version {versions!r}")
        # Versions are only ever added (the table refuses UPDATE and, from v2, DELETE).
        return int(max(versions))

    def _raise_mismatch(self, conn: sqlite3.Connection, message: str) -> NoReturn:
        """Raise ``store_schema_mismatch``, unless the real trouble is a damaged file."""
        # Scrambled pages can read as a foreign schema; only this error path pays for the check.
        found = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if found != ["ok"]:
            raise StoreError(
                f"{self.path}: the database is corrupted ({found[0]})", code=codes.E_STORE_CORRUPT
            )
        raise StoreError(message, code=codes.E_STORE_SCHEMA)

    def _retry(self, fn: Callable[[sqlite3.Connection], _T], what: str, *, transaction: bool) -> _T:
        """Run ``fn`` (in a write transaction if asked), retrying while another process holds the lock.

        sqlite3's busy timeout already waits inside each call; retries cover the
        cases where SQLite returns BUSY at once (e.g. a WAL snapshot that went stale).
        """
        if self._depth:
            # Inside transaction(): the write lock is held, so no retry; one error loses the whole batch.
            with _converted(what):
                return fn(self.conn)

        def attempt() -> _T:
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

        return while_busy(attempt, self.busy_timeout)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`Backend.transaction` (``BEGIN IMMEDIATE``, taken with the busy retries)."""
        if self._depth:
            # Nested: a savepoint, so that an error inside undoes only what was written inside.
            name = f"pith_{self._depth}"
            with _converted("starting a savepoint"):
                self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                with _converted("rolling back to a savepoint"):
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                raise
            finally:
                self._depth -= 1
            with _converted("releasing a savepoint"):
                self.conn.execute(f"RELEASE {name}")
            return
        self._retry(lambda conn: conn.execute("BEGIN IMMEDIATE"), "starting a transaction", transaction=False)
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with _converted("rolling back"):
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        with _converted("committing to the store"):
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def write(self, fn: Callable[[sqlite3.Connection], _T], what: str = "writing to the store") -> _T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction (committed before returning)."""
        return self._retry(fn, what, transaction=True)

    def read(self, fn: Callable[[sqlite3.Connection], _T], what: str = "reading the store") -> _T:
        """Run ``fn`` against one consistent snapshot (a read transaction)."""

        if self._depth:
            return self._retry(fn, what, transaction=False)  # inside transaction(): sees its writes

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
        items: Sequence[ItemRow],
        facts: Sequence[FactsRow] | None = None,
    ) -> list[bool]:
        """See :meth:`Backend.add`: INSERT OR IGNORE on the unique (subject, id, digest) keys.

        A new copy's facts are written in the same transaction as the copy, so a
        stored copy lacks them only if it was stored under schema v1.
        """

        def run(conn: sqlite3.Connection) -> list[bool]:
            fresh: list[bool] = []
            for i, row in enumerate(events):
                cursor = conn.execute(_INSERT_EVENT, _event_values(row))
                fresh.append(cursor.rowcount == 1)
                if cursor.rowcount == 1:
                    found = facts[i] if facts is not None else FactsRow.inspected(row.subject, row)
                    conn.execute(_INSERT_FACTS, (cursor.lastrowid, FACTS_RULE, *found))
            _add_items(conn, items)
            return fresh

        return self.write(run, "appending to the store")

    def add_checked(
        self,
        events: Sequence[EventRow],
        items: Sequence[ItemRow],
        checked: Sequence[CheckedRow],
        ring: Ring,
        *,
        keep_invalid: bool,
    ) -> list[str]:
        """See :meth:`Backend.add_checked`: one ``BEGIN IMMEDIATE`` transaction, so concurrent
        writers each see the copies the other stored (a unit is stored once)."""

        def run(conn: sqlite3.Connection) -> list[str]:
            _record_ring(conn, ring)
            # Every stored copy of the rows' units, read at once: what stored_once decides
            # from, and which rows are already there (the same bytes: PRESENT).
            units: dict[str, set[str]] = {}
            for row in events:
                units.setdefault(row.subject, set()).add(row.unit_id)
            stored = [
                (subject, *copy)
                for subject, uids in units.items()
                for copy in _stored_copies(conn, ring.id, subject, sorted(uids))
            ]
            present = {(subject, uid, digest) for subject, uid, digest, _, _ in stored}

            def held(wanted: list[tuple[str, str]]) -> list[tuple[str, str, str, bool, bool]]:
                keys = set(wanted)
                return [copy for copy in stored if (copy[0], copy[1]) in keys]

            outcomes: list[str] = []
            new_rows: list[tuple[Any, ...]] = []
            new_facts: list[tuple[Any, ...]] = []
            verdicts: list[tuple[str, str | None, str, str, str]] = []
            decided = stored_once(events, checked, held, keep_invalid=keep_invalid)
            for row, (facts, reason, keyed), outcome in zip(events, checked, decided, strict=True):
                if outcome is None:
                    key = (row.subject, row.unit_id, row.digest)
                    outcome = PRESENT if key in present else ADDED
                    if outcome == ADDED:
                        present.add(key)
                        new_rows.append(_event_values(row))
                        new_facts.append((FACTS_RULE, *facts, *key))
                    if keyed:
                        verdicts.append((ring.id, reason, *key))
                outcomes.append(outcome)
            # One statement per table (the facts find their copy's seq by its unique key).
            if new_rows:
                conn.executemany(_INSERT_EVENT, new_rows)
                conn.executemany(_INSERT_FACTS_BY_KEY, new_facts)
            if verdicts:
                conn.executemany(_INSERT_KEY_VERDICT, verdicts)
            _add_items(conn, items)
            return outcomes

        return self.write(run, "appending to the store")

    def add_items(self, items: Sequence[ItemRow]) -> int:
        """See :meth:`Backend.add_items`."""
        return self.write(lambda conn: _add_items(conn, items), "appending to the store")

    def copies(
        self, subject: str, *, with_body: bool = False
    ) -> tuple[list[CopyRow], list[tuple[str, bytes]]]:
        """See :meth:`Backend.copies` (one read transaction, ``events_by_subject`` order)."""

        def run(conn: sqlite3.Connection) -> tuple[list[CopyRow], list[tuple[str, bytes]]]:
            if with_body:
                found = conn.execute(_COPIES_WITH_BODY_QUERY, (FACTS_RULE, subject)).fetchall()
                found.sort(key=_by_unit)
                rows = [CopyRow._make((*r[:8], EventRow(subject, r[1], r[2], *r[8:]))) for r in found]
            else:
                found = conn.execute(_COPIES_QUERY, (FACTS_RULE, subject)).fetchall()
                found.sort(key=_by_unit)
                rows = list(map(CopyRow._make, found))
            return rows, self._items(conn, subject)

        return self.read(run)

    def key_verdicts(self, ring: str, subject: str) -> dict[int, str | None]:
        """See :meth:`Backend.key_verdicts` (only under a ring recorded in ``key_rings``)."""
        query = (
            "SELECT k.seq, k.reason FROM key_verdicts k JOIN events e ON e.seq = k.seq"
            " WHERE k.ring = ? AND e.subject = ? AND EXISTS (SELECT 1 FROM key_rings r WHERE r.ring = k.ring)"
        )
        return self.read(lambda conn: dict(conn.execute(query, (ring, subject)).fetchall()))

    def add_key_verdicts(self, ring: Ring, subject: str, verdicts: Sequence[KeyVerdict]) -> None:
        """See :meth:`Backend.add_key_verdicts` (INSERT OR IGNORE, as for facts)."""
        rows = [(ring.id, reason, subject, uid, digest) for uid, digest, reason in verdicts]

        def run(conn: sqlite3.Connection) -> None:
            _record_ring(conn, ring)
            conn.executemany(_INSERT_KEY_VERDICT, rows)

        self.write(run, "writing key verdicts")

    def add_facts(self, facts: Sequence[tuple[int, FactsRow]]) -> None:
        """See :meth:`Backend.add_facts` (INSERT OR IGNORE: concurrent replays may race to fill a row)."""
        rows = [(seq, FACTS_RULE, *found) for seq, found in facts]
        self.write(lambda conn: conn.executemany(_INSERT_FACTS, rows), "writing event facts")

    def event_rows(self, subject: str) -> list[EventRow]:
        """See :meth:`Backend.event_rows`."""
        return self._select_rows("WHERE subject = ? ORDER BY unit_id, digest", (subject,))

    def bodies(self, seqs: Sequence[int]) -> list[bytes]:
        """See :meth:`Backend.bodies` (one read, a query per chunk of seqs)."""

        def run(conn: sqlite3.Connection) -> dict[int, bytes]:
            found: dict[int, bytes] = {}
            for start in range(0, len(seqs), _PREFETCH_CHUNK):
                chunk = seqs[start : start + _PREFETCH_CHUNK]
                query = f"SELECT seq, body FROM events WHERE seq IN ({','.join('?' * len(chunk))})"
                found.update(conn.execute(query, chunk))
            return found

        return ordered_bodies(seqs, self.read(run))

    def _select_rows(self, where: str, params: tuple[Any, ...]) -> list[EventRow]:
        query = (
            "SELECT subject, unit_id, digest, body, event_type, target, signer_id, prev_event, created_at"
            f" FROM events {where}"
        )
        return self.read(lambda conn: [EventRow(*row) for row in conn.execute(query, params)])

    def stream_rows(self, subject: str, target: str, signer_id: str) -> list[EventRow]:
        """The copies of one stream (target, signer_id) of ``subject`` (uses ``events_by_stream``)."""
        return self._select_rows(
            "WHERE subject = ? AND target = ? AND signer_id = ? ORDER BY unit_id, digest",
            (subject, target, signer_id),
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
            for kind, body in conn.execute(
                "SELECT kind, body FROM items WHERE subject = ? ORDER BY kind, body", (subject,)
            )
        ]

    def subjects(self) -> list[str]:
        """See :meth:`Backend.subjects`."""
        return self.read(
            lambda conn: [
                row[0]
                for row in conn.execute(
                    "SELECT subject FROM events UNION SELECT subject FROM items ORDER BY 1"
                )
            ]
        )

    def signature_verdicts(self, messages: Sequence[bytes]) -> list[SignatureVerdict]:
        """See :meth:`Backend.signature_verdicts` (one read transaction, a query per chunk of messages)."""

        def run(conn: sqlite3.Connection) -> list[SignatureVerdict]:
            rows: list[SignatureVerdict] = []
            for start in range(0, len(messages), _PREFETCH_CHUNK):
                chunk = messages[start : start + _PREFETCH_CHUNK]
                query = (
                    "SELECT public_key, signature, message, valid FROM signature_cache"
                    f" WHERE message IN ({','.join('?' * len(chunk))})"
                )
                # sqlite3 returns BLOBs as bytes, so rows key dicts as lookups do.
                rows.extend(SignatureVerdict(k, s, m, v == 1) for k, s, m, v in conn.execute(query, chunk))
            return rows

        return self.read(run)

    def signature_verdict(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """See :meth:`Backend.signature_verdict` (outside a transaction: one indexed read)."""
        with _converted("reading the signature cache"):
            row = self.conn.execute(
                "SELECT valid FROM signature_cache WHERE public_key = ? AND signature = ? AND message = ?",
                (public_key, signature, message),
            ).fetchone()
        return None if row is None else bool(row[0])

    def add_signature_verdicts(self, verdicts: Sequence[SignatureVerdict]) -> None:
        """See :meth:`Backend.add_signature_verdicts` (INSERT OR IGNORE)."""
        rows = [(k, s, m, int(v)) for k, s, m, v in verdicts]
        self.write(
            lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO signature_cache (public_key, signature, message, valid) VALUES (?, ?, ?, ?)",
                rows,
            ),
            "writing the signature cache",
        )

    def store_sequence(self) -> tuple[int, int]:
        """See :meth:`Backend.store_sequence` (SQLite commits one writer at a time; seq is AUTOINCREMENT)."""
        events, items = self.read(lambda conn: conn.execute(STORE_SEQUENCE).fetchone())
        return int(events), int(items)

    def changes(self, events_after: int, items_after: int) -> StoreChanges:
        """See :meth:`Backend.changes` (one read transaction, range scans on the rowid)."""
        return self.read(
            lambda conn: changes_in(conn.execute, events_after, items_after), "reading the store's changes"
        )

    def audit(self, table: str) -> Iterator[tuple[Any, ...]]:
        """See :meth:`Backend.audit`: one statement, read lazily (its own read snapshot)."""
        columns = AUDIT_TABLES[table]  # a KeyError for any other name: never SQL from outside
        with _converted(f"reading {table}"):
            cursor = self.conn.execute(f"SELECT {', '.join(columns)} FROM {table}")
        while True:
            with _converted(f"reading {table}"):
                batch = cursor.fetchmany(1000)
            if not batch:
                return
            yield from batch

    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check`` (``["ok"]`` for a sound file)."""
        return self.read(lambda conn: [row[0] for row in conn.execute("PRAGMA integrity_check")])

    def close(self) -> None:
        """Close the connection (the last one out checkpoints the WAL)."""
        with _converted(f"closing {self.path}"):
            self.conn.close()


#: A copies row's place in ``ORDER BY unit_id, digest`` (SQLite's BINARY collation compares
#: UTF-8 bytes, which order as Python compares code points); a C-level key, as the sort
#: runs over every copy of a subject.
_by_unit: Final = operator.itemgetter(1, 2)


def _event_values(row: EventRow) -> tuple[Any, ...]:
    return (
        row.subject,
        row.unit_id,
        row.digest,
        row.body,
        row.event_type,
        row.target,
        row.signer_id,
        row.prev_event,
        row.created_at,
    )


def _add_items(conn: sqlite3.Connection, items: Sequence[ItemRow]) -> int:
    """Insert items (INSERT OR IGNORE); how many were new."""
    if not items:
        return 0
    return conn.executemany(
        _INSERT_ITEMS, [(subject, kind, sha256_hex(body), body) for subject, kind, body in items]
    ).rowcount


def _stored_copies(
    conn: sqlite3.Connection, ring: str, subject: str, uids: list[str]
) -> Iterator[tuple[str, str, bool, bool]]:
    """Each stored copy of these units of ``subject``: (unit id, digest, valid, unsettled) under
    ``ring`` (see :data:`_COPIES_OF_UNITS`), a query per chunk of units."""
    for start in range(0, len(uids), _PREFETCH_CHUNK):
        part = uids[start : start + _PREFETCH_CHUNK]
        query = f"{_COPIES_OF_UNITS} ({','.join('?' * len(part))})"
        for uid, digest, valid, unsettled in conn.execute(query, (FACTS_RULE, ring, subject, *part)):
            yield uid, digest, bool(valid), bool(unsettled)
