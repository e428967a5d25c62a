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
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

from pith_graph import codes
from pith_graph._cli_common import EXIT_OK, EXIT_PROBLEMS, add_trust_options, load_ring
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError
from pith_graph.keys import KeyRing
from pith_graph.parallel import process_context, resolve_workers
from pith_graph.report import Report
from pith_graph.verify import verify_bundle, verify_document

__all__ = [
    "BundleOutcome",
    "add_parallel_options",
    "bundle_paths",
    "progress",
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
    """Files named directly, plus every ``*.json`` under named directories (sorted, recursive)."""
    found: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{argument}: no such file or directory", code=codes.E_IO)
    return found


_ERRORS: Final[dict[str, type[PithGraphError]]] = {
    cls.__name__: cls for cls in (PithGraphError, InputError, TrustError, StoreError)
}


def _in_order(task: Callable[..., _T], names: list[str], count: int, *args: Any) -> Iterator[_T]:
    """``task(name, *args, workers)`` for each name, in order: one name per process when there
    are at least ``count`` names, otherwise here with ``count`` workers for each."""
    if count <= 1 or len(names) < count:
        for name in names:
            yield task(name, *args, count)
        return
    with ProcessPoolExecutor(max_workers=count, mp_context=process_context()) as executor:
        futures = [executor.submit(task, name, *args, 1) for name in names]
        for future in futures:
            yield future.result()


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
) -> Iterator[Report]:
    """Verify ``paths`` (any Pith documents), yielding reports in the order given.

    Raises the error of the first document that cannot be verified, when it is reached.
    """
    entries = None if trusted_keys is None else trusted_keys.to_entries()
    names = [str(p) for p in paths]
    for outcome in _in_order(_verify_document, names, resolve_workers(workers), entries, trust_bundle_keys):
        if isinstance(outcome, Report):
            yield outcome
        else:
            kind, code, message = outcome
            raise _ERRORS.get(kind, PithGraphError)(message, code=code)


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
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (0: one per CPU; default: one per CPU, at most 4; 1: serial)"
    )
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar on stderr (default: if a terminal)"
    )


def progress(done: int, total: int, stream: TextIO) -> None:
    """Draw the progress bar for ``done`` of ``total``."""
    filled = _BAR_WIDTH * done // total if total else _BAR_WIDTH
    stream.write(f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{total}")
    if done == total:
        stream.write("\n")
    stream.flush()


def verify_many(
    paths: list[Path],
    *,
    trusted_keys: KeyRing | None = None,
    trust_bundle_keys: bool = False,
    workers: int | None = None,
) -> Iterator[BundleOutcome]:
    """Verify ``paths``, yielding outcomes in the order given."""
    entries = None if trusted_keys is None else trusted_keys.to_entries()
    yield from _in_order(_verify_one, [str(p) for p in paths], resolve_workers(workers), entries, trust_bundle_keys)


def cmd_verify_many(args: argparse.Namespace) -> int:
    """``verify-many [--workers N] DIR_OR_FILES...``: one line per bundle, exit 1 on any problem."""
    paths = bundle_paths(args.paths)
    show = show_progress(args)
    failed = 0
    for done, (_path, ok, line) in enumerate(
        verify_many(
            paths,
            trusted_keys=load_ring(args.trusted_keys),
            trust_bundle_keys=args.trust_bundle_keys,
            workers=args.workers,
        ),
        start=1,
    ):
        failed += not ok
        if show:
            sys.stderr.write("\r" + " " * (_BAR_WIDTH + 24) + "\r")
        print(line, flush=True)
        if show:
            progress(done, len(paths), sys.stderr)
    print(f"{len(paths)} bundle(s), {failed} with problems", file=sys.stderr)
    return EXIT_OK if failed == 0 else EXIT_PROBLEMS


def register(subparsers: Any) -> None:
    """Add the ``verify-many`` subcommand."""
    parser = subparsers.add_parser("verify-many", help="verify every bundle in directories or files, in parallel")
    parser.add_argument("paths", nargs="+", metavar="DIR_OR_FILES", help="bundle files, or directories (*.json, recursive)")
    add_parallel_options(parser)
    add_trust_options(parser, what="each bundle")
    parser.set_defaults(func=cmd_verify_many)
