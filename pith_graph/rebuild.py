"""``rebuild_state``: the library call that turns a bundle into its merged state.

The I/O edge around the pure :func:`pith_graph.merge.merge`: read the bundle,
decide which keys are trusted, merge.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from itertools import chain
from typing import Any, NamedTuple

import msgspec

from pith_graph._parallel.pool import PARALLEL_MIN_EVENTS, resolve_workers
from pith_graph._parallel.scratch import SCRATCH_MIN_BYTES, ScratchCopy, scratch_copy
from pith_graph._parallel.signatures import Started, parallel_verifier, prepass_jobs, start_verification
from pith_graph._parallel.stage1 import STAGE1_CHUNK, Stage1Helpers, spawn_helpers, start_stage1
from pith_graph._progress import advance
from pith_graph.canonical import MAX_DEPTH, gc_paused, loads
from pith_graph.documents import (
    EVENT_DEPTH_OFFSET,
    Document,
    DocumentSource,
    SplitBundle,
    load_bundle,
    settle_state,
    source_bytes,
    split_bundle,
)
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PithGraphError, TrustError
from pith_graph.events import CheckedEvent, inspect_event, unit_id
from pith_graph.keys import KeyRing, TrustedKeys, coerce_ring, reusable_keys
from pith_graph.merge import MergeResult, merge_checked, merge_copies
from pith_graph.models import Bundle
from pith_graph.state import State

__all__ = ["Rebuilt", "rebuild", "rebuild_state", "resolve_keyring"]


def resolve_keyring(trusted_keys: TrustedKeys, trust_bundle_keys: bool, bundle: Bundle) -> KeyRing:
    """The keys a rebuild trusts: the caller's (default: the registry key), plus the
    bundle's own keys only when the caller opts in with ``trust_bundle_keys``.

    A bundle never vouches for itself: its ``public_keys`` are ignored otherwise.
    """
    ring = coerce_ring(trusted_keys)
    if trust_bundle_keys:
        try:
            ring = ring.union(KeyRing.from_entries(bundle.public_keys, listed=True))
        except TrustError as exc:
            raise TrustError(f"bundle public_keys: {exc.message}", code=exc.code) from exc
    return ring


class Rebuilt(NamedTuple):
    """What :func:`rebuild` learnt: the merge result, the bundle's typed view and parsed tree, the keys trusted."""

    result: MergeResult
    bundle: Bundle
    raw: dict[str, Any]
    ring: KeyRing


def rebuild(
    bundle: DocumentSource | Document,
    *,
    trusted_keys: TrustedKeys = None,
    trust_bundle_keys: bool = False,
    verifier: Verifier | None = None,
    workers: int | None = None,
) -> Rebuilt:
    """Rebuild and return everything learnt on the way (used by verification and proofs).

    ``workers``: processes that verify signatures, this one included (1:
    serial; 0: one per CPU; None: one per CPU up to
    :data:`~pith_graph._parallel.pool.MAX_AUTO_WORKERS`; never more than the CPUs;
    negative: :class:`~pith_graph.errors.InputError`). Bundles below
    :data:`~pith_graph._parallel.pool.PARALLEL_MIN_EVENTS` events stay serial. Given
    bytes or a path, helper processes start on a lenient pre-pass of the bytes
    and verify while this process parses and merges. The result is identical
    either way (see :mod:`pith_graph._parallel`).
    """
    count = resolve_workers(workers)
    trusted_keys = reusable_keys(trusted_keys)  # read by the helpers' pre-pass, then by the merge
    data = source_bytes(bundle) if count > 1 and not isinstance(bundle, Document) else None
    started = None if data is None else _start_helpers(data, trusted_keys, trust_bundle_keys, count, verifier)
    executor = None if started is None else started.executor
    try:
        raw, model = load_bundle(bundle if data is None else data)
        data = None  # the bytes read from a path are not needed past the parse (peak memory)
        ring = resolve_keyring(trusted_keys, trust_bundle_keys, model)
        if started is None:
            started = parallel_verifier(raw["events"], ring, workers=count, verifier=verifier)
            executor = started.executor
        verifier, _, cache = started
        with gc_paused():  # the merge builds a large acyclic structure (see gc_paused)
            result = merge_checked(
                raw["events"],
                subject=model.pith_number,
                aliases=raw.get("source_aliases") or (),
                trusted_keys=ring,
                verifier=verifier,
            )
        if cache is not None and cache.inner is not None:
            cache.drain()  # hand every worker verdict to the caller's cache (the store's warm path)
    finally:
        if executor is not None:
            if started is not None and started.cache is not None:
                started.cache.cancel()  # the chunks no worker has started (after an error: all the rest)
            # Not waiting: a chunk still in a worker holds nothing the merge needs any more.
            executor.shutdown(wait=False, cancel_futures=True)
    return Rebuilt(result, model, raw, ring)


