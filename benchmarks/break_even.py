"""``python -m benchmarks.break_even [--sizes 1000,2000,5000] [--data-dir DIR]``: from how many
events do helper processes pay off?

For each size, in this one process: a rebuild with one
helper while no pool has run yet (it starts the forkserver), then the best of 5
serial rebuilds and the best of 5 with one helper and the pool warm. Helpers
are forced on below ``PARALLEL_MIN_EVENTS`` by calling the streaming rebuild
with the threshold lifted. Sizes after the first reuse the running forkserver,
so only the first size shows the first-pool cost.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.generate import DATA_DIR, ensure_bundle, trusted_entries
from pith_graph.documents import split_bundle
from pith_graph.keys import KeyRing

_rebuild = importlib.import_module("pith_graph.rebuild")  # the package exports a function of that name


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Print one line per size: serial, warm pool and (first size) first pool, in ms."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.break_even")
    parser.add_argument("--sizes", default="1000,2000,5000", help="comma-separated event counts")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where generated bundles are cached")
    args = parser.parse_args(argv)
    ring = KeyRing.from_entries(trusted_entries())
    for n in (int(size) for size in args.sizes.split(",")):
        data = ensure_bundle(n, data_dir=args.data_dir).read_bytes()

        def run(workers: int, data: bytes = data) -> None:
            assert split_bundle(data) is not None  # so the helpers' path, not the full one, is timed
            _rebuild._rebuild_bytes(data, ring, False, workers, min_events=0, min_bytes=0)

        first = _timed(lambda: run(2))
        serial = min(_timed(lambda: run(1)) for _ in range(5))
        warm = min(_timed(lambda: run(2)) for _ in range(5))
        print(
            f"{n:>7} events: serial {serial * 1000:7.1f} ms, one helper (pool warm) {warm * 1000:7.1f} ms, "
            f"first rebuild with a helper here {first * 1000:7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
