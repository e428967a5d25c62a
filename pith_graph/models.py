"""Typed views of the registry's documents (msgspec Structs).

The models describe shape only. Hashes are never computed over a model: every
hash and signature check works on the JSON object exactly as received (extra
keys included), which is why fields holding hashed content (``payload``,
``canonical_record``, ``events``) stay plain JSON values here.

Every document is read in two steps: :func:`pith_graph.canonical.loads`
(strict JSON: no duplicate keys, NaN, lone surrogates, absurd depth or size)
then one converter per type, built at import time (:func:`decode`).
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeVar

import msgspec
from msgspec import Struct, field

from pith_graph import codes
from pith_graph.canonical import loads
from pith_graph.errors import InputError

__all__ = [
    "Alias",
    "Bundle",
    "BundleSignature",
    "DocumentKind",
    "Equivocation",
    "EquivocationProof",
    "Event",
    "EventSignature",
    "GraphSnapshot",
    "InvalidEvent",
    "PithNumberRecord",
    "PublicKeyEntry",
    "Receipt",
    "Signer",
    "StateDocument",
    "convert",
    "decode",
    "detect_kind",
    "model_for",
]

JSONObject = dict[str, Any]

BUNDLE_TYPE: Final = "pith_open_graph_bundle"
STATE_TYPE: Final = "pith_open_graph_state"
RECORD_TYPE: Final = "pith_number_record"
PROOF_TYPE: Final = "pith_equivocation_proof"
MERGE_VERSION: Final = "pith-open-graph-merge-v1"


class _Doc(Struct, frozen=True, kw_only=True):
    """Base: frozen, keyword-only, unknown fields ignored (they stay in the raw JSON)."""


class Signer(_Doc, frozen=True, kw_only=True):
    """``event.signer``: who signed, with which key."""

    signer_id: str
    key_id: str
    public_key_fingerprint: str
    signer_type: str | None = None


class EventSignature(_Doc, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``event.signature``: Ed25519 over the 32 raw bytes of ``content_sha256``.

    Exactly these members (merge-v1 §6 check 0, decided): the content hash does not
    cover the signature, so a member it allowed would let anyone mint new valid copies.
    """

    signature_status: str
    algorithm: str
    key_id: str
    public_key_fingerprint: str
    signature_b64: str
    signed_message: str
    signed_at: str | None = None


class Event(_Doc, frozen=True, kw_only=True):
    """A signed, content-addressed open-graph event."""

    event_type: str
    subject_pith_number: str
    target: str
    payload: JSONObject
    signer: Signer
    created_at: str
    supersedes: list[str]
    prev_event: str | None
    signature: EventSignature
    content_sha256: str
    event_id: str
    schema_version: str | None = None


class Receipt(_Doc, frozen=True, kw_only=True):
    """A Pith receipt: Ed25519 over the 32 raw bytes of ``canonical_sha256``."""

    kind: str
    key_id: str
    algorithm: str
    signature_b64: str
    signed_message: str
    canonical_sha256: str
    signature_status: str
    public_key_fingerprint: str
    signed_at: str | None = None
    builder_version: str | None = None
    receipt_version: str | None = None
    first_computed_at: str | None = None
    last_reissued_at: str | None = None


class Alias(_Doc, frozen=True, kw_only=True):
    """A source alias (``arxiv``, ``doi``, ``pith_short_8``, ...)."""

    alias_kind: str
    alias_value: str
    created_at: str | None = None


class PublicKeyEntry(_Doc, frozen=True, kw_only=True):
    """A bundle's ``public_keys`` item. Listing a key here does not make it trusted."""

    key_id: str
    algorithm: str | None = None
    format: str | None = None
    public_key_b64: str | None = None
    public_key_hex: str | None = None
    fingerprint_sha256_hex: str | None = None
    fingerprint_sha256_b32_first128bits: str | None = None
    rotates_at: str | None = None


class BundleSignature(_Doc, frozen=True, kw_only=True):
    """``bundle.bundle_signature``: Ed25519 over the 32 raw bytes of ``bundle_sha256``."""

    signature_status: str
    algorithm: str
    key_id: str
    public_key_fingerprint: str
    signature_b64: str
    signed_message: str
    bundle_sha256: str
    signed_at: str | None = None


