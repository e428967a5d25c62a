"""``python -m benchmarks`` (``make bench``): how close a cold rebuild gets to its signature bound.

Everything for one size is measured in this one process and run, so the figures
that matter are ratios (to a bare loop verifying the same signatures with the
same backend, to ``json``, to one worker) and survive a noisy machine. Peak
memory is measured in fresh subprocesses. Prints a table and writes
``benchmarks/results.json`` with the machine's description.

Options: ``--sizes 1000,10000,100000`` (events per bundle), ``--quick`` (1000
events, one repetition), ``--output FILE``, ``--workers N`` (default 2),
``--only small`` (only the rows of a registry-shaped mirror of ``--bundles N``
small bundles: :mod:`benchmarks.small`) or ``--only large``. The store rows on
PostgreSQL against SQLite come from :mod:`benchmarks.backends` (``make
bench-store`` runs only those).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

from benchmarks import backends, profile
from benchmarks.generate import DATA_DIR, ensure_bundle, trusted_entries
from benchmarks.profile import best, parallel_capacity, timed
from benchmarks.small import DEFAULT_COUNT as SMALL_COUNT
from benchmarks.small import TARGETS as SMALL_TARGETS
from benchmarks.small import measure_small
from benchmarks.small import table_lines as small_table_lines
from pith_graph import canonical, ed25519
from pith_graph._parallel.signatures import MemorySignatureCache, prepass_jobs, signature_jobs
from pith_graph.documents import load_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.events import content_bytes
from pith_graph.keys import KeyRing
from pith_graph.merge import merge_checked
from pith_graph.rebuild import rebuild_state

DEFAULT_SIZES: Final = (1000, 10_000, 100_000)
RESULTS: Final = Path(__file__).resolve().parent / "results.json"
ROOT: Final = Path(__file__).resolve().parent.parent

#: The issue-5 targets: (name, figure key, threshold, direction).
TARGETS: Final = (
    ("cold rebuild / signature bound (10k, serial)", "bound_ratio", 0.85, ">="),
    ("cold rebuild / signature bound (10k, default)", "bound_ratio_default", 0.85, ">="),
    ("default backend / cryptography-only (10k, serial)", "default_vs_cryptography", 1.8, ">="),
    ("default backend / cryptography-only (10k, default)", "default_vs_cryptography_default", 1.8, ">="),
    ("2 workers / 1 worker (100k)", "parallel_speedup", 1.7, ">="),
    ("warm store replay / cold (10k)", "warm_speedup", 5.0, ">="),
    ("peak RSS / file size (100k)", "rss_over_file", 4.0, "<="),
    # Issue 19 item 5: large bundles scale linearly.
    ("cold rebuild / signature bound (100k, default)", "bound_ratio_default", 0.85, ">="),
    ("slowest phase, 100k time / 10k time", "slowest_phase_growth", 11.0, "<="),
)

#: The sizes whose times :func:`scaling` compares (issue 19 item 5: 10x the events).
SCALING_SIZES: Final = ("10000", "100000")


@contextmanager
def backend_default(name: str) -> Iterator[None]:
    """Make ``name`` the process's default Ed25519 backend (helper processes inherit it)."""
    before = os.environ.get(ed25519.BACKEND_ENV_VAR)
    os.environ[ed25519.BACKEND_ENV_VAR] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ[ed25519.BACKEND_ENV_VAR]
        else:
            os.environ[ed25519.BACKEND_ENV_VAR] = before


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    versions: dict[str, str | None] = {}
    for dist in ("pith_graph", "msgspec", "cryptography", "PyNaCl"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "libraries": versions,
        "ed25519_backends": ed25519.available_backends(),
    }


_MEMORY_PROBE: Final = """
import json, resource, sys, time, tracemalloc
from pith_graph.rebuild import rebuild_state
path, keys, trace = sys.argv[1], json.loads(open(sys.argv[2]).read()), sys.argv[3] == "1"
workers = None if sys.argv[4] == "default" else int(sys.argv[4])
if trace:
    tracemalloc.start()
def peak():
    # VmHWM: this process image's own high-water mark (ru_maxrss may carry the parent's
    # RSS across fork+exec on Linux); ru_maxrss where /proc is missing.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = peak()
start = time.perf_counter()
state = rebuild_state(path, trusted_keys=keys, workers=workers)
after_rebuild = peak()
traced_rebuild = tracemalloc.get_traced_memory()[1] if trace else None
state.to_json()
elapsed = time.perf_counter() - start
traced = tracemalloc.get_traced_memory()[1] if trace else None
print(json.dumps({"rss_kib": peak(), "rss_rebuild_kib": after_rebuild, "rss_before_kib": base,
                  "tracemalloc_peak": traced, "tracemalloc_rebuild_peak": traced_rebuild, "seconds": elapsed}))
"""


