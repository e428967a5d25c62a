"""``POST /pith/{code}/events`` on a real server: stage 1 before storing, statuses, limits, durability."""

from __future__ import annotations

import copy
import json
import select
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.testing import History, make_event

from .conftest import (
    AUTHOR,
    JSON_HEADERS,
    REGISTRY_CODE,
    STRANGER,
    MirrorStore,
    Served,
    assert_error,
    attestation,
    code_of,
    make_store,
    post,
    raw_request,
    read_status,
    stored_units,
)


def test_a_valid_event_is_201_applied_then_200_already_held(
    mirror: Served, mirror_store: MirrorStore
) -> None:
    history = mirror_store.histories["2601.00001"]
    event = attestation(history, "post-valid")
    with mirror.client() as client:
        first = post(client, history, event)
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["event_id"] == event["event_id"]
        assert body["status"] == codes.MIRROR_APPLIED and body["applied"] is True and body["stored"] == "new"
        state = client.get(f"/pith/{code_of(history.subject)}/state.json")
        assert body["state_sha256"] == state.json()["state_sha256"]
        assert event["event_id"] in state.json()["applied_event_ids"]
        again = post(client, history, event)
        assert again.status_code == 200
        assert again.json()["stored"] == "already_held" and again.json()["status"] == codes.MIRROR_APPLIED
        # A copy padded where the content hash does not reach: merge-v1 §5 (a signature has
        # exactly the v1 members) makes it malformed, so it is refused and nothing is stored.
        padded = copy.deepcopy(event)
        padded["signature"]["pad"] = "x" * 1000
        refused = post(client, history, padded)
        assert refused.status_code == 422 and refused.json()["error"] == codes.REASON_MALFORMED
        # Another valid copy of the same unit (signed_at differs): held, not stored again.
        other = copy.deepcopy(event)
        other["signature"]["signed_at"] = "2026-01-01T00:00:00Z"
        assert post(client, history, other).status_code == 200
    assert stored_units(mirror.db, history.subject).count(event["event_id"]) == 1


def test_an_event_before_its_predecessor_is_pending_then_applied(
    mirror: Served, mirror_store: MirrorStore
) -> None:
    history = mirror_store.histories["2601.00001"]
    first = attestation(history, "post-chain")
    second = attestation(history, "post-chain", prev_event=first["event_id"])
    code = code_of(history.subject)
    with mirror.client() as client:
        early = post(client, history, second)
        assert early.status_code == 201
        assert early.json()["status"] == codes.MIRROR_PENDING
        assert early.json()["reason"] == codes.REASON_MISSING_PREV_EVENT
        assert early.json()["applied"] is False
        assert second["event_id"] in stored_units(mirror.db, history.subject)
        arrived = post(client, history, first)
        assert arrived.status_code == 201 and arrived.json()["status"] == codes.MIRROR_APPLIED
        applied = client.get(f"/pith/{code}/state.json").json()["applied_event_ids"]
        assert applied.index(first["event_id"]) < applied.index(second["event_id"])
        listed = {
            e["event_id"]: e for e in client.get(f"/api/pith-number/{code}/events.json").json()["events"]
        }
        assert listed[second["event_id"]]["status"] == codes.MIRROR_APPLIED
        assert post(client, history, second).json()["status"] == codes.MIRROR_APPLIED


def _forged_payload(history: History) -> dict[str, Any]:
    event = attestation(history, "post-forged")
    event["payload"]["claim"] = "changed after signing"
    return event


def _bad_signature(history: History) -> dict[str, Any]:
    event = attestation(history, "post-bad-signature")
    event["signature"]["signature_b64"] = STRANGER.sign_b64(bytes.fromhex(event["content_sha256"]))
    return event


def _untrusted(history: History) -> dict[str, Any]:
    return history.event("author_attestation", key=STRANGER, target="post-untrusted", payload={"claim": "x"})


