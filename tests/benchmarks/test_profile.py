"""benchmarks.profile: the ceilings' arithmetic, and a traced rebuild that changes nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pith_graph import documents, rebuild
from pith_graph.keys import KeyRing
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[ModuleType, ModuleType]]:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import generate, profile
    finally:
        sys.path.remove(str(ROOT))
    yield profile, generate


def _figures(**overrides: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "events": 10_000,
        "backends": {"nacl": {"cold_rebuild_s": 0.8, "signature_bound_s": 0.4}},
        "pieces": {"signature_us": {"nacl": 40.0, "cryptography": 90.0}, "floor_us": 10.0},
        "parallel": {"one_s": 8.0, "machine_capacity": 2.0},
        "phases": {"this_process_only_s": 1.0, "stage1_s": 3.6, "events_from_helpers": 50_000},
    }
    figures.update(overrides)
    return figures


def test_backend_ceiling(bench: tuple[ModuleType, ModuleType]) -> None:
    profile, _ = bench
    ratio = profile.ceilings(_figures(), "nacl")["backend_ratio"]
    # Other work: (0.8 - 0.4) s over 10,000 events = 40 us. 1.8x needs O <= (90 - 1.8 * 40) / 0.8 = 22.5 us.
    assert ratio["other_work_measured_us"] == pytest.approx(40.0)
    assert ratio["other_work_allowed_us"] == pytest.approx(22.5)
    assert ratio["ratio_at_floor"] == pytest.approx(100 / 50)
    assert ratio["ratio_at_measured"] == pytest.approx(130 / 80)
    # A backend twice as fast can never give more than 2x: nothing is allowed at a ratio of 2.25.
    assert profile.ceilings(_figures(), "nacl", ratio=2.25)["backend_ratio"]["other_work_allowed_us"] == 0.0
    # No ratio to report when the default is cryptography itself, or when it is the only backend.
    assert "backend_ratio" not in profile.ceilings(_figures(), "cryptography")
    only = _figures(pieces={"signature_us": {"cryptography": 90.0}, "floor_us": 10.0})
    assert "backend_ratio" not in profile.ceilings(only, "nacl")


def test_speedup_estimate(bench: tuple[ModuleType, ModuleType]) -> None:
    profile, _ = bench
    bound = profile.ceilings(_figures(), "nacl")["parallel_speedup"]
    # Amdahl: 8 s, of which 1 s only here, the rest over a machine giving 2x: 8 / (1 + 7 / 2).
    assert bound["amdahl_estimate"] == pytest.approx(8 / 4.5)
    assert bound["even_stage1_share_s"] == pytest.approx(3.5)
    # A rebuild that no helper took part in has no share to spread: no estimate.
    serial = _figures(phases={"this_process_only_s": 1.0, "stage1_s": 7.0, "events_from_helpers": 0})
    assert "parallel_speedup" not in profile.ceilings(serial, "nacl")


def test_traced_rebuild_is_the_rebuild(bench: tuple[ModuleType, ModuleType], tmp_path: Path) -> None:
    profile, generate = bench
    path = generate.ensure_bundle(30, data_dir=tmp_path)
    ring = KeyRing.from_entries(generate.trusted_entries())
    marks: dict[str, float] = {}
    with profile.traced_phases(marks):
        traced = rebuild.rebuild_state(path, trusted_keys=ring, workers=1)
    # Every function it wrapped is the module's own again, and the result did not change.
    assert vars(rebuild)["split_bundle"] is documents.split_bundle
    assert vars(rebuild)["source_bytes"] is documents.source_bytes
    assert rebuild._copies.__module__ == "pith_graph.rebuild"
    assert traced.to_json() == rebuild.rebuild_state(path, trusted_keys=ring, workers=1).to_json()
    # The phases came in the order the rebuild runs them.
    assert 0 < marks["read"] <= marks["split"] <= marks["stage1"] <= marks["end"]
    assert marks["events_from_helpers"] == 0
    phases = profile.phases(path, ring, 1)
    assert phases["events_from_helpers"] == 0 and phases["stage1_s"] > 0 and phases["this_process_only_s"] > 0