def memory(path: Path, keys_file: Path) -> dict[str, Any]:
    """Peak RSS and tracemalloc peak of a cold rebuild + serialisation, each in a fresh process.

    Serial (``workers=1``: one process holds everything), then the default
    (helper processes; the figure is this process's own peak, the helpers'
    are not included).
    """
    out: dict[str, Any] = {}
    for trace, workers in (("0", "1"), ("1", "1"), ("0", "default")):
        run = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, str(path), str(keys_file), trace, workers],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        probe = json.loads(run.stdout)
        if workers == "default":
            out["peak_rss_default_main_bytes"] = probe["rss_kib"] * 1024
        elif trace == "1":
            out["tracemalloc_peak_bytes"] = probe["tracemalloc_peak"]
            out["tracemalloc_rebuild_only_bytes"] = probe["tracemalloc_rebuild_peak"]
        else:
            out["peak_rss_bytes"] = probe["rss_kib"] * 1024
            out["peak_rss_rebuild_only_bytes"] = probe["rss_rebuild_kib"] * 1024
            out["rss_before_rebuild_bytes"] = probe["rss_before_kib"] * 1024
    return out


def warm(path: Path, keys: list[dict[str, Any]], subject: str, repeat: int) -> dict[str, Any] | None:
    """Import into a fresh store, then ``state(subject)`` twice (the second hits the signature cache)."""
    try:
        from pith_graph.store import EventStore
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp) / "bench.sqlite")
        try:
            start = time.perf_counter()
            store.import_bundle(path, trusted_keys=keys)
            imported = time.perf_counter() - start
            first, state1 = best(lambda: store.state(subject, trusted_keys=keys), 1)
            second, state2 = best(lambda: store.state(subject, trusted_keys=keys), repeat)
        finally:
            store.close()
    assert state1.to_json() == state2.to_json()
    return {
        "import_s": imported,
        "state_first_s": first,
        "state_warm_s": second,
        "state_sha256": state2.state_sha256,
    }


