"""Verification of every registry document: bundles, records, states, graph snapshots.

Each ``verify_*`` function returns a :class:`~pith_graph.report.Report` for
any document (call ``.raise_for_problems()`` to turn a failed one into a
:class:`~pith_graph.errors.VerificationError`). A document that cannot be read
as the kind asked for -- unreadable, too large, not JSON, hostile JSON, not a
Pith document, wrong shape -- gives a report with ``usable=False`` whose one
problem carries the error's code. Only the caller's own mistakes raise, before
anything is read: unusable ``trusted_keys`` (:class:`~pith_graph.errors.TrustError`),
a negative ``workers`` or a source of an unsupported type
(:class:`~pith_graph.errors.InputError`, code ``usage``).

A source is read by the rule of :func:`pith_graph.documents.read_json`: bytes
are JSON text, a ``str`` or ``os.PathLike`` is a path (a ``str`` whose first
non-blank character is ``{`` or ``[`` is JSON text), a mapping is a parsed document.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final, TypeVar, cast

import msgspec

from pith_graph import codes
from pith_graph._parallel.pool import resolve_workers
from pith_graph.canonical import (
    canonical_json_parsed,
    compact_json_parsed,
    gc_paused,
    loads_accepted,
)
from pith_graph.documents import (
    Document,
    DocumentSource,
    SplitBundle,
    is_json_text,
    read_document,
    source_bytes,
)
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PithGraphError, TrustError
from pith_graph.identifiers import derived_aliases, short_pith_number
from pith_graph.keys import KeyRing, TrustedKey, TrustedKeys, coerce_ring, reusable_keys
from pith_graph.models import (
    MERGE_VERSION,
    Bundle,
    GraphSnapshot,
    PithNumberRecord,
    StateDocument,
    convert,
)
from pith_graph.rebuild import rebuild, stream_rebuild
from pith_graph.records import RecordProblem, check_record, decode_signature
from pith_graph.report import Problem, Report
from pith_graph.state import State

__all__ = [
    "verify_bundle",
    "verify_document",
    "verify_graph_snapshot",
    "verify_record",
    "verify_state",
]

_HEX64: Final = re.compile(r"[0-9a-f]{64}")
BUNDLE_SIGNATURE_V1: Final = ("ed25519", "signed_v1", "bundle_sha256_bytes")


_F = TypeVar("_F", bound=Callable[..., Report])


def _reporting(kind: str) -> Callable[[_F], _F]:
    """Make a ``verify_*`` function return a report for any document (see the module docstring).

    The caller's ``trusted_keys`` are checked first (they raise), as are usage errors
    (a negative ``workers`` for a bundle); any other error reading the document becomes
    an unusable report of ``kind``.
    """

    def decorate(func: _F) -> _F:
        @functools.wraps(func)
        def verify(source: Any, *args: Any, **options: Any) -> Report:
            if "trusted_keys" in options:
                options["trusted_keys"] = coerce_ring(reusable_keys(options["trusted_keys"]))
            try:
                return func(source, *args, **options)
            except PithGraphError as exc:
                if exc.code == codes.E_USAGE:
                    raise
                return Report.unusable(kind, _name(source), exc)

        return cast(_F, verify)

    return decorate


def _problems(found: list[RecordProblem], where: str | None = None) -> list[Problem]:
    return [Problem(p.code, p.message, where) for p in found]


def _name(source: object) -> str:
    """How a report names its source: a path as given, anything else ``<document>``."""
    if isinstance(source, (bytes, bytearray, memoryview, Mapping, Document)) or is_json_text(source):
        return "<document>"
    return str(source)


def _document(source: DocumentSource | Document) -> Document:
    return source if isinstance(source, Document) else read_document(source)


def _alias_problems(aliases: list[Any], canonical_record: Mapping[str, Any]) -> list[Problem]:
    """Every derivable alias a document lists must carry the derived value."""
    try:
        # The record was strictly parsed (a Document's tree): the fast canonical encoder applies.
        digest = hashlib.sha256(canonical_json_parsed(canonical_record)).digest()
        derived = dict(derived_aliases(canonical_record, digest=digest))
    except InputError as exc:
        return [Problem(codes.P_SHAPE, exc.message, "aliases")]
    problems = []
    for alias in aliases:
        expected = derived.get(alias.alias_kind)
        if expected is not None and alias.alias_value != expected:
            problems.append(
                Problem(
                    codes.P_ALIAS,
                    f"alias {alias.alias_kind} is {alias.alias_value!r}, derived {expected!r}",
                    "aliases",
                )
            )
    return problems


def _short_problems(short: str | None, number: str) -> list[Problem]:
    if short is None:
        return []
    try:
        expected = short_pith_number(number)
    except InputError:
        return []  # the Pith Number problem is reported already
    if short != expected:
        return [
            Problem(codes.P_SHORT_PITH_NUMBER, f"short_pith_number should be {expected}", "short_pith_number")
        ]
    return []


def _check_key_entries(entries: list[dict[str, Any]], ring: KeyRing) -> list[Problem]:
    """A bundle's key list may not contradict a trusted key, nor itself."""
    problems = []
    for index, entry in enumerate(entries):
        where = f"public_keys[{index}]"
        try:
            key = TrustedKey.from_entry(entry)
        except TrustError as exc:
            problems.append(Problem(codes.P_KEY_ENTRY, exc.message, where))
            continue
        trusted = ring.get(key.key_id)
        if trusted is not None and trusted.public_key != key.public_key:
            problems.append(
                Problem(
                    codes.P_KEY_ENTRY,
                    f"lists key {key.key_id!r} with material other than the trusted key",
                    where,
                )
            )
    return problems


