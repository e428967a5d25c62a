"""``mirror sync`` (a real subprocess) against real peers on 127.0.0.1: the feed and bundles under uvicorn.

Catching up, ETags, a dead or garbage-serving peer, a lying peer, ``--follow``
through a peer outage, and a sync killed with SIGKILL then resumed.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from pith_graph import codes
from pith_graph.keys import KeyRing
from pith_graph.mirror import peers
from pith_graph.mirror.feed import FEED_TYPE, changes_since
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey
from tests.mirror.peerlab import (
    FIXTURES,
    PITH_GRAPH,
    SUBJECT,
    FaultPeer,
    FeedPeer,
    Serve,
    bounded,
    bundle_path,
    free_port,
    one_error_line,
    output_document,
    run_cli,
    snapshot,
    sync_args,
)

pytestmark = pytest.mark.slow

REGISTRY = TestKey("registry", signer_id="pith.science")
FAST = ("--timeout", "1", "--deadline", "10", "--retries", "0")


def keys_file(tmp_path: Path) -> Path:
    """The local mirror's trusted keys: the registry's real key and the test registry key."""
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([*KeyRing.registry().to_entries(), REGISTRY.entry(signer_id="pith.science")]))
    return path


def peer_store(db: Path, count: int, *, registry_bundle: bool = True) -> list[str]:
    """A peer's store: the registry's bundle and ``count`` generated subjects with a snapshot each."""
    subjects = []
    with EventStore(db) as store:
        if registry_bundle:
            store.import_bundle(FIXTURES / "bundle-AG3PAJ22.json")
            subjects.append(SUBJECT)
        for i in range(count):
            history = History.new(REGISTRY, arxiv_id=f"2602.{i:05d}")
            snap = history.event("graph_snapshot", payload={"graph_snapshot": {"i": i}})
            store.import_bundle(history.bundle([snap]))
            subjects.append(history.subject)
    return subjects


def states(db: Path | str, subjects: list[str], keys: Path) -> dict[str, bytes]:
    ring = KeyRing.from_json(keys.read_bytes())
    with EventStore(db, create=False) as store:
        return {s: store.state(s, trusted_keys=ring).to_json() for s in subjects}


def sync(db: Path | str, url: str, keys: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*sync_args(url, db, keys, *FAST, *extra))


def test_sync_catches_up_then_has_nothing_to_do(tmp_path: Path) -> None:
    keys, peer_db, db = keys_file(tmp_path), tmp_path / "peer.sqlite", tmp_path / "local.sqlite"
    subjects = peer_store(peer_db, 4)
    with FeedPeer(peer_db) as peer:
        first = sync(db, peer.url, keys, "--json", "--limit", "2")
        assert first.returncode == 0, first.stderr
        summary = output_document(first, "mirror sync")["summary"]
        assert summary["fetched"] == 5 and summary["pages"] == 3 and summary["problems"] == []
        assert states(db, subjects, keys) == states(peer_db, subjects, keys)
        second = sync(db, peer.url, keys, "--json")
    assert second.returncode == 0, second.stderr
    nothing = output_document(second, "mirror sync")
    assert nothing["db"] == str(db) and nothing["summary"]["peer"] == peer.url
    assert nothing["summary"]["fetched"] == 0 and nothing["summary"]["subjects_listed"] == 0
    with EventStore(db) as store:
        [followed] = peers.list_peers(store)
        assert followed.url == peer.url and followed.cursor == summary["cursor"]


def test_sync_uses_etags(tmp_path: Path) -> None:
    keys, peer_db, db = keys_file(tmp_path), tmp_path / "peer.sqlite", tmp_path / "local.sqlite"
    peer_store(peer_db, 0, registry_bundle=False)
    history = History.new(REGISTRY, arxiv_id="2603.00001")
    stranger = TestKey("stranger")
    odd = history.event("author_attestation", key=stranger, target="author", payload={})
    with EventStore(peer_db) as store:
        store.import_bundle(history.bundle([odd]))  # the peer keeps it (local import); we never trust it
    with FeedPeer(peer_db) as peer:
        first = sync(db, peer.url, keys, "--json")
        assert first.returncode == 1  # an event the peer holds failed stage 1 here: reported
        assert output_document(first, "mirror sync")["summary"]["rejected"] == 1
        with EventStore(db) as store:
            peers.set_cursor(store, peer.url, "0.0")  # read the feed again from the start
        again = sync(db, peer.url, keys, "--json")
    assert again.returncode == 0, again.stderr
    summary = output_document(again, "mirror sync")["summary"]
    # The state still differs (the event is not stored here), but the bundle did not change: 304.
    assert summary["not_modified"] == 1 and summary["fetched"] == 0
    assert all(odd["event_id"] != row.unit_id for row in _rows(db, history.subject))


def _rows(db: Path, subject: str) -> list:  # type: ignore[type-arg]
    with EventStore(db) as store:
        return store.backend.event_rows(subject)


def test_dead_peer_is_exit_2_one_line(tmp_path: Path) -> None:
    keys, db = keys_file(tmp_path), tmp_path / "local.sqlite"
    peer_store(db, 1, registry_bundle=False)
    before = snapshot(db)
    result = sync(db, f"http://127.0.0.1:{free_port()}", keys)
    assert result.returncode == 2
    one_error_line(result, codes.E_PEER_UNREACHABLE)
    assert snapshot(db) == before
    # --json: the same line, and one document saying the same.
    result = sync(db, f"http://127.0.0.1:{free_port()}", keys, "--json")
    one_error_line(result, codes.E_PEER_UNREACHABLE)
    assert output_document(result, "mirror sync")["error"]["code"] == codes.E_PEER_UNREACHABLE


def test_a_peer_failing_after_a_page_is_one_document_with_the_summary(tmp_path: Path) -> None:
    """The first page is done and kept; the second is garbage (the same cursor again, "more"):
    exit 2, one line on stderr, and with --json one document holding both what was done and the
    error (it used to print the summary and then a second document)."""
    keys, db = keys_file(tmp_path), tmp_path / "local.sqlite"
    history = History.new(REGISTRY, arxiv_id="2604.00003")
    feed = {
        "feed_type": FEED_TYPE,
        "feed_version": "1.0",
        "after": "",
        "next": "7.7",
        "more": True,
        "changes": [{"pith_number": history.subject, "state_sha256": "a" * 64, "event_count": 1}],
    }
    code = history.subject.rsplit(":", 1)[1]
    routes = {
        "/api/mirror/changes": Serve(json.dumps(feed).encode()),
        bundle_path(code): Serve(json.dumps(history.bundle()).encode()),
    }
    with FaultPeer(routes) as peer:
        result = sync(db, peer.url, keys, "--json")
        plain = sync(tmp_path / "plain.sqlite", peer.url, keys)
    one_error_line(result, codes.E_PEER_BAD_ANSWER)
    document = output_document(result, "mirror sync")
    assert document["error"]["code"] == codes.E_PEER_BAD_ANSWER
    assert (document["summary"]["pages"], document["summary"]["fetched"]) == (1, 1)
    assert list(snapshot(db)) == [history.subject]  # the first page's work is kept
    # Without --json: the summary on stdout, then the one error line.
    one_error_line(plain, codes.E_PEER_BAD_ANSWER)
    assert "1 bundles fetched" in plain.stdout


@pytest.mark.parametrize(
    "feed",
    [
        b"<html>garbage</html>",
        b'{"feed_type":"other"}',
        b'{"feed_type":"pith_mirror_changes","next":"1","more":false,"changes":[{"pith_number":"garbage"}]}',
        b'{"feed_type":"pith_mirror_changes","next":5,"more":false,"changes":[]}',
        b'{"feed_type":"pith_mirror_changes","next":"1","more":true,"changes":[]}',
    ],
    ids=["html", "wrong-type", "bad-subject", "bad-cursor", "more-for-ever"],
)
def test_garbage_feed_is_exit_2_one_line(tmp_path: Path, feed: bytes) -> None:
    keys, db = keys_file(tmp_path), tmp_path / "local.sqlite"
    peer_store(db, 1, registry_bundle=False)
    before = snapshot(db)
    with FaultPeer({"/api/mirror/changes": Serve(feed)}) as peer:
        result = sync(db, peer.url, keys)
    assert result.returncode == 2
    one_error_line(result, codes.E_PEER_BAD_ANSWER)
    assert snapshot(db) == before


def test_lying_peer_wrong_subject_is_reported_and_passed_over(tmp_path: Path) -> None:
    keys, db = keys_file(tmp_path), tmp_path / "local.sqlite"
    history, other = (
        History.new(REGISTRY, arxiv_id="2604.00001"),
        History.new(REGISTRY, arxiv_id="2604.00002"),
    )
    code = history.subject.rsplit(":", 1)[1]
    feed = {
        "feed_type": FEED_TYPE,
        "feed_version": "1.0",
        "after": "",
        "next": "7.7",
        "more": False,
        "changes": [{"pith_number": history.subject, "state_sha256": "a" * 64, "event_count": 1}],
    }
    with FaultPeer(
        {
            "/api/mirror/changes": Serve(json.dumps(feed).encode()),
            bundle_path(code): Serve(json.dumps(other.bundle()).encode()),
        }
    ) as peer:
        result = sync(db, peer.url, keys)
    assert result.returncode == 1, result.stderr
    assert codes.E_PEER_WRONG_SUBJECT in result.stdout and "Traceback" not in result.stderr
    assert snapshot(db) == {}  # nothing stored
    with EventStore(db) as store:
        assert peers.cursor(store, peer.url) == "7.7"  # the peer's fault does not stop the feed


def test_follow_rides_out_a_peer_outage(tmp_path: Path) -> None:
    keys, peer_db, db = keys_file(tmp_path), tmp_path / "peer.sqlite", tmp_path / "local.sqlite"
    subjects = peer_store(peer_db, 2, registry_bundle=False)
    port = free_port()
    follower = subprocess.Popen(
        [
            *PITH_GRAPH,
            *sync_args(
                f"http://127.0.0.1:{port}",
                db,
                keys,
                *FAST,
                "--follow",
                "--interval",
                "0.2",
                "--max-rounds",
                "8",
                "--json",
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_error: list[str] = []
        reader = threading.Thread(target=lambda: first_error.append(follower.stderr.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=60)
        assert first_error and first_error[0].startswith("pith-graph: peer_unreachable"), first_error
        with FeedPeer(peer_db, port=port):
            out, err = follower.communicate(timeout=120)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(timeout=10)
    assert follower.returncode == 0, err
    assert "Traceback" not in err and all(line.startswith("pith-graph: ") for line in err.splitlines())
    assert json.loads(out)["summary"]["fetched"] == 2
    assert states(db, subjects, keys) == states(peer_db, subjects, keys)


def _pages(db: Path, limit: int) -> list[tuple[str, list[str]]]:
    """The peer's feed, page by page: (next cursor, subjects listed)."""
    pages: list[tuple[str, list[str]]] = []
    after = None
    with EventStore(db, create=False) as store:
        for _ in range(100):
            page = changes_since(store, after, limit=limit)
            pages.append((page.next, [c.pith_number for c in page.changes]))
            after = page.next
            if not page.more:
                return pages
    raise AssertionError("the feed did not end")


