"""``pith-graph vectors write|run`` and ``pith-graph proof``: the conformance corpus and fork proofs.

Handlers return the exit code (0 all good, 1 a case failed); unusable input
raises a :class:`~pith_graph.errors.PithGraphError`, which
:func:`pith_graph.cli.main` prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any, Final

from pith_graph import codes
from pith_graph._cli_common import EXIT_OK, EXIT_PROBLEMS, add_trust_options, load_ring, write_stdout
from pith_graph.canonical import canonical_json
from pith_graph.errors import InputError
from pith_graph.keys import KeyRing
from pith_graph.proofs import make_proofs

__all__ = ["cmd_proof", "cmd_vectors_run", "cmd_vectors_write", "register"]

#: First bytes of every SQLite database file (how ``proof`` tells a store from a bundle).
SQLITE_MAGIC: Final = b"SQLite format 3\x00"


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

    results = run_vectors(Path(args.dir), args.impl, timeout=args.timeout, only=args.case or None, jobs=args.jobs)
    lines = format_results(results)
    shown = lines if args.verbose else [line for line in lines if not line.startswith("PASS ")]
    print("\n".join(shown))
    return EXIT_OK if all(r.passed for r in results) else EXIT_PROBLEMS


def _is_store(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", code=codes.E_IO) from exc


def _store_bundle(args: argparse.Namespace, ring: KeyRing | None) -> dict[str, Any]:
    """The stored copies of one subject, as a bundle (``--subject``, or the store's only subject)."""
    from pith_graph.store import EventStore

    with EventStore(args.source, create=False) as store:
        subject = args.subject
        if subject is None:
            subjects = store.subjects()
            if len(subjects) != 1:
                raise InputError(
                    f"{args.source} holds {len(subjects)} subjects: name one with --subject", code=codes.E_USAGE
                )
            subject = subjects[0]
        return store.export_bundle(subject, trusted_keys=ring, trust_bundle_keys=args.trust_bundle_keys)


def cmd_proof(args: argparse.Namespace) -> int:
    """``proof BUNDLE_OR_STORE``: write an equivocation proof for every fork."""
    ring = load_ring(args.trusted_keys)
    source = Path(args.source)
    document: Any = _store_bundle(args, ring) if _is_store(source) else source
    proofs = make_proofs(document, trusted_keys=ring, trust_bundle_keys=args.trust_bundle_keys)
    if args.out is None:
        write_stdout(b"".join(canonical_json(proof) + b"\n" for proof in proofs))
    else:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for proof in proofs:
                data = canonical_json(proof) + b"\n"
                # Named by content: the same fork always lands in the same file.
                path = out / f"equivocation-{hashlib.sha256(data).hexdigest()[:16]}.json"
                path.write_bytes(data)
                print(path)
        except OSError as exc:
            raise InputError(f"cannot write proofs to {out}: {exc.strerror or exc}", code=codes.E_IO) from exc
    print(f"{args.source}: {len(proofs)} equivocation proof(s)", file=sys.stderr)
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``vectors write``, ``vectors run`` and ``proof`` to the CLI."""
    vectors = subparsers.add_parser("vectors", help="write or run the conformance-vector corpus")
    vsub = vectors.add_subparsers(dest="vectors_command", required=True)
    write = vsub.add_parser("write", help="generate the corpus into DIR (byte-deterministic)")
    write.add_argument("dir", metavar="DIR")
    write.add_argument("--fixtures", metavar="DIR", help="where the registry bundle and speccheck cases are (default: the copies shipped in pith_graph/conformance/inputs)")
    write.set_defaults(func=cmd_vectors_write)
    run = vsub.add_parser("run", help="run an implementation on every case of the corpus in DIR")
    run.add_argument("dir", metavar="DIR")
    run.add_argument("--impl", required=True, metavar="COMMAND",
                     help="command to run; TRUSTED_KEYS_PATH and BUNDLE_PATH are appended, the state JSON is read from stdout")
    run.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per case (default 60)")
    run.add_argument("--case", action="append", metavar="ID", help="run only this case (repeatable)")
    run.add_argument("--jobs", type=int, metavar="N", help="cases run at once (default: CPU count)")
    run.add_argument("--verbose", "-v", action="store_true", help="also list the cases that passed")
    run.set_defaults(func=cmd_vectors_run)

    proof = subparsers.add_parser("proof", help="write an equivocation proof for every fork of a bundle or store")
    proof.add_argument("source", metavar="BUNDLE_OR_STORE", help="a bundle JSON file or a pith-graph SQLite store")
    proof.add_argument("--out", metavar="DIR", help="write one file per proof here (default: one JSON line each on stdout)")
    proof.add_argument("--subject", metavar="PITH_NUMBER", help="with a store: the subject (default: its only one)")
    add_trust_options(proof)
    proof.set_defaults(func=cmd_proof)
