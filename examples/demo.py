"""pith_graph demo: run by `make demo`.

1. Rebuild the registry bundle's state and show it is byte-identical to the
   state the registry embedded (same state_sha256).
2. Verify all five registry documents.
3. Tamper with one event: the content hash catches it.
4. A signer forks its stream: the equivocation is reported and the stream frozen.
5. A bundle that vouches for its own keys is not believed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pith_graph
from pith_graph.testing import History, TestKey

HERE = Path(__file__).resolve().parent
REGISTRY = HERE / "registry"
BUNDLE = REGISTRY / "bundle-AG3PAJ22.json"


def title(text: str) -> None:
    print(f"\n== {text}")


def main() -> None:
    title("1. Rebuild the registry's bundle with merge-v1")
    raw = BUNDLE.read_bytes()
    state = pith_graph.rebuild_state(raw)  # trusts only the pinned registry key
    embedded = json.loads(raw)["state"]
    registry_bytes = json.dumps(embedded, separators=(",", ":"), ensure_ascii=False).encode()
    print(f"pith number      {state.pith_number}")
    print(
        f"events           {state.event_count} (valid {state.valid_event_count}, invalid {state.invalid_event_count})"
    )
    print(f"rebuilt   sha256 {state.state_sha256}")
    print(f"registry  sha256 {embedded['state_sha256']}")
    identical = state.to_json() == registry_bytes
    print(f"byte-identical   {identical} ({len(registry_bytes)} bytes)")
    assert identical, "rebuilt state differs from the registry's"

    title("2. Verify every registry document")
    for path in sorted(REGISTRY.glob("*.json")):
        report = pith_graph.verify_document(path)
        print(f"{path.name:28} {report.kind:15} {'OK' if report.ok else 'FAILED'}")
        assert report.ok, report.problems

    title("3. Tamper with the graph snapshot's payload")
    tampered = json.loads(raw)
    tampered["events"][1]["payload"]["graph_snapshot"]["paper"]["title"] = "Something else entirely"
    report = pith_graph.verify_bundle(tampered)
    for problem in report.problems:
        print(f"caught: {problem}")
    assert not report.ok

    title("4. A signer forks its stream (two events after the same predecessor)")
    registry, alice = TestKey("demo-registry"), TestKey("demo-alice")
    history = History.new(registry, arxiv_id="2611.01234")
    first = history.event(
        "citation_signature", key=alice, target="citations", payload={"cites": "pith:AG3PAJ22"}
    )
    left = history.event(
        "citation_signature", key=alice, target="citations", prev_event=first["event_id"], payload={"n": 1}
    )
    right = history.event(
        "citation_signature", key=alice, target="citations", prev_event=first["event_id"], payload={"n": 2}
    )
    forked = history.bundle([first, left, right])
    state = pith_graph.rebuild_state(forked, trusted_keys=history.trusted())
    for fork in state.to_dict()["equivocations"]:
        print(
            f"equivocation: signer {fork['signer_id']} target {fork['target']} after {fork['prev_event'][:19]}..."
        )
        for event_id in fork["event_ids"]:
            print(f"  conflicting {event_id[:23]}...  applied: {event_id in state.applied_event_ids}")
    print(
        f"applied: {len(state.applied_event_ids)} of {state.valid_event_count} valid events (stream frozen at the fork)"
    )
    assert state.equivocation_count == 1

    title("5. A bundle cannot vouch for its own keys")
    mallory = TestKey("demo-mallory")
    fake = History.new(mallory, arxiv_id="2611.04321")
    self_signed = fake.bundle([fake.event("graph_snapshot", payload={"graph_snapshot": {}})])
    default = pith_graph.rebuild_state(copy.deepcopy(self_signed))
    print(
        f"default trust (registry key only): valid {default.valid_event_count}, "
        f"invalid {default.invalid_event_count} -> {sorted({e['reason'] for e in default.invalid_events})}"
    )
    opted_in = pith_graph.rebuild_state(self_signed, trust_bundle_keys=True)
    print(f"with trust_bundle_keys=True (caller's explicit choice): valid {opted_in.valid_event_count}")
    assert default.valid_event_count == 0

    print("\nAll demo checks passed.")


if __name__ == "__main__":
    main()
