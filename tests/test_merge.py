"""merge-v1 history rules: forks, supersedes, apply order, order independence, serialisation."""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import random
from typing import Any

import pytest

from pith_graph import codes, rebuild_state
from pith_graph.events import CheckedEvent, EventFacts
from pith_graph.state import State
from pith_graph.testing import History, TestKey
from tests.helpers import bundle_of, current_ids, invalid, rebuild, ref_canonical, ref_state_sha256

Event = dict[str, Any]
merge_module = importlib.import_module("pith_graph.merge")  # the package exports a function of that name
SNAPSHOT = {"graph_snapshot": {"claims": {"count": 1, "items": ["c"]}}}


def applied(state: State) -> list[str]:
    return list(state.to_dict()["applied_event_ids"])


# --- equivocation ------------------------------------------------------------------


def test_fork_is_reported_once_and_freezes_the_stream(history: History, alice: TestKey, bob: TestKey) -> None:
    created = history.record_created["event_id"]
    snap = history.event("graph_snapshot", payload=SNAPSHOT)
    a1 = history.event("author_attestation", key=alice, target="graph", payload={"n": 1})
    b1 = history.event(
        "author_attestation", key=alice, target="graph", payload={"n": 2}, prev_event=a1["event_id"]
    )
    b2 = history.event(
        "author_attestation", key=alice, target="graph", payload={"n": 3}, prev_event=a1["event_id"]
    )
    b3 = history.event(
        "author_attestation", key=alice, target="graph", payload={"n": 4}, prev_event=a1["event_id"]
    )
    after = history.event(
        "author_attestation", key=alice, target="graph", payload={"n": 5}, prev_event=b1["event_id"]
    )
    # same signer, another stream, naming a forked event: valid, but never applied
    elsewhere = history.event(
        "correction", key=alice, target="notes", payload={}, supersedes=[b2["event_id"]]
    )
    # bob forks at the very start of his stream (prev_event null)
    c1 = history.event("citation_signature", key=bob, target="graph", payload={"c": 1})
    c2 = history.event("citation_signature", key=bob, target="graph", payload={"c": 2})
    # an unrelated stream of bob's is untouched
    bob_ok = history.event("mirror_hint", key=bob, target="mirror", payload={"url": "https://m.example"})
    events = [snap, a1, b1, b2, b3, after, elsewhere, c1, c2, bob_ok, copy.deepcopy(b1), copy.deepcopy(c2)]
    state = rebuild(history, events)
    document = state.to_dict()

    expected = sorted(
        [
            {
                "event_ids": sorted([b1["event_id"], b2["event_id"], b3["event_id"]]),
                "prev_event": a1["event_id"],
                "signer_id": alice.signer_id,
                "target": "graph",
            },
            {
                "event_ids": sorted([c1["event_id"], c2["event_id"]]),
                "prev_event": None,
                "signer_id": bob.signer_id,
                "target": "graph",
            },
        ],
        key=lambda r: (r["target"], r["signer_id"], r["prev_event"] or ""),
    )
    assert document["equivocations"] == expected
    assert [list(r) for r in document["equivocations"]] == [
        ["event_ids", "prev_event", "signer_id", "target"]
    ] * 2
    assert document["equivocation_count"] == 2
    # every event is valid, none of the fork is applied
    assert document["invalid_events"] == []
    assert document["event_count"] == document["valid_event_count"] == 11
    frozen = {
        b1["event_id"],
        b2["event_id"],
        b3["event_id"],
        after["event_id"],
        elsewhere["event_id"],
        c1["event_id"],
        c2["event_id"],
    }
    assert not frozen & set(applied(state))
    assert applied(state) == [created, snap["event_id"], a1["event_id"], bob_ok["event_id"]]
    assert current_ids(state, "author_attestations") == [a1["event_id"]]
    assert current_ids(state, "citation_signatures") == []
    assert current_ids(state, "graph_snapshots") == [snap["event_id"]]
    assert current_ids(state, "mirror_hints") == [bob_ok["event_id"]]


