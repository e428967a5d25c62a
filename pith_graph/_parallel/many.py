"""Many documents at once, one per helper process (``pith-graph verify``, ``verify-many``).

With at least as many documents as workers, each document goes to a process of
its own; with fewer, each bundle gets the helpers of
:mod:`pith_graph._parallel.stage1` instead. Either way each verdict is the one
:func:`pith_graph.verify.verify_document` gives serially, and results come in
the order given. Nothing named is skipped: a directory without documents is an
error, and when a worker process dies (killed by a signal, or by the system for
memory) the documents it left are verified here, one at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pith_graph import codes
from pith_graph._parallel import pool
from pith_graph._parallel.pool import POOL_ERRORS, resolve_workers, stop_pool
from pith_graph.errors import InputError, PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.report import Report
from pith_graph.verify import verify_bundle, verify_document

__all__ = ["BundleOutcome", "bundle_paths", "verify_documents", "verify_many"]

_T = TypeVar("_T")


class BundleOutcome(NamedTuple):
    """What ``verify-many`` says about one bundle: its path, whether it verified, and one line of summary."""

    path: str
    ok: bool
    line: str
    #: The bundle's report (an unusable one for a file that is no bundle).
    report: Report | None = None


def bundle_paths(arguments: Iterable[str]) -> list[Path]:
    """Files named directly, plus every ``*.json`` under named directories (sorted, recursive).

    Raises :class:`~pith_graph.errors.InputError`: ``io_error`` for a name that
    does not exist, ``no_documents`` for a directory without any ``*.json`` file
    (a mistyped directory must not pass as one whose documents are all good).
    """
    found: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not inside:
                raise InputError(
                    f"{argument}: no *.json documents in this directory", code=codes.E_NO_DOCUMENTS
                )
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{argument}: no such file or directory", code=codes.E_IO)
    return found


def _in_order(task: Callable[..., _T], names: list[str], count: int, *args: Any) -> Generator[_T, None, None]:
    """``task(name, *args, workers)`` for each name, in order: one name per process when there
    are at least ``count`` names, otherwise here with ``count`` workers for each.

    Closing the iterator early (the caller met an error, or an interrupt) stops
    the processes at once: each may be in the middle of a large document.
    """
    if count <= 1 or len(names) < count:
        for name in names:
            yield task(name, *args, count)
        return
    try:
        executor = pool.worker_pool(count)
    except POOL_ERRORS:  # no process can be started here: all of them here, one at a time
        for name in names:
            yield task(name, *args, 1)
        return
    done = 0
    try:
        futures = [executor.submit(task, name, *args, 1) for name in names]
        for future in futures:
            outcome = future.result()
            yield outcome
            done += 1
    except POOL_ERRORS:  # BrokenProcessPool included
        # A worker (or the forkserver) died: the pool is unusable, and nothing named may be
        # lost. The documents not yet given are verified here.
        stop_pool(executor)
        for name in names[done:]:
            yield task(name, *args, 1)
    finally:
        stop_pool(executor)


def _verify_document(
    path: str, ring_entries: list[dict[str, Any]] | None, trust_bundle_keys: bool, workers: int
) -> Report | PithGraphError:
    """A document's report, or its error (returned, not raised: the caller decides when to raise it)."""
    try:
        ring = None if ring_entries is None else KeyRing.from_entries(ring_entries)
        return verify_document(
            Path(path), trusted_keys=ring, trust_bundle_keys=trust_bundle_keys, workers=workers
        )
    except PithGraphError as exc:
        return exc


def verify_documents(
    paths: list[Path],
    *,
    trusted_keys: KeyRing | None = None,
    trust_bundle_keys: bool = False,
    workers: int | None = None,
) -> Generator[Report, None, None]:
    """Verify ``paths`` (any Pith documents), yielding reports in the order given.

    A document that cannot be read gives an unusable report (see
    :mod:`pith_graph.verify`); only the caller's own errors (trusted keys) raise.
    """
    entries = None if trusted_keys is None else trusted_keys.to_entries()
    names = [str(p) for p in paths]
    outcomes = _in_order(_verify_document, names, resolve_workers(workers), entries, trust_bundle_keys)
    with contextlib.closing(outcomes):  # an error stops the other documents' processes now
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, Report):
                yield outcome
                continue
            raise outcome.naming(name)


def _verify_one(
    path: str, ring_entries: list[dict[str, Any]] | None, trust_bundle_keys: bool, workers: int
) -> BundleOutcome:
    """Verify one bundle; unusable input becomes a failed outcome, never an exception."""
    try:
        ring = None if ring_entries is None else KeyRing.from_entries(ring_entries)
        # workers > 1: helpers verify this bundle's signatures (rebuild's parallel path).
        report = verify_bundle(
            Path(path), trusted_keys=ring, trust_bundle_keys=trust_bundle_keys, workers=workers
        )
    except PithGraphError as exc:
        report = Report.unusable("bundle", path, exc)
    if not report.usable:
        error = report.problems[0]
        return BundleOutcome(path, False, f"{path}: ERROR [{error.code}] {error.message}", report)
    facts = report.facts
    counts = f"{facts.get('events')} events, {facts.get('invalid_events')} invalid, {facts.get('equivocations')} forks"
    if report.ok:
        return BundleOutcome(path, True, f"{path}: OK ({counts})", report)
    first = report.errors[0]
    return BundleOutcome(
        path, False, f"{path}: FAILED ({len(report.errors)} problem(s); {counts}); first: {first}", report
    )


def verify_many(
    paths: list[Path],
    *,
    trusted_keys: KeyRing | None = None,
    trust_bundle_keys: bool = False,
    workers: int | None = None,
) -> Generator[BundleOutcome, None, None]:
    """Verify ``paths``, yielding outcomes in the order given."""
    entries = None if trusted_keys is None else trusted_keys.to_entries()
    yield from _in_order(
        _verify_one, [str(p) for p in paths], resolve_workers(workers), entries, trust_bundle_keys
    )