def _start_helpers(
    data: bytes,
    trusted_keys: TrustedKeys,
    trust_bundle_keys: bool,
    count: int,
    verifier: Verifier | None = None,
) -> Started | None:
    """Helpers verifying the signatures of the unparsed bundle (None: serial, or too small,
    or left to the path after the strict parse).

    Errors in the caller's keys are not raised here: the strict path raises
    them, after the bundle's own errors, as without the pre-pass.
    """
    if count <= 1:
        return None
    try:
        ring = coerce_ring(trusted_keys)
    except PithGraphError:
        return None
    jobs = prepass_jobs(data, ring, trust_bundle_keys=trust_bundle_keys)
    return None if jobs is None else start_verification(jobs, workers=count, verifier=verifier)


def rebuild_state(
    bundle: DocumentSource | Document,
    *,
    trusted_keys: TrustedKeys = None,
    trust_bundle_keys: bool = False,
    workers: int | None = None,
) -> State:
    """Rebuild the merge-v1 state of a bundle.

    ``bundle`` is bytes, JSON text, a path, or an already-parsed mapping.
    ``trusted_keys`` is a :class:`KeyRing` or an iterable of key entries /
    :class:`TrustedKey` (default: only the pinned registry key); the bundle's
    own ``public_keys`` are trusted only with ``trust_bundle_keys=True``.
    Raises :class:`~pith_graph.errors.InputError` for an unusable bundle;
    defects inside events are reported in the state, never raised.
    ``workers``: processes that rebuild, this one included (default: one per
    CPU, at most 4; 0: one per CPU; 1: serial; never more than the CPUs; negative:
    :class:`~pith_graph.errors.InputError`); bundles below
    :data:`~pith_graph._parallel.pool.PARALLEL_MIN_EVENTS` events stay serial.

    Given bytes or a path, events are parsed, checked and dropped one at a
    time (:func:`pith_graph.documents.split_bundle`), so the decoded tree of
    the whole bundle is never held; with helpers, they run stage 1 (strict
    parse, checks, signatures) on chunks of events from the back while this
    process works from the front and merges
    (:func:`pith_graph._parallel.stage1.start_stage1`). Anything irregular takes the
    :func:`rebuild` path, which raises the error the strict parse finds. The
    result is identical either way.
    """
    count = resolve_workers(workers)  # a bad count is the caller's error: raised before any reading
    trusted_keys = reusable_keys(trusted_keys)  # the full path reads them again after the streaming one
    data = None if isinstance(bundle, Document) else source_bytes(bundle)
    if data is None:
        return rebuild(
            bundle, trusted_keys=trusted_keys, trust_bundle_keys=trust_bundle_keys, workers=count
        ).result.state
    try:
        return _rebuild_bytes(data, trusted_keys, trust_bundle_keys, count)
    except InputError as exc:
        if isinstance(bundle, (str, os.PathLike)):  # a path (source_bytes read it): name the file
            exc.naming(os.fspath(bundle))
        raise


