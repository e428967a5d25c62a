"""What a mirror process knows of its store between replays, kept up to date incrementally.

The store's ``events.seq`` and ``items.seq`` are AUTOINCREMENT and rows are never
deleted or updated (triggers), and writers commit one at a time (SQLite's lock; on
PostgreSQL the store's write lock, docs/store.md); so the
pair (largest event seq, largest item seq) is a **store sequence** that only
grows, in commit order, whoever wrote (this process, another worker, a
``pith-graph store import`` beside the server). Per subject, the same pair
restricted to its rows is its **version**: it changes exactly when something
is stored for the subject, which is when its state, bundle and event list may
change. The server caches those documents per version (:mod:`.cache`), and the
change feed of issue 17 can page through subjects by the same sequence.

:class:`StoreView` reads only rows past its cursor (a range scan on the rowid),
so keeping up costs nothing while the store is quiet; :class:`ChangeWatch` says
cheaply whether anything was committed since the last look (``PRAGMA
data_version``, read from the WAL index in shared memory, no disk I/O).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Final

from pith_graph import codes
from pith_graph.canonical import loads
from pith_graph.errors import PithGraphError, StoreError
from pith_graph.identifiers import PITH_NUMBER_RE, derived_aliases, pith_number
from pith_graph.store import DEFAULT_BUSY_TIMEOUT, Backend, StoreChanges, is_postgres_url, open_backend

__all__ = ["ChangeWatch", "StoreView"]

#: A subject's version: (largest event seq, largest item seq) among its rows.
Version = tuple[int, int]
#: Alias kinds a ``resolve`` query may name, each derived from the canonical record
#: (never taken from a bundle's own ``source_aliases``: those are unsigned data).
_ALIAS_KINDS: Final = frozenset({"arxiv", "arxiv_version", "doi"})


@dataclass
class StoreView:
    """Subjects by code, aliases and per-subject versions, as of :attr:`cursor`.

    Updated only through :meth:`apply` (from one task at a time); read freely.
    """

    events_seq: int = 0
    items_seq: int = 0
    #: The 26-character code of each held Pith Number -> the subject as stored.
    by_code: dict[str, str] = field(default_factory=dict)
    versions: dict[str, Version] = field(default_factory=dict)
    #: (alias kind, value) -> subjects whose canonical record derives that alias.
    aliases: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    @property
    def cursor(self) -> Version:
        """The store sequence this view reflects."""
        return (self.events_seq, self.items_seq)

    def apply(self, delta: StoreChanges) -> None:
        """Take in what :meth:`Backend.changes` read past :attr:`cursor`."""
        for subject, seq in delta.events:
            self._bump(subject, seq, 0)
            self.events_seq = max(self.events_seq, seq)
        for subject, seq in delta.items:
            self._bump(subject, seq, 1)
            self.items_seq = max(self.items_seq, seq)
        for subject, body in delta.records:
            self._index_record(subject, body)

    def _bump(self, subject: str, seq: int, which: int) -> None:
        old = self.versions.get(subject, (0, 0))
        self.versions[subject] = (max(old[0], seq), old[1]) if which == 0 else (old[0], max(old[1], seq))
        match = PITH_NUMBER_RE.fullmatch(subject)
        # Only well-formed Pith Numbers are served: the route names a 26-character code.
        if match is not None:
            self.by_code.setdefault(match.group(2), subject)

    def _index_record(self, subject: str, body: bytes) -> None:
        try:
            record: Any = loads(body)
            if not isinstance(record, dict) or pith_number(record) != subject:
                return  # a record that does not hash to its subject derives nothing
            derived = derived_aliases(record)
        except PithGraphError:
            return
        for kind, value in derived:
            if kind in _ALIAS_KINDS:
                self.aliases.setdefault((kind, value), set()).add(subject)

    def subject(self, code: str) -> str | None:
        """The held subject whose code is ``code``, or None."""
        return self.by_code.get(code)

    def version(self, subject: str) -> Version:
        """The subject's version (``(0, 0)`` when it is not held)."""
        return self.versions.get(subject, (0, 0))

    def resolve(self, kind: str, value: str) -> list[str]:
        """Subjects an alias names, sorted: ``arxiv`` (with or without version), ``doi``, ``short``.

        ``short`` is a code prefix of at least 8 characters, with or without ``pith:``.
        """
        if kind == "short":
            prefix = value.removeprefix("pith:").upper()
            if len(prefix) < 8:
                return []
            return sorted(subject for code, subject in self.by_code.items() if code.startswith(prefix))
        if kind == "doi":
            return sorted(self.aliases.get(("doi", value.lower()), ()))
        if kind == "arxiv":
            found = self.aliases.get(("arxiv", value), set()) | self.aliases.get(
                ("arxiv_version", value), set()
            )
            return sorted(found)
        raise ValueError(kind)


class ChangeWatch:
    """Whether anything was committed to the store since the last call (any connection, any process).

    SQLite: ``PRAGMA data_version`` on a connection of its own: SQLite changes the
    value whenever another connection commits, and reading it touches only the WAL
    index in shared memory, so it is cheap enough to ask on every request.
    PostgreSQL: the store sequence (:meth:`Backend.store_sequence`, two index-only
    lookups, one round trip), which every commit by any server on any machine moves,
    so a commit that returned on one server is seen by the next request to another
    (docs/store.md, "Several servers, one database").
    """

    def __init__(self, path: str) -> None:
        self._seen: object = None
        self._backend: Backend | None = None
        if is_postgres_url(path):
            self._backend = open_backend(
                path, busy_timeout=DEFAULT_BUSY_TIMEOUT, create=False, read_only=True
            )
            return
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"opening {path}: {exc}", code=codes.E_IO) from exc

    def _marker(self) -> object:
        if self._backend is not None:
            return self._backend.store_sequence()
        (value,) = self._conn.execute("PRAGMA data_version").fetchone()
        return value

    def changed(self) -> bool:
        """True on the first call, then whenever the store was committed to since the previous call."""
        try:
            value = self._marker()
        except (sqlite3.Error, StoreError):
            return True  # unknown: look at the store (the refresh reports a real error)
        changed = value != self._seen
        self._seen = value
        return changed

    def close(self) -> None:
        """Close the watch connection."""
        if self._backend is not None:
            self._backend.close()
        else:
            self._conn.close()
