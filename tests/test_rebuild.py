"""``rebuild_state``'s streaming path: events parsed, checked and dropped one at a time.

Given bytes or a path, ``rebuild_state`` splits the bundle into its strictly
parsed shell and its unparsed events (``documents.split_bundle``). Everything it
returns or raises must be what the full path (``rebuild``: one strict parse of
the whole document) gives: compared byte for byte here, on real signed events.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pith_graph import rebuild as rebuild_module
from pith_graph.canonical import MAX_DEPTH
from pith_graph.documents import event_texts, split_bundle
from pith_graph.errors import InputError, TrustError
from pith_graph.rebuild import rebuild, rebuild_state
from pith_graph.testing import History, TestKey, resign


def varied_events(history: History, alice: TestKey, bob: TestKey) -> list[Any]:
    a1 = history.event("graph_snapshot", key=alice, payload={"n": 1})
    a2 = history.event("graph_snapshot", key=alice, payload={"n": 2}, prev_event=a1["event_id"])
    fork = history.event("graph_snapshot", key=alice, payload={"n": 3}, prev_event=a1["event_id"])
    c1 = history.event("correction", payload={"fix": "first"})
    c2 = history.event(
        "correction", payload={"fix": "second"}, prev_event=c1["event_id"], supersedes=[c1["event_id"]]
    )
    floats = history.event(
        "author_attestation", key=alice, target="author", payload={"score": 1e16, "tiny": 1e-07}
    )
    forged = copy.deepcopy(a2)
    forged["signature"]["signature_b64"] = TestKey("forger").sign_b64(bytes.fromhex(a2["content_sha256"]))
    return [
        a1,
        a2,
        fork,
        c1,
        c2,
        floats,
        dict(a1),
        forged,
        {**c1, "payload": {"fix": "edited"}},  # same unit as c1, content_hash_mismatch
        {**c2, "payload": {"fix": "edited"}},
        {**c2, "payload": {"fix": "other edit"}},  # two bad copies: tie by digest
        resign({**a1, "target": "figure"}, alice),
        history.event("mirror_hint", key=bob, payload={"url": "https://bob.example", "text": "é\u2028😀"}),
        ["not", "an", "event"],
        42,
        None,
        {"event_id": "garbage"},
    ]


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
