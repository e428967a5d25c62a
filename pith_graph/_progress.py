"""Progress by events: an opt-in hook the long loops call (the CLI draws it on a terminal).

The rebuild's streaming loop (:func:`pith_graph.rebuild.stream_rebuild`) calls
:func:`advance` once per chunk of events with the events done and the total.
Nothing is reported unless a caller installed a hook with :func:`reporting`
(a context variable: per thread and per task, never global), so a library call
prints nothing and costs one lookup per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

__all__ = ["ProgressHook", "advance", "reporting"]

#: ``hook(done, total)``: ``done`` of ``total`` events are through.
ProgressHook = Callable[[int, int], None]

_HOOK: Final[ContextVar[ProgressHook | None]] = ContextVar("pith_graph_progress", default=None)


def advance(done: int, total: int) -> None:
    """Report that ``done`` of ``total`` events are through (to the installed hook, if any)."""
    hook = _HOOK.get()
    if hook is not None:
        hook(done, total)


@contextmanager
def reporting(hook: ProgressHook | None) -> Iterator[None]:
    """Send :func:`advance` calls made inside to ``hook`` (None: to nobody)."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)
