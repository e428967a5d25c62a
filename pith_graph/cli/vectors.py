"""``pith-graph vectors write|run``: the conformance corpus.

Handlers return the exit code (0 all good, 1 a case failed); unusable input
raises a :class:`~pith_graph.errors.PithGraphError`, which
:func:`pith_graph.cli.main` prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pith_graph.cli._common import EXIT_OK, EXIT_PROBLEMS, command_line, non_negative_int, positive_float

__all__ = ["cmd_vectors_path", "cmd_vectors_run", "cmd_vectors_write", "register"]


def cmd_vectors_path(args: argparse.Namespace) -> int:
    """``vectors path``: where the installed package keeps the corpus (and, with ``--inputs``, its inputs)."""
    from pith_graph.conformance.corpus import corpus_path, default_fixtures

    print(default_fixtures() if args.inputs else corpus_path())
    return EXIT_OK


def cmd_vectors_write(args: argparse.Namespace) -> int:
    """``vectors write DIR``: (re)generate the corpus, byte-deterministically."""
    # Imported on use: pith_graph.conformance derives its signing keys at import time.
    from pith_graph.conformance.corpus import write_corpus

    entries = write_corpus(Path(args.dir), fixtures=Path(args.fixtures) if args.fixtures else None)
    print(f"{args.dir}: {len(entries)} cases written")
    return EXIT_OK


def cmd_vectors_run(args: argparse.Namespace) -> int:
    """``vectors run DIR --impl 'COMMAND'``: run an implementation on every case."""
    from pith_graph.conformance.runner import format_results, run_vectors

    results = run_vectors(
        Path(args.dir), args.impl, timeout=args.timeout, only=args.case or None, jobs=args.jobs
    )
    lines = format_results(results)
    shown = lines if args.verbose else [line for line in lines if not line.startswith("PASS ")]
    print("\n".join(shown))
    return EXIT_OK if all(r.passed for r in results) else EXIT_PROBLEMS


def register(subparsers: Any) -> None:
    """Add ``vectors write`` and ``vectors run`` to the CLI."""
    vectors = subparsers.add_parser("vectors", help="write or run the conformance-vector corpus")
    vsub = vectors.add_subparsers(dest="vectors_command", required=True, metavar="VECTORS_COMMAND")
    path = vsub.add_parser("path", help="print where the corpus shipped with this package is")
    path.add_argument(
        "--inputs",
        action="store_true",
        help="print where its outside inputs are instead (registry bundle, speccheck)",
    )
    path.set_defaults(func=cmd_vectors_path)
    write = vsub.add_parser("write", help="generate the corpus into DIR (byte-deterministic)")
    write.add_argument("dir", metavar="DIR", help="directory to write the corpus into (created if missing)")
    write.add_argument(
        "--fixtures",
        metavar="DIR",
        help="where the registry bundle and speccheck cases are (default: the copies shipped in the package)",
    )
    write.set_defaults(func=cmd_vectors_write)
    run = vsub.add_parser("run", help="run an implementation on every case of the corpus in DIR")
    run.add_argument("dir", metavar="DIR", help="a corpus directory (vectors write, or vectors path)")
    run.add_argument(
        "--impl",
        required=True,
        type=command_line,
        metavar="COMMAND",
        help="command to run; TRUSTED_KEYS_PATH and BUNDLE_PATH are appended, the state JSON is read from stdout",
    )
    run.add_argument(
        "--timeout",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="per case, above 0 (default 60)",
    )
    run.add_argument("--case", action="append", metavar="ID", help="run only this case (repeatable)")
    run.add_argument(
        "--jobs", type=non_negative_int, metavar="N", help="cases run at once (0 or default: one per CPU)"
    )
    run.add_argument("--verbose", "-v", action="store_true", help="also list the cases that passed")
    run.set_defaults(func=cmd_vectors_run)
