"""The CLI through real subprocesses: output bytes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pith_graph._parallel import many
from pith_graph.testing import History, TestKey, process_running
from tests.helpers import FIXTURES

BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
SEEDS = sorted(FIXTURES.glob("*.json"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pith_graph", *args], capture_output=True, timeout=120, cwd=cwd
    )


def embedded_state_bytes() -> bytes:
    """The embedded state exactly as the registry wrote it, cut from the file text."""
    text = BUNDLE.read_bytes()
    start = text.index(b'"state":{') + len(b'"state":')
    end = text.index(b',"bundle_signature":')
    return text[start:end]


def test_state_prints_the_registry_bytes() -> None:
    result = run("state", str(BUNDLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout == embedded_state_bytes() + b"\n"
    assert result.stderr == b""


def test_state_pretty_is_the_same_document() -> None:
    result = run("state", str(BUNDLE), "--pretty")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(embedded_state_bytes())


def test_verify_all_seeds_ok_and_kinds_reported() -> None:
    result = run("verify", "--json", *map(str, SEEDS))
    assert result.returncode == 0, result.stdout
    kinds = {Path(r["source"]).name: r["kind"] for r in json.loads(result.stdout)["documents"]}
    assert kinds == {
        "bundle-AG3PAJ22.json": "bundle",
        "graph-GFHD7S67.json": "graph_snapshot",
        "record-GFHD7S67.json": "record",
        "record-NE7W423I.json": "record",
        "state-SGRHL77B.json": "state",
    }


def test_verify_a_directory_with_workers_gives_the_serial_reports(tmp_path: Path) -> None:
    """``verify --workers N DIR``: every document under the directory, one process each, reports in order."""
    (tmp_path / "nested").mkdir()
    for i, seed in enumerate(SEEDS):
        (tmp_path / ("nested" if i % 2 else ".") / seed.name).write_bytes(seed.read_bytes())
    tampered = json.loads(BUNDLE.read_bytes())
    tampered["events"][1]["payload"]["verdict_id"] = "forged"
    (tmp_path / "nested" / "tampered.json").write_text(json.dumps(tampered))
    files = sorted(str(p) for p in tmp_path.rglob("*.json"))
    serial = run("verify", "--json", "--workers", "1", *files)
    assert serial.returncode == 1, serial.stderr
    assert len(json.loads(serial.stdout)["documents"]) == len(SEEDS) + 1
    for workers in ("1", "2"):
        result = run("verify", "--json", "--workers", workers, "--progress", str(tmp_path))
        assert result.returncode == 1, result.stderr
        assert result.stdout == serial.stdout
        assert f"{len(files)}/{len(files)}".encode() in result.stderr
    plain = run("verify", "--workers", "2", str(tmp_path))
    assert plain.returncode == 1 and b"tampered.json: bundle: FAILED" in plain.stdout


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"hello": "world"}', "not_a_pith_document"),
        ('{"a": 1, "a": 2}', "duplicate_key"),
        ("[NaN]", "non_finite_number"),
        ("{", "not_json"),
    ],
)
def test_verify_with_workers_reports_past_a_document_it_cannot_read(
    tmp_path: Path, text: str, code: str
) -> None:
    """Issue 18: every document gets its report, the unusable one an error entry and one
    stderr line naming it (whichever check refused it, also after a progress bar); exit 2."""
    for seed in SEEDS[:3]:
        (tmp_path / seed.name).write_bytes(seed.read_bytes())
    (tmp_path / "zz-bad.json").write_text(text)
    for workers in ("1", "2"):
        result = run("verify", "--workers", workers, str(tmp_path))
        assert result.returncode == 2
        assert result.stdout.decode().count(": OK") == 3
        assert f"zz-bad.json: ERROR [{code}]" in result.stdout.decode()
        [line] = result.stderr.decode().splitlines()
        assert line.startswith(f"pith-graph: error[{code}]: ") and str(tmp_path / "zz-bad.json") in line
    # With the bar drawn, the message still starts a line of its own.
    shown = run("verify", "--progress", str(tmp_path)).stderr.decode()
    assert "\r[" in shown and shown.splitlines()[-1].startswith(f"pith-graph: error[{code}]: ")


@pytest.mark.parametrize("command", ["verify", "verify-many"])
def test_a_directory_without_documents_is_an_error(tmp_path: Path, command: str) -> None:
    """A mistyped directory must not pass as one whose documents are all good."""
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not a document")
    (tmp_path / "one.json").write_bytes(BUNDLE.read_bytes())
    result = run(command, str(tmp_path / "one.json"), str(tmp_path / "empty"))
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("pith-graph: error[no_documents]: ") and str(tmp_path / "empty") in line


def _dies_in_a_worker(name: str, caller: int, workers: int) -> str:
    """_in_order task: a worker running ``crash`` is killed, as the system's memory killer would."""
    if name == "crash" and os.getpid() != caller:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"{name} {'here' if os.getpid() == caller else 'worker'} {workers}"


def test_documents_a_dead_worker_left_are_verified_here() -> None:
    names = ["a", "crash", "b", "c", "d"]
    outcomes = list(many._in_order(_dies_in_a_worker, names, 2, os.getpid()))
    assert [o.split()[0] for o in outcomes] == names
    assert outcomes[1] == "crash here 1"