def measure(
    n: int,
    *,
    repeat: int,
    workers: int,
    data_dir: Path = DATA_DIR,
    postgres: str | None = None,
    small: int = backends.DEFAULT_SMALL,
) -> dict[str, Any]:
    """Every figure for the bundle of ``n`` events.

    Rebuilds are timed first, while this process holds nothing else large: a
    parsed copy of the 100k bundle (about 3 GB of Python objects) held beside
    them slowed this process and its helper by 20-30% (memory, not the
    collector: it is paused), which a mirror rebuilding a bundle does not pay.
    """
    path = ensure_bundle(n, data_dir=data_dir)
    keys = trusted_entries()
    ring = KeyRing.from_entries(keys)
    out: dict[str, Any] = {"events": n, "file_bytes": path.stat().st_size}

    # Signature bound and cold rebuilds, per backend. The triples are the ones the
    # merge verifies (the pre-pass reads exactly those: tests/parallel/test_parallel.py).
    triples = prepass_jobs(path.read_bytes(), ring, min_events=0)
    assert triples is not None
    out["signatures"] = len(triples)
    out["backends"] = {}
    for name in ed25519.available_backends():
        t_bound = timed(partial(profile.verify_all, Verifier(name), triples), repeat)
        # Serial: one process does everything. Default: rebuild_state's own choice (helper
        # processes above PARALLEL_MIN_EVENTS, one per CPU up to MAX_AUTO_WORKERS),
        # with the backend as the process default.
        with backend_default(name):
            t_cold, state = best(lambda: rebuild_state(path, trusted_keys=ring, workers=1), repeat)
            serial_json = state.to_json()
            state_sha256 = state.state_sha256
            state = None
            t_auto, auto = best(lambda: rebuild_state(path, trusted_keys=ring), repeat)
        assert auto.to_json() == serial_json
        auto = serial_json = None
        out["backends"][name] = {
            "signature_bound_s": t_bound,
            "cold_rebuild_s": t_cold,
            "events_per_s": n / t_cold,
            "bound_ratio": t_bound / t_cold,
            "cold_default_s": t_auto,
            "default_events_per_s": n / t_auto,
            "bound_ratio_default": t_bound / t_auto,
            "state_sha256": state_sha256,
        }
    default = ed25519.get_backend("auto").name
    figures = out["backends"][default]
    crypto = out["backends"]["cryptography"]
    out["bound_ratio"] = figures["bound_ratio"]
    out["bound_ratio_default"] = figures["bound_ratio_default"]
    out["default_vs_cryptography"] = crypto["cold_rebuild_s"] / figures["cold_rebuild_s"]
    out["default_vs_cryptography_default"] = crypto["cold_default_s"] / figures["cold_default_s"]

    # Parallel rebuilds, next to what the machine can give right now. One process and
    # many alternate, at least twice each: other work on a shared machine then weighs
    # on both sides alike (a single 100k pair once gave 1.73x, paired runs 1.59-1.65x).
    if workers > 1:
        capacity_before = parallel_capacity(workers)
        ones: list[float] = []
        manys: list[float] = []
        serial_json = None
        for _ in range(max(repeat, 2)):
            t_one, serial = best(lambda: rebuild_state(path, trusted_keys=ring, workers=1), 1)
            serial_json = serial_json or serial.to_json()
            serial = None
            t_many, par = best(lambda: rebuild_state(path, trusted_keys=ring, workers=workers), 1)
            assert par.to_json() == serial_json
            par = None
            ones.append(t_one)
            manys.append(t_many)
        serial_json = None
        out["parallel"] = {
            "workers": workers,
            "one_s": min(ones),
            "many_s": min(manys),
            "one_runs_s": ones,
            "many_runs_s": manys,
            "paired_ratios": [one / many for one, many in zip(ones, manys, strict=True)],
            "machine_capacity": min(capacity_before, parallel_capacity(workers)),
        }
        out["parallel_speedup"] = min(ones) / min(manys)
        # Where the time goes, for the notes on missed targets: one more traced run.
        out["phases"] = profile.phases(path, ring, workers)

    # The pieces of stage 1, one at a time, and the ceilings they and the phases allow.
    out["pieces"] = profile.pieces(
        path.read_bytes(), ring, triples=triples
    )  # the pre-pass above, not a second one
    out["ceilings"] = profile.ceilings(out, default)

    # Parse: strict loads (+ typed view) vs the stdlib. Each result is dropped before the
    # next is timed (a parsed 100k bundle is about 3 GB: held beside the next parse, it
    # made strict loads look slower than load_bundle, which runs it), and the tree the
    # rest needs is parsed last.
    data = path.read_bytes()
    t_loads = timed(lambda: canonical.loads(data), repeat)

    # The same decode loads runs, with the collector paused as loads pauses it: the
    # difference is then the structure checks alone (at 100k the collector's walks
    # of the growing heap would otherwise cost more than the checks).
    def decode_paused() -> Any:
        with canonical.gc_paused():
            return canonical._DECODER.decode(data)

    t_msgspec = timed(decode_paused, repeat)
    t_json = timed(lambda: json.loads(data), repeat)
    t_parse, (raw, model) = best(lambda: load_bundle(data), repeat)
    events = raw["events"]
    assert signature_jobs(events, ring) == triples
    out["parse"] = {
        "load_bundle_s": t_parse,
        "strict_loads_s": t_loads,
        "msgspec_decode_s": t_msgspec,
        "json_loads_s": t_json,
        "strict_loads_vs_json_loads": t_json / t_loads,
        "structure_checks_s": t_loads - t_msgspec,
    }

    # Canonical encoding: fast path vs the json.dumps reference, plus hashing.
    t_fast, _ = best(lambda: [content_bytes(e) for e in events], repeat)
    t_ref, _ = best(
        lambda: [
            canonical.canonical_json(
                {k: v for k, v in e.items() if k not in ("event_id", "content_sha256", "signature")}
            )
            for e in events
        ],
        repeat,
    )
    t_hash, _ = best(lambda: [hashlib.sha256(content_bytes(e)).hexdigest() for e in events], repeat)
    out["canonical"] = {"fast_s": t_fast, "json_dumps_s": t_ref, "speedup": t_ref / t_fast, "hash_s": t_hash}

    # Time split of the serial cold path on the full tree (parse, then the merge with
    # every signature verdict known, then serialisation): its parts add up to that
    # path's time, not to the streaming rebuild_state's, which is faster (it never
    # holds the tree); both totals are recorded.
    cache = MemorySignatureCache()
    for triple in triples:
        cache.record(*triple, True)
    merge_args = {"subject": model.pith_number, "aliases": raw["source_aliases"], "trusted_keys": ring}

    def merge_paused() -> Any:
        # As rebuild() runs it: with the collector paused (beside the parsed tree
        # held here, each collection walked it and this row grew faster than 10x).
        with canonical.gc_paused():
            return merge_checked(events, verifier=Verifier(cache=cache), **merge_args)

    t_merge_cached, _ = best(merge_paused, repeat)
    merged = merge_paused().state
    raw = events = None  # the store's import below reads the file itself
    data = b""
    # Serialisation is timed on its own, on one merged state (timed as merge + to_json
    # minus the merge, the merge's own spread at 100k landed in this row), once the
    # parsed tree is dropped: rebuild_state serialises after a streaming merge that
    # never held it, and beside it (about 3 GB at 100k) this row grew 14x for 10x.
    gc.collect()
    t_to_json, _ = best(merged.to_json, repeat)
    del merged
    parts = {
        "parse_s": t_parse,
        "canonical_hashing_s": t_hash,
        "signature_checks_s": figures["signature_bound_s"],
        "checks_ordering_projection_s": max(0.0, t_merge_cached - t_hash),
        "serialisation_s": t_to_json,
    }
    rebuild_parts = sum(
        value for name, value in parts.items() if name != "serialisation_s"
    )  # to_json is not the rebuild
    out["split"] = {
        **parts,
        "rebuild_parts_total_s": rebuild_parts,
        "streaming_rebuild_s": figures["cold_rebuild_s"],
    }

    # The store on PostgreSQL against SQLite (issue 20), up to benchmarks.backends.MAX_EVENTS.
    if n <= backends.MAX_EVENTS:
        out["store_backends"] = backends.compare(
            path, model.pith_number, postgres, repeat=min(repeat, 2), small=small
        )

    # Warm replay from the store.
    stored = warm(path, keys, model.pith_number, repeat)
    if stored is not None:
        stored["cold_s"] = figures["cold_rebuild_s"]
        stored["warm_vs_cold"] = figures["cold_rebuild_s"] / stored["state_warm_s"]
        out["warm"] = stored
        out["warm_speedup"] = stored["warm_vs_cold"]

    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def table(results: dict[str, Any]) -> str:
    """Human-readable summary."""
    lines = []
    for size in results["sizes"]:
        r = results["by_size"][str(size)]
        lines.append(f"== {size} events, {r['file_bytes'] / 1e6:.1f} MB, {r['signatures']} signatures ==")
        for name, b in r["backends"].items():
            lines.append(
                f"  cold rebuild [{name:12}] serial {_ms(b['cold_rebuild_s'])} ({b['events_per_s']:6.0f} ev/s),"
                f" default {_ms(b['cold_default_s'])} ({b['default_events_per_s']:6.0f} ev/s);"
                f"  signature bound {_ms(b['signature_bound_s'])};"
                f"  ratio serial {b['bound_ratio']:.2f}, default {b['bound_ratio_default']:.2f}"
            )
        lines.append(
            f"  default backend / cryptography-only: serial {r['default_vs_cryptography']:.2f}x,"
            f" default {r['default_vs_cryptography_default']:.2f}x"
        )
        split = r["split"]
        lines.append(
            "  split of the full-tree serial path: "
            + ", ".join(f"{k[:-2]} {v * 1000:.0f} ms" for k, v in split.items())
        )
        p = r["parse"]
        lines.append(
            f"  parse: strict loads {_ms(p['strict_loads_s'])} (structure checks {_ms(p['structure_checks_s'])}),"
            f" json.loads {_ms(p['json_loads_s'])}, load_bundle {_ms(p['load_bundle_s'])}"
        )
        c = r["canonical"]
        lines.append(
            f"  canonical: fast {_ms(c['fast_s'])} vs json.dumps {_ms(c['json_dumps_s'])} ({c['speedup']:.1f}x)"
        )
        if "parallel" in r:
            q = r["parallel"]
            lines.append(
                f"  parallel: 1 worker {_ms(q['one_s'])}, {q['workers']} workers {_ms(q['many_s'])}"
                f" ({r['parallel_speedup']:.2f}x, best of each; pairs"
                f" {min(q['paired_ratios']):.2f}-{max(q['paired_ratios']):.2f}x;"
                f" the machine gave {q['machine_capacity']:.2f}x on pure loops)"
            )
        if "pieces" in r:
            pc = r["pieces"]
            signatures = ", ".join(f"{name} {us:.1f}" for name, us in pc["signature_us"].items())
            lines.append(
                f"  stage 1 per event (us): signature {signatures}; strict parse {pc['strict_parse_us']:.1f},"
                f" inspect_event {pc['inspect_event_us']:.1f}, key checks {pc['key_checks_us']:.1f},"
                f" copy {pc['copy_text_us']:.1f}; floor (bare decode {pc['decode_us']:.1f} + sha256"
                f" {pc['sha256_us']:.1f}) {pc['floor_us']:.1f}"
            )
        ceiling = r.get("ceilings", {})
        if "backend_ratio" in ceiling:
            b = ceiling["backend_ratio"]
            lines.append(
                f"  backend ratio {b['target']}x needs other work <= {b['other_work_allowed_us']:.1f} us/event;"
                f" measured {b['other_work_measured_us']:.1f} us; at the floor the ratio would be {b['ratio_at_floor']:.2f}x"
            )
        if "phases" in r:
            ph = r["phases"]
            lines.append(
                f"  phases, {ph['workers']} workers: read {_ms(ph['read_s'])}, split {_ms(ph['split_s'])},"
                f" start helpers {_ms(ph['start_helpers_s'])}, stage 1 {_ms(ph['stage1_s'])}"
                f" ({ph['events_from_helpers']} events from helpers), stages 2-4 {_ms(ph['stages_2_4_s'])}"
            )
        if "parallel_speedup" in ceiling:
            a = ceiling["parallel_speedup"]
            lines.append(
                f"  speed-up: this process alone {_ms(a['this_process_only_s'])}, machine {a['machine_capacity']:.2f}x"
                f" -> Amdahl estimate {a['amdahl_estimate']:.2f}x (stage 1 {_ms(a['stage1_s'])}, even share {_ms(a['even_stage1_share_s'])})"
            )
        if "warm" in r:
            w = r["warm"]
            lines.append(
                f"  store: import {_ms(w['import_s'])}, state #1 {_ms(w['state_first_s'])}, state #2 {_ms(w['state_warm_s'])}"
                f" ({w['warm_vs_cold']:.2f}x cold)"
            )
        else:
            lines.append("  store: not available (pith_graph.store missing)")
        if "store_backends" in r:
            lines.extend(backends.table_lines(r["store_backends"]))
        if "memory" in r:
            m = r["memory"]
            lines.append(
                f"  memory: peak RSS {m['peak_rss_bytes'] / 1e6:.0f} MB ({m['rss_over_file']:.2f}x file;"
                f" rebuild_state alone {m['peak_rss_rebuild_only_bytes'] / 1e6:.0f} MB,"
                f" {m['peak_rss_rebuild_only_bytes'] / r['file_bytes']:.2f}x),"
                f" tracemalloc peak {m['tracemalloc_peak_bytes'] / 1e6:.0f} MB ({m['tracemalloc_over_file']:.2f}x);"
                f" default (helpers) main process {m['peak_rss_default_main_bytes'] / 1e6:.0f} MB"
                f" ({m['peak_rss_default_main_bytes'] / r['file_bytes']:.2f}x)"
            )
    if "small" in results:
        lines.extend(small_table_lines(results["small"]))
    if "store_posts" in results:
        lines.extend(backends.post_lines(results["store_posts"]))
    if "scaling" in results:
        small, large = SCALING_SIZES
        lines.append(f"== {large} events against {small}: time growth by phase (linear: 10x) ==")
        for name, value in sorted(results["scaling"]["growth"].items(), key=lambda item: -item[1]):
            lines.append(f"  {name:40} {value:6.1f}x")
    lines.append("== targets ==")
    for row in results["targets"]:
        status = "n/a" if row["value"] is None else ("MET" if row["met"] else "MISSED")
        value = "-" if row["value"] is None else f"{row['value']:.2f}"
        bound = "" if row.get("ceiling") is None else f"  ceiling {row['ceiling']:.2f}"
        lines.append(
            f"  {row['name']:48} {value:>7} (target {row['direction']} {row['threshold']})  {status}  [{row['size']}]{bound}"
        )
    return "\n".join(lines)


