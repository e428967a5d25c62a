"""Process-pool plumbing shared by every use of helper processes: how many, which start method, how to stop them.

Every use of CPython's private ``concurrent.futures`` and ``multiprocessing``
internals is here: the manager-thread fix for gh-107219 (Python < 3.12, where
``terminate_broken`` fails on a cancelled task), the handles :func:`stop_pool`
needs before Python 3.14's ``terminate_workers``, and the helpers' own
forkserver (:func:`process_context`), which starts helpers without the caller's
``__main__``.

What a library call starts: ``rebuild_state``, ``verify_*`` and
``EventStore`` replays of a bundle of at least :data:`PARALLEL_MIN_EVENTS`
events (``workers`` not 1) start helper processes, and a forkserver that forks
them, the first time; the helpers stay for the call only. They ignore SIGINT
(the caller's Ctrl-C stops them), run only pith_graph's code (never the
caller's ``__main__``), and end when the calling process ends, however it
ends. ``workers=1`` starts nothing.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import process as _futures_process
from itertools import chain, islice
from typing import Any, Final, TypeVar

from pith_graph import codes
from pith_graph.errors import InputError

_I = TypeVar("_I")
_T = TypeVar("_T")
_R = TypeVar("_R")

__all__ = [
    "MAX_AUTO_WORKERS",
    "CHUNKS_IN_FLIGHT",
    "ORDERED_CHUNK",
    "PARALLEL_MIN_EVENTS",
    "POOL_ERRORS",
    "may_start_processes",
    "ordered_map",
    "process_context",
    "resolve_workers",
    "stop_pool",
    "usable_cpus",
    "worker_pool",
]

#: Below this many events a bundle is rebuilt serially: with fewer, the first pool
#: of a process costs more than its helpers save (``python -m benchmarks.break_even``;
#: docs/performance.md, "Figures behind the code").
PARALLEL_MIN_EVENTS: Final = 5000
#: Most processes ``workers=None`` (the default) uses: past a few, the merge in this
#: process, not the curve, bounds the rebuild.
MAX_AUTO_WORKERS: Final = 4


def may_start_processes() -> bool:
    """Whether this process may start helpers: not inside a daemonic process (a
    ``multiprocessing.Pool`` worker), which multiprocessing forbids to have children."""
    return not multiprocessing.current_process().daemon


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """``workers`` as a count of verifying processes, this one included.

    1 means serial; 0 means one per usable CPU; None (the default) means one
    per usable CPU up to :data:`MAX_AUTO_WORKERS`; any other count is capped at
    the usable CPUs (the work is all CPU: more processes than CPUs only slow it
    down). Always 1 where no process may be started (:func:`may_start_processes`).
    Raises :class:`~pith_graph.errors.InputError` (code ``usage``) for a
    negative count.
    """
    if workers is not None and workers < 0:
        raise InputError(f"workers must be 0 (one per CPU) or more, not {workers}", code=codes.E_USAGE)
    if not may_start_processes():
        return 1
    cpus = usable_cpus()
    if workers is None:
        return min(cpus, MAX_AUTO_WORKERS)
    return cpus if workers == 0 else min(workers, cpus)


def process_context() -> Any:
    """The multiprocessing context for worker pools: pith_graph's own forkserver where
    the platform has one (:class:`_HelperContext`), else the platform's default.

    Not fork: a worker forked from a process holding a large parsed bundle
    shares its pages copy-on-write, and every reference count the merge then
    touches copies a page, slowing the merge (docs/performance.md).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context()
    return _helper_context()


def _helper_context() -> Any:
    """The forkserver context whose helpers never run the caller's ``__main__``.

    multiprocessing's forkserver and spawn children import the parent's main
    module (as ``__mp_main__``) before they run anything: a user's script without
    an ``if __name__ == "__main__":`` guard ran a second time inside each helper.
    Helpers run only pith_graph's own functions, so they are started without
    it. They come from a forkserver of pith_graph's own (not the process-wide
    one, whose preload and children are the caller's business), which preloads
    :mod:`pith_graph._parallel._boot`. This uses multiprocessing internals that are
    the same from Python 3.8 to 3.14 (``ForkServer``, ``popen_forkserver.Popen._launch``);
    where they are missing, the plain forkserver is used.
    """
    if _HelperContext is None:  # pragma: no cover - a multiprocessing without these internals
        plain = multiprocessing.get_context("forkserver")
        plain.set_forkserver_preload(["pith_graph._parallel._boot"])
        return plain
    return _HELPER_CONTEXT


try:
    from multiprocessing import context as _mp_context
    from multiprocessing import forkserver as _mp_forkserver
    from multiprocessing import popen_forkserver as _mp_popen
    from multiprocessing import reduction as _mp_reduction
    from multiprocessing import spawn as _mp_spawn
    from multiprocessing import util as _mp_util

    _SERVER = _mp_forkserver.ForkServer()
    _SERVER.set_forkserver_preload(["pith_graph._parallel._boot"])
    if not hasattr(_mp_popen.Popen, "_launch"):
        raise AttributeError("popen_forkserver.Popen._launch")