class Streamed(NamedTuple):
    """What a streaming rebuild learnt: the state, the split bundle and the keys it trusted."""

    state: State
    #: The bundle's strictly parsed shell and typed model (``events`` emptied), and its event
    #: texts; its ``state_text`` is left only when the embedded state equals the rebuilt one
    #: byte for byte (:func:`~pith_graph.documents.settle_state`).
    split: SplitBundle
    keyring: KeyRing
    #: ``state.to_json()``, when the bundle embeds a state that was cut out unparsed.
    state_json: bytes | None = None


def _rebuild_bytes(
    data: bytes,
    trusted_keys: TrustedKeys,
    trust_bundle_keys: bool,
    count: int,
    *,
    min_events: int = PARALLEL_MIN_EVENTS,
    min_bytes: int = SCRATCH_MIN_BYTES,
    chunk_size: int | None = None,
) -> State:
    """rebuild_state of a bundle's bytes with ``count`` processes: streaming, else the full path."""
    streamed = stream_rebuild(
        data,
        trusted_keys,
        trust_bundle_keys,
        count,
        min_events=min_events,
        min_bytes=min_bytes,
        chunk_size=chunk_size,
    )
    if streamed is not None:
        return streamed.state
    return rebuild(
        data, trusted_keys=trusted_keys, trust_bundle_keys=trust_bundle_keys, workers=count
    ).result.state


def stream_rebuild(
    data: bytes,
    trusted_keys: TrustedKeys,
    trust_bundle_keys: bool,
    count: int,
    verifier: Verifier | None = None,
    *,
    min_events: int = PARALLEL_MIN_EVENTS,
    min_bytes: int = SCRATCH_MIN_BYTES,
    chunk_size: int | None = None,
    on_split: Callable[[SplitBundle], Callable[[Any], None]] | None = None,
) -> Streamed | None:
    """The streaming rebuild of a bundle's bytes with ``count`` processes (resolved), or
    None when it does not apply or meets a :class:`~pith_graph.errors.PithGraphError`:
    the caller then takes :func:`rebuild`,
    which raises the error the strict parse finds, so that both paths fail alike.

    ``trusted_keys`` must be reusable (:func:`~pith_graph.keys.reusable_keys`): the
    caller reads them again on the full path. ``verifier`` (default: the process's
    backend) checks this process's events; helpers use its backend.

    ``on_split``, given the split bundle, returns a function that receives the
    parsed value of every event, in the bundle's order, when this process parses
    them all (no helpers); otherwise it receives none of them.
    """
    verifier = verifier or Verifier()
    # A thread copies the bytes for helpers while this process splits them.
    with scratch_copy(data, count, min_bytes=min_bytes) or contextlib.nullcontext() as scratch:
        split = split_bundle(data)
        # Helpers only for a bundle that has the events to pay for them (starting a
        # pool costs time: docs/performance.md, "Figures behind the code").
        wanted = scratch is not None and split is not None and len(split.events) >= min_events
        executor = None
        try:
            executor = spawn_helpers(count, verifier.backend.name) if wanted else None
            if split is not None:
                try:
                    state, ring = _rebuild_streaming(
                        split,
                        trusted_keys,
                        trust_bundle_keys,
                        verifier,
                        scratch=scratch,
                        executor=executor,
                        min_events=min_events,
                        chunk_size=chunk_size,
                        on_split=on_split,
                    )
                    rebuilt = None if split.state_text is None else state.to_json()
                    return Streamed(state, settle_state(split, rebuilt), ring, rebuilt)
                except PithGraphError:
                    pass  # the full path reports what is wrong, exactly as without streaming
        finally:
            if executor is not None:
                # Not waiting: helpers that got work were stopped by Stage1Helpers.close().
                executor.shutdown(wait=False, cancel_futures=True)
    return None


