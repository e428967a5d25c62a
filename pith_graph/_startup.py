"""Ctrl-C while the ``pith-graph`` command is still starting: one line and exit 130.

Imported first by ``pith_graph/__init__`` and does something only in the
process of the command itself (the ``pith-graph`` script, or ``python -m
pith_graph``), never in a program that imports the library. Importing the
package takes a few hundred milliseconds on a loaded machine; an interrupt in
that window used to print a traceback from the middle of some import and end
the process by the signal. Until :func:`pith_graph.cli.main` takes over
SIGINT, an interrupt ends the command at once: nothing has been started,
written or read yet.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Final

__all__ = ["interrupted_while_starting", "is_the_command"]

#: How the command may have been started: the console script, or ``python -m``.
_SCRIPT_NAMES: Final = ("pith-graph",)
_MODULE_NAMES: Final = ("pith_graph", "pith_graph.cli")


def is_the_command() -> bool:
    """Whether this process is the ``pith-graph`` command (not a program using the library)."""
    main = sys.modules.get("__main__")
    if os.path.basename(getattr(main, "__file__", None) or "") in _SCRIPT_NAMES:
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] in _MODULE_NAMES


def interrupted_while_starting(signum: int, frame: object) -> None:
    """SIGINT handler until the command's own: one line on stderr, exit 130, no traceback."""
    try:
        os.write(2, b"pith-graph: interrupted\n")
    finally:
        os._exit(130)


if (
    is_the_command()
    and threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
):
    signal.signal(signal.SIGINT, interrupted_while_starting)