except (ImportError, AttributeError):  # pragma: no cover - no forkserver on this platform
    _HelperContext: Any = None
else:

    class _HelperPopen(_mp_popen.Popen):
        def _launch(self, process_obj: Any) -> None:
            # popen_forkserver.Popen._launch, less the main module, through _SERVER.
            prep_data = _mp_spawn.get_preparation_data(process_obj._name)
            prep_data.pop("init_main_from_path", None)
            prep_data.pop("init_main_from_name", None)
            buf = io.BytesIO()
            _mp_context.set_spawning_popen(self)
            try:
                _mp_reduction.dump(prep_data, buf)
                _mp_reduction.dump(process_obj, buf)
            finally:
                _mp_context.set_spawning_popen(None)
            self.sentinel, w = _SERVER.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
            # The child watches a duplicate of the write end: it sees end of file when this
            # process is gone (multiprocessing.parent_process().sentinel; see _start_helper).
            _parent_w = os.dup(w)
            self.finalizer = _mp_util.Finalize(self, _mp_util.close_fds, (_parent_w, self.sentinel))  # type: ignore[attr-defined]
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            self.pid = _mp_forkserver.read_signed(self.sentinel)

    class _HelperProcess(_mp_context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            return _HelperPopen(process_obj)

    class _HelperContext(_mp_context.ForkServerContext):  # type: ignore[no-redef]
        Process = _HelperProcess

    _HELPER_CONTEXT = _HelperContext()


@contextlib.contextmanager
def _interrupt_held() -> Iterator[None]:
    """Ctrl-C taken only once the block ends: SIGINT blocked in this thread (a process
    started here inherits the block), and in the main thread its handler deferred.

    A pool's ``submit`` starts the helpers, and the first one the forkserver. The
    forkserver ignores SIGINT only once it has imported multiprocessing and
    :mod:`pith_graph._parallel._boot`: a terminal's Ctrl-C in those first
    hundreds of milliseconds (it reaches the whole process group) printed the
    server's KeyboardInterrupt traceback after this process's own clean line;
    started with SIGINT blocked, the server never takes it. In this process, a
    KeyboardInterrupt raised in the middle of ``submit`` left the pool half made
    (a helper started but its manager thread not), and the interpreter waited for
    that thread at exit for ever. The mask alone does not defer it: another
    thread of this process may take the signal, and Python then runs the handler
    in the main thread at once. So the handler is swapped for one that notes the
    interrupt, which is raised again, under the caller's own handler, at the end.
    """
    # A handler installed outside Python (getsignal gives None) could not be put back.
    deferring = (
        threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not None
    )
    noted: list[int] = []
    previous: Any = None
    if deferring:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a pending SIGINT is noted here
        if deferring:
            signal.signal(signal.SIGINT, previous)
            if noted:
                signal.raise_signal(signal.SIGINT)  # as it would have been taken


class _WholeSubmits(ProcessPoolExecutor):
    """A ProcessPoolExecutor whose ``submit`` is never cut short by Ctrl-C (:func:`_interrupt_held`)."""

    def submit(self, fn: Callable[..., _R], /, *args: Any, **kwargs: Any) -> Future[_R]:
        with _interrupt_held():
            return super().submit(fn, *args, **kwargs)


def _exit_with_parent(sentinel: int) -> None:
    """Wait until the process that started this helper is gone, then end this one at once."""
    from multiprocessing.connection import wait

    wait([sentinel])
    os._exit(1)


def _start_helper() -> None:
    """Pool initializer: a helper leaves SIGINT to the process that started it, and dies with it.

    A terminal's Ctrl-C reaches the whole process group. The caller stops its
    workers itself (:func:`stop_pool`, or by cancelling their short tasks); a
    worker taking the interrupt would print its own traceback instead. A helper
    whose parent was killed (SIGKILL, the system's out-of-memory killer) would
    otherwise wait for work forever, and keep the forkserver alive with it: a
    thread ends it when the parent's sentinel closes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if isinstance(sentinel, int):
        threading.Thread(
            target=_exit_with_parent, args=(sentinel,), name="pith-graph-parent-watch", daemon=True
        ).start()


#: What starting a pool, or handing it a task, raises where no process can be started
#: or the forkserver has died (it then answers with end of file). BrokenProcessPool
#: is a RuntimeError.
POOL_ERRORS: Final = (OSError, RuntimeError, EOFError)


if sys.version_info < (3, 12):
    # gh-107219 is fixed from 3.12 on (terminate_broken ignores cancelled tasks there).

    class _ManagerThread(_futures_process._ExecutorManagerThread):
        """The pool's manager thread, less a CPython bug (gh-107219, before 3.12).

        When a worker dies, ``terminate_broken`` sets an exception on every pending
        task, and raised ``InvalidStateError`` on the first one already cancelled
        (the caller takes chunks back by cancelling them); it then stopped before
        terminating the other workers, which lived on, each holding its mapping of
        the deleted scratch copy, and printed a traceback. Settled tasks are dropped
        from the pending ones first.
        """

        def terminate_broken(self, *args: Any) -> None:
            with contextlib.ExitStack() as held:
                # Each pending task's lock is held until the pool has failed them all, so that
                # this process cannot cancel one between the check below and the pool's
                # set_exception (the pool takes the locks again: they are reentrant).
                for item in list(self.pending_work_items.values()):
                    held.enter_context(item.future._condition)
                for work_id, item in list(self.pending_work_items.items()):
                    if item.future.done():
                        del self.pending_work_items[work_id]
                super().terminate_broken(*args)

    class _Pool(_WholeSubmits):
        """A :class:`_WholeSubmits` pool whose manager thread is :class:`_ManagerThread`."""

        def _start_executor_manager_thread(self) -> None:
            super()._start_executor_manager_thread()
            thread = getattr(self, "_executor_manager_thread", None)
            if type(thread) is _futures_process._ExecutorManagerThread:
                # The same object, its methods now looked up in the subclass (no new state).
                thread.__class__ = _ManagerThread

    _POOL_CLASS: type[ProcessPoolExecutor] = _Pool
else:
    _POOL_CLASS = _WholeSubmits


def worker_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of ``processes`` worker processes (:func:`process_context`) that ignore SIGINT.

    Raises one of :data:`POOL_ERRORS` where no process can be started.
    """
    return _POOL_CLASS(max_workers=processes, mp_context=process_context(), initializer=_start_helper)


def stop_pool(executor: ProcessPoolExecutor) -> None:
    """Stop a pool now, without waiting for its tasks: queued ones are cancelled and the
    processes running the others are terminated.

    For pools whose tasks may run for long (a whole document each): otherwise the
    interpreter waits for them at exit, after an error or an interrupt. Python
    3.14 has ``terminate_workers``; before it, the pool's own list of processes
    is the only handle on them (read only on earlier versions). A worker terminated halfway through sending its
    result (a report of a megabyte or more) would leave the pool's manager thread
    waiting for the rest forever, since this process holds the pipe's write end
    too, and the interpreter waits for that thread at exit: once the workers are
    gone, this process's write end is closed, so the thread reads end of file.
    """
    if sys.version_info >= (3, 14):
        executor.terminate_workers()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    results = getattr(executor, "_result_queue", None)
    # Cancelling first: the pool then drops its queued tasks before it sees a worker end.
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join()
    writer = getattr(results, "_writer", None)
    if processes and writer is not None:
        with contextlib.suppress(OSError):
            writer.close()


#: Inputs per task :func:`ordered_map` gives a helper (one task per small bundle would cost
#: more in messages than its work), and tasks in flight per helper (docs/performance.md,
#: "Many small bundles").
ORDERED_CHUNK: Final = 16
CHUNKS_IN_FLIGHT: Final = 3


def ordered_map(
    task: Callable[..., _T], inputs: Iterable[_I], count: int, *args: Any, chunk: int = ORDERED_CHUNK
) -> Generator[_T, None, None]:
    """``task(input, *args)`` for each input, in order, run by ``count`` helper processes.

    Inputs are read lazily, ``chunk`` per task, at most ``count`` x 3 tasks in flight,
    so memory stays flat over any number of inputs. Where no process can be started,
    or when a helper dies (killed by a signal, or by the system for memory), the
    inputs not done are run here, one at a time: nothing given is lost. An error
    raised by ``inputs`` itself is raised after the outcomes of the inputs before
    it. Closing the generator early (an error, an interrupt) stops the helpers at once.
    """
    remaining: Iterator[_I] = iter(inputs)
    try:
        executor = worker_pool(count)
    except POOL_ERRORS:  # no process can be started here: all of them here
        for item in remaining:
            yield task(item, *args)
        return
    in_flight: deque[tuple[list[_I], Future[list[_T]]]] = deque()
    failed: BaseException | None = None

    def submit() -> bool:
        nonlocal failed
        if failed is not None:
            return False
        items: list[_I] = []
        try:
            items.extend(islice(remaining, chunk))
        except Exception as exc:  # the caller's iterator: raised once what came before is done
            failed = exc
        if not items:
            return False
        try:
            future = executor.submit(_run_chunk, task, items, *args)
        except POOL_ERRORS as exc:  # a dead pool: its items are run here, in their turn
            future = Future()
            future.set_exception(exc)
        in_flight.append((items, future))
        return True

    try:
        try:
            while len(in_flight) < count * CHUNKS_IN_FLIGHT and submit():
                pass
            while in_flight:
                outcomes = in_flight[0][1].result()
                in_flight.popleft()
                submit()
                yield from outcomes
        except POOL_ERRORS:  # BrokenProcessPool included: the pool is unusable
            stop_pool(executor)
            left = [item for items, _ in in_flight for item in items]
            in_flight.clear()
            for item in chain(left, () if failed is not None else remaining):
                yield task(item, *args)
        if failed is not None:
            raise failed
    finally:
        stop_pool(executor)


def _run_chunk(task: Callable[..., _T], items: list[Any], *args: Any) -> list[_T]:
    """``task(item, *args)`` for each of ``items``, in a helper process."""
    return [task(item, *args) for item in items]
