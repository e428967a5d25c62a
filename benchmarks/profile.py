"""Why a target is missed: the per-event pieces of stage 1, the phases of one rebuild, ceilings and estimates.

``python -m benchmarks`` runs these beside its timings and records them in
``benchmarks/results.json``; ``python -m benchmarks.profile --size N`` prints
them alone. Nothing here is a timed assertion.

* :func:`pieces`: microseconds per event of each piece of the serial stage 1,
  timed one piece at a time over a sample of the bundle's events, and of the
  least any conforming implementation must do besides the signature: decode
  the event and hash it (merge-v1 hashes canonical content, which takes a
  parse of the text; a strict parse costs more).
* :func:`phases`: one traced ``rebuild_state``, cut where this process alone
  works (reading, the split, starting helpers; stages 2-4 after the last
  event) and where the events are checked (stage 1, shared with helpers).
* :func:`ceilings`: what those figures allow. For the backend ratio, call S_x
  the signature time of backend x and O the other work per event; a serial
  rebuild's ratio is (O + S_cryptography) / (O + S_default), at least R only
  if O <= (S_cryptography - R * S_default) / (R - 1); with O at least the
  floor, the ratio is at most its value at the floor (a true ceiling). For the
  speed-up of w processes, Amdahl's law with the part P only this process does
  and the machine's measured capacity c for w pure-Python processes gives
  T1 / (P + (T1 - P) / c). That is an estimate, not a bound: at 100k a serial
  event costs more than one checked by a helper (the one process holds every
  event's results, a helper only a chunk's), and c is itself a noisy reading;
  one run gave 1.75x measured against an estimate of 1.67x.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Final

import msgspec

from pith_graph import ed25519
from pith_graph import rebuild as _rebuild
from pith_graph._parallel.signatures import MemorySignatureCache, prepass_jobs
from pith_graph.canonical import MAX_DEPTH, gc_paused, loads
from pith_graph.documents import EVENT_DEPTH_OFFSET, split_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.events import check_keys, inspect_event, unit_id
from pith_graph.keys import KeyRing

__all__ = [
    "SAMPLE_EVENTS",
    "best",
    "ceilings",
    "parallel_capacity",
    "phases",
    "pieces",
    "timed",
    "traced_phases",
    "verify_all",
]

#: Events of a bundle that :func:`pieces` times (its first ones).
SAMPLE_EVENTS: Final = 5000
_DEPTH: Final = MAX_DEPTH - EVENT_DEPTH_OFFSET


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs (after a collection), and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        result = None  # the last run's result (a 100k state holds ~400 MB) is not kept alive beside the next
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Best wall time of ``repeat`` runs of ``fn``; its result is dropped."""
    return best(fn, repeat)[0]


