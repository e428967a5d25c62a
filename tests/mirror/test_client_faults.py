"""The mirror client and ``mirror pull`` against faulty peers: real HTTP servers on 127.0.0.1.

Each fault leaves the store exactly as it was, gives one clean line (no
traceback) and the specified exit code. Timeouts are small and every wait is
bounded by them; nothing here asserts on elapsed time.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
from pathlib import Path

import pytest

from pith_graph import codes
from pith_graph.errors import PeerError
from pith_graph.mirror.client import ClientLimits, MirrorClient
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey
from tests.mirror.peerlab import (
    BUNDLE,
    CODE,
    SUBJECT,
    Announce,
    Cut,
    FaultPeer,
    Hang,
    Serve,
    Status,
    Stream,
    bundle_path,
    free_port,
    one_error_line,
    run_cli,
    snapshot,
    well_known_path,
)

FAST = ClientLimits(
    connect_timeout=0.5,
    read_timeout=0.5,
    total_timeout=5,
    retries=1,
    backoff_base=0.01,
    backoff_max=0.05,
    max_bytes=1 << 20,
)
#: The CLI's bounds for these tests: small timeouts, one retry.
CLI_FAST = ("--timeout", "0.5", "--deadline", "5", "--retries", "1", "--max-bytes", str(1 << 20))


def client(**changes: object) -> MirrorClient:
    limits = dataclasses.replace(FAST, **changes)  # type: ignore[arg-type]
    return MirrorClient(limits)


@pytest.fixture
def store_with_other(tmp_path: Path) -> Path:
    """A store already holding another subject: every fault must leave it as it is."""
    db = tmp_path / "store.sqlite"
    history = History.new(TestKey("registry"), arxiv_id="2601.09999")
    with EventStore(db) as store:
        store.import_bundle(history.bundle())
    return db


def pull(db: Path, source: str, *subjects: str) -> subprocess.CompletedProcess[str]:
    return run_cli("mirror", "pull", source, *(subjects or (SUBJECT,)), "--db", str(db), *CLI_FAST)


# --- the client, fault by fault ------------------------------------------------------


def test_down_peer_is_unreachable_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/pith-mirrors.json"
    with client() as c, pytest.raises(PeerError) as caught:
        c.get(url)
    assert caught.value.code == codes.E_PEER_UNREACHABLE and caught.value.transient
    assert c.attempts == 1 + FAST.retries


def test_hanging_peer_times_out() -> None:
    with FaultPeer({"/x": Hang()}) as peer, client(retries=0) as c, pytest.raises(PeerError) as caught:
        c.get(peer.url + "/x")
    assert caught.value.code == codes.E_PEER_TIMEOUT


def test_body_cut_short_is_truncated_and_retried() -> None:
    with FaultPeer({"/x": Cut(BUNDLE, 100)}) as peer, client() as c, pytest.raises(PeerError) as caught:
        c.get(peer.url + "/x")
    assert caught.value.code == codes.E_PEER_TRUNCATED
    assert peer.hits["/x"] == 1 + FAST.retries


def test_oversize_announced_is_refused_before_reading() -> None:
    with FaultPeer({"/x": Announce(10 << 20)}) as peer, client() as c, pytest.raises(PeerError) as caught:
        c.get(peer.url + "/x")
    assert caught.value.code == codes.E_PEER_TOO_LARGE and not caught.value.transient
    assert peer.hits["/x"] == 1  # not retried


def test_oversize_streamed_is_refused_while_reading() -> None:
    with FaultPeer({"/x": Stream(8 << 20)}) as peer, client() as c, pytest.raises(PeerError) as caught:
        c.get(peer.url + "/x")
    assert caught.value.code == codes.E_PEER_TOO_LARGE


def test_gzip_bomb_is_refused_at_the_decoded_size() -> None:
    bomb = b"{" + b" " * (64 << 20) + b"}"  # 64 MiB of JSON that compresses to about 64 KiB
    with FaultPeer({"/x": Serve(bomb, gzip=True)}) as peer, client() as c, pytest.raises(PeerError) as caught:
        c.get(peer.url + "/x")
    assert caught.value.code == codes.E_PEER_TOO_LARGE


def test_gzip_is_decoded() -> None:
    with FaultPeer({"/x": Serve(BUNDLE, gzip=True)}) as peer, client() as c:
        fetched = c.get(peer.url + "/x")
    assert fetched.body == BUNDLE and fetched.status == 200


def test_retry_after_is_honoured() -> None:
    waits: list[float] = []
    behaviour = Status(503, retry_after="1", times=1, then=Serve(BUNDLE))
    with FaultPeer({"/x": behaviour}) as peer, MirrorClient(FAST, sleep=waits.append) as c:
        fetched = c.get(peer.url + "/x")
    assert fetched.body == BUNDLE
    assert waits == [1.0]  # exactly what the peer asked for, not the backoff
    assert peer.statuses == [("/x", 503), ("/x", 200)]


def test_retry_after_over_the_cap_is_not_waited_for() -> None:
    waits: list[float] = []
    with (
        FaultPeer({"/x": Status(503, retry_after="3600")}) as peer,
        MirrorClient(FAST, sleep=waits.append) as c,
        pytest.raises(PeerError) as caught,
    ):
        c.get(peer.url + "/x")
    assert caught.value.transient and "3600" in caught.value.message
    assert waits == [] and peer.hits["/x"] == 1


def test_5xx_backs_off_with_jitter_within_the_cap() -> None:
    waits: list[float] = []
    limits = dataclasses.replace(FAST, retries=3, backoff_base=0.5, backoff_max=1.0)
    with (
        FaultPeer({"/x": Status(502)}) as peer,
        MirrorClient(limits, sleep=waits.append) as c,
        pytest.raises(PeerError) as caught,
    ):
        c.get(peer.url + "/x")
    assert caught.value.code == codes.E_PEER_HTTP
    assert len(waits) == 3 and peer.hits["/x"] == 4
    assert all(0 <= w <= bound for w, bound in zip(waits, [0.5, 1.0, 1.0], strict=True))


def test_404_is_not_retried() -> None:
    with FaultPeer({}) as peer, client() as c, pytest.raises(PeerError) as caught:
        c.get(peer.url + "/missing")
    assert caught.value.code == codes.E_PEER_HTTP and not caught.value.transient
    assert peer.hits["/missing"] == 1


def test_conditional_get_gives_304() -> None:
    with FaultPeer({"/x": Serve(BUNDLE)}) as peer, client() as c:
        first = c.get(peer.url + "/x")
        second = c.get(peer.url + "/x", etag=first.etag)
    assert first.etag and second.not_modified and second.body == b""


# --- mirror pull (a subprocess), fault by fault: the store stays as it was ------------------


@pytest.mark.parametrize(
    ("routes", "code"),
    [
        ({}, codes.E_NOTHING_USABLE),  # every URL 404
        ({bundle_path(CODE): Hang(), well_known_path(CODE): Hang()}, codes.E_NOTHING_USABLE),
        ({bundle_path(CODE): Cut(BUNDLE, 200)}, codes.E_NOTHING_USABLE),
        (
            {bundle_path(CODE): Serve(b"<html>not json</html>", content_type="text/html")},
            codes.E_NOTHING_USABLE,
        ),
        ({bundle_path(CODE): Serve(b'{"bundle_type": "something else"}')}, codes.E_NOTHING_USABLE),
        ({bundle_path(CODE): Stream(8 << 20)}, codes.E_NOTHING_USABLE),
        ({bundle_path(CODE): Status(503, retry_after="0")}, codes.E_NOTHING_USABLE),
    ],
    ids=["404", "hang", "cut", "garbage", "not-a-bundle", "oversize", "503"],
)
def test_pull_fault_leaves_store_intact(store_with_other: Path, routes: dict[str, object], code: str) -> None:
    before = snapshot(store_with_other)
    with FaultPeer(dict(routes)) as peer:
        result = pull(store_with_other, peer.url)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result, code)
    assert SUBJECT in line
    assert result.stdout == ""
    assert snapshot(store_with_other) == before


def test_pull_from_down_peer(store_with_other: Path) -> None:
    before = snapshot(store_with_other)
    result = pull(store_with_other, f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert codes.E_PEER_UNREACHABLE in one_error_line(result, codes.E_NOTHING_USABLE)
    assert snapshot(store_with_other) == before


def test_pull_wrong_subject(store_with_other: Path) -> None:
    other = History.new(TestKey("registry"), arxiv_id="2601.01234").bundle()
    before = snapshot(store_with_other)
    with FaultPeer({bundle_path(CODE): Serve(json.dumps(other).encode())}) as peer:
        result = pull(store_with_other, peer.url)
    assert result.returncode == 2
    assert codes.E_PEER_WRONG_SUBJECT in one_error_line(result, codes.E_NOTHING_USABLE)
    assert snapshot(store_with_other) == before


def test_pull_gzip_and_retry_after_then_success(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with FaultPeer(
        {bundle_path(CODE): Status(503, retry_after="0", times=1, then=Serve(BUNDLE, gzip=True))}
    ) as peer:
        result = pull(db, peer.url)
    assert result.returncode == 0, result.stderr
    assert peer.statuses == [(bundle_path(CODE), 503), (bundle_path(CODE), 200)]
    with EventStore(db) as store:
        assert store.state(SUBJECT).state_sha256 == json.loads(BUNDLE)["state"]["state_sha256"]


def test_pull_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    result = run_cli("mirror", "pull", "http://127.0.0.1:9", "not-a-number", "--db", str(db))
    assert result.returncode == 2
    one_error_line(result, codes.E_USAGE)
    result = run_cli("mirror", "pull", str(tmp_path / "missing.json"), SUBJECT, "--db", str(db))
    assert result.returncode == 2
    one_error_line(result, codes.E_USAGE)
    assert not db.exists()


def test_gzip_round_trip_fixture_is_really_compressed() -> None:
    # The gzip test above only means something if the served bytes differ from the bundle's.
    assert gzip.compress(BUNDLE) != BUNDLE and gzip.decompress(gzip.compress(BUNDLE)) == BUNDLE