def _rebuild_streaming(
    split: SplitBundle,
    trusted_keys: TrustedKeys,
    trust_bundle_keys: bool,
    verifier: Verifier,
    *,
    scratch: ScratchCopy | None = None,
    executor: ProcessPoolExecutor | None = None,
    min_events: int = PARALLEL_MIN_EVENTS,
    chunk_size: int | None = None,
    on_split: Callable[[SplitBundle], Callable[[Any], None]] | None = None,
) -> tuple[State, KeyRing]:
    """rebuild_state over a split bundle; given helpers (``executor``) and a scratch copy of
    the bundle's bytes, the helpers run stage 1 on chunks of events."""
    ring = resolve_keyring(trusted_keys, trust_bundle_keys, split.model)
    subject = split.model.pith_number
    helpers = start_stage1(
        split,
        scratch,
        executor,
        keyring=ring,
        backend_name=verifier.backend.name,
        chunk_size=chunk_size,
        min_events=min_events,
    )
    # Each chunk's unit ids, by chunk: helpers' chunks arrive out of the bundle's order.
    slots: list[list[str]] | None = None if helpers is None else []
    on_value = None if on_split is None or helpers is not None else on_split(split)
    try:
        with gc_paused():  # acyclic structures only (see gc_paused)
            result = merge_copies(
                _copies(split.events, helpers, slots, on_value),
                partial(_inspect_copy, subject),
                subject=subject,
                aliases=split.shell.get("source_aliases") or (),
                trusted_keys=ring,
                verifier=verifier,
                bundle_order=None if slots is None else chain.from_iterable(slots),
            )
            state = result.state
            # The per-unit records are not returned: freed while the collector is still
            # paused, they are not walked by its first pass after the pause.
            del result, slots
    finally:
        if helpers is not None:
            helpers.close()
    return state, ring


_Copy = tuple[msgspec.Raw, Any] | CheckedEvent


def _copies(
    events: list[msgspec.Raw],
    helpers: Stage1Helpers | None,
    slots: list[list[str]] | None = None,
    on_value: Callable[[Any], None] | None = None,
) -> Iterator[tuple[str, _Copy]]:
    """Each event's unit id and either its stage-1 result from a helper, or its text and
    strictly parsed value (which lives until the next one).

    With helpers, chunks come in the order :meth:`Stage1Helpers.chunks` gives them,
    not the bundle's: the merge is a function of the set of copies. ``slots``, if
    given, receives each chunk's unit ids at the chunk's place, so that
    ``chain.from_iterable(slots)`` gives them in the bundle's order. ``on_value``
    (without helpers only) receives each event's parsed value, in order.
    """
    step = STAGE1_CHUNK if helpers is None else helpers.chunk_size
    count = (len(events) + step - 1) // step
    if slots is not None:
        slots[:] = [[] for _ in range(count)]
    chunks = ((index, None) for index in range(count)) if helpers is None else helpers.chunks(count)
    for done, (index, rows) in enumerate(chunks):
        advance(min(done * step, len(events)), len(events))
        texts = events[index * step : (index + 1) * step]
        uids = [] if slots is None else slots[index]
        if rows is None or len(rows) != len(texts):
            for text in texts:
                value = loads(bytes(text), max_depth=MAX_DEPTH - EVENT_DEPTH_OFFSET)
                if on_value is not None:
                    on_value(value)
                uid = unit_id(value)
                uids.append(uid)
                yield uid, (text, value)
            continue
        for text, (uid, reason, progress, facts, signer_json, payload_json) in zip(texts, rows, strict=True):
            uids.append(uid)
            yield uid, CheckedEvent(uid, text, reason, progress, facts, signer_json, payload_json)
    advance(len(events), len(events))


def _inspect_copy(subject: str, uid: str, copy: _Copy) -> CheckedEvent:
    """A helper's result as it is; otherwise inspect_event, keeping the copy's text rather
    than its parsed value (which is dropped)."""
    if isinstance(copy, CheckedEvent):
        return copy
    text, value = copy
    checked = inspect_event(value, subject=subject, uid=uid)
    return CheckedEvent(
        checked.unit_id,
        text,
        checked.reason,
        checked.progress,
        checked.facts,
        checked.signer_json,
        checked.payload_json,
    )
