"""merge-v1 reason codes: one test per code, each from a real signed event.

Every test rebuilds a bundle (record_created + the events under test) and
asserts the exact ``invalid_events`` of the state. Unit ids expected here are
computed by the test itself (claimed ``event_id`` when well formed, otherwise
sha256 of the reference canonical JSON of the value).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest

from pith_graph import codes
from pith_graph import events as events_module
from pith_graph.state import State
from pith_graph.testing import (
    History,
    TestKey,
    make_canonical_record,
    make_event,
    record_created_payload,
    resign,
    seal,
)
from tests.helpers import REGISTRY_TEST_KEY, rebuild, ref_canonical, ref_content_sha256

Event = dict[str, Any]
SNAPSHOT = {"graph_snapshot": {"claims": {"count": 0, "items": []}}, "verdict_id": None}
ID_RE = re.compile(r"sha256:[0-9a-f]{64}")
OTHER_ID = "sha256:" + "0" * 64


def expected_uid(raw: Any) -> str:
    """merge-v1 "Units and copies", spelled out independently of pith_graph."""
    if isinstance(raw, dict) and isinstance(raw.get("event_id"), str) and ID_RE.fullmatch(raw["event_id"]):
        return str(raw["event_id"])
    return "sha256:" + hashlib.sha256(ref_canonical(raw)).hexdigest()


def assert_only_invalid(state: State, expected: dict[str, str], *, total: int) -> None:
    """``invalid_events`` is exactly ``expected`` (sorted by id) and the counts add up."""
    document = state.to_dict()
    assert document["invalid_events"] == [{"event_id": k, "reason": expected[k]} for k in sorted(expected)]
    assert document["event_count"] == total
    assert document["invalid_event_count"] == len(expected)
    assert document["valid_event_count"] == total - len(expected)
    for event_id in expected:
        assert event_id not in document["applied_event_ids"]


def snapshot(history: History, **fields: Any) -> Event:
    """A valid graph_snapshot by the registry key."""
    return history.event("graph_snapshot", payload=SNAPSHOT, **fields)


def reseal(event: Event, key: TestKey) -> Event:
    """Re-hash and re-sign an edited event without touching its signer."""
    return seal(copy.deepcopy(event), key)


def flip_bit(signature_b64: str) -> str:
    raw = bytearray(base64.b64decode(signature_b64))
    raw[5] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def check_one(history: History, bad: Any, reason: str, **options: Any) -> State:
    """Rebuild record_created + a valid snapshot + ``bad``; only ``bad`` is invalid."""
    good = snapshot(history)
    state = rebuild(history, [good, bad], **options)
    assert_only_invalid(state, {expected_uid(bad): reason}, total=3)
    assert state.to_dict()["applied_event_ids"] == [history.record_created["event_id"], good["event_id"]]
    return state


def test_all_reason_codes_are_covered() -> None:
    """The codes this module tests are exactly the merge-v1 codes, in check order."""
    assert codes.REASONS == (
        "malformed", "event_id_mismatch", "content_hash_mismatch", "subject_mismatch",
        "unknown_event_type", "target_mismatch", "unsupported_signature", "unknown_key",
        "key_mismatch", "bad_signature", "bad_record", "missing_prev_event",
        "prev_event_stream_mismatch", "prev_event_invalid", "bad_supersedes",
    )  # fmt: skip


# --- malformed -----------------------------------------------------------------------


def _without(field: str) -> Callable[[Event, TestKey], Any]:
    def edit(event: Event, key: TestKey) -> Any:
        del event[field]
        return event if field in ("event_id", "content_sha256", "signature") else reseal(event, key)

    return edit


def _set(path: str, value: Any, *, sealed: bool = True) -> Callable[[Event, TestKey], Any]:
    """Set a (dotted) field; re-seal so that only the malformation is wrong."""

    def edit(event: Event, key: TestKey) -> Any:
        *parents, last = path.split(".")
        holder = event
        for name in parents:
            holder = holder[name]
        holder[last] = value
        return reseal(event, key) if sealed else event

    return edit


def _created_at(value: str) -> Callable[[Event, TestKey], Any]:
    return _set("created_at", value)


MALFORMED: list[tuple[str, Callable[[Event, TestKey], Any]]] = [
    ("list", lambda e, k: [e]),
    ("string", lambda e, k: "event"),
    ("number", lambda e, k: 42),
    ("null", lambda e, k: None),
    *[
        (f"missing {name}", _without(name))
        for name in (
            "event_type",
            "subject_pith_number",
            "target",
            "payload",
            "signer",
            "created_at",
            "supersedes",
            "prev_event",
            "signature",
            "content_sha256",
            "event_id",
        )
    ],
    ("missing signer.signer_id", lambda e, k: reseal({**e, "signer": {**e["signer"], "signer_id": None}}, k)),
    ("missing signature.signature_b64", _set("signature.signature_b64", None, sealed=False)),
    ("payload is a list", _set("payload", [])),
    ("payload is a string", _set("payload", "{}")),
    ("supersedes is a string", _set("supersedes", OTHER_ID)),
    ("prev_event is a number", _set("prev_event", 5)),
    ("created_at is a number", _set("created_at", 1780000000)),
    ("event_type is null", _set("event_type", None)),
    ("target is a list", _set("target", ["graph"])),
    ("target is empty", _set("target", "")),
    ("event_type is empty", _set("event_type", "")),
    ("signer is a string", _set("signer", "registry")),
    ("signer_id is a number", _set("signer.signer_id", 7)),
    ("signer_id is empty", _set("signer.signer_id", "")),
    ("signature is a list", _set("signature", [], sealed=False)),
    ("signature key_id is a number", _set("signature.key_id", 1, sealed=False)),
    ("30 February", _created_at("2026-02-30T00:00:00Z")),
    ("+00:00 offset", _created_at("2026-06-03T00:00:00+00:00")),
    ("lowercase z", _created_at("2026-06-03T00:00:00z")),
    ("lowercase t", _created_at("2026-06-03t00:00:00Z")),
    ("space separator", _created_at("2026-06-03 00:00:00Z")),
    ("no zone", _created_at("2026-06-03T00:00:00")),
    ("hour 24", _created_at("2026-06-03T24:00:00Z")),
    ("leap second", _created_at("2026-06-30T23:59:60Z")),
    ("empty fraction", _created_at("2026-06-03T00:00:00.Z")),
    ("ten fraction digits", _created_at("2026-06-03T00:00:00.1234567890Z")),
    ("date only", _created_at("2026-06-03")),
    ("29 February of a non-leap year", _created_at("2100-02-29T00:00:00Z")),
    ("month 00", _created_at("2026-00-10T00:00:00Z")),
    ("trailing newline", _created_at("2026-06-03T00:00:00Z\n")),
    ("fullwidth digits", _created_at("\uff12\uff10\uff12\uff16-06-03T00:00:00Z")),
    ("leading space", _created_at(" 2026-06-03T00:00:00Z")),
    ("bad signed_at", _set("signature.signed_at", "yesterday", sealed=False)),
    (
        "uppercase hex event_id",
        lambda e, k: {**e, "event_id": e["event_id"].upper().replace("SHA256", "sha256")},
    ),
    ("event_id without prefix", lambda e, k: {**e, "event_id": e["content_sha256"]}),
    ("event_id short", lambda e, k: {**e, "event_id": e["event_id"][:-1]}),
    ("uppercase hex content_sha256", lambda e, k: {**e, "content_sha256": e["content_sha256"].upper()}),
    ("prev_event bad syntax", _set("prev_event", "sha256:xyz")),
    ("prev_event uppercase hex", _set("prev_event", "sha256:" + "A" * 64)),
    ("supersedes entry bad syntax", _set("supersedes", ["5511524888"])),
    ("supersedes entry not a string", _set("supersedes", [1])),
    ("duplicate supersedes", _set("supersedes", [OTHER_ID, OTHER_ID])),
]


@pytest.mark.parametrize(("name", "edit"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(history: History, name: str, edit: Callable[[Event, TestKey], Any]) -> None:
    bad = edit(copy.deepcopy(snapshot(history)), history.registry)
    check_one(history, bad, codes.REASON_MALFORMED)


@pytest.mark.parametrize(
    "created_at",
    [
        "2024-02-29T00:00:00Z",
        "2000-02-29T23:59:59.999999999Z",
        "1969-12-31T23:59:59.5Z",
        "2026-06-03T00:00:00.000Z",
    ],
)
def test_well_formed_timestamps(history: History, created_at: str) -> None:
    event = snapshot(history, created_at=created_at)
    state = rebuild(history, [event])
    assert_only_invalid(state, {}, total=2)
    assert state.to_dict()["current"]["graph_snapshots"][0]["created_at"] == created_at  # kept as written


def test_malformed_event_keeps_its_claimed_id(history: History) -> None:
    bad = reseal({**snapshot(history), "created_at": "2026-02-30T00:00:00Z"}, history.registry)
    state = check_one(history, bad, codes.REASON_MALFORMED)
    assert state.to_dict()["invalid_events"] == [{"event_id": bad["event_id"], "reason": "malformed"}]


def test_non_object_events_are_counted_by_their_canonical_hash(history: History) -> None:
    weird: list[Any] = [[], "x", 0, None, {"a": 1}]
    state = rebuild(history, weird)
    expected = {"sha256:" + hashlib.sha256(ref_canonical(w)).hexdigest(): "malformed" for w in weird}
    assert_only_invalid(state, expected, total=1 + len(weird))


# --- stage 1, in check order ---------------------------------------------------------


def test_event_id_mismatch(history: History) -> None:
    event = snapshot(history)
    bad = {**event, "event_id": OTHER_ID}
    check_one(history, bad, codes.REASON_EVENT_ID_MISMATCH)


def test_content_hash_mismatch(history: History) -> None:
    event = snapshot(history)
    bad = copy.deepcopy(event)
    bad["payload"]["verdict_id"] = "tampered"
    assert ref_content_sha256(bad) != bad["content_sha256"]
    check_one(history, bad, codes.REASON_CONTENT_HASH_MISMATCH)


def test_content_hash_covers_extra_keys(history: History) -> None:
    event = history.event("graph_snapshot", payload=SNAPSHOT, extra={"note": "covered"})
    assert event["content_sha256"] == ref_content_sha256(event)
    bad = {**event, "note": "changed"}
    check_one(history, bad, codes.REASON_CONTENT_HASH_MISMATCH)


def test_subject_mismatch(history: History, new_history: Callable[..., History]) -> None:
    other = new_history(arxiv_id="2601.99999")
    bad = make_event(history.registry, subject=other.subject, event_type="graph_snapshot", payload=SNAPSHOT)
    check_one(history, bad, codes.REASON_SUBJECT_MISMATCH)


@pytest.mark.parametrize("event_type", ["graph_snapshots", "Graph_Snapshot", "bogus", "record_deleted"])
def test_unknown_event_type(history: History, event_type: str) -> None:
    bad = history.event(event_type, payload={}, target="graph")
    check_one(history, bad, codes.REASON_UNKNOWN_EVENT_TYPE)


@pytest.mark.parametrize(
    ("event_type", "target"), [("graph_snapshot", "record"), ("record_created", "graph")]
)
def test_target_mismatch(history: History, event_type: str, target: str) -> None:
    payload = history.record_created["payload"] if event_type == "record_created" else SNAPSHOT
    bad = history.event(event_type, payload=payload, target=target)
    check_one(history, bad, codes.REASON_TARGET_MISMATCH)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("algorithm", "ed448"),
        ("algorithm", "Ed25519"),
        ("signature_status", "unsigned"),
        ("signed_message", "open_graph_event_bytes"),
        ("signed_message", "canonical_sha256_bytes"),
    ],
)
def test_unsupported_signature(history: History, field: str, value: str) -> None:
    bad = snapshot(history)
    bad["signature"][field] = value  # the signature object is outside the content hash
    check_one(history, bad, codes.REASON_UNSUPPORTED_SIGNATURE)


def test_unknown_key(history: History, alice: TestKey) -> None:
    bad = history.event("author_attestation", key=alice, payload={"claim": "mine"})
    check_one(history, bad, codes.REASON_UNKNOWN_KEY, trusted_keys=[history.registry.entry()])


@pytest.mark.parametrize(
    ("rotates_at", "reason"),
    [
        ("2026-06-03T00:00:05Z", codes.REASON_UNKNOWN_KEY),  # created exactly at rotation
        ("2026-06-03T00:00:04.999Z", codes.REASON_UNKNOWN_KEY),
        ("2026-06-03T00:00:05.000000001Z", None),
    ],
)
def test_rotated_key_signs_nothing_after_rotates_at(
    history: History, alice: TestKey, rotates_at: str, reason: str | None
) -> None:
    event = history.event("author_attestation", key=alice, payload={}, created_at="2026-06-03T00:00:05Z")
    trusted = [history.registry.entry(), alice.entry(rotates_at=rotates_at)]
    if reason is None:
        state = rebuild(history, [event], trusted_keys=trusted)
        assert_only_invalid(state, {}, total=2)
    else:
        check_one(history, event, reason, trusted_keys=trusted)


def _fingerprint_in_signature(event: Event, key: TestKey) -> Event:
    event["signature"]["public_key_fingerprint"] = "0" * 32
    return event


def _signer_key_id(event: Event, key: TestKey) -> Event:
    event["signer"]["key_id"] = "some-other-key"
    return reseal(event, key)


def _signer_fingerprint(event: Event, key: TestKey) -> Event:
    event["signer"]["public_key_fingerprint"] = key.fingerprint.upper()
    return reseal(event, key)


@pytest.mark.parametrize(
    "edit",
    [_fingerprint_in_signature, _signer_key_id, _signer_fingerprint],
    ids=["signature fingerprint", "signer key_id", "signer fingerprint"],
)
def test_key_mismatch(history: History, edit: Callable[[Event, TestKey], Event]) -> None:
    bad = edit(snapshot(history), history.registry)
    check_one(history, bad, codes.REASON_KEY_MISMATCH)


def _signed_by(other: TestKey) -> Callable[[Event], None]:
    def edit(event: Event) -> None:
        event["signature"]["signature_b64"] = other.sign_b64(bytes.fromhex(event["content_sha256"]))

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: e["signature"].__setitem__("signature_b64", flip_bit(e["signature"]["signature_b64"])),
        _signed_by(TestKey("mallory")),
        lambda e: e["signature"].__setitem__("signature_b64", "not base64!"),
        lambda e: e["signature"].__setitem__("signature_b64", base64.b64encode(b"\x00" * 63).decode()),
        lambda e: e["signature"].__setitem__("signature_b64", ""),
        # signed over the hex text instead of the 32 raw bytes
        lambda e: e["signature"].__setitem__(
            "signature_b64", TestKey("registry").sign_b64(e["content_sha256"].encode())
        ),
    ],
    ids=["flipped bit", "other key", "not base64", "63 bytes", "empty", "hex text signed"],
)
def test_bad_signature(history: History, edit: Callable[[Event], None]) -> None:
    bad = snapshot(history)
    edit(bad)
    check_one(history, bad, codes.REASON_BAD_SIGNATURE)


def _record_created(history: History, edit: Callable[[dict[str, Any]], None]) -> Event:
    payload = record_created_payload(history.canonical_record, history.registry)
    edit(payload)
    return history.event("record_created", payload=payload, signer_type="pith_registry")


BAD_RECORDS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("canonical_sha256 wrong", lambda p: p.__setitem__("canonical_sha256", "0" * 64)),
    ("record edited after hashing", lambda p: p["canonical_record"].__setitem__("schema_version", "2.0")),
    # a consistent record (hash, receipt, source) that is simply not the subject's
    (
        "record is not the subject's",
        lambda p: p.update(record_created_payload(make_canonical_record("2601.00002"), REGISTRY_TEST_KEY)),
    ),
    (
        "receipt signature flipped",
        lambda p: p["receipt"].__setitem__("signature_b64", flip_bit(p["receipt"]["signature_b64"])),
    ),
    ("receipt by an untrusted key", lambda p: p["receipt"].__setitem__("key_id", "nobody")),
    ("receipt unsupported", lambda p: p["receipt"].__setitem__("signed_message", "canonical_sha256_hex")),
    ("receipt names another hash", lambda p: p["receipt"].__setitem__("canonical_sha256", "1" * 64)),
    ("receipt missing", lambda p: p.pop("receipt")),
    ("source_id disagrees", lambda p: p.__setitem__("source_id", "2601.00002")),
    ("source_version is a string", lambda p: p.__setitem__("source_version", "1")),
    ("source_version is a float", lambda p: p.__setitem__("source_version", 1.0)),
    ("source_kind missing", lambda p: p.pop("source_kind")),
    ("canonical_record missing", lambda p: p.pop("canonical_record")),
]


@pytest.mark.parametrize(("name", "edit"), BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_bad_record(history: History, name: str, edit: Callable[[dict[str, Any]], None]) -> None:
    bad = _record_created(history, edit)
    check_one(history, bad, codes.REASON_BAD_RECORD)


def test_bad_record_alone_leaves_no_canonical_record(history: History) -> None:
    bad = _record_created(history, lambda p: p.__setitem__("canonical_sha256", "0" * 64))
    state = rebuild(history, [bad], include_record=False)
    assert_only_invalid(state, {bad["event_id"]: "bad_record"}, total=1)
    current = state.to_dict()["current"]
    assert current["record_created"] is None and current["canonical_record"] is None


# --- stage 2: history ------------------------------------------------------------------


def test_missing_prev_event(history: History) -> None:
    bad = snapshot(history, prev_event=OTHER_ID)
    check_one(history, bad, codes.REASON_MISSING_PREV_EVENT)


def test_prev_event_stream_mismatch_other_signer(history: History, alice: TestKey) -> None:
    first = snapshot(history)
    bad = history.event("graph_snapshot", key=alice, payload=SNAPSHOT, prev_event=first["event_id"])
    state = rebuild(history, [first, bad])
    assert_only_invalid(state, {bad["event_id"]: "prev_event_stream_mismatch"}, total=3)


def test_prev_event_stream_mismatch_other_target(history: History) -> None:
    # same signer, but record_created is in the (record, registry) stream
    bad = snapshot(history, prev_event=history.record_created["event_id"])
    check_one(history, bad, codes.REASON_PREV_EVENT_STREAM_MISMATCH)


def test_prev_event_invalid_cascades(history: History) -> None:
    first = snapshot(history)
    tampered = copy.deepcopy(first)
    tampered["payload"]["verdict_id"] = "tampered"
    second = snapshot(history, prev_event=first["event_id"])
    third = snapshot(history, prev_event=second["event_id"])
    fourth = snapshot(history, prev_event=third["event_id"])
    state = rebuild(history, [tampered, fourth, second, third])
    assert_only_invalid(
        state,
        {
            first["event_id"]: "content_hash_mismatch",
            second["event_id"]: "prev_event_invalid",
            third["event_id"]: "prev_event_invalid",
            fourth["event_id"]: "prev_event_invalid",
        },
        total=5,
    )
    assert state.to_dict()["applied_event_ids"] == [history.record_created["event_id"]]


def test_prev_event_invalid_after_a_malformed_predecessor(history: History) -> None:
    first = reseal({**snapshot(history), "created_at": "2026-13-01T00:00:00Z"}, history.registry)
    second = snapshot(history, prev_event=first["event_id"])
    state = rebuild(history, [first, second])
    assert_only_invalid(
        state, {first["event_id"]: "malformed", second["event_id"]: "prev_event_invalid"}, total=3
    )


def test_bad_supersedes(history: History) -> None:
    bad = snapshot(history, supersedes=[OTHER_ID])
    check_one(history, bad, codes.REASON_BAD_SUPERSEDES)


def test_first_failing_check_names_the_reason(history: History, alice: TestKey) -> None:
    """An event failing several checks is reported under the earliest one."""
    event = history.event("bogus", key=alice, payload={}, target="graph")
    event["signature"]["algorithm"] = "ed448"  # unsupported_signature, unknown_key too
    check_one(history, event, codes.REASON_UNKNOWN_EVENT_TYPE, trusted_keys=[history.registry.entry()])
    tampered = {**event, "payload": {"x": 1}}  # content hash now wrong as well
    check_one(history, tampered, codes.REASON_CONTENT_HASH_MISMATCH, trusted_keys=[history.registry.entry()])


# --- copies of one event -----------------------------------------------------------


def test_bogus_copy_does_not_invalidate_a_valid_event(history: History) -> None:
    event = snapshot(history)
    bogus = copy.deepcopy(event)
    bogus["payload"]["verdict_id"] = "forged"
    for events in ([event, bogus], [bogus, event], [bogus, event, bogus]):
        state = rebuild(history, events)
        assert_only_invalid(state, {}, total=2)
        document = state.to_dict()
        assert document["applied_event_ids"] == [history.record_created["event_id"], event["event_id"]]
        # the valid copy's payload is the one applied
        assert document["current"]["graph_snapshots"][0]["payload"] == event["payload"]


@pytest.mark.parametrize("order", [0, 1])
def test_invalid_copies_report_the_copy_that_got_furthest(history: History, order: int) -> None:
    event = snapshot(history)
    malformed = {**event, "created_at": "not a time"}  # fails the first check
    tampered = copy.deepcopy(event)
    tampered["payload"]["verdict_id"] = "x"  # content_hash_mismatch
    bad_sig = {
        **event,
        "signature": {**event["signature"], "signature_b64": flip_bit(event["signature"]["signature_b64"])},
    }
    copies = [malformed, tampered, bad_sig]
    if order:
        copies.reverse()
    state = rebuild(history, copies)
    assert_only_invalid(state, {event["event_id"]: "bad_signature"}, total=2)
    state = rebuild(history, copies[:2] if not order else copies[1:])
    assert_only_invalid(state, {event["event_id"]: "content_hash_mismatch"}, total=2)


def test_identical_copies_count_once(history: History) -> None:
    event = snapshot(history)
    state = rebuild(history, [event, copy.deepcopy(event), history.record_created])
    assert_only_invalid(state, {}, total=2)


def test_counts_are_distinct_ids(history: History, alice: TestKey) -> None:
    valid = [snapshot(history)]
    valid.append(snapshot(history, prev_event=valid[0]["event_id"]))
    valid.append(history.event("author_attestation", key=alice, payload={"n": 1}))
    bad_a = {**snapshot(history), "event_id": OTHER_ID}
    bad_b = [1, 2]
    events = [*valid, bad_a, bad_b, bad_b, copy.deepcopy(valid[0])]
    state = rebuild(history, events)
    document = state.to_dict()
    ids = {expected_uid(e) for e in [history.record_created, *events]}
    assert document["event_count"] == len(ids) == 6
    assert document["valid_event_count"] == 4 and document["invalid_event_count"] == 2
    assert document["event_count"] == document["valid_event_count"] + document["invalid_event_count"]


def test_resign_with_another_key_updates_signer(history: History, alice: TestKey) -> None:
    """Sanity of the factory: resign() yields a valid event by the new key."""
    event = resign(snapshot(history), alice)
    assert event["signer"]["key_id"] == alice.key_id
    state = rebuild(history, [event], trusted_keys=[history.registry.entry(), alice.entry()])
    assert_only_invalid(state, {}, total=2)


def test_the_check_tables_follow_the_one_check_order() -> None:
    # merge-v1 §6: codes.EVENT_REASONS is the order; events runs its tables in it.
    intrinsic = [codes.EVENT_REASONS[progress] for progress, _ in events_module._INTRINSIC_ORDER]
    keyed = [reason for reason, _ in events_module._KEY_ORDER]
    assert [codes.REASON_MALFORMED, *intrinsic, *keyed] == list(codes.EVENT_REASONS)
    assert list(events_module._FAILS_INTRINSIC) == intrinsic
    assert list(events_module._FAILS_KEYS) == keyed
