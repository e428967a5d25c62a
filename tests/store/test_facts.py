"""Schema v2 of the event store: per-copy intrinsic facts (``event_facts``) and the warm replay.

Real SQLite files, real Ed25519 signatures (pith_graph.testing). Expected states
come from ``rebuild_state`` of the same bundle (the cold path, which parses every
event); expected facts from :func:`pith_graph.events.inspect_event` of the
stored body and from the reference canonical rule in tests.helpers.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from pith_graph import codes
from pith_graph.canonical import canonical_json, loads
from pith_graph.ed25519 import Verifier
from pith_graph.errors import StoreError
from pith_graph.events import EventFacts, check_event, inspect_event
from pith_graph.keys import KeyRing
from pith_graph.rebuild import rebuild_state
from pith_graph.store import FACTS_RULE, EventRow, EventStore, FactsRow
from pith_graph.store._facts import ring_id as _ring_id
from pith_graph.testing import History, TestKey, resign
from tests.helpers import ref_canonical, ref_sha256

#: The schema a v1 store was created with (pith_graph before event_facts), kept
#: verbatim here so that the migration is tested against what v1 really wrote.
SCHEMA_V1 = (
    "CREATE TABLE pith_schema (version INTEGER NOT NULL)",
    "INSERT INTO pith_schema (version) VALUES (1)",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        unit_id TEXT NOT NULL,
        digest TEXT NOT NULL,
        body BLOB NOT NULL,
        event_type TEXT,
        target TEXT,
        signer_id TEXT,
        prev_event TEXT,
        created_at TEXT
    )""",
    "CREATE UNIQUE INDEX events_by_subject ON events (subject, unit_id, digest)",
    "CREATE INDEX events_by_stream ON events (subject, target, signer_id)",
    "CREATE INDEX events_by_prev ON events (prev_event)",
    """CREATE TABLE items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX items_by_subject ON items (subject, kind, digest)",
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER items_no_update BEFORE UPDATE ON items BEGIN SELECT RAISE(ABORT, 'items are append-only'); END",
    "CREATE TRIGGER items_no_delete BEFORE DELETE ON items BEGIN SELECT RAISE(ABORT, 'items are append-only'); END",
    "CREATE TRIGGER schema_no_update BEFORE UPDATE ON pith_schema BEGIN SELECT RAISE(ABORT, 'schema version is fixed'); END",
    """CREATE TABLE signature_cache (
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        message BLOB NOT NULL,
        valid INTEGER NOT NULL,
        PRIMARY KEY (message, public_key, signature)
    ) WITHOUT ROWID""",
    f"PRAGMA application_id = {0x50495448}",  # "PITH"
)


def tampered_signature(event: dict[str, Any]) -> dict[str, Any]:
    """The same event with a wrong signature: same unit id, another copy."""
    other = TestKey("forger").sign_b64(bytes.fromhex(event["content_sha256"]))
    return {**event, "signature": {**event["signature"], "signature_b64": other}}


def mixed_events(history: History, alice: TestKey, bob: TestKey, other: History) -> list[Any]:
    """Valid, invalid, duplicated, tampered, forked, superseding and float-carrying events (record_created apart)."""
    a1 = history.event("graph_snapshot", key=alice, payload={"n": 1})
    a2 = history.event("graph_snapshot", key=alice, payload={"n": 2}, prev_event=a1["event_id"])
    fork = history.event("graph_snapshot", key=alice, payload={"n": 3}, prev_event=a1["event_id"])
    c1 = history.event("correction", payload={"fix": "first"})
    c2 = history.event(
        "correction", payload={"fix": "second"}, prev_event=c1["event_id"], supersedes=[c1["event_id"]]
    )
    floats = history.event(
        "author_attestation", key=alice, target="author", payload={"score": 1e16, "tiny": 1e-07, "x": 0.5}
    )
    return [
        a1,
        a2,
        fork,
        c1,
        c2,
        floats,
        dict(a1),  # the same copy twice: one row
        tampered_signature(a2),  # a forged copy beside the genuine one
        {**c1, "payload": {"fix": "edited"}},  # edited without resealing: content_hash_mismatch, same unit
        resign(
            {**a1, "target": "figure", "payload": {"n": 99}}, alice
        ),  # re-signed edit: a new event, own stream
        history.event("mirror_hint", key=bob, payload={"url": "https://bob.example"}),  # untrusted key
        history.event("correction", payload={"n": 2}, prev_event="sha256:" + "0" * 64),  # missing prev
        history.event("no_such_type", payload={}),  # unknown_event_type
        other.event("correction", payload={"elsewhere": True}),  # subject_mismatch
        ["not", "an", "event"],
        {"event_id": "garbage"},
        42,
    ]


def trusted_keys(history: History, alice: TestKey) -> list[dict[str, Any]]:
    return [history.registry.entry(), alice.entry()]


@pytest.fixture
def other(new_history: Any) -> History:
    made: History = new_history(arxiv_id="2601.00002")
    return made


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Every row of ``sql``, through a connection of our own (not the store's)."""
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute(sql, params).fetchall()


