"""``pith-graph mirror pull|sync|peers``: fetching from and following other mirrors.

Exit codes as the main CLI: 0 all good; 1 problems found in what was received
(events that failed stage 1 and were not stored, a bundle or state that
contradicts itself, a subject no mirror served while others were pulled);
2 nothing usable (a dead or garbage-serving peer, bad arguments): one line
on stderr, raised as a :class:`~pith_graph.errors.PithGraphError` for
:func:`pith_graph.cli.main` to print.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from pith_graph import codes
from pith_graph.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNUSABLE,
    non_negative_int,
    number_in,
    positive_float,
    positive_int,
    print_error,
    trusted_ring,
)
from pith_graph.cli._output import JSON_HELP, command_of, emit, envelope, error_member
from pith_graph.cli.store import DEFAULT_DB
from pith_graph.cli.verify_many import Progress
from pith_graph.errors import PeerError
from pith_graph.mirror import peers
from pith_graph.mirror._limits import DEFAULT_LIMIT, MAX_LIMIT, ClientLimits
from pith_graph.store import EventStore, redacted_url

if TYPE_CHECKING:  # the network stack (httpx, Starlette) is imported by the commands that use it
    from pith_graph.mirror.admit import Admitted
    from pith_graph.mirror.client import MirrorClient
    from pith_graph.mirror.sync import SyncSummary

__all__ = ["register"]


def _client(args: argparse.Namespace) -> MirrorClient:
    from pith_graph.mirror.client import MirrorClient

    return MirrorClient(
        ClientLimits(
            connect_timeout=args.timeout,
            read_timeout=args.timeout,
            total_timeout=args.deadline,
            max_bytes=args.max_bytes,
            retries=args.retries,
        )
    )


def _emit(args: argparse.Namespace, exit_code: int, **members: Any) -> None:
    """Print the command's ``--json`` document: the envelope, the store (``db``), then ``members``."""
    emit(envelope(command_of(args), exit_code, ok=exit_code == EXIT_OK, db=redacted_url(args.db), **members))


def _print_admitted(admitted: Admitted) -> None:
    peer_state = (
        "same as the peer's"
        if admitted.peer_state_sha256 == admitted.state_sha256
        else f"peer's was {admitted.peer_state_sha256 or 'absent'}"
    )
    print(
        f"{admitted.subject}: from {admitted.source}: {admitted.events_added} new, {admitted.duplicates} already held,"
        f" {len(admitted.rejected)} rejected, {admitted.items_added} items; state_sha256 {admitted.state_sha256} ({peer_state})"
    )
    for rejected in admitted.rejected:
        print(f"  rejected {rejected.unit_id}: {rejected.reason} (not stored)")
    for problem in admitted.problems:
        if problem.code != codes.P_INVALID_EVENT:  # the rejected lines say it
            print(f"  problem {problem.code}: {problem.message}")
    for note in admitted.notes:
        print(f"  note {note.code}: {note.message} (reported, not trusted)")


def cmd_pull(args: argparse.Namespace) -> int:
    """``mirror pull SOURCE PITH_NUMBER... --db PATH``: fetch records from the first mirror that serves them."""
    from pith_graph.mirror.pull import mirrors_from_source, pull_subject, wanted

    wants = [wanted(text) for text in args.subjects]  # usage errors before any request
    ring = trusted_ring(args.trusted_keys)
    with _client(args) as client:
        mirrors = mirrors_from_source(args.source, client)
        with EventStore(args.db) as store:
            outcomes = [pull_subject(store, want, mirrors, client=client, ring=ring) for want in wants]
    if not any(o.admitted for o in outcomes):
        first = outcomes[0]
        raise PeerError(
            f"no mirror served a usable bundle of {first.wanted.text}: "
            + "; ".join(first.failures[:4])
            + (f" (and {len(outcomes) - 1} more subjects)" if len(outcomes) > 1 else ""),
            code=codes.E_NOTHING_USABLE,
        )
    found = False
    results: list[dict[str, Any]] = []
    for outcome in outcomes:
        admitted = outcome.admitted
        found = found or admitted is None or not admitted.ok
        results.append(
            {
                "wanted": outcome.wanted.text,
                "ok": admitted is not None and admitted.ok,
                "admitted": None if admitted is None else admitted.to_dict(),
                "failures": outcome.failures,
            }
        )
        if args.json:
            continue
        if admitted is None:
            print(f"{outcome.wanted.text}: nothing usable: {'; '.join(outcome.failures)}")
        else:
            _print_admitted(admitted)
    exit_code = EXIT_PROBLEMS if found else EXIT_OK
    if args.json:
        _emit(args, exit_code, source=args.source, subjects=results)
    return exit_code


@contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM ends ``--follow`` the way Ctrl-C does (a transaction in flight is rolled back)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(args: argparse.Namespace, summary: SyncSummary, error: PeerError | None = None) -> int:
    """Say what a sync did (``error``: the peer failure that ended it, said after the summary)."""
    exit_code = EXIT_UNUSABLE if error else EXIT_PROBLEMS if summary.problem_count else EXIT_OK
    if args.json:
        if error is not None:
            print_error(error.code, error.message)
        extra = {} if error is None else {"error": error_member(error)}
        _emit(args, exit_code, summary=summary.to_dict(), **extra)
        return exit_code
    for problem in summary.problems:
        print(f"  problem {problem}")
    print(summary.line())
    if error is not None:
        raise error
    return exit_code


