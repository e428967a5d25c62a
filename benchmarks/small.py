"""Many small bundles (a registry-shaped mirror): each path against the bare signature loop.

``python -m benchmarks --only small`` runs these rows alone. Every figure is a
ratio taken in this one run: the time of the bare libsodium loop over exactly
the signatures a path must verify (event signatures and receipts; the bundle
signature too for ``verify_bundle``), divided by the time of the path over the
same bundles. The bundles are read into memory first, so reading files is not
timed, except by ``store import`` of the directory and ``verify-many``, which
read them as a mirror does. ``profile_top`` records where a rebuild's time goes
(cProfile, by own time), for the notes on missed targets.
"""

from __future__ import annotations

import contextlib
import cProfile
import json
import os
import pstats
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from benchmarks.generate import DATA_DIR, trusted_entries
from benchmarks.profile import parallel_capacity, timed, verify_all
from benchmarks.registry_mirror import ensure_mirror, mirror_files
from pith_graph._parallel.many import verify_many
from pith_graph.cli import main as cli_main
from pith_graph.ed25519 import Verifier
from pith_graph.keys import KeyRing
from pith_graph.rebuild import rebuild_state
from pith_graph.store import IMPORT_BATCH
from pith_graph.verify import verify_bundle

__all__ = ["DEFAULT_COUNT", "TARGETS", "measure_small", "table_lines"]

#: Bundles in the mirror the rows measure.
DEFAULT_COUNT: Final = 400
#: The issue-19 targets: (name, figure key, threshold, direction).
TARGETS: Final = (
    ("rebuild_state / signature bound (small bundles)", "rebuild_bound_ratio", 0.7, ">="),
    ("verify_bundle / signature bound (small bundles)", "verify_bound_ratio", 0.7, ">="),
    ("pith-graph store import DIR / signature bound (durable)", "import_bound_ratio", 0.5, ">="),
    ("verify-many 2 workers / 1 worker (small bundles)", "verify_many_speedup", 1.7, ">="),
)

Triple = tuple[bytes, bytes, bytes]


class _Recorder:
    """A signature cache that remembers nothing and records every triple looked up."""

    def __init__(self) -> None:
        self.triples: dict[Triple, None] = {}

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        self.triples[(public_key, signature, message)] = None
        return None

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        pass


def _triples(datas: list[bytes], ring: KeyRing) -> tuple[list[Triple], list[Triple]]:
    """The distinct signatures a rebuild and a verification of each bundle verify (all bundles)."""
    rebuild: list[Triple] = []
    verify: list[Triple] = []
    for data in datas:
        recorder = _Recorder()
        report = verify_bundle(data, trusted_keys=ring, verifier=Verifier(cache=recorder), workers=1)
        assert report.ok, report.problems
        bundle_message = bytes.fromhex(report_digest(data))
        verify.extend(recorder.triples)
        rebuild.extend(t for t in recorder.triples if t[2] != bundle_message)
    return rebuild, verify


def report_digest(data: bytes) -> str:
    """The ``bundle_sha256`` a bundle's signature covers (read from the signed bundle)."""
    return str(json.loads(data)["bundle_signature"]["bundle_sha256"])