def test_equivocations_sorted_by_target_signer_prev(history: History, alice: TestKey, bob: TestKey) -> None:
    pairs = []
    for key, target in [(bob, "b-target"), (alice, "b-target"), (alice, "a-target"), (bob, "a-target")]:
        pairs += [history.event("correction", key=key, target=target, payload={"i": i}) for i in range(2)]
    root = history.event("correction", key=alice, target="a-target", payload={"i": "root"}, prev_event=None)
    # a second fork in alice's a-target stream, after a root that is itself part of the first fork
    kids = [
        history.event(
            "correction", key=alice, target="a-target", payload={"k": i}, prev_event=root["event_id"]
        )
        for i in range(2)
    ]
    document = rebuild(history, [*pairs, root, *kids]).to_dict()
    keys = [(r["target"], r["signer_id"], r["prev_event"] or "") for r in document["equivocations"]]
    assert keys == sorted(keys)
    assert len(keys) == 5
    assert document["equivocation_count"] == 5
    for record in document["equivocations"]:
        assert record["event_ids"] == sorted(record["event_ids"])


def test_forked_record_created(history: History) -> None:
    second = history.event(
        "record_created", payload=history.record_created["payload"], signer_type="pith_registry"
    )
    snap = history.event("graph_snapshot", payload=SNAPSHOT)
    state = rebuild(history, [second, snap])
    document = state.to_dict()
    assert document["equivocations"] == [
        {
            "event_ids": sorted([history.record_created["event_id"], second["event_id"]]),
            "prev_event": None,
            "signer_id": history.registry.signer_id,
            "target": "record",
        }
    ]
    assert document["invalid_events"] == []
    assert document["current"]["record_created"] is None
    assert document["current"]["canonical_record"] is None
    assert applied(state) == [snap["event_id"]]


def test_tampered_event_and_descendants(history: History) -> None:
    first = history.event("graph_snapshot", payload=SNAPSHOT)
    second = history.event("graph_snapshot", payload=SNAPSHOT, prev_event=first["event_id"])
    third = history.event("graph_snapshot", payload=SNAPSHOT, prev_event=second["event_id"])
    other = history.event("timestamp_anchor", target="anchors", payload={"proof": "x"})
    tampered = copy.deepcopy(first)
    tampered["payload"]["graph_snapshot"]["claims"]["count"] = 2
    state = rebuild(history, [tampered, second, third, other])
    assert invalid(state) == {
        first["event_id"]: codes.REASON_CONTENT_HASH_MISMATCH,
        second["event_id"]: codes.REASON_PREV_EVENT_INVALID,
        third["event_id"]: codes.REASON_PREV_EVENT_INVALID,
    }
    assert applied(state) == [history.record_created["event_id"], other["event_id"]]
    assert current_ids(state, "graph_snapshots") == []


# --- supersedes ----------------------------------------------------------------------


def test_supersedes_removes_from_current_but_stays_applied(history: History) -> None:
    first = history.event("graph_snapshot", payload={"v": 1})
    second = history.event(
        "graph_snapshot", payload={"v": 2}, prev_event=first["event_id"], supersedes=[first["event_id"]]
    )
    note = history.event("correction", target="notes", payload={"fix": 1})
    # supersedes across collections and streams of the same signer
    retract = history.event("correction", target="retractions", payload={}, supersedes=[note["event_id"]])
    state = rebuild(history, [retract, second, note, first])
    assert invalid(state) == {}
    assert current_ids(state, "graph_snapshots") == [second["event_id"]]
    assert current_ids(state, "corrections") == [retract["event_id"]]
    assert applied(state) == [
        history.record_created["event_id"],
        first["event_id"],
        second["event_id"],
        note["event_id"],
        retract["event_id"],
    ]


