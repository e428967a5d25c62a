"""What every ``pith-graph`` subcommand shares: exit codes, input files (``-`` for stdin),
the trusted-keys reader, stdout, store files, validated option types."""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Final, TypeVar

from pith_graph import codes
from pith_graph.canonical import DEFAULT_MAX_BYTES
from pith_graph.errors import InputError, PithGraphError
from pith_graph.keys import KeyRing, coerce_ring
from pith_graph.store._open import is_postgres_url

_N = TypeVar("_N", int, float)

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_UNUSABLE",
    "STDIN",
    "add_trust_options",
    "command_line",
    "display_name",
    "input_source",
    "stdin_once",
    "naming",
    "non_negative_int",
    "number_in",
    "positive_float",
    "positive_int",
    "print_error",
    "add_workers_option",
    "is_store_file",
    "load_ring",
    "trusted_ring",
    "write_stdout",
]

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_UNUSABLE: Final = 2
#: The file name that means standard input.
STDIN: Final = "-"
#: First bytes of every SQLite database file (how a command tells a store from a bundle).
SQLITE_MAGIC: Final = b"SQLite format 3\x00"


#: Whether this command has read standard input already (:func:`stdin_once`).
_STDIN_READ: Final[ContextVar[bool]] = ContextVar("pith_graph_stdin_read", default=False)


@contextmanager
def stdin_once() -> Iterator[None]:
    """One command's run: ``-`` may name standard input once in it (:func:`input_source`)."""
    token = _STDIN_READ.set(False)
    try:
        yield
    finally:
        _STDIN_READ.reset(token)


def input_source(name: str) -> bytes | Path:
    """What a FILE argument names: the bytes of standard input for ``-``, else the path.

    Standard input can be read once: a second ``-`` in the same command is a usage
    error (it read empty, and was reported as ``not_json``).
    """
    if name != STDIN:
        return Path(name)
    if _STDIN_READ.get():
        raise InputError(
            "<stdin>: - is named more than once; standard input can be read once", code=codes.E_USAGE
        )
    _STDIN_READ.set(True)
    data = sys.stdin.buffer.read(DEFAULT_MAX_BYTES + 1)
    if len(data) > DEFAULT_MAX_BYTES:
        raise InputError(f"<stdin>: larger than {DEFAULT_MAX_BYTES} bytes", code=codes.E_TOO_LARGE)
    return data


def display_name(name: str) -> str:
    """How messages and output name a FILE argument: ``<stdin>`` for ``-``, else as given."""
    return "<stdin>" if name == STDIN else name


@contextmanager
def naming(name: str) -> Iterator[None]:
    """Errors raised inside name the file they are about (``<stdin>`` for ``-``)."""
    try:
        yield
    except PithGraphError as exc:
        exc.naming(display_name(name))
        raise


def load_ring(path: str | None) -> KeyRing | None:
    """The ring a ``--trusted-keys FILE`` names (None: the caller did not give one).

    A file that lists no key is an error: trusting nothing makes every event
    ``unknown_key``, never what a user means.
    """
    if path is None:
        return None
    with naming(path):
        source = input_source(path)
        try:
            data = source if isinstance(source, bytes) else source.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read trusted keys: {exc.strerror or exc}", code=codes.E_IO) from exc
        ring = KeyRing.from_json(data)
        if not len(ring):
            raise InputError(
                "the trusted keys list no key (every event would be unknown_key)", code=codes.E_BAD_KEY
            )
    return ring


def trusted_ring(path: str | None) -> KeyRing:
    """The ring ``--trusted-keys FILE`` names, checked as :func:`load_ring` does; the registry
    ring without one (the mirror's commands and servers, which always need a ring)."""
    return coerce_ring(load_ring(path))


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


def print_error(code: str, message: str) -> None:
    """The one stderr line an unusable input gets: ``pith-graph: error[CODE]: message``."""
    print(f"pith-graph: error[{code}]: {message}", file=sys.stderr)


def write_stdout(data: bytes) -> None:
    """Write bytes to stdout unchanged (state output must be byte-exact)."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def add_trust_options(parser: argparse.ArgumentParser, *, what: str = "the bundle") -> None:
    """``--trusted-keys FILE`` and ``--trust-bundle-keys``, shared by every subcommand that merges."""
    parser.add_argument(
        "--trusted-keys",
        metavar="FILE",
        help="JSON array of the key entries to trust, - for stdin (default: the registry key alone)",
    )
    parser.add_argument(
        "--trust-bundle-keys",
        action="store_true",
        help=f"also trust the public keys {what} lists; unsafe: a document would vouch for its own signers",
    )


def number_in(
    kind: Callable[[str], _N], low: _N, high: _N | None, expected: str, *, above_low: bool = False
) -> Callable[[str], _N]:
    """An argparse type: a finite ``kind`` number from ``low`` (excluded with ``above_low``) to
    ``high`` (None: no bound); anything else is an argparse error saying ``expected ...``."""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            value = None
        fits = (
            value is not None
            and math.isfinite(value)
            and (low < value if above_low else low <= value)
            and (high is None or value <= high)
        )
        if not fits:
            raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
        return value  # type: ignore[return-value]

    return parse


#: An argparse type: an integer, 0 or more.
non_negative_int: Final = number_in(int, 0, None, "0 or a positive integer")
#: An argparse type: an integer, 1 or more.
positive_int: Final = number_in(int, 1, None, "a positive integer")
#: An argparse type: a number above 0 (seconds, mostly).
positive_float: Final = number_in(float, 0.0, None, "a positive number", above_low=True)


def command_line(text: str) -> str:
    """An argparse type: a command whose program exists (on PATH, or as a path)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r}: {exc}") from exc
    if not words:
        raise argparse.ArgumentTypeError("the command is empty")
    if shutil.which(words[0]) is None:
        raise argparse.ArgumentTypeError(f"no such program: {words[0]!r}")
    return text


def _worker_count(text: str) -> int:
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 0 (one per CPU) or a positive count, not {text!r}"
        ) from None


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    """``--workers N``: processes, this one included (validated here, so a bad count is a usage error)."""
    parser.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        metavar="N",
        help="processes, at most one per CPU (0: one per CPU; default: one per CPU, at most 4; 1: serial)",
    )
