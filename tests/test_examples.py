"""The demo runs as a newcomer would run it (a real subprocess), and passes its own checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pith_graph.conformance import default_fixtures

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "byte-identical   True" in out
    assert "content_hash_mismatch" in out
    assert "equivocation: signer demo-alice.example" in out
    assert "['unknown_key']" in out
    assert out.rstrip().endswith("All demo checks passed.")


def test_example_registry_documents_match_fixtures() -> None:
    paths = sorted((ROOT / "examples" / "registry").glob("*.json"))
    # The five registry documents (../shared/seeds): an empty or moved folder must fail, not pass.
    assert [p.name for p in paths] == [
        "bundle-AG3PAJ22.json",
        "graph-GFHD7S67.json",
        "record-GFHD7S67.json",
        "record-NE7W423I.json",
        "state-SGRHL77B.json",
    ]
    for path in paths:
        assert path.read_bytes() == (ROOT / "tests" / "fixtures" / path.name).read_bytes()


def test_the_corpus_input_is_the_registry_bundle() -> None:
    # The package ships its own copy (an input of `pith-graph vectors write`); it must stay the registry's.
    name = "bundle-AG3PAJ22.json"
    assert (default_fixtures() / name).read_bytes() == (ROOT / "tests" / "fixtures" / name).read_bytes()
