"""Helper processes: the edge where pith_graph uses more than one CPU (house rule 1: never in the pure core).

* :mod:`~pith_graph._parallel.pool`: pools, worker counts, stopping them (every use
  of CPython-private internals, behind a version guard);
* :mod:`~pith_graph._parallel.signatures`: helpers verify signatures while this process merges;
* :mod:`~pith_graph._parallel.scratch`: the scratch copy of a bundle helpers read;
* :mod:`~pith_graph._parallel.stage1`: helpers run all of stage 1 on chunks of events;
* :mod:`~pith_graph._parallel.many`: many documents, one per helper.

Every verdict is the serial code's, wherever it runs: results are identical to
the serial path by construction.
"""
