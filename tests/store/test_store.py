"""The event store (pith_graph.store): a contract every backend runs, then SQLite-file specifics.

Real SQLite, real Ed25519 signatures (pith_graph.testing); expected values come
from the registry's documents, the standard library or rebuild_state, never
from the store itself.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.errors import InputError, StoreError
from pith_graph.events import content_bytes
from pith_graph.rebuild import rebuild_state
from pith_graph.store import EventStore, SQLiteBackend
from pith_graph.store._backend import ADDED, PRESENT, REFUSED, UNIT_STORED, UNSETTLED
from pith_graph.store._facts import CheckedRow, EventRow, FactsRow, Ring
from pith_graph.testing import History, TestKey, resign
from pith_graph.verify import verify_bundle
from tests.helpers import FIXTURES, REGISTRY_KEY_HEX, ref_canonical, ref_sha256, seed

BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
SUBJECT = "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"


def tampered_signature(event: dict[str, Any]) -> dict[str, Any]:
    """The same event with a different (wrong) signature: same unit id, another copy."""
    other = TestKey("forger").sign_b64(bytes.fromhex(event["content_sha256"]))
    return {**event, "signature": {**event["signature"], "signature_b64": other}}


def invalid_by_id(state: Any) -> dict[str, str]:
    return {e["event_id"]: e["reason"] for e in state.to_dict()["invalid_events"]}


class StoreContract:
    """Behaviour every EventStore backend must show. Subclasses provide ``store``."""

    @pytest.fixture
    def store(self) -> Iterator[EventStore]:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- the registry bundle ------------------------------------------------------

    def test_registry_bundle_round_trips(self, store: EventStore) -> None:
        registry = seed("bundle-AG3PAJ22.json")
        result = store.import_bundle(BUNDLE)
        assert result.subject == SUBJECT
        assert [a.status for a in result.appends] == [codes.STORE_NEW, codes.STORE_NEW]
        state = store.state(SUBJECT)
        assert state.state_sha256 == registry["state"]["state_sha256"]
        exported = store.export_bundle(SUBJECT)
        assert rebuild_state(exported).to_json() == state.to_json()
        assert exported["state"] == registry["state"]
        # The events come back as the registry's own bytes (canonically).
        assert sorted(ref_canonical(e) for e in exported["events"]) == sorted(
            ref_canonical(e) for e in registry["events"]
        )
        assert exported["source_aliases"] == registry["source_aliases"]
        assert exported["public_keys"] == registry["public_keys"]
        assert exported["mirror_hints"] == registry["mirror_hints"]
        assert exported["canonical_sha256"] == registry["canonical_sha256"]
        assert store.subjects() == [SUBJECT]

    def test_importing_twice_changes_nothing(self, store: EventStore) -> None:
        store.import_bundle(BUNDLE)
        again = store.import_bundle(BUNDLE)
        assert [a.status for a in again.appends] == [codes.STORE_DUPLICATE] * 2
        assert again.items_added == 0
        assert len(store.events(SUBJECT)) == 2

    # --- a unit is stored once (Backend.add_checked) --------------------------------

    def test_add_checked_stores_a_unit_once_and_a_row_sees_the_rows_before_it(
        self, store: EventStore
    ) -> None:
        """The backend's rule, fed stage-1 verdicts directly: each row decided in order, seeing
        the copies (and the key verdicts) stored by the rows before it in the same call."""
        fine = FactsRow(None, b"{}", None, None, b"{}", None, None, b"{}")
        x, y, z = (EventRow(SUBJECT, "u1", digest, digest.encode()) for digest in ("dx", "dy", "dz"))
        v1, v2 = (EventRow(SUBJECT, "u2", digest, digest.encode()) for digest in ("d1", "d2"))
        ring_a, ring_b = Ring("ring-a", b"[]"), Ring("ring-b", b"[]")
        valid, bad_key = CheckedRow(fine, None, True), CheckedRow(fine, "bad_key", True)
        add = store.backend.add_checked
        assert add([x], [], [valid], ring_a, keep_invalid=False) == [ADDED]
        # Under ring b, x has no verdict yet: a valid copy of its unit waits until it is checked.
        assert add([y], [], [valid], ring_b, keep_invalid=False) == [UNSETTLED]
        # x checked invalid under ring b earlier in the same call settles its unit for y.
        assert add([x, y], [], [bad_key, valid], ring_b, keep_invalid=True) == [PRESENT, ADDED]
        assert add([z], [], [valid], ring_b, keep_invalid=False) == [UNIT_STORED]
        assert add([z], [], [valid], ring_a, keep_invalid=False) == [UNIT_STORED]
        # Two valid copies of a new unit in one call: the first is stored; refused without keep_invalid.
        assert add([v1, v2, v1], [], [valid, valid, bad_key], ring_a, keep_invalid=False) == [
            ADDED,
            UNIT_STORED,
            REFUSED,
        ]
        assert [(r.unit_id, r.digest) for r in store.backend.event_rows(SUBJECT)] == [
            ("u1", "dx"),
            ("u1", "dy"),
            ("u2", "d1"),
        ]
        digests = {copy.seq: copy.digest for copy in store.backend.copies(SUBJECT)[0]}
        verdicts = store.backend.key_verdicts("ring-b", SUBJECT).items()
        assert {digests[seq]: reason for seq, reason in verdicts} == {"dx": "bad_key", "dy": None}

    # --- append -------------------------------------------------------------------

    def test_append_new_duplicate_and_invalid(
        self, store: EventStore, history: History, alice: TestKey
    ) -> None:
        trusted = [*history.trusted(), alice.entry()]
        first = store.append(history.record_created, trusted_keys=trusted)
        assert (first.status, first.reason) == (codes.STORE_NEW, None)
        assert first.unit_id == history.record_created["event_id"]
        assert first.subject == history.subject
        assert first.digest == ref_sha256(history.record_created)
        # The same copy again, even as raw JSON text: one row.
        again = store.append(json.dumps(history.record_created), trusted_keys=trusted)
        assert again.status == codes.STORE_DUPLICATE
        # Signed by a key the caller does not trust: stored, and said so.
        snap = history.event("graph_snapshot", key=alice, payload={"n": 1})
        untrusted = store.append(json.dumps(snap).encode())
        assert (untrusted.status, untrusted.reason) == (codes.STORE_INVALID, codes.REASON_UNKNOWN_KEY)
        assert [e.unit_id for e in store.events(history.subject, trusted_keys=trusted)] == [
            history.record_created["event_id"],
            snap["event_id"],
        ]

    def test_distinct_copies_under_one_id_are_all_kept(self, store: EventStore, history: History) -> None:
        trusted = history.trusted()
        snap = history.event("graph_snapshot", payload={"n": 1})
        forged = tampered_signature(snap)
        store.append(history.record_created, trusted_keys=trusted)
        assert store.append(forged, trusted_keys=trusted).status == codes.STORE_INVALID
        assert store.append(snap, trusted_keys=trusted).status == codes.STORE_NEW
        copies = [
            e for e in store.events(history.subject, trusted_keys=trusted) if e.unit_id == snap["event_id"]
        ]
        assert len(copies) == 2
        # The valid copy represents the unit (listed first); the forged one stays as evidence.
        assert copies[0].digest == ref_sha256(snap)
        assert copies[1].event == forged
        state = store.state(history.subject, trusted_keys=trusted)
        assert state.applied_event_ids == [history.record_created["event_id"], snap["event_id"]]
        # Appends carry no bundle-level aliases.
        assert (
            state.to_json()
            == rebuild_state(history.bundle([snap, forged], aliases=[]), trusted_keys=trusted).to_json()
        )

    def test_add_copies_of_many_subjects_in_one_call(self, store: EventStore, history: History) -> None:
        other = History.new(history.registry, arxiv_id="2601.00002")
        trusted = [*history.trusted(), *other.trusted()]
        snap = history.event("graph_snapshot", payload={"n": 1})
        # A second valid copy of the unit: the content hash does not reach signed_at.
        twin = {**snap, "signature": {**snap["signature"], "signed_at": "2026-06-10T00:00:00Z"}}
        copies = [
            (history.subject, history.record_created),
            (other.subject, other.record_created),
            (history.subject, snap),
            (history.subject, tampered_signature(snap)),  # forged: refused, not kept
            (other.subject, history.record_created),  # about another subject: refused
            (history.subject, twin),  # another valid copy of a unit stored earlier in the call
            (other.subject, other.record_created),  # the same copy again
        ]
        results = store.add_copies(copies, trusted_keys=trusted, keep_invalid=False)
        assert [(r.status, r.subject) for r in results] == [
            (codes.STORE_NEW, history.subject),
            (codes.STORE_NEW, other.subject),
            (codes.STORE_NEW, history.subject),
            (codes.STORE_REFUSED, history.subject),
            (codes.STORE_REFUSED, other.subject),
            (codes.STORE_DUPLICATE, history.subject),
            (codes.STORE_DUPLICATE, other.subject),
        ]
        assert results[3].reason == codes.REASON_BAD_SIGNATURE
        assert [e.digest for e in store.events(history.subject, trusted_keys=trusted)] == [
            ref_sha256(history.record_created),
            ref_sha256(snap),
        ]
        assert len(store.events(other.subject, trusted_keys=trusted)) == 1
        with pytest.raises(InputError) as caught:
            store.add_copies([("pith:2026:AG3PAJ22", snap)])
        assert caught.value.code == codes.E_BAD_SUBJECT

    def test_invalid_events_are_stored_not_dropped(self, store: EventStore, history: History) -> None:
        trusted = history.trusted()
        forged = tampered_signature(history.event("correction", payload={"fix": "x"}))
        result = store.append(forged, trusted_keys=trusted)
        assert (result.status, result.reason) == (codes.STORE_INVALID, codes.REASON_BAD_SIGNATURE)
        store.append(history.record_created, trusted_keys=trusted)
        listed = store.events(history.subject, trusted_keys=trusted)
        assert [(e.unit_id, e.reason, e.applied) for e in listed] == [
            (history.record_created["event_id"], None, True),
            (forged["event_id"], codes.REASON_BAD_SIGNATURE, False),
        ]
        assert invalid_by_id(store.state(history.subject, trusted_keys=trusted)) == {
            forged["event_id"]: codes.REASON_BAD_SIGNATURE
        }

    def test_subject_comes_from_the_event_or_the_caller(self, store: EventStore, history: History) -> None:
        with pytest.raises(InputError) as caught:
            store.append(["not", "an", "event"])
        assert caught.value.code == codes.E_USAGE
        junk = store.append(["not", "an", "event"], subject=history.subject)
        assert (junk.status, junk.reason) == (codes.STORE_INVALID, codes.REASON_MALFORMED)
        # An explicit subject wins: the copy is evidence of a subject mismatch there.
        other = "pith:2026:" + "A" * 26
        moved = store.append(history.record_created, subject=other, trusted_keys=history.trusted())
        assert (moved.subject, moved.reason) == (other, codes.REASON_SUBJECT_MISMATCH)
        assert store.subjects() == sorted([history.subject, other])

    def test_floats_are_stored_with_the_canonical_rule(self, store: EventStore, history: History) -> None:
        trusted = history.trusted()
        snap = history.event("graph_snapshot", payload={"score": 1e16, "tiny": 1e-07})
        as_text = json.dumps(snap)
        assert store.append(as_text, trusted_keys=trusted).status == codes.STORE_NEW
        # A caller-built dict with plain floats is the same copy.
        assert store.append(snap, trusted_keys=trusted).status == codes.STORE_DUPLICATE
        (stored,) = [
            e for e in store.events(history.subject, trusted_keys=trusted) if e.unit_id == snap["event_id"]
        ]
        assert stored.body == ref_canonical(snap)
        assert b"1e+16" in stored.body

    # --- trust --------------------------------------------------------------------

    def test_stored_keys_are_never_trusted_by_default(
        self, store: EventStore, history: History, alice: TestKey
    ) -> None:
        snap = history.event("graph_snapshot", key=alice, payload={"n": 2})
        bundle = history.bundle([snap])  # lists the registry test key and alice
        store.import_bundle(bundle)
        default = store.state(history.subject)
        assert default.valid_event_count == 0
        assert set(invalid_by_id(default).values()) == {codes.REASON_UNKNOWN_KEY}
        explicit = store.state(history.subject, trusted_keys=history.trusted())
        opted_in = store.state(history.subject, trust_bundle_keys=True)
        assert explicit.valid_event_count == 2
        # merge-v1 §6 check 10: a stored (listed) key never creates the record.
        assert invalid_by_id(opted_in) == {history.record_created["event_id"]: codes.REASON_BAD_RECORD}
        for kwargs in ({}, {"trusted_keys": history.trusted()}, {"trust_bundle_keys": True}):
            assert (
                store.state(history.subject, **kwargs).to_json()
                == rebuild_state(store.export_bundle(history.subject, **kwargs), **kwargs).to_json()
            )

    # --- signature cache ----------------------------------------------------------

    def test_replay_reuses_verified_signatures(self, store: EventStore, history: History) -> None:
        trusted = history.trusted()
        events = [history.event("mirror_hint", payload={"i": i}) for i in range(5)]
        store.import_bundle(history.bundle(events), trusted_keys=trusted)
        store.cache.hits = store.cache.misses = 0
        # Under the import's keys the key verdicts themselves were kept: no signature is even looked up.
        warm = store.replay(history.subject, trusted_keys=trusted)
        assert (store.cache.hits, store.cache.misses) == (0, 0)
        assert warm.state.to_json() == rebuild_state(history.bundle(events), trusted_keys=trusted).to_json()
        # Under other keys (one more, unused) the key checks run again, every signature from the cache.
        wider = [*trusted, TestKey("unrelated").entry()]
        warm = store.replay(history.subject, trusted_keys=wider)
        assert store.cache.misses == 0
        assert store.cache.hits == 7  # 6 events + the record_created receipt
        assert warm.state.to_json() == rebuild_state(history.bundle(events), trusted_keys=wider).to_json()

    def test_cache_never_turns_a_bad_signature_good(self, store: EventStore, history: History) -> None:
        trusted = history.trusted()
        snap = history.event("graph_snapshot", payload={"n": 1})
        forged = tampered_signature(snap)
        store.append(forged, trusted_keys=trusted)
        store.append(snap, trusted_keys=trusted)
        # Both verdicts are cached under their own (key, signature, message).
        key = bytes.fromhex(history.registry.public_key.hex())
        message = bytes.fromhex(snap["content_sha256"])
        import base64

        good = base64.b64decode(snap["signature"]["signature_b64"])
        bad = base64.b64decode(forged["signature"]["signature_b64"])
        assert store.cache.lookup(key, good, message) is True
        assert store.cache.lookup(key, bad, message) is False

    # --- export -------------------------------------------------------------------

    def test_export_signed_with_a_mirror_key(self, store: EventStore) -> None:
        mirror = TestKey("mirror")
        store.import_bundle(BUNDLE)
        signed = store.export_bundle(SUBJECT, sign_with=mirror, built_at="2026-07-01T00:00:00Z")
        signature = signed["bundle_signature"]
        unsigned = {k: v for k, v in signed.items() if k != "bundle_signature"}
        assert signature["bundle_sha256"] == ref_sha256(unsigned)
        assert signature["key_id"] == mirror.key_id
        registry_entry = seed("bundle-AG3PAJ22.json")["public_keys"][0]
        assert registry_entry["public_key_hex"] == REGISTRY_KEY_HEX
        report = verify_bundle(signed, trusted_keys=[registry_entry, mirror.entry()])
        assert report.ok, report.problems
        # The mirror key is not listed, so not trusted by anyone reading the bundle.
        assert [k["key_id"] for k in signed["public_keys"]] == ["pith-v1-2026-05"]

    def test_unknown_subject(self, store: EventStore) -> None:
        with pytest.raises(StoreError) as caught:
            store.state("pith:2026:NOTHING")
        assert caught.value.code == codes.E_STORE_UNKNOWN_SUBJECT

    # --- sync ---------------------------------------------------------------------

    def test_sync_is_a_union_independent_of_order(
        self, store: EventStore, history: History, alice: TestKey
    ) -> None:
        trusted = [*history.trusted(), alice.entry()]
        a1 = history.event("graph_snapshot", key=alice, payload={"n": 1})
        a2 = history.event("graph_snapshot", key=alice, payload={"n": 2}, prev_event=a1["event_id"])
        fork = history.event("graph_snapshot", key=alice, payload={"n": 3}, prev_event=a1["event_id"])
        hint = history.event("mirror_hint", payload={"url": "https://m.example"})
        parts = [
            history.bundle([a1]),
            history.bundle([a2, hint]),
            history.bundle([fork], include_record=False),
        ]
        expected = rebuild_state(history.bundle([a1, a2, hint, fork]), trusted_keys=trusted).to_json()

        def replica(i: int) -> EventStore:
            replica = EventStore(":memory:")
            replica.import_bundle(parts[i])
            return replica

        states = []
        for order in ((0, 1, 2), (2, 1, 0), (1, 0, 2)):
            target = EventStore(":memory:")
            for i in order:
                target.sync_from(replica(i), trusted_keys=trusted)
            target.sync_from(replica(order[0]), trusted_keys=trusted)  # syncing again adds nothing
            states.append(target.state(history.subject, trusted_keys=trusted).to_json())
        # And the fixture store, synced from bundles directly.
        for part in reversed(parts):
            store.sync_from(part, trusted_keys=trusted)
        states.append(store.state(history.subject, trusted_keys=trusted).to_json())
        assert states == [expected] * 4
        assert json.loads(expected)["equivocation_count"] == 1

    def test_sync_reports_what_it_added(self, store: EventStore, history: History) -> None:
        other = EventStore(":memory:")
        other.import_bundle(history.bundle([history.event("correction", payload={})]))
        first = store.sync_from(other, trusted_keys=history.trusted())
        assert (first.events_added, first.events_refused) == (2, 0)
        assert first.items_added > 0
        assert store.sync_from(other, trusted_keys=history.trusted()).events_added == 0
        # Under the default keys (the registry's only) the same copies fail stage 1: refused, never stored.
        fresh = EventStore(":memory:")
        assert (fresh.sync_from(other).events_added, fresh.sync_from(other).events_refused) == (0, 2)

    # --- events order -------------------------------------------------------------

    def test_events_in_apply_order_then_the_rest(self, store: EventStore, history: History) -> None:
        trusted = history.trusted()
        # Two streams (targets), so neither forks the other; created_at orders them.
        late = history.event("correction", target="a", payload={"n": 1})
        early = history.event("correction", target="b", payload={"n": 0}, created_at="2026-06-02T05:00:00Z")
        orphan = history.event("correction", payload={"n": 2}, prev_event="sha256:" + "0" * 64)
        junk = {"event_id": "garbage"}
        store.import_bundle(history.bundle([orphan, late, junk, early]), trusted_keys=trusted)
        listed = store.events(history.subject, trusted_keys=trusted)
        applied = [history.record_created["event_id"], early["event_id"], late["event_id"]]
        assert [e.unit_id for e in listed if e.applied] == applied
        assert [e.unit_id for e in listed][:3] == applied
        rest = [e.unit_id for e in listed[3:]]
        junk_id = "sha256:" + ref_sha256(junk)
        assert rest == sorted([orphan["event_id"], junk_id])
        reasons = {e.unit_id: e.reason for e in listed}
        assert reasons[orphan["event_id"]] == codes.REASON_MISSING_PREV_EVENT
        assert reasons[junk_id] == codes.REASON_MALFORMED

    # --- streamed export (issue 18 item 12) ------------------------------------------

    def test_bodies_come_in_the_order_asked(self, store: EventStore, history: History) -> None:
        events = [history.event("mirror_hint", payload={"i": i}) for i in range(4)]
        store.import_bundle(history.bundle(events), trusted_keys=history.trusted())
        rows, _ = store.backend.copies(history.subject, with_body=True)
        by_seq = {row.seq: row.row.body for row in rows if row.row is not None}
        wanted = [*sorted(by_seq, reverse=True), min(by_seq)]
        assert store.backend.bodies(wanted) == [by_seq[seq] for seq in wanted]
        assert store.backend.bodies([]) == []
        with pytest.raises(StoreError) as raised:
            store.backend.bodies([max(by_seq) + 1000])
        assert raised.value.code == codes.E_STORE_CORRUPT

    def test_write_bundle_writes_the_dumped_export(self, store: EventStore, history: History) -> None:
        trusted = history.trusted()
        events = [history.event("mirror_hint", payload={"i": i, "text": "é ✓"}) for i in range(5)]
        events.append(tampered_signature(events[2]))  # a second copy of a unit, invalid
        store.import_bundle(history.bundle(events), trusted_keys=trusted)
        when = "2026-06-03T00:00:00Z"
        for keys in (None, trusted):
            out = io.BytesIO()
            store.write_bundle(history.subject, out, built_at=when, trusted_keys=keys)
            exported = store.export_bundle(history.subject, built_at=when, trusted_keys=keys)
            dumped = json.dumps(exported, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            assert out.getvalue() == dumped


class TestSQLiteFileStore(StoreContract):
    """The contract on a database file."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore]:
        with EventStore(tmp_path / "store.sqlite") as store:
            yield store


