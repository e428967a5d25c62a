"""verify_bundle's shortcut for an embedded state equal to the rebuilt one."""

from __future__ import annotations

from pathlib import Path

from pith_graph.rebuild import rebuild_state
from pith_graph.testing import History, TestKey
from pith_graph.verify import verify_state

REGISTRY = TestKey("registry", key_id="test-registry", signer_id="registry.example")
SIGNER = TestKey("embedded-state-signer")
FIXTURE = Path(__file__).parent / "fixtures" / "bundle-AG3PAJ22.json"


def test_a_rebuilt_state_passes_verify_state() -> None:
    """verify_bundle re-checks an embedded state on its own only when it differs from the
    rebuilt one: that is sound only because every rebuilt state passes verify_state."""
    history = History.new(REGISTRY)
    events = [history.event("graph_snapshot", payload={"graph_snapshot": {}})]
    events += [
        history.event("citation_signature", key=SIGNER, target="citation:0", payload={"i": i})
        for i in range(2)
    ]
    bundle = history.bundle(events)
    trusted = [REGISTRY.entry(), SIGNER.entry()]
    states = [rebuild_state(FIXTURE), rebuild_state(bundle, trusted_keys=trusted), rebuild_state(bundle)]
    assert states[-1].invalid_event_count == 4  # untrusted keys: invalid events are listed
    for state in states:
        assert verify_state(state.to_json()).problems == ()
