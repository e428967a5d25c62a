"""Reading documents from the outside world: bytes, text, paths or parsed mappings.

This is the I/O edge of the library. Everything read here goes through the
strict parser (:func:`pith_graph.canonical.loads`); a mapping a caller already
parsed is normalised by a round trip through the reference canonical encoder,
so that later hashing never depends on how the caller built it (plain floats,
tuples, non-JSON values); key order is kept.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec

from pith_graph import codes
from pith_graph.canonical import DEFAULT_MAX_BYTES, MAX_DEPTH, canonical_json, check_depth, loads
from pith_graph.errors import InputError
from pith_graph.models import Bundle, DocumentKind, convert, detect_kind

__all__ = [
    "EVENT_DEPTH_OFFSET",
    "MAX_EVENTS",
    "Document",
    "DocumentSource",
    "SplitBundle",
    "event_texts",
    "file_named",
    "is_json_text",
    "load_bundle",
    "read_document",
    "read_json",
    "settle_state",
    "source_bytes",
    "split_bundle",
]

#: Most events a single bundle may carry.
MAX_EVENTS: Final = 1_000_000

DocumentSource = bytes | bytearray | memoryview | str | os.PathLike[str] | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed JSON document with the kind it claims to be (None: not a Pith document)."""

    obj: Any
    kind: DocumentKind | None


def _too_large(path: os.PathLike[str] | str, max_bytes: int) -> InputError:
    return InputError(f"{os.fspath(path)} is larger than {max_bytes} bytes", code=codes.E_TOO_LARGE)


def _read_path(path: os.PathLike[str] | str, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            # The size of a regular file is known before reading it: one over the limit is
            # refused without reading a byte. read(n) reserves n bytes up front, so ask for
            # what the file holds (+1 detects a file that grew; a pipe says 0).
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise _too_large(path, max_bytes)
            data = handle.read(size + 1 if size else max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}", code=codes.E_IO) from exc
    if len(data) > max_bytes:
        raise _too_large(path, max_bytes)
    return data


def is_json_text(source: object) -> bool:
    """Whether a ``str`` source is JSON text rather than a path (see :func:`read_json`)."""
    return isinstance(source, str) and source.lstrip()[:1] in ("{", "[")


def file_named(source: object) -> str | None:
    """The file a source names (an ``os.PathLike``, or a ``str`` that is not JSON text:
    the rule of :func:`read_json`), for errors about it; None for anything else."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and not is_json_text(source)):
        return os.fspath(source)
    return None


def source_bytes(source: object, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
    """The unparsed bytes of a source given as bytes or a path; None for JSON text or parsed values.

    The rule of :func:`read_json` decides what a ``str`` is.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if is_json_text(source):
        return None
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, max_bytes)
    return None


