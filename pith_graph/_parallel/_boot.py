"""Imported by pith_graph's own forkserver before it forks any helper (see
:func:`pith_graph._parallel.pool.process_context`); never imported elsewhere.

Helpers leave Ctrl-C to the process that started them (a terminal's SIGINT
reaches the whole process group). Ignoring it here, in the forkserver, makes
every helper ignore it from its first instruction: the pool's initializer
runs only after the helper has unpickled its start-up data, and an interrupt
in between printed a helper's traceback. The stage-1 code is imported once,
so that each helper forked from here starts ready.

A helper whose parent stops (Ctrl-C, an error) while the helper is still reading
its start-up data finds the pool's queues already gone (their semaphores
unlinked, their pipes closed). The forkserver prints such a child's error with
``sys.excepthook``, after the parent's own one clean line; those errors end the
helper quietly instead. Any other start-up error is printed as before.
"""

import signal
import sys
from types import TracebackType

signal.signal(signal.SIGINT, signal.SIG_IGN)

#: What reading its start-up data raises in a helper whose parent has already gone.
_PARENT_GONE = (FileNotFoundError, EOFError, BrokenPipeError, ConnectionResetError)


def _helper_excepthook(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    if not issubclass(kind, _PARENT_GONE):
        sys.__excepthook__(kind, value, traceback)


sys.excepthook = _helper_excepthook

import pith_graph._parallel.stage1  # noqa: E402,F401  # preloaded for the helpers
