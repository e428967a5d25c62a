"""Deterministic registry-shaped mirrors: many small signed bundles, as files and as a store.

The registry's bundles are small (tests/fixtures/bundle-AG3PAJ22.json: a
record_created and a graph_snapshot, about 14 KB with the embedded state) and a
mirror of arXiv holds millions of them. A generated mirror of ``count``
bundles has, per record: its canonical record, a record_created (receipt
signed) and a graph_snapshot of about 3 KB by the registry key; one record in
five also has 3 to 18 more events by other signers (citation signatures,
attestations, ... in ``prev_event`` chains). Each bundle embeds its state and
is signed by the registry key, as the registry serves them. Every signature is
real (keys of :func:`benchmarks.generate.trusted_entries`), so the bytes depend
only on ``(count, seed)``.

Cached under ``benchmarks/data/mirror-v{FORMAT}-{count}-{seed}/`` (git-ignored).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from benchmarks.generate import DATA_DIR, _created_at, _hex, _text, registry_key, signer_keys, trusted_entries
from pith_graph.keys import KeyRing
from pith_graph.rebuild import rebuild_state
from pith_graph.testing import History, make_event, sign_bundle

__all__ = ["ensure_mirror", "ensure_mirror_store", "generate_record_bundle", "mirror_dir", "mirror_files"]

FORMAT_VERSION: Final = 1  # bump when the generated shape changes (invalidates the cache)
#: One record in this many carries more events than the registry's two.
BUSY_EVERY: Final = 5
#: How many more events a busy record carries (inclusive range).
EXTRA_EVENTS: Final = (3, 18)
_EXTRA_TYPES: Final = (
    ("citation_signature", "citation"),
    ("author_attestation", "author"),
    ("storage_attestation", "storage"),
    ("replication_record", "replication"),
)


def _snapshot_payload(rng: random.Random, arxiv_id: str, title: str) -> dict[str, Any]:
    """A graph_snapshot payload in the registry's shape (about 3 KB of canonical JSON)."""
    empty = _hex(rng)
    claims = rng.randrange(0, 4)
    return {
        "graph_snapshot": {
            "paper": {
                "title": title,
                "license": "http://creativecommons.org/licenses/by/4.0/",
                "headline": "",
                "cross_cats": ["cs.LG"],
                "primary_cat": "cs.DC",
                "authors_text": ", ".join(_text(rng, 2).title() for _ in range(rng.randrange(2, 9))),
                "submitted_at": "2026-01-12T19:25:01Z",
                "abstract_excerpt": _text(rng, 80)[:600],
            },
            "claims": {
                "count": claims,
                "items": [{"text": _text(rng, 12), "sha256": _hex(rng)} for _ in range(claims)],
                "snapshot_sha256": _hex(rng),
            },
            "source": {"id": arxiv_id, "kind": "arxiv", "version": 1},
            "verdict": {
                "id": None,
                "model_set": {},
                "created_at": None,
                "strongest_claim": "",
                "one_line_summary": "",
                "pipeline_version": None,
                "weakest_assumption": "",
                "pith_extraction_headline": "",
            },
            "integrity": {
                "clean": True,
                "summary": {"advisory": 0, "critical": 0, "by_detector": {}, "informational": 0},
                "endpoint": f"/pith/{arxiv_id}/integrity.json",
                "findings": [],
                "available": True,
                "detectors_run": [],
                "snapshot_sha256": _hex(rng),
            },
            "references": {
                "count": 0,
                "sample": [],
                "resolved_work": 0,
                "snapshot_sha256": empty,
                "internal_anchors": 0,
            },
            "formal_canon": {"evidence_count": 0, "snapshot_sha256": empty},
            "author_claims": {"count": 0, "strong_count": 0, "snapshot_sha256": empty},
            "builder_version": "pith-number-builder-2026-05-17-v1",
        },
        "verdict_id": None,
    }


