"""The mirror's own SQL on the store's database: the change feed's scan and the peer log's table.

Both backends of the event store run a function against one connection, in
one read snapshot (``read``) or in one transaction holding the store's write
lock (``write``), and keep the property the change feed's cursor rests on:
writers of events and items commit one at a time, so ``events.seq`` and
``items.seq`` grow in commit order (:class:`~pith_graph.store.Backend`, "store
sequence"; docs/mirror-sync.md, "Cursor semantics"). The mirror's statements
are written once, with ``?`` placeholders, and run through a :class:`Session`
on either database; what differs (the placeholder style, how a table is looked
up, the DDL of a table the mirror adds) is decided here. Nothing is added to
the store's ``Backend`` interface.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pith_graph import codes
from pith_graph.errors import StoreError
from pith_graph.store import EventStore, SQLiteBackend

if TYPE_CHECKING:  # psycopg is an optional dependency (the ``postgres`` extra)
    from pith_graph.store._postgres import PostgresBackend

__all__ = ["Session", "read", "write"]

_T = TypeVar("_T")


class Session:
    """One connection of the store's database, inside :func:`read` or :func:`write`."""

    def __init__(self, conn: sqlite3.Connection | Any, *, postgres: bool) -> None:
        # Any: a psycopg connection when ``postgres`` (psycopg may not be installed).
        self._conn = conn
        #: Which database: the caller picks its DDL by it (:func:`write` callers creating a table).
        self.postgres = postgres

    def _execute(self, statement: str, params: Sequence[Any]) -> Any:
        # ``?`` placeholders; the mirror's statements have no ``?`` or ``%`` in literals.
        return self._conn.execute(statement.replace("?", "%s") if self.postgres else statement, tuple(params))

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row ``query`` returns."""
        return [tuple(row) for row in self._execute(query, params).fetchall()]

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Execute a statement that returns nothing (DDL, an INSERT)."""
        self._execute(statement, params)

    def has_table(self, name: str) -> bool:
        """Whether the store's schema holds table ``name`` (for tables created on first use)."""
        if self.postgres:  # the schema the store's own tables are in (the search_path's first)
            query = (
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relname = ? AND c.relkind = 'r'"
            )
        else:
            query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(self.rows(query, (name,)))


def _postgres(store: EventStore) -> PostgresBackend:
    """The store's PostgreSQL backend; ``store_error`` for a backend this module does not know."""
    backend = store.backend
    unknown = StoreError(
        f"the mirror's feed and peer log need an SQLite or PostgreSQL store, not a {type(backend).__name__}",
        code=codes.E_STORE,
    )
    try:
        from pith_graph.store._postgres import PostgresBackend
    except ImportError as exc:  # no psycopg: no store can be a PostgreSQL one
        raise unknown from exc
    if not isinstance(backend, PostgresBackend):
        raise unknown
    return backend


def read(store: EventStore, fn: Callable[[Session], _T], what: str) -> _T:
    """Run ``fn`` against one consistent snapshot of the store."""
    backend = store.backend
    if isinstance(backend, SQLiteBackend):
        return backend.read(lambda conn: fn(Session(conn, postgres=False)), what)
    return _postgres(store).read(lambda conn: fn(Session(conn, postgres=True)), what)


def write(store: EventStore, fn: Callable[[Session], _T], what: str) -> _T:
    """Run ``fn`` in one transaction holding the store's write lock (committed before returning)."""
    backend = store.backend
    if isinstance(backend, SQLiteBackend):
        return backend.write(lambda conn: fn(Session(conn, postgres=False)), what)
    return _postgres(store).write(lambda conn: fn(Session(conn, postgres=True)), what)