def test_bad_supersedes_cases(history: History, alice: TestKey) -> None:
    mine = history.event("graph_snapshot", payload=SNAPSHOT)
    theirs = history.event("author_attestation", key=alice, target="graph", payload={})
    broken = copy.deepcopy(history.event("correction", target="broken", payload={"a": 1}))
    broken["payload"]["a"] = 2  # content_hash_mismatch
    cases = {
        "another signer's event": history.event(
            "correction", target="c1", payload={}, supersedes=[theirs["event_id"]]
        ),
        "record_created": history.event(
            "correction", target="c2", payload={}, supersedes=[history.record_created["event_id"]]
        ),
        "unknown id": history.event("correction", target="c3", payload={}, supersedes=["sha256:" + "e" * 64]),
        "invalid event": history.event(
            "correction", target="c4", payload={}, supersedes=[broken["event_id"]]
        ),
        "one bad among good": history.event(
            "correction", target="c5", payload={}, supersedes=[mine["event_id"], "sha256:" + "f" * 64]
        ),
    }
    state = rebuild(history, [mine, theirs, broken, *cases.values()])
    expected = {event["event_id"]: codes.REASON_BAD_SUPERSEDES for event in cases.values()}
    expected[broken["event_id"]] = codes.REASON_CONTENT_HASH_MISMATCH
    assert invalid(state) == expected
    assert current_ids(state, "graph_snapshots") == [mine["event_id"]]  # nothing was removed


def test_missing_prev_event_is_checked_before_supersedes(history: History) -> None:
    event = history.event(
        "correction",
        target="x",
        payload={},
        prev_event="sha256:" + "1" * 64,
        supersedes=["sha256:" + "2" * 64],
    )
    assert invalid(rebuild(history, [event])) == {event["event_id"]: codes.REASON_MISSING_PREV_EVENT}


# --- apply order -------------------------------------------------------------------


def test_created_at_is_compared_as_an_instant(history: History) -> None:
    stamps = [
        "2026-06-03T00:00:16Z",
        "2026-06-03T00:00:16.5Z",
        "2026-06-03T00:00:16.25Z",
        "2026-06-03T00:00:15.999999999Z",
    ]
    events = [
        history.event("correction", target=f"t{i}", payload={}, created_at=s) for i, s in enumerate(stamps)
    ]
    state = rebuild(history, events)
    by_instant = [events[3], events[0], events[2], events[1]]
    by_text = sorted(events, key=lambda e: e["created_at"])
    assert by_text != by_instant  # the table really distinguishes text from time
    assert applied(state)[1:] == [e["event_id"] for e in by_instant]


def test_equal_instants_are_ordered_by_event_id(history: History) -> None:
    stamps = [
        "2026-06-03T00:00:16Z",
        "2026-06-03T00:00:16.000Z",
        "2026-06-03T00:00:16.0Z",
        "2026-06-03T00:00:16.000000000Z",
    ]
    events = [
        history.event("correction", target=f"t{i}", payload={}, created_at=s) for i, s in enumerate(stamps)
    ]
    assert applied(rebuild(history, events))[1:] == sorted(e["event_id"] for e in events)


def test_record_created_is_applied_first_even_when_later(registry: TestKey) -> None:
    history = History.new(registry, created_at="2026-07-01T00:00:00Z")
    early = history.event("graph_snapshot", payload=SNAPSHOT, created_at="2026-01-01T00:00:00Z")
    state = rebuild(history, [early])
    assert applied(state) == [history.record_created["event_id"], early["event_id"]]


def test_prev_event_edges_override_time(history: History) -> None:
    first = history.event("correction", target="t", payload={}, created_at="2026-06-03T10:00:00Z")
    second = history.event(
        "correction", target="t", payload={}, created_at="2026-06-03T09:00:00Z", prev_event=first["event_id"]
    )
    middle = history.event("correction", target="u", payload={}, created_at="2026-06-03T09:30:00Z")
    assert applied(rebuild(history, [second, middle, first]))[1:] == [
        middle["event_id"],
        first["event_id"],
        second["event_id"],
    ]


# --- order independence ------------------------------------------------------------


