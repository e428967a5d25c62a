"""The store contract on every backend, and what only a shared store can show (issue 20).

``StoreContract`` (tests/store/test_store.py) runs here on PostgreSQL; ``SharedStoreContract``
is the part that needs a store other processes and other connections reach: crash
safety (a writer killed with SIGKILL), concurrent writers in several processes,
append-only enforcement by the database itself (its own driver, not pith_graph),
sync in both directions between SQLite and PostgreSQL, and the command line on
``--db``. It runs on an SQLite file and on a PostgreSQL store (a fresh schema in
the test session's database, see conftest.py).

No timing assertions: children are synchronised through a start file and the
parent only waits (with generous timeouts) for what they print.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.errors import StoreError
from pith_graph.keys import KeyRing
from pith_graph.rebuild import rebuild_state
from pith_graph.store import EventStore
from pith_graph.store import _import as store_import
from pith_graph.testing import History, TestKey
from tests.helpers import FIXTURES, seed
from tests.store.test_store import StoreContract

BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
SUBJECT = "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"
TIMEOUT = 120

#: Every table of a store, with a column an UPDATE may name: each must refuse
#: UPDATE and DELETE by itself (the set is checked against the database's own list).
TABLES = {
    "pith_schema": "version",
    "events": "body",
    "items": "body",
    "event_facts": "reason",
    "key_verdicts": "reason",
    "key_rings": "entries",
    "signature_cache": "valid",
}

# A writer: waits for the start file, appends events, prints each returned append as a JSON line.
WRITER = textwrap.dedent(
    """
    import itertools, json, os, sys, time
    from pith_graph.store import EventStore
    from pith_graph.testing import History, TestKey

    db, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    history = History.new(TestKey("registry", key_id="test-registry", signer_id="registry.example"))
    writer = TestKey(name)
    while not os.path.exists(go):
        time.sleep(0.005)
    with EventStore(db) as store:
        # Every writer also appends the shared record_created: duplicates across processes.
        for raw in itertools.chain([history.record_created], (
            history.event("mirror_hint", key=writer, payload={"writer": name, "i": i})
            for i in (range(count) if count >= 0 else itertools.count())
        )):
            result = store.append(raw)
            print(json.dumps(result.to_dict()), flush=True)
    """
)


def start_writer(db: str, name: str, count: int, go: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, db, name, str(count), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_ids(db: str, subject: str) -> set[str]:
    with EventStore(db) as store:
        return {event.unit_id for event in store.events(subject)}


def cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pith_graph", *argv], capture_output=True, timeout=TIMEOUT)


class Raw:
    """A connection of the database's own driver (what another program or a forger uses), no pith_graph code."""

    def __init__(
        self, execute: Callable[[str], list[Any]], close: Callable[[], None], tables: list[str]
    ) -> None:
        self.execute = execute
        self.close = close
        self.tables = tables


def sqlite_raw(path: str) -> Raw:
    conn = sqlite3.connect(path, isolation_level=None)

    def execute(statement: str) -> list[Any]:
        return conn.execute(statement).fetchall()

    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return Raw(execute, conn.close, tables)


def postgres_raw(url: str) -> Raw:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)

    def execute(statement: str) -> list[Any]:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []

    query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    return Raw(execute, conn.close, [row[0] for row in conn.execute(query)])


