"""The PostgreSQL schema of a pith-graph store and its migrations (docs/store.md, "PostgreSQL").

The same tables as the SQLite schema (:mod:`pith_graph.store._schema`, version 3),
with three differences that keep results byte for byte equal:

* text columns that are sorted or compared (subject, unit id, digest, kind, rule,
  ring) are ``COLLATE "C"``: byte order of UTF-8, as SQLite's BINARY collation,
  whatever the database's default collation;
* the event fields copied out beside the body (``event_type`` ... ``created_at``)
  are ``bytea`` holding UTF-8: an event may carry U+0000 in them, which a
  PostgreSQL ``text`` value cannot hold;
* every table, the caches included, refuses UPDATE, DELETE and TRUNCATE by
  trigger from the first version on (issue 15: caches are append-only too).

Statements run in order inside one transaction of
:class:`pith_graph.store._postgres.PostgresBackend`, in the first schema of the
connection's ``search_path`` (``public`` unless the URL says otherwise).
"""

from __future__ import annotations

from typing import Final

__all__ = ["APPLICATION", "APPEND_ONLY_TABLES", "MIGRATIONS", "SCHEMA_V1", "SCHEMA_VERSION"]

#: Version of the PostgreSQL schema this module writes (``pith_schema.version``).
SCHEMA_VERSION: Final = 1
#: ``pith_schema.application`` of a pith-graph store: what tells it from a foreign database.
APPLICATION: Final = "pith-graph"
#: Every table of the schema: each refuses UPDATE, DELETE and TRUNCATE.
APPEND_ONLY_TABLES: Final = (
    "pith_schema",
    "events",
    "items",
    "event_facts",
    "key_verdicts",
    "key_rings",
    "signature_cache",
)


def _refusing(table: str) -> tuple[str, str]:
    """The two triggers that make ``table`` append-only (row-level UPDATE/DELETE; TRUNCATE per statement)."""
    return (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION pith_append_only()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION pith_append_only()",
    )


SCHEMA_V1: Final = (
    """CREATE FUNCTION pith_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END
    $$""",
    f"""CREATE TABLE pith_schema (
        application text NOT NULL CHECK (application = '{APPLICATION}'),
        version integer NOT NULL
    )""",
    f"INSERT INTO pith_schema (application, version) VALUES ('{APPLICATION}', 1)",
    # Every copy of every event, as canonical bytes. seq only records arrival order,
    # which is also commit order: writers hold the store's write lock (docs/store.md).
    """CREATE TABLE events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subject text COLLATE "C" NOT NULL,
        unit_id text COLLATE "C" NOT NULL,
        digest text COLLATE "C" NOT NULL,
        body bytea NOT NULL,
        event_type bytea,
        target bytea,
        signer_id bytea,
        prev_event bytea,
        created_at bytea,
        -- Idempotence: the same copy (same bytes) under one subject is one row.
        CONSTRAINT events_by_subject UNIQUE (subject, unit_id, digest)
    ) WITH (toast_tuple_target = 8160)""",
    # A replay reads the signer and payload fragments as slices of the body: kept
    # uncompressed, and in the row up to a page, a slice costs a copy, not a
    # decompression of the whole body (ten times faster for 4 KB events).
    "ALTER TABLE events ALTER COLUMN body SET STORAGE EXTERNAL",
    "CREATE INDEX events_by_stream ON events (subject, target, signer_id)",
    "CREATE INDEX events_by_prev ON events (prev_event)",
    # Bundle-level data (record, aliases, public keys as data, hints, proofs).
    """CREATE TABLE items (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subject text COLLATE "C" NOT NULL,
        kind text COLLATE "C" NOT NULL,
        digest text COLLATE "C" NOT NULL,
        body bytea NOT NULL,
        CONSTRAINT items_by_subject UNIQUE (subject, kind, digest)
    )""",
    # The intrinsic stage-1 verdict and facts of every stored copy (warm replay),
    # as in SQLite schema v2: a function of events.body and the subject alone.
    """CREATE TABLE event_facts (
        seq bigint NOT NULL REFERENCES events (seq),
        rule text COLLATE "C" NOT NULL,
        reason text COLLATE "C",
        facts bytea,
        signer_at integer,
        signer_len integer,
        signer_json bytea,
        payload_at integer,
        payload_len integer,
        payload_json bytea,
        PRIMARY KEY (seq, rule)
    )""",
    # The final stage-1 verdict of a copy under one set of trusted keys (ring).
    """CREATE TABLE key_verdicts (
        ring text COLLATE "C" NOT NULL,
        seq bigint NOT NULL REFERENCES events (seq),
        reason text COLLATE "C",
        PRIMARY KEY (ring, seq)
    )""",
    # The trusted keys behind the key verdicts kept under each ring (SQLite schema v3):
    # a verdict is read only under a recorded ring, and `store check` re-derives it.
    """CREATE TABLE key_rings (
        ring text COLLATE "C" PRIMARY KEY,
        -- canonical JSON of KeyRing.describe(): the keys a verdict under this ring read.
        entries bytea NOT NULL
    )""",
    # Verdicts of the pinned Ed25519 rule: content-addressed, so safe to reuse.
    """CREATE TABLE signature_cache (
        public_key bytea NOT NULL,
        signature bytea NOT NULL,
        message bytea NOT NULL,
        valid boolean NOT NULL,
        PRIMARY KEY (message, public_key, signature)
    )""",
    *(statement for table in APPEND_ONLY_TABLES for statement in _refusing(table)),
)

#: Migrations from a schema version to the next, each ending with the INSERT of
#: the version it reaches (pith_schema refuses UPDATE: the version is MAX(version)).
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {}
