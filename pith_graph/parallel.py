"""Helper processes for large bundles, in two forms.

**Stage 1 in helpers** (:func:`start_stage1`, used by
:func:`pith_graph.rebuild.rebuild_state` given bytes or a path): helpers run
the whole of stage 1 (strict parse, intrinsic and key checks, signatures) on
chunks of events, last chunk first, reading the events from a copy of the
bundle in a scratch directory (:func:`scratch_copy`) and writing their results
to files there; the calling process takes each finished chunk as it comes,
runs the chunks no helper has started, from the front, and merges. Each event
goes through exactly the serial code wherever it runs, so the result is
identical.

**Signatures in helpers** (:func:`start_verification`, used by
:func:`pith_graph.rebuild.rebuild`, which needs the parsed document):

1. a cheap pre-pass extracts the (public key, signature, message) triple of
   every event signed by a trusted key: :func:`prepass_jobs` from the unparsed
   bytes (so helpers start before the strict parse), or :func:`signature_jobs`
   from parsed events;
2. ``workers - 1`` helper processes verify the triples in chunks, last chunk
   first, each running the pinned rule with the same backend
   (:mod:`pith_graph.ed25519`); the calling process is the last worker;
3. the ordinary serial merge runs at the same time, first event to last, with
   a :class:`~pith_graph.ed25519.Verifier` whose :class:`ParallelCache` answers
   from the helpers' results, takes back chunks no helper has started, and
   waits only for the chunk a helper holds where the two meet.

The merge is unchanged and every verdict comes from the pinned rule, so the
result is identical to the serial path by construction; a triple the pre-pass
did not extract (a receipt, an event whose fields the pre-pass cannot read) is
simply verified in-process by the merge, as before.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import process as _futures_process
from typing import Any, Final

import msgspec

from pith_graph import codes, ed25519
from pith_graph.canonical import MAX_DEPTH, gc_paused, loads
from pith_graph.documents import EVENT_DEPTH_OFFSET, MAX_EVENTS, SplitBundle
from pith_graph.ed25519 import SignatureCache, Verifier
from pith_graph.errors import InputError, PithGraphError
from pith_graph.events import EventFacts, check_event
from pith_graph.keys import KeyRing
from pith_graph.records import decode_signature

__all__ = [
    "CHUNK_SIZE",
    "MAX_AUTO_WORKERS",
    "PARALLEL_MIN_EVENTS",
    "POOL_ERRORS",
    "SCRATCH_MIN_BYTES",
    "STAGE1_CHUNK",
    "STAGE1_MAX_CHUNK",
    "STAGE1_TASKS",
    "MemorySignatureCache",
    "ParallelCache",
    "ScratchCopy",
    "Stage1Helpers",
    "Triple",
    "may_start_processes",
    "parallel_verifier",
    "prepass_jobs",
    "process_context",
    "resolve_workers",
    "scratch_copy",
    "signature_jobs",
    "spawn_helpers",
    "stage1_chunk_size",
    "start_stage1",
    "start_verification",
    "stop_pool",
    "usable_cpus",
    "worker_pool",
]

Triple = tuple[bytes, bytes, bytes]

#: Below this many events a bundle is rebuilt serially. Measured here with stage
#: 1 in helpers (``python -m benchmarks.break_even``, 2 CPUs): one helper saves
#: 13 us per event at 1k events and 29 us at 5k (434 -> 287 ms); the first pool
#: of a process costs about 100 ms more (the forkserver starts and imports
#: pith_graph once), later ones a few ms. Break-even is therefore under 1,000
#: events for a process that has run a pool, and about 3,500 for the first;
#: 5,000 keeps every first pool a win (docs/performance.md).
PARALLEL_MIN_EVENTS: Final = 5000
#: Most processes ``workers=None`` (the default) uses: past a few, the merge in this
#: process, not the curve, bounds the rebuild.
MAX_AUTO_WORKERS: Final = 4
#: Triples per task sent to a worker: large enough to amortise pickling, small
#: enough that the merge rarely waits for the first results.
CHUNK_SIZE: Final = 256


class MemorySignatureCache:
    """A plain in-memory :class:`~pith_graph.ed25519.SignatureCache`."""

    __slots__ = ("_verdicts",)

    def __init__(self) -> None:
        self._verdicts: dict[Triple, bool] = {}

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """The remembered verdict, or None."""
        return self._verdicts.get((public_key, signature, message))

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        """Remember a verdict."""
        self._verdicts[(public_key, signature, message)] = valid

    def __len__(self) -> int:
        return len(self._verdicts)


def _triples(claims: Iterable[tuple[Any, Any, Any]], keyring: KeyRing) -> list[Triple]:
    """The distinct triples of claimed (``content_sha256``, ``key_id``, ``signature_b64``) values."""
    seen: set[Triple] = set()
    jobs: list[Triple] = []
    for digest, key_id, signature_b64 in claims:
        if not (isinstance(digest, str) and len(digest) == 64 and isinstance(key_id, str) and isinstance(signature_b64, str)):
            continue
        key = keyring.get(key_id)
        signature = decode_signature(signature_b64)
        if key is None or signature is None:
            continue
        try:
            message = bytes.fromhex(digest)
        except ValueError:
            continue
        triple = (key.public_key, signature, message)
        if triple not in seen and ed25519.passes_pinned_prechecks(key.public_key, signature):
            seen.add(triple)
            jobs.append(triple)
    return jobs


def _claims(raw: dict[str, Any]) -> tuple[Any, Any, Any]:
    sig = raw.get("signature")
    if not isinstance(sig, dict):
        return None, None, None
    return raw.get("content_sha256"), sig.get("key_id"), sig.get("signature_b64")


def signature_jobs(events: Iterable[Any], keyring: KeyRing) -> list[Triple]:
    """The distinct (public key, signature, message) triples of events signed by a trusted key.

    Reads the raw events only and skips anything it cannot read cheaply (the
    merge checks those itself). Triples failing the pinned pre-checks are left
    out: the verifier rejects them before consulting any cache.
    """
    return _triples((_claims(raw) for raw in events if isinstance(raw, dict)), keyring)


class _EventView(msgspec.Struct):
    """The members of an event the pre-pass reads (everything else is skipped unparsed)."""

    content_sha256: Any = None
    signature: Any = None


class _BundleView(msgspec.Struct):
    # Any JSON value is accepted where an event should be, so one odd event cannot
    # switch the pre-pass off (only objects are read).
    events: list[_EventView | bool | int | float | str | list[Any] | None] = msgspec.field(default_factory=list)
    public_keys: Any = None


_VIEW_DECODER: Final = msgspec.json.Decoder(_BundleView)


def prepass_jobs(
    data: bytes, keyring: KeyRing, *, trust_bundle_keys: bool = False, min_events: int = PARALLEL_MIN_EVENTS
) -> list[Triple] | None:
    """The signature triples of an unparsed bundle, read before (and far faster than) the strict parse.

    So workers can verify while this process parses. Lenient on purpose: this
    only decides what to verify ahead of time. Verdicts are keyed by the exact
    (key, signature, message) triple and the merge asks only for the triples of
    events it validated itself, so a wrong guess here costs time, never a
    verdict. None when the bundle is small (below ``min_events``) or not readable
    this way; the caller then falls back to :func:`signature_jobs` after parsing.
    """
    try:
        view = _VIEW_DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):  # ValidationError is a DecodeError
        return None
    if not (min_events <= len(view.events) <= MAX_EVENTS):
        return None
    if trust_bundle_keys:
        # The strict path reports unusable bundle keys; here they are just not pre-verified.
        with contextlib.suppress(PithGraphError, TypeError, AttributeError):
            keyring = keyring.union(KeyRing.from_entries(view.public_keys or ()))
    return _triples(
        (
            (event.content_sha256, event.signature.get("key_id"), event.signature.get("signature_b64"))
            for event in view.events
            if isinstance(event, _EventView) and isinstance(event.signature, dict)
        ),
        keyring,
    )


# One verifier per worker process and backend, so each key is loaded once per process.
_WORKER_VERIFIERS: dict[str, Verifier] = {}


def _worker_verifier(backend_name: str) -> Verifier:
    verifier = _WORKER_VERIFIERS.get(backend_name)
    if verifier is None:
        verifier = _WORKER_VERIFIERS[backend_name] = Verifier(backend_name)
    return verifier


def _warm_up(backend_name: str) -> None:
    """Worker task: load the backend (done once per process; the first chunk then starts at once)."""
    _worker_verifier(backend_name)


def _verify_chunk(backend_name: str, triples: Sequence[Triple]) -> list[bool]:
    """Worker task: the pinned verdicts of ``triples`` with the named backend."""
    verifier = _worker_verifier(backend_name)
    return [verifier.verify(*triple) for triple in triples]


class ParallelCache:
    """A :class:`~pith_graph.ed25519.SignatureCache` filled by worker processes.

    Chunks are submitted last first, while the merge consumes them first to
    last: the workers start at the back of the bundle and the merge, when it
    reaches a chunk no worker has started yet, takes it back and verifies it
    here (``local``, same backend). So both sides work until they meet, and the
    merge waits only for the chunk a worker holds at that point. A chunk whose
    worker failed is verified here too. A triple never submitted falls through
    to ``inner`` (if any) and then to the caller's own verification. Verdicts
    recorded by the caller go to ``inner`` too, so an event store's cache keeps
    learning.
    """

    def __init__(self, local: Verifier, inner: SignatureCache | None = None) -> None:
        self.local = local
        self.inner = inner
        self._done = MemorySignatureCache()
        self._pending: dict[Triple, Future[list[bool]]] = {}
        self._chunks: dict[int, Sequence[Triple]] = {}
        self.stolen = 0  # chunks verified in this process rather than by a worker

    def submit(self, executor: ProcessPoolExecutor, backend_name: str, jobs: Sequence[Triple], chunk_size: int) -> None:
        """Send ``jobs`` to ``executor`` in chunks, the last chunk first (see the class docstring)."""
        for start in reversed(range(0, len(jobs), chunk_size)):
            chunk = jobs[start : start + chunk_size]
            future = executor.submit(_verify_chunk, backend_name, chunk)
            self._chunks[id(future)] = chunk
            for triple in chunk:
                self._pending[triple] = future

    def _collect(self, future: Future[list[bool]]) -> None:
        chunk = self._chunks.pop(id(future), None)
        if chunk is None:
            return  # already collected
        verdicts: list[bool] | None = None
        if future.done() or not future.cancel():
            try:
                verdicts = future.result()
            except Exception:  # a worker died or the pool broke: the verdicts are recomputed below
                verdicts = None
        if verdicts is None:
            self.stolen += 1
            verdicts = [self.local.verify(*triple) for triple in chunk]
        for triple, valid in zip(chunk, verdicts, strict=True):
            self._done.record(*triple, valid)
            self._pending.pop(triple, None)

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """The verdict computed by a worker (waiting for it if needed), else ``inner``'s."""
        known = self._done.lookup(public_key, signature, message)
        if known is not None:
            return known
        future = self._pending.get((public_key, signature, message))
        if future is not None:
            self._collect(future)
            return self._done.lookup(public_key, signature, message)
        return None if self.inner is None else self.inner.lookup(public_key, signature, message)

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        """Remember a verdict the caller computed itself."""
        self._done.record(public_key, signature, message, valid)
        if self.inner is not None:
            self.inner.record(public_key, signature, message, valid)

    def cancel(self) -> None:
        """Cancel every chunk no worker has started (explicitly: see :meth:`Stage1Helpers.close`)."""
        for future in set(self._pending.values()):
            future.cancel()

    def drain(self) -> None:
        """Wait for every chunk (so worker verdicts also reach ``inner``)."""
        for future in list(self._pending.values()):
            self._collect(future)
        if self.inner is not None:
            for (public_key, signature, message), valid in self._done._verdicts.items():
                self.inner.record(public_key, signature, message, valid)


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
    """The multiprocessing context for worker pools: forkserver where it exists.

    Not fork: a worker forked from a process holding a parsed 100,000-event
    bundle shares its pages copy-on-write, and every reference count the merge
    then touches copies a page (measured: the merge ran 1.8x slower beside one
    forked worker, 1.15x beside a forkserver one).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context()
    context = multiprocessing.get_context("forkserver")
    # Imported once by the server, so each worker it forks starts ready.
    context.set_forkserver_preload(["pith_graph.parallel"])
    return context


def _ignore_interrupts() -> None:
    """Pool initializer: workers leave SIGINT to the process that started them.

    A terminal's Ctrl-C reaches the whole process group. The caller stops its
    workers itself (:func:`stop_pool`, or by cancelling their short tasks); a
    worker taking the interrupt would print its own traceback instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: What starting a pool, or handing it a task, raises where no process can be started
