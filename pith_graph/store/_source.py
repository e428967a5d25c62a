"""Another store read as untrusted input: what ``store sync`` copies from (issue 15).

A replica file or a peer is never trusted: nothing in it but the bodies is used,
and every column that says something about a body (unit id, digest, indexed
fields) is recomputed from it, exactly as an import does. The file is opened
read-only with its schema untrusted (``trusted_schema=OFF``, ``query_only``),
never migrated; a file whose ``events`` or ``items`` is not a plain table, or that
carries a trigger a pith-graph store does not, is refused before anything is read
from it. Rows are read in batches, by ``rowid``, so a large source never sits in memory.

A bad row (a body that is not strict JSON, a column of the wrong type, a subject
that is not a Pith Number, an item kind no store has) makes the whole source bad:
:class:`SourceError`, raised before anything is stored (the caller validates the
whole source first).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed, loads
from pith_graph.errors import InputError, StoreError
from pith_graph.events import MAX_EVENT_BYTES
from pith_graph.identifiers import PITH_NUMBER_RE
from pith_graph.store._facts import ITEM_KINDS
from pith_graph.store._schema import TRIGGERS
from pith_graph.store._sqlite import connect_read_only

__all__ = [
    "BATCH_ROWS",
    "SourceError",
    "SourceEvent",
    "SourceFile",
    "SourceItem",
    "check_item",
    "check_subject",
]

#: Rows read from a source per query.
BATCH_ROWS: Final = 2000
#: Tables a source must have as plain tables (what sync reads).
_TABLES: Final = ("events", "items")


class SourceError(StoreError):
    """A sync source that cannot be used: nothing of it is stored."""


class SourceEvent(NamedTuple):
    """One event row of a source: its subject and body (None when the body is too large to be
    valid: merge-v1 §6 bounds a whole event to 1 MiB, so it is refused without being read)."""

    subject: str
    body: bytes | None
    #: Where the row is, for an error message.
    where: str


class SourceItem(NamedTuple):
    """One item row of a source, checked: subject, kind and canonical body."""

    subject: str
    kind: str
    body: bytes


def check_subject(subject: Any, where: str) -> str:
    """``subject`` if it is a full Pith Number, else :class:`SourceError`."""
    if not isinstance(subject, str) or not PITH_NUMBER_RE.fullmatch(subject):
        raise SourceError(f"{where}: subject {subject!r} is not a Pith Number", code=codes.E_STORE_CORRUPT)
    return subject


def check_item(subject: Any, kind: Any, body: Any, where: str) -> SourceItem:
    """An item row, checked (its body parses strictly and is a JSON object); canonical bytes kept."""
    subject = check_subject(subject, where)
    if kind not in ITEM_KINDS:
        raise SourceError(f"{where}: item kind {kind!r} is not one a store keeps", code=codes.E_STORE_CORRUPT)
    if not isinstance(body, bytes):
        raise SourceError(
            f"{where}: item body is {type(body).__name__}, not a BLOB", code=codes.E_STORE_CORRUPT
        )
    try:
        value = loads(body)
    except InputError as exc:
        raise SourceError(
            f"{where}: item body is not JSON ({exc.message})", code=codes.E_STORE_CORRUPT
        ) from exc
    if not isinstance(value, dict):
        raise SourceError(f"{where}: item body is not a JSON object", code=codes.E_STORE_CORRUPT)
    return SourceItem(subject, kind, canonical_json_parsed(value))


class SourceFile:
    """A store file (or anything claiming to be one) opened as an untrusted, read-only sync source."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise SourceError(f"{self.path}: no such store file", code=codes.E_IO)
        try:
            self.conn = connect_read_only(self.path, 5.0)
        except sqlite3.Error as exc:
            raise SourceError(f"{self.path}: cannot open it read-only ({exc})", code=codes.E_IO) from exc
        try:
            # One read transaction for the source's whole life: every pass over it (the
            # check, then the copy) reads the same snapshot, whatever a writer does meanwhile.
            self.conn.execute("BEGIN")
            self._check_schema()
        except sqlite3.Error as exc:
            self.conn.close()
            raise self._fail(f"unreadable ({exc})") from exc
        except BaseException:
            self.conn.close()
            raise

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the read transaction and close the read-only connection."""
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        finally:
            self.conn.close()

    def _fail(self, message: str, code: str = codes.E_STORE_CORRUPT) -> SourceError:
        return SourceError(f"{self.path}: {message}", code=code)

    def _query(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(f"unreadable ({exc})") from exc

    def _check_schema(self) -> None:
        """Refuse what could run code or loop on read: views, virtual tables, foreign triggers."""
        objects = self._query("SELECT type, name, tbl_name, sql FROM sqlite_master")
        kinds = {name: (kind, sql or "") for kind, name, _table, sql in objects}
        for table in _TABLES:
            kind, sql = kinds.get(table, (None, ""))
            if kind != "table" or "VIRTUAL" in sql.upper():
                what = "missing" if kind is None else f"a {kind}, not a plain table"
                raise self._fail(f"not a pith-graph store: {table!r} is {what}", codes.E_STORE_SCHEMA)
        for kind, name, table, _sql in objects:
            # A view anywhere, or a trigger on a table sync reads that no store has (tables other
            # code keeps in the file, such as a mirror's peer log, may carry their own).
            if kind == "view" or (kind == "trigger" and table in _TABLES and name not in TRIGGERS):
                raise self._fail(
                    f"refused: it carries a {kind} {name!r} that no pith-graph store has",
                    codes.E_STORE_SCHEMA,
                )

    def events(self) -> Iterator[SourceEvent]:
        """Every event row, in batches, its columns type-checked (``SourceError`` on the first bad one)."""
        after = -1
        while True:
            batch = self._query(
                "SELECT rowid, subject, typeof(body), CASE WHEN length(body) <= ? THEN body END"
                " FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (MAX_EVENT_BYTES, after, BATCH_ROWS),
            )
            if not batch:
                return
            for seq, subject, body_type, body in batch:
                where = f"{self.path}: events row {seq}"
                check_subject(subject, where)
                if body_type != "blob":
                    raise SourceError(
                        f"{where}: body is {body_type.upper()}, not a BLOB", code=codes.E_STORE_CORRUPT
                    )
                yield SourceEvent(subject, body, where)
                after = seq

    def items(self) -> Iterator[SourceItem]:
        """Every item row, in batches, checked (:func:`check_item`)."""
        after = -1
        while True:
            batch = self._query(
                "SELECT rowid, subject, kind, body FROM items WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, BATCH_ROWS),
            )
            if not batch:
                return
            for seq, subject, kind, body in batch:
                yield check_item(subject, kind, body, f"{self.path}: items row {seq}")
                after = seq
