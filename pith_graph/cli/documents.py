"""``pith-graph state``, ``verify`` and ``inspect``: one document (or many) at a time."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from pith_graph import codes
from pith_graph._parallel.many import bundle_paths, verify_documents
from pith_graph.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    add_trust_options,
    add_workers_option,
    load_ring,
    write_stdout,
)
from pith_graph.cli.verify_many import Progress, add_parallel_options, show_progress
from pith_graph.documents import read_document
from pith_graph.errors import InputError
from pith_graph.rebuild import rebuild_state
from pith_graph.report import Report

__all__ = ["cmd_inspect", "cmd_state", "cmd_verify", "register"]


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
    spread over ``--workers`` processes (see :mod:`pith_graph._parallel.many`).
    """
    paths = bundle_paths(args.files)
    reports: list[Report] = []
    documents = verify_documents(
        paths,
        trusted_keys=load_ring(args.trusted_keys),
        trust_bundle_keys=args.trust_bundle_keys,
        workers=args.workers,
    )
    shown = show_progress(args)
    with Progress(len(paths), sys.stderr, shown=shown) as bar, contextlib.closing(documents):
        for done, report in enumerate(documents, start=1):
            reports.append(report)
            bar.update(done)
    if args.json:
        write_stdout(
            json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False).encode() + b"\n"
        )
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
            (
                "public keys listed (not trusted)",
                ", ".join(str(k.get("key_id")) for k in obj.get("public_keys") or [] if isinstance(k, dict))
                or "-",
            ),
            ("signed", "yes" if obj.get("bundle_signature") else "no"),
            ("embedded state", (obj.get("state") or {}).get("state_sha256", "none")),
        ]
    if kind == "state":
        return [
            (name, obj.get(name))
            for name in (
                "pith_number",
                "event_count",
                "valid_event_count",
                "invalid_event_count",
                "equivocation_count",
                "state_sha256",
            )
        ] + [("applied events", len(obj.get("applied_event_ids") or []))]
    if kind == "record":
        return [
            (name, obj.get(name))
            for name in ("pith_number", "short_pith_number", "canonical_sha256", "source")
        ] + [
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
    return [
        (name, obj.get(name)) for name in ("subject_pith_number", "target", "signer_id", "prev_event")
    ] + [("conflicting events", len(obj.get("events") or []))]


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect FILE``: summarise a document without verifying it."""
    document = read_document(Path(args.file))
    if document.kind is None:
        raise InputError(f"{args.file} is not a Pith document", code=codes.E_NOT_PITH)
    print(f"{args.file}: {document.kind}")
    for name, value in _summary(document.obj, document.kind):
        print(
            f"  {name}: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}"
        )
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``state``, ``verify`` and ``inspect`` to the CLI."""
    state = subparsers.add_parser("state", help="print the merged state of a bundle")
    state.add_argument("bundle", help="bundle JSON file")
    add_trust_options(state)
    state.add_argument("--pretty", action="store_true", help="indent the output (not byte-comparable)")
    add_workers_option(state)
    state.set_defaults(func=cmd_state)

    verify = subparsers.add_parser("verify", help="verify bundles, records, states, graph snapshots, proofs")
    verify.add_argument(
        "files", nargs="+", metavar="DIR_OR_FILES", help="documents, or directories (*.json, recursive)"
    )
    verify.add_argument("--json", action="store_true", help="print reports as JSON")
    add_parallel_options(verify)
    add_trust_options(verify, what="a bundle")
    verify.set_defaults(func=cmd_verify)

    inspect = subparsers.add_parser("inspect", help="summarise a document")
    inspect.add_argument("file")
    inspect.set_defaults(func=cmd_inspect)
