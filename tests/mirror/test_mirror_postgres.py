"""Several mirror servers on one PostgreSQL store (issue 20): each serves the others' writes at once,
and conflicting events POSTed to two servers at the same time are both kept and neither is applied.

Two real ``pith-graph serve --db postgresql://...`` processes on loopback ports over
one store (a fresh schema in the test session's database, see tests/conftest.py).
Every wait is bounded; no timing assertions.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from pith_graph import codes
from pith_graph.store import EventStore
from pith_graph.testing import History

from .conftest import Served, attestation, code_of, make_store, post, start_server

pytestmark = pytest.mark.slow

#: Rounds of simultaneous conflicting POSTs (each round a new stream).
ROUNDS = 4


def two_servers(postgres_url: str, tmp_path: Path, arxiv_id: str) -> tuple[Served, Served, History]:
    """A PostgreSQL store holding what :func:`make_store` puts in a file (moved by sync), and two servers on it."""
    filled = make_store(tmp_path, (arxiv_id,))
    with EventStore(postgres_url) as target, EventStore(filled.db, create=False) as source:
        target.sync_from(source)
    first = start_server(postgres_url, "--trusted-keys", str(filled.keys))
    try:
        second = start_server(postgres_url, "--trusted-keys", str(filled.keys))
    except BaseException:
        first.stop()
        raise
    return first, second, filled.histories[arxiv_id]


def state_of(client: httpx.Client, history: History) -> httpx.Response:
    answer = client.get(f"/pith/{code_of(history.subject)}/state.json")
    assert answer.status_code == 200, answer.text
    return answer


def test_an_event_posted_to_one_server_is_served_by_the_other_at_once(
    postgres_url: str, tmp_path: Path
) -> None:
    first, second, history = two_servers(postgres_url, tmp_path, "2601.00061")
    try:
        with first.client() as a, second.client() as b:
            # Both have the subject's state cached before the writes.
            assert state_of(a, history).content == state_of(b, history).content
            previous = None
            for i in range(6):
                writer, reader = (a, b) if i % 2 == 0 else (b, a)
                event = attestation(history, "two-servers", prev_event=previous)
                answer = post(writer, history, event)
                assert answer.status_code == 201, answer.text
                assert answer.json()["status"] == codes.MIRROR_APPLIED
                served = state_of(reader, history)  # the very next request, to the other server
                assert event["event_id"] in served.json()["applied_event_ids"]
                assert served.json()["state_sha256"] == answer.json()["state_sha256"]
                assert served.content == state_of(writer, history).content
                previous = event["event_id"]
            # The bundles agree too (the same ETag, the same bytes), whoever wrote what.
            bundles = [c.get(f"/pith/{code_of(history.subject)}/bundle.json") for c in (a, b)]
            assert bundles[0].json()["events"] == bundles[1].json()["events"]
    finally:
        first.stop()
        second.stop()


def send(
    start: threading.Barrier,
    answers: list[dict[str, Any]],
    index: int,
    client: httpx.Client,
    history: History,
    event: dict[str, Any],
) -> None:
    """POST ``event`` once every sender is ready; its answer goes to ``answers[index]``."""
    start.wait()
    response = post(client, history, event)
    answers[index] = {"status_code": response.status_code, **response.json()}


def test_conflicting_posts_to_two_servers_at_once_keep_both_and_apply_neither(
    postgres_url: str, tmp_path: Path
) -> None:
    first, second, history = two_servers(postgres_url, tmp_path, "2601.00062")
    rounds: list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = []
    try:
        with first.client() as a, second.client() as b:
            for round_ in range(ROUNDS):
                target = f"conflict-{round_}"
                base = attestation(history, target)
                assert post(a, history, base).status_code == 201
                # Two events of one stream naming the same predecessor: a fork (merge-v1 §8).
                left = attestation(history, target, prev_event=base["event_id"])
                right = attestation(history, target, prev_event=base["event_id"])  # a later created_at
                answers: list[dict[str, Any]] = [{}, {}]
                start = threading.Barrier(2, timeout=30)

                threads = [
                    threading.Thread(target=send, args=(start, answers, 0, a, history, left)),
                    threading.Thread(target=send, args=(start, answers, 1, b, history, right)),
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=60)
                assert not any(thread.is_alive() for thread in threads)
                rounds.append((left, right, answers))
            states = [state_of(client, history) for client in (a, b)]
            assert states[0].content == states[1].content  # one state, whichever server is asked
    finally:
        first.stop()
        second.stop()
    state = states[0].json()
    with EventStore(postgres_url, create=False) as store:
        stored = {event.unit_id for event in store.events(history.subject)}
    forks = [set(fork["event_ids"]) for fork in state["equivocations"]]
    for left, right, answers in rounds:
        ids = {left["event_id"], right["event_id"]}
        # Neither is lost: both were stored (201), and the store holds both.
        assert [answer["status_code"] for answer in answers] == [201, 201], answers
        assert ids <= stored
        # Neither is applied: the stream is frozen at the fork, which the state records.
        assert not ids & set(state["applied_event_ids"])
        assert any(ids <= fork for fork in forks), forks
        # Commits are one at a time and each answer comes from a replay after its own
        # commit: at most the first to commit can have been told "applied".
        assert [answer["status"] for answer in answers].count(codes.MIRROR_APPLIED) <= 1
        assert codes.MIRROR_FORKED in {answer["status"] for answer in answers}
