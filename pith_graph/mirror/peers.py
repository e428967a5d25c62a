"""The peers a mirror follows, and where it is in each peer's change feed.

Kept in the event store itself, so that they are exactly as durable as the
events: an append-only table ``mirror_peer_log`` (UPDATE and DELETE refused by
triggers, like every other table of the store). Each row sets one value:

* ``kind = 'peer'``: the peer was added (``value``: its name, may be empty);
* ``kind = 'cursor'``: the feed cursor reached for the peer (``value``: the peer's
  opaque cursor), written only after the events of that page were committed;
* ``kind = 'etag'``: the ETag of the last bundle fetched for ``name`` (a subject),
  sent as ``If-None-Match`` next time.

The latest row of a (peer, kind, name) wins. The table is created on first
use (``CREATE TABLE IF NOT EXISTS``), in the same store file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from pith_graph import codes
from pith_graph.errors import InputError
from pith_graph.mirror._storage import sqlite_backend
from pith_graph.store import EventStore

__all__ = ["Peer", "add_peer", "cursor", "etag", "list_peers", "normalise_url", "set_cursor", "set_etag"]

_TABLE: Final = "mirror_peer_log"
_SCHEMA: Final = (
    f"""CREATE TABLE IF NOT EXISTS {_TABLE} (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        peer TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('peer', 'cursor', 'etag')),
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        at TEXT NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_latest ON {_TABLE} (peer, kind, name, seq)",
    f"CREATE TRIGGER IF NOT EXISTS {_TABLE}_no_update BEFORE UPDATE ON {_TABLE}"
    " BEGIN SELECT RAISE(ABORT, 'the peer log is append-only'); END",
    f"CREATE TRIGGER IF NOT EXISTS {_TABLE}_no_delete BEFORE DELETE ON {_TABLE}"
    " BEGIN SELECT RAISE(ABORT, 'the peer log is append-only'); END",
)
_LATEST: Final = (
    f"SELECT value FROM {_TABLE} WHERE peer = ? AND kind = ? AND name = ? ORDER BY seq DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Peer:
    """A followed peer: its base URL, name, when it was added, and the feed cursor reached (None: not synced yet)."""

    url: str
    name: str
    added_at: str
    cursor: str | None

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready form."""
        return {"url": self.url, "name": self.name, "added_at": self.added_at, "cursor": self.cursor}


def normalise_url(url: str) -> str:
    """A peer's base URL as kept: ``http(s)://host[:port][/path]`` without a trailing slash, query or fragment."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InputError(f"not a mirror base URL (http(s)://host[:port][/path]): {url!r}", code=codes.E_USAGE)
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _has_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_TABLE,)).fetchone()
        is not None
    )


def _append(store: EventStore, peer: str, kind: str, name: str, value: str) -> None:
    def run(conn: sqlite3.Connection) -> None:
        if not _has_table(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
        conn.execute(
            f"INSERT INTO {_TABLE} (peer, kind, name, value, at) VALUES (?, ?, ?, ?, ?)",
            (peer, kind, name, value, _now()),
        )

    sqlite_backend(store).write(run, "writing the peer log")


def _latest(store: EventStore, peer: str, kind: str, name: str = "") -> str | None:
    def run(conn: sqlite3.Connection) -> str | None:
        if not _has_table(conn):
            return None
        row = conn.execute(_LATEST, (peer, kind, name)).fetchone()
        return None if row is None else str(row[0])

    return sqlite_backend(store).read(run, "reading the peer log")


def add_peer(store: EventStore, url: str, *, name: str = "") -> Peer:
    """Follow the mirror at ``url`` (kept once: adding it again only renames it)."""
    peer = normalise_url(url)
    if _latest(store, peer, "peer") != name:
        _append(store, peer, "peer", "", name)
    return next(p for p in list_peers(store) if p.url == peer)


def list_peers(store: EventStore) -> list[Peer]:
    """Every followed peer, in the order they were first added."""

    def run(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
        if not _has_table(conn):
            return []
        return conn.execute(
            f"SELECT p.peer, (SELECT value FROM {_TABLE} WHERE peer = p.peer AND kind = 'peer' ORDER BY seq DESC LIMIT 1),"
            f" MIN(p.at), (SELECT value FROM {_TABLE} WHERE peer = p.peer AND kind = 'cursor' ORDER BY seq DESC LIMIT 1)"
            f" FROM {_TABLE} p WHERE p.kind = 'peer' GROUP BY p.peer ORDER BY MIN(p.seq)"
        ).fetchall()

    return [
        Peer(url, name, at, cur)
        for url, name, at, cur in sqlite_backend(store).read(run, "reading the peer log")
    ]


def cursor(store: EventStore, peer: str) -> str | None:
    """The feed cursor reached for ``peer`` (None: start from the beginning)."""
    return _latest(store, normalise_url(peer), "cursor")


def set_cursor(store: EventStore, peer: str, value: str) -> None:
    """Record the cursor reached; call only once the events it covers are committed."""
    url = normalise_url(peer)
    if _latest(store, url, "cursor") != value:
        _append(store, url, "cursor", "", value)


def etag(store: EventStore, peer: str, subject: str) -> str | None:
    """The ETag of the last bundle of ``subject`` fetched from ``peer``."""
    return _latest(store, normalise_url(peer), "etag", subject)


def set_etag(store: EventStore, peer: str, subject: str, value: str) -> None:
    """Remember a bundle's ETag (after its events were committed)."""
    url = normalise_url(peer)
    if _latest(store, url, "etag", subject) != value:
        _append(store, url, "etag", subject, value)