def _bundle_digest(raw: dict[str, Any]) -> str:
    """``bundle_sha256``: sha256 of the canonical JSON of the bundle without ``bundle_signature``."""
    return hashlib.sha256(
        canonical_json_parsed({k: v for k, v in raw.items() if k != "bundle_signature"})
    ).hexdigest()


def _shell_body(split: SplitBundle, state: State | None) -> dict[str, Any]:
    """The members of a split bundle that ``bundle_sha256`` covers besides its events; a state
    cut out unparsed (equal to ``state``, the rebuilt one) as its canonical bytes."""
    body = {k: v for k, v in split.shell.items() if k not in ("bundle_signature", "events")}
    if split.state_text is not None:
        assert state is not None  # a state left cut out equals the rebuilt one (settle_state)
        body["state"] = msgspec.Raw(state.canonical_json())
    return body


def _digest_head(split: SplitBundle) -> Any:
    """The hash of a split bundle's canonical JSON up to its first event.

    Canonical JSON is compositional: the object is ``{``, its members in key
    order, ``}``, and the ``events`` member is ``[``, each event's canonical JSON
    in the bundle's order, ``]``. So the shell's members before and after
    ``events`` (in the same order as the sort) and each event, encoded one at a
    time and joined by commas, hash to the same bytes as the whole document.
    """
    body = {k: v for k, v in split.shell.items() if k < "events" and k != "bundle_signature"}
    before = canonical_json_parsed(body)[1:-1]  # "state" sorts after "events"
    digest = hashlib.sha256(b"{" + before + b"," if before else b"{")
    digest.update(b'"events":[')
    return digest


def _digest_tail(split: SplitBundle, state: State | None) -> bytes:
    """The canonical JSON of a split bundle after its last event (see :func:`_digest_head`)."""
    body = _shell_body(split, state)
    after = canonical_json_parsed({k: v for k, v in body.items() if k > "events"})[1:-1]
    return b"]," + after + b"}" if after else b"]}"


def _split_bundle_digest(split: SplitBundle, state: State | None = None) -> str:
    """:func:`_bundle_digest` of a split bundle, without the parsed tree of every event at once
    (see :func:`_digest_head`; ``state``: the rebuilt state, when ``split`` still holds its text)."""
    digest = _digest_head(split)
    with gc_paused():  # acyclic values only (see gc_paused)
        for index, text in enumerate(split.events):
            if index:
                digest.update(b",")
            # Every event text passed the strict parse in the streaming rebuild this follows.
            digest.update(canonical_json_parsed(loads_accepted(text)))
    digest.update(_digest_tail(split, state))
    return str(digest.hexdigest())


