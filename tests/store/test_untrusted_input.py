"""Issue 15: nothing a replica file, a peer or a bundle sends may forge validity or grow the store.

Every attack is reproduced on real SQLite files with real signatures (the registry's
own published bundle, or :mod:`pith_graph.testing` keys), then shown to do no harm.
Holes 1 (replica rows), 2 (copy amplification), 4 (writable caches), 6 (store input)
and 7 (reads that write).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.canonical import canonical_json
from pith_graph.errors import InputError, StoreError
from pith_graph.rebuild import rebuild_state
from pith_graph.store import EventRow, EventStore, SourceError, SourceFile
from pith_graph.store._schema import MIGRATIONS, SCHEMA_V1
from pith_graph.testing import History, TestKey
from pith_graph.verify import verify_document
from tests.helpers import seed, seed_bytes

SEED = "bundle-AG3PAJ22.json"
CLI = (sys.executable, "-m", "pith_graph")


def registry_bundle() -> dict[str, Any]:
    bundle: dict[str, Any] = seed(SEED)
    return bundle


def snapshot_event() -> dict[str, Any]:
    """The registry's genuine graph_snapshot event (signed by pith-v1-2026-05)."""
    [snapshot] = [e for e in registry_bundle()["events"] if e["event_type"] == "graph_snapshot"]
    return snapshot  # type: ignore[no-any-return]


