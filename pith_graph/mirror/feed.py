"""The change feed: which subjects changed in a store since a cursor (docs/mirror-sync.md).

``GET /api/mirror/changes?after=CURSOR&limit=N`` answers with the subjects that
gained an event copy or a bundle-level item since ``CURSOR``, each with its
Pith Number, ``state_sha256`` and event count under the serving mirror's keys,
and the cursor to ask from next. A follower keeps that cursor per peer and only
fetches the bundles whose ``state_sha256`` differs from its own.

The cursor is built from the store's own arrival sequences (``events.seq`` and
``items.seq``, SQLite ``AUTOINCREMENT`` or PostgreSQL identity columns): they
only grow, and since both backends commit events and items one writer at a
time (SQLite's lock, PostgreSQL's advisory write lock), a row committed later
never gets a smaller sequence than one already visible, so nothing committed
is ever skipped.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from pith_graph import codes
from pith_graph.errors import InputError, PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.mirror import _storage as storage
from pith_graph.mirror._limits import DEFAULT_LIMIT, MAX_LIMIT
from pith_graph.mirror._storage import Session
from pith_graph.models import MERGE_VERSION
from pith_graph.store import EventStore

__all__ = [
    "DEFAULT_LIMIT",
    "FEED_TYPE",
    "MAX_LIMIT",
    "Change",
    "Changes",
    "changes",
    "changes_since",
    "parse_cursor",
]

FEED_TYPE: Final = "pith_mirror_changes"
FEED_VERSION: Final = "1.0"
#: Most rows of each table examined for one page (bounds a page's work whatever the store holds).
SCAN_ROWS: Final = 20_000
#: ``E.I``: the last events.seq and items.seq a page covered (decimal, no sign, no leading zeros).
_CURSOR_RE: Final = re.compile(r"(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class Change:
    """One subject in a page: its state under the serving mirror's keys (None where it has none)."""

    pith_number: str
    state_sha256: str | None
    event_count: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (key order as served)."""
        return {
            "pith_number": self.pith_number,
            "state_sha256": self.state_sha256,
            "event_count": self.event_count,
        }


@dataclass(frozen=True, slots=True)
class Changes:
    """One page of the feed: the changes, the cursor to ask from next, and whether more are waiting."""

    after: str
    changes: tuple[Change, ...]
    next: str
    more: bool

    def to_dict(self) -> dict[str, Any]:
        """The page as served (key order as served)."""
        return {
            "feed_type": FEED_TYPE,
            "feed_version": FEED_VERSION,
            "merge_version": MERGE_VERSION,
            "after": self.after,
            "next": self.next,
            "more": self.more,
            "changes": [c.to_dict() for c in self.changes],
        }


def parse_cursor(text: str | None) -> tuple[int, int]:
    """The (events.seq, items.seq) a cursor names; None or ``""`` is the beginning. Else ``bad_cursor``."""
    if not text:
        return (0, 0)
    match = _CURSOR_RE.fullmatch(text)
    if match is None:
        raise InputError(f"not a feed cursor: {text[:40]!r}", code=codes.E_FEED_BAD_CURSOR)
    return int(match.group(1)), int(match.group(2))


def _walk(rows: list[tuple[int, str]], subjects: dict[str, None], limit: int, start: int) -> tuple[int, bool]:
    """Take rows in sequence order while their subjects fit in ``limit``: (last seq covered, stopped early)."""
    last = start
    for seq, subject in rows:
        if subject not in subjects:
            if len(subjects) >= limit:
                return last, True
            subjects[subject] = None
        last = seq
    return last, False


def changes_since(
    store: EventStore,
    after: str | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    trusted_keys: KeyRing | None = None,
) -> Changes:
    """A page of the feed of ``store``: the subjects changed after ``after``, at most ``limit`` of them.

    Every row (event copy or item) with a sequence up to the returned ``next``
    cursor belongs to a subject listed in this page or an earlier one; ``more``
    says that rows after ``next`` exist (ask again from ``next``).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be 1 to {MAX_LIMIT}, not {limit}", code=codes.E_FEED_BAD_LIMIT)
    start_e, start_i = parse_cursor(after)

    def scan(session: Session) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        # Both in one read snapshot; seq is the primary key, so each is a range scan.
        query = "SELECT seq, subject FROM {} WHERE seq > ? ORDER BY seq LIMIT ?"
        return (
            [
                (int(seq), str(subject))
                for seq, subject in session.rows(query.format("events"), (start_e, SCAN_ROWS))
            ],
            [
                (int(seq), str(subject))
                for seq, subject in session.rows(query.format("items"), (start_i, SCAN_ROWS))
            ],
        )

    events, items = storage.read(store, scan, "reading the change feed")
    subjects: dict[str, None] = {}
    next_e, cut_e = _walk(events, subjects, limit, start_e)
    next_i, cut_i = _walk(items, subjects, limit, start_i)
    more = cut_e or cut_i or len(events) == SCAN_ROWS or len(items) == SCAN_ROWS
    return Changes(
        after or "",
        tuple(_change(store, subject, trusted_keys) for subject in subjects),
        f"{next_e}.{next_i}",
        more,
    )


def _change(store: EventStore, subject: str, trusted_keys: KeyRing | None) -> Change:
    try:
        state = store.state(subject, trusted_keys=trusted_keys)
    except PithGraphError:
        # A subject whose state cannot be computed here (e.g. held items that name no
        # valid record): listed all the same, so that a follower fetches and judges it.
        return Change(subject, None, None)
    return Change(subject, state.state_sha256, state.event_count)


# --- the HTTP endpoint ----------------------------------------------------------------

_LOCAL: Final = threading.local()


def _thread_store(path: str) -> EventStore:
    """One store connection per thread and path (sqlite3 connections stay in the thread that made them;
    a PostgreSQL URL gets a connection per thread too)."""
    stores: dict[str, EventStore] = _LOCAL.__dict__.setdefault("stores", {})
    store = stores.get(path)
    if store is None:
        store = stores[path] = EventStore(path, create=False)
    return store


def _query_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise InputError(f"limit must be an integer from 1 to {MAX_LIMIT}", code=codes.E_FEED_BAD_LIMIT)
    return int(text)


async def changes(request: Request) -> JSONResponse:
    """``GET /api/mirror/changes?after=CURSOR&limit=N`` (Starlette endpoint).

    The store and keys: ``request.app.state.mirror`` when the app is
    ``pith-graph serve``'s (its ``config.db`` and ``ring``), else
    ``request.app.state.pith_db`` (the store's path) and, if set,
    ``request.app.state.pith_trusted_keys`` (a :class:`KeyRing`; default: the
    registry key). ``400`` with ``{error, message}`` for a bad cursor or limit.
    """
    headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
    params = request.query_params
    try:
        limit = _query_limit(params.get("limit"))
        after = params.get("after")
        parse_cursor(after)
    except InputError as exc:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=400, headers=headers)
    server = getattr(request.app.state, "mirror", None)
    if server is not None:
        path, ring = str(server.config.db), server.ring
    else:
        path, ring = str(request.app.state.pith_db), getattr(request.app.state, "pith_trusted_keys", None)
    try:
        # Store calls run off the event loop.
        page = await run_in_threadpool(
            lambda: changes_since(_thread_store(path), after, limit=limit, trusted_keys=ring)
        )
    except PithGraphError as exc:
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=503, headers=headers)
    return JSONResponse(page.to_dict(), headers=headers)
