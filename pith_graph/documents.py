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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec

from pith_graph import codes
from pith_graph.canonical import DEFAULT_MAX_BYTES, canonical_json, loads
from pith_graph.errors import InputError
from pith_graph.models import Bundle, DocumentKind, convert, detect_kind

__all__ = [
    "EVENT_DEPTH_OFFSET",
    "MAX_EVENTS",
    "Document",
    "DocumentSource",
    "SplitBundle",
    "event_texts",
    "is_json_text",
    "load_bundle",
    "read_document",
    "read_json",
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
        if isinstance(source, (str, os.PathLike)):
            exc.naming(os.fspath(source))
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


def event_texts(array: Any) -> list[msgspec.Raw]:
    """The unparsed text of each item of a JSON array, read leniently.

    Raises ``msgspec.DecodeError`` (or ``ValueError``/``RecursionError``) when
    ``array`` (bytes or any buffer) is not one JSON array.
    """
    return _RAW_LIST.decode(array)


#: Places where an array could start that :func:`_array_span` tries before giving up.
_SPAN_CANDIDATES: Final = 8


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
    opening = re.compile(rb"\[[ \t\n\r]*" + re.escape(bytes(items[0])))
    for candidate, _ in zip(opening.finditer(data), range(_SPAN_CANDIDATES), strict=False):
        position = candidate.end()
        starts = [position - len(items[0])]
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
                return candidate.start(), end + 1, starts
    return None


def split_bundle(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> SplitBundle | None:
    """A bundle as its strictly parsed shell (``events`` emptied) and its events still unparsed.

    For a rebuild that parses, checks and drops one event at a time, so the
    decoded tree of every event is never held at once (peak memory). Each event
    must then be read with :func:`~pith_graph.canonical.loads` and
    ``max_depth=MAX_DEPTH - EVENT_DEPTH_OFFSET``: the shell and the events
    together get exactly the checks :func:`load_bundle` makes. Returns None
    whenever the split does not apply or anything looks irregular (an empty
    events array included); the caller then uses :func:`load_bundle`, which
    raises the error it finds.
    """
    if len(data) > max_bytes:
        return None
    try:
        events = _OUTER.decode(data).events
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    if not 0 < len(events) <= MAX_EVENTS:
        return None
    span = _array_span(data, events)
    if span is None:
        return None
    start, end, starts = span
    try:
        shell = loads(data[:start] + b"[]" + data[end:], max_bytes=max_bytes)
        # The text cut out was the events array only if the shell's events are now
        # empty: an identical text elsewhere (another member's value) leaves them whole.
        if not (isinstance(shell, dict) and shell.get("events") == [] and detect_kind(shell) == "bundle"):
            return None
        model = convert(shell, Bundle)
    except InputError:
        return None
    return SplitBundle(shell, model, events, memoryview(data)[start:end], starts)


def as_path(source: object) -> Path | None:
    """The path a CLI argument names, for messages."""
    return Path(source) if isinstance(source, (str, os.PathLike)) else None