class _StreamedDigest:
    """:func:`_split_bundle_digest` taken while the streaming rebuild parses the events
    (:func:`~pith_graph.rebuild.stream_rebuild`'s ``on_split``), so that they are not
    parsed again; when the rebuild's helpers parsed them instead, after it."""

    __slots__ = ("_digest", "_fed")

    def __init__(self) -> None:
        self._digest: Any = None
        self._fed = 0

    def start(self, split: SplitBundle) -> Callable[[Any], None]:
        self._digest = _digest_head(split)
        self._fed = 0
        return self._feed

    def _feed(self, value: Any) -> None:
        if self._fed:
            self._digest.update(b",")
        self._digest.update(canonical_json_parsed(value))
        self._fed += 1

    def of(self, split: SplitBundle, state: State) -> str:
        """``bundle_sha256`` of ``split``, the bundle the rebuild fed this with (``state``: its rebuilt state)."""
        if self._digest is None or self._fed != len(split.events):
            return _split_bundle_digest(split, state)
        digest = self._digest.copy()
        digest.update(_digest_tail(split, state))
        return str(digest.hexdigest())


def _bundle_signature_problems(
    digest_of: Callable[[], str], bundle: Bundle, ring: KeyRing, verifier: Verifier
) -> list[Problem]:
    """``bundle_sha256`` hashes the bundle without ``bundle_signature``; Ed25519 over its bytes.

    ``digest_of`` computes it, only for a bundle that is signed.
    """
    signature = bundle.bundle_signature
    where = "bundle_signature"
    if signature is None:
        return [Problem(codes.P_BUNDLE_SIGNATURE_MISSING, "the bundle is not signed", where, "warning")]
    digest = digest_of()
    if signature.bundle_sha256 != digest:
        return [Problem(codes.P_BUNDLE_HASH, f"bundle_sha256 should be {digest}", where)]
    if (signature.algorithm, signature.signature_status, signature.signed_message) != BUNDLE_SIGNATURE_V1:
        return [
            Problem(codes.P_BUNDLE_SIGNATURE_UNSUPPORTED, "not a signed_v1 ed25519 bundle signature", where)
        ]
    key = ring.get(signature.key_id)
    if key is None:
        return [
            Problem(codes.P_BUNDLE_UNKNOWN_KEY, f"bundle signed by untrusted key {signature.key_id!r}", where)
        ]
    if signature.public_key_fingerprint != key.fingerprint_hex:
        return [
            Problem(codes.P_BUNDLE_KEY_MISMATCH, "bundle signature fingerprint does not match the key", where)
        ]
    raw_signature = decode_signature(signature.signature_b64)
    if raw_signature is None or not verifier.verify(key.public_key, raw_signature, bytes.fromhex(digest)):
        return [Problem(codes.P_BUNDLE_SIGNATURE, "bundle signature does not verify", where)]
    return []


