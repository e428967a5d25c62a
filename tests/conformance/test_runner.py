"""The conformance runner: our CLI passes every case, broken implementations fail readably."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pith_graph.cli.vectors import register
from pith_graph.conformance import corpus_path, first_difference, format_results, run_vectors
from pith_graph.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
CORPUS = corpus_path()
OUR_CLI = [sys.executable, "-m", "pith_graph", "state", "--trusted-keys"]
BROKEN = [sys.executable, str(ROOT / "property_tests" / "broken_impl.py")]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pith-graph")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_our_cli_passes_every_case() -> None:
    results = run_vectors(CORPUS, OUR_CLI)
    index = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    assert [r.case_id for r in results] == [c["id"] for c in index["cases"]]
    assert [r for r in results if not r.passed] == []


def test_a_signature_ignoring_implementation_fails_with_a_readable_difference() -> None:
    signature_cases = ["reason-bad-signature", "ed25519-speccheck-0", "reason-bad-record", "valid-history"]
    results = {r.case_id: r for r in run_vectors(CORPUS, BROKEN, only=signature_cases)}
    expected = json.loads((CORPUS / "reason-bad-signature" / "expected.json").read_text(encoding="utf-8"))
    bad = expected["invalid_events"][0]["event_id"]
    assert (
        results["reason-bad-signature"].difference
        == f"event {bad[:19]}…: expected invalid (bad_signature), got valid (applied)"
    )
    assert "expected invalid (bad_signature)" in (results["ed25519-speccheck-0"].difference or "")
    assert "expected invalid (bad_record)" in (results["reason-bad-record"].difference or "")
    assert results["valid-history"].passed  # the bug is invisible where every signature is good
    lines = format_results(list(results.values()))
    assert lines[-1] == "1/4 cases passed"


def test_the_cli_runs_vectors_and_exits_1_on_failures(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(
        ["vectors", "run", str(CORPUS), "--impl", " ".join(BROKEN), "--case", "reason-bad-signature"]
    )
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("FAIL reason-bad-signature: event sha256:")
    assert out.splitlines()[-1] == "0/1 cases passed"


def test_crashing_hanging_and_garbage_implementations_fail_their_cases_only() -> None:
    case = ["valid-history"]
    crash = run_vectors(CORPUS, [sys.executable, "-c", "import sys; sys.exit('boom')"], only=case)
    assert crash[0].difference == "exit code 1: boom"
    garbage = run_vectors(CORPUS, [sys.executable, "-c", "print('{not json')"], only=case)
    assert (garbage[0].difference or "").startswith("stdout is not a JSON state")
    missing = run_vectors(CORPUS, [str(ROOT / "no-such-program")], only=case)
    assert (missing[0].difference or "").startswith("cannot run")
    hang = run_vectors(CORPUS, [sys.executable, "-c", "import time; time.sleep(30)"], only=case, timeout=0.5)
    assert hang[0].difference == "timed out after 0.5 s"


def test_first_difference_names_counts_order_and_hash() -> None:
    expected = json.loads((CORPUS / "fork-stream-start" / "expected.json").read_text(encoding="utf-8"))
    assert first_difference(expected, dict(expected)) is None
    assert first_difference(expected, [1]) == "output is a JSON list, not a state object"
    assert (first_difference(expected, {**expected, "equivocations": []}) or "").startswith(
        "missing equivocation"
    )
    assert (
        first_difference(expected, {**expected, "event_count": 99})
        == f"event_count: expected {expected['event_count']}, got 99"
    )
    order = expected["applied_event_ids"]
    swapped = [order[1], order[0], *order[2:]]
    assert (first_difference(expected, {**expected, "applied_event_ids": swapped}) or "").startswith(
        "apply order differs at position 0"
    )
    assert (first_difference(expected, {**expected, "state_sha256": "0" * 64}) or "").startswith(
        "state_sha256: expected"
    )


def test_unusable_corpus_and_unknown_case_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        run_vectors(tmp_path, OUR_CLI)
    with pytest.raises(InputError, match="no such case"):
        run_vectors(CORPUS, OUR_CLI, only=["nope"])


def test_vectors_write_through_the_real_cli_is_current(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pith_graph", "vectors", "write", str(tmp_path)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "index.json").read_bytes() == (CORPUS / "index.json").read_bytes()
