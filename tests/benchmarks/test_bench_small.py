"""The small-bundle (mirror) rows of the benchmark run end to end on a tiny mirror (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.generate import trusted_entries
from benchmarks.registry_mirror import ensure_mirror, generate_record_bundle, mirror_files
from pith_graph.verify import verify_bundle
from tests.helpers import run_module


def test_small_rows_run_alone(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    output.write_text(json.dumps({"sizes": [40], "by_size": {"40": {"kept": True}}}))
    run = run_module(
        "benchmarks",
        "--only",
        "small",
        "--quick",
        "--bundles",
        "12",
        "--output",
        str(output),
        "--data-dir",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(output.read_text())
    small = results["small"]
    assert small["bundles"] == 12 and small["events"] >= 24
    # Receipts are among the signatures; verification adds one bundle signature per bundle.
    assert small["rebuild_signatures"] == small["events"] + 12
    assert small["verify_signatures"] == small["rebuild_signatures"] + 12
    assert {row["name"] for row in results["targets"]} >= {
        "rebuild_state / signature bound (small bundles)",
        "verify-many 2 workers / 1 worker (small bundles)",
    }
    assert small["profile"]["rebuild_state"] and "pith-graph store import DIR" in run.stdout
    # A partial run keeps the large rows the file held.
    assert results["by_size"] == {"40": {"kept": True}}


def test_mirror_is_registry_shaped_and_deterministic(tmp_path: Path) -> None:
    paths = mirror_files(ensure_mirror(10, data_dir=tmp_path))
    assert len(paths) == 10
    assert paths[3].read_bytes() == json.dumps(generate_record_bundle(3), separators=(",", ":")).encode()
    sizes = [len(json.loads(p.read_bytes())["events"]) for p in paths]
    assert sizes.count(2) == 8 and all(5 <= n <= 20 for n in sizes if n != 2)  # one in five is busier
    for path in paths:
        report = verify_bundle(path, trusted_keys=trusted_entries())
        assert report.ok, report.problems  # signed, state embedded and equal to the rebuilt one
        assert 10_000 < path.stat().st_size < 60_000
