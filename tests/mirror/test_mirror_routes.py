"""Every GET route of a real ``pith-graph serve`` process, with the HTTP behaviour clients expect."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from pith_graph import codes
from pith_graph.keys import KeyRing
from pith_graph.store import EventStore

from .conftest import (
    HOSTILE_TITLE,
    REGISTRY_BUNDLE,
    REGISTRY_CODE,
    MirrorStore,
    Served,
    assert_error,
    code_of,
    compact,
    make_store,
    reference_sha256,
    run_cli,
    title_of,
)


def test_state_json_is_the_registry_embedded_state_byte_for_byte(mirror: Served) -> None:
    embedded = json.loads(REGISTRY_BUNDLE.read_bytes())["state"]
    with mirror.client() as client:
        response = client.get(f"/pith/{REGISTRY_CODE}/state.json")
    assert response.status_code == 200
    assert response.content == compact(embedded)
    assert response.headers["etag"] == f'"{embedded["state_sha256"]}"'
    assert response.headers["content-type"] == "application/json"


def test_state_json_equals_pith_graph_state_of_the_same_events(
    mirror: Served, mirror_store: MirrorStore, tmp_path: Path
) -> None:
    for history in mirror_store.histories.values():
        exported = run_cli(
            "store",
            "export",
            "--db",
            str(mirror_store.db),
            history.subject,
            "--trusted-keys",
            str(mirror_store.keys),
        )
        assert exported.returncode == 0, exported.stderr
        bundle = tmp_path / "bundle.json"
        bundle.write_text(exported.stdout)
        expected = run_cli("state", str(bundle), "--trusted-keys", str(mirror_store.keys))
        assert expected.returncode == 0, expected.stderr
        with mirror.client() as client:
            served = client.get(f"/pith/{code_of(history.subject)}/state.json")
        assert served.content + b"\n" == expected.stdout.encode()
        assert served.json()["applied_event_ids"] == [
            history.record_created["event_id"],
            served.json()["applied_event_ids"][1],
        ]


def test_conditional_get_head_cors_and_cache_control(mirror: Served) -> None:
    path = f"/pith/{REGISTRY_CODE}/state.json"
    with mirror.client() as client:
        first = client.get(path)
        etag = first.headers["etag"]
        assert first.headers["access-control-allow-origin"] == "*"
        assert "no-cache" in first.headers["cache-control"]
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert client.get(path, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
        assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
        head = client.head(path)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["etag"] == etag
        assert int(head.headers["content-length"]) == len(first.content)


def test_bundle_json_names_this_mirror_and_rebuilds_to_the_served_state(
    mirror: Served, mirror_store: MirrorStore, tmp_path: Path
) -> None:
    with mirror.client() as client:
        for code in [REGISTRY_CODE, *(code_of(h.subject) for h in mirror_store.histories.values())]:
            response = client.get(f"/pith/{code}/bundle.json")
            assert response.status_code == 200
            assert client.get(f"/.well-known/pith/{code}/bundle.json").content == response.content
            bundle = json.loads(response.content)
            assert (
                response.headers["etag"] == f'"{reference_sha256(bundle)}"'
            )  # unsigned: the bundle's own sha256
            assert "bundle_signature" not in bundle
            assert bundle["links"] == {
                "resolver": f"{mirror.url}/pith/{code}",
                "bundle": f"{mirror.url}/pith/{code}/bundle.json",
                "state": f"{mirror.url}/pith/{code}/state.json",
                "well_known_bundle": f"{mirror.url}/.well-known/pith/{code}/bundle.json",
            }
            assert bundle["mirror_hints"][-1]["base_url"] == mirror.url
            assert bundle["mirror_hints"][-1]["state_url"] == f"{mirror.url}/pith/{code}/state.json"
            assert list(bundle)[-2:] == ["links", "state"]
            state = client.get(f"/pith/{code}/state.json")
            assert compact(bundle["state"]) == state.content
            # The served bundle rebuilds, outside the server, to the served state.
            (tmp_path / "served.json").write_bytes(response.content)
            rebuilt = run_cli(
                "state", str(tmp_path / "served.json"), "--trusted-keys", str(mirror_store.keys)
            )
            assert rebuilt.returncode == 0, rebuilt.stderr
            assert rebuilt.stdout.encode() == state.content + b"\n"
    registry = json.loads(REGISTRY_BUNDLE.read_bytes())
    with mirror.client() as client:
        served = client.get(f"/pith/{REGISTRY_CODE}/bundle.json").json()
    assert served["events"] == registry["events"]
    assert served["canonical_record"] == registry["canonical_record"]
    assert served["mirror_hints"][0] == registry["mirror_hints"][0]  # the registry's own hint is kept


def test_page_shows_the_title_and_escapes_payload_text(mirror: Served, mirror_store: MirrorStore) -> None:
    with mirror.client() as client:
        page = client.get(f"/pith/{REGISTRY_CODE}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "CRAFT: Fine-Grained Cost-Aware Expert Replication" in page.text
        assert "1a7ac2e50ab382bc37366326f84cd1cf0cfd6e34c4b7a6e70a8b1a5df4ef92e5" in page.text
        hostile = mirror_store.histories["2601.00002"]
        assert title_of("2601.00002") == HOSTILE_TITLE
        text = client.get(f"/pith/{code_of(hostile.subject)}").text
    assert "<script>document.title" not in text
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in text
    assert "<img src=x" not in text


def test_events_json_lists_every_copy_with_its_verdict(mirror: Served) -> None:
    registry = json.loads(REGISTRY_BUNDLE.read_bytes())
    with mirror.client() as client:
        response = client.get(f"/api/pith-number/{REGISTRY_CODE}/events.json")
    assert response.status_code == 200
    document = response.json()
    assert document["pith_number"] == registry["pith_number"]
    assert document["state_sha256"] == registry["state"]["state_sha256"]
    listed = {item["event_id"]: item for item in document["events"]}
    assert set(listed) == {event["event_id"] for event in registry["events"]}
    for event in registry["events"]:
        item = listed[event["event_id"]]
        assert item["status"] == codes.MIRROR_APPLIED and item["applied"] is True and item["reason"] is None
        assert item["event"] == event and item["copy_reason"] is None
        assert item["copy_sha256"] == reference_sha256(event)
    assert response.headers["etag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'


def test_events_json_shows_a_forged_copy_s_own_verdict_beside_its_unit_s(tmp_path: Path) -> None:
    """A bad-signature copy of an applied unit (kept as evidence by a local import) reads as
    ``copy_reason: bad_signature`` while its unit stays ``applied``."""
    store = make_store(tmp_path, ("2601.00061",))
    history = store.histories["2601.00061"]
    ring = KeyRing.from_json(store.keys.read_bytes())
    with EventStore(store.db) as opened:
        [genuine] = [
            json.loads(c.body)
            for c in opened.events(history.subject, trusted_keys=ring)
            if c.event_type == "graph_snapshot"
        ]
    forged = json.loads(json.dumps(genuine))
    signature = bytearray(base64.b64decode(forged["signature"]["signature_b64"]))
    signature[0] ^= 1
    forged["signature"]["signature_b64"] = base64.b64encode(bytes(signature)).decode()
    with EventStore(store.db) as opened:
        kept = opened.append(forged, trusted_keys=ring)  # a local user's evidence
    assert kept.status == codes.STORE_INVALID and kept.reason == codes.REASON_BAD_SIGNATURE
    served = store.serve()
    try:
        with served.client() as client:
            response = client.get(f"/api/pith-number/{code_of(history.subject)}/events.json")
    finally:
        served.stop()
    assert response.status_code == 200
    listed = response.json()["events"]
    copies = {item["copy_sha256"]: item for item in listed if item["event_id"] == genuine["event_id"]}
    assert set(copies) == {reference_sha256(genuine), reference_sha256(forged)}
    assert all(item["copy_reason"] is None for item in listed if item["event_id"] != genuine["event_id"])
    for item in copies.values():
        assert item["event_id"] == genuine["event_id"]
        assert item["status"] == codes.MIRROR_APPLIED and item["applied"] is True and item["reason"] is None
    assert copies[reference_sha256(genuine)]["copy_reason"] is None
    assert copies[reference_sha256(forged)]["copy_reason"] == codes.REASON_BAD_SIGNATURE


@pytest.mark.parametrize(
    "query",
    [
        {"arxiv": "2603.28768"},
        {"arxiv": "2603.28768v2"},
        {"doi": "10.48550/arXiv.2603.28768"},
        {"short": "pith:AG3PAJ22"},
        {"short": "AG3PAJ22332P"},
        {"short": REGISTRY_CODE},
    ],
)
def test_resolve_finds_the_registry_record(mirror: Served, query: dict[str, str]) -> None:
    with mirror.client() as client:
        answer = client.get("/api/pith-number/resolve", params={**query, "json": "true"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["pith_number"] == "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"
        assert answer.json()["short_pith_number"] == "pith:AG3PAJ22"
        assert answer.json()["urls"]["state"] == f"{mirror.url}/pith/{REGISTRY_CODE}/state.json"
        redirect = client.get("/api/pith-number/resolve", params=query)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"{mirror.url}/pith/{REGISTRY_CODE}"


def test_resolve_errors(mirror: Served) -> None:
    with mirror.client() as client:
        assert_error(
            client.get("/api/pith-number/resolve", params={"arxiv": "2999.99999"}), 404, codes.E_NOT_FOUND
        )
        assert_error(
            client.get("/api/pith-number/resolve", params={"short": "ZZZZZZZZ"}), 404, codes.E_NOT_FOUND
        )
        assert_error(client.get("/api/pith-number/resolve"), 400, codes.E_BAD_QUERY)
        assert_error(
            client.get("/api/pith-number/resolve", params={"arxiv": "1", "doi": "2"}), 400, codes.E_BAD_QUERY
        )
        assert_error(client.get("/api/pith-number/resolve", params={"arxiv": ""}), 400, codes.E_BAD_QUERY)
        assert_error(
            client.get("/api/pith-number/resolve", params={"arxiv": "2603.28768", "json": "maybe"}),
            400,
            codes.E_BAD_QUERY,
        )


def test_manifest_lists_this_mirror_in_the_registry_shape(mirror: Served) -> None:
    with mirror.client() as client:
        response = client.get("/pith-mirrors.json")
    manifest = response.json()
    assert response.headers["access-control-allow-origin"] == "*"
    assert list(manifest) == [
        "manifest_type",
        "manifest_version",
        "generated_at",
        "merge_version",
        "mirrors",
        "notes",
    ]
    assert manifest["manifest_type"] == "pith_mirror_manifest"
    (entry,) = manifest["mirrors"]
    assert entry["base_url"] == mirror.url
    assert entry["bundle_pattern"] == f"{mirror.url}/pith/{{suffix}}/bundle.json"
    assert entry["state_pattern"] == f"{mirror.url}/pith/{{suffix}}/state.json"
    assert entry["well_known_pattern"] == f"{mirror.url}/.well-known/pith/{{suffix}}/bundle.json"
    assert entry["public_key"] is None


def test_signing_key_without_a_mirror_key_is_404(mirror: Served) -> None:
    with mirror.client() as client:
        assert_error(client.get("/pith-signing-key.json"), 404, codes.E_NO_MIRROR_KEY)


@pytest.mark.parametrize(
    "path",
    [
        "/pith/ag3paj22332p5qmvikkh75cxnk/state.json",
        "/pith/AG3PAJ22332P5QMVIKKH75CXN/state.json",
        "/pith/AG3PAJ22332P5QMVIKKH75CXNKA/state.json",
        "/pith/AG3PAJ22/bundle.json",
        "/pith/AG3PAJ22332P5QMVIKKH75CXN1",
        "/api/pith-number/AG3PAJ22332P5QMVIKKH75CXN/events.json",
    ],
)
def test_a_path_that_is_not_a_26_character_code_is_404(mirror: Served, path: str) -> None:
    with mirror.client() as client:
        assert_error(client.get(path), 404, codes.E_NOT_FOUND)


def test_a_code_the_mirror_does_not_hold_is_404(mirror: Served) -> None:
    with mirror.client() as client:
        for path in (
            "/pith/{}/state.json",
            "/pith/{}/bundle.json",
            "/pith/{}",
            "/api/pith-number/{}/events.json",
        ):
            assert_error(client.get(path.format("A" * 26)), 404, codes.E_STORE_UNKNOWN_SUBJECT)
        assert_error(client.get("/no/such/thing"), 404, codes.E_NOT_FOUND)


def test_a_wrong_method_is_405_with_allow(mirror: Served) -> None:
    with mirror.client() as client:
        for method, path in [
            ("DELETE", f"/pith/{REGISTRY_CODE}/state.json"),
            ("POST", f"/pith/{REGISTRY_CODE}/state.json"),
            ("PUT", f"/pith/{REGISTRY_CODE}/events"),
            ("GET", f"/pith/{REGISTRY_CODE}/events"),
            ("POST", "/pith-mirrors.json"),
        ]:
            response = client.request(method, path)
            assert_error(response, 405, codes.E_METHOD_NOT_ALLOWED)
            assert response.headers["allow"]


def test_openapi_lists_every_route(mirror: Served) -> None:
    with mirror.client() as client:
        document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/pith/{code}/state.json",
        "/pith/{code}/bundle.json",
        "/.well-known/pith/{code}/bundle.json",
        "/pith/{code}",
        "/api/pith-number/{code}/events.json",
        "/pith/{code}/events",
        "/api/pith-number/resolve",
        "/pith-mirrors.json",
        "/pith-signing-key.json",
        "/api/mirror/changes",
        "/openapi.json",
    }


def test_the_change_feed_is_served_over_the_mirrors_store(mirror: Served) -> None:
    """Issue 17's feed, mounted in the server: it lists the registry's subject with the state served here."""
    with mirror.client() as client:
        page = client.get("/api/mirror/changes", params={"after": "0.0", "limit": "100"})
        state = client.get(f"/pith/{REGISTRY_CODE}/state.json").json()
        bad = client.get("/api/mirror/changes", params={"after": "x"})
    assert page.status_code == 200, page.text
    listed = {change["pith_number"]: change for change in page.json()["changes"]}
    assert listed[state["pith_number"]]["state_sha256"] == state["state_sha256"]
    assert bad.status_code == 400 and bad.json()["error"] == codes.E_FEED_BAD_CURSOR
