"""Verification reports: table-driven valid and invalid registry documents."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pith_graph import codes
from pith_graph import verify as verify_module
from pith_graph._parallel.signatures import MemorySignatureCache
from pith_graph.documents import SplitBundle, load_bundle, read_document, split_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, VerificationError
from pith_graph.rebuild import rebuild, stream_rebuild
from pith_graph.testing import History, TestKey, sign_bundle
from pith_graph.verify import verify_bundle, verify_document, verify_record, verify_state
from tests.helpers import FIXTURES, varied_events


def seed(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return loaded


def rehash_state(state: dict[str, Any]) -> None:
    """Recompute state_sha256 with the reference rule, so only the edited fact is wrong."""
    body = {k: v for k, v in state.items() if k != "state_sha256"}
    state["state_sha256"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[10] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bundle-AG3PAJ22.json", "bundle"),
        ("state-SGRHL77B.json", "state"),
        ("record-GFHD7S67.json", "record"),
        ("record-NE7W423I.json", "record"),
        ("graph-GFHD7S67.json", "graph_snapshot"),
    ],
)
def test_registry_documents_verify(name: str, kind: str) -> None:
    report = verify_document(FIXTURES / name)
    assert report.kind == kind
    assert report.ok and report.problems == ()
    assert report.raise_for_problems() is report


def test_record_snapshot_equals_graph_document() -> None:
    assert seed("record-GFHD7S67.json")["graph_snapshot"] == seed("graph-GFHD7S67.json")


def _record_edit(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value

    return edit


RECORD_CASES = [
    (
        "canonical record edited",
        _record_edit(["canonical_record", "metadata", "primary_cat"], "cs.XX"),
        codes.P_CANONICAL_HASH,
    ),
    (
        "pith number",
        _record_edit(["pith_number"], "pith:2025:GFHD7S67HAJVTWHOC6ZXCMWPHZ"),
        codes.P_PITH_NUMBER,
    ),
    ("short pith number", _record_edit(["short_pith_number"], "pith:GFHD7S68"), codes.P_SHORT_PITH_NUMBER),
    ("alias value", lambda d: d["aliases"][2].update(alias_value="10.48550/arxiv.2606.29983"), codes.P_ALIAS),
    ("source", _record_edit(["source", "version"], 2), codes.P_SOURCE),
    ("receipt signature", _record_edit(["receipt", "signature_b64"], flip_b64), codes.P_RECEIPT_SIGNATURE),
    ("receipt key", _record_edit(["receipt", "key_id"], "someone-else"), codes.P_RECEIPT_UNKNOWN_KEY),
    (
        "receipt fingerprint",
        _record_edit(["receipt", "public_key_fingerprint"], "0" * 32),
        codes.P_RECEIPT_KEY_MISMATCH,
    ),
    (
        "receipt message",
        _record_edit(["receipt", "signed_message"], "something_else"),
        codes.P_RECEIPT_UNSUPPORTED,
    ),
    ("receipt digest", _record_edit(["receipt", "canonical_sha256"], "0" * 64), codes.P_CANONICAL_HASH),
    ("snapshot claims", _record_edit(["graph_snapshot", "claims", "count"], 3), codes.P_SNAPSHOT_SHAPE),
]


@pytest.mark.parametrize(("label", "edit", "code"), RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_record_problems(label: str, edit: Callable[[dict[str, Any]], None], code: str) -> None:
    doc = seed("record-GFHD7S67.json")
    edit(doc)
    report = verify_record(doc)
    # The first error names the edit; an edited record may also break what derives from it.
    assert report.errors[0].code == code
    if label != "canonical record edited":
        assert [p.code for p in report.errors] == [code]
    with pytest.raises(VerificationError) as raised:
        report.raise_for_problems()
    assert raised.value.report is report


def test_state_hash_and_counts() -> None:
    doc = seed("state-SGRHL77B.json")
    doc["state_sha256"] = "0" * 64
    assert [p.code for p in verify_state(doc).problems] == [codes.P_STATE_HASH]

    doc = seed("state-SGRHL77B.json")
    doc["event_count"] = 3
    rehash_state(doc)
    assert [p.code for p in verify_state(doc).problems] == [codes.P_STATE_COUNTS]

    doc = seed("state-SGRHL77B.json")
    doc["invalid_events"] = [{"event_id": "sha256:" + "a" * 64, "reason": "no_such_reason"}]
    doc["invalid_event_count"] = 1
    doc["event_count"] = 3
    rehash_state(doc)
    assert [p.code for p in verify_state(doc).problems] == [codes.P_STATE_COUNTS]


def _bundle_with(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = seed("bundle-AG3PAJ22.json")
    edit(doc)
    return doc


BUNDLE_CASES: list[tuple[str, Callable[[dict[str, Any]], None], list[str], bool]] = [
    ("unsigned is a warning", lambda d: d.pop("bundle_signature"), [codes.P_BUNDLE_SIGNATURE_MISSING], True),
    ("no embedded state is a warning", lambda d: d.pop("state"), [codes.P_BUNDLE_HASH], False),
    (
        "bundle hash",
        lambda d: d["bundle_signature"].update(bundle_sha256="0" * 64),
        [codes.P_BUNDLE_HASH],
        False,
    ),
    (
        "bundle key",
        lambda d: d["bundle_signature"].update(key_id="other"),
        [codes.P_BUNDLE_UNKNOWN_KEY],
        False,
    ),
    (
        "bundle signature",
        lambda d: d["bundle_signature"].update(
            signature_b64=flip_b64(d["bundle_signature"]["signature_b64"])
        ),
        [codes.P_BUNDLE_SIGNATURE],
        False,
    ),
    (
        "merge version",
        lambda d: d.update(merge_version="merge-v9"),
        [codes.P_MERGE_VERSION, codes.P_BUNDLE_HASH],
        False,
    ),
    (
        "listed key contradicts the trusted one",
        lambda d: d["public_keys"][0].update(
            public_key_hex="00" * 32,
            public_key_b64=base64.b64encode(bytes(32)).decode(),
            fingerprint_sha256_hex=None,
            fingerprint_sha256_b32_first128bits=None,
        ),
        [codes.P_KEY_ENTRY, codes.P_BUNDLE_HASH],
        False,
    ),
    (
        "embedded state edited",
        lambda d: d["state"]["current"]["graph_snapshots"].clear(),
        [codes.P_STATE_HASH, codes.P_STATE_MISMATCH, codes.P_BUNDLE_HASH],
        False,
    ),
]


#: A bundle as a parsed mapping (the full path), or as bytes or a file (the streaming path).
BUNDLE_FORMS: dict[str, Callable[[dict[str, Any], Path], Any]] = {
    "mapping": lambda doc, _: doc,
    "compact bytes": lambda doc, _: json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(),
    "indented bytes": lambda doc, _: json.dumps(doc, indent=1, ensure_ascii=False).encode(),
    "path": lambda doc, tmp: _written(tmp / "bundle.json", json.dumps(doc, ensure_ascii=False)),
}


def _written(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, for each verification that tried the streaming path, whether it applied."""
    calls: list[bool] = []
    original = stream_rebuild  # the function verify calls (pith_graph.verify imports it)

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(verify_module, "stream_rebuild", spy)
    return calls


