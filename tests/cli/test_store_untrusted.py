"""Issue 15 at the command line (real processes): bad input is one line on stderr and exit 2,
and nothing is stored; a forged copy shows its own verdict in ``store log``."""

from __future__ import annotations

import copy
import hashlib
import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from pith_graph.canonical import canonical_json
from tests.helpers import FIXTURES, seed

BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
SUBJECT = "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"


def run(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pith_graph", "store", *argv], input=stdin, capture_output=True, timeout=120
    )


def one_line_error(done: subprocess.CompletedProcess[bytes], *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(tmp_path: Path) -> Path:
    [event] = [e for e in seed("bundle-AG3PAJ22.json")["events"] if e["event_type"] == "graph_snapshot"]
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return path


@pytest.mark.parametrize("subject", ["garbage", "", "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK\nx"])
def test_append_refuses_a_subject_that_is_not_a_pith_number(tmp_path: Path, subject: str) -> None:
    db = str(tmp_path / "s.sqlite")
    one_line_error(run("append", str(snapshot(tmp_path)), "--db", db, "--subject", subject), "bad_subject")
    assert run("log", "--db", db).stdout == b""


def test_append_resolves_a_short_subject(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    assert run("import", str(BUNDLE), "--db", db).returncode == 0
    done = run("append", str(snapshot(tmp_path)), "--db", db, "--subject", "pith:AG3PAJ22")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) | {"unit_id": None, "digest": None} == {
        "status": "duplicate",
        "subject": SUBJECT,
        "unit_id": None,
        "digest": None,
        "reason": None,
    }


def test_append_of_a_bundle_says_to_import_it(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    one_line_error(run("append", str(BUNDLE), "--db", db), "store import")
    assert run("log", "--db", db).stdout == b""


def test_log_shows_each_copy_verdict_beside_its_unit(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    assert run("import", str(BUNDLE), "--db", db).returncode == 0
    forged = json.loads(snapshot(tmp_path).read_text(encoding="utf-8"))
    forged["payload"] = {"graph_snapshot": {"forged": True}}
    assert run("append", "-", "--db", db, stdin=json.dumps(forged).encode()).returncode == 1
    lines = [
        line
        for line in run("log", SUBJECT, "--db", db).stdout.decode().splitlines()
        if forged["event_id"] in line
    ]
    assert [line.split()[2:] for line in lines] == [
        ["applied", lines[0].split()[3], "copy-verdict=valid"],
        ["applied", lines[1].split()[3], "copy-verdict=invalid:content_hash_mismatch"],
    ]


def test_sync_from_a_bad_replica_is_one_line_naming_the_file_and_keeps_nothing(tmp_path: Path) -> None:
    source, target = tmp_path / "replica.sqlite", tmp_path / "mine.sqlite"
    assert run("import", str(BUNDLE), "--db", str(source)).returncode == 0
    with closing(sqlite3.connect(source)) as raw:
        raw.execute(
            "INSERT INTO events (subject, unit_id, digest, body) VALUES (?, 'u', 'd', 'text')", (SUBJECT,)
        )
        raw.commit()
    one_line_error(run("sync", str(source), "--db", str(target)), str(source), "TEXT")
    assert run("log", "--db", str(target)).stdout == b""


def test_sync_from_a_replica_with_a_forged_row_recomputes_it(tmp_path: Path) -> None:
    source, target = tmp_path / "replica.sqlite", tmp_path / "mine.sqlite"
    assert run("import", str(BUNDLE), "--db", str(source)).returncode == 0
    event = json.loads(snapshot(tmp_path).read_text(encoding="utf-8"))
    twin = copy.deepcopy(event)
    twin["signature"]["signed_at"] = "2026-06-10T00:00:00Z"  # a second valid copy of the unit
    body = canonical_json(twin)
    with closing(sqlite3.connect(source)) as raw:
        raw.execute(
            "INSERT INTO events (subject, unit_id, digest, body) VALUES (?, ?, ?, ?)",
            (SUBJECT, "sha256:" + "1" * 64, hashlib.sha256(body).hexdigest(), body),
        )
        raw.commit()
    done = run("sync", str(source), "--db", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith(f"{source}: 2 new event copies")
    state = run("state", SUBJECT, "--db", str(target))
    assert json.loads(state.stdout)["equivocation_count"] == 0
    assert json.loads(state.stdout)["state_sha256"] == seed("bundle-AG3PAJ22.json")["state"]["state_sha256"]
