"""The ``pith-graph`` console script (``[project.scripts]`` in pyproject.toml).

A module of its own, outside the ``pith_graph`` package, so that the first
thing the command does is take over Ctrl-C (issue 18 item 3): importing the
package (its ``__init__`` and dependencies) takes a few hundred milliseconds on
a loaded machine, and an interrupt in that window printed a traceback from the
middle of some import and ended the process by the signal. Until
:func:`pith_graph.cli.main` takes SIGINT over, an interrupt ends the command at
once with one line and exit 130: nothing has been started, written or read yet.

It imports only ``os`` (loaded by every interpreter before this runs) and the
built-in ``_signal`` (``signal`` itself would import ``enum`` first).
``python -m pith_graph`` gets the same handler from :mod:`pith_graph._startup`.
"""

import _signal  # type: ignore[import-not-found]  # built in, without a stub; signal would import enum first
import os


def interrupted_while_starting(signum: int, frame: object) -> None:
    """SIGINT handler until the command's own: one line on stderr, exit 130, no traceback."""
    try:
        os.write(2, b"pith-graph: interrupted\n")
    finally:
        os._exit(130)


def main() -> int:
    """Run ``pith-graph``: take Ctrl-C over, then import and run the command line."""
    _signal.signal(_signal.SIGINT, interrupted_while_starting)
    from pith_graph.cli import main as run

    return run()
