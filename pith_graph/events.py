"""merge-v1 stage 1: the checks of a single event, in order.

Each check has a reason code (:data:`pith_graph.codes.EVENT_REASONS`, in the
same order); the first that fails is the event's reason. ``progress`` counts the
checks a copy passed, so that when copies of one event disagree, the copy that
got furthest names the reason (docs/merge-v1.md, "Units and copies").

Hashes are computed over the event as received: canonical JSON of the parsed
object without ``event_id``, ``content_sha256`` and ``signature``, so any extra
key is covered.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed
from pith_graph.ed25519 import Verifier
from pith_graph.keys import KeyRing
from pith_graph.models import Event
from pith_graph.records import check_record, decode_signature
from pith_graph.timestamps import Instant, parse_timestamp

__all__ = [
    "COLLECTIONS",
    "EVENT_ID_RE",
    "EXCLUDED_FROM_CONTENT",
    "MAX_EVENT_BYTES",
    "REQUIRED_TARGETS",
    "CheckedEvent",
    "check_event",
    "content_bytes",
    "unit_id",
]

#: ``sha256:`` + 64 lowercase hex.
EVENT_ID_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
#: Keys left out of the content hash: the hash itself and what signs it.
EXCLUDED_FROM_CONTENT: Final = frozenset({"event_id", "content_sha256", "signature"})
#: Largest accepted event, as canonical content bytes.
MAX_EVENT_BYTES: Final = 1 << 20

#: v1 event types and the ``current`` collection each is applied to
#: (record_created sets ``current.record_created`` instead).
COLLECTIONS: Final = {
    "graph_snapshot": "graph_snapshots",
    "author_attestation": "author_attestations",
    "timestamp_anchor": "timestamp_anchors",
    "storage_attestation": "storage_attestations",
    "citation_signature": "citation_signatures",
    "replication_record": "replication_records",
    "correction": "corrections",
    "mirror_hint": "mirror_hints",
}
RECORD_CREATED: Final = "record_created"
EVENT_TYPES: Final = frozenset({RECORD_CREATED, *COLLECTIONS})
#: Types whose target is fixed.
REQUIRED_TARGETS: Final = {RECORD_CREATED: "record", "graph_snapshot": "graph"}

SIGNATURE_V1: Final = ("ed25519", "signed_v1", "open_graph_event_sha256_bytes")

_PASSED_ALL: Final = len(codes.EVENT_REASONS)


def content_bytes(event: dict[str, Any]) -> bytes:
    """Canonical JSON of the event without the excluded keys (what ``content_sha256`` hashes)."""
    return canonical_json_parsed({k: v for k, v in event.items() if k not in EXCLUDED_FROM_CONTENT})


def unit_id(raw: Any) -> str:
    """The id an event is counted under (merge-v1, "Units and copies").

    Its claimed ``event_id`` when that is well formed, otherwise ``sha256:`` +
    sha256 of the canonical JSON of the whole value as received.
    """
    if isinstance(raw, dict):
        claimed = raw.get("event_id")
        if isinstance(claimed, str) and EVENT_ID_RE.fullmatch(claimed):
            return claimed
    return "sha256:" + hashlib.sha256(canonical_json_parsed(raw)).hexdigest()


@dataclass(frozen=True, slots=True)
class CheckedEvent:
    """The outcome of stage 1 for one copy of an event.

    ``reason`` is None when every stage-1 check passed. ``event`` (the typed
    view) and ``instant`` are set whenever the copy is not ``malformed``.
    """

    unit_id: str
    raw: Any
    reason: str | None
    progress: int
    event: Event | None = None
    instant: Instant | None = None

    @property
    def valid(self) -> bool:
        """True when the copy passed every stage-1 check."""
        return self.reason is None

    @property
    def stream(self) -> tuple[str, str] | None:
        """(target, signer_id), when the copy is well formed."""
        return None if self.event is None else (self.event.target, self.event.signer.signer_id)


def _failed(uid: str, raw: Any, reason: str, event: Event | None = None, instant: Instant | None = None) -> CheckedEvent:
    return CheckedEvent(uid, raw, reason, codes.EVENT_REASONS.index(reason), event, instant)


def _well_formed(raw: Any) -> tuple[Event, Instant, bytes] | None:
    """The typed event, its instant and content bytes, or None if it is malformed."""
    if not isinstance(raw, dict):
        return None
    try:
        event = msgspec.convert(raw, Event, strict=True)
    except msgspec.ValidationError:
        return None
    instant = parse_timestamp(event.created_at)
    if instant is None:
        return None
    if event.signature.signed_at is not None and parse_timestamp(event.signature.signed_at) is None:
        return None
    if not (EVENT_ID_RE.fullmatch(event.event_id) and _HEX64_RE.fullmatch(event.content_sha256)):
        return None
    if event.prev_event is not None and not EVENT_ID_RE.fullmatch(event.prev_event):
        return None
    if len(set(event.supersedes)) != len(event.supersedes) or not all(
        EVENT_ID_RE.fullmatch(s) for s in event.supersedes
    ):
        return None
    if not (event.target and event.signer.signer_id and event.event_type):
        return None
    content = content_bytes(raw)
    if len(content) > MAX_EVENT_BYTES:
        return None
    return event, instant, content


def check_event(
    raw: Any, *, subject: str, keyring: KeyRing, verifier: Verifier, uid: str | None = None
) -> CheckedEvent:
    """Run the stage-1 checks of merge-v1 on one copy of an event (``uid``: its unit id, if known)."""
    uid = uid or unit_id(raw)
    formed = _well_formed(raw)
    if formed is None:
        return _failed(uid, raw, codes.REASON_MALFORMED)
    event, instant, content = formed
    if event.event_id != "sha256:" + event.content_sha256:
        return _failed(uid, raw, codes.REASON_EVENT_ID_MISMATCH, event, instant)
    if hashlib.sha256(content).hexdigest() != event.content_sha256:
        return _failed(uid, raw, codes.REASON_CONTENT_HASH_MISMATCH, event, instant)
    if event.subject_pith_number != subject:
        return _failed(uid, raw, codes.REASON_SUBJECT_MISMATCH, event, instant)
    if event.event_type not in EVENT_TYPES:
        return _failed(uid, raw, codes.REASON_UNKNOWN_EVENT_TYPE, event, instant)
    if REQUIRED_TARGETS.get(event.event_type, event.target) != event.target:
        return _failed(uid, raw, codes.REASON_TARGET_MISMATCH, event, instant)
    sig = event.signature
    if (sig.algorithm, sig.signature_status, sig.signed_message) != SIGNATURE_V1:
        return _failed(uid, raw, codes.REASON_UNSUPPORTED_SIGNATURE, event, instant)
    key = keyring.get(sig.key_id)
    # merge-v1: a key signs nothing created at or after its rotates_at.
    if key is None or not key.signs_at(instant):
        return _failed(uid, raw, codes.REASON_UNKNOWN_KEY, event, instant)
    if not (
        sig.public_key_fingerprint == key.fingerprint_hex
        and event.signer.key_id == sig.key_id
        and event.signer.public_key_fingerprint == key.fingerprint_hex
        and key.signs_as(event.signer.signer_id)  # merge-v1: a bound key signs only as its signer_id
    ):
        return _failed(uid, raw, codes.REASON_KEY_MISMATCH, event, instant)
    signature = decode_signature(sig.signature_b64)
    if signature is None or not verifier.verify(key.public_key, signature, bytes.fromhex(event.content_sha256)):
        return _failed(uid, raw, codes.REASON_BAD_SIGNATURE, event, instant)
    if event.event_type == RECORD_CREATED:
        payload = event.payload
        problems = check_record(
            payload.get("canonical_record"),
            canonical_sha256=payload.get("canonical_sha256"),
            claimed_pith_number=subject,
            receipt=payload.get("receipt"),
            source_fields={
                "kind": payload.get("source_kind"),
                "id": payload.get("source_id"),
                "version": payload.get("source_version"),
            },
            keyring=keyring,
            verifier=verifier,
        )
        receipt = payload.get("receipt")
        # merge-v1: only the holder of the receipt's key may create the record, so no
        # other trusted key can re-issue it and become current.record_created.
        receipt_key = receipt.get("key_id") if isinstance(receipt, dict) else None
        if problems or receipt_key != sig.key_id:
            return _failed(uid, raw, codes.REASON_BAD_RECORD, event, instant)
    return CheckedEvent(uid, raw, None, _PASSED_ALL, event, instant)
