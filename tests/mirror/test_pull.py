"""``mirror pull`` filling a store from real loopback peers: base URL, manifest file, manifest URL.

Expected states come from the registry's own embedded state (cut from the
file's bytes) or from ``rebuild_state`` of a bundle the test built; the peers
are real HTTP servers (:mod:`peerlab`), the command a real subprocess.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.keys import KeyRing
from pith_graph.mirror.admit import admit_bundle, parse_bundle
from pith_graph.mirror.pull import Wanted, mirrors_from_manifest, wanted
from pith_graph.rebuild import rebuild_state
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey, sign_bundle
from tests.mirror.peerlab import (
    BUNDLE,
    CODE,
    SUBJECT,
    FaultPeer,
    Serve,
    bundle_path,
    free_port,
    output_document,
    run_cli,
    snapshot,
    well_known_path,
)

FAST = ("--timeout", "0.5", "--deadline", "5", "--retries", "0")


def embedded_state_bytes() -> bytes:
    start = BUNDLE.index(b'"state":{') + len(b'"state":')
    return BUNDLE[start : BUNDLE.index(b',"bundle_signature":')]


def manifest(*mirrors: dict[str, Any]) -> dict[str, Any]:
    return {"manifest_type": "pith_mirror_manifest", "manifest_version": "1.0", "mirrors": list(mirrors)}


def entry(base: str, status: str = "mirror", name: str = "m") -> dict[str, Any]:
    return {
        "name": name,
        "mirror_type": "https",
        "base_url": base,
        "bundle_pattern": base + "/pith/{suffix}/bundle.json",
        "state_pattern": base + "/pith/{suffix}/state.json",
        "well_known_pattern": base + "/.well-known/pith/{suffix}/bundle.json",
        "status": status,
    }


def stored_state(db: Path, subject: str = SUBJECT, ring: Any = None) -> bytes:
    with EventStore(db, create=False) as store:
        return store.state(subject, trusted_keys=ring).to_json()


def test_pull_from_base_url_matches_registry_state(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with FaultPeer({bundle_path(CODE): Serve(BUNDLE)}) as peer:
        result = run_cli("mirror", "pull", peer.url, SUBJECT, "--db", str(db), *FAST)
    assert result.returncode == 0, result.stderr
    assert stored_state(db) == embedded_state_bytes()
    assert "2 new" in result.stdout and "same as the peer's" in result.stdout


def test_pull_manifest_file_first_mirror_down(tmp_path: Path) -> None:
    db, path = tmp_path / "s.sqlite", tmp_path / "pith-mirrors.json"
    down = f"http://127.0.0.1:{free_port()}"
    with FaultPeer({bundle_path(CODE): Serve(BUNDLE)}) as peer:
        # The primary is listed second: it is still tried first.
        path.write_text(json.dumps(manifest(entry(peer.url, name="up"), entry(down, "primary", "down"))))
        result = run_cli("mirror", "pull", str(path), SUBJECT, "--db", str(db), *FAST)
        assert result.returncode == 0, result.stderr
        assert stored_state(db) == embedded_state_bytes()
        # The primary, down, first; then the second.
        path.write_text(json.dumps(manifest(entry(down, "primary", "down"), entry(peer.url))))
        db2 = tmp_path / "s2.sqlite"
        result = run_cli("mirror", "pull", str(path), SUBJECT, "--db", str(db2), *FAST)
    assert result.returncode == 0, result.stderr
    assert stored_state(db2) == embedded_state_bytes()


def test_mirror_order_primary_first() -> None:
    listed = manifest(
        entry("http://127.0.0.1:1", name="a"),
        entry("http://127.0.0.1:2", "primary", "b"),
        entry("http://127.0.0.1:3", name="c"),
    )
    assert [m.name for m in mirrors_from_manifest(listed, "m")] == ["b", "a", "c"]


def test_pull_manifest_url_and_well_known_fallback(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with FaultPeer({well_known_path(CODE): Serve(BUNDLE)}) as peer:
        peer.routes["/pith-mirrors.json"] = Serve(json.dumps(manifest(entry(peer.url, "primary"))).encode())
        result = run_cli("mirror", "pull", peer.url + "/pith-mirrors.json", CODE, "--db", str(db), *FAST)
    assert result.returncode == 0, result.stderr
    assert peer.statuses[1:] == [(bundle_path(CODE), 404), (well_known_path(CODE), 200)]
    assert stored_state(db) == embedded_state_bytes()


def test_pull_short_form_checked_against_the_bundle(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with FaultPeer({bundle_path(CODE): Serve(BUNDLE)}) as peer:
        peer.routes["/api/pith-number/resolve"] = Serve(json.dumps({"pith_number": SUBJECT}).encode())
        result = run_cli("mirror", "pull", peer.url, "pith:AG3PAJ22", "--db", str(db), *FAST)
        assert result.returncode == 0, result.stderr
        # A resolver naming a number the short form does not start: not followed.
        peer.routes["/api/pith-number/resolve"] = Serve(json.dumps({"pith_number": SUBJECT}).encode())
        result = run_cli(
            "mirror", "pull", peer.url, "pith:BBBBBBBB", "--db", str(tmp_path / "t.sqlite"), *FAST
        )
    assert result.returncode == 2 and "cannot resolve" in result.stderr


def test_wanted_forms() -> None:
    assert wanted(SUBJECT) == Wanted(SUBJECT, number=SUBJECT, code=CODE)
    assert wanted(CODE).code == CODE
    assert wanted("pith:AG3PAJ22").prefix == "AG3PAJ22"
    assert wanted("pith:AG3PAJ22").matches(SUBJECT) and not wanted("pith:AG3PAJ23").matches(SUBJECT)


# --- forged and untrusted events from a peer: reported, not stored -------------------------


def forged_registry_bundle() -> dict[str, Any]:
    """The registry's bundle with a third event: a copy of its snapshot event with an edited payload."""
    bundle: dict[str, Any] = json.loads(BUNDLE)
    forged = copy.deepcopy(next(e for e in bundle["events"] if e["event_type"] != "record_created"))
    forged["payload"]["forged"] = True  # content changed, hash and signature kept: content_hash_mismatch
    bundle["events"].append(forged)
    return bundle


