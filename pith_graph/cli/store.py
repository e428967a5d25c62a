"""``pith-graph store ...``: the event store from the command line.

Sub-subcommands ``init|import|append|state|export|log|sync|check``, all operating on
``--db DB``: an SQLite file (default ``./pith-graph.sqlite``) or a
``postgresql://`` URL (:func:`pith_graph.store.open_backend`). Exit codes follow the main CLI:
0 ok, 1 problems found (an event stored but invalid), and unusable input raises a
:class:`~pith_graph.errors.PithGraphError` that :func:`pith_graph.cli.main`
prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from pith_graph import codes
from pith_graph._parallel.many import walk_bundle_paths
from pith_graph._progress import reporting
from pith_graph.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNUSABLE,
    STDIN,
    add_trust_options,
    display_name,
    input_source,
    is_store_file,
    load_ring,
    naming,
    non_negative_int,
    positive_int,
    print_error,
    write_stdout,
)
from pith_graph.cli._output import JsonSpool, emit, envelope, error_member
from pith_graph.cli.verify_many import Progress, add_progress_option, show_progress
from pith_graph.documents import DocumentSource, read_json
from pith_graph.errors import InputError, PithGraphError
from pith_graph.store import (
    IMPORT_BATCH,
    AppendResult,
    EventStore,
    ImportResult,
    SourceFile,
    is_postgres_url,
    redacted_url,
)

__all__ = ["register"]

#: Where the store lives unless ``--db`` says otherwise.
DEFAULT_DB: Final = "./pith-graph.sqlite"


def _open(args: argparse.Namespace, *, create: bool = True) -> EventStore:
    # Commands that only read never create a store where a typo pointed, and open a
    # store this process cannot write read-only (reads never write: docs/store.md).
    return EventStore(args.db, create=create, read_only=None if not create else False)


def _trust(args: argparse.Namespace) -> dict[str, Any]:
    return {"trusted_keys": load_ring(args.trusted_keys), "trust_bundle_keys": args.trust_bundle_keys}


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _events_progress(args: argparse.Namespace) -> Iterator[None]:
    """The progress bar of the events a replay checks (``--progress``, or on a terminal)."""
    with Progress(None, sys.stderr, shown=show_progress(args)) as bar, reporting(bar.events):
        yield


def cmd_init(args: argparse.Namespace) -> int:
    """``store init``: create the store (or check an existing one)."""
    with _open(args) as store:
        store.check()
        version = store.backend.schema_version
    print(f"{redacted_url(args.db)}: pith-graph store, schema version {version}")
    return EXIT_OK


def _imported(source: str, result: ImportResult) -> dict[str, Any]:
    """One bundle's entry in ``store import --json``: counts by status, and every invalid copy."""
    statuses = (codes.STORE_NEW, codes.STORE_DUPLICATE, codes.STORE_INVALID)
    invalid = [a for a in result.appends if a.reason is not None]
    invalid.sort(key=lambda a: codes.root_cause_rank(a.reason))
    return {
        "source": source,
        "ok": not invalid,
        "subject": result.subject,
        "counts": {status: result.count(status) for status in statuses},
        "items_added": result.items_added,
        "invalid_events": [{"unit_id": a.unit_id, "digest": a.digest, "reason": a.reason} for a in invalid],
    }


