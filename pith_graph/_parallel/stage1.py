"""Stage 1 in helpers (:func:`start_stage1`, used by :func:`pith_graph.rebuild.rebuild_state`
given bytes or a path).

Helpers run the whole of stage 1 (strict parse, intrinsic and key checks,
signatures) on chunks of events, last chunk first, reading the events from a
copy of the bundle in a scratch directory (:mod:`pith_graph._parallel.scratch`)
and writing their results to files there; the calling process takes each
finished chunk as it comes, runs the chunks no helper has started, from the
front, and merges. Each event goes through exactly the serial code wherever it
runs, so the result is identical.
"""

from __future__ import annotations

import mmap
import os
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Final, NamedTuple

import msgspec

from pith_graph import ed25519
from pith_graph._parallel import pool
from pith_graph._parallel.pool import PARALLEL_MIN_EVENTS, POOL_ERRORS, may_start_processes
from pith_graph._parallel.scratch import ScratchCopy
from pith_graph._parallel.signatures import warm_up, worker_verifier
from pith_graph.canonical import MAX_DEPTH, gc_paused, loads
from pith_graph.documents import EVENT_DEPTH_OFFSET, SplitBundle
from pith_graph.events import EventFacts, check_event
from pith_graph.keys import KeyRing

__all__ = [
    "STAGE1_CHUNK",
    "STAGE1_MAX_CHUNK",
    "STAGE1_TASKS",
    "Stage1Helpers",
    "Stage1Row",
    "spawn_helpers",
    "stage1_chunk_size",
    "start_stage1",
]

# --- Stage 1 in helpers (rebuild_state's streaming path) -------------------------------
#
# Verifying signatures elsewhere is not enough: with libsodium, the strict parse,
# canonical encoding and hashing of each event cost this process more than the
# curve saves it (docs/performance.md). So helpers run all of stage 1 on chunks of
# events and this process only merges. Bytes cross between processes through
# files in a private scratch directory, never through the pool's pipes: a pipe
# carries 64 KiB per system call, and each call waits for the GIL, which the
# merge holds (the transfer then takes longer than the work).

#: Fewest events per stage-1 task: where the merge meets the helpers it waits for at
#: most one running task, about half a task on average.
STAGE1_CHUNK: Final = 128
#: Most events per stage-1 task.
STAGE1_MAX_CHUNK: Final = 1024
#: Tasks a large bundle is cut into: each costs a pool round trip and a file each
#: way, so fewer, larger tasks, down to what keeps the meeting point's wait short.
STAGE1_TASKS: Final = 200


