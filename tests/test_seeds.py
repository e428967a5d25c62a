"""The registry's own documents: every FORMAT-FACTS rule, byte for byte.

Expected values come from the documents themselves, checked with the standard
library and ``cryptography``; pith_graph only supplies the value under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pith_graph import canonical_json, canonical_sha256, pith_number, rebuild_state, short_pith_number
from pith_graph.canonical import canonical_json_parsed, loads
from pith_graph.identifiers import derived_aliases, fingerprint_b32, fingerprint_hex, pith_code
from pith_graph.keys import KeyRing
from tests.helpers import (
    FIXTURES,
    REGISTRY_FINGERPRINT,
    REGISTRY_KEY_HEX,
    REGISTRY_KEY_ID,
    ref_canonical,
    ref_content_sha256,
    ref_state_sha256,
    seed,
    seed_bytes,
)

BUNDLE = "bundle-AG3PAJ22.json"
REGISTRY_PUBLIC = Ed25519PublicKey.from_public_bytes(bytes.fromhex(REGISTRY_KEY_HEX))


def registry_verifies(signature_b64: str, message: bytes) -> bool:
    """Ed25519 verification with cryptography directly, under the FORMAT-FACTS key."""
    try:
        REGISTRY_PUBLIC.verify(base64.b64decode(signature_b64), message)
    except InvalidSignature:
        return False
    return True


def embedded_state_bytes() -> bytes:
    """The bundle's embedded state exactly as the registry serialised it.

    Cut from the file text: ``"state":{`` (the ``links`` object also has a
    ``"state"`` key, whose value is a string) up to ``,"bundle_signature"``.
    """
    text = seed_bytes(BUNDLE)
    marker = b'"state":{'
    assert text.count(marker) == 1 and text.count(b',"bundle_signature"') == 1
    start = text.index(marker) + len(marker) - 1
    end = text.index(b',"bundle_signature"')
    return text[start:end]


# --- the headline: rebuilding the registry's bundle --------------------------------


def test_rebuilt_state_is_byte_identical_to_the_registry_state() -> None:
    state = rebuild_state(seed_bytes(BUNDLE))
    embedded = embedded_state_bytes()
    assert state.to_json() == embedded
    assert state.state_sha256 == seed(BUNDLE)["state"]["state_sha256"]


@pytest.mark.parametrize("form", ["bytes", "str", "path", "mapping"])
def test_rebuild_accepts_every_input_form(form: str) -> None:
    source: Any = {
        "bytes": seed_bytes(BUNDLE),
        "str": seed_bytes(BUNDLE).decode("utf-8"),
        "path": FIXTURES / BUNDLE,
        "mapping": seed(BUNDLE),
    }[form]
    assert rebuild_state(source).to_json() == embedded_state_bytes()


def test_embedded_state_hash_follows_the_rule() -> None:
    state = seed(BUNDLE)["state"]
    assert ref_state_sha256(state) == state["state_sha256"]


def test_state_document_hash_follows_the_rule() -> None:
    state = seed("state-SGRHL77B.json")
    assert (
        ref_state_sha256(state)
        == state["state_sha256"]
        == ("7bf03a5554840b4f7fd0ccfb4d99f03bc65426aa2332c5211a2e09964f6b83c0")
    )


def test_registry_serves_compact_json_in_its_key_order() -> None:
    for name in ("state-SGRHL77B.json",):
        text = seed_bytes(name)
        assert json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False).encode() == text
    assert list(seed(BUNDLE)["state"]) == [
        "state_type", "state_version", "pith_number", "merge_version", "event_count",
        "valid_event_count", "invalid_event_count", "equivocation_count", "current",
        "equivocations", "invalid_events", "applied_event_ids", "state_sha256",
    ]  # fmt: skip


# --- canonical hashes and Pith Numbers ---------------------------------------------


def _records() -> list[tuple[str, dict[str, Any], str, str | None]]:
    """(document, canonical_record, stated pith number, stated canonical_sha256)."""
    bundle, state = seed(BUNDLE), seed("state-SGRHL77B.json")
    rows: list[tuple[str, dict[str, Any], str, str | None]] = [
        (BUNDLE, bundle["canonical_record"], bundle["pith_number"], bundle["canonical_sha256"]),
        (
            "state-SGRHL77B.json",
            state["current"]["canonical_record"],
            state["pith_number"],
            state["current"]["record_created"]["payload"]["canonical_sha256"],
        ),
    ]
    for name in ("record-GFHD7S67.json", "record-NE7W423I.json"):
        record = seed(name)
        rows.append((name, record["canonical_record"], record["pith_number"], record["canonical_sha256"]))
    return rows


RECORDS = _records()


@pytest.mark.parametrize(("name", "record", "number", "digest"), RECORDS, ids=[r[0] for r in RECORDS])
def test_canonical_sha256_and_pith_number(
    name: str, record: dict[str, Any], number: str, digest: str
) -> None:
    expected_digest = hashlib.sha256(ref_canonical(record)).digest()
    assert digest == expected_digest.hex()
    assert canonical_sha256(record) == digest
    assert canonical_json(record) == ref_canonical(record)
    # pith:YEAR:first 26 of base32(digest); YEAR from metadata.submitted_at.
    year = record["metadata"]["submitted_at"][:4]
    expected = f"pith:{year}:{base64.b32encode(expected_digest).decode()[:26]}"
    assert number == expected
    assert pith_number(record) == expected
    assert pith_code(record) == expected.split(":")[2]


def expected_aliases(record: dict[str, Any], code: str) -> list[tuple[str, str]]:
    """The six aliases by the FORMAT-FACTS rules, sorted by kind."""
    source = record["source"]
    return sorted(
        [
            ("arxiv", source["id"]),
            ("arxiv_version", f"{source['id']}v{source['version']}"),
            ("doi", f"10.48550/arxiv.{source['id']}".lower()),
            ("pith_short_8", code[:8]),
            ("pith_short_12", code[:12]),
            ("pith_short_16", code[:16]),
        ]
    )


@pytest.mark.parametrize("name", ["record-GFHD7S67.json", "record-NE7W423I.json", BUNDLE], ids=lambda n: n)
def test_short_forms_and_aliases(name: str) -> None:
    document = seed(name)
    number, record = document["pith_number"], document["canonical_record"]
    code = number.split(":")[2]
    assert document["short_pith_number"] == f"pith:{code[:8]}" == short_pith_number(number)
    aliases = document["aliases"] if "aliases" in document else document["source_aliases"]
    listed = [(a["alias_kind"], a["alias_value"]) for a in aliases]
    expected = expected_aliases(record, code)
    assert listed == expected  # the registry lists them sorted by kind
    assert derived_aliases(record) == expected
    assert len(derived_aliases(record)) == 6


@pytest.mark.parametrize(
    "state", [seed(BUNDLE)["state"], seed("state-SGRHL77B.json")], ids=["bundle state", "state document"]
)
def test_state_aliases_are_the_six_derived_ones(state: dict[str, Any]) -> None:
    record = state["current"]["canonical_record"]
    listed = [(a["alias_kind"], a["alias_value"]) for a in state["current"]["source_aliases"]]
    assert listed == expected_aliases(record, state["pith_number"].split(":")[2])
    for alias in state["current"]["source_aliases"]:
        assert list(alias) == sorted(alias)


def test_old_style_arxiv_ids_keep_the_slash_in_the_doi() -> None:
    record = {
        **seed(BUNDLE)["canonical_record"],
        "source": {"id": "hep-th/9801199", "kind": "arxiv", "version": 1},
    }
    assert ("doi", "10.48550/arxiv.hep-th/9801199") in derived_aliases(record)
    assert ("arxiv_version", "hep-th/9801199v1") in derived_aliases(record)


def test_year_comes_from_submitted_at_not_the_arxiv_id() -> None:
    record = seed(BUNDLE)["canonical_record"]
    december = {**record, "metadata": {**record["metadata"], "submitted_at": "2025-12-30T23:59:59Z"}}
    december["source"] = {**record["source"], "id": "2601.00001"}
    assert pith_number(december).startswith("pith:2025:")


# --- signatures ------------------------------------------------------------------


def _receipts() -> list[tuple[str, dict[str, Any], str]]:
    bundle, state = seed(BUNDLE), seed("state-SGRHL77B.json")
    rows = [
        (BUNDLE, bundle["events"][0]["payload"]["receipt"], bundle["canonical_sha256"]),
        (
            "state-SGRHL77B.json",
            state["current"]["record_created"]["payload"]["receipt"],
            state["current"]["record_created"]["payload"]["canonical_sha256"],
        ),
    ]
    for name in ("record-GFHD7S67.json", "record-NE7W423I.json"):
        record = seed(name)
        rows.append((name, record["receipt"], record["canonical_sha256"]))
    return rows


RECEIPTS = _receipts()


@pytest.mark.parametrize(("name", "receipt", "digest"), RECEIPTS, ids=[r[0] for r in RECEIPTS])
def test_receipt_signs_the_raw_canonical_digest(name: str, receipt: dict[str, Any], digest: str) -> None:
    assert receipt["signed_message"] == "canonical_sha256_bytes"
    assert receipt["canonical_sha256"] == digest
    assert receipt["key_id"] == REGISTRY_KEY_ID
    assert receipt["public_key_fingerprint"] == REGISTRY_FINGERPRINT
    assert registry_verifies(receipt["signature_b64"], bytes.fromhex(digest))
    # The hex text is not the message: only the 32 raw bytes are.
    assert not registry_verifies(receipt["signature_b64"], digest.encode())


@pytest.mark.parametrize("index", [0, 1])
def test_bundle_event_hashes_and_signatures(index: int) -> None:
    event = seed(BUNDLE)["events"][index]
    expected = ref_content_sha256(event)
    assert event["content_sha256"] == expected
    assert event["event_id"] == "sha256:" + expected
    assert event["signature"]["signed_message"] == "open_graph_event_sha256_bytes"
    assert registry_verifies(event["signature"]["signature_b64"], bytes.fromhex(expected))


def test_state_document_event_ids_are_content_hashes() -> None:
    """The applied entries of state-SGRHL77B carry enough to recompute their event ids."""
    state = seed("state-SGRHL77B.json")
    entries = [state["current"]["record_created"], *state["current"]["graph_snapshots"]]
    for entry, event_type in zip(entries, ["record_created", "graph_snapshot"], strict=True):
        content = {
            "event_type": event_type,
            "subject_pith_number": state["pith_number"],
            "target": entry["target"],
            "payload": entry["payload"],
            "signer": entry["signer"],
            "created_at": entry["created_at"],
            "supersedes": [],
            "prev_event": None,
            "schema_version": "1.0",
        }
        assert entry["event_id"] == "sha256:" + ref_content_sha256(content)


def test_bundle_signature_covers_the_bundle_without_it() -> None:
    bundle = seed(BUNDLE)
    signature = bundle["bundle_signature"]
    unsigned = {k: v for k, v in bundle.items() if k != "bundle_signature"}
    digest = hashlib.sha256(ref_canonical(unsigned)).hexdigest()
    assert signature["bundle_sha256"] == digest == canonical_sha256(unsigned)
    assert signature["signed_message"] == "bundle_sha256_bytes"
    assert registry_verifies(signature["signature_b64"], bytes.fromhex(digest))
    # Same check on the parsed tree through the fast path.
    assert hashlib.sha256(canonical_json_parsed(loads(ref_canonical(unsigned)))).hexdigest() == digest


# --- keys ------------------------------------------------------------------------


def test_registry_key_fingerprints() -> None:
    raw = bytes.fromhex(REGISTRY_KEY_HEX)
    (entry,) = seed(BUNDLE)["public_keys"]
    digest = hashlib.sha256(raw).digest()
    assert entry["public_key_hex"] == REGISTRY_KEY_HEX
    assert base64.b64decode(entry["public_key_b64"]) == raw
    assert (
        entry["fingerprint_sha256_hex"] == digest.hex()[:32] == REGISTRY_FINGERPRINT == fingerprint_hex(raw)
    )
    full = base64.b32encode(digest).decode()[:26]
    assert entry["fingerprint_sha256_b32_first128bits"] == full == fingerprint_b32(raw)
    # Encoding only the first 16 bytes gives a different last character.
    only_16 = base64.b32encode(digest[:16]).decode().rstrip("=")
    assert len(only_16) == 26 and only_16[:25] == full[:25] and only_16[25] != full[25]
    assert fingerprint_b32(raw) != only_16


def test_default_ring_is_the_registry_key() -> None:
    (key,) = list(KeyRing.registry())
    assert key.key_id == REGISTRY_KEY_ID
    assert key.public_key.hex() == REGISTRY_KEY_HEX
    assert key.fingerprint_hex == REGISTRY_FINGERPRINT


# --- the merged state's order facts ----------------------------------------------


@pytest.mark.parametrize(
    "state", [seed(BUNDLE)["state"], seed("state-SGRHL77B.json")], ids=["bundle", "state"]
)
def test_applied_event_ids_start_with_record_created(state: dict[str, Any]) -> None:
    current = state["current"]
    assert state["applied_event_ids"][0] == current["record_created"]["event_id"]
    assert list(current) == [
        "canonical_record", "source_aliases", "graph_snapshots", "author_attestations",
        "timestamp_anchors", "storage_attestations", "citation_signatures",
        "replication_records", "corrections", "mirror_hints", "record_created",
    ]  # fmt: skip
    for entry in [current["record_created"], *current["graph_snapshots"]]:
        assert list(entry) == ["event_id", "target", "created_at", "signer", "payload"]


def test_record_created_first_even_with_a_smaller_sibling_id() -> None:
    """state-SGRHL77B: same created_at, the snapshot's event_id sorts first, record_created is applied first."""
    state = seed("state-SGRHL77B.json")
    created, snapshot = state["current"]["record_created"], state["current"]["graph_snapshots"][0]
    assert created["created_at"] == snapshot["created_at"]
    assert snapshot["event_id"] < created["event_id"]
    assert state["applied_event_ids"] == [created["event_id"], snapshot["event_id"]]


def test_bundle_mirror_hints_do_not_reach_the_state() -> None:
    bundle = seed(BUNDLE)
    assert bundle["mirror_hints"] != []
    assert rebuild_state(seed_bytes(BUNDLE)).to_dict()["current"]["mirror_hints"] == []