def cmd_import(args: argparse.Namespace) -> int:
    """``store import BUNDLE_OR_DIR...``: store the events and items of many bundles.

    Through :meth:`EventStore.import_bundles`: one transaction per ``--batch`` bundles,
    each bundle reported once its batch is committed (a crash loses at most the
    batch being written), ``--workers`` processes reading and checking bundles.
    A directory is walked for its ``*.json`` bundles, one directory's entries at
    a time (a mirror's directory holds millions). Goes on past a bundle it cannot
    use (one line on stderr each): exit 2 at the end if there was one, else 1 if
    an event was stored invalid. Memory stays flat over any number of bundles:
    nothing is kept per bundle but counts (the ``--json`` entries are spooled to a
    temporary file, not held).
    """
    walked = any(name != STDIN and Path(name).is_dir() for name in args.bundles)
    lines = walked or len(args.bundles) > 1
    total = None if walked else len(args.bundles)
    names: deque[str] = deque()  # the names read but not yet reported, in order

    def sources() -> Iterator[DocumentSource | PithGraphError]:
        for name in args.bundles:
            try:
                for found in _import_sources([name]):
                    names.append(found)
                    yield input_source(found)
            except PithGraphError as exc:  # a directory without bundles: its entry, and go on
                names.append(name)
                yield exc.naming(display_name(name))

    trust = _trust(args)
    done = imported = unusable = invalid = 0
    stopped: PithGraphError | None = None  # what stopped the import (the store's error), under --json
    with (
        _open(args) as store,
        JsonSpool() if args.json else contextlib.nullcontext() as spool,
        Progress(total, sys.stderr, shown=show_progress(args)) as bar,
        reporting(bar.events),
    ):
        try:
            outcomes = store.import_bundles(
                sources(), batch_size=args.batch, workers=args.workers, keep_going=True, **trust
            )
            for done, outcome in enumerate(outcomes, 1):
                label = display_name(names.popleft())
                bar.clear()
                if isinstance(outcome, PithGraphError):
                    unusable += 1
                    print_error(outcome.code, outcome.naming(label).message)
                    entry: dict[str, Any] = {"source": label, "ok": False, "error": error_member(outcome)}
                else:
                    imported += 1
                    entry = _imported(label, outcome)
                    invalid += entry["counts"][codes.STORE_INVALID] > 0
                    summary = " ".join(f"{status}={n}" for status, n in entry["counts"].items())
                    if spool is None and lines:
                        _progress(f"[{done}/{total or '?'}] {label}: {outcome.subject} {summary}")
                    elif spool is None:
                        print(f"{label}: {outcome.subject} {summary}")
                if spool is not None:
                    spool.add(entry)
                if total is not None:
                    bar.update(done)
        except PithGraphError as exc:
            if spool is None:
                raise
            # The bundles reported so far are committed: the one document says so, and why it stopped.
            stopped = exc
        finally:
            if spool is None and lines:
                # What was committed, also when an error or an interrupt stopped the import.
                print(f"imported {imported} of {done} bundles into {redacted_url(args.db)}", flush=True)
        exit_code = EXIT_UNUSABLE if unusable or stopped else EXIT_PROBLEMS if invalid else EXIT_OK
        if spool is not None:
            failure = {} if stopped is None else {"error": error_member(stopped)}
            if stopped is not None:
                print_error(stopped.code, stopped.message)
            spool.emit(
                envelope(
                    "store import", exit_code, ok=exit_code == EXIT_OK, db=redacted_url(args.db), **failure
                ),
                "bundles",
            )
    return exit_code


def _import_sources(names: Sequence[str]) -> Iterator[str]:
    """The bundles named: files as given, directories walked lazily (``verify-many``'s walk)."""
    for name in names:
        if name != STDIN and Path(name).is_dir():
            yield from (str(path) for path in walk_bundle_paths([name]))
        else:
            yield name


def cmd_append(args: argparse.Namespace) -> int:
    """``store append EVENT``: store one event (a JSON file, ``-`` for stdin) and print what happened."""
    with naming(args.event):
        event = read_json(input_source(args.event))
    with _open(args) as store:
        result: AppendResult = store.append(
            event, subject=args.subject, trusted_keys=load_ring(args.trusted_keys)
        )
    print(json.dumps(result.to_dict(), ensure_ascii=False))
    return EXIT_PROBLEMS if result.status == codes.STORE_INVALID else EXIT_OK