def generate_record_bundle(index: int, *, seed: int = 0) -> dict[str, Any]:
    """The ``index``-th bundle of a mirror: signed by the registry key, its state embedded."""
    rng = random.Random(f"pith-mirror-{seed}-{index}")
    registry = registry_key()
    arxiv_id = f"26{index // 100_000 % 100:02d}.{index % 100_000:05d}"
    title = _text(rng, 10).capitalize()
    history = History.new(registry, arxiv_id=arxiv_id, title=title)
    events = [
        make_event(
            registry,
            subject=history.subject,
            event_type="graph_snapshot",
            target="graph",
            payload=_snapshot_payload(rng, arxiv_id, title),
            created_at="2026-06-02T01:03:16Z",
            signer_type="pith_registry",
        )
    ]
    signers = signer_keys()
    if index % BUSY_EVERY == BUSY_EVERY - 1:
        heads: dict[tuple[str, str], str] = {}
        for n in range(rng.randint(*EXTRA_EVENTS)):
            key = rng.choice(signers[:6])
            event_type, prefix = rng.choice(_EXTRA_TYPES)
            target = f"{prefix}:{rng.randrange(2)}"
            stream = (target, key.signer_id)
            events.append(
                make_event(
                    key,
                    subject=history.subject,
                    event_type=event_type,
                    target=target,
                    payload={"kind": event_type, "summary": _text(rng, 20), "sha256": _hex(rng)},
                    created_at=_created_at(100 + n),
                    prev_event=heads.get(stream),
                    signer_type="bench_signer",
                )
            )
            heads[stream] = events[-1]["event_id"]
    bundle = history.bundle(events, public_keys=[registry])
    bundle["mirror_hints"] = [
        {
            "mirror_type": "https",
            "name": "Pith Resolver",
            "base_url": "https://pith.science",
            "status": "primary",
        }
    ]
    ring = KeyRing.from_entries(trusted_entries())
    bundle["state"] = rebuild_state(bundle, trusted_keys=ring, workers=1).to_dict()
    return sign_bundle(bundle, registry)


def mirror_dir(count: int, seed: int = 0, data_dir: Path = DATA_DIR) -> Path:
    """Where the cached mirror of ``count`` bundles lives."""
    return data_dir / f"mirror-v{FORMAT_VERSION}-{count}-{seed}"


def mirror_files(directory: Path) -> list[Path]:
    """The bundle files of a generated mirror, in order."""
    return sorted(directory.glob("*/*.json"))


def _encoded(index: int, seed: int) -> bytes:
    return json.dumps(
        generate_record_bundle(index, seed=seed), separators=(",", ":"), ensure_ascii=False
    ).encode()


def ensure_mirror(count: int, seed: int = 0, data_dir: Path = DATA_DIR) -> Path:
    """The cached mirror of ``count`` bundles (``NNN/NNNNNNN.json``, 1000 a folder), generated if needed."""
    directory = mirror_dir(count, seed, data_dir)
    done = directory / ".complete"
    if done.exists():
        return directory
    for index in range(count):
        path = directory / f"{index // 1000:03d}" / f"{index:07d}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(_encoded(index, seed))
            tmp.replace(path)
    done.write_text(f"{count}\n")
    return directory


def ensure_mirror_store(count: int, seed: int = 0, data_dir: Path = DATA_DIR) -> Path:
    """The mirror of ``count`` bundles imported into an SQLite store (cached beside the files)."""
    from pith_graph.store import EventStore

    directory = ensure_mirror(count, seed, data_dir)
    path = directory.with_suffix(".sqlite")
    if not path.exists():
        tmp = path.with_suffix(".sqlite.tmp")
        tmp.unlink(missing_ok=True)
        with EventStore(tmp) as store:
            store.import_bundles(mirror_files(directory), trusted_keys=trusted_entries())
        tmp.replace(path)
    return path


def iter_bundles(directory: Path) -> Iterator[bytes]:
    """The bytes of each bundle of a mirror, in order."""
    for path in mirror_files(directory):
        yield path.read_bytes()


if __name__ == "__main__":  # pragma: no cover
    import sys

    for size in [int(a) for a in sys.argv[1:]] or [400]:
        print(ensure_mirror(size))
