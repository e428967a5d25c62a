"""Verifying many documents: ``pith-graph verify-many``, and ``pith-graph verify``'s
directories and ``--workers``.

Many documents are spread over ``--workers`` processes, one document per task;
with fewer documents than workers, each bundle gets the helpers of
:mod:`pith_graph.parallel` instead. Either way each verdict is the one
:func:`pith_graph.verify.verify_document` gives serially, and results come in
the order given. ``verify-many`` prints one line per bundle and counts a bundle
it cannot read as a failure (exit 1); ``verify`` prints full reports and, as
for a single file, stops with exit 2 at the first document it cannot read. A
progress bar goes to stderr when it is a terminal (or with ``--progress``).

Nothing named is skipped: a directory without documents is an error, and when
a worker process dies (killed by a signal, or by the system for memory) the
documents it left are verified here, one at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

from pith_graph import codes
from pith_graph._cli_common import EXIT_OK, EXIT_PROBLEMS, add_trust_options, add_workers_option, load_ring
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError
from pith_graph.keys import KeyRing
from pith_graph.parallel import POOL_ERRORS, resolve_workers, stop_pool, worker_pool
from pith_graph.report import Report
from pith_graph.verify import verify_bundle, verify_document

__all__ = [
    "BundleOutcome",
    "Progress",
    "add_parallel_options",
    "bundle_paths",
    "register",
    "show_progress",
    "verify_documents",
    "verify_many",
]

_T = TypeVar("_T")

_BAR_WIDTH: Final = 30

#: (path, ok, one-line summary) of one bundle.
BundleOutcome = tuple[str, bool, str]


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
                raise InputError(f"{argument}: no *.json documents in this directory", code=codes.E_NO_DOCUMENTS)
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{argument}: no such file or directory", code=codes.E_IO)
    return found


_ERRORS: Final[dict[str, type[PithGraphError]]] = {
    cls.__name__: cls for cls in (PithGraphError, InputError, TrustError, StoreError)
}


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
        executor = worker_pool(count)
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
) -> Report | tuple[str, str, str]:
    """A document's report, or its error as (class name, code, message): errors whose
    constructors take keywords do not survive pickling between processes."""
    try:
        ring = None if ring_entries is None else KeyRing.from_entries(ring_entries)
        return verify_document(Path(path), trusted_keys=ring, trust_bundle_keys=trust_bundle_keys, workers=workers)
    except PithGraphError as exc:
        return type(exc).__name__, exc.code, exc.message


def verify_documents(
    paths: list[Path],
    *,
    trusted_keys: KeyRing | None = None,
    trust_bundle_keys: bool = False,
    workers: int | None = None,
) -> Generator[Report, None, None]:
    """Verify ``paths`` (any Pith documents), yielding reports in the order given.

    Raises the error of the first document that cannot be verified, when it is
    reached, its message naming the document.
    """
    entries = None if trusted_keys is None else trusted_keys.to_entries()
    names = [str(p) for p in paths]
    outcomes = _in_order(_verify_document, names, resolve_workers(workers), entries, trust_bundle_keys)
    with contextlib.closing(outcomes):  # an error stops the other documents' processes now
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, Report):
                yield outcome
                continue
            kind, code, message = outcome
            raise _ERRORS.get(kind, PithGraphError)(message if name in message else f"{name}: {message}", code=code)


def _verify_one(path: str, ring_entries: list[dict[str, Any]] | None, trust_bundle_keys: bool, workers: int) -> BundleOutcome:
    """Verify one bundle; unusable input becomes a failed outcome, never an exception."""
    try:
        ring = None if ring_entries is None else KeyRing.from_entries(ring_entries)
        # workers > 1: helpers verify this bundle's signatures (rebuild's parallel path).
        report = verify_bundle(Path(path), trusted_keys=ring, trust_bundle_keys=trust_bundle_keys, workers=workers)
    except PithGraphError as exc:
        return path, False, f"{path}: ERROR [{exc.code}] {exc.message}"
    facts = report.facts
    counts = f"{facts.get('events')} events, {facts.get('invalid_events')} invalid, {facts.get('equivocations')} forks"
    if report.ok:
        return path, True, f"{path}: OK ({counts})"
    first = report.errors[0]
    return path, False, f"{path}: FAILED ({len(report.errors)} problem(s); {counts}); first: {first}"


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw the progress bar: ``--progress``/``--no-progress``, else if stderr is a terminal."""
    return bool(args.progress) if args.progress is not None else sys.stderr.isatty()


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` and ``--progress``, shared by ``verify`` and ``verify-many``."""
    add_workers_option(parser)
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar on stderr (default: if a terminal)"
    )


class Progress:
    """The progress bar of ``total`` documents on ``stream`` (drawn only when ``shown``).

    Use as a context manager: leaving it midway (an error, an interrupt) ends
    the bar's line, so that the one-line message that follows has a line of its own.
    """

    def __init__(self, total: int, stream: TextIO, *, shown: bool) -> None:
        self.total = total
        self.stream = stream
        self.shown = shown
        self._partial = False  # a bar is on the line, not yet ended

    def update(self, done: int) -> None:
        """Draw the bar for ``done`` of ``total`` (ending its line at the last)."""
        if not self.shown:
            return
        filled = _BAR_WIDTH * done // self.total if self.total else _BAR_WIDTH
        self.stream.write(f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{self.total}")
        self._partial = done != self.total
        if not self._partial:
            self.stream.write("\n")
        self.stream.flush()

    def clear(self) -> None:
        """Blank the bar's line, so that a line of output can take it."""
        if self.shown and self._partial:
            self.stream.write("\r" + " " * (_BAR_WIDTH + 24) + "\r")
            self.stream.flush()
            self._partial = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._partial:
            self.stream.write("\n")
            self.stream.flush()
            self._partial = False


def verify_many(
    paths: list[Path],
    *,
    trusted_keys: KeyRing | None = None,
    trust_bundle_keys: bool = False,
    workers: int | None = None,
) -> Generator[BundleOutcome, None, None]:
    """Verify ``paths``, yielding outcomes in the order given."""
    entries = None if trusted_keys is None else trusted_keys.to_entries()
    yield from _in_order(_verify_one, [str(p) for p in paths], resolve_workers(workers), entries, trust_bundle_keys)


def cmd_verify_many(args: argparse.Namespace) -> int:
    """``verify-many [--workers N] DIR_OR_FILES...``: one line per bundle, exit 1 on any problem."""
    paths = bundle_paths(args.paths)
    failed = 0
    outcomes = verify_many(
        paths, trusted_keys=load_ring(args.trusted_keys), trust_bundle_keys=args.trust_bundle_keys, workers=args.workers
    )
    with Progress(len(paths), sys.stderr, shown=show_progress(args)) as bar, contextlib.closing(outcomes):
        for done, (_path, ok, line) in enumerate(outcomes, start=1):
            failed += not ok
            bar.clear()
            print(line, flush=True)
            bar.update(done)
    print(f"{len(paths)} bundle(s), {failed} with problems", file=sys.stderr)
    return EXIT_OK if failed == 0 else EXIT_PROBLEMS


def register(subparsers: Any) -> None:
    """Add the ``verify-many`` subcommand."""
    parser = subparsers.add_parser("verify-many", help="verify every bundle in directories or files, in parallel")
    parser.add_argument("paths", nargs="+", metavar="DIR_OR_FILES", help="bundle files, or directories (*.json, recursive)")
    add_parallel_options(parser)
    add_trust_options(parser, what="each bundle")
    parser.set_defaults(func=cmd_verify_many)