def _held_subjects(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(DISTINCT subject) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


def test_sigkill_mid_sync_loses_nothing_and_resumes(tmp_path: Path) -> None:
    keys, peer_db, db = keys_file(tmp_path), tmp_path / "peer.sqlite", tmp_path / "local.sqlite"
    subjects = peer_store(peer_db, 12, registry_bundle=False)
    with FeedPeer(peer_db, bundle_delay=0.15) as peer:
        victim = subprocess.Popen(
            [*PITH_GRAPH, *sync_args(peer.url, db, keys, *FAST, "--limit", "3")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        with bounded(60) as alive:
            while alive() and victim.poll() is None and _held_subjects(db) < 4:
                threading.Event().wait(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert victim.returncode == -signal.SIGKILL, "the sync ended before it could be killed"
        held_before = snapshot(db)
        assert 4 <= len(held_before) < len(subjects)
        with EventStore(db) as store:
            store.check()
            cursor = peers.cursor(store, peer.url)
        resumed = sync(db, peer.url, keys, "--json", "--limit", "3")
    assert resumed.returncode == 0, resumed.stderr
    # The kept cursor is a page boundary of the peer's feed, and every subject of the pages
    # before it was committed here before it was written.
    pages = _pages(peer_db, 3)
    boundaries = [None, *[following for following, _ in pages]]
    assert cursor in boundaries
    covered = {s for _, listed in pages[: boundaries.index(cursor)] for s in listed}
    assert covered <= set(held_before)
    after = snapshot(db)
    assert all(after[s] == rows for s, rows in held_before.items())  # nothing lost
    assert states(db, subjects, keys) == states(peer_db, subjects, keys)


def test_follow_ends_cleanly_on_sigterm(tmp_path: Path) -> None:
    keys, peer_db, db = keys_file(tmp_path), tmp_path / "peer.sqlite", tmp_path / "local.sqlite"
    subjects = peer_store(peer_db, 2, registry_bundle=False)
    with FeedPeer(peer_db) as peer:
        follower = subprocess.Popen(
            [*PITH_GRAPH, *sync_args(peer.url, db, keys, *FAST, "--follow", "--interval", "0.1", "--json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with bounded(60) as alive:
                while alive() and follower.poll() is None and _held_subjects(db) < len(subjects):
                    threading.Event().wait(0.02)
            follower.send_signal(signal.SIGTERM)
            out, err = follower.communicate(timeout=60)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait(timeout=10)
    assert follower.returncode == 0, err
    document = json.loads(out)
    assert (document["format"], document["command"], document["exit_code"]) == (
        "pith-graph/1",
        "mirror sync",
        0,
    )
    assert err == "" and document["summary"]["problems"] == []
    assert states(db, subjects, keys) == states(peer_db, subjects, keys)


def test_peers_add_and_list(tmp_path: Path) -> None:
    db = tmp_path / "local.sqlite"
    assert (
        run_cli("mirror", "peers", "add", "http://127.0.0.1:8081/", "--name", "b", "--db", str(db)).returncode
        == 0
    )
    assert run_cli("mirror", "peers", "add", "http://127.0.0.1:8082", "--db", str(db)).returncode == 0
    assert (
        run_cli("mirror", "peers", "add", "HTTP://127.0.0.1:8081", "--name", "b", "--db", str(db)).returncode
        == 0
    )
    listed = run_cli("mirror", "peers", "list", "--json", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    assert [
        (p["url"], p["name"], p["cursor"]) for p in output_document(listed, "mirror peers list")["peers"]
    ] == [
        ("http://127.0.0.1:8081", "b", None),
        ("http://127.0.0.1:8082", "", None),
    ]
    added = run_cli(
        "mirror", "peers", "add", "http://127.0.0.1:8083", "--name", "c", "--json", "--db", str(db)
    )
    peer = output_document(added, "mirror peers add")["peer"]
    assert (peer["url"], peer["name"], peer["cursor"]) == ("http://127.0.0.1:8083", "c", None)
    bad = run_cli("mirror", "peers", "add", "ftp://example.org", "--db", str(db))
    assert bad.returncode == 2
    one_error_line(bad, codes.E_USAGE)
    refused = run_cli("mirror", "peers", "add", "ftp://example.org", "--json", "--db", str(db))
    one_error_line(refused, codes.E_USAGE)
    assert output_document(refused, "mirror peers add")["error"]["code"] == codes.E_USAGE
    # The log is append-only, as the store's other tables.
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE mirror_peer_log SET value = 'x'")


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty

    keys, peer_db, db = keys_file(tmp_path), tmp_path / "peer.sqlite", tmp_path / "local.sqlite"
    peer_store(peer_db, 3, registry_bundle=False)
    master, slave = pty.openpty()
    with FeedPeer(peer_db) as peer:
        process = subprocess.Popen(
            [*PITH_GRAPH, *sync_args(peer.url, db, keys, *FAST)],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
        )
        os.close(slave)
        out, _ = process.communicate(timeout=120)
    drawn = b""
    with bounded(10) as alive:
        while alive():
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: all was read
                break
            if not chunk:
                break
            drawn += chunk
    os.close(master)
    assert process.returncode == 0
    assert b"] 3/3" in drawn and b"#" in drawn  # the bar, on the terminal only
    assert "3 bundles fetched" in out and "[" not in out.split("\n")[0][:1]
