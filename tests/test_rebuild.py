"""``rebuild_state``'s streaming path: events parsed, checked and dropped one at a time.

Given bytes or a path, ``rebuild_state`` splits the bundle into its strictly
parsed shell and its unparsed events (``documents.split_bundle``). Everything it
returns or raises must be what the full path (``rebuild``: one strict parse of
the whole document) gives: compared byte for byte here, on real signed events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pith_graph import rebuild as rebuild_module
from pith_graph.canonical import MAX_DEPTH
from pith_graph.documents import event_texts, split_bundle
from pith_graph.errors import InputError, TrustError
from pith_graph.rebuild import rebuild, rebuild_state
from pith_graph.testing import History, TestKey
from tests.helpers import varied_events


def full_path(source: Any, **kwargs: Any) -> bytes:
    return rebuild(source, workers=1, **kwargs).result.state.to_json()


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the rebuilds that really took the streaming path."""
    calls: list[int] = []
    original = rebuild_module._rebuild_streaming

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(rebuild_module, "_rebuild_streaming", spy)
    return calls


def test_streaming_equals_the_full_path(
    tmp_path: Path, history: History, alice: TestKey, bob: TestKey, streamed: list[int]
) -> None:
    bundle = history.bundle(varied_events(history, alice, bob))
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False, indent=1))  # whitespace between events too
    data = json.dumps(bundle, separators=(",", ":")).encode()
    for keys in (
        {"trusted_keys": [history.registry.entry(), alice.entry()]},
        {},
        {"trust_bundle_keys": True},
    ):
        for source in (data, path, str(path)):
            assert rebuild_state(source, workers=1, **keys).to_json() == full_path(source, **keys)
    assert len(streamed) == 9
    state = json.loads(full_path(data, trusted_keys=[history.registry.entry(), alice.entry()]))
    assert state["equivocation_count"] == 1 and state["invalid_event_count"] >= 6  # it tests what it claims


def test_events_text_repeated_elsewhere_is_not_mistaken_for_the_events(
    history: History, alice: TestKey
) -> None:
    """The events array's text, found first inside another member, must not be cut from there."""
    events = [history.event("graph_snapshot", key=alice, payload={"n": 1})]
    bundle = history.bundle(events)
    decoy = {"aaa_decoy": bundle["events"], **bundle}  # serialised before "events", same text
    data = json.dumps(decoy, separators=(",", ":")).encode()
    assert data.index(json.dumps(bundle["events"], separators=(",", ":")).encode()) < data.index(b'"events"')
    assert split_bundle(data) is None  # refused, so the full path runs
    keys = [history.registry.entry(), alice.entry()]
    assert rebuild_state(data, trusted_keys=keys).to_json() == full_path(data, trusted_keys=keys)


def _with_separators(bundle: dict[str, Any], comma: str, bracket_gap: str) -> bytes:
    """The bundle's JSON with the events array written with odd (but legal) white space."""
    events = (comma).join(json.dumps(e) for e in bundle["events"])
    shell = json.dumps({**bundle, "events": "@EVENTS@"})
    return shell.replace('"@EVENTS@"', "[" + bracket_gap + events + bracket_gap + "]").encode()


@pytest.mark.parametrize(
    ("comma", "gap"), [(",", ""), (", ", " "), ("\n,\n", "\n"), (" \t\r\n, \t\r\n", "\r\n\t ")]
)
def test_the_events_are_cut_exactly_whatever_the_white_space(
    history: History, alice: TestKey, bob: TestKey, comma: str, gap: str
) -> None:
    events = varied_events(history, alice, bob)
    events.append(events[0])  # an item repeated: each is found where the previous one ends
    data = _with_separators(history.bundle(events), comma, gap)
    split = split_bundle(data)
    assert split is not None
    assert [bytes(t) for t in event_texts(split.events_text)] == [bytes(t) for t in split.events]
    assert [json.loads(bytes(t)) for t in split.events] == json.loads(data)["events"]
    keys: dict[str, Any] = {"trusted_keys": [history.registry.entry(), alice.entry()]}
    assert rebuild_state(data, workers=1, **keys).to_json() == full_path(data, **keys)


def test_a_short_first_event_that_also_occurs_earlier_is_still_cut(history: History, alice: TestKey) -> None:
    """``1`` occurs in the shell before the events array: the next place it occurs is tried."""
    bundle = history.bundle([history.event("graph_snapshot", key=alice, payload={"n": 1})])
    bundle["events"] = [1, *bundle["events"], "1"]
    data = json.dumps(bundle, separators=(",", ":")).encode()
    assert data.index(b"1") < data.index(b'"events"')
    split = split_bundle(data)
    assert split is not None
    assert bytes(split.events[0]) == b"1"
    keys: dict[str, Any] = {"trusted_keys": [history.registry.entry(), alice.entry()]}
    assert rebuild_state(data, workers=1, **keys).to_json() == full_path(data, **keys)


