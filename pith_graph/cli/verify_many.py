"""``pith-graph verify-many``, and the progress bar and options it shares with ``verify``.

Documents are spread over ``--workers`` processes by :mod:`pith_graph._parallel.many`;
results come in the order given. ``verify-many`` prints one line per bundle and
counts a bundle it cannot read as a failure (exit 1); ``verify`` prints full
reports and, as for a single file, stops with exit 2 at the first document it
cannot read. A progress bar goes to stderr when it is a terminal (or with ``--progress``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Final, TextIO

from pith_graph._parallel.many import bundle_paths, verify_many
from pith_graph.cli._common import EXIT_OK, EXIT_PROBLEMS, add_trust_options, add_workers_option, load_ring

__all__ = ["Progress", "add_parallel_options", "cmd_verify_many", "register", "show_progress"]

_BAR_WIDTH: Final = 30


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw the progress bar: ``--progress``/``--no-progress``, else if stderr is a terminal."""
    return bool(args.progress) if args.progress is not None else sys.stderr.isatty()


def add_parallel_options(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` and ``--progress``, shared by ``verify`` and ``verify-many``."""
    add_workers_option(parser)
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: if a terminal)",
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


def cmd_verify_many(args: argparse.Namespace) -> int:
    """``verify-many [--workers N] DIR_OR_FILES...``: one line per bundle, exit 1 on any problem."""
    paths = bundle_paths(args.paths)
    failed = 0
    outcomes = verify_many(
        paths,
        trusted_keys=load_ring(args.trusted_keys),
        trust_bundle_keys=args.trust_bundle_keys,
        workers=args.workers,
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
    parser = subparsers.add_parser(
        "verify-many", help="verify every bundle in directories or files, in parallel"
    )
    parser.add_argument(
        "paths", nargs="+", metavar="DIR_OR_FILES", help="bundle files, or directories (*.json, recursive)"
    )
    add_parallel_options(parser)
    add_trust_options(parser, what="each bundle")
    parser.set_defaults(func=cmd_verify_many)