#: or the forkserver has died (it then answers with end of file). BrokenProcessPool
#: is a RuntimeError.
POOL_ERRORS: Final = (OSError, RuntimeError, EOFError)


class _ManagerThread(_futures_process._ExecutorManagerThread):
    """The pool's manager thread, less a CPython bug (gh-107219; present in 3.11).

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


class _Pool(ProcessPoolExecutor):
    """A ProcessPoolExecutor whose manager thread is :class:`_ManagerThread`."""

    def _start_executor_manager_thread(self) -> None:
        super()._start_executor_manager_thread()
        thread = getattr(self, "_executor_manager_thread", None)
        if type(thread) is _futures_process._ExecutorManagerThread:
            # The same object, its methods now looked up in the subclass (no new state).
            thread.__class__ = _ManagerThread


def worker_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of ``processes`` worker processes (:func:`process_context`) that ignore SIGINT.

    Raises one of :data:`POOL_ERRORS` where no process can be started.
    """
    return _Pool(max_workers=processes, mp_context=process_context(), initializer=_ignore_interrupts)


def stop_pool(executor: ProcessPoolExecutor) -> None:
    """Stop a pool now, without waiting for its tasks: queued ones are cancelled and the
    processes running the others are terminated.

    For pools whose tasks may run for long (a whole document each): otherwise the
    interpreter waits for them at exit, after an error or an interrupt. Python
    3.14 has ``terminate_workers``; before it, the pool's own list of processes
    is the only handle on them. A worker terminated halfway through sending its
    result (a report of a megabyte or more) would leave the pool's manager thread
    waiting for the rest forever, since this process holds the pipe's write end
    too, and the interpreter waits for that thread at exit: once the workers are
    gone, this process's write end is closed, so the thread reads end of file.
    """
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


