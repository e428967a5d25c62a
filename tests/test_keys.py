"""Trusted keys: the default ring, hostile key entries, and bundles that try to vouch for themselves."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from pith_graph import codes, rebuild_state
from pith_graph.errors import PithGraphError, TrustError
from pith_graph.keys import KeyRing, TrustedKey, coerce_ring
from pith_graph.testing import History, TestKey, seal
from tests.helpers import (
    REGISTRY_FINGERPRINT,
    REGISTRY_KEY_HEX,
    REGISTRY_KEY_ID,
    bundle_of,
    invalid,
    seed,
    seed_bytes,
)

BUNDLE = "bundle-AG3PAJ22.json"
KEY = TestKey("trusted-key")
_DIGEST = hashlib.sha256(KEY.public_key).digest()
# For 1 key in 4 the 16-byte encoding happens to end alike; this one does not.
assert base64.b32encode(_DIGEST).decode()[:26] != base64.b32encode(_DIGEST[:16]).decode().rstrip("=")


def test_default_ring_trusts_only_the_registry_key() -> None:
    for ring in (KeyRing.registry(), coerce_ring(None)):
        assert [k.key_id for k in ring] == [REGISTRY_KEY_ID]
        (key,) = ring
        assert key.public_key == bytes.fromhex(REGISTRY_KEY_HEX)
        assert key.fingerprint_hex == REGISTRY_FINGERPRINT
        assert key.rotates_at is None


def test_entry_round_trip() -> None:
    entry = KEY.entry()
    key = TrustedKey.from_entry(entry)
    raw = KEY.public_key
    assert key.public_key == raw
    assert key.fingerprint_hex == hashlib.sha256(raw).hexdigest()[:32]
    assert key.fingerprint_b32 == base64.b32encode(hashlib.sha256(raw).digest()).decode()[:26]
    assert TrustedKey.from_entry(key.to_entry()) == key
    assert KeyRing.from_entries([entry]).to_entries() == [key.to_entry()]


@pytest.mark.parametrize(
    "entry",
    [
        {"key_id": "k", "public_key_hex": KEY.public_key.hex()},
        {"key_id": "k", "public_key_b64": base64.b64encode(KEY.public_key).decode()},
        {"key_id": "k", "public_key_hex": KEY.public_key.hex(), "rotates_at": "2027-01-01T00:00:00Z"},
        {"key_id": "k", "public_key_hex": KEY.public_key.hex(), "rotates_at": "2027-01-01T00:00:00.5Z"},
    ],
    ids=["hex only", "b64 only", "rotates_at", "rotates_at with fraction"],
)
def test_minimal_entries_are_accepted(entry: dict[str, Any]) -> None:
    assert TrustedKey.from_entry(entry).public_key == KEY.public_key


def _edit(**changes: Any) -> dict[str, Any]:
    entry = KEY.entry()
    for name, value in changes.items():
        if value is ...:
            entry.pop(name)
        else:
            entry[name] = value
    return entry


OTHER = TestKey("other-key")
BAD_ENTRIES: list[tuple[str, Any]] = [
    ("b64 and hex disagree", _edit(public_key_hex=OTHER.public_key.hex())),
    ("hex 31 bytes", _edit(public_key_b64=..., public_key_hex=KEY.public_key.hex()[:-2])),
    ("hex 33 bytes", _edit(public_key_b64=..., public_key_hex=KEY.public_key.hex() + "00")),
    (
        "b64 31 bytes",
        _edit(public_key_hex=..., public_key_b64=base64.b64encode(KEY.public_key[:31]).decode()),
    ),
    ("b64 64 bytes", _edit(public_key_hex=..., public_key_b64=base64.b64encode(KEY.public_key * 2).decode())),
    ("hex not hex", _edit(public_key_b64=..., public_key_hex="zz" * 32)),
    ("b64 not base64", _edit(public_key_hex=..., public_key_b64="!!!!" * 11)),
    ("hex a number", _edit(public_key_b64=..., public_key_hex=5)),
    ("no key material", _edit(public_key_b64=..., public_key_hex=...)),
    ("wrong fingerprint hex", _edit(fingerprint_sha256_hex=OTHER.fingerprint)),
    ("uppercase fingerprint hex", _edit(fingerprint_sha256_hex=KEY.fingerprint.upper())),
    (
        "wrong fingerprint b32",
        _edit(fingerprint_sha256_b32_first128bits=OTHER.entry()["fingerprint_sha256_b32_first128bits"]),
    ),
    (
        "b32 fingerprint of only 16 bytes",
        _edit(
            fingerprint_sha256_b32_first128bits=base64.b32encode(hashlib.sha256(KEY.public_key).digest()[:16])
            .decode()
            .rstrip("=")
        ),
    ),
    ("rotates_at not a time", _edit(rotates_at="soon")),
    ("rotates_at with offset", _edit(rotates_at="2027-01-01T00:00:00+00:00")),
    ("rotates_at date only", _edit(rotates_at="2027-01-01")),
    ("rotates_at impossible date", _edit(rotates_at="2027-02-30T00:00:00Z")),
    ("rotates_at a number", _edit(rotates_at=1790000000)),
    ("algorithm not ed25519", _edit(algorithm="ecdsa-p256")),
    ("empty key_id", _edit(key_id="")),
    ("missing key_id", _edit(key_id=...)),
    ("key_id a number", _edit(key_id=7)),
    ("entry a list", [KEY.entry()]),
    ("entry a string", "key"),
]


@pytest.mark.parametrize(("name", "entry"), BAD_ENTRIES, ids=[b[0] for b in BAD_ENTRIES])
def test_bad_entries_raise_trust_error(name: str, entry: Any) -> None:
    with pytest.raises(TrustError) as caught:
        TrustedKey.from_entry(entry)
    assert caught.value.code == codes.E_BAD_KEY
    with pytest.raises(TrustError):
        coerce_ring([entry])


@pytest.mark.parametrize("not_keys", [5, 1.5, object()])
def test_trusted_keys_that_are_not_keys_at_all_raise_trust_error(not_keys: Any) -> None:
    with pytest.raises(TrustError) as caught:
        coerce_ring(not_keys)
    assert caught.value.code == codes.E_BAD_KEY and type(not_keys).__name__ in caught.value.message


def test_wrong_length_raw_key_raises() -> None:
    with pytest.raises(TrustError):
        TrustedKey("k", b"\x00" * 31)


def test_duplicate_key_id_with_different_material_raises() -> None:
    with pytest.raises(TrustError) as caught:
        KeyRing.from_entries([KEY.entry(key_id="same"), OTHER.entry(key_id="same")])
    assert caught.value.code == codes.E_BAD_KEY
    with pytest.raises(TrustError):
        KeyRing.registry().union(KeyRing.from_entries([KEY.entry(key_id=REGISTRY_KEY_ID)]))


def test_duplicate_identical_entries_are_one_key() -> None:
    ring = KeyRing.from_entries([KEY.entry(), KEY.entry(), OTHER.entry()])
    assert len(ring) == 2 and KEY.key_id in ring and OTHER.key_id in ring


def test_same_id_different_rotation_is_a_conflict() -> None:
    with pytest.raises(TrustError):
        KeyRing.from_entries([KEY.entry(), KEY.entry(rotates_at="2027-01-01T00:00:00Z")])


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"key_id":"k"}', codes.E_BAD_KEY),
        (b"not json", codes.E_NOT_JSON),
        (b'[{"key_id":"k","key_id":"j"}]', codes.E_DUPLICATE_KEY),
        (b'[{"key_id":"k"}]', codes.E_BAD_KEY),
    ],
    ids=["not an array", "not json", "duplicate key", "entry without key"],
)
def test_key_ring_from_json_errors(data: bytes, code: str) -> None:
    with pytest.raises(TrustError) as caught:
        KeyRing.from_json(data)
    assert caught.value.code == code


# --- a bundle never vouches for itself ---------------------------------------------


@pytest.fixture
def self_signed() -> tuple[History, dict[str, Any]]:
    """A bundle whose every signature is by a key it lists itself (not the registry's)."""
    history = History.new(TestKey("self-vouching"))
    snap = history.event("graph_snapshot", payload={"graph_snapshot": {}})
    return history, bundle_of(history, [snap])


def test_bundle_keys_are_not_trusted_by_default(self_signed: tuple[History, dict[str, Any]]) -> None:
    history, bundle = self_signed
    assert bundle["public_keys"] == [history.registry.entry()]
    state = rebuild_state(bundle)
    document = state.to_dict()
    assert invalid(state) == {e["event_id"]: codes.REASON_UNKNOWN_KEY for e in bundle["events"]}
    assert document["valid_event_count"] == 0 and document["applied_event_ids"] == []
    assert document["current"]["record_created"] is None and document["current"]["canonical_record"] is None


def test_bundle_keys_trusted_on_request(self_signed: tuple[History, dict[str, Any]]) -> None:
    history, bundle = self_signed
    opted_in = rebuild_state(bundle, trust_bundle_keys=True)
    listed = rebuild_state(bundle, trusted_keys=[history.registry.entry()])
    assert invalid(listed) == {}
    assert listed.valid_event_count == 2
    # merge-v1 §6 check 10: a key trusted only because the bundle lists it never creates the record.
    assert invalid(opted_in) == {history.record_created["event_id"]: codes.REASON_BAD_RECORD}
    assert opted_in.valid_event_count == 1


def test_bundle_cannot_impersonate_the_registry_key_id() -> None:
    impostor = TestKey("impostor", key_id=REGISTRY_KEY_ID, signer_id="pith.science")
    history = History.new(impostor)
    bundle = bundle_of(history, [history.event("graph_snapshot", payload={})])
    state = rebuild_state(bundle)
    # the key id is trusted, but the fingerprints are not the registry key's
    assert set(invalid(state).values()) == {codes.REASON_KEY_MISMATCH}
    with pytest.raises(TrustError):
        rebuild_state(bundle, trust_bundle_keys=True)


def test_impostor_with_copied_fingerprints_fails_the_signature() -> None:
    impostor = TestKey("impostor", key_id=REGISTRY_KEY_ID, signer_id="pith.science")
    history = History.new(impostor)
    event = history.event("graph_snapshot", payload={})
    event["signer"]["public_key_fingerprint"] = REGISTRY_FINGERPRINT
    event = seal(event, impostor)  # content hash and impostor signature over the edited signer
    event["signature"]["public_key_fingerprint"] = REGISTRY_FINGERPRINT  # outside the content hash
    state = rebuild_state(bundle_of(history, [event], include_record=False))
    assert invalid(state) == {event["event_id"]: codes.REASON_BAD_SIGNATURE}


def test_bad_bundle_key_entry_with_trust_bundle_keys(self_signed: tuple[History, dict[str, Any]]) -> None:
    _, bundle = self_signed
    bundle["public_keys"][0]["public_key_hex"] = OTHER.public_key.hex()
    assert rebuild_state(bundle).invalid_event_count == 2  # ignored unless trusted
    with pytest.raises(TrustError) as caught:
        rebuild_state(bundle, trust_bundle_keys=True)
    assert isinstance(caught.value, PithGraphError)


@pytest.mark.parametrize(
    ("options", "valid"),
    [
        ({}, 2),
        ({"trust_bundle_keys": True}, 2),
        ({"trusted_keys": []}, 0),
        ({"trusted_keys": KeyRing()}, 0),
        ({"trusted_keys": [KEY.entry()]}, 0),
        ({"trusted_keys": KeyRing.registry()}, 2),
        ({"trusted_keys": [TrustedKey(REGISTRY_KEY_ID, bytes.fromhex(REGISTRY_KEY_HEX))]}, 2),
    ],
    ids=["default", "bundle keys", "empty list", "empty ring", "other key", "registry ring", "TrustedKey"],
)
def test_seed_bundle_under_each_trust_choice(options: dict[str, Any], valid: int) -> None:
    state = rebuild_state(seed_bytes(BUNDLE), **options)
    assert state.valid_event_count == valid
    if valid:
        assert state.state_sha256 == seed(BUNDLE)["state"]["state_sha256"]
    else:
        assert set(invalid(state).values()) == {codes.REASON_UNKNOWN_KEY}


def test_rotated_registry_key_signs_nothing_after_rotation() -> None:
    rotated = [TrustedKey(REGISTRY_KEY_ID, bytes.fromhex(REGISTRY_KEY_HEX), "2026-06-02T01:03:16Z")]
    state = rebuild_state(seed_bytes(BUNDLE), trusted_keys=rotated)
    assert set(invalid(state).values()) == {codes.REASON_UNKNOWN_KEY}
    later = [TrustedKey(REGISTRY_KEY_ID, bytes.fromhex(REGISTRY_KEY_HEX), "2026-06-02T01:03:16.000001Z")]
    assert rebuild_state(seed_bytes(BUNDLE), trusted_keys=later).valid_event_count == 2


def test_key_entries_read_again_give_the_same_key_and_the_same_errors() -> None:
    """TrustedKey.from_entry remembers entries of scalars: an equal entry gives an equal key,
    ``listed`` is part of what is remembered, and an unusable entry raises every time."""
    key = TestKey("remembered")
    entry = key.entry()
    first, second = TrustedKey.from_entry(entry), TrustedKey.from_entry(dict(entry))
    assert first == second == TrustedKey.from_entry(entry, listed=False)
    assert TrustedKey.from_entry(entry, listed=True).listed and not first.listed
    for _ in range(2):
        with pytest.raises(TrustError):
            TrustedKey.from_entry({**entry, "fingerprint_sha256_hex": "00" * 16})
    with pytest.raises(TrustError):
        TrustedKey.from_entry({**entry, "signer_id": True})
    assert TrustedKey.from_entry({**entry, "signer_id": "x"}).signer_id == "x"
