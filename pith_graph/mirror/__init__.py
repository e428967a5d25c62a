"""pith_graph as a mirror: the HTTP surface, and fetching from and following other mirrors.

Issue 16, ``pith-graph serve`` (docs/mirror.md): :mod:`~pith_graph.mirror.app`
(the Starlette routes), :mod:`~pith_graph.mirror.service` (store access off the
event loop, group commit, documents cached per version),
:mod:`~pith_graph.mirror.page` (the record's page), :mod:`~pith_graph.mirror.openapi`,
:mod:`~pith_graph.mirror.keyfile` (the mirror key and ``pith-graph keygen``).
Every state is recomputed under the mirror's own trusted keys, and events
received over the network are stored only if they pass merge-v1 stage 1 under
those keys.

Issue 17: :mod:`~pith_graph.mirror.client` (the bounded HTTP client),
:mod:`~pith_graph.mirror.admit` (network input is stored only if it passes
stage 1 under the local keys), :mod:`~pith_graph.mirror.pull`
(``mirror pull``), :mod:`~pith_graph.mirror.feed` (the change feed),
:mod:`~pith_graph.mirror.sync` (``mirror sync``) and
:mod:`~pith_graph.mirror.peers` (the peers a mirror follows, and its cursors).

Nothing is imported here, so that the client side does not load the web stack.
"""
