"""``store check``: the store's fsck (issue 15).

The caches of a store (stage-1 facts, key verdicts, the signature cache) and the
columns indexed beside each body (unit id, digest, event type, ...) are all
functions of the stored bodies. Triggers stop this code and honest clients from
changing them, but not someone who can write the file (they can drop a trigger).
:func:`check_store` re-derives every one of them from the bodies alone, ignoring
the caches, and reports each disagreement: what docs/store.md ("Tampering") says
a forger can do, this finds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pith_graph import ed25519
from pith_graph.canonical import canonical_json_parsed, loads
from pith_graph.ed25519 import Verifier
from pith_graph.errors import PithGraphError
from pith_graph.events import check_keys, inspect_event
from pith_graph.identifiers import PITH_NUMBER_RE
from pith_graph.keys import KeyRing
from pith_graph.store._backend import Backend
from pith_graph.store._facts import FACTS_RULE, ITEM_KINDS, EventRow, FactsRow, ring_from_entries, ring_id

__all__ = ["CheckReport", "Mismatch", "check_store"]


class Mismatch(NamedTuple):
    """One cached or indexed value that the stored bodies contradict."""

    table: str
    row: str
    message: str

    def __str__(self) -> str:
        return f"{self.table} {self.row}: {self.message}"


@dataclass
class CheckReport:
    """What :func:`check_store` re-derived (``checked``, rows by table), what it found, and
    the kept rows no replay ever reads (``ignored``: facts of another rule, key verdicts
    under a ring no one recorded)."""

    mismatches: list[Mismatch] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing disagrees with the bodies."""
        return not self.mismatches


def _parse(body: Any) -> tuple[Any, str | None]:
    """The tree of a stored body, or why it is not one (not bytes, not JSON, not canonical)."""
    if not isinstance(body, bytes):
        return None, f"body is {type(body).__name__}, not bytes"
    try:
        tree = loads(body)
    except PithGraphError as exc:
        return None, f"body is not JSON ({exc.message})"
    if canonical_json_parsed(tree) != body:
        return None, "body is not canonical JSON"
    return tree, None


def check_store(backend: Backend) -> CheckReport:
    """Re-derive every indexed column and cached verdict of a store from its bodies."""
    report = CheckReport()
    bad = report.mismatches.append
    # The rows only (bodies, not parsed trees): a tree is parsed again where a check needs it.
    bodies: dict[int, tuple[str, EventRow]] = {}
    for seq, subject, *columns in backend.audit("events"):
        row = EventRow(subject, *columns)
        tree, problem = _parse(row.body)
        if problem is None and not (isinstance(subject, str) and PITH_NUMBER_RE.fullmatch(subject)):
            problem = f"subject {subject!r} is not a Pith Number"
        if problem is not None:
            bad(Mismatch("events", f"seq {seq}", problem))
            continue
        expected = EventRow.of(subject, tree)
        for name in ("unit_id", "digest", "event_type", "target", "signer_id", "prev_event", "created_at"):
            if getattr(row, name) != getattr(expected, name):
                bad(
                    Mismatch(
                        "events",
                        f"seq {seq}",
                        f"{name} is {getattr(row, name)!r}, the body says {getattr(expected, name)!r}",
                    )
                )
        bodies[seq] = (subject, expected)
    report.checked["events"] = len(bodies)
    _check_items(backend, report)
    _check_facts(backend, report, bodies)
    _check_key_verdicts(backend, report, bodies)
    _check_signatures(backend, report)
    return report