def cmd_state(args: argparse.Namespace) -> int:
    """``store state SUBJECT``: the merged state of a stored subject (as ``pith-graph state`` prints it)."""
    with _open(args, create=False) as store, _events_progress(args):
        state = store.state(store.resolve(args.subject), **_trust(args))
    write_stdout((state.to_pretty_json() if args.pretty else state.to_json()) + b"\n")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """``store export SUBJECT``: a bundle holding everything stored for the subject.

    Written as it is built (:meth:`EventStore.write_bundle`: the stored bytes of each
    copy, never the bundle's tree), to stdout or ``-o FILE``, then a newline.
    """
    with _open(args, create=False) as store, _events_progress(args):
        subject = store.resolve(args.subject)
        if args.output is None:
            store.write_bundle(subject, sys.stdout.buffer, **_trust(args))
            write_stdout(b"\n")  # and flushed: an output error is the CLI's one line
            return EXIT_OK
        try:
            with open(args.output, "wb") as out:
                store.write_bundle(subject, out, **_trust(args))
                out.write(b"\n")
        except OSError as exc:
            raise InputError(f"cannot write {args.output}: {exc.strerror or exc}", code=codes.E_IO) from exc
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    """``store log [SUBJECT]``: the stored copies in apply order (without SUBJECT: the subjects)."""
    with _open(args, create=False) as store:
        if args.subject is None:
            subjects = store.subjects()
            if args.json:
                emit(envelope("store log", EXIT_OK, ok=True, db=redacted_url(args.db), subjects=subjects))
            else:
                for subject in subjects:
                    print(subject)
            return EXIT_OK
        subject = store.resolve(args.subject)
        events = store.events(subject, **_trust(args))
    if args.json:
        rows = [
            {
                "unit_id": e.unit_id,
                "digest": e.digest,
                "event_type": e.event_type,
                "applied": e.applied,
                "reason": e.reason,
                "copy_reason": e.copy_reason,
            }
            for e in events
        ]
        emit(envelope("store log", EXIT_OK, ok=True, db=redacted_url(args.db), subject=subject, events=rows))
        return EXIT_OK
    for event in events:
        verdict = "applied" if event.applied else f"invalid:{event.reason}" if event.reason else "not-applied"
        # Each copy's own stage-1 verdict beside its unit's: a forged copy of a valid unit shows as what it is.
        own = "valid" if event.copy_reason is None else f"invalid:{event.copy_reason}"
        print(
            f"{event.unit_id} {event.event_type or '-'} {verdict} copy={event.digest[:16]} copy-verdict={own}"
        )
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    """``store sync SOURCE...``: add what other stores (or bundle files) hold that passes stage 1.

    A source is untrusted input: opened read-only, every row re-derived from its body,
    only copies valid under ``--trusted-keys`` stored; a bad source stores nothing (exit 2).
    """
    ring = load_ring(args.trusted_keys)
    entries = []
    with _open(args) as store:
        for source in args.sources:
            with naming(redacted_url(source)):
                if is_postgres_url(source):
                    with EventStore(source, create=False, read_only=True) as other:
                        result = store.sync_from(other, trusted_keys=ring)
                elif source != STDIN and is_store_file(source):
                    with SourceFile(source) as other:
                        result = store.sync_from(other, trusted_keys=ring)
                else:
                    result = store.sync_from(input_source(source), trusted_keys=ring)
            label = display_name(redacted_url(source))
            entries.append(
                {
                    "source": label,
                    "events_added": result.events_added,
                    "items_added": result.items_added,
                    "events_refused": result.events_refused,
                }
            )
            if not args.json:
                print(
                    f"{label}: {result.events_added} new event copies, {result.items_added} new items, "
                    f"{result.events_refused} refused (fail stage 1)"
                )
    if args.json:
        emit(envelope("store sync", EXIT_OK, ok=True, db=redacted_url(args.db), sources=entries))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """``store check``: re-derive every cached verdict from the stored bodies (exit 1 on a mismatch)."""
    with _open(args, create=False) as store:
        store.check()
        report = store.fsck()
    exit_code = EXIT_OK if report.ok else EXIT_PROBLEMS
    if args.json:
        emit(
            envelope(
                "store check",
                exit_code,
                ok=report.ok,
                db=redacted_url(args.db),
                mismatches=[str(m) for m in report.mismatches],
                checked=dict(report.checked),
                ignored=dict(report.ignored),
            )
        )
        return exit_code
    for mismatch in report.mismatches:
        print(f"mismatch: {mismatch}")
    checked = ", ".join(f"{n} {table}" for table, n in report.checked.items())
    ignored = ", ".join(f"{n} {table}" for table, n in report.ignored.items() if n)
    print(
        f"{args.db}: {'ok' if report.ok else f'{len(report.mismatches)} mismatch(es)'}; checked {checked}"
        + (f"; never read, not checked: {ignored}" if ignored else "")
    )
    return exit_code


