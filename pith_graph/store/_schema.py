"""The SQLite schema of a pith-graph store and its migrations (docs/store.md).

Statements are executed in order by :class:`pith_graph.store._sqlite.SQLiteBackend`:
an empty database gets version 1, then every migration up to :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_V1", "SCHEMA_VERSION", "TRIGGERS"]

#: Version of the SQLite schema this module writes (``pith_schema.version``).
SCHEMA_VERSION: Final = 3
#: ``PRAGMA application_id`` of a pith-graph store ("PITH").
APPLICATION_ID: Final = 0x50495448

SCHEMA_V1: Final = (
    "CREATE TABLE pith_schema (version INTEGER NOT NULL)",
    "INSERT INTO pith_schema (version) VALUES (1)",
    # Every copy of every event, as canonical bytes. seq only records arrival order.
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
    # Idempotence: the same copy (same bytes) under one subject is one row.
    "CREATE UNIQUE INDEX events_by_subject ON events (subject, unit_id, digest)",
    "CREATE INDEX events_by_stream ON events (subject, target, signer_id)",
    "CREATE INDEX events_by_prev ON events (prev_event)",
    # Bundle-level data (record, aliases, public keys as data, hints, proofs).
    """CREATE TABLE items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX items_by_subject ON items (subject, kind, digest)",
    # Append-only, enforced by the database, not only by this module.
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER items_no_update BEFORE UPDATE ON items BEGIN SELECT RAISE(ABORT, 'items are append-only'); END",
    "CREATE TRIGGER items_no_delete BEFORE DELETE ON items BEGIN SELECT RAISE(ABORT, 'items are append-only'); END",
    "CREATE TRIGGER schema_no_update BEFORE UPDATE ON pith_schema BEGIN SELECT RAISE(ABORT, 'schema version is fixed'); END",
    # Verdicts of the pinned Ed25519 rule: content-addressed, so safe to reuse.
    """CREATE TABLE signature_cache (
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL,
        message BLOB NOT NULL,
        valid INTEGER NOT NULL,
        -- message first: a replay prefetches every verdict about its events' digests at once.
        PRIMARY KEY (message, public_key, signature)
    ) WITHOUT ROWID""",
    f"PRAGMA application_id = {APPLICATION_ID}",
)
#: Migrations from a schema version to the next. pith_schema refuses UPDATE, so a
#: migration INSERTs the new version and the store's version is MAX(version).
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    # v2: the intrinsic stage-1 verdict and facts of every stored copy (warm replay).
    # Derived from events.body and the subject alone; rows stored under v1 get
    # theirs on their first replay.
    1: (
        """CREATE TABLE event_facts (
            seq INTEGER NOT NULL REFERENCES events (seq),
            -- FACTS_RULE of the code that computed the row: another rule never reads it.
            rule TEXT NOT NULL,
            -- the first failing intrinsic check, NULL when all passed.
            reason TEXT,
            -- msgpack EventFacts, NULL when the copy is malformed.
            facts BLOB,
            -- the canonical signer and payload fragments: a slice of events.body
            -- (offset, length) or, when not found there, the bytes themselves.
            signer_at INTEGER,
            signer_len INTEGER,
            signer_json BLOB,
            payload_at INTEGER,
            payload_len INTEGER,
            payload_json BLOB,
            PRIMARY KEY (seq, rule)
        ) WITHOUT ROWID""",
        "CREATE TRIGGER event_facts_no_update BEFORE UPDATE ON event_facts"
        " BEGIN SELECT RAISE(ABORT, 'event facts are append-only'); END",
        "CREATE TRIGGER event_facts_no_delete BEFORE DELETE ON event_facts"
        " BEGIN SELECT RAISE(ABORT, 'event facts are append-only'); END",
        "CREATE TRIGGER schema_no_delete BEFORE DELETE ON pith_schema"
        " BEGIN SELECT RAISE(ABORT, 'schema versions are append-only'); END",
        # The final stage-1 verdict of an intrinsically valid copy under one set of
        # trusted keys (ring: _ring_id), so a warm replay under the same keys skips
        # the key checks and the signature cache entirely.
        """CREATE TABLE key_verdicts (
            ring TEXT NOT NULL,
            seq INTEGER NOT NULL REFERENCES events (seq),
            -- the first failing key check, NULL when every stage-1 check passed.
            reason TEXT,
            PRIMARY KEY (ring, seq)
        ) WITHOUT ROWID""",
        "CREATE TRIGGER key_verdicts_no_update BEFORE UPDATE ON key_verdicts"
        " BEGIN SELECT RAISE(ABORT, 'key verdicts are append-only'); END",
        "CREATE TRIGGER key_verdicts_no_delete BEFORE DELETE ON key_verdicts"
        " BEGIN SELECT RAISE(ABORT, 'key verdicts are append-only'); END",
        "INSERT INTO pith_schema (version) VALUES (2)",
    ),
    # v3 (issue 15): every table refuses UPDATE and DELETE, caches included, and the
    # trusted keys behind each kept key verdict are recorded, so `store check` can
    # re-derive every cached verdict. A replay reads key verdicts only under a
    # recorded ring; verdicts kept under v2 are under rule ids this code never reads.
    2: (
        "CREATE TRIGGER signature_cache_no_update BEFORE UPDATE ON signature_cache"
        " BEGIN SELECT RAISE(ABORT, 'the signature cache is append-only'); END",
        "CREATE TRIGGER signature_cache_no_delete BEFORE DELETE ON signature_cache"
        " BEGIN SELECT RAISE(ABORT, 'the signature cache is append-only'); END",
        """CREATE TABLE key_rings (
            ring TEXT PRIMARY KEY,
            -- canonical JSON of KeyRing.describe(): the keys a verdict under this ring read.
            entries BLOB NOT NULL
        ) WITHOUT ROWID""",
        "CREATE TRIGGER key_rings_no_update BEFORE UPDATE ON key_rings"
        " BEGIN SELECT RAISE(ABORT, 'key rings are append-only'); END",
        "CREATE TRIGGER key_rings_no_delete BEFORE DELETE ON key_rings"
        " BEGIN SELECT RAISE(ABORT, 'key rings are append-only'); END",
        "INSERT INTO pith_schema (version) VALUES (3)",
    ),
}
#: Names of the triggers a pith-graph store carries (a sync source with any other trigger is refused).
TRIGGERS: Final = frozenset(
    statement.split()[2]
    for statement in (*SCHEMA_V1, *(s for steps in MIGRATIONS.values() for s in steps))
    if statement.startswith("CREATE TRIGGER")
)
