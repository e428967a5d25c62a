"""A property-based API test: schemathesis, driven by the served ``/openapi.json``, finds no ``5xx``.

Bounded: 12 examples per operation in the examples, coverage and fuzzing phases
(a few hundred requests), with a fixed seed so that a failure reproduces.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import Served

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which(
    "schemathesis"
)


def test_schemathesis_finds_no_server_error(mirror: Served, tmp_path: Path) -> None:
    assert SCHEMATHESIS is not None, "schemathesis is a test dependency (pip install -e '.[test]')"
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{mirror.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "20",
            "--seed",
            "1",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases is not None, output[-2000:]
    assert int(cases.group(1)) == int(cases.group(2)) >= 100
    # The server is still healthy afterwards.
    with mirror.client() as client:
        assert client.get("/").status_code == 200