#: Targets with a measured ceiling (benchmarks.profile.ceilings): figure key -> (section, field).
#: Not the speed-up: its Amdahl figure is an estimate, which runs have beaten.
_CEILINGS: Final = {
    "default_vs_cryptography": ("backend_ratio", "ratio_at_floor"),
}


def phase_times(r: dict[str, Any]) -> dict[str, float]:
    """Every timed phase of one size's figures, by name (the rows :func:`scaling` compares)."""
    times: dict[str, float] = {}
    for backend, b in r["backends"].items():
        times[f"cold rebuild serial [{backend}]"] = b["cold_rebuild_s"]
        times[f"cold rebuild default [{backend}]"] = b["cold_default_s"]
        times[f"signature bound [{backend}]"] = b["signature_bound_s"]
    for name, value in r["split"].items():
        if name not in ("signature_checks_s", "rebuild_parts_total_s", "streaming_rebuild_s"):
            times[f"full-tree {name[:-2]}"] = value
    for name in ("strict_loads_s", "load_bundle_s"):
        times[f"parse {name[:-2]}"] = r["parse"][name]
    for name in ("read_s", "split_s", "stage1_s", "stages_2_4_s", "total_s"):
        if name in r.get("phases", {}):
            times[f"{r['phases']['workers']} workers {name[:-2]}"] = r["phases"][name]
    for name in ("import_s", "state_first_s", "state_warm_s"):
        if r.get("warm") and name in r["warm"]:
            times[f"store {name[:-2]}"] = r["warm"][name]
    return times


