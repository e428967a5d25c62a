"""Helper processes (issue 18, items 3, 12 and 13): they never run the caller's ``__main__``,
ignore Ctrl-C (the command stops them and exits 130 with one line), and never outlive a
killed parent. Real processes throughout; every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pith_graph._parallel.pool import PARALLEL_MIN_EVENTS, usable_cpus
from pith_graph.testing import process_running
from tests.parallel.test_parallel import build_bundle

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc"),
    pytest.mark.skipif(usable_cpus() < 2, reason="helpers need two CPUs"),
]

ROOT = Path(__file__).resolve().parents[2]


def children_of() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    found: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        found.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return found


def descendants(pid: int) -> set[int]:
    tree = children_of()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def large_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle, _ = build_bundle(PARALLEL_MIN_EVENTS, 18)
    path = tmp_path_factory.mktemp("lifecycle") / "large.json"
    path.write_text(json.dumps(bundle))
    return path


_UNGUARDED = """
print("script body runs", flush=True)
import sys
from pith_graph import rebuild_state
from pith_graph._parallel import pool

state = rebuild_state(sys.argv[1], trust_bundle_keys=True, workers=2)
print("events", state.event_count, "helpers", pool._SERVER._forkserver_pid is not None, flush=True)
"""


def test_13_a_script_without_a_main_guard_runs_once(tmp_path: Path, large_bundle: Path) -> None:
    """Issue 18 item 13: the helpers of a rebuild used to re-run the caller's script from the top."""
    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED)
    result = subprocess.run(
        [sys.executable, str(script), str(large_bundle)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "script body runs" and lines.count("script body runs") == 1
    assert lines[1].endswith("helpers True") and len(lines) == 2


_DRIVER = """
import sys, time
from pith_graph._parallel import pool

executor = pool.worker_pool(2)
futures = [executor.submit(time.sleep, 600) for _ in range(2)]
while len(executor._processes) < 2:
    time.sleep(0.01)
print(pool._SERVER._forkserver_pid, *executor._processes, flush=True)
time.sleep(600)
"""


def test_12_no_helper_outlives_a_killed_parent(tmp_path: Path) -> None:
    """Issue 18 item 12: after SIGKILL of the parent, the forkserver and the helpers lived on."""
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert driver.stdout is not None
        pids = [int(word) for word in driver.stdout.readline().split()]
        assert len(pids) == 3 and all(map(process_running, pids))
    finally:
        driver.kill()
        driver.wait(timeout=60)
    assert wait_until(lambda: not any(map(process_running, pids)), 60), [
        p for p in pids if process_running(p)
    ]


def test_3_ctrl_c_with_helpers_is_one_line_and_exit_130(tmp_path: Path, large_bundle: Path) -> None:
    """Issue 18 item 3: Ctrl-C during ``verify --workers 2`` printed a multiprocessing
    traceback and exited -2. Sent to the whole process group, as a terminal does, once
    the helpers are at work."""
    for i in range(6):
        (tmp_path / f"copy-{i}.json").write_bytes(large_bundle.read_bytes())
    command = [sys.executable, "-m", "pith_graph", "verify", "--workers", "2", "--no-progress", str(tmp_path)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        # The forkserver and two helpers: verification is under way (each copy takes a second or more).
        assert wait_until(lambda: len(descendants(process.pid)) >= 3 or process.poll() is not None, 120)
        assert process.poll() is None, "finished before it could be interrupted"
        helpers = descendants(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr.decode() == "pith-graph: interrupted\n"
    assert wait_until(lambda: not any(map(process_running, helpers)), 60)