@pytest.mark.parametrize("form", list(BUNDLE_FORMS))
@pytest.mark.parametrize(("label", "edit", "expected", "ok"), BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_bundle_problems(
    label: str,
    edit: Callable[[dict[str, Any]], None],
    expected: list[str],
    ok: bool,
    form: str,
    tmp_path: Path,
    streamed: list[bool],
) -> None:
    report = verify_bundle(BUNDLE_FORMS[form](_bundle_with(edit), tmp_path))
    assert streamed == ([] if form == "mapping" else [True])  # each form took the path it names
    found = [p.code for p in report.problems]
    assert sorted(found) == sorted(
        expected + ([codes.P_STATE_MISSING] if label.startswith("no embedded") else [])
    )
    assert report.ok is ok


def test_bundle_signed_by_mirror_key_verifies_when_trusted() -> None:
    mirror = TestKey("mirror")
    unsigned = seed("bundle-AG3PAJ22.json")
    signed = sign_bundle(unsigned, mirror)
    assert [p.code for p in verify_bundle(copy.deepcopy(signed)).problems] == [codes.P_BUNDLE_UNKNOWN_KEY]
    from pith_graph.keys import KeyRing, TrustedKey

    ring = KeyRing.registry().union(KeyRing([TrustedKey.from_entry(mirror.entry())]))
    assert verify_bundle(signed, trusted_keys=ring).ok


def test_forked_bundle_reports_equivocation_and_invalid_events() -> None:
    registry, alice = TestKey("v-registry"), TestKey("v-alice")
    history = History.new(registry)
    first = history.event("correction", key=alice, target="notes", payload={"n": 0})
    left = history.event(
        "correction", key=alice, target="notes", prev_event=first["event_id"], payload={"n": 1}
    )
    right = history.event(
        "correction", key=alice, target="notes", prev_event=first["event_id"], payload={"n": 2}
    )
    orphan = history.event("correction", key=alice, target="other", prev_event="sha256:" + "e" * 64)
    report = verify_bundle(history.bundle([first, left, right, orphan]), trusted_keys=history.trusted())
    found = sorted(p.code for p in report.errors)
    assert found == [codes.P_EQUIVOCATION, codes.P_INVALID_EVENT]
    invalid = next(p for p in report.problems if p.code == codes.P_INVALID_EVENT)
    assert invalid.where == orphan["event_id"] and "missing_prev_event" in invalid.message
    assert report.facts["equivocations"] == 1


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"hello": 1}, codes.E_NOT_PITH),
        ({"state_type": "pith_open_graph_state"}, codes.E_SHAPE),
        ([1, 2], codes.E_NOT_PITH),
    ],
)
def test_not_a_document(document: Any, code: str) -> None:
    """Issue 18: a report for any document, an unusable one here (it used to raise)."""
    report = verify_document(json.dumps(document))
    assert (report.usable, report.ok, [p.code for p in report.problems]) == (False, False, [code])