def read_json(source: DocumentSource, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Strictly parse a document given as bytes, JSON text, a path, or a parsed mapping.

    The one rule for every function of pith_graph that reads a document, a key
    list or an event: ``bytes`` (also ``bytearray``, ``memoryview``) are JSON
    text; an ``os.PathLike`` is a path; a ``str`` is a path, unless its first
    non-blank character is ``{`` or ``[`` (then it is JSON text: no Pith document
    is anything but an object or an array); a mapping is an already parsed
    document. Errors about a file name the file.
    """
    if isinstance(source, Mapping):
        canonical_json(source)  # rejects NaN, lone surrogates and non-JSON values with clear codes
        # Re-read without sorting: key order is part of how a document was served.
        return loads(json.dumps(source, ensure_ascii=False), max_bytes=max_bytes)
    if is_json_text(source):
        return loads(source, max_bytes=max_bytes)  # type: ignore[arg-type]  # a str (is_json_text)
    data = source_bytes(source, max_bytes=max_bytes)
    if data is None:
        raise InputError(f"cannot read a document from a {type(source).__name__}", code=codes.E_USAGE)
    try:
        return loads(data, max_bytes=max_bytes)
    except InputError as exc:
        name = file_named(source)
        if name is not None:
            exc.naming(name)
        raise


def read_document(source: DocumentSource, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Parse a document and detect which Pith document it is."""
    obj = read_json(source, max_bytes=max_bytes)
    return Document(obj, detect_kind(obj))


def load_bundle(
    source: DocumentSource | Document, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[dict[str, Any], Bundle]:
    """Read a bundle: the raw parsed object (hashed as is) and its typed view.

    Bundle-level defects raise :class:`InputError`; defects inside an event are
    left for merge-v1 to report (that event is ``malformed``).
    """
    document = source if isinstance(source, Document) else read_document(source, max_bytes=max_bytes)
    if document.kind != "bundle":
        what = "not a Pith document" if document.kind is None else f"a {document.kind}"
        raise InputError(
            f"expected a bundle (pith_open_graph_bundle), but this is {what}", code=codes.E_NOT_PITH
        )
    bundle = convert(document.obj, Bundle)
    if len(bundle.events) > MAX_EVENTS:
        raise InputError(
            f"bundle has {len(bundle.events)} events, over the limit of {MAX_EVENTS}", code=codes.E_TOO_LARGE
        )
    return document.obj, bundle


class _Outer(msgspec.Struct):
    events: list[msgspec.Raw]
    state: msgspec.Raw = msgspec.Raw(b"null")


_OUTER: Final = msgspec.json.Decoder(_Outer)
_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_WHITE: Final = re.compile(rb"[ \t\n\r]*")
_SEPARATOR: Final = re.compile(rb"[ \t\n\r]*,[ \t\n\r]*")
#: Levels above an event in a bundle (the bundle object, its events array).
EVENT_DEPTH_OFFSET: Final = 2


class SplitBundle(NamedTuple):
    """A bundle cut by :func:`split_bundle`."""

    #: The strictly parsed bundle, its ``events`` emptied.
    shell: dict[str, Any]
    model: Bundle
    #: Each event's text, unparsed (read each with ``max_depth=MAX_DEPTH - EVENT_DEPTH_OFFSET``).
    events: list[msgspec.Raw]
    #: The text of the events array: exactly ``events``, in order, between brackets
    #: and separators (so :func:`event_texts` of it gives ``events`` again).
    events_text: memoryview
    #: Where each event's text starts in the bundle's bytes (so that a helper process
    #: holding the same bytes reads exactly ``events``).
    starts: list[int]
    #: The text of the embedded state, cut out unparsed (``shell["state"]`` and
    #: ``model.state`` are then None), or None when the state is in the shell. Text
    #: equal to the rebuilt state's bytes needs no parse (:func:`settle_state`).
    state_text: bytes | None = None


def event_texts(array: Any) -> list[msgspec.Raw]:
    """The unparsed text of each item of a JSON array, read leniently.

    Raises ``msgspec.DecodeError`` (or ``ValueError``/``RecursionError``) when
    ``array`` (bytes or any buffer) is not one JSON array.
    """
    return _RAW_LIST.decode(array)


#: Places where an array could start that :func:`_array_span` tries before giving up.
_SPAN_CANDIDATES: Final = 8
_JSON_WHITE: Final = frozenset(b" \t\n\r")
_OPEN_BRACKET: Final = ord("[")


def _array_span(data: bytes, items: list[msgspec.Raw]) -> tuple[int, int, list[int]] | None:
    """Where a JSON array of exactly ``items`` (texts, in order) occurs in ``data``,
    and where each item starts.

    The items must tile the span: ``[``, the first item, then each next item
    after one comma, and ``]``, with only JSON white space between. So every
    byte of the span is an item's text or array punctuation, checked at memcmp
    speed rather than by parsing the array a second time. The first few places
    where ``[`` and the first item's text occur are tried (a short first item,
    such as ``1``, may also occur earlier); None if none of them tiles.
    """
    first = bytes(items[0])
    for opening in _openings(data, first):
        position = opening[1] + len(first)
        starts = [opening[1]]
        for item in items[1:]:
            separator = _SEPARATOR.match(data, position)
            if separator is None:
                break
            start = separator.end()
            if not data.startswith(item, start):
                break
            starts.append(start)
            position = start + len(item)
        else:
            end = _WHITE.match(data, position).end()  # type: ignore[union-attr]  # matches the empty string
            if data[end : end + 1] == b"]":
                return opening[0], end + 1, starts
    return None


def _openings(data: bytes, first: bytes) -> Iterator[tuple[int, int]]:
    """The first few places where ``[``, JSON white space and ``first`` occur in ``data``:
    (where the bracket is, where ``first`` starts).

    A search for the text itself, then a look back: no pattern is built from
    ``first`` (escaping and compiling a 2 KB event text per bundle cost more than
    the rest of the split of a small bundle).
    """
    found = 0
    start = data.find(first)
    # Bounded: a short first item (``1``) may occur everywhere; past the bound the
    # split gives up and the caller takes the full parse.
    for _ in range(_SPAN_CANDIDATES * 64):
        if start < 0 or found == _SPAN_CANDIDATES:
            return
        bracket = start - 1
        while bracket >= 0 and data[bracket] in _JSON_WHITE:
            bracket -= 1
        if bracket >= 0 and data[bracket] == _OPEN_BRACKET:
            found += 1
            yield bracket, start
        start = data.find(first, start + 1)


def split_bundle(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> SplitBundle | None:
    """A bundle as its strictly parsed shell (``events`` emptied) and its events still unparsed.

    For a rebuild that parses, checks and drops one event at a time, so the
    decoded tree of every event is never held at once (peak memory). Each event
    must then be read with :func:`~pith_graph.canonical.loads` and
    ``max_depth=MAX_DEPTH - EVENT_DEPTH_OFFSET``, and an embedded state cut out
    too (``state_text``) settled with :func:`settle_state`: the shell, the
    events and the state together get exactly the checks :func:`load_bundle`
    makes. Returns None
    whenever the split does not apply or anything looks irregular (an empty
    events array included); the caller then uses :func:`load_bundle`, which
    raises the error it finds.
    """
    if len(data) > max_bytes:
        return None
    try:
        outer = _OUTER.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    events = outer.events
    if not 0 < len(events) <= MAX_EVENTS:
        return None
    span = _array_span(data, events)
    if span is None:
        return None
    start, end, starts = span
    state_text = bytes(outer.state)
    cut = _state_at(data, state_text, start, end) if state_text[:1] == b"{" else None
    if cut is None:
        shell_text = data[:start] + b"[]" + data[end:]
    elif cut < start:
        shell_text = data[:cut] + b"null" + data[cut + len(state_text) : start] + b"[]" + data[end:]
    else:
        shell_text = data[:start] + b"[]" + data[end:cut] + b"null" + data[cut + len(state_text) :]
    try:
        shell = loads(shell_text, max_bytes=max_bytes)
        # The text cut out was the events array only if the shell's events are now
        # empty: an identical text elsewhere (another member's value) leaves them whole.
        # Likewise the state's text only if the shell's state is now null.
        if not (
            isinstance(shell, dict)
            and shell.get("events") == []
            and (cut is None or ("state" in shell and shell["state"] is None))
            and detect_kind(shell) == "bundle"
        ):
            return None
        model = convert(shell, Bundle)
    except InputError:
        return None
    return SplitBundle(
        shell, model, events, memoryview(data)[start:end], starts, None if cut is None else state_text
    )


def settle_state(split: SplitBundle, rebuilt: bytes | None) -> SplitBundle:
    """The checks a state cut out by :func:`split_bundle` still needs, given the bytes of
    the state rebuilt from the bundle (:meth:`~pith_graph.state.State.to_json`).

    Text equal to those bytes was written by this library: strict JSON by
    construction, so only its depth inside the bundle is left to check, and
    ``state_text`` stays (it is the rebuilt state). Other text is strictly parsed
    and put back into the shell and the model (``state_text`` None). Raises
    :class:`InputError` as :func:`load_bundle` would for the whole bundle.
    """
    text = split.state_text
    if text is None:
        return split
    if text == rebuilt:
        check_depth(text, MAX_DEPTH - 1)  # the bundle's object is one level up
        return split
    shell = dict(split.shell)
    shell["state"] = loads(text, max_depth=MAX_DEPTH - 1)
    return split._replace(shell=shell, model=convert(shell, Bundle), state_text=None)


_STATE_KEY: Final = b'"state":'


def _state_at(data: bytes, state_text: bytes, start: int, end: int) -> int | None:
    """Where the bundle's state text ``state_text`` starts, right after a compact ``"state":``
    and outside the events array (``start`` to ``end``); None if not among the first few
    places (the state then stays in the shell)."""
    position = data.find(_STATE_KEY)
    for _ in range(_SPAN_CANDIDATES):
        if position < 0:
            return None
        at = position + len(_STATE_KEY)
        if (at + len(state_text) <= start or at >= end) and data.startswith(state_text, at):
            return at
        position = data.find(_STATE_KEY, position + 1)
    return None


def as_path(source: object) -> Path | None:
    """The path a CLI argument names, for messages."""
    return Path(source) if isinstance(source, (str, os.PathLike)) else None
