"""What every ``pith-graph`` subcommand shares: exit codes, the trusted-keys reader, stdout, store files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from pith_graph import codes
from pith_graph.errors import InputError
from pith_graph.keys import KeyRing
from pith_graph.store._open import is_postgres_url

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_UNUSABLE",
    "add_trust_options",
    "add_workers_option",
    "is_store_file",
    "load_ring",
    "write_stdout",
]

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_UNUSABLE: Final = 2
#: First bytes of every SQLite database file (how a command tells a store from a bundle).
SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def load_ring(path: str | None) -> KeyRing | None:
    """The ring a ``--trusted-keys FILE`` names (None: the caller did not give one)."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read trusted keys {path}: {exc.strerror or exc}", code=codes.E_IO) from exc
    return KeyRing.from_json(data)


def is_store_file(path: str | Path) -> bool:
    """Whether ``path`` names a store rather than a JSON document: a ``postgresql://`` URL, or a
    file holding an SQLite database."""
    if is_postgres_url(path):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", code=codes.E_IO) from exc


def write_stdout(data: bytes) -> None:
    """Write bytes to stdout unchanged (state output must be byte-exact)."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def add_trust_options(parser: argparse.ArgumentParser, *, what: str = "the bundle") -> None:
    """``--trusted-keys FILE`` and ``--trust-bundle-keys``, shared by every subcommand that merges."""
    parser.add_argument(
        "--trusted-keys", metavar="FILE", help="JSON array of trusted key entries (default: the registry key)"
    )
    parser.add_argument(
        "--trust-bundle-keys", action="store_true", help=f"also trust the keys {what} lists (unsafe)"
    )


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (one per CPU) or a positive count, not {text!r}")
    return count


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers N``: processes, this one included (validated here, so a bad count is a usage error)."""
    parser.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        metavar="N",
        help="processes, at most one per CPU (0: one per CPU; default: one per CPU, at most 4; 1: serial)",
    )
