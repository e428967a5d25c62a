"""Issue 18 item 6: from a plain ``pip install`` into a fresh environment, outside the
repository, ``pith-graph vectors write DIR`` and ``vectors run DIR --impl ...`` work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_vectors_write_and_run_from_a_plain_install(tmp_path: Path) -> None:
    # Built from a copy of what the package is made of: a build inside the repository
    # would write build/ and the egg-info there, and a stale build/lib could go on
    # shipping a module the sources no longer have.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "_pith_graph_command.py"):  # the last: the console script
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "pith_graph", source / "pith_graph", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # pip below installs into it (--python): faster than its own
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0 and "No matching distribution" in install.stderr:
        pytest.skip("no package index to build from")  # pragma: no cover
    assert install.returncode == 0, install.stderr
    # The dependencies (msgspec, cryptography, ...) come from this environment; pith_graph itself
    # only from the install (the project's editable install is a .pth file, not read from here).
    site = Path(sysconfig.get_paths()["purelib"])
    (next((env_dir / "lib").glob("python3*/site-packages")) / "deps.pth").write_text(f"{site}\n")
    command = env_dir / "bin" / "pith-graph"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(command), *args], capture_output=True, text=True, timeout=300, cwd=elsewhere
        )

    where = run("vectors", "path")
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout
    written = run("vectors", "write", "corpus")
    assert written.returncode == 0, written.stderr
    index = json.loads((elsewhere / "corpus" / "index.json").read_text())
    assert index["case_count"] == len(index["cases"]) >= 50
    ids = [case["id"] for case in index["cases"]][:: max(1, len(index["cases"]) // 4)]
    cases = [option for case_id in ids for option in ("--case", case_id)]
    ran = run("vectors", "run", "corpus", "--impl", f"{command} state --trusted-keys", *cases, "--verbose")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{len(ids)}/{len(ids)} cases passed" in ran.stdout
