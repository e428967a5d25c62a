"""What every ``pith-graph`` subcommand shares: exit codes, the trusted-keys reader, stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from pith_graph import codes
from pith_graph.errors import InputError
from pith_graph.keys import KeyRing

__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "EXIT_UNUSABLE", "load_ring", "write_stdout"]

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_UNUSABLE: Final = 2


def load_ring(path: str | None) -> KeyRing | None:
    """The ring a ``--trusted-keys FILE`` names (None: the caller did not give one)."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read trusted keys {path}: {exc.strerror or exc}", code=codes.E_IO) from exc
    return KeyRing.from_json(data)


def write_stdout(data: bytes) -> None:
    """Write bytes to stdout unchanged (state output must be byte-exact)."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
