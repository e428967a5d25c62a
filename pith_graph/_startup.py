"""Ctrl-C while ``python -m pith_graph`` is still starting: one line and exit 130.

Imported first by ``pith_graph/__init__`` and does something only in the
process of the command itself (``python -m pith_graph`` or ``python -m
pith_graph.cli``), never in a program that imports the library: it installs
the handler of the ``pith-graph`` console script's module,
``_pith_graph_command`` (where the reasons are), which installs it itself
before it imports the package at all. Until then only modules the interpreter
has already loaded are imported (tests/cli/test_new_user.py checks it).
"""

import _signal  # type: ignore[import-not-found]  # built in, without a stub; signal would import enum first
import os
import sys

__all__ = ["is_the_command"]

#: How the command may have been started: the console script (one installed before
#: it had a module of its own, which imported pith_graph.cli), or ``python -m``.
_SCRIPT_NAMES = ("pith-graph",)
_MODULE_NAMES = ("pith_graph", "pith_graph.cli")


def is_the_command() -> bool:
    """Whether this process is the ``pith-graph`` command (not a program using the library)."""
    main = sys.modules.get("__main__")
    if os.path.basename(getattr(main, "__file__", None) or "") in _SCRIPT_NAMES:
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] in _MODULE_NAMES


if is_the_command() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    from _pith_graph_command import interrupted_while_starting

    try:  # noqa: SIM105  # not contextlib.suppress: nothing not loaded yet before the handler
        _signal.signal(_signal.SIGINT, interrupted_while_starting)
    except ValueError:  # not the main thread (an embedding program's): leave it alone
        pass
