"""docs/merge-v1.md maps every section to the code and tests that implement it, and the map does not drift."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "docs" / "merge-v1.md").read_text(encoding="utf-8")
SECTIONS = re.split(r"^(## \d+\. .*)$", SPEC, flags=re.M)[1:]
MAPPED = dict(zip(SECTIONS[0::2], SECTIONS[1::2], strict=True))


def _implemented_by(body: str) -> str:
    lines = [line for line in body.splitlines() if line.startswith("Implemented by: ")]
    assert len(lines) == 1, "one `Implemented by:` line per section"
    return lines[0]


def test_the_spec_has_its_twelve_sections() -> None:
    assert [int(h.split()[1].rstrip(".")) for h in MAPPED] == list(range(1, 13))


@pytest.mark.parametrize("heading", list(MAPPED))
def test_every_section_names_code_that_exists(heading: str) -> None:
    line = _implemented_by(MAPPED[heading])
    names = [n for n in re.findall(r"`([^`]+)`", line) if not n.endswith(".py")]
    assert names, f"{heading}: no function named"
    for name in names:
        module_name, _, path = name.partition(".")
        value: object = importlib.import_module(f"pith_graph.{module_name}")
        for attribute in path.split("."):
            value = getattr(value, attribute)  # AttributeError names the stale entry


@pytest.mark.parametrize("heading", list(MAPPED))
def test_every_section_names_tests_that_exist(heading: str) -> None:
    tests = re.findall(r"`([^`]+\.py)`", _implemented_by(MAPPED[heading]))
    assert tests, f"{heading}: no test module named"
    for test in tests:
        assert (ROOT / test).is_file(), test
