"""The portable conformance-vector corpus (docs/conformance.md).

:func:`write_corpus` writes one folder per case with ``bundle.json``,
``trusted_keys.json``, ``expected.json`` and ``description``, plus
``index.json``. Byte-deterministic: keys come from fixed seeds, and the two
outside inputs (the registry's published bundle and the ed25519-speccheck
cases) ship with the package (:func:`default_fixtures`). The corpus itself ships
too (:func:`corpus_path`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pith_graph import codes
from pith_graph.conformance.cases import FLAGS, Case, generated_cases
from pith_graph.conformance.ed25519_cases import crafted_cases, speccheck_cases
from pith_graph.documents import read_json
from pith_graph.errors import InputError, PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.models import MERGE_VERSION
from pith_graph.rebuild import rebuild_state
from pith_graph.state import State

__all__ = [
    "CASE_FILES",
    "CORPUS_NAME",
    "CORPUS_VERSION",
    "EXPECTED_KEYS",
    "REGISTRY_BUNDLE",
    "SPECCHECK_CASES",
    "build_corpus",
    "corpus_path",
    "default_fixtures",
    "write_corpus",
]

#: Name and version of the corpus format (docs/conformance.md).
CORPUS_NAME: Final = "pith-graph-conformance"
CORPUS_VERSION: Final = "1"
#: Files of one case folder.
CASE_FILES: Final = ("bundle.json", "trusted_keys.json", "expected.json", "description")
#: What ``expected.json`` holds, in this key order (all from the merged state).
EXPECTED_KEYS: Final = (
    "state_sha256",
    "event_count",
    "valid_event_count",
    "invalid_event_count",
    "equivocation_count",
    "applied_event_ids",
    "invalid_events",
    "equivocations",
)


def default_fixtures() -> Path:
    """Where the corpus's outside inputs ship: ``inputs/`` beside this module (package data)."""
    return Path(__file__).resolve().parent / "inputs"


def corpus_path() -> Path:
    """Where the corpus this package wrote ships: ``vectors/`` beside this module (package data)."""
    return Path(__file__).resolve().parent / "vectors"


def _registry_case(fixtures: Path) -> Case:
    """The registry's own bundle, byte for byte, trusting only the registry key.

    Its expected ``state_sha256`` is the one the registry published in the
    bundle's embedded state: an outside fact, not our merge's output.
    """
    data = _read(fixtures / REGISTRY_BUNDLE)
    embedded = read_json(data).get("state") or {}
    return Case(
        "registry-bundle-AG3PAJ22",
        "the registry's published bundle (2 events), trusting only the pinned registry key",
        ("registry", "valid"),
        {},
        KeyRing.registry().to_entries(),
        None,
        (),
        embedded.get("state_sha256"),
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read corpus input {path}: {exc.strerror or exc}", code=codes.E_IO) from exc


#: The corpus's outside inputs, inside the fixtures directory.
REGISTRY_BUNDLE: Final = "bundle-AG3PAJ22.json"
SPECCHECK_CASES: Final = "ed25519-speccheck-cases.json"


def build_corpus(fixtures: Path | None = None) -> list[Case]:
    """Every case of the corpus, in index order (``fixtures``: see :func:`default_fixtures`)."""
    fixtures = fixtures or default_fixtures()
    speccheck = read_json(_read(fixtures / SPECCHECK_CASES))
    return [*generated_cases(), _registry_case(fixtures), *speccheck_cases(speccheck), *crafted_cases()]


def _json_bytes(value: Any, *, indent: int | None = None) -> bytes:
    """Deterministic file bytes: keys in the order built, raw UTF-8, newline at the end."""
    separators = (",", ":") if indent is None else (",", ": ")
    return (json.dumps(value, ensure_ascii=False, indent=indent, separators=separators) + "\n").encode(
        "utf-8"
    )


def _expected(state: State) -> dict[str, Any]:
    document = state.to_dict()
    return {name: document[name] for name in EXPECTED_KEYS}


def _check_declared(case: Case, state: State) -> None:
    """Refuse to write a case whose merge disagrees with what the case declares."""
    found = {e["event_id"]: e["reason"] for e in state.invalid_events}
    problems = []
    if case.reasons is not None and found != dict(case.reasons):
        problems.append(f"invalid events {found} != declared {dict(case.reasons)}")
    if case.reasons is not None and state.equivocations != list(case.equivocations):
        problems.append(f"equivocations {state.equivocations} != declared {list(case.equivocations)}")
    if case.expected_state_sha256 is not None and state.state_sha256 != case.expected_state_sha256:
        problems.append(f"state_sha256 {state.state_sha256} != declared {case.expected_state_sha256}")
    if problems:
        raise PithGraphError(f"vector {case.id}: " + "; ".join(problems), code=codes.E_INTERNAL)


def _result(expected: Mapping[str, Any]) -> str:
    if expected["invalid_event_count"]:
        return "invalid"
    return "equivocation" if expected["equivocation_count"] else "valid"


def write_corpus(directory: str | os.PathLike[str], *, fixtures: Path | None = None) -> list[dict[str, Any]]:
    """Write the corpus into ``directory`` (created if needed); return the index's case list.

    Byte-deterministic: the same pith_graph writes the same bytes. Existing
    files of the same names are overwritten; nothing else is touched.
    """
    fixtures = fixtures or default_fixtures()
    root = Path(directory)
    entries = []
    for case in build_corpus(fixtures):
        bundle = _read(fixtures / REGISTRY_BUNDLE) if "registry" in case.flags else _json_bytes(case.bundle)
        state = rebuild_state(bundle, trusted_keys=case.trusted_keys)
        _check_declared(case, state)
        expected = _expected(state)
        files = {
            "bundle.json": bundle,
            "trusted_keys.json": _json_bytes(list(case.trusted_keys), indent=2),
            "expected.json": _json_bytes(expected, indent=2),
            "description": (case.description + "\n").encode("utf-8"),
        }
        _write_files(root / case.id, files)
        entries.append(
            {
                "id": case.id,
                "path": case.id,
                "description": case.description,
                "flags": sorted(case.flags),
                "result": _result(expected),
                "reasons": sorted({e["reason"] for e in expected["invalid_events"]}),
                "state_sha256": expected["state_sha256"],
            }
        )
    index = {
        "corpus": CORPUS_NAME,
        "corpus_version": CORPUS_VERSION,
        "merge_version": MERGE_VERSION,
        "case_count": len(entries),
        "protocol": "run IMPL TRUSTED_KEYS_PATH BUNDLE_PATH; it prints the merged state JSON on stdout (docs/conformance.md)",
        "flags": dict(sorted(FLAGS.items())),
        "cases": entries,
    }
    _write_files(root, {"index.json": _json_bytes(index, indent=2)})
    return entries


def _write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write {folder}: {exc.strerror or exc}", code=codes.E_IO) from exc
