"""Which backend a store's name selects: a ``postgresql://`` URL or a path (SQLite).

One function, :func:`open_backend`, used by :class:`~pith_graph.store.EventStore`
and so by every command that takes ``--db``. psycopg is imported only when a
URL asks for PostgreSQL (it is the optional ``postgres`` extra).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import TYPE_CHECKING, Final

from pith_graph import codes
from pith_graph.errors import StoreError

if TYPE_CHECKING:
    from pith_graph.store._backend import Backend

__all__ = ["POSTGRES_SCHEMES", "is_postgres_url", "open_backend", "redacted_url"]

#: URL schemes that name a PostgreSQL store (anything else names an SQLite file).
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


def is_postgres_url(db: object) -> bool:
    """Whether a ``--db`` value names a PostgreSQL store."""
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def open_backend(
    db: str | os.PathLike[str], *, busy_timeout: float, create: bool = True, read_only: bool | None = False
) -> Backend:
    """The backend a store's name selects: PostgreSQL for a ``postgresql://`` URL, else an SQLite file (or ``:memory:``).

    ``read_only``: never write (None: exactly when this process may not write the store).
    """
    if is_postgres_url(db):
        assert isinstance(db, str)
        try:
            from pith_graph.store._postgres import PostgresBackend
        except ImportError as exc:
            raise StoreError(
                f"{redacted_url(db)}: PostgreSQL stores need psycopg (pip install 'pith_graph[postgres]')",
                code=codes.E_USAGE,
            ) from exc
        return PostgresBackend(db, busy_timeout=busy_timeout, create=create, read_only=read_only)
    from pith_graph.store._sqlite import SQLiteBackend

    return SQLiteBackend(db, busy_timeout=busy_timeout, create=create, read_only=read_only)
