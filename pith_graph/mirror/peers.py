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
use, in the same store (the SQLite file, or the PostgreSQL schema of the
store's tables, append-only by the store's own ``pith_append_only`` trigger
function), inside the transaction that writes its first row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from pith_graph import codes
from pith_graph.errors import InputError
from pith_graph.mirror import _storage as storage
from pith_graph.mirror._storage import Session
from pith_graph.store import EventStore

__all__ = ["Peer", "add_peer", "cursor", "etag", "list_peers", "normalise_url", "set_cursor", "set_etag"]

_TABLE: Final = "mirror_peer_log"
_SQLITE_SCHEMA: Final = (
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
#: The same on PostgreSQL (text compared in byte order, as everywhere in the store's schema).
_POSTGRES_SCHEMA: Final = (
    f"""CREATE TABLE {_TABLE} (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        peer text COLLATE "C" NOT NULL,
        kind text COLLATE "C" NOT NULL CHECK (kind IN ('peer', 'cursor', 'etag')),
        name text COLLATE "C" NOT NULL,
        value text NOT NULL,
        at text NOT NULL
    )""",
    f"CREATE INDEX {_TABLE}_latest ON {_TABLE} (peer, kind, name, seq)",
    f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE}"
    " FOR EACH ROW EXECUTE FUNCTION pith_append_only()",
    f"CREATE TRIGGER {_TABLE}_no_truncate BEFORE TRUNCATE ON {_TABLE}"
    " FOR EACH STATEMENT EXECUTE FUNCTION pith_append_only()",
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


def _append(store: EventStore, peer: str, kind: str, name: str, value: str) -> None:
    def run(session: Session) -> None:
        if not session.has_table(_TABLE):  # under the write lock: created once
            for statement in _POSTGRES_SCHEMA if session.postgres else _SQLITE_SCHEMA:
                session.execute(statement)
        session.execute(
            f"INSERT INTO {_TABLE} (peer, kind, name, value, at) VALUES (?, ?, ?, ?, ?)",
            (peer, kind, name, value, _now()),
        )

    storage.write(store, run, "writing the peer log")


def _latest(store: EventStore, peer: str, kind: str, name: str = "") -> str | None:
    def run(session: Session) -> str | None:
        if not session.has_table(_TABLE):
            return None
        found = session.rows(_LATEST, (peer, kind, name))
        return str(found[0][0]) if found else None

    return storage.read(store, run, "reading the peer log")


def add_peer(store: EventStore, url: str, *, name: str = "") -> Peer:
    """Follow the mirror at ``url`` (kept once: adding it again only renames it)."""
    peer = normalise_url(url)
    if _latest(store, peer, "peer") != name:
        _append(store, peer, "peer", "", name)
    return next(p for p in list_peers(store) if p.url == peer)


def list_peers(store: EventStore) -> list[Peer]:
    """Every followed peer, in the order they were first added."""

    def run(session: Session) -> list[tuple[Any, ...]]:
        if not session.has_table(_TABLE):
            return []
        return session.rows(
            f"SELECT p.peer, (SELECT value FROM {_TABLE} WHERE peer = p.peer AND kind = 'peer' ORDER BY seq DESC LIMIT 1),"
            f" MIN(p.at), (SELECT value FROM {_TABLE} WHERE peer = p.peer AND kind = 'cursor' ORDER BY seq DESC LIMIT 1)"
            f" FROM {_TABLE} p WHERE p.kind = 'peer' GROUP BY p.peer ORDER BY MIN(p.seq)"
        )

    return [
        Peer(url, name, at, cur) for url, name, at, cur in storage.read(store, run, "reading the peer log")
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