def start_verification(
    jobs: Sequence[Triple], *, workers: int, verifier: Verifier | None = None, chunk_size: int = CHUNK_SIZE
) -> tuple[Verifier, ProcessPoolExecutor | None, ParallelCache | None]:
    """Verify ``jobs`` in ``workers - 1`` helper processes; this process is the last worker.

    Returns ``(verifier, executor, cache)``; the caller shuts the executor down
    once the merge is done. The returned verifier answers from the helpers'
    verdicts; a chunk no helper has started when the merge needs it is verified
    here instead (so this process never idles while work is queued). Serial
    (executor None, the given or a default verifier) when ``workers`` <= 1, when
    the backend cannot be named in another process, or when no process can be
    started (a sandbox): the result is the same, only slower.
    """
    base = verifier or Verifier()
    backend_name = base.backend.name
    if workers <= 1 or backend_name not in ed25519.available_backends() or not may_start_processes():
        return base, None, None
    if base.cache is not None:
        jobs = [t for t in jobs if base.cache.lookup(*t) is None]
    if not jobs:
        return base, None, None
    cache = ParallelCache(Verifier(base.backend), base.cache)
    try:
        executor = worker_pool(workers - 1)
    except POOL_ERRORS:  # no processes here: verify in this one
        return base, None, None
    try:
        cache.submit(executor, backend_name, jobs, chunk_size)
    except BaseException as exc:  # what was submitted must not run on
        executor.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, POOL_ERRORS):
            return base, None, None
        raise
    return Verifier(base.backend, cache), executor, cache


