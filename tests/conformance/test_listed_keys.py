"""Issue 15 hole 8: the corpus catches an implementation that trusts a bundle's own keys."""

from __future__ import annotations

import json
import subprocess
import sys

from pith_graph.conformance import corpus_path

CORPUS = corpus_path()
CLI = f"{sys.executable} -m pith_graph"


def test_an_implementation_trusting_bundle_keys_fails_the_corpus() -> None:
    """`vectors run CORPUS --impl 'pith-graph state --trust-bundle-keys --trusted-keys'` exits 1 (the
    cases that catch it, plus one it passes; the whole corpus takes a minute on a busy machine)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pith_graph",
            "vectors",
            "run",
            str(CORPUS),
            "--impl",
            f"{CLI} state --trust-bundle-keys --trusted-keys",
            "--case",
            "listed-key-signs-event",
            "--case",
            "listed-key-creates-record",
            "--case",
            "valid-history",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "1/3 cases passed"
    assert any(
        line.startswith("FAIL listed-key-signs-event: ") and "expected invalid (unknown_key)" in line
        for line in lines
    )


def test_the_new_cases_are_in_the_index() -> None:
    index = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    ids = {case["id"] for case in index["cases"]}
    assert {
        "listed-key-signs-event",
        "listed-key-creates-record",
        "signature-non-canonical-base64",
        "signature-extra-member",
        "signature-oversized-member",
        "signature-copies-one-valid",
        "record-created-by-second-trusted-key",
    } <= ids
    for case_id in ("listed-key-signs-event", "listed-key-creates-record"):
        bundle = json.loads((CORPUS / case_id / "bundle.json").read_text(encoding="utf-8"))
        trusted = json.loads((CORPUS / case_id / "trusted_keys.json").read_text(encoding="utf-8"))
        # The bundle lists a key its trusted_keys.json does not: exactly the hole the cases cover.
        assert {k["key_id"] for k in bundle["public_keys"]} - {k["key_id"] for k in trusted}
