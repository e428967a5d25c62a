"""``pith-graph store ...``: in process through ``register`` and through real subprocesses."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pith_graph import codes
from pith_graph.cli.store import register
from pith_graph.errors import PithGraphError
from pith_graph.testing import History, TestKey
from tests.helpers import FIXTURES, seed

BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
SUBJECT = "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"


def embedded_state_bytes() -> bytes:
    """The registry's embedded state, cut from the file text (not re-serialised)."""
    text = BUNDLE.read_bytes()
    start = text.index(b'"state":{') + len(b'"state":')
    return text[start : text.index(b',"bundle_signature":')]


def call(*argv: str) -> int:
    """Run a store command in process, through a parser of our own (as the main CLI wires it)."""
    parser = argparse.ArgumentParser(prog="pith-graph")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["store", *argv])
    code: int = args.func(args)
    return code


def run(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pith_graph", "store", *argv], input=stdin, capture_output=True, timeout=120
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store every command names with ``--db``: an SQLite file, or a PostgreSQL URL (issue 20)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(tmp_path / "store.sqlite")


def test_import_then_state_prints_the_registry_bytes(
    db: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert call("init", "--db", db) == 0
    assert call("import", "--db", db, str(BUNDLE)) == 0
    capsysbinary.readouterr()
    assert call("state", "--db", db, SUBJECT) == 0
    assert capsysbinary.readouterr().out == embedded_state_bytes() + b"\n"


def test_import_many_shows_progress(
    db: str, tmp_path: Path, history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps(history.bundle([history.event("correction", payload={})])))
    # The other bundle's events are signed by keys the caller does not trust: problems found.
    assert call("import", "--db", db, str(BUNDLE), str(other)) == 1
    captured = capsys.readouterr()
    assert f"[1/2] {BUNDLE}: {SUBJECT} new=2 duplicate=0 stored_invalid=0" in captured.err
    assert f"[2/2] {other}: {history.subject} new=0 duplicate=0 stored_invalid=2" in captured.err
    trusted = tmp_path / "trusted.json"
    trusted.write_text(json.dumps(history.trusted()))
    assert call("import", "--db", db, str(other), "--trusted-keys", str(trusted)) == 0
    assert call("log", "--db", db) == 0
    assert capsys.readouterr().out.split()[-2:] == sorted([SUBJECT, history.subject])


def test_append_statuses_and_exit_codes(
    db: str, tmp_path: Path, history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(history.record_created))
    trusted = tmp_path / "trusted.json"
    trusted.write_text(json.dumps(history.trusted()))
    assert call("append", "--db", db, str(event)) == 1  # not trusted: stored, invalid
    first = json.loads(capsys.readouterr().out)
    assert (first["status"], first["reason"]) == (codes.STORE_INVALID, codes.REASON_UNKNOWN_KEY)
    assert call("append", "--db", db, str(event), "--trusted-keys", str(trusted)) == 0
    assert json.loads(capsys.readouterr().out)["status"] == codes.STORE_DUPLICATE
    assert call("log", "--db", db, history.subject, "--trusted-keys", str(trusted)) == 0
    assert capsys.readouterr().out.startswith(f"{history.record_created['event_id']} record_created applied")


def test_export_rebuilds_to_the_same_state(
    db: str, tmp_path: Path, history: History, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    call("import", "--db", db, str(BUNDLE))
    out = tmp_path / "exported.json"
    assert call("export", "--db", db, SUBJECT, "-o", str(out)) == 0
    exported = json.loads(out.read_bytes())
    assert exported["state"] == seed("bundle-AG3PAJ22.json")["state"]
    rebuilt = subprocess.run(
        [sys.executable, "-m", "pith_graph", "state", str(out)], capture_output=True, timeout=120
    )
    assert rebuilt.stdout == embedded_state_bytes() + b"\n"


def test_sync_from_stores_and_bundles(
    tmp_path: Path, history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    other = tmp_path / "other.json"
    other.write_text(json.dumps(history.bundle()))
    call("import", "--db", first, str(BUNDLE))
    assert call("sync", "--db", second, first, str(other)) == 0
    assert call("sync", "--db", second, first) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"{first}: 0 new event copies, 0 new items, 0 refused (fail stage 1)"
    assert call("log", "--db", second) == 0
    assert capsys.readouterr().out.split() == sorted([SUBJECT, history.subject])


def test_unusable_input_raises_one_error(db: str, tmp_path: Path) -> None:
    with pytest.raises(PithGraphError) as missing:
        call("state", "--db", db, SUBJECT)
    assert missing.value.code == codes.E_IO
    assert not Path(db).exists()  # reading never creates a store
    call("init", "--db", db)
    with pytest.raises(PithGraphError) as unknown:
        call("state", "--db", db, SUBJECT)
    assert unknown.value.code == codes.E_STORE_UNKNOWN_SUBJECT
    bogus = tmp_path / "bogus.sqlite"
    bogus.write_bytes(b"not a database" * 100)
    with pytest.raises(PithGraphError) as corrupt:
        call("log", "--db", str(bogus))
    assert corrupt.value.code == codes.E_STORE_CORRUPT


# --- the real command line --------------------------------------------------------------


def test_subprocess_round_trip(db: str, tmp_path: Path) -> None:
    assert run("init", "--db", db).returncode == 0
    imported = run("import", "--db", db, str(BUNDLE))
    assert imported.returncode == 0, imported.stderr
    state = run("state", "--db", db, SUBJECT)
    assert (state.returncode, state.stdout, state.stderr) == (0, embedded_state_bytes() + b"\n", b"")
    mirror = TestKey("mirror")
    history = History.new(TestKey("registry", key_id="test-registry"))
    trusted = tmp_path / "trusted.json"
    trusted.write_text(json.dumps([mirror.entry(), *history.trusted()]))
    event = history.event("mirror_hint", key=mirror, payload={"url": "https://m.example"})
    appended = run(
        "append",
        "--db",
        db,
        "-",
        "--subject",
        history.subject,
        "--trusted-keys",
        str(trusted),
        stdin=json.dumps(event).encode(),
    )
    assert appended.returncode == 0, appended.stderr
    assert json.loads(appended.stdout)["status"] == codes.STORE_NEW


def test_subprocess_errors_are_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.sqlite"
    bogus.write_bytes(b"\x00garbage" * 512)
    for argv in (
        ("state", "--db", str(bogus), SUBJECT),
        ("state", "--db", str(tmp_path / "none.sqlite"), SUBJECT),
        ("frobnicate",),
    ):
        result = run(*argv)
        assert result.returncode == 2
        assert result.stdout == b""
        assert result.stderr.count(b"\n") == 1 and result.stderr.startswith(b"pith-graph: error["), (
            result.stderr
        )


def test_store_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "store_example.py"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[-1] == "OK"
    registry_sha = seed("bundle-AG3PAJ22.json")["state"]["state_sha256"]
    assert f"state_sha256 {registry_sha} (the registry's)" in lines[1]
    assert "rebuilds to the same state" in lines[4]
