"""The ``pith-graph`` command line.

One function per subcommand, one module per group of them (``documents``:
state, verify, inspect; ``store``; ``vectors``; ``proof``; ``verify_many``),
each adding its own with ``register``; errors are caught once, in :func:`main`.
Exit codes: 0 all good, 1 verification found problems, 2 unusable input (one
line on stderr, ``pith-graph: error[CODE]: FILE: message``, never a
traceback), 130 interrupted. ``--json`` output: :mod:`pith_graph.cli._output`;
everything is listed in docs/cli.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Final

from _pith_graph_command import interrupted_while_starting
from pith_graph import codes
from pith_graph.cli import documents, proof, store, vectors, verify_many
from pith_graph.cli._common import EXIT_UNUSABLE, print_error, stdin_once
from pith_graph.cli._output import command_of, emit, envelope, error_member
from pith_graph.errors import InputError, PithGraphError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from _typeshed import SupportsWrite

__all__ = ["EXIT_INTERRUPTED", "build_parser", "main"]

#: Exit code after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors become one line and exit code 2 via PithGraphError."""

    def error(self, message: str) -> Any:
        raise InputError(f"{self.prog}: {message}", code=codes.E_USAGE)

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse's own swallows OSError: `--help`/`--version` into a full disk or a closed
        # pipe then exited 0 with nothing written. Raised, it is an output error (main).
        if message:
            (file or sys.stderr).write(message)


def _version() -> str:
    try:
        return version("pith-graph")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="pith-graph", description="Rebuild and verify Pith open-graph documents (merge-v1)."
    )
    parser.add_argument("--version", action="version", version=f"pith-graph {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for group in (documents, store, vectors, proof, verify_many):
        group.register(sub)
    # issue 17: `mirror pull|sync|peers` (pith_graph/mirror/_sync_cli.py); the network
    # stack is only imported by those commands.
    from pith_graph.mirror import _sync_cli

    _sync_cli.register(sub)
    # issue 16: `serve` and `keygen` (pith_graph/mirror/_cli.py), imported here for the same reason.
    from pith_graph.mirror import _cli as _serve_cli

    _serve_cli.register(sub)
    return parser


@contextmanager
def _one_interrupt() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt once; a second one while stopping helpers is ignored,
    so that the clean-up (stopping helper processes) runs to its end."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, interrupted_while_starting)
    ):
        yield  # not the main thread's default handling: leave it as the caller set it
        return

    def interrupted(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _quiet_stdout() -> None:
    """After stdout failed (closed pipe, full disk): point it at /dev/null, so that the
    interpreter's own flush at exit neither fails again nor prints a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - stdout is not a file descriptor
        pass


def _fail(args: argparse.Namespace | None, error: PithGraphError) -> int:
    print_error(error.code, error.message)
    if args is not None and getattr(args, "json", False) and error.code != codes.E_OUTPUT:
        try:
            emit(envelope(command_of(args), EXIT_UNUSABLE, ok=False, error=error_member(error)))
        except OSError:
            _quiet_stdout()
    return EXIT_UNUSABLE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args: argparse.Namespace | None = None
    try:
        with _one_interrupt(), stdin_once():
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as done:
                # --help and --version: argparse prints, then exits. Their output is this
                # command's output, and an error writing it is ours too (below).
                if done.code not in (None, 0):  # pragma: no cover - usage errors raise InputError (_Parser)
                    raise
                sys.stdout.flush()
                return 0
            result: int = args.func(args)
            sys.stdout.flush()  # an output error is this command's failure, not the interpreter's at exit
        return result
    except PithGraphError as exc:
        return _fail(args, exc)
    except KeyboardInterrupt:
        print("pith-graph: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        # Reading errors are converted where they arise (into InputError), so what is left
        # is writing the output: a closed pipe, a full disk.
        _quiet_stdout()
        return _fail(
            args, InputError(f"<stdout>: cannot write the output: {exc.strerror or exc}", code=codes.E_OUTPUT)
        )
