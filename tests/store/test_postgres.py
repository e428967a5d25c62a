"""What only the PostgreSQL backend has: its errors, its schema checks, byte order, pooled use (issue 20).

Real server (conftest.py: a database per session, a schema per test), real psycopg;
expected values come from SQLite, the standard library or the registry's documents.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from pith_graph import codes
from pith_graph.errors import StoreError
from pith_graph.store import EventRow, EventStore, open_backend
from pith_graph.store._postgres import PostgresBackend, postgres_pool
from pith_graph.testing import History, TestKey
from tests.helpers import FIXTURES
from tests.store.test_store import opening_fails

BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
#: Nothing listens on port 1 of the loopback address.
UNREACHABLE = "postgresql://pith:s3cret-word@127.0.0.1:1/nothing"


def raw(url: str, *statements: str) -> None:
    """Run SQL through a connection of our own (another program, or someone with the owner's rights)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_a_url_selects_postgresql_and_a_path_sqlite(postgres_url: str, tmp_path: Path) -> None:
    pg = open_backend(postgres_url, busy_timeout=5)
    lite = open_backend(str(tmp_path / "s.sqlite"), busy_timeout=5)
    try:
        assert type(pg).__name__ == "PostgresBackend"
        assert type(lite).__name__ == "SQLiteBackend"
    finally:
        pg.close()
        lite.close()


def test_an_unreachable_server_is_io_error_without_the_password() -> None:
    error = opening_fails(UNREACHABLE, codes.E_IO)
    assert "s3cret-word" not in error.message
    assert "pith:***@127.0.0.1:1" in error.message


def test_the_cli_says_so_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pith_graph", "store", "state", "--db", UNREACHABLE, "pith:2026:X"],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "io_error" in lines[0], lines
    assert b"s3cret-word" not in done.stderr


def test_foreign_tables_are_not_a_store(postgres_url: str) -> None:
    raw(postgres_url, "CREATE TABLE events (x int)")
    opening_fails(postgres_url, codes.E_STORE_SCHEMA)


def test_a_table_replaced_by_a_view_is_not_a_store(postgres_url: str) -> None:
    EventStore(postgres_url).close()
    # The owner may drop a table (DROP is not UPDATE or DELETE); the store then refuses to open.
    raw(postgres_url, "DROP TABLE signature_cache", "CREATE VIEW signature_cache AS SELECT 1 AS valid")
    assert "signature_cache" in opening_fails(postgres_url, codes.E_STORE_SCHEMA).message


def test_an_unknown_schema_version_is_refused(postgres_url: str) -> None:
    EventStore(postgres_url).close()
    raw(postgres_url, "INSERT INTO pith_schema (application, version) VALUES ('pith-graph', 99)")
    assert "99" in opening_fails(postgres_url, codes.E_STORE_SCHEMA).message


def test_a_disabled_trigger_fails_the_check(postgres_url: str) -> None:
    with EventStore(postgres_url) as store:
        store.check()
    raw(postgres_url, "ALTER TABLE events DISABLE TRIGGER events_append_only")
    with EventStore(postgres_url) as store, pytest.raises(StoreError) as caught:
        store.check()
    assert caught.value.code == codes.E_STORE_CORRUPT
    assert "events_append_only" in caught.value.message


def test_a_search_path_without_a_schema_is_io_error(postgres_database: str) -> None:
    url = postgres_database + "?options=-csearch_path%3Dno_such_schema"
    assert "search_path" in opening_fails(url, codes.E_IO).message


def test_byte_order_and_nul_characters_as_in_sqlite(
    postgres_url: str, tmp_path: Path, history: History
) -> None:
    # The session database collates with ICU English ("a" < "B" < "b"); SQLite compares
    # bytes. Keys compared at the backend (whatever subjects the store above accepts),
    # and event fields PostgreSQL text cannot hold (U+0000), read back through the store.
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT 'a' < 'B'").fetchone()
    assert row == (True,), "the session database should not collate by bytes (ICU missing?)"
    odd = {
        **history.event("correction", payload={"n": 1}),
        "event_type": "cor\u0000rection",
        "target": "t\u0000",
    }
    keys = ["pith:b", "pith:B", "pith:a", "pith:_x", "pith:\u00e9", "pith:Z"]
    rows = [EventRow.of(key, history.record_created) for key in keys]
    rows += [EventRow.of(keys[0], {**history.record_created, "event_id": f"sha256:{c * 64}"}) for c in "fA0"]
    with EventStore(postgres_url) as pg, EventStore(tmp_path / "s.sqlite") as lite:
        for store in (pg, lite):
            store.backend.add(rows, [])
            store.backend.add(
                [EventRow.of(history.subject, odd), EventRow.of(history.subject, history.record_created)], []
            )
        assert pg.subjects() == lite.subjects() == sorted([*keys, history.subject], key=lambda s: s.encode())
        for key in (keys[0], history.subject):
            assert pg.backend.event_rows(key) == lite.backend.event_rows(key)
        assert [
            (e.unit_id, e.digest, e.body, e.event_type, e.reason) for e in pg.events(history.subject)
        ] == [(e.unit_id, e.digest, e.body, e.event_type, e.reason) for e in lite.events(history.subject)]
        assert pg.state(history.subject).to_json() == lite.state(history.subject).to_json()
        assert "cor\u0000rection" in {e.event_type for e in pg.events(history.subject)}


def test_a_pooled_backend_serves_many_threads(postgres_url: str, history: History) -> None:
    EventStore(postgres_url).close()
    pool = postgres_pool(postgres_url, max_size=3)
    keys = [TestKey(f"thread{n}") for n in range(4)]
    errors: list[BaseException] = []

    def work(key: TestKey) -> None:
        try:
            with EventStore(backend=PostgresBackend(postgres_url, pool=pool)) as store:
                store.append(history.record_created)
                for i in range(5):
                    store.append(history.event("mirror_hint", key=key, payload={"i": i}))
                store.state(history.subject)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        with EventStore(backend=PostgresBackend(postgres_url, pool=pool)) as store:
            assert len(store.events(history.subject)) == 1 + 4 * 5
    finally:
        pool.close()


def test_writes_wait_for_the_write_lock_then_say_busy(postgres_url: str, history: History) -> None:
    EventStore(postgres_url).close()
    with psycopg.connect(postgres_url) as holder:
        # Another writer holding the store's write lock for longer than we wait.
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (0x50495448,))
        with EventStore(postgres_url, busy_timeout=0.5) as store, pytest.raises(StoreError) as caught:
            store.append(history.record_created)
        assert caught.value.code == codes.E_STORE_BUSY
        # Readers never wait for a writer.
        with EventStore(postgres_url, busy_timeout=0.5) as store:
            assert store.subjects() == []
        holder.rollback()
    with EventStore(postgres_url) as store:
        assert store.append(history.record_created).status == codes.STORE_INVALID


