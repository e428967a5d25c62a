"""The bounds of the mirror client and of the change feed, importable without the web stack.

The command line registers its options (and their defaults) from here, so that
``pith-graph`` subcommands that never touch the network do not load httpx or Starlette.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ClientLimits"]

#: Subjects per feed page unless the request says otherwise, and the most it may ask for.
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """Every bound of :class:`~pith_graph.mirror.client.MirrorClient` (seconds, bytes, counts)."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: Deadline for one attempt, from sending the request to the body's last byte.
    total_timeout: float = 300.0
    max_bytes: int = 256 << 20
    #: Attempts after the first, for transient failures only.
    retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 15.0
    #: A ``Retry-After`` longer than this is not waited for: the attempt fails (transient).
    retry_after_max: float = 60.0
    max_connections: int = 8
    max_redirects: int = 5
