"""The change feed: the store query (cursor semantics, paging) and the endpoint under uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from pith_graph import codes
from pith_graph.errors import InputError
from pith_graph.mirror.feed import FEED_TYPE, MAX_LIMIT, changes_since, parse_cursor
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey
from tests.mirror.peerlab import FIXTURES, FeedPeer

REGISTRY = TestKey("registry")
SUBJECT = "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"


def histories(count: int) -> list[History]:
    return [History.new(REGISTRY, arxiv_id=f"2601.{i:05d}") for i in range(count)]


def fill(store: EventStore, items: list[History]) -> None:
    for history in items:
        store.import_bundle(history.bundle(), trusted_keys=[REGISTRY.entry()])


def walk(store: EventStore, limit: int, after: str | None = None) -> tuple[list[str], str]:
    """Every subject the feed lists from ``after`` on, page by page (bounded), and the last cursor."""
    listed: list[str] = []
    for _ in range(1000):
        page = changes_since(store, after, limit=limit, trusted_keys=None)
        assert len(page.changes) <= limit
        listed += [c.pith_number for c in page.changes]
        after = page.next
        if not page.more:
            return listed, after
    raise AssertionError("the feed did not end")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str:
    """A new store of each backend: an SQLite file in memory, or an empty PostgreSQL schema."""
    return ":memory:" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_empty_store(db: str) -> None:
    with EventStore(db) as store:
        page = changes_since(store)
    assert page.to_dict() == {
        "feed_type": FEED_TYPE,
        "feed_version": "1.0",
        "merge_version": "pith-open-graph-merge-v1",
        "after": "",
        "next": "0.0",
        "more": False,
        "changes": [],
    }


def test_lists_each_changed_subject_with_its_state(db: str) -> None:
    with EventStore(db) as store:
        store.import_bundle(FIXTURES / "bundle-AG3PAJ22.json")
        page = changes_since(store)
        embedded = json.loads((FIXTURES / "bundle-AG3PAJ22.json").read_bytes())["state"]
        assert [c.to_dict() for c in page.changes] == [
            {
                "pith_number": SUBJECT,
                "state_sha256": embedded["state_sha256"],
                "event_count": embedded["event_count"],
            }
        ]
        # Nothing after the cursor it gave: an empty page with the same cursor.
        again = changes_since(store, page.next)
        assert again.changes == () and again.next == page.next and not again.more


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
def test_paging_covers_every_subject_once_per_change(db: str, limit: int) -> None:
    items = histories(7)
    with EventStore(db) as store:
        fill(store, items)
        listed, cursor = walk(store, limit)
        assert listed == [h.subject for h in items]  # in order of change, each once
        # A later change of an early subject shows up after the cursor, alone.
        snap = items[0].event("graph_snapshot", payload={"graph_snapshot": {}})
        store.append(snap)
        assert walk(store, limit, cursor)[0] == [items[0].subject]


def test_item_only_change_is_listed(db: str) -> None:
    # An alias arriving alone changes the state (merge-v1 lists the bundle's aliases): the feed says so.
    history = histories(1)[0]
    with EventStore(db) as store:
        store.import_bundle(history.bundle(aliases=[]), trusted_keys=[REGISTRY.entry()])
        _, cursor = walk(store, 10)
        store.import_bundle(history.bundle(), trusted_keys=[REGISTRY.entry()])
        assert walk(store, 10, cursor)[0] == [history.subject]


def test_cursor_only_grows_and_is_stable(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    items = histories(3)
    with EventStore(db) as store:
        fill(store, items[:2])
        _, first = walk(store, 1)
        fill(store, items[2:])
        _, second = walk(store, 1, first)
    assert parse_cursor(second) > parse_cursor(first)
    # The cursor names rows of the events and items tables, read here with sqlite3 itself.
    with sqlite3.connect(db) as conn:
        top = (
            conn.execute("SELECT MAX(seq) FROM events").fetchone()[0],
            conn.execute("SELECT MAX(seq) FROM items").fetchone()[0],
        )
    assert parse_cursor(second) == top


@pytest.mark.parametrize("cursor", ["x", "1", "1.2.3", "-1.0", "01.0", "1.0 ", "9" * 30 + ".0"])
def test_bad_cursor(cursor: str) -> None:
    with EventStore() as store, pytest.raises(InputError) as caught:
        changes_since(store, cursor)
    assert caught.value.code == codes.E_FEED_BAD_CURSOR


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1])
def test_bad_limit(limit: int) -> None:
    with EventStore() as store, pytest.raises(InputError) as caught:
        changes_since(store, limit=limit)
    assert caught.value.code == codes.E_FEED_BAD_LIMIT


# --- the endpoint, served by uvicorn -----------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = tmp_path / "peer.sqlite"
    with EventStore(db) as store:
        store.import_bundle(FIXTURES / "bundle-AG3PAJ22.json")
        fill(store, histories(3))
    with FeedPeer(db) as peer:
        yield peer


def test_endpoint_pages(served: FeedPeer) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        first = http.get("/api/mirror/changes", params={"limit": "2"})
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("application/json")
        assert first.headers["access-control-allow-origin"] == "*"
        body = first.json()
        assert body["feed_type"] == FEED_TYPE and body["more"] is True and len(body["changes"]) == 2
        assert body["changes"][0]["pith_number"] == SUBJECT
        rest = http.get("/api/mirror/changes", params={"after": body["next"]}).json()
        assert len(rest["changes"]) == 2 and rest["more"] is False


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"after": "nope"}, codes.E_FEED_BAD_CURSOR),
        ({"limit": "0"}, codes.E_FEED_BAD_LIMIT),
        ({"limit": "abc"}, codes.E_FEED_BAD_LIMIT),
        ({"limit": str(MAX_LIMIT + 1)}, codes.E_FEED_BAD_LIMIT),
    ],
)
def test_endpoint_errors_are_400_json(served: FeedPeer, query: dict[str, str], code: str) -> None:
    answer = httpx.get(served.url + "/api/mirror/changes", params=query, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"] == code and answer.json()["message"]


def test_endpoint_wrong_method(served: FeedPeer) -> None:
    assert httpx.post(served.url + "/api/mirror/changes", timeout=10).status_code == 405
