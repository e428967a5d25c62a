"""The record's page for people (``GET /pith/{code}``): rendered on the server, no JavaScript.

Everything on it comes from the merged state the mirror computed itself (title,
authors and abstract from the applied graph snapshot). Jinja2 autoescaping is on
for the template, so payload text such as ``<script>`` is shown as text.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

import jinja2

from pith_graph.events import COLLECTIONS, RECORD_CREATED
from pith_graph.identifiers import PITH_NUMBER_RE
from pith_graph.keys import KeyRing

__all__ = ["render_page"]

_ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("pith_graph.mirror", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_TYPE_OF: Final = {collection: event_type for event_type, collection in COLLECTIONS.items()}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _paper(current: dict[str, Any]) -> dict[str, Any]:
    """The ``paper`` of the latest applied graph snapshot ({} when none is usable)."""
    for entry in reversed(current.get("graph_snapshots") or []):
        payload = entry.get("payload") if isinstance(entry, dict) else None
        snapshot = payload.get("graph_snapshot") if isinstance(payload, dict) else None
        paper = snapshot.get("paper") if isinstance(snapshot, dict) else None
        if isinstance(paper, dict):
            return paper
    return {}


def _applied(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The applied events in apply order, with type, time and signer where the state shows them."""
    current = state.get("current") or {}
    known: dict[str, tuple[str, dict[str, Any]]] = {}
    created = current.get("record_created")
    if isinstance(created, dict):
        known[created.get("event_id", "")] = (RECORD_CREATED, created)
    for collection, event_type in _TYPE_OF.items():
        for entry in current.get(collection) or []:
            if isinstance(entry, dict):
                known[entry.get("event_id", "")] = (event_type, entry)
    timeline = []
    for event_id in state.get("applied_event_ids") or []:
        event_type, entry = known.get(event_id, ("(no longer current)", {}))
        signer = _object(entry.get("signer"))
        timeline.append(
            {
                "event_id": event_id,
                "event_type": event_type,
                "created_at": entry.get("created_at", ""),
                "signer_id": signer.get("signer_id", ""),
            }
        )
    return timeline


def render_page(state: dict[str, Any], *, ring: KeyRing, mirror_name: str, links: dict[str, str]) -> bytes:
    """The page of a subject, from its merged state."""
    current = state.get("current") or {}
    source = _object(_object(current.get("canonical_record")).get("source")) or None
    paper = _paper(current)
    number = str(state.get("pith_number", ""))
    match = PITH_NUMBER_RE.fullmatch(number)
    code = match.group(2) if match else ""
    source_view = None
    doi = None
    if source is not None and isinstance(source.get("id"), str):
        source_id, version = source["id"], source.get("version")
        label = f"{source_id}v{version}" if isinstance(version, int) else source_id
        source_view = {
            "kind": source.get("kind", ""),
            "label": label,
            "url": f"https://arxiv.org/abs/{label}",
        }
        doi = f"10.48550/arxiv.{source_id}".lower()
    timeline = _applied(state)
    context = {
        "mirror_name": mirror_name,
        "pith_number": number,
        "short_forms": [f"pith:{code[:n]}" for n in (8, 12, 16)] if code else [],
        "title": _text(paper.get("title")),
        "authors": _text(paper.get("authors_text")),
        "abstract": _text(paper.get("abstract_excerpt")),
        "source": source_view,
        "doi": doi,
        "counts": {
            name: state.get(name, 0)
            for name in ("event_count", "valid_event_count", "invalid_event_count", "equivocation_count")
        },
        "state_sha256": state.get("state_sha256", ""),
        "trusted_keys": [
            {"key_id": key.key_id, "fingerprint": key.fingerprint_hex, "signer_id": key.signer_id}
            for key in ring
        ],
        "timeline": timeline,
        "by_type": sorted(Counter(item["event_type"] for item in timeline).items()),
        "invalid": state.get("invalid_events") or [],
        "forks": state.get("equivocations") or [],
        "links": links,
    }
    return _ENV.get_template("page.html").render(context).encode("utf-8")
