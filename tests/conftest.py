"""Fixtures shared by the core test suite; plain helpers live in :mod:`tests.helpers`."""

from __future__ import annotations

from collections.abc import Callable
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
