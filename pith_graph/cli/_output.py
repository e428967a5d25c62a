"""The JSON output format of every ``pith-graph`` command (``--json``): ``pith-graph/1``.

Every command that takes ``--json`` prints exactly one JSON object on stdout,
even when some inputs were unusable, and its exit code is the same as without
``--json``. The object always has::

    {"format": "pith-graph/1", "command": "verify", "exit_code": 0, ...}

and then the command's own members (docs/cli.md lists them). The shared pieces:

* a *report* (:meth:`pith_graph.report.Report.to_dict`): ``kind``, ``source``,
  ``ok``, ``usable``, ``problems`` and ``facts``;
* a *problem*: ``code``, ``message``, ``where``, ``severity`` and ``reason``
  (the merge-v1 reason of an ``invalid_event``, else null), root causes first;
* an *error* (:func:`error_member`): ``code`` and ``message`` of the one error
  that stopped the command, which the command also prints on stderr.

Every command builds its output with :func:`envelope` and prints it with
:func:`emit`, the mirror's included, so the format stays one.
New members may be added within ``pith-graph/1``; none is removed or changes
meaning without a new format version.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from typing import Any, Final

from pith_graph.cli._common import write_stdout
from pith_graph.errors import PithGraphError

__all__ = ["FORMAT", "JSON_HELP", "JsonSpool", "command_of", "emit", "envelope", "error_member"]

#: The version of the JSON output format, carried by every document as ``format``.
FORMAT: Final = "pith-graph/1"
#: The help of every ``--json`` option that prints such a document.
JSON_HELP: Final = "print one pith-graph/1 JSON document (docs/cli.md)"
#: Spaces per level of an output document (:func:`emit`, :class:`JsonSpool`).
_INDENT: Final = 2


#: The ``dest`` of each level of subcommands, outermost first (how :func:`command_of` names a command).
_COMMAND_LEVELS: Final = ("command", "store_command", "mirror_command", "peers_command")


def command_of(args: Any) -> str:
    """The ``command`` member for parsed arguments: the subcommands as typed (``"mirror peers list"``)."""
    return " ".join(str(part) for part in (getattr(args, level, None) for level in _COMMAND_LEVELS) if part)


def envelope(command: str, exit_code: int, **members: Any) -> dict[str, Any]:
    """A ``pith-graph/1`` document: ``format``, ``command``, ``exit_code``, then ``members``."""
    return {"format": FORMAT, "command": command, "exit_code": exit_code, **members}


def error_member(error: PithGraphError) -> dict[str, str]:
    """The ``error`` member of an output document (or of one input's entry)."""
    return {"code": error.code, "message": error.message}


def emit(document: dict[str, Any]) -> None:
    """Print an output document (:func:`envelope`) on stdout (indented, UTF-8, one trailing newline)."""
    write_stdout(json.dumps(document, indent=_INDENT, ensure_ascii=False).encode("utf-8") + b"\n")


class JsonSpool:
    """The entries of a document's (last) list member, spooled to a temporary file as they
    come, then printed inside their document: what :func:`emit` prints for it, byte for
    byte, without holding the list (a mirror's import has millions of entries).

    The envelope's ``exit_code`` comes before the list and is known only at the end, so
    the list waits on disk, not in memory.
    """

    #: An entry's indentation: the list is a member of the document (two levels deep).
    _ENTRY: Final = "\n" + " " * (2 * _INDENT)

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115  # closed by __exit__
        self._count = 0

    def __enter__(self) -> JsonSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def add(self, entry: Any) -> None:
        """Spool one entry of the list (indented as inside the document)."""
        text = json.dumps(entry, indent=_INDENT, ensure_ascii=False).replace("\n", self._ENTRY)
        self._file.write(((("," if self._count else "") + self._ENTRY) + text).encode("utf-8"))
        self._count += 1

    def emit(self, document: dict[str, Any], member: str) -> None:
        """Print ``document`` with the spooled entries as its (last) ``member``."""
        token = f"\x00pith-graph-spool-{uuid.uuid4().hex}"
        head, tail = json.dumps({**document, member: token}, indent=_INDENT, ensure_ascii=False).split(
            json.dumps(token)
        )
        out = sys.stdout.buffer
        out.write(head.encode("utf-8") + b"[")
        self._file.seek(0)
        shutil.copyfileobj(self._file, out)
        closing = "\n" + " " * _INDENT + "]" if self._count else "]"
        out.write((closing + tail + "\n").encode("utf-8"))
        out.flush()
