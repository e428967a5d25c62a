"""Equivocation proofs: exported from a forked bundle, verified offline, broken by any edit."""

from __future__ import annotations

import argparse
import base64
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.cli.proof import register
from pith_graph.conformance import SIGNERS, StreamSpec, build_scenario
from pith_graph.conformance.mutations import fork, fork_record_created
from pith_graph.keys import REGISTRY_KEY_ID
from pith_graph.proofs import make_proofs, verify_proof
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

SCENARIO = build_scenario(
    [
        StreamSpec(
            1,
            "graph_snapshot",
            "graph",
            [{"graph_snapshot": {"v": 1, "ratio": 0.1, "big": 1e16}}, {"graph_snapshot": {"v": 2}}],
        ),
        StreamSpec(2, "author_attestation", "author:1", [{"statement": "Ich bin Autorin"}]),
    ]
)
ALICE = SIGNERS[1]
TRUSTED = SCENARIO.trusted()
GRAPH = SCENARIO.chains[("graph", ALICE.signer_id)]
FORKED = fork(
    SCENARIO, sorted(i for s, c in SCENARIO.chains.items() if s[0] != "record" for i in c).index(GRAPH[0])
)


def _proofs(outcome_events: list[Any]) -> list[dict[str, Any]]:
    # Through JSON text, as a proof travels.
    proofs = make_proofs(SCENARIO.bundle(outcome_events), trusted_keys=SCENARIO.trusted())
    return [json.loads(json.dumps(p)) for p in proofs]


def test_a_forked_bundle_yields_one_proof_that_verifies() -> None:
    [proof] = _proofs(FORKED.events)
    assert proof["proof_type"] == "pith_equivocation_proof" and proof["proof_version"] == "1.0"
    assert (proof["target"], proof["signer_id"], proof["prev_event"]) == ("graph", ALICE.signer_id, None)
    assert proof["subject_pith_number"] == SCENARIO.subject
    assert sorted(e["event_id"] for e in proof["events"]) == FORKED.equivocations[0]["event_ids"]
    assert proof["public_key"]["public_key_hex"] == ALICE.public_key.hex()
    assert verify_proof(proof, trusted_keys=TRUSTED) == []


def test_a_record_created_fork_proof_verifies() -> None:
    [proof] = _proofs(fork_record_created(SCENARIO, 3).events)
    assert proof["target"] == "record"
    assert verify_proof(proof, trusted_keys=TRUSTED) == []


def test_a_bundle_without_forks_yields_no_proof() -> None:
    assert _proofs(SCENARIO.events) == []


def _flip_signature(event: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(event["signature"]["signature_b64"]))
    raw[40] ^= 1
    event["signature"]["signature_b64"] = base64.b64encode(bytes(raw)).decode()


def _edit_payload(event: dict[str, Any]) -> None:
    event["payload"]["graph_snapshot"]["v"] = 99


def _edit_id(event: dict[str, Any]) -> None:
    event["event_id"] = "sha256:" + "0" * 64


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("edit", [_flip_signature, _edit_payload, _edit_id])
def test_altering_either_event_breaks_the_proof(which: int, edit: Any) -> None:
    [proof] = _proofs(FORKED.events)
    altered = copy.deepcopy(proof)
    edit(altered["events"][which])
    problems = verify_proof(altered, trusted_keys=TRUSTED)
    assert problems and all(p.code == codes.P_PROOF for p in problems)
    assert any(p.where == f"events[{which}]" for p in problems)


def _other_key(proof: dict[str, Any]) -> None:
    proof["public_key"] = TestKey("someone-else", key_id=proof["public_key"]["key_id"]).entry()


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda p: p.__setitem__("events", p["events"][:1]), "at least 2 events"),
        (lambda p: p.__setitem__("events", [p["events"][0], p["events"][0]]), "listed twice"),
        (lambda p: p.__setitem__("prev_event", "sha256:" + "1" * 64), "names prev_event"),
        (lambda p: p.__setitem__("target", "claims"), "not the proof's"),
        (lambda p: p.__setitem__("signer_id", "bob.example"), "not the proof's"),
        (
            lambda p: p.__setitem__("subject_pith_number", "pith:2026:AAAAAAAAAAAAAAAAAAAAAAAAAA"),
            "subject_mismatch",
        ),
        (lambda p: p.__setitem__("proof_version", "2.0"), "unsupported proof_version"),
        (_other_key, "is not the trusted key of that id"),
        (lambda p: p["public_key"].__setitem__("public_key_hex", "00"), "unusable public_key"),
        (lambda p: p.pop("events"), "not a valid equivocation proof"),
    ],
)
def test_inconsistent_proofs_are_rejected(edit: Any, fragment: str) -> None:
    [proof] = _proofs(FORKED.events)
    edit(proof)
    problems = verify_proof(proof, trusted_keys=TRUSTED)
    assert any(fragment in p.message for p in problems), problems


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pith-graph")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    bundle, keys = tmp_path / "bundle.json", tmp_path / "keys.json"
    bundle.write_text(json.dumps(SCENARIO.bundle(FORKED.events)), encoding="utf-8")
    keys.write_text(json.dumps(SCENARIO.trusted()), encoding="utf-8")
    return bundle, keys


