"""Equivocation proofs: a fork as self-contained evidence anyone can check offline.

merge-v1 §8: two or more valid events of one stream (``target``,
``signer_id``) naming the same ``prev_event`` are an equivocation. A proof
holds those signed events exactly as received and the public key that signed
them::

    {"proof_type": "pith_equivocation_proof", "proof_version": "1.0",
     "subject_pith_number": ..., "target": ..., "signer_id": ..., "prev_event": ...,
     "events": [...], "public_key": {key entry}}

:func:`verify_proof` needs nothing else but the caller's trusted keys: the
enclosed key must be one of them (a proof never vouches for its own key, as a
bundle never does: otherwise ``proof_untrusted_key``), every event must pass the
stage-1 checks of merge-v1 (ids, content hashes, subject, the pinned Ed25519
rule) under the caller's entry for that key, and all must share the stream and
predecessor with distinct ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from pith_graph import codes
from pith_graph.documents import Document, DocumentSource, read_json
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, TrustError
from pith_graph.events import check_event
from pith_graph.keys import KeyRing, TrustedKey, TrustedKeys, coerce_ring
from pith_graph.merge import MergeResult
from pith_graph.models import PROOF_TYPE, EquivocationProof
from pith_graph.rebuild import rebuild
from pith_graph.report import Problem, Report

__all__ = ["PROOF_VERSION", "make_proofs", "proof_report", "proofs_from_result", "verify_proof"]

PROOF_VERSION: Final = "1.0"


def proofs_from_result(result: MergeResult, ring: KeyRing) -> list[dict[str, Any]]:
    """One proof per equivocation of a merge (``ring``: the keys the merge trusted).

    The conflicting events of a fork may in principle be signed with different
    keys of one signer; a proof encloses one key, so the events are grouped by
    signing key and a proof is made for every group of two or more.
    """
    state = result.state
    proofs: list[dict[str, Any]] = []
    for fork in state.equivocations:
        by_key: dict[str, list[Any]] = defaultdict(list)
        for uid in fork["event_ids"]:
            checked = result.units[uid]
            assert checked.facts is not None  # forks are made of valid events
            by_key[checked.facts.key_id].append(checked.raw)
        for key_id, events in sorted(by_key.items()):
            key = ring.get(key_id)
            if key is None or len(events) < 2:
                continue
            proofs.append(
                {
                    "proof_type": PROOF_TYPE,
                    "proof_version": PROOF_VERSION,
                    "subject_pith_number": state.pith_number,
                    "target": fork["target"],
                    "signer_id": fork["signer_id"],
                    "prev_event": fork["prev_event"],
                    "events": events,
                    "public_key": key.to_entry(),
                }
            )
    return proofs


def make_proofs(
    bundle_source: DocumentSource | Document,
    *,
    trusted_keys: TrustedKeys = None,
    trust_bundle_keys: bool = False,
) -> list[dict[str, Any]]:
    """Rebuild a bundle and return a proof for each of its equivocations.

    Trust works as in :func:`pith_graph.rebuild.rebuild_state`: a fork is only
    a fork between events valid under the caller's keys.
    """
    result, _, _, ring = rebuild(
        bundle_source, trusted_keys=trusted_keys, trust_bundle_keys=trust_bundle_keys
    )
    return proofs_from_result(result, ring)


def _problem(message: str, where: str | None = None) -> Problem:
    return Problem(codes.P_PROOF, message, where)


def proof_report(
    obj: Any, source: str, *, trusted_keys: TrustedKeys = None, verifier: Verifier | None = None
) -> Report:
    """:func:`verify_proof` as a report naming the enclosed key (``key_id``, ``fingerprint``)."""
    problems = verify_proof(obj, trusted_keys=trusted_keys, verifier=verifier)
    entry = obj.get("public_key") if isinstance(obj, Mapping) else None
    facts: dict[str, Any] = {}
    if isinstance(entry, Mapping):
        try:
            key = TrustedKey.from_entry(entry)
            facts = {"key_id": key.key_id, "fingerprint": key.fingerprint_hex}
        except TrustError:
            facts = {"key_id": str(entry.get("key_id"))}
    return Report("equivocation_proof", source, tuple(problems), facts)


def verify_proof(
    obj: Any, *, trusted_keys: TrustedKeys = None, verifier: Verifier | None = None
) -> list[Problem]:
    """Check an equivocation proof offline; an empty list means it proves a fork.

    ``obj`` is the parsed proof; a mapping built in Python is first normalised
    like any document (:func:`pith_graph.documents.read_json`), so hashes never
    depend on how it was built. ``trusted_keys``: the caller's keys (default: the
    registry key); the enclosed key must be one of them, same key id and material
    (``proof_untrusted_key``), and the events are checked under the caller's entry
    (its binding and rotation), never under the enclosed one.
    """
    try:
        obj = read_json(obj) if isinstance(obj, Mapping) else obj
    except InputError as exc:
        return [_problem(f"not a JSON document: {exc.message}")]
    try:
        proof = msgspec.convert(obj, EquivocationProof, strict=True)
    except msgspec.ValidationError as exc:
        return [_problem(f"not a valid equivocation proof: {exc}")]
    problems: list[Problem] = []
    if proof.proof_version != PROOF_VERSION:
        problems.append(_problem(f"unsupported proof_version {proof.proof_version!r}", "proof_version"))
    try:
        enclosed = TrustedKey.from_entry(proof.public_key)
    except TrustError as exc:
        return [*problems, _problem(f"unusable public_key: {exc.message}", "public_key")]
    key = coerce_ring(trusted_keys).get(enclosed.key_id)
    if key is None or key.public_key != enclosed.public_key:
        why = "is not among the trusted keys" if key is None else "is not the trusted key of that id"
        return [
            *problems,
            Problem(
                codes.P_PROOF_UNTRUSTED_KEY,
                f"the enclosed key {enclosed.key_id!r} (fingerprint {enclosed.fingerprint_hex}) {why}: "
                "a proof never vouches for its own key",
                "public_key",
            ),
        ]
    if len(proof.events) < 2:
        problems.append(_problem(f"a fork needs at least 2 events, got {len(proof.events)}", "events"))
    ring = KeyRing([key])
    verifier = verifier or Verifier()
    seen: set[str] = set()
    for index, raw in enumerate(proof.events):
        where = f"events[{index}]"
        checked = check_event(raw, subject=proof.subject_pith_number, keyring=ring, verifier=verifier)
        # The signature is checked before bad_record (merge-v1 §6, checks 9 and 10): a
        # record_created whose receipt names another key is still signed by the enclosed key.
        if checked.reason not in (None, codes.REASON_BAD_RECORD) or checked.facts is None:
            problems.append(
                _problem(f"event fails merge-v1 check {checked.reason!r} under the enclosed key", where)
            )
            continue
        event = checked.facts
        if event.stream != (proof.target, proof.signer_id):
            problems.append(
                _problem(
                    f"event is in stream ({event.target!r}, {event.signer_id!r}), not the proof's", where
                )
            )
        if event.prev_event != proof.prev_event:
            problems.append(
                _problem(f"event names prev_event {event.prev_event!r}, not {proof.prev_event!r}", where)
            )
        if checked.unit_id in seen:
            problems.append(_problem(f"event {checked.unit_id} is listed twice", where))
        seen.add(checked.unit_id)
    return problems
