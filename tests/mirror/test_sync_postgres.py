"""The change feed and the peer log on a PostgreSQL store: ``mirror sync`` into and out of one,
``mirror peers`` on one, ``serve`` of one listing the peers it follows and serving its feed.

They needed the SQLite backend (a ``store_error`` on PostgreSQL, also for a served
``/pith-mirrors.json``). Real subprocesses, peers on 127.0.0.1, a fresh schema per test
(tests/conftest.py; skipped without a server unless PITH_GRAPH_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pith_graph import codes
from pith_graph.mirror import peers
from pith_graph.store import EventStore

from .conftest import make_store, start_server
from .peerlab import FeedPeer, output_document, run_cli
from .test_sync import keys_file, peer_store, states, sync

pytestmark = pytest.mark.slow


def test_sync_into_postgres_then_from_its_feed(postgres_url: str, tmp_path: Path) -> None:
    keys, peer_db, follower = keys_file(tmp_path), tmp_path / "peer.sqlite", tmp_path / "follower.sqlite"
    subjects = peer_store(peer_db, 3)
    with FeedPeer(peer_db) as peer:
        first = sync(postgres_url, peer.url, keys, "--json", "--limit", "2")
        summary = output_document(first, "mirror sync")["summary"]
        assert (summary["fetched"], summary["problems"]) == (len(subjects), [])
        again = sync(postgres_url, peer.url, keys, "--json")
        assert output_document(again, "mirror sync")["summary"]["fetched"] == 0
    assert states(postgres_url, subjects, keys) == states(peer_db, subjects, keys)
    with EventStore(postgres_url) as store:
        [followed] = peers.list_peers(store)
        assert (followed.url, followed.cursor) == (peer.url, summary["cursor"])
        assert peers.etag(store, peer.url, subjects[0])  # kept for If-None-Match next time
    # The other way: a follower reads the PostgreSQL store's own feed, page by page.
    with FeedPeer(postgres_url) as source:
        pulled = sync(follower, source.url, keys, "--json", "--limit", "2")
    assert output_document(pulled, "mirror sync")["summary"]["fetched"] == len(subjects)
    assert states(follower, subjects, keys) == states(peer_db, subjects, keys)


def test_peers_on_postgres_and_the_log_is_append_only(postgres_url: str) -> None:
    added = run_cli("mirror", "peers", "add", "http://127.0.0.1:8081/", "--name", "b", "--db", postgres_url)
    assert added.returncode == 0, added.stderr
    assert run_cli("mirror", "peers", "add", "http://127.0.0.1:8082", "--db", postgres_url).returncode == 0
    listed = output_document(
        run_cli("mirror", "peers", "list", "--json", "--db", postgres_url), "mirror peers list"
    )
    assert [(p["url"], p["name"], p["cursor"]) for p in listed["peers"]] == [
        ("http://127.0.0.1:8081", "b", None),
        ("http://127.0.0.1:8082", "", None),
    ]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for refused in (
            "UPDATE mirror_peer_log SET value = 'x'",
            "DELETE FROM mirror_peer_log",
            "TRUNCATE mirror_peer_log",
        ):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="append-only"):
                conn.execute(refused)
    checked = output_document(run_cli("store", "check", "--json", "--db", postgres_url), "store check")
    assert checked["mismatches"] == []


def test_a_served_postgres_store_lists_its_peers_and_serves_its_feed(
    postgres_url: str, tmp_path: Path
) -> None:
    filled = make_store(tmp_path, ("2601.00071",))
    with EventStore(postgres_url) as target, EventStore(filled.db, create=False) as source:
        target.sync_from(source)
        subjects = source.subjects()
    added = run_cli("mirror", "peers", "add", "http://peer.example:8081", "--name", "p", "--db", postgres_url)
    assert added.returncode == 0, added.stderr
    server = start_server(postgres_url, "--trusted-keys", str(filled.keys))
    try:
        with server.client() as client:
            feed = client.get("/api/mirror/changes", params={"limit": "1"})
            rest = client.get("/api/mirror/changes", params={"after": feed.json()["next"]})
            bad = client.get("/api/mirror/changes", params={"after": "nope"})
            manifest = client.get("/pith-mirrors.json")
    finally:
        server.stop()
    assert (feed.status_code, rest.status_code, manifest.status_code) == (200, 200, 200), manifest.text
    listed = [c["pith_number"] for page in (feed, rest) for c in page.json()["changes"]]
    assert sorted(listed) == sorted(subjects) and feed.json()["more"] is True
    assert all(c["state_sha256"] for page in (feed, rest) for c in page.json()["changes"])
    assert (bad.status_code, bad.json()["error"]) == (400, codes.E_FEED_BAD_CURSOR)
    [peer] = [m for m in manifest.json()["mirrors"] if m["status"] == "peer"]
    assert (peer["base_url"], peer["name"]) == ("http://peer.example:8081", "p")
