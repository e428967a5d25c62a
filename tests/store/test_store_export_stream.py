"""``EventStore.write_bundle`` writes exactly the bytes of the dumped ``export_bundle``, without its tree."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

REGISTRY = TestKey("registry", key_id="test-registry", signer_id="registry.example")
SIGNER = TestKey("export-signer")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "bundle-AG3PAJ22.json"
AWKWARD: dict[str, Any] = {
    "text": 'é ✓ 𝄞 "quoted" back\\slash \u2028 \u007f tab\t nl\n bell\u0007 nul\u0000',
    "numbers": [0, -1, 12345678901234567890, 1.5, -0.0, 1e-07, 2.5e300],
    "nested": {"z": [], "a": {}, "m": [None, True, False]},
}


def dumped(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def written(store: EventStore, subject: str, **options: Any) -> bytes:
    out = io.BytesIO()
    store.write_bundle(subject, out, **options)
    return out.getvalue()


def test_registry_bundle(tmp_path: Path) -> None:
    with EventStore(tmp_path / "s.sqlite") as store:
        result = store.import_bundle(FIXTURE)
        expected = dumped(store.export_bundle(result.subject, built_at="2026-06-03T00:00:00Z"))
        assert written(store, result.subject, built_at="2026-06-03T00:00:00Z") == expected


def test_awkward_values_trust_and_invalid_events(tmp_path: Path) -> None:
    history = History.new(REGISTRY)
    events = [history.event("graph_snapshot", payload={"graph_snapshot": AWKWARD})]
    events += [history.event("citation_signature", key=SIGNER, target="citation:0", payload=AWKWARD)]
    events += [dict(events[-1], payload={"forged": "ü"})]  # a second copy under the same id: invalid
    bundle = history.bundle(events)
    bundle["mirror_hints"] = [{"name": "hint ✓", "events": [], "state": {}}]
    trusted = [REGISTRY.entry(), SIGNER.entry()]
    with EventStore(tmp_path / "s.sqlite") as store:
        store.import_bundle(json.dumps(bundle).encode())
        for options in ({}, {"trusted_keys": trusted}, {"trust_bundle_keys": True}):
            expected = dumped(
                store.export_bundle(history.subject, built_at="2026-06-03T00:00:00Z", **options)
            )
            assert written(store, history.subject, built_at="2026-06-03T00:00:00Z", **options) == expected
