"""A Pith mirror over HTTP: ``pith-graph serve`` (issue 16, docs/mirror.md).

An ASGI app (Starlette, served by uvicorn) that speaks the registry's mirror
URLs straight from an :class:`~pith_graph.store.EventStore`: every state is
recomputed under the mirror's own trusted keys, and events received over the
network are stored only if they pass merge-v1 stage 1 under those keys.
"""

from __future__ import annotations

from pith_graph.mirror.app import create_app
from pith_graph.mirror.keyfile import MirrorKey, generate_key_file
from pith_graph.mirror.service import Mirror, MirrorConfig

__all__ = ["Mirror", "MirrorConfig", "MirrorKey", "create_app", "generate_key_file"]