def test_pg_dump_and_pg_restore_keep_the_store(postgres_url: str, history: History) -> None:
    """docs/store.md, "Backup and restore": a dump restores into an empty database as a working store."""
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        if os.environ.get("PITH_GRAPH_REQUIRE_POSTGRES") == "1":  # CI: the server's client tools are there
            pytest.fail(
                "no pg_dump/pg_restore here; PITH_GRAPH_REQUIRE_POSTGRES=1 requires them", pytrace=False
            )
        pytest.skip("no pg_dump/pg_restore here")
    trusted = history.trusted()
    with EventStore(postgres_url) as store:
        store.import_bundle(BUNDLE)
        store.import_bundle(
            history.bundle([history.event("correction", payload={"n": 1})]), trusted_keys=trusted
        )
        expected = {s: store.state(s, trusted_keys=trusted).to_json() for s in store.subjects()}
    parts = urllib.parse.urlsplit(postgres_url)
    schema = dict(urllib.parse.parse_qsl(parts.query))["options"].split("=", 1)[1]
    plain = urllib.parse.urlunsplit(parts._replace(query=""))
    restored_db = f"{parts.path[1:]}_restored"
    dump = subprocess.run(
        ["pg_dump", "--format=custom", f"--schema={schema}", plain], capture_output=True, timeout=120
    )
    assert dump.returncode == 0, dump.stderr
    raw(plain, f'CREATE DATABASE "{restored_db}"')
    try:
        target = urllib.parse.urlunsplit(parts._replace(path=f"/{restored_db}", query=""))
        restore = subprocess.run(
            ["pg_restore", "--exit-on-error", f"--dbname={target}"],
            input=dump.stdout,
            capture_output=True,
            timeout=120,
        )
        assert restore.returncode == 0, restore.stderr
        url = urllib.parse.urlunsplit(parts._replace(path=f"/{restored_db}"))
        with EventStore(url, create=False) as store:
            store.check()  # the triggers came back with the rows
            assert {s: store.state(s, trusted_keys=trusted).to_json() for s in store.subjects()} == expected
        with psycopg.connect(url) as conn, pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("DELETE FROM events")
    finally:
        raw(plain, f'DROP DATABASE IF EXISTS "{restored_db}" WITH (FORCE)')


