"""The SQLite store underneath the mirror's change feed and peer log.

The change feed's cursor is SQLite's arrival sequence (docs/mirror-sync.md,
"Cursor semantics") and the peer log is a table of the same file, so these parts
need :class:`~pith_graph.store.SQLiteBackend`; another backend would add a
commit-ordered change log and a peer table of its own to the ``Backend`` interface.
"""

from __future__ import annotations

from pith_graph import codes
from pith_graph.errors import StoreError
from pith_graph.store import EventStore, SQLiteBackend

__all__ = ["sqlite_backend"]


def sqlite_backend(store: EventStore) -> SQLiteBackend:
    """The store's SQLite backend; ``store_error`` for any other backend."""
    backend = store.backend
    if not isinstance(backend, SQLiteBackend):
        raise StoreError(
            f"mirror feeds and peers need an SQLite store, not a {type(backend).__name__}", code=codes.E_STORE
        )
    return backend
