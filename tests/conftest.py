"""Shared helpers for the core test suite (issue 2).

Expected values are always computed here with the standard library (``json``,
``hashlib``, ``base64``) or ``cryptography`` directly, never with the code under
test. Signed events come from :mod:`pith_graph.testing` (real Ed25519 keys).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pith_graph.rebuild import rebuild_state
from pith_graph.state import State
from pith_graph.testing import History, TestKey

FIXTURES = Path(__file__).parent / "fixtures"

#: The registry key, as FORMAT-FACTS states it (not read from pith_graph).
REGISTRY_KEY_ID = "pith-v1-2026-05"
REGISTRY_KEY_HEX = "b2d552b68890857171a78b36a5dccf368a953413288c353f7c9d9d6f94b709b3"
REGISTRY_FINGERPRINT = "8d4b5ee74e4693bcd1df2446408b0d54"

#: The test registry key: signs record_created events and receipts in generated histories.
REGISTRY_TEST_KEY = TestKey("registry", key_id="test-registry", signer_id="registry.example")


def seed_bytes(name: str) -> bytes:
    """The registry document ``name`` exactly as served."""
    return (FIXTURES / name).read_bytes()


def seed(name: str) -> Any:
    """The registry document ``name``, parsed with the standard library."""
    return json.loads(seed_bytes(name))


def ref_canonical(value: Any) -> bytes:
    """The registry's canonical rule, spelled out with the standard library (FORMAT-FACTS)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def ref_sha256(value: Any) -> str:
    """sha256 hex of the reference canonical bytes of ``value``."""
    return hashlib.sha256(ref_canonical(value)).hexdigest()


def ref_state_sha256(state: Mapping[str, Any]) -> str:
    """state_sha256 recomputed with the reference rule."""
    return ref_sha256({k: v for k, v in state.items() if k != "state_sha256"})


def ref_content_sha256(event: Mapping[str, Any]) -> str:
    """An event's content hash recomputed with the reference rule."""
    return ref_sha256(
        {k: v for k, v in event.items() if k not in ("event_id", "content_sha256", "signature")}
    )


def bundle_of(history: History, events: Iterable[Any], *, include_record: bool = True) -> dict[str, Any]:
    """A bundle of ``history`` holding ``events`` as given (non-objects included), record_created first."""
    bundle = history.bundle([], include_record=include_record)
    # History.bundle() copies events with dict(); hostile non-object events go in as they are.
    bundle["events"].extend(copy.deepcopy(list(events)))
    return bundle


def rebuild(history: History, events: Iterable[Any], **options: Any) -> State:
    """Rebuild a bundle of ``history`` holding ``events`` (record_created first), trusting its keys."""
    include_record = options.pop("include_record", True)
    trusted = options.pop("trusted_keys", history.trusted())
    return rebuild_state(
        bundle_of(history, events, include_record=include_record), trusted_keys=trusted, **options
    )


def invalid(state: State) -> dict[str, str]:
    """``invalid_events`` of a state as {event_id: reason}."""
    return {entry["event_id"]: entry["reason"] for entry in state.to_dict()["invalid_events"]}


def current_ids(state: State, collection: str) -> list[str]:
    """The event ids in one ``current`` collection."""
    return [entry["event_id"] for entry in state.to_dict()["current"][collection]]


@pytest.fixture(scope="session")
def registry() -> TestKey:
    """The test registry key (signs record_created)."""
    return REGISTRY_TEST_KEY


@pytest.fixture(scope="session")
def alice() -> TestKey:
    """A second signer."""
    return TestKey("alice")


@pytest.fixture(scope="session")
def bob() -> TestKey:
    """A third signer."""
    return TestKey("bob")


@pytest.fixture
def history(registry: TestKey) -> History:
    """A fresh history (canonical record + valid record_created by the registry key)."""
    return History.new(registry)


@pytest.fixture
def new_history(registry: TestKey) -> Callable[..., History]:
    """A factory for more histories (other arXiv ids)."""

    def make(**options: Any) -> History:
        return History.new(registry, **options)

    return make


# --- PostgreSQL (issue 20) ------------------------------------------------------------
#
# The server comes from PITH_GRAPH_TEST_POSTGRES; each test session creates a fresh
# database of its own and drops it at the end (also when tests fail), and each test
# gets an empty schema in it (a store per test, cheaper than a database per test).
# Without a server the PostgreSQL tests are skipped with the reason, unless
# PITH_GRAPH_REQUIRE_POSTGRES=1 (CI: .ci/run), where they fail instead.

POSTGRES_ENV = "PITH_GRAPH_TEST_POSTGRES"
REQUIRE_POSTGRES_ENV = "PITH_GRAPH_REQUIRE_POSTGRES"
DEFAULT_TEST_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(url: str, name: str, *, search_path: str | None = None) -> str:
    """``url`` naming database ``name`` (and, if given, a search_path), its other parts kept."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    if search_path is not None:
        query = [(k, v) for k, v in query if k != "options"] + [("options", f"-csearch_path={search_path}")]
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}", query=urllib.parse.urlencode(query)))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database created for this test session on the test server (dropped afterwards)."""
    server = os.environ.get(POSTGRES_ENV) or DEFAULT_TEST_POSTGRES
    try:
        import psycopg

        admin = psycopg.connect(server, autocommit=True, connect_timeout=5)
    except Exception as exc:  # no driver, or no server answering: say which
        reason = f"no PostgreSQL server for the tests at {server} ({type(exc).__name__}: {exc})".strip()
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_POSTGRES_ENV}=1 requires one", pytrace=False)
        pytest.skip(f"{reason}; set {POSTGRES_ENV} to run these tests")
    name = f"pith_graph_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        try:
            # A collation other than byte order (ICU English, where "a" < "B" < "b"), so
            # that the store's COLLATE "C" columns are what keeps results equal to SQLite's.
            admin.execute(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            )
        except psycopg.Error:  # a server built without ICU
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(server, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The URL of an empty store of its own on the test server: a fresh schema in the session's database."""
    import psycopg

    schema = f"store_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return _with_database(
        postgres_database, urllib.parse.urlsplit(postgres_database).path[1:], search_path=schema
    )
