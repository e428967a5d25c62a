"""``pith-graph proof``: an equivocation proof for every fork of a bundle or a store.

Unusable input raises a :class:`~pith_graph.errors.PithGraphError`, which
:func:`pith_graph.cli.main` prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from pith_graph import codes
from pith_graph.canonical import canonical_json
from pith_graph.cli._common import (
    EXIT_OK,
    STDIN,
    add_trust_options,
    display_name,
    input_source,
    is_store_file,
    load_ring,
    naming,
    write_stdout,
)
from pith_graph.errors import InputError
from pith_graph.keys import KeyRing
from pith_graph.proofs import make_proofs
from pith_graph.store._open import redacted_url

__all__ = ["cmd_proof", "register"]


def _store_bundle(args: argparse.Namespace, ring: KeyRing | None) -> dict[str, Any]:
    """The stored copies of one subject, as a bundle (``--subject``, or the store's only subject)."""
    from pith_graph.store import EventStore, redacted_url

    with EventStore(args.source, create=False, read_only=None) as store:
        subject = None if args.subject is None else store.resolve(args.subject)
        if subject is None:
            subjects = store.subjects()
            if len(subjects) != 1:
                raise InputError(
                    f"{redacted_url(args.source)} holds {len(subjects)} subjects: name one with --subject",
                    code=codes.E_USAGE,
                )
            subject = subjects[0]
        return store.export_bundle(subject, trusted_keys=ring, trust_bundle_keys=args.trust_bundle_keys)


def cmd_proof(args: argparse.Namespace) -> int:
    """``proof BUNDLE_OR_STORE``: write an equivocation proof for every fork."""
    ring = load_ring(args.trusted_keys)
    with naming(redacted_url(args.source)):  # a postgresql:// URL's password is never shown
        if args.source != STDIN and is_store_file(args.source):
            document: Any = _store_bundle(args, ring)
        else:
            document = input_source(args.source)
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
    print(f"{display_name(args.source)}: {len(proofs)} equivocation proof(s)", file=sys.stderr)
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``proof`` to the CLI."""
    proof = subparsers.add_parser(
        "proof", help="write an equivocation proof for every fork of a bundle or store"
    )
    proof.add_argument(
        "source",
        metavar="BUNDLE_OR_STORE",
        help="a bundle JSON file (- for stdin), a pith-graph SQLite store or a postgresql:// URL",
    )
    proof.add_argument(
        "--out", metavar="DIR", help="write one file per proof here (default: one JSON line each on stdout)"
    )
    proof.add_argument(
        "--subject",
        metavar="SUBJECT",
        help="with a store: the subject, as a Pith Number, short form, arXiv id or DOI (default: its only one)",
    )
    add_trust_options(proof)
    proof.set_defaults(func=cmd_proof)
