"""Several processes on one store: ``--workers 2``, a ``store import`` beside a running server, slow clients."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pith_graph import codes

from .conftest import (
    AUTHOR,
    REGISTRY_CODE,
    STARTUP_S,
    assert_error,
    attestation,
    code_of,
    make_store,
    new_history,
    post,
    raw_request,
    read_status,
    run_cli,
    trusted_entries,
)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_two_workers_share_the_store_and_see_each_others_writes(tmp_path: Path) -> None:
    store = make_store(tmp_path, ("2601.00021",))
    history = store.histories["2601.00021"]
    code = code_of(history.subject)
    served = store.serve("--workers", "2")
    try:
        deadline = time.monotonic() + STARTUP_S
        while len(_children(served.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_children(served.process.pid)) >= 2
        previous = None
        for _ in range(12):
            event = attestation(history, "workers", prev_event=previous)
            # A new connection per request: the kernel spreads them over both workers.
            with served.client() as client:
                answer = post(client, history, event)
            assert answer.status_code == 201 and answer.json()["status"] == codes.MIRROR_APPLIED
            for _ in range(3):
                with served.client() as client:
                    applied = client.get(f"/pith/{code}/state.json").json()["applied_event_ids"]
                assert event["event_id"] in applied  # whichever worker answers, the write is seen
            previous = event["event_id"]
    finally:
        served.stop()
    assert served.process.returncode == 0


def test_a_store_import_beside_the_running_server_shows_in_the_next_get(tmp_path: Path) -> None:
    store = make_store(tmp_path, ("2601.00031",))
    history = store.histories["2601.00031"]
    code = code_of(history.subject)
    newcomer = new_history("2601.00032")
    served = store.serve()
    try:
        with served.client() as client:
            before = client.get(f"/pith/{code}/state.json")
            assert before.status_code == 200
            assert_error(
                client.get(f"/pith/{code_of(newcomer.subject)}/state.json"),
                404,
                codes.E_STORE_UNKNOWN_SUBJECT,
            )
            extra = attestation(history, "imported-beside")
            bundle = tmp_path / "more.json"
            bundle.write_text(json.dumps(history.bundle([extra])))
            fresh = tmp_path / "new.json"
            fresh.write_text(json.dumps(newcomer.bundle([])))
            imported = run_cli(
                "store",
                "import",
                "--db",
                str(store.db),
                str(bundle),
                str(fresh),
                "--trusted-keys",
                str(store.keys),
            )
            assert imported.returncode == 0, imported.stderr
            after = client.get(f"/pith/{code}/state.json", headers={"If-None-Match": before.headers["etag"]})
            assert after.status_code == 200  # not 304: the cached state was dropped
            assert extra["event_id"] in after.json()["applied_event_ids"]
            assert client.get(f"/pith/{code_of(newcomer.subject)}/state.json").status_code == 200
            resolved = client.get("/api/pith-number/resolve", params={"arxiv": "2601.00032", "json": "true"})
            assert resolved.json()["pith_number"] == newcomer.subject
    finally:
        served.stop()


def test_a_client_too_slow_to_send_its_body_gets_408(tmp_path: Path) -> None:
    store = make_store(tmp_path, ())
    served = store.serve("--body-timeout", "0.5")
    try:
        head = (
            f"POST /pith/{REGISTRY_CODE}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{"
        ).encode()
        with raw_request(served.url, head) as sock:
            started = time.monotonic()
            assert read_status(sock, timeout=10) == 408
            assert time.monotonic() - started < 5
    finally:
        served.stop()


def test_trusted_keys_decide_what_a_post_may_store(tmp_path: Path) -> None:
    """The same event is 422 unknown_key on a mirror that does not trust its key, 201 on one that does."""
    store = make_store(tmp_path, ("2601.00041",))
    history = store.histories["2601.00041"]
    event = attestation(history, "trust")
    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps([e for e in trusted_entries() if e["key_id"] != AUTHOR.key_id]))
    served = store.serve("--trusted-keys", str(narrow))  # the later --trusted-keys wins
    try:
        with served.client() as client:
            assert_error(post(client, history, event), 422, codes.REASON_UNKNOWN_KEY)
    finally:
        served.stop()
    served = store.serve()
    try:
        with served.client() as client:
            assert post(client, history, event).status_code == 201
    finally:
        served.stop()


def test_the_manifest_lists_the_peers_followed_including_one_added_beside_the_running_server(
    tmp_path: Path,
) -> None:
    """issue 17 item 4: ``/pith-mirrors.json`` lists ``--peer`` peers, then those in the peer log."""
    store = make_store(tmp_path, ())
    added = run_cli("mirror", "peers", "add", "http://127.0.0.1:9/", "--name", "nine", "--db", str(store.db))
    assert added.returncode == 0, added.stderr
    served = store.serve("--peer", "http://127.0.0.1:7")
    try:
        with served.client() as client:
            before = client.get("/pith-mirrors.json").json()["mirrors"]
            later = run_cli("mirror", "peers", "add", "http://127.0.0.1:8", "--db", str(store.db))
            assert later.returncode == 0, later.stderr
            after = client.get("/pith-mirrors.json").json()["mirrors"]
    finally:
        served.stop()
    assert [(m["base_url"], m["name"], m["status"]) for m in before] == [
        (served.url, before[0]["name"], "mirror"),
        ("http://127.0.0.1:7", "http://127.0.0.1:7", "peer"),
        ("http://127.0.0.1:9", "nine", "peer"),
    ]
    assert [m["base_url"] for m in after][1:] == [
        "http://127.0.0.1:7",
        "http://127.0.0.1:9",
        "http://127.0.0.1:8",
    ]
    assert after[3]["state_pattern"] == "http://127.0.0.1:8/pith/{suffix}/state.json"