def _other_subject(history: History) -> dict[str, Any]:
    return make_event(
        AUTHOR, subject="pith:2026:" + "B" * 26, event_type="author_attestation", target="post-other"
    )


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_forged_payload, codes.REASON_CONTENT_HASH_MISMATCH),
        (_bad_signature, codes.REASON_BAD_SIGNATURE),
        (_untrusted, codes.REASON_UNKNOWN_KEY),
        (_other_subject, codes.REASON_SUBJECT_MISMATCH),
        (lambda history: {"event_type": "author_attestation"}, codes.REASON_MALFORMED),
    ],
    ids=["forged-payload", "bad-signature", "untrusted-key", "other-subject", "malformed"],
)
def test_a_stage_1_failure_is_422_with_its_reason_and_nothing_is_stored(
    mirror: Served, mirror_store: MirrorStore, build: Any, reason: str
) -> None:
    history = mirror_store.histories["2601.00001"]
    before = stored_units(mirror.db, history.subject)
    with mirror.client() as client:
        body = assert_error(post(client, history, build(history)), 422, reason)
    assert body["event_id"].startswith("sha256:")
    assert stored_units(mirror.db, history.subject) == before


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", codes.E_NOT_JSON),
        (b'{"a": 1, "a": 2}', codes.E_DUPLICATE_KEY),
        (b"[1, 2]", codes.E_SHAPE),
        (b'"text"', codes.E_SHAPE),
        (b"\xff\xfe", codes.E_INVALID_UTF8),
        (b'{"a": NaN}', codes.E_NON_FINITE),
        (b"", codes.E_NOT_JSON),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(
    mirror: Served, mirror_store: MirrorStore, body: bytes, error: str
) -> None:
    history = mirror_store.histories["2601.00001"]
    before = stored_units(mirror.db, history.subject)
    with mirror.client() as client:
        assert_error(post(client, history, body), 400, error)
    assert stored_units(mirror.db, history.subject) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_is_415(mirror: Served, mirror_store: MirrorStore, content_type: str) -> None:
    history = mirror_store.histories["2601.00001"]
    with mirror.client() as client:
        response = post(client, history, attestation(history, "post-415"), **{"content-type": content_type})
    assert_error(response, 415, codes.E_UNSUPPORTED_MEDIA_TYPE)


def test_a_subject_the_mirror_does_not_hold_is_404(mirror: Served, mirror_store: MirrorStore) -> None:
    event = make_event(AUTHOR, subject="pith:2026:" + "C" * 26, event_type="author_attestation")
    with mirror.client() as client:
        response = client.post(f"/pith/{'C' * 26}/events", content=json.dumps(event), headers=JSON_HEADERS)
        assert_error(response, 404, codes.E_STORE_UNKNOWN_SUBJECT)
        assert_error(
            client.post("/pith/short/events", content=b"{}", headers=JSON_HEADERS), 404, codes.E_NOT_FOUND
        )


def test_a_declared_oversized_body_is_413_before_it_is_sent(mirror: Served) -> None:
    head = (
        f"POST /pith/{REGISTRY_CODE}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with raw_request(mirror.url, head) as sock:
        assert read_status(sock) == 413  # answered although not one byte of the body was sent


def test_an_undeclared_oversized_body_is_refused_while_reading(mirror: Served) -> None:
    head = (
        f"POST /pith/{REGISTRY_CODE}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * (64 * 1024))
    sent = 0
    with raw_request(mirror.url, head) as sock:
        status = None
        for _ in range(320):  # at most 20 MiB, far past the 1 MiB limit
            ready, _, _ = select.select([sock], [], [], 0)
            if ready:
                status = read_status(sock)
                break
            try:
                sock.sendall(chunk)
            except OSError:  # the server stopped reading and closed: its answer is waiting
                status = read_status(sock)
                break
            sent += 64 * 1024
        assert status == 413
    assert sent < 8 * 1024 * 1024  # refused long before the client finished


def test_a_2xx_is_durable_sigkill_right_after_it_loses_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path, ("2601.00011",))
    history = store.histories["2601.00011"]
    events = [attestation(history, f"durable-{i}") for i in range(5)]
    served = store.serve()
    try:
        with served.client() as client:
            for event in events:
                assert post(client, history, event).status_code == 201
        served.stop(signal.SIGKILL)  # no graceful shutdown, no checkpoint
    finally:
        served.stop()
    units = stored_units(store.db, history.subject)
    assert all(event["event_id"] in units for event in events)
    again = store.serve()
    try:
        with again.client() as client:
            applied = client.get(f"/pith/{code_of(history.subject)}/state.json").json()["applied_event_ids"]
    finally:
        again.stop()
    assert all(event["event_id"] in applied for event in events)


def test_concurrent_posts_are_all_stored_once(mirror: Served, mirror_store: MirrorStore) -> None:
    """Group commit under concurrency: 24 events from 8 threads, each stored and applied once."""
    from concurrent.futures import ThreadPoolExecutor

    history = mirror_store.histories["2601.00002"]
    events = [attestation(history, f"concurrent-{i}") for i in range(24)]

    def send(event: dict[str, Any]) -> int:
        with mirror.client() as client:
            return post(client, history, event).status_code

    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, events + events[:8]))
    assert time.monotonic() < deadline
    assert statuses.count(201) == 24 and statuses.count(200) == 8
    units = stored_units(mirror.db, history.subject)
    assert all(units.count(event["event_id"]) == 1 for event in events)
    with mirror.client() as client:
        applied = client.get(f"/pith/{code_of(history.subject)}/state.json").json()["applied_event_ids"]
    assert all(event["event_id"] in applied for event in events)