def rich_history(history: History, alice: TestKey, bob: TestKey) -> list[Any]:
    """Valid chains, a fork, a supersede, invalid events, copies and a non-object."""
    s1 = history.event(
        "graph_snapshot", payload={"v": 1.5, "big": 1e16, "tiny": 1e-07, "text": "é\u2028\U0001f600"}
    )
    s2 = history.event(
        "graph_snapshot", payload={"v": 2}, prev_event=s1["event_id"], supersedes=[s1["event_id"]]
    )
    a1 = history.event("author_attestation", key=alice, target="graph", payload={"n": 1})
    a2 = history.event(
        "author_attestation", key=alice, target="graph", payload={"n": 2}, prev_event=a1["event_id"]
    )
    a3 = history.event(
        "author_attestation", key=alice, target="graph", payload={"n": 3}, prev_event=a1["event_id"]
    )
    b1 = history.event(
        "citation_signature",
        key=bob,
        target="graph",
        payload={"c": [1, 2], "f": 1e16, "g": -1e-07, "z": -0.0},
        created_at="2026-06-03T00:00:16.5Z",
    )
    b2 = history.event(
        "citation_signature", key=bob, target="other", payload={"c": 3}, created_at="2026-06-03T00:00:16.25Z"
    )
    tampered = copy.deepcopy(history.event("correction", target="fix", payload={"x": 0}))
    tampered["payload"]["x"] = 1
    child = history.event("correction", target="fix", payload={"x": 2}, prev_event=tampered["event_id"])
    forged_copy = copy.deepcopy(s2)
    forged_copy["payload"]["v"] = 3
    return [s1, s2, a1, a2, a3, b1, b2, tampered, child, forged_copy, [1, 2], "x", copy.deepcopy(a1)]


@pytest.mark.parametrize("seed_value", range(6))
def test_shuffles_and_duplicates_do_not_change_the_state(
    history: History, alice: TestKey, bob: TestKey, seed_value: int
) -> None:
    events = rich_history(history, alice, bob)
    baseline = rebuild(history, events)
    rng = random.Random(seed_value)
    everything = [history.record_created, *events]
    shuffled = everything + rng.sample(everything, k=seed_value + 1)
    rng.shuffle(shuffled)
    state = rebuild(history, shuffled, include_record=False)
    assert state.to_json() == baseline.to_json()
    assert state.state_sha256 == baseline.state_sha256


@pytest.mark.parametrize("seed_value", range(4))
def test_union_of_two_split_bundles_gives_the_same_state(
    history: History, alice: TestKey, bob: TestKey, seed_value: int
) -> None:
    everything = [history.record_created, *rich_history(history, alice, bob)]
    baseline = rebuild(history, everything, include_record=False)
    rng = random.Random(100 + seed_value)
    left, right = [], []
    for event in everything:
        side = rng.randrange(3)  # 0: left, 1: right, 2: both
        if side != 1:
            left.append(event)
        if side != 0:
            right.append(event)
    first = bundle_of(history, left, include_record=False)
    second = bundle_of(history, right, include_record=False)
    union = bundle_of(history, first["events"] + second["events"], include_record=False)
    state = rebuild_state(union, trusted_keys=history.trusted())
    assert state.state_sha256 == baseline.state_sha256
    assert state.to_json() == baseline.to_json()


def test_rich_history_verdicts(history: History, alice: TestKey, bob: TestKey) -> None:
    events = rich_history(history, alice, bob)
    s1, s2, a1, a2, a3, b1, b2, tampered, child = events[:9]
    state = rebuild(history, events)
    document = state.to_dict()
    assert invalid(state) == {
        tampered["event_id"]: "content_hash_mismatch",
        child["event_id"]: "prev_event_invalid",
        "sha256:" + hashlib.sha256(b"[1,2]").hexdigest(): "malformed",
        "sha256:" + hashlib.sha256(b'"x"').hexdigest(): "malformed",
    }
    assert document["event_count"] == 12 and document["valid_event_count"] == 8
    assert document["equivocations"] == [
        {
            "event_ids": sorted([a2["event_id"], a3["event_id"]]),
            "prev_event": a1["event_id"],
            "signer_id": alice.signer_id,
            "target": "graph",
        }
    ]
    # the history ticks at 00:00:01, :02, ...; bob's 16.25Z event comes before his 16.5Z one
    assert applied(state) == [
        history.record_created["event_id"], s1["event_id"], s2["event_id"], a1["event_id"],
        b2["event_id"], b1["event_id"],
    ]  # fmt: skip