def scaling(by_size: dict[str, Any]) -> dict[str, Any] | None:
    """Each phase's time at 100k over its time at 10k (linear: 10x), and the slowest growth.

    The signature bound is the same fixed work per event at both sizes: its own
    growth says how much of a phase's growth is the machine (a quiet machine gives
    about 10x), and is listed but not counted as the slowest.
    """
    small, large = SCALING_SIZES
    if small not in by_size or large not in by_size:
        return None
    before, after = phase_times(by_size[small]), phase_times(by_size[large])
    growth = {name: after[name] / before[name] for name in before if name in after and before[name] > 0}
    counted = {name: value for name, value in growth.items() if not name.startswith("signature bound")}
    slowest = max(counted, key=counted.__getitem__)
    return {"growth": growth, "slowest": slowest, "slowest_growth": counted[slowest]}


def targets(by_size: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target evaluated at its size, or at the largest measured size when that one was not run."""
    rows = []
    for name, key, threshold, direction in TARGETS:
        wanted = "100000" if "100k" in name else "10000"
        candidates = [s for s in by_size if key in by_size[s]]
        size = wanted if wanted in candidates else (max(candidates, key=int) if candidates else None)
        value = None if size is None else by_size[size][key]
        met = None if value is None else (value >= threshold if direction == ">=" else value <= threshold)
        ceiling = None
        if size is not None and key in _CEILINGS:
            section, field = _CEILINGS[key]
            ceiling = by_size[size].get("ceilings", {}).get(section, {}).get(field)
        rows.append(
            {
                "name": name,
                "size": size,
                "value": value,
                "threshold": threshold,
                "direction": direction,
                "met": met,
                "ceiling": ceiling,
            }
        )
    return rows


def small_targets(small: dict[str, Any]) -> list[dict[str, Any]]:
    """The small-bundle targets (benchmarks.small.TARGETS), evaluated on the mirror's figures."""
    rows = []
    for name, key, threshold, direction in SMALL_TARGETS:
        value = small.get(key)
        met = None if value is None else (value >= threshold if direction == ">=" else value <= threshold)
        rows.append(
            {
                "name": name,
                "size": f"{small['bundles']} bundles",
                "value": value,
                "threshold": threshold,
                "direction": direction,
                "met": met,
                "ceiling": None,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, write the results file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default=None, help="comma-separated event counts (default 1000,10000,100000)"
    )
    parser.add_argument("--quick", action="store_true", help="1000 events, one repetition")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where generated bundles are cached")
    parser.add_argument(
        "--only",
        choices=("large", "small"),
        default=None,
        help="only the large-bundle rows (--sizes) or only the small-bundle (mirror) rows",
    )
    parser.add_argument(
        "--bundles",
        type=int,
        default=None,
        help=f"bundles in the mirror (default {SMALL_COUNT}; with --quick 40)",
    )
    args = parser.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([1000] if args.quick else list(DEFAULT_SIZES))
    )
    if args.only == "small":
        sizes = []
    bundles = args.bundles or (40 if args.quick else SMALL_COUNT)
    results: dict[str, Any] = {"machine": machine(), "sizes": sizes, "by_size": {}}
    with tempfile.TemporaryDirectory() as tmp, backends.postgres_database() as postgres:
        keys_file = Path(tmp) / "keys.json"
        keys_file.write_text(json.dumps(trusted_entries()))
        if args.only != "large":
            print(f"measuring a mirror of {bundles} small bundles ...", file=sys.stderr, flush=True)
            results["small"] = measure_small(
                bundles,
                repeat=1 if args.quick else 3,
                workers=args.workers,
                data_dir=args.data_dir,
                keys_file=keys_file,
            )
        if not sizes:
            results["targets"] = small_targets(results["small"])
            print(table(results))
            _write(args.output, results)
            return 0
        # Memory first, while this process is still small: a child started later
        # would begin life with the parent's footprint in its rusage.
        largest = max(sizes)
        print(f"measuring memory of {largest} events ...", file=sys.stderr, flush=True)
        path = ensure_bundle(largest, data_dir=args.data_dir)
        mem = memory(path, keys_file)
        size = path.stat().st_size
        mem["rss_over_file"] = mem["peak_rss_bytes"] / size
        mem["tracemalloc_over_file"] = mem["tracemalloc_peak_bytes"] / size
        for n in sizes:
            repeat = 1 if args.quick or n >= 100_000 else 3
            print(f"measuring {n} events ...", file=sys.stderr, flush=True)
            results["by_size"][str(n)] = measure(
                n,
                repeat=repeat,
                workers=args.workers,
                data_dir=args.data_dir,
                postgres=postgres,
                small=20 if args.quick else backends.DEFAULT_SMALL,
            )
        # Two mirror servers on one PostgreSQL store against one on SQLite (issue 20).
        results["store_posts"] = backends.two_server_posts(
            postgres, count=40 if args.quick else backends.DEFAULT_POSTS
        )
        results["by_size"][str(largest)]["memory"] = mem
        results["by_size"][str(largest)]["rss_over_file"] = mem["rss_over_file"]
        grown = scaling(results["by_size"])
        if grown is not None:
            results["scaling"] = grown
            results["by_size"][SCALING_SIZES[1]]["slowest_phase_growth"] = grown["slowest_growth"]
    results["targets"] = targets(results["by_size"]) + (
        small_targets(results["small"]) if "small" in results else []
    )
    print(table(results))
    _write(args.output, results)
    return 0


def _write(output: Path, results: dict[str, Any]) -> None:
    """Write the results file; a partial run (``--only``) keeps the other rows of the file as they were."""
    if results.get("sizes") != list(DEFAULT_SIZES) or "small" not in results:
        try:
            previous = json.loads(output.read_text())
        except (OSError, ValueError):
            previous = {}
        if "small" not in results and "small" in previous:
            results["small"] = previous["small"]
            results["targets"] += small_targets(previous["small"])
        if not results["by_size"] and previous.get("by_size"):
            results["sizes"], results["by_size"] = previous["sizes"], previous["by_size"]
            results["targets"] = targets(results["by_size"]) + results["targets"]
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