def _check_items(backend: Backend, report: CheckReport) -> None:
    count = 0
    for seq, subject, kind, digest, body in backend.audit("items"):
        count += 1
        tree, problem = _parse(body)
        if problem is None and kind not in ITEM_KINDS:
            problem = f"kind {kind!r} is not one a store keeps"
        if problem is None and not (isinstance(subject, str) and PITH_NUMBER_RE.fullmatch(subject)):
            problem = f"subject {subject!r} is not a Pith Number"
        if problem is None and not isinstance(tree, dict):
            problem = "body is not a JSON object"
        if problem is None and digest != hashlib.sha256(body).hexdigest():
            problem = "digest is not the sha256 of the body"
        if problem is not None:
            report.mismatches.append(Mismatch("items", f"seq {seq}", problem))
    report.checked["items"] = count


def _check_facts(backend: Backend, report: CheckReport, bodies: dict[int, tuple[str, EventRow]]) -> None:
    count = ignored = 0
    for seq, rule, *stored in backend.audit("event_facts"):
        if rule != FACTS_RULE:
            ignored += 1  # another rule's row: never read by this code
            continue
        count += 1
        found = bodies.get(seq)
        if found is None:
            report.mismatches.append(
                Mismatch("event_facts", f"seq {seq}", "facts of no readable stored copy")
            )
            continue
        subject, row = found
        if tuple(stored) != tuple(FactsRow.inspected(subject, row)):
            report.mismatches.append(
                Mismatch("event_facts", f"seq {seq}", "the stage-1 facts are not those of the body")
            )
    report.checked["event_facts"] = count
    report.ignored["event_facts"] = ignored


def _check_key_verdicts(
    backend: Backend, report: CheckReport, bodies: dict[int, tuple[str, EventRow]]
) -> None:
    rings: dict[str, KeyRing | None] = {}
    for ring, entries in backend.audit("key_rings"):
        try:
            key_ring = ring_from_entries(entries)
        except (PithGraphError, TypeError, ValueError) as exc:
            report.mismatches.append(Mismatch("key_rings", f"ring {ring}", f"unreadable entries ({exc})"))
            rings[ring] = None
            continue
        if ring_id(key_ring) != ring:
            report.mismatches.append(
                Mismatch("key_rings", f"ring {ring}", "the entries do not hash to the ring id")
            )
            rings[ring] = None
            continue
        rings[ring] = key_ring
    verifier = Verifier()  # no cache: every signature is verified again
    count = ignored = 0
    for ring, seq, reason in backend.audit("key_verdicts"):
        if ring not in rings:
            ignored += 1  # under a ring no one recorded: never read (Backend.key_verdicts)
            continue
        count += 1
        recorded, found = rings[ring], bodies.get(seq)
        where = f"ring {ring} seq {seq}"
        if recorded is None or found is None:
            why = "its ring cannot be re-derived" if recorded is None else "no readable stored copy"
            report.mismatches.append(
                Mismatch("key_verdicts", where, f"a verdict that cannot be checked: {why}")
            )
            continue
        subject, row = found
        inspected = inspect_event(loads(row.body), subject=subject, uid=row.unit_id)
        # check_keys keeps an intrinsic failure as it is (the verdict a replay keeps).
        expected = check_keys(inspected, subject=subject, keyring=recorded, verifier=verifier).reason
        if expected != reason:
            report.mismatches.append(
                Mismatch("key_verdicts", where, f"kept verdict {reason!r}, the body gives {expected!r}")
            )
    report.checked["key_verdicts"] = count
    report.ignored["key_verdicts"] = ignored


def _check_signatures(backend: Backend, report: CheckReport) -> None:
    count = 0
    for public_key, signature, message, valid in backend.audit("signature_cache"):
        count += 1
        try:
            expected = ed25519.verify(bytes(public_key), bytes(signature), bytes(message))
        except (PithGraphError, TypeError, ValueError):
            expected = False
        if valid not in (0, 1) or bool(valid) != expected:
            where = f"key {bytes(public_key).hex()[:16]} message {bytes(message).hex()[:16]}"
            report.mismatches.append(
                Mismatch(
                    "signature_cache", where, f"kept verdict {valid!r}, the pinned rule says {int(expected)}"
                )
            )
    report.checked["signature_cache"] = count