# --- serialisation -------------------------------------------------------------------


@pytest.mark.parametrize("form", ["mapping", "bytes"])
def test_state_serialisation_matches_the_reference(
    history: History, alice: TestKey, bob: TestKey, form: str
) -> None:
    bundle = bundle_of(history, rich_history(history, alice, bob))
    source: Any = bundle if form == "mapping" else json.dumps(bundle, ensure_ascii=False).encode()
    state = rebuild_state(source, trusted_keys=history.trusted())
    text = state.to_json()
    reparsed = json.loads(text)
    assert reparsed == state.to_dict()
    # compact, ensure_ascii=False, floats as Python's repr: re-dumping changes nothing
    assert json.dumps(reparsed, separators=(",", ":"), ensure_ascii=False).encode() == text
    assert ref_state_sha256(reparsed) == state.state_sha256 == reparsed["state_sha256"]
    assert (
        hashlib.sha256(ref_canonical({k: v for k, v in reparsed.items() if k != "state_sha256"})).hexdigest()
        == state.state_sha256
    )
    assert list(reparsed) == [
        "state_type", "state_version", "pith_number", "merge_version", "event_count",
        "valid_event_count", "invalid_event_count", "equivocation_count", "current",
        "equivocations", "invalid_events", "applied_event_ids", "state_sha256",
    ]  # fmt: skip
    assert (
        reparsed["state_type"] == "pith_open_graph_state"
        and reparsed["merge_version"] == "pith-open-graph-merge-v1"
    )
    entries = [
        reparsed["current"]["record_created"],
        *reparsed["current"]["graph_snapshots"],
        *reparsed["current"]["citation_signatures"],
    ]
    assert len(entries) == 4
    for entry in entries:
        assert list(entry) == ["event_id", "target", "created_at", "signer", "payload"]
        assert json.dumps(entry["payload"], sort_keys=True) == json.dumps(entry["payload"])
        assert json.dumps(entry["signer"], sort_keys=True) == json.dumps(entry["signer"])
    assert b'"f":1e+16,"g":-1e-07,"z":-0.0' in text


def test_source_aliases_deduplicated_and_sorted(history: History) -> None:
    bundle = bundle_of(history, [])
    aliases = bundle["source_aliases"]
    extra = {"created_at": "2026-06-04T00:00:00Z", "alias_value": "A-extra", "alias_kind": "arxiv"}
    bundle["source_aliases"] = [*reversed(aliases), extra, *copy.deepcopy(aliases), dict(extra)]
    state = rebuild_state(bundle, trusted_keys=history.trusted())
    listed = state.to_dict()["current"]["source_aliases"]
    expected = sorted([*aliases, extra], key=lambda a: (a["alias_kind"], a["alias_value"]))
    assert listed == expected
    assert [list(a) for a in listed] == [sorted(a) for a in listed]  # keys sorted


def test_unusual_strings_outside_payloads(history: History, alice: TestKey) -> None:
    """Targets and signer ids are serialised outside the canonical payload fragments."""
    odd = TestKey("odd", signer_id='sig\u2028ner \U0001f600 \x00\x1f"\\ é')
    events = [
        history.event("correction", key=odd, target=target, payload={})
        for target in ["\ue000", "\U0001f600", "z", "\x7f\u2029"]
    ]
    events += [history.event("correction", key=odd, target="\U0001f600", payload={"again": True})]  # a fork
    state = rebuild(history, events)
    text = state.to_json()
    reparsed = json.loads(text)
    assert json.dumps(reparsed, separators=(",", ":"), ensure_ascii=False).encode() == text
    assert ref_state_sha256(reparsed) == state.state_sha256
    assert reparsed["equivocations"][0]["signer_id"] == odd.signer_id
    assert reparsed["equivocations"][0]["target"] == "\U0001f600"