def test_pull_forged_event_reported_and_not_stored(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    forged = forged_registry_bundle()
    with FaultPeer({bundle_path(CODE): Serve(json.dumps(forged).encode())}) as peer:
        result = run_cli("mirror", "pull", peer.url, SUBJECT, "--db", str(db), *FAST)
    assert result.returncode == 1, result.stderr
    assert "rejected" in result.stdout and codes.REASON_CONTENT_HASH_MISMATCH in result.stdout
    # Only the two genuine events were stored: the state is the registry's, byte for byte.
    assert stored_state(db) == embedded_state_bytes()
    with EventStore(db) as store:
        assert len(store.backend.event_rows(SUBJECT)) == 2
        assert all(b"forged" not in row.body for row in store.backend.event_rows(SUBJECT))


def test_untrusted_key_events_not_stored_and_trusted_keys_file_used(tmp_path: Path) -> None:
    registry = TestKey("registry", signer_id="pith.science")
    author, stranger = TestKey("author"), TestKey("stranger")
    history = History.new(registry)
    good = history.event("author_attestation", key=author, target="author", payload={"ok": 1})
    bad = history.event("author_attestation", key=stranger, target="author", payload={"ok": 2})
    bundle = history.bundle([good, bad], public_keys=[registry, author, stranger])  # listing is not trusting
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([registry.entry(signer_id="pith.science"), author.entry()]))
    db = tmp_path / "s.sqlite"
    code = history.subject.rsplit(":", 1)[1]
    with FaultPeer({bundle_path(code): Serve(json.dumps(bundle).encode())}) as peer:
        result = run_cli(
            "mirror",
            "pull",
            peer.url,
            history.subject,
            "--db",
            str(db),
            "--trusted-keys",
            str(keys),
            "--json",
            *FAST,
        )
    assert result.returncode == 1, result.stderr
    document = output_document(result, "mirror pull")
    assert (document["db"], document["source"]) == (str(db), peer.url)
    [entry] = document["subjects"]
    assert (entry["wanted"], entry["ok"], entry["failures"]) == (history.subject, False, [])
    outcome = entry["admitted"]
    assert outcome["subject"] == history.subject
    assert outcome["rejected"] == [{"event_id": bad["event_id"], "reason": codes.REASON_UNKNOWN_KEY}]
    assert outcome["events_added"] == 2
    ring = KeyRing.from_json(keys.read_bytes())
    expected = rebuild_state(history.bundle([good]), trusted_keys=ring)
    assert stored_state(db, history.subject, ring) == expected.to_json()


def test_admission_keeps_one_valid_copy_per_unit() -> None:
    # Issue 15: copies that differ only outside the content hash (signature members) are one unit.
    bundle = json.loads(BUNDLE)
    event = next(e for e in bundle["events"] if e["event_type"] != "record_created")
    variant = copy.deepcopy(event)
    variant["signature"]["signed_at"] = "2026-05-20T00:00:00Z"  # not covered by the content hash
    with EventStore() as store:
        first = admit_bundle(
            store,
            parse_bundle(BUNDLE, subject=SUBJECT, url="a"),
            subject=SUBJECT,
            ring=KeyRing.registry(),
            source="a",
        )
        bundle["events"] = [variant]
        second = admit_bundle(
            store,
            parse_bundle(json.dumps(bundle).encode(), subject=SUBJECT, url="b"),
            subject=SUBJECT,
            ring=KeyRing.registry(),
            source="b",
        )
        assert first.events_added == 2 and second.events_added == 0 and second.duplicates == 1
        assert len(store.backend.event_rows(SUBJECT)) == 2


def test_peer_signature_and_state_are_reported_not_trusted(tmp_path: Path) -> None:
    registry = TestKey("registry")
    history = History.new(registry)
    snap = history.event("graph_snapshot", payload={"graph_snapshot": {"n": 1}})
    honest = rebuild_state(history.bundle([snap]), trusted_keys=[registry.entry()])
    # A mirror's key (not trusted here) signs a bundle claiming a state it did not compute.
    lying = history.bundle([snap], state={**honest.to_dict(), "state_sha256": "0" * 64})
    lying = sign_bundle(lying, TestKey("some-mirror"))
    with EventStore() as store:
        admitted = admit_bundle(
            store,
            parse_bundle(json.dumps(lying).encode(), subject=history.subject, url="u"),
            subject=history.subject,
            ring=KeyRing([*KeyRing.from_entries([registry.entry()])]),
            source="u",
        )
    assert admitted.state_sha256 == honest.state_sha256
    assert {p.code for p in admitted.notes} >= {codes.P_BUNDLE_UNKNOWN_KEY}
    assert codes.P_STATE_HASH in {p.code for p in admitted.problems}


@pytest.mark.parametrize("bad", [[], {"manifest_type": "other"}, manifest({"name": "x"})])
def test_bad_manifest_file_is_one_line(tmp_path: Path, bad: Any) -> None:
    path, db = tmp_path / "m.json", tmp_path / "s.sqlite"
    path.write_text(json.dumps(bad))
    result = run_cli("mirror", "pull", str(path), SUBJECT, "--db", str(db))
    assert (
        result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    )
    assert snapshot(db) == {}
