"""The helpers' forkserver while it starts (issue 18, item 3): a terminal's Ctrl-C in its
first hundreds of milliseconds, and a parent that stops while a helper is still starting,
print nothing from the helper side. Real processes, bounded waits."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pith_graph._parallel.pool import process_context

pytestmark = pytest.mark.skipif(
    type(process_context()).__name__ != "_HelperContext", reason="pith_graph's own forkserver only"
)

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    """``python -c SCRIPT`` from the checkout, bounded."""
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


# Ctrl-C reaches the forkserver right after it is started, while it is still importing
# (multiprocessing, then pith_graph through its preload); the pool must still work.
_INTERRUPT_WHILE_BOOTING = textwrap.dedent(
    """
    import os, signal
    from pith_graph._parallel import pool

    start = pool._SERVER.ensure_running
    sent = []

    def start_then_interrupt():
        first = pool._SERVER._forkserver_pid is None
        start()
        if first:  # the server was just started: it is still booting
            os.kill(pool._SERVER._forkserver_pid, signal.SIGINT)
            sent.append(pool._SERVER._forkserver_pid)

    pool._SERVER.ensure_running = start_then_interrupt
    with pool.worker_pool(2) as executor:
        pids = {executor.submit(os.getpid).result(timeout=60) for _ in range(4)}
    assert sent, "the interrupt was not sent"
    print("helpers", len(pids))
    """
)


def test_ctrl_c_while_the_forkserver_boots_is_not_taken_by_it() -> None:
    done = run_script(_INTERRUPT_WHILE_BOOTING)
    # Before: the server died of the interrupt (a KeyboardInterrupt traceback from the
    # middle of an import, then a broken pool in the parent).
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.startswith("helpers ")


_BOOT_HOOK = textwrap.dedent(
    """
    import sys
    import pith_graph._parallel._boot
    raise {error}("from a helper's start-up")
    """
)


@pytest.mark.parametrize(
    ("error", "printed"),
    [
        ("FileNotFoundError", False),  # the pool's semaphore, unlinked by the parent that stopped
        ("EOFError", False),  # its start-up pipe, closed by that parent
        ("BrokenPipeError", False),
        ("ValueError", True),  # anything else is a real failure: printed as before
        ("RuntimeError", True),
    ],
)
def test_the_forkserver_prints_only_real_start_up_errors(error: str, printed: bool) -> None:
    done = run_script(_BOOT_HOOK.format(error=error))
    assert done.returncode == 1
    assert ("Traceback" in done.stderr and error in done.stderr) is printed, done.stderr
    if not printed:
        assert done.stderr == ""


# Ctrl-C in the middle of a pool's submit: after it started a helper, before it started the
# pool's manager thread (the state a cut-short submit left, whose thread the interpreter
# then waited for at exit).
_INTERRUPT_IN_SUBMIT = textwrap.dedent(
    """
    import os, signal
    from pith_graph._parallel import pool

    executor = pool.worker_pool(2)
    spawn = executor._spawn_process

    def spawn_then_interrupt():
        spawn()
        os.kill(os.getpid(), signal.SIGINT)

    executor._spawn_process = spawn_then_interrupt
    try:
        executor.submit(os.getpid)
    except KeyboardInterrupt:
        # Taken once submit was whole: its helper known, its manager thread running.
        print("interrupted", len(executor._processes), executor._executor_manager_thread is not None)
    else:
        print("not interrupted")
    pool.stop_pool(executor)
    """
)


def test_ctrl_c_during_submit_is_taken_once_the_pool_is_whole() -> None:
    done = run_script(_INTERRUPT_IN_SUBMIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["interrupted", "1", "True"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr
