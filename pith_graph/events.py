"""merge-v1 stage 1: the checks of a single event, in order.

Each check has a reason code; :data:`pith_graph.codes.EVENT_REASONS` is their
order, and the only place it is written: the checks themselves are tables by
reason, run in that order. The first that fails is the event's reason. ``progress`` counts the
checks a copy passed, so that when copies of one event disagree, the copy that
got furthest names the reason (merge-v1 §5).

Hashes are computed over the event as received: canonical JSON of the parsed
object without ``event_id``, ``content_sha256`` and ``signature``, so any extra
key is covered.

Stage 1 runs in two parts. :func:`inspect_event` runs the checks that depend
on the copy's bytes and the subject only (the first :data:`INTRINSIC_CHECKS`
reasons) and returns the :class:`EventFacts` later stages need, with the
canonical ``signer`` and ``payload`` fragments; :func:`check_keys` runs the
checks that depend on the trusted keys. :func:`check_event` is both. The event
store keeps the first part per stored copy (it never changes) and replays only
the second (docs/store.md, "Warm replay").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import msgspec

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed, canonical_lines, loads, loads_accepted
from pith_graph.ed25519 import Verifier
from pith_graph.keys import KeyRing, TrustedKey
from pith_graph.models import Event
from pith_graph.records import check_record, decode_signature
from pith_graph.timestamps import parse_timestamp

__all__ = [
    "COLLECTIONS",
    "EVENT_ID_RE",
    "EXCLUDED_FROM_CONTENT",
    "INSPECT_REVISION",
    "INTRINSIC_CHECKS",
    "KEY_CHECK_REVISION",
    "MAX_EVENT_BYTES",
    "REQUIRED_TARGETS",
    "CheckedEvent",
    "EventFacts",
    "check_event",
    "check_keys",
    "content_bytes",
    "inspect_event",
    "unit_id",
]

#: ``sha256:`` + 64 lowercase hex.
EVENT_ID_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
#: Keys left out of the content hash: the hash itself and what signs it.
EXCLUDED_FROM_CONTENT: Final = frozenset({"event_id", "content_sha256", "signature"})
#: Largest accepted event: canonical bytes of the whole event, signature included.
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


class _RecordMember(msgspec.Struct):
    canonical_record: msgspec.Raw


_RECORD_MEMBER: Final = msgspec.json.Decoder(_RecordMember)
_PASSED_ALL: Final = len(codes.EVENT_REASONS)
#: How many of the stage-1 checks depend only on the copy and the subject (not on keys).
INTRINSIC_CHECKS: Final = codes.EVENT_REASONS.index(codes.REASON_UNKNOWN_KEY)
_SORTED: Final = msgspec.json.Encoder(order="sorted")
#: Checks passed by a copy failing with each stage-1 reason.
_PROGRESS: Final = {reason: index for index, reason in enumerate(codes.EVENT_REASONS)}


def content_bytes(event: dict[str, Any]) -> bytes:
    """Canonical JSON of the event without the excluded keys (what ``content_sha256`` hashes)."""
    return canonical_json_parsed({k: v for k, v in event.items() if k not in EXCLUDED_FROM_CONTENT})


def unit_id(raw: Any) -> str:
    """The id an event is counted under (merge-v1 §5).

    Its claimed ``event_id`` when that is well formed, otherwise ``sha256:`` +
    sha256 of the canonical JSON of the whole value as received.
    """
    if isinstance(raw, dict):
        claimed = raw.get("event_id")
        if isinstance(claimed, str) and EVENT_ID_RE.fullmatch(claimed):
            return claimed
    return "sha256:" + hashlib.sha256(canonical_json_parsed(raw)).hexdigest()


#: Bumped whenever what :func:`inspect_event` returns for some copy changes (its
#: checks, or the :class:`EventFacts` it reads): stores drop facts kept under another revision.
INSPECT_REVISION: Final = 3
#: Bumped whenever what :func:`check_keys` decides for some copy and keys changes
#: (stores drop key verdicts kept under another revision).
KEY_CHECK_REVISION: Final = 2


class EventFacts(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    """What the key checks and stages 2-4 need to know of a well-formed copy.

    Read from the typed view once; small, immutable and encodable (the event
    store keeps it per stored copy, so a warm replay never parses the event).
    ``gc=False``: it holds only strings, bytes and tuples of strings, so it can
    never be part of a reference cycle.
    """

    event_id: str
    event_type: str
    target: str
    signer_id: str
    created_at: str
    #: ``created_at`` as an instant (merge-v1 §6 compares instants, never text).
    instant: tuple[int, int]
    prev_event: str | None
    supersedes: tuple[str, ...]
    content_sha256: str
    #: ``signature.key_id`` and ``signature.public_key_fingerprint``.
    key_id: str
    fingerprint: str
    #: ``signer.key_id`` and ``signer.public_key_fingerprint``.
    signer_key_id: str
    signer_fingerprint: str
    signature_b64: str
    #: ``signature_b64`` decoded (None when it is not 64 bytes of base64: ``bad_signature``).
    signature: bytes | None
    #: The signed message: the 32 raw bytes of ``content_sha256``.
    message: bytes

    @property
    def stream(self) -> tuple[str, str]:
        """merge-v1 §7: a stream is (target, signer_id)."""
        return (self.target, self.signer_id)


class CheckedEvent(msgspec.Struct, frozen=True):
    """The outcome of stage 1 (or of its intrinsic part) for one copy of an event.

    ``reason`` is the first failing check, None when none failed so far;
    ``progress`` counts the checks passed (:attr:`valid` once all passed).
    ``facts`` and the canonical ``signer_json``/``payload_json`` fragments are
    set whenever the copy is not ``malformed``. ``raw`` is the value as
    received, or its unparsed text (a ``msgspec.Raw``, see :meth:`value`), or
    None when replayed from a store's facts; ``digest`` the sha256 hex of its
    canonical bytes, when known.

    A Struct rather than a dataclass: stage 1 makes two or three per copy, and a
    frozen dataclass's constructor costs about ten times as much.
    """

    unit_id: str
    raw: Any
    reason: str | None
    progress: int
    facts: EventFacts | None = None
    signer_json: bytes = b""
    payload_json: bytes = b""
    digest: str | None = None

    @property
    def valid(self) -> bool:
        """True when the copy passed every stage-1 check."""
        return self.progress == _PASSED_ALL

    @property
    def stream(self) -> tuple[str, str] | None:
        """(target, signer_id), when the copy is well formed."""
        return None if self.facts is None else self.facts.stream

    @property
    def instant(self) -> tuple[int, int] | None:
        """``created_at`` as an instant, when the copy is well formed."""
        return None if self.facts is None else self.facts.instant

    def canonical_digest(self) -> str:
        """sha256 hex of the canonical bytes of the copy (ties between copies are broken by it)."""
        if self.digest is not None:
            return self.digest
        return hashlib.sha256(canonical_json_parsed(self.value())).hexdigest()

    def value(self) -> Any:
        """The copy as received, as plain JSON values (``raw`` may hold its unparsed text)."""
        if isinstance(self.raw, msgspec.Raw):
            # Text that parsed strictly once (rebuild_state's streaming path) parses again.
            return loads(bytes(self.raw))
        return self.raw

    def payload(self) -> Any:
        """The payload as plain JSON values (parsed from its canonical bytes if needed).

        ``payload_json`` is this library's canonical encoding of a strictly parsed
        value, so reading it back needs none of the strict parser's checks.
        """
        if isinstance(self.raw, dict) and "payload" in self.raw:
            return self.raw["payload"]
        return loads_accepted(self.payload_json)

    def canonical_record_json(self) -> bytes:
        """Canonical JSON of ``payload.canonical_record`` (of a well-formed record_created copy).

        Cut from ``payload_json`` without decoding the rest: canonical JSON is
        compositional, so a member's value in a canonical object is that value's
        canonical JSON, byte for byte.
        """
        return bytes(_RECORD_MEMBER.decode(self.payload_json).canonical_record)

    def with_reason(self, reason: str | None) -> CheckedEvent:
        """This copy with the verdict of a later check (None: every check passed)."""
        progress = _PASSED_ALL if reason is None else _PROGRESS[reason]
        return CheckedEvent(
            self.unit_id,
            self.raw,
            reason,
            progress,
            self.facts,
            self.signer_json,
            self.payload_json,
            self.digest,
        )


def _fragments(raw: dict[str, Any]) -> tuple[bytes, bytes, bytes, bytes]:
    """Canonical signer, payload and content bytes, each fragment encoded once, and the
    canonical object of the excluded members.

    Canonical JSON is compositional, so the content (the event without the
    excluded keys) is the sorted object with both fragments spliced in raw.
    A float anywhere sends that part to the reference encoder (see
    :func:`pith_graph.canonical.canonical_json_parsed`).
    """
    signer_json, payload_json, excluded = canonical_lines(
        [raw["signer"], raw["payload"], {k: raw[k] for k in EXCLUDED_FROM_CONTENT}]
    )
    rest = {k: v for k, v in raw.items() if k not in EXCLUDED_FROM_CONTENT}
    rest["signer"] = msgspec.Raw(signer_json)
    rest["payload"] = msgspec.Raw(payload_json)
    try:
        content = _SORTED.encode(rest)
    except TypeError:  # a float among the other members: the reference rule for the whole
        content = content_bytes(raw)
    return signer_json, payload_json, content, excluded


def _facts(raw: Any) -> tuple[EventFacts, bytes, bytes, bytes] | None:
    """The facts, signer and payload fragments and content bytes of a copy, or None if malformed."""
    if not isinstance(raw, dict):
        return None
    try:
        event = msgspec.convert(raw, Event, strict=True)
    except msgspec.ValidationError:
        return None
    instant = parse_timestamp(event.created_at)
    if instant is None:
        return None
    sig, signer = event.signature, event.signer
    # (signed_at usually repeats created_at, which has just been parsed.)
    if (
        sig.signed_at is not None
        and sig.signed_at != event.created_at
        and parse_timestamp(sig.signed_at) is None
    ):
        return None
    if not (EVENT_ID_RE.fullmatch(event.event_id) and _HEX64_RE.fullmatch(event.content_sha256)):
        return None
    if event.prev_event is not None and not EVENT_ID_RE.fullmatch(event.prev_event):
        return None
    if event.supersedes and (
        len(set(event.supersedes)) != len(event.supersedes)
        or not all(EVENT_ID_RE.fullmatch(s) for s in event.supersedes)
    ):
        return None
    if not (event.target and signer.signer_id and event.event_type):
        return None
    signer_json, payload_json, content, excluded = _fragments(raw)
    # merge-v1 §6 check 0 (decided): the whole event, signature included, is at most
    # 1 MiB. The hashed content is a sorted object, so adding the excluded members
    # adds their own canonical object's length less one byte ("}{" becomes ",").
    if len(content) + len(excluded) - 1 > MAX_EVENT_BYTES:
        return None
    facts = EventFacts(
        event_id=event.event_id,
        event_type=event.event_type,
        target=event.target,
        signer_id=signer.signer_id,
        created_at=event.created_at,
        instant=instant,
        prev_event=event.prev_event,
        supersedes=tuple(event.supersedes),
        content_sha256=event.content_sha256,
        key_id=sig.key_id,
        fingerprint=sig.public_key_fingerprint,
        signer_key_id=signer.key_id,
        signer_fingerprint=signer.public_key_fingerprint,
        signature_b64=sig.signature_b64,
        signature=decode_signature(sig.signature_b64),
        message=bytes.fromhex(event.content_sha256),
    )
    return facts, signer_json, payload_json, content


def inspect_event(raw: Any, *, subject: str, uid: str | None = None) -> CheckedEvent:
    """The intrinsic stage-1 checks of one copy: those that depend on its bytes and the subject only.

    A ``reason`` in the result is final; otherwise ``progress`` is
    :data:`INTRINSIC_CHECKS` and :func:`check_keys` decides the rest.
    """
    uid = uid or unit_id(raw)
    found = _facts(raw)
    if found is None:
        return CheckedEvent(uid, raw, codes.REASON_MALFORMED, 0)
    facts, signer_json, payload_json, content = found
    copy = _Copy(raw, facts, content, subject)
    for progress, fails in _INTRINSIC_ORDER:
        if fails(copy):
            return CheckedEvent(
                uid, raw, codes.EVENT_REASONS[progress], progress, facts, signer_json, payload_json
            )
    return CheckedEvent(uid, raw, None, INTRINSIC_CHECKS, facts, signer_json, payload_json)


def check_keys(checked: CheckedEvent, *, subject: str, keyring: KeyRing, verifier: Verifier) -> CheckedEvent:
    """The stage-1 checks that depend on the trusted keys, after :func:`inspect_event` passed."""
    facts = checked.facts
    if checked.reason is not None or facts is None or checked.valid:
        return checked  # already decided (an event store replays verdicts it kept)
    signed = _Signed(checked, facts, keyring.get(facts.key_id), subject, keyring, verifier)
    for reason, fails in _KEY_ORDER:
        if fails(signed):
            return checked.with_reason(reason)
    return checked.with_reason(None)


def _creates_record(
    payload: Any, facts: EventFacts, subject: str, keyring: KeyRing, verifier: Verifier
) -> bool:
    """merge-v1 §6 check 10 (``bad_record``) for a signed record_created payload."""
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
    # merge-v1 §6 check 10: only the holder of the receipt's key may create the record,
    # and only a key the caller lets sign as the registry (pith.science) may hold it, so
    # no other trusted key can re-issue the record and become current.record_created.
    receipt_key = receipt.get("key_id") if isinstance(receipt, dict) else None
    key = keyring.get(facts.key_id)
    return not problems and receipt_key == facts.key_id and key is not None and key.creates_records


class _Copy(NamedTuple):
    """A well-formed copy, as the intrinsic checks read it."""

    raw: dict[str, Any]
    facts: EventFacts
    content: bytes
    subject: str


class _Signed(NamedTuple):
    """A copy that passed the intrinsic checks, as the key checks read it (``key``: its trusted key, if any)."""

    checked: CheckedEvent
    facts: EventFacts
    key: TrustedKey | None
    subject: str
    keyring: KeyRing
    verifier: Verifier


def _key_mismatch(s: _Signed) -> bool:
    key = s.key
    return key is None or not (
        s.facts.fingerprint == key.fingerprint_hex
        and s.facts.signer_key_id == s.facts.key_id
        and s.facts.signer_fingerprint == key.fingerprint_hex
        and key.signs_as(s.facts.signer_id)  # merge-v1 §4: a bound key signs only as its signer_id
    )


def _bad_signature(s: _Signed) -> bool:
    signature = s.facts.signature
    return (
        s.key is None
        or signature is None
        or not s.verifier.verify(s.key.public_key, signature, s.facts.message)
    )


#: merge-v1 §6: when each stage-1 check after ``malformed`` fails, by its reason. The
#: order they run in is not here but in :data:`pith_graph.codes.EVENT_REASONS`.
_FAILS_INTRINSIC: Final[dict[str, Callable[[_Copy], bool]]] = {
    codes.REASON_EVENT_ID_MISMATCH: lambda c: c.facts.event_id != "sha256:" + c.facts.content_sha256,
    codes.REASON_CONTENT_HASH_MISMATCH: lambda c: (
        hashlib.sha256(c.content).hexdigest() != c.facts.content_sha256
    ),
    codes.REASON_SUBJECT_MISMATCH: lambda c: c.raw["subject_pith_number"] != c.subject,
    codes.REASON_UNKNOWN_EVENT_TYPE: lambda c: c.facts.event_type not in EVENT_TYPES,
    codes.REASON_TARGET_MISMATCH: lambda c: (
        REQUIRED_TARGETS.get(c.facts.event_type, c.facts.target) != c.facts.target
    ),
    codes.REASON_UNSUPPORTED_SIGNATURE: lambda c: (
        (
            c.raw["signature"]["algorithm"],
            c.raw["signature"]["signature_status"],
            c.raw["signature"]["signed_message"],
        )
        != SIGNATURE_V1
    ),
}
_FAILS_KEYS: Final[dict[str, Callable[[_Signed], bool]]] = {
    # merge-v1 §4: a key signs nothing created at or after its rotates_at.
    codes.REASON_UNKNOWN_KEY: lambda s: s.key is None or not s.key.signs_at(s.facts.instant),
    codes.REASON_KEY_MISMATCH: _key_mismatch,
    codes.REASON_BAD_SIGNATURE: _bad_signature,
    codes.REASON_BAD_RECORD: lambda s: (
        s.facts.event_type == RECORD_CREATED
        and not _creates_record(s.checked.payload(), s.facts, s.subject, s.keyring, s.verifier)
    ),
}
#: The two tables in check order: (checks passed before it, when it fails).
_INTRINSIC_ORDER: Final = tuple(
    (progress, _FAILS_INTRINSIC[reason])
    for progress, reason in enumerate(codes.EVENT_REASONS)
    if 0 < progress < INTRINSIC_CHECKS
)
_KEY_ORDER: Final = tuple((reason, _FAILS_KEYS[reason]) for reason in codes.EVENT_REASONS[INTRINSIC_CHECKS:])


def check_event(
    raw: Any, *, subject: str, keyring: KeyRing, verifier: Verifier, uid: str | None = None
) -> CheckedEvent:
    """Run the stage-1 checks of merge-v1 on one copy of an event (``uid``: its unit id, if known)."""
    return check_keys(
        inspect_event(raw, subject=subject, uid=uid), subject=subject, keyring=keyring, verifier=verifier
    )
