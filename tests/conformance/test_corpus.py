"""The committed corpus is current, complete, and consistent with its index."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pith_graph import codes
from pith_graph.conformance import CASE_FILES, corpus_path, default_fixtures, write_corpus

CORPUS = corpus_path()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_regenerating_the_corpus_changes_nothing(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    fresh, committed = _tree(tmp_path), _tree(CORPUS)
    assert sorted(fresh) == sorted(committed), "run: pith-graph vectors write pith_graph/conformance/vectors"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], "run: pith-graph vectors write pith_graph/conformance/vectors"


def test_the_index_lists_every_folder_with_its_files() -> None:
    index = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    ids = [case["id"] for case in index["cases"]]
    assert len(ids) == len(set(ids)) == index["case_count"]
    folders = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    assert folders == sorted(case["path"] for case in index["cases"])
    for case in index["cases"]:
        assert sorted(p.name for p in (CORPUS / case["path"]).iterdir()) == sorted(CASE_FILES)
        assert set(case["flags"]) <= set(index["flags"])
        description = (CORPUS / case["path"] / "description").read_text(encoding="utf-8")
        assert description.endswith("\n") and "\n" not in description[:-1]


def test_every_reason_code_and_required_rule_is_covered() -> None:
    index = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    reasons = {r for case in index["cases"] for r in case["reasons"]}
    assert reasons == set(codes.REASONS)
    flags = {f for case in index["cases"] for f in case["flags"]}
    for required in (
        "equivocation",
        "record_created_fork",
        "supersedes",
        "duplicates",
        "large",
        "non_ascii",
        "registry",
        "ed25519_edge",
    ):
        assert required in flags


def test_expected_files_agree_with_the_index() -> None:
    index = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    assert len(index["cases"]) == 59  # every case of the corpus, none silently missing
    for case in index["cases"]:
        expected = json.loads((CORPUS / case["path"] / "expected.json").read_text(encoding="utf-8"))
        assert expected["state_sha256"] == case["state_sha256"]
        assert sorted({e["reason"] for e in expected["invalid_events"]}) == case["reasons"]
        assert expected["invalid_event_count"] == len(expected["invalid_events"])
        assert expected["event_count"] == expected["valid_event_count"] + expected["invalid_event_count"]


def test_the_large_case_holds_1000_events() -> None:
    bundle = json.loads((CORPUS / "large-1000-events" / "bundle.json").read_text(encoding="utf-8"))
    assert len(bundle["events"]) == 1000


def test_the_registry_case_is_the_registry_bundle_byte_for_byte() -> None:
    fixture = default_fixtures() / "bundle-AG3PAJ22.json"
    copied = CORPUS / "registry-bundle-AG3PAJ22" / "bundle.json"
    assert hashlib.sha256(copied.read_bytes()).digest() == hashlib.sha256(fixture.read_bytes()).digest()
    expected = json.loads((copied.parent / "expected.json").read_text(encoding="utf-8"))
    assert (
        expected["state_sha256"] == json.loads(fixture.read_text(encoding="utf-8"))["state"]["state_sha256"]
    )
