"""Run the conformance-vector corpus against any implementation of merge-v1.

Protocol (docs/conformance.md): for every case listed in ``index.json`` the
runner executes ``IMPL TRUSTED_KEYS_PATH BUNDLE_PATH`` (IMPL split like a shell
would, the two paths appended as the final arguments) and reads the merged
state JSON the implementation prints on stdout. ``pith-graph state
--trusted-keys`` is such an implementation. A case passes when the printed
state agrees with ``expected.json``; otherwise the first difference is
reported in words. A crash, a non-zero exit, unreadable output or a timeout
fails that case only.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pith_graph import codes
from pith_graph.canonical import loads
from pith_graph.conformance.corpus import EXPECTED_KEYS
from pith_graph.documents import read_json
from pith_graph.errors import InputError

__all__ = ["DEFAULT_TIMEOUT", "CaseResult", "first_difference", "format_results", "run_vectors"]

#: Seconds an implementation may take on one case.
DEFAULT_TIMEOUT: Final = 60.0
_COUNTS: Final = ("event_count", "valid_event_count", "invalid_event_count", "equivocation_count")


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The verdict on one case: ``difference`` is None when it passed."""

    case_id: str
    difference: str | None

    @property
    def passed(self) -> bool:
        """True when the implementation's state matched the expected one."""
        return self.difference is None


def _short(uid: Any) -> str:
    return f"{uid[:19]}…" if isinstance(uid, str) and len(uid) > 20 else repr(uid)


def _reasons(document: Mapping[str, Any]) -> dict[Any, Any]:
    listed = document.get("invalid_events")
    if not isinstance(listed, list):
        return {}
    return {e.get("event_id"): e.get("reason") for e in listed if isinstance(e, dict)}


def first_difference(expected: Mapping[str, Any], got: Any) -> str | None:
    """The first way ``got`` (a printed state) differs from ``expected``, in words; None if none.

    Checked from the most specific to the least: reasons, equivocations,
    counts, apply order, then the state hash (which alone covers ``current``).
    """
    if not isinstance(got, dict):
        return f"output is a JSON {type(got).__name__}, not a state object"
    missing = [name for name in EXPECTED_KEYS if name not in got]
    if missing:
        return f"state lacks {', '.join(missing)}"
    want, have = _reasons(expected), _reasons(got)
    for uid in sorted(set(want) | set(have), key=str):
        if want.get(uid) != have.get(uid):
            wanted = f"invalid ({want[uid]})" if uid in want else "valid"
            applied = got.get("applied_event_ids")
            found = (
                f"invalid ({have[uid]})"
                if uid in have
                else "valid (applied)"
                if isinstance(applied, list) and uid in applied
                else "valid or absent"
            )
            return f"event {_short(uid)}: expected {wanted}, got {found}"
    if got["equivocations"] != expected["equivocations"]:
        extra = [e for e in got["equivocations"] if e not in expected["equivocations"]]
        lacking = [e for e in expected["equivocations"] if e not in got["equivocations"]]
        if lacking:
            return f"missing equivocation {lacking[0]}"
        if extra:
            return f"unexpected equivocation {extra[0]}"
        return "equivocations listed in another order"
    for name in _COUNTS:
        if got[name] != expected[name]:
            return f"{name}: expected {expected[name]}, got {got[name]}"
    want_order, have_order = expected["applied_event_ids"], got["applied_event_ids"]
    if have_order != want_order:
        if not isinstance(have_order, list):
            return "applied_event_ids is not a list"
        for position, (a, b) in enumerate(zip(want_order, have_order, strict=False)):
            if a != b:
                return f"apply order differs at position {position}: expected {_short(a)}, got {_short(b)}"
        return f"applied {len(have_order)} events, expected {len(want_order)}"
    if got["state_sha256"] != expected["state_sha256"]:
        return (
            f"state_sha256: expected {expected['state_sha256']}, got {got['state_sha256']} "
            "(reasons, equivocations, counts and apply order agree: the difference is in `current` or the hashing)"
        )
    return None


def _run_case(folder: Path, case_id: str, command: list[str], timeout: float) -> CaseResult:
    argv = [*command, str(folder / "trusted_keys.json"), str(folder / "bundle.json")]
    try:
        expected = read_json(folder / "expected.json")
    except InputError as exc:
        return CaseResult(case_id, f"corpus problem: {exc.message}")
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return CaseResult(case_id, f"timed out after {timeout:g} s")
    except OSError as exc:
        return CaseResult(case_id, f"cannot run {shlex.join(command)}: {exc.strerror or exc}")
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return CaseResult(case_id, f"exit code {done.returncode}" + (f": {lines[-1]}" if lines else ""))
    try:
        got = loads(done.stdout)
    except InputError as exc:
        return CaseResult(case_id, f"stdout is not a JSON state: {exc.message}")
    return CaseResult(case_id, first_difference(expected, got))


def run_vectors(
    directory: str | os.PathLike[str],
    impl_command: str | Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    only: Collection[str] | None = None,
    jobs: int | None = None,
) -> list[CaseResult]:
    """Run ``impl_command`` on every case of the corpus in ``directory``; results in index order.

    ``impl_command`` is a shell-like string (split with :func:`shlex.split`) or
    an argument list; ``only`` restricts the run to those case ids; ``jobs``
    cases run at once (default: the number of CPUs). Raises
    :class:`~pith_graph.errors.InputError` when the corpus itself is unusable.
    """
    root = Path(directory)
    index = read_json(root / "index.json")
    cases = index.get("cases") if isinstance(index, dict) else None
    if not isinstance(cases, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) for c in cases
    ):
        raise InputError(f"{root / 'index.json'} is not a conformance index", code=codes.E_SHAPE)
    command = shlex.split(impl_command) if isinstance(impl_command, str) else list(impl_command)
    if not command:
        raise InputError("the implementation command is empty", code=codes.E_USAGE)
    chosen = [c for c in cases if only is None or c["id"] in only]
    if only is not None and len(chosen) != len(set(only)):
        unknown = sorted(set(only) - {c["id"] for c in chosen})
        raise InputError(f"no such case: {', '.join(unknown)}", code=codes.E_USAGE)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        futures = [
            pool.submit(_run_case, root / str(c.get("path", c["id"])), c["id"], command, timeout)
            for c in chosen
        ]
        return [f.result() for f in futures]


def format_results(results: Sequence[CaseResult]) -> list[str]:
    """One line per case (``PASS id`` / ``FAIL id: difference``) and a summary line."""
    lines = [f"PASS {r.case_id}" if r.passed else f"FAIL {r.case_id}: {r.difference}" for r in results]
    passed = sum(r.passed for r in results)
    lines.append(f"{passed}/{len(results)} cases passed")
    return lines
