"""Reading a bundle for :meth:`EventStore.import_bundle <pith_graph.store.EventStore.import_bundle>`:
a chunk of events at a time, and the stage-1 checks of each chunk.

Nothing here touches a database, so helper processes run it too (``store import
--workers N``: :func:`prepare_bundle`). A large bundle is split
(:func:`pith_graph.documents.split_bundle`, as :func:`pith_graph.rebuild.stream_rebuild`
does): its shell is parsed strictly, each event is parsed, checked and turned into
a row when its chunk comes, so the trees of the whole bundle are never held at
once (docs/store.md, "Large bundles"). A bundle the split does not apply to goes
through :func:`pith_graph.documents.load_bundle`, which also raises the error of
a bundle that cannot be used: the streamed path, meeting one, asks it for that
error (:func:`full_error`), so both paths fail alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar

from pith_graph import codes
from pith_graph.canonical import MAX_DEPTH, canonical_json_parsed, loads
from pith_graph.documents import (
    EVENT_DEPTH_OFFSET,
    Document,
    DocumentSource,
    file_named,
    load_bundle,
    source_bytes,
    split_bundle,
)
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError, PithGraphError
from pith_graph.events import CheckedEvent, check_keys, inspect_event
from pith_graph.identifiers import PITH_NUMBER_RE
from pith_graph.keys import KeyRing
from pith_graph.store._facts import ITEM_KINDS, CheckedRow, EventRow, FactsRow, ItemRow

__all__ = [
    "IMPORT_CHUNK",
    "SPLIT_MIN_BYTES",
    "Checked",
    "Prepared",
    "Received",
    "check_copies",
    "full_error",
    "prepare_bundle",
    "receive",
]

_T = TypeVar("_T")

#: Bundles from this size on are split and read a chunk of events at a time; smaller
#: ones are parsed whole (docs/performance.md, "Many small bundles").
SPLIT_MIN_BYTES: Final = 1 << 20

#: Events of a bundle read, checked and written at a time: the trees of one chunk
#: are held, never those of the whole bundle (docs/performance.md, "Large bundles").
IMPORT_CHUNK: Final = 256


class Received(NamedTuple):
    """A bundle as an import reads it: its subject, items, listed public keys, event count,
    and its event trees a chunk at a time (lazy: at least one chunk, maybe empty; each tree
    parsed when it is reached)."""

    subject: str
    items: list[ItemRow]
    public_keys: list[Any]
    events: int
    chunks: Iterator[Iterator[Any]]

    @property
    def several(self) -> bool:
        """Whether the events come in more than one chunk."""
        return self.events > IMPORT_CHUNK


def _items(shell: Mapping[str, Any], subject: str) -> list[ItemRow]:
    items: list[ItemRow] = []
    for kind, key in ITEM_KINDS.items():
        value = shell.get(key)
        values = [value] if kind == "record" else (value or [])
        items.extend(ItemRow(subject, kind, canonical_json_parsed(v)) for v in values if v is not None)
    return items


def _chunked(values: Sequence[Any]) -> Iterator[Iterator[Any]]:
    yield iter(values[:IMPORT_CHUNK])
    for start in range(IMPORT_CHUNK, len(values), IMPORT_CHUNK):
        yield iter(values[start : start + IMPORT_CHUNK])


def _parsed(texts: Sequence[Any]) -> Iterator[Iterator[Any]]:
    """Each chunk of event texts, each parsed strictly when it is reached (an event's
    depth counts from the bundle's), so one event's tree is held at a time."""
    depth = MAX_DEPTH - EVENT_DEPTH_OFFSET
    for start in range(0, len(texts), IMPORT_CHUNK):
        yield (loads(bytes(text), max_depth=depth) for text in texts[start : start + IMPORT_CHUNK])


def receive(bundle: DocumentSource | Document | PithGraphError) -> Received:
    """Read ``bundle`` (bytes, a path, JSON text, a mapping or a :class:`Document`) for import.

    Raises :class:`InputError` for a bundle that cannot be used (naming the file for
    a path), and an error given in its place; an event that cannot be parsed raises
    while its chunk is read.
    """
    if isinstance(bundle, PithGraphError):
        raise bundle
    data = None if isinstance(bundle, (Document, Mapping)) else source_bytes(bundle)
    # A small bundle is parsed whole: one parse costs less than a split and a parse per
    # event, and its trees are small anyway (the split is for memory).
    split = split_bundle(data) if data is not None and len(data) >= SPLIT_MIN_BYTES else None
    if split is None:
        # Irregular, small, a mapping, or unusable: the full parse (which names a path it fails on).
        raw, model = _named(bundle, lambda: load_bundle(bundle if data is None else data))
        shell: Mapping[str, Any] = raw
        chunks: Iterator[Iterator[Any]] = _chunked(raw["events"])
        count = len(raw["events"])
    else:
        shell, model = split.shell, split.model
        chunks = _parsed(split.events)
        count = len(split.events)
    subject = model.pith_number
    if not PITH_NUMBER_RE.fullmatch(subject):
        raise InputError(
            f"the bundle's pith_number {subject!r} is not a Pith Number", code=codes.E_BAD_SUBJECT
        )
    return Received(subject, _items(shell, subject), list(shell.get("public_keys") or []), count, chunks)


def _named(bundle: object, read: Callable[[], _T]) -> _T:
    """``read()``; an error it raises names ``bundle`` when that is a path (read here as bytes)."""
    try:
        return read()
    except PithGraphError as exc:
        name = file_named(bundle)
        if name is not None:
            exc.naming(name)
        raise


def full_error(bundle: DocumentSource | Document | PithGraphError, found: PithGraphError) -> PithGraphError:
    """The error the full parse of ``bundle`` raises (``found``, met on the streamed path, if none)."""
    if isinstance(bundle, PithGraphError):
        return bundle
    try:
        _named(bundle, lambda: load_bundle(bundle))
    except PithGraphError as exc:
        return exc
    return found


class Checked(NamedTuple):
    """A chunk of copies checked under one ring: their rows and what :meth:`Backend.add_checked` is told."""

    rows: list[EventRow]
    checked: list[CheckedRow]


def check_copies(
    copies: Iterable[tuple[str, Any]],
    ring: KeyRing,
    verifier: Verifier,
    known: Sequence[CheckedEvent | None] | None = None,
    *,
    prefetch: Callable[[list[bytes]], None] | None = None,
) -> Checked:
    """Stage 1 of received (subject, tree) copies under ``ring``: each copy's row, facts and verdict.

    The copies are taken one at a time and each tree is dropped once its row and
    intrinsic facts are made (the trees cost several times their text: peak memory).
    ``known[i]``, when valid, is copy ``i``'s outcome under ``ring`` (not checked
    again). ``prefetch(messages)``, if given, is called once with every message the
    key checks will verify, before they run (the store loads its kept signature
    verdicts in one query).
    """
    rows: list[EventRow] = []
    inspected: list[CheckedEvent] = []
    given: list[bool] = []
    for index, (subject, tree) in enumerate(copies):
        row = EventRow.of(subject, tree)
        rows.append(row)
        outcome = known[index] if known is not None else None
        valid = outcome is not None and outcome.valid and outcome.unit_id == row.unit_id
        if not valid:
            outcome = inspect_event(tree, subject=subject, uid=row.unit_id)
        assert outcome is not None
        given.append(valid)
        # Without the tree: the key checks read the canonical fragments, the body stands for the rest.
        inspected.append(
            CheckedEvent(
                outcome.unit_id,
                None,
                outcome.reason,
                outcome.progress,
                outcome.facts,
                outcome.signer_json,
                outcome.payload_json,
                row.digest,
            )
        )
    if prefetch is not None:
        prefetch([c.facts.message for c in inspected if c.reason is None and c.facts is not None])
    checked: list[CheckedRow] = []
    for row, first, valid in zip(rows, inspected, given, strict=True):
        if valid:
            # Valid, so its intrinsic part passed: its facts are those of the whole outcome.
            checked.append(CheckedRow(FactsRow.of(row.body, first), None, True))
            continue
        final = check_keys(first, subject=row.subject, keyring=ring, verifier=verifier)
        checked.append(CheckedRow(FactsRow.of(row.body, first), final.reason, first.reason is None))
    return Checked(rows, checked)


class Prepared(NamedTuple):
    """A bundle read and checked by a helper (:func:`prepare_bundle`), for this process to store."""

    subject: str
    items: list[ItemRow]
    events: int
    chunks: list[Checked]


def prepare_bundle(
    bundle: DocumentSource | Document | PithGraphError, ring: KeyRing
) -> Prepared | PithGraphError:
    """Read and check ``bundle`` under ``ring`` (in a helper process); its error, returned, if unusable."""
    try:
        received = receive(bundle)
        verifier = Verifier()
        try:
            chunks = [
                check_copies([(received.subject, t) for t in trees], ring, verifier)
                for trees in received.chunks
            ]
        except InputError as exc:
            return full_error(bundle, exc)
        return Prepared(received.subject, received.items, received.events, chunks)
    except PithGraphError as exc:
        return exc
