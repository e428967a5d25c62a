"""Documents cached per subject and version, computed once however many requests ask.

A subject's documents (state, bundle, event list, page) are pure functions of
what is stored for it (its version, see :mod:`._storeview`) and of the server's
fixed configuration (trusted keys, base URL, mirror key). So an entry is valid
exactly while the subject's version is unchanged: no expiry, no explicit
invalidation. Concurrent requests for a missing entry share one computation
(single flight), which runs off the event loop; the table is bounded (least
recently used entries are dropped).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, TypeVar, cast

__all__ = ["DEFAULT_CAPACITY", "VersionedCache"]

_T = TypeVar("_T")
#: Entries kept (all documents of all subjects together).
DEFAULT_CAPACITY: Final = 4096


class VersionedCache:
    """``key -> (version, value)``, LRU-bounded, with single-flight computation. Use from one event loop."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self._inflight: dict[tuple[Hashable, Any], asyncio.Future[Any]] = {}
        self.hits = 0
        self.misses = 0

    def peek(self, key: Hashable, version: Any) -> Any:
        """The cached value for ``key`` at exactly ``version``, or None (no computation)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    async def get(self, key: Hashable, version: Any, compute: Callable[[], Awaitable[_T]]) -> _T:
        """The value for ``key`` at ``version``: cached, being computed, or computed now by ``compute``."""
        found = self.peek(key, version)
        if found is not None:
            return cast(_T, found)
        flight = self._inflight.get((key, version))
        if flight is not None:
            return cast(_T, await asyncio.shield(flight))
        self.misses += 1
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._inflight[(key, version)] = future
        try:
            value = await compute()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # marked retrieved: waiters see it, nobody else must
            raise
        finally:
            del self._inflight[(key, version)]
        future.set_result(value)
        self._store(key, version, value)
        return value

    def _store(self, key: Hashable, version: Any, value: Any) -> None:
        old = self._entries.get(key)
        # Versions only grow; a slow computation of an older version never replaces a newer one.
        if old is not None and _newer(old[0], version):
            return
        self._entries[key] = (version, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _newer(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:
        return False
