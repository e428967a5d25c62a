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
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pith_graph import codes
from pith_graph._parallel.pool import CHUNKS_IN_FLIGHT, ORDERED_CHUNK, ordered_map, resolve_workers
from pith_graph.errors import InputError, PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.report import Report
from pith_graph.verify import verify_bundle, verify_document

__all__ = [
    "BundleOutcome",
    "bundle_outcome",
    "bundle_paths",
    "verify_documents",
    "verify_many",
    "walk_bundle_paths",
]

_T = TypeVar("_T")


class BundleOutcome(NamedTuple):
    """What ``verify-many`` says about one bundle: its path, whether it verified, and one line of summary."""

    path: str
    ok: bool
    line: str
    #: The bundle's report (an unusable one for a file that is no bundle).
    report: Report | None = None


def walk_bundle_paths(arguments: Iterable[str]) -> Iterator[Path]:
    """:func:`bundle_paths`, one path at a time: the files named, and each named directory
    walked in sorted order (the same order), never listing the whole tree at once.

    A mirror's directory holds millions of bundles; only one directory's entries
    are held at a time. Raises as :func:`bundle_paths` does, when it is reached.
    """
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = False
            for inside in _walk(path):
                found = True
                yield inside
            if not found:
                raise InputError(
                    f"{argument}: no *.json documents in this directory", code=codes.E_NO_DOCUMENTS
                )
        elif path.exists():
            yield path
        else:
            raise InputError(f"{argument}: no such file or directory", code=codes.E_IO)


def _walk(directory: Path) -> Iterator[Path]:
    """Every ``*.json`` file under ``directory``, in the order ``sorted(rglob("*.json"))`` gives."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        raise InputError(f"{directory}: {exc.strerror or exc}", code=codes.E_IO) from exc
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):  # as rglob: a linked directory is not entered (no loops)
            yield from _walk(Path(entry.path))
        elif entry.name.endswith(".json") and entry.is_file():
            yield Path(entry.path)


def bundle_paths(arguments: Iterable[str]) -> list[Path]:
    """Files named directly, plus every ``*.json`` under named directories (sorted, recursive).

    Raises :class:`~pith_graph.errors.InputError`: ``io_error`` for a name that
    does not exist, ``no_documents`` for a directory without any ``*.json`` file
    (a mistyped directory must not pass as one whose documents are all good).
    """
    return list(walk_bundle_paths(arguments))


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
    # Chunks of names, a bounded number in flight: one task per small bundle would cost
    # more in messages than its verification, and a million futures at once is not flat memory.
    # Few names: one per task, so that each result comes back as soon as it is done.
    size = max(1, min(ORDERED_CHUNK, len(names) // (count * CHUNKS_IN_FLIGHT * 4)))
    yield from ordered_map(task, names, count, *args, 1, chunk=size)


def _verify_document(
    path: str, ring: KeyRing | None, trust_bundle_keys: bool, workers: int
) -> Report | PithGraphError:
    """A document's report, or its error (returned, not raised: the caller decides when to raise it)."""
    try:
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
    names = [str(p) for p in paths]
    # The ring goes to helpers as it is (pickled once per chunk): building it from entries
    # costs more than verifying a small bundle.
    outcomes = _in_order(_verify_document, names, resolve_workers(workers), trusted_keys, trust_bundle_keys)
    with contextlib.closing(outcomes):  # an error stops the other documents' processes now
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, Report):
                yield outcome
                continue
            raise outcome.naming(name)


def _verify_one(path: str, ring: KeyRing | None, trust_bundle_keys: bool, workers: int) -> BundleOutcome:
    """Verify one bundle; unusable input becomes a failed outcome, never an exception."""
    try:
        # workers > 1: helpers verify this bundle's signatures (rebuild's parallel path).
        report = verify_bundle(
            Path(path), trusted_keys=ring, trust_bundle_keys=trust_bundle_keys, workers=workers
        )
    except PithGraphError as exc:
        report = Report.unusable("bundle", path, exc)
    return bundle_outcome(path, report)


def bundle_outcome(name: str, report: Report) -> BundleOutcome:
    """``verify-many``'s outcome for the bundle ``name`` and its report: OK, FAILED with its
    first problem, or ERROR for unusable input, with the bundle's counts."""
    if not report.usable:
        error = report.problems[0]
        return BundleOutcome(name, False, f"{name}: ERROR [{error.code}] {error.message}", report)
    facts = report.facts
    counts = f"{facts.get('events')} events, {facts.get('invalid_events')} invalid, {facts.get('equivocations')} forks"
    if report.ok:
        return BundleOutcome(name, True, f"{name}: OK ({counts})", report)
    first = report.errors[0]
    return BundleOutcome(
        name, False, f"{name}: FAILED ({len(report.errors)} problem(s); {counts}); first: {first}", report
    )


def verify_many(
    paths: list[Path],
    *,
    trusted_keys: KeyRing | None = None,
    trust_bundle_keys: bool = False,
    workers: int | None = None,
) -> Generator[BundleOutcome, None, None]:
    """Verify ``paths``, yielding outcomes in the order given."""
    yield from _in_order(
        _verify_one, [str(p) for p in paths], resolve_workers(workers), trusted_keys, trust_bundle_keys
    )
