"""Hostile bundles: bundle-level defects raise InputError with a code; event-level
defects make only that event ``malformed`` and the rest still rebuilds."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes, rebuild_state
from pith_graph.documents import load_bundle
from pith_graph.errors import InputError, PithGraphError
from pith_graph.events import MAX_EVENT_BYTES
from pith_graph.testing import History
from tests.helpers import bundle_of, invalid, rebuild, ref_canonical, seed_bytes

Bundle = dict[str, Any]


def _set(name: str, value: Any) -> Callable[[Bundle], Any]:
    return lambda b: {**b, name: value}


def _drop(name: str) -> Callable[[Bundle], Any]:
    return lambda b: {k: v for k, v in b.items() if k != name}


def _as_text(edit: Callable[[str], str]) -> Callable[[Bundle], Any]:
    def apply(bundle: Bundle) -> bytes:
        text = json.dumps(bundle, ensure_ascii=False, separators=(",", ":"))
        edited = edit(text)
        assert edited != text  # the edit really happened
        return edited.encode("utf-8")

    return apply


BUNDLE_DEFECTS: list[tuple[str, Callable[[Bundle], Any], str]] = [
    ("not JSON", lambda b: b"this is not json", codes.E_NOT_JSON),
    ("empty bytes", lambda b: b"", codes.E_NOT_JSON),
    ("truncated", lambda b: json.dumps(b).encode()[:-10], codes.E_NOT_JSON),
    ("trailing garbage", lambda b: json.dumps(b).encode() + b" {}", codes.E_NOT_JSON),
    ("a JSON array", lambda b: b"[]", codes.E_NOT_PITH),
    ("a JSON string", lambda b: b'"bundle"', codes.E_NOT_PITH),
    ("no bundle_type", _drop("bundle_type"), codes.E_NOT_PITH),
    ("wrong bundle_type", _set("bundle_type", "pith_open_graph_state"), codes.E_NOT_PITH),
    ("bundle_type not a string", _set("bundle_type", 1), codes.E_NOT_PITH),
    ("events an object", _set("events", {}), codes.E_SHAPE),
    ("events a string", _set("events", "[]"), codes.E_SHAPE),
    ("events null", _set("events", None), codes.E_SHAPE),
    ("no events", _drop("events"), codes.E_SHAPE),
    ("no pith_number", _drop("pith_number"), codes.E_SHAPE),
    ("pith_number a number", _set("pith_number", 2026), codes.E_SHAPE),
    ("canonical_record a list", _set("canonical_record", []), codes.E_SHAPE),
    ("source_aliases a string", _set("source_aliases", "arxiv"), codes.E_SHAPE),
    ("alias without kind", _set("source_aliases", [{"alias_value": "x"}]), codes.E_SHAPE),
    ("alias kind a number", _set("source_aliases", [{"alias_kind": 1, "alias_value": "x"}]), codes.E_SHAPE),
    ("duplicate top-level key", _as_text(lambda t: t[:-1] + ',"events":[]}'), codes.E_DUPLICATE_KEY),
    (
        "duplicate key inside an event",
        _as_text(lambda t: t.replace('"target":', '"target":"x","target":', 1)),
        codes.E_DUPLICATE_KEY,
    ),
    (
        "NaN inside an event",
        _as_text(lambda t: t.replace('"payload":{', '"payload":{"n":NaN,', 1)),
        codes.E_NON_FINITE,
    ),
    (
        "1e400 inside an event",
        _as_text(lambda t: t.replace('"payload":{', '"payload":{"n":1e400,', 1)),
        codes.E_NON_FINITE,
    ),
    (
        "lone surrogate inside an event",
        _as_text(lambda t: t.replace('"payload":{', '"payload":{"s":"\\udead",', 1)),
        codes.E_LONE_SURROGATE,
    ),
    (
        "invalid UTF-8",
        lambda b: (
            json.dumps(b, separators=(",", ":"))
            .encode()
            .replace(b'"payload":{', b'"payload":{"s":"\xc3\x28",', 1)
        ),
        codes.E_INVALID_UTF8,
    ),
    (
        "too deep inside an event",
        _as_text(lambda t: t.replace('"payload":{', '"payload":{"d":' + "[" * 70 + "]" * 70 + ",", 1)),
        codes.E_TOO_DEEP,
    ),
    ("100000 levels", lambda b: b"[" * 100_000 + b"]" * 100_000, codes.E_TOO_DEEP),
    ("NaN in a parsed mapping", lambda b: {**b, "events": [{"n": math.nan}]}, codes.E_NON_FINITE),
    ("lone surrogate in a parsed mapping", lambda b: {**b, "events": ["\ud800"]}, codes.E_LONE_SURROGATE),
    ("missing file", lambda b: Path("/nonexistent/bundle.json"), codes.E_IO),
    ("not a document source", lambda b: 12345, codes.E_USAGE),
]


@pytest.mark.parametrize(("name", "edit", "code"), BUNDLE_DEFECTS, ids=[d[0] for d in BUNDLE_DEFECTS])
def test_bundle_level_defects_raise_input_error(
    history: History, name: str, edit: Callable[[Bundle], Any], code: str
) -> None:
    source = edit(bundle_of(history, [history.event("graph_snapshot", payload={})]))
    with pytest.raises(InputError) as caught:
        rebuild_state(source, trusted_keys=history.trusted())
    assert caught.value.code == code
    assert isinstance(caught.value, PithGraphError)
    assert caught.value.message and "\n" not in caught.value.message


def test_other_registry_documents_are_not_bundles() -> None:
    for name in ("state-SGRHL77B.json", "record-GFHD7S67.json", "graph-GFHD7S67.json"):
        with pytest.raises(InputError) as caught:
            rebuild_state(seed_bytes(name))
        assert caught.value.code == codes.E_NOT_PITH


def test_size_limit_on_a_bundle(tmp_path: Path, history: History) -> None:
    data = json.dumps(bundle_of(history, [])).encode()
    path = tmp_path / "bundle.json"
    path.write_bytes(data)
    for source in (data, path):
        load_bundle(source, max_bytes=len(data))
        with pytest.raises(InputError) as caught:
            load_bundle(source, max_bytes=len(data) - 1)
        assert caught.value.code == codes.E_TOO_LARGE


# --- event-level defects -----------------------------------------------------------

EVENT_DEFECTS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("null", lambda e: None),
    ("a number", lambda e: 3.5),
    ("a string", lambda e: "event"),
    ("an array", lambda e: [e]),
    ("an empty object", lambda e: {}),
    ("missing signer", lambda e: {k: v for k, v in e.items() if k != "signer"}),
    ("payload not an object", lambda e: {**e, "payload": [1]}),
    ("prev_event not an id", lambda e: {**e, "prev_event": "the one before"}),
    ("created_at with offset", lambda e: {**e, "created_at": "2026-06-03T00:00:00+01:00"}),
    ("oversized payload", lambda e: {**e, "payload": {"blob": "x" * (MAX_EVENT_BYTES + 1)}}),
]


@pytest.mark.parametrize(("name", "edit"), EVENT_DEFECTS, ids=[d[0] for d in EVENT_DEFECTS])
def test_event_level_defect_is_malformed_and_the_rest_rebuilds(
    history: History, name: str, edit: Callable[[dict[str, Any]], Any]
) -> None:
    good = history.event("graph_snapshot", payload={"ok": True})
    other = history.event("correction", target="notes", payload={"ok": 1})
    bad = edit(copy.deepcopy(history.event("mirror_hint", target="m", payload={})))
    state = rebuild(history, [good, bad, other])
    if isinstance(bad, dict) and isinstance(bad.get("event_id"), str):
        uid = bad["event_id"]
    else:
        uid = "sha256:" + hashlib.sha256(ref_canonical(bad)).hexdigest()
    assert invalid(state) == {uid: codes.REASON_MALFORMED}
    assert state.to_dict()["applied_event_ids"] == [
        history.record_created["event_id"],
        good["event_id"],
        other["event_id"],
    ]
    assert state.event_count == 4 and state.valid_event_count == 3


def test_many_hostile_events_together(history: History) -> None:
    good = history.event("graph_snapshot", payload={})
    hostile: list[Any] = [
        None,
        [],
        {},
        "x",
        0,
        True,
        {"event_id": good["event_id"]},
        {"event_id": "sha256:" + "A" * 64},
    ]
    state = rebuild(history, [*hostile, good, *hostile])
    reasons = invalid(state)
    assert set(reasons.values()) == {codes.REASON_MALFORMED}
    # the bogus object claiming the good event's id is a copy of it: the valid copy wins
    assert good["event_id"] not in reasons
    assert state.valid_event_count == 2
    assert state.event_count == len(reasons) + 2 == 2 + 7