def execute(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run and commit ``sql`` through a connection of our own, as another program would."""
    with closing(sqlite3.connect(path)) as raw:
        raw.execute(sql, params)
        raw.commit()


def stored_facts(path: Path) -> list[tuple[Any, ...]]:
    """Every (subject, unit_id, body, facts columns...) row, through a connection of our own."""
    return query(
        path,
        "SELECT e.subject, e.unit_id, e.body, f.rule, f.reason, f.facts, f.signer_at, f.signer_len, f.signer_json,"
        " f.payload_at, f.payload_len, f.payload_json FROM events e JOIN event_facts f ON f.seq = e.seq",
    )


def count(path: Path, table: str) -> int:
    ((n,),) = query(path, f"SELECT count(*) FROM {table}")
    return int(n)


def assert_facts_are_inspect_event(path: Path, expected_rows: int) -> None:
    """Each facts row is what inspect_event says of the stored body; fragments are slices of it."""
    rows = stored_facts(path)
    assert len(rows) == expected_rows == count(path, "events")
    for subject, uid, body, rule, reason, blob, s_at, s_len, s_json, p_at, p_len, p_json in rows:
        body = bytes(body)
        expected = inspect_event(loads(body), subject=subject, uid=uid)
        assert rule == FACTS_RULE
        assert reason == expected.reason
        if expected.facts is None:
            assert (blob, s_at, s_json, p_at, p_json) == (None, None, None, None, None)
            continue
        assert msgspec.msgpack.decode(blob, type=EventFacts) == expected.facts
        # Stored as offsets into the body, never as a second copy (canonical JSON is compositional).
        assert s_json is None and p_json is None
        assert body[s_at : s_at + s_len] == expected.signer_json
        assert body[p_at : p_at + p_len] == expected.payload_json
        # And independently of the code under test: the reference canonical bytes of each part.
        tree = json.loads(body)
        assert expected.signer_json == ref_canonical(tree["signer"])
        assert expected.payload_json == ref_canonical(tree["payload"])


# --- the warm replay equals the cold rebuild -----------------------------------------------


def test_warm_replay_equals_cold_rebuild(
    tmp_path: Path, history: History, alice: TestKey, bob: TestKey, other: History
) -> None:
    events = mixed_events(history, alice, bob, other)
    bundle = history.bundle(events)
    path = tmp_path / "s.sqlite"
    with EventStore(path) as store:
        store.import_bundle(bundle)
    trusts: list[dict[str, Any]] = [
        {"trusted_keys": trusted_keys(history, alice)},
        {},
        {"trust_bundle_keys": True},
    ]
    with EventStore(path) as store:  # a fresh connection: everything comes from the file
        for kwargs in trusts:
            cold = rebuild_state(bundle, **kwargs)
            assert store.state(history.subject, **kwargs).to_json() == cold.to_json()
            assert store.state(history.subject, **kwargs).to_json() == cold.to_json()  # warm twice
            assert (
                rebuild_state(store.export_bundle(history.subject, **kwargs), **kwargs).to_json()
                == cold.to_json()
            )
    # The bundle exercises what it claims to.
    state = json.loads(rebuild_state(bundle, **trusts[0]).to_json())
    reasons = {e["reason"] for e in state["invalid_events"]}
    assert {
        codes.REASON_MALFORMED,
        codes.REASON_UNKNOWN_KEY,
        codes.REASON_MISSING_PREV_EVENT,
        codes.REASON_UNKNOWN_EVENT_TYPE,
        codes.REASON_SUBJECT_MISMATCH,
    } <= reasons
    assert state["equivocation_count"] == 1
    assert state["current"]["record_created"]["event_id"] == history.record_created["event_id"]
    # One facts row per stored copy (the duplicate is one row), written with the copy.
    assert_facts_are_inspect_event(path, len(bundle["events"]) - 1)  # the duplicate is one row


def test_warm_replay_of_appended_copies(
    tmp_path: Path, history: History, alice: TestKey, bob: TestKey, other: History
) -> None:
    events = [history.record_created, *mixed_events(history, alice, bob, other)]
    path = tmp_path / "s.sqlite"
    trusted = trusted_keys(history, alice)
    with EventStore(path) as store:
        for event in events:
            store.append(event, subject=history.subject, trusted_keys=trusted)
        # Appends carry no bundle-level aliases.
        cold = rebuild_state(history.bundle(events[1:], aliases=[]), trusted_keys=trusted)
        assert store.state(history.subject, trusted_keys=trusted).to_json() == cold.to_json()
    assert_facts_are_inspect_event(path, len(events) - 1)


def test_sync_writes_facts_for_the_copies_it_adds(tmp_path: Path, history: History, alice: TestKey) -> None:
    snap = history.event("graph_snapshot", key=alice, payload={"n": 1})
    bundle = history.bundle([snap, tampered_signature(snap)])
    source, target = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with EventStore(source) as a, EventStore(target) as b:
        a.import_bundle(bundle)
        trusted = trusted_keys(history, alice)
        b.sync_from(a, trusted_keys=trusted)
        assert (
            b.state(history.subject, trusted_keys=trusted).to_json()
            == rebuild_state(bundle, trusted_keys=trusted).to_json()
        )
    assert_facts_are_inspect_event(target, 2)  # the tampered copy fails stage 1: never synced


# --- append-only --------------------------------------------------------------------------


def test_facts_and_schema_versions_are_append_only(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    with EventStore(path) as store:
        store.import_bundle(history.bundle([history.event("mirror_hint", payload={"i": 1})]))
    raw = sqlite3.connect(path)
    try:
        for forged in (
            "UPDATE event_facts SET reason = 'bad_signature'",
            "UPDATE event_facts SET facts = NULL",
            "DELETE FROM event_facts",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(forged)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM pith_schema")
        with pytest.raises(sqlite3.IntegrityError, match="fixed"):
            raw.execute("UPDATE pith_schema SET version = 1")
        raw.commit()
    finally:
        raw.close()
    assert count(path, "event_facts") == 2


# --- key verdicts ---------------------------------------------------------------------------


def stored_key_verdicts(path: Path) -> dict[str, list[tuple[str, str, bytes, str | None]]]:
    """ring -> [(subject, unit_id, body, reason)], through a connection of our own."""
    rows = query(
        path,
        "SELECT k.ring, e.subject, e.unit_id, e.body, k.reason FROM key_verdicts k JOIN events e ON e.seq = k.seq",
    )
    by_ring: dict[str, list[tuple[str, str, bytes, str | None]]] = {}
    for ring, subject, uid, body, reason in rows:
        by_ring.setdefault(ring, []).append((subject, uid, bytes(body), reason))
    return by_ring


def test_key_verdicts_are_kept_per_set_of_keys_and_are_check_event(
    tmp_path: Path, history: History, alice: TestKey, bob: TestKey, other: History
) -> None:
    """Each kept verdict is what check_event says of the stored body under that ring, and a
    replay under other keys never reads another ring's verdicts."""
    bundle = history.bundle(mixed_events(history, alice, bob, other))
    path = tmp_path / "s.sqlite"
    rings = {"registry only": [history.registry.entry()], "with alice": trusted_keys(history, alice)}
    with EventStore(path) as store:
        store.import_bundle(bundle, trusted_keys=rings["registry only"])
        for keys in rings.values():
            for _ in range(2):  # the second replay reads the verdicts the first kept
                assert (
                    store.state(history.subject, trusted_keys=keys).to_json()
                    == rebuild_state(bundle, trusted_keys=keys).to_json()
                )
    kept = stored_key_verdicts(path)
    assert len(kept) == 2
    expected_by_ring = {}
    for name, keys in rings.items():
        ring = KeyRing.from_entries(keys)
        expected_by_ring[name] = sorted(
            (
                (
                    uid,
                    check_event(
                        loads(body), subject=subject, keyring=ring, verifier=Verifier(), uid=uid
                    ).reason
                    or "",
                )
                for subject, uid, body, _ in next(iter(kept.values()))
            ),
        )
    found = sorted(sorted((uid, reason or "") for _, uid, _, reason in rows) for rows in kept.values())
    assert found == sorted(expected_by_ring.values())
    # The two sets of keys really disagree about some copy (alice's events).
    assert expected_by_ring["registry only"] != expected_by_ring["with alice"]


def test_key_verdicts_are_append_only_and_checked_when_read(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    trusted = history.trusted()
    with EventStore(path) as store:
        store.import_bundle(
            history.bundle([history.event("mirror_hint", payload={"i": 1})]), trusted_keys=trusted
        )
    raw = sqlite3.connect(path)
    try:
        assert count(path, "key_verdicts") == 2  # the record_created and the hint
        for forged in ("UPDATE key_verdicts SET reason = 'bad_signature'", "DELETE FROM key_verdicts"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(forged)
        # A verdict under a ring no one recorded (as if written by other code) is never read.
        other_keys = [*trusted, TestKey("unrelated").entry()]
        other_ring = KeyRing.from_entries(other_keys)
        ring = _ring_id(other_ring)
        raw.execute(
            "INSERT INTO key_verdicts (ring, seq, reason) SELECT ?, seq, 'malformed' FROM events", (ring,)
        )
        raw.commit()
        with EventStore(path) as store:
            assert store.state(history.subject, trusted_keys=trusted).valid_event_count == 2
            report = store.fsck()
            assert report.ok and report.ignored["key_verdicts"] == 2
            # Once someone uses that ring, the planted verdicts are found, not believed.
            with pytest.raises(StoreError) as planted:
                store.state(history.subject, trusted_keys=other_keys)
            assert planted.value.code == codes.E_STORE_CORRUPT
        # Recorded, a verdict that is no key-check reason is refused when read, not believed.
        other = sqlite3.connect(path)
        other.execute(
            "INSERT INTO key_rings (ring, entries) VALUES (?, ?)",
            (ring, canonical_json(other_ring.describe())),
        )
        other.commit()
        other.close()
    finally:
        raw.close()
    with EventStore(path) as store, pytest.raises(StoreError) as caught:
        store.state(history.subject, trusted_keys=other_keys)
    assert caught.value.code == codes.E_STORE_CORRUPT


# --- migration from v1 ------------------------------------------------------------------------


def v1_store(path: Path, subject: str, events: list[Any], aliases: list[Any]) -> None:
    """A store as pith_graph with schema v1 wrote it, built with the v1 DDL and reference hashes."""
    raw = sqlite3.connect(path)
    try:
        for statement in SCHEMA_V1:
            raw.execute(statement)

        def text(event: Any, key: str) -> Any:
            value = event.get(key) if isinstance(event, dict) else None
            return value if isinstance(value, str) else None

        for event in events:
            body = ref_canonical(event)
            claimed = text(event, "event_id")
            uid = (
                claimed
                if claimed and claimed.startswith("sha256:") and len(claimed) == 71
                else "sha256:" + ref_sha256(event)
            )
            signer = event.get("signer") if isinstance(event, dict) else None
            raw.execute(
                "INSERT OR IGNORE INTO events (subject, unit_id, digest, body, event_type, target, signer_id,"
                " prev_event, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    subject,
                    uid,
                    ref_sha256(event),
                    body,
                    text(event, "event_type"),
                    text(event, "target"),
                    text(signer, "signer_id") if isinstance(signer, dict) else None,
                    text(event, "prev_event"),
                    text(event, "created_at"),
                ),
            )
        for alias in aliases:
            raw.execute(
                "INSERT INTO items (subject, kind, digest, body) VALUES (?, 'alias', ?, ?)",
                (subject, ref_sha256(alias), ref_canonical(alias)),
            )
        raw.commit()
    finally:
        raw.close()


def versions(path: Path) -> list[int]:
    return sorted(row[0] for row in query(path, "SELECT version FROM pith_schema"))


def test_a_v1_store_migrates_and_replays_to_the_same_state(
    tmp_path: Path, history: History, alice: TestKey, bob: TestKey, other: History
) -> None:
    events = [history.record_created, *mixed_events(history, alice, bob, other)]
    bundle = history.bundle(events[1:])
    path = tmp_path / "v1.sqlite"
    v1_store(path, history.subject, events, bundle["source_aliases"])
    assert versions(path) == [1]
    trusted = trusted_keys(history, alice)
    cold = rebuild_state(bundle, trusted_keys=trusted).to_json()
    with EventStore(path) as first, EventStore(path) as second:
        assert versions(path) == [1, 2, 3]  # migrated once, by the first to open it
        assert count(path, "event_facts") == 0  # facts come lazily
        assert first.state(history.subject, trusted_keys=trusted).to_json() == cold
        filled = count(path, "event_facts")
        assert filled == count(path, "events")
        # Another connection replaying the same rows finds them filled, and agrees.
        assert second.state(history.subject, trusted_keys=trusted).to_json() == cold
        assert first.state(history.subject, trusted_keys=trusted).to_json() == cold
        assert count(path, "event_facts") == filled
    with EventStore(path) as again:
        assert again.state(history.subject, trusted_keys=trusted).to_json() == cold
    assert versions(path) == [1, 2, 3]
    assert_facts_are_inspect_event(path, len(events) - 1)


def test_concurrent_lazy_fills_keep_the_first_row(tmp_path: Path, history: History) -> None:
    events = [history.record_created, history.event("mirror_hint", payload={"i": 1})]
    path = tmp_path / "v1.sqlite"
    v1_store(path, history.subject, events, [])
    with EventStore(path) as a, EventStore(path) as b:
        # Both read the rows before either writes their facts back (INSERT OR IGNORE).
        rows_a, _ = a.backend.copies(history.subject)
        rows_b, _ = b.backend.copies(history.subject)
        assert all(row.missing_body is not None for row in rows_a + rows_b)  # bodies: the facts are missing
        expected = rebuild_state(
            history.bundle(events[1:], aliases=[]), trusted_keys=history.trusted()
        ).to_json()
        assert a.state(history.subject, trusted_keys=history.trusted()).to_json() == expected
        late = [
            (
                row.seq,
                FactsRow.inspected(
                    history.subject,
                    EventRow(history.subject, row.unit_id, row.digest, cast(bytes, row.missing_body)),
                ),
            )
            for row in rows_b
        ]
        b.backend.add_facts(late)  # the slower writer: ignored, no error
        assert b.state(history.subject, trusted_keys=history.trusted()).to_json() == expected
    assert_facts_are_inspect_event(path, 2)


def test_facts_of_another_rule_are_ignored(tmp_path: Path, history: History) -> None:
    events = [history.record_created, history.event("mirror_hint", payload={"i": 1})]
    path = tmp_path / "v1.sqlite"
    v1_store(path, history.subject, events, [])
    with EventStore(path):
        pass  # migrate
    # Rows a future (or past) inspect rule wrote: this code must not read them.
    execute(
        path,
        "INSERT INTO event_facts (seq, rule, reason, facts) SELECT seq, 'another-rule', 'malformed', NULL FROM events",
    )
    with EventStore(path) as store:
        state = store.state(history.subject, trusted_keys=history.trusted())
    assert (
        state.to_json()
        == rebuild_state(history.bundle(events[1:], aliases=[]), trusted_keys=history.trusted()).to_json()
    )
    assert state.valid_event_count == 2


def test_an_unreadable_facts_row_is_corruption(tmp_path: Path, history: History) -> None:
    path = tmp_path / "v1.sqlite"
    v1_store(path, history.subject, [history.record_created], [])
    with EventStore(path):
        pass  # migrate
    execute(
        path,
        "INSERT INTO event_facts (seq, rule, reason, facts) SELECT seq, ?, 'no_such_reason', NULL FROM events",
        (FACTS_RULE,),
    )
    with EventStore(path) as store, pytest.raises(StoreError) as caught:
        store.state(history.subject, trusted_keys=history.trusted())
    assert caught.value.code == codes.E_STORE_CORRUPT


def test_a_newer_schema_version_is_refused(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    with EventStore(path) as store:
        store.append(history.record_created)
    execute(path, "INSERT INTO pith_schema (version) VALUES (4)")
    with pytest.raises(StoreError) as caught:
        EventStore(path)
    assert caught.value.code == codes.E_STORE_SCHEMA
    assert "3" in caught.value.message
