"""Signatures in helpers: helper processes verify a bundle's (key, signature, message) triples
while this process parses and merges (used by :func:`pith_graph.rebuild.rebuild`, which
needs the parsed document).

1. a cheap pre-pass extracts the triple of every event signed by a trusted key:
   :func:`prepass_jobs` from the unparsed bytes (so helpers start before the
   strict parse), or :func:`signature_jobs` from parsed events;
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
simply verified in-process by the merge.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Final, NamedTuple

import msgspec

from pith_graph import ed25519
from pith_graph._parallel import pool
from pith_graph._parallel.pool import PARALLEL_MIN_EVENTS, POOL_ERRORS, may_start_processes
from pith_graph.documents import MAX_EVENTS
from pith_graph.ed25519 import SignatureCache, Verifier
from pith_graph.errors import PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.records import decode_signature

__all__ = [
    "CHUNK_SIZE",
    "MemorySignatureCache",
    "ParallelCache",
    "Started",
    "Triple",
    "parallel_verifier",
    "prepass_jobs",
    "signature_jobs",
    "start_verification",
    "warm_up",
    "worker_verifier",
]

Triple = tuple[bytes, bytes, bytes]

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
        if not (
            isinstance(digest, str)
            and len(digest) == 64
            and isinstance(key_id, str)
            and isinstance(signature_b64, str)
        ):
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
    events: list[_EventView | bool | int | float | str | list[Any] | None] = msgspec.field(
        default_factory=list
    )
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
            keyring = keyring.union(KeyRing.from_entries(view.public_keys or (), listed=True))
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


def worker_verifier(backend_name: str) -> Verifier:
    verifier = _WORKER_VERIFIERS.get(backend_name)
    if verifier is None:
        verifier = _WORKER_VERIFIERS[backend_name] = Verifier(backend_name)
    return verifier


def warm_up(backend_name: str) -> None:
    """Worker task: load the backend (done once per process; the first chunk then starts at once)."""
    worker_verifier(backend_name)


def _verify_chunk(backend_name: str, triples: Sequence[Triple]) -> list[bool]:
    """Worker task: the pinned verdicts of ``triples`` with the named backend."""
    verifier = worker_verifier(backend_name)
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

    def submit(
        self, executor: ProcessPoolExecutor, backend_name: str, jobs: Sequence[Triple], chunk_size: int
    ) -> None:
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


class Started(NamedTuple):
    """Signature verification handed to helpers: the verifier the merge uses, and the pool
    and cache behind it (both None when verification stays in this process)."""

    verifier: Verifier
    executor: ProcessPoolExecutor | None
    cache: ParallelCache | None


def start_verification(
    jobs: Sequence[Triple], *, workers: int, verifier: Verifier | None = None, chunk_size: int = CHUNK_SIZE
) -> Started:
    """Verify ``jobs`` in ``workers - 1`` helper processes; this process is the last worker.

    Returns :class:`Started`; the caller shuts the executor down
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
        return Started(base, None, None)
    if base.cache is not None:
        jobs = [t for t in jobs if base.cache.lookup(*t) is None]
    if not jobs:
        return Started(base, None, None)
    cache = ParallelCache(Verifier(base.backend), base.cache)
    try:
        executor = pool.worker_pool(workers - 1)
    except POOL_ERRORS:  # no processes here: verify in this one
        return Started(base, None, None)
    try:
        cache.submit(executor, backend_name, jobs, chunk_size)
    except BaseException as exc:  # what was submitted must not run on
        executor.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, POOL_ERRORS):
            return Started(base, None, None)
        raise
    return Started(Verifier(base.backend, cache), executor, cache)


def parallel_verifier(
    events: Sequence[Any],
    keyring: KeyRing,
    *,
    workers: int,
    verifier: Verifier | None = None,
    chunk_size: int = CHUNK_SIZE,
    min_events: int = PARALLEL_MIN_EVENTS,
) -> Started:
    """:func:`start_verification` of the parsed ``events`` (serial below ``min_events`` events)."""
    if workers <= 1 or len(events) < min_events:
        return Started(verifier or Verifier(), None, None)
    return start_verification(
        signature_jobs(events, keyring), workers=workers, verifier=verifier, chunk_size=chunk_size
    )