class Bundle(_Doc, frozen=True, kw_only=True):
    """A portable graph bundle. ``events`` stay raw: each is checked on its own."""

    bundle_type: Literal["pith_open_graph_bundle"]
    bundle_version: str
    pith_number: str
    canonical_record: JSONObject
    canonical_sha256: str
    merge_version: str
    events: list[Any]
    short_pith_number: str | None = None
    source: JSONObject | None = None
    source_aliases: list[Alias] = field(default_factory=list)
    timestamp_proofs: list[Any] = field(default_factory=list)
    mirror_hints: list[Any] = field(default_factory=list)
    public_keys: list[JSONObject] = field(default_factory=list)
    built_at: str | None = None
    links: JSONObject | None = None
    state: JSONObject | None = None
    bundle_signature: BundleSignature | None = None


class InvalidEvent(_Doc, frozen=True, kw_only=True):
    """``state.invalid_events`` item."""

    event_id: str
    reason: str


class Equivocation(_Doc, frozen=True, kw_only=True):
    """``state.equivocations`` item: valid events of one stream naming one predecessor."""

    event_ids: list[str]
    prev_event: str | None
    signer_id: str
    target: str


class StateDocument(_Doc, frozen=True, kw_only=True):
    """A merged state document (``state.json``), as read: the typed view :func:`pith_graph.verify.verify_state` checks.

    Not :class:`pith_graph.state.State`, the state a merge produces.
    """

    state_type: Literal["pith_open_graph_state"]
    state_version: str
    pith_number: str
    merge_version: str
    event_count: int
    valid_event_count: int
    invalid_event_count: int
    equivocation_count: int
    current: JSONObject
    equivocations: list[Equivocation]
    invalid_events: list[InvalidEvent]
    applied_event_ids: list[str]
    state_sha256: str


class PithNumberRecord(_Doc, frozen=True, kw_only=True):
    """A Pith Number record (``pith_number_record``) with its receipt."""

    record_type: Literal["pith_number_record"]
    pith_number: str
    canonical_sha256: str
    canonical_record: JSONObject
    receipt: Receipt
    short_pith_number: str | None = None
    schema_version: str | None = None
    source: JSONObject | None = None
    aliases: list[Alias] = field(default_factory=list)
    graph_snapshot: JSONObject | None = None
    events: list[Any] = field(default_factory=list)


class GraphSnapshot(_Doc, frozen=True, kw_only=True):
    """A graph snapshot. Its inner ``snapshot_sha256`` values are opaque payload."""

    paper: JSONObject
    claims: JSONObject
    source: JSONObject
    builder_version: str
    verdict: JSONObject | None = None
    integrity: JSONObject | None = None
    references: JSONObject | None = None
    formal_canon: JSONObject | None = None
    author_claims: JSONObject | None = None


class EquivocationProof(_Doc, frozen=True, kw_only=True):
    """Self-contained evidence of a fork: conflicting signed events and the key."""

    proof_type: Literal["pith_equivocation_proof"]
    proof_version: str
    subject_pith_number: str
    target: str
    signer_id: str
    prev_event: str | None
    events: list[JSONObject]
    public_key: JSONObject


DocumentKind = Literal["bundle", "state", "record", "graph_snapshot", "equivocation_proof"]

_TYPES: Final[dict[str, type[_Doc]]] = {
    "bundle": Bundle,
    "state": StateDocument,
    "record": PithNumberRecord,
    "graph_snapshot": GraphSnapshot,
    "equivocation_proof": EquivocationProof,
}

T = TypeVar("T", bound=_Doc)


def detect_kind(obj: Any) -> DocumentKind | None:
    """Which Pith document ``obj`` (a parsed JSON value) claims to be, or None."""
    if not isinstance(obj, dict):
        return None
    if obj.get("bundle_type") == BUNDLE_TYPE:
        return "bundle"
    if obj.get("state_type") == STATE_TYPE:
        return "state"
    if obj.get("record_type") == RECORD_TYPE:
        return "record"
    if obj.get("proof_type") == PROOF_TYPE:
        return "equivocation_proof"
    # Graph snapshots carry no type tag; recognise them by their required sections.
    if {"paper", "claims", "source", "builder_version"} <= obj.keys():
        return "graph_snapshot"
    return None


def convert(obj: Any, model: type[T]) -> T:
    """Check a parsed JSON value against ``model``; raise InputError(bad_shape) if it does not fit."""
    try:
        return msgspec.convert(obj, model, strict=True)
    except msgspec.ValidationError as exc:
        raise InputError(f"not a valid {model.__name__}: {exc}", code=codes.E_SHAPE) from exc


def decode(data: bytes | str, model: type[T]) -> T:
    """Strictly parse ``data`` and check it against ``model``."""
    return convert(loads(data), model)


def model_for(kind: DocumentKind) -> type[_Doc]:
    """The model class for a document kind."""
    return _TYPES[kind]