_SUBJECT_HELP: Final = "a stored subject: its Pith Number, short form (pith:AG3PAJ22), arXiv id or DOI"
_JSON_HELP: Final = "print one pith-graph/1 JSON document (docs/cli.md)"


def _common(parser: argparse.ArgumentParser, *, trust: bool = False) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="DB",
        help=f"SQLite file or postgresql:// URL (default {DEFAULT_DB})",
    )
    if trust:
        add_trust_options(parser, what="the subject's stored bundles")


def register(subparsers: Any) -> None:
    """Add the ``store`` subcommand and its sub-subcommands to the main parser."""
    store = subparsers.add_parser("store", help="a durable, append-only event store (SQLite or PostgreSQL)")
    sub = store.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")

    def command(
        name: str, help: str, func: Any, *, trust: bool = False, json: bool = False
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help)
        _common(parser, trust=trust)
        if json:
            parser.add_argument("--json", action="store_true", help=_JSON_HELP)
        parser.set_defaults(func=func)
        return parser

    command("init", "create the store", cmd_init)
    imports = command("import", "store the events of bundle files", cmd_import, trust=True, json=True)
    imports.add_argument(
        "bundles",
        nargs="+",
        metavar="BUNDLE_OR_DIR",
        help="bundle JSON files, directories of them (walked for *.json), - for stdin",
    )
    imports.add_argument(
        "--batch",
        type=positive_int,
        default=IMPORT_BATCH,
        metavar="N",
        help=f"bundles per durable transaction; a crash loses at most the batch being written "
        f"(default {IMPORT_BATCH}; 1: one transaction per bundle)",
    )
    imports.add_argument(
        "--workers",
        type=non_negative_int,
        default=1,
        metavar="N",
        help="1 (default): this process does everything; N > 1: N helper processes (at most one per CPU; "
        "0: one per CPU) read and check bundles while this one writes them",
    )
    add_progress_option(imports, what="bundles and events")
    append = command("append", "store one event (JSON file, - for stdin)", cmd_append)
    append.add_argument("event", metavar="EVENT", help="one event as a JSON file, - for stdin")
    append.add_argument("--subject", help="the Pith Number it was received for (default: the event's own)")
    append.add_argument(
        "--trusted-keys",
        metavar="FILE",
        help="JSON array of trusted key entries, for the reported status (default: the registry key)",
    )
    state = command("state", "print the merged state of a subject", cmd_state, trust=True)
    state.add_argument("subject", metavar="SUBJECT", help=_SUBJECT_HELP)
    state.add_argument("--pretty", action="store_true", help="indent the output (not byte-comparable)")
    add_progress_option(state, what="events checked")
    export = command("export", "print a bundle of everything stored for a subject", cmd_export, trust=True)
    export.add_argument("subject", metavar="SUBJECT", help=_SUBJECT_HELP)
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    add_progress_option(export, what="events checked")
    command(
        "log",
        "list a subject's stored copies in apply order (or the subjects)",
        cmd_log,
        trust=True,
        json=True,
    ).add_argument(
        "subject", metavar="SUBJECT", nargs="?", help=f"{_SUBJECT_HELP} (default: list the subjects)"
    )
    sync = command(
        "sync",
        "add what other stores (files or URLs) or bundle files hold that passes stage 1",
        cmd_sync,
        json=True,
    )
    sync.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="pith-graph stores (SQLite files or postgresql:// URLs) or bundle JSON files, - for stdin",
    )
    sync.add_argument(
        "--trusted-keys",
        metavar="FILE",
        help="JSON array of trusted key entries: only copies valid under them are stored (default: the registry key)",
    )
    command(
        "check",
        "re-derive every cached verdict from the stored bodies (exit 1 on a mismatch)",
        cmd_check,
        json=True,
    )