def _paired(bound: Callable[[], Any], path: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best times of ``bound`` and ``path``, run alternately ``repeat`` times each."""
    pairs = [(timed(bound, 1), timed(path, 1)) for _ in range(repeat)]
    return min(b for b, _ in pairs), min(p for _, p in pairs)


def _import_dir(directory: Path, keys_file: Path, batch: int | None = None, workers: int = 1) -> None:
    """``pith-graph store import --batch N --workers N DIR`` into a new store (durable, one
    transaction per batch): the real command (``pith_graph.cli.main``, in this process, so
    that the interpreter's start is not timed), walking the directory and reading each file
    as it goes; its lines go to /dev/null."""
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as sink:
        argv = ["store", "import", "--db", str(Path(tmp) / "mirror.sqlite"), "--trusted-keys", str(keys_file)]
        argv += [
            "--batch",
            str(batch or IMPORT_BATCH),
            "--workers",
            str(workers),
            "--no-progress",
            str(directory),
        ]
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            status = cli_main(argv)
        if status != 0:
            raise RuntimeError(f"store import exited {status}")


def _verify_many(paths: list[Path], ring: KeyRing, workers: int) -> None:
    outcomes = list(verify_many(paths, trusted_keys=ring, workers=workers))
    assert all(outcome.ok for outcome in outcomes)


def profile_top(fn: Callable[[], Any], limit: int = 15) -> list[dict[str, Any]]:
    """The ``limit`` functions with the most own time in one traced run of ``fn``."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:limit]  # type: ignore[attr-defined]
    return [
        {"function": f"{Path(file).name}:{line}({name})", "calls": calls, "own_s": own, "share": own / total}
        for (file, line, name), (_, calls, own, _cumulative, _) in rows
    ]


def measure_small(
    count: int = DEFAULT_COUNT,
    *,
    repeat: int = 3,
    workers: int = 2,
    data_dir: Path = DATA_DIR,
    keys_file: Path,
) -> dict[str, Any]:
    """Every figure of the small-bundle rows over a generated mirror of ``count`` bundles."""
    directory = ensure_mirror(count, data_dir=data_dir)
    paths = mirror_files(directory)
    datas = [path.read_bytes() for path in paths]
    ring = KeyRing.from_entries(trusted_entries())
    rebuild_triples, verify_triples = _triples(datas, ring)
    nacl = Verifier("nacl")
    bound_rebuild = partial(verify_all, nacl, rebuild_triples)
    bound_verify = partial(verify_all, nacl, verify_triples)
    out: dict[str, Any] = {
        "bundles": len(datas),
        "bytes": sum(map(len, datas)),
        "events": sum(len(json.loads(data)["events"]) for data in datas),
        "rebuild_signatures": len(rebuild_triples),
        "verify_signatures": len(verify_triples),
    }

    def rebuild_all() -> None:
        for data in datas:
            rebuild_state(data, trusted_keys=ring)

    def verify_all_bundles() -> None:
        for data in datas:
            verify_bundle(data, trusted_keys=ring)

    # Each path alternates with its own bound (best of each): load on the machine shifts both alike.
    t_bound, t_rebuild = _paired(bound_rebuild, rebuild_all, repeat)
    t_bound_verify, t_verify = _paired(bound_verify, verify_all_bundles, repeat)
    t_bound_import, t_import = _paired(bound_rebuild, partial(_import_dir, directory, keys_file), repeat)
    out.update(
        {
            "signature_bound_s": t_bound,
            "rebuild_s": t_rebuild,
            "rebuild_ms_per_bundle": t_rebuild / len(datas) * 1e3,
            "rebuild_bound_ratio": t_bound / t_rebuild,
            "verify_signature_bound_s": t_bound_verify,
            "verify_s": t_verify,
            "verify_ms_per_bundle": t_verify / len(datas) * 1e3,
            "verify_bound_ratio": t_bound_verify / t_verify,
            "import_s": t_import,
            "import_ms_per_bundle": t_import / len(datas) * 1e3,
            "import_bound_ratio": t_bound_import / t_import,
        }
    )
    # --batch 1 (one durable transaction per bundle) and --workers 2, each beside the default run.
    t_default, t_batch_1 = _paired(
        partial(_import_dir, directory, keys_file), partial(_import_dir, directory, keys_file, 1), repeat
    )
    t_one, t_two = _paired(
        partial(_import_dir, directory, keys_file),
        partial(_import_dir, directory, keys_file, None, workers),
        repeat,
    )
    out["import_batch_1_s"] = t_batch_1
    out["import_workers"] = {
        "workers": workers,
        "one_s": t_one,
        "many_s": t_two,
        "speedup": t_one / t_two,
        "batch_1_beside_s": t_default,
    }
    # verify-many: one worker and many alternate (paired), as for the large bundles' speed-up.
    ones: list[float] = []
    manys: list[float] = []
    for _ in range(max(repeat, 2)):
        ones.append(timed(partial(_verify_many, paths, ring, 1), 1))
        manys.append(timed(partial(_verify_many, paths, ring, workers), 1))
    out["verify_many"] = {
        "workers": workers,
        "one_s": min(ones),
        "many_s": min(manys),
        "one_runs_s": ones,
        "many_runs_s": manys,
    }
    out["verify_many_speedup"] = min(ones) / min(manys)
    # What the machine gave two pure-Python processes right then: the ceiling of the speed-up.
    out["verify_many"]["machine_capacity"] = parallel_capacity(workers)
    out["profile"] = {
        "rebuild_state": profile_top(rebuild_all),
        "verify_bundle": profile_top(verify_all_bundles),
        "store_import": profile_top(partial(_import_dir, directory, keys_file)),
    }
    return out


def table_lines(r: dict[str, Any]) -> list[str]:
    """Human-readable lines for the small-bundle figures."""
    m = r["verify_many"]
    lines = [
        f"== {r['bundles']} registry-shaped bundles, {r['events']} events, {r['bytes'] / 1e6:.1f} MB ==",
        f"  rebuild_state {r['rebuild_ms_per_bundle']:.3f} ms/bundle; bound {r['signature_bound_s'] * 1e3:.0f} ms"
        f" for {r['rebuild_signatures']} signatures; ratio {r['rebuild_bound_ratio']:.2f}",
        f"  verify_bundle {r['verify_ms_per_bundle']:.3f} ms/bundle; bound {r['verify_signature_bound_s'] * 1e3:.0f} ms"
        f" for {r['verify_signatures']} signatures; ratio {r['verify_bound_ratio']:.2f}",
        f"  pith-graph store import DIR {r['import_ms_per_bundle']:.3f} ms/bundle (--batch 1: {r['import_batch_1_s'] * 1e3 / r['bundles']:.3f});"
        f" ratio {r['import_bound_ratio']:.2f}",
        f"  store import --workers {r['import_workers']['workers']}: {r['import_workers']['many_s'] * 1e3:.0f} ms,"
        f" 1 worker {r['import_workers']['one_s'] * 1e3:.0f} ms ({r['import_workers']['speedup']:.2f}x)",
        f"  verify-many: 1 worker {m['one_s'] * 1e3:.0f} ms, {m['workers']} workers {m['many_s'] * 1e3:.0f} ms"
        f" ({r['verify_many_speedup']:.2f}x; the machine gave {m['machine_capacity']:.2f}x on pure loops)",
        "  profile of rebuild_state (own time): "
        + ", ".join(f"{p['function']} {p['share']:.0%}" for p in r["profile"]["rebuild_state"][:6]),
    ]
    return lines
