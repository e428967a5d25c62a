"""The ``pith-graph`` command line.

One function per subcommand, one module per group of them (``documents``:
state, verify, inspect; ``store``; ``vectors``; ``proof``; ``verify_many``),
each adding its own with ``register``; errors are caught once, in :func:`main`.
Exit codes: 0 all good, 1 verification found problems, 2 unusable input (one
line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pith_graph import codes
from pith_graph.cli import documents, proof, store, vectors, verify_many
from pith_graph.cli._common import EXIT_OK, EXIT_UNUSABLE
from pith_graph.errors import InputError, PithGraphError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors become one line and exit code 2 via PithGraphError."""

    def error(self, message: str) -> Any:
        raise InputError(f"{self.prog}: {message}", code=codes.E_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="pith-graph", description="Rebuild and verify Pith open-graph documents (merge-v1)."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        result: int = args.func(args)
        return result
    except PithGraphError as exc:
        print(f"pith-graph: error[{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("pith-graph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