def parallel_verifier(
    events: Sequence[Any],
    keyring: KeyRing,
    *,
    workers: int,
    verifier: Verifier | None = None,
    chunk_size: int = CHUNK_SIZE,
    min_events: int = PARALLEL_MIN_EVENTS,
) -> tuple[Verifier, ProcessPoolExecutor | None, ParallelCache | None]:
    """:func:`start_verification` of the parsed ``events`` (serial below ``min_events`` events)."""
    if workers <= 1 or len(events) < min_events:
        return verifier or Verifier(), None, None
    return start_verification(signature_jobs(events, keyring), workers=workers, verifier=verifier, chunk_size=chunk_size)


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
#: Tasks a large bundle is cut into. Each task costs the two processes together about
#: 0.5 ms (a pool round trip, a file each way): 782 tasks of 128 events cost a 100k
#: rebuild about 0.4 s of their time (0.2 s of wall time, 3-4%); 200 tasks about 0.1 s.
STAGE1_TASKS: Final = 200


def stage1_chunk_size(count: int) -> int:
    """Events per stage-1 task for ``count`` events: about :data:`STAGE1_TASKS` tasks,
    from :data:`STAGE1_CHUNK` to :data:`STAGE1_MAX_CHUNK` events each."""
    return max(STAGE1_CHUNK, min(STAGE1_MAX_CHUNK, count // STAGE1_TASKS))

_Row = tuple[str, str | None, int, EventFacts | None, bytes, bytes]
#: A chunk's events, as (offset, length) of each event's text in the bundle file.
_Spans = list[tuple[int, int]]
_ROWS_ENCODER: Final = msgspec.msgpack.Encoder()
_ROWS_DECODER: Final = msgspec.msgpack.Decoder(list[_Row])
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
        verifier = _worker_verifier(backend_name)
        rows: list[_Row] = []
        with gc_paused():  # acyclic values only (see gc_paused)
            for offset, length in spans:
                value = loads(view[offset : offset + length], max_depth=MAX_DEPTH - EVENT_DEPTH_OFFSET)
                checked = check_event(value, subject=subject, keyring=keyring, verifier=verifier)
                rows.append(
                    (checked.unit_id, checked.reason, checked.progress, checked.facts, checked.signer_json, checked.payload_json)
                )
        handle.write(_ROWS_ENCODER.encode(rows))
    return out


#: The bundle's copy and the helpers' results take at most about this many times its size.
_SCRATCH_FACTOR: Final = 3
#: Scratch directories are named ``pith-graph-<pid>-<random>``.
_SCRATCH_PREFIX: Final = "pith-graph-"


def _sweep_scratch(root: str | None) -> None:
    """Remove the scratch directories of rebuilds whose process is gone (killed by a
    signal, which skips the clean-up): this user's only, named after a dead process.

    POSIX only: elsewhere ``os.kill(pid, 0)`` is not a liveness probe (on
    Windows it terminates the process).
    """
    if os.name != "posix":
        return
    root = root or tempfile.gettempdir()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_SCRATCH_PREFIX):
            continue
        pid = entry.name[len(_SCRATCH_PREFIX) :].partition("-")[0]
        try:
            if not pid.isdigit() or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:  # alive under another user, or unreadable
            continue


def _scratch_root(size: int) -> str | None:
    """Where helpers exchange files: memory-backed when the system has room there
    (a container's /dev/shm may hold only 64 MB), else the default temporary directory."""
    shm = "/dev/shm"
    try:
        if os.access(shm, os.W_OK | os.X_OK) and shutil.disk_usage(shm).free > _SCRATCH_FACTOR * size:
            return shm
    except OSError:
        pass
    return None


#: Bundles smaller than this are not copied for helpers: they hold too few events
#: for helpers to pay (:data:`PARALLEL_MIN_EVENTS` events take several MB).
SCRATCH_MIN_BYTES: Final = 1 << 20


class ScratchCopy:
    """A private scratch directory holding a copy of a bundle's bytes, for helper processes.

    A thread writes the copy (a file write releases the GIL) while this process
    splits the bundle, so the copy costs this process almost nothing;
    :meth:`ready` waits for it. Helpers write their results into the same
    directory. :meth:`close` removes it all; use it as a context manager.
    """

    def __init__(self, directory: str, data: bytes) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "bundle.json")
        self._error: BaseException | None = None
        self._writing = threading.Event()
        self._thread = threading.Thread(target=self._write, args=(data,), name="pith-graph-scratch", daemon=True)
        self._thread.start()
        # Wait until the thread is about to write, which releases the GIL: otherwise it
        # might only get the GIL back after the split's long decode, which never yields it.
        self._writing.wait()

    def _write(self, data: bytes) -> None:
        try:
            with open(self.path, "wb") as handle:
                self._writing.set()
                handle.write(data)
        except BaseException as exc:  # no room after all (or anything else): stage 1 runs in the calling process
            self._error = exc  # never a partial copy taken for a whole one
        finally:
            self._writing.set()

    def ready(self) -> bool:
        """Wait until the copy is written; False when it could not be."""
        self._thread.join()
        return self._error is None

    def close(self) -> None:
        """Remove the directory and everything in it (after the copy is written)."""
        self._thread.join()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ScratchCopy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def scratch_copy(data: bytes, workers: int, *, min_bytes: int = SCRATCH_MIN_BYTES) -> ScratchCopy | None:
    """Start copying a bundle's bytes to a private scratch directory for ``workers - 1`` helpers.

    None when no helper will run (one worker, a bundle under
    ``min_bytes``, by default :data:`SCRATCH_MIN_BYTES`; no processes allowed
    here) or no directory can be made.
    Directories left by rebuilds killed by a signal are swept first.
    """
    if workers <= 1 or len(data) < min_bytes or not may_start_processes():
        return None
    root = _scratch_root(len(data))
    _sweep_scratch(root)
    try:
        directory = tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=root)
    except OSError:
        return None
    try:
        return ScratchCopy(directory, data)
    except BaseException as exc:  # no thread can be started here, or an interrupt
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, RuntimeError):
            return None
        raise