def test_proof_command_then_verify_command_with_real_processes(tmp_path: Path) -> None:
    bundle, keys = _files(tmp_path)
    out = tmp_path / "proofs"
    cli = [sys.executable, "-m", "pith_graph"]
    made = subprocess.run(
        [*cli, "proof", str(bundle), "--out", str(out), "--trusted-keys", str(keys)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    [written] = sorted(out.iterdir())
    assert (
        subprocess.run(
            [*cli, "verify", str(written), "--trusted-keys", str(keys)], capture_output=True, check=False
        ).returncode
        == 0
    )
    altered = json.loads(written.read_text(encoding="utf-8"))
    _edit_payload(altered["events"][1])
    broken = tmp_path / "broken-proof.json"
    broken.write_text(json.dumps(altered), encoding="utf-8")
    checked = subprocess.run(
        [*cli, "verify", str(broken), "--trusted-keys", str(keys)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 1
    assert codes.P_PROOF in checked.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_proof_command_reads_a_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    bundle, keys = _files(tmp_path)
    db = (
        str(tmp_path / "events.sqlite")
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    with EventStore(db) as store:
        store.import_bundle(bundle, trusted_keys=SCENARIO.trusted())
    args = _parse(["proof", db, "--trusted-keys", str(keys)])
    assert args.func(args) == 0
    [line] = capsysbinary.readouterr().out.splitlines()
    assert verify_proof(json.loads(line), trusted_keys=TRUSTED) == []


def _self_vouching_proof(tmp_path: Path) -> Path:
    """Mallory forks her own stream and encloses her key under the registry's key id and signer."""
    impostor = TestKey("proof-impostor", key_id=REGISTRY_KEY_ID, signer_id="pith.science")
    history = History.new(impostor)
    forks = [
        history.event("graph_snapshot", payload={"graph_snapshot": {"v": n}}, prev_event=None) for n in (1, 2)
    ]
    [proof] = make_proofs(history.bundle(forks), trusted_keys=[impostor.entry(signer_id="pith.science")])
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof), encoding="utf-8")
    return path


def test_a_proof_signed_by_a_key_naming_itself_the_registry_is_untrusted(tmp_path: Path) -> None:
    """Issue 15 hole 3: the enclosed key claims pith-v1-2026-05 / pith.science; --trusted-keys decides."""
    path = _self_vouching_proof(tmp_path)
    proof = json.loads(path.read_text(encoding="utf-8"))
    [problem] = verify_proof(proof)
    assert problem.code == codes.P_PROOF_UNTRUSTED_KEY and "fingerprint" in problem.message
    cli = [sys.executable, "-m", "pith_graph"]
    for extra in ([], ["--trusted-keys", str(_files(tmp_path)[1])]):
        checked = subprocess.run(
            [*cli, "verify", str(path), *extra], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 1, checked.stdout
        assert (
            codes.P_PROOF_UNTRUSTED_KEY in checked.stdout and "equivocation_proof: FAILED" in checked.stdout
        )
        assert f"key_id: {REGISTRY_KEY_ID}" in checked.stdout


def test_a_trusted_proof_report_names_its_key(tmp_path: Path) -> None:
    _, keys = _files(tmp_path)
    [proof] = _proofs(FORKED.events)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(proof), encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "pith_graph", "verify", str(path), "--trusted-keys", str(keys)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout
    assert (
        f"key_id: {ALICE.key_id}" in checked.stdout and f"fingerprint: {ALICE.fingerprint}" in checked.stdout
    )