def sql(path: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """Write to a store file as someone who can write it would: raw SQL, triggers dropped if asked."""
    with closing(sqlite3.connect(path)) as raw:
        for statement in statements:
            raw.execute(statement, params if "?" in statement else ())
        raw.commit()


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def state_json(path: Path, subject: str, **trust: Any) -> bytes:
    with EventStore(path, create=False) as store:
        return store.state(subject, **trust).to_json()


def registry_store(path: Path) -> Path:
    """A store at ``path`` holding the registry's bundle (default trust: the registry key)."""
    with EventStore(path) as store:
        store.import_bundle(seed_bytes(SEED))
    return path


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A store holding the registry's bundle."""
    return registry_store(tmp_path / "victim.sqlite")


@pytest.fixture
def replica(tmp_path: Path) -> Path:
    """A replica with the same bundle, about to be tampered with."""
    return registry_store(tmp_path / "replica.sqlite")


# --- hole 1: replica rows are recomputed, never trusted ---------------------------------------


def test_a_forged_unit_id_over_a_genuine_body_forks_nothing(victim: Path, replica: Path) -> None:
    subject = registry_bundle()["pith_number"]
    before = state_json(victim, subject)
    body = canonical_json(snapshot_event())
    sql(
        replica,
        "INSERT INTO events (subject, unit_id, digest, body) VALUES (?, ?, ?, ?)",
        params=(subject, "sha256:" + "0" * 64, digest(body) + "x", body),
    )
    with EventStore(victim) as store, SourceFile(replica) as source:
        result = store.sync_from(source)
        assert result.events_added == 0  # the forged row is the genuine copy: already stored
        assert store.state(subject).equivocation_count == 0
        assert store.state(subject).to_json() == before
        exported = store.export_bundle(subject)
    assert verify_document(json.dumps(exported).encode()).ok


def test_a_pre_seeded_row_cannot_make_a_future_event_a_duplicate(tmp_path: Path, history: History) -> None:
    trusted = history.trusted()
    future = history.event("graph_snapshot", payload={"graph_snapshot": {"v": 1}})
    body = canonical_json(future)
    source = tmp_path / "source.sqlite"
    with EventStore(source) as store:
        store.import_bundle(history.bundle(), trusted_keys=trusted)
    junk = b'{"junk":true}'
    sql(
        source,
        "INSERT INTO events (subject, unit_id, digest, body) VALUES (?, ?, ?, ?)",
        params=(history.subject, future["event_id"], digest(body), junk),
    )
    target = tmp_path / "target.sqlite"
    with EventStore(target) as store:
        with SourceFile(source) as other:
            result = store.sync_from(other, trusted_keys=trusted)
        assert (result.events_added, result.events_refused) == (1, 1)  # the record; the junk is malformed
        assert store.append(future, trusted_keys=trusted).status == codes.STORE_NEW
        assert future["event_id"] in store.state(history.subject, trusted_keys=trusted).applied_event_ids


@pytest.mark.parametrize(
    ("table", "value", "fragment"),
    [
        ("items", b"not json", "not JSON"),
        ("items", "a text body", "not a BLOB"),
        ("events", "a text body", "TEXT, not a BLOB"),
        ("events", 42, "INTEGER, not a BLOB"),
        ("events", b"{not json", "not JSON"),
    ],
)
def test_a_bad_row_makes_the_whole_source_bad_and_nothing_is_kept(
    victim: Path, replica: Path, table: str, value: Any, fragment: str
) -> None:
    subject = registry_bundle()["pith_number"]
    good = canonical_json({"alias_kind": "x", "alias_value": "y"})
    # A good row first, then the bad one: the good one must not be kept either.
    sql(
        replica,
        "INSERT INTO items (subject, kind, digest, body) VALUES (?, 'alias', ?, ?)",
        params=(subject, digest(good), good),
    )
    if table == "items":
        sql(
            replica,
            "INSERT INTO items (subject, kind, digest, body) VALUES (?, 'alias', 'd', ?)",
            params=(subject, value),
        )
    else:
        sql(
            replica,
            "INSERT INTO events (subject, unit_id, digest, body) VALUES (?, 'u', 'd', ?)",
            params=(subject, value),
        )
    before = victim.read_bytes()
    with EventStore(victim) as store, SourceFile(replica) as source:
        items = store.backend.items(subject)
        with pytest.raises(SourceError) as caught:
            store.sync_from(source)
        assert fragment in caught.value.message and str(replica) in caught.value.message
        assert store.backend.items(subject) == items
    assert len(before) > 0


def test_a_recursive_view_or_a_foreign_trigger_is_refused_before_reading(
    tmp_path: Path, replica: Path
) -> None:
    subject = registry_bundle()["pith_number"]
    looping = tmp_path / "view.sqlite"
    sql(
        looping,
        "CREATE TABLE items (subject, kind, digest, body)",
        "CREATE VIEW events AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n)"
        f" SELECT x AS seq, '{subject}' AS subject, x AS body FROM n",
    )
    with pytest.raises(SourceError, match="view"):
        SourceFile(looping)
    sql(replica, "CREATE TRIGGER spy AFTER INSERT ON items BEGIN SELECT 1; END")
    with pytest.raises(SourceError, match="trigger 'spy'"):
        SourceFile(replica)


def _v1_store(path: Path, subject: str, events: list[Any]) -> None:
    """A store as schema v1 wrote it."""
    with closing(sqlite3.connect(path)) as raw:
        for statement in SCHEMA_V1:
            raw.execute(statement)
        for event in events:
            body = canonical_json(event)
            raw.execute(
                "INSERT INTO events (subject, unit_id, digest, body) VALUES (?, ?, ?, ?)",
                (subject, event["event_id"], digest(body), body),
            )
        raw.commit()


def test_syncing_from_an_old_store_never_writes_to_it(tmp_path: Path) -> None:
    bundle = registry_bundle()
    source = tmp_path / "v1.sqlite"
    _v1_store(source, bundle["pith_number"], bundle["events"])
    before = source.read_bytes()
    target = tmp_path / "target.sqlite"
    with EventStore(target) as store, SourceFile(source) as other:
        assert store.sync_from(other).events_added == 2
        # (The v1 file holds no items: the aliases differ, the events do not.)
        assert store.state(bundle["pith_number"]).applied_event_ids == rebuild_state(bundle).applied_event_ids
    assert source.read_bytes() == before
    with closing(sqlite3.connect(source)) as raw:
        assert [v for (v,) in raw.execute("SELECT version FROM pith_schema")] == [1]


def test_sync_reads_another_store_subject_by_subject(
    tmp_path: Path, history: History, alice: TestKey
) -> None:
    trusted = [*history.trusted(), alice.entry()]
    other = EventStore(tmp_path / "other.sqlite")
    events = [history.event("correction", target=f"t{i}", payload={"i": i}) for i in range(5)]
    other.import_bundle(history.bundle(events), trusted_keys=trusted)
    forged = copy.deepcopy(events[0])
    forged["payload"] = {"i": "forged"}  # same claimed id, content hash now wrong
    other.append(forged, trusted_keys=trusted)
    with EventStore(tmp_path / "mine.sqlite") as mine:
        result = mine.sync_from(other, trusted_keys=trusted)
        assert (result.events_added, result.events_refused) == (6, 1)
        assert mine.state(history.subject, trusted_keys=trusted).to_json() == (
            rebuild_state(history.bundle(events), trusted_keys=trusted).to_json()
        )
    other.close()


# --- hole 2: a unit is stored once ------------------------------------------------------------


def _variants(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Copies of a valid event that differ only where the content hash does not reach."""
    for second in range(3):
        respelt = copy.deepcopy(event)
        respelt["signature"]["signed_at"] = f"2026-06-09T00:00:0{second}Z"  # still valid
        yield respelt
    padded = copy.deepcopy(event)
    padded["signature"]["pad"] = "x" * (1 << 20)
    yield padded
    text = event["signature"]["signature_b64"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    loose = copy.deepcopy(event)
    loose["signature"]["signature_b64"] = text[:-3] + alphabet[alphabet.index(text[-3]) | 1] + text[-2:]
    assert base64.b64decode(loose["signature"]["signature_b64"]) == base64.b64decode(text)
    yield loose


def count_rows(path: Path, table: str = "events") -> int:
    with closing(sqlite3.connect(path)) as raw:
        (n,) = raw.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)


def test_valid_copies_of_one_unit_are_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    snapshot = snapshot_event()
    with EventStore(path) as store:
        store.import_bundle(seed_bytes(SEED))
        statuses = [store.append(v).status for v in _variants(snapshot)]
        # The signed_at copies are valid: duplicates of the stored valid copy, never stored.
        assert statuses[:3] == [codes.STORE_DUPLICATE] * 3
        # The padded and re-spelt copies fail stage 1: a local user's evidence, kept.
        assert statuses[3:] == [codes.STORE_INVALID] * 2
        reasons = [store.append(v).reason for v in list(_variants(snapshot))[3:]]
        assert reasons == [codes.REASON_MALFORMED, codes.REASON_BAD_SIGNATURE]
        subject = registry_bundle()["pith_number"]
        assert store.state(subject).to_json() == rebuild_state(registry_bundle()).to_json()
    assert count_rows(path) == 4


def test_sync_stores_no_copy_that_fails_stage_1_and_one_copy_per_unit(tmp_path: Path, replica: Path) -> None:
    snapshot = snapshot_event()
    with EventStore(replica) as store:
        for variant in _variants(snapshot):
            store.append(variant)
    # The replica also holds a second valid copy, written past the rule by raw SQL.
    second = copy.deepcopy(snapshot)
    second["signature"]["signed_at"] = "2026-06-10T00:00:00Z"
    body = canonical_json(second)
    sql(
        replica,
        "INSERT INTO events (subject, unit_id, digest, body) VALUES (?, ?, ?, ?)",
        params=(registry_bundle()["pith_number"], snapshot["event_id"], digest(body), body),
    )
    target = tmp_path / "target.sqlite"
    with EventStore(target) as store, SourceFile(replica) as source:
        result = store.sync_from(source)
        assert (result.events_added, result.events_refused) == (2, 2)
    assert count_rows(target) == 2  # one copy per unit: the record and the snapshot


def test_network_input_that_fails_stage_1_is_refused_not_stored(tmp_path: Path) -> None:
    """keep_invalid=False (a mirror's clients and peers): nothing failing stage 1 is stored."""
    path = tmp_path / "s.sqlite"
    with EventStore(path) as store:
        store.import_bundle(seed_bytes(SEED))
        results = [store.append(v, keep_invalid=False) for v in _variants(snapshot_event())]
    assert [r.status for r in results] == [codes.STORE_DUPLICATE] * 3 + [codes.STORE_REFUSED] * 2
    assert count_rows(path) == 2


def test_two_writers_store_one_valid_copy_per_unit(tmp_path: Path) -> None:
    """Two store objects on one file (as two processes would be): each sees the other's copy."""
    path = tmp_path / "s.sqlite"
    snapshot = snapshot_event()
    first, second = list(_variants(snapshot))[:2]
    with EventStore(path) as a, EventStore(path) as b:
        a.import_bundle(seed_bytes(SEED), trusted_keys=None)
        assert b.append(first).status == codes.STORE_DUPLICATE
        assert a.append(second).status == codes.STORE_DUPLICATE
    assert count_rows(path) == 2


def test_a_valid_copy_under_other_keys_is_checked_before_the_rule_applies(
    tmp_path: Path, history: History
) -> None:
    """A copy stored under one ring and valid under another still counts as the unit's stored copy."""
    trusted = history.trusted()
    event = history.event("correction", payload={"n": 1})
    path = tmp_path / "s.sqlite"
    with EventStore(path) as store:
        store.import_bundle(history.bundle([event]))  # default keys: every copy unknown_key
        respelt = copy.deepcopy(event)
        respelt["signature"]["signed_at"] = "2026-06-09T00:00:00Z"
        assert store.append(respelt, trusted_keys=trusted).status == codes.STORE_DUPLICATE
    assert count_rows(path) == 2


# --- hole 4: caches are append-only, and `store check` re-derives them ------------------------


def test_every_table_refuses_update_and_delete(victim: Path) -> None:
    with closing(sqlite3.connect(victim)) as raw:
        tables = [
            name
            for (name,) in raw.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        assert set(tables) == {
            "pith_schema",
            "events",
            "items",
            "signature_cache",
            "event_facts",
            "key_verdicts",
            "key_rings",
        }
        for table in tables:
            assert raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # a trigger fires per row
            column = raw.execute(f"PRAGMA table_info({table})").fetchone()[1]
            for statement in (f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}"):
                with pytest.raises(sqlite3.IntegrityError, match=r"append-only|fixed"):
                    raw.execute(statement)


def test_a_forged_signature_verdict_is_found_by_store_check(tmp_path: Path, history: History) -> None:
    trusted = history.trusted()
    path = tmp_path / "s.sqlite"
    good = history.event("correction", payload={"n": 1})
    bad = copy.deepcopy(history.event("correction", target="other", payload={"n": 2}))
    bad["signature"]["signature_b64"] = TestKey("forger").sign_b64(bytes.fromhex(bad["content_sha256"]))
    with EventStore(path) as store:
        store.import_bundle(history.bundle([good]), trusted_keys=trusted)
        assert store.append(bad, trusted_keys=trusted).reason == codes.REASON_BAD_SIGNATURE
    with closing(sqlite3.connect(path)) as raw, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE signature_cache SET valid = 1")
    # Someone who can write the file drops the trigger and forges the verdict.
    sql(path, "DROP TRIGGER signature_cache_no_update", "UPDATE signature_cache SET valid = 1")
    with EventStore(path) as store:
        report = store.fsck()
    assert not report.ok
    assert {m.table for m in report.mismatches} == {"signature_cache"}
    done = subprocess.run(
        [*CLI, "store", "check", "--db", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "mismatch: signature_cache" in done.stdout


def test_store_check_finds_forged_facts_columns_and_key_verdicts(tmp_path: Path, history: History) -> None:
    trusted = history.trusted()
    path = tmp_path / "s.sqlite"
    with EventStore(path) as store:
        store.import_bundle(
            history.bundle([history.event("correction", payload={"n": 1})]), trusted_keys=trusted
        )
        assert store.fsck().ok
    ok = subprocess.run(
        [*CLI, "store", "check", "--db", str(path)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and ": ok;" in ok.stdout
    sql(
        path,
        "DROP TRIGGER key_verdicts_no_update",
        "DROP TRIGGER events_no_update",
        "DROP TRIGGER event_facts_no_update",
        "UPDATE key_verdicts SET reason = 'bad_signature'",
        "UPDATE events SET unit_id = 'sha256:' || substr(digest, 1, 64) WHERE seq = 2",
        "UPDATE event_facts SET reason = 'subject_mismatch' WHERE seq = 1",
    )
    with EventStore(path) as store:
        tables = sorted({m.table for m in store.fsck().mismatches})
    assert tables == ["event_facts", "events", "key_verdicts"]


def _v2_store(path: Path, history: History) -> None:
    """A store as schema v2 left it: the v1 DDL, then the v1 -> v2 migration."""
    with closing(sqlite3.connect(path)) as raw:
        for statement in (*SCHEMA_V1, *MIGRATIONS[1]):
            raw.execute(statement)
        row = EventRow.of(history.subject, history.record_created)
        raw.execute(
            "INSERT INTO events (subject, unit_id, digest, body, event_type, target, signer_id, prev_event, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.subject,
                row.unit_id,
                row.digest,
                row.body,
                row.event_type,
                row.target,
                row.signer_id,
                row.prev_event,
                row.created_at,
            ),
        )
        raw.execute("INSERT INTO signature_cache VALUES (x'00', x'00', x'00', 1)")
        raw.commit()


def test_a_v2_store_is_upgraded_and_its_caches_become_append_only(tmp_path: Path, history: History) -> None:
    path = tmp_path / "v2.sqlite"
    _v2_store(path, history)
    with EventStore(path) as store:
        assert store.state(history.subject, trusted_keys=history.trusted()).valid_event_count == 1
        report = store.fsck()
    assert [m.table for m in report.mismatches] == ["signature_cache"]  # the v2 store's junk verdict
    with closing(sqlite3.connect(path)) as raw:
        assert [v for (v,) in raw.execute("SELECT version FROM pith_schema")] == [1, 2, 3]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM signature_cache")


# --- hole 6: store input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject", ["garbage", "", "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK\nx", "pith:ZZZZZZZZ"]
)
def test_a_subject_must_be_a_pith_number(tmp_path: Path, subject: str) -> None:
    path = tmp_path / "s.sqlite"
    with EventStore(path) as store:
        with pytest.raises(InputError) as caught:
            store.append(snapshot_event(), subject=subject)
        assert caught.value.code == codes.E_BAD_SUBJECT
        assert store.subjects() == []


def test_a_short_subject_resolves_to_the_stored_number(victim: Path) -> None:
    subject = registry_bundle()["pith_number"]
    with EventStore(victim) as store:
        result = store.append(snapshot_event(), subject="pith:AG3PAJ22")
    assert result.subject == subject and result.status == codes.STORE_DUPLICATE


def test_a_bundle_is_not_an_event(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s.sqlite") as store, pytest.raises(InputError, match="store import"):
        store.append(seed_bytes(SEED))


def test_each_copy_shows_its_own_verdict(victim: Path) -> None:
    forged = copy.deepcopy(snapshot_event())
    forged["payload"]["graph_snapshot"] = {"forged": True}
    with EventStore(victim) as store:
        store.append(forged)
        copies = [
            e for e in store.events(registry_bundle()["pith_number"]) if e.unit_id == forged["event_id"]
        ]
    assert [(e.applied, e.reason, e.copy_reason) for e in copies] == [
        (True, None, None),
        (True, None, codes.REASON_CONTENT_HASH_MISMATCH),
    ]


# --- hole 7: reads never write ----------------------------------------------------------------


@contextmanager
def frozen(*paths: Path) -> Iterator[None]:
    """Make files and directories read-only even to root (``chattr +i``), or skip."""
    done: list[Path] = []
    try:
        for path in paths:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode != 0:
                pytest.skip("chattr +i is not available here")
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_reads_on_a_read_only_store_work_and_write_nothing(tmp_path: Path, history: History) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "s.sqlite"
    event = history.event("correction", payload={"n": 1})
    with EventStore(path) as store:
        store.import_bundle(history.bundle([event]))
    before = listing(directory)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(history.trusted()))  # a ring the store never saw: nothing cached for it
    target = tmp_path / "copy.sqlite"
    with frozen(path, directory):
        assert not os.access(path, os.W_OK)
        for argv in (["state", history.subject], ["export", history.subject], ["log", history.subject]):
            done = subprocess.run(
                [*CLI, "store", *argv, "--db", str(path), "--trusted-keys", str(keys)],
                capture_output=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        state = subprocess.run(
            [*CLI, "store", "state", history.subject, "--db", str(path), "--trusted-keys", str(keys)],
            capture_output=True,
            check=True,
        ).stdout
        synced = subprocess.run(
            [*CLI, "store", "sync", "--db", str(target), str(path), "--trusted-keys", str(keys)],
            capture_output=True,
            check=False,
        )
        assert synced.returncode == 0, synced.stderr
        with EventStore(path, read_only=None) as store:
            assert store.read_only
            with pytest.raises(StoreError):
                store.append(history.event("correction", payload={"n": 2}))
    assert listing(directory) == before
    assert (
        state.rstrip(b"\n")
        == rebuild_state(history.bundle([event]), trusted_keys=history.trusted()).to_json()
    )
    assert state_json(target, history.subject, trusted_keys=history.trusted()) == state.rstrip(b"\n")