@pytest.mark.parametrize(
    "events_text",
    [b"[]", b'[{"a": 1},]', b'[{"a": 1} {"a": 2}]', b'[{"a": 1},,{"a": 2}]'],
    ids=["empty", "trailing comma", "no comma", "two commas"],
)
def test_events_arrays_the_split_refuses(history: History, events_text: bytes) -> None:
    """Nothing irregular is cut: the full path then parses (and reports) the whole document."""
    data = (
        json.dumps({**history.bundle([]), "events": "@EVENTS@"}).encode().replace(b'"@EVENTS@"', events_text)
    )
    assert split_bundle(data) is None


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("extra", [MAX_DEPTH - 4, MAX_DEPTH - 3])
def test_depth_limit_counts_the_levels_above_an_event(
    history: History, extra: int, streamed: list[int]
) -> None:
    """bundle (1) > events (2) > event (3) > payload (4) > extra levels: 64 in all is the limit."""
    event = history.event("graph_snapshot", payload={"d": _nested(extra)})
    data = json.dumps(history.bundle([event])).encode()
    depth_ok = 4 + extra <= MAX_DEPTH
    if depth_ok:
        assert rebuild_state(data).to_json() == full_path(data)
        assert streamed
    else:
        for rebuild_fn in (rebuild_state, lambda d: rebuild(d, workers=1)):
            with pytest.raises(InputError) as caught:
                rebuild_fn(data)
            assert caught.value.code == "too_deep"


def test_a_second_events_member_is_a_duplicate_key_not_a_hiding_place(
    history: History, alice: TestKey
) -> None:
    """The same events text twice under "events": the cut must leave the other one for the strict parse."""
    bundle = history.bundle([history.event("graph_snapshot", key=alice, payload={"n": 1})])
    text = json.dumps(bundle, separators=(",", ":"))
    events_text = json.dumps(bundle["events"], separators=(",", ":"))
    doubled = (text[:-1] + ',"events":' + events_text + "}").encode()
    assert split_bundle(doubled) is None
    for rebuild_fn in (rebuild_state, lambda d: rebuild(d, workers=1)):
        with pytest.raises(InputError) as caught:
            rebuild_fn(doubled)
        assert caught.value.code == "duplicate_key"


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("call", ["rebuild", "rebuild_state"])
def test_keys_given_as_a_one_shot_iterator_are_read_whole(
    history: History, alice: TestKey, call: str, workers: int
) -> None:
    """A rebuild reads the caller's keys twice (the helpers' pre-pass, then the strict
    path; or the streaming path, then the full one): a spent iterator the second time
    trusted no key, and a bad entry in it went unreported."""
    events = [history.event("graph_snapshot", key=alice, payload={"n": 1})]
    data = json.dumps(history.bundle(events)).encode()
    entries = history.trusted()

    def state(keys: Any) -> bytes:
        if call == "rebuild":
            return rebuild(data, trusted_keys=keys, workers=workers).result.state.to_json()
        return rebuild_state(data, trusted_keys=keys, workers=workers).to_json()

    expected = state(list(entries))
    assert json.loads(expected)["valid_event_count"] == 2
    assert state(iter(entries)) == expected
    assert state(entry for entry in entries) == expected
    with pytest.raises(TrustError) as caught:
        state(iter([*entries, {"key_id": "broken", "public_key_hex": "zz"}]))
    assert caught.value.code == "bad_key"

    def failing() -> Any:
        yield from entries
        raise TypeError("the caller's own source of keys failed")

    with pytest.raises(TypeError):  # never swallowed into a ring of the keys read so far
        state(failing())


# The embedded state: split_bundle cuts its text out of the shell unparsed; text equal
# to the rebuilt state's bytes is only depth-checked (documents.settle_state), any other
# text is parsed strictly. Every outcome must be the full path's.


