"""Fixtures shared by the core test suite; plain helpers live in :mod:`tests.helpers`."""

from __future__ import annotations

import os
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pith_graph.testing import History, TestKey
from tests.helpers import REGISTRY_TEST_KEY


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
