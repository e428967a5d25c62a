"""``documents.split_bundle`` never lets a byte escape the strict parse.

``rebuild_state`` cuts the events array out of a bundle's text, strictly parses
the rest (the shell), then strictly parses each event on its own. Whatever the
text (white space, escapes, duplicate keys, excess depth, decoy copies of the
events elsewhere, a second ``events`` member), that must accept exactly what
one strict parse of the whole document accepts, and read the same values.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from pith_graph.canonical import MAX_DEPTH, loads
from pith_graph.documents import EVENT_DEPTH_OFFSET, split_bundle
from pith_graph.errors import InputError
from pith_graph.rebuild import rebuild_state
from pith_graph.testing import History, TestKey

_KEY = TestKey("split-properties")
_HISTORY = History.new(_KEY, arxiv_id="2601.00077")
#: A real bundle's members (their values are written as json.dumps writes them).
_SHELL = _HISTORY.bundle([_HISTORY.event("graph_snapshot", payload={"n": 1})])


class Pairs(list[tuple[str, Any]]):
    """An object written member by member, so a key may repeat."""


_white = st.sampled_from(["", " ", "\n", "\t", "\r\n  "])
_keys = st.sampled_from(["a", "b", "events", "\u00e9", 'q"', "x\\", "]", "[", ",", ":"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.sampled_from(["", "[1,2]", '{"a":1}', "\\", '"', "\u2028"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(_keys, inner), max_size=3).map(Pairs),
    max_leaves=8,
)


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _write(value: Any, white: list[str]) -> str:
    """JSON text of ``value`` with white space drawn from ``white`` (cycled) around punctuation."""

    def gap() -> str:
        white.append(white.pop(0))
        return white[0]

    if isinstance(value, Pairs):
        members = f"{gap()},{gap()}".join(
            f"{json.dumps(k)}{gap()}:{gap()}{_write(v, white)}" for k, v in value
        )
        return "{" + gap() + members + gap() + "}"
    if isinstance(value, list):
        return "[" + gap() + f"{gap()},{gap()}".join(_write(v, white) for v in value) + gap() + "]"
    return json.dumps(value)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A bundle's text: its real members, odd events, odd extra members, in any order."""
    # Compact text too, as the registry writes it (the state is cut from that only).
    white = draw(st.just([""]) | st.lists(_white, min_size=1, max_size=5))
    events: list[Any] = draw(st.lists(_values | st.just(_SHELL["events"][0]), min_size=1, max_size=5))
    if draw(st.booleans()):
        events.append(_deep(draw(st.integers(MAX_DEPTH - 4, MAX_DEPTH))))  # near the depth limit
    members = [(k, v) for k, v in _SHELL.items() if k != "events"]
    members.insert(draw(st.integers(0, len(members))), ("events", events))
    extra = draw(st.sampled_from(["none", "decoy before", "decoy after", "second events", "odd member"]))
    if extra == "decoy before":
        members.insert(0, ("decoy", events))
    elif extra == "decoy after":
        members.append(("decoy", events))
    elif extra == "second events":
        members.append(("events", events))
    elif extra == "odd member":
        members.append((draw(_keys), draw(_values)))
    if draw(st.booleans()):  # an embedded state, which the split cuts out when it can
        state = Pairs(draw(st.lists(st.tuples(_keys, _values), max_size=3)))
        if draw(st.booleans()):
            state.append(("d", _deep(draw(st.integers(MAX_DEPTH - 4, MAX_DEPTH)))))  # near the limit
        members.insert(draw(st.integers(0, len(members))), ("state", state))
    return _write(Pairs(members), white)


def _outcome(parse: Any) -> tuple[str, Any]:
    try:
        return "ok", parse()
    except InputError as exc:
        return "error", exc.code


@given(text=documents())
def test_the_split_accepts_exactly_what_the_strict_parse_accepts(text: str) -> None:
    data = text.encode()
    whole = _outcome(lambda: loads(data))
    split = split_bundle(data)
    cut = "refused" if split is None else "cut" if split.state_text is None else "cut with the state"
    event(f"split: {cut}; whole: {whole[0] if whole[0] == 'ok' else whole[1]}")
    if split is None:
        return  # rebuild_state then takes the full path: the strict parse itself
    # Helpers read each event at its start in a copy of the bytes: the same text.
    assert [data[start : start + len(t)] for start, t in zip(split.starts, split.events, strict=True)] == [
        bytes(t) for t in split.events
    ]
    # The shell parsed strictly; so the document fails exactly when some event, or the
    # state cut out with them (documents.settle_state parses text it did not write), does.
    state_text = split.state_text
    parts = _outcome(
        lambda: (
            [loads(bytes(t), max_depth=MAX_DEPTH - EVENT_DEPTH_OFFSET) for t in split.events],
            None if state_text is None else loads(state_text, max_depth=MAX_DEPTH - 1),
        )
    )
    assert parts[0] == whole[0], (whole, parts)
    if whole[0] == "ok":
        events, state = parts[1]
        assert whole[1] == {
            **split.shell,
            "events": events,
            **({} if state_text is None else {"state": state}),
        }
        assert loads(bytes(split.events_text), max_depth=MAX_DEPTH - 1) == events


@given(text=documents())
def test_rebuild_state_raises_the_strict_parse_error(text: str) -> None:
    """The parts may fail on another defect first (an event's duplicate key before another
    event's depth); rebuild_state then takes the full path, which names the whole document's."""
    data = text.encode()
    whole = _outcome(lambda: loads(data))
    rebuilt = _outcome(lambda: rebuild_state(data, workers=1).to_json())
    if whole[0] == "ok":
        assert rebuilt[0] == "ok", rebuilt
    else:
        assert rebuilt == whole
