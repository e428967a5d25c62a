"""``store import`` takes directories of bundles and walks them (issue 19, item 3)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pith_graph.store import EventStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
SUBJECT = "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pith_graph", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_a_directory_is_walked_and_every_bundle_imported(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / "nested"
    mirror.mkdir(parents=True)
    shutil.copy(BUNDLE, mirror / "a.json")
    (tmp_path / "mirror" / "notes.txt").write_text("not a bundle")
    db = tmp_path / "s.sqlite"
    done = run("store", "import", "--db", str(db), str(tmp_path / "mirror"))
    assert done.returncode == 0, done.stderr
    assert "imported 1 of 1 bundles" in done.stdout
    with EventStore(db, create=False) as store:
        assert store.subjects() == [SUBJECT]
        embedded = BUNDLE.read_bytes()
        assert store.state(SUBJECT).to_json() in embedded  # the registry's state, byte for byte


def test_an_empty_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run("store", "import", "--db", str(tmp_path / "s.sqlite"), str(tmp_path / "empty"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "error[no_documents]" in done.stderr