def _first_difference(expected: Any, actual: Any, path: str = "state") -> str:
    """A short description of where two JSON values first differ."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in list(expected) + [k for k in actual if k not in expected]:
            if key not in actual:
                return f"{path}.{key} is missing from the embedded state"
            if key not in expected:
                return f"{path}.{key} is not expected"
            if expected[key] != actual[key]:
                return _first_difference(expected[key], actual[key], f"{path}.{key}")
        if list(expected) != list(actual):
            return f"{path}: keys are in a different order"
    elif isinstance(expected, list) and isinstance(actual, list):
        for index, (left, right) in enumerate(zip(expected, actual, strict=False)):
            if left != right:
                return _first_difference(left, right, f"{path}[{index}]")
        if len(expected) != len(actual):
            return f"{path} has {len(actual)} items, expected {len(expected)}"
    elif expected != actual:
        return f"embedded {path} is {json.dumps(actual)[:80]}, rebuilt {json.dumps(expected)[:80]}"
    return f"{path}: same values, different bytes (serialisation differs)"


@_reporting("bundle")
def verify_bundle(
    source: DocumentSource | Document,
    *,
    trusted_keys: TrustedKeys = None,
    trust_bundle_keys: bool = False,
    verifier: Verifier | None = None,
    workers: int | None = None,
) -> Report:
    """Verify a bundle: record claims, bundle signature, every event, and the embedded state.

    The state is rebuilt with merge-v1 under the caller's trust (default: the
    registry key only) and must equal the embedded state byte for byte.
    ``workers``: as for :func:`pith_graph.rebuild.rebuild_state`. Given bytes or
    a path, the bundle is verified the way ``rebuild_state`` streams it (the
    decoded tree of every event is never held at once), unless ``verifier``
    has a signature cache, which only the full path fills with helpers' verdicts.
    """
    count = resolve_workers(workers)  # a bad count is the caller's error: raised before any reading
    trusted_keys = reusable_keys(trusted_keys)  # the full path reads them again after the streaming one
    verifier = verifier or Verifier()
    data = None if isinstance(source, Document) else source_bytes(source)
    if data is not None:
        report = _verify_streamed(data, _name(source), trusted_keys, trust_bundle_keys, verifier, count)
        if report is not None:
            return report
    # The same rebuild the library call does (load, trust, merge); the checks below add to it.
    result, bundle, raw, ring = rebuild(
        _document(source if data is None else data),
        trusted_keys=trusted_keys,
        trust_bundle_keys=trust_bundle_keys,
        verifier=verifier,
        workers=count,
    )
    return _bundle_report(_name(source), bundle, result.state, ring, verifier, partial(_bundle_digest, raw))


def _verify_streamed(
    data: bytes, name: str, trusted_keys: TrustedKeys, trust_bundle_keys: bool, verifier: Verifier, count: int
) -> Report | None:
    """:func:`verify_bundle` over a streaming rebuild; None when that does not apply
    (not a bundle, anything irregular, an input error: the full path then reports it)."""
    if verifier.cache is not None:
        return None
    digest = _StreamedDigest()
    streamed = stream_rebuild(data, trusted_keys, trust_bundle_keys, count, verifier, on_split=digest.start)
    if streamed is None:
        return None
    split = streamed.split
    return _bundle_report(
        name,
        split.model,
        streamed.state,
        streamed.keyring,
        verifier,
        partial(digest.of, split, streamed.state),
        rebuilt=streamed.state_json,
        state_matches=split.state_text is not None,
    )


def _bundle_report(
    name: str,
    bundle: Bundle,
    state: State,
    ring: KeyRing,
    verifier: Verifier,
    digest_of: Callable[[], str],
    *,
    rebuilt: bytes | None = None,
    state_matches: bool = False,
) -> Report:
    """The checks of :func:`verify_bundle` after the rebuild (``bundle.events`` is not read).

    ``rebuilt``: ``state.to_json()`` if already made; ``state_matches``: the embedded state's
    text was found equal to it (the streaming rebuild left it unparsed, ``bundle.state`` None).
    """
    problems: list[Problem] = []
    problems += _problems(
        check_record(
            bundle.canonical_record,
            canonical_sha256=bundle.canonical_sha256,
            claimed_pith_number=bundle.pith_number,
            receipt=None,
            source_fields=bundle.source,
            keyring=ring,
            verifier=verifier,
            require_receipt=False,
        ),
        "canonical_record",
    )
    problems += _short_problems(bundle.short_pith_number, bundle.pith_number)
    problems += _alias_problems(bundle.source_aliases, bundle.canonical_record)
    if bundle.merge_version != MERGE_VERSION:
        problems.append(
            Problem(codes.P_MERGE_VERSION, f"merge_version {bundle.merge_version!r} is not {MERGE_VERSION}")
        )
    problems += _check_key_entries(bundle.public_keys, ring)
    problems += _bundle_signature_problems(digest_of, bundle, ring, verifier)

    # Root causes first: an event's own defect (stage 1) before what it causes downstream
    # (stage 2, e.g. prev_event_invalid), in merge-v1's check order; by event id within a reason.
    for item in sorted(state.invalid_events, key=lambda item: codes.root_cause_rank(item["reason"])):
        problems.append(
            Problem(
                codes.P_INVALID_EVENT,
                f"event is invalid: {item['reason']}",
                item["event_id"],
                reason=item["reason"],
            )
        )
    for fork in state.equivocations:
        problems.append(
            Problem(
                codes.P_EQUIVOCATION,
                f"stream ({fork['target']}, {fork['signer_id']}) forks after {fork['prev_event']}: "
                + ", ".join(fork["event_ids"]),
                fork["target"],
            )
        )
    if state_matches:
        pass  # equal byte for byte to the rebuilt state (pith_graph.documents.settle_state)
    elif bundle.state is None:
        problems.append(Problem(codes.P_STATE_MISSING, "the bundle embeds no state", "state", "warning"))
    elif compact_json_parsed(bundle.state) != (state.to_json() if rebuilt is None else rebuilt):
        # Only a state that differs from the rebuilt one can fail verify_state on its own: the
        # rebuilt state's hash and counts hold by construction (tests/test_verify_embedded_state.py).
        embedded = verify_state(Document(bundle.state, "state"))
        if embedded.usable:
            problems += embedded.problems
        else:
            problems.append(
                Problem(codes.P_SHAPE, f"embedded state: {embedded.problems[0].message}", "state")
            )
        problems.append(
            Problem(codes.P_STATE_MISMATCH, _first_difference(state.to_dict(), bundle.state), "state")
        )
    return Report(
        "bundle",
        name,
        tuple(problems),
        {
            "pith_number": bundle.pith_number,
            "events": state.event_count,
            "valid_events": state.valid_event_count,
            "invalid_events": state.invalid_event_count,
            "equivocations": state.equivocation_count,
            "applied_events": len(state.applied_event_ids),
            "state_sha256": state.state_sha256,
            "trusted_keys": [key.key_id for key in ring],
        },
    )


@_reporting("record")
def verify_record(
    source: DocumentSource | Document, *, trusted_keys: TrustedKeys = None, verifier: Verifier | None = None
) -> Report:
    """Verify a Pith Number record: hash, Pith Number, short form, aliases, source, receipt."""
    document = _document(source)
    record = convert(document.obj, PithNumberRecord)
    ring = coerce_ring(trusted_keys)
    problems = _problems(
        check_record(
            record.canonical_record,
            canonical_sha256=record.canonical_sha256,
            claimed_pith_number=record.pith_number,
            receipt=document.obj["receipt"],
            source_fields=record.source,
            keyring=ring,
            verifier=verifier or Verifier(),
        ),
        "canonical_record",
    )
    problems += _short_problems(record.short_pith_number, record.pith_number)
    problems += _alias_problems(record.aliases, record.canonical_record)
    if record.graph_snapshot is not None:
        problems += verify_graph_snapshot(Document(record.graph_snapshot, "graph_snapshot")).problems
    return Report(
        "record",
        _name(source),
        tuple(problems),
        {
            "pith_number": record.pith_number,
            "canonical_sha256": record.canonical_sha256,
            "receipt_key": record.receipt.key_id,
        },
    )


@_reporting("state")
def verify_state(source: DocumentSource | Document) -> Report:
    """Verify a state on its own: its ``state_sha256`` and the consistency of its counts."""
    document = _document(source)
    state = convert(document.obj, StateDocument)
    problems: list[Problem] = []
    body = {k: v for k, v in document.obj.items() if k != "state_sha256"}
    digest = hashlib.sha256(canonical_json_parsed(body)).hexdigest()
    if digest != state.state_sha256:
        problems.append(Problem(codes.P_STATE_HASH, f"state_sha256 should be {digest}", "state_sha256"))
    checks = [
        (
            state.event_count == state.valid_event_count + state.invalid_event_count,
            "event_count != valid + invalid",
        ),
        (
            state.invalid_event_count == len(state.invalid_events),
            "invalid_event_count != len(invalid_events)",
        ),
        (state.equivocation_count == len(state.equivocations), "equivocation_count != len(equivocations)"),
        (len(state.applied_event_ids) <= state.valid_event_count, "more applied events than valid events"),
        (
            len(set(state.applied_event_ids)) == len(state.applied_event_ids),
            "applied_event_ids repeats an id",
        ),
        (
            [e.event_id for e in state.invalid_events] == sorted({e.event_id for e in state.invalid_events}),
            "invalid_events are not sorted by unique event_id",
        ),
        (
            all(e.reason in codes.REASONS for e in state.invalid_events),
            "invalid_events holds an unknown reason",
        ),
        (state.merge_version == MERGE_VERSION, f"merge_version is not {MERGE_VERSION}"),
    ]
    problems += [Problem(codes.P_STATE_COUNTS, message, "state") for ok, message in checks if not ok]
    return Report(
        "state",
        _name(source),
        tuple(problems),
        {"pith_number": state.pith_number, "events": state.event_count, "state_sha256": state.state_sha256},
    )


@_reporting("graph_snapshot")
def verify_graph_snapshot(source: DocumentSource | Document) -> Report:
    """Check a graph snapshot's shape (its ``snapshot_sha256`` values are opaque)."""
    document = _document(source)
    snapshot = convert(document.obj, GraphSnapshot)
    problems: list[Problem] = []
    items = snapshot.claims.get("items")
    count = snapshot.claims.get("count")
    if isinstance(items, list) and isinstance(count, int) and count != len(items):
        problems.append(
            Problem(
                codes.P_SNAPSHOT_SHAPE, f"claims.count is {count} but {len(items)} items are listed", "claims"
            )
        )
    for section_name in ("claims", "integrity", "references", "formal_canon", "author_claims"):
        section = getattr(snapshot, section_name)
        if isinstance(section, dict) and "snapshot_sha256" in section:
            value = section["snapshot_sha256"]
            if not (isinstance(value, str) and _HEX64.fullmatch(value)):
                problems.append(
                    Problem(codes.P_SNAPSHOT_SHAPE, "snapshot_sha256 is not 64 lowercase hex", section_name)
                )
    source_id = snapshot.source.get("id")
    return Report(
        "graph_snapshot",
        _name(source),
        tuple(problems),
        {"source": source_id, "builder": snapshot.builder_version},
    )