def test_a_lost_connection_is_opened_again(postgres_url: str, history: History) -> None:
    """A server restart, or an administrator ending the session: the next call carries on."""
    with EventStore(postgres_url) as store:
        store.append(history.record_created)
        backend = store.backend
        assert isinstance(backend, PostgresBackend)

        def session() -> int:
            row = backend.read(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone())
            assert row is not None
            return int(row[0])

        for call in (store.subjects, lambda: store.append(history.event("correction", payload={"n": 1}))):
            pid = session()
            raw(postgres_url, f"SELECT pg_terminate_backend({pid})")
            call()
            assert session() != pid
        assert len(store.events(history.subject)) == 2


def test_what_postgresql_cannot_hold_is_a_store_error_not_io(postgres_url: str, history: History) -> None:
    # A key with U+0000 (SQLite keeps it; PostgreSQL text cannot): refused, said so, nothing stored.
    with EventStore(postgres_url) as store:
        with pytest.raises(StoreError) as caught:
            store.backend.add([EventRow.of("pith:a\u0000b", history.record_created)], [])
        assert caught.value.code == codes.E_STORE
        assert "NUL" in caught.value.message
        assert store.subjects() == []


def test_a_transaction_commits_many_calls_at_once_or_nothing(postgres_url: str, history: History) -> None:
    """``PostgresBackend.transaction``: the batch path (one commit for many bundles) on PostgreSQL."""
    first, second, third = (history.event("correction", target=f"t{i}", payload={"i": i}) for i in range(3))
    with EventStore(postgres_url) as store, EventStore(postgres_url) as other:
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        with backend.transaction():
            backend.add([EventRow.of(history.subject, history.record_created)], [])
            with backend.transaction():  # nested: joins the outer one
                backend.add([EventRow.of(history.subject, first)], [])
            assert len(backend.event_rows(history.subject)) == 2  # its own writes, seen inside
            assert other.backend.event_rows(history.subject) == []  # nobody else's yet
            with pytest.raises(StoreError) as caught:  # another writer waits for the lock, then gives up
                EventStore(postgres_url, busy_timeout=0.3).backend.add(
                    [EventRow.of(history.subject, third)], []
                )
            assert caught.value.code == codes.E_STORE_BUSY
        assert len(other.backend.event_rows(history.subject)) == 2
        with pytest.raises(RuntimeError), backend.transaction():
            backend.add([EventRow.of(history.subject, second)], [])
            raise RuntimeError("a bundle fails halfway")
        assert len(other.backend.event_rows(history.subject)) == 2
        assert store.append(second).status == codes.STORE_INVALID  # the store carries on


def test_store_check_finds_what_was_planted_through_sql(postgres_url: str, history: History) -> None:
    """Issue 15's fsck on PostgreSQL: a cache row INSERTed behind the store's back is a mismatch."""
    with EventStore(postgres_url) as store:
        store.import_bundle(BUNDLE)
        assert store.fsck().ok
    raw(postgres_url, "INSERT INTO signature_cache VALUES ('\\x00', '\\x00', '\\x00', true)")
    with EventStore(postgres_url) as store:
        report = store.fsck()
    assert [m.table for m in report.mismatches] == ["signature_cache"]


UNIT_WRITER = """
import json, os, sys, time
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

db, go, signed_at = sys.argv[1], sys.argv[2], sys.argv[3]
history = History.new(TestKey("registry", key_id="test-registry", signer_id="registry.example"))
event = history.event("correction", payload={"n": 1})
copy = {**event, "signature": {**event["signature"], "signed_at": signed_at}}
while not os.path.exists(go):
    time.sleep(0.005)
with EventStore(db) as store:
    print(json.dumps(store.append(copy, trusted_keys=history.trusted()).to_dict()), flush=True)
"""


def test_two_processes_with_two_valid_copies_of_a_unit_store_one(postgres_url: str, tmp_path: Path) -> None:
    """A unit is stored once (issue 15) across connections: the check and the insert hold the write lock."""
    history = History.new(TestKey("registry", key_id="test-registry", signer_id="registry.example"))
    with EventStore(postgres_url) as store:
        store.append(history.record_created, trusted_keys=history.trusted())
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", UNIT_WRITER, postgres_url, str(go), f"2026-06-0{n}T00:00:00Z"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    go.touch()
    results = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["status"] for r in results) == [codes.STORE_DUPLICATE, codes.STORE_NEW]
    assert len({r["digest"] for r in results}) == 2  # two different copies were offered
    with EventStore(postgres_url) as store:
        stored = [e for e in store.events(history.subject) if e.unit_id == results[0]["unit_id"]]
    assert len(stored) == 1