class TestMemoryStore(StoreContract):
    """The contract on ``:memory:``."""

    @pytest.fixture
    def store(self) -> Iterator[EventStore]:
        with EventStore(":memory:") as store:
            yield store


# --- file-only guarantees -------------------------------------------------------------


def filled_store(path: Path, history: History, n: int = 40) -> list[str]:
    """A closed store at ``path`` holding the record and ``n`` events; returns their ids."""
    events = [history.event("mirror_hint", payload={"i": i, "pad": "x" * 200}) for i in range(n)]
    with EventStore(path) as store:
        store.import_bundle(history.bundle(events))
    return [history.record_created["event_id"]] + [e["event_id"] for e in events]


def test_reopened_store_keeps_everything(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    ids = filled_store(path, history)
    with EventStore(path) as store:
        assert sorted(e.unit_id for e in store.events(history.subject)) == sorted(ids)
        store.check()
        assert isinstance(store.backend, SQLiteBackend)
        conn = store.backend.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_forged_update_and_delete_are_refused_by_the_database(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    ids = filled_store(path, history, n=3)
    raw = sqlite3.connect(path)
    try:
        for forged in (
            "UPDATE events SET body = x'7b7d' WHERE unit_id = ?",
            "DELETE FROM events WHERE unit_id = ?",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(forged, (ids[1],))
        for forged_item in ("UPDATE items SET body = x'7b7d'", "DELETE FROM items"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(forged_item)
        raw.commit()
    finally:
        raw.close()
    with EventStore(path) as store:
        assert sorted(e.unit_id for e in store.events(history.subject)) == sorted(ids)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    opening_fails(path, codes.E_STORE_CORRUPT)


def _fails_as_corrupt(path: Path, subject: str) -> StoreError:
    # Opening or any later read may be the first to notice.
    with pytest.raises(StoreError) as caught, EventStore(path) as store:
        store.check()
        store.state(subject)
    return caught.value


def test_truncated_database(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    filled_store(path, history)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    assert _fails_as_corrupt(path, history.subject).code == codes.E_STORE_CORRUPT


def test_corrupted_database(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    filled_store(path, history)
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(page, len(data), page):  # keep the header page, scramble the rest
        data[start + 8 : start + 64] = b"\xa5" * 56
    path.write_bytes(bytes(data))
    assert _fails_as_corrupt(path, history.subject).code == codes.E_STORE_CORRUPT


def raw_sql(path: Path, *statements: str) -> None:
    """Run SQL through a connection of our own (what a forger or another program would do)."""
    raw = sqlite3.connect(path)
    try:
        for statement in statements:
            raw.execute(statement)
        raw.commit()
    finally:
        raw.close()


def opening_fails(where: str | Path, code: str) -> StoreError:
    """The error opening the store at ``where`` (a path or a PostgreSQL URL) fails with."""
    with pytest.raises(StoreError) as caught:
        EventStore(where)
    assert caught.value.code == code
    return caught.value


def test_unknown_schema_version(tmp_path: Path, history: History) -> None:
    path = tmp_path / "s.sqlite"
    filled_store(path, history, n=1)
    raw_sql(path, "DROP TRIGGER schema_no_update", "UPDATE pith_schema SET version = 99")
    assert "99" in opening_fails(path, codes.E_STORE_SCHEMA).message


def test_foreign_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    raw_sql(path, "CREATE TABLE t (x)")
    opening_fails(path, codes.E_STORE_SCHEMA)


def test_unopenable_path(tmp_path: Path) -> None:
    opening_fails(tmp_path / "missing-dir" / "s.sqlite", codes.E_IO)


def test_file_and_memory_stores_agree(tmp_path: Path, history: History, alice: TestKey) -> None:
    trusted = [*history.trusted(), alice.entry()]
    events = [history.event("author_attestation", key=alice, payload={"i": i}) for i in range(3)]
    edited = resign({**events[0], "payload": {"i": 99}}, alice)
    bundle = history.bundle([*events, edited])
    with EventStore(tmp_path / "a.sqlite") as on_disk, EventStore(":memory:") as in_memory:
        on_disk.import_bundle(bundle)
        in_memory.import_bundle(bundle)
        assert on_disk.export_bundle(
            history.subject, trusted_keys=trusted, built_at="t"
        ) == in_memory.export_bundle(history.subject, trusted_keys=trusted, built_at="t")


def test_registry_fixture_is_untouched(tmp_path: Path) -> None:
    copy = tmp_path / "bundle.json"
    shutil.copy(BUNDLE, copy)
    with EventStore(tmp_path / "s.sqlite") as store:
        store.import_bundle(copy)
    assert copy.read_bytes() == BUNDLE.read_bytes()
    assert content_bytes(seed("bundle-AG3PAJ22.json")["events"][0])  # parsed fine by the core too