def _usable_workers(workers: int | None) -> bool:
    try:
        resolve_workers(workers)
    except InputError:
        return False
    return True


@_reporting("unknown")
def verify_document(
    source: DocumentSource | Document,
    *,
    trusted_keys: TrustedKeys = None,
    trust_bundle_keys: bool = False,
    verifier: Verifier | None = None,
    workers: int | None = None,
) -> Report:
    """Detect the kind of a document and verify it accordingly.

    ``workers``: for a bundle, as for :func:`verify_bundle`. A document that is
    none of them gives an unusable report of kind ``unknown`` (code
    ``not_a_pith_document``).
    """
    name = _name(source)
    data = None if isinstance(source, Document) else source_bytes(source)
    # A bundle given as bytes or a path streams (verify_bundle); anything else is parsed whole.
    # Only text that names an "events" member is tried, a cheap test that spares most other
    # documents the split and the helpers' scratch copy (a bundle that escapes the name
    # takes the full path, with the same report). Only a bundle uses ``workers``: an
    # unusable count is left for verify_bundle to raise, never raised for another kind.
    if data is not None and b'"events"' in data and _usable_workers(workers):
        trusted_keys = reusable_keys(trusted_keys)
        streamed = _verify_streamed(
            data, name, trusted_keys, trust_bundle_keys, verifier or Verifier(), resolve_workers(workers)
        )
        if streamed is not None:
            return streamed
    document = _document(source if data is None else data)
    if document.kind == "bundle":
        report = verify_bundle(
            document,
            trusted_keys=trusted_keys,
            trust_bundle_keys=trust_bundle_keys,
            verifier=verifier,
            workers=workers,
        )
    elif document.kind == "record":
        report = verify_record(document, trusted_keys=trusted_keys, verifier=verifier)
    elif document.kind == "state":
        report = verify_state(document)
    elif document.kind == "graph_snapshot":
        report = verify_graph_snapshot(document)
    elif document.kind == "equivocation_proof":
        from pith_graph.proofs import proof_report  # written alongside the conformance suite

        # The caller's keys only: a proof never vouches for its own key (trust_bundle_keys does not apply).
        report = proof_report(document.obj, name, trusted_keys=trusted_keys, verifier=verifier)
    else:
        raise InputError(
            f"{name} is not a Pith document (bundle, state, record, graph snapshot or proof)",
            code=codes.E_NOT_PITH,
        )
    return dataclasses.replace(report, source=name)
