"""Directories walked one entry at a time give the files, and the order, of a sorted rglob."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pith_graph import codes
from pith_graph._parallel.many import bundle_paths, walk_bundle_paths
from pith_graph.errors import InputError


def test_walk_matches_sorted_rglob(tmp_path: Path) -> None:
    for name in [
        "b/2.json",
        "b/10.json",
        "a/x.json",
        "a.json/inner.json",
        "a/sub/y.json",
        "c.json",
        "a/notes.txt",
    ]:
        path = tmp_path / "m" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    os.symlink(tmp_path / "m", tmp_path / "m" / "b" / "loop")  # a linked directory is not entered
    expected = sorted(p for p in (tmp_path / "m").rglob("*.json") if p.is_file())
    assert list(walk_bundle_paths([str(tmp_path / "m")])) == expected == bundle_paths([str(tmp_path / "m")])
    assert len(expected) == 6


def test_walk_raises_when_it_reaches_a_bad_name(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "one.json").write_text("{}")
    walk = walk_bundle_paths([str(tmp_path / "one.json"), str(tmp_path / "empty")])
    assert next(walk) == tmp_path / "one.json"  # what comes before is given first
    with pytest.raises(InputError) as raised:
        next(walk)
    assert raised.value.code == codes.E_NO_DOCUMENTS
