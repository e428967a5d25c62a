"""SQL that both backends run as it is (``?`` placeholders; :mod:`._postgres` turns them into ``%s``).

The change signal of a store shared by several processes (docs/store.md,
"Several servers, one database").
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHANGED_EVENTS", "CHANGED_ITEMS", "NEW_RECORDS", "STORE_SEQUENCE"]

#: (largest events.seq, largest items.seq): two lookups at the end of the primary keys.
STORE_SEQUENCE: Final = (
    "SELECT (SELECT coalesce(max(seq), 0) FROM events), (SELECT coalesce(max(seq), 0) FROM items)"
)
#: Per subject with events past a seq, its largest seq.
CHANGED_EVENTS: Final = "SELECT subject, max(seq) FROM events WHERE seq > ? GROUP BY subject ORDER BY subject"
#: Per subject with items past a seq, its largest seq.
CHANGED_ITEMS: Final = "SELECT subject, max(seq) FROM items WHERE seq > ? GROUP BY subject ORDER BY subject"
#: The canonical records stored past a seq, in seq order.
NEW_RECORDS: Final = "SELECT subject, body FROM items WHERE seq > ? AND kind = 'record' ORDER BY seq"
