"""``pith-graph state``, ``verify`` and ``inspect``: one document (or many) at a time."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pith_graph import codes
from pith_graph._parallel.many import bundle_paths, verify_documents
from pith_graph._progress import reporting
from pith_graph.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNUSABLE,
    STDIN,
    add_trust_options,
    display_name,
    input_source,
    load_ring,
    naming,
    print_error,
    write_stdout,
)
from pith_graph.cli._output import JSON_HELP, emit, envelope
from pith_graph.cli.verify_many import Progress, add_parallel_options, show_progress
from pith_graph.documents import read_document
from pith_graph.errors import InputError, PithGraphError
from pith_graph.rebuild import rebuild_state
from pith_graph.report import Report
from pith_graph.state import State
from pith_graph.verify import verify_document

__all__ = ["cmd_inspect", "cmd_state", "cmd_verify", "register"]


def cmd_state(args: argparse.Namespace) -> int:
    """``state [--workers N] BUNDLE``: print the merged state (compact, byte-identical to the registry's)."""
    ring = load_ring(args.trusted_keys)
    with (
        naming(args.bundle),
        Progress(None, sys.stderr, shown=show_progress(args)) as bar,
        reporting(bar.events),
    ):
        state = rebuild_state(
            input_source(args.bundle),
            trusted_keys=ring,
            trust_bundle_keys=args.trust_bundle_keys,
            workers=args.workers,
        )
    if args.json:
        emit(envelope("state", EXIT_OK, ok=True, source=display_name(args.bundle), **state_summary(state)))
        return EXIT_OK
    write_stdout((state.to_pretty_json() if args.pretty else state.to_json()) + b"\n")
    return EXIT_OK


def state_summary(state: State) -> dict[str, Any]:
    """The members ``state --json`` prints: counts, ``state_sha256`` and every invalid event
    with its reason, root causes first (merge-v1's check order)."""
    invalid = sorted(state.invalid_events, key=lambda item: codes.root_cause_rank(item["reason"]))
    return {
        "pith_number": state.pith_number,
        "state_sha256": state.state_sha256,
        "event_count": state.event_count,
        "valid_event_count": state.valid_event_count,
        "invalid_event_count": state.invalid_event_count,
        "equivocation_count": state.equivocation_count,
        "applied_event_count": len(state.applied_event_ids),
        "invalid_events": [{"event_id": item["event_id"], "reason": item["reason"]} for item in invalid],
        "equivocations": list(state.equivocations),
    }


def _named(source: str, message: str) -> str:
    return message if source in message else f"{source}: {message}"


def _print_report(report: Report) -> None:
    if not report.usable:
        error = report.problems[0]
        print(f"{report.source}: ERROR [{error.code}] {error.message}")
        return
    verdict = "OK" if report.ok else "FAILED"
    print(f"{report.source}: {report.kind}: {verdict}")
    for name, value in report.facts.items():
        print(f"  {name}: {', '.join(value) if isinstance(value, list) else value}")
    for problem in report.problems:
        print(f"  {problem}")


def _named_inputs(arguments: list[str]) -> Iterator[Path | bytes | Report]:
    """Each argument's documents: paths (directories expanded), stdin's bytes for ``-``,
    or an unusable report for a name that gives none."""
    for argument in arguments:
        if argument == STDIN:
            yield input_source(argument)
            continue
        try:
            yield from bundle_paths([argument])
        except PithGraphError as exc:
            yield Report.unusable("unknown", argument, exc)


def cmd_verify(args: argparse.Namespace) -> int:
    """``verify [--workers N] DIR_OR_FILES...``: detect each document's kind and verify it.

    Directories are searched for ``*.json`` (recursive, sorted); documents are
    spread over ``--workers`` processes (see :mod:`pith_graph._parallel.many`).
    Every input gets a report, an unusable one included: exit 2 if any was
    unusable, else 1 if any had problems, else 0.
    """
    ring = load_ring(args.trusted_keys)
    inputs = list(_named_inputs(args.files))
    paths = [item for item in inputs if isinstance(item, Path)]
    documents = verify_documents(
        paths, trusted_keys=ring, trust_bundle_keys=args.trust_bundle_keys, workers=args.workers
    )
    reports: list[Report] = []
    with (
        Progress(len(inputs), sys.stderr, shown=show_progress(args)) as bar,
        contextlib.closing(documents),
        reporting(bar.events),
    ):
        for done, item in enumerate(inputs, start=1):
            if isinstance(item, Path):
                report = next(documents)
            elif isinstance(item, bytes):
                report = dataclasses.replace(
                    verify_document(
                        item,
                        trusted_keys=ring,
                        trust_bundle_keys=args.trust_bundle_keys,
                        workers=args.workers,
                    ),
                    source="<stdin>",
                )
            else:
                report = item
            reports.append(report)
            bar.update(done)
    exit_code = (
        EXIT_UNUSABLE
        if not all(r.usable for r in reports)
        else EXIT_OK
        if all(r.ok for r in reports)
        else EXIT_PROBLEMS
    )
    for report in reports:
        if not report.usable:  # also on stderr, as every other unusable input is
            error = report.problems[0]
            print_error(error.code, _named(report.source, error.message))
    if args.json:
        emit(envelope("verify", exit_code, ok=exit_code == EXIT_OK, documents=[r.to_dict() for r in reports]))
    else:
        for report in reports:
            _print_report(report)
    return exit_code


def _member(value: Any, *names: str) -> Any:
    """``value[names[0]][names[1]]...``, or None where a level is not an object."""
    for name in names:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _count(value: Any) -> int | None:
    return len(value) if isinstance(value, (list, dict)) else None


def _summary(obj: dict[str, Any], kind: str) -> list[tuple[str, Any]]:
    """What ``inspect`` shows of a document: read defensively, since nothing is verified
    (a member of the wrong type shows as it is, or as null)."""
    if kind == "bundle":
        events = obj.get("events")
        types: dict[str, int] = {}
        for event in events if isinstance(events, list) else []:
            name = _member(event, "event_type") if isinstance(event, dict) else "(not an object)"
            types[str(name)] = types.get(str(name), 0) + 1
        keys = obj.get("public_keys")
        return [
            ("pith_number", obj.get("pith_number")),
            ("source", obj.get("source")),
            ("events", _count(events)),
            ("event types", ", ".join(f"{k} x{v}" for k, v in sorted(types.items())) or "-"),
            (
                "public keys listed (not trusted)",
                ", ".join(str(_member(k, "key_id")) for k in keys if isinstance(k, dict))
                if isinstance(keys, list)
                else "-",
            ),
            ("signed", "yes" if obj.get("bundle_signature") else "no"),
            (
                "embedded state",
                _member(obj, "state", "state_sha256") if obj.get("state") is not None else "none",
            ),
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
        ] + [("applied events", _count(obj.get("applied_event_ids")))]
    if kind == "record":
        return [
            (name, obj.get(name))
            for name in ("pith_number", "short_pith_number", "canonical_sha256", "source")
        ] + [
            ("receipt key", _member(obj, "receipt", "key_id")),
            ("aliases", _count(obj.get("aliases"))),
        ]
    if kind == "graph_snapshot":
        return [
            ("title", _member(obj, "paper", "title")),
            ("source", obj.get("source")),
            ("claims", _member(obj, "claims", "count")),
            ("builder", obj.get("builder_version")),
        ]
    return [
        (name, obj.get(name)) for name in ("subject_pith_number", "target", "signer_id", "prev_event")
    ] + [("conflicting events", _count(obj.get("events")))]


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect FILE``: summarise a document without verifying it."""
    with naming(args.file):
        document = read_document(input_source(args.file))
        if document.kind is None:
            raise InputError(
                "not a Pith document (bundle, state, record, graph snapshot or proof)", code=codes.E_NOT_PITH
            )
    summary = _summary(document.obj, document.kind)
    if args.json:
        emit(
            envelope("inspect", EXIT_OK, ok=True, source=args.file, kind=document.kind, summary=dict(summary))
        )
        return EXIT_OK
    print(f"{args.file}: {document.kind}")
    for name, value in summary:
        print(
            f"  {name}: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}"
        )
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``state``, ``verify`` and ``inspect`` to the CLI."""
    state = subparsers.add_parser("state", help="print the merged state of a bundle")
    state.add_argument("bundle", metavar="BUNDLE", help="bundle JSON file, - for stdin")
    add_trust_options(state)
    output = state.add_mutually_exclusive_group()
    output.add_argument("--pretty", action="store_true", help="indent the output (not byte-comparable)")
    output.add_argument(
        "--json",
        action="store_true",
        help="print a pith-graph/1 summary (counts, invalid events) instead of the state",
    )
    add_parallel_options(state, what="events")
    state.set_defaults(func=cmd_state)

    verify = subparsers.add_parser("verify", help="verify bundles, records, states, graph snapshots, proofs")
    verify.add_argument(
        "files",
        nargs="+",
        metavar="DIR_OR_FILES",
        help="documents, directories (every *.json inside, recursive), - for stdin",
    )
    verify.add_argument("--json", action="store_true", help=JSON_HELP)
    add_parallel_options(verify)
    add_trust_options(verify, what="a bundle")
    verify.set_defaults(func=cmd_verify)

    inspect = subparsers.add_parser("inspect", help="summarise a document without verifying it")
    inspect.add_argument("file", metavar="FILE", help="a JSON document, - for stdin")
    inspect.add_argument("--json", action="store_true", help=JSON_HELP)
    inspect.set_defaults(func=cmd_inspect)
