"""Network input is stored only if it passes stage 1 under the local keys (issue 15's trust rule).

A bundle fetched from a peer is untrusted input. :func:`admit_bundle` reads it
strictly, checks that it is about the subject asked for, runs merge-v1 stage 1
(:func:`pith_graph.events.inspect_event`, then :func:`pith_graph.events.check_keys`
under the caller's keys and the store's signature cache) on every event, and
stores, in one transaction (:meth:`EventStore.add_copies`, the store's rule), only:

* event copies that pass stage 1, one valid copy per unit: a unit the store
  already holds a valid copy of is a duplicate and not stored, so a peer
  cannot mint unlimited valid copies by varying what the content hash does not
  cover (the signature object);
* bundle-level items that cannot forge anything: a canonical record whose
  Pith Number is the subject; derived aliases whose (kind, value) the record
  derives, the first copy of each kept; public keys (as data: never trusted by
  being stored), mirror hints and timestamp proofs, bounded in count and size.

Events that fail are reported with their merge-v1 reason and never stored.
The peer's embedded state and bundle signature are checked
(:func:`pith_graph.verify.verify_bundle` under the same keys) and reported; the
local state is always recomputed from what the store holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed, loads
from pith_graph.documents import Document, load_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PeerError, PithGraphError, StoreError, TrustError
from pith_graph.identifiers import derived_aliases, pith_number
from pith_graph.keys import KeyRing, TrustedKey
from pith_graph.report import Problem
from pith_graph.store import EventStore
from pith_graph.store._facts import ItemRow
from pith_graph.verify import verify_bundle

__all__ = ["Admitted", "Rejected", "admit_bundle", "local_state_sha256", "parse_bundle"]

#: Most data items of one kind (public keys, mirror hints, timestamp proofs) taken from one bundle.
MAX_ITEMS_PER_KIND: Final = 32
#: Largest data item taken from a bundle, as canonical bytes.
MAX_ITEM_BYTES: Final = 64 << 10
#: Problems in a peer's claims that are findings (exit 1): its bundle or state contradicts itself,
#: or a key we trust is said to have signed what it did not.
_CLAIM_PROBLEMS: Final = frozenset(
    {
        codes.P_BUNDLE_HASH,
        codes.P_BUNDLE_SIGNATURE,
        codes.P_BUNDLE_KEY_MISMATCH,
        codes.P_BUNDLE_SIGNATURE_UNSUPPORTED,
        codes.P_STATE_HASH,
        codes.P_STATE_COUNTS,
        codes.P_CANONICAL_HASH,
        codes.P_PITH_NUMBER,
        codes.P_SHORT_PITH_NUMBER,
        codes.P_ALIAS,
        codes.P_SOURCE,
        codes.P_KEY_ENTRY,
        codes.P_MERGE_VERSION,
    }
)
#: What is only reported: another mirror's key, an unsigned bundle, a state the peer computed
#: under keys of its own. Per-event findings are reported by admission itself.
_CLAIM_NOTES: Final = frozenset(
    {
        codes.P_BUNDLE_SIGNATURE_MISSING,
        codes.P_BUNDLE_UNKNOWN_KEY,
        codes.P_STATE_MISSING,
        codes.P_STATE_MISMATCH,
    }
)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event copy received and not stored: ``reason`` is its merge-v1 stage-1 reason."""

    unit_id: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"event_id": self.unit_id, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Admitted:
    """What :func:`admit_bundle` stored and found.

    ``problems`` are findings in what was received (rejected events, a bundle or
    state that contradicts itself, a forged signature by a trusted key): a
    command exits 1 when any exist. ``notes`` are reported only.
    """

    subject: str
    source: str
    events_added: int
    duplicates: int
    rejected: tuple[Rejected, ...]
    items_added: int
    items_refused: int
    peer_state_sha256: str | None
    #: The local state's hash after the union (None: the store still holds nothing for the subject).
    state_sha256: str | None
    notes: tuple[Problem, ...] = ()
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when nothing received was found wrong."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "subject": self.subject,
            "source": self.source,
            "events_added": self.events_added,
            "duplicates": self.duplicates,
            "rejected": [r.to_dict() for r in self.rejected],
            "items_added": self.items_added,
            "items_refused": self.items_refused,
            "peer_state_sha256": self.peer_state_sha256,
            "state_sha256": self.state_sha256,
            "notes": [p.to_dict() for p in self.notes],
            "problems": [p.to_dict() for p in self.problems],
        }


def parse_bundle(body: bytes, *, subject: str | Callable[[str], bool], url: str) -> dict[str, Any]:
    """The strict parse of a fetched bundle about ``subject`` (a Pith Number, or a test of one); else a :class:`PeerError`."""
    try:
        raw, model = load_bundle(body)
    except InputError as exc:
        raise PeerError(
            f"{url}: not a usable bundle ({exc.code}: {exc.message})", code=codes.E_PEER_BAD_ANSWER, url=url
        ) from exc
    if not (model.pith_number == subject if isinstance(subject, str) else subject(model.pith_number)):
        wanted = subject if isinstance(subject, str) else "the subject asked for"
        raise PeerError(
            f"{url}: a bundle of {model.pith_number!r}, not of {wanted}",
            code=codes.E_PEER_WRONG_SUBJECT,
            url=url,
        )
    return raw


