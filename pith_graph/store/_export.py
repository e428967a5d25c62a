"""Helpers of :meth:`EventStore.export_bundle <pith_graph.store.EventStore.export_bundle>`: a bundle in the registry's shape."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pith_graph import codes
from pith_graph.canonical import canonical_json, loads, sha256_hex
from pith_graph.errors import PithGraphError, StoreError
from pith_graph.identifiers import PITH_NUMBER_RE, pith_number, short_pith_number
from pith_graph.models import BUNDLE_TYPE, MERGE_VERSION
from pith_graph.state import State

__all__ = ["BundleSigner", "bundle_document", "canonical_record", "utc_now"]


class BundleSigner(Protocol):
    """A mirror key able to sign an exported bundle (e.g. :class:`pith_graph.testing.TestKey`)."""

    key_id: str
    fingerprint: str

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed(bundle: dict[str, Any], signer: BundleSigner, signed_at: str) -> dict[str, Any]:
    """``bundle`` plus a ``bundle_signature`` over ``bundle_sha256`` (FORMAT-FACTS: "Signatures")."""
    digest = hashlib.sha256(canonical_json(bundle)).hexdigest()
    signature = signer.sign(bytes.fromhex(digest))
    return {
        **bundle,
        "bundle_signature": {
            "signature_status": "signed_v1",
            "algorithm": "ed25519",
            "key_id": signer.key_id,
            "public_key_fingerprint": signer.fingerprint,
            "signature_b64": base64.b64encode(signature).decode("ascii"),
            "signed_message": "bundle_sha256_bytes",
            "signed_at": signed_at,
            "bundle_sha256": digest,
        },
    }


def canonical_record(subject: str, state: State, stored: Sequence[Any]) -> dict[str, Any]:
    """The subject's canonical record: the applied record_created's, else a stored one naming the subject."""
    if state.canonical_record is not None:
        record: dict[str, Any] = loads(state.canonical_record)
        return record
    candidates = [r for r in stored if isinstance(r, dict)]
    for candidate in sorted(candidates, key=canonical_json):
        try:
            if pith_number(candidate) == subject:
                return candidate
        except PithGraphError:
            continue
    if candidates:
        # What was received, even if it names another number: evidence, not a guess.
        return min(candidates, key=canonical_json)
    raise StoreError(f"no canonical record is known for {subject!r}", code=codes.E_STORE_UNKNOWN_SUBJECT)


def bundle_document(
    subject: str,
    state: State,
    events: list[Any],
    items: Mapping[str, list[Any]],
    *,
    sign_with: BundleSigner | None,
    built_at: str | None,
) -> dict[str, Any]:
    """The bundle of ``subject``: its ``events`` (parsed, in export order), stored ``items`` and merged ``state``."""
    record = canonical_record(subject, state, items["record"])
    when = built_at or utc_now()
    bundle: dict[str, Any] = {
        "bundle_type": BUNDLE_TYPE,
        "bundle_version": "1.0",
        "pith_number": subject,
    }
    if PITH_NUMBER_RE.fullmatch(subject):
        bundle["short_pith_number"] = short_pith_number(subject)
    bundle.update(
        {
            "canonical_record": record,
            "canonical_sha256": sha256_hex(canonical_json(record)),
            "source": record.get("source"),
            "source_aliases": sorted(
                items["alias"],
                key=lambda a: (str(a.get("alias_kind")), str(a.get("alias_value")), canonical_json(a)),
            ),
            "events": events,
            "timestamp_proofs": items["timestamp_proof"],
            "mirror_hints": items["mirror_hint"],
            "public_keys": sorted(
                items["public_key"], key=lambda k: (str(k.get("key_id")), canonical_json(k))
            ),
            "merge_version": MERGE_VERSION,
            "built_at": when,
            "state": state.to_dict(),
        }
    )
    return signed(bundle, sign_with, when) if sign_with is not None else bundle