def _reference_digest(document: dict[str, Any]) -> str:
    """bundle_sha256 by the reference rule, with the standard library only."""
    body = {k: v for k, v in document.items() if k != "bundle_signature"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


@pytest.mark.parametrize(
    "shell",
    [
        {},  # events alone
        {"bundle_type": "b", "canonical_sha256": "c"},  # members before events only
        {"links": {}, "state": None, "source_aliases": []},  # after only
        {
            "event": 1,
            "eventz": 2,
            "events0": 3,
            "Z": [],
            "é": "x",
            "bundle_signature": {"k": 1},
        },  # near "events" in the sort
        {"a": {"events": []}, "z": [{"events": [1]}], "bundle_signature": None},  # "events" nested too
    ],
    ids=["events alone", "before only", "after only", "keys around events", "nested events keys"],
)
def test_split_digest_is_the_whole_documents(shell: dict[str, Any]) -> None:
    events = [{"b": 1, "a": [1.5, 0.1, -2, 'é\u2028\\"']}, {"z": {"y": None, "x": True}}, []]
    for ordered in (True, False):  # members in the sort's order, or not
        document = (
            {**shell, "events": events}
            if ordered
            else {"events": events, **dict(reversed(list(shell.items())))}
        )
        data = json.dumps(document, ensure_ascii=False).encode()
        texts = [json.dumps(e, ensure_ascii=False, indent=1).encode() for e in events]
        split = SplitBundle(
            {**document, "events": []},
            None,  # type: ignore[arg-type]  # the digest never reads the model
            [msgspec.Raw(t) for t in texts],
            memoryview(data),
            [],
        )
        assert verify_module._split_bundle_digest(split) == _reference_digest(document)


def test_a_verifier_with_a_cache_takes_the_full_path(streamed: list[bool]) -> None:
    data = (FIXTURES / "bundle-AG3PAJ22.json").read_bytes()
    cache = MemorySignatureCache()
    cached = verify_bundle(data, verifier=Verifier(cache=cache))
    assert streamed == [] and len(cache) >= 2  # the full path filled the caller's cache
    plain = verify_bundle(data)
    assert streamed == [True]
    assert (cached.problems, cached.facts) == (plain.problems, plain.facts) and plain.ok


def test_verify_document_streams_a_bundle_and_reads_the_rest_whole(
    tmp_path: Path, streamed: list[bool]
) -> None:
    whole = verify_document(seed("bundle-AG3PAJ22.json"))
    path = tmp_path / "bundle.json"
    path.write_bytes((FIXTURES / "bundle-AG3PAJ22.json").read_bytes())
    report = verify_document(path)
    assert streamed == [True] and report.source == str(path) and report.kind == "bundle"
    assert (report.problems, report.facts) == (whole.problems, whole.facts) and report.ok
    record = verify_document(FIXTURES / "record-GFHD7S67.json")  # lists "events" too: tried, does not apply
    assert streamed == [True, False] and record.kind == "record" and record.ok
    state = verify_document(FIXTURES / "state-SGRHL77B.json")  # no "events" member: not even tried
    assert streamed == [True, False] and state.kind == "state" and state.ok


def test_irregular_bundles_fail_as_on_the_full_path(streamed: list[bool]) -> None:
    text = (FIXTURES / "bundle-AG3PAJ22.json").read_text()
    duplicated = text.replace(
        '"event_type":', '"event_type":"x","event_type":', 1
    )  # a duplicate key inside an event
    deep = text.replace(
        '"payload":{', '"payload":{"deep":' + "[" * 70 + "]" * 70 + ",", 1
    )  # too deep, inside an event
    for data in (duplicated.encode(), deep.encode()):
        streaming = verify_bundle(data)
        with pytest.raises(InputError) as whole:
            load_bundle(data)
        assert not streaming.usable
        assert streaming.problems[0].code == whole.value.code and whole.value.code in (
            codes.E_DUPLICATE_KEY,
            codes.E_TOO_DEEP,
        )
    assert streamed == [False, False]


def test_workers_concern_bundles_only(streamed: list[bool]) -> None:
    """An unusable worker count is a usage error for a bundle, and ignored for other documents (found in review)."""
    record = (FIXTURES / "record-GFHD7S67.json").read_bytes()
    assert (
        verify_document(record, workers=-1).ok
        and verify_document(FIXTURES / "state-SGRHL77B.json", workers=-1).ok
    )
    assert streamed == []  # an unusable count is not tried on the streaming path
    bundle = (FIXTURES / "bundle-AG3PAJ22.json").read_bytes()
    for call in (verify_document, verify_bundle):
        with pytest.raises(InputError) as caught:
            call(bundle, workers=-1)
        assert caught.value.code == codes.E_USAGE


def _report_view(report: Any) -> tuple[Any, ...]:
    return (report.kind, report.ok, report.usable, report.problems, report.facts)


@pytest.mark.parametrize("state", ["equal", "different", "none"])
@pytest.mark.parametrize("signed", [True, False])
def test_the_streamed_verification_reports_what_the_full_path_does(
    history: History, alice: TestKey, bob: TestKey, state: str, signed: bool, streamed: list[bool]
) -> None:
    """The streamed path hashes each event as the rebuild parses it and leaves an embedded
    state equal to the rebuilt one unparsed: its report must be the full path's, on events
    that are duplicated, forked, malformed or invalid."""
    keys = [history.registry.entry(), alice.entry()]
    bundle = history.bundle(varied_events(history, alice, bob))
    if state != "none":
        rebuilt = json.loads(
            rebuild(json.dumps(bundle).encode(), trusted_keys=keys, workers=1).result.state.to_json()
        )
        if state == "different":
            rebuilt["applied_event_ids"] = rebuilt["applied_event_ids"][::-1]
        bundle["state"] = rebuilt
    if signed:
        bundle = sign_bundle(bundle, history.registry)
    data = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()
    split = split_bundle(data)
    assert split is not None and (split.state_text is None) == (state == "none")  # the state is cut
    streamed_report = verify_bundle(data, trusted_keys=keys, workers=1)
    full_report = verify_bundle(read_document(data), trusted_keys=keys, workers=1)
    assert streamed == [True]
    assert _report_view(streamed_report) == _report_view(full_report)
    found = {p.code for p in streamed_report.problems}
    assert (codes.P_STATE_MISMATCH in found) == (state == "different")
    assert (codes.P_STATE_MISSING in found) == (state == "none")
    assert (codes.P_BUNDLE_SIGNATURE_MISSING in found) != signed
    assert codes.P_BUNDLE_HASH not in found and codes.P_BUNDLE_SIGNATURE not in found


@pytest.mark.parametrize(("member", "value"), [("built_at", "2030-01-01T00:00:00Z"), ("mirror_hints", [1])])
def test_a_wrong_bundle_hash_is_found_on_the_streamed_path(
    history: History, streamed: list[bool], member: str, value: Any
) -> None:
    """A member sorted before ``events`` and one after it, changed after signing."""
    bundle = history.bundle([history.event("graph_snapshot", payload={"n": 1})])
    bundle["state"] = json.loads(rebuild(json.dumps(bundle).encode(), workers=1).result.state.to_json())
    signed = sign_bundle(bundle, history.registry)
    signed[member] = value  # after signing: the hash no longer covers the bundle
    data = json.dumps(signed, separators=(",", ":")).encode()
    report = verify_bundle(data, trusted_keys=[history.registry.entry()], workers=1)
    assert streamed == [True]
    assert [p.code for p in report.problems if p.code.startswith("bundle")] == [codes.P_BUNDLE_HASH]