def local_state_sha256(store: EventStore, subject: str, ring: KeyRing) -> str | None:
    """``state_sha256`` of the subject's state recomputed from the store under ``ring``; None if nothing is held."""
    try:
        return store.state(subject, trusted_keys=ring).state_sha256
    except StoreError as exc:
        if exc.code == codes.E_STORE_UNKNOWN_SUBJECT:
            return None
        raise


def _record(
    raw: Mapping[str, Any], subject: str, stored: Iterable[tuple[str, bytes]]
) -> Mapping[str, Any] | None:
    """The canonical record of ``subject``: the bundle's if its Pith Number is the subject, else a stored one."""
    candidates = [raw.get("canonical_record")] + [loads(body) for kind, body in stored if kind == "record"]
    for candidate in candidates:
        if isinstance(candidate, Mapping):
            try:
                if pith_number(candidate) == subject:
                    return candidate
            except PithGraphError:
                continue
    return None


def _items(raw: Mapping[str, Any], subject: str, store: EventStore) -> tuple[list[ItemRow], int]:
    """The bundle-level items worth keeping (see the module), and how many were refused."""
    stored = store.backend.items(subject)
    record = _record(raw, subject, stored)
    items: list[ItemRow] = []
    refused = 0
    if record is not None and raw.get("canonical_record") is record:
        items.append(ItemRow(subject, "record", canonical_json_parsed(record)))
    derived = set(derived_aliases(record)) if record is not None else set()
    held_aliases = set()
    for kind, body in stored:
        if kind == "alias":
            alias = loads(body)
            held_aliases.add((alias.get("alias_kind"), alias.get("alias_value")))
    for alias in raw.get("source_aliases") or []:
        if not isinstance(alias, dict):
            refused += 1
            continue
        key = (alias.get("alias_kind"), alias.get("alias_value"))
        if key in held_aliases:
            continue  # merge-v1 puts aliases in the state: the first copy of each is kept
        if key in derived and isinstance(alias.get("created_at"), str):
            held_aliases.add(key)
            items.append(ItemRow(subject, "alias", canonical_json_parsed(alias)))
        else:
            refused += 1  # only the aliases the record derives
    for kind, member in (
        ("public_key", "public_keys"),
        ("mirror_hint", "mirror_hints"),
        ("timestamp_proof", "timestamp_proofs"),
    ):
        values = raw.get(member) or []
        for index, value in enumerate(values):
            body = canonical_json_parsed(value)
            if index >= MAX_ITEMS_PER_KIND or not isinstance(value, dict) or len(body) > MAX_ITEM_BYTES:
                refused += 1
                continue
            if kind == "public_key":
                try:
                    TrustedKey.from_entry(value)  # kept as data only; an unreadable entry is not kept at all
                except TrustError:
                    refused += 1
                    continue
            items.append(ItemRow(subject, kind, body))
    return items, refused


def _claims(raw: dict[str, Any], ring: KeyRing, verifier: Verifier) -> tuple[list[Problem], list[Problem]]:
    """The peer's own claims (record, bundle signature, embedded state) checked under ``ring``: (problems, notes)."""
    # The store's signature cache: the signatures checked here are not verified again by admission.
    report = verify_bundle(Document(raw, "bundle"), trusted_keys=ring, verifier=verifier, workers=1)
    problems = [p for p in report.problems if p.code in _CLAIM_PROBLEMS and p.severity == "error"]
    notes = [p for p in report.problems if p.code in _CLAIM_NOTES]
    signed_by_trusted = not any(p.code.startswith("bundle_") for p in report.problems)
    if signed_by_trusted:
        # A key we trust signed this bundle: its embedded state is a claim by that key, so a
        # state that differs from ours is a finding, not another mirror's view.
        problems += [p for p in notes if p.code == codes.P_STATE_MISMATCH]
        notes = [p for p in notes if p.code != codes.P_STATE_MISMATCH]
    return problems, notes


def admit_bundle(
    store: EventStore, raw: dict[str, Any], *, subject: str, ring: KeyRing, source: str
) -> Admitted:
    """Store what passes stage 1 of a received bundle (parsed by :func:`parse_bundle`), report the rest.

    One transaction; the state is then recomputed from the store under ``ring``.
    """
    problems, notes = _claims(raw, ring, store.verifier())
    items, refused = _items(raw, subject, store)
    items_before = len(store.backend.items(subject))
    # The store's rule, in one transaction: only copies passing stage 1 under ``ring``, one per unit.
    results = store.add_copies(
        [(subject, tree) for tree in raw["events"]], trusted_keys=ring, keep_invalid=False, items=items
    )
    items_added = len(store.backend.items(subject)) - items_before
    rejected = [
        Rejected(r.unit_id, r.reason or codes.REASON_MALFORMED)
        for r in results
        if r.status == codes.STORE_REFUSED
    ]
    problems += [
        Problem(codes.P_INVALID_EVENT, f"event failed stage 1: {r.reason} (not stored)", r.unit_id)
        for r in rejected
    ]
    state_sha256 = local_state_sha256(store, subject, ring)
    peer_state = raw.get("state")
    peer_sha = peer_state.get("state_sha256") if isinstance(peer_state, dict) else None
    return Admitted(
        subject=subject,
        source=source,
        events_added=sum(r.status == codes.STORE_NEW for r in results),
        duplicates=sum(r.status == codes.STORE_DUPLICATE for r in results),
        rejected=tuple(rejected),
        items_added=items_added,
        items_refused=refused,
        peer_state_sha256=peer_sha if isinstance(peer_sha, str) else None,
        state_sha256=state_sha256,
        notes=tuple(notes),
        problems=tuple(problems),
    )
