"""The event store under real processes: concurrent writers, and a writer killed with SIGKILL.

No timing assertions: the children are synchronised through a start file and
the parent only waits (with generous timeouts) for what they print.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pith_graph import codes
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

pytestmark = pytest.mark.slow

TIMEOUT = 120

# A writer: waits for the start file, appends events, prints each returned append as a JSON line.
WRITER = textwrap.dedent(
    """
    import itertools, json, os, sys, time
    from pith_graph.store import EventStore
    from pith_graph.testing import History, TestKey

    db, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    history = History.new(TestKey("registry", key_id="test-registry", signer_id="registry.example"))
    writer = TestKey(name)
    while not os.path.exists(go):
        time.sleep(0.005)
    with EventStore(db) as store:
        # Every writer also appends the shared record_created: duplicates across processes.
        for raw in itertools.chain([history.record_created], (
            history.event("mirror_hint", key=writer, payload={"writer": name, "i": i})
            for i in (range(count) if count >= 0 else itertools.count())
        )):
            result = store.append(raw)
            print(json.dumps(result.to_dict()), flush=True)
    """
)


def start_writer(db: Path, name: str, count: int, go: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), name, str(count), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_ids(db: Path, subject: str) -> set[str]:
    with EventStore(db) as store:
        return {event.unit_id for event in store.events(subject)}


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    db, go = tmp_path / "store.sqlite", tmp_path / "go"
    per_writer = 25
    writers = [start_writer(db, f"writer{n}", per_writer, go) for n in range(3)]
    go.touch()
    printed: list[dict[str, str]] = []
    for writer in writers:
        out, err = writer.communicate(timeout=TIMEOUT)
        assert writer.returncode == 0, err
        printed.extend(json.loads(line) for line in out.splitlines())
    assert len(printed) == 3 * (per_writer + 1)
    subject = printed[0]["subject"]
    created = [p for p in printed if p["unit_id"] == printed[0]["unit_id"]]
    # The shared record_created: exactly one process stored it, the others saw a duplicate.
    assert sorted(p["status"] for p in created) == [codes.STORE_DUPLICATE] * 2 + [codes.STORE_INVALID]
    assert stored_ids(db, subject) == {p["unit_id"] for p in printed}
    assert len({p["unit_id"] for p in printed}) == 3 * per_writer + 1
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == 3 * per_writer + 1
    finally:
        raw.close()


def test_sigkill_mid_loop_loses_no_returned_append(tmp_path: Path) -> None:
    db, go = tmp_path / "store.sqlite", tmp_path / "go"
    go.touch()
    writer = start_writer(db, "doomed", -1, go)  # appends until killed
    assert writer.stdout is not None
    returned: list[dict[str, str]] = []
    try:
        for line in writer.stdout:
            returned.append(json.loads(line))
            if len(returned) == 30:
                writer.send_signal(signal.SIGKILL)
                break
        # Lines printed before the kill are still in the pipe: each is a returned append.
        returned.extend(json.loads(line) for line in writer.stdout if line.strip())
    finally:
        writer.kill()
        writer.wait(timeout=TIMEOUT)
    assert writer.returncode == -signal.SIGKILL
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        raw.close()
    with EventStore(db) as store:
        store.check()
        subject = returned[0]["subject"]
        stored = {event.unit_id for event in store.events(subject)}
    assert {r["unit_id"] for r in returned} <= stored
    assert len(returned) >= 30


def test_a_store_reopens_after_its_writers_exit(tmp_path: Path) -> None:
    # Sanity for the two tests above: what a child stored is readable by a fresh process.
    db, go = tmp_path / "store.sqlite", tmp_path / "go"
    go.touch()
    writer = start_writer(db, "solo", 3, go)
    out, err = writer.communicate(timeout=TIMEOUT)
    assert writer.returncode == 0, err
    history = History.new(TestKey("registry", key_id="test-registry", signer_id="registry.example"))
    ids = stored_ids(db, history.subject)
    assert history.record_created["event_id"] in ids
    assert len(ids) == 4
    assert [json.loads(line)["status"] for line in out.splitlines()][1:] == [codes.STORE_INVALID] * 3