def cmd_sync(args: argparse.Namespace) -> int:
    """``mirror sync PEER_URL --db PATH [--follow]``: catch up with a peer through its change feed."""
    from pith_graph.mirror.sync import HttpPeer, SyncSummary, follow, sync_once

    peer = peers.normalise_url(args.peer)
    ring = trusted_ring(args.trusted_keys)
    summary = SyncSummary(peer)
    shown = sys.stderr.isatty() and not args.json
    with _client(args) as client, EventStore(args.db) as store:
        if args.follow:

            def on_error(exc: PeerError, wait: float) -> None:
                print(
                    f"pith-graph: {exc.code}: {exc.message}; next round in {wait:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )

            def on_round(current: SyncSummary) -> None:
                if shown:
                    print(current.line(), file=sys.stderr, flush=True)

            try:
                with _terminated_as_interrupt():
                    summary = follow(
                        store,
                        HttpPeer(client, peer),
                        ring=ring,
                        interval=args.interval,
                        max_rounds=args.max_rounds,
                        on_error=on_error,
                        on_round=on_round,
                        limit=args.limit,
                    )
            except KeyboardInterrupt:
                pass  # a round in flight left committed work and its cursor; the summary is lost with it
            return _finish(args, summary)
        with Progress(0, sys.stderr, shown=shown) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done)

            try:
                sync_once(
                    store,
                    HttpPeer(client, peer),
                    ring=ring,
                    limit=args.limit,
                    summary=summary,
                    progress=progress,
                )
            except PeerError as exc:
                if summary.pages:  # what was done before the peer failed is kept and said
                    return _finish(args, summary, exc)
                raise
    return _finish(args, summary)


def cmd_peers_add(args: argparse.Namespace) -> int:
    """``mirror peers add URL [--name NAME]``: follow another mirror."""
    with EventStore(args.db) as store:
        peer = peers.add_peer(store, args.url, name=args.name or "")
    if args.json:
        _emit(args, EXIT_OK, peer=peer.to_dict())
    else:
        print(f"following {peer.url}" + (f" ({peer.name})" if peer.name else ""))
    return EXIT_OK


def cmd_peers_list(args: argparse.Namespace) -> int:
    """``mirror peers list``: the peers followed, with the cursor reached in each."""
    with EventStore(args.db, create=False) as store:
        listed = peers.list_peers(store)
    if args.json:
        _emit(args, EXIT_OK, peers=[p.to_dict() for p in listed])
        return EXIT_OK
    for peer in listed:
        print(
            f"{peer.url}\t{peer.name or '-'}\tadded {peer.added_at}\tcursor {peer.cursor or '(not synced)'}"
        )
    return EXIT_OK


_limit: Final = number_in(int, 1, MAX_LIMIT, f"1 to {MAX_LIMIT}")


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"store file (default {DEFAULT_DB})")


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _network_options(parser: argparse.ArgumentParser) -> None:
    defaults = ClientLimits()
    _db_option(parser)
    parser.add_argument(
        "--trusted-keys",
        metavar="FILE",
        help="JSON array of trusted key entries (default: the registry key); nothing else is stored",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="connect and read timeout per request (default 10 s)",
    )
    parser.add_argument(
        "--deadline",
        type=positive_float,
        default=defaults.total_timeout,
        metavar="S",
        help=f"most seconds one answer may take in all (default {defaults.total_timeout:.0f})",
    )
    parser.add_argument(
        "--retries",
        type=non_negative_int,
        default=defaults.retries,
        metavar="N",
        help=f"retries of a transient failure, with backoff (default {defaults.retries})",
    )
    parser.add_argument(
        "--max-bytes",
        type=positive_int,
        default=defaults.max_bytes,
        metavar="N",
        help=f"largest answer accepted, decoded (default {defaults.max_bytes})",
    )
    _json_option(parser)


def register(subparsers: Any) -> None:
    """Add ``mirror`` and its subcommands to the main parser."""
    mirror = subparsers.add_parser("mirror", help="fetch from and follow other mirrors (trusting none)")
    sub = mirror.add_subparsers(dest="mirror_command", required=True)

    pull = sub.add_parser("pull", help="fetch records from a mirror, a manifest URL or a manifest file")
    pull.add_argument(
        "source", metavar="SOURCE", help="mirror base URL, manifest URL (*.json) or manifest file"
    )
    pull.add_argument("subjects", nargs="+", metavar="PITH_NUMBER", help="pith:YEAR:CODE, CODE or pith:SHORT")
    _network_options(pull)
    pull.set_defaults(func=cmd_pull)

    sync = sub.add_parser("sync", help="catch up with (or --follow) a peer through its change feed")
    sync.add_argument("peer", metavar="PEER_URL", help="the peer's base URL")
    _network_options(sync)
    sync.add_argument(
        "--follow", action="store_true", help="keep following (peer errors back off, never stop it)"
    )
    sync.add_argument(
        "--interval",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds between rounds with --follow (default 30)",
    )
    sync.add_argument(
        "--max-rounds",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --follow, stop after N rounds (default: until interrupted)",
    )
    sync.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"subjects per feed page (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT})",
    )
    sync.set_defaults(func=cmd_sync)

    peers_parser = sub.add_parser("peers", help="the peers this mirror follows")
    peers_sub = peers_parser.add_subparsers(dest="peers_command", required=True)
    add = peers_sub.add_parser("add", help="follow a peer")
    add.add_argument("url", metavar="URL", help="the base URL of the peer mirror to follow")
    add.add_argument("--name", help="a name to show for it")
    _db_option(add)
    _json_option(add)
    add.set_defaults(func=cmd_peers_add)
    listing = peers_sub.add_parser("list", help="list the peers followed and their cursors")
    _db_option(listing)
    _json_option(listing)
    listing.set_defaults(func=cmd_peers_list)
