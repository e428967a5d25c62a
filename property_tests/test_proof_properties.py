"""Every equivocation of any history exports as a proof that verifies offline."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given

from pith_graph.proofs import make_proofs, verify_proof
from property_tests.strategies import mutated


@given(scenario_and_mutation=mutated(names=["fork", "fork_record_created", "duplicate", "tamper_payload"]))
def test_each_fork_becomes_a_verifying_proof(scenario_and_mutation: tuple[Any, ...]) -> None:
    scenario, _, outcome = scenario_and_mutation
    proofs = make_proofs(scenario.bundle(outcome.events), trusted_keys=scenario.trusted())
    assert [(p["target"], p["signer_id"], p["prev_event"]) for p in proofs] == [
        (e["target"], e["signer_id"], e["prev_event"]) for e in outcome.equivocations
    ]
    for proof in proofs:
        assert verify_proof(json.loads(json.dumps(proof)), trusted_keys=scenario.trusted()) == []