def stage1_chunk_size(count: int) -> int:
    """Events per stage-1 task for ``count`` events: about :data:`STAGE1_TASKS` tasks,
    from :data:`STAGE1_CHUNK` to :data:`STAGE1_MAX_CHUNK` events each."""
    return max(STAGE1_CHUNK, min(STAGE1_MAX_CHUNK, count // STAGE1_TASKS))


class Stage1Row(NamedTuple):
    """A helper's stage-1 outcome of one event (the fields of its :class:`~pith_graph.events.CheckedEvent` the merge needs)."""

    unit_id: str
    reason: str | None
    progress: int
    facts: EventFacts | None
    signer_json: bytes
    payload_json: bytes


#: A chunk's events, as (offset, length) of each event's text in the bundle file.
_Spans = list[tuple[int, int]]
_ROWS_ENCODER: Final = msgspec.msgpack.Encoder()
_ROWS_DECODER: Final = msgspec.msgpack.Decoder(list[Stage1Row])
# A worker's view of the bundle file of the rebuild it serves (one at a time).
_WORKER_VIEWS: dict[str, Any] = {}


def _worker_view(path: str) -> Any:
    view = _WORKER_VIEWS.get(path)
    if view is None:
        _WORKER_VIEWS.clear()
        with open(path, "rb") as handle:
            try:
                # Mapped, not read: the file lives in memory already (/dev/shm), so the
                # helper's view of it costs no second copy, and only its events are touched.
                view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                view = handle.read()
        _WORKER_VIEWS[path] = view
    return view


def _stage1_chunk(
    path: str, spans: _Spans, subject: str, keyring: KeyRing, backend_name: str, out: str
) -> str:
    """Worker task: stage 1 of the events at ``spans`` of the bundle file at ``path``; writes the rows to ``out``.

    Each event is read exactly as :func:`pith_graph.rebuild.rebuild_state` reads
    it. A strict-parse error is raised (the caller then redoes the chunk itself
    and meets the same error). ``out`` is created first: its existence tells the
    caller that the chunk has started (see :meth:`Stage1Helpers.chunks`).
    """
    with open(out, "wb") as handle:
        view = _worker_view(path)
        verifier = worker_verifier(backend_name)
        rows: list[Stage1Row] = []
        with gc_paused():  # acyclic values only (see gc_paused)
            for offset, length in spans:
                value = loads(view[offset : offset + length], max_depth=MAX_DEPTH - EVENT_DEPTH_OFFSET)
                checked = check_event(value, subject=subject, keyring=keyring, verifier=verifier)
                rows.append(
                    Stage1Row(
                        checked.unit_id,
                        checked.reason,
                        checked.progress,
                        checked.facts,
                        checked.signer_json,
                        checked.payload_json,
                    )
                )
        handle.write(_ROWS_ENCODER.encode(rows))
    return out


def spawn_helpers(workers: int, backend_name: str) -> ProcessPoolExecutor | None:
    """Start ``workers - 1`` helper processes now, each loading ``backend_name``.

    A pool otherwise starts its processes on the first task, and the first
    chunk would wait for a process to start. None when they cannot be started;
    shut the pool down once done.
    """
    if workers <= 1 or backend_name not in ed25519.available_backends() or not may_start_processes():
        return None
    try:
        executor = pool.worker_pool(workers - 1)
    except POOL_ERRORS:  # no processes here: stage 1 runs in this one
        return None
    try:
        for _ in range(workers - 1):  # one process is started per task submitted while none is idle
            executor.submit(warm_up, backend_name)
    except BaseException as exc:  # the processes already started must not outlive this
        executor.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, POOL_ERRORS):
            return None
        raise
    return executor


class Stage1Helpers:
    """Helper processes running stage 1 (:func:`~pith_graph.events.check_event`) on chunks of a bundle's events.

    Chunks are submitted last first while the caller takes them first to last
    (as in :class:`ParallelCache`), and also takes each chunk a helper finished
    as soon as it can (:meth:`chunks`): the merge does not depend on the order
    of its input. Close with :meth:`close` before the scratch directory the
    helpers write into (``directory``) is removed.
    """

    def __init__(self, executor: ProcessPoolExecutor, directory: str, chunk_size: int) -> None:
        self.executor = executor
        self.directory = directory
        self.chunk_size = chunk_size
        self._futures: dict[int, Future[str]] = {}
        # Chunks whose helper finished (or that were cancelled), in that order; filled by
        # the pool's thread through done callbacks.
        self._finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        # Chunks run here although a helper holds them too (see chunks()): close() waits for them.
        self._abandoned: list[Future[str]] = []
        self.stolen = 0  # chunks the caller ran itself

    def submit(self, index: int, *args: Any) -> None:
        """Queue chunk ``index`` (``args`` for :func:`_stage1_chunk`) for the helpers."""
        future = self.executor.submit(_stage1_chunk, *args)
        self._futures[index] = future
        future.add_done_callback(lambda _: self._finished.put(index))

    def _out(self, index: int) -> str:
        return os.path.join(self.directory, f"{index}.msgpack")

    def chunks(self, count: int) -> Iterator[tuple[int, list[Stage1Row] | None]]:
        """Each of the ``count`` chunks once, as (index, its rows) or (index, None): run it yourself.

        Finished helper chunks come first: taking their rows while the helpers
        still work keeps the end of stage 1 short (otherwise this process would
        take them all after the helpers stopped). Otherwise the next chunk from
        the front: withdrawn when no helper has it yet, run here also when a
        helper holds it but has not started it (it only sits in the pool's
        queue, behind the chunk that helper is running); only a chunk a helper
        is running is waited for.
        """
        front = 0
        left = count
        while left:
            index = self._next_finished(block=False)
            if index is None:
                while front not in self._futures and front < count:
                    front += 1  # taken already
                future = self._futures.get(front)
                if future is None:  # every chunk left is being run by a helper
                    index = self._next_finished(block=True)
                elif future.done():
                    index = front
                elif future.cancel():
                    del self._futures[front]
                    self.stolen += 1
                    left -= 1
                    yield front, None
                    continue
                elif not os.path.exists(self._out(front)):  # held, not started
                    self._abandoned.append(self._futures.pop(front))
                    self.stolen += 1
                    left -= 1
                    yield front, None
                    continue
                else:  # a helper is running it
                    index = self._next_finished(block=True)
            if index is not None:
                left -= 1
                yield index, self.rows(index)

    def _next_finished(self, *, block: bool) -> int | None:
        """A finished chunk not taken yet (None: none now, when not blocking)."""
        while True:
            try:
                index = self._finished.get(block=block)
            except queue.Empty:
                return None
            future = self._futures.get(index)
            if future is not None and future.done():
                return index
            # Otherwise stale: a chunk taken already (cancelled, run here, or its rows read).

    def rows(self, index: int) -> list[Stage1Row] | None:
        """The stage-1 rows of chunk ``index``, which a helper holds (waiting for it), or
        None when that helper failed: run it yourself. (:meth:`chunks` withdraws the
        chunks no helper holds before this is asked.)"""
        future = self._futures[index]
        rows: list[Stage1Row] | None
        try:
            out = future.result()
            # Decoded straight from the page cache: reading the file first would copy
            # every row once more in this process.
            with open(out, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                rows = _ROWS_DECODER.decode(view)
            os.unlink(out)
        except Exception:  # the helper raised or died, or its file is unreadable: run the chunk here
            rows = None
        # Only now: a chunk whose wait was interrupted (KeyboardInterrupt) stays listed,
        # so close() waits for it before the directory it writes into is removed.
        del self._futures[index]
        if rows is None:
            self.stolen += 1
        return rows

    def close(self) -> None:
        """Stop the helpers.

        Every chunk not yet started is cancelled here, explicitly: the pool's own
        ``cancel_futures`` is carried out later by its manager thread through a
        weak reference to the pool, which is gone once the caller returns, so
        queued chunks would otherwise all run after an error. The chunks the pool
        has already handed out (each helper's, and its queue of one more per
        helper, plus one) are waited for, so that no helper writes into the
        directory while or after it is removed.
        """
        left = [*self._futures.values(), *self._abandoned]
        self._futures.clear()
        self._abandoned.clear()
        for future in left:
            future.cancel()
        # After a complete rebuild nothing is left running, and joining the idle
        # helpers would only cost time.
        self.executor.shutdown(wait=any(not future.done() for future in left))


def start_stage1(
    split: SplitBundle,
    scratch: ScratchCopy | None,
    executor: ProcessPoolExecutor | None,
    *,
    keyring: KeyRing,
    backend_name: str,
    chunk_size: int | None = None,
    min_events: int = PARALLEL_MIN_EVENTS,
) -> Stage1Helpers | None:
    """Hand stage 1 of the events of ``split`` to the helpers of ``executor`` (:func:`spawn_helpers`,
    with the same backend), reading the bundle's bytes from ``scratch`` (:func:`scratch_copy`
    of the bytes ``split`` was cut from).

    The returned :class:`Stage1Helpers` owns the executor. None (the caller runs
    stage 1 itself, and still owns the executor) without a scratch copy or
    helpers, below ``min_events`` events, or when the copy or the tasks cannot
    be made here. ``chunk_size``: events per task (default: :func:`stage1_chunk_size`).
    """
    events, starts = split.events, split.starts
    count = len(events)
    if scratch is None or executor is None or count < min_events or not scratch.ready():
        return None
    if chunk_size is None:
        chunk_size = stage1_chunk_size(count)
    subject = split.model.pith_number
    helpers = Stage1Helpers(executor, scratch.directory, chunk_size)
    try:
        for index in reversed(range((count + chunk_size - 1) // chunk_size)):
            first, stop = index * chunk_size, min(count, (index + 1) * chunk_size)
            spans = [
                (start, len(text)) for start, text in zip(starts[first:stop], events[first:stop], strict=True)
            ]
            helpers.submit(index, scratch.path, spans, subject, keyring, backend_name, helpers._out(index))
    except BaseException as exc:
        helpers.close()  # cancels what was submitted, on every way out (an interrupt too)
        if isinstance(exc, POOL_ERRORS):  # the pool broke, or a process could not start
            return None
        raise
    return helpers
