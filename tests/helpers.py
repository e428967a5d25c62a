"""Helpers shared by the test suite: ``from tests.helpers import ...`` (fixtures are in conftest.py).

Expected values are always computed here with the standard library (``json``,
``hashlib``, ``base64``) or ``cryptography`` directly, never with the code under
test. Signed events come from :mod:`pith_graph.testing` (real Ed25519 keys).
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pith_graph.rebuild import rebuild_state
from pith_graph.state import State
from pith_graph.testing import History, TestKey, resign

#: The registry's published documents, byte for byte.
FIXTURES = Path(__file__).parent / "fixtures"
#: The checkout: ``benchmarks`` and ``examples`` run from here.
ROOT = Path(__file__).resolve().parents[1]

#: The registry key, as FORMAT-FACTS states it (not read from pith_graph).
REGISTRY_KEY_ID = "pith-v1-2026-05"
REGISTRY_KEY_HEX = "b2d552b68890857171a78b36a5dccf368a953413288c353f7c9d9d6f94b709b3"
REGISTRY_FINGERPRINT = "8d4b5ee74e4693bcd1df2446408b0d54"

#: The test registry key: signs record_created events and receipts in generated histories.
REGISTRY_TEST_KEY = TestKey("registry", key_id="test-registry", signer_id="registry.example")


def seed_bytes(name: str) -> bytes:
    """The registry document ``name`` exactly as served."""
    return (FIXTURES / name).read_bytes()


def seed(name: str) -> Any:
    """The registry document ``name``, parsed with the standard library."""
    return json.loads(seed_bytes(name))


def ref_canonical(value: Any) -> bytes:
    """The registry's canonical rule, spelled out with the standard library (FORMAT-FACTS)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def ref_sha256(value: Any) -> str:
    """sha256 hex of the reference canonical bytes of ``value``."""
    return hashlib.sha256(ref_canonical(value)).hexdigest()


def ref_state_sha256(state: Mapping[str, Any]) -> str:
    """state_sha256 recomputed with the reference rule."""
    return ref_sha256({k: v for k, v in state.items() if k != "state_sha256"})


def ref_content_sha256(event: Mapping[str, Any]) -> str:
    """An event's content hash recomputed with the reference rule."""
    return ref_sha256(
        {k: v for k, v in event.items() if k not in ("event_id", "content_sha256", "signature")}
    )


def bundle_of(history: History, events: Iterable[Any], *, include_record: bool = True) -> dict[str, Any]:
    """A bundle of ``history`` holding ``events`` as given (non-objects included), record_created first."""
    bundle = history.bundle([], include_record=include_record)
    # History.bundle() copies events with dict(); hostile non-object events go in as they are.
    bundle["events"].extend(copy.deepcopy(list(events)))
    return bundle


def rebuild(history: History, events: Iterable[Any], **options: Any) -> State:
    """Rebuild a bundle of ``history`` holding ``events`` (record_created first), trusting its keys."""
    include_record = options.pop("include_record", True)
    trusted = options.pop("trusted_keys", history.trusted())
    return rebuild_state(
        bundle_of(history, events, include_record=include_record), trusted_keys=trusted, **options
    )


def invalid(state: State) -> dict[str, str]:
    """``invalid_events`` of a state as {event_id: reason}."""
    return {entry["event_id"]: entry["reason"] for entry in state.to_dict()["invalid_events"]}


def current_ids(state: State, collection: str) -> list[str]:
    """The event ids in one ``current`` collection."""
    return [entry["event_id"] for entry in state.to_dict()["current"][collection]]


def run_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` from the checkout (stdout, stderr as text), e.g. a benchmark."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def varied_events(history: History, alice: TestKey, bob: TestKey) -> list[Any]:
    a1 = history.event("graph_snapshot", key=alice, payload={"n": 1})
    a2 = history.event("graph_snapshot", key=alice, payload={"n": 2}, prev_event=a1["event_id"])
    fork = history.event("graph_snapshot", key=alice, payload={"n": 3}, prev_event=a1["event_id"])
    c1 = history.event("correction", payload={"fix": "first"})
    c2 = history.event(
        "correction", payload={"fix": "second"}, prev_event=c1["event_id"], supersedes=[c1["event_id"]]
    )
    floats = history.event(
        "author_attestation", key=alice, target="author", payload={"score": 1e16, "tiny": 1e-07}
    )
    forged = copy.deepcopy(a2)
    forged["signature"]["signature_b64"] = TestKey("forger").sign_b64(bytes.fromhex(a2["content_sha256"]))
    return [
        a1,
        a2,
        fork,
        c1,
        c2,
        floats,
        dict(a1),
        forged,
        {**c1, "payload": {"fix": "edited"}},  # same unit as c1, content_hash_mismatch
        {**c2, "payload": {"fix": "edited"}},
        {**c2, "payload": {"fix": "other edit"}},  # two bad copies: tie by digest
        resign({**a1, "target": "figure"}, alice),
        history.event("mirror_hint", key=bob, payload={"url": "https://bob.example", "text": "é\u2028😀"}),
        ["not", "an", "event"],
        42,
        None,
        {"event_id": "garbage"},
    ]
