"""The ``pith-graph`` command line.

One function per subcommand; errors are caught once, in :func:`main`.
Exit codes: 0 all good, 1 verification found problems, 2 unusable input (one
line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pith_graph import _cli_store, _cli_vectors, _cli_verify_many, codes
from pith_graph._cli_common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNUSABLE,
    add_trust_options,
    add_workers_option,
    load_ring,
    write_stdout,
)
from pith_graph.documents import read_document
from pith_graph.errors import InputError, PithGraphError
from pith_graph.rebuild import rebuild_state
from pith_graph.report import Report

__all__ = ["build_parser", "main"]

class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors become one line and exit code 2 via PithGraphError."""

    def error(self, message: str) -> Any:
        raise InputError(f"{self.prog}: {message}", code=codes.E_USAGE)


def cmd_state(args: argparse.Namespace) -> int:
    """``state [--workers N] BUNDLE``: print the merged state (compact, byte-identical to the registry's)."""
    state = rebuild_state(
        Path(args.bundle),
        trusted_keys=load_ring(args.trusted_keys),
        trust_bundle_keys=args.trust_bundle_keys,
        workers=args.workers,
    )
    write_stdout((state.to_pretty_json() if args.pretty else state.to_json()) + b"\n")
    return EXIT_OK


def _print_report(report: Report) -> None:
    verdict = "OK" if report.ok else "FAILED"
    print(f"{report.source}: {report.kind}: {verdict}")
    for name, value in report.facts.items():
        print(f"  {name}: {', '.join(value) if isinstance(value, list) else value}")
    for problem in report.problems:
        print(f"  {problem}")


def cmd_verify(args: argparse.Namespace) -> int:
    """``verify [--workers N] DIR_OR_FILES...``: detect each document's kind and verify it.

    Directories are searched for ``*.json`` (recursive, sorted); documents are
    spread over ``--workers`` processes (see :mod:`pith_graph._cli_verify_many`).
    """
    paths = _cli_verify_many.bundle_paths(args.files)
    reports: list[Report] = []
    documents = _cli_verify_many.verify_documents(
        paths, trusted_keys=load_ring(args.trusted_keys), trust_bundle_keys=args.trust_bundle_keys, workers=args.workers
    )
    shown = _cli_verify_many.show_progress(args)
    with _cli_verify_many.Progress(len(paths), sys.stderr, shown=shown) as bar, contextlib.closing(documents):
        for done, report in enumerate(documents, start=1):
            reports.append(report)
            bar.update(done)
    if args.json:
        write_stdout(json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False).encode() + b"\n")
    else:
        for report in reports:
            _print_report(report)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_PROBLEMS


def _summary(obj: dict[str, Any], kind: str) -> list[tuple[str, Any]]:
    if kind == "bundle":
        events = obj.get("events") or []
        types: dict[str, int] = {}
        for event in events:
            name = event.get("event_type", "?") if isinstance(event, dict) else "(not an object)"
            types[name] = types.get(name, 0) + 1
        return [
            ("pith_number", obj.get("pith_number")),
            ("source", obj.get("source")),
            ("events", len(events)),
            ("event types", ", ".join(f"{k} x{v}" for k, v in sorted(types.items())) or "-"),
            ("public keys listed (not trusted)", ", ".join(str(k.get("key_id")) for k in obj.get("public_keys") or [] if isinstance(k, dict)) or "-"),
            ("signed", "yes" if obj.get("bundle_signature") else "no"),
            ("embedded state", (obj.get("state") or {}).get("state_sha256", "none")),
        ]
    if kind == "state":
        return [
            (name, obj.get(name))
            for name in ("pith_number", "event_count", "valid_event_count", "invalid_event_count", "equivocation_count", "state_sha256")
        ] + [("applied events", len(obj.get("applied_event_ids") or []))]
    if kind == "record":
        return [(name, obj.get(name)) for name in ("pith_number", "short_pith_number", "canonical_sha256", "source")] + [
            ("receipt key", (obj.get("receipt") or {}).get("key_id")),
            ("aliases", len(obj.get("aliases") or [])),
        ]
    if kind == "graph_snapshot":
        paper = obj.get("paper") or {}
        return [
            ("title", paper.get("title")),
            ("source", obj.get("source")),
            ("claims", (obj.get("claims") or {}).get("count")),
            ("builder", obj.get("builder_version")),
        ]
    return [(name, obj.get(name)) for name in ("subject_pith_number", "target", "signer_id", "prev_event")] + [
        ("conflicting events", len(obj.get("events") or []))
    ]


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect FILE``: summarise a document without verifying it."""
    document = read_document(Path(args.file))
    if document.kind is None:
        raise InputError(f"{args.file} is not a Pith document", code=codes.E_NOT_PITH)
    print(f"{args.file}: {document.kind}")
    for name, value in _summary(document.obj, document.kind):
        print(f"  {name}: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(prog="pith-graph", description="Rebuild and verify Pith open-graph documents (merge-v1).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    state = sub.add_parser("state", help="print the merged state of a bundle")
    state.add_argument("bundle", help="bundle JSON file")
    add_trust_options(state)
    state.add_argument("--pretty", action="store_true", help="indent the output (not byte-comparable)")
    add_workers_option(state)
    state.set_defaults(func=cmd_state)

    verify = sub.add_parser("verify", help="verify bundles, records, states, graph snapshots, proofs")
    verify.add_argument(
        "files", nargs="+", metavar="DIR_OR_FILES", help="documents, or directories (*.json, recursive)"
    )
    verify.add_argument("--json", action="store_true", help="print reports as JSON")
    _cli_verify_many.add_parallel_options(verify)
    add_trust_options(verify, what="a bundle")
    verify.set_defaults(func=cmd_verify)

    inspect = sub.add_parser("inspect", help="summarise a document")
    inspect.add_argument("file")
    inspect.set_defaults(func=cmd_inspect)

    # Subcommand groups living in their own modules, one register() each.
    _cli_store.register(sub)
    _cli_vectors.register(sub)
    _cli_verify_many.register(sub)
    # issue 16: `serve` and `keygen` (pith_graph/mirror/_cli.py); imported here so that
    # the other subcommands do not load the web stack.
    from pith_graph.mirror import _cli as _cli_mirror

    _cli_mirror.register(sub)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