def _with_state(history: History, events: list[Any], **keys: Any) -> dict[str, Any]:
    """A bundle embedding the state the full path rebuilds from it (under ``keys``)."""
    bundle = history.bundle(events)
    bundle["state"] = json.loads(full_path(json.dumps(bundle).encode(), **keys))
    return bundle


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def test_an_embedded_state_equal_to_the_rebuilt_one_is_not_parsed(
    history: History, alice: TestKey, bob: TestKey, streamed: list[int]
) -> None:
    keys: dict[str, Any] = {"trusted_keys": [history.registry.entry(), alice.entry()]}
    data = _compact(_with_state(history, varied_events(history, alice, bob), **keys))
    split = split_bundle(data)
    assert split is not None and split.state_text is not None
    assert split.shell["state"] is None and split.model.state is None
    assert rebuild_state(data, workers=1, **keys).to_json() == split.state_text == full_path(data, **keys)
    assert streamed
    streamed_result = rebuild_module.stream_rebuild(data, keys["trusted_keys"], False, 1)
    assert streamed_result is not None and streamed_result.split.state_text == split.state_text


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: text.replace(b'"event_count":', b'"event_count":0,"event_count":', 1),
        lambda text: text.replace(b'"valid_event_count":', b'"valid_event_count":1e400,"x":', 1),
        lambda text: text.replace(b'"event_count":', b'"event_count":9' + b"9" * 700 + b',"x":', 1),
        lambda text: text.replace(b'"event_count":', b'"x":"\\ud800","event_count":', 1),
        lambda text: text.replace(b'"event_count":', b'"x":' + b"[" * 70 + b"]" * 70 + b',"event_count":', 1),
        lambda text: text.replace(b'"event_count":', b'"event_count":3,"x":', 1),  # valid, differs
    ],
    ids=["duplicate key", "infinity", "long integer", "lone surrogate", "too deep", "valid, different"],
)
def test_an_embedded_state_that_differs_is_parsed_strictly(
    history: History, alice: TestKey, edit: Any, streamed: list[int]
) -> None:
    events = [history.event("graph_snapshot", key=alice, payload={"n": 1})]
    bundle = _with_state(history, events)
    state_text = _compact(bundle["state"])
    data = _compact(bundle).replace(state_text, edit(state_text))
    assert data != _compact(bundle)
    split = split_bundle(data)
    # Cut, to be parsed after the merge (msgspec's lenient first pass already refuses a lone
    # surrogate, and the split then leaves the whole document to the full path).
    assert split is None if b"\\ud800" in data else split is not None and split.state_text is not None
    try:
        expected = full_path(data)
    except InputError as exc:
        with pytest.raises(InputError) as caught:
            rebuild_state(data, workers=1)
        assert caught.value.code == exc.code and caught.value.code != "ok"
    else:
        assert rebuild_state(data, workers=1).to_json() == expected
        streamed_result = rebuild_module.stream_rebuild(data, None, False, 1)
        assert streamed_result is not None and streamed_result.split.state_text is None  # put back
        assert streamed_result.split.model.state == json.loads(edit(state_text))


@pytest.mark.parametrize("extra", [MAX_DEPTH - 6, MAX_DEPTH - 5])
def test_an_embedded_state_equal_to_the_rebuilt_one_still_counts_its_depth(
    history: History, extra: int, streamed: list[int]
) -> None:
    """A payload sits two levels deeper in the embedded state (bundle > state > current >
    collection > entry > payload) than in its event (bundle > events > event > payload):
    an event within the limit can make the state, and so the bundle, too deep."""
    keys: dict[str, Any] = {"trusted_keys": [history.registry.entry()]}  # the event is applied
    event = history.event("graph_snapshot", payload={"d": _nested(extra)})
    bundle = history.bundle([event])
    assert 4 + extra <= MAX_DEPTH  # the event itself is within the limit
    state = rebuild_state(_compact(bundle), **keys)
    assert state.applied_event_ids[-1] == event["event_id"]
    bundle["state"] = json.loads(state.to_json())
    data = _compact(bundle)
    split = split_bundle(data)
    assert split is not None and split.state_text is not None
    if 6 + extra <= MAX_DEPTH:
        assert rebuild_state(data, workers=1, **keys).to_json() == full_path(data, **keys) == split.state_text
        assert streamed
    else:
        for rebuild_fn in (
            lambda d: rebuild_state(d, workers=1, **keys),
            lambda d: rebuild(d, workers=1, **keys),
        ):
            with pytest.raises(InputError) as caught:
                rebuild_fn(data)
            assert caught.value.code == "too_deep"


def test_a_state_text_found_first_elsewhere_is_not_cut_from_there(history: History, alice: TestKey) -> None:
    """The state's text after a ``"state":`` in another member, before the bundle's own."""
    keys: dict[str, Any] = {"trusted_keys": [history.registry.entry(), alice.entry()]}
    bundle = _with_state(history, [history.event("graph_snapshot", key=alice, payload={"n": 1})], **keys)
    decoy = {"aaa_decoy": {"state": bundle["state"]}, **bundle}
    data = _compact(decoy)
    assert data.index(b'"state":' + _compact(bundle["state"])) < data.index(b'"events"')
    split = split_bundle(data)
    assert split is None or split.shell["aaa_decoy"] == {"state": bundle["state"]}
    assert rebuild_state(data, workers=1, **keys).to_json() == full_path(data, **keys)


@pytest.mark.parametrize("state", [None, [], "text", {}], ids=["null", "array", "string", "empty object"])
def test_states_that_are_not_cut_or_do_not_match(history: History, state: Any) -> None:
    bundle = {**history.bundle([]), "state": state}
    data = _compact(bundle)
    split = split_bundle(data)
    if split is not None:
        assert (split.state_text is not None) == isinstance(state, dict)
    try:
        expected = full_path(data)
    except InputError as exc:
        with pytest.raises(InputError) as caught:
            rebuild_state(data, workers=1)
        assert caught.value.code == exc.code
    else:
        assert rebuild_state(data, workers=1).to_json() == expected