def spawn_helpers(workers: int, backend_name: str) -> ProcessPoolExecutor | None:
    """Start ``workers - 1`` helper processes now, each loading ``backend_name``.

    A pool otherwise starts its processes on the first task, and the first
    chunk would start about 20 ms after :func:`start_stage1` submits it (4 ms
    once they are warm). None when they cannot be started; shut the pool down
    once done.
    """
    if workers <= 1 or backend_name not in ed25519.available_backends() or not may_start_processes():
        return None
    try:
        executor = worker_pool(workers - 1)
    except POOL_ERRORS:  # no processes here: stage 1 runs in this one
        return None
    try:
        for _ in range(workers - 1):  # one process is started per task submitted while none is idle
            executor.submit(_warm_up, backend_name)
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

    def chunks(self, count: int) -> Iterator[tuple[int, list[_Row] | None]]:
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

    def rows(self, index: int) -> list[_Row] | None:
        """The stage-1 rows of chunk ``index``, which a helper holds (waiting for it), or
        None when that helper failed: run it yourself. (:meth:`chunks` withdraws the
        chunks no helper holds before this is asked.)"""
        future = self._futures[index]
        rows: list[_Row] | None
        try:
            out = future.result()
            # Decoded straight from the page cache: reading the file first copied 2 MB
            # per 500 rows once more (100k: 60-120 ms of this process's time).
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
        # helpers would only cost time (about 6 ms).
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
            spans = [(start, len(text)) for start, text in zip(starts[first:stop], events[first:stop], strict=True)]
            helpers.submit(index, scratch.path, spans, subject, keyring, backend_name, helpers._out(index))
    except BaseException as exc:
        helpers.close()  # cancels what was submitted, on every way out (an interrupt too)
        if isinstance(exc, POOL_ERRORS):  # the pool broke, or a process could not start
            return None
        raise
    return helpers