class SharedStoreContract:
    """Behaviour of a store that other processes share. Subclasses provide ``db`` (what ``--db`` takes),
    ``other_db`` (a store of the other backend), ``raw`` (its own driver) and ``refusals`` (its error types)."""

    refusals: tuple[type[BaseException], ...] = ()
    #: Tables known to accept UPDATE and DELETE still (each a recorded defect, see the subclass).
    gaps: frozenset[str] = frozenset()
    #: Statements besides UPDATE and DELETE that would empty a table.
    emptying: tuple[str, ...] = ()

    @pytest.fixture
    def db(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def other_db(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def raw(self, db: str) -> Raw:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- batches: a bundle is all or nothing inside its batch (a savepoint) --------------------

    def test_an_unreadable_late_chunk_undoes_its_bundle_only(
        self, db: str, history: History, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(store_import, "IMPORT_CHUNK", 2)
        monkeypatch.setattr(store_import, "SPLIT_MIN_BYTES", 0)
        trusted = history.trusted()
        events = [history.event("mirror_hint", payload={"i": i}) for i in range(6)]
        text = json.dumps(history.bundle(events), separators=(",", ":"))
        last = events[-1]["event_id"]
        bad = text.replace(f'"event_id":"{last}"', f'"event_id":"{last}","event_id":"{last}"')
        good = History.new(
            TestKey("registry", key_id="test-registry", signer_id="registry.example"),
            arxiv_id="2601.99999",
            title="before",
        )
        before = json.dumps(good.bundle([good.event("mirror_hint", payload={"n": 1})])).encode()
        with EventStore(db) as store:
            found = list(
                store.import_bundles(
                    [before, bad.encode(), text.encode()],
                    trusted_keys=trusted,
                    batch_size=10,
                    keep_going=True,
                )
            )
            assert [type(o).__name__ for o in found] == ["ImportResult", "InputError", "ImportResult"]
            # The bad bundle's first chunks were written, then undone; the same subject's good
            # bundle after it stores every event as new.
            assert found[2].count(codes.STORE_NEW) == len(events) + 1  # type: ignore[union-attr]
            assert found[2].items_added > 0  # type: ignore[union-attr]
            assert sorted(store.subjects()) == sorted([good.subject, history.subject])

    # --- append-only, enforced by the database -------------------------------------------

    def test_every_table_refuses_update_and_delete(self, db: str, history: History) -> None:
        trusted = history.trusted()
        with EventStore(db) as store:
            store.import_bundle(
                history.bundle([history.event("correction", payload={"n": 1})]), trusted_keys=trusted
            )
            store.state(
                history.subject, trusted_keys=[*trusted, TestKey("other").entry()]
            )  # fills every cache
        raw = self.raw(db)
        try:
            assert sorted(raw.tables) == sorted(TABLES)
            before = {table: raw.execute(f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}
            assert all(before.values()), before  # a trigger only fires on a row: every table has some
            accepted = set()
            for table, column in TABLES.items():
                for forged in (
                    f"UPDATE {table} SET {column} = {column}",
                    f"DELETE FROM {table}",
                    *(s.format(table=table) for s in self.emptying),
                ):
                    try:
                        raw.execute(forged)
                    except self.refusals as exc:
                        assert re.search("append-only|is fixed", str(exc)), exc
                    else:
                        accepted.add(table)
            assert accepted == self.gaps
            after = {table: raw.execute(f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}
            assert {t: n for t, n in after.items() if t not in self.gaps} == {
                t: n for t, n in before.items() if t not in self.gaps
            }
        finally:
            raw.close()
        with EventStore(db) as store:
            store.check()
            assert store.state(history.subject, trusted_keys=trusted).valid_event_count == 2

    # --- processes ---------------------------------------------------------------------

    @pytest.mark.slow
    def test_concurrent_writers_lose_nothing(self, db: str, tmp_path: Path) -> None:
        go = tmp_path / "go"
        EventStore(db).close()  # created before the writers race to open it
        per_writer = 25
        writers = [start_writer(db, f"writer{n}", per_writer, go) for n in range(3)]
        go.touch()
        printed: list[dict[str, str]] = []
        for writer in writers:
            out, err = writer.communicate(timeout=TIMEOUT)
            assert writer.returncode == 0, err
            printed.extend(json.loads(line) for line in out.splitlines())
        assert len(printed) == 3 * (per_writer + 1)
        subject = printed[0]["subject"]
        created = [p for p in printed if p["unit_id"] == printed[0]["unit_id"]]
        # The shared record_created: exactly one process stored it, the others saw a duplicate.
        assert sorted(p["status"] for p in created) == [codes.STORE_DUPLICATE] * 2 + [codes.STORE_INVALID]
        assert stored_ids(db, subject) == {p["unit_id"] for p in printed}
        assert len({p["unit_id"] for p in printed}) == 3 * per_writer + 1
        raw = self.raw(db)
        try:
            assert raw.execute("SELECT count(*) FROM events")[0][0] == 3 * per_writer + 1
        finally:
            raw.close()

    @pytest.mark.slow
    def test_sigkill_mid_loop_loses_no_returned_append(self, db: str, tmp_path: Path) -> None:
        go = tmp_path / "go"
        go.touch()
        writer = start_writer(db, "doomed", -1, go)  # appends until killed
        assert writer.stdout is not None
        returned: list[dict[str, str]] = []
        try:
            for line in writer.stdout:
                returned.append(json.loads(line))
                if len(returned) == 30:
                    writer.send_signal(signal.SIGKILL)
                    break
            # Lines printed before the kill are still in the pipe: each is a returned append.
            returned.extend(json.loads(line) for line in writer.stdout if line.strip())
        finally:
            writer.kill()
            writer.wait(timeout=TIMEOUT)
        assert writer.returncode == -signal.SIGKILL
        with EventStore(db) as store:
            store.check()
            subject = returned[0]["subject"]
            stored = {event.unit_id for event in store.events(subject)}
            # And the store still takes writes (no lock left behind by the dead writer).
            assert store.append(History.new(TestKey("after")).record_created).status == codes.STORE_INVALID
        assert {r["unit_id"] for r in returned} <= stored
        assert len(returned) >= 30

    @pytest.mark.slow
    def test_a_store_reopens_after_its_writers_exit(self, db: str, tmp_path: Path) -> None:
        go = tmp_path / "go"
        go.touch()
        writer = start_writer(db, "solo", 3, go)
        out, err = writer.communicate(timeout=TIMEOUT)
        assert writer.returncode == 0, err
        history = History.new(TestKey("registry", key_id="test-registry", signer_id="registry.example"))
        ids = stored_ids(db, history.subject)
        assert history.record_created["event_id"] in ids
        assert len(ids) == 4
        assert [json.loads(line)["status"] for line in out.splitlines()][1:] == [codes.STORE_INVALID] * 3

    # --- between backends ----------------------------------------------------------------

    def test_sync_both_ways_with_the_other_backend(
        self, db: str, other_db: str, history: History, alice: TestKey
    ) -> None:
        trusted = [*history.trusted(), alice.entry()]
        a1 = history.event("graph_snapshot", key=alice, payload={"n": 1})
        a2 = history.event("graph_snapshot", key=alice, payload={"n": 2}, prev_event=a1["event_id"])
        fork = history.event("graph_snapshot", key=alice, payload={"n": 3}, prev_event=a1["event_id"])
        expected = rebuild_state(history.bundle([a1, a2, fork]), trusted_keys=trusted).to_json()
        ring = [*trusted, *KeyRing.registry().to_entries()]
        with EventStore(db) as here, EventStore(other_db) as there:
            here.import_bundle(history.bundle([a1, a2]))
            there.import_bundle(history.bundle([fork]))
            there.import_bundle(BUNDLE)
            assert here.sync_from(there, trusted_keys=ring).events_added > 0
            assert there.sync_from(here, trusted_keys=ring).events_added > 0
            assert here.sync_from(there, trusted_keys=ring).events_added == 0
            assert there.sync_from(here, trusted_keys=ring).events_added == 0
            for store in (here, there):
                assert store.subjects() == sorted([history.subject, SUBJECT])
                assert store.state(history.subject, trusted_keys=trusted).to_json() == expected
                assert (
                    store.state(SUBJECT).state_sha256 == seed("bundle-AG3PAJ22.json")["state"]["state_sha256"]
                )
            assert here.export_bundle(
                history.subject, trusted_keys=trusted, built_at="t"
            ) == there.export_bundle(history.subject, trusted_keys=trusted, built_at="t")
            assert [(e.unit_id, e.digest, e.body, e.reason) for e in here.events(history.subject)] == [
                (e.unit_id, e.digest, e.body, e.reason) for e in there.events(history.subject)
            ]

    # --- the command line ----------------------------------------------------------------

    @pytest.mark.slow
    def test_cli_import_state_and_sync_on_db(self, db: str, other_db: str) -> None:
        registry_state = BUNDLE.read_bytes()
        start = registry_state.index(b'"state":{') + len(b'"state":')
        embedded = registry_state[start : registry_state.index(b',"bundle_signature":')]
        assert cli("store", "import", "--db", db, str(BUNDLE)).returncode == 0
        shown = cli("store", "state", "--db", db, SUBJECT)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == embedded + b"\n"
        synced = cli("store", "sync", "--db", other_db, db)
        assert synced.returncode == 0, synced.stderr
        assert ": 2 new event copies, 9 new items" in synced.stdout.decode()
        assert cli("store", "state", "--db", other_db, SUBJECT).stdout == embedded + b"\n"

    # --- the change signal ---------------------------------------------------------------

    def test_store_sequence_says_what_another_connection_committed(self, db: str, history: History) -> None:
        with EventStore(db) as watcher, EventStore(db) as writer:
            assert watcher.backend.store_sequence() == (0, 0)
            writer.import_bundle(BUNDLE)
            seen = watcher.backend.store_sequence()
            assert seen[0] >= 2 and seen[1] >= 9
            changes = watcher.backend.changes(0, 0)
            assert changes.events == [(SUBJECT, seen[0])] and changes.items == [(SUBJECT, seen[1])]
            assert [subject for subject, _ in changes.records] == [SUBJECT]
            writer.append(history.record_created)
            later = watcher.backend.store_sequence()
            assert later[0] > seen[0] and later[1] == seen[1]
            assert watcher.backend.changes(*seen).events == [(history.subject, later[0])]
            assert watcher.backend.changes(*later) == ([], [], [])

    def test_copies_come_in_unit_order_whatever_the_arrival_order(self, db: str, history: History) -> None:
        # Backend.copies promises (unit_id, digest) order, which the replay relies on; SQLite
        # reads the rows in seq order and sorts them (tests for that sort: arrival != unit order).
        writer = TestKey("order-writer")
        with EventStore(db) as store:
            store.append(history.record_created)
            for i in range(16):
                store.append(history.event("mirror_hint", key=writer, payload={"i": i}))
            for with_body in (False, True):
                rows, _ = store.backend.copies(history.subject, with_body=with_body)
                assert len(rows) == 17
                assert [(r.unit_id, r.digest) for r in rows] == sorted((r.unit_id, r.digest) for r in rows)
                seqs = [r.seq for r in rows]
                assert seqs != sorted(seqs), "arrival order happened to be unit order: the test shows nothing"
                if with_body:
                    assert all(r.row is not None and r.row.unit_id == r.unit_id for r in rows)

    def test_a_missing_store_is_not_created_by_a_reader(self, db: str) -> None:
        with pytest.raises(StoreError) as caught:
            EventStore(db, create=False)
        assert caught.value.code == codes.E_IO
        EventStore(db).close()
        EventStore(db, create=False).close()


class TestSQLiteSharedStore(SharedStoreContract):
    """The shared-store contract on an SQLite file."""

    refusals = (sqlite3.IntegrityError,)

    @pytest.fixture
    def db(self, tmp_path: Path) -> str:
        return str(tmp_path / "store.sqlite")

    @pytest.fixture
    def other_db(self, postgres_url: str) -> str:
        return postgres_url

    def raw(self, db: str) -> Raw:
        return sqlite_raw(db)


class TestPostgresSharedStore(SharedStoreContract):
    """The shared-store contract on PostgreSQL."""

    emptying = ("TRUNCATE {table} CASCADE",)

    @property
    def refusals(self) -> tuple[type[BaseException], ...]:  # type: ignore[override]
        import psycopg

        return (psycopg.Error,)

    @pytest.fixture
    def db(self, postgres_url: str) -> str:
        return postgres_url

    @pytest.fixture
    def other_db(self, tmp_path: Path) -> str:
        return str(tmp_path / "other.sqlite")

    def raw(self, db: str) -> Raw:
        return postgres_raw(db)


class TestPostgresStore(StoreContract):
    """The store contract (tests/store/test_store.py) on PostgreSQL."""

    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[EventStore]:
        with EventStore(postgres_url) as store:
            yield store
