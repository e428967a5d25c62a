"""``pith-graph verify-many``: verify every bundle under directories or in files.

Many bundles are spread over ``--workers`` processes, one bundle per task; with
fewer bundles than workers, each bundle's signatures are verified in parallel
instead (:mod:`pith_graph.parallel`). Either way each verdict is the one
:func:`pith_graph.verify.verify_bundle` gives serially. One line per bundle on
stdout, in the order given; a progress bar on stderr when it is a terminal (or
with ``--progress``). Exit 1 if any bundle has problems or cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final, TextIO

from pith_graph import codes
from pith_graph._cli_common import EXIT_OK, EXIT_PROBLEMS, add_trust_options, load_ring
from pith_graph.errors import InputError, PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.parallel import process_context, resolve_workers
from pith_graph.verify import verify_bundle

__all__ = ["BundleOutcome", "bundle_paths", "register", "verify_many"]

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


def _progress(done: int, total: int, stream: TextIO) -> None:
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
    count = resolve_workers(workers)
    entries = None if trusted_keys is None else trusted_keys.to_entries()
    names = [str(p) for p in paths]
    if count <= 1 or len(paths) < count:
        # Few bundles: parallelism inside each bundle (serial below the break-even).
        for name in names:
            yield _verify_one(name, entries, trust_bundle_keys, count)
        return
    with ProcessPoolExecutor(max_workers=count, mp_context=process_context()) as executor:
        futures = [executor.submit(_verify_one, name, entries, trust_bundle_keys, 1) for name in names]
        for future in futures:
            yield future.result()


def cmd_verify_many(args: argparse.Namespace) -> int:
    """``verify-many [--workers N] DIR_OR_FILES...``: one line per bundle, exit 1 on any problem."""
    paths = bundle_paths(args.paths)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
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
            _progress(done, len(paths), sys.stderr)
    print(f"{len(paths)} bundle(s), {failed} with problems", file=sys.stderr)
    return EXIT_OK if failed == 0 else EXIT_PROBLEMS


def register(subparsers: Any) -> None:
    """Add the ``verify-many`` subcommand."""
    parser = subparsers.add_parser("verify-many", help="verify every bundle in directories or files, in parallel")
    parser.add_argument("paths", nargs="+", metavar="DIR_OR_FILES", help="bundle files, or directories (*.json, recursive)")
    parser.add_argument("--workers", type=int, default=None, help="processes (0: one per CPU; default: one per CPU, at most 4; 1: serial)")
    add_trust_options(parser, what="each bundle")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar on stderr (default: if a terminal)"
    )
    parser.set_defaults(func=cmd_verify_many)
