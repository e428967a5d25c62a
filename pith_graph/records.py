"""Checks of a canonical record and its Pith receipt.

Shared by the ``bad_record`` check of a ``record_created`` event (merge-v1) and
by the verification of Pith Number records and bundles: the same rule, one
implementation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError
from pith_graph.identifiers import PITH_NUMBER_RE, pith_number
from pith_graph.keys import KeyRing
from pith_graph.models import Receipt

__all__ = ["RecordProblem", "check_receipt", "check_record"]

RECEIPT_SIGNED_MESSAGE = "canonical_sha256_bytes"


@dataclass(frozen=True)
class RecordProblem:
    """One failed check: a problem code from :mod:`pith_graph.codes` and a message."""

    code: str
    message: str


def decode_signature(signature_b64: str) -> bytes | None:
    """The 64 signature bytes of a base64 field, or None if it is not their canonical base64 text.

    merge-v1 §3 (decided): only the one canonical spelling (padding, zero unused bits)
    is accepted, so a signature cannot be re-spelt into a new copy of its event.
    """
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != signature_b64:
        return None
    return raw


def check_receipt(
    receipt_obj: Any, canonical_sha256: str, keyring: KeyRing, verifier: Verifier
) -> list[RecordProblem]:
    """Check a Pith receipt: v1 fields, trusted key, Ed25519 over the digest bytes."""
    try:
        receipt = msgspec.convert(receipt_obj, Receipt, strict=True)
    except msgspec.ValidationError as exc:
        return [RecordProblem(codes.P_SHAPE, f"receipt is not well formed: {exc}")]
    if (receipt.kind, receipt.algorithm, receipt.signature_status, receipt.signed_message) != (
        "pith_receipt",
        "ed25519",
        "signed_v1",
        RECEIPT_SIGNED_MESSAGE,
    ):
        return [RecordProblem(codes.P_RECEIPT_UNSUPPORTED, "receipt is not a signed_v1 ed25519 pith_receipt")]
    if receipt.canonical_sha256 != canonical_sha256:
        return [RecordProblem(codes.P_CANONICAL_HASH, "receipt names a different canonical_sha256")]
    key = keyring.get(receipt.key_id)
    if key is None:
        return [RecordProblem(codes.P_RECEIPT_UNKNOWN_KEY, f"receipt key {receipt.key_id!r} is not trusted")]
    if receipt.public_key_fingerprint != key.fingerprint_hex:
        return [
            RecordProblem(codes.P_RECEIPT_KEY_MISMATCH, "receipt fingerprint does not match the trusted key")
        ]
    signature = decode_signature(receipt.signature_b64)
    try:
        message = bytes.fromhex(canonical_sha256)
    except ValueError:
        message = b""
    if signature is None or len(message) != 32 or not verifier.verify(key.public_key, signature, message):
        return [RecordProblem(codes.P_RECEIPT_SIGNATURE, "receipt signature does not verify")]
    return []


def check_record(
    canonical_record: Any,
    *,
    canonical_sha256: Any,
    claimed_pith_number: str,
    receipt: Any,
    source_fields: Mapping[str, Any] | None,
    require_receipt: bool = True,
    keyring: KeyRing,
    verifier: Verifier,
) -> list[RecordProblem]:
    """Every check of a canonical record and the claims made about it.

    ``canonical_sha256`` must hash the record, ``claimed_pith_number`` must be
    its Pith Number, the receipt must verify, and ``source_fields`` (the
    ``source_kind``/``source_id``/``source_version`` of a record_created payload,
    or a record document's ``source`` object) must agree with ``record.source``.
    The first failing check ends the list, except that the source check always runs.
    With ``require_receipt=False`` (a bundle's top-level record), the receipt is skipped.
    """
    if not isinstance(canonical_record, dict):
        return [RecordProblem(codes.P_SHAPE, "canonical_record is not an object")]
    digest = hashlib.sha256(canonical_json_parsed(canonical_record)).digest()
    if canonical_sha256 != digest.hex():
        return [RecordProblem(codes.P_CANONICAL_HASH, "canonical_sha256 does not hash the canonical record")]
    try:
        expected_number = pith_number(canonical_record, digest=digest)
    except InputError as exc:
        return [RecordProblem(codes.P_SHAPE, exc.message)]
    problems: list[RecordProblem] = []
    if claimed_pith_number != expected_number or not PITH_NUMBER_RE.fullmatch(claimed_pith_number):
        problems.append(
            RecordProblem(
                codes.P_PITH_NUMBER, f"Pith Number should be {expected_number}, not {claimed_pith_number}"
            )
        )
    if require_receipt:
        problems += check_receipt(receipt, digest.hex(), keyring, verifier)
    source = canonical_record.get("source")
    if source_fields is not None:
        record_source = source if isinstance(source, dict) else {}
        for name in ("kind", "id", "version"):
            mine, theirs = record_source.get(name), source_fields.get(name)
            # Strict: version 2 and version 2.0 (or True) are different claims.
            if type(mine) is not type(theirs) or mine != theirs:
                problems.append(
                    RecordProblem(codes.P_SOURCE, f"source {name} disagrees with the canonical record")
                )
                break
    return problems
