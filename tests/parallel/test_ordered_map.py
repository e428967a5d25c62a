"""``pool.ordered_map``: helpers run a task over inputs read lazily, outcomes in order (``store import --workers``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from pith_graph._parallel.pool import CHUNKS_IN_FLIGHT, ordered_map
from pith_graph.errors import InputError


def _square(value: int, caller: int) -> tuple[int, bool]:
    """The task: the square, and whether a helper (not the caller) computed it."""
    return value * value, os.getpid() != caller


def _dies_on(value: int, caller: int) -> tuple[int, bool]:
    """The task, except that a helper given 13 is killed (as the system's memory killer would)."""
    if value == 13 and os.getpid() != caller:
        os.kill(os.getpid(), signal.SIGKILL)
    return _square(value, caller)


def test_outcomes_come_in_order_from_helpers() -> None:
    outcomes = list(ordered_map(_square, range(100), 2, os.getpid(), chunk=3))
    assert [value for value, _ in outcomes] == [i * i for i in range(100)]
    assert all(helper for _, helper in outcomes)


def test_inputs_are_read_lazily() -> None:
    pulled = 0

    def inputs() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    outcomes = ordered_map(_square, inputs(), 2, os.getpid(), chunk=4)
    assert next(outcomes) == (0, True)
    # At most the chunks in flight, and the one handed out after the first came back.
    assert pulled <= (2 * CHUNKS_IN_FLIGHT + 1) * 4
    outcomes.close()


def test_an_error_of_the_inputs_comes_after_the_outcomes_before_it() -> None:
    def inputs() -> Iterator[int]:
        yield from range(7)
        raise InputError("walking failed", code="no_documents")

    seen = []
    with pytest.raises(InputError):
        for value, _ in ordered_map(_square, inputs(), 2, os.getpid(), chunk=3):
            seen.append(value)
    assert seen == [i * i for i in range(7)]


def test_inputs_a_dead_helper_left_are_run_here() -> None:
    caller = os.getpid()
    outcomes = list(ordered_map(_dies_on, range(40), 2, caller, chunk=2))
    assert [value for value, _ in outcomes] == [i * i for i in range(40)]
    assert outcomes[13] == (169, False)  # the helper died: it was computed here