def test_merge_is_the_pure_core_of_rebuild(history: History, alice: TestKey, bob: TestKey) -> None:
    from pith_graph import KeyRing, loads, merge

    bundle = bundle_of(history, rich_history(history, alice, bob))
    parsed = loads(json.dumps(bundle))
    state = merge(
        parsed["events"],
        subject=history.subject,
        aliases=parsed["source_aliases"],
        trusted_keys=KeyRing.from_entries(history.trusted()),
    )
    assert state.to_json() == rebuild_state(bundle, trusted_keys=history.trusted()).to_json()


# --- hash cycles (impossible between content-addressed events; the rule is still defined) ---


def _unit(uid: str, prev: str | None, supersedes: tuple[str, ...] = ()) -> CheckedEvent:
    """A unit that passed stage 1, built directly: no real event can name itself in a cycle."""
    facts = EventFacts(
        event_id=uid,
        event_type="correction",
        target="graph",
        signer_id="s",
        created_at="2026-01-01T00:00:00Z",
        instant=(0, 0),
        prev_event=prev,
        supersedes=supersedes,
        content_sha256=uid[7:],
        key_id="k",
        fingerprint="f",
        signer_key_id="k",
        signer_fingerprint="f",
        signature_b64="",
        signature=None,
        message=b"",
    )
    return CheckedEvent(uid, None, None, len(codes.EVENT_REASONS), facts)


def test_units_on_or_behind_a_cycle_are_invalid_whatever_their_order() -> None:
    """docs/merge-v1.md section 7: cycle members get the reason of the first check naming an
    undecided event; invalidity cascades to what names them; the rest is decided as usual."""
    ids = {name: "sha256:" + hashlib.sha256(name.encode()).hexdigest() for name in "abcdefg"}
    a, b, c, d, e, f, g = (ids[name] for name in "abcdefg")
    units = [
        _unit(a, b),
        _unit(b, a),  # a two-cycle
        _unit(c, c),  # names itself
        _unit(d, a),  # behind the cycle
        _unit(e, None),  # a root
        _unit(f, e, (a,)),  # valid predecessor, supersedes a cycle member
        _unit(g, e, (e,)),  # names e twice: decided once e is
    ]
    expected = {
        a: codes.REASON_PREV_EVENT_INVALID,
        b: codes.REASON_PREV_EVENT_INVALID,
        c: codes.REASON_PREV_EVENT_INVALID,
        d: codes.REASON_PREV_EVENT_INVALID,
        f: codes.REASON_BAD_SUPERSEDES,
    }
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(units)
        assert merge_module._resolve_history({u.unit_id: u for u in units}) == expected


def test_a_visiting_order_is_a_hint_that_never_changes_history() -> None:
    """``order`` is visited first, then anything it left out: a partial order, one naming a
    unit twice or an unknown id, or one leaving out a cycle gives the same reasons."""
    ids = {name: "sha256:" + hashlib.sha256(name.encode()).hexdigest() for name in "abcdefgh"}
    a, b, c, d, e, f, g, h = (ids[name] for name in "abcdefgh")
    units = {
        u.unit_id: u
        for u in [
            _unit(e, None),
            _unit(f, e),
            _unit(g, f),
            _unit(h, g, (f,)),  # a stream, with a supersedes
            _unit(a, b),
            _unit(b, a),  # a two-cycle
            _unit(c, None),
            _unit(d, c),
        ]
    }
    expected = merge_module._resolve_history(units)
    assert expected == {a: codes.REASON_PREV_EVENT_INVALID, b: codes.REASON_PREV_EVENT_INVALID}
    unknown = "sha256:" + "0" * 64
    rng = random.Random(11)
    for _ in range(50):
        order = rng.sample(list(units), rng.randrange(len(units) + 1))
        order += rng.sample([*order, unknown], rng.randrange(3)) if order else []
        assert merge_module._resolve_history(units, iter(order)) == expected, order
