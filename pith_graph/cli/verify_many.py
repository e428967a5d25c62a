"""``pith-graph verify-many``, and the progress bar and options it shares with ``verify``.

Documents are spread over ``--workers`` processes by :mod:`pith_graph._parallel.many`;
results come in the order given. ``verify-many`` prints one line per bundle,
``verify`` full reports; both go on past a file they cannot use and exit 2
at the end if there was one. A progress bar goes to stderr when it is a
terminal (or with ``--progress``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any, Final, TextIO

from pith_graph._parallel.many import BundleOutcome, bundle_outcome, bundle_paths, verify_many
from pith_graph._progress import reporting
from pith_graph.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNUSABLE,
    STDIN,
    add_trust_options,
    add_workers_option,
    display_name,
    input_source,
    load_ring,
)
from pith_graph.cli._output import JSON_HELP, emit, envelope
from pith_graph.errors import PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.report import Report
from pith_graph.verify import verify_bundle

__all__ = [
    "Progress",
    "add_parallel_options",
    "add_progress_option",
    "cmd_verify_many",
    "register",
    "show_progress",
]

_BAR_WIDTH: Final = 30


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw the progress bar: ``--progress``/``--no-progress``, else if stderr is a terminal."""
    return bool(args.progress) if args.progress is not None else sys.stderr.isatty()


def add_progress_option(parser: argparse.ArgumentParser, *, what: str = "documents and events") -> None:
    """``--progress``/``--no-progress``: the bar of :class:`Progress` on stderr."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"progress bar of the {what} done, on stderr (default: only when stderr is a terminal)",
    )


def add_parallel_options(parser: argparse.ArgumentParser, *, what: str = "documents and events") -> None:
    """``--workers N`` and ``--progress``, shared by ``state``, ``verify`` and ``verify-many``."""
    add_workers_option(parser)
    add_progress_option(parser, what=what)


class Progress:
    """The progress bar on ``stream`` (drawn only when ``shown``): ``total`` documents, and the
    events of the one being worked on here (:meth:`events`, the hook of :mod:`pith_graph._progress`).

    With ``total`` None only the events are counted (one bundle). Use as a context
    manager: leaving it midway (an error, an interrupt) ends the bar's line, so
    that the one-line message that follows has a line of its own. Drawn by this
    module rather than by a dependency: a bar and two counts are all it takes.
    """

    def __init__(self, total: int | None, stream: TextIO, *, shown: bool) -> None:
        self.total = total
        self.stream = stream
        self.shown = shown
        self._done = 0
        self._width = 0
        self._partial = False  # a bar is on the line, not yet ended

    def update(self, done: int) -> None:
        """Draw the bar for ``done`` of ``total`` documents (ending its line at the last)."""
        self._done = done
        total = self.total or 0
        self._draw(done, total, f"{done}/{total}", last=done == total)

    def events(self, done: int, total: int) -> None:
        """Draw the count of events through in the current document (see :mod:`pith_graph._progress`)."""
        if self.total is None:
            self._draw(done, total, f"{done}/{total} events", last=False)
        else:
            self._draw(
                self._done, self.total, f"{self._done}/{self.total} ({done}/{total} events)", last=False
            )

    def _draw(self, done: int, total: int, counts: str, *, last: bool) -> None:
        if not self.shown:
            return
        filled = _BAR_WIDTH * done // total if total else _BAR_WIDTH
        text = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {counts}"
        self.stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self._partial = not last
        if last:
            self.stream.write("\n")
        self.stream.flush()

    def clear(self) -> None:
        """Blank the bar's line, so that a line of output can take it."""
        if self.shown and self._partial:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._partial = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._partial:
            self.stream.write("\n")
            self.stream.flush()
            self._partial = False


def _bundles(arguments: list[str]) -> list[Path | bytes]:
    """The bundles named, in order: files, every ``*.json`` of a directory (as
    :func:`~pith_graph._parallel.many.bundle_paths`), and the bytes of standard input for ``-``."""
    found: list[Path | bytes] = []
    for argument in arguments:
        found += [input_source(argument)] if argument == STDIN else bundle_paths([argument])
    return found


def _stdin_outcome(
    data: bytes, ring: KeyRing | None, trust_bundle_keys: bool, workers: int | None
) -> BundleOutcome:
    """The outcome of the bundle read from standard input, verified here (helpers check its
    signatures), in the line format of :func:`~pith_graph._parallel.many.verify_many`."""
    name = display_name(STDIN)
    try:
        report = verify_bundle(data, trusted_keys=ring, trust_bundle_keys=trust_bundle_keys, workers=workers)
    except PithGraphError as exc:
        report = Report.unusable("bundle", name, exc)
    return bundle_outcome(name, dataclasses.replace(report, source=name))


def cmd_verify_many(args: argparse.Namespace) -> int:
    """``verify-many [--workers N] DIR_OR_FILES...``: one line per bundle.

    ``-`` is one bundle read from standard input, verified in its place in the
    order. Exit 2 if any file is not a usable bundle (a record or a state
    included), else 1 if any bundle has problems, else 0.
    """
    bundles = _bundles(args.paths)
    ring = load_ring(args.trusted_keys)
    outcomes = verify_many(
        [item for item in bundles if isinstance(item, Path)],
        trusted_keys=ring,
        trust_bundle_keys=args.trust_bundle_keys,
        workers=args.workers,
    )
    reports: list[dict[str, Any]] = []
    failed = unusable = 0
    with (
        Progress(len(bundles), sys.stderr, shown=show_progress(args)) as bar,
        contextlib.closing(outcomes),
        reporting(bar.events),
    ):
        for done, item in enumerate(bundles, start=1):
            if isinstance(item, Path):
                outcome = next(outcomes)
            else:
                outcome = _stdin_outcome(item, ring, args.trust_bundle_keys, args.workers)
            failed += not outcome.ok
            unusable += outcome.report is not None and not outcome.report.usable
            if outcome.report is not None:
                reports.append(outcome.report.to_dict())
            if not args.json:
                bar.clear()
                print(outcome.line, flush=True)
            bar.update(done)
    exit_code = EXIT_UNUSABLE if unusable else EXIT_PROBLEMS if failed else EXIT_OK
    print(
        f"{len(bundles)} bundle(s): {len(bundles) - failed} ok, {failed - unusable} with problems, {unusable} unusable",
        file=sys.stderr,
    )
    if args.json:
        emit(envelope("verify-many", exit_code, ok=exit_code == EXIT_OK, documents=reports))
    return exit_code


def register(subparsers: Any) -> None:
    """Add the ``verify-many`` subcommand."""
    parser = subparsers.add_parser(
        "verify-many", help="verify every bundle in directories or files, in parallel"
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="DIR_OR_FILES",
        help="bundle files, directories (*.json, recursive), - for one bundle from stdin",
    )
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    add_parallel_options(parser)
    add_trust_options(parser, what="each bundle")
    parser.set_defaults(func=cmd_verify_many)
