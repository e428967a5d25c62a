"""Imported by pith_graph's own forkserver before it forks any helper (see
:func:`pith_graph._parallel.pool.process_context`); never imported elsewhere.

Helpers leave Ctrl-C to the process that started them (a terminal's SIGINT
reaches the whole process group). Ignoring it here, in the forkserver, makes
every helper ignore it from its first instruction: the pool's initializer
runs only after the helper has unpickled its start-up data, and an interrupt
in between printed a helper's traceback. The stage-1 code is imported once,
so that each helper forked from here starts ready.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)

import pith_graph._parallel.stage1  # noqa: E402,F401  # preloaded for the helpers
