"""The event store in five steps: import, append, sync two replicas, export, rebuild.

Run with ``python examples/store_example.py``. Uses two store files in a
temporary directory; nothing outside it is written.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from pith_graph.keys import KeyRing
from pith_graph.rebuild import rebuild_state
from pith_graph.store import EventStore
from pith_graph.testing import TestKey, make_event

BUNDLE = Path(__file__).parent / "registry" / "bundle-AG3PAJ22.json"


def main() -> int:
    """Run the walk-through; return 0 when every check holds."""
    registry_state = json.loads(BUNDLE.read_bytes())["state"]
    # A mirror's own key (deterministic here; a real mirror keeps a private key).
    mirror = TestKey("example-mirror", key_id="mirror-example-2026", signer_id="mirror.example")
    # Trust comes from the caller: the pinned registry key plus the mirror key, explicitly.
    trusted = KeyRing.registry().union(KeyRing.from_entries([mirror.entry()]))

    with (
        tempfile.TemporaryDirectory() as tmp,
        EventStore(Path(tmp) / "a.sqlite") as a,
        EventStore(Path(tmp) / "b.sqlite") as b,
    ):
        # 1. Import the registry's bundle into replica A.
        imported = a.import_bundle(BUNDLE)
        subject = imported.subject
        print(f"1. imported {BUNDLE.name}: {subject}, statuses {[x.status for x in imported.appends]}")
        assert a.state(subject).state_sha256 == registry_state["state_sha256"]
        print(f"   state_sha256 {registry_state['state_sha256']} (the registry's)")

        # 2. Replica B receives a new event, signed by the mirror key.
        hint = make_event(
            mirror,
            subject=subject,
            event_type="mirror_hint",
            target="mirrors",
            payload={"mirror_type": "https", "base_url": "https://mirror.example"},
            created_at="2026-06-04T00:00:00Z",
        )
        appended = b.append(hint, trusted_keys=trusted)
        print(f"2. appended {appended.unit_id[:23]}... to B: {appended.status}")

        # 3. Sync both ways: each replica ends with the union, whatever the order.
        a.sync_from(b, trusted_keys=trusted)  # only copies valid under these keys cross over
        b.sync_from(a, trusted_keys=trusted)
        state_a, state_b = a.state(subject, trusted_keys=trusted), b.state(subject, trusted_keys=trusted)
        assert state_a.to_json() == state_b.to_json()
        print(
            f"3. synced: both replicas apply {len(state_a.applied_event_ids)} events, "
            f"state_sha256 {state_a.state_sha256}"
        )

        # 4. Export a bundle signed by the mirror key, and rebuild it from scratch.
        exported = a.export_bundle(subject, trusted_keys=trusted, sign_with=mirror)
        rebuilt = rebuild_state(exported, trusted_keys=trusted)
        assert rebuilt.to_json() == state_a.to_json()
        print(
            f"4. exported {len(exported['events'])} events, signed by {exported['bundle_signature']['key_id']}; "
            "rebuilds to the same state"
        )

        # 5. Trusting only the registry key, the mirror's event does not count.
        registry_only = rebuild_state(exported)
        print(
            f"5. registry key only: {registry_only.valid_event_count} valid, "
            f"{registry_only.invalid_event_count} invalid ({registry_only.invalid_events[0]['reason']})"
        )
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
