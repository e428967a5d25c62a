"""The demo runs as a newcomer would run it (a real subprocess), and passes its own checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    for path in (ROOT / "examples" / "registry").glob("*.json"):
        assert path.read_bytes() == (ROOT / "tests" / "fixtures" / path.name).read_bytes()