def _per_event(fn: Callable[[], Any], count: int, repeat: int = 3) -> float:
    """Best of ``repeat`` runs of ``fn`` (which handles ``count`` events), in microseconds per event.

    With the collector paused, as the rebuild runs stage 1 (its walks of the
    growing heap would otherwise be charged to whichever piece allocates).
    """
    best = float("inf")
    for _ in range(repeat):
        with gc_paused():
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def verify_all(verifier: Verifier, triples: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """The signature bound's loop: every signature, verified, nothing else."""
    return [verifier.verify(*triple) for triple in triples]


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_capacity(workers: int) -> float:
    """How much faster ``workers`` processes run ``workers`` pure-Python loops than one process.

    The ceiling any parallel figure of this run can reach: on a shared or
    throttled machine it is well below ``workers``.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    # fork: a child starts at once (the figure is the machine's, not a start method's).
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    n = 3_000_000
    start = time.perf_counter()
    for _ in range(workers):
        _spin(n)
    serial = time.perf_counter() - start
    with ProcessPoolExecutor(workers, mp_context=context) as executor:
        list(executor.map(_spin, [10] * workers))
        start = time.perf_counter()
        list(executor.map(_spin, [n] * workers))
        parallel = time.perf_counter() - start
    return serial / parallel


def pieces(
    data: bytes,
    keyring: KeyRing,
    *,
    sample: int = SAMPLE_EVENTS,
    triples: list[tuple[bytes, bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """Microseconds per event of each piece of the serial stage 1, over the bundle's first ``sample`` events.

    ``stage1_other_us`` is everything but the signature (strict parse, copy of
    the text, ``inspect_event``, key checks); ``floor_us`` is a bare decode plus
    a sha256 of the text, less than any conforming implementation does.
    ``triples``: the bundle's signature checks in its order, if the caller has
    them already (:func:`~pith_graph._parallel.signatures.prepass_jobs` of ``data``).
    """
    split = split_bundle(data)
    if split is None:
        raise ValueError("the bundle does not split")  # the generator's bundles always do
    subject = split.model.pith_number
    texts = [bytes(text) for text in split.events[:sample]]
    count = len(texts)
    values = [loads(text, max_depth=_DEPTH) for text in texts]
    inspected = [inspect_event(value, subject=subject, uid=unit_id(value)) for value in values]
    if triples is None:
        triples = prepass_jobs(data, keyring, min_events=0) or []
    triples = triples[:count]
    known = MemorySignatureCache()
    for triple in triples:
        known.record(*triple, True)
    cached = Verifier(cache=known)  # key checks without the signature (a cache hit)
    decoder = msgspec.json.Decoder()
    out: dict[str, Any] = {
        "events": count,
        "bytes_per_event": sum(map(len, texts)) / count,
        "decode_us": _per_event(lambda: [decoder.decode(text) for text in texts], count),
        "sha256_us": _per_event(lambda: [hashlib.sha256(text).digest() for text in texts], count),
        "strict_parse_us": _per_event(lambda: [loads(text, max_depth=_DEPTH) for text in texts], count),
        "copy_text_us": _per_event(lambda: [bytes(text) for text in split.events[:count]], count),
        "inspect_event_us": _per_event(
            lambda: [inspect_event(value, subject=subject, uid=unit_id(value)) for value in values], count
        ),
        "key_checks_us": _per_event(
            lambda: [check_keys(c, subject=subject, keyring=keyring, verifier=cached) for c in inspected],
            count,
        ),
        "signature_us": {
            name: _per_event(partial(verify_all, Verifier(name), triples), len(triples))
            for name in ed25519.available_backends()
        },
    }
    out["floor_us"] = out["decode_us"] + out["sha256_us"]
    out["stage1_other_us"] = (
        out["strict_parse_us"] + out["copy_text_us"] + out["inspect_event_us"] + out["key_checks_us"]
    )
    return out


@contextmanager
def traced_phases(marks: dict[str, float]) -> Iterator[None]:
    """Record in ``marks`` when each phase of a ``rebuild_state`` ends, in seconds from entry.

    Wraps the functions :mod:`pith_graph.rebuild` calls (reading, the split,
    starting helpers, the stream of stage-1 copies), restoring them on exit.
    """
    start = time.perf_counter()
    saved = {
        name: getattr(_rebuild, name) for name in ("source_bytes", "split_bundle", "start_stage1", "_copies")
    }

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter() - start)

    def after(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            mark(name)
            return result

        return wrapped

    def copies(*args: Any, **kwargs: Any) -> Iterator[Any]:
        helped = 0
        for item in saved["_copies"](*args, **kwargs):
            helped += not isinstance(item[1], tuple)  # a helper's CheckedEvent, not (text, value)
            yield item
        mark("stage1")
        marks["events_from_helpers"] = helped

    wrappers = {
        "source_bytes": after("read", saved["source_bytes"]),
        "split_bundle": after("split", saved["split_bundle"]),
        "start_stage1": after("helpers_started", saved["start_stage1"]),
        "_copies": copies,
    }
    for name, fn in wrappers.items():
        setattr(_rebuild, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(_rebuild, name, fn)
        mark("end")


def phases(path: Any, keyring: KeyRing, workers: int) -> dict[str, Any]:
    """One traced ``rebuild_state(path, workers=workers)``: seconds in each phase.

    ``this_process_only_s`` is the time before stage 1 starts (reading, the
    split, starting helpers) plus the time after its last event (stages 2-4),
    during which no helper has work.
    """
    marks: dict[str, float] = {}
    with traced_phases(marks):
        _rebuild.rebuild_state(path, trusted_keys=keyring, workers=workers)
    before = marks.get("helpers_started", marks["split"])
    out = {
        "workers": workers,
        "total_s": marks["end"],
        "read_s": marks["read"],
        "split_s": marks["split"] - marks["read"],
        "start_helpers_s": before - marks["split"],
        "stage1_s": marks["stage1"] - before,
        "stages_2_4_s": marks["end"] - marks["stage1"],
        "events_from_helpers": marks.get("events_from_helpers", 0),
    }
    out["this_process_only_s"] = before + out["stages_2_4_s"]
    return out


def ceilings(figures: dict[str, Any], default: str, *, ratio: float = 1.8) -> dict[str, Any]:
    """What the measured pieces and phases allow (see the module's docstring)."""
    out: dict[str, Any] = {}
    piece = figures.get("pieces")
    measured = set() if piece is None else set(piece["signature_us"])
    if piece is not None and default != "cryptography" and {default, "cryptography"} <= measured:
        fast, slow = piece["signature_us"][default], piece["signature_us"]["cryptography"]
        backends = figures["backends"]
        other = (
            (backends[default]["cold_rebuild_s"] - backends[default]["signature_bound_s"])
            / figures["events"]
            * 1e6
        )
        out["backend_ratio"] = {
            "target": ratio,
            "other_work_measured_us": other,
            "other_work_allowed_us": max(0.0, (slow - ratio * fast) / (ratio - 1)),
            "floor_us": piece["floor_us"],
            "ratio_at_floor": (piece["floor_us"] + slow) / (piece["floor_us"] + fast),
            "ratio_at_measured": (other + slow) / (other + fast),
        }
    phase, parallel = figures.get("phases"), figures.get("parallel")
    # Only where helpers took part: below PARALLEL_MIN_EVENTS a rebuild is serial and has no share to spread.
    if phase is not None and parallel is not None and phase["events_from_helpers"] > 0:
        one, serial_part, capacity = (
            parallel["one_s"],
            phase["this_process_only_s"],
            parallel["machine_capacity"],
        )
        out["parallel_speedup"] = {
            "this_process_only_s": serial_part,
            "machine_capacity": capacity,
            "amdahl_estimate": one / (serial_part + (one - serial_part) / capacity),
            "even_stage1_share_s": (one - serial_part) / capacity,
            "stage1_s": phase["stage1_s"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the pieces (10k by default) and the phases of a rebuild with one worker and with ``--workers``."""
    from benchmarks.generate import DATA_DIR, ensure_bundle, trusted_entries

    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="events in the bundle")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=SAMPLE_EVENTS)
    parser.add_argument("--data-dir", default=DATA_DIR)
    args = parser.parse_args(argv)
    path = ensure_bundle(args.size, data_dir=args.data_dir)
    ring = KeyRing.from_entries(trusted_entries())
    out = {
        "pieces": pieces(path.read_bytes(), ring, sample=args.sample),
        "phases": [phases(path, ring, workers) for workers in (1, args.workers)],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