def _runs_long(name: str, directory: str, workers: int) -> str:
    """_in_order task: records that it started; all but ``quick`` then run for ten minutes."""
    (Path(directory) / f"{name}-{os.getpid()}").touch()
    if name != "quick":
        time.sleep(600)
    return name


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_an_error_stops_the_other_documents_processes_at_once(tmp_path: Path) -> None:
    """verify stops at the first document it cannot read: the others, possibly large, are
    not waited for."""
    outcomes = many._in_order(_runs_long, ["quick", "slow-1", "slow-2", "slow-3"], 2, str(tmp_path))
    assert next(outcomes) == "quick"
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("slow-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(list(tmp_path.glob("slow-*"))) >= 2  # both workers are in a ten-minute task
    pids = {int(p.name.rpartition("-")[2]) for p in tmp_path.iterdir()}
    outcomes.close()  # what verify_documents does when it raises
    while any(map(process_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(process_running, pids))  # not after the ten-minute tasks


# Helpers never import the caller's __main__ (issue 18), so the task lives in a module.
_STOPPED_MID_SEND_TASK = """
import time

def task(name, workers):
    if name == "quick":
        return "q"
    if name == "big":  # a large result (a report): sending it takes a while
        time.sleep(0.3)
        return "x" * (300 * 1024 * 1024)
    time.sleep(600)
    return name
"""

_STOPPED_MID_SEND = """
import time
from pith_graph._parallel import many
from stopped_mid_send_task import task

if __name__ == "__main__":
    outcomes = many._in_order(task, ["quick", "big", "slow"], 2)
    print(next(outcomes), flush=True)
    time.sleep(0.9)  # "big" is being sent back now
    outcomes.close()
    print("closed", flush=True)
"""


def test_stopping_while_a_worker_sends_its_result_does_not_hang_the_exit(tmp_path: Path) -> None:
    """Found in review: a worker terminated halfway through sending its result left the
    pool's thread waiting for the rest, and the interpreter waited for it at exit."""
    script = tmp_path / "stopped_mid_send.py"
    script.write_text(_STOPPED_MID_SEND)
    (tmp_path / "stopped_mid_send_task.py").write_text(_STOPPED_MID_SEND_TASK)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["q", "closed"]
    assert "Traceback" not in run.stderr


def test_state_with_workers_prints_the_same_bytes() -> None:
    result = run("state", "--workers", "2", str(BUNDLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout == embedded_state_bytes() + b"\n"


def test_verify_tampered_bundle_exits_1(tmp_path: Path) -> None:
    bundle = json.loads(BUNDLE.read_bytes())
    bundle["events"][1]["payload"]["verdict_id"] = "forged"
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(bundle))
    result = run("verify", str(path))
    assert result.returncode == 1
    assert b"content_hash_mismatch" in result.stdout
    assert b"state_mismatch" in result.stdout


def test_trusted_keys_file_and_trust_bundle_keys(tmp_path: Path) -> None:
    key = TestKey("cli-signer")
    history = History.new(key)
    bundle = tmp_path / "b.json"
    bundle.write_text(
        json.dumps(history.bundle([history.event("mirror_hint", payload={"url": "https://m.example"})]))
    )
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(history.trusted()))

    untrusted = json.loads(run("state", str(bundle)).stdout)
    assert untrusted["valid_event_count"] == 0
    assert {e["reason"] for e in untrusted["invalid_events"]} == {"unknown_key"}
    trusted = run("state", str(bundle), "--trusted-keys", str(keys))
    opted_in = run("state", str(bundle), "--trust-bundle-keys")
    assert json.loads(trusted.stdout)["valid_event_count"] == 2
    # Only the caller's keys create records (merge-v1 §6 check 10): the listed key's record_created is bad_record.
    assert {e["reason"] for e in json.loads(opted_in.stdout)["invalid_events"]} == {"bad_record"}


def test_inspect_summarises(tmp_path: Path) -> None:
    result = run("inspect", str(BUNDLE))
    assert result.returncode == 0
    assert b"events: 2" in result.stdout and b"pith:2026:AG3PAJ22332P5QMVIKKH75CXNK" in result.stdout


@pytest.mark.parametrize(
    ("content", "args", "code"),
    [
        (None, ["state", "/nonexistent/bundle.json"], "io_error"),
        (b"not json", ["state"], "not_json"),
        (b'{"a":1,"a":2}', ["verify"], "duplicate_key"),
        (b"[NaN]", ["verify"], "non_finite_number"),
        (b'"\\ud800"', ["verify"], "lone_surrogate"),
        (b"\xff\xfe", ["verify"], "invalid_utf8"),
        (b"[" * 100 + b"]" * 100, ["verify"], "too_deep"),
        (b'{"hello": "world"}', ["verify"], "not_a_pith_document"),
        (b'{"hello": "world"}', ["state"], "not_a_pith_document"),
        (b'{"bundle_type": "pith_open_graph_bundle"}', ["state"], "bad_shape"),
        (None, ["frobnicate"], "usage"),
        (None, ["state"], "usage"),
        (b"{}", ["verify", "--workers", "-1"], "usage"),
        (b"{}", ["verify-many", "--workers", "two"], "usage"),
        (b"{}", ["state", "--workers", "-4"], "usage"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(
    tmp_path: Path, content: bytes | None, args: list[str], code: str
) -> None:
    if content is not None:
        path = tmp_path / "input.json"
        path.write_bytes(content)
        args = [*args, str(path)]
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pith-graph: error[{code}]: ")
    assert b"Traceback" not in result.stderr


def test_bad_trusted_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key_id": "x", "public_key_hex": "00"}]))
    result = run("state", str(BUNDLE), "--trusted-keys", str(keys))
    assert result.returncode == 2
    assert result.stderr.decode().startswith("pith-graph: error[bad_key]: ")
