"""pith_graph as a mirror: the HTTP surface, and fetching from and following other mirrors.

Issue 17 (this part): :mod:`~pith_graph.mirror.client` (the bounded HTTP client),
:mod:`~pith_graph.mirror.admit` (network input is stored only if it passes
stage 1 under the local keys), :mod:`~pith_graph.mirror.pull`
(``mirror pull``), :mod:`~pith_graph.mirror.feed` (the change feed),
:mod:`~pith_graph.mirror.sync` (``mirror sync``) and
:mod:`~pith_graph.mirror.peers` (the peers a mirror follows, and its cursors).
"""
